#![no_main]
//! Fuzz target for the streaming critique parser: arbitrary bytes, cut into chunks whose
//! sizes come from the input's first bytes, fed to a parser of every output format, then
//! finished. Nothing may panic, chunking must not change the result, and no snapshot may
//! take back what an earlier one showed.
use arbiter::critique::CritiqueParser;
use arbiter::verdict::OutputFormat;
use libfuzzer_sys::fuzz_target;

const FORMATS: [OutputFormat; 8] = [
    OutputFormat::Auto,
    OutputFormat::Cj2Json,
    OutputFormat::Brackets,
    OutputFormat::Arena5,
    OutputFormat::JudgerBench,
    OutputFormat::Pointwise,
    OutputFormat::Critique,
    OutputFormat::Prose,
];

fuzz_target!(|data: &[u8]| {
    // The first byte says how many of the next bytes are chunk sizes (at most 8).
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 9).min(rest.len());
    let (sizes, output) = rest.split_at(count);
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![1]
    } else {
        sizes.iter().map(|&s| usize::from(s % 17) + 1).collect()
    };
    for format in FORMATS {
        let mut whole = CritiqueParser::new(format);
        whole.feed(output);
        let whole = whole.finish();

        let mut parser = CritiqueParser::new(format);
        let mut last = parser.snapshot().clone();
        let mut at = 0;
        for size in sizes.iter().cycle() {
            if at >= output.len() {
                break;
            }
            let end = (at + size).min(output.len());
            parser.feed(&output[at..end]);
            at = end;
            assert!(parser.snapshot().continues(&last), "a snapshot took text back");
            last = parser.snapshot().clone();
        }
        let chunked = parser.finish();
        assert!(chunked.continues(&last), "finish took text back");
        assert_eq!(chunked, whole, "chunking changed the result");
    }
});
