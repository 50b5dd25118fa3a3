//! Accuracy of one judge against the items' final labels, with the counts behind it.
//!
//! The default follows OpenCompass's judge benchmarks (`JudgerBenchEvaluator` in
//! `opencompass/datasets/subjective/judgerbench.py`): a tie is a class of its own (a judge's tie
//! is right only against a tie label), an item whose label is unknown is skipped, and a judge
//! output with no readable verdict stays in the denominator as wrong. Two other conventions are
//! common and selectable: MT-Bench/RewardBench-style "without ties" (items labelled tie are not
//! compared) and JudgerBenchV2-style "parsed only" (unreadable outputs are dropped).

use super::{answer, percent, Answer};
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// What to do with items whose label is a tie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TiePolicy {
    /// A tie is a third class: only a tie verdict is right on a tie label (OpenCompass).
    #[default]
    ThreeWay,
    /// Items labelled tie are not compared; a judge's tie on an A/B item is wrong (MT-Bench's
    /// agreement "without tie", RewardBench has no tie labels at all).
    ExcludeTieLabels,
}

/// What to do with a judgment from which no verdict could be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnparsedPolicy {
    /// Counted as compared and wrong (OpenCompass's JudgerBench and RewardBench evaluators).
    #[default]
    Wrong,
    /// Left out of the denominator (JudgerBenchV2 scores parsed verdicts only).
    Excluded,
}

/// How accuracy treats ties and unreadable outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccuracyOptions {
    pub ties: TiePolicy,
    pub unparsed: UnparsedPolicy,
}

/// The counts behind one accuracy figure. `compared` is the denominator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccuracyCounts {
    pub correct: usize,
    pub compared: usize,
    /// Labelled items the judge judged without a readable verdict.
    pub unparsed: usize,
    /// Labelled items answered outside the scale (always compared, always wrong).
    pub out_of_scale: usize,
    /// Labelled items the judge did not judge.
    pub missing: usize,
    /// Items the judge answered that have no final label (an undecided dispute).
    pub no_label: usize,
    /// Items left out because their label is a tie (`TiePolicy::ExcludeTieLabels`).
    pub tie_labels_excluded: usize,
}

impl AccuracyCounts {
    /// Adds one item: the judge's answer and the item's final label.
    pub fn add(&mut self, answer: Answer, label: Option<Outcome>, opts: AccuracyOptions) {
        let Some(label) = label else {
            if answer != Answer::Missing {
                self.no_label += 1;
            }
            return;
        };
        if answer == Answer::Missing {
            self.missing += 1;
            return;
        }
        if label == Outcome::Tie && opts.ties == TiePolicy::ExcludeTieLabels {
            self.tie_labels_excluded += 1;
            return;
        }
        match answer {
            Answer::Verdict(o) => {
                self.compared += 1;
                self.correct += usize::from(o == label);
            }
            Answer::OutOfScale => {
                self.out_of_scale += 1;
                self.compared += 1;
            }
            Answer::Unparsed => {
                self.unparsed += 1;
                if opts.unparsed == UnparsedPolicy::Wrong {
                    self.compared += 1;
                }
            }
            Answer::Missing => unreachable!("handled above"),
        }
    }

    /// Accuracy in percent, `None` when nothing was compared.
    pub fn accuracy(&self) -> Option<f64> {
        percent(self.correct, self.compared)
    }
}

/// One judge's accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeAccuracy {
    pub judge: String,
    /// Percent, `None` when nothing could be compared.
    pub accuracy: Option<f64>,
    #[serde(flatten)]
    pub counts: AccuracyCounts,
}

/// Accuracy of `judge` over `(item, final label)` pairs.
pub fn accuracy<'a>(
    pairs: impl IntoIterator<Item = (&'a Item, Option<Outcome>)>,
    judge: &str,
    opts: AccuracyOptions,
) -> JudgeAccuracy {
    let mut counts = AccuracyCounts::default();
    for (item, label) in pairs {
        counts.add(answer(item, judge), label, opts);
    }
    JudgeAccuracy {
        judge: judge.to_string(),
        accuracy: counts.accuracy(),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use Outcome::*;

    fn score(items: &[Item], labels: &[Option<Outcome>], opts: AccuracyOptions) -> JudgeAccuracy {
        accuracy(items.iter().zip(labels.iter().copied()), "j", opts)
    }

    #[test]
    fn three_way_ties_and_unreadable_counted_wrong_by_default() {
        let items = vec![
            item("1", vec![judged("j", Some(A), false)]),
            item("2", vec![judged("j", Some(Tie), false)]),
            item("3", vec![judged("j", Some(A), false)]),
            item("4", vec![judged("j", None, false)]),
            item("5", vec![out_of_scale("j")]),
            item("6", vec![]),
            item("7", vec![judged("j", Some(B), false)]),
        ];
        let labels = [
            Some(A),
            Some(Tie),
            Some(Tie),
            Some(B),
            Some(A),
            Some(A),
            None,
        ];
        let r = score(&items, &labels, AccuracyOptions::default());
        assert_eq!(
            r.counts,
            AccuracyCounts {
                correct: 2,
                compared: 5,
                unparsed: 1,
                out_of_scale: 1,
                missing: 1,
                no_label: 1,
                tie_labels_excluded: 0,
            }
        );
        assert_eq!(r.accuracy, Some(40.0));

        let other = AccuracyOptions {
            ties: TiePolicy::ExcludeTieLabels,
            unparsed: UnparsedPolicy::Excluded,
        };
        let r = score(&items, &labels, other);
        // Items 2 and 3 (tie labels) and 4 (unreadable) leave the denominator.
        assert_eq!(r.counts.compared, 2);
        assert_eq!(r.counts.correct, 1);
        assert_eq!(r.counts.tie_labels_excluded, 2);
        assert_eq!(r.counts.unparsed, 1);
        assert_eq!(r.accuracy, Some(50.0));
    }

    #[test]
    fn nothing_compared_has_no_accuracy() {
        let items = vec![item("1", vec![judged("j", Some(A), false)])];
        let r = score(&items, &[None], AccuracyOptions::default());
        assert_eq!(r.accuracy, None);
        assert_eq!(r.counts.no_label, 1);
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![Just(A), Just(B), Just(Tie)]
    }

    fn arb_answer() -> impl Strategy<Value = Option<Option<Outcome>>> {
        prop_oneof![
            5 => arb_outcome().prop_map(|o| Some(Some(o))),
            1 => Just(Some(None)),
            1 => Just(None),
        ]
    }

    fn arb_options() -> impl Strategy<Value = AccuracyOptions> {
        (any::<bool>(), any::<bool>()).prop_map(|(t, u)| AccuracyOptions {
            ties: if t {
                TiePolicy::ThreeWay
            } else {
                TiePolicy::ExcludeTieLabels
            },
            unparsed: if u {
                UnparsedPolicy::Wrong
            } else {
                UnparsedPolicy::Excluded
            },
        })
    }

    fn build(
        rows: &[(Option<Option<Outcome>>, Option<Outcome>)],
        flip: bool,
    ) -> (Vec<Item>, Vec<Option<Outcome>>) {
        let f = |o: Outcome| if flip { o.swapped() } else { o };
        let items = rows
            .iter()
            .enumerate()
            .map(|(i, (a, _))| {
                let js = a
                    .map(|o| vec![judged("j", o.map(f), false)])
                    .unwrap_or_default();
                item(&i.to_string(), js)
            })
            .collect();
        let labels = rows.iter().map(|(_, l)| l.map(f)).collect();
        (items, labels)
    }

    proptest! {
        #[test]
        fn invariant_under_swapping_a_and_b_everywhere(
            rows in prop::collection::vec((arb_answer(), prop::option::of(arb_outcome())), 0..40),
            opts in arb_options(),
        ) {
            let (items, labels) = build(&rows, false);
            let (flipped, flipped_labels) = build(&rows, true);
            prop_assert_eq!(score(&items, &labels, opts), score(&flipped, &flipped_labels, opts));
        }

        #[test]
        fn counts_add_up(
            rows in prop::collection::vec((arb_answer(), prop::option::of(arb_outcome())), 0..40),
            opts in arb_options(),
        ) {
            let (items, labels) = build(&rows, false);
            let c = score(&items, &labels, opts).counts;
            prop_assert!(c.correct <= c.compared);
            let unparsed_in = if opts.unparsed == UnparsedPolicy::Excluded { c.unparsed } else { 0 };
            prop_assert_eq!(
                c.compared + unparsed_in + c.missing + c.no_label + c.tie_labels_excluded
                    + rows.iter().filter(|(a, l)| a.is_none() && l.is_none()).count(),
                rows.len()
            );
            if let Some(acc) = score(&items, &labels, opts).accuracy {
                prop_assert!((0.0..=100.0).contains(&acc));
            }
        }

        #[test]
        fn a_judge_that_copies_the_labels_is_always_right(
            labels in prop::collection::vec(arb_outcome(), 1..40),
            opts in arb_options(),
        ) {
            let items: Vec<Item> = labels.iter().enumerate()
                .map(|(i, o)| item(&i.to_string(), vec![judged("j", Some(*o), false)]))
                .collect();
            let labels: Vec<Option<Outcome>> = labels.into_iter().map(Some).collect();
            let r = score(&items, &labels, opts);
            prop_assert_eq!(r.counts.correct, r.counts.compared);
        }
    }
}
