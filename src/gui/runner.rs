//! Running a local judge from the app: load the model on the engine thread (with download
//! progress), stream its critique into a `CritiqueParser` the judge panel draws live, stop it on
//! request, and save the finished judgment to the journal. Everything here only polls the
//! engine's channel: the UI thread never waits on a model.

use super::session::Session;
use crate::critique::{Critique, CritiqueParser};
use crate::engine::catalogue;
use crate::engine::device::DeviceChoice;
use crate::engine::hub::{
    format_bytes, format_duration, DownloadEvent, Hub, HubSettings, TransferMeter,
};
use crate::engine::judge::{conclude, JudgeSpec, JudgeTask};
use crate::engine::{
    ConstrainMode, Engine, EngineEvent, FinishReason, GenerateRequest, LoadEvent, LoadOptions,
    ModelInfo, RequestId, SamplingParams,
};
use crate::prompts::Library;
use crate::verdict::{Order, Verdict};
use std::sync::Arc;
use std::time::Instant;

/// A model being downloaded or loaded.
#[derive(Debug)]
pub struct Loading {
    pub id: RequestId,
    pub model: String,
    pub stage: String,
    pub done: u64,
    pub total: u64,
    meter: TransferMeter,
}

impl Loading {
    /// Fraction done, when bytes are known.
    pub fn fraction(&self) -> Option<f32> {
        (self.total > 0).then(|| self.done as f32 / self.total as f32)
    }

    /// "1.2 GB / 15.2 GB, 48 MB/s, 4m 50s left".
    pub fn describe(&self) -> String {
        if self.total == 0 {
            return format!("{}: {}", self.model, self.stage);
        }
        let speed = self
            .meter
            .bytes_per_second()
            .map_or(String::new(), |r| format!(", {}/s", format_bytes(r as u64)));
        let eta = self
            .meter
            .eta(self.total)
            .map_or(String::new(), |d| format!(", {} left", format_duration(d)));
        format!(
            "{}: {} / {}{speed}{eta}",
            self.model,
            format_bytes(self.done),
            format_bytes(self.total)
        )
    }
}

/// A critique streaming in.
pub struct ActiveRun {
    pub id: RequestId,
    pub item: String,
    pub order: Order,
    task: JudgeTask,
    spec: JudgeSpec,
    settings_key: String,
    parser: CritiqueParser,
    pub prompt_tokens: usize,
    started: Instant,
    first_text: Option<Instant>,
    pieces: usize,
    pub stopping: bool,
}

impl ActiveRun {
    /// The critique as read so far.
    pub fn critique(&self) -> &Critique {
        self.parser.snapshot()
    }

    pub fn text(&self) -> &str {
        self.parser.text()
    }

    pub fn judge(&self) -> String {
        self.spec.judge_name()
    }

    /// Text pieces per second since the first one (about tokens per second while streaming).
    pub fn rate(&self) -> Option<f64> {
        let first = self.first_text?;
        let secs = first.elapsed().as_secs_f64();
        (self.pieces > 1 && secs > 0.0).then(|| (self.pieces - 1) as f64 / secs)
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The last finished run, for the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub item: String,
    pub judge: String,
    pub verdict: Option<Verdict>,
    pub finish: FinishReason,
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub saved: bool,
}

/// A run asked for before its model was loaded.
struct Pending {
    item: String,
    order: Order,
}

/// What to run: the panel's choices.
#[derive(Debug, Clone, PartialEq)]
pub struct RunChoice {
    pub model: String,
    pub template: String,
    pub device: String,
    pub max_new_tokens: usize,
    /// Keep the answer inside the template's answer grammar (where it declares one).
    pub constrain: bool,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The app's side of the engine thread.
#[derive(Default)]
pub struct Runner {
    engine: Option<Engine>,
    waker: Option<Waker>,
    pub loaded: Option<ModelInfo>,
    loaded_choice: Option<(String, String)>,
    pub loading: Option<Loading>,
    pub active: Option<ActiveRun>,
    pub last: Option<Finished>,
    /// The last error, for the banner; taken by the app.
    pub error: Option<String>,
    pending: Option<Pending>,
    choice: Option<RunChoice>,
}

impl Runner {
    /// `waker` is called by the engine thread after every event (the GUI's repaint).
    pub fn new(waker: Option<Waker>) -> Runner {
        Runner {
            waker,
            ..Runner::default()
        }
    }

    pub fn is_busy(&self) -> bool {
        self.loading.is_some() || self.active.is_some()
    }

    fn engine(&mut self) -> &Engine {
        let waker = self.waker.clone();
        self.engine
            .get_or_insert_with(|| Engine::spawn(Hub::new(HubSettings::from_env()), waker))
    }

    /// Judges the item `item` of `session` with `choice`, loading the model first if needed.
    pub fn start(
        &mut self,
        session: &Session,
        item: usize,
        order: Order,
        choice: &RunChoice,
    ) -> Result<(), String> {
        if self.is_busy() {
            return Err("a judge is already running: stop it first (Esc)".into());
        }
        let id = session
            .review
            .items()
            .get(item)
            .map(|i| i.id.clone())
            .ok_or("no item selected")?;
        let device: DeviceChoice = choice
            .device
            .parse()
            .map_err(|e: crate::engine::device::DeviceError| e.to_string())?;
        let wanted = (choice.model.trim().to_string(), device.to_string());
        self.choice = Some(choice.clone());
        if self.loaded.is_some() && self.loaded_choice.as_ref() == Some(&wanted) {
            return self.generate(session, &id, order);
        }
        let source = catalogue::resolve(&choice.model).map_err(|e| e.to_string())?;
        let load_id = self
            .engine()
            .load(
                source,
                LoadOptions {
                    device,
                    ..LoadOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
        self.loaded = None;
        self.loaded_choice = Some(wanted);
        self.loading = Some(Loading {
            id: load_id,
            model: choice.model.clone(),
            stage: "starting".into(),
            done: 0,
            total: 0,
            meter: TransferMeter::new(),
        });
        self.pending = Some(Pending { item: id, order });
        Ok(())
    }

    fn generate(&mut self, session: &Session, item_id: &str, order: Order) -> Result<(), String> {
        let (Some(info), Some(choice)) = (self.loaded.clone(), self.choice.clone()) else {
            return Err("no model is loaded".into());
        };
        let library = Library::load().map_err(|e| e.to_string())?;
        let template = library.get(&choice.template).map_err(|e| e.to_string())?;
        let item = session
            .review
            .dataset
            .get(item_id)
            .ok_or_else(|| format!("item {item_id} is gone"))?;
        let task = JudgeTask::new(template, item, order, None).map_err(|e| e.to_string())?;
        let constrain = if choice.constrain && template.has_answer_grammar() {
            ConstrainMode::Grammar
        } else {
            ConstrainMode::None
        };
        let spec = JudgeSpec {
            model: info.name.clone(),
            template: choice.template.clone(),
            preference: None,
            sampling: SamplingParams {
                max_new_tokens: choice.max_new_tokens,
                ..SamplingParams::default()
            },
            constrain,
        };
        let settings_key = spec.settings_key(&info.source, template.source_text());
        let request = GenerateRequest::new(task.chat_prompt(), spec.sampling.clone())
            .with_grammar(task.grammar(constrain));
        let id = self.engine().generate(request).map_err(|e| e.to_string())?;
        self.active = Some(ActiveRun {
            id,
            item: item_id.to_string(),
            order,
            parser: task.parser(),
            task,
            spec,
            settings_key,
            prompt_tokens: 0,
            started: Instant::now(),
            first_text: None,
            pieces: 0,
            stopping: false,
        });
        Ok(())
    }

    /// Stops the running load or generation (within one token).
    pub fn stop(&mut self) {
        if let Some(engine) = &self.engine {
            if let Some(run) = &mut self.active {
                engine.cancel(run.id);
                run.stopping = true;
            }
            if let Some(load) = &self.loading {
                engine.cancel(load.id);
                self.pending = None;
            }
        }
    }

    /// Reads every waiting engine event; saves finished judgments into `session`. Returns
    /// true when something changed (the app repaints anyway; this is for tests).
    pub fn poll(&mut self, session: Option<&mut Session>) -> bool {
        let Some(engine) = &self.engine else {
            return false;
        };
        let mut events = Vec::new();
        while let Some(e) = engine.try_recv() {
            events.push(e);
        }
        let changed = !events.is_empty();
        let mut session = session;
        for event in events {
            self.apply(event, session.as_deref_mut());
        }
        changed
    }

    fn apply(&mut self, event: EngineEvent, session: Option<&mut Session>) {
        match event {
            EngineEvent::Loading { id, event } => {
                let Some(load) = self.loading.as_mut().filter(|l| l.id == id) else {
                    return;
                };
                match event {
                    LoadEvent::Download(DownloadEvent::Plan {
                        total_bytes,
                        cached_bytes,
                        ..
                    }) => {
                        load.total = total_bytes;
                        load.done = cached_bytes;
                        load.stage = "downloading".into();
                    }
                    LoadEvent::Download(DownloadEvent::Bytes { done, total, .. }) => {
                        load.done = done;
                        load.total = total;
                        load.meter.update(done, Instant::now());
                    }
                    LoadEvent::Download(DownloadEvent::Retry { reason, .. }) => {
                        load.stage = format!("retrying: {reason}");
                    }
                    LoadEvent::Download(DownloadEvent::FileDone { .. }) => {}
                    LoadEvent::Stage(stage) => {
                        load.stage = stage;
                        load.total = 0;
                    }
                }
            }
            EngineEvent::Loaded { id, info } => {
                if self.loading.as_ref().is_some_and(|l| l.id == id) {
                    self.loading = None;
                    self.loaded = Some(info);
                    if let (Some(p), Some(s)) = (self.pending.take(), session) {
                        if let Err(e) = self.generate(s, &p.item, p.order) {
                            self.error = Some(e);
                        }
                    }
                }
            }
            EngineEvent::LoadFailed { id, error } => {
                if self.loading.as_ref().is_some_and(|l| l.id == id) {
                    self.loading = None;
                    self.loaded_choice = None;
                    self.pending = None;
                    self.error = Some(format!("{error}"));
                }
            }
            EngineEvent::Started { id, prompt_tokens } => {
                if let Some(run) = self.active.as_mut().filter(|r| r.id == id) {
                    run.prompt_tokens = prompt_tokens;
                }
            }
            EngineEvent::Text { id, text } => {
                if let Some(run) = self.active.as_mut().filter(|r| r.id == id) {
                    run.parser.feed(text.as_bytes());
                    run.pieces += 1;
                    run.first_text.get_or_insert_with(Instant::now);
                }
            }
            EngineEvent::Finished { id, generation } => {
                let Some(run) = self.active.take_if(|r| r.id == id) else {
                    return;
                };
                let judge = run.spec.judge_name();
                let Some(info) = self.loaded.clone() else {
                    return;
                };
                if generation.finish == FinishReason::Cancelled {
                    self.last = Some(Finished {
                        item: run.item,
                        judge,
                        verdict: None,
                        finish: generation.finish,
                        tokens: generation.tokens.len(),
                        tokens_per_s: generation.timing.decode_tokens_per_s,
                        saved: false,
                    });
                    return;
                }
                let outcome = conclude(&run.spec, &run.settings_key, &run.task, &generation, &info);
                let verdict = outcome.judgment.verdict;
                let mut saved = false;
                if let Some(s) = session {
                    match s
                        .review
                        .add_judgment(&run.item, outcome.judgment, outcome.run)
                    {
                        Ok(()) => {
                            saved = true;
                            s.refilter();
                        }
                        Err(e) => {
                            self.error = Some(format!("the judgment could not be saved: {e}"))
                        }
                    }
                }
                self.last = Some(Finished {
                    item: run.item,
                    judge,
                    verdict,
                    finish: generation.finish,
                    tokens: generation.tokens.len(),
                    tokens_per_s: generation.timing.decode_tokens_per_s,
                    saved,
                });
            }
            EngineEvent::Failed { id, error } => {
                if self.active.as_ref().is_some_and(|r| r.id == id) {
                    self.active = None;
                    self.error = Some(format!("{error}"));
                }
            }
            EngineEvent::Unloaded => {
                self.loaded = None;
                self.loaded_choice = None;
            }
        }
    }
}
