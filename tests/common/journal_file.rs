//! Reading a journal file back in tests, as replay reads it: one JSON record per line, a torn
//! or unreadable line skipped.

#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;

/// Every record of the journal at `path` (none when there is no file yet).
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The journal's judgment records.
pub fn judgments(path: &Path) -> Vec<Value> {
    records(path)
        .into_iter()
        .filter(|v| v["type"] == "judgment")
        .collect()
}
