//! Threads and memory of `arbiter run` with 256 remote streams open at once against the fake
//! OpenAI-compatible server on 127.0.0.1 (`cargo bench --bench remote_load`). The client runs
//! in its own process; its `/proc/<pid>/status` is read every 5 ms.
//!
//! Before the remote client moved to tokio (ureq, a thread per request, commit cee51ab) the
//! same command gave 258 threads with every stream open and a VmHWM of 93.5 MiB.

#[path = "../tests/common/fake_openai.rs"]
mod fake_openai;
#[path = "../tests/common/journal_file.rs"]
mod journal_file;
#[path = "../tests/common/remote_load.rs"]
mod remote_load;

use std::path::Path;
use std::time::Duration;

fn main() {
    let runs = 3;
    println!(
        "remote_load: {} streams ({} per judge, 2 judges), server pace 2 s, {runs} runs",
        remote_load::STREAMS,
        remote_load::PER_JUDGE
    );
    println!("before (ureq, a thread per request, cee51ab): 258 threads, VmHWM 93.5 MiB");
    for run in 1..=runs {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let u = remote_load::run(
            dir.path(),
            Path::new(env!("CARGO_BIN_EXE_arbiter")),
            Duration::from_secs(2),
        );
        println!(
            "run {run}: exit {:?}, {} judgments, {} in flight at most; threads: {} peak, {} with all streams open; memory: VmRSS peak {:.1} MiB, VmHWM {:.1} MiB; {:.2} s",
            u.exit_code,
            u.judgments,
            u.max_in_flight,
            u.peak_threads,
            u.threads_at_full_load.map_or("-".to_string(), |t| t.to_string()),
            u.peak_rss_kib as f64 / 1024.0,
            u.hwm_kib as f64 / 1024.0,
            u.wall.as_secs_f64()
        );
    }
}
