//! `arbiter run` against a fake OpenAI-compatible server on 127.0.0.1 that streams chat
//! completions the way vLLM and llama.cpp's server do and injects faults on demand: 429 with
//! Retry-After, 500, a stream cut mid-JSON, a slow stream, a stalled stream, malformed SSE,
//! a refused API key, a prompt the server rejects. Whatever happens, every judgment that can be
//! made is in the journal exactly once, the others are reported per item, and no API key is
//! ever written anywhere.

mod common;

use common::fake_openai::{write_dataset, FakeServer, Fault, Seen, BAD_KEY, GOOD_KEY};
use common::journal_file;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const ITEMS: usize = 8;

/// `judge-a` (4 at a time, 1 s timeout), `judge-b` (2 at a time) and, when `locked`, a third
/// judge whose variable holds a key the server refuses.
fn write_panel(dir: &Path, server: &FakeServer, locked: bool) -> PathBuf {
    let url = server.base_url();
    let mut text = format!(
        r#"
[[judge]]
name = "judge-a"
kind = "remote"
base_url = "{url}"
model = "judge-a"
api_key_env = "FAKE_GOOD_KEY"
template = "cj2-quick"
max_tokens = 64
max_concurrency = 4
timeout_s = 1
retries = 6

[[judge]]
name = "judge-b"
kind = "remote"
base_url = "{url}"
model = "judge-b"
api_key_env = "FAKE_GOOD_KEY"
template = "cj2-quick"
max_concurrency = 2
"#
    );
    if locked {
        text.push_str(&format!(
            r#"
[[judge]]
name = "locked"
kind = "remote"
base_url = "{url}"
model = "locked"
api_key_env = "FAKE_BAD_KEY"
template = "cj2-quick"
max_concurrency = 1
"#
        ));
    }
    let path = dir.join("panel.toml");
    std::fs::write(&path, text).expect("write the panel file");
    path
}

fn arbiter(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    cmd.args(args)
        .env("FAKE_GOOD_KEY", GOOD_KEY)
        .env("FAKE_BAD_KEY", BAD_KEY)
        .env("RUST_LOG", "trace")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dataset: &Path, panel: &Path, extra: &[&str]) -> (Output, String, String) {
    let mut args = vec![
        "run",
        dataset.to_str().unwrap(),
        "--panel",
        panel.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = arbiter(&args).output().expect("arbiter runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn journal_path(dataset: &Path) -> PathBuf {
    dataset.with_file_name("items.jsonl.arbiter-journal.jsonl")
}

/// How many judgments the journal holds per (judge, item, swapped).
fn counts(dataset: &Path) -> HashMap<(String, String, bool), usize> {
    let mut counts = HashMap::new();
    for j in journal_file::judgments(&journal_path(dataset)) {
        let key = (
            j["judgment"]["judge"].as_str().unwrap().to_string(),
            j["item"].as_str().unwrap().to_string(),
            j["judgment"]["swapped"].as_bool().unwrap_or(false),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn item_ids() -> Vec<String> {
    (0..ITEMS).map(|i| format!("q-{i:02}")).collect()
}

#[test]
fn every_fault_is_survived_and_every_item_judged_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), ITEMS);
    let server = FakeServer::start();
    let panel = write_panel(dir.path(), &server, true);
    let faults = [
        Fault::RateLimited("1"),
        Fault::ServerError,
        Fault::CutMidJson,
        Fault::Slow,
        Fault::MalformedSse,
        Fault::Stall,
        Fault::RateLimited("0"),
        Fault::CutMidJson,
    ];
    server.inject("judge-a", &faults);
    server.state.lock().unwrap().rejected = vec![("judge-a".into(), "q-05".into())];

    let (out, stdout, stderr) = run(&dataset, &panel, &["--swap"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some judgments failed: {stderr}"
    );

    // Exactly once for everything that can be judged; nothing for what cannot.
    let judged = counts(&dataset);
    for id in item_ids() {
        for swapped in [false, true] {
            let a = judged
                .get(&("judge-a".into(), id.clone(), swapped))
                .copied();
            let b = judged
                .get(&("judge-b".into(), id.clone(), swapped))
                .copied();
            let locked = judged.get(&("locked".into(), id.clone(), swapped)).copied();
            assert_eq!(b, Some(1), "judge-b {id} swapped={swapped}: {stderr}");
            assert_eq!(locked, None, "the refused judge judged nothing");
            if id == "q-05" {
                assert_eq!(a, None, "the rejected item has no judgment");
            } else {
                assert_eq!(a, Some(1), "judge-a {id} swapped={swapped}: {stderr}");
            }
        }
    }
    assert_eq!(judged.len(), 2 * 2 * ITEMS - 2);

    // Every fault was met and each failing one cost exactly one extra request; the slow
    // stream was not cut short.
    let seen = server.seen();
    assert!(server.state.lock().unwrap().faults["judge-a"].is_empty());
    let a_requests = seen.iter().filter(|s| s.model == "judge-a").count();
    let failing = faults.iter().filter(|f| f.fails()).count();
    assert_eq!(a_requests, 2 * ITEMS + failing, "{seen:#?}");
    let slow = seen.iter().find(|s| s.fault == Some(Fault::Slow)).unwrap();
    assert_eq!(slow.status, 200);

    // Retry-After: 1 was honoured: the same request came back no sooner than a second later.
    let limited = seen
        .iter()
        .find(|s| s.fault == Some(Fault::RateLimited("1")))
        .unwrap();
    let again = seen
        .iter()
        .find(|s| {
            s.model == limited.model
                && s.item == limited.item
                && s.swapped == limited.swapped
                && s.at > limited.at
        })
        .expect("the rate-limited request was retried");
    assert!(again.at.duration_since(limited.at) >= Duration::from_secs(1));

    // Never more requests in flight than a judge allows.
    let max = server.state.lock().unwrap().max_in_flight.clone();
    assert!(max["judge-a"] <= 4, "{max:?}");
    assert!(max["judge-b"] <= 2, "{max:?}");
    assert_eq!(max["locked"], 1);

    // Errors that cannot be retried are reported per item, and named.
    assert!(
        stderr.contains("judge-a q-05 (A/B)") && stderr.contains("judge-a q-05 (B/A)"),
        "{stderr}"
    );
    assert!(stderr.contains("maximum context length"), "{stderr}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    for id in item_ids() {
        assert!(
            stderr.contains(&format!("locked {id} (A/B)")),
            "{id}: {stderr}"
        );
    }
    let locked_requests = seen.iter().filter(|s| s.model == "locked").count();
    assert_eq!(
        locked_requests, 1,
        "a refused key stops the judge after its first answer"
    );

    // The MoJ summary: judge-a and judge-b agree on even items; odd ones are split, and
    // `locked` is missing everywhere.
    assert!(
        stdout.contains("judge-a, judge-b, locked over 8 item(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("arbiter disputes"), "{stdout}");
    assert!(
        stdout.contains(&format!("arbiter {}", dataset.display())),
        "{stdout}"
    );

    // The records say who answered and how.
    let record = journal_file::judgments(&journal_path(&dataset))
        .into_iter()
        .find(|j| j["judgment"]["judge"] == "judge-b")
        .unwrap();
    let record_run = &record["run"];
    assert_eq!(record_run["engine"], "remote");
    assert_eq!(record_run["served_model"], "judge-b");
    assert_eq!(record_run["usage"]["prompt_tokens"], 42);
    assert_eq!(record_run["tokens"]["completion"], 7);
    assert_eq!(record_run["template"], "cj2-quick");
    assert!(
        record_run["timing"]["time_to_first_token_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(record_run["settings_key"].is_string());

    // No key anywhere: not in the journal, not on stdout, not in the (trace-level) log.
    let journal = std::fs::read_to_string(journal_path(&dataset)).unwrap();
    for key in [GOOD_KEY, BAD_KEY] {
        assert!(!journal.contains(key), "the journal holds an API key");
        assert!(!stdout.contains(key), "stdout shows an API key");
        assert!(!stderr.contains(key), "stderr shows an API key");
    }

    // A second run redoes nothing that is judged and tries the failures again.
    let before = server.seen().len();
    let (out, _, stderr) = run(&dataset, &panel, &["--swap"]);
    assert_eq!(out.status.code(), Some(1));
    let new: Vec<Seen> = server.seen()[before..].to_vec();
    assert!(
        new.iter()
            .all(|s| s.model == "locked" || (s.model == "judge-a" && s.item == "q-05")),
        "only what failed is asked again: {new:#?}"
    );
    assert!(
        stderr.contains("skipped 30 already in the journal"),
        "{stderr}"
    );
    assert_eq!(counts(&dataset).values().max(), Some(&1), "no duplicates");
}

#[test]
fn a_run_killed_mid_way_resumes_without_duplicates_or_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), ITEMS);
    let server = FakeServer::start();
    server.state.lock().unwrap().pace = Duration::from_millis(150);
    let panel = write_panel(dir.path(), &server, false);
    let mut child = arbiter(&[
        "run",
        dataset.to_str().unwrap(),
        "--panel",
        panel.to_str().unwrap(),
        "--swap",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("arbiter starts");
    // Wait for some, not all, judgments to be durable, then kill without warning.
    loop {
        let n = journal_file::judgments(&journal_path(&dataset)).len();
        if n >= 3 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let after_kill = journal_file::judgments(&journal_path(&dataset)).len();
    assert!(after_kill < 4 * ITEMS, "killed before the end");

    let (out, _, stderr) = run(&dataset, &panel, &["--swap"]);
    assert!(out.status.success(), "{stderr}");
    let counts = counts(&dataset);
    assert_eq!(counts.len(), 4 * ITEMS, "no gap: {counts:?}");
    assert!(counts.values().all(|&n| n == 1), "no duplicate: {counts:?}");
    assert!(
        stderr.contains(&format!("skipped {after_kill} already")),
        "{stderr}"
    );
}

#[test]
fn a_vanished_endpoint_stops_its_judge_and_every_item_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), ITEMS);
    // A port with nothing listening: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let panel = dir.path().join("panel.toml");
    std::fs::write(
        &panel,
        format!(
            "[[judge]]\nname = \"gone\"\nkind = \"remote\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"judge-a\"\ntemplate = \"cj2-quick\"\nretries = 1\nmax_concurrency = 2\n"
        ),
    )
    .unwrap();
    let (out, _, stderr) = run(&dataset, &panel, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(stderr.contains("gone stopped"), "{stderr}");
    assert!(journal_file::judgments(&journal_path(&dataset)).is_empty());
    for id in item_ids() {
        assert!(
            stderr.contains(&format!("gone {id} (A/B)")),
            "{id}: {stderr}"
        );
    }
}

#[test]
fn a_missing_key_variable_or_a_bad_panel_fails_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = write_dataset(dir.path(), ITEMS);
    let server = FakeServer::start();
    let panel = write_panel(dir.path(), &server, false);
    let out = arbiter(&[
        "run",
        dataset.to_str().unwrap(),
        "--panel",
        panel.to_str().unwrap(),
    ])
    .env_remove("FAKE_GOOD_KEY")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("FAKE_GOOD_KEY") && stderr.contains("not set"),
        "{stderr}"
    );
    assert!(server.seen().is_empty());

    std::fs::write(&panel, "[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h/v1\"\nmax_concurency = 2\n").unwrap();
    let (out, _, stderr) = run(&dataset, &panel, &[]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 6") && stderr.contains("max_concurency"),
        "{stderr}"
    );
}

#[test]
fn constrained_requests_carry_the_answer_shape_where_each_server_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = write_dataset(dir.path(), 2);
    let server = FakeServer::start();
    let url = server.base_url();
    let judge = |name: &str, template: &str, extra: &str| {
        format!(
            "[[judge]]\nname = \"{name}\"\nkind = \"remote\"\nbase_url = \"{url}\"\nmodel = \"{name}\"\napi_key_env = \"FAKE_GOOD_KEY\"\ntemplate = \"{template}\"\nmax_concurrency = 1\n{extra}\n"
        )
    };
    let panel = dir.path().join("panel.toml");
    std::fs::write(
        &panel,
        [
            judge("default", "cj2-quick", ""),
            judge(
                "object",
                "cj2-critical-thinking",
                "constrain = \"json_object\"",
            ),
            judge(
                "sglang",
                "pairwise-ab",
                "constrain = \"grammar\"\ngrammar_field = \"ebnf\"",
            ),
            judge(
                "vllm",
                "arena-5way",
                "constrain = \"grammar\"\ngrammar_field = \"structured_outputs.grammar\"",
            ),
            judge("free", "cj2-quick", "constrain = \"none\""),
            judge("prose", "pairwise-ab", ""),
        ]
        .concat(),
    )
    .expect("write the panel file");
    let (out, _, stderr) = run(&dataset, &panel, &[]);
    assert!(out.status.success(), "{stderr}");
    let seen = server.seen();
    let body = |model: &str| {
        seen.iter()
            .find(|s| s.model == model)
            .unwrap_or_else(|| panic!("{model} sent a request"))
            .body
            .clone()
    };
    let b = body("default");
    assert_eq!(b["response_format"]["type"], "json_schema");
    let schema = &b["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["required"], serde_json::json!(["Choice"]));
    assert_eq!(
        schema["properties"]["Choice"]["enum"],
        serde_json::json!(["Model A", "Model B"])
    );
    let b = body("object");
    assert_eq!(b["response_format"]["type"], "json_object");
    assert_eq!(
        b["response_format"]["schema"]["required"]
            .as_array()
            .map(Vec::len),
        Some(7)
    );
    let b = body("sglang");
    let gbnf = b["ebnf"].as_str().expect("a grammar in `ebnf`");
    assert!(
        gbnf.starts_with("root ::= text0 (\"[[A]]\" | \"[[B]]\" | \"[[C]]\")"),
        "{gbnf}"
    );
    assert!(b.get("response_format").is_none());
    let b = body("vllm");
    assert!(b["structured_outputs"]["grammar"]
        .as_str()
        .is_some_and(|g| g.contains("[[A>>B]]")));
    for free in ["free", "prose"] {
        let b = body(free);
        assert!(
            b.get("response_format").is_none() && b.get("grammar").is_none(),
            "{free}: {b}"
        );
    }
    // The journal says how each judge was constrained.
    let modes: HashMap<String, String> = journal_file::judgments(&journal_path(&dataset))
        .iter()
        .map(|r| {
            (
                r["judgment"]["judge"].as_str().unwrap().to_string(),
                r["run"]["constrain"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(modes["default"], "json_schema");
    assert_eq!(modes["object"], "json_object");
    assert_eq!(modes["sglang"], "grammar");
    assert_eq!(modes["free"], "none");
    assert_eq!(modes["prose"], "none");
}
