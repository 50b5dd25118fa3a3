//! Position consistency: for a judge that judged an item in both orders (a judgment with
//! `swapped: false` and one with `swapped: true`), does it prefer the same response both times?
//! Verdicts are already in the item's orientation, so consistent means equal outcomes.

use super::percent;
use crate::dataset::{Item, Judgment};
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// One judge's position consistency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PositionConsistency {
    pub judge: String,
    /// Items with a readable verdict in both orders.
    pub pairs: usize,
    pub consistent: usize,
    /// Inconsistent pairs where the judge picked whichever response it was shown first both
    /// times (A in the original order, B when swapped): a bias for the first position.
    pub first_position: usize,
    /// Inconsistent pairs where it picked the second-shown response both times.
    pub second_position: usize,
    /// Inconsistent pairs involving a tie.
    pub tie_involved: usize,
    /// Items judged in both orders where one order has no readable verdict.
    pub incomplete: usize,
    /// `consistent / pairs` in percent.
    pub rate: Option<f64>,
}

/// The latest readable verdict of `judge` in one order, and whether it judged that order at all.
fn in_order(item: &Item, judge: &str, swapped: bool) -> (bool, Option<Outcome>) {
    let of: Vec<&Judgment> = item
        .judgments
        .iter()
        .filter(|j| j.judge == judge && j.swapped == swapped)
        .collect();
    (!of.is_empty(), of.iter().rev().find_map(|j| j.outcome()))
}

/// Position consistency of each of `judges` that judged at least one item in both orders (the
/// others are left out: there is nothing to measure).
pub fn position_consistency(items: &[Item], judges: &[String]) -> Vec<PositionConsistency> {
    let mut out = Vec::new();
    for judge in judges {
        let mut pc = PositionConsistency {
            judge: judge.clone(),
            ..Default::default()
        };
        let mut both_orders = false;
        for item in items {
            let (judged_orig, orig) = in_order(item, judge, false);
            let (judged_swap, swap) = in_order(item, judge, true);
            if !(judged_orig && judged_swap) {
                continue;
            }
            both_orders = true;
            let (Some(o), Some(s)) = (orig, swap) else {
                pc.incomplete += 1;
                continue;
            };
            pc.pairs += 1;
            match (o, s) {
                _ if o == s => pc.consistent += 1,
                // Shown first: A in the original order, B in the swapped one.
                (Outcome::A, Outcome::B) => pc.first_position += 1,
                (Outcome::B, Outcome::A) => pc.second_position += 1,
                _ => pc.tie_involved += 1,
            }
        }
        if both_orders {
            pc.rate = percent(pc.consistent, pc.pairs);
            out.push(pc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use Outcome::*;

    #[test]
    fn counts_consistency_and_which_position_won() {
        let items = vec![
            item(
                "1",
                vec![judged("j", Some(A), false), judged("j", Some(A), true)],
            ),
            item(
                "2",
                vec![judged("j", Some(A), false), judged("j", Some(B), true)],
            ),
            item(
                "3",
                vec![judged("j", Some(B), false), judged("j", Some(A), true)],
            ),
            item(
                "4",
                vec![judged("j", Some(Tie), false), judged("j", Some(A), true)],
            ),
            item(
                "5",
                vec![judged("j", None, false), judged("j", Some(A), true)],
            ),
            // Only one order: not a pair.
            item("6", vec![judged("j", Some(A), false)]),
            // A later readable verdict of the same order counts.
            item(
                "7",
                vec![
                    judged("j", Some(B), false),
                    judged("j", Some(B), true),
                    judged("j", Some(A), true),
                ],
            ),
            item("8", vec![judged("k", Some(A), false)]),
        ];
        let r = position_consistency(&items, &["j".to_string(), "k".to_string()]);
        assert_eq!(r.len(), 1, "k never judged both orders");
        let j = &r[0];
        assert_eq!(
            (
                j.pairs,
                j.consistent,
                j.first_position,
                j.second_position,
                j.tie_involved,
                j.incomplete
            ),
            (5, 1, 1, 2, 1, 1)
        );
        assert_eq!(j.rate, Some(20.0));
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![Just(A), Just(B), Just(Tie)]
    }

    proptest! {
        #[test]
        fn inconsistencies_add_up_and_a_stable_judge_is_fully_consistent(
            rows in prop::collection::vec((arb_outcome(), arb_outcome()), 1..40)
        ) {
            let items: Vec<Item> = rows.iter().enumerate().map(|(i, (o, s))| item(
                &i.to_string(),
                vec![judged("j", Some(*o), false), judged("j", Some(*s), true), judged("s", Some(*o), false), judged("s", Some(*o), true)],
            )).collect();
            let r = position_consistency(&items, &["j".to_string(), "s".to_string()]);
            let j = &r[0];
            prop_assert_eq!(j.pairs, rows.len());
            prop_assert_eq!(j.consistent + j.first_position + j.second_position + j.tie_involved, j.pairs);
            prop_assert_eq!(r[1].rate, Some(100.0));
        }
    }
}
