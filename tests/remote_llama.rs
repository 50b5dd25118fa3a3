//! `arbiter run` against a real OpenAI-compatible server on loopback: llama-cpp-python's
//! server (PyPI `llama-cpp-python[server]`) serving SmolLM2-135M-Instruct, the GGUF `.ci/run`
//! installs and names in ARBITER_TEST_GGUF. Without the variable or the package the test says
//! so loudly and does nothing.

#[path = "common/journal_file.rs"]
mod journal_file;
#[path = "common/real_model.rs"]
mod real_model;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn server_installed() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import llama_cpp.server.app, uvicorn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "\n\n!!! SKIPPED the real-server test: python3 cannot import llama_cpp.server; \
             install the PyPI package 'llama-cpp-python[server]==0.3.36' (.ci/run does) !!!\n\n"
        );
    }
    ok
}

/// The server process; killed when dropped, so a failing test leaves nothing behind.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(gguf: &Path, dir: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(gguf)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--model_alias",
                "smollm2",
                "--n_ctx",
                "4096",
                "--verbose",
                "false",
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("python3 starts the server");
        let mut server = Server { child, port, log };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        // Ready when GET /v1/models answers 200; a plain request over a socket is enough.
        let models_ok = |port: u16| -> bool {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!(
                "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            if s.write_all(request.as_bytes()).is_err() {
                return false;
            }
            let mut head = [0u8; 12];
            s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
        };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if models_ok(self.port) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the server did not come up: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_panel_judges_demo_items_through_llama_cpp_python() {
    let Some(gguf) = real_model::gguf("the real-server test") else {
        return;
    };
    if !server_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("demo.jsonl");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.jsonl"),
        &dataset,
    )
    .unwrap();
    let server = Server::start(&gguf, dir.path());
    // One request at a time: llama-cpp-python answers one at a time anyway, and concurrent
    // streams to it were seen cut short (`[DONE]` without a finish reason), which the client
    // rightly retries but which would only slow this test down.
    let panel = dir.path().join("panel.toml");
    std::fs::write(
        &panel,
        format!(
            "[[judge]]\nname = \"smollm2\"\nkind = \"remote\"\nbase_url = \"http://127.0.0.1:{}/v1\"\n\
             model = \"smollm2\"\ntemplate = \"cj2-quick\"\nmax_tokens = 48\nmax_concurrency = 1\n\
             constrain = \"json_object\"\n",
            server.port
        ),
    )
    .unwrap();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_arbiter"))
            .arg("run")
            .arg(&dataset)
            .arg("--panel")
            .arg(&panel)
            .args(["--limit", "3", "--swap"])
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .output()
            .expect("arbiter runs")
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stderr}\n{stdout}\nserver log:\n{}",
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
    assert!(
        stdout.contains("Mixture of Judges: smollm2 over 3 item(s)"),
        "{stdout}"
    );

    let journal = dir.path().join("demo.jsonl.arbiter-journal.jsonl");
    let records = journal_file::judgments(&journal);
    let mut per: HashMap<(String, bool), usize> = HashMap::new();
    for r in &records {
        *per.entry((
            r["item"].as_str().unwrap().to_string(),
            r["judgment"]["swapped"].as_bool().unwrap_or(false),
        ))
        .or_default() += 1;
        let run = &r["run"];
        assert_eq!(r["judgment"]["judge"], "smollm2");
        assert_eq!(run["engine"], "remote");
        // The server followed the JSON schema it was sent: the 135M model's answer is the
        // object it asks for, so every judgment has its verdict.
        assert_eq!(run["constrain"], "json_object");
        assert!(
            r["judgment"]["verdict"] == "A" || r["judgment"]["verdict"] == "B",
            "a verdict from the schema-constrained answer: {r}"
        );
        assert_eq!(run["served_model"], "smollm2");
        assert!(
            !r["judgment"]["output"].as_str().unwrap_or("").is_empty(),
            "the model wrote something: {r}"
        );
        assert!(run["timing"]["generated_tokens"].as_u64().unwrap() > 0);
        assert!(
            run["finish"] == "stop" || run["finish"] == "length",
            "{run}"
        );
    }
    assert_eq!(per.len(), 6, "3 items in 2 orders: {per:?}");
    assert!(per.values().all(|&n| n == 1), "{per:?}");

    // Resumed: nothing left to do, nothing asked of the server, nothing added.
    let again = run();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("judged 0, failed 0, skipped 6"), "{stderr}");
    assert_eq!(journal_file::judgments(&journal).len(), 6);

    // OpenAI's `json_schema` response format is one llama-cpp-python does not take: the item
    // fails with a message that says what was sent and what to set.
    let refused = dir.path().join("refused.toml");
    std::fs::write(
        &refused,
        std::fs::read_to_string(&panel)
            .unwrap()
            .replace("json_object", "json_schema"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("run")
        .arg(&dataset)
        .arg("--panel")
        .arg(&refused)
        .args(["--limit", "1", "--force"])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("arbiter runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("json_schema") && stderr.contains("constrain"),
        "{stderr}"
    );
    assert_eq!(
        journal_file::judgments(&journal).len(),
        6,
        "nothing recorded"
    );
}
