//! Opening a dataset for a subcommand: the shared `--format`, `--skip-bad-lines`, `--journal`,
//! `--annotator` and `--panel` options, and the warnings a person must see on the way.

use super::{DatasetArgs, PanelArgs};
use crate::dataset::LoadOptions;
use crate::moj::LabelPolicy;
use crate::review::{OpenOptions, Review};
use anyhow::Context;

/// A dataset opened for a subcommand.
pub type Reviewed = Review;

/// Opens the dataset named on the command line with its journal and panel, printing what was
/// skipped or damaged to standard error (never silently).
pub fn open_reviewed(data: &DatasetArgs, panel: &PanelArgs) -> anyhow::Result<Review> {
    open_reviewed_with(data, panel, LabelPolicy::default())
}

/// `open_reviewed` with a choice of where final labels come from.
pub fn open_reviewed_with(
    data: &DatasetArgs,
    panel: &PanelArgs,
    policy: LabelPolicy,
) -> anyhow::Result<Review> {
    let opts = OpenOptions {
        load: LoadOptions {
            format: data.format,
            skip_bad_lines: data.skip_bad_lines,
        },
        journal: data.journal.clone(),
        panel: panel.panel.clone(),
        policy,
        annotator: annotator(data)?,
        adjudicator: false,
    };
    let review = Review::open(&data.dataset, &opts)
        .with_context(|| format!("opening {}", data.dataset.display()))?;
    let skipped = &review.dataset.skipped;
    if !skipped.is_empty() {
        eprintln!(
            "warning: skipped {} malformed record(s) in {}:",
            skipped.len(),
            data.dataset.display()
        );
        for bad in skipped.iter().take(10) {
            eprintln!("  line {}: {}", bad.line, bad.reason);
        }
        if skipped.len() > 10 {
            eprintln!("  ... and {} more", skipped.len() - 10);
        }
    }
    for (path, w) in review.warnings_by_journal() {
        eprintln!("warning: journal {}: {w}", path.display());
    }
    Ok(review)
}

/// The annotator: `--annotator`, else the environment. A bad name given on the command line is
/// an error; one from the environment (`$USER` may hold anything) only means nobody is named,
/// so reading commands still work and recording a decision asks for `--annotator`.
fn annotator(data: &DatasetArgs) -> anyhow::Result<Option<String>> {
    if let Some(name) = &data.annotator {
        return Ok(Some(crate::journal::check_annotator(name)?));
    }
    Ok(crate::journal::env_annotator().and_then(|name| {
        match crate::journal::check_annotator(&name) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("ignoring the annotator from the environment: {e}");
                None
            }
        }
    }))
}
