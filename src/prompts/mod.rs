//! Judge prompt templates: the files in `prompts/` (built into the binary, overridable from
//! the user's prompts directory) and their rendering for an `Item`.
//!
//! - `text`: the template language (`{placeholder}`, `{#section}...{/section}`, `{{`/`}}`).
//! - `template`: one template file, its header, its bodies (one per language where it has
//!   several) and the checks made when it is loaded.
//! - `criteria`: per-language, per-category criterion sentences behind `{criterion}`.
//! - `fill`: what each placeholder shows for an item, and the conversation layout.
//! - `preference`: ready-made style preferences for pairwise templates.
//! - `library`: the built-in and user templates, by name.
//! - `grammar`: the answer grammar a template declares, compiled for constrained decoding.

mod criteria;
mod fill;
pub mod grammar;
mod library;
mod preference;
mod template;
mod text;

pub use fill::conversation_text;
pub use grammar::{AnswerGrammar, GrammarError, TextBudgets};
pub use library::{Library, Source, TemplateInfo, PROMPTS_DIR_ENV};
pub use preference::{preference_preset, resolve_preference, PREFERENCE_PRESETS};
pub use template::{output_name, Template, TemplateKind, KNOWN_PLACEHOLDERS};
pub use text::{escape, placeholders, render_text, TextError};

use std::path::PathBuf;

/// Which of an item's two responses a single-answer (pointwise, critique) template shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Side {
    #[default]
    A,
    B,
}

/// How to render a template for one item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Show response B as "A" and response A as "B" (to measure or cancel position bias).
    /// Applies to pairwise templates; single-answer templates follow `side`.
    pub swap: bool,
    /// The response `{answer}` shows in pointwise and critique templates.
    pub side: Side,
    /// A style-preference sentence for pairwise templates (see `PREFERENCE_PRESETS`); it goes
    /// where the template puts `{preference}`, or at the end when it has none.
    pub preference: Option<String>,
}

/// Everything that can go wrong loading or rendering a template; each message names the
/// template or file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt template {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("cannot read prompt templates at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no prompt template named {name:?}; the available ones are {available}")]
    UnknownTemplate { name: String, available: String },
    #[error("prompt template {template} cannot be filled for item {item}: placeholder {{{placeholder}}} has no value ({reason})")]
    Unfilled {
        template: String,
        item: String,
        placeholder: String,
        reason: String,
    },
    #[error("prompt template {template} judges a single answer; a style preference only applies to pairwise templates")]
    PreferenceNeedsPairwise { template: String },
}
