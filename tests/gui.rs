//! The desktop app driven through egui_kittest, on the real app state: open a dataset, filter
//! to disputes, decide items from the keyboard, undo, stream a critique from a local model,
//! stop a run, and see errors as a banner. Journal records are read back from disk.

#[path = "common/app.rs"]
mod app;
mod common;

use app::{harness, open, step_until};
use arbiter::gui::session::Show;
use arbiter::gui::settings::Settings;
use common::journal_file;
use egui_kittest::kittest::Queryable;
use std::time::{Duration, Instant};

/// Five items, three judges: p1 and p5 have a majority, p2, p3 and p4 are disputes.
const PANEL: &str = r#"{"id":"p1","category":"math","question":"2+2?","model_a":"m1","response_a":"4","model_b":"m2","response_b":"5","judgments":[{"judge":"j1","verdict":"A"},{"judge":"j2","verdict":"A"},{"judge":"j3","verdict":"B"}]}
{"id":"p2","category":"math","question":"3+3?","model_a":"m2","response_a":"6","model_b":"m1","response_b":"7","judgments":[{"judge":"j1","verdict":"A"},{"judge":"j2","verdict":"B"},{"judge":"j3","output":"no idea"}]}
{"id":"p3","category":"writing","question":"Say hi","model_a":"m1","response_a":"hi","model_b":"m2","response_b":"hello","judgments":[{"judge":"j1","verdict":"tie"},{"judge":"j2","verdict":"A"},{"judge":"j3","verdict":"B"}]}
{"id":"p4","category":"writing","question":"Say bye","model_a":"m1","response_a":"bye","model_b":"m2","response_b":"ciao","judgments":[{"judge":"j1","verdict":"B"},{"judge":"j2","verdict":"A"}]}
{"id":"p5","category":"writing","question":"Say yes","model_a":"m1","response_a":"yes","model_b":"m2","response_b":"no","judgments":[{"judge":"j1","verdict":"A"},{"judge":"j2","verdict":"A"},{"judge":"j3","verdict":"A"}]}
"#;

#[test]
fn keyboard_arbitration_lands_exactly_in_the_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let mut h = harness(Settings::default());
    open(&mut h, &data);
    assert_eq!(h.state().session.as_ref().expect("open").visible().len(), 5);
    h.get_by_label("0 of 3 disputes decided");

    // Filter to disputes with the list's menu.
    h.get_by_label("show").click();
    h.run();
    h.get_by_label("disputed").click();
    h.run();
    let session = h.state().session.as_ref().expect("open");
    assert_eq!(session.filter.show, Show::Disputed);
    assert_eq!(session.visible().len(), 3);

    // Tab to each undecided dispute and decide it: A, B, tie.
    for key in [egui::Key::Num1, egui::Key::Num2, egui::Key::Num3] {
        h.key_press(egui::Key::Tab);
        h.run();
        h.key_press(key);
        h.run();
    }
    h.get_by_label("3 of 3 disputes decided");
    // Undo the last one.
    h.key_press(egui::Key::U);
    h.run();
    h.get_by_label("2 of 3 disputes decided");
    h.get_by_label_contains("saved: undo on p4");

    let records = journal_file::records(&dir.path().join("panel.jsonl.arbiter-journal.jsonl"));
    let kinds: Vec<(String, String, String)> = records
        .iter()
        .filter(|r| r["type"] != "header")
        .map(|r| {
            (
                r["type"].as_str().unwrap_or("").to_string(),
                r["item"].as_str().unwrap_or("").to_string(),
                r["verdict"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("decision".into(), "p2".into(), "A".into()),
            ("decision".into(), "p3".into(), "B".into()),
            ("decision".into(), "p4".into(), "tie".into()),
            ("undo".into(), "p4".into(), "".into()),
        ]
    );
    // The undo names the decision it withdraws.
    let undo = records.last().expect("records");
    let p4 = &records[records.len() - 2];
    assert_eq!(undo["undoes"], p4["seq"]);

    // Reopening replays the journal: two decisions stand.
    let mut again = harness(Settings::default());
    open(&mut again, &data);
    again.get_by_label("2 of 3 disputes decided");
}

#[test]
fn a_malformed_file_shows_a_readable_banner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("broken.jsonl");
    std::fs::write(&bad, "{\"id\": \"x\", \"question\": \n this is not json\n").expect("write");
    let mut h = harness(Settings::default());
    open(&mut h, &bad);
    assert!(h.state().session.is_none());
    let banner = &h.state().banners[0].message;
    assert!(
        banner.contains("cannot open") && banner.contains("broken.jsonl"),
        "{banner}"
    );
    h.get_by_label_contains("cannot open");
    // The banner can be dismissed.
    h.get_by_label("dismiss").click();
    h.run();
    assert!(h.state().banners.is_empty());
}

#[test]
fn a_critique_streams_field_by_field_is_saved_and_a_run_can_be_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let model = dir.path().join("scripted");
    let script = common::tiny_model::cj2_script();
    common::tiny_model::write_scripted(
        &model,
        &script.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let settings = Settings {
        model: model.display().to_string(),
        template: "cj2-critical-thinking".into(),
        device: "cpu".into(),
        max_new_tokens: 512,
        ..Settings::default()
    };
    let mut h = harness(settings);
    open(&mut h, &data);
    h.get_by_label("Run on this item (r)").click();
    h.run_steps(2);
    // Watch the live critique: fields must complete one after another while the run goes on.
    let mut complete_while_running = std::collections::BTreeSet::new();
    let start = Instant::now();
    loop {
        h.step();
        let app = h.state();
        if let Some(run) = &app.runner.active {
            for f in &run.critique().fields {
                if f.state == arbiter::critique::FieldState::Complete {
                    complete_while_running.insert(f.key.clone());
                }
            }
        } else if app.runner.loading.is_none() && app.runner.last.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run did not finish"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        complete_while_running.len() >= 2,
        "fields seen complete before the end: {complete_while_running:?}"
    );
    let last = h.state().runner.last.clone().expect("finished");
    assert!(last.saved);
    assert_eq!(last.verdict.map(|v| v.label()), Some("B"));
    h.run();
    // The judgment joined the item's judges, with its structured fields.
    let judge = "scripted:cj2-critical-thinking".to_string();
    h.get_by_label(&judge);
    h.get_by_label("Strengths of Model A");
    let journal = journal_file::records(&dir.path().join("panel.jsonl.arbiter-journal.jsonl"));
    let j = journal
        .iter()
        .find(|r| r["type"] == "judgment")
        .expect("a judgment record");
    assert_eq!(j["item"], "p1");
    assert_eq!(j["judgment"]["judge"], judge);
    assert_eq!(j["judgment"]["verdict"], "B");
    assert_eq!(j["run"]["critique"]["Choice"], "Model B");

    // Start another run and stop it at once: nothing more is saved.
    h.key_press(egui::Key::N);
    h.run();
    h.key_press(egui::Key::R);
    h.step();
    h.key_press(egui::Key::Escape);
    step_until(&mut h, "the stopped run to end", |app| {
        !app.runner.is_busy()
    });
    let saved = journal_file::records(&dir.path().join("panel.jsonl.arbiter-journal.jsonl"))
        .iter()
        .filter(|r| r["type"] == "judgment")
        .count();
    let last = h.state().runner.last.clone().expect("finished");
    if last.finish == arbiter::engine::FinishReason::Cancelled {
        assert_eq!(saved, 1, "a stopped run records nothing");
        assert!(!last.saved);
    } else {
        // The scripted model is fast enough to finish before Esc arrives; then it is saved.
        assert_eq!(saved, 2);
    }
}

#[test]
fn the_help_overlay_lists_every_shortcut() {
    let mut h = harness(Settings::default());
    h.state_mut().show_help = true;
    h.run();
    for (keys, help) in arbiter::gui::keymap::help_lines() {
        h.get_by_label(&keys);
        h.get_by_label(help);
    }
}
