//! A dataset opened for review: the items, the journal replayed onto them, the judge panel's
//! consensus and each item's final label. This is the state both front ends (CLI and GUI) show
//! and change; it only composes `dataset`, `journal` and `moj`.

use crate::dataset::{self, Dataset, DatasetError, Item, Judgment, LoadOptions};
use crate::journal::{self, Decision, Journal, JournalError, Replay, ReplayWarning, Undo};
use crate::moj::{self, Consensus, LabelPolicy, LabelSource, Panel, PanelError, Summary};
use crate::verdict::Outcome;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Panel(#[from] PanelError),
    #[error("judge {judge:?} is not in {dataset}; the judges there are: {known}")]
    UnknownJudge {
        judge: String,
        dataset: PathBuf,
        known: String,
    },
    #[error("item {item:?} is not in {dataset}; check the id (`arbiter inspect` lists the items)")]
    UnknownItem { item: String, dataset: PathBuf },
}

/// How to open a dataset for review.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub load: LoadOptions,
    /// The journal's path; default: `journal::default_path` beside the dataset.
    pub journal: Option<PathBuf>,
    /// The panel's judges; default: every judge in the dataset and its journal.
    pub panel: Vec<String>,
    pub policy: LabelPolicy,
}

/// A dataset with its journal applied, its panel and its consensus.
#[derive(Debug)]
pub struct Review {
    pub dataset: Dataset,
    journal_path: PathBuf,
    /// Opened for appending on the first write, so that reading a dataset never creates a file.
    journal: Option<Journal>,
    replay: Replay,
    panel: Option<Panel>,
    consensus: Vec<Consensus>,
    policy: LabelPolicy,
    /// What replaying the journal reported (torn tail, unreadable lines, unknown items).
    pub warnings: Vec<ReplayWarning>,
}

impl Review {
    /// Loads the dataset, replays its journal (without creating one) and computes consensus.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Review, ReviewError> {
        let mut dataset = dataset::load(path, &opts.load)?;
        let journal_path = opts
            .journal
            .clone()
            .unwrap_or_else(|| journal::default_path(path));
        let replay = if journal_path.exists() {
            journal::read(&journal_path, &dataset)?
        } else {
            Replay::from_bytes(&[], &|_| true)
        };
        let mut warnings = replay.warnings.clone();
        warnings.extend(journal::apply(&replay, &mut dataset));
        let panel = if opts.panel.is_empty() {
            Panel::all(&dataset).ok()
        } else {
            let known = dataset.judges();
            if let Some(unknown) = opts.panel.iter().find(|j| !known.contains(j)) {
                return Err(ReviewError::UnknownJudge {
                    judge: unknown.clone(),
                    dataset: dataset.path.clone(),
                    known: if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    },
                });
            }
            Some(Panel::from_names(opts.panel.iter().cloned())?)
        };
        let mut review = Review {
            dataset,
            journal_path,
            journal: None,
            replay,
            panel,
            consensus: Vec::new(),
            policy: opts.policy,
            warnings,
        };
        review.recompute();
        Ok(review)
    }

    fn recompute(&mut self) {
        self.consensus = match &self.panel {
            Some(panel) => moj::consensus_all(&self.dataset, panel),
            None => self
                .dataset
                .items
                .iter()
                .map(|i| Consensus {
                    item: i.id.clone(),
                    outcome: None,
                    counts: Default::default(),
                    disputes: Vec::new(),
                })
                .collect(),
        };
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// The panel, or `None` when the dataset has no judges at all.
    pub fn panel(&self) -> Option<&Panel> {
        self.panel.as_ref()
    }

    pub fn set_panel(&mut self, panel: Option<Panel>) {
        self.panel = panel;
        self.recompute();
    }

    pub fn items(&self) -> &[Item] {
        &self.dataset.items
    }

    /// The panel's consensus on every item, in dataset order.
    pub fn consensus(&self) -> &[Consensus] {
        &self.consensus
    }

    pub fn summary(&self) -> Summary {
        match &self.panel {
            Some(p) => Summary::of(p, &self.consensus),
            None => Summary {
                items: self.dataset.items.len(),
                ..Summary::default()
            },
        }
    }

    /// The current human decision on an item.
    pub fn decision(&self, item: &str) -> Option<&Decision> {
        match &self.journal {
            Some(j) => j.decision(item),
            None => self.replay.decision(item),
        }
    }

    /// The final label of the item at `index`: a human decision, else (by policy) the gold
    /// label, else the consensus.
    pub fn final_label(&self, index: usize) -> Option<(Outcome, LabelSource)> {
        let item = &self.dataset.items[index];
        moj::final_label(
            self.consensus[index].outcome,
            self.decision(&item.id).map(|d| d.verdict),
            item.gold,
            self.policy,
        )
    }

    /// Final labels of every item, in dataset order (what `metrics` scores judges against).
    pub fn final_labels(&self) -> Vec<Option<Outcome>> {
        (0..self.dataset.items.len())
            .map(|i| self.final_label(i).map(|(o, _)| o))
            .collect()
    }

    fn journal(&mut self) -> Result<&mut Journal, ReviewError> {
        if self.journal.is_none() {
            let (journal, _) = Journal::open_at(&self.dataset, &self.journal_path)?;
            self.journal = Some(journal);
        }
        Ok(self
            .journal
            .as_mut()
            .expect("invariant: the journal was opened just above"))
    }

    fn check_item(&self, item: &str) -> Result<usize, ReviewError> {
        self.dataset
            .position(item)
            .ok_or_else(|| ReviewError::UnknownItem {
                item: item.to_string(),
                dataset: self.dataset.path.clone(),
            })
    }

    /// Records a human decision; returns once it is durable on disk.
    pub fn decide(
        &mut self,
        item: &str,
        verdict: Outcome,
        note: Option<&str>,
    ) -> Result<Decision, ReviewError> {
        self.check_item(item)?;
        Ok(self.journal()?.record_decision(item, verdict, note)?)
    }

    /// Withdraws the latest decision on an item.
    pub fn undo(&mut self, item: &str) -> Result<Undo, ReviewError> {
        self.check_item(item)?;
        Ok(self.journal()?.undo(item)?)
    }

    /// Records a judgment produced in Arbiter and adds it to the item (and so to the panel's
    /// view of it); returns once it is durable on disk.
    pub fn add_judgment(
        &mut self,
        item: &str,
        judgment: Judgment,
        run: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ReviewError> {
        let index = self.check_item(item)?;
        let record = self.journal()?.record_judgment(item, judgment, run)?;
        let mut judgment = record.judgment;
        judgment.run = record.run;
        self.dataset.items[index].judgments.push(judgment);
        if self.panel.is_none() {
            self.panel = Panel::all(&self.dataset).ok();
            self.recompute();
        } else if let Some(panel) = &self.panel {
            self.consensus[index] = moj::consensus(&self.dataset.items[index], panel);
        }
        Ok(())
    }
}

/// One line of `export_labels`.
#[derive(serde::Serialize)]
struct LabelRow<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    context: &'a [crate::dataset::Message],
    model_a: &'a str,
    response_a: &'a str,
    model_b: &'a str,
    response_b: &'a str,
    consensus: Option<Outcome>,
    votes: moj::OutcomeCounts,
    disputes: &'a [moj::DisputeReason],
    decision: Option<&'a Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gold: Option<Outcome>,
    final_label: Option<Outcome>,
    label_source: Option<LabelSource>,
}

impl Review {
    /// Writes every item, in dataset order, as one JSON line with its consensus, votes,
    /// dispute reasons, human decision, final label and where that label came from. Returns
    /// the number of items written.
    pub fn export_labels(&self, out: &mut dyn std::io::Write) -> std::io::Result<usize> {
        for (index, item) in self.dataset.items.iter().enumerate() {
            let c = &self.consensus[index];
            let label = self.final_label(index);
            let row = LabelRow {
                id: &item.id,
                category: item.category.as_deref(),
                language: item.language.as_deref(),
                context: &item.context,
                model_a: &item.response_a.model,
                response_a: &item.response_a.text,
                model_b: &item.response_b.model,
                response_b: &item.response_b.text,
                consensus: c.outcome,
                votes: c.counts,
                disputes: &c.disputes,
                decision: self.decision(&item.id),
                gold: item.gold,
                final_label: label.map(|(o, _)| o),
                label_source: label.map(|(_, s)| s),
            };
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")?;
        }
        Ok(self.dataset.items.len())
    }
}
