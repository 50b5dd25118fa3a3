//! Continuous batching: several generations on one model at once. Sequences join and leave
//! between steps; each step runs the next token of every decoding sequence together with
//! pieces of joining prompts (at most `step_tokens` prompt tokens a step, so a long prompt
//! never stalls the others for long) through [`Decoder::forward_batch`], then samples, checks
//! stops and streams text for each sequence on its own. A cancelled sequence leaves at the
//! next step and the others go on. Keys and values live in a [`PagedCache`]: a sequence is
//! admitted only when the blocks for its prompt and whole answer can be promised, and waits
//! until then, so no sequence ever runs out of memory mid-answer.
//!
//! Each sequence produces the tokens it would produce alone through
//! `LoadedModel::generate_tokens` (tested on the tiny model), constrained ones included: a
//! sequence with a grammar feeds the tokens its grammar forces as one input of a step, like a
//! piece of prompt, and samples among the tokens it allows.

use super::constrain::{GrammarVocab, Guide, Mask};
use super::error::{compute, EngineError};
use super::generate::{
    finish_timing, ms, sample_allowed, settle_stream, FinishReason, GenerateRequest,
};
use super::generate::{Generation, Timing};
use super::model::paged::{PagedCache, SeqId, DEFAULT_BLOCK_SIZE};
use super::model::{Decoder, PendingTokens, StepInput, TokenReadback};
use super::sampling::Sampler;
use super::tokenizer::Tokenizer;
use candle_core::D;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;

type Stream<'t> = tokenizers::DecodeStream<
    't,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Prompt tokens prefilled per step, beside the decode tokens: a joining prompt of 1,500
/// tokens takes three steps, each a little longer than a decode step.
pub const DEFAULT_STEP_TOKENS: usize = 512;

/// Context each sequence of a full batch is given room for when the caller names no memory
/// limit (the cache still only takes blocks as tokens arrive).
const DEFAULT_CONTEXT_PER_SEQUENCE: usize = 4096;

/// How a batch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// The most sequences running at once.
    pub max_batch: usize,
    /// The most prompt tokens prefilled in one step.
    pub step_tokens: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// The most KV blocks the cache may take (its memory limit).
    pub max_blocks: usize,
    /// Launch a decode step before the previous step's tokens reach the host, where they
    /// can feed it from the device (see [`Scheduler::step`]); on by default,
    /// `ARBITER_STEP_AHEAD=0` turns it off.
    pub step_ahead: bool,
}

impl BatchSettings {
    /// `max_batch` sequences, each with room for the model's context up to 4,096 tokens.
    pub fn new(max_batch: usize, max_position: usize) -> BatchSettings {
        let block_size = DEFAULT_BLOCK_SIZE;
        let per_sequence = max_position.min(DEFAULT_CONTEXT_PER_SEQUENCE);
        BatchSettings {
            max_batch: max_batch.max(1),
            step_tokens: DEFAULT_STEP_TOKENS,
            block_size,
            max_blocks: max_batch.max(1) * per_sequence.div_ceil(block_size),
            step_ahead: std::env::var("ARBITER_STEP_AHEAD").map_or(true, |v| v != "0"),
        }
    }

    /// The same, with the KV cache limited to `bytes` for a model whose KV cache takes
    /// `bytes_per_token` per token.
    pub fn with_memory(mut self, bytes: u64, bytes_per_token: u64) -> BatchSettings {
        let tokens = bytes / bytes_per_token.max(1);
        self.max_blocks = (tokens as usize / self.block_size).max(1);
        self
    }

    /// The same, with the KV cache's limit also kept within `free` bytes (the memory free on
    /// the device once the model is loaded) less a margin for each step's activations (a
    /// tenth of it, at least 1 GiB): the pool then never grows past what the device holds,
    /// and a sequence that would not fit waits for blocks instead of failing on an
    /// allocation. Never raises the limit.
    pub fn within_memory(self, free: u64, bytes_per_token: u64) -> BatchSettings {
        let margin = (free / 10).max(1 << 30);
        let fitted = self.with_memory(free.saturating_sub(margin), bytes_per_token);
        BatchSettings {
            max_blocks: self.max_blocks.min(fitted.max_blocks),
            ..self
        }
    }

    /// [`new`](Self::new) for `decoder`, its KV cache kept within the memory free on its
    /// device when that can be read (see [`within_memory`](Self::within_memory)).
    pub fn for_decoder(max_batch: usize, decoder: &Decoder) -> BatchSettings {
        let settings = BatchSettings::new(max_batch, decoder.config().max_position);
        let per_token = decoder.paged_cache(settings.block_size, 1).token_bytes(1) as u64;
        match super::device::available_memory(decoder.device()) {
            Some(free) => settings.within_memory(free, per_token),
            None => settings,
        }
    }
}

/// What the last step ran: for benchmarks, which count decode throughput over the steps
/// that prefilled nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepStats {
    /// Sequences that decoded one token.
    pub decode_rows: usize,
    /// Prompt tokens prefilled.
    pub prefill_tokens: usize,
    /// The step was launched before the tokens of the step before it reached the host.
    pub ahead: bool,
}

/// What the scheduler reports for each sequence.
#[derive(Debug)]
pub enum SeqEvent {
    /// Newly decoded text.
    Text {
        id: SeqId,
        text: String,
    },
    Finished {
        id: SeqId,
        generation: Generation,
    },
    Failed {
        id: SeqId,
        error: EngineError,
    },
}

/// A request not yet admitted.
struct Waiting {
    id: SeqId,
    prompt: Vec<u32>,
    request: GenerateRequest,
    cancel: Arc<AtomicBool>,
    started: Instant,
    budget: usize,
    guide: Option<Guide>,
}

/// A sequence in the batch.
struct Sequence<'t> {
    id: SeqId,
    prompt: Vec<u32>,
    /// Prompt tokens already through the model.
    prefilled: usize,
    budget: usize,
    ignore_stop: bool,
    prefill_chunk: usize,
    cancel: Arc<AtomicBool>,
    sampler: Sampler,
    stream: Stream<'t>,
    tokens: Vec<u32>,
    text: String,
    timing: Timing,
    started: Instant,
    first_at: Option<Instant>,
    /// The tokens the next step runs through the model: the one sampled last, or those a
    /// grammar forced.
    pending: Option<Vec<u32>>,
    /// Keeps the answer inside the request's grammar.
    guide: Option<Guide>,
    /// After forced tokens were fed: the mask their step gave for the token after them.
    after_forced: Option<Option<Mask>>,
    /// Set when the sequence ends this step.
    done: Option<FinishReason>,
    /// Why it ended, when it failed.
    failed: Option<EngineError>,
}

impl Sequence<'_> {
    /// Appends `token` to the answer and streams its text.
    fn emit(&mut self, token: u32, out: &mut dyn FnMut(SeqEvent)) -> Result<(), EngineError> {
        self.tokens.push(token);
        if self.first_at.is_none() {
            self.first_at = Some(Instant::now());
            self.timing.time_to_first_token_ms = ms(self.started.elapsed());
        }
        let piece = self
            .stream
            .step(token)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        if let Some(text) = piece {
            self.text.push_str(&text);
            out(SeqEvent::Text { id: self.id, text });
        }
        Ok(())
    }
}

/// The running batch of one loaded model.
pub struct Scheduler<'t> {
    tokenizer: &'t Tokenizer,
    stop_ids: Vec<u32>,
    max_position: usize,
    settings: BatchSettings,
    cache: PagedCache,
    waiting: VecDeque<Waiting>,
    running: Vec<Sequence<'t>>,
    last_step: StepStats,
    device: candle_core::Device,
    /// The vocabulary guides are built from, for requests with a grammar.
    grammar: Option<std::sync::Arc<GrammarVocab>>,
    /// The step handed to the device whose tokens the host has not read yet.
    in_flight: Option<Launched>,
    /// Where greedy steps' tokens are copied to the host.
    readback: TokenReadback,
}

/// One sequence's share of a launched step.
#[derive(Debug, Clone, Copy)]
struct Row {
    id: SeqId,
    /// It decodes its next token (not a piece of its prompt).
    decode: bool,
    /// It gives a token: a decode row, or the last piece of a prompt.
    samples: bool,
}

/// A step handed to the device whose outputs the host has not read yet.
struct Launched {
    rows: Vec<Row>,
    /// The f32 logits of each row's last token, (rows, vocab).
    logits: candle_core::Tensor,
    /// When every sampling row is plain greedy: each row's argmax on the device, and on its
    /// way to the host.
    greedy: Option<(candle_core::Tensor, PendingTokens)>,
    stats: StepStats,
}

impl<'t> Scheduler<'t> {
    pub fn new(
        decoder: &Decoder,
        tokenizer: &'t Tokenizer,
        stop_ids: &[u32],
        settings: BatchSettings,
    ) -> Scheduler<'t> {
        Scheduler {
            tokenizer,
            stop_ids: stop_ids.to_vec(),
            max_position: decoder.config().max_position,
            cache: decoder.paged_cache(settings.block_size, settings.max_blocks),
            settings,
            waiting: VecDeque::new(),
            running: Vec::new(),
            last_step: StepStats::default(),
            device: decoder.device().clone(),
            grammar: None,
            in_flight: None,
            readback: TokenReadback::default(),
        }
    }

    /// Whether `request` can be batched (every generation can, given the grammar vocabulary
    /// for a constrained one: see [`set_grammar_vocab`](Self::set_grammar_vocab)).
    pub fn supports(_request: &GenerateRequest) -> bool {
        true
    }

    /// The vocabulary constrained requests build their guides from.
    pub fn set_grammar_vocab(&mut self, vocab: std::sync::Arc<GrammarVocab>) {
        self.grammar = Some(vocab);
    }

    /// Queues a generation of `request` after `prompt` (token ids). It joins the batch at a
    /// coming step, once there is room; `started` is when the caller received it, so its time
    /// to first token includes the wait.
    pub fn submit(
        &mut self,
        id: SeqId,
        prompt: Vec<u32>,
        request: &GenerateRequest,
        cancel: Arc<AtomicBool>,
        started: Instant,
    ) -> Result<(), EngineError> {
        let max = self.max_position;
        if prompt.is_empty() || prompt.len() >= max {
            return Err(EngineError::PromptTooLong {
                tokens: prompt.len(),
                max,
            });
        }
        let budget = request.sampling.max_new_tokens.min(max - prompt.len());
        let need = prompt.len() + budget;
        if !self.cache.could_ever_admit(need) {
            return Err(EngineError::KvCacheTooSmall {
                tokens: need,
                capacity: self.cache.max_blocks() * self.cache.block_size(),
            });
        }
        // Built now, so that the guide computes its first step while the request waits.
        let guide = match (&request.grammar, &self.grammar) {
            (None, _) => None,
            (Some(spec), Some(vocab)) => Some(vocab.guide(spec, budget, &self.device)?),
            (Some(_), None) => {
                return Err(EngineError::Decode(
                    "a constrained request reached a batch without the grammar vocabulary".into(),
                ))
            }
        };
        self.waiting.push_back(Waiting {
            id,
            prompt,
            request: request.clone(),
            cancel,
            started,
            budget,
            guide,
        });
        Ok(())
    }

    /// Nothing running, waiting or in flight.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty() && self.in_flight.is_none()
    }

    /// Sequences in the batch now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Sequences waiting for room.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn cache(&self) -> &PagedCache {
        &self.cache
    }

    /// What the last step ran (nothing, if it had nothing to run).
    pub fn last_step(&self) -> StepStats {
        self.last_step
    }

    /// Runs one step: drops cancelled sequences, admits waiting ones while there is room,
    /// runs every sequence's next tokens together, and reports text, finished generations and
    /// failures through `out`.
    ///
    /// Step ahead: when every sequence of a step decodes greedily, the next step is launched
    /// before this one's tokens reach the host, fed this step's argmax on the device, so the
    /// device never waits while the host samples, streams and schedules. That is the step
    /// each sequence takes anyway, as long as the batch is the same: no sequence cancelled,
    /// at its token budget, constrained or sampled, none waiting that could join. A sequence
    /// that stops at this step's token has one extra step computed and dropped. Each call
    /// still reads and reports one step's tokens.
    pub fn step(&mut self, decoder: &mut Decoder, out: &mut dyn FnMut(SeqEvent)) {
        let launched = match self.in_flight.take() {
            Some(launched) => launched,
            None => match self.launch(decoder, out) {
                Some(launched) => launched,
                None => return,
            },
        };
        let ahead = if self.settings.step_ahead {
            self.launch_ahead(decoder, &launched)
        } else {
            Ok(None)
        };
        self.complete(launched, out);
        match ahead {
            Ok(next) => self.in_flight = next,
            Err((ids, message)) => self.fail(&ids, &message, out),
        }
    }

    /// Schedules a step and hands it to the device: `None` when there is nothing to run or
    /// the step failed (its sequences were then reported failed).
    fn launch(&mut self, decoder: &mut Decoder, out: &mut dyn FnMut(SeqEvent)) -> Option<Launched> {
        let started = Instant::now();
        self.drop_cancelled(out);
        self.admit();
        let plan = self.plan();
        self.last_step = StepStats::default();
        if plan.is_empty() {
            return None;
        }
        let mut stats = StepStats::default();
        let mut rows = Vec::with_capacity(plan.len());
        for (i, tokens) in &plan {
            let seq = &mut self.running[*i];
            let decode = seq.pending.take().is_some();
            if decode {
                stats.decode_rows += 1;
            } else {
                stats.prefill_tokens += tokens.len();
                seq.prefilled += tokens.len();
            }
            rows.push(Row {
                id: seq.id,
                decode,
                samples: decode || seq.prefilled >= seq.prompt.len(),
            });
        }
        let inputs: Vec<StepInput<'_>> = plan
            .iter()
            .map(|(i, tokens)| StepInput {
                seq: self.running[*i].id,
                tokens,
            })
            .collect();
        // Host-side stages of decode steps, for the step profile (ARBITER_STEP_PROFILE=1).
        let decode = stats.prefill_tokens == 0;
        if decode {
            super::model::profile_host("host: before the step (schedule, admit)", started);
        }
        let forward = Instant::now();
        let launched = decoder
            .forward_batch(&mut self.cache, &inputs)
            .and_then(|logits| self.launched(rows.clone(), logits, stats));
        drop(inputs);
        if decode {
            super::model::profile_host("host: the step's call (issue)", forward);
        }
        match launched {
            Ok(launched) => Some(launched),
            Err(e) => {
                self.last_step = stats;
                let ids: Vec<SeqId> = rows.iter().map(|r| r.id).collect();
                self.fail(&ids, &e.to_string(), out);
                None
            }
        }
    }

    /// A step on the device with its greedy tokens, where every sampling row is plain
    /// greedy, already on their way to the host.
    fn launched(
        &mut self,
        rows: Vec<Row>,
        logits: candle_core::Tensor,
        stats: StepStats,
    ) -> candle_core::Result<Launched> {
        let greedy = rows.iter().any(|r| r.samples)
            && rows.iter().filter(|r| r.samples).all(|r| {
                self.running
                    .iter()
                    .find(|s| s.id == r.id)
                    .is_some_and(|s| s.sampler.is_plain_greedy())
            });
        let greedy = if greedy {
            let ids = logits.argmax(D::Minus1)?;
            let pending = self.readback.start(&ids)?;
            Some((ids, pending))
        } else {
            None
        };
        Ok(Launched {
            rows,
            logits,
            greedy,
            stats,
        })
    }

    /// Launches the step after `prev`, fed `prev`'s argmax on the device, when that is the
    /// step every sequence would take next (see [`step`](Self::step)). On a failure, the
    /// sequences the step held and why.
    fn launch_ahead(
        &mut self,
        decoder: &mut Decoder,
        prev: &Launched,
    ) -> Result<Option<Launched>, (Vec<SeqId>, String)> {
        let Some((ids, _)) = &prev.greedy else {
            return Ok(None);
        };
        if prev.rows.len() != self.running.len()
            || !prev.rows.iter().all(|r| r.samples)
            || self.could_admit()
        {
            return Ok(None);
        }
        for row in &prev.rows {
            let Some(seq) = self.running.iter().find(|s| s.id == row.id) else {
                return Ok(None);
            };
            // After the token `prev` gives it, one more must be within its budget.
            if seq.guide.is_some()
                || !seq.sampler.is_plain_greedy()
                || seq.cancel.load(Ordering::Relaxed)
                || seq.done.is_some()
                || seq.tokens.len() + 2 > seq.budget
            {
                return Ok(None);
            }
        }
        let started = Instant::now();
        // The values are not read: the step is fed `ids`.
        const FED: [u32; 1] = [0];
        let inputs: Vec<StepInput<'_>> = prev
            .rows
            .iter()
            .map(|r| StepInput {
                seq: r.id,
                tokens: &FED,
            })
            .collect();
        let rows: Vec<Row> = prev
            .rows
            .iter()
            .map(|r| Row {
                id: r.id,
                decode: true,
                samples: true,
            })
            .collect();
        let stats = StepStats {
            decode_rows: rows.len(),
            prefill_tokens: 0,
            ahead: true,
        };
        let launched = decoder
            .forward_batch_fed(&mut self.cache, &inputs, ids)
            .and_then(|logits| self.launched(rows, logits, stats));
        super::model::profile_host("host: the step's call (issue, ahead)", started);
        match launched {
            // The token each sequence gets from `prev` is left pending when `prev`
            // completes, though this step was fed it already; this step's own completion
            // replaces it before any step is scheduled from it.
            Ok(launched) => Ok(Some(launched)),
            Err(e) => Err((prev.rows.iter().map(|r| r.id).collect(), e.to_string())),
        }
    }

    /// Whether a waiting request could join now.
    fn could_admit(&self) -> bool {
        self.running.len() < self.settings.max_batch
            && self
                .waiting
                .front()
                .is_some_and(|w| self.cache.can_admit(w.prompt.len() + w.budget))
    }

    /// Reads a launched step's tokens and moves its sequences on: samples, checks stops,
    /// streams text, and retires the sequences that ended.
    fn complete(&mut self, launched: Launched, out: &mut dyn FnMut(SeqEvent)) {
        let Launched {
            rows,
            logits,
            greedy,
            stats,
        } = launched;
        self.last_step = stats;
        let decode = stats.prefill_tokens == 0;
        let wait = Instant::now();
        let argmax = greedy
            .map(|(_, pending)| self.readback.finish(pending))
            .transpose();
        if decode {
            super::model::profile_host("host: waiting for the step's tokens", wait);
        }
        let after = Instant::now();
        // Which rows start or continue an answer: decode rows, and the last piece of a
        // prompt, of sequences still running (one may have stopped while this step was
        // launched ahead of reading the step before).
        let mut sampled: Vec<(usize, usize)> = Vec::with_capacity(rows.len());
        for (row, r) in rows.iter().enumerate() {
            let Some(i) = self.running.iter().position(|s| s.id == r.id) else {
                continue;
            };
            let seq = &mut self.running[i];
            if seq.done.is_some() || !r.samples {
                continue;
            }
            if !r.decode {
                seq.timing.prefill_ms = ms(seq.started.elapsed());
                if seq.budget == 0 {
                    seq.done = Some(FinishReason::Length);
                    continue;
                }
            }
            sampled.push((row, i));
        }
        match argmax {
            Ok(argmax) => self.sample(&logits, &sampled, argmax.as_deref(), out),
            Err(e) => {
                let failed: Vec<SeqId> = sampled.iter().map(|&(_, i)| self.running[i].id).collect();
                for &id in &failed {
                    self.cache.release(id);
                    out(SeqEvent::Failed {
                        id,
                        error: EngineError::Decode(format!("reading the batch's tokens: {e}")),
                    });
                }
                self.running.retain(|s| !failed.contains(&s.id));
            }
        }
        self.retire(out);
        if decode {
            super::model::profile_host("host: after the step (sample, stream, retire)", after);
        }
    }

    /// Ends `ids`' sequences after a failed step: their keys may be half written.
    fn fail(&mut self, ids: &[SeqId], message: &str, out: &mut dyn FnMut(SeqEvent)) {
        for seq in &mut self.running {
            if !ids.contains(&seq.id) || seq.done.is_some() {
                continue;
            }
            seq.done = Some(FinishReason::Stop);
            self.cache.release(seq.id);
            out(SeqEvent::Failed {
                id: seq.id,
                error: EngineError::compute(
                    "a batched step",
                    candle_core::Error::Msg(message.to_string()),
                ),
            });
        }
        self.running.retain(|s| s.done.is_none());
    }

    /// Ends cancelled sequences, running or waiting, with what they have.
    fn drop_cancelled(&mut self, out: &mut dyn FnMut(SeqEvent)) {
        for seq in &mut self.running {
            if seq.cancel.load(Ordering::Relaxed) {
                seq.done = Some(FinishReason::Cancelled);
            }
        }
        self.retire(out);
        let (gone, kept): (Vec<Waiting>, Vec<Waiting>) = self
            .waiting
            .drain(..)
            .partition(|w| w.cancel.load(Ordering::Relaxed));
        self.waiting = kept.into();
        for w in gone {
            let timing = Timing {
                prompt_tokens: w.prompt.len(),
                ..Timing::default()
            };
            out(SeqEvent::Finished {
                id: w.id,
                generation: Generation {
                    text: String::new(),
                    tokens: vec![],
                    finish: FinishReason::Cancelled,
                    timing: finish_timing(timing, w.started, None),
                },
            });
        }
    }

    /// Moves waiting requests into the batch, in order, while there is a place and the cache
    /// can promise their blocks.
    fn admit(&mut self) {
        while self.running.len() < self.settings.max_batch {
            let Some(next) = self.waiting.front() else {
                break;
            };
            if !self.cache.can_admit(next.prompt.len() + next.budget) {
                break;
            }
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            if self.cache.admit(w.id, w.prompt.len() + w.budget).is_err() {
                self.waiting.push_front(w);
                break;
            }
            let timing = Timing {
                prompt_tokens: w.prompt.len(),
                ..Timing::default()
            };
            self.running.push(Sequence {
                id: w.id,
                prefilled: 0,
                budget: w.budget,
                ignore_stop: w.request.ignore_stop,
                prefill_chunk: w.request.prefill_chunk.max(1),
                cancel: w.cancel,
                sampler: Sampler::new(w.request.sampling.clone()),
                stream: self.tokenizer.inner().decode_stream(true),
                tokens: Vec::with_capacity(w.budget),
                text: String::new(),
                timing,
                started: w.started,
                first_at: None,
                pending: None,
                guide: w.guide,
                after_forced: None,
                done: None,
                failed: None,
                prompt: w.prompt,
            });
        }
    }

    /// The step's inputs: (index in `running`, tokens). Every decoding sequence's next
    /// token, then prompt pieces in arrival order up to `step_tokens`.
    fn plan(&self) -> Vec<(usize, Vec<u32>)> {
        let mut plan = Vec::with_capacity(self.running.len());
        for (i, seq) in self.running.iter().enumerate() {
            if let Some(t) = &seq.pending {
                plan.push((i, t.clone()));
            }
        }
        let mut room = self.settings.step_tokens.max(1);
        for (i, seq) in self.running.iter().enumerate() {
            if room == 0 {
                break;
            }
            if seq.pending.is_some() || seq.prefilled >= seq.prompt.len() {
                continue;
            }
            let take = (seq.prompt.len() - seq.prefilled)
                .min(seq.prefill_chunk)
                .min(room);
            room -= take;
            plan.push((i, seq.prompt[seq.prefilled..seq.prefilled + take].to_vec()));
        }
        plan
    }

    /// Picks the next token of each sampled row and moves its sequence on; `argmax`, every
    /// row's greedy token when every sampled row is plain greedy.
    fn sample(
        &mut self,
        logits: &candle_core::Tensor,
        sampled: &[(usize, usize)],
        argmax: Option<&[u32]>,
        out: &mut dyn FnMut(SeqEvent),
    ) {
        for &(row, i) in sampled {
            let best = argmax.map(|a| a[row]);
            let seq = &mut self.running[i];
            if let Err(error) = advance(seq, row, best, logits, &self.stop_ids, out) {
                seq.failed = Some(error);
                seq.done = Some(FinishReason::Stop);
            }
        }
    }

    /// Reports and removes the sequences that ended, freeing their blocks.
    fn retire(&mut self, out: &mut dyn FnMut(SeqEvent)) {
        if self.running.iter().all(|s| s.done.is_none()) {
            return;
        }
        let (done, running): (Vec<Sequence<'t>>, Vec<Sequence<'t>>) =
            self.running.drain(..).partition(|s| s.done.is_some());
        self.running = running;
        for mut seq in done {
            self.cache.release(seq.id);
            if let Some(error) = seq.failed.take() {
                out(SeqEvent::Failed { id: seq.id, error });
                continue;
            }
            let finish = seq.done.unwrap_or(FinishReason::Stop);
            seq.timing.generated_tokens = seq.tokens.len();
            let id = seq.id;
            let settled = settle_stream(self.tokenizer, &seq.tokens, &mut seq.text, &mut |t| {
                out(SeqEvent::Text {
                    id,
                    text: t.to_string(),
                })
            });
            match settled {
                Ok(()) => out(SeqEvent::Finished {
                    id,
                    generation: Generation {
                        text: seq.text,
                        tokens: seq.tokens,
                        finish,
                        timing: finish_timing(seq.timing, seq.started, seq.first_at),
                    },
                }),
                Err(error) => out(SeqEvent::Failed { id, error }),
            }
        }
    }
}

/// Moves `seq` on from its logits (`row` of `logits`; `best`, that row's argmax when every
/// row is plain greedy): the grammar's forced tokens, or the next sampled token, streamed.
fn advance(
    seq: &mut Sequence<'_>,
    row: usize,
    best: Option<u32>,
    logits: &candle_core::Tensor,
    stop_ids: &[u32],
    out: &mut dyn FnMut(SeqEvent),
) -> Result<(), EngineError> {
    // The grammar's step, as the single stream takes it: forced tokens go out and are
    // fed; the token after them is sampled among those its mask allows.
    let mut mask = None;
    if let Some(guide) = seq.guide.as_mut() {
        match seq.after_forced.take() {
            Some(m) => mask = m,
            None => {
                let step = guide.next_step()?;
                if !step.forced.is_empty() {
                    let room = seq.budget - seq.tokens.len();
                    let forced = step.forced[..step.forced.len().min(room)].to_vec();
                    for &t in &forced {
                        seq.emit(t, out)?;
                    }
                    if step.finished {
                        seq.done = Some(FinishReason::Stop);
                    } else if seq.tokens.len() >= seq.budget {
                        seq.done = Some(FinishReason::Length);
                    } else {
                        seq.after_forced = Some(step.mask);
                        seq.pending = Some(forced);
                    }
                    return Ok(());
                }
                if step.finished {
                    seq.done = Some(FinishReason::Stop);
                    return Ok(());
                }
                mask = step.mask;
            }
        }
    }
    let next = match (&seq.guide, &mask) {
        (Some(guide), Some(mask)) => match best.filter(|b| mask.allows(*b)) {
            Some(b) => b,
            None => {
                let row = logits.get(row).map_err(compute("sampling"))?;
                sample_allowed(&mut seq.sampler, guide, mask, &row, &seq.tokens)?
            }
        },
        _ => match best {
            Some(b) => b,
            None => {
                let row = logits.get(row).map_err(compute("sampling"))?;
                seq.sampler
                    .sample(&row, &seq.tokens)
                    .map_err(compute("sampling"))?
            }
        },
    };
    if !seq.ignore_stop && stop_ids.contains(&next) {
        seq.done = Some(FinishReason::Stop);
        return Ok(());
    }
    if let Some(guide) = seq.guide.as_mut() {
        guide.commit(next)?;
    }
    seq.emit(next, out)?;
    if seq.tokens.len() >= seq.budget {
        seq.done = Some(FinishReason::Length);
    } else {
        seq.pending = Some(vec![next]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-7B in bf16: 28 layers x 4 kv heads x 128 x 2 (k, v) x 2 bytes a token.
    const PER_TOKEN: u64 = 57_344;

    #[test]
    fn the_kv_limit_keeps_within_free_memory_less_a_margin() {
        let settings = BatchSettings::new(32, 32_768);
        assert_eq!(settings.max_blocks, 32 * 4096 / DEFAULT_BLOCK_SIZE);
        // 4 GiB free: 1 GiB kept for activations, the pool gets 3 GiB of 16-token blocks.
        let fitted = settings.within_memory(4 << 30, PER_TOKEN);
        let tokens = (3u64 << 30) / PER_TOKEN;
        assert_eq!(fitted.max_blocks, tokens as usize / DEFAULT_BLOCK_SIZE);
        assert!(fitted.max_blocks < settings.max_blocks);
        // 100 GiB free: a tenth kept; more room than 32 contexts need, so the limit stays.
        assert_eq!(
            settings.within_memory(100 << 30, PER_TOKEN).max_blocks,
            settings.max_blocks
        );
        // Everything else is unchanged.
        assert_eq!(fitted.max_batch, settings.max_batch);
        assert_eq!(fitted.step_tokens, settings.step_tokens);
        assert_eq!(fitted.block_size, settings.block_size);
    }

    #[test]
    fn a_device_with_less_free_than_the_margin_leaves_one_block() {
        let fitted = BatchSettings::new(4, 4096).within_memory(512 << 20, PER_TOKEN);
        assert_eq!(fitted.max_blocks, 1);
    }
}
