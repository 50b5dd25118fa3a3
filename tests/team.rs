//! Arbitration by a team, end to end through the `arbiter` binary: three annotators split the
//! disputes with an overlap (`arbiter assign`), each decides their own queue into their own
//! journal, `arbiter score` reports their agreement (checked against an independent Python
//! statement of Cohen's kappa and Krippendorff's alpha), items they disagree on are escalated
//! and have no final label until an adjudicator settles them, a second process deciding as
//! the same annotator is refused, and a journal from before teams is still read.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ITEMS: usize = 40;
const TEAM: [&str; 3] = ["ann", "bo", "cy"];

/// Forty items judged by two judges that disagree on every third item and on every fifth, so
/// most items are disputes and a few have a clean majority.
fn write_dataset(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for i in 0..ITEMS {
        let (v1, v2) = if i % 3 == 0 || i % 5 == 0 {
            ("A", "B")
        } else {
            ("A", "A")
        };
        let line = serde_json::json!({
            "id": format!("t{i:02}"),
            "question": format!("Question {i}"),
            "model_a": "m1", "response_a": format!("a{i}"),
            "model_b": "m2", "response_b": format!("b{i}"),
            "judgments": [{"judge": "j1", "verdict": v1}, {"judge": "j2", "verdict": v2}],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = dir.join("team.jsonl");
    std::fs::write(&path, text).expect("write the dataset");
    path
}

/// Runs `arbiter ARGS` as annotator `who` (none: no annotator in the environment at all).
fn arbiter(who: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    cmd.args(args)
        .env_remove("ARBITER_ANNOTATOR")
        .env_remove("USER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(who) = who {
        cmd.env("ARBITER_ANNOTATOR", who);
    }
    let mut child = cmd.spawn().expect("the arbiter binary runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts input");
    child.wait_with_output().expect("arbiter finishes")
}

fn ok(who: Option<&str>, args: &[&str], stdin: &str) -> String {
    let out = arbiter(who, args, stdin);
    assert!(
        out.status.success(),
        "arbiter {args:?} as {who:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(who: Option<&str>, args: &[&str]) -> Value {
    serde_json::from_str(&ok(who, args, "")).expect("JSON output")
}

/// Each annotator's verdict on an item: they mostly agree, but bo sees B where the item number
/// is divisible by 4 and cy says tie on every seventh, so the overlap has real disagreement.
fn verdict(who: &str, i: usize) -> &'static str {
    match who {
        "bo" if i.is_multiple_of(4) => "B",
        "cy" if i.is_multiple_of(7) => "tie",
        _ => {
            if i.is_multiple_of(2) {
                "A"
            } else {
                "B"
            }
        }
    }
}

fn index(id: &str) -> usize {
    id[1..].parse().expect("item ids are tNN")
}

/// `arbiter export DATA [options] -o DIR/FILE` as `who`, its rows keyed by their `key` field.
fn export_rows(
    who: Option<&str>,
    data: &Path,
    options: &[&str],
    out: &Path,
    key: &str,
) -> BTreeMap<String, Value> {
    let data = data.to_str().expect("utf-8 path");
    let out_arg = out.to_str().expect("utf-8");
    ok(
        who,
        &[&["export", data][..], options, &["-o", out_arg]].concat(),
        "",
    );
    std::fs::read_to_string(out)
        .expect("export written")
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).expect("a JSON row");
            (row[key].as_str().expect("key").to_string(), row)
        })
        .collect()
}

fn export(who: Option<&str>, data: &Path, dir: &Path) -> BTreeMap<String, Value> {
    export_rows(who, data, &[], &dir.join("labels.jsonl"), "id")
}

#[test]
fn three_annotators_split_decide_agree_and_an_adjudicator_settles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = write_dataset(dir.path());
    let d = data.to_str().expect("utf-8 path");

    // The split is deterministic for a seed and balanced, with a fifth of it doubled.
    let assign = ["assign", d, "--annotators", "ann,bo,cy", "--overlap", "0.5"];
    let printed = ok(None, &[&assign[..], &["--seed", "7"]].concat(), "");
    assert!(printed.contains("to 3 annotators"), "{printed}");
    let plan_path = dir.path().join("team.jsonl.arbiter/assignments.json");
    let first = std::fs::read(&plan_path).expect("the plan is beside the dataset");
    ok(None, &[&assign[..], &["--seed", "8"]].concat(), "");
    assert_ne!(std::fs::read(&plan_path).expect("plan"), first);
    ok(None, &[&assign[..], &["--seed", "7"]].concat(), "");
    assert_eq!(std::fs::read(&plan_path).expect("plan"), first);
    let plan: Value = serde_json::from_slice(&first).expect("the plan is JSON");
    let dealt = plan["items"].as_object().expect("items");
    let disputes = json(None, &["disputes", d, "--json"]);
    assert_eq!(dealt.len(), disputes.as_array().expect("list").len());
    let doubled = dealt
        .values()
        .filter(|p| p.as_array().expect("people").len() == 2)
        .count();
    assert_eq!(doubled, (dealt.len() as f64 * 0.5).round() as usize);

    // Each annotator decides their own queue, read back with `disputes --mine`.
    let mut decided: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for who in TEAM {
        let mine = json(Some(who), &["disputes", d, "--mine", "--json"]);
        let ids: Vec<String> = mine
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["item"].as_str().expect("item").to_string())
            .collect();
        assert!(!ids.is_empty(), "{who} got nothing");
        for id in &ids {
            assert!(dealt[id]
                .as_array()
                .expect("people")
                .iter()
                .any(|p| p == who));
        }
        let lines: String = ids
            .iter()
            .map(|id| format!("{id} {}\n", verdict(who, index(id))))
            .collect();
        let out = ok(Some(who), &["annotate", d, "--stdin"], &lines);
        assert_eq!(out.matches("saved ").count(), ids.len(), "{out}");
        let journal = dir
            .path()
            .join(format!("team.jsonl.arbiter/{who}.journal.jsonl"));
        assert!(
            journal.is_file(),
            "{who}'s decisions are in their own journal"
        );
        decided.insert(
            who.to_string(),
            ids.iter()
                .map(|id| (id.clone(), verdict(who, index(id)).to_string()))
                .collect(),
        );
        // Their queue is done now.
        let left = json(Some(who), &["disputes", d, "--mine", "--json"]);
        assert_eq!(left.as_array().expect("list").len(), 0);
    }
    // Nobody wrote decisions into the dataset's own journal.
    assert!(!dir.path().join("team.jsonl.arbiter-journal.jsonl").exists());

    // Agreement between the annotators, against the Python statement of the formulas.
    let report = json(None, &["score", d, "--json"]);
    let humans = &report["humans"];
    assert_eq!(humans["annotators"], serde_json::json!(TEAM));
    if let Some(reference) = python_reference(&decided) {
        for pair in humans["pairs"].as_array().expect("pairs") {
            let key = format!(
                "{}/{}",
                pair["judge_a"].as_str().expect("name"),
                pair["judge_b"].as_str().expect("name")
            );
            let want = &reference["pairs"][&key];
            assert_eq!(pair["items"], want[0], "{key}");
            assert_eq!(pair["agreed"], want[1], "{key}");
            assert_close(&pair["kappa"], &want[2], &key);
        }
        assert_eq!(humans["alpha"]["items"], reference["alpha"][0]);
        assert_close(&humans["alpha"]["alpha"], &reference["alpha"][1], "alpha");
        assert!(humans["alpha"]["alpha"].is_number());
    }
    let text = ok(None, &["score", d], "");
    assert!(text.contains("Agreement between annotators"), "{text}");
    assert!(text.contains("Krippendorff's alpha of the annotators (ann, bo, cy)"));

    // The escalation queue is exactly the doubled items whose two verdicts differ.
    let expected: Vec<String> = dealt
        .iter()
        .filter(|(id, people)| {
            let p = people.as_array().expect("people");
            p.len() == 2
                && verdict(p[0].as_str().expect("name"), index(id))
                    != verdict(p[1].as_str().expect("name"), index(id))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        !expected.is_empty(),
        "the fixture must produce a disagreement"
    );
    let escalated: Vec<String> = json(None, &["disputes", d, "--escalated", "--json"])
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["item"].as_str().expect("item").to_string())
        .collect();
    assert_eq!(escalated, expected);

    // An escalated item has no final label; the export shows both people's decisions.
    let target = &expected[0];
    let rows = export(None, &data, dir.path());
    assert_eq!(rows[target]["escalated"], true);
    assert!(rows[target]["final_label"].is_null());
    assert_eq!(rows[target]["decisions"].as_array().expect("list").len(), 2);
    // An item two people agree on takes their label.
    let (agreed, people) = dealt
        .iter()
        .find(|(id, p)| p.as_array().expect("people").len() == 2 && !expected.contains(id))
        .expect("some doubled item is agreed");
    let first = people[0].as_str().expect("name");
    assert_eq!(
        rows[agreed]["final_label"],
        verdict(first, index(agreed)),
        "{agreed}"
    );
    assert_eq!(rows[agreed]["escalated"], false);

    // The adjudicator settles it: their decision is the final label.
    let out = ok(
        Some("lead"),
        &[
            "annotate",
            d,
            "--adjudicate",
            "--item",
            target,
            "--verdict",
            "tie",
        ],
        "",
    );
    assert!(
        out.contains(&format!("settled {target}: tie by lead")),
        "{out}"
    );
    let rows = export(None, &data, dir.path());
    assert_eq!(rows[target]["final_label"], "tie");
    assert_eq!(rows[target]["label_source"], "human");
    assert_eq!(rows[target]["decision"]["adjudicator"], true);
    let queue = json(None, &["disputes", d, "--escalated", "--json"]);
    assert!(!queue
        .as_array()
        .expect("list")
        .iter()
        .any(|r| r["item"] == target.as_str()));
    // The adjudicator's decision does not count as a rating.
    let again = json(None, &["score", d, "--json"]);
    assert_eq!(again["humans"]["annotators"], serde_json::json!(TEAM));

    // Undo is a record too: the item is escalated again, without a final label.
    ok(
        Some("lead"),
        &["annotate", d, "--item", target, "--undo"],
        "",
    );
    let rows = export(None, &data, dir.path());
    assert!(rows[target]["final_label"].is_null());

    // Training data reads the same final labels: an escalated item is left out, an item the
    // annotators agree on is in, and one the adjudicator settles comes in with their label.
    let prefs = preference(&data, dir.path());
    assert!(
        !prefs.contains_key(target),
        "an escalated item has no label"
    );
    assert_eq!(prefs[agreed]["label"], verdict(first, index(agreed)));
    ok(
        Some("lead"),
        &[
            "annotate",
            d,
            "--adjudicate",
            "--item",
            target,
            "--verdict",
            "B",
        ],
        "",
    );
    let prefs = preference(&data, dir.path());
    assert_eq!(prefs[target]["label"], "B");
    assert_eq!(prefs[target]["chosen_model"], "m2");
}

/// `arbiter export --as preference --human-only`, by item.
fn preference(data: &Path, dir: &Path) -> BTreeMap<String, Value> {
    let options = ["--as", "preference", "--human-only"];
    export_rows(None, data, &options, &dir.join("rm.jsonl"), "item")
}

#[test]
fn deciding_needs_a_name_and_one_process_per_annotator() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = write_dataset(dir.path());
    let d = data.to_str().expect("utf-8 path");

    // No annotator anywhere: a clear error, nothing written.
    let out = arbiter(
        None,
        &["annotate", d, "--item", "t01", "--verdict", "A"],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("who is deciding?"), "{err}");
    assert!(err.contains("--annotator"), "{err}");
    assert!(!dir.path().join("team.jsonl.arbiter").exists());

    // A name that cannot be a file name is refused, naming the rule.
    let out = arbiter(
        None,
        &[
            "annotate",
            d,
            "--annotator",
            "../x",
            "--item",
            "t01",
            "--verdict",
            "A",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used"));

    // --annotator wins over the environment.
    ok(
        Some("env-name"),
        &[
            "annotate",
            d,
            "--annotator",
            "flag-name",
            "--item",
            "t01",
            "--verdict",
            "A",
        ],
        "",
    );
    assert!(dir
        .path()
        .join("team.jsonl.arbiter/flag-name.journal.jsonl")
        .is_file());

    // While another process holds ann's journal, ann cannot decide elsewhere; bo can.
    ok(
        Some("ann"),
        &["annotate", d, "--item", "t01", "--verdict", "A"],
        "",
    );
    let held = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("team.jsonl.arbiter/ann.journal.jsonl"))
        .expect("ann's journal exists");
    held.try_lock().expect("the test takes the lock");
    let out = arbiter(
        Some("ann"),
        &["annotate", d, "--item", "t02", "--verdict", "B"],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another Arbiter process"), "{err}");
    ok(
        Some("bo"),
        &["annotate", d, "--item", "t02", "--verdict", "B"],
        "",
    );
    drop(held);
    ok(
        Some("ann"),
        &["annotate", d, "--item", "t02", "--verdict", "B"],
        "",
    );

    // A journal from before teams (one file, `--journal`) is still read beside the team's.
    let old = dir.path().join("team.jsonl.arbiter-journal.jsonl");
    let o = old.to_str().expect("utf-8");
    ok(
        Some("old-hand"),
        &[
            "annotate",
            d,
            "--journal",
            o,
            "--item",
            "t03",
            "--verdict",
            "A",
        ],
        "",
    );
    ok(
        Some("ann"),
        &["annotate", d, "--item", "t03", "--verdict", "B"],
        "",
    );
    let rows = export(None, &data, dir.path());
    let who: Vec<&str> = rows["t03"]["decisions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["annotator"].as_str().expect("name"))
        .collect();
    assert_eq!(who, ["ann", "old-hand"]);
    assert_eq!(rows["t03"]["escalated"], true);
}

fn assert_close(got: &Value, want: &Value, what: &str) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{what}: {g} vs {w}"),
        _ => assert_eq!(got, want, "{what}"),
    }
}

/// The Python statement of the formulas on the same decisions; `None` (and a loud note) when
/// python3 is missing.
fn python_reference(decided: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Value> {
    if !Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!(
            "\n\n!!! SKIPPED the agreement reference check: python3 is not installed !!!\n\n"
        );
        return None;
    }
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/team_agreement_reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(serde_json::to_string(decided).expect("JSON").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the reference prints JSON"))
}
