//! The app shell: loads datasets off the UI thread, lays out the panels, dispatches the
//! keymap, shows errors as banners, asks who is deciding, and remembers settings.

use super::dialogs::{self, Dialogs, PathPrompt, Picked, Purpose};
use super::keymap::{self, Action};
use super::panels::{
    batch::BatchPanel, compare::Compare, items::ItemList, judges::Judges, metrics::Metrics,
    models::Models,
};
use super::runner::{RunChoice, Runner};
use super::session::Session;
use super::settings::{Settings, Theme, STORAGE_KEY};
use crate::review::{OpenOptions, ReviewError};
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
    /// The "who is deciding?" window is open.
    pub ask_annotator: bool,
    annotator_draft: String,
    annotator_error: Option<String>,
    /// How files are picked: the system dialog, or the app's own path window.
    pub dialogs: Dialogs,
    /// The app's own path window, while open.
    pub path_prompt: Option<PathPrompt>,
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
            ask_annotator: false,
            annotator_draft: String::new(),
            annotator_error: None,
            dialogs: Dialogs::detect(),
            path_prompt: None,
        }
    }

    /// The annotator from the settings, when it is a usable name.
    fn annotator(&self) -> Option<String> {
        crate::journal::check_annotator(&self.settings.annotator).ok()
    }

    /// Opens the "who is deciding?" window, filled with the current name.
    pub fn change_annotator(&mut self) {
        self.annotator_draft = self.settings.annotator.clone();
        self.annotator_error = None;
        self.ask_annotator = true;
    }

    /// Makes `name` the annotator (remembered in the settings) and records a decision that was
    /// waiting for it. A name that cannot name a file is refused with the reason.
    pub fn set_annotator(&mut self, name: &str) -> Result<(), String> {
        let name = crate::journal::check_annotator(name).map_err(|e| e.to_string())?;
        if let Some(session) = &mut self.session {
            session
                .review
                .set_annotator(Some(&name))
                .map_err(|e| e.to_string())?;
            session.refilter();
        }
        self.settings.annotator = name;
        self.ask_annotator = false;
        self.annotator_error = None;
        if let Some(session) = &mut self.session {
            if let Some(verdict) = session.pending.take() {
                if let Err(e) = session.decide(verdict) {
                    self.error(format!("not saved: {e}"));
                }
            }
        }
        Ok(())
    }

    fn annotator_window(&mut self, ctx: &egui::Context) {
        if !self.ask_annotator {
            return;
        }
        let mut confirmed = false;
        let mut cancelled = false;
        egui::Modal::new(egui::Id::unique("annotator")).show(ctx, |ui| {
            ui.heading("Who is deciding?");
            ui.label(
                "Your name is recorded with every decision and names your own journal beside \
                 the dataset, so several people can arbitrate the same dataset.",
            );
            let field = ui.add(
                egui::TextEdit::singleline(&mut self.annotator_draft)
                    .hint_text("your name (letters, digits, . _ -)")
                    .desired_width(280.0),
            );
            if !field.has_focus() && self.annotator_draft.is_empty() {
                field.request_focus();
            }
            if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                confirmed = true;
            }
            if let Some(e) = &self.annotator_error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            ui.horizontal(|ui| {
                if ui.button("Save name").clicked() {
                    confirmed = true;
                }
                if ui.button("Cancel").clicked() {
                    cancelled = true;
                }
            });
        });
        if confirmed {
            let name = self.annotator_draft.clone();
            if let Err(e) = self.set_annotator(&name) {
                self.annotator_error = Some(e);
            }
        } else if cancelled {
            self.ask_annotator = false;
            if let Some(session) = &mut self.session {
                session.pending = None;
            }
        }
    }

    /// Asks for a path for `purpose`: the system dialog where it can open, otherwise (or when
    /// it fails) the app's own window, with a banner saying why.
    pub fn choose_path(&mut self, purpose: Purpose, ctx: &egui::Context) {
        let picked = match &self.dialogs {
            Dialogs::System => dialogs::pick(purpose),
            Dialogs::InApp(why) => Picked::Failed(why.clone()),
        };
        match picked {
            Picked::Path(path) => self.use_path(purpose, path, ctx),
            Picked::Cancelled => {}
            Picked::Failed(why) => {
                self.error(format!("no file dialog: {why}"));
                let folder = self
                    .session
                    .as_ref()
                    .and_then(|s| s.review.dataset.path.parent().map(Path::to_path_buf));
                self.path_prompt = Some(PathPrompt::new(purpose, folder.as_deref()));
            }
        }
    }

    fn use_path(&mut self, purpose: Purpose, path: PathBuf, ctx: &egui::Context) {
        match purpose {
            Purpose::OpenDataset => self.open(path, ctx),
            Purpose::ExportLabels => self.write_labels(&path),
            Purpose::ExportMetrics => self.write_metrics(&path),
        }
    }

    fn path_window(&mut self, ctx: &egui::Context) {
        let Some(prompt) = &mut self.path_prompt else {
            return;
        };
        let mut open = true;
        let chosen = prompt.ui(ctx, &mut open);
        let purpose = prompt.purpose;
        if !open {
            self.path_prompt = None;
        }
        if let Some(path) = chosen {
            self.use_path(purpose, path, ctx);
        }
    }

    /// Starts loading a dataset on a worker thread; the current one stays until it is ready.
    pub fn open(&mut self, path: PathBuf, ctx: &egui::Context) {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        let p = path.clone();
        let opts = OpenOptions {
            annotator: self.annotator(),
            adjudicator: self.settings.adjudicator,
            ..OpenOptions::default()
        };
        std::thread::spawn(move || {
            let result =
                Session::open(&p, &opts).map_err(|e| format!("cannot open {}: {e}", p.display()));
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
                for (journal, w) in session.review.warnings_by_journal() {
                    self.banners.push(Banner {
                        message: format!("journal {}: {w}", journal.display()),
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
        match result {
            // The app asks who is deciding, then records the decision.
            Err(ReviewError::NoAnnotator) => self.change_annotator(),
            Err(e) => self.error(format!("not saved: {e}")),
            Ok(()) => {}
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
        if let Some(session) = &mut self.session {
            if session.review.is_adjudicator() != self.settings.adjudicator {
                session.review.set_adjudicator(self.settings.adjudicator);
                session.refilter();
            }
            // A decision asked for from a panel before anyone was named.
            if session.pending.is_some() && !self.ask_annotator {
                self.change_annotator();
            }
        }
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
        // Shortcuts act unless the person is typing or naming themselves. Tab is ours (the next
        // item in this person's queue), not egui's focus traversal: any focus it gave a button
        // is taken back at the end of the frame.
        let actions = if ctx.text_edit_focused() || self.ask_annotator {
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
        let blind = self.settings.blind();
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
                        self.items.ui(ui, session, &mut focus_search, blind)
                    });
                egui::Panel::right("judges")
                    .resizable(true)
                    .default_size(400.0)
                    .show(ui, |ui| {
                        let hide = session.current.is_some_and(|i| session.hidden(i, blind).1);
                        if hide {
                            ui.heading("Judges");
                            ui.label(
                                "The judges' verdicts and the consensus are hidden until you \
                                 decide this item (blind review, Team menu).",
                            );
                            return;
                        }
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
                    self.compare
                        .ui(ui, session, blind, &mut self.swapped_view, &mut focus_note)
                });
            }
        }
        if std::mem::take(&mut self.run_request) {
            self.run_judge();
        }
        self.help_window(&ctx);
        self.path_window(&ctx);
        self.annotator_window(&ctx);
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
                        self.choose_path(Purpose::OpenDataset, ctx);
                    }
                    if ui.button("Open a path…").clicked() {
                        ui.close();
                        self.path_prompt = Some(PathPrompt::new(Purpose::OpenDataset, None));
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
                        if self.session.is_some() {
                            self.choose_path(Purpose::ExportLabels, ctx);
                        }
                    }
                    if ui.button("Export metrics (JSON)…").clicked() {
                        ui.close();
                        if self.session.is_some() {
                            self.choose_path(Purpose::ExportMetrics, ctx);
                        }
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
                ui.menu_button("Team", |ui| self.team_menu(ui));
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

    fn team_menu(&mut self, ui: &mut egui::Ui) {
        let who = if self.settings.annotator.is_empty() {
            "not set".to_string()
        } else {
            self.settings.annotator.clone()
        };
        if ui.button(format!("Annotator: {who}…")).clicked() {
            ui.close();
            self.change_annotator();
        }
        ui.checkbox(
            &mut self.settings.adjudicator,
            "I adjudicate (my decisions settle escalated items)",
        );
        ui.separator();
        ui.checkbox(
            &mut self.settings.blind_decisions,
            "Blind: hide other people's decisions until I decide",
        );
        ui.checkbox(
            &mut self.settings.blind_judges,
            "Blind: also hide the judges' verdicts and the consensus",
        );
        ui.separator();
        if ui.button("Reload the assignment").clicked() {
            ui.close();
            if let Some(session) = &mut self.session {
                let result = session.review.reload_assignment();
                session.refilter();
                if let Err(e) = result {
                    self.error(e.to_string());
                }
            }
        }
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
                let who = match self.annotator() {
                    Some(name) if self.settings.adjudicator => format!("{name} (adjudicator)"),
                    Some(name) => name,
                    None => "not set".to_string(),
                };
                if ui
                    .link(format!("annotator: {who}"))
                    .on_hover_text("who is deciding: click to change")
                    .clicked()
                {
                    self.change_annotator();
                }
                ui.separator();
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
                    // Where this person's decisions go, as a path from the dataset's folder.
                    let journal = s
                        .review
                        .decisions_path()
                        .unwrap_or_else(|| s.review.journal_path());
                    let folder = s.review.dataset.path.parent().unwrap_or(Path::new(""));
                    let name = journal
                        .strip_prefix(folder)
                        .unwrap_or(journal)
                        .display()
                        .to_string();
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

    fn write_labels(&mut self, path: &Path) {
        let Some(session) = &self.session else {
            return;
        };
        let result = std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            session.review.export_labels(&mut w)?;
            std::io::Write::flush(&mut w)
        });
        if let Err(e) = result {
            self.error(format!("cannot write {}: {e}", path.display()));
        }
    }

    fn write_metrics(&mut self, path: &Path) {
        let Some(session) = &self.session else {
            return;
        };
        let report = crate::metrics::Report::build(
            session.review.items(),
            &session.review.final_labels(),
            &crate::metrics::ScoreOptions::default(),
        )
        .map(|mut r| {
            r.humans = session.review.human_agreement();
            r
        });
        let result = report
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_string_pretty(&r).map_err(|e| e.to_string()))
            .and_then(|t| std::fs::write(path, t).map_err(|e| e.to_string()));
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
