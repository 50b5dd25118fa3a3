//! Judge metrics: accuracy against the final labels, the JudgerBenchV2 score, the JudgeBench
//! score, agreement
//! (Cohen's and Fleiss' kappa), position consistency, per-category breakdowns and per-model
//! win counts, and the AlpacaEval win rate where judgments carry graded preferences, gathered
//! into one serialisable `Report`.
//!
//! Pure computation over `&[Item]` and the items' final labels (`Review::final_labels`); no
//! I/O. Every metric reads a judge's answer on an item through `answer`, so that "which of a
//! judge's judgments counts" is decided in one place (the Mixture-of-Judges vote rule).

pub mod accuracy;
pub mod agreement;
pub mod alpaca_eval;
pub mod category;
pub mod consistency;
pub mod judge_bench;
pub mod judgerbench;
pub mod leaderboard;
pub mod report;

pub use accuracy::{
    accuracy, AccuracyCounts, AccuracyOptions, JudgeAccuracy, TiePolicy, UnparsedPolicy,
};
pub use agreement::{
    cohen_kappa, cohen_pairs, fleiss, fleiss_kappa, krippendorff, krippendorff_alpha_nominal,
    FleissKappa, KrippendorffAlpha, PairKappa,
};
pub use category::{by_category, CategoryBreakdown};
pub use consistency::{position_consistency, PositionConsistency};
pub use judgerbench::{GroundTruth, JudgerbenchOptions, Quirks};
pub use leaderboard::{Leaderboards, ModelRecord};
pub use report::{Report, ScoreOptions};

use crate::dataset::{Item, Problem};
use crate::moj::{self, Vote};
use crate::verdict::Outcome;

/// The reference model of JudgerBenchV2: its answer is one side of every item, and its wins are
/// not counted.
pub const DEFAULT_BASE_MODEL: &str = "gpt-4o-mini-2024-07-18";

/// What a judge answered on one item, as every metric sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// A verdict on the A/B/tie scale, in the item's orientation.
    Verdict(Outcome),
    /// A readable answer outside the scale (JudgerBenchV2's `"winner": "C"`): answered, and wrong.
    OutOfScale,
    /// The judge judged the item but no verdict could be read.
    Unparsed,
    /// The judge has no judgment on the item.
    Missing,
}

impl Answer {
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Answer::Verdict(o) => Some(o),
            _ => None,
        }
    }
}

/// A judge's answer on an item. Which of several judgments counts is the Mixture-of-Judges
/// rule (`moj::vote`: the original order first, the latest readable verdict), so that a judge is
/// scored on the same verdict the panel counted.
pub fn answer(item: &Item, judge: &str) -> Answer {
    match moj::vote(item, judge) {
        Vote::Cast(o) => Answer::Verdict(o),
        Vote::Missing => Answer::Missing,
        Vote::Unparseable(Some(Problem::OutOfScale(_))) => Answer::OutOfScale,
        Vote::Unparseable(_) => Answer::Unparsed,
    }
}

/// Inputs that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("{labels} final labels were given for {items} items; pass one label (or none) per item, in dataset order")]
    LabelCount { items: usize, labels: usize },
    #[error("judge {judge:?} has no judgment in this dataset; the judges there are: {known}")]
    UnknownJudge { judge: String, known: String },
}

/// Every judge that judged any item, in first-seen order.
pub fn judges(items: &[Item]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        for j in &item.judgments {
            if !out.iter().any(|k| k == &j.judge) {
                out.push(j.judge.clone());
            }
        }
    }
    out
}

/// `part / whole` as a percentage, or `None` when nothing was counted.
pub(crate) fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders for the metrics' unit tests.
    use crate::dataset::{Item, Judgment, Message, Problem, Provenance, Response};
    use crate::verdict::{Outcome, Verdict};

    pub fn judged(judge: &str, outcome: Option<Outcome>, swapped: bool) -> Judgment {
        Judgment {
            judge: judge.to_string(),
            verdict: outcome.map(Verdict::plain),
            output: None,
            swapped,
            problem: outcome
                .is_none()
                .then(|| Problem::Unreadable("nothing to read".into())),
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        }
    }

    pub fn out_of_scale(judge: &str) -> Judgment {
        Judgment {
            problem: Some(Problem::OutOfScale("C".into())),
            ..judged(judge, None, false)
        }
    }

    pub fn item(id: &str, judgments: Vec<Judgment>) -> Item {
        Item {
            id: id.to_string(),
            category: None,
            language: None,
            context: vec![Message::new("user", "question")],
            response_a: Response::default(),
            response_b: Response::default(),
            judgments,
            gold: None,
            meta: Default::default(),
        }
    }

    /// Items where judge `judges[k]` said `votes[k][i]` on item `i` (`None`: unreadable).
    pub fn panel_items(judges: &[&str], votes: &[Vec<Option<Outcome>>]) -> Vec<Item> {
        let n = votes.iter().map(Vec::len).max().unwrap_or(0);
        (0..n)
            .map(|i| {
                let js = judges
                    .iter()
                    .zip(votes)
                    .filter_map(|(j, v)| v.get(i).map(|o| judged(j, *o, false)))
                    .collect();
                item(&i.to_string(), js)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn answer_distinguishes_out_of_scale_from_unreadable_and_missing() {
        let it = item(
            "1",
            vec![
                judged("a", Some(Outcome::B), false),
                judged("u", None, false),
                out_of_scale("c"),
            ],
        );
        assert_eq!(answer(&it, "a"), Answer::Verdict(Outcome::B));
        assert_eq!(answer(&it, "u"), Answer::Unparsed);
        assert_eq!(answer(&it, "c"), Answer::OutOfScale);
        assert_eq!(answer(&it, "nobody"), Answer::Missing);
        assert_eq!(judges(&[it]), ["a", "u", "c"]);
    }
}
