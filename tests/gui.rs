//! The desktop app driven through egui_kittest, on the real app state: open a dataset, filter
//! to disputes, decide items from the keyboard, undo, stream a critique from a local model,
//! stop a run, and see errors as a banner; three annotators and an adjudicator on one dataset,
//! the name asked once, blind review, and the path window where no file dialog can open.
//! Journal records are read back from disk.

#[path = "common/app.rs"]
mod app;
mod common;

use app::{harness, open, step_until};
use arbiter::assignment::Assignment;
use arbiter::gui::dialogs::{Dialogs, Purpose};
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
    let mut h = harness(named("tester"));
    open(&mut h, &data);
    assert_eq!(h.state().session.as_ref().expect("open").visible().len(), 5);
    h.get_by_label("annotator: tester");
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

    let records =
        journal_file::records(&dir.path().join("panel.jsonl.arbiter/tester.journal.jsonl"));
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
    let mut again = harness(named("tester"));
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

fn named(annotator: &str) -> Settings {
    Settings {
        annotator: annotator.into(),
        ..Settings::default()
    }
}

fn pick_show(h: &mut egui_kittest::Harness<'_, arbiter::gui::ArbiterApp>, label: &str) {
    h.get_by_label("show").click();
    h.run();
    h.get_by_label(label).click();
    h.run();
}

/// The three disputes p2, p3, p4 each go to two of ann, bo and cy. ann says A to everything,
/// bo B, cy A: so ann and cy agree wherever they meet and bo disagrees with both.
#[test]
fn three_annotators_overlap_in_the_app_and_the_adjudicator_settles() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let team = ["ann", "bo", "cy"].map(String::from);
    let disputes = ["p2", "p3", "p4"].map(String::from);
    let plan = Assignment::plan(&disputes, &team, 1.0, 3).expect("plan");
    plan.write(&data).expect("write the plan");

    for (who, key) in [
        ("ann", egui::Key::Num1),
        ("bo", egui::Key::Num2),
        ("cy", egui::Key::Num1),
    ] {
        let mut h = harness(named(who));
        open(&mut h, &data);
        pick_show(&mut h, "my queue");
        let mine: Vec<String> = plan.queue(who).map(String::from).collect();
        assert_eq!(mine.len(), 2, "{who}: {mine:?}");
        let session = h.state().session.as_ref().expect("open");
        let shown: Vec<String> = session
            .visible()
            .iter()
            .map(|&i| session.review.items()[i].id.clone())
            .collect();
        assert_eq!(shown, mine, "{who}'s queue");
        // Tab walks the queue; each decision is saved in this person's own journal.
        for _ in 0..mine.len() {
            h.key_press(egui::Key::Tab);
            h.run();
            h.key_press(key);
            h.run();
        }
        assert!(!h
            .state_mut()
            .session
            .as_mut()
            .expect("open")
            .next_undecided_dispute());
        let records = journal_file::records(
            &dir.path()
                .join(format!("panel.jsonl.arbiter/{who}.journal.jsonl")),
        );
        let decided: Vec<&str> = records
            .iter()
            .filter(|r| r["type"] == "decision")
            .map(|r| {
                assert_eq!(r["annotator"], who);
                r["item"].as_str().expect("item")
            })
            .collect();
        assert_eq!(decided, mine, "{who}'s journal");
    }

    // The adjudicator sees the escalations: every item bo shared with someone.
    let lead = Settings {
        adjudicator: true,
        ..named("lead")
    };
    let mut h = harness(lead);
    open(&mut h, &data);
    h.get_by_label("annotator: lead (adjudicator)");
    let expected: Vec<String> = plan.queue("bo").map(String::from).collect();
    let review = &h.state().session.as_ref().expect("open").review;
    let escalated: Vec<String> = review
        .escalations()
        .into_iter()
        .map(|i| review.items()[i].id.clone())
        .collect();
    assert_eq!(escalated, expected);
    for id in &escalated {
        let i = review.dataset.position(id).expect("item");
        assert_eq!(review.final_label(i), None, "{id} is escalated");
    }
    let agreement = review.human_agreement().expect("three annotators");
    for p in &agreement.pairs {
        let bo = p.judge_a == "bo" || p.judge_b == "bo";
        assert_eq!(p.agreed, if bo { 0 } else { p.items }, "{p:?}");
    }
    h.state_mut().show_metrics = true;
    h.run();
    h.get_by_label("Agreement between annotators");
    h.state_mut().show_metrics = false;
    h.run();

    pick_show(&mut h, "escalated");
    assert_eq!(h.state().session.as_ref().expect("open").visible().len(), 2);
    h.key_press(egui::Key::Tab);
    h.run();
    h.key_press(egui::Key::Num3);
    h.run();
    let review = &h.state().session.as_ref().expect("open").review;
    let first = review.dataset.position(&escalated[0]).expect("item");
    assert_eq!(
        review.final_label(first).map(|(o, _)| o),
        Some(arbiter::verdict::Outcome::Tie)
    );
    assert_eq!(review.escalations().len(), 1);
    let records = journal_file::records(&dir.path().join("panel.jsonl.arbiter/lead.journal.jsonl"));
    let d = records
        .iter()
        .find(|r| r["type"] == "decision")
        .expect("the adjudicator's decision");
    assert_eq!(d["adjudicator"], true);
    assert_eq!(d["item"], escalated[0].as_str());
}

#[test]
fn the_app_asks_who_is_deciding_once_then_saves_the_waiting_decision() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let mut h = harness(Settings::default());
    open(&mut h, &data);
    h.get_by_label("annotator: not set");
    h.key_press(egui::Key::Tab);
    h.run();
    h.key_press(egui::Key::Num2);
    h.run();
    h.get_by_label("Who is deciding?");
    assert!(h.state().banners.is_empty(), "asking is not an error");
    // A name that cannot name a file is refused with the reason; the field keeps focus.
    h.event(egui::Event::Text("a/b".into()));
    h.run();
    h.get_by_label("Save name").click();
    h.run();
    h.get_by_label_contains("cannot be used");
    // Reopened empty (as the status bar's link does), the field takes the keys again.
    h.state_mut().change_annotator();
    h.run();
    h.event(egui::Event::Text("zoe".into()));
    h.run();
    h.get_by_label("Save name").click();
    h.run();
    assert!(!h.state().ask_annotator);
    assert_eq!(h.state().settings.annotator, "zoe");
    h.get_by_label("annotator: zoe");
    // The decision that waited for the name is saved, under it.
    let records = journal_file::records(&dir.path().join("panel.jsonl.arbiter/zoe.journal.jsonl"));
    let decisions: Vec<_> = records.iter().filter(|r| r["type"] == "decision").collect();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["item"], "p2");
    assert_eq!(decisions[0]["verdict"], "B");
    // Asked once: the next decision goes straight to the journal.
    h.key_press(egui::Key::Tab);
    h.run();
    h.key_press(egui::Key::Num1);
    h.run();
    assert!(!h.state().ask_annotator);
    let records = journal_file::records(&dir.path().join("panel.jsonl.arbiter/zoe.journal.jsonl"));
    assert_eq!(
        records.iter().filter(|r| r["type"] == "decision").count(),
        2
    );
}

#[test]
fn blind_review_hides_other_decisions_and_the_judges_until_one_decides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let mut ann = harness(named("ann"));
    open(&mut ann, &data);
    ann.key_press(egui::Key::Tab);
    ann.run();
    ann.key_press(egui::Key::Num1);
    ann.run();
    drop(ann);

    let blind = Settings {
        blind_decisions: true,
        blind_judges: true,
        ..named("bo")
    };
    let mut h = harness(blind);
    open(&mut h, &data);
    // Without an assignment Tab skips what someone already decided; bo picks p2 by hand.
    h.key_press(egui::Key::Tab);
    h.run();
    assert_eq!(h.state().session.as_ref().expect("open").current, Some(2));
    h.state_mut().session.as_mut().expect("open").select(1);
    h.run();
    h.get_by_label("1 other decision(s) hidden until you decide (blind review)");
    h.get_by_label("MoJ hidden until you decide");
    h.get_by_label_contains("hidden until you decide this item");
    assert!(h.query_by_label("ann A").is_none());
    h.key_press(egui::Key::Num2);
    h.run();
    // Decided: everything shows, and the item is escalated.
    h.get_by_label("Other decisions:");
    h.get_by_label("ann A");
    h.get_by_label_contains("escalated: the annotators disagree");
    assert!(h.query_by_label("MoJ hidden until you decide").is_none());
}

#[test]
fn without_a_file_dialog_the_app_asks_for_the_path_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("panel.jsonl");
    std::fs::write(&data, PANEL).expect("write");
    let mut h = harness(named("tester"));
    h.state_mut().dialogs = Dialogs::InApp("no portal and no zenity here".into());
    h.get_by_label("File").click();
    h.run();
    h.get_by_label("Open…").click();
    h.run();
    let banner = &h.state().banners[0].message;
    assert!(banner.contains("no portal and no zenity here"), "{banner}");
    let prompt = h
        .state()
        .path_prompt
        .clone()
        .expect("the path window is open");
    assert_eq!(prompt.purpose, Purpose::OpenDataset);
    h.get_by_label("Open a dataset");
    h.state_mut().path_prompt.as_mut().expect("open").text = data.display().to_string();
    h.get_by_label("Open").click();
    // Loading shows a spinner, which repaints until the file is read: step, do not settle.
    h.step();
    step_until(&mut h, "the dataset to open", |app| {
        !app.is_opening() && app.session.is_some()
    });
    assert!(h.state().path_prompt.is_none());

    // Exporting goes through the same window, prefilled beside the dataset.
    let ctx = h.ctx.clone();
    h.state_mut().choose_path(Purpose::ExportLabels, &ctx);
    h.run();
    let prompt = h
        .state()
        .path_prompt
        .clone()
        .expect("the path window is open");
    assert_eq!(
        prompt.text,
        dir.path().join("labels.jsonl").display().to_string()
    );
    h.get_by_label("Save").click();
    h.run();
    let rows = std::fs::read_to_string(dir.path().join("labels.jsonl")).expect("labels written");
    assert_eq!(rows.lines().count(), 5);
}
