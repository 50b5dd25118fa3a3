//! The tokio runtime every remote request runs on: made on first use, once per process, with
//! a few threads of its own. A request is a task on it, so 256 streams open at once cost 256
//! tasks and two threads, not 256 threads; front ends (the app's UI thread least of all) never
//! drive the network themselves.

use super::error::RemoteError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::runtime::{Builder, Runtime};

/// Worker threads. Streams spend their time waiting; what runs is reading a JSON chunk and
/// feeding it to a parser, microseconds per token, so two keep up with hundreds of streams.
const WORKERS: usize = 2;
/// Threads for blocking work; reqwest resolves host names on them. Bounded so that many
/// requests to a slow resolver do not become many threads.
const BLOCKING_THREADS: usize = 8;
/// How often a waiting request looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The remote runtime, made on the first call.
pub fn runtime() -> Result<&'static Runtime, RemoteError> {
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .max_blocking_threads(BLOCKING_THREADS)
                .thread_name("arbiter-remote")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|reason| RemoteError::Runtime {
            reason: reason.clone(),
        })
}

/// Runs `future` on the remote runtime and waits for it on the calling thread: for a
/// synchronous caller on a thread of its own (never the UI thread). Must not be called from
/// inside a tokio runtime.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, RemoteError> {
    Ok(runtime()?.block_on(future))
}

/// Resolves once `cancel` is raised (looked at every 50 ms).
pub(crate) async fn cancelled(cancel: &AtomicBool) {
    while !cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(CANCEL_POLL).await;
    }
}

/// Waits for `wait` unless `cancel` is raised first; false when cancelled.
pub(crate) async fn sleep(wait: Duration, cancel: &AtomicBool) -> bool {
    tokio::select! {
        _ = cancelled(cancel) => false,
        _ = tokio::time::sleep(wait) => !cancel.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn one_runtime_serves_every_caller_and_a_raised_flag_cuts_a_wait_short() {
        let a = runtime().expect("a runtime") as *const Runtime;
        let b = runtime().expect("a runtime") as *const Runtime;
        assert_eq!(a, b, "made once");

        let cancel = Arc::new(AtomicBool::new(false));
        let raise = cancel.clone();
        let started = Instant::now();
        let slept = block_on(async move {
            let raiser = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                raise.store(true, Ordering::Relaxed);
            });
            let slept = sleep(Duration::from_secs(30), &cancel).await;
            let _ = raiser.await;
            slept
        })
        .expect("a runtime");
        assert!(!slept, "the wait was cancelled");
        assert!(started.elapsed() < Duration::from_secs(5));
        let full =
            block_on(sleep(Duration::from_millis(20), &AtomicBool::new(false))).expect("a runtime");
        assert!(full, "an uncancelled wait runs to its end");
    }
}
