//! The remote client on its async stack against the fake OpenAI-compatible server on
//! 127.0.0.1: a server that refuses the answer's shape gets the hint on what to change, a
//! cancel ends a request that waits on a silent server without waiting for its timeout, and
//! requests from many plain threads share the one remote runtime.

mod common;

use arbiter::engine::SamplingParams;
use arbiter::remote::{ApiKey, ChatRequest, Endpoint, EndpointSettings, RemoteError, RetryPolicy};
use common::fake_openai::{write_dataset, FakeServer, Fault, GOOD_KEY};
use common::journal_file;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "Which is better? Alpha answer for q-03. Beta answer for q-03.";

fn endpoint(server: &FakeServer, model: &str, timeout: Duration) -> Endpoint {
    Endpoint::new(
        EndpointSettings {
            base_url: server.base_url(),
            model: model.to_string(),
            timeout,
        },
        Some(ApiKey::new(GOOD_KEY)),
    )
}

#[test]
fn a_server_that_refuses_the_answer_shape_is_told_what_to_change() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dataset = write_dataset(dir.path(), 2);
    let server = FakeServer::start();
    server.state.lock().unwrap().refuse_constrained = Some(422);
    let panel = dir.path().join("panel.toml");
    std::fs::write(
        &panel,
        format!(
            "[[judge]]\nname = \"shaped\"\nkind = \"remote\"\nbase_url = \"{}\"\nmodel = \"judge-a\"\napi_key_env = \"FAKE_GOOD_KEY\"\ntemplate = \"cj2-quick\"\nmax_concurrency = 1\n",
            server.base_url()
        ),
    )
    .expect("write the panel file");
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "run",
            dataset.to_str().unwrap(),
            "--panel",
            panel.to_str().unwrap(),
        ])
        .env("FAKE_GOOD_KEY", GOOD_KEY)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("arbiter runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 422"), "{stderr}");
    assert!(
        stderr.contains("structured outputs are not supported"),
        "{stderr}"
    );
    assert!(
        stderr.contains("may not support") && stderr.contains("constrain = \"json_schema\""),
        "the hint names the mode sent: {stderr}"
    );
    // A refusal is not retried, and it is the item's error: both items were asked once.
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(seen.iter().all(|s| s.status == 422));
    let dataset_journal = dataset.with_file_name("items.jsonl.arbiter-journal.jsonl");
    assert!(journal_file::judgments(&dataset_journal).is_empty());
}

#[test]
fn a_cancel_ends_a_request_waiting_on_a_silent_server() {
    let server = FakeServer::start();
    server.inject("judge-a", &[Fault::Stall]);
    let endpoint = endpoint(&server, "judge-a", Duration::from_secs(30));
    let sampling = SamplingParams::default();
    let request = ChatRequest {
        prompt: PROMPT,
        sampling: &sampling,
        constraint: None,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let raise = cancel.clone();
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        raise.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let mut text = String::new();
    let result = endpoint.complete(
        &request,
        &RetryPolicy::default(),
        &cancel,
        &mut |t| text.push_str(t),
        &mut |_, _, _| panic!("nothing to retry"),
    );
    raiser.join().unwrap();
    assert_eq!(result.err(), Some(RemoteError::Cancelled));
    assert_eq!(text, "{\"Ch", "the first piece arrived before the stall");
    // The server stalls for 2.5 s and the timeout is 30 s: neither was waited for.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn requests_from_many_threads_share_the_remote_runtime() {
    let server = FakeServer::start();
    server.inject("judge-a", &[Fault::RateLimited("0"), Fault::CutMidJson]);
    let endpoint = Arc::new(endpoint(&server, "judge-a", Duration::from_secs(10)));
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                let sampling = SamplingParams::default();
                let request = ChatRequest {
                    prompt: PROMPT,
                    sampling: &sampling,
                    constraint: None,
                };
                endpoint.complete(
                    &request,
                    &policy,
                    &AtomicBool::new(false),
                    &mut |_| {},
                    &mut |_, _, _| {},
                )
            })
        })
        .collect();
    let completions: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().expect("every request completes"))
        .collect();
    for c in &completions {
        assert_eq!(c.text, "{\"Choice\": \"Model A\"}");
        assert_eq!(c.usage.map(|u| u.completion_tokens), Some(7));
    }
    let retried: u32 = completions.iter().map(|c| c.attempts - 1).sum();
    assert_eq!(
        retried, 2,
        "the 429 and the cut stream cost one attempt each"
    );
    assert_eq!(server.seen().len(), 18);
}
