//! The engine thread: owns the loaded model, takes commands over a channel (load, generate,
//! unload) and answers with events (load progress, text as it is decoded, timing, errors).
//! A GUI or CLI never waits on it except by reading the channel; an optional waker (the GUI's
//! `request_repaint`) is called after every event.
//!
//! With a batch size above one ([`Engine::set_max_batch`]), generations queued together run
//! at once through continuous batching (`schedule`) on the project's decoder, constrained
//! ones included: each is reported exactly as if alone. Other decoders and a batch size of
//! one (the default, the Run box) take the single-stream path.

use super::catalogue::ModelSource;
use super::constrain::GrammarVocab;
use super::error::EngineError;
use super::generate::{GenerateRequest, Generation};
use super::hub::Hub;
use super::loader::{self, LoadEvent, LoadOptions, LoadedModel, ModelInfo};
use super::model::Backend;
use super::schedule::{BatchSettings, Scheduler, SeqEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Identifies one load or generation request.
pub type RequestId = u64;

enum Command {
    Load {
        id: RequestId,
        source: ModelSource,
        options: LoadOptions,
        cancel: Arc<AtomicBool>,
    },
    Generate {
        id: RequestId,
        request: Box<GenerateRequest>,
        cancel: Arc<AtomicBool>,
    },
    Unload,
    /// Generations run at once, at most (1: one at a time).
    SetMaxBatch(usize),
    Shutdown,
}

/// What the engine thread reports.
#[derive(Debug)]
pub enum EngineEvent {
    Loading {
        id: RequestId,
        event: LoadEvent,
    },
    Loaded {
        id: RequestId,
        info: ModelInfo,
    },
    LoadFailed {
        id: RequestId,
        error: EngineError,
    },
    /// The prompt is tokenized and prefill begins.
    Started {
        id: RequestId,
        prompt_tokens: usize,
    },
    /// Newly decoded text of a generation.
    Text {
        id: RequestId,
        text: String,
    },
    Finished {
        id: RequestId,
        generation: Generation,
    },
    Failed {
        id: RequestId,
        error: EngineError,
    },
    Unloaded,
}

type Waker = Arc<dyn Fn() + Send + Sync>;

/// The caller's side of the engine thread. Dropping it cancels what runs and stops the thread.
pub struct Engine {
    commands: Sender<Command>,
    events: Receiver<EngineEvent>,
    next_id: AtomicU64,
    /// Cancel flags of requests not yet finished, by id.
    pending: Mutex<Vec<(RequestId, Arc<AtomicBool>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread. `waker` runs after every event (e.g. a GUI repaint).
    pub fn spawn(hub: Hub, waker: Option<Waker>) -> Engine {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("arbiter-engine".into())
            .spawn(move || {
                run(
                    hub,
                    command_rx,
                    Outbox {
                        tx: event_tx,
                        waker,
                    },
                )
            })
            .ok();
        if thread.is_none() {
            tracing::error!("could not start the engine thread");
        }
        Engine {
            commands,
            events,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Vec::new()),
            thread,
        }
    }

    fn register(&self) -> (RequestId, Arc<AtomicBool>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut pending) = self.pending.lock() {
            // The worker drops its clone when a request ends: those need no cancel any more.
            pending.retain(|(_, f)| Arc::strong_count(f) > 1);
            pending.push((id, flag.clone()));
        }
        (id, flag)
    }

    fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .map_err(|_| EngineError::WorkerGone("the engine thread has exited".into()))
    }

    /// Loads a model (downloading it first if needed), replacing the loaded one.
    pub fn load(
        &self,
        source: ModelSource,
        options: LoadOptions,
    ) -> Result<RequestId, EngineError> {
        let (id, cancel) = self.register();
        self.send(Command::Load {
            id,
            source,
            options,
            cancel,
        })?;
        Ok(id)
    }

    /// Queues a generation on the loaded model.
    pub fn generate(&self, request: GenerateRequest) -> Result<RequestId, EngineError> {
        let (id, cancel) = self.register();
        self.send(Command::Generate {
            id,
            request: Box::new(request),
            cancel,
        })?;
        Ok(id)
    }

    /// Stops a request: a generation within one token, a download between two chunks (its
    /// partial file is kept and resumed next time). A queued request ends as soon as it starts.
    pub fn cancel(&self, id: RequestId) {
        if let Ok(pending) = self.pending.lock() {
            for (_, flag) in pending.iter().filter(|(i, _)| *i == id) {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Stops every pending request.
    pub fn cancel_all(&self) {
        if let Ok(pending) = self.pending.lock() {
            for (_, flag) in pending.iter() {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Lets up to `n` queued generations run at once (continuous batching); 1, the default,
    /// runs them one after another.
    pub fn set_max_batch(&self, n: usize) -> Result<(), EngineError> {
        self.send(Command::SetMaxBatch(n.max(1)))
    }

    /// Frees the loaded model.
    pub fn unload(&self) -> Result<(), EngineError> {
        self.send(Command::Unload)
    }

    /// The next event, if one is waiting (never blocks: for a UI frame).
    pub fn try_recv(&self) -> Option<EngineEvent> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event (for the CLI); `None` once the thread has gone.
    pub fn recv(&self) -> Option<EngineEvent> {
        self.events.recv().ok()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Result<EngineEvent, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cancel_all();
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Outbox {
    tx: Sender<EngineEvent>,
    waker: Option<Waker>,
}

impl Outbox {
    fn send(&self, event: EngineEvent) {
        // A closed channel means the caller has gone; the thread stops at the next command.
        let _ = self.tx.send(event);
        if let Some(w) = &self.waker {
            w();
        }
    }
}

fn run(hub: Hub, commands: Receiver<Command>, out: Outbox) {
    let mut model: Option<LoadedModel> = None;
    let mut max_batch = 1;
    // Commands a batch took off the channel but left for after it (they must not join it).
    let mut deferred: VecDeque<Command> = VecDeque::new();
    loop {
        let command = match deferred.pop_front() {
            Some(c) => c,
            None => match commands.recv() {
                Ok(c) => c,
                Err(_) => break,
            },
        };
        let command = match (command, model.as_mut()) {
            (
                Command::Generate {
                    id,
                    request,
                    cancel,
                },
                Some(m),
            ) if max_batch > 1
                && matches!(m.decoder, Backend::Arbiter(_))
                && Scheduler::supports(&request) =>
            {
                run_batch(
                    m,
                    max_batch,
                    (id, request, cancel),
                    &commands,
                    &mut deferred,
                    &out,
                );
                continue;
            }
            (command, _) => command,
        };
        match command {
            Command::SetMaxBatch(n) => max_batch = n,
            Command::Load {
                id,
                source,
                options,
                cancel,
            } => {
                // Free the old model first: two 7B models rarely fit side by side.
                model = None;
                let hub = hub.clone().with_cancel(cancel.clone());
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    loader::load(&source, &options, &hub, &mut |event| {
                        out.send(EngineEvent::Loading { id, event })
                    })
                }));
                match flatten(result, "loading the model") {
                    Ok(m) => {
                        out.send(EngineEvent::Loaded {
                            id,
                            info: m.info.clone(),
                        });
                        model = Some(m);
                    }
                    Err(error) => out.send(EngineEvent::LoadFailed { id, error }),
                }
            }
            Command::Generate {
                id,
                request,
                cancel,
            } => {
                let Some(m) = model.as_mut() else {
                    out.send(EngineEvent::Failed {
                        id,
                        error: EngineError::NotLoaded,
                    });
                    continue;
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let prompt = m.prompt_tokens(&request.prompt)?;
                    out.send(EngineEvent::Started {
                        id,
                        prompt_tokens: prompt.len(),
                    });
                    m.generate_tokens(
                        &prompt,
                        &request,
                        &cancel,
                        &mut |text| {
                            out.send(EngineEvent::Text {
                                id,
                                text: text.to_string(),
                            })
                        },
                        std::time::Instant::now(),
                    )
                }));
                match flatten(result, "generating") {
                    Ok(generation) => out.send(EngineEvent::Finished { id, generation }),
                    Err(error) => out.send(EngineEvent::Failed { id, error }),
                }
            }
            Command::Unload => {
                model = None;
                out.send(EngineEvent::Unloaded);
            }
            Command::Shutdown => break,
        }
    }
}

/// Runs `first` and every generation queued after it that can join, batched, until all have
/// ended; leaves the first command that cannot join (another kind, or a constrained
/// generation) and everything after it in `deferred`, in order.
fn run_batch(
    m: &mut LoadedModel,
    max_batch: usize,
    first: (RequestId, Box<GenerateRequest>, Arc<AtomicBool>),
    commands: &Receiver<Command>,
    deferred: &mut VecDeque<Command>,
    out: &Outbox,
) {
    let LoadedModel {
        decoder,
        tokenizer,
        stop_ids,
        template,
        info,
        cached_tokens,
        grammar_vocab,
    } = m;
    let Backend::Arbiter(decoder) = decoder else {
        return;
    };
    // The single-stream cache is not used meanwhile: free it for the batch's blocks.
    decoder.clear_cache();
    cached_tokens.clear();
    let settings = BatchSettings::for_decoder(max_batch, decoder);
    let vocab_size = decoder.config().vocab_size;
    let mut scheduler = Scheduler::new(decoder, tokenizer, stop_ids, settings);
    let mut in_flight: Vec<RequestId> = Vec::new();
    let mut closed = false;
    let mut join =
        |scheduler: &mut Scheduler<'_>,
         in_flight: &mut Vec<RequestId>,
         (id, request, cancel): (RequestId, Box<GenerateRequest>, Arc<AtomicBool>)| {
            let started = std::time::Instant::now();
            let prompt = super::generate::prompt_tokens(
                tokenizer,
                template.as_ref(),
                &info.name,
                &request.prompt,
            );
            if request.grammar.is_some() {
                // The vocabulary for constrained decoding, read on first use as the single stream
                // reads it, and kept with the model.
                let vocab = match grammar_vocab {
                    Some(v) => Ok(v.clone()),
                    None => GrammarVocab::new(tokenizer, vocab_size, stop_ids).map(Arc::new),
                };
                match vocab {
                    Ok(v) => {
                        *grammar_vocab = Some(v.clone());
                        scheduler.set_grammar_vocab(v);
                    }
                    Err(e) => {
                        out.send(EngineEvent::Failed {
                            id,
                            error: e.into(),
                        });
                        return;
                    }
                }
            }
            let submitted = prompt.and_then(|prompt| {
                out.send(EngineEvent::Started {
                    id,
                    prompt_tokens: prompt.len(),
                });
                scheduler.submit(id, prompt, &request, cancel, started)
            });
            match submitted {
                Ok(()) => in_flight.push(id),
                Err(error) => out.send(EngineEvent::Failed { id, error }),
            }
        };
    join(&mut scheduler, &mut in_flight, first);
    loop {
        // Take what has queued since the last step; stop at the first command that must wait.
        while !closed {
            match commands.try_recv() {
                Ok(Command::Generate {
                    id,
                    request,
                    cancel,
                }) if Scheduler::supports(&request) => {
                    join(&mut scheduler, &mut in_flight, (id, request, cancel))
                }
                Ok(other) => {
                    deferred.push_back(other);
                    closed = true;
                }
                Err(_) => break,
            }
        }
        if scheduler.is_idle() {
            break;
        }
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scheduler.step(decoder, &mut |event| match event {
                SeqEvent::Text { id, text } => out.send(EngineEvent::Text { id, text }),
                SeqEvent::Finished { id, generation } => {
                    in_flight.retain(|i| *i != id);
                    out.send(EngineEvent::Finished { id, generation })
                }
                SeqEvent::Failed { id, error } => {
                    in_flight.retain(|i| *i != id);
                    out.send(EngineEvent::Failed { id, error })
                }
            })
        }));
        if let Err(panic) = stepped {
            let why = panic_message(panic.as_ref());
            for id in in_flight.drain(..) {
                out.send(EngineEvent::Failed {
                    id,
                    error: EngineError::WorkerGone(format!("a batched step crashed: {why}")),
                });
            }
            break;
        }
    }
}

/// A panic inside candle (a shape bug, an allocator abort we can catch) must not take the app
/// down with the user's unsaved view: it becomes an error event.
fn flatten<T>(
    result: std::thread::Result<Result<T, EngineError>>,
    what: &str,
) -> Result<T, EngineError> {
    match result {
        Ok(r) => r,
        Err(panic) => Err(EngineError::WorkerGone(format!(
            "{what} crashed: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
