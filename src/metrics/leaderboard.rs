//! Per-model win counts: how often each model's response won, by each judge's verdicts and by
//! the final labels. What a leaderboard chart plots.

use super::answer;
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One model's record over the items it appears in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub model: String,
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
    /// Items with a decided outcome where the model was one side.
    pub battles: usize,
}

/// Win counts of every model whose name the items give, sorted by wins (most first), then
/// name. Items with no outcome, and sides with no model name, are not counted.
pub fn win_counts(items: &[Item], outcomes: &[Option<Outcome>]) -> Vec<ModelRecord> {
    let mut table: BTreeMap<&str, ModelRecord> = BTreeMap::new();
    for (item, outcome) in items.iter().zip(outcomes) {
        let Some(outcome) = outcome else { continue };
        for (model, side) in [
            (&item.response_a.model, Outcome::A),
            (&item.response_b.model, Outcome::B),
        ] {
            if model.is_empty() {
                continue;
            }
            let r = table.entry(model).or_insert_with(|| ModelRecord {
                model: model.clone(),
                ..Default::default()
            });
            r.battles += 1;
            match *outcome {
                Outcome::Tie => r.ties += 1,
                o if o == side => r.wins += 1,
                _ => r.losses += 1,
            }
        }
    }
    let mut rows: Vec<ModelRecord> = table.into_values().collect();
    rows.sort_by(|a, b| b.wins.cmp(&a.wins).then_with(|| a.model.cmp(&b.model)));
    rows
}

/// A judge's win counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeLeaderboard {
    pub judge: String,
    pub models: Vec<ModelRecord>,
}

/// Win counts by the final labels and by each judge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaderboards {
    pub labels: Vec<ModelRecord>,
    pub judges: Vec<JudgeLeaderboard>,
}

impl Leaderboards {
    pub fn of(items: &[Item], labels: &[Option<Outcome>], judges: &[String]) -> Leaderboards {
        Leaderboards {
            labels: win_counts(items, labels),
            judges: judges
                .iter()
                .map(|j| {
                    let outcomes: Vec<Option<Outcome>> =
                        items.iter().map(|i| answer(i, j).outcome()).collect();
                    JudgeLeaderboard {
                        judge: j.clone(),
                        models: win_counts(items, &outcomes),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use Outcome::*;

    fn battle(id: &str, a: &str, b: &str, verdict: Option<Outcome>) -> Item {
        let mut it = item(id, vec![judged("j", verdict, false)]);
        it.response_a.model = a.into();
        it.response_b.model = b.into();
        it
    }

    #[test]
    fn counts_wins_losses_ties_by_labels_and_by_judge() {
        let items = vec![
            battle("1", "m1", "m2", Some(A)),
            battle("2", "m2", "m1", Some(A)),
            battle("3", "m1", "m3", Some(Tie)),
            battle("4", "m3", "", Some(A)),
        ];
        let labels = [Some(A), Some(B), None, Some(B)];
        let lb = Leaderboards::of(&items, &labels, &["j".to_string()]);
        let row = |rows: &[ModelRecord], m: &str| {
            let r = rows.iter().find(|r| r.model == m).expect("model listed");
            (r.wins, r.losses, r.ties, r.battles)
        };
        assert_eq!(lb.labels[0].model, "m1");
        assert_eq!(row(&lb.labels, "m1"), (2, 0, 0, 2));
        assert_eq!(row(&lb.labels, "m2"), (0, 2, 0, 2));
        assert_eq!(row(&lb.labels, "m3"), (0, 1, 0, 1));
        let j = &lb.judges[0].models;
        assert_eq!(row(j, "m1"), (1, 1, 1, 3));
        assert_eq!(row(j, "m2"), (1, 1, 0, 2));
        assert_eq!(row(j, "m3"), (1, 0, 1, 2));
        // Equal wins: name order.
        let names: Vec<&str> = j.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(names, ["m1", "m2", "m3"]);
    }
}
