//! The JudgeBench score (ScalerLab/JudgeBench, arXiv 2410.12784; reference
//! `compute_final_metrics` in `utils/metrics.py`, read at commit
//! e2c52c284e735e139b3daa61c206ee208f36c461). Not OpenCompass's JudgerBenchV2 score
//! (`metrics::judgerbench`), which is a different benchmark.
//!
//! Per pair, each game's decision is compared with the pair's label (the second game's mapped
//! back to the pair's orientation): +1 when it equals the label, −1 when it equals the flipped
//! label, 0 otherwise (a tie `A=B`, no decision, a failed call, or a missing game). The pair is
//! correct when the sum is positive; score = 100 · correct pairs / pairs. A judge run in one
//! order only (`--single_game`, reward models) is scored on its first game, which is the same
//! rule with one term. Reported overall and per source group (`dataset::judge_bench::GROUPS`).
//!
//! The label is the item's gold (objective correctness); a human decision on the item does not
//! change it. A judge's pairs are the JudgeBench items it judged, as the reference scores one
//! output file.

use super::percent;
use crate::dataset::judge_bench::{group_of, GROUPS};
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// How a judge played the pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Games {
    /// Both orders (JudgeBench's default).
    Both,
    /// The given order only (`--single_game`).
    Single,
}

/// The score over one set of pairs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// `overall`, or one of JudgeBench's groups (`knowledge`, `reasoning`, `math`, `coding`).
    pub group: String,
    pub pairs: usize,
    /// Pairs whose correct decisions outnumber the flipped ones.
    pub correct: usize,
    /// Pairs whose flipped decisions outnumber the correct ones.
    pub incorrect: usize,
    /// Pairs where they balance (ties, missing decisions, one right and one wrong).
    pub neither: usize,
    /// 100 · correct / pairs; `None` without pairs.
    pub score: Option<f64>,
}

impl GroupScore {
    fn new(group: &str) -> GroupScore {
        GroupScore {
            group: group.to_string(),
            ..Default::default()
        }
    }

    fn count(&mut self, sum: i32) {
        self.pairs += 1;
        match sum.signum() {
            1 => self.correct += 1,
            -1 => self.incorrect += 1,
            _ => self.neither += 1,
        }
        self.score = percent(self.correct, self.pairs);
    }
}

/// One judge's JudgeBench score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeBenchScore {
    pub judge: String,
    pub games: Games,
    pub overall: GroupScore,
    /// The four groups in JudgeBench's order, each present even when empty.
    pub groups: Vec<GroupScore>,
}

/// The JudgeBench section of a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeBenchReport {
    /// JudgeBench items in the dataset (those with a label).
    pub pairs: usize,
    pub judges: Vec<JudgeBenchScore>,
}

/// The JudgeBench source of an item with a label, or `None` when it is not a JudgeBench pair.
fn source(item: &Item) -> Option<&str> {
    item.gold?;
    item.meta.get("source")?.as_str()
}

/// True when the items hold JudgeBench pairs that some judge judged.
pub fn applies(items: &[Item]) -> bool {
    items
        .iter()
        .any(|i| source(i).is_some() && !i.judgments.is_empty())
}

/// +1 when the decision is the label, −1 when it is the flipped label, 0 otherwise
/// (`label` is never `None` here; a tie label has no flip other than itself).
fn term(decision: Option<Outcome>, label: Outcome) -> i32 {
    match decision {
        Some(d) if d == label => 1,
        Some(d) if d == label.swapped() => -1,
        _ => 0,
    }
}

/// Scores each of `judges` on the JudgeBench pairs among `items`.
pub fn score(items: &[Item], judges: &[String]) -> JudgeBenchReport {
    let pairs: Vec<(&Item, &str, Outcome)> = items
        .iter()
        .filter_map(|i| Some((i, source(i)?, i.gold?)))
        .collect();
    let judges = judges
        .iter()
        .filter_map(|judge| {
            let games = if pairs
                .iter()
                .any(|(i, _, _)| i.judgments.iter().any(|j| &j.judge == judge && j.swapped))
            {
                Games::Both
            } else {
                Games::Single
            };
            let mut overall = GroupScore::new("overall");
            let mut groups: Vec<GroupScore> =
                GROUPS.iter().map(|(g, _)| GroupScore::new(g)).collect();
            for (item, source, label) in &pairs {
                let mine = || item.judgments.iter().filter(|j| &j.judge == judge);
                if mine().next().is_none() {
                    continue;
                }
                // The first judgment of each order counts, as the reference reads
                // `judgments[0]` and `judgments[1]`.
                let first = mine().find(|j| !j.swapped).and_then(|j| j.outcome());
                let mut sum = term(first, *label);
                if games == Games::Both {
                    let second = mine().find(|j| j.swapped).and_then(|j| j.outcome());
                    sum += term(second, *label);
                }
                overall.count(sum);
                if let Some(g) = group_of(source) {
                    if let Some(s) = groups.iter_mut().find(|s| s.group == g) {
                        s.count(sum);
                    }
                }
            }
            (overall.pairs > 0).then(|| JudgeBenchScore {
                judge: judge.clone(),
                games,
                overall,
                groups,
            })
        })
        .collect();
    JudgeBenchReport {
        pairs: pairs.len(),
        judges,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{item, judged};
    use super::*;
    use Outcome::*;

    fn pair(id: &str, source: &str, label: Outcome, js: Vec<crate::dataset::Judgment>) -> Item {
        let mut it = item(id, js);
        it.gold = Some(label);
        it.meta.insert("source".into(), source.into());
        it
    }

    #[test]
    fn a_pair_counts_when_right_decisions_outnumber_flipped_ones() {
        let both = |first, second| vec![judged("j", first, false), judged("j", second, true)];
        let items = vec![
            // right + right, right + tie, right + wrong, tie + tie, none + wrong, wrong + wrong.
            pair("1", "mmlu-pro-law", A, both(Some(A), Some(A))),
            pair("2", "mmlu-pro-math", A, both(Some(A), Some(Tie))),
            pair("3", "livebench-math", B, both(Some(B), Some(A))),
            pair("4", "livebench-reasoning", B, both(Some(Tie), Some(Tie))),
            pair("5", "livecodebench", A, both(None, Some(B))),
            pair("6", "gsm8k", A, both(Some(B), Some(B))),
            // Not a JudgeBench pair: no source.
            item("7", both(Some(A), Some(A))),
        ];
        let r = score(&items, &["j".to_string()]);
        assert_eq!(r.pairs, 6);
        let j = &r.judges[0];
        assert_eq!(j.games, Games::Both);
        let o = &j.overall;
        assert_eq!((o.pairs, o.correct, o.incorrect, o.neither), (6, 2, 2, 2));
        assert!((o.score.expect("pairs") - 100.0 * 2.0 / 6.0).abs() < 1e-12);
        let by: Vec<(usize, usize)> = j.groups.iter().map(|g| (g.pairs, g.correct)).collect();
        assert_eq!(by, [(2, 2), (1, 0), (1, 0), (1, 0)]);
        assert_eq!(j.groups[0].group, "knowledge");
        assert_eq!(j.groups[3].score, Some(0.0));
    }

    #[test]
    fn a_single_game_judge_is_scored_on_its_first_game_and_others_are_left_out() {
        let items = vec![
            pair("1", "livecodebench", A, vec![judged("rm", Some(A), false)]),
            pair("2", "livecodebench", B, vec![judged("rm", Some(A), false)]),
            pair(
                "3",
                "livecodebench",
                B,
                vec![judged("other", Some(B), false)],
            ),
        ];
        let r = score(&items, &["rm".to_string(), "absent".to_string()]);
        assert_eq!(r.judges.len(), 1);
        assert_eq!(r.judges[0].games, Games::Single);
        assert_eq!(r.judges[0].overall.pairs, 2);
        assert_eq!(r.judges[0].overall.score, Some(50.0));
        assert!(applies(&items));
        assert!(!applies(&[item("x", vec![judged("j", Some(A), false)])]));
    }

    #[test]
    fn a_missing_second_game_counts_as_no_decision() {
        let items = vec![
            pair(
                "1",
                "livebench-math",
                A,
                vec![judged("j", Some(A), false), judged("j", Some(B), true)],
            ),
            pair("2", "livebench-math", A, vec![judged("j", Some(A), false)]),
        ];
        let o = &score(&items, &["j".to_string()]).judges[0].overall;
        assert_eq!((o.correct, o.neither), (1, 1));
    }
}
