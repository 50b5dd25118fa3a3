//! Benchmark result folders and files loaded end to end: Arena-Hard-Auto (v0.1 and v2.0 folders,
//! several judges, swapped second games, nesting, missing answers) and AlpacaEval annotations
//! (a released annotations file reproducing its leaderboard's win rate, and the edge cases),
//! through `arbiter::dataset::load` and through the `arbiter` binary.

use arbiter::dataset::{load, Dataset, DatasetError, Format, Item, LoadOptions};
use arbiter::metrics::alpaca_eval::win_rates;
use arbiter::verdict::{Outcome, Verdict};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;

use common::cli::ok_json;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

const V2: &str = "arena_hard/v2.0/data/arena-hard-v2.0";
const V01: &str = "arena_hard/v0.1/data/arena-hard-v0.1";

fn open(path: &Path) -> Dataset {
    load(path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{} should load: {e}", path.display()))
}

fn load_err(path: &Path, opts: &LoadOptions) -> DatasetError {
    match load(path, opts) {
        Ok(d) => panic!(
            "{} should not load, got {} items",
            path.display(),
            d.items.len()
        ),
        Err(e) => e,
    }
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("fixture readable")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

/// A label as the item reads it when the judge saw the two sides the other way round.
fn turned(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            'A' => 'B',
            'B' => 'A',
            c => c,
        })
        .collect()
}

/// Copies a fixture tree into a fresh temporary folder (so that nothing runs in tests/data).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("temp dir writable");
    for entry in std::fs::read_dir(from).expect("fixture folder readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The model's answer text in an answer file of either version.
fn answer_in(file: &Path, qid: &str) -> String {
    let rec = jsonl(file)
        .into_iter()
        .find(|r| r.get("uid").or_else(|| r.get("question_id")) == Some(&Value::from(qid)))
        .unwrap_or_else(|| panic!("{} answers {qid}", file.display()));
    let content = match rec.get("messages") {
        Some(m) => m.as_array().and_then(|m| m.last()).expect("a last message")["content"].clone(),
        None => rec["choices"][0]["turns"]
            .as_array()
            .and_then(|t| t.last())
            .expect("a last turn")["content"]
            .clone(),
    };
    match content {
        Value::String(s) => s,
        other => other["answer"].as_str().expect("answer text").to_string(),
    }
}

/// Checks every record of every judgment file against the loaded items: one item per
/// (question, model), A = the baseline, B = the model, game 1 as recorded, game 2 swapped and
/// turned round, the judge's text as the output.
fn check_against_files(ds: &Dataset, bench: &Path) {
    let mut judged = 0;
    for judge_dir in std::fs::read_dir(bench.join("model_judgment")).expect("judges") {
        let judge_dir = judge_dir.expect("entry").path();
        let judge = judge_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name");
        for file in std::fs::read_dir(&judge_dir).expect("files") {
            for rec in jsonl(&file.expect("entry").path()) {
                judged += 1;
                let qid = rec
                    .get("uid")
                    .or_else(|| rec.get("question_id"))
                    .and_then(Value::as_str)
                    .expect("question id");
                let model = rec["model"].as_str().expect("model");
                let item = ds
                    .get(&format!("{qid}/{model}"))
                    .unwrap_or_else(|| panic!("item {qid}/{model}"));
                assert_eq!(item.response_b.model, model);
                let baseline = &item.response_a.model;
                if let Some(b) = rec.get("baseline").and_then(Value::as_str) {
                    assert_eq!(baseline, b);
                }
                let answers = bench.join("model_answer");
                assert_eq!(
                    item.response_a.text,
                    answer_in(&answers.join(format!("{baseline}.jsonl")), qid)
                );
                assert_eq!(
                    item.response_b.text,
                    answer_in(&answers.join(format!("{model}.jsonl")), qid)
                );
                let mine: Vec<_> = item.judgments.iter().filter(|j| j.judge == judge).collect();
                assert_eq!(mine.len(), 2, "{qid}/{model} by {judge}");
                for (g, (j, swapped)) in mine.iter().zip([false, true]).enumerate() {
                    let game = &rec["games"][g];
                    assert_eq!(j.swapped, swapped);
                    let text = match &game["judgment"] {
                        Value::String(s) => s.clone(),
                        other => other["answer"].as_str().expect("answer").to_string(),
                    };
                    assert_eq!(j.output.as_deref(), Some(text.as_str()));
                    match game["score"].as_str() {
                        Some(label) => {
                            let want = if swapped {
                                turned(label)
                            } else {
                                label.to_string()
                            };
                            let want: Verdict = want.parse().expect("a label");
                            assert_eq!(j.verdict, Some(want), "{qid}/{model} game {}", g + 1);
                        }
                        None => {
                            assert!(j.verdict.is_none());
                            let why = j.problem.as_ref().expect("a problem").describe();
                            assert!(why.contains("recorded no verdict"), "{why}");
                        }
                    }
                }
            }
        }
    }
    let total: usize = ds.items.iter().map(|i| i.judgments.len()).sum();
    assert_eq!(
        total,
        2 * judged,
        "every game of every record, nothing else"
    );
}

#[test]
fn arena_hard_v2_two_judge_folders_judge_the_same_items() {
    let bench = data(V2);
    let ds = open(&bench);
    assert_eq!(ds.format, Format::ArenaHard);
    assert_eq!(ds.judges(), ["gemini-2.5", "gpt-4.1"]);
    // deepseek-r1 has no answer to the creative-writing question and so no judgment of it.
    assert_eq!(ds.items.len(), 7);
    for item in &ds.items {
        assert_eq!(item.judges(), ["gemini-2.5", "gpt-4.1"], "{}", item.id);
        assert_eq!(item.judgments.len(), 4);
    }
    check_against_files(&ds, &bench);

    let questions = jsonl(&bench.join("question.jsonl"));
    for item in &ds.items {
        let qid = item.meta["question_id"].as_str().expect("question id");
        let q = questions
            .iter()
            .find(|q| q["uid"] == qid)
            .expect("question");
        assert_eq!(item.question(), q["prompt"].as_str().expect("prompt"));
        assert_eq!(item.category.as_deref(), q["category"].as_str());
        assert_eq!(item.meta["subcategory"], q["subcategory"]);
        // v2.0's baselines by category (utils/judge_utils.py).
        let want = if q["category"] == "creative_writing" {
            "gemini-2.0-flash-001"
        } else {
            "o3-mini-2025-01-31"
        };
        assert_eq!(item.response_a.model, want, "{}", item.id);
    }
    // The fixture records one game without a label: a judgment with no verdict.
    let unlabelled = ds
        .items
        .iter()
        .flat_map(|i| &i.judgments)
        .filter(|j| j.verdict.is_none())
        .count();
    assert_eq!(unlabelled, 1);
}

#[test]
fn arena_hard_v01_as_first_released_reads_turns_and_the_configured_baseline() {
    let bench = data(V01);
    let ds = open(&bench);
    assert_eq!(ds.format, Format::ArenaHard);
    assert_eq!(ds.judges(), ["gpt-4-1106-preview"]);
    assert_eq!(ds.items.len(), 8);
    check_against_files(&ds, &bench);
    let questions = jsonl(&bench.join("question.jsonl"));
    for item in &ds.items {
        // No `baseline` in v0.1's records: config/judge_config.yaml's baseline_model.
        assert_eq!(item.response_a.model, "gpt-4-0314");
        assert_eq!(item.category.as_deref(), Some("arena-hard-v0.1"));
        let qid = item.meta["question_id"].as_str().expect("question id");
        let q = questions
            .iter()
            .find(|q| q["question_id"] == qid)
            .expect("question");
        assert_eq!(
            item.question(),
            q["turns"][0]["content"].as_str().expect("turn")
        );
        assert!(q["cluster"].is_string() && item.meta["cluster"] == q["cluster"]);
    }
}

#[test]
fn arena_hard_is_found_from_above_and_from_model_judgment() {
    let direct = open(&data(V2));
    let ids = |d: &Dataset| d.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    for from in [
        data("arena_hard/v2.0"),
        data("arena_hard/v2.0/data"),
        data(&format!("{V2}/model_judgment")),
    ] {
        let ds = open(&from);
        assert_eq!(ds.format, Format::ArenaHard, "{}", from.display());
        assert_eq!(ids(&ds), ids(&direct), "{}", from.display());
        assert_eq!(ds.items, direct.items);
    }
    let forced = LoadOptions {
        format: Some(Format::ArenaHard),
        skip_bad_lines: false,
    };
    assert_eq!(
        load(&data("arena_hard/v0.1"), &forced)
            .expect("forced")
            .items
            .len(),
        8
    );

    // Two benchmarks below: which one is meant is not guessed.
    let err = load_err(&data("arena_hard"), &LoadOptions::default());
    let text = err.to_string();
    assert!(
        matches!(err, DatasetError::AmbiguousArenaHard { .. }),
        "{text}"
    );
    assert!(
        text.contains("arena-hard-v0.1") && text.contains("arena-hard-v2.0"),
        "{text}"
    );
    // A judgment file alone points to its folder.
    let file = data(&format!("{V2}/model_judgment/gpt-4.1/qwq-32b.jsonl"));
    let err = load_err(&file, &LoadOptions::default());
    assert!(matches!(err, DatasetError::ArenaHardFile { .. }), "{err}");
    assert!(err.to_string().contains("question.jsonl"), "{err}");
    // --format arena-hard on a folder without the layout says what is expected.
    let err = load_err(&data("opencompass"), &forced);
    assert!(matches!(err, DatasetError::NotArenaHard { .. }), "{err}");
}

#[test]
fn arena_hard_missing_answers_and_questions_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bench = dir.path().join("arena-hard-v2.0");
    copy_tree(&data(V2), &bench);
    let qwq = bench.join("model_answer/qwq-32b.jsonl");
    let answers = jsonl(&qwq);
    let dropped = answers[0]["uid"].as_str().expect("uid").to_string();
    let kept: Vec<String> = answers[1..].iter().map(Value::to_string).collect();
    std::fs::write(&qwq, kept.join("\n") + "\n").expect("write");

    let err = load_err(&bench, &LoadOptions::default());
    let DatasetError::BadLine { path, line, reason } = &err else {
        panic!("expected a bad line, got {err}");
    };
    // Judge folders are read in name order: gemini-2.5's qwq-32b file comes first.
    assert!(
        path.ends_with("model_judgment/gemini-2.5/qwq-32b.jsonl"),
        "{err}"
    );
    let first_judged = jsonl(path)
        .iter()
        .position(|r| r["uid"] == dropped.as_str())
        .expect("judged");
    assert_eq!(*line, first_judged + 1);
    assert!(
        reason.contains("\"model\"") && reason.contains(&dropped),
        "{err}"
    );

    let skip = LoadOptions {
        format: None,
        skip_bad_lines: true,
    };
    let ds = load(&bench, &skip).expect("the rest loads");
    assert_eq!(ds.items.len(), 6);
    assert!(ds.get(&format!("{dropped}/qwq-32b")).is_none());
    assert_eq!(ds.skipped.len(), 2, "{:?}", ds.skipped);
    assert!(
        ds.skipped[0].reason.contains("gemini-2.5"),
        "{:?}",
        ds.skipped
    );

    // A judgment of a question that question.jsonl lacks; the baseline's answer missing.
    std::fs::write(
        &qwq,
        answers
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("restore");
    let questions = bench.join("question.jsonl");
    let qs = jsonl(&questions);
    let gone = qs[0]["uid"].as_str().expect("uid").to_string();
    std::fs::write(
        &questions,
        qs[1..]
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("write");
    let err = load_err(&bench, &LoadOptions::default()).to_string();
    assert!(err.contains("\"uid\"") && err.contains(&gone), "{err}");
    std::fs::write(
        &questions,
        qs.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("restore");
    std::fs::remove_file(bench.join("model_answer/gemini-2.0-flash-001.jsonl")).expect("rm");
    let err = load_err(&bench, &LoadOptions::default()).to_string();
    assert!(
        err.contains("\"baseline\"") && err.contains("gemini-2.0-flash-001"),
        "{err}"
    );
}

#[test]
fn arena_hard_gzipped_files_load_the_same() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let bench = dir.path().join("b");
    copy_tree(&data(V2), &bench);
    fn gzip_all(dir: &Path) {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                gzip_all(&p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                let mut gz = flate2::write::GzEncoder::new(
                    std::fs::File::create(format!("{}.gz", p.display())).expect("create"),
                    flate2::Compression::default(),
                );
                gz.write_all(&bytes).expect("gzip");
                gz.finish().expect("finish");
                std::fs::remove_file(&p).expect("rm");
            }
        }
    }
    gzip_all(&bench);
    let ds = open(&bench);
    assert_eq!(ds.items, open(&data(V2)).items);
}

#[test]
fn arena_hard_folder_through_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bench = dir.path().join("arena-hard-v2.0");
    copy_tree(&data(V2), &bench);
    let b = bench.to_str().expect("utf-8 path");
    let inspect = ok_json(&["inspect", b, "--json"]);
    assert_eq!(inspect["items"], 7, "{inspect}");
    let score = ok_json(&["score", b, "--json"]);
    let judges: Vec<&str> = score["judges"]
        .as_array()
        .expect("judges")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(judges, ["gemini-2.5", "gpt-4.1"]);
    // Both judges judged every item in both orders.
    let pc = score["position_consistency"].as_array().expect("list");
    assert_eq!(pc.len(), 2, "{score}");
    assert!(
        score.get("alpaca_eval").is_none(),
        "no graded preferences here"
    );
}

// ---------------------------------------------------------------------------------------------
// AlpacaEval

const GAMED: &str =
    "alpaca_eval/results/gpt4_gamed/weighted_alpaca_eval_gpt4_turbo/annotations.json.gz";

/// The leaderboard row committed beside the annotations: column name → value.
fn leaderboard_row() -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(data("alpaca_eval/leaderboard_gpt4_gamed.csv"))
        .expect("leaderboard row");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let row: Vec<&str> = lines.next().expect("row").split(',').collect();
    assert_eq!(row[0], "gpt4_gamed");
    header
        .into_iter()
        .zip(row)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn col(row: &std::collections::HashMap<String, String>, name: &str) -> f64 {
    row[name].parse().expect("a number")
}

#[test]
fn alpaca_eval_annotations_reproduce_the_leaderboard_win_rate() {
    // results/gpt4_gamed/weighted_alpaca_eval_gpt4_turbo/annotations.json of tatsu-lab/alpaca_eval
    // at 2898342e, against the gpt4_gamed row of
    // src/alpaca_eval/leaderboards/data_AlpacaEval_2/weighted_alpaca_eval_gpt4_turbo_leaderboard.csv.
    let ds = open(&data(GAMED));
    assert_eq!(ds.format, Format::AlpacaEval);
    assert_eq!(ds.items.len(), 805);
    assert_eq!(ds.judges(), ["weighted_alpaca_eval_gpt4_turbo"]);
    let rates = win_rates(&ds.items);
    assert_eq!(rates.len(), 1);
    let w = &rates[0];
    assert_eq!(
        (w.baseline.as_str(), w.model.as_str()),
        ("gpt4_1106_preview", "gpt4_gamed")
    );
    let row = leaderboard_row();
    let close = |got: Option<f64>, name: &str| {
        let want = col(&row, name);
        let got = got.expect(name);
        assert!((got - want).abs() < 1e-6, "{name}: {got} vs {want}");
    };
    close(w.win_rate, "win_rate");
    close(w.standard_error, "standard_error");
    close(w.discrete_win_rate, "discrete_win_rate");
    assert_eq!(w.n_wins as f64, col(&row, "n_wins"));
    assert_eq!(w.n_wins_base as f64, col(&row, "n_wins_base"));
    assert_eq!(w.n_draws as f64, col(&row, "n_draws"));
    assert_eq!(w.n_total as f64, col(&row, "n_total"));

    // The same figure from the command line, next to the other metrics.
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("annotations.json.gz");
    std::fs::copy(data(GAMED), &copy).expect("copy");
    let report = ok_json(&["score", copy.to_str().expect("utf-8"), "--json"]);
    let section = &report["alpaca_eval"][0];
    assert_eq!(section["model"], "gpt4_gamed");
    let got = section["win_rate"].as_f64().expect("win rate");
    assert!((got - col(&row, "win_rate")).abs() < 1e-6, "{got}");
    let got = section["standard_error"].as_f64().expect("standard error");
    assert!((got - col(&row, "standard_error")).abs() < 1e-6, "{got}");
    let text = common::cli::run(&["score", copy.to_str().expect("utf-8")], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("AlpacaEval win rate"), "{text}");
    assert!(
        text.contains(&format!("{:.2}", col(&row, "win_rate"))),
        "{text}"
    );
}

#[test]
fn alpaca_eval_ties_nulls_and_weighted_preferences() {
    let folder = data("alpaca_eval/synthetic/results/model-x/chatgpt_fn");
    let file = folder.join("annotations.json");
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("a list");
    for ds in [open(&folder), open(&file)] {
        assert_eq!(ds.format, Format::AlpacaEval);
        assert_eq!(ds.items.len(), records.len());
        assert_eq!(ds.judges(), ["chatgpt_fn"]);
        let ids: std::collections::HashSet<&str> = ds.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            records.len(),
            "unique ids, repeated instructions too"
        );
        for (item, rec) in ds.items.iter().zip(&records) {
            check_alpaca_item(item, rec);
        }
    }

    // The same records as JSON Lines with no annotator named, and with the format forced.
    let jsonl_file = data("alpaca_eval/synthetic/preferences.jsonl");
    let forced = LoadOptions {
        format: Some(Format::AlpacaEval),
        skip_bad_lines: false,
    };
    for ds in [
        open(&jsonl_file),
        load(&jsonl_file, &forced).expect("forced"),
    ] {
        assert_eq!(ds.judges(), ["alpaca_eval"]);
        for (item, rec) in ds.items.iter().zip(&records) {
            check_alpaca_item(item, rec);
        }
    }

    // The win rate leaves out the record without a preference and reads 0 as a tie.
    let ds = open(&file);
    let w = &win_rates(&ds.items)[0];
    let prefs: Vec<f64> = records
        .iter()
        .filter_map(|r| r["preference"].as_f64())
        .map(|p| if p == 0.0 { 0.5 } else { p - 1.0 })
        .collect();
    let mean = prefs.iter().sum::<f64>() / prefs.len() as f64;
    assert!((w.win_rate.expect("rate") - 100.0 * mean).abs() < 1e-9);
    assert_eq!(w.n_total, prefs.len());
    assert_eq!(w.missing, records.len() - prefs.len());
    assert_eq!(w.n_draws, prefs.iter().filter(|p| **p == 0.5).count());
}

/// One AlpacaEval record's item: A = output_1, B = output_2, the verdict the nearer side.
fn check_alpaca_item(item: &Item, rec: &Value) {
    assert_eq!(
        item.question(),
        rec["instruction"].as_str().expect("instruction")
    );
    assert_eq!(item.response_a.text, rec["output_1"].as_str().expect("o1"));
    assert_eq!(item.response_b.text, rec["output_2"].as_str().expect("o2"));
    assert_eq!(
        item.response_a.model,
        rec["generator_1"].as_str().expect("g1")
    );
    assert_eq!(
        item.response_b.model,
        rec["generator_2"].as_str().expect("g2")
    );
    let j = &item.judgments[0];
    match rec["preference"].as_f64() {
        None => {
            assert!(j.verdict.is_none() && j.preference.is_none());
            assert!(j.problem.is_some());
        }
        Some(p) => {
            let p = if p == 0.0 { 1.5 } else { p };
            let want = if p == 1.5 {
                Outcome::Tie
            } else if p < 1.5 {
                Outcome::A
            } else {
                Outcome::B
            };
            assert_eq!(j.outcome(), Some(want), "{rec}");
            let graded = j.preference.expect("graded");
            assert!((graded - (p - 1.0)).abs() < 1e-12, "{rec}");
        }
    }
    match &rec["raw_completion"] {
        Value::Null => assert!(j.output.is_none()),
        Value::String(s) => assert_eq!(j.output.as_deref(), Some(s.as_str())),
        Value::Object(o) if o.contains_key("message") => {
            assert_eq!(j.output.as_deref(), o["message"]["content"].as_str());
        }
        other => {
            // Anything else is kept as readable JSON.
            let back: Value =
                serde_json::from_str(j.output.as_deref().expect("output")).expect("JSON");
            assert_eq!(&back, other);
        }
    }
}
