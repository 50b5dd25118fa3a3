//! Counts over a panel's consensus on a dataset: how often it agreed on A, B or a tie, and how
//! many items are disputed, by reason. Serialisable so the CLI can print it as JSON.

use super::{Consensus, DisputeReason, Panel};
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// How many votes (or items) went to each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub a: usize,
    pub b: usize,
    pub tie: usize,
}

impl OutcomeCounts {
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::A => self.a += 1,
            Outcome::B => self.b += 1,
            Outcome::Tie => self.tie += 1,
        }
    }

    pub fn get(&self, o: Outcome) -> usize {
        match o {
            Outcome::A => self.a,
            Outcome::B => self.b,
            Outcome::Tie => self.tie,
        }
    }

    pub fn total(&self) -> usize {
        self.a + self.b + self.tie
    }
}

/// Disputed items per reason. An item with several reasons is counted under each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeCounts {
    pub no_majority: usize,
    pub missing: usize,
    pub unparseable: usize,
    /// A panel judge's output holds several different labels that no rule settles.
    #[serde(default)]
    pub conflicting_labels: usize,
}

/// What a panel made of a dataset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub panel: Vec<String>,
    pub items: usize,
    /// Items whose consensus is A, B or a tie (disputed items with a majority included).
    pub consensus: OutcomeCounts,
    /// Items with at least one dispute reason.
    pub disputes: usize,
    pub disputes_by_reason: DisputeCounts,
}

impl Summary {
    pub fn of(panel: &Panel, consensus: &[Consensus]) -> Summary {
        let mut s = Summary {
            panel: panel.judges().to_vec(),
            items: consensus.len(),
            ..Summary::default()
        };
        for c in consensus {
            if let Some(o) = c.outcome {
                s.consensus.add(o);
            }
            if c.is_dispute() {
                s.disputes += 1;
            }
            for d in &c.disputes {
                match d {
                    DisputeReason::NoMajority { .. } => s.disputes_by_reason.no_majority += 1,
                    DisputeReason::Missing { .. } => s.disputes_by_reason.missing += 1,
                    DisputeReason::Unparseable { .. } => s.disputes_by_reason.unparseable += 1,
                    DisputeReason::ConflictingLabels { .. } => {
                        s.disputes_by_reason.conflicting_labels += 1
                    }
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{item, judgment};
    use super::super::{consensus, Panel};
    use super::*;
    use Outcome::*;

    #[test]
    fn counts_outcomes_and_disputes_by_reason() {
        let panel = Panel::from_names(["j1", "j2", "j3"]).expect("valid");
        let items = [
            item(
                "agree",
                vec![
                    judgment("j1", Some(A), false),
                    judgment("j2", Some(A), false),
                    judgment("j3", Some(B), false),
                ],
            ),
            item(
                "split",
                vec![
                    judgment("j1", Some(A), false),
                    judgment("j2", Some(B), false),
                    judgment("j3", Some(Tie), false),
                ],
            ),
            item(
                "missing",
                vec![
                    judgment("j1", Some(B), false),
                    judgment("j2", Some(B), false),
                    judgment("j3", None, false),
                ],
            ),
        ];
        let cs: Vec<_> = items.iter().map(|i| consensus(i, &panel)).collect();
        let s = Summary::of(&panel, &cs);
        assert_eq!(s.items, 3);
        assert_eq!(s.consensus, OutcomeCounts { a: 1, b: 1, tie: 0 });
        assert_eq!(s.disputes, 2);
        assert_eq!(
            s.disputes_by_reason,
            DisputeCounts {
                no_majority: 1,
                missing: 0,
                unparseable: 1,
                conflicting_labels: 0
            }
        );
        let json = serde_json::to_value(&s).expect("summary serialises");
        assert_eq!(json["disputes_by_reason"]["unparseable"], 1);
        assert_eq!(json["panel"][2], "j3");
    }
}
