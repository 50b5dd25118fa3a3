//! Helpers shared by the end-to-end tests.

pub mod cli;
pub mod fake_openai;
pub mod journal_file;
pub mod remote_load;
pub mod tiny_model;
