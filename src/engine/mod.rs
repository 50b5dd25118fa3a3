//! Local inference: hub downloads, the model catalogue, model loading and generation.
//!
//! The path from "the user picks a judge" to "tokens arrive in the UI":
//! [`catalogue::resolve`] turns a name into a [`catalogue::ModelSource`]; [`loader::load`]
//! downloads it through [`hub`] if needed and builds the [`model::Decoder`] on a
//! [`device::DeviceChoice`] with its [`tokenizer::Tokenizer`] and [`chat::ChatTemplate`];
//! [`generate`] runs prefill and decode with a [`sampling::Sampler`], kept inside an answer's
//! grammar by [`constrain`] when the request has one; [`worker::Engine`] does all
//! of it on its own thread behind channels, so no front end ever blocks on it.

pub mod catalogue;
pub mod chat;
pub mod config;
pub mod constrain;
pub mod device;
pub mod error;
pub mod generate;
pub mod hub;
pub mod judge;
pub mod loader;
pub mod model;
pub mod sampling;
pub mod schedule;
pub mod tokenizer;
pub mod worker;

pub use constrain::{ConstrainError, ConstrainMode, GrammarSpec};
pub use error::EngineError;
pub use generate::{
    FinishReason, GenerateRequest, Generation, Prompt, Timing, DEFAULT_PREFILL_CHUNK,
};
pub use loader::{load, LoadEvent, LoadOptions, LoadedModel, ModelInfo};
pub use sampling::SamplingParams;
pub use worker::{Engine, EngineEvent, RequestId};
