//! Mixture of Judges: the consensus of a judge panel on each item, and the disputes where
//! there is none. Pure computation over `Item`s; no I/O.
//!
//! `label` turns a consensus (and a human decision, and perhaps the dataset's gold label) into
//! the item's final label; `summary` counts what a panel agreed on.

mod label;
mod summary;

pub use label::{final_label, LabelPolicy, LabelSource};
pub use summary::{DisputeCounts, OutcomeCounts, Summary};

use crate::dataset::{Dataset, Item, Judgment, Problem};
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// The judges whose votes make a consensus, in a fixed order (the order only affects how
/// reports list them, never the consensus).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Panel {
    judges: Vec<String>,
}

/// A panel that cannot vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanelError {
    #[error("a judge panel needs at least one judge; name the judges to combine (e.g. --panel judge1,judge2)")]
    Empty,
    #[error("judge {judge:?} is named twice in the panel; name each judge once")]
    Duplicate { judge: String },
}

impl Panel {
    /// A panel of the named judges. Names are taken as written (trimmed); blank names are
    /// ignored so that `"a,,b".split(',')` works.
    pub fn from_names<I, S>(names: I) -> Result<Panel, PanelError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut judges: Vec<String> = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if judges.iter().any(|j| j == name) {
                return Err(PanelError::Duplicate {
                    judge: name.to_string(),
                });
            }
            judges.push(name.to_string());
        }
        if judges.is_empty() {
            return Err(PanelError::Empty);
        }
        Ok(Panel { judges })
    }

    /// The default panel: every judge present in the dataset.
    pub fn all(dataset: &Dataset) -> Result<Panel, PanelError> {
        Panel::from_names(dataset.judges())
    }

    pub fn judges(&self) -> &[String] {
        &self.judges
    }

    pub fn len(&self) -> usize {
        self.judges.len()
    }

    /// Always false for a panel built through `from_names`; here for clippy's sake and for
    /// panels deserialised from elsewhere.
    pub fn is_empty(&self) -> bool {
        self.judges.is_empty()
    }

    /// Votes needed for a strict majority of the whole panel.
    pub fn majority(&self) -> usize {
        self.judges.len() / 2 + 1
    }
}

/// What one panel judge contributes to one item's consensus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vote {
    Cast(Outcome),
    /// The judge has no judgment on this item.
    Missing,
    /// The judge judged the item but no verdict could be read; the problem says why, when known.
    Unparseable(Option<Problem>),
}

/// A judge's vote on an item. The original-order judgment (`swapped == false`) is preferred;
/// the swapped one counts only when there is no original-order judgment. Among several
/// judgments of the same order (a dataset judgment re-run in Arbiter) the last one with a
/// verdict wins, since later judgments are newer; verdicts are already in the item's
/// orientation, so no flipping happens here.
pub fn vote(item: &Item, judge: &str) -> Vote {
    let of_judge = |swapped: bool| -> Vec<&Judgment> {
        item.judgments
            .iter()
            .filter(|j| j.judge == judge && j.swapped == swapped)
            .collect()
    };
    let mut chosen = of_judge(false);
    if chosen.is_empty() {
        chosen = of_judge(true);
    }
    if let Some(o) = chosen.iter().rev().find_map(|j| j.outcome()) {
        return Vote::Cast(o);
    }
    match chosen.last() {
        Some(j) => Vote::Unparseable(j.problem.clone()),
        None => Vote::Missing,
    }
}

/// A judge's verdicts on an item in both orders (the last readable judgment of each order),
/// for position-consistency checks. Verdicts are stored in the item's orientation already.
pub fn paired(item: &Item, judge: &str) -> crate::verdict::PairedVerdict {
    let last = |swapped: bool| {
        item.judgments
            .iter()
            .rev()
            .filter(|j| j.judge == judge && j.swapped == swapped)
            .find_map(|j| j.verdict)
    };
    crate::verdict::PairedVerdict {
        original: last(false),
        swapped: last(true),
    }
}

/// A panel judge whose judgment on an item has no verdict, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadVote {
    pub judge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Why an item needs a person to arbitrate it. An item may have several reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DisputeReason {
    /// No outcome won a strict majority of the panel.
    NoMajority { counts: OutcomeCounts },
    /// These panel judges have no judgment on the item.
    Missing { judges: Vec<String> },
    /// These panel judges judged the item but gave no readable verdict.
    Unparseable { judges: Vec<UnreadVote> },
    /// These panel judges' outputs hold several different verdict labels that no rule settles.
    ConflictingLabels { judges: Vec<UnreadVote> },
}

impl DisputeReason {
    /// The reason for people: `no majority (A 1, B 1, tie 0)`, `missing: j3`, `unreadable: j2`.
    pub fn describe(&self) -> String {
        match self {
            DisputeReason::NoMajority { counts } => format!(
                "no majority (A {}, B {}, tie {})",
                counts.a, counts.b, counts.tie
            ),
            DisputeReason::Missing { judges } => format!("missing: {}", judges.join(", ")),
            DisputeReason::Unparseable { judges } => format!(
                "unreadable: {}",
                judges
                    .iter()
                    .map(|u| u.judge.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DisputeReason::ConflictingLabels { judges } => format!(
                "conflicting labels: {}",
                judges
                    .iter()
                    .map(|u| match &u.problem {
                        Some(Problem::Conflicting(labels)) => format!("{} ({labels})", u.judge),
                        _ => u.judge.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            DisputeReason::NoMajority { .. } => "no majority",
            DisputeReason::Missing { .. } => "missing verdict",
            DisputeReason::Unparseable { .. } => "unparseable verdict",
            DisputeReason::ConflictingLabels { .. } => "conflicting labels",
        }
    }
}

/// The panel's view of one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consensus {
    pub item: String,
    /// The outcome a strict majority of the *whole panel* voted for (a missing or unreadable
    /// vote counts against every outcome), or `None`.
    pub outcome: Option<Outcome>,
    /// The votes that were cast.
    pub counts: OutcomeCounts,
    /// Empty when the panel agreed cleanly; otherwise why a person should look.
    pub disputes: Vec<DisputeReason>,
}

impl Consensus {
    pub fn is_dispute(&self) -> bool {
        !self.disputes.is_empty()
    }
}

/// The consensus of `panel` on one item.
pub fn consensus(item: &Item, panel: &Panel) -> Consensus {
    let mut counts = OutcomeCounts::default();
    let mut missing = Vec::new();
    let mut unread = Vec::new();
    let mut conflicting = Vec::new();
    for judge in panel.judges() {
        match vote(item, judge) {
            Vote::Cast(o) => counts.add(o),
            Vote::Missing => missing.push(judge.clone()),
            Vote::Unparseable(problem @ Some(Problem::Conflicting(_))) => {
                conflicting.push(UnreadVote {
                    judge: judge.clone(),
                    problem,
                })
            }
            Vote::Unparseable(problem) => unread.push(UnreadVote {
                judge: judge.clone(),
                problem,
            }),
        }
    }
    let outcome = Outcome::ALL
        .into_iter()
        .find(|&o| counts.get(o) >= panel.majority());
    let mut disputes = Vec::new();
    if outcome.is_none() {
        disputes.push(DisputeReason::NoMajority { counts });
    }
    if !missing.is_empty() {
        disputes.push(DisputeReason::Missing { judges: missing });
    }
    if !unread.is_empty() {
        disputes.push(DisputeReason::Unparseable { judges: unread });
    }
    if !conflicting.is_empty() {
        disputes.push(DisputeReason::ConflictingLabels {
            judges: conflicting,
        });
    }
    Consensus {
        item: item.id.clone(),
        outcome,
        counts,
        disputes,
    }
}

/// The consensus of `panel` on every item, in dataset order.
pub fn consensus_all(dataset: &Dataset, panel: &Panel) -> Vec<Consensus> {
    dataset
        .items
        .iter()
        .map(|item| consensus(item, panel))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataset::{Message, Provenance, Response};
    use crate::verdict::Verdict;
    use proptest::prelude::*;

    pub(crate) fn judgment(judge: &str, verdict: Option<Outcome>, swapped: bool) -> Judgment {
        Judgment {
            judge: judge.to_string(),
            verdict: verdict.map(Verdict::plain),
            output: None,
            swapped,
            problem: verdict
                .is_none()
                .then(|| Problem::Unreadable("no [[A]] or [[B]] found".into())),
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        }
    }

    pub(crate) fn item(id: &str, judgments: Vec<Judgment>) -> Item {
        Item {
            id: id.to_string(),
            category: None,
            language: None,
            context: vec![Message::new("user", "Which is better?")],
            response_a: Response::default(),
            response_b: Response::default(),
            judgments,
            gold: None,
            meta: Default::default(),
        }
    }

    fn panel(names: &[&str]) -> Panel {
        Panel::from_names(names).expect("test panel is valid")
    }

    #[test]
    fn strict_majority_wins_and_ties_can_win() {
        let it = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::Tie), false),
                judgment("j2", Some(Outcome::Tie), false),
                judgment("j3", Some(Outcome::A), false),
            ],
        );
        let c = consensus(&it, &panel(&["j1", "j2", "j3"]));
        assert_eq!(c.outcome, Some(Outcome::Tie));
        assert!(!c.is_dispute());
    }

    #[test]
    fn even_split_is_a_no_majority_dispute() {
        let it = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::A), false),
                judgment("j2", Some(Outcome::B), false),
            ],
        );
        let c = consensus(&it, &panel(&["j1", "j2"]));
        assert_eq!(c.outcome, None);
        assert_eq!(
            c.disputes,
            vec![DisputeReason::NoMajority {
                counts: OutcomeCounts { a: 1, b: 1, tie: 0 }
            }]
        );
    }

    #[test]
    fn missing_and_unparseable_judges_are_named() {
        let it = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::A), false),
                judgment("j2", Some(Outcome::A), false),
                judgment("j3", None, false),
            ],
        );
        let c = consensus(&it, &panel(&["j1", "j2", "j3", "j4"]));
        // 2 of 4 is not a strict majority of the panel.
        assert_eq!(c.outcome, None);
        let names: Vec<&str> = c.disputes.iter().map(|d| d.name()).collect();
        assert_eq!(
            names,
            vec!["no majority", "missing verdict", "unparseable verdict"]
        );
        assert_eq!(
            c.disputes[1],
            DisputeReason::Missing {
                judges: vec!["j4".into()]
            }
        );
        match &c.disputes[2] {
            DisputeReason::Unparseable { judges } => {
                assert_eq!(judges[0].judge, "j3");
                assert!(matches!(judges[0].problem, Some(Problem::Unreadable(_))));
            }
            other => panic!("expected unparseable, got {other:?}"),
        }
    }

    #[test]
    fn a_judge_with_conflicting_labels_is_a_dispute_with_that_reason() {
        let mut torn = judgment("j2", None, false);
        torn.problem = Some(Problem::Conflicting("[[A>B]], [[B>A]]".into()));
        let it = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::A), false),
                torn,
                judgment("j3", Some(Outcome::A), false),
            ],
        );
        let panel = Panel::from_names(["j1", "j2", "j3"]).expect("panel");
        let c = consensus(&it, &panel);
        // Two of three still make a majority, but the torn judge is shown to a person.
        assert_eq!(c.outcome, Some(Outcome::A));
        assert_eq!(c.disputes.len(), 1);
        assert_eq!(c.disputes[0].name(), "conflicting labels");
        assert_eq!(
            c.disputes[0].describe(),
            "conflicting labels: j2 ([[A>B]], [[B>A]])"
        );
    }

    #[test]
    fn paired_reads_both_orders_and_flags_position_bias() {
        let biased = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::A), false),
                judgment("j1", Some(Outcome::B), true),
                judgment("j2", Some(Outcome::A), false),
            ],
        );
        assert!(paired(&biased, "j1").is_inconsistent());
        assert_eq!(
            paired(&biased, "j2").consistency(),
            crate::verdict::Consistency::Incomplete
        );
        assert_eq!(
            paired(&biased, "j3"),
            crate::verdict::PairedVerdict::default()
        );
    }

    #[test]
    fn original_order_is_preferred_over_swapped() {
        let it = item(
            "1",
            vec![
                judgment("j1", Some(Outcome::B), true),
                judgment("j1", Some(Outcome::A), false),
            ],
        );
        assert_eq!(vote(&it, "j1"), Vote::Cast(Outcome::A));
        let only_swapped = item("2", vec![judgment("j1", Some(Outcome::B), true)]);
        assert_eq!(vote(&only_swapped, "j1"), Vote::Cast(Outcome::B));
        // An unreadable original-order judgment is still the judge's vote.
        let unread = item(
            "3",
            vec![
                judgment("j1", None, false),
                judgment("j1", Some(Outcome::B), true),
            ],
        );
        assert!(matches!(vote(&unread, "j1"), Vote::Unparseable(Some(_))));
    }

    #[test]
    fn panel_names_are_checked() {
        assert_eq!(
            Panel::from_names(Vec::<String>::new()),
            Err(PanelError::Empty)
        );
        assert_eq!(
            Panel::from_names(["a", "b", "a"]),
            Err(PanelError::Duplicate { judge: "a".into() })
        );
        let p = Panel::from_names("a, ,b".split(',')).expect("blank names are skipped");
        assert_eq!(p.judges(), ["a", "b"]);
        assert_eq!(p.majority(), 2);
    }

    #[test]
    fn panel_all_takes_every_judge_in_the_dataset() {
        let ds = Dataset::new(
            "d.jsonl".into(),
            crate::dataset::Format::Native,
            vec![
                item("1", vec![judgment("x", Some(Outcome::A), false)]),
                item("2", vec![judgment("y", Some(Outcome::A), false)]),
            ],
        )
        .expect("unique ids");
        let p = Panel::all(&ds).expect("two judges");
        assert_eq!(p.judges(), ["x", "y"]);
        let all = consensus_all(&ds, &p);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|c| c.is_dispute()));
    }

    /// A judge's vote as generated: an outcome, no judgment, or an unreadable one.
    fn arb_vote() -> impl Strategy<Value = Option<Option<Outcome>>> {
        prop_oneof![
            6 => prop_oneof![Just(Outcome::A), Just(Outcome::B), Just(Outcome::Tie)]
                .prop_map(|o| Some(Some(o))),
            1 => Just(None),
            1 => Just(Some(None)),
        ]
    }

    fn build(votes: &[Option<Option<Outcome>>]) -> (Item, Vec<String>) {
        let names: Vec<String> = (0..votes.len()).map(|i| format!("judge{i}")).collect();
        let judgments = votes
            .iter()
            .zip(&names)
            .filter_map(|(v, n)| v.map(|o| judgment(n, o, false)))
            .collect();
        (item("p", judgments), names)
    }

    /// Dispute reasons with their judge lists sorted: the panel's order may list judges
    /// differently, but the same judges must be named.
    fn normalised(mut disputes: Vec<DisputeReason>) -> Vec<DisputeReason> {
        for d in &mut disputes {
            match d {
                DisputeReason::Missing { judges } => judges.sort(),
                DisputeReason::Unparseable { judges }
                | DisputeReason::ConflictingLabels { judges } => {
                    judges.sort_by(|x, y| x.judge.cmp(&y.judge))
                }
                DisputeReason::NoMajority { .. } => {}
            }
        }
        disputes
    }

    proptest! {
        #[test]
        fn consensus_ignores_panel_order(
            votes in prop::collection::vec(arb_vote(), 1..8),
            seed in any::<u64>(),
        ) {
            let (it, names) = build(&votes);
            let mut shuffled = names.clone();
            // A seeded Fisher-Yates shuffle, so failures reproduce from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let a = consensus(&it, &Panel::from_names(&names).expect("distinct"));
            let b = consensus(&it, &Panel::from_names(&shuffled).expect("distinct"));
            prop_assert_eq!(a.outcome, b.outcome);
            prop_assert_eq!(a.counts, b.counts);
            prop_assert_eq!(normalised(a.disputes), normalised(b.disputes));
        }

        #[test]
        fn swapping_every_vote_swaps_the_consensus(
            votes in prop::collection::vec(arb_vote(), 1..8),
        ) {
            let (it, names) = build(&votes);
            let flipped: Vec<_> = votes.iter().map(|v| v.map(|o| o.map(Outcome::swapped))).collect();
            let (it2, _) = build(&flipped);
            let p = Panel::from_names(&names).expect("distinct");
            let a = consensus(&it, &p);
            let b = consensus(&it2, &p);
            prop_assert_eq!(a.outcome.map(Outcome::swapped), b.outcome);
            prop_assert_eq!(a.counts.a, b.counts.b);
            prop_assert_eq!(a.is_dispute(), b.is_dispute());
        }

        #[test]
        fn a_strict_majority_is_a_dispute_only_for_missing_or_unread_votes(
            votes in prop::collection::vec(arb_vote(), 1..8),
        ) {
            let (it, names) = build(&votes);
            let c = consensus(&it, &Panel::from_names(&names).expect("distinct"));
            let cast: Vec<Outcome> = votes.iter().filter_map(|v| v.flatten()).collect();
            let strict = Outcome::ALL.into_iter().find(|&o| {
                cast.iter().filter(|&&x| x == o).count() * 2 > names.len()
            });
            prop_assert_eq!(c.outcome, strict);
            if strict.is_some() {
                let all_cast = cast.len() == names.len();
                prop_assert_eq!(c.is_dispute(), !all_cast);
                let has_no_majority = c.disputes.iter().any(|d| matches!(d, DisputeReason::NoMajority { .. }));
                prop_assert!(!has_no_majority, "a majority item reported no majority");
            } else {
                prop_assert!(c.is_dispute());
            }
        }
    }
}
