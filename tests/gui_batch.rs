//! The app's batch-run window driven through egui_kittest against a fake OpenAI-compatible
//! server on 127.0.0.1: a panel file's judge over the whole dataset in both orders (through
//! an injected 500 that is retried), each judgment saved as it arrives and shown on the item,
//! a second start that finds everything done, and a run cancelled mid-way that stops asking
//! and leaves only whole judgments of finished items in the journal.

#[path = "common/app.rs"]
mod app;
mod common;

use app::{open, step_until};
use arbiter::gui::settings::Settings;
use arbiter::gui::ArbiterApp;
use common::fake_openai::{write_dataset, FakeServer, Fault, GOOD_KEY};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

const KEY_VAR: &str = "ARBITER_GUI_BATCH_KEY";

fn set_key() {
    static SET: Once = Once::new();
    // Before any run reads it; every test sets the same value.
    SET.call_once(|| std::env::set_var(KEY_VAR, GOOD_KEY));
}

fn harness() -> Harness<'static, ArbiterApp> {
    app::harness(Settings::default())
}

/// One remote judge, `judge-a`, `concurrency` requests at a time.
fn write_panel(dir: &Path, server: &FakeServer, concurrency: usize) -> PathBuf {
    let path = dir.join("panel.toml");
    std::fs::write(
        &path,
        format!(
            r#"[[judge]]
name = "judge-a"
kind = "remote"
base_url = "{}"
model = "judge-a"
api_key_env = "{KEY_VAR}"
template = "cj2-quick"
max_tokens = 64
max_concurrency = {concurrency}
retries = 3
"#,
            server.base_url()
        ),
    )
    .expect("write the panel file");
    path
}

fn journal_path(dataset: &Path) -> PathBuf {
    dataset.with_file_name("items.jsonl.arbiter-journal.jsonl")
}

/// Every journal line, each of which must be a whole JSON record.
fn journal(dataset: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal_path(dataset))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line {l:?}: {e}")))
        .collect()
}

/// How many judgments the journal holds per (judge, item, swapped).
fn counts(dataset: &Path) -> HashMap<(String, String, bool), usize> {
    let mut counts = HashMap::new();
    for r in journal(dataset).iter().filter(|r| r["type"] == "judgment") {
        let key = (
            r["judgment"]["judge"].as_str().unwrap_or("").to_string(),
            r["item"].as_str().unwrap_or("").to_string(),
            r["judgment"]["swapped"].as_bool().unwrap_or(false),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Opens the batch window from the Run menu.
fn open_batch_window(h: &mut Harness<'_, ArbiterApp>) {
    h.get_by_label("Run").click();
    h.run();
    h.get_by_label("Run a panel over the dataset…").click();
    h.run();
    assert!(h.state().show_batch);
}

fn finished(app: &ArbiterApp) -> bool {
    app.batch.run.as_ref().is_some_and(|r| r.is_finished())
}

#[test]
fn a_panel_runs_over_the_dataset_and_every_judgment_lands_once() {
    set_key();
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = write_dataset(dir.path(), 4);
    let server = FakeServer::start();
    server.inject("judge-a", &[Fault::ServerError]);
    let panel = write_panel(dir.path(), &server, 2);

    let mut h = harness();
    open(&mut h, &dataset);
    h.state_mut().settings.batch_panel = panel.display().to_string();
    open_batch_window(&mut h);
    // The panel file was read: its judge is listed with where it runs.
    h.get_by_label_contains("judge-a at http://127.0.0.1");
    h.get_by_label("Both orders (swap A and B)").click();
    h.run();
    assert!(h.state().batch.swap);
    h.get_by_label("Start").click();
    // Frames, not run(): a run in flight keeps repainting, so the UI does not settle until it
    // ends, and run() gives up after a few frames on a loaded machine.
    h.run_steps(2);
    assert!(
        h.state().batch.error.is_none(),
        "{:?}",
        h.state().batch.error
    );
    step_until(&mut h, "the run to finish", finished);

    // In the journal: every item in both orders, exactly once.
    let counts = counts(&dataset);
    assert_eq!(counts.len(), 8, "{counts:?}");
    for i in 0..4 {
        for swapped in [false, true] {
            let key = ("judge-a".to_string(), format!("q-{i:02}"), swapped);
            assert_eq!(counts.get(&key), Some(&1), "{key:?}: {counts:?}");
        }
    }
    // The 500 cost one extra request, counted as a retry.
    assert_eq!(server.seen().len(), 9);
    let run = h.state().batch.run.as_ref().expect("a run");
    let p = &run.progress.judges[0];
    assert_eq!((p.total, p.done, p.failed, p.retries), (8, 8, 0, 1));
    assert_eq!(run.saved, 8);
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    h.get_by_label("judged 8, failed 0, skipped 0 already in the journal");
    h.get_by_label_contains("8/8 done, 1 retries");

    // The judgments are the app's too: on the current item, in both orders, with its verdict.
    let session = h.state().session.as_ref().expect("open");
    let current = session.current.expect("an item on screen");
    let item = &session.review.items()[current];
    let mine: Vec<_> = item
        .judgments
        .iter()
        .filter(|j| j.judge == "judge-a")
        .collect();
    assert_eq!(mine.len(), 2, "{:?}", item.judgments);
    assert!(session.judges().contains(&"judge-a".to_string()));
    // Its card is on screen.
    assert!(h.query_all_by_label("judge-a").count() >= 1);

    // Started again: everything is already in the journal, nothing is asked.
    h.get_by_label("Start").click();
    h.run_steps(2);
    step_until(&mut h, "the second run to finish", finished);
    assert_eq!(server.seen().len(), 9, "nothing asked again");
    h.get_by_label("judged 0, failed 0, skipped 8 already in the journal");
    assert!(self::counts(&dataset).values().all(|&n| n == 1));
}

#[test]
fn a_cancelled_run_stops_and_leaves_only_whole_judgments() {
    set_key();
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = write_dataset(dir.path(), 6);
    let server = FakeServer::start();
    // Each answer waits before it streams, so the run is caught in the middle.
    server.state.lock().expect("state").pace = Duration::from_millis(300);
    let panel = write_panel(dir.path(), &server, 1);

    let mut h = harness();
    open(&mut h, &dataset);
    h.state_mut().settings.batch_panel = panel.display().to_string();
    open_batch_window(&mut h);
    h.get_by_label("Start").click();
    h.run_steps(2);
    step_until(&mut h, "a first judgment", |app| {
        app.batch.run.as_ref().is_some_and(|r| r.saved >= 1)
    });
    // The window can close; the run goes on, counted in the status bar.
    h.state_mut().show_batch = false;
    h.run_steps(2);
    if !finished(h.state()) {
        h.get_by_label_contains("batch: ");
    }
    h.state_mut().show_batch = true;
    h.run_steps(2);
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    step_until(&mut h, "the cancelled run to end", finished);

    let run = h.state().batch.run.as_ref().expect("a run");
    let done = run.progress.done();
    assert!(done < 6, "cancelled before the end: {done}");
    assert!(run.summary().contains("cancelled"), "{}", run.summary());
    // Every line of the journal is whole, and it holds exactly the judgments the app saved,
    // each once.
    let counts = counts(&dataset);
    assert_eq!(counts.len(), run.saved);
    assert_eq!(run.saved, done);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // No judgment for an item the run did not finish, in the journal or in the app.
    let session = h.state().session.as_ref().expect("open");
    for item in session.review.items() {
        let in_app = item.judgments.iter().any(|j| j.judge == "judge-a");
        let in_journal = counts.contains_key(&("judge-a".to_string(), item.id.clone(), false));
        assert_eq!(in_app, in_journal, "{}", item.id);
    }
    // The run stopped asking: the queue was not worked through.
    let asked = server.seen().len();
    assert!(asked < 6, "{asked} requests after a cancel");
    h.get_by_label_contains("cancelled: judgments in flight are not recorded");
}
