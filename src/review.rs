//! A dataset opened for review: the items, the journal replayed onto them, the judge panel's
//! consensus and each item's final label. This is the state both front ends (CLI and GUI) show
//! and change; it only composes `dataset`, `journal` and `moj`.

use crate::assignment::{Assignment, AssignmentError};
use crate::dataset::{self, Dataset, DatasetError, Item, Judgment, LoadOptions};
use crate::journal::{self, Decision, Journal, JournalError, Replay, ReplayWarning, Undo};
use crate::metrics::agreement::{self, HumanAgreement};
use crate::moj::{self, Consensus, LabelPolicy, LabelSource, Panel, PanelError, Summary};
use crate::verdict::Outcome;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Panel(#[from] PanelError),
    /// Boxed: the assignment's errors carry a journal error of their own, and an unboxed
    /// one would make every `Result` of this module large.
    #[error(transparent)]
    Assignment(Box<AssignmentError>),
    #[error("judge {judge:?} is not in {dataset}; the judges there are: {known}")]
    UnknownJudge {
        judge: String,
        dataset: PathBuf,
        known: String,
    },
    #[error("item {item:?} is not in {dataset}; check the id (`arbiter inspect` lists the items)")]
    UnknownItem { item: String, dataset: PathBuf },
    #[error("who is deciding? Every decision names its annotator: pass --annotator NAME or set ARBITER_ANNOTATOR (in the app: Settings, annotator)")]
    NoAnnotator,
}

impl From<AssignmentError> for ReviewError {
    fn from(e: AssignmentError) -> Self {
        ReviewError::Assignment(Box::new(e))
    }
}

/// How to open a dataset for review.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub load: LoadOptions,
    /// The journal's path; default: `journal::default_path` beside the dataset. When given,
    /// decisions are recorded there too (one journal, as before teams); otherwise each
    /// annotator's decisions go to their own journal in the team folder.
    pub journal: Option<PathBuf>,
    /// The panel's judges; default: every judge in the dataset and its journal.
    pub panel: Vec<String>,
    pub policy: LabelPolicy,
    /// Who records decisions (checked with `journal::check_annotator`); without one the review
    /// reads everything but refuses to record a decision.
    pub annotator: Option<String>,
    /// The annotator is an adjudicator: their decisions settle escalated items.
    pub adjudicator: bool,
}

/// One journal read when the review was opened: the dataset's own or an annotator's.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    replay: Replay,
}

/// A dataset with its journals applied, its panel and its consensus.
#[derive(Debug)]
pub struct Review {
    pub dataset: Dataset,
    journal_path: PathBuf,
    /// The dataset's journal (judgments), opened for appending on the first write, so that
    /// reading a dataset never creates a file.
    journal: Option<Journal>,
    /// Every journal read at open (the dataset's first, then each annotator's), plus this
    /// annotator's once it is opened for writing.
    sources: Vec<Source>,
    annotator: Option<String>,
    adjudicator: bool,
    /// Where this annotator's decisions go: their journal in the team folder, or the one
    /// journal named in `OpenOptions::journal`.
    own_path: Option<PathBuf>,
    explicit_journal: bool,
    /// This annotator's journal, locked while open (when it is not `journal`).
    own: Option<Journal>,
    assignment: Option<Assignment>,
    panel: Option<Panel>,
    consensus: Vec<Consensus>,
    policy: LabelPolicy,
    /// What replaying the journals reported (torn tail, unreadable lines, unknown items).
    pub warnings: Vec<ReplayWarning>,
    /// The same warnings with the journal each came from.
    warned: Vec<(PathBuf, ReplayWarning)>,
}

impl Review {
    /// Loads the dataset, replays its journal and every annotator's (without creating any) and
    /// computes consensus.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Review, ReviewError> {
        let mut dataset = dataset::load(path, &opts.load)?;
        let journal_path = opts
            .journal
            .clone()
            .unwrap_or_else(|| journal::default_path(path));
        let mut paths = vec![journal_path.clone()];
        paths.extend(
            journal::annotator_journals(path)?
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| p != &journal_path),
        );
        let mut sources = Vec::with_capacity(paths.len());
        let mut warned = Vec::new();
        for p in paths {
            let replay = if p.exists() {
                journal::read(&p, &dataset)?
            } else {
                Replay::from_bytes(&[], &|_| true)
            };
            warned.extend(replay.warnings.iter().map(|w| (p.clone(), w.clone())));
            warned.extend(
                journal::apply(&replay, &mut dataset)
                    .into_iter()
                    .map(|w| (p.clone(), w)),
            );
            sources.push(Source { path: p, replay });
        }
        let warnings = warned.iter().map(|(_, w)| w.clone()).collect();
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
        let assignment = Assignment::read(path)?;
        let mut review = Review {
            dataset,
            journal_path,
            journal: None,
            sources,
            annotator: None,
            adjudicator: opts.adjudicator,
            own_path: None,
            explicit_journal: opts.journal.is_some(),
            own: None,
            assignment,
            panel,
            consensus: Vec::new(),
            policy: opts.policy,
            warnings,
            warned,
        };
        review.set_annotator(opts.annotator.as_deref())?;
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

    /// Where this annotator's decisions are recorded (`None` until someone is named).
    pub fn decisions_path(&self) -> Option<&Path> {
        self.own_path.as_deref()
    }

    /// Replay warnings with the journal each came from.
    pub fn warnings_by_journal(&self) -> &[(PathBuf, ReplayWarning)] {
        &self.warned
    }

    /// Who records decisions, if anyone was named.
    pub fn annotator(&self) -> Option<&str> {
        self.annotator.as_deref()
    }

    /// Changes who records decisions (the app's annotator setting). The previous annotator's
    /// journal is closed, releasing its lock.
    pub fn set_annotator(&mut self, annotator: Option<&str>) -> Result<(), ReviewError> {
        let name = annotator.map(journal::check_annotator).transpose()?;
        if name == self.annotator {
            return Ok(());
        }
        self.own = None;
        if self.explicit_journal {
            // One journal for everything: release its lock so the next write takes it afresh
            // under the new name.
            self.journal = None;
        }
        self.own_path = name.as_ref().map(|n| {
            if self.explicit_journal {
                self.journal_path.clone()
            } else {
                journal::annotator_path(&self.dataset.path, n)
            }
        });
        self.annotator = name;
        Ok(())
    }

    pub fn is_adjudicator(&self) -> bool {
        self.adjudicator
    }

    /// Marks this annotator's next decisions as an adjudicator's (or not).
    pub fn set_adjudicator(&mut self, adjudicator: bool) {
        self.adjudicator = adjudicator;
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

    /// The current decision recorded in source `k` on `item`, from the open journal when it is
    /// open for writing (it has the decisions made since).
    fn source_decision(&self, k: usize, item: &str) -> Option<&Decision> {
        let path = &self.sources[k].path;
        for open in [&self.own, &self.journal].into_iter().flatten() {
            if open.path() == path {
                return open.decision(item);
            }
        }
        self.sources[k].replay.decision(item)
    }

    /// Every person's current decision on an item, one per annotator (their latest where two
    /// journals hold one of theirs), sorted by annotator. Adjudicators' decisions included.
    pub fn human_decisions(&self, item: &str) -> Vec<&Decision> {
        let mut by: BTreeMap<&str, &Decision> = BTreeMap::new();
        for k in 0..self.sources.len() {
            if let Some(d) = self.source_decision(k, item) {
                let keep = by
                    .get(d.annotator.as_str())
                    .is_none_or(|old| d.time >= old.time);
                if keep {
                    by.insert(&d.annotator, d);
                }
            }
        }
        by.into_values().collect()
    }

    /// This annotator's own current decision on an item.
    pub fn my_decision(&self, item: &str) -> Option<&Decision> {
        let me = self.annotator.as_deref()?;
        self.human_decisions(item)
            .into_iter()
            .find(|d| d.annotator == me)
    }

    /// The human decision that settles an item: the latest adjudicator's decision, else the
    /// latest of the annotators' when they all agree. `None` when nobody decided, or when the
    /// annotators disagree and no adjudicator has decided (an escalation).
    pub fn decision(&self, item: &str) -> Option<&Decision> {
        let all = self.human_decisions(item);
        if let Some(adj) = all
            .iter()
            .filter(|d| d.adjudicator)
            .max_by_key(|d| (d.time, d.seq))
        {
            return Some(adj);
        }
        let first = all.first()?;
        if all.iter().all(|d| d.verdict == first.verdict) {
            all.into_iter().max_by_key(|d| (d.time, d.seq))
        } else {
            None
        }
    }

    /// The annotators (not adjudicating) disagree on the item at `index`.
    pub fn is_escalated(&self, index: usize) -> bool {
        let mut votes = self
            .human_decisions(&self.dataset.items[index].id)
            .into_iter()
            .filter(|d| !d.adjudicator)
            .map(|d| d.verdict);
        votes
            .next()
            .is_some_and(|first| votes.any(|other| other != first))
    }

    /// An adjudicator has decided the item at `index`.
    pub fn is_adjudicated(&self, index: usize) -> bool {
        self.human_decisions(&self.dataset.items[index].id)
            .iter()
            .any(|d| d.adjudicator)
    }

    /// The escalation queue: items the annotators disagree on that no adjudicator has settled,
    /// in dataset order.
    pub fn escalations(&self) -> Vec<usize> {
        (0..self.dataset.items.len())
            .filter(|&i| self.is_escalated(i) && !self.is_adjudicated(i))
            .collect()
    }

    /// Agreement between the annotators (adjudicators' decisions left out: they settle, they do
    /// not rate), or `None` when fewer than two people decided anything.
    pub fn human_agreement(&self) -> Option<HumanAgreement> {
        let per_item: Vec<Vec<&Decision>> = self
            .dataset
            .items
            .iter()
            .map(|i| {
                self.human_decisions(&i.id)
                    .into_iter()
                    .filter(|d| !d.adjudicator)
                    .collect()
            })
            .collect();
        let mut names: Vec<String> = per_item
            .iter()
            .flatten()
            .map(|d| d.annotator.clone())
            .collect();
        names.sort();
        names.dedup();
        if names.len() < 2 {
            return None;
        }
        let table: Vec<Vec<Option<Outcome>>> = names
            .iter()
            .map(|n| {
                per_item
                    .iter()
                    .map(|ds| ds.iter().find(|d| &d.annotator == n).map(|d| d.verdict))
                    .collect()
            })
            .collect();
        Some(agreement::humans(&names, &table))
    }

    /// The split of the disputes between annotators (`arbiter assign`), if there is one.
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.as_ref()
    }

    /// Reads the assignment file again (another person may have run `arbiter assign`).
    pub fn reload_assignment(&mut self) -> Result<(), ReviewError> {
        self.assignment = Assignment::read(&self.dataset.path)?;
        Ok(())
    }

    /// The items assigned to this annotator, in dataset order (empty without an assignment or
    /// an annotator).
    pub fn my_queue(&self) -> Vec<usize> {
        let (Some(plan), Some(me)) = (&self.assignment, &self.annotator) else {
            return Vec::new();
        };
        (0..self.dataset.items.len())
            .filter(|&i| plan.is_assigned(&self.dataset.items[i].id, me))
            .collect()
    }

    /// The final label of the item at `index`: the settling human decision (an adjudicator's,
    /// or the annotators' when they agree), else (by policy) the gold label, else the
    /// consensus. An item the annotators disagree on, with no adjudicator's decision, has none.
    pub fn final_label(&self, index: usize) -> Option<(Outcome, LabelSource)> {
        let item = &self.dataset.items[index];
        let decision = self.decision(&item.id);
        if decision.is_none() && !self.human_decisions(&item.id).is_empty() {
            return None;
        }
        moj::final_label(
            self.consensus[index].outcome,
            decision.map(|d| d.verdict),
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

    /// The dataset's journal, for judgments; locked when it also takes this annotator's
    /// decisions (`OpenOptions::journal`).
    fn journal(&mut self) -> Result<&mut Journal, ReviewError> {
        if self.journal.is_none() {
            let shared_is_own = self.own_path.as_ref() == Some(&self.journal_path);
            let (journal, _) = if shared_is_own {
                Journal::open_exclusive(&self.dataset, &self.journal_path)?
            } else {
                Journal::open_at(&self.dataset, &self.journal_path)?
            };
            self.journal = Some(journal);
        }
        Ok(self
            .journal
            .as_mut()
            .expect("invariant: the journal was opened just above"))
    }

    /// This annotator's journal, opened (and locked) on first use.
    fn own_journal(&mut self) -> Result<&mut Journal, ReviewError> {
        let (Some(annotator), Some(path)) = (self.annotator.clone(), self.own_path.clone()) else {
            return Err(ReviewError::NoAnnotator);
        };
        let adjudicator = self.adjudicator;
        let journal = if path == self.journal_path {
            self.journal()?
        } else {
            if self.own.is_none() {
                let (journal, replay) = Journal::open_exclusive(&self.dataset, &path)?;
                if !self.sources.iter().any(|s| s.path == path) {
                    self.sources.push(Source {
                        path: path.clone(),
                        replay,
                    });
                }
                self.own = Some(journal);
            }
            self.own
                .as_mut()
                .expect("invariant: the annotator's journal was opened just above")
        };
        journal.set_annotator(annotator);
        journal.set_adjudicator(adjudicator);
        Ok(journal)
    }

    fn check_item(&self, item: &str) -> Result<usize, ReviewError> {
        self.dataset
            .position(item)
            .ok_or_else(|| ReviewError::UnknownItem {
                item: item.to_string(),
                dataset: self.dataset.path.clone(),
            })
    }

    /// Records this annotator's decision; returns once it is durable on disk.
    pub fn decide(
        &mut self,
        item: &str,
        verdict: Outcome,
        note: Option<&str>,
    ) -> Result<Decision, ReviewError> {
        self.check_item(item)?;
        Ok(self.own_journal()?.record_decision(item, verdict, note)?)
    }

    /// Withdraws this annotator's latest decision on an item.
    pub fn undo(&mut self, item: &str) -> Result<Undo, ReviewError> {
        self.check_item(item)?;
        Ok(self.own_journal()?.undo(item)?)
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
    /// Every person's current decision on the item (one per annotator).
    decisions: Vec<&'a Decision>,
    /// The annotators disagree on the item (settled when an adjudicator has decided).
    escalated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    gold: Option<Outcome>,
    final_label: Option<Outcome>,
    label_source: Option<LabelSource>,
}

impl Review {
    /// Writes every item, in dataset order, as one JSON line with its consensus, votes,
    /// dispute reasons, settling human decision, every person's decision, whether the
    /// annotators disagree, final label and where that label came from. Returns
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
                decisions: self.human_decisions(&item.id),
                escalated: self.is_escalated(index),
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
