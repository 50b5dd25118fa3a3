//! Constrained decoding: only tokens that keep the answer inside its grammar may be sampled.
//!
//! llguidance (the library llama.cpp, vLLM and SGLang use for structured output) does the
//! grammar work: a `ParserFactory` per model holds the vocabulary as a token trie (`toktrie`,
//! built here from each token's bytes, read out of the tokenizer the engine already has), and
//! a `Matcher` per generation says which tokens may come next and which bytes are forced.
//!
//! Per step the generation loop asks a [`Guide`] for the next [`Step`]: the tokens the grammar
//! forces (fed to the model in one forward pass, never sampled) and the mask of allowed tokens.
//! The mask for step t+1 depends only on the tokens up to t, so by default a guide thread
//! computes it while the model runs the forward pass of token t (`ARBITER_CONSTRAIN_THREAD=0`
//! computes it inline, for comparison). The mask is applied where the logits are, with tensor
//! ops (`where_cond`), so on a GPU the logits never leave the device for it; greedy decoding
//! first takes the unmasked argmax and applies the mask only when that token is not allowed.
//!
//! Token budget: every free text of an answer grammar gets a share of `max_new_tokens` after
//! room is kept for the fixed text (keys, labels) measured with this model's tokenizer, so the
//! verdict is written before the budget runs out.

use super::tokenizer::Tokenizer;
use crate::prompts::{AnswerGrammar, TextBudgets};
use candle_core::{DType, Device, Tensor};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// Why a constraint cannot be set up or followed; each names the grammar and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConstrainError {
    #[error("cannot read this model's vocabulary for constrained decoding ({0}); run it with --constrain off")]
    Vocabulary(String),
    #[error("the answer grammar of {what} cannot be compiled: {reason}")]
    Compile { what: String, reason: String },
    #[error("the answer of {what} needs at least {needed} new tokens (its fixed text and one token per free text) but the budget is {budget}: raise max_new_tokens")]
    BudgetTooSmall {
        what: String,
        needed: usize,
        budget: usize,
    },
    #[error("the model cannot continue the answer of {what} within its grammar after {after:?} (no token of its vocabulary is allowed there); check the template's answer grammar")]
    Stuck { what: String, after: String },
    #[error("constrained decoding of {what} failed: {reason}")]
    Matcher { what: String, reason: String },
}

/// How a judge keeps its answer inside the template's grammar. Recorded with every judgment:
/// judgments made with and without it are different judges' settings.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConstrainMode {
    /// Free sampling; the answer is read as it comes.
    #[default]
    None,
    /// The template's answer grammar: enforced token by token by the local engine; sent as
    /// GBNF to a remote server (llama.cpp's `grammar`, vLLM's and SGLang's EBNF fields).
    Grammar,
    /// A remote judge's JSON answer as OpenAI's `response_format` `json_schema` (OpenAI, vLLM,
    /// SGLang, llama.cpp's server).
    JsonSchema,
    /// A remote judge's JSON answer as `response_format` `{"type": "json_object", "schema"}`
    /// (llama.cpp's and llama-cpp-python's servers).
    JsonObject,
}

impl ConstrainMode {
    /// The panel-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            ConstrainMode::None => "none",
            ConstrainMode::Grammar => "grammar",
            ConstrainMode::JsonSchema => "json_schema",
            ConstrainMode::JsonObject => "json_object",
        }
    }

    pub fn parse(s: &str) -> Option<ConstrainMode> {
        match s {
            "none" => Some(ConstrainMode::None),
            "grammar" => Some(ConstrainMode::Grammar),
            "json_schema" => Some(ConstrainMode::JsonSchema),
            "json_object" => Some(ConstrainMode::JsonObject),
            _ => None,
        }
    }

    pub fn is_on(self) -> bool {
        self != ConstrainMode::None
    }
}

impl std::fmt::Display for ConstrainMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Tokens kept per free text beyond its budget: a text ends at the first token boundary
/// where it can end after its budget is used (not inside an escape or a UTF-8 character),
/// which can take a few more tokens.
const SLACK_PER_TEXT: usize = 3;
/// Tokens kept for the answer as a whole (the fixed text may split differently at its joins
/// with the free text than it does alone).
const SLACK_FIXED: usize = 2;

/// What a grammar constrains: a template's answer (budgeted by the engine) or a grammar as
/// llguidance reads it (Lark, or a JSON schema), as is.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// `what` names it in messages (`template pairwise-ab`).
    Answer {
        what: String,
        grammar: AnswerGrammar,
    },
    Lark {
        what: String,
        text: String,
    },
    JsonSchema {
        what: String,
        schema: serde_json::Value,
    },
}

impl GrammarSpec {
    pub fn what(&self) -> &str {
        match self {
            GrammarSpec::Answer { what, .. }
            | GrammarSpec::Lark { what, .. }
            | GrammarSpec::JsonSchema { what, .. } => what,
        }
    }
}

/// A model's vocabulary made ready for llguidance; built once per loaded model.
pub struct GrammarVocab {
    factory: ParserFactory,
    /// The logits' length (the model's vocabulary, possibly padded past the tokenizer's).
    logits_len: usize,
    /// Every id that ends a turn: allowed exactly when the grammar may end.
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for GrammarVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarVocab")
            .field("logits_len", &self.logits_len)
            .finish()
    }
}

/// The tokenizer as llguidance sees it: the trie of every token's bytes, and our own encoder
/// for the text it needs tokenized (forced text).
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer.encode(text, false).unwrap_or_default()
        })
    }
}

impl GrammarVocab {
    /// Reads every token's bytes out of `tokenizer` (its `tokenizer.json` form: byte-level BPE
    /// or SentencePiece with byte fallback; special tokens marked as such). `logits_len` is
    /// the model's vocabulary size; ids past the tokenizer's are never allowed.
    pub fn new(
        tokenizer: &Tokenizer,
        logits_len: usize,
        stop_ids: &[u32],
    ) -> Result<GrammarVocab, ConstrainError> {
        let bad = |e: String| ConstrainError::Vocabulary(e);
        let json = tokenizer
            .inner()
            .to_string(false)
            .map_err(|e| bad(format!("serializing the tokenizer: {e}")))?;
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| bad(format!("reading the tokenizer: {e}")))?;
        let mut words =
            llguidance::token_bytes_from_tokenizer_json(&value).map_err(|e| bad(e.to_string()))?;
        let n = words.len().max(logits_len).max(tokenizer.vocab_size());
        words.resize(n, Vec::new());
        let eos = tokenizer
            .eos_id()
            .filter(|id| stop_ids.contains(id))
            .or_else(|| stop_ids.first().copied())
            .ok_or_else(|| bad("the model declares no end-of-turn token".into()))?;
        let info = TokRxInfo {
            vocab_size: n as u32,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: stop_ids.iter().copied().find(|id| *id != eos),
        };
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Env {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| bad(e.to_string()))?;
        // Grammar errors reach the user as our errors; llguidance's own logging stays quiet.
        factory.quiet();
        Ok(GrammarVocab {
            factory,
            logits_len,
            stop_ids: stop_ids.to_vec(),
        })
    }

    fn env(&self) -> &TokEnv {
        self.factory.tok_env()
    }

    /// Tokens `text` takes with this tokenizer.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.env().tokenize(text).len()
    }

    /// Shares `budget` tokens between the free texts of `grammar`, after the fixed text.
    pub fn plan(
        &self,
        what: &str,
        grammar: &AnswerGrammar,
        budget: usize,
    ) -> Result<TextBudgets, ConstrainError> {
        let fixed: usize = grammar
            .fixed_parts()
            .iter()
            .map(|p| self.count_tokens(p))
            .sum::<usize>()
            + SLACK_FIXED;
        let slots = grammar.text_slots();
        let needed = fixed + slots * (1 + SLACK_PER_TEXT);
        if budget < needed {
            return Err(ConstrainError::BudgetTooSmall {
                what: what.to_string(),
                needed,
                budget,
            });
        }
        if slots == 0 {
            return Ok(TextBudgets(Some(Vec::new())));
        }
        let each = (budget - fixed) / slots - SLACK_PER_TEXT;
        Ok(TextBudgets(Some(vec![each; slots])))
    }

    /// A matcher for `spec` with `budget` new tokens.
    pub fn matcher(&self, spec: &GrammarSpec, budget: usize) -> Result<Matcher, ConstrainError> {
        let what = spec.what().to_string();
        let top = match spec {
            GrammarSpec::Answer { grammar, .. } => {
                let budgets = self.plan(&what, grammar, budget)?;
                TopLevelGrammar::from_lark(grammar.to_lark(&budgets))
            }
            GrammarSpec::Lark { text, .. } => TopLevelGrammar::from_lark(text.clone()),
            GrammarSpec::JsonSchema { schema, .. } => {
                TopLevelGrammar::from_json_schema(schema.clone())
            }
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| ConstrainError::Compile {
                what: what.clone(),
                reason: e.to_string(),
            })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(reason) = matcher.get_error() {
            return Err(ConstrainError::Compile { what, reason });
        }
        Ok(matcher)
    }

    /// Starts following `spec` for one generation of at most `budget` tokens.
    pub fn guide(
        self: &Arc<Self>,
        spec: &GrammarSpec,
        budget: usize,
        device: &Device,
    ) -> Result<Guide, ConstrainError> {
        let matcher = self.matcher(spec, budget)?;
        let stepper = Stepper {
            matcher,
            what: spec.what().to_string(),
            vocab: self.clone(),
            text: Vec::new(),
        };
        let neg_inf = Tensor::full(f32::NEG_INFINITY, self.logits_len, device).map_err(|e| {
            ConstrainError::Matcher {
                what: spec.what().to_string(),
                reason: e.to_string(),
            }
        })?;
        let threaded = std::env::var("ARBITER_CONSTRAIN_THREAD").map_or(true, |v| v != "0");
        Guide::start(stepper, threaded, neg_inf, device.clone())
    }
}

/// What the grammar says before the next sampled token.
#[derive(Debug, Clone)]
pub struct Step {
    /// Tokens the grammar forces next (already accepted by it): feed them, do not sample.
    pub forced: Vec<u32>,
    /// The answer is complete: stop after `forced`.
    pub finished: bool,
    /// Tokens allowed after `forced` (stop ids included when the answer may end there).
    pub mask: Option<Mask>,
}

/// The allowed tokens of one step.
#[derive(Debug, Clone)]
pub struct Mask {
    allowed: SimpleVob,
    /// Stop ids are allowed (the grammar may end here).
    may_stop: bool,
    stop_ids: Arc<[u32]>,
}

impl Mask {
    pub fn allows(&self, token: u32) -> bool {
        if self.stop_ids.contains(&token) {
            return self.may_stop;
        }
        (token as usize) < self.allowed.len() && self.allowed.is_allowed(token)
    }

    /// 1 where allowed, 0 elsewhere, `len` long.
    fn bytes(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.allowed.iter_set_entries(|i| {
            if let Some(v) = out.get_mut(i) {
                *v = 1;
            }
        });
        for &id in self.stop_ids.iter() {
            if let Some(v) = out.get_mut(id as usize) {
                *v = u8::from(self.may_stop);
            }
        }
        out
    }
}

/// The matcher and what it has accepted; runs inline or on the guide thread.
struct Stepper {
    matcher: Matcher,
    what: String,
    vocab: Arc<GrammarVocab>,
    /// The answer's bytes so far, for messages.
    text: Vec<u8>,
}

impl Stepper {
    fn fail(&self, reason: impl Into<String>) -> ConstrainError {
        ConstrainError::Matcher {
            what: self.what.clone(),
            reason: reason.into(),
        }
    }

    fn accept(&mut self, tokens: &[u32]) -> Result<(), ConstrainError> {
        self.matcher
            .consume_tokens(tokens)
            .map_err(|e| self.fail(e.to_string()))?;
        let trie = self.vocab.env().tok_trie();
        self.text.extend(trie.decode(tokens));
        Ok(())
    }

    /// Whether the answer is complete once `tokens` are accepted (checked on a copy).
    fn grammar_ends_after(&self, tokens: &[u32]) -> Result<bool, ConstrainError> {
        let mut probe = self.matcher.deep_clone();
        probe
            .consume_tokens(tokens)
            .map_err(|e| self.fail(e.to_string()))?;
        Ok(probe.is_stopped() || probe.is_accepting().map_err(|e| self.fail(e.to_string()))?)
    }

    /// Forced tokens, then the mask after them.
    fn step(&mut self) -> Result<Step, ConstrainError> {
        if self.matcher.is_stopped() {
            return Ok(Step {
                forced: Vec::new(),
                finished: true,
                mask: None,
            });
        }
        let forced = self.matcher.compute_ff_tokens();
        if let Some(e) = self.matcher.get_error() {
            return Err(self.fail(e));
        }
        if let Some(at) = forced.iter().position(|t| self.vocab.stop_ids.contains(t)) {
            // A turn's end forced before the answer is complete: the model cannot go on
            // writing the answer after it has ended its turn.
            if at + 1 < forced.len() || !self.grammar_ends_after(&forced)? {
                self.accept(&forced[..at])?;
                return Err(ConstrainError::Stuck {
                    what: self.what.clone(),
                    after: tail(&self.text),
                });
            }
        }
        if !forced.is_empty() {
            self.accept(&forced)?;
            if self.matcher.is_stopped() {
                return Ok(Step {
                    forced,
                    finished: true,
                    mask: None,
                });
            }
        }
        let allowed = self
            .matcher
            .compute_mask()
            .map_err(|e| self.fail(e.to_string()))?;
        let trie = self.vocab.env().tok_trie();
        // The end of the turn is allowed where the answer may end, not where a grammar names
        // an end-of-turn token in its middle (the answer would stop there, incomplete).
        let accepting = self
            .matcher
            .is_accepting()
            .map_err(|e| self.fail(e.to_string()))?;
        let may_stop = accepting && allowed.is_allowed(trie.eos_token());
        let only_stop = may_stop && allowed.num_set() == 1;
        let stops_allowed = self
            .vocab
            .stop_ids
            .iter()
            .filter(|&&id| (id as usize) < allowed.len() && allowed.is_allowed(id))
            .count();
        let others = allowed.num_set() - stops_allowed;
        if others == 0 && !may_stop {
            return Err(ConstrainError::Stuck {
                what: self.what.clone(),
                after: tail(&self.text),
            });
        }
        Ok(Step {
            forced,
            // Nothing but the end is left: no need to ask the model for it.
            finished: only_stop,
            mask: (!only_stop).then(|| Mask {
                allowed,
                may_stop,
                stop_ids: self.vocab.stop_ids.clone().into(),
            }),
        })
    }
}

/// The last characters of the answer so far, for a message.
fn tail(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let chars: Vec<char> = s.chars().collect();
    let start = chars.len().saturating_sub(60);
    chars[start..].iter().collect()
}

enum Run {
    Inline(Box<Stepper>),
    /// The guide thread: commits go in, steps come out.
    Thread {
        commits: Sender<u32>,
        steps: Receiver<Result<Step, ConstrainError>>,
    },
}

/// Follows a grammar through one generation. See the module documentation.
pub struct Guide {
    run: Run,
    /// The step computed ahead, for the inline mode.
    ahead: Option<Result<Step, ConstrainError>>,
    neg_inf: Tensor,
    device: Device,
    logits_len: usize,
}

impl Guide {
    fn start(
        mut stepper: Stepper,
        threaded: bool,
        neg_inf: Tensor,
        device: Device,
    ) -> Result<Guide, ConstrainError> {
        let logits_len = stepper.vocab.logits_len;
        if !threaded {
            let first = stepper.step();
            return Ok(Guide {
                run: Run::Inline(Box::new(stepper)),
                ahead: Some(first),
                neg_inf,
                device,
                logits_len,
            });
        }
        let (commit_tx, commit_rx) = mpsc::channel::<u32>();
        let (step_tx, step_rx) = mpsc::channel();
        let what = stepper.what.clone();
        std::thread::Builder::new()
            .name("arbiter-grammar".into())
            .spawn(move || {
                if step_tx.send(stepper.step()).is_err() {
                    return;
                }
                // Ends when the generation drops its guide (the sender closes).
                while let Ok(token) = commit_rx.recv() {
                    let result = stepper.accept(&[token]).and_then(|()| stepper.step());
                    let failed = result.is_err();
                    if step_tx.send(result).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| ConstrainError::Matcher {
                what,
                reason: format!("cannot start the grammar thread: {e}"),
            })?;
        Ok(Guide {
            run: Run::Thread {
                commits: commit_tx,
                steps: step_rx,
            },
            ahead: None,
            neg_inf,
            device,
            logits_len,
        })
    }

    /// The next step: waits for the guide thread if it is still computing.
    pub fn next_step(&mut self) -> Result<Step, ConstrainError> {
        match &mut self.run {
            Run::Inline(_) => self.ahead.take().unwrap_or_else(|| {
                Err(ConstrainError::Matcher {
                    what: "the answer".into(),
                    reason: "a step was asked for twice".into(),
                })
            }),
            Run::Thread { steps, .. } => steps.recv().unwrap_or_else(|_| {
                Err(ConstrainError::Matcher {
                    what: "the answer".into(),
                    reason: "the grammar thread stopped".into(),
                })
            }),
        }
    }

    /// Tells the grammar the sampled token; the next step is computed meanwhile (on the
    /// guide thread) or now (inline).
    pub fn commit(&mut self, token: u32) -> Result<(), ConstrainError> {
        match &mut self.run {
            Run::Inline(stepper) => {
                let result = stepper.accept(&[token]).and_then(|()| stepper.step());
                self.ahead = Some(result);
                Ok(())
            }
            Run::Thread { commits, .. } => {
                commits.send(token).map_err(|_| ConstrainError::Matcher {
                    what: "the answer".into(),
                    reason: "the grammar thread stopped".into(),
                })
            }
        }
    }

    /// `logits` with every token `mask` does not allow set to minus infinity, computed on the
    /// logits' device.
    pub fn apply(&self, logits: &Tensor, mask: &Mask) -> candle_core::Result<Tensor> {
        let len = logits.dim(0)?;
        let allowed = Tensor::from_vec(mask.bytes(len), len, &self.device)?;
        let neg_inf = if len == self.logits_len {
            self.neg_inf.clone()
        } else {
            Tensor::full(f32::NEG_INFINITY, len, &self.device)?
        };
        allowed.where_cond(&logits.to_dtype(DType::F32)?, &neg_inf)
    }
}
