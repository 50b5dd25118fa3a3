//! What can go wrong between "the user picks a judge" and "tokens arrive", each error naming
//! the thing and what to do.

use super::catalogue::CatalogueError;
use super::chat::ChatError;
use super::config::ConfigError;
use super::constrain::ConstrainError;
use super::device::DeviceError;
use super::hub::{format_bytes, HubError};
use super::tokenizer::TokenizerError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Hub(Box<HubError>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has no weights Arbiter can load: it needs model.safetensors (or shards with model.safetensors.index.json); pickle (.bin) weights are never loaded")]
    NoWeights { path: String },
    #[error(
        "{what} needs about {need} but {device} has {available} free: pick a smaller or quantized \
         model (e.g. a GGUF file), a shorter context, or another device",
        need = format_bytes(*need),
        available = format_bytes(*available)
    )]
    OutOfMemory {
        what: String,
        device: String,
        need: u64,
        available: u64,
    },
    #[error("{what} ran out of device memory ({detail}): pick a smaller or quantized model, a shorter prompt, or another device")]
    DeviceOutOfMemory { what: String, detail: String },
    #[error("the prompt is {tokens} tokens but the model reads at most {max}: shorten the item or pick a template without the conversation history")]
    PromptTooLong { tokens: usize, max: usize },
    #[error("the prompt and answer need up to {tokens} tokens of KV cache but the batch's cache holds at most {capacity}: lower max_new_tokens, shorten the item, or give the batch more memory")]
    KvCacheTooSmall { tokens: usize, capacity: usize },
    #[error("{what} failed: {source}")]
    Compute {
        what: String,
        source: candle_core::Error,
    },
    #[error("decoding generated tokens failed: {0}")]
    Decode(String),
    #[error("no model is loaded: load one before generating")]
    NotLoaded,
    #[error("the engine worker stopped: {0}")]
    WorkerGone(String),
    #[error(transparent)]
    Constrain(#[from] ConstrainError),
}

impl From<HubError> for EngineError {
    fn from(e: HubError) -> Self {
        EngineError::Hub(Box::new(e))
    }
}

impl EngineError {
    /// Wraps a candle error with what was being done; an allocation failure becomes a clear
    /// out-of-memory message rather than a backend string.
    pub fn compute(what: impl Into<String>, source: candle_core::Error) -> EngineError {
        let what = what.into();
        let text = source.to_string().to_ascii_lowercase();
        if text.contains("out of memory") || text.contains("out_of_memory") {
            return EngineError::DeviceOutOfMemory {
                what,
                detail: source.to_string(),
            };
        }
        EngineError::Compute { what, source }
    }
}

/// `map_err` helper: `.map_err(compute("prefill"))`.
pub(crate) fn compute(what: &'static str) -> impl Fn(candle_core::Error) -> EngineError {
    move |e| EngineError::compute(what, e)
}
