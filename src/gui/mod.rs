//! The desktop app (eframe/egui): review items side by side, watch a local judge's critique
//! stream in, arbitrate disputes from the keyboard, and see how the judges score.
//!
//! - `app`: the shell: menus, banners, layout, keyboard dispatch, persistence.
//! - `session`: the open dataset's state (filters, current item, decisions): no drawing.
//! - `runner`: the engine thread seen from the app (load, stream, stop, save).
//! - `keymap`: the one table of shortcuts, which the help overlay shows.
//! - `panels`: one type per screen region, each with a `ui` method.
//! - `settings`: what is remembered between runs.
//! - `dialogs`: file dialogs, with the app's own path window where none can open.
//! - `theme`: colours and small widgets shared by the panels.

mod app;
pub mod dialogs;
pub mod keymap;
mod panels;
pub mod runner;
pub mod session;
pub mod settings;
mod theme;

pub use app::{ArbiterApp, Banner};

use std::path::PathBuf;

/// Opens the app window on `dataset` (or the bundled demo dataset) and runs until it closes.
pub fn run(dataset: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Arbiter")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([800.0, 500.0])
            .with_drag_and_drop(true),
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "Arbiter",
        options,
        Box::new(move |cc| {
            let settings = cc
                .storage
                .and_then(|s| s.get_string(settings::STORAGE_KEY))
                .map(|t| settings::Settings::from_json(&t))
                .unwrap_or_default();
            let mut settings = settings;
            if settings.annotator.is_empty() {
                // A name the person set for the command line counts as an answer; otherwise
                // the app asks on the first decision.
                if let Some(name) = std::env::var("ARBITER_ANNOTATOR")
                    .ok()
                    .and_then(|n| crate::journal::check_annotator(&n).ok())
                {
                    settings.annotator = name;
                }
            }
            let ctx = cc.egui_ctx.clone();
            let mut app = ArbiterApp::new(settings, Some(std::sync::Arc::new(move || ctx.request_repaint())));
            app.open(dataset.unwrap_or_else(app::demo_dataset), &cc.egui_ctx);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the window could not open: {e}; on a machine without a display run the command-line subcommands instead (`arbiter --help`)"))
}
