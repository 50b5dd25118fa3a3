//! Throughput of the streaming critique parser: 10 MB of judge output fed in 4-byte and
//! 64-byte chunks, and all at once for reference. Streaming must stay linear: the 4-byte run
//! has to finish well under a second in release.

use arbiter::critique::CritiqueParser;
use arbiter::verdict::OutputFormat;
use std::time::{Duration, Instant};

const TARGET_BYTES: usize = 10 * 1024 * 1024;

/// A CompassJudger-2 critique whose fields are long enough to make 10 MB, with escapes,
/// Chinese and emoji so the slow paths (split characters, escapes) are exercised.
fn cj2_output() -> String {
    let sentence =
        "Model A explains the \\\"two-pointer\\\" idea clearly, 但模型B遗漏了边界情况 😀; \\n";
    let per_field = TARGET_BYTES / 6 / sentence.len() + 1;
    let mut out = String::with_capacity(TARGET_BYTES + 4096);
    out.push_str("Here is my evaluation:\n```json\n{\n");
    let keys = [
        "User's Demand",
        "Strengths of Model A",
        "Weaknesses of Model A",
        "Strengths of Model B",
        "Weaknesses of Model B",
        "Reasoning",
    ];
    for key in keys {
        out.push_str(&format!("  \"{key}\": \""));
        for _ in 0..per_field {
            out.push_str(sentence);
        }
        out.push_str("\",\n");
    }
    out.push_str("  \"Choice\": \"Model A\"\n}\n```\n");
    out
}

/// A prose critique ending in a verdict tag, with brackets and braces that are not markers.
fn prose_output() -> String {
    let sentence = "Assistant A cites [1] and {x} correctly; 助手B没有 🙂. ";
    let mut out = String::with_capacity(TARGET_BYTES + 64);
    while out.len() < TARGET_BYTES {
        out.push_str(sentence);
    }
    out.push_str("\n\nMy final verdict is: [[A>B]]");
    out
}

fn run(bytes: &[u8], format: OutputFormat, chunk: usize) -> Duration {
    let start = Instant::now();
    let mut parser = CritiqueParser::new(format);
    for piece in bytes.chunks(chunk) {
        parser.feed(piece);
    }
    let critique = parser.finish();
    let elapsed = start.elapsed();
    assert!(
        critique.verdict.is_some(),
        "the benchmark output must read to a verdict: {:?}",
        critique.problems
    );
    elapsed
}

fn report(label: &str, bytes: &[u8], format: OutputFormat) {
    let mb = bytes.len() as f64 / (1024.0 * 1024.0);
    for (name, chunk) in [
        ("4-byte chunks", 4),
        ("64-byte chunks", 64),
        ("whole text", bytes.len()),
    ] {
        // Best of three, to keep scheduler noise out of the figure.
        let best = (0..3)
            .map(|_| run(bytes, format, chunk))
            .min()
            .unwrap_or_default();
        let secs = best.as_secs_f64();
        println!(
            "{label:<10} {name:<15} {mb:6.2} MB in {secs:7.3} s  = {:8.1} MB/s",
            mb / secs
        );
    }
}

fn main() {
    let cj2 = cj2_output();
    let prose = prose_output();
    report("cj2-json", cj2.as_bytes(), OutputFormat::Cj2Json);
    report("auto/cj2", cj2.as_bytes(), OutputFormat::Auto);
    report("prose", prose.as_bytes(), OutputFormat::Arena5);
}
