//! The core subcommands end to end, as a user runs them: inspect, disputes, annotate, score and
//! export on a small panel dataset, and the messages a user sees for bad input.

use serde_json::Value;
use std::path::{Path, PathBuf};

mod common;

use common::cli::{ok_json, run as arbiter};

/// Four items judged by three judges: p1 and p4 have a majority, p2 and p3 are disputes (p2
/// also has an unreadable j3 output), and j1 judged p4 in both orders, disagreeing with itself.
const PANEL: &str = r#"{"id":"p1","category":"math","question":"2+2?","model_a":"m1","response_a":"4","model_b":"m2","response_b":"5","judgments":[{"judge":"j1","verdict":"A"},{"judge":"j2","verdict":"A>B"},{"judge":"j3","output":"Final answer: [[B]]"}]}
{"id":"p2","category":"math","question":"3+3?","model_a":"m2","response_a":"6","model_b":"m1","response_b":"7","judgments":[{"judge":"j1","verdict":"A"},{"judge":"j2","verdict":"B"},{"judge":"j3","output":"no idea"}]}
{"id":"p3","category":"writing","question":"Say hi","model_a":"m1","response_a":"hi","model_b":"m2","response_b":"hello","judgments":[{"judge":"j1","verdict":"tie"},{"judge":"j2","verdict":"A"},{"judge":"j3","verdict":"B"}]}
{"id":"p4","category":"writing","question":"Say bye","model_a":"m1","response_a":"bye","model_b":"m2","response_b":"ciao","judgments":[{"judge":"j1","verdict":"B"},{"judge":"j2","verdict":"B>>A"},{"judge":"j3","output":"{\"Choice\": \"Model B\"}"},{"judge":"j1","verdict":"A","swapped":true}]}
"#;

fn failure(args: &[&str]) -> String {
    let out = arbiter(args, None);
    assert!(!out.status.success(), "arbiter {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn panel_file(dir: &Path) -> PathBuf {
    let path = dir.join("panel.jsonl");
    std::fs::write(&path, PANEL).expect("temp dir is writable");
    path
}

fn accuracy_of(report: &Value, judge: &str) -> (f64, u64, u64, u64) {
    let row = report["accuracy"]
        .as_array()
        .expect("accuracy is a list")
        .iter()
        .find(|r| r["judge"] == judge)
        .unwrap_or_else(|| panic!("no accuracy row for {judge}"));
    (
        row["accuracy"].as_f64().expect("accuracy is a number"),
        row["correct"].as_u64().expect("correct is a count"),
        row["compared"].as_u64().expect("compared is a count"),
        row["unparsed"].as_u64().expect("unparsed is a count"),
    )
}

#[test]
fn review_a_panel_from_inspect_to_export() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = panel_file(dir.path());
    let data_s = data.to_str().expect("utf-8 temp path");

    let inspect = ok_json(&["inspect", data_s, "--json"]);
    assert_eq!(inspect["items"], 4);
    assert_eq!(inspect["summary"]["disputes"], 2);
    assert_eq!(inspect["summary"]["disputes_by_reason"]["no_majority"], 2);
    assert_eq!(inspect["summary"]["disputes_by_reason"]["unparseable"], 1);

    let queue = ok_json(&["disputes", data_s, "--json"]);
    let ids: Vec<&str> = queue
        .as_array()
        .expect("the queue is a list")
        .iter()
        .map(|d| d["item"].as_str().expect("item id"))
        .collect();
    assert_eq!(ids, ["p2", "p3"]);

    // Before any decision only p1 and p4 have final labels.
    let before = ok_json(&["score", data_s, "--json"]);
    assert_eq!(accuracy_of(&before, "j3"), (50.0, 1, 2, 0));

    // Settle both disputes, one of them twice (undo in between).
    let out = arbiter(
        &["annotate", data_s, "--stdin"],
        Some("p2 B first guess\np3 tie both greet\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        ["saved p2", "saved p3"]
    );
    assert!(
        arbiter(&["annotate", data_s, "--item", "p2", "--undo"], None)
            .status
            .success()
    );
    let out = arbiter(
        &[
            "annotate",
            data_s,
            "--item",
            "p2",
            "--verdict",
            "A",
            "--note",
            "6 is right",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let queue = ok_json(&["disputes", data_s, "--json", "--all"]);
    let decided: Vec<(String, String)> = queue
        .as_array()
        .expect("the queue is a list")
        .iter()
        .map(|d| {
            (
                d["item"].as_str().expect("item id").to_string(),
                d["decision"]["verdict"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("p2".to_string(), "A".to_string()),
            ("p3".to_string(), "tie".to_string())
        ]
    );

    // Final labels are now p1 A, p2 A (human), p3 tie (human), p4 B.
    let after = ok_json(&["score", data_s, "--json"]);
    assert_eq!(after["labelled"], 4);
    assert_eq!(accuracy_of(&after, "j1"), (100.0, 4, 4, 0));
    assert_eq!(accuracy_of(&after, "j2"), (50.0, 2, 4, 0));
    // j3's unreadable p2 output counts as wrong, as OpenCompass counts it.
    assert_eq!(accuracy_of(&after, "j3"), (25.0, 1, 4, 1));
    let consistency = &after["position_consistency"][0];
    assert_eq!(consistency["judge"], "j1");
    assert_eq!(consistency["pairs"], 1);
    assert_eq!(consistency["consistent"], 0);

    let out_path = dir.path().join("labels.jsonl");
    let out = arbiter(
        &[
            "export",
            data_s,
            "-o",
            out_path.to_str().expect("utf-8 path"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Vec<Value> = std::fs::read_to_string(&out_path)
        .expect("export wrote its file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each exported line is JSON"))
        .collect();
    let finals: Vec<(&str, &str)> = exported
        .iter()
        .map(|e| {
            (
                e["id"].as_str().expect("id"),
                e["final_label"]
                    .as_str()
                    .expect("every item has a final label now"),
            )
        })
        .collect();
    assert_eq!(
        finals,
        [("p1", "A"), ("p2", "A"), ("p3", "tie"), ("p4", "B")]
    );

    // The input file was never touched.
    assert_eq!(
        std::fs::read_to_string(&data).expect("input readable"),
        PANEL
    );
}

#[test]
fn bad_input_gets_a_message_that_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("temp dir is writable");
        p.to_str().expect("utf-8 path").to_string()
    };

    let missing = dir.path().join("nope.jsonl");
    let err = failure(&["inspect", missing.to_str().expect("utf-8 path")]);
    assert!(err.contains("nope.jsonl"), "{err}");

    let empty = write("empty.jsonl", b"");
    assert!(failure(&["inspect", &empty]).contains("empty"));

    let binary = write("blob.jsonl", &[0u8, 159, 146, 150, 0, 1, 2, 3, 255, 254]);
    assert!(failure(&["inspect", &binary]).contains("binary"));

    let unknown = write("odd.jsonl", b"{\"foo\": 1, \"bar\": 2}\n");
    let err = failure(&["inspect", &unknown]);
    assert!(err.contains("--format"), "{err}");

    let first = PANEL.lines().next().expect("a line");
    let dup = write("dup.jsonl", format!("{first}\n{first}\n").as_bytes());
    let err = failure(&["inspect", &dup]);
    assert!(err.contains("p1") && err.contains("twice"), "{err}");

    let label = write(
        "label.jsonl",
        PANEL
            .replacen("\"verdict\":\"A\"", "\"verdict\":\"A>>>B\"", 1)
            .as_bytes(),
    );
    let err = failure(&["inspect", &label]);
    assert!(err.contains("A>>>B") && err.contains("line 1"), "{err}");

    let malformed = write(
        "cut.jsonl",
        format!("{first}\n{{\"id\": \"x\",\n").as_bytes(),
    );
    let err = failure(&["inspect", &malformed]);
    assert!(
        err.contains("line 2") && err.contains("--skip-bad-lines"),
        "{err}"
    );
    let ok = ok_json(&["inspect", &malformed, "--skip-bad-lines", "--json"]);
    assert_eq!(ok["items"], 1);
    assert_eq!(ok["skipped_records"], 1);

    // A journal written for one dataset is refused for another.
    let data = panel_file(dir.path());
    let journal = dir.path().join("shared-journal.jsonl");
    let journal_s = journal.to_str().expect("utf-8 path");
    let out = arbiter(
        &[
            "annotate",
            data.to_str().expect("utf-8 path"),
            "--journal",
            journal_s,
            "--item",
            "p1",
            "--verdict",
            "A",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = write(
        "other.jsonl",
        &PANEL.as_bytes()[..PANEL.find('\n').expect("a line") + 1],
    );
    let err = failure(&["inspect", &other, "--journal", journal_s]);
    assert!(err.contains("belongs to another dataset"), "{err}");
}

#[test]
fn export_dataset_bakes_journal_judgments_with_their_run_into_a_native_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = panel_file(dir.path());
    let data_s = data.to_str().expect("utf-8 path");
    // A judgment produced in Arbiter, journalled as `arbiter judge` journals it.
    let mut review = arbiter::review::Review::open(&data, &Default::default()).expect("opens");
    let judgment = arbiter::dataset::Judgment {
        judge: "local:pairwise-ab".into(),
        verdict: Some("B".parse().expect("a verdict")),
        output: Some("... [[B]]".into()),
        swapped: false,
        problem: None,
        provenance: arbiter::dataset::Provenance::Journal,
        preference: None,
        run: Default::default(),
    };
    let run = serde_json::json!({"model": "tiny", "settings_key": "0123456789abcdef"});
    review
        .add_judgment("p3", judgment, run.as_object().expect("object").clone())
        .expect("journalled");
    drop(review);

    let out_path = dir.path().join("baked.jsonl");
    let out_s = out_path.to_str().expect("utf-8 path");
    let out = arbiter(&["export", data_s, "--as-dataset", "-o", out_s], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let baked: Vec<Value> = std::fs::read_to_string(&out_path)
        .expect("export wrote its file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(baked.len(), 4);
    let p3 = &baked[2]["judgments"];
    assert_eq!(p3.as_array().expect("judgments").len(), 4);
    assert_eq!(p3[3]["judge"], "local:pairwise-ab");
    assert_eq!(p3[3]["verdict"], "B");
    assert_eq!(p3[3]["run"]["settings_key"], "0123456789abcdef");
    assert!(baked[0]["judgments"][0].get("run").is_none());

    // The baked file is a dataset of its own: the judgment counts in the panel, with no journal.
    let inspect = ok_json(&["inspect", out_s, "--json"]);
    let judges: Vec<&str> = inspect["judges"]
        .as_array()
        .expect("judges")
        .iter()
        .map(|j| j["judge"].as_str().or(j.as_str()).expect("judge name"))
        .collect();
    assert!(judges.contains(&"local:pairwise-ab"), "{inspect}");
}
