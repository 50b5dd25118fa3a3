//! Judging an item in both orders (A/B, then B/A) to expose position bias.
//!
//! A judge that saw the responses swapped names the first response it was shown "A": its
//! verdict is mapped back to the item's own orientation before it is stored, so every stored
//! verdict reads the same way. A pair whose two verdicts disagree is *inconsistent*: the judge
//! preferred a position, not a response.

use super::{Outcome, Verdict};
use serde::{Deserialize, Serialize};

/// The order in which a judge is shown the two responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Response A first, as the item stores them.
    Original,
    /// Response B shown in A's place and A in B's.
    Swapped,
}

impl Order {
    pub fn is_swapped(self) -> bool {
        self == Order::Swapped
    }

    /// Maps a verdict as the judge wrote it (in the order it was shown) to the item's order.
    pub fn to_item(self, as_judged: Verdict) -> Verdict {
        match self {
            Order::Original => as_judged,
            Order::Swapped => as_judged.swapped(),
        }
    }
}

/// Which orders a judgment request asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orders {
    /// Only the item's own order.
    #[default]
    Original,
    /// Both orders: the original first, then the swapped one.
    Both,
}

impl Orders {
    pub fn from_swap_flag(swap: bool) -> Orders {
        if swap {
            Orders::Both
        } else {
            Orders::Original
        }
    }

    /// The orders to run, in the order to run them.
    pub fn list(self) -> &'static [Order] {
        match self {
            Orders::Original => &[Order::Original],
            Orders::Both => &[Order::Original, Order::Swapped],
        }
    }
}

/// One judge's verdicts on one item in both orders, both in the item's orientation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedVerdict {
    pub original: Option<Verdict>,
    pub swapped: Option<Verdict>,
}

/// Whether a judge's two verdicts on an item agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Consistency {
    /// Both orders give this outcome.
    Consistent { outcome: Outcome },
    /// The outcomes differ: the judge followed the position.
    Inconsistent { original: Outcome, swapped: Outcome },
    /// One order (or both) has no verdict, so nothing can be said.
    Incomplete,
}

impl PairedVerdict {
    /// Builds a pair from the verdicts as the judge wrote them, mapping the swapped one back.
    pub fn from_as_judged(original: Option<Verdict>, swapped_as_judged: Option<Verdict>) -> Self {
        PairedVerdict {
            original,
            swapped: swapped_as_judged.map(|v| Order::Swapped.to_item(v)),
        }
    }

    /// Compares the outcomes (strengths are ignored: `A>>B` and `A>B` agree).
    pub fn consistency(&self) -> Consistency {
        match (self.original, self.swapped) {
            (Some(o), Some(s)) if o.outcome == s.outcome => {
                Consistency::Consistent { outcome: o.outcome }
            }
            (Some(o), Some(s)) => Consistency::Inconsistent {
                original: o.outcome,
                swapped: s.outcome,
            },
            _ => Consistency::Incomplete,
        }
    }

    pub fn is_inconsistent(&self) -> bool {
        matches!(self.consistency(), Consistency::Inconsistent { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Strength;

    #[test]
    fn a_swapped_verdict_is_mapped_back() {
        // Shown B first, the judge preferred the first answer it saw: that is the item's B.
        let pair = PairedVerdict::from_as_judged(Some(Verdict::B), Some(Verdict::A));
        assert_eq!(pair.swapped, Some(Verdict::B));
        assert_eq!(
            pair.consistency(),
            Consistency::Consistent {
                outcome: Outcome::B
            }
        );
    }

    #[test]
    fn a_judge_that_always_picks_the_first_answer_is_inconsistent() {
        let pair = PairedVerdict::from_as_judged(Some(Verdict::A), Some(Verdict::A));
        assert_eq!(
            pair.consistency(),
            Consistency::Inconsistent {
                original: Outcome::A,
                swapped: Outcome::B
            }
        );
        assert!(pair.is_inconsistent());
    }

    #[test]
    fn strengths_do_not_make_a_pair_inconsistent() {
        let strong_a = Verdict::new(Outcome::A, Strength::Strong);
        let slight_b = Verdict::new(Outcome::B, Strength::Slight);
        // As judged in the swapped order, "B>A" means the item's A is slightly better.
        let pair = PairedVerdict::from_as_judged(Some(strong_a), Some(slight_b));
        assert_eq!(
            pair.swapped,
            Some(Verdict::new(Outcome::A, Strength::Slight))
        );
        assert!(!pair.is_inconsistent());
    }

    #[test]
    fn ties_agree_in_both_orders_and_a_missing_side_is_incomplete() {
        let ties = PairedVerdict::from_as_judged(Some(Verdict::TIE), Some(Verdict::TIE));
        assert_eq!(
            ties.consistency(),
            Consistency::Consistent {
                outcome: Outcome::Tie
            }
        );
        let half = PairedVerdict::from_as_judged(Some(Verdict::A), None);
        assert_eq!(half.consistency(), Consistency::Incomplete);
    }

    #[test]
    fn orders_list_what_to_run() {
        assert_eq!(Orders::from_swap_flag(false).list(), &[Order::Original]);
        assert_eq!(
            Orders::from_swap_flag(true).list(),
            &[Order::Original, Order::Swapped]
        );
        for v in [Verdict::A, Verdict::B, Verdict::TIE] {
            assert_eq!(Order::Original.to_item(v), v);
            assert_eq!(Order::Swapped.to_item(Order::Swapped.to_item(v)), v);
        }
    }
}
