//! The `arbiter` binary run as a user runs it from a shell: arguments, optional standard input,
//! and `ARBITER_ANNOTATOR=tester` so that decisions carry a known name.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `arbiter ARGS`, feeding `stdin` (or nothing), and returns what it printed.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .env("ARBITER_ANNOTATOR", "tester")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the arbiter binary runs");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin accepts input");
    drop(pipe);
    child
        .wait_with_output()
        .expect("the arbiter binary finishes")
}

/// Runs `arbiter ARGS` (which must succeed) and returns its standard output.
pub fn ok_text(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "arbiter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("arbiter prints UTF-8")
}

/// Runs `arbiter ARGS` (which must succeed) and parses the JSON it prints.
pub fn ok_json(args: &[&str]) -> Value {
    let text = ok_text(args, None);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("arbiter {args:?} printed no JSON ({e}): {text}"))
}
