//! Judge outputs with several verdict labels, read by the benchmark's rule and by the review
//! rule, on the 1,240 Arena-Hard-style outputs JudgeBench released (the claude-3-haiku file in
//! `tests/data/verdict_labels/`, the o1-mini file in `tests/data/judge_bench/`) and on a corpus
//! of the shapes such outputs take.

use arbiter::critique::parse_critique;
use arbiter::verdict::{parse_as, OutputFormat, ParseError, Rule, Verdict};
use std::io::Read;
use std::path::PathBuf;

mod common;

use common::cli::ok_text;

/// One judge output of a released file, with the decision JudgeBench extracted from it.
struct Game {
    pair: String,
    order: usize,
    text: String,
    decision: Option<String>,
}

fn released_games() -> Vec<Game> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files = Vec::new();
    for dir in ["verdict_labels", "judge_bench"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("the fixture folders exist") {
            let path = entry.expect("fixture entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.contains("judge_name=arena_hard") && name.ends_with(".jsonl.gz") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut games = Vec::new();
    for path in &files {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture opens"))
            .read_to_string(&mut text)
            .expect("fixture decompresses");
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let judgments = record["judgments"].as_array().expect("two judgments");
            for (order, j) in judgments.iter().enumerate() {
                games.push(Game {
                    pair: record["pair_id"].as_str().expect("pair_id").to_string(),
                    order,
                    text: j["judgment"]["response"]
                        .as_str()
                        .or_else(|| j["judgment"].as_str())
                        .expect("the raw judge output")
                        .to_string(),
                    decision: j["decision"].as_str().map(str::to_string),
                });
            }
        }
    }
    assert_eq!(
        (files.len(), games.len()),
        (2, 1240),
        "expected the two released Arena-Hard-judge files (270 + 350 pairs, two orders each): {files:?}"
    );
    games
}

/// JudgeBench's label for a verdict: the ArenaHard label with `>>` folded into `>`.
fn judgebench_label(v: Verdict) -> String {
    v.label().replace(">>", ">")
}

#[test]
fn the_arena_hard_rule_reproduces_judgebench_extraction_on_every_output() {
    let games = released_games();
    let mut none = 0;
    for g in &games {
        let ours = parse_as(&g.text, OutputFormat::Arena5).ok();
        assert_eq!(
            ours.map(|r| match r.reading {
                arbiter::verdict::Reading::Pairwise(v) => judgebench_label(v),
                other => panic!("{other:?}"),
            }),
            g.decision,
            "pair {} order {}",
            g.pair,
            g.order
        );
        if let Some(r) = ours {
            assert_eq!(r.rule, Rule::OneDistinctLabel);
        }
        none += usize::from(g.decision.is_none());
    }
    assert_eq!(none, 13, "outputs the benchmark reads no verdict from");
}

#[test]
fn the_review_rule_never_guesses_on_the_released_outputs() {
    let games = released_games();
    let mut decided_by_final = Vec::new();
    let mut conflicting = 0;
    for g in &games {
        let auto = parse_as(&g.text, OutputFormat::Auto);
        match (&g.decision, &auto) {
            // Where the benchmark reads one label, so does the review rule.
            (Some(label), Ok(r)) => {
                let arbiter::verdict::Reading::Pairwise(v) = r.reading else {
                    panic!("pair {} order {}: {r:?}", g.pair, g.order)
                };
                assert_eq!(
                    &judgebench_label(v),
                    label,
                    "pair {} order {}",
                    g.pair,
                    g.order
                );
                assert_eq!(r.rule, Rule::OnlyLabel, "pair {} order {}", g.pair, g.order);
            }
            // Where it reads none, the review rule either finds an explicit final verdict
            // after per-answer labels, or says the labels conflict: never one of them silently.
            (None, Ok(r)) => {
                assert_eq!(
                    r.rule,
                    Rule::FinalVerdict,
                    "pair {} order {}",
                    g.pair,
                    g.order
                );
                let arbiter::verdict::Reading::Pairwise(v) = r.reading else {
                    panic!("{r:?}")
                };
                decided_by_final.push((g.pair[..8].to_string(), v.label()));
            }
            (None, Err(ParseError::Conflicting(labels))) => {
                assert!(labels.contains("[["), "{labels}");
                conflicting += 1;
            }
            (d, other) => panic!("pair {} order {}: {d:?} vs {other:?}", g.pair, g.order),
        }
        // The streaming critique parser (what `arbiter parse` and the app show) agrees.
        let critique = parse_critique(&g.text, OutputFormat::Auto);
        assert_eq!(
            critique.verdict,
            auto.as_ref().ok().and_then(|r| match r.reading {
                arbiter::verdict::Reading::Pairwise(v) => Some(v),
                _ => None,
            }),
            "pair {} order {}",
            g.pair,
            g.order
        );
        assert_eq!(
            critique.conflicting.is_some(),
            matches!(auto, Err(ParseError::Conflicting(_)))
        );
    }
    decided_by_final.sort();
    // Three outputs rate each answer against the judge's own, then conclude "My final verdict
    // is ...": the conclusion decides. The other ten give a verdict per answer and no
    // conclusion, or two conclusions that disagree.
    assert_eq!(
        decided_by_final,
        [
            ("4e42fb58".to_string(), "A>B"),
            ("6bc9bd9d".to_string(), "A>B"),
            ("c2d66af7".to_string(), "A>B"),
        ]
    );
    assert_eq!(conflicting, 10);
}

/// Outputs written for this test, one per shape a multi-label output takes.
const CORPUS: &[(&str, &str, Result<&str, &str>)] = &[
    (
        "per-answer ratings, then a final verdict",
        "Assistant A's answer: correct, but it skips the proof. Compared with mine: [[A>B]]\n\n\
         Assistant B's answer: the proof is wrong in step 2. Compared with mine: [[B>A]]\n\n\
         My final verdict is: Assistant A is significantly better: [[A>>B]]",
        Ok("A>>B"),
    ),
    (
        "a final verdict under a heading",
        "A is fine [[A>B]]; B is fine too [[B>A]].\n\n## Final verdict\n\n[[A=B]]",
        Ok("A=B"),
    ),
    (
        "per-answer verdicts with no conclusion",
        "My verdict on A: [[A>B]]\n\nMy verdict on B: [[B>>A]]",
        Err("no final verdict settles them"),
    ),
    (
        "two final verdicts that disagree",
        "My final verdict is [[A>B]].\n\nHaving re-read B, my final verdict is [[B>A]].",
        Err("two final verdicts disagree"),
    ),
    (
        "an echoed instruction before the verdict",
        "You asked me to output \"[[A]]\" if assistant A is better and \"[[B]]\" if assistant B \
         is better.\n\nB handles the empty input; A crashes on it.\n\n[[B]]",
        Ok("B"),
    ),
    (
        "the scale recited, then the verdict",
        "Labels: [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]].\nMy final verdict is [[B>A]].",
        Ok("B>A"),
    ),
    (
        "a verdict inside a code block",
        "Both run; B is faster.\n\n```\n[[B>A]]\n```",
        Ok("B>A"),
    ),
    (
        "a code block and a different verdict outside it",
        "```text\n[[A]]\n```\n\nOn second thought the other one: [[B]]",
        Err("no final verdict settles them"),
    ),
    (
        "only echoes",
        "Respond with [[A]], [[B]] or [[C]].",
        Err("never count"),
    ),
];

#[test]
fn the_corpus_of_multi_label_shapes() {
    for (name, text, want) in CORPUS {
        let got = parse_as(text, OutputFormat::Auto);
        match (want, &got) {
            (Ok(label), Ok(r)) => {
                let arbiter::verdict::Reading::Pairwise(v) = r.reading else {
                    panic!("{name}: {r:?}")
                };
                assert_eq!(v.label(), *label, "{name}");
            }
            (Err(words), Err(e)) => assert!(e.to_string().contains(words), "{name}: {e}"),
            _ => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        // The benchmark rule reads none of the multi-label ones.
        let distinct: std::collections::BTreeSet<&str> = text
            .match_indices("[[")
            .filter_map(|(i, _)| text[i + 2..].split("]]").next())
            .collect();
        if distinct.len() > 1 {
            assert!(
                parse_as(text, OutputFormat::Arena5).is_err(),
                "{name}: the ArenaHard rule reads one of several labels"
            );
        }
    }
}

#[test]
fn arbiter_parse_shows_the_rule_and_takes_json() {
    let run = |args: &[&str], input: &str| {
        let args: Vec<&str> = std::iter::once("parse")
            .chain(args.iter().copied())
            .collect();
        ok_text(&args, Some(input))
    };
    let text = CORPUS[0].1;
    let json: serde_json::Value =
        serde_json::from_str(&run(&["--json"], text)).expect("--json prints JSON");
    assert_eq!(json["verdict"], "A>>B");
    assert_eq!(json["rule"], "final_verdict");
    let human = run(&[], text);
    assert!(human.contains("verdict   A>>B"), "{human}");
    assert!(human.contains("read by   several labels"), "{human}");

    let torn = run(&["--json"], CORPUS[3].1);
    let json: serde_json::Value = serde_json::from_str(&torn).expect("JSON");
    assert!(json["verdict"].is_null(), "{torn}");
    assert!(json["conflicting"]
        .as_str()
        .is_some_and(|l| l.contains("[[A>B]], [[B>A]]")));
    // The benchmark's own rule is one --format away.
    let arena = run(&["--json", "--format", "arena5"], CORPUS[0].1);
    let json: serde_json::Value = serde_json::from_str(&arena).expect("JSON");
    assert!(json["verdict"].is_null(), "{arena}");
}
