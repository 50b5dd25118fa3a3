//! The workers of a run: per judge, a queue of tasks and as many workers as its
//! `max_concurrency`: for a remote judge, tasks on the remote runtime (a request in flight
//! costs a task, not a thread); for a local judge, one thread, which keeps `max_concurrency`
//! requests queued on the engine thread, and the engine batches them. Workers
//! only report; the caller owns the journal and writes each judgment as its event arrives, so
//! a judgment is on disk exactly once or not at all.

use super::panel_file::JudgeKind;
use super::plan::{JudgePlan, Plan};
use crate::critique::CritiqueParser;
use crate::engine::catalogue;
use crate::engine::device::DeviceChoice;
use crate::engine::hub::{Hub, HubSettings};
use crate::engine::judge::{
    conclude_output, local_description, JudgeOutcome, JudgeOutput, JudgeTask,
};
use crate::engine::ConstrainMode;
use crate::engine::{
    Engine, EngineEvent, FinishReason, GenerateRequest, LoadEvent, LoadOptions, ModelInfo,
    RequestId,
};
use crate::remote::{
    ChatRequest, Completion, Endpoint, EndpointSettings, ErrorScope, RemoteConstraint, RemoteError,
};
use crate::verdict::Order;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Called after every event (the app's `request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What the workers report. `judge` is the judge's index in the plan.
#[derive(Debug)]
pub enum BatchEvent {
    /// A step before the judge can start (loading a model).
    Status { judge: usize, text: String },
    /// A request for `item` in `order` began.
    Started {
        judge: usize,
        item: String,
        order: Order,
    },
    /// An attempt failed and will be tried again after `wait`; its partial answer is dropped.
    Retrying {
        judge: usize,
        item: String,
        order: Order,
        retry: u32,
        max_retries: u32,
        wait: Duration,
        error: String,
    },
    /// A finished judgment, ready for the journal.
    Judged {
        judge: usize,
        item: String,
        outcome: Box<JudgeOutcome>,
    },
    /// No judgment for this item: an error that retrying cannot fix, or retries ran out.
    Failed {
        judge: usize,
        item: String,
        order: Order,
        error: String,
    },
    /// The judge stopped taking work (its key was refused, its endpoint is gone, its model
    /// does not load); `not_started` lists the tasks it gave up without trying.
    Stopped {
        judge: usize,
        error: String,
        not_started: Vec<(String, Order)>,
    },
    /// Every worker of the judge has exited.
    Finished { judge: usize },
}

/// `A/B` or `B/A`: the order a judgment was asked in, as progress and failure lines show it.
pub fn order_label(order: Order) -> &'static str {
    if order.is_swapped() {
        "B/A"
    } else {
        "A/B"
    }
}

impl BatchEvent {
    /// The judgments this event says will not be made, one line each, named by `judge` (the
    /// judge's name): `judge item (A/B): why`. Empty for every other event.
    pub fn failures(&self, judge: &str) -> Vec<String> {
        match self {
            BatchEvent::Failed {
                item, order, error, ..
            } => vec![format!("{judge} {item} ({}): {error}", order_label(*order))],
            BatchEvent::Stopped { not_started, .. } => not_started
                .iter()
                .map(|(item, order)| {
                    format!(
                        "{judge} {item} ({}): not attempted ({judge} stopped)",
                        order_label(*order)
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn judge(&self) -> usize {
        match self {
            BatchEvent::Status { judge, .. }
            | BatchEvent::Started { judge, .. }
            | BatchEvent::Retrying { judge, .. }
            | BatchEvent::Judged { judge, .. }
            | BatchEvent::Failed { judge, .. }
            | BatchEvent::Stopped { judge, .. }
            | BatchEvent::Finished { judge } => *judge,
        }
    }
}

/// A running batch. Dropping it cancels the run; workers in the middle of a request stop at
/// their next chunk and what they had is not reported.
pub struct Batch {
    events: Receiver<BatchEvent>,
    cancel: Arc<AtomicBool>,
}

impl Batch {
    /// Starts every judge of `plan`.
    pub fn start(plan: &Plan, waker: Option<Waker>) -> Batch {
        let (tx, events) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        for (index, judge) in plan.judges.iter().enumerate() {
            let workers = judge.judge.max_concurrency.min(judge.tasks.len()).max(1);
            let pool = Arc::new(Pool {
                index,
                plan: judge.clone(),
                queue: Mutex::new(judge.tasks.iter().cloned().collect()),
                stopped: AtomicBool::new(false),
                workers_left: AtomicUsize::new(workers),
                cancel: cancel.clone(),
                out: Outbox {
                    tx: tx.clone(),
                    waker: waker.clone(),
                },
            });
            if judge.tasks.is_empty() {
                pool.worker_done();
                continue;
            }
            match &judge.judge.kind {
                JudgeKind::Remote {
                    base_url,
                    model,
                    timeout,
                    grammar_field,
                    ..
                } => {
                    let endpoint = Endpoint::new(
                        EndpointSettings {
                            base_url: base_url.clone(),
                            model: model.clone(),
                            timeout: *timeout,
                        },
                        judge.api_key.clone(),
                    );
                    // A task per request in flight on the remote runtime, not a thread.
                    match crate::remote::runtime() {
                        Ok(runtime) => {
                            for _ in 0..workers {
                                let pool = pool.clone();
                                let endpoint = endpoint.clone();
                                let grammar_field = grammar_field.clone();
                                runtime.spawn(async move {
                                    remote_worker(&pool, &endpoint, &grammar_field).await;
                                    pool.worker_done();
                                });
                            }
                        }
                        Err(e) => {
                            pool.stop(e.to_string());
                            for _ in 0..workers {
                                pool.worker_done();
                            }
                        }
                    }
                }
                JudgeKind::Local {
                    model,
                    device,
                    dtype,
                } => {
                    let options = LoadOptions {
                        device: device.unwrap_or_else(DeviceChoice::best_available),
                        dtype: *dtype,
                        context: None,
                    };
                    let model = model.clone();
                    spawn(&pool, format!("arbiter-local-{index}"), move |p| {
                        local_worker(p, &model, options)
                    });
                }
            }
        }
        Batch { events, cancel }
    }

    /// Stops the run: no new requests, and those in flight end without a judgment.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The next event, if one is waiting (never blocks: for a UI frame).
    pub fn try_recv(&self) -> Option<BatchEvent> {
        self.events.try_recv().ok()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<BatchEvent, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn spawn(pool: &Arc<Pool>, name: String, work: impl FnOnce(&Pool) + Send + 'static) {
    let p = pool.clone();
    let started = std::thread::Builder::new().name(name).spawn(move || {
        work(&p);
        p.worker_done();
    });
    if let Err(e) = started {
        pool.stop(format!("cannot start a worker thread: {e}"));
        pool.worker_done();
    }
}

struct Outbox {
    tx: Sender<BatchEvent>,
    waker: Option<Waker>,
}

/// One judge's share of the run, shared by its workers.
struct Pool {
    index: usize,
    plan: JudgePlan,
    queue: Mutex<VecDeque<JudgeTask>>,
    stopped: AtomicBool,
    workers_left: AtomicUsize,
    cancel: Arc<AtomicBool>,
    out: Outbox,
}

impl Pool {
    fn send(&self, event: BatchEvent) {
        // A closed channel means the caller has gone: the cancel flag stops the workers.
        let _ = self.out.tx.send(event);
        if let Some(w) = &self.out.waker {
            w();
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The next task, unless the run is cancelled or the judge stopped.
    fn next(&self) -> Option<JudgeTask> {
        if self.cancelled() || self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        self.queue.lock().ok()?.pop_front()
    }

    /// Gives up the judge's remaining tasks (once, whoever calls first).
    fn stop(&self, error: String) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        let not_started = self
            .queue
            .lock()
            .map(|mut q| q.drain(..).map(|t| (t.item, t.order)).collect())
            .unwrap_or_default();
        self.send(BatchEvent::Stopped {
            judge: self.index,
            error,
            not_started,
        });
    }

    fn worker_done(&self) {
        if self.workers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.send(BatchEvent::Finished { judge: self.index });
        }
    }

    fn judged(&self, task: &JudgeTask, output: JudgeOutput<'_>) {
        let outcome = conclude_output(&self.plan.spec, &self.plan.settings_key, task, output);
        self.send(BatchEvent::Judged {
            judge: self.index,
            item: task.item.clone(),
            outcome: Box::new(outcome),
        });
    }

    fn failed(&self, task: &JudgeTask, error: String) {
        self.send(BatchEvent::Failed {
            judge: self.index,
            item: task.item.clone(),
            order: task.order,
            error,
        });
    }
}

async fn remote_worker(pool: &Pool, endpoint: &Endpoint, grammar_field: &str) {
    let judge = &pool.plan.judge;
    let mode = pool.plan.spec.constrain;
    while let Some(task) = pool.next() {
        pool.send(BatchEvent::Started {
            judge: pool.index,
            item: task.item.clone(),
            order: task.order,
        });
        let constraint = task
            .answer
            .as_ref()
            .and_then(|a| RemoteConstraint::new(mode, a, &task.template, grammar_field));
        let request = ChatRequest {
            prompt: &task.prompt,
            sampling: &pool.plan.spec.sampling,
            constraint: constraint.as_ref(),
        };
        // Both callbacks reach the parser and the task moves between threads: a mutex,
        // never contended, rather than a RefCell.
        let parser = Mutex::new(task.parser());
        let result = endpoint
            .complete_async(
                &request,
                &judge.retry,
                &pool.cancel,
                &mut |text: &str| {
                    if let Ok(mut p) = parser.lock() {
                        p.feed(text.as_bytes());
                    }
                },
                &mut |retry, wait, error: &RemoteError| {
                    if let Ok(mut p) = parser.lock() {
                        *p = task.parser();
                    }
                    pool.send(BatchEvent::Retrying {
                        judge: pool.index,
                        item: task.item.clone(),
                        order: task.order,
                        retry,
                        max_retries: judge.retry.max_retries,
                        wait,
                        error: error.to_string(),
                    });
                },
            )
            .await;
        match result {
            Ok(completion) => {
                let runner = remote_description(endpoint, &completion);
                pool.judged(
                    &task,
                    JudgeOutput {
                        judge: &judge.name,
                        text: &completion.text,
                        finish: completion.finish,
                        timing: completion.timing,
                        runner,
                        critique: Some(
                            parser
                                .into_inner()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .finish(),
                        ),
                    },
                );
            }
            Err(RemoteError::Cancelled) => return,
            Err(e) => {
                let message = refusal_hint(&e, mode);
                pool.failed(&task, message.clone());
                if e.scope() == ErrorScope::Endpoint {
                    pool.stop(message);
                }
            }
        }
    }
}

/// The error's message; when the server rejects a constrained request as malformed, with what
/// was asked of it and how to do without. (A 400 stays an error of its item: the prompt itself
/// may be what the server refused.)
fn refusal_hint(e: &RemoteError, mode: ConstrainMode) -> String {
    let message = e.to_string();
    match e {
        RemoteError::Status { status, .. } if mode.is_on() && matches!(status, 400 | 422) => {
            let sent = match mode {
                ConstrainMode::JsonSchema => "`response_format` of type json_schema",
                ConstrainMode::JsonObject => "`response_format` of type json_object with a schema",
                _ => "a GBNF grammar",
            };
            format!(
                "{message} (the request carried the answer's shape as {sent} (constrain = \"{mode}\"), which this server may not support: set another `constrain` in the panel file (\"json_schema\", \"json_object\", \"grammar\" with its `grammar_field`) or \"none\")"
            )
        }
        _ => message,
    }
}

/// The run record's description of a remote judge: what answered, and how many attempts it
/// took. Never the API key; the URL without credentials or query.
fn remote_description(endpoint: &Endpoint, c: &Completion) -> Map<String, Value> {
    let mut run = Map::new();
    run.insert("engine".into(), json!("remote"));
    run.insert("model".into(), json!(endpoint.settings().model));
    if let Some(served) = &c.served_model {
        run.insert("served_model".into(), json!(served));
    }
    run.insert(
        "base_url".into(),
        json!(public_url(&endpoint.settings().base_url)),
    );
    run.insert("attempts".into(), json!(c.attempts));
    if let Some(f) = &c.finish_reason {
        run.insert("finish_reason".into(), json!(f));
    }
    if let Some(u) = &c.usage {
        run.insert("usage".into(), json!(u));
    }
    run
}

/// A URL fit for the journal: no `user:password@`, no query string.
fn public_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

fn local_worker(pool: &Pool, model: &str, options: LoadOptions) {
    let status = |text: String| {
        pool.send(BatchEvent::Status {
            judge: pool.index,
            text,
        })
    };
    let source = match catalogue::resolve(model) {
        Ok(s) => s,
        Err(e) => return pool.stop(format!("{model}: {e}")),
    };
    status(format!("loading {model}"));
    let engine = Engine::spawn(Hub::new(HubSettings::from_env()), None);
    let Some(info) = load(pool, &engine, source, options, model) else {
        return;
    };
    status(format!("loaded {} on {}", info.name, info.device));
    let judge = &pool.plan.judge;
    // `max_concurrency` is the engine's batch size: that many requests are kept queued on the
    // engine thread, which runs them at once (see `engine::schedule`); 1 runs them in turn.
    let width = judge.max_concurrency.max(1);
    if width > 1 {
        if let Err(e) = engine.set_max_batch(width) {
            return pool.stop(e.to_string());
        }
    }
    let mut in_flight: HashMap<RequestId, (JudgeTask, CritiqueParser)> = HashMap::new();
    let mut draining = false;
    loop {
        while !draining && in_flight.len() < width {
            let Some(task) = pool.next() else {
                break;
            };
            pool.send(BatchEvent::Started {
                judge: pool.index,
                item: task.item.clone(),
                order: task.order,
            });
            let request = GenerateRequest::new(task.chat_prompt(), pool.plan.spec.sampling.clone())
                .with_grammar(task.grammar(pool.plan.spec.constrain));
            match engine.generate(request) {
                Ok(id) => {
                    let parser = task.parser();
                    in_flight.insert(id, (task, parser));
                }
                Err(e) => return pool.stop(e.to_string()),
            }
        }
        if in_flight.is_empty() {
            return;
        }
        match engine.recv_timeout(Duration::from_millis(100)) {
            Ok(EngineEvent::Text { id, text }) => {
                if let Some((_, parser)) = in_flight.get_mut(&id) {
                    parser.feed(text.as_bytes());
                }
            }
            Ok(EngineEvent::Finished { id, generation }) => {
                let Some((task, parser)) = in_flight.remove(&id) else {
                    continue;
                };
                if generation.finish == FinishReason::Cancelled {
                    // The run was cancelled: what it had is not reported.
                    draining = true;
                    continue;
                }
                pool.judged(
                    &task,
                    JudgeOutput {
                        judge: &judge.name,
                        text: &generation.text,
                        finish: generation.finish,
                        timing: generation.timing,
                        runner: local_description(&info),
                        critique: Some(parser.finish()),
                    },
                );
            }
            Ok(EngineEvent::Failed { id, error }) => {
                if let Some((task, _)) = in_flight.remove(&id) {
                    pool.failed(&task, error.to_string());
                }
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                if pool.cancelled() {
                    draining = true;
                    engine.cancel_all();
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return pool.stop("the engine thread has exited".into())
            }
        }
    }
}

/// Loads the judge's model on the engine thread, reporting its stages; `None` when it failed
/// (the judge is stopped) or the run was cancelled.
fn load(
    pool: &Pool,
    engine: &Engine,
    source: catalogue::ModelSource,
    options: LoadOptions,
    model: &str,
) -> Option<ModelInfo> {
    let id = match engine.load(source, options) {
        Ok(id) => id,
        Err(e) => {
            pool.stop(e.to_string());
            return None;
        }
    };
    let mut downloading = false;
    loop {
        match engine.recv_timeout(Duration::from_millis(100)) {
            Ok(EngineEvent::Loading { event, .. }) => match event {
                LoadEvent::Stage(s) => pool.send(BatchEvent::Status {
                    judge: pool.index,
                    text: s,
                }),
                LoadEvent::Download(_) if !downloading => {
                    downloading = true;
                    pool.send(BatchEvent::Status {
                        judge: pool.index,
                        text: format!("downloading {model}"),
                    });
                }
                LoadEvent::Download(_) => {}
            },
            Ok(EngineEvent::Loaded { id: i, info }) if i == id => return Some(info),
            Ok(EngineEvent::LoadFailed { id: i, error }) if i == id => {
                pool.stop(format!("loading {model}: {error}"));
                return None;
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {
                if pool.cancelled() {
                    engine.cancel(id);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                pool.stop("the engine thread has exited".into());
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::public_url;

    #[test]
    fn journal_urls_carry_no_credentials() {
        assert_eq!(
            public_url("https://user:pw@api.example.com/v1?key=abc"),
            "https://api.example.com/v1"
        );
        assert_eq!(
            public_url("http://127.0.0.1:8000/v1"),
            "http://127.0.0.1:8000/v1"
        );
    }
}
