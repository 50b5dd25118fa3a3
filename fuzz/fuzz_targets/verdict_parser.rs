#![no_main]
//! Fuzz target for the verdict parser: arbitrary bytes, read as lossy UTF-8, through `parse`,
//! `parse_as` for every output format and `parse_judgerbench` in both languages. Nothing may
//! panic; `Critique` never yields a verdict; a reading always has a concrete format and a
//! score on the 1-10 scale; and when `Auto` reads a format (other than ArenaHard, whose
//! explicit reader also counts plain `[[A]]` tags), that format's own reader agrees.
use arbiter::verdict::{parse, parse_as, parse_judgerbench, OutputFormat, ParseError, Reading};
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
    let text = String::from_utf8_lossy(data);
    for format in FORMATS {
        match parse_as(&text, format) {
            Ok(found) => {
                assert_ne!(
                    format,
                    OutputFormat::Critique,
                    "a critique yielded a verdict"
                );
                assert_ne!(found.format, OutputFormat::Auto, "Auto returned no format");
                if let Reading::Score(score) = found.reading {
                    assert!((1.0..=10.0).contains(&score), "score {score} off the scale");
                }
                if format != OutputFormat::Auto {
                    assert_eq!(found.format, format, "an explicit format changed");
                }
            }
            Err(err) => {
                // Every error must render a message for the user.
                assert!(!err.to_string().is_empty());
                if format == OutputFormat::Critique {
                    assert_eq!(err, ParseError::NoVerdictInCritique);
                }
            }
        }
    }
    if let Ok(found) = parse(&text) {
        if matches!(
            found.format,
            OutputFormat::Cj2Json
                | OutputFormat::JudgerBench
                | OutputFormat::Brackets
                | OutputFormat::Pointwise
                | OutputFormat::Prose
        ) {
            let explicit = parse_as(&text, found.format).expect("Auto's format reads alone");
            assert_eq!(explicit.reading, found.reading);
        }
    }
    let _ = parse_judgerbench(&text, false);
    let _ = parse_judgerbench(&text, true);
});
