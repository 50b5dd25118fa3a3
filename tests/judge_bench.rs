//! JudgeBench (ScalerLab/JudgeBench, arXiv 2410.12784; not OpenCompass's JudgerBenchV2) end to
//! end: its pairs and judge output files load through `arbiter::dataset::load` (detected,
//! forced, gzipped, as a folder of several judges), and the JudgeBench score of the released
//! o1-mini Arena-Hard output on the GPT-4o pairs matches both an independent Python statement of
//! upstream's formula (`tests/judge_bench_reference.py`) and the paper's figures.
//! Fixtures: `tests/data/judge_bench/` (see its README).

use arbiter::dataset::{load, DatasetError, Format, LoadOptions};
use arbiter::metrics::judge_bench::{score, Games, JudgeBenchReport};
use arbiter::verdict::Outcome;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::cli::{ok_json, ok_text};

const O1_MINI: &str = "dataset=judgebench,response_model=gpt-4o-2024-05-13,judge_name=arena_hard,judge_model=o1-mini-2024-09-12.jsonl.gz";
const O1_MINI_JUDGE: &str = "arena_hard/o1-mini-2024-09-12";
/// The JudgeBench paper's row for the Arena-Hard judge with o1-mini on the GPT-4o pairs
/// (knowledge, reasoning, math, coding, overall), given to two decimals.
const PUBLISHED: [(&str, f64); 5] = [
    ("knowledge", 58.44),
    ("reasoning", 62.24),
    ("math", 82.14),
    ("coding", 78.57),
    ("overall", 65.71),
];

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/judge_bench")
        .join(rel)
}

fn group_score(r: &JudgeBenchReport, judge: &str, group: &str) -> (usize, usize, f64) {
    let j = r
        .judges
        .iter()
        .find(|j| j.judge == judge)
        .unwrap_or_else(|| panic!("no JudgeBench score for {judge}: {r:?}"));
    let g = if group == "overall" {
        &j.overall
    } else {
        j.groups
            .iter()
            .find(|g| g.group == group)
            .unwrap_or_else(|| panic!("no group {group}"))
    };
    (g.correct, g.pairs, g.score.expect("pairs were scored"))
}

/// Runs the Python statement of upstream's formula on files; `None` (and a loud note) when
/// python3 is missing.
fn reference(files: &[PathBuf]) -> Option<Value> {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) => {
            eprintln!(
                "\n\n!!! SKIPPED JudgeBench reference parity: python3 is not installed !!!\n\n"
            );
            return None;
        }
    }
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judge_bench_reference.py"))
        .args(files)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the reference prints JSON"))
}

#[test]
fn the_released_o1_mini_output_scores_as_published() {
    let path = data(O1_MINI);
    let ds = load(&path, &LoadOptions::default()).expect("the released file loads");
    assert_eq!(ds.format, Format::JudgeBench);
    assert_eq!(ds.items.len(), 350);
    assert_eq!(ds.judges(), [O1_MINI_JUDGE]);
    assert!(ds.items.iter().all(|i| i.judgments.len() == 2
        && !i.judgments[0].swapped
        && i.judgments[1].swapped
        && i.judgments[0]
            .output
            .as_deref()
            .is_some_and(|o| !o.is_empty())));

    let r = score(&ds.items, &ds.judges());
    assert_eq!(r.pairs, 350);
    assert_eq!(r.judges[0].games, Games::Both);
    let reference = reference(std::slice::from_ref(&path));
    for (group, published) in PUBLISHED {
        let (correct, pairs, ours) = group_score(&r, O1_MINI_JUDGE, group);
        assert_eq!(
            format!("{ours:.2}"),
            format!("{published:.2}"),
            "{group}: {ours} does not round to the paper's {published}"
        );
        if let Some(reference) = &reference {
            let theirs = &reference[O1_MINI][group];
            assert_eq!(theirs[0].as_u64(), Some(correct as u64), "{group} correct");
            assert_eq!(theirs[1].as_u64(), Some(pairs as u64), "{group} pairs");
            let theirs = theirs[2].as_f64().expect("a score");
            assert!(
                (ours - theirs).abs() < 1e-6,
                "{group}: {ours} vs reference {theirs}"
            );
        }
    }
}

#[test]
fn a_slice_of_the_pairs_loads_with_labels_groups_and_sources() {
    let path = data("pairs_gpt-4o_slice.jsonl");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let ds = load(&path, &LoadOptions::default()).expect("loads");
    assert_eq!(ds.format, Format::JudgeBench);
    assert_eq!(ds.items.len(), 32);
    assert_eq!(
        ds.categories(),
        ["coding", "knowledge", "math", "reasoning"]
    );
    for (line, item) in text.lines().zip(&ds.items) {
        let rec: Value = serde_json::from_str(line).expect("json");
        assert_eq!(item.id, rec["pair_id"].as_str().expect("id"));
        let gold = match rec["label"].as_str() {
            Some("A>B") => Outcome::A,
            Some("B>A") => Outcome::B,
            other => panic!("unexpected label {other:?}"),
        };
        assert_eq!(item.gold, Some(gold));
        assert_eq!(item.meta["source"], rec["source"]);
        assert_eq!(item.response_b.text, rec["response_B"].as_str().expect("B"));
        assert!(item.judgments.is_empty());
    }
    assert!(score(&ds.items, &ds.judges()).judges.is_empty());

    // Forced, and gzipped.
    let dir = tempfile::tempdir().expect("temp dir");
    let gz = dir.path().join("pairs.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, text.as_bytes()).expect("gzip");
    std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
    let forced = LoadOptions {
        format: Some(Format::JudgeBench),
        skip_bad_lines: false,
    };
    let again = load(&gz, &forced).expect("gzip loads");
    assert_eq!(again.items, ds.items);
}

#[test]
fn a_folder_of_two_judges_outputs_and_the_pairs_gives_two_judges_on_the_same_items() {
    let ds = load(&data("two_judges"), &LoadOptions::default()).expect("folder loads");
    assert_eq!(ds.format, Format::JudgeBench);
    let ids: Vec<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["syn-1", "syn-2", "syn-3", "syn-4"]);
    let mut judges = ds.judges();
    judges.sort();
    assert_eq!(
        judges,
        ["arena_hard/tiny-judge", "reward_model/tiny/reward"]
    );
    for item in &ds.items {
        assert_eq!(item.judgments.len(), 4, "{}", item.id);
    }
    let get = |id: &str| ds.get(id).expect("item");
    // A missing decision, a failed call, a tie: no verdict or a tie, with a reason.
    let syn2 = &get("syn-2").judgments;
    assert!(syn2[0].verdict.is_none() && syn2[0].problem.is_some());
    assert_eq!(syn2[1].verdict.map(|v| v.outcome), Some(Outcome::B));
    let syn3 = &get("syn-3").judgments;
    assert_eq!(syn3[0].verdict.map(|v| v.outcome), Some(Outcome::Tie));
    let syn4 = &get("syn-4").judgments;
    assert!(syn4[1].swapped && syn4[1].verdict.is_none() && syn4[1].problem.is_some());
    // The reward model's second game saw B first: its scores read in that order.
    let rm = get("syn-1")
        .judgments
        .iter()
        .find(|j| j.judge.starts_with("reward_model") && j.swapped)
        .expect("second game");
    assert_eq!(
        rm.output.as_deref(),
        Some("reward scores as shown to the model: A -1.0, B 2.5")
    );
    assert_eq!(rm.verdict.map(|v| v.outcome), Some(Outcome::A));

    let r = score(&ds.items, &ds.judges());
    let outputs: Vec<PathBuf> = [
        "two_judges/dataset=judgebench,response_model=synthetic,judge_name=arena_hard,judge_model=tiny-judge.jsonl",
        "two_judges/dataset=judgebench,response_model=synthetic,judge_name=reward_model,judge_model=tiny_reward.jsonl",
    ]
    .iter()
    .map(|f| data(f))
    .collect();
    let reference = reference(&outputs);
    for (judge, file, expected) in [
        ("arena_hard/tiny-judge", &outputs[0], 50.0),
        ("reward_model/tiny/reward", &outputs[1], 75.0),
    ] {
        assert_eq!(group_score(&r, judge, "overall").2, expected, "{judge}");
        let Some(reference) = &reference else {
            continue;
        };
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        for group in ["knowledge", "reasoning", "math", "coding", "overall"] {
            let theirs = reference[name][group][2].as_f64().expect("score");
            let ours = group_score(&r, judge, group).2;
            assert!(
                (ours - theirs).abs() < 1e-9,
                "{judge} {group}: {ours} vs {theirs}"
            );
        }
    }
}

#[test]
fn bad_records_and_conflicting_pairs_are_refused_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = r#"{"pair_id": "p1", "source": "livecodebench", "question": "q", "response_A": "a", "response_B": "b", "label": "A>B"}"#;
    let bad_label = good.replace("\"A>B\"", "\"better\"").replace("p1", "p2");
    let path = dir.path().join("broken.jsonl");
    std::fs::write(&path, format!("{good}\n{bad_label}\n")).expect("write");
    let err = load(&path, &LoadOptions::default()).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("broken.jsonl") && text.contains("line 2") && text.contains("\"label\""),
        "{text}"
    );

    let bad_game = good.replace(
        "}",
        r#", "judge_name": "j", "judgments": [{"decision": "A>B"}, {"decision": ["B>A"]}]}"#,
    );
    std::fs::write(&path, format!("{bad_game}\n")).expect("write");
    let text = load(&path, &LoadOptions::default())
        .expect_err("refused")
        .to_string();
    assert!(
        text.contains("line 1") && text.contains("judgments[1]") && text.contains("decision"),
        "{text}"
    );

    // Forcing the format on another format's file names the missing field.
    let native = dir.path().join("native.jsonl");
    std::fs::write(
        &native,
        r#"{"id": "x", "question": "q", "response_a": "1", "response_b": "2"}"#,
    )
    .expect("write");
    let forced = LoadOptions {
        format: Some(Format::JudgeBench),
        skip_bad_lines: false,
    };
    let text = load(&native, &forced).expect_err("refused").to_string();
    assert!(
        text.contains("line 1") && text.contains("\"pair_id\""),
        "{text}"
    );

    // The same pair id with other responses in two files of a folder.
    let folder = dir.path().join("pairs");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::write(folder.join("a.jsonl"), format!("{good}\n")).expect("write");
    std::fs::write(
        folder.join("b.jsonl"),
        format!("{}\n", good.replace("\"a\"", "\"other\"")),
    )
    .expect("write");
    match load(&folder, &LoadOptions::default()) {
        Err(e @ DatasetError::ConflictingPair { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("a.jsonl") && text.contains("b.jsonl") && text.contains("p1"),
                "{text}"
            );
        }
        other => panic!("expected ConflictingPair, got {other:?}"),
    }
}

/// Copies a fixture into a temporary folder, so that the journal `score` may open lands there.
fn copy_fixture(rel: &str, dir: &Path) -> PathBuf {
    let from = data(rel);
    let to = dir.join(from.file_name().expect("a name"));
    if from.is_dir() {
        std::fs::create_dir(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("fixture folder") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    } else {
        std::fs::copy(&from, &to).expect("copy");
    }
    to
}

#[test]
fn score_reports_the_judge_bench_score_overall_and_per_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = copy_fixture(O1_MINI, dir.path());
    let file = file.to_str().expect("utf-8 path");
    let report = ok_json(&["score", "--json", file]);
    let jb = &report["judge_bench"];
    assert_eq!(jb["pairs"], 350);
    let judge = &jb["judges"][0];
    assert_eq!(judge["judge"], O1_MINI_JUDGE);
    assert_eq!(judge["games"], "both");
    assert_eq!(judge["overall"]["correct"], 230);
    let overall = judge["overall"]["score"].as_f64().expect("score");
    assert!((overall - 100.0 * 230.0 / 350.0).abs() < 1e-9, "{overall}");
    let groups: Vec<(String, f64)> = judge["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().expect("name").to_string(),
                g["score"].as_f64().expect("score"),
            )
        })
        .collect();
    for ((name, ours), (published_name, published)) in groups.iter().zip(PUBLISHED) {
        assert_eq!(name, published_name);
        assert_eq!(format!("{ours:.2}"), format!("{published:.2}"), "{name}");
    }

    let text = ok_text(&["score", file], None);
    assert!(
        text.contains("JudgeBench (ScalerLab) over 350 labelled pairs"),
        "{text}"
    );
    let row = text
        .lines()
        .skip_while(|l| !l.starts_with("JudgeBench"))
        .find(|l| l.starts_with(O1_MINI_JUDGE))
        .expect("a JudgeBench row for the judge");
    for (_, published) in PUBLISHED {
        assert!(row.contains(&format!("{published:.2}")), "{row}");
    }
    assert!(row.contains("230/350"), "{row}");
    assert!(!text.contains("JudgerBenchV2"), "{text}");

    let folder = copy_fixture("two_judges", dir.path());
    let report = ok_json(&[
        "score",
        "--json",
        "--format",
        "judge-bench",
        folder.to_str().expect("utf-8"),
    ]);
    let scores: Vec<(String, f64)> = report["judge_bench"]["judges"]
        .as_array()
        .expect("judges")
        .iter()
        .map(|j| {
            (
                j["judge"].as_str().expect("name").to_string(),
                j["overall"]["score"].as_f64().expect("score"),
            )
        })
        .collect();
    assert_eq!(scores.len(), 2, "{scores:?}");
    assert!(scores.contains(&("arena_hard/tiny-judge".to_string(), 50.0)));
    assert!(scores.contains(&("reward_model/tiny/reward".to_string(), 75.0)));
}
