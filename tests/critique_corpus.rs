//! End-to-end checks of the streaming critique parser against a corpus of judge outputs
//! (`tests/critique_corpus/NNN-name.txt`, each with `NNN-name.expect.json`): the final
//! critique of each, and the streaming contract under every way of chunking them.

use arbiter::critique::{parse_critique, Critique, CritiqueParser, FieldState};
use arbiter::verdict::{OutputFormat, Verdict};
use proptest::prelude::*;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
struct Expectation {
    format: OutputFormat,
    detected: OutputFormat,
    verdict: Option<Verdict>,
    score: Option<f64>,
    fields: Vec<ExpectedField>,
    problems_contain: Vec<String>,
    no_problems: bool,
}

#[derive(Debug, Deserialize)]
struct ExpectedField {
    key: String,
    state: FieldState,
    text: String,
    #[serde(default)]
    superseded: bool,
}

struct Case {
    name: String,
    output: Vec<u8>,
    expect: Expectation,
}

fn corpus() -> &'static [Case] {
    static CORPUS: OnceLock<Vec<Case>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/critique_corpus");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("the corpus folder exists")
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|path| {
                let name = path
                    .file_stem()
                    .expect("corpus file has a name")
                    .to_string_lossy()
                    .into_owned();
                let expect_path = dir.join(format!("{name}.expect.json"));
                let expect_text = std::fs::read_to_string(&expect_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
                let expect = serde_json::from_str(&expect_text)
                    .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
                let output = std::fs::read(&path).expect("corpus output readable");
                Case {
                    name,
                    output,
                    expect,
                }
            })
            .collect()
    })
}

fn mismatches(case: &Case, got: &Critique) -> Vec<String> {
    let e = &case.expect;
    let mut out = Vec::new();
    if got.format != e.detected {
        out.push(format!(
            "format {:?}, expected {:?}",
            got.format, e.detected
        ));
    }
    if got.verdict != e.verdict {
        out.push(format!(
            "verdict {:?}, expected {:?}",
            got.verdict, e.verdict
        ));
    }
    if got.score != e.score {
        out.push(format!("score {:?}, expected {:?}", got.score, e.score));
    }
    let got_fields: Vec<_> = got
        .fields
        .iter()
        .map(|f| (f.key.as_str(), f.state, f.text.as_str(), f.superseded))
        .collect();
    let want_fields: Vec<_> = e
        .fields
        .iter()
        .map(|f| (f.key.as_str(), f.state, f.text.as_str(), f.superseded))
        .collect();
    if got_fields != want_fields {
        out.push(format!(
            "fields\n  got:  {got_fields:?}\n  want: {want_fields:?}"
        ));
    }
    for needle in &e.problems_contain {
        if !got.problems.iter().any(|p| p.contains(needle.as_str())) {
            out.push(format!(
                "no problem mentions {needle:?}: {:?}",
                got.problems
            ));
        }
    }
    if e.no_problems && !got.problems.is_empty() {
        out.push(format!("unexpected problems {:?}", got.problems));
    }
    if got.raw_len != case.output.len() {
        out.push(format!("raw_len {} of {}", got.raw_len, case.output.len()));
    }
    out
}

#[test]
fn corpus_is_large_and_covers_every_format() {
    let cases = corpus();
    assert!(cases.len() >= 60, "only {} corpus cases", cases.len());
    for format in [
        OutputFormat::Auto,
        OutputFormat::Cj2Json,
        OutputFormat::Brackets,
        OutputFormat::Arena5,
        OutputFormat::JudgerBench,
        OutputFormat::Pointwise,
        OutputFormat::Critique,
    ] {
        assert!(
            cases.iter().any(|c| c.expect.format == format),
            "no corpus case for {format:?}"
        );
    }
}

#[test]
fn every_corpus_output_reads_as_expected() {
    let mut failures = Vec::new();
    for case in corpus() {
        let text = String::from_utf8(case.output.clone()).expect("corpus outputs are UTF-8");
        let got = parse_critique(&text, case.expect.format);
        let bad = mismatches(case, &got);
        if !bad.is_empty() {
            failures.push(format!("{}:\n  {}", case.name, bad.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Feeds `bytes` cut by the cycle of `sizes`, checking each snapshot continues the last.
fn stream(bytes: &[u8], format: OutputFormat, sizes: &[usize]) -> Result<Critique, String> {
    let mut parser = CritiqueParser::new(format);
    let mut last = parser.snapshot().clone();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        parser.feed(&bytes[at..end]);
        at = end;
        let now = parser.snapshot();
        if !now.continues(&last) {
            return Err(format!(
                "after byte {at} the snapshot takes back what it showed:\n  before: {last:?}\n  after:  {now:?}"
            ));
        }
        last = now.clone();
    }
    let done = parser.finish();
    if !done.continues(&last) {
        return Err(format!(
            "finish takes back what it showed:\n  before: {last:?}\n  after:  {done:?}"
        ));
    }
    Ok(done)
}

fn whole(bytes: &[u8], format: OutputFormat) -> Critique {
    let mut parser = CritiqueParser::new(format);
    parser.feed(bytes);
    parser.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any chunking (cuts inside multi-byte characters included) gives the same final
    /// critique as the whole text, and every snapshot on the way only adds to the last.
    #[test]
    fn chunking_never_changes_the_result(
        pick in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..12, 1..40),
    ) {
        let case = pick.get(corpus());
        let got = stream(&case.output, case.expect.format, &sizes);
        prop_assert!(got.is_ok(), "{}: {}", case.name, got.as_ref().err().cloned().unwrap_or_default());
        prop_assert_eq!(got.ok(), Some(whole(&case.output, case.expect.format)), "{}", case.name);
    }

    /// The same holds for an output cut off anywhere (a judge stopped at its token limit),
    /// read as any format.
    #[test]
    fn cut_off_outputs_stream_consistently(
        pick in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        format_pick in 0usize..7,
        sizes in prop::collection::vec(1usize..9, 1..20),
    ) {
        let case = pick.get(corpus());
        let end = if case.output.is_empty() { 0 } else { cut.index(case.output.len() + 1) };
        let bytes = &case.output[..end];
        let format = [
            OutputFormat::Auto,
            OutputFormat::Cj2Json,
            OutputFormat::Brackets,
            OutputFormat::Arena5,
            OutputFormat::JudgerBench,
            OutputFormat::Pointwise,
            OutputFormat::Critique,
        ][format_pick];
        let got = stream(bytes, format, &sizes);
        prop_assert!(got.is_ok(), "{} cut at {end} as {format:?}: {}", case.name, got.as_ref().err().cloned().unwrap_or_default());
        prop_assert_eq!(got.ok(), Some(whole(bytes, format)), "{} cut at {}", case.name, end);
    }
}
