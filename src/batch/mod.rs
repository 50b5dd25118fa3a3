//! Batch runs: a panel of judges (local models and remote endpoints, from a panel file) over a
//! dataset or a selection of it, each judge with its own pool of workers, every judgment
//! appended to the journal by the caller as it arrives. Shared by `arbiter run` and the app:
//! workers report through a channel, so neither front end ever blocks on a model or the
//! network.

mod panel_file;
mod plan;
mod progress;
mod run;

pub use panel_file::{
    JudgeKind, PanelFile, PanelFileError, PanelJudge, DEFAULT_GRAMMAR_FIELD,
    DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_S,
};
pub use plan::{
    already_judged, constrain_mode, default_template, judged_in_dataset, plan, select_items,
    JudgePlan, Plan, Scope,
};
pub use progress::{format_eta, BatchProgress, JudgeProgress};
pub use run::{order_label, Batch, BatchEvent, Waker};

use std::path::PathBuf;

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    PanelFile(#[from] PanelFileError),
    #[error(transparent)]
    Review(#[from] crate::review::ReviewError),
    #[error("judge {judge:?} is not in {panel}; its judges are: {known}")]
    UnknownJudge {
        judge: String,
        panel: PathBuf,
        known: String,
    },
    #[error("judge {judge:?}: {message}")]
    Judge { judge: String, message: String },
    #[error("judge {judge:?} reads its API key from the environment variable {var}, which is not set: export {var}=... before the run")]
    MissingKey { judge: String, var: String },
}
