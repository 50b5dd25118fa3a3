//! Arbiter: review what LLM judges said, run local judges, combine them into a Mixture of
//! Judges and arbitrate the disputes by hand.
//!
//! Data flows one way: files -> `dataset` + `journal` -> judges -> `verdict`s -> `moj` ->
//! review -> `metrics` / export (`training`: the final labels as training data). The CLI
//! (`cli`) is a thin front end over this library.

pub mod assignment;
pub mod batch;
pub mod cli;
pub mod critique;
pub mod dataset;
pub mod engine;
#[cfg(feature = "gui")]
pub mod gui;
pub mod journal;
pub mod metrics;
pub mod moj;
pub mod prompts;
pub mod remote;
pub mod review;
pub mod training;
pub mod verdict;
