//! Driving the desktop app in egui_kittest tests: a harness on the real app state, stepping
//! until the app's threads have done something, and opening a dataset. Included with
//! `#[path]` by the app's test files only, so other tests do not build egui_kittest code.

use arbiter::gui::settings::Settings;
use arbiter::gui::ArbiterApp;
use egui_kittest::Harness;
use std::path::Path;
use std::time::{Duration, Instant};

/// The app at a fixed window size. Items and critiques hold Chinese and emoji; the app gets
/// system fonts for them at start, the harness has only egui's own, so missing glyphs draw as
/// boxes here.
#[allow(dead_code)]
pub fn harness(settings: Settings) -> Harness<'static, ArbiterApp> {
    Harness::builder()
        .with_size([1400.0, 900.0])
        .allow_missing_glyphs()
        .build_ui_state(
            |ui, app: &mut ArbiterApp| app.ui(ui),
            ArbiterApp::new(settings, None),
        )
}

/// Steps frames until `done` holds (the app works on threads), failing after a minute.
pub fn step_until(
    h: &mut Harness<'_, ArbiterApp>,
    what: &str,
    mut done: impl FnMut(&ArbiterApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
    h.run_steps(2);
}

/// Opens `path` as the app does (on a thread) and waits until it is open or refused.
pub fn open(h: &mut Harness<'_, ArbiterApp>, path: &Path) {
    let ctx = h.ctx.clone();
    h.state_mut().open(path.to_path_buf(), &ctx);
    step_until(h, "the dataset to open", |app| !app.is_opening());
}
