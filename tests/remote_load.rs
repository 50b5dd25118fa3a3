//! 256 remote streams at once against the fake OpenAI-compatible server on 127.0.0.1: every
//! judgment arrives, and the client holds them with a handful of threads, not one per stream
//! (requests are tasks on the remote runtime). `benches/remote_load.rs` prints the numbers.

mod common;

use common::remote_load::{self, ITEMS, STREAMS};
use std::path::Path;
use std::time::Duration;

#[test]
fn two_hundred_fifty_six_streams_complete_on_a_bounded_number_of_threads() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let usage = remote_load::run(
        dir.path(),
        Path::new(env!("CARGO_BIN_EXE_arbiter")),
        Duration::from_millis(1500),
    );
    assert_eq!(usage.exit_code, Some(0), "{usage:?}");
    assert_eq!(
        usage.judgments,
        2 * 2 * ITEMS,
        "every stream ended in a judgment"
    );
    assert_eq!(
        usage.max_in_flight, STREAMS,
        "all streams were open at once: {usage:?}"
    );
    let at_full_load = usage
        .threads_at_full_load
        .expect("the client was sampled while every stream was open");
    // The main thread, the remote runtime's workers and a few helpers: a thread per stream
    // would be over 256.
    assert!(at_full_load <= 32, "{usage:?}");
    assert!(usage.peak_threads <= 32, "{usage:?}");
}
