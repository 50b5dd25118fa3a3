//! Decoder backends: which model code runs a loaded model, behind one interface the generation
//! loop calls. Qwen2 and Llama run on the project's own [`Decoder`] (the fast path); Gemma 3
//! from GGUF on a corrected copy of candle-transformers' `quantized_gemma3` ([`Gemma3`]); the
//! other families on candle-transformers' model code ([`Transformers`]).
//! `ModelConfig::route` names the path and the reason for the user.

mod gemma3;
mod transformers;

pub use gemma3::Gemma3;
pub use transformers::Transformers;

use super::Decoder;
use crate::engine::config::ModelConfig;
use candle_core::{DType, Device, Result, Tensor};

/// A loaded model with its KV cache, whichever code runs it. There is one per loaded model,
/// so the size of the inline `Decoder` costs nothing worth a box on the hot path.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    Arbiter(Decoder),
    Gemma3(Box<Gemma3>),
    Transformers(Box<Transformers>),
}

impl Backend {
    pub fn config(&self) -> &ModelConfig {
        match self {
            Backend::Arbiter(d) => d.config(),
            Backend::Gemma3(m) => m.config(),
            Backend::Transformers(m) => m.config(),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Backend::Arbiter(d) => d.device(),
            Backend::Gemma3(m) => m.device(),
            Backend::Transformers(m) => m.device(),
        }
    }

    /// The dtype activations and the KV cache use.
    pub fn dtype(&self) -> DType {
        match self {
            Backend::Arbiter(d) => d.dtype(),
            Backend::Gemma3(_) | Backend::Transformers(_) => DType::F32,
        }
    }

    /// Tokens in the cache: the position the next token will take.
    pub fn position(&self) -> usize {
        match self {
            Backend::Arbiter(d) => d.position(),
            Backend::Gemma3(m) => m.position(),
            Backend::Transformers(m) => m.position(),
        }
    }

    /// Whether the cache can be rewound to a prefix ([`truncate`](Self::truncate) keeps what
    /// it is asked to); candle-transformers' caches can only be emptied.
    pub fn can_rewind(&self) -> bool {
        !matches!(self, Backend::Transformers(_))
    }

    /// Forgets the sequence.
    pub fn reset(&mut self) {
        match self {
            Backend::Arbiter(d) => d.reset(),
            Backend::Gemma3(m) => m.truncate(0),
            Backend::Transformers(m) => m.reset(),
        }
    }

    /// Rewinds the sequence to its first `len` tokens; where the cache cannot be rewound
    /// (see [`can_rewind`](Self::can_rewind)) and `len` is short of the position, empties it.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Backend::Arbiter(d) => d.truncate(len),
            Backend::Gemma3(m) => m.truncate(len),
            Backend::Transformers(m) => {
                if len < m.position() {
                    m.reset()
                }
            }
        }
    }

    /// Frees the cache's memory.
    pub fn clear_cache(&mut self) {
        match self {
            Backend::Arbiter(d) => d.clear_cache(),
            Backend::Gemma3(m) => m.clear_cache(),
            Backend::Transformers(m) => m.reset(),
        }
    }

    /// Allocates cache and RoPE tables for `tokens` positions up front where the backend can.
    pub fn reserve(&mut self, tokens: usize) -> Result<()> {
        match self {
            Backend::Arbiter(d) => d.reserve(tokens),
            Backend::Gemma3(m) => m.reserve(tokens),
            Backend::Transformers(_) => Ok(()),
        }
    }

    /// Runs `tokens` after what is cached and returns the f32 logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        match self {
            Backend::Arbiter(d) => d.forward(tokens),
            Backend::Gemma3(m) => m.forward(tokens),
            Backend::Transformers(m) => m.forward(tokens),
        }
    }

    /// f32 logits of every one of `tokens`, (len, vocab).
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Tensor> {
        match self {
            Backend::Arbiter(d) => d.forward_all(tokens),
            Backend::Gemma3(m) => m.forward_all(tokens),
            Backend::Transformers(m) => m.forward_all(tokens),
        }
    }
}
