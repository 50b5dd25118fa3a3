//! The generation loop: render the prompt with the model's chat template, prefill it in
//! chunks, then decode token by token, streaming text as it is decoded, until an end-of-turn
//! token, the token budget, or a cancel. With a grammar (`GenerateRequest::grammar`), each
//! step first feeds the tokens the grammar forces, then samples among the tokens it allows
//! (see `constrain`), and the generation ends when the answer is complete.

use super::chat::ChatTemplate;
use super::constrain::{GrammarSpec, GrammarVocab, Guide, Mask};
use super::error::{compute, EngineError};
use super::loader::LoadedModel;
use super::sampling::{Sampler, SamplingParams};
use super::tokenizer::Tokenizer;
use crate::dataset::Message;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Prefill chunk: long judge prompts go through in pieces of this many tokens, which bounds
/// the attention scores' memory (chunk x heads x context) and gives cancel a chance between
/// pieces. Output is identical to a single pass (tested).
pub const DEFAULT_PREFILL_CHUNK: usize = 512;

/// What the model is asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Rendered with the model's chat template, with the assistant turn opened.
    Chat(Vec<Message>),
    /// Fed as is (already templated, or a model without a template).
    Raw(String),
}

impl Prompt {
    /// A single user turn.
    pub fn user(text: impl Into<String>) -> Prompt {
        Prompt::Chat(vec![Message::new("user", text)])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    pub prefill_chunk: usize,
    /// Keep going past end-of-turn tokens until `max_new_tokens` (benchmarks measure a fixed
    /// number of decode steps, like transformers' `min_new_tokens`).
    pub ignore_stop: bool,
    /// Keep the answer inside this grammar (constrained decoding); `None` samples freely.
    pub grammar: Option<GrammarSpec>,
    /// Keep the part of the KV cache the last generation left that starts like this prompt,
    /// and prefill only the rest (the same prompt judged twice, or prompts sharing a long
    /// head). Off by default, so that timings always include the whole prefill.
    pub reuse_prefix: bool,
}

impl GenerateRequest {
    pub fn new(prompt: Prompt, sampling: SamplingParams) -> GenerateRequest {
        GenerateRequest {
            prompt,
            sampling,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            ignore_stop: false,
            grammar: None,
            reuse_prefix: false,
        }
    }

    /// The same request, constrained to `grammar` (or not, with `None`).
    pub fn with_grammar(mut self, grammar: Option<GrammarSpec>) -> GenerateRequest {
        self.grammar = grammar;
        self
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// `max_new_tokens` reached (a critique may be cut off).
    Length,
    Cancelled,
}

impl FinishReason {
    pub fn label(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// How long a request took. Milliseconds, tokens/s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timing {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt processing up to the first token's logits.
    pub prefill_ms: f64,
    /// From the request to the first generated token's text.
    pub time_to_first_token_ms: f64,
    /// After the first token, per token.
    pub decode_tokens_per_s: f64,
    pub total_ms: f64,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub timing: Timing,
}

impl LoadedModel {
    /// The exact text the model reads for `prompt`, chat template applied.
    pub fn render(&self, prompt: &Prompt) -> Result<String, EngineError> {
        render(self.template.as_ref(), &self.info.name, prompt)
    }

    /// Token ids of `prompt` as the model reads it.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        prompt_tokens(
            &self.tokenizer,
            self.template.as_ref(),
            &self.info.name,
            prompt,
        )
    }

    /// The vocabulary for constrained decoding, read from the tokenizer on first use.
    pub fn grammar_vocab(&mut self) -> Result<Arc<GrammarVocab>, EngineError> {
        if let Some(v) = &self.grammar_vocab {
            return Ok(v.clone());
        }
        let started = Instant::now();
        let vocab = Arc::new(GrammarVocab::new(
            &self.tokenizer,
            self.decoder.config().vocab_size,
            &self.stop_ids,
        )?);
        tracing::debug!(
            "read the vocabulary for constrained decoding in {:.0} ms",
            ms(started.elapsed())
        );
        self.grammar_vocab = Some(vocab.clone());
        Ok(vocab)
    }

    /// Generates a reply to `request`, calling `on_text` with each piece of decoded text as
    /// soon as it is whole (multi-byte characters never split). Stops within one token of
    /// `cancel` being set.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let started = Instant::now();
        let prompt = self.prompt_tokens(&request.prompt)?;
        self.generate_tokens(&prompt, request, cancel, on_text, started)
    }

    /// [`generate`](Self::generate) from token ids.
    pub fn generate_tokens(
        &mut self,
        prompt: &[u32],
        request: &GenerateRequest,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
        started: Instant,
    ) -> Result<Generation, EngineError> {
        let max = self.decoder.config().max_position;
        if prompt.is_empty() {
            return Err(EngineError::PromptTooLong { tokens: 0, max });
        }
        if prompt.len() >= max {
            return Err(EngineError::PromptTooLong {
                tokens: prompt.len(),
                max,
            });
        }
        let budget = request.sampling.max_new_tokens.min(max - prompt.len());
        let mut timing = Timing {
            prompt_tokens: prompt.len(),
            ..Timing::default()
        };
        // The last prompt token always goes through the model: its logits start the answer.
        let reused = if request.reuse_prefix && self.decoder.can_rewind() {
            self.cached_tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
                .min(prompt.len() - 1)
        } else {
            0
        };
        self.decoder.truncate(reused);
        self.cached_tokens.truncate(reused);
        self.decoder
            .reserve(prompt.len() + budget)
            .map_err(compute("allocating the KV cache"))?;
        let chunk = request.prefill_chunk.max(1);
        let mut logits = None;
        for piece in prompt[reused..].chunks(chunk) {
            if cancel.load(Ordering::Relaxed) {
                return Ok(Generation {
                    text: String::new(),
                    tokens: vec![],
                    finish: FinishReason::Cancelled,
                    timing: finish_timing(timing, started, None),
                });
            }
            // Recorded before the pass: a failed pass leaves the cache unknown, and the next
            // generation then finds no common prefix it can trust beyond what came before.
            let forward = self.decoder.forward(piece);
            match forward {
                Ok(l) => {
                    self.cached_tokens.extend_from_slice(piece);
                    logits = Some(l);
                }
                Err(e) => {
                    self.cached_tokens.clear();
                    return Err(EngineError::compute("prefill", e));
                }
            }
        }
        let mut logits = logits.ok_or(EngineError::PromptTooLong { tokens: 0, max })?;
        // A GPU runs the prefill asynchronously: wait for it, so the time is the work's.
        self.decoder
            .device()
            .synchronize()
            .map_err(compute("prefill"))?;
        timing.prefill_ms = ms(started.elapsed());

        let mut guide = match &request.grammar {
            Some(spec) => Some(
                self.grammar_vocab()?
                    .guide(spec, budget, self.decoder.device())?,
            ),
            None => None,
        };
        let mut sampler = Sampler::new(request.sampling.clone());
        let mut stream = self.tokenizer.inner().decode_stream(true);
        let mut tokens: Vec<u32> = Vec::with_capacity(budget);
        let mut text = String::new();
        let mut first_at = None;
        let mut finish = FinishReason::Length;
        // Appends decoded tokens to the answer and streams their text.
        let mut emit = |new: &[u32],
                        tokens: &mut Vec<u32>,
                        text: &mut String,
                        timing: &mut Timing|
         -> Result<(), EngineError> {
            for &t in new {
                tokens.push(t);
                let piece = stream
                    .step(t)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                if first_at.is_none() {
                    first_at = Some(Instant::now());
                    timing.time_to_first_token_ms = ms(started.elapsed());
                }
                if let Some(piece) = piece {
                    text.push_str(&piece);
                    on_text(&piece);
                }
            }
            Ok(())
        };
        while tokens.len() < budget {
            let mut mask = None;
            if let Some(guide) = guide.as_mut() {
                let step = guide.next_step()?;
                if !step.forced.is_empty() {
                    let room = budget - tokens.len();
                    let forced = &step.forced[..step.forced.len().min(room)];
                    emit(forced, &mut tokens, &mut text, &mut timing)?;
                    if cancel.load(Ordering::Relaxed) {
                        finish = FinishReason::Cancelled;
                        break;
                    }
                    if step.finished {
                        finish = FinishReason::Stop;
                        break;
                    }
                    if tokens.len() == budget {
                        break;
                    }
                    // Forced text goes through the model in one pass, like a piece of prompt.
                    logits = feed(&mut self.decoder, &mut self.cached_tokens, forced)?;
                } else if step.finished {
                    finish = FinishReason::Stop;
                    break;
                }
                mask = step.mask;
            }
            let next = match (&guide, &mask) {
                (Some(guide), Some(mask)) => {
                    sample_allowed(&mut sampler, guide, mask, &logits, &tokens)?
                }
                _ => sampler
                    .sample(&logits, &tokens)
                    .map_err(compute("sampling"))?,
            };
            if !request.ignore_stop && self.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            if let Some(guide) = guide.as_mut() {
                // The guide computes the next mask while the model runs this token.
                guide.commit(next)?;
            }
            emit(&[next], &mut tokens, &mut text, &mut timing)?;
            if cancel.load(Ordering::Relaxed) {
                finish = FinishReason::Cancelled;
                break;
            }
            if tokens.len() == budget {
                break;
            }
            logits = feed(&mut self.decoder, &mut self.cached_tokens, &[next])?;
        }
        timing.generated_tokens = tokens.len();
        settle_stream(&self.tokenizer, &tokens, &mut text, on_text)?;
        Ok(Generation {
            text,
            tokens,
            finish,
            timing: finish_timing(timing, started, first_at),
        })
    }
}

/// `LoadedModel::render` from the parts it reads (the batch borrows the decoder meanwhile).
fn render(
    template: Option<&ChatTemplate>,
    model: &str,
    prompt: &Prompt,
) -> Result<String, EngineError> {
    match (prompt, template) {
        (Prompt::Raw(text), _) => Ok(text.clone()),
        (Prompt::Chat(messages), Some(template)) => Ok(template.render(messages, true)?),
        (Prompt::Chat(messages), None) => {
            tracing::warn!("{model} has no chat template: feeding the conversation as plain text");
            Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"))
        }
    }
}

/// `LoadedModel::prompt_tokens` from the parts it reads.
pub(crate) fn prompt_tokens(
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    model: &str,
    prompt: &Prompt,
) -> Result<Vec<u32>, EngineError> {
    let text = render(template, model, prompt)?;
    // The chat template writes BOS itself where the model wants one.
    let add_special = matches!(prompt, Prompt::Raw(_)) || template.is_none();
    Ok(tokenizer.encode(&text, add_special)?)
}

/// Ends a streamed answer: the stream holds back bytes that do not yet make a whole
/// character; at the end they are what they are (a cut-off character decodes as U+FFFD), so
/// the streamed text ends equal to the decode of every token.
pub(crate) fn settle_stream(
    tokenizer: &Tokenizer,
    tokens: &[u32],
    text: &mut String,
    on_text: &mut dyn FnMut(&str),
) -> Result<(), EngineError> {
    let full = tokenizer
        .decode(tokens, true)
        .map_err(EngineError::Tokenizer)?;
    if let Some(rest) = full.strip_prefix(text.as_str()) {
        if !rest.is_empty() {
            on_text(rest);
            text.push_str(rest);
        }
    } else {
        tracing::warn!("streamed text diverged from the final decode; keeping the stream");
    }
    Ok(())
}

/// Runs `tokens` through the model after what is cached, keeping track of the cache.
fn feed(
    decoder: &mut super::model::Backend,
    cached: &mut Vec<u32>,
    tokens: &[u32],
) -> Result<Tensor, EngineError> {
    match decoder.forward(tokens) {
        Ok(logits) => {
            cached.extend_from_slice(tokens);
            Ok(logits)
        }
        Err(e) => {
            cached.clear();
            Err(EngineError::compute("decoding", e))
        }
    }
}

/// The next token among those `mask` allows. Greedy decoding takes the plain argmax when it is
/// allowed (most steps of free text), and masks the logits on their device only when not.
pub(crate) fn sample_allowed(
    sampler: &mut Sampler,
    guide: &Guide,
    mask: &Mask,
    logits: &Tensor,
    history: &[u32],
) -> Result<u32, EngineError> {
    if sampler.is_plain_greedy() {
        let best = super::model::argmax(logits).map_err(compute("sampling"))?;
        if mask.allows(best) {
            return Ok(best);
        }
    }
    let masked = guide.apply(logits, mask).map_err(compute("masking"))?;
    let next = sampler
        .sample(&masked, history)
        .map_err(compute("sampling"))?;
    if !mask.allows(next) {
        return Err(EngineError::Decode(format!(
            "the sampler picked token {next}, which the grammar does not allow (are the logits NaN?)"
        )));
    }
    Ok(next)
}

pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn finish_timing(mut t: Timing, started: Instant, first_at: Option<Instant>) -> Timing {
    t.total_ms = ms(started.elapsed());
    if let Some(first) = first_at {
        let after_first = t.generated_tokens.saturating_sub(1);
        let secs = first.elapsed().as_secs_f64();
        if after_first > 0 && secs > 0.0 {
            t.decode_tokens_per_s = after_first as f64 / secs;
        }
    }
    t
}
