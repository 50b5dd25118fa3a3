//! Pictures of the app's main screens, rendered with wgpu (a CPU adapter such as Mesa's
//! lavapipe on a machine without a GPU) and compared with the images committed under
//! `tests/snapshots/`, so that a change to a screen shows up in review as a changed PNG.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test --release --test gui_snapshots` rewrites the images after an
//! intended change; look at each one before committing it. Every figure on these screens is
//! fixed by the test (judgments carry their own run metadata, free memory is pinned, the hub
//! cache is an empty folder), so the pictures do not depend on the machine.

#[path = "common/app.rs"]
mod app;

use app::{open, step_until};
use arbiter::gui::settings::{Settings, Theme};
use arbiter::gui::ArbiterApp;
use egui_kittest::{Harness, SnapshotOptions};
use std::path::Path;

/// Four items judged by three judges. r1 has a majority and a structured CompassJudger-2
/// critique, its seven fields filled, with its run metadata (a constrained run); r2 and r4 have a majority too; r3 is a dispute.
const DATA: &str = r#"{"id":"r1","category":"coding","language":"en","question":"Write a Python function that returns the n-th Fibonacci number.","model_a":"writer-terse","response_a":"```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```","model_b":"writer-long","response_b":"Here is a recursive version:\n\n```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```\n\nIt is short, but it takes exponential time for large `n`.","judgments":[{"judge":"judge-one","verdict":"A"},{"judge":"judge-two","output":"{\"User's Demand\": \"A correct function for the n-th Fibonacci number.\", \"Strengths of Model A\": \"Iterative, linear time, correct for n = 0.\", \"Weaknesses of Model A\": \"No explanation.\", \"Strengths of Model B\": \"Explains its cost.\", \"Weaknesses of Model B\": \"Exponential time.\", \"Reasoning\": \"Both are correct; A is efficient.\", \"Choice\": \"Model A\"}","run":{"model":"judge-two-7b","precision":"bf16","device":"cuda:0","sampling":{"temperature":0.0,"seed":1,"max_new_tokens":1024},"constrain":"grammar","timing":{"generated_tokens":96,"total_ms":2400.0,"decode_tokens_per_s":48.0}}},{"judge":"judge-three","output":"B explains more. [[B]]"}]}
{"id":"r2","category":"math","language":"en","question":"What is 17 × 23?","model_a":"writer-long","response_a":"17 × 23 = 391.","model_b":"writer-terse","response_b":"381","judgments":[{"judge":"judge-one","verdict":"A"},{"judge":"judge-two","verdict":"A>>B"},{"judge":"judge-three","verdict":"A"}]}
{"id":"r3","category":"writing","language":"en","question":"A two-line poem about rain.","model_a":"writer-terse","response_a":"Grey threads stitch the window shut;\nthe gutters hum a tune.","model_b":"writer-long","response_b":"Rain falls down,\nall over town.","judgments":[{"judge":"judge-one","verdict":"tie"},{"judge":"judge-two","verdict":"A"},{"judge":"judge-three","verdict":"B"}]}
{"id":"r4","category":"math","language":"en","question":"Is 91 prime?","model_a":"writer-terse","response_a":"Yes.","model_b":"writer-long","response_b":"No: 91 = 7 × 13.","judgments":[{"judge":"judge-one","verdict":"B"},{"judge":"judge-two","verdict":"B"},{"judge":"judge-three","verdict":"B","swapped":true},{"judge":"judge-three","verdict":"A"}]}
"#;

#[test]
fn the_main_screens_look_as_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // An empty hub cache, so that the Models window lists nothing cached on any machine. This
    // binary has this one test, so no other thread reads the environment meanwhile.
    std::env::set_var("HF_HUB_CACHE", dir.path().join("hub"));
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let data = dir.path().join("review.jsonl");
    std::fs::write(&data, DATA).expect("write");

    let settings = Settings {
        theme: Theme::Dark,
        model: "cj2-7b".into(),
        annotator: "reviewer".into(),
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .with_size([1400.0, 860.0])
        .with_theme(egui::Theme::Dark)
        .wgpu()
        .build_ui_state(
            |ui, app: &mut ArbiterApp| app.ui(ui),
            ArbiterApp::new(settings, None),
        );
    h.state_mut().pin_free_memory(Some(16 << 30));
    open(&mut h, &data);
    h.run();

    let options = SnapshotOptions::new()
        .output_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots"))
        // Rasterisers may differ in antialiasing by a level or two; a changed icon moves
        // dozens of pixels, changed text or layout hundreds.
        .threshold(1.0)
        .max_failed_pixels(24);
    let mut failures = Vec::new();
    let mut shot = |h: &mut Harness<'_, ArbiterApp>, name: &str| {
        if let Err(e) = h.try_snapshot_options(name, &options) {
            failures.push(format!("{name}: {e}"));
        }
    };

    // The review screen: item list, the two responses, the judge cards with a structured
    // critique and the dispute reason.
    shot(&mut h, "main");

    h.state_mut().show_metrics = true;
    h.run();
    shot(&mut h, "metrics");
    h.state_mut().show_metrics = false;

    h.state_mut().show_models = true;
    h.run();
    shot(&mut h, "models");
    h.state_mut().show_models = false;

    h.state_mut().show_help = true;
    h.run();
    shot(&mut h, "help");
    h.state_mut().show_help = false;
    h.run();

    // A decision from the keyboard, as the list and the status bar show it once saved.
    h.key_press(egui::Key::Num1);
    step_until(&mut h, "the decision to be saved", |app| {
        app.session
            .as_ref()
            .is_some_and(|s| s.review.decision("r1").is_some())
    });
    h.run();
    shot(&mut h, "decided");

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
