//! An item's final label: a person's decision when there is one, otherwise (depending on the
//! policy) the dataset's own gold label or the panel's consensus.

use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// Where a final label came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// A person's decision, recorded in the journal.
    Human,
    /// The reference label the dataset shipped with (`Item::gold`).
    Gold,
    /// The strict majority of the judge panel.
    Consensus,
}

/// Which sources count, and in what order. A human decision always comes first: arbitrating
/// is the point of the tool, so a person's word is never overridden.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelPolicy {
    /// Human, then consensus; the dataset's gold label is ignored (it is what judges are
    /// scored against, so it must not leak into the labels being produced).
    #[default]
    HumanThenConsensus,
    /// Human, then the dataset's gold label, then consensus: for completing a partly labelled
    /// dataset.
    HumanThenGoldThenConsensus,
}

/// The final label of an item under `policy`, or `None` when no source has one (a dispute
/// nobody has decided yet).
pub fn final_label(
    consensus: Option<Outcome>,
    decision: Option<Outcome>,
    gold: Option<Outcome>,
    policy: LabelPolicy,
) -> Option<(Outcome, LabelSource)> {
    if let Some(d) = decision {
        return Some((d, LabelSource::Human));
    }
    if policy == LabelPolicy::HumanThenGoldThenConsensus {
        if let Some(g) = gold {
            return Some((g, LabelSource::Gold));
        }
    }
    consensus.map(|c| (c, LabelSource::Consensus))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn human_overrides_everything() {
        for policy in [
            LabelPolicy::HumanThenConsensus,
            LabelPolicy::HumanThenGoldThenConsensus,
        ] {
            assert_eq!(
                final_label(Some(A), Some(B), Some(Tie), policy),
                Some((B, LabelSource::Human))
            );
        }
    }

    #[test]
    fn gold_counts_only_when_the_policy_says() {
        assert_eq!(
            final_label(Some(A), None, Some(B), LabelPolicy::HumanThenConsensus),
            Some((A, LabelSource::Consensus))
        );
        assert_eq!(
            final_label(
                Some(A),
                None,
                Some(B),
                LabelPolicy::HumanThenGoldThenConsensus
            ),
            Some((B, LabelSource::Gold))
        );
        assert_eq!(
            final_label(
                Some(Tie),
                None,
                None,
                LabelPolicy::HumanThenGoldThenConsensus
            ),
            Some((Tie, LabelSource::Consensus))
        );
    }

    #[test]
    fn an_undecided_dispute_has_no_label() {
        assert_eq!(
            final_label(None, None, Some(A), LabelPolicy::HumanThenConsensus),
            None
        );
        assert_eq!(
            final_label(None, None, None, LabelPolicy::HumanThenGoldThenConsensus),
            None
        );
    }
}
