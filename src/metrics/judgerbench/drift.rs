//! How far a judge's per-model win counts and ranking drift from the ground truth's: the
//! rank/score differences and their normalisation, computed two ways.
//!
//! `reference` follows `Judgerbenchv2Evaluator.score` of OpenCompass step by step, including
//! what it does wrong: the judge's dictionary only holds models it gave a win, so a model with
//! no wins drops out (n shrinks, and max|ΔW| is taken by zipping the two name-sorted value lists
//! positionally, pairing different models); a division by zero or an empty `max()` makes it
//! raise. `intended` computes what the formula means: every tested model counted (zero wins
//! included), max|ΔW| over the same model's pair, and a 0/0 term (n = 1, or max|ΔW| = 0 because
//! the judge matches the ground truth) counted as no drift.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Ranks 1..n by (wins descending, name ascending in code-point order); never shared.
pub fn ranks(wins: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let mut order: Vec<(&String, usize)> = wins.iter().map(|(m, w)| (m, *w)).collect();
    // `sort_by` is stable and the map iterates in name order, so equal wins stay name-ordered;
    // Rust compares `String`s by UTF-8 bytes, which is code-point order, as Python does.
    order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    order
        .into_iter()
        .enumerate()
        .map(|(r, (m, _))| (m.clone(), r + 1))
        .collect()
}

/// The drift figures of one judge in one category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Σ |rank_judge − rank_gt| over the counted models.
    pub rank_diff: usize,
    /// Σ |W_judge − W_gt| over the counted models.
    pub score_diff: usize,
    /// The divisor of the score term (max|ΔW|; the reference's zip in `reference`).
    pub max_score_diff: usize,
    /// How many models were counted (the reference's `len(dict1)`).
    pub models: usize,
    /// 100 · mean over models of (|Δrank|/(n−1) + |ΔW|/max|ΔW|).
    pub normalized_diff: f64,
    pub ranks: BTreeMap<String, usize>,
    pub gt_ranks: BTreeMap<String, usize>,
}

/// Why the reference evaluator raises instead of returning a score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum ReferenceFailure {
    /// `KeyError`: the judge gave wins to a model the ground truth does not list.
    #[error("KeyError: the judge gave wins to {0:?}, which the ground truth does not list")]
    UnknownModel(String),
    /// `ValueError` from `max()` over an empty zip: the judge gave no tested model a win.
    #[error("ValueError: max() of an empty sequence (the judge gave no tested model a win)")]
    NoWins,
    /// `ZeroDivisionError` in the rank term: only one model counted (n − 1 = 0).
    #[error("ZeroDivisionError: only one model counted, so n − 1 = 0")]
    SingleModel,
    /// `ZeroDivisionError` in the score term: the zipped max|ΔW| is 0.
    #[error("ZeroDivisionError: max|ΔW| is 0 (the win counts it zips are equal)")]
    ZeroMaxDiff,
}

/// The reference computation. `judge` must hold only the models the judge gave at least one
/// win (as the reference's `Model_dict` does); `gt` is the ground truth's table.
pub fn reference(
    judge: &BTreeMap<String, usize>,
    gt: &BTreeMap<String, usize>,
) -> Result<Drift, ReferenceFailure> {
    let rank1 = ranks(judge);
    let rank2 = ranks(gt);
    let mut rank_diff = 0;
    let mut score_diff = 0;
    let mut terms = Vec::with_capacity(judge.len());
    for (m, &w) in judge {
        let (Some(&r_gt), Some(&w_gt)) = (rank2.get(m), gt.get(m)) else {
            return Err(ReferenceFailure::UnknownModel(m.clone()));
        };
        let dr = rank1[m].abs_diff(r_gt);
        let dw = w.abs_diff(w_gt);
        rank_diff += dr;
        score_diff += dw;
        terms.push((dr, dw));
    }
    // The reference's `zip(dict1.values(), dict2.values())`: both in name order, paired by
    // position, cut to the shorter.
    let max_score_diff = judge
        .values()
        .zip(gt.values())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .ok_or(ReferenceFailure::NoWins)?;
    let n = judge.len();
    if n == 1 {
        return Err(ReferenceFailure::SingleModel);
    }
    if max_score_diff == 0 {
        return Err(ReferenceFailure::ZeroMaxDiff);
    }
    let sum: f64 = terms
        .iter()
        .map(|&(dr, dw)| dr as f64 / (n - 1) as f64 + dw as f64 / max_score_diff as f64)
        .sum();
    Ok(Drift {
        rank_diff,
        score_diff,
        max_score_diff,
        models: n,
        normalized_diff: sum / n as f64 * 100.0,
        ranks: rank1,
        gt_ranks: rank2,
    })
}

/// The intended computation over every model in either map (a model missing from one has 0
/// wins there). `None` when there is no model at all.
pub fn intended(judge: &BTreeMap<String, usize>, gt: &BTreeMap<String, usize>) -> Option<Drift> {
    let mut j = judge.clone();
    let mut g = gt.clone();
    for m in judge.keys() {
        g.entry(m.clone()).or_insert(0);
    }
    for m in gt.keys() {
        j.entry(m.clone()).or_insert(0);
    }
    let n = j.len();
    if n == 0 {
        return None;
    }
    let rank1 = ranks(&j);
    let rank2 = ranks(&g);
    let diffs: Vec<(usize, usize)> = j
        .iter()
        .map(|(m, w)| (rank1[m].abs_diff(rank2[m]), w.abs_diff(g[m])))
        .collect();
    let max_score_diff = diffs.iter().map(|d| d.1).max().unwrap_or(0);
    // 0/0 means no drift: with one model there is no ranking to get wrong, and max|ΔW| = 0
    // means every count matches.
    let term = |d: usize, max: usize| if max == 0 { 0.0 } else { d as f64 / max as f64 };
    let sum: f64 = diffs
        .iter()
        .map(|&(dr, dw)| term(dr, n - 1) + term(dw, max_score_diff))
        .sum();
    Some(Drift {
        rank_diff: diffs.iter().map(|d| d.0).sum(),
        score_diff: diffs.iter().map(|d| d.1).sum(),
        max_score_diff,
        models: n,
        normalized_diff: sum / n as f64 * 100.0,
        ranks: rank1,
        gt_ranks: rank2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(m, w)| (m.to_string(), *w)).collect()
    }

    #[test]
    fn ranks_break_ties_by_code_point_order() {
        let r = ranks(&map(&[("b", 3), ("B", 3), ("a", 5), ("c", 1)]));
        assert_eq!(r["a"], 1);
        assert_eq!(r["B"], 2, "uppercase sorts before lowercase");
        assert_eq!(r["b"], 3);
        assert_eq!(r["c"], 4);
    }

    #[test]
    fn reference_failures_are_named() {
        let gt = map(&[("x", 3), ("y", 1)]);
        assert_eq!(reference(&map(&[]), &gt), Err(ReferenceFailure::NoWins));
        assert_eq!(
            reference(&map(&[("x", 2)]), &gt),
            Err(ReferenceFailure::SingleModel)
        );
        assert_eq!(reference(&gt, &gt), Err(ReferenceFailure::ZeroMaxDiff));
        assert_eq!(
            reference(&map(&[("x", 1), ("z", 1)]), &gt),
            Err(ReferenceFailure::UnknownModel("z".into()))
        );
        // The intended computation is defined in all of these.
        assert_eq!(intended(&gt, &gt).map(|d| d.normalized_diff), Some(0.0));
        let one = intended(&map(&[("x", 2)]), &map(&[("x", 5)])).expect("one model");
        assert_eq!((one.max_score_diff, one.normalized_diff), (3, 100.0));
        assert_eq!(intended(&map(&[]), &map(&[])), None);
    }

    #[test]
    fn reference_equals_intended_when_no_model_drops_out() {
        let judge = map(&[("a", 4), ("b", 9), ("c", 1)]);
        let gt = map(&[("a", 5), ("b", 2), ("c", 3)]);
        let r = reference(&judge, &gt).expect("well-defined");
        let i = intended(&judge, &gt).expect("models");
        assert_eq!(r, i);
        // By hand: ranks judge b1 a2 c3, gt c2? gt: a5 c3 b2 → a1 c2 b3.
        // |Δr| a1 b2 c1 = 4; |ΔW| 1 7 2 = 10; max 7;
        // normalized = 100/3 · (1/2 + 1/7 + 2/2 + 7/7 + 1/2 + 2/7).
        assert_eq!((r.rank_diff, r.score_diff, r.max_score_diff), (4, 10, 7));
        let want = 100.0 / 3.0 * (0.5 + 1.0 / 7.0 + 1.0 + 1.0 + 0.5 + 2.0 / 7.0);
        assert!((r.normalized_diff - want).abs() < 1e-12);
    }
}
