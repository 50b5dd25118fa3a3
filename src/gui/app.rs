//! The app shell: loads datasets off the UI thread, lays out the panels, dispatches the
//! keymap, shows errors as banners, and remembers settings.

use super::keymap::{self, Action};
use super::panels::{
    batch::BatchPanel, compare::Compare, items::ItemList, judges::Judges, metrics::Metrics,
    models::Models,
};
use super::runner::{RunChoice, Runner};
use super::session::Session;
use super::settings::{Settings, Theme, STORAGE_KEY};
use crate::review::OpenOptions;
use crate::verdict::{Order, Outcome};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bundled demo dataset: beside the executable's crate in a checkout, or in the
/// current directory.
pub fn demo_dataset() -> PathBuf {
    let in_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.jsonl");
    if in_repo.is_file() {
        in_repo
    } else {
        PathBuf::from("assets/demo.jsonl")
    }
}

/// An error shown across the top of the window until dismissed.
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub message: String,
}

/// Frame-time statistics, logged while a critique streams (the UI must stay under 16 ms).
#[derive(Debug, Default)]
pub struct FrameStats {
    times: Vec<f64>,
    pub last_ms: f64,
    logged: Option<Instant>,
}

impl FrameStats {
    fn record(&mut self, ms: f64, streaming: bool) {
        self.last_ms = ms;
        if !streaming {
            return;
        }
        self.times.push(ms);
        let due = self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if due && self.times.len() >= 10 {
            let mut t = std::mem::take(&mut self.times);
            t.sort_by(f64::total_cmp);
            let p = |q: f64| t[((t.len() - 1) as f64 * q) as usize];
            tracing::info!(
                "frame time while streaming over {} frames: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                t.len(),
                p(0.5),
                p(0.99),
                p(1.0)
            );
            self.logged = Some(Instant::now());
        }
    }
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The whole app's state.
pub struct ArbiterApp {
    pub session: Option<Session>,
    pub banners: Vec<Banner>,
    pub settings: Settings,
    pub runner: Runner,
    opening: Option<(PathBuf, Receiver<Result<Session, String>>)>,
    pub show_help: bool,
    pub show_metrics: bool,
    pub show_models: bool,
    pub show_batch: bool,
    /// The icon rasterizer is given to the context once, on the first frame.
    glyphs_installed: bool,
    /// The batch-run window and the run it started, which goes on with the window closed.
    pub batch: BatchPanel,
    /// Show response B on the left and A on the right (the labels move with them).
    pub swapped_view: bool,
    focus_search: bool,
    focus_note: bool,
    items: ItemList,
    compare: Compare,
    judges: Judges,
    metrics: Metrics,
    models: Models,
    pub frames: FrameStats,
    applied_theme: Option<(Theme, f32)>,
    /// The judge panel's Run button was pressed this frame.
    run_request: bool,
}

impl ArbiterApp {
    pub fn new(settings: Settings, waker: Option<Waker>) -> ArbiterApp {
        ArbiterApp {
            session: None,
            banners: Vec::new(),
            batch: BatchPanel::new(waker.clone()),
            runner: Runner::new(waker),
            settings,
            opening: None,
            show_help: false,
            show_metrics: false,
            show_models: false,
            show_batch: false,
            glyphs_installed: false,
            swapped_view: false,
            focus_search: false,
            focus_note: false,
            items: ItemList::default(),
            compare: Compare::default(),
            judges: Judges::default(),
            metrics: Metrics::default(),
            models: Models::default(),
            frames: FrameStats::default(),
            applied_theme: None,
            run_request: false,
        }
    }

    /// Starts loading a dataset on a worker thread; the current one stays until it is ready.
    pub fn open(&mut self, path: PathBuf, ctx: &egui::Context) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let p = path.clone();
        std::thread::spawn(move || {
            let result = Session::open(&p, &OpenOptions::default())
                .map_err(|e| format!("cannot open {}: {e}", p.display()));
            let _ = tx.send(result);
            ctx.request_repaint();
        });
        self.opening = Some((path, rx));
    }

    /// The Models window shows `free` as free memory instead of this machine's (snapshots).
    pub fn pin_free_memory(&mut self, free: Option<u64>) {
        self.models.pin_free_memory(free);
    }

    pub fn is_opening(&self) -> bool {
        self.opening.is_some()
    }

    fn poll_opening(&mut self) {
        let Some((path, rx)) = &self.opening else {
            return;
        };
        match rx.try_recv() {
            Ok(Ok(session)) => {
                for w in &session.review.warnings {
                    self.banners.push(Banner {
                        message: format!(
                            "journal {}: {w}",
                            session.review.journal_path().display()
                        ),
                    });
                }
                let skipped = session.review.dataset.skipped.len();
                if skipped > 0 {
                    self.banners.push(Banner {
                        message: format!(
                            "{skipped} malformed record(s) were skipped in {}",
                            path.display()
                        ),
                    });
                }
                self.settings.remember(path.clone());
                self.session = Some(session);
                self.opening = None;
            }
            Ok(Err(message)) => {
                self.banners.push(Banner { message });
                self.opening = None;
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => {
                self.banners.push(Banner {
                    message: format!("opening {} failed unexpectedly", path.display()),
                });
                self.opening = None;
            }
        }
    }

    fn error(&mut self, message: impl Into<String>) {
        self.banners.push(Banner {
            message: message.into(),
        });
    }

    /// The run settings from the judge panel.
    pub fn run_choice(&self) -> RunChoice {
        RunChoice {
            model: self.settings.model.clone(),
            template: self.settings.template.clone(),
            device: self.settings.device.clone(),
            max_new_tokens: self.settings.max_new_tokens,
            constrain: self.settings.constrain,
        }
    }

    /// Runs the chosen judge on the current item (in the order the view shows).
    pub fn run_judge(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let Some(item) = session.current else {
            return;
        };
        if let Some(why) = self.batch.blocks_local_runs() {
            self.error(why);
            return;
        }
        let order = if self.swapped_view {
            Order::Swapped
        } else {
            Order::Original
        };
        let choice = self.run_choice();
        if let Err(e) = self.runner.start(session, item, order, &choice) {
            self.error(e);
        }
    }

    pub fn act(&mut self, action: Action) {
        match action {
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::ToggleMetrics => self.show_metrics = !self.show_metrics,
            Action::ToggleModels => self.show_models = !self.show_models,
            Action::Search => self.focus_search = true,
            Action::Note => self.focus_note = true,
            Action::SwapSides => self.swapped_view = !self.swapped_view,
            Action::ToggleBlind => self.settings.blind = !self.settings.blind,
            Action::RunJudge => self.run_judge(),
            Action::StopJudge => {
                if self.runner.is_busy() {
                    self.runner.stop();
                } else {
                    self.show_help = false;
                }
            }
            _ => {}
        }
        let Some(session) = &mut self.session else {
            return;
        };
        let result = match action {
            Action::DecideA => session.decide(Outcome::A).map(|_| ()),
            Action::DecideB => session.decide(Outcome::B).map(|_| ()),
            Action::DecideTie => session.decide(Outcome::Tie).map(|_| ()),
            Action::Undo => session.undo(),
            Action::Next => {
                session.step(1);
                Ok(())
            }
            Action::Previous => {
                session.step(-1);
                Ok(())
            }
            Action::NextUndecidedDispute => {
                if !session.next_undecided_dispute() {
                    self.banners.push(Banner {
                        message: "every dispute is decided".into(),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.error(format!("not saved: {e}"));
        }
    }

    fn apply_settings(&mut self, ctx: &egui::Context) {
        let wanted = (self.settings.theme, self.settings.zoom);
        if self.applied_theme != Some(wanted) {
            ctx.set_theme(self.settings.theme.preference());
            ctx.set_zoom_factor(self.settings.zoom.clamp(0.5, 3.0));
            self.applied_theme = Some(wanted);
        }
    }

    /// Draws one frame. Everything the window shows goes through here, so tests drive it
    /// directly.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        if !self.glyphs_installed {
            ctx.add_glyph_rasterizer(super::theme::icon_glyphs());
            self.glyphs_installed = true;
        }
        self.apply_settings(&ctx);
        self.poll_opening();
        self.runner.poll(self.session.as_mut());
        self.batch.poll(self.session.as_mut());
        if let Some(e) = self.runner.error.take() {
            self.error(e);
        }
        // Files dropped on the window.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.open(path, &ctx);
        }
        // Shortcuts act unless the person is typing. Tab is ours (next dispute), not egui's
        // focus traversal: any focus it gave a button is taken back at the end of the frame.
        let actions = if ctx.text_edit_focused() {
            Vec::new()
        } else {
            ctx.input(keymap::pressed)
        };
        for &action in &actions {
            self.act(action);
        }

        self.menu_bar(ui, &ctx);
        self.banner_bar(ui);
        self.status_bar(ui);
        let session = self.session.as_mut();
        match session {
            None => {
                egui::CentralPanel::default().show(ui, |ui| {
                    ui.centered_and_justified(|ui| {
                        if self.opening.is_some() {
                            ui.spinner();
                        } else {
                            ui.label("Open a dataset (File > Open, or drop a file on the window).");
                        }
                    });
                });
            }
            Some(session) => {
                let mut focus_search = std::mem::take(&mut self.focus_search);
                egui::Panel::left("items")
                    .resizable(true)
                    .default_size(360.0)
                    .show(ui, |ui| {
                        self.items
                            .ui(ui, session, &mut focus_search, self.settings.blind)
                    });
                egui::Panel::right("judges")
                    .resizable(true)
                    .default_size(400.0)
                    .show(ui, |ui| {
                        let blocked = self.batch.blocks_local_runs();
                        let run = self.judges.ui(
                            ui,
                            session,
                            &mut self.runner,
                            &mut self.settings,
                            blocked.as_deref(),
                        );
                        if run {
                            self.run_request = true;
                        }
                    });
                let mut focus_note = std::mem::take(&mut self.focus_note);
                egui::CentralPanel::default().show(ui, |ui| {
                    self.compare.ui(
                        ui,
                        session,
                        self.settings.blind,
                        &mut self.swapped_view,
                        &mut focus_note,
                    )
                });
            }
        }
        if std::mem::take(&mut self.run_request) {
            self.run_judge();
        }
        self.help_window(&ctx);
        if self.show_metrics {
            let mut open = true;
            egui::Window::new("Metrics")
                .open(&mut open)
                .default_size([760.0, 560.0])
                .show(&ctx, |ui| {
                    self.metrics.ui(ui, self.session.as_ref());
                });
            self.show_metrics = open;
        }
        if self.show_models {
            let mut open = true;
            egui::Window::new("Models")
                .open(&mut open)
                .default_size([720.0, 480.0])
                .show(&ctx, |ui| {
                    self.models.ui(ui, &mut self.settings, &self.runner);
                });
            self.show_models = open;
        }
        if self.show_batch {
            let mut open = true;
            let engine_busy = self.runner.is_busy();
            egui::Window::new("Batch run")
                .open(&mut open)
                .default_size([640.0, 420.0])
                .show(&ctx, |ui| {
                    self.batch
                        .ui(ui, self.session.as_ref(), &mut self.settings, engine_busy);
                });
            self.show_batch = open;
        }
        if self.batch.is_running() {
            // The status bar's count and the window's rate and ETA move between events too.
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        if self.runner.is_busy() {
            // Keep the live fields and progress bar moving even between engine events.
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        if !actions.is_empty() && !ctx.text_edit_focused() {
            if let Some(id) = ctx.memory(|m| m.focused()) {
                ctx.memory_mut(|m| m.surrender_focus(id));
            }
        }
        let streaming = self.runner.active.is_some();
        self.frames
            .record(started.elapsed().as_secs_f64() * 1000.0, streaming);
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        egui::Panel::top("menu").show(ui, |ui| {
            egui::MenuBar::new().ui(ui, |ui| {
                ui.menu_button("File", |ui| {
                    if ui.button("Open…").clicked() {
                        ui.close();
                        if let Some(path) = rfd::FileDialog::new()
                            .add_filter("datasets", &["jsonl", "json", "gz"])
                            .pick_file()
                        {
                            self.open(path, ctx);
                        }
                    }
                    if ui.button("Open the demo dataset").clicked() {
                        ui.close();
                        self.open(demo_dataset(), ctx);
                    }
                    ui.menu_button("Recent", |ui| {
                        let recent = self.settings.recent.clone();
                        if recent.is_empty() {
                            ui.label("none yet");
                        }
                        for path in recent {
                            if ui.button(path.display().to_string()).clicked() {
                                ui.close();
                                self.open(path, ctx);
                            }
                        }
                    });
                    ui.separator();
                    if ui.button("Export labels…").clicked() {
                        ui.close();
                        self.export_labels();
                    }
                    if ui.button("Export metrics (JSON)…").clicked() {
                        ui.close();
                        self.export_metrics();
                    }
                });
                ui.menu_button("View", |ui| {
                    ui.checkbox(&mut self.settings.blind, "Hide model names (b)");
                    ui.checkbox(&mut self.swapped_view, "Show B on the left (s)");
                    ui.separator();
                    for theme in [Theme::System, Theme::Dark, Theme::Light] {
                        ui.radio_value(&mut self.settings.theme, theme, theme.label());
                    }
                    ui.separator();
                    ui.horizontal(|ui| {
                        ui.label("Text size");
                        if ui.button("−").clicked() {
                            self.settings.zoom = (self.settings.zoom - 0.1).max(0.5);
                        }
                        ui.label(format!("{:.0}%", self.settings.zoom * 100.0));
                        if ui.button("+").clicked() {
                            self.settings.zoom = (self.settings.zoom + 0.1).min(3.0);
                        }
                    });
                });
                ui.menu_button("Run", |ui| {
                    if ui.button("Run a panel over the dataset…").clicked() {
                        ui.close();
                        self.show_batch = true;
                    }
                });
                if ui.button("Metrics").clicked() {
                    self.show_metrics = !self.show_metrics;
                }
                if ui.button("Models").clicked() {
                    self.show_models = !self.show_models;
                }
                if ui.button("Help (?)").clicked() {
                    self.show_help = !self.show_help;
                }
            });
        });
    }

    fn banner_bar(&mut self, ui: &mut egui::Ui) {
        if self.banners.is_empty() {
            return;
        }
        egui::Panel::top("banners").show(ui, |ui| {
            let mut dismiss = None;
            for (i, b) in self.banners.iter().enumerate() {
                egui::Frame::NONE
                    .fill(ui.visuals().error_fg_color.gamma_multiply(0.15))
                    .inner_margin(6.0)
                    .show(ui, |ui| {
                        ui.horizontal_wrapped(|ui| {
                            ui.colored_label(
                                ui.visuals().error_fg_color,
                                egui::RichText::new("!").strong(),
                            );
                            ui.label(&b.message);
                            if ui.small_button("dismiss").clicked() {
                                dismiss = Some(i);
                            }
                        });
                    });
            }
            if let Some(i) = dismiss {
                self.banners.remove(i);
            }
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if let Some((path, _)) = &self.opening {
                    ui.spinner();
                    ui.label(format!("opening {}…", path.display()));
                }
                if let Some(s) = &self.session {
                    let (decided, disputes) = s.progress();
                    ui.label(format!("{decided} of {disputes} disputes decided"));
                    ui.separator();
                    match &s.saved {
                        Some(super::session::Saved::Decision { item, verdict, .. }) => {
                            ui.colored_label(
                                super::theme::SAVED,
                                format!("saved: {item} = {}", verdict.label()),
                            );
                        }
                        Some(super::session::Saved::Undone { item }) => {
                            ui.colored_label(super::theme::SAVED, format!("saved: undo on {item}"));
                        }
                        None => {}
                    }
                    ui.separator();
                    let journal = s.review.journal_path();
                    let name = journal.file_name().map_or_else(
                        || journal.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    ui.label(format!("journal: {name}"))
                        .on_hover_text(journal.display().to_string());
                }
                if let Some(batch) = self.batch.status() {
                    ui.separator();
                    if ui.link(batch).on_hover_text("show the batch run").clicked() {
                        self.show_batch = true;
                    }
                }
                if let Some(load) = &self.runner.loading {
                    ui.separator();
                    match load.fraction() {
                        Some(f) => {
                            ui.add(
                                egui::ProgressBar::new(f)
                                    .desired_width(160.0)
                                    .show_percentage(),
                            );
                        }
                        None => {
                            ui.spinner();
                        }
                    }
                    ui.label(load.describe());
                }
            });
        });
    }

    fn help_window(&mut self, ctx: &egui::Context) {
        if !self.show_help {
            return;
        }
        let mut open = true;
        egui::Window::new("Keyboard")
            .open(&mut open)
            .collapsible(false)
            .show(ctx, |ui| {
                egui::Grid::new("keys").striped(true).show(ui, |ui| {
                    for (keys, help) in keymap::help_lines() {
                        ui.monospace(keys);
                        ui.label(help);
                        ui.end_row();
                    }
                });
                ui.label("Keys act while no text field has focus.");
            });
        self.show_help = open && self.show_help;
    }

    fn export_labels(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let Some(path) = rfd::FileDialog::new()
            .set_file_name("labels.jsonl")
            .save_file()
        else {
            return;
        };
        let result = std::fs::File::create(&path).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            session.review.export_labels(&mut w)?;
            std::io::Write::flush(&mut w)
        });
        if let Err(e) = result {
            self.error(format!("cannot write {}: {e}", path.display()));
        }
    }

    fn export_metrics(&mut self) {
        let Some(session) = &self.session else {
            return;
        };
        let Some(path) = rfd::FileDialog::new()
            .set_file_name("metrics.json")
            .save_file()
        else {
            return;
        };
        let report = crate::metrics::Report::build(
            session.review.items(),
            &session.review.final_labels(),
            &crate::metrics::ScoreOptions::default(),
        );
        let result = report
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_string_pretty(&r).map_err(|e| e.to_string()))
            .and_then(|t| std::fs::write(&path, t).map_err(|e| e.to_string()));
        if let Err(e) = result {
            self.error(format!("cannot write {}: {e}", path.display()));
        }
    }
}

impl eframe::App for ArbiterApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        ArbiterApp::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        storage.set_string(STORAGE_KEY, self.settings.to_json());
    }
}
