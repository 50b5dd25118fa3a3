//! The state of one open dataset in the app, kept apart from drawing so tests can drive it
//! without a window: the filtered item list, the current item, the arbitration actions, and
//! what was saved.

use crate::journal::Decision;
use crate::moj::{self, Vote};
use crate::review::{OpenOptions, Review, ReviewError};
use crate::verdict::Outcome;
use std::path::Path;

/// Which items the list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Show {
    #[default]
    All,
    /// The panel has no clean consensus.
    Disputed,
    /// Disputes no person has decided yet.
    Undecided,
    /// A person has decided.
    Decided,
    /// Some judge gave different verdicts with the two orders.
    InconsistentOnSwap,
    /// The annotators disagree and no adjudicator has settled it.
    Escalated,
    /// The items `arbiter assign` gave to this annotator.
    MyQueue,
}

impl Show {
    pub const ALL: [Show; 7] = [
        Show::All,
        Show::Disputed,
        Show::Undecided,
        Show::Decided,
        Show::InconsistentOnSwap,
        Show::Escalated,
        Show::MyQueue,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Show::All => "all",
            Show::Disputed => "disputed",
            Show::Undecided => "undecided disputes",
            Show::Decided => "decided",
            Show::InconsistentOnSwap => "inconsistent on swap",
            Show::Escalated => "escalated",
            Show::MyQueue => "my queue",
        }
    }
}

/// The list's filter: every part must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub show: Show,
    pub category: Option<String>,
    /// Items where this judge's vote differs from the final label (or it gave none).
    pub judge_disagrees: Option<String>,
    /// Case-insensitive text in the id, question, responses or model names.
    pub search: String,
}

/// What the last arbitration action did, for the status line.
#[derive(Debug, Clone, PartialEq)]
pub enum Saved {
    /// Durable on disk (the journal fsynced it).
    Decision {
        item: String,
        verdict: Outcome,
        seq: u64,
    },
    Undone {
        item: String,
    },
}

/// One open dataset.
pub struct Session {
    pub review: Review,
    pub filter: Filter,
    /// Indices of the items the filter shows, in dataset order.
    visible: Vec<usize>,
    /// Index (into the dataset) of the item on screen.
    pub current: Option<usize>,
    /// The last thing saved, shown as "saved" in the status line.
    pub saved: Option<Saved>,
    /// A decision asked for before anyone said who is deciding; the app asks for a name and
    /// then records it.
    pub pending: Option<Outcome>,
    /// A note to attach to the next decision.
    pub note: String,
    /// Bumped whenever what the items show may have changed (a decision, a judgment, a new
    /// filter), so views that summarise the whole dataset know when to recompute.
    generation: u64,
    /// Derived from the items, recomputed by `refilter` rather than on every frame.
    categories: Vec<String>,
    judges: Vec<String>,
    progress: (usize, usize),
}

impl Session {
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<Session, ReviewError> {
        Ok(Session::new(Review::open(path, opts)?))
    }

    pub fn new(review: Review) -> Session {
        let mut s = Session {
            review,
            filter: Filter::default(),
            visible: Vec::new(),
            current: None,
            saved: None,
            pending: None,
            note: String::new(),
            generation: 0,
            categories: Vec::new(),
            judges: Vec::new(),
            progress: (0, 0),
        };
        s.refilter();
        s.current = s.visible.first().copied();
        s
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn visible(&self) -> &[usize] {
        &self.visible
    }

    /// The categories present, sorted, for the filter menu.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    pub fn judges(&self) -> &[String] {
        &self.judges
    }

    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.refilter();
    }

    /// Recomputes the visible list (after a filter change, a decision, a new judgment). The
    /// current item stays current even when it no longer matches, so deciding an item in the
    /// "undecided" view does not yank it away mid-thought.
    pub fn refilter(&mut self) {
        self.generation += 1;
        self.summarise();
        let needle = self.filter.search.to_lowercase();
        let items = self.review.items();
        let consensus = self.review.consensus();
        let mut visible = Vec::with_capacity(items.len());
        let queue = (self.filter.show == Show::MyQueue).then(|| self.review.my_queue());
        for (i, item) in items.iter().enumerate() {
            let c = &consensus[i];
            let decided = self.is_decided(i);
            let keep = match self.filter.show {
                Show::All => true,
                Show::Disputed => c.is_dispute(),
                Show::Undecided => c.is_dispute() && !decided,
                Show::Decided => decided,
                Show::Escalated => self.review.is_escalated(i) && !self.review.is_adjudicated(i),
                Show::MyQueue => queue.as_ref().is_some_and(|q| q.contains(&i)),
                Show::InconsistentOnSwap => item
                    .judges()
                    .iter()
                    .any(|j| moj::paired(item, j).is_inconsistent()),
            };
            if !keep {
                continue;
            }
            if let Some(cat) = &self.filter.category {
                if item.category.as_deref() != Some(cat.as_str()) {
                    continue;
                }
            }
            if let Some(judge) = &self.filter.judge_disagrees {
                let label = self.review.final_label(i).map(|(o, _)| o);
                let agrees = matches!(moj::vote(item, judge), Vote::Cast(o) if Some(o) == label);
                if agrees {
                    continue;
                }
            }
            if !needle.is_empty() {
                let hay = |s: &str| s.to_lowercase().contains(&needle);
                let found = hay(&item.id)
                    || hay(item.question())
                    || hay(&item.response_a.text)
                    || hay(&item.response_b.text)
                    || hay(&item.response_a.model)
                    || hay(&item.response_b.model);
                if !found {
                    continue;
                }
            }
            visible.push(i);
        }
        self.visible = visible;
        if self.current.is_none() {
            self.current = self.visible.first().copied();
        }
    }

    /// Position of the current item in the visible list.
    pub fn position(&self) -> Option<usize> {
        let current = self.current?;
        self.visible.iter().position(|&i| i == current)
    }

    pub fn select(&mut self, index: usize) {
        if index < self.review.items().len() {
            self.current = Some(index);
            self.note.clear();
        }
    }

    /// Moves by `delta` in the visible list (clamped at its ends).
    pub fn step(&mut self, delta: isize) {
        if self.visible.is_empty() {
            return;
        }
        let next = match self.position() {
            Some(p) => (p as isize + delta).clamp(0, self.visible.len() as isize - 1) as usize,
            // The current item was filtered out: the nearest visible one after it.
            None => {
                let cur = self.current.unwrap_or(0);
                self.visible
                    .iter()
                    .position(|&i| i > cur)
                    .unwrap_or(self.visible.len() - 1)
            }
        };
        self.select(self.visible[next]);
    }

    /// Decided, as far as this person is concerned: they decided it, or the people who did
    /// settled it between them.
    pub fn is_decided(&self, index: usize) -> bool {
        let id = &self.review.items()[index].id;
        self.review.my_decision(id).is_some() || self.review.decision(id).is_some()
    }

    /// Whether the item waits for this person: for an adjudicator, an unsettled escalation;
    /// with an assignment, one of their items they have not decided; otherwise a dispute
    /// nobody has decided.
    pub fn waits_for_me(&self, index: usize) -> bool {
        let review = &self.review;
        if review.is_adjudicator() {
            return review.is_escalated(index) && !review.is_adjudicated(index);
        }
        let id = &review.items()[index].id;
        if let (Some(plan), Some(me)) = (review.assignment(), review.annotator()) {
            if plan.annotators.iter().any(|a| a == me) {
                return plan.is_assigned(id, me) && review.my_decision(id).is_none();
            }
        }
        review.consensus()[index].is_dispute() && !self.is_decided(index)
    }

    /// Jumps to the next item waiting for this person (`waits_for_me`: their queue), after the
    /// current item, wrapping; false when there is none left.
    pub fn next_undecided_dispute(&mut self) -> bool {
        let n = self.review.items().len();
        if n == 0 {
            return false;
        }
        let start = self.current.map_or(0, |c| c + 1);
        for k in 0..n {
            let i = (start + k) % n;
            if self.waits_for_me(i) {
                self.select(i);
                return true;
            }
        }
        false
    }

    /// Blind review for the item at `index`: (hide other people's decisions, hide the judges'
    /// verdicts and consensus). Nothing is hidden once this person has decided it.
    pub fn hidden(&self, index: usize, blind: crate::gui::settings::Blind) -> (bool, bool) {
        let mine = self
            .review
            .my_decision(&self.review.items()[index].id)
            .is_some();
        (blind.decisions && !mine, blind.judges && !mine)
    }

    /// Records the person's verdict on the current item; returns once it is on disk.
    pub fn decide(&mut self, verdict: Outcome) -> Result<Decision, ReviewError> {
        let Some(index) = self.current else {
            return Err(ReviewError::UnknownItem {
                item: "(none selected)".into(),
                dataset: self.review.dataset.path.clone(),
            });
        };
        let id = self.review.items()[index].id.clone();
        if self.review.annotator().is_none() {
            self.pending = Some(verdict);
            return Err(ReviewError::NoAnnotator);
        }
        let note = self.note.trim().to_string();
        let note = (!note.is_empty()).then_some(note);
        let d = self.review.decide(&id, verdict, note.as_deref())?;
        self.note.clear();
        self.saved = Some(Saved::Decision {
            item: id,
            verdict,
            seq: d.seq,
        });
        self.refilter();
        Ok(d)
    }

    /// Withdraws the latest decision on the current item.
    pub fn undo(&mut self) -> Result<(), ReviewError> {
        let Some(index) = self.current else {
            return Ok(());
        };
        let id = self.review.items()[index].id.clone();
        self.review.undo(&id)?;
        self.saved = Some(Saved::Undone { item: id });
        self.refilter();
        Ok(())
    }

    /// "37 of 212 disputes decided": (decided, disputes).
    pub fn progress(&self) -> (usize, usize) {
        self.progress
    }

    fn summarise(&mut self) {
        let items = self.review.items();
        let mut categories: Vec<String> = items.iter().filter_map(|i| i.category.clone()).collect();
        categories.sort();
        categories.dedup();
        self.categories = categories;
        self.judges = crate::metrics::judges(items);
        let (mut decided, mut disputes) = (0, 0);
        for (i, c) in self.review.consensus().iter().enumerate() {
            if c.is_dispute() {
                disputes += 1;
                if self.is_decided(i) {
                    decided += 1;
                }
            }
        }
        self.progress = (decided, disputes);
    }
}
