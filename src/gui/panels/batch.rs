//! The batch window: a panel file's judges (all or one) over the dataset, the items the list
//! shows, or the current item, with a progress row per judge and a Cancel. The run itself is
//! `crate::batch` on worker threads, as `arbiter run` drives it; this only polls its channel
//! each frame and saves every finished judgment to the journal as it arrives, so the person
//! keeps reviewing, with the window open or closed, while it goes on.

use crate::batch::{self, Batch, BatchProgress, JudgeKind, PanelFile, Scope, Waker};
use crate::gui::session::Session;
use crate::gui::settings::Settings;
use crate::prompts::Library;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which items a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coverage {
    #[default]
    Dataset,
    /// The items the list shows now (its filter and search).
    Visible,
    Current,
}

impl Coverage {
    pub const ALL: [Coverage; 3] = [Coverage::Dataset, Coverage::Visible, Coverage::Current];

    pub fn label(self) -> &'static str {
        match self {
            Coverage::Dataset => "the whole dataset",
            Coverage::Visible => "the items the list shows",
            Coverage::Current => "the current item",
        }
    }
}

/// A run that was started: its workers, what they reported, and what was saved.
pub struct BatchRun {
    batch: Batch,
    pub progress: BatchProgress,
    /// Judgments that will not be made, one line each (`judge item (A/B): why`).
    pub failures: Vec<String>,
    /// Judgments written to the journal by this run.
    pub saved: usize,
    /// Skipped as already in the journal.
    pub skipped: usize,
    /// The dataset it judges: judgments are only ever saved into its session.
    pub dataset: PathBuf,
    /// Whether one of its judges runs a model on this machine.
    pub local: bool,
    /// Why it stopped before the end, if it did (Cancel, a judgment that could not be saved).
    pub stopped: Option<String>,
}

impl BatchRun {
    pub fn is_finished(&self) -> bool {
        self.progress.is_finished()
    }

    /// Whether a model of this run is (or may still be) using the machine.
    pub fn holds_local_model(&self) -> bool {
        self.local && !self.is_finished()
    }

    /// `judged 12, failed 1, skipped 3 already in the journal` and how it ended.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "judged {}, failed {}, skipped {} already in the journal",
            self.progress.done(),
            self.progress.failed(),
            self.skipped
        );
        if let Some(why) = &self.stopped {
            s.push_str(&format!("; {why}"));
        }
        s
    }

    fn cancel(&mut self, why: &str) {
        if !self.batch.is_cancelled() {
            self.batch.cancel();
            self.stopped.get_or_insert_with(|| {
                format!("{why}: judgments in flight are not recorded; start again to resume")
            });
        }
    }
}

/// The window's choices and the current (or last) run.
#[derive(Default)]
pub struct BatchPanel {
    /// The panel file as last read, keyed by the path it was read from.
    loaded: Option<(String, Result<PanelFile, String>)>,
    /// Only this judge of the panel; `None`: all of them.
    pub judge: Option<String>,
    pub coverage: Coverage,
    pub swap: bool,
    pub force: bool,
    /// Constrained answers as each judge's panel-file setting says; unticked: none.
    pub constrain: bool,
    pub run: Option<BatchRun>,
    /// Why the last Start did not start.
    pub error: Option<String>,
    waker: Option<Waker>,
}

impl BatchPanel {
    /// `waker` is called by the workers after every event (the GUI's repaint).
    pub fn new(waker: Option<Waker>) -> BatchPanel {
        BatchPanel {
            waker,
            constrain: true,
            ..BatchPanel::default()
        }
    }

    pub fn is_running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.is_finished())
    }

    /// Why the "Run a judge" box must wait, while a judge of this run uses the local engine.
    pub fn blocks_local_runs(&self) -> Option<String> {
        self.run
            .as_ref()
            .filter(|r| r.holds_local_model())
            .map(|_| {
                "a batch run with a local judge is using this machine's engine: wait for it or cancel it (Batch run window)".to_string()
            })
    }

    /// `batch: 12/40` for the status bar, while a run goes on.
    pub fn status(&self) -> Option<String> {
        let run = self.run.as_ref().filter(|r| !r.is_finished())?;
        let p = &run.progress;
        let mut s = format!("batch: {}/{}", p.done(), p.total());
        if p.failed() > 0 {
            s.push_str(&format!(", {} failed", p.failed()));
        }
        if run.batch.is_cancelled() {
            s.push_str(", stopping");
        }
        Some(s)
    }

    /// Reads the panel file at `path` unless it is the one read last.
    fn load(&mut self, path: &str) -> Option<&Result<PanelFile, String>> {
        let path = path.trim();
        if path.is_empty() {
            self.loaded = None;
            return None;
        }
        if self.loaded.as_ref().is_none_or(|(p, _)| p != path) {
            let result = Library::load()
                .map_err(|e| e.to_string())
                .and_then(|lib| PanelFile::load(Path::new(path), &lib).map_err(|e| e.to_string()));
            if let Ok(panel) = &result {
                if self
                    .judge
                    .as_ref()
                    .is_some_and(|j| !panel.names().contains(j))
                {
                    self.judge = None;
                }
            }
            self.loaded = Some((path.to_string(), result));
        }
        self.loaded.as_ref().map(|(_, r)| r)
    }

    /// Forgets the panel file read last, so that it is read again (after an edit on disk).
    pub fn reload(&mut self) {
        self.loaded = None;
    }

    /// Whether the judges chosen from `panel` include a local model.
    fn chosen_local(&self, panel: &PanelFile) -> bool {
        panel
            .judges
            .iter()
            .filter(|j| self.judge.as_ref().is_none_or(|name| &j.name == name))
            .any(|j| matches!(j.kind, JudgeKind::Local { .. }))
    }

    /// Plans and starts a run of the panel file at `path` over `session`, as chosen.
    /// `engine_busy`: the "Run a judge" box is loading or running a model.
    pub fn start(
        &mut self,
        path: &str,
        session: &Session,
        engine_busy: bool,
    ) -> Result<(), String> {
        if self.is_running() {
            return Err("a batch run is going on: cancel it first".into());
        }
        self.reload();
        let panel = match self.load(path) {
            Some(Ok(panel)) => panel.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("choose a panel file first".into()),
        };
        if engine_busy && self.chosen_local(&panel) {
            return Err(LOCAL_BUSY.into());
        }
        let items = self.items(session)?;
        let scope = Scope {
            items,
            limit: None,
            swap: self.swap,
            force: self.force,
            judge: self.judge.clone(),
            constrain: (!self.constrain).then_some(false),
        };
        let library = Library::load().map_err(|e| e.to_string())?;
        let plan =
            batch::plan(&session.review, &panel, &library, &scope).map_err(|e| e.to_string())?;
        tracing::info!(
            "batch run of {} judge(s) over {} item(s), {} judgment(s) to make",
            plan.judges.len(),
            plan.items,
            plan.remaining()
        );
        let local = plan
            .judges
            .iter()
            .any(|j| !j.tasks.is_empty() && matches!(j.judge.kind, JudgeKind::Local { .. }));
        self.run = Some(BatchRun {
            batch: Batch::start(&plan, self.waker.clone()),
            progress: BatchProgress::new(&plan),
            failures: Vec::new(),
            saved: 0,
            skipped: plan.judges.iter().map(|j| j.already_done).sum(),
            dataset: session.review.dataset.path.clone(),
            local,
            stopped: None,
        });
        Ok(())
    }

    /// The item ids the chosen coverage names (empty: the whole dataset).
    fn items(&self, session: &Session) -> Result<Vec<String>, String> {
        let items = session.review.items();
        match self.coverage {
            Coverage::Dataset => Ok(Vec::new()),
            Coverage::Visible => {
                let ids: Vec<String> = session
                    .visible()
                    .iter()
                    .filter_map(|&i| items.get(i).map(|it| it.id.clone()))
                    .collect();
                if ids.is_empty() {
                    Err(
                        "the list shows no items: change its filter, or run over the whole dataset"
                            .into(),
                    )
                } else {
                    Ok(ids)
                }
            }
            Coverage::Current => session
                .current
                .and_then(|i| items.get(i))
                .map(|it| vec![it.id.clone()])
                .ok_or_else(|| "no item is selected".to_string()),
        }
    }

    /// Stops the run: no new requests; those in flight end without a judgment.
    pub fn cancel(&mut self) {
        if let Some(run) = &mut self.run {
            run.cancel("cancelled");
        }
    }

    /// Reads every waiting event; saves finished judgments into `session` (the run's
    /// dataset only) and refreshes it. Returns true when something arrived.
    pub fn poll(&mut self, session: Option<&mut Session>) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        let mut session = session.filter(|s| s.review.dataset.path == run.dataset);
        let mut writable = true;
        if session.is_none() && !run.is_finished() {
            run.cancel("stopped: another dataset was opened");
        }
        let mut arrived = false;
        let mut saved_any = false;
        while let Some(event) = run.batch.try_recv() {
            arrived = true;
            run.progress.apply(&event, Instant::now());
            let name = run
                .progress
                .judges
                .get(event.judge())
                .map(|j| j.name.clone())
                .unwrap_or_default();
            run.failures.extend(event.failures(&name));
            if let batch::BatchEvent::Judged { item, outcome, .. } = event {
                let Some(s) = session.as_deref_mut().filter(|_| writable) else {
                    continue;
                };
                let outcome = *outcome;
                match s.review.add_judgment(&item, outcome.judgment, outcome.run) {
                    Ok(()) => {
                        run.saved += 1;
                        saved_any = true;
                    }
                    Err(e) => {
                        run.failures.push(format!(
                            "{name} {item}: the judgment could not be saved: {e}"
                        ));
                        run.cancel("stopped: a judgment could not be saved");
                        // Nothing more goes to a journal that refused a write.
                        writable = false;
                    }
                }
            }
        }
        if saved_any {
            if let Some(s) = session {
                s.refilter();
            }
        }
        arrived
    }

    /// The window's contents.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: Option<&Session>,
        settings: &mut Settings,
        engine_busy: bool,
    ) {
        let running = self.is_running();
        ui.horizontal(|ui| {
            let label = ui.label("Panel file");
            ui.add_enabled(
                !running,
                egui::TextEdit::singleline(&mut settings.batch_panel)
                    .hint_text("panel.toml")
                    .desired_width(320.0),
            )
            .labelled_by(label.id);
            if ui
                .add_enabled(!running, egui::Button::new("Choose…"))
                .clicked()
            {
                if let Some(path) = rfd::FileDialog::new()
                    .add_filter("panel files", &["toml"])
                    .pick_file()
                {
                    settings.batch_panel = path.display().to_string();
                }
            }
            if ui
                .add_enabled(!running, egui::Button::new("Reload"))
                .on_hover_text("read the panel file again")
                .clicked()
            {
                self.reload();
            }
        });
        let path = settings.batch_panel.clone();
        let mut names = Vec::new();
        let mut chosen_local = false;
        match self.load(&path) {
            None => {
                ui.label("A panel file (TOML) names the judges: local models and OpenAI-compatible endpoints.");
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e.as_str());
            }
            Some(Ok(panel)) => {
                let panel = panel.clone();
                names = panel.names();
                egui::Grid::new("batch-judges")
                    .striped(true)
                    .show(ui, |ui| {
                        for j in &panel.judges {
                            ui.label(egui::RichText::new(&j.name).strong());
                            ui.label(match &j.kind {
                                JudgeKind::Remote {
                                    base_url, model, ..
                                } => format!(
                                    "{model} at {base_url}, up to {} at a time",
                                    j.max_concurrency
                                ),
                                JudgeKind::Local { model, .. } if j.max_concurrency > 1 => {
                                    format!("local {model}, batches of {}", j.max_concurrency)
                                }
                                JudgeKind::Local { model, .. } => format!("local {model}"),
                            });
                            ui.label(j.template.as_deref().unwrap_or("default template"));
                            ui.end_row();
                        }
                    });
                chosen_local = self.chosen_local(&panel);
            }
        }
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("batch-scope")
                .num_columns(2)
                .show(ui, |ui| {
                    ui.label("Judges");
                    let current = self.judge.clone().unwrap_or_else(|| "all".into());
                    egui::ComboBox::new("batch-judge", "judges to run")
                        .selected_text(current)
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut self.judge, None, "all");
                            for n in &names {
                                ui.selectable_value(&mut self.judge, Some(n.clone()), n);
                            }
                        });
                    ui.end_row();
                    ui.label("Items");
                    ui.vertical(|ui| {
                        for c in Coverage::ALL {
                            let text = match (c, session) {
                                (Coverage::Visible, Some(s)) => {
                                    format!("{} ({})", c.label(), s.visible().len())
                                }
                                (Coverage::Dataset, Some(s)) => {
                                    format!("{} ({})", c.label(), s.review.items().len())
                                }
                                _ => c.label().to_string(),
                            };
                            ui.radio_value(&mut self.coverage, c, text);
                        }
                    });
                    ui.end_row();
                });
            ui.checkbox(&mut self.swap, "Both orders (swap A and B)");
            ui.checkbox(
                &mut self.force,
                "Judge again what the journal already holds",
            );
            ui.checkbox(
                &mut self.constrain,
                "Constrain answers to the template's grammar",
            )
            .on_hover_text(
                "Each judge as its panel file's `constrain` says (on by default where the template declares an answer grammar); unticked, every judge samples freely",
            );
        });
        ui.horizontal(|ui| {
            if running {
                let cancelling = self.run.as_ref().is_some_and(|r| r.batch.is_cancelled());
                if ui
                    .add_enabled(!cancelling, egui::Button::new("Cancel"))
                    .clicked()
                {
                    self.cancel();
                }
            } else {
                let why_not = if session.is_none() {
                    Some("open a dataset first")
                } else if engine_busy && chosen_local {
                    Some(LOCAL_BUSY)
                } else {
                    None
                };
                let start = ui
                    .add_enabled(why_not.is_none(), egui::Button::new("Start"))
                    .on_disabled_hover_text(why_not.unwrap_or_default());
                if start.clicked() {
                    if let Some(s) = session {
                        self.error = self.start(&path, s, engine_busy).err();
                    }
                }
            }
        });
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e.as_str());
        }
        if let Some(run) = &self.run {
            ui.separator();
            progress_rows(ui, run);
        }
        if running {
            // Rate and ETA move between events too.
            ui.ctx().request_repaint_after(Duration::from_millis(250));
        }
    }
}

const LOCAL_BUSY: &str =
    "the Run a judge box is using this machine's engine: stop it first, or run only remote judges";

fn progress_rows(ui: &mut egui::Ui, run: &BatchRun) {
    let now = Instant::now();
    egui::Grid::new("batch-progress")
        .num_columns(3)
        .show(ui, |ui| {
            for j in &run.progress.judges {
                ui.label(egui::RichText::new(&j.name).strong());
                let fraction = if j.total == 0 {
                    1.0
                } else {
                    (j.done + j.failed) as f32 / j.total as f32
                };
                ui.add(egui::ProgressBar::new(fraction).desired_width(160.0));
                ui.label(j.line(now));
                ui.end_row();
            }
        });
    if run.is_finished() {
        ui.label(egui::RichText::new(run.summary()).strong());
    }
    if !run.failures.is_empty() {
        egui::CollapsingHeader::new(format!("{} without a judgment", run.failures.len()))
            .id_salt("batch-failures")
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .max_height(200.0)
                    .show(ui, |ui| {
                        for f in &run.failures {
                            ui.label(egui::RichText::new(f).small());
                        }
                    });
            });
    }
}
