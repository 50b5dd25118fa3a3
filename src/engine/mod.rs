//! Local inference: hub downloads, the model catalogue, model loading and generation.

pub mod catalogue;
pub mod hub;
