//! The remote load scenario, shared by `tests/remote_load.rs` and `benches/remote_load.rs`:
//! `arbiter run` with two remote judges of 128 concurrent requests each (256 streams at once)
//! against the fake server on 127.0.0.1, while this process reads the client's
//! `/proc/<pid>/status` (threads, VmRSS, VmHWM). The server runs in this process and the
//! client in its own, so the server's threads are not counted as the client's.

#![allow(dead_code)]

use super::fake_openai::{write_dataset, FakeServer, GOOD_KEY};
use super::journal_file;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Items in the dataset: with `--swap` each judge makes 2 requests per item.
pub const ITEMS: usize = 64;
/// Requests in flight per judge (two judges): 256 streams at once.
pub const PER_JUDGE: usize = 128;
/// Streams in flight at the peak.
pub const STREAMS: usize = 2 * PER_JUDGE;

/// What the client process used while the streams were open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The most threads seen at once.
    pub peak_threads: u64,
    /// Threads while all `STREAMS` requests were in flight at the server.
    pub threads_at_full_load: Option<u64>,
    /// The most resident memory seen, in KiB.
    pub peak_rss_kib: u64,
    /// The kernel's high-water mark of resident memory, in KiB (its last reading).
    pub hwm_kib: u64,
    /// Requests in flight at once, as the server counted them.
    pub max_in_flight: usize,
    /// Judgments in the journal afterwards.
    pub judgments: usize,
    pub exit_code: Option<i32>,
    pub wall: Duration,
}

/// `Threads`, `VmRSS` and `VmHWM` of process `pid`, when it still runs.
fn status(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Threads:")?, field("VmRSS:")?, field("VmHWM:")?))
}

/// Runs the scenario in `dir`; `pace` is how long the server waits before answering each
/// request, long enough for all of them to be open at once.
pub fn run(dir: &Path, arbiter: &Path, pace: Duration) -> Usage {
    let dataset = write_dataset(dir, ITEMS);
    let server = FakeServer::start();
    server.state.lock().unwrap().pace = pace;
    let url = server.base_url();
    let mut panel = String::new();
    for name in ["judge-a", "judge-b"] {
        panel.push_str(&format!(
            "[[judge]]\nname = \"{name}\"\nkind = \"remote\"\nbase_url = \"{url}\"\nmodel = \"{name}\"\napi_key_env = \"FAKE_GOOD_KEY\"\ntemplate = \"cj2-quick\"\nmax_tokens = 64\nmax_concurrency = {PER_JUDGE}\ntimeout_s = 30\n\n"
        ));
    }
    let panel_path = dir.join("panel.toml");
    std::fs::write(&panel_path, panel).expect("write the panel file");

    let started = Instant::now();
    let mut child = Command::new(arbiter)
        .args([
            "run",
            dataset.to_str().expect("a UTF-8 path"),
            "--panel",
            panel_path.to_str().expect("a UTF-8 path"),
            "--swap",
        ])
        .env("FAKE_GOOD_KEY", GOOD_KEY)
        .env("RUST_LOG", "warn")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("arbiter starts");
    let pid = child.id();
    let mut usage = Usage::default();
    let exit = loop {
        if let Some((threads, rss, hwm)) = status(pid) {
            usage.peak_threads = usage.peak_threads.max(threads);
            usage.peak_rss_kib = usage.peak_rss_kib.max(rss);
            usage.hwm_kib = usage.hwm_kib.max(hwm);
            let in_flight: usize = server.state.lock().unwrap().in_flight.values().sum();
            if in_flight >= STREAMS {
                usage.threads_at_full_load = Some(
                    usage
                        .threads_at_full_load
                        .map_or(threads, |t: u64| t.max(threads)),
                );
            }
        }
        if let Some(code) = child.try_wait().expect("wait for arbiter") {
            break code;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    usage.wall = started.elapsed();
    usage.exit_code = exit.code();
    usage.max_in_flight = server.state.lock().unwrap().max_in_flight.values().sum();
    usage.judgments =
        journal_file::judgments(&dataset.with_file_name("items.jsonl.arbiter-journal.jsonl")).len();
    usage
}
