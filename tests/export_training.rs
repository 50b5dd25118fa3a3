//! `arbiter export --as sft|dpo|preference` end to end: judgments made by remote judges (a
//! fake OpenAI-compatible server that keeps every request body) and by a real local model
//! (SmolLM2 GGUF, through `arbiter judge`), labels decided with `arbiter annotate`, and the
//! exports read back by Python's `datasets` in the column layout TRL's trainers document.
//! The SFT prompt must be the prompt the judge was given, byte for byte.

mod common;
#[path = "common/real_model.rs"]
mod real_model;

use common::cli::{ok_text, run};
use common::fake_openai::{write_dataset, FakeServer, GOOD_KEY};
use common::journal_file;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("the export exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// `arbiter export DATASET --as LAYOUT -o OUT --json EXTRA...`: the rows and the summary.
fn export(dataset: &Path, layout: &str, extra: &[&str]) -> (Vec<Value>, Value, PathBuf) {
    let out = dataset.with_file_name(format!("{layout}{}.jsonl", extra.join("")));
    let mut args = vec![
        "export",
        dataset.to_str().expect("utf-8 path"),
        "--as",
        layout,
        "-o",
        out.to_str().expect("utf-8 path"),
        "--json",
    ];
    args.extend_from_slice(extra);
    let summary: Value = serde_json::from_str(&ok_text(&args, None)).expect("a JSON summary");
    (lines(&out), summary, out)
}

const TRL_LAYOUT_CHECK: &str = r#"
import json, sys
from datasets import load_dataset

def messages_feature(feature, name):
    # datasets 4+ spells a list column List(...), older ones a Python list or Sequence.
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list):
        inner = feature[0]
    assert isinstance(inner, dict), f"{name}: not a list of messages: {feature!r}"
    assert set(inner) == {"role", "content"}, f"{name}: message keys {set(inner)}"
    for key in ("role", "content"):
        assert getattr(inner[key], "dtype", None) == "string", f"{name}.{key}: {inner[key]!r}"

def roles(messages):
    return [m["role"] for m in messages]

report = {}
for layout, path in zip(sys.argv[1::2], sys.argv[2::2]):
    ds = load_dataset("json", data_files=path, split="train")
    if layout == "sft":
        # TRL's conversational language-modelling type: one "messages" column.
        messages_feature(ds.features["messages"], "messages")
        for row in ds:
            r = roles(row["messages"])
            assert r[-1] == "assistant" and "assistant" not in r[:-1], r
    else:
        # TRL's conversational preference type with an explicit prompt.
        for column in ("prompt", "chosen", "rejected"):
            messages_feature(ds.features[column], column)
        for row in ds:
            assert roles(row["prompt"])[-1] == "user", row["prompt"]
            for column in ("chosen", "rejected"):
                assert roles(row[column])[-1] == "assistant", row[column]
    report[layout] = {"rows": ds.num_rows, "columns": ds.column_names,
                      "first": ds[0] if ds.num_rows else None}
print(json.dumps(report))
"#;

/// Loads each (layout, file) with `datasets.load_dataset("json", ...)` and checks TRL's
/// column layout; returns what Python saw, or `None` (said loudly) without python3.
fn load_with_datasets(files: &[(&str, &Path)]) -> Option<Value> {
    if Command::new("python3").arg("--version").output().is_err() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n!!! SKIPPED the datasets check of the exports: python3 is not installed !!!\n"
        );
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(TRL_LAYOUT_CHECK);
    for (layout, path) in files {
        cmd.arg(layout).arg(path);
    }
    let cache = tempfile::tempdir().expect("temp dir");
    let out = cmd
        .env("HF_DATASETS_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'datasets'"),
        "Python's `datasets` is not installed: `pip install datasets` (.ci/run does)"
    );
    assert!(
        out.status.success(),
        "the exports fail TRL's layout: {stderr}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("the check prints JSON"))
}

fn write_panel(dir: &Path, server: &FakeServer) -> PathBuf {
    let url = server.base_url();
    let mut text = String::new();
    for judge in ["judge-a", "judge-b"] {
        text.push_str(&format!(
            "[[judge]]\nname = \"{judge}\"\nkind = \"remote\"\nbase_url = \"{url}\"\nmodel = \"{judge}\"\napi_key_env = \"FAKE_GOOD_KEY\"\ntemplate = \"cj2-quick\"\n\n"
        ));
    }
    let path = dir.join("panel.toml");
    std::fs::write(&path, text).expect("write the panel file");
    path
}

/// The fake server's judges: `judge-a` always prefers Alpha; `judge-b` prefers Alpha on even
/// items and Beta on odd ones, so odd items are disputes. A person decides q-01 for B and
/// q-03 for A; q-05 and q-07 stay undecided.
#[test]
fn remote_judgments_export_with_the_request_s_messages_and_load_in_trl_s_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = write_dataset(dir.path(), 8);
    let data = dataset.to_str().expect("utf-8 path");
    let server = FakeServer::start();
    let panel = write_panel(dir.path(), &server);
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "run",
            data,
            "--panel",
            panel.to_str().expect("utf-8"),
            "--swap",
        ])
        .env("FAKE_GOOD_KEY", GOOD_KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .expect("arbiter runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok_text(
        &["annotate", data, "--item", "q-01", "--verdict", "B"],
        None,
    );
    ok_text(
        &["annotate", data, "--item", "q-03", "--verdict", "A"],
        None,
    );
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        2 * 2 * 8,
        "one request per judge, item and order"
    );
    let request = |judge: &str, item: &str, order: &str| -> Value {
        let swapped = order == "swapped";
        seen.iter()
            .find(|s| s.model == judge && s.item == item && s.swapped == swapped)
            .unwrap_or_else(|| panic!("no request from {judge} for {item} {order}"))
            .body["messages"]
            .clone()
    };

    // SFT: every critique matching its label, after exactly the messages its request carried.
    let (sft, summary, sft_path) = export(&dataset, "sft", &[]);
    assert_eq!(
        sft.len(),
        20,
        "4 even items x 2 judges x 2 orders, q-01 by b, q-03 by a"
    );
    for row in &sft {
        let (judge, item, order) = (
            row["judge"].as_str().expect("judge"),
            row["item"].as_str().expect("item"),
            row["order"].as_str().expect("order"),
        );
        let messages = row["messages"].as_array().expect("messages");
        let (assistant, prompt) = messages.split_last().expect("a prompt and an answer");
        let sent = request(judge, item, order);
        assert_eq!(
            Value::Array(prompt.to_vec()),
            sent,
            "{judge} {item} {order}"
        );
        let (ours, theirs) = (prompt[0]["content"].as_str(), sent[0]["content"].as_str());
        assert_eq!(
            ours.map(str::as_bytes),
            theirs.map(str::as_bytes),
            "byte for byte"
        );
        assert_eq!(assistant["role"], "assistant");
        let expected = common::fake_openai::verdict(judge, item, order == "swapped");
        assert_eq!(
            assistant["content"],
            format!("{{\"Choice\": \"{expected}\"}}")
        );
        assert_eq!(row["template"], "cj2-quick");
        assert_eq!(row["prompt_source"], "recorded");
    }
    for judge in ["judge-a", "judge-b"] {
        let tally = &summary["judges"][judge];
        assert_eq!(tally["kept"], 10, "{summary}");
        assert_eq!(tally["skipped"]["disagrees"], 2, "{summary}");
        assert_eq!(tally["skipped"]["no_label"], 4, "{summary}");
    }
    assert_eq!(summary["prompts"]["recorded"], 20);

    let (human, _, _) = export(&dataset, "sft", &["--human-only"]);
    let mut decided: Vec<(String, String)> = human
        .iter()
        .map(|r| (r["item"].to_string(), r["judge"].to_string()))
        .collect();
    decided.sort();
    decided.dedup();
    assert_eq!(
        decided,
        vec![
            ("\"q-01\"".to_string(), "\"judge-b\"".to_string()),
            ("\"q-03\"".to_string(), "\"judge-a\"".to_string())
        ]
    );
    assert!(human.iter().all(|r| r["label_source"] == "human"));

    // DPO: on the decided disputes, the judge that matched against the one that did not.
    let (dpo, summary, dpo_path) = export(&dataset, "dpo", &[]);
    assert_eq!(dpo.len(), 4, "{summary}");
    for row in &dpo {
        let item = row["item"].as_str().expect("item");
        let order = row["order"].as_str().expect("order");
        let (good, bad) = if item == "q-01" {
            ("judge-b", "judge-a")
        } else {
            ("judge-a", "judge-b")
        };
        assert_eq!(row["chosen_judge"], good);
        assert_eq!(row["rejected_judge"], bad);
        assert_eq!(row["prompt"], request(good, item, order));
        assert_eq!(
            row["prompt"],
            request(bad, item, order),
            "one prompt, two judges"
        );
        let side = |judge| {
            let v = common::fake_openai::verdict(judge, item, order == "swapped");
            serde_json::json!([{"role": "assistant", "content": format!("{{\"Choice\": \"{v}\"}}")}])
        };
        assert_eq!(row["chosen"], side(good));
        assert_eq!(row["rejected"], side(bad));
    }

    // Preference: responses ranked by the final label; undecided disputes left out.
    let (pref, summary, pref_path) = export(&dataset, "preference", &[]);
    assert_eq!(pref.len(), 6, "{summary}");
    assert_eq!(summary["items_skipped"]["no_label"], 2);
    let q01 = pref.iter().find(|r| r["item"] == "q-01").expect("q-01");
    assert_eq!(
        q01["chosen"],
        serde_json::json!([{"role": "assistant", "content": "Beta answer for q-01."}])
    );
    assert_eq!(
        q01["prompt"],
        serde_json::json!([{"role": "user", "content": "Which answer to question q-01 is better?"}])
    );

    let Some(report) = load_with_datasets(&[
        ("sft", &sft_path),
        ("dpo", &dpo_path),
        ("preference", &pref_path),
    ]) else {
        return;
    };
    assert_eq!(report["sft"]["rows"], 20);
    assert_eq!(report["dpo"]["rows"], 4);
    assert_eq!(report["preference"]["rows"], 6);
    assert_eq!(report["sft"]["first"]["messages"], sft[0]["messages"]);
    assert_eq!(report["dpo"]["first"]["prompt"], dpo[0]["prompt"]);
}

/// A real local judge: `arbiter judge` on one demo item in both orders, a person deciding
/// the item as the judge did, and the exported prompt fed back to the same model with the
/// same settings: the model must write the same critique from the same number of prompt
/// tokens, which it does only if it is given the same prompt.
#[test]
fn a_local_judgment_exports_the_prompt_the_model_was_given() {
    let Some(model) = real_model::gguf("the local SFT export test") else {
        return;
    };
    let model = model.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = dir.path().join("demo.jsonl");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.jsonl"),
        &dataset,
    )
    .expect("copy the demo dataset");
    let data = dataset.to_str().expect("utf-8 path");
    let item = "demo-003";
    let judge_args = [
        "judge",
        data,
        "--model",
        model,
        "--items",
        item,
        "--template",
        "cj2-quick",
        "--max-new-tokens",
        "40",
        "--swap",
        "--quiet",
    ];
    let out = run(&judge_args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = dataset.with_file_name("demo.jsonl.arbiter-journal.jsonl");
    let records = journal_file::judgments(&journal);
    assert_eq!(records.len(), 2, "{records:?}");
    // The person agrees with the judge's original-order verdict (the answer grammar makes
    // sure there is one).
    let original = records
        .iter()
        .find(|r| !r["judgment"]["swapped"].as_bool().unwrap_or(false))
        .expect("the original order was judged");
    let verdict = original["judgment"]["verdict"].as_str().expect("a verdict");
    ok_text(
        &["annotate", data, "--item", item, "--verdict", verdict],
        None,
    );

    let (rows, summary, sft_path) = export(&dataset, "sft", &["--human-only"]);
    let ours = rows
        .iter()
        .find(|r| r["prompt_source"] == "recorded" && r["order"] == "original" && r["item"] == item)
        .unwrap_or_else(|| panic!("the new judgment is exported: {summary}"));
    let messages = ours["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    let prompt = messages[0]["content"].as_str().expect("text");
    assert_eq!(messages[1]["content"], original["judgment"]["output"]);

    // The same prompt as the template renders it for that item and order.
    let rendered = ok_text(
        &["prompts", "render", "cj2-quick", data, "--item", item],
        None,
    );
    assert_eq!(rendered, prompt);

    // The demo's own cj2-quick judgment of the item in that order predates recorded prompts:
    // rendered again from the unchanged template, it must come out as the recorded prompt.
    // It is either kept (its verdict matches the decision) or paired with the new one in a
    // DPO pair, which only a byte-identical prompt allows.
    let is_old =
        |r: &&Value| r["item"] == item && r["order"] == "original" && r["template"] == "cj2-quick";
    let old = rows
        .iter()
        .filter(is_old)
        .find(|r| r["prompt_source"] == "rerendered");
    let (dpo, dpo_summary, _) = export(&dataset, "dpo", &["--human-only"]);
    match (old, dpo.iter().find(is_old)) {
        (Some(old), _) => assert_eq!(old["messages"][0], messages[0]),
        (None, Some(pair)) => {
            assert_eq!(pair["prompt"][0], messages[0]);
            assert_eq!(pair["prompt_source"], "rerendered");
        }
        (None, None) => panic!(
            "the demo's cj2-quick judgment of {item} is neither kept nor paired: {summary} {dpo_summary}"
        ),
    }

    // Fed back to the model, the exported prompt gives the same critique from as many
    // prompt tokens.
    let mut chat = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "chat",
            "--model",
            model,
            "--max-new-tokens",
            "40",
            "--constrain",
            "cj2-quick",
            "--messages",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("arbiter chat runs");
    chat.stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(messages[..1].to_vec()).to_string().as_bytes())
        .expect("write the prompt");
    let reply = chat.wait_with_output().expect("arbiter chat finishes");
    let stderr = String::from_utf8_lossy(&reply.stderr);
    assert!(reply.status.success(), "{stderr}");
    let text = String::from_utf8(reply.stdout).expect("utf-8");
    assert_eq!(
        text.strip_suffix('\n').unwrap_or(&text),
        original["judgment"]["output"].as_str().expect("output")
    );
    let tokens = original["run"]["tokens"]["prompt"]
        .as_u64()
        .expect("tokens");
    assert!(
        stderr.contains(&format!("{tokens} prompt tokens")),
        "the judge saw {tokens} prompt tokens: {stderr}"
    );

    if let Some(report) = load_with_datasets(&[("sft", &sft_path)]) {
        assert_eq!(report["sft"]["rows"].as_u64(), Some(rows.len() as u64));
    }
}
