//! Agreement between raters (judges or humans): Cohen's kappa for every pair, Fleiss' kappa
//! and Krippendorff's alpha for a panel. The kappas count outcomes on the three-way A/B/tie
//! scale (strengths collapsed) and only items where every rater involved gave a readable
//! verdict; alpha uses every item that at least two raters rated, so missing verdicts cost it
//! nothing but their own pairs.

use super::answer;
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

fn class(o: Outcome) -> usize {
    match o {
        Outcome::A => 0,
        Outcome::B => 1,
        Outcome::Tie => 2,
    }
}

/// Cohen's kappa of two raters over the same items (`a[i]` and `b[i]` rate item `i`).
/// `None` when it is undefined: no items, or chance agreement is 1 (both raters gave the same
/// single label to every item, where kappa is 0/0).
pub fn cohen_kappa(a: &[Outcome], b: &[Outcome]) -> Option<f64> {
    let len = a.len().min(b.len());
    if len == 0 {
        return None;
    }
    let mut pa = [0usize; 3];
    let mut pb = [0usize; 3];
    let mut agreed = 0usize;
    for (x, y) in a.iter().zip(b) {
        pa[class(*x)] += 1;
        pb[class(*y)] += 1;
        agreed += usize::from(x == y);
    }
    let n = len as f64;
    let po = agreed as f64 / n;
    let pe: f64 = (0..3)
        .map(|k| (pa[k] as f64 / n) * (pb[k] as f64 / n))
        .sum();
    // pe == 1 exactly when both raters used one and the same class throughout; test it on the
    // counts so that rounding cannot turn 0/0 into a number.
    if (0..3).any(|k| pa[k] == len && pb[k] == len) {
        return None;
    }
    Some((po - pe) / (1.0 - pe))
}

/// Fleiss' kappa from per-item counts: `counts[i][k]` raters put item `i` in class `k`; every
/// item must have the same number of raters. `None` when undefined: no items, fewer than two
/// raters, unequal rater counts, or chance agreement 1 (every rating in one class).
pub fn fleiss_kappa(counts: &[[usize; 3]]) -> Option<f64> {
    let first = counts.first()?;
    let raters: usize = first.iter().sum();
    if raters < 2 || counts.iter().any(|c| c.iter().sum::<usize>() != raters) {
        return None;
    }
    let items = counts.len() as f64;
    let r = raters as f64;
    let mut class_totals = [0usize; 3];
    let mut p_bar = 0.0;
    for c in counts {
        let sq: usize = c.iter().map(|x| x * x).sum();
        p_bar += (sq - raters) as f64 / (r * (r - 1.0));
        for k in 0..3 {
            class_totals[k] += c[k];
        }
    }
    p_bar /= items;
    if class_totals.iter().filter(|&&t| t > 0).count() < 2 {
        return None;
    }
    let pe: f64 = class_totals
        .iter()
        .map(|&t| {
            let p = t as f64 / (items * r);
            p * p
        })
        .sum();
    Some((p_bar - pe) / (1.0 - pe))
}

/// Cohen's kappa for one pair of judges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairKappa {
    pub judge_a: String,
    pub judge_b: String,
    /// Items where both gave a readable verdict.
    pub items: usize,
    /// Of those, items where they gave the same outcome.
    pub agreed: usize,
    pub kappa: Option<f64>,
}

/// Cohen's kappa for every unordered pair of `judges`, in the judges' order.
pub fn cohen_pairs(items: &[Item], judges: &[String]) -> Vec<PairKappa> {
    let outcomes: Vec<Vec<Option<Outcome>>> = judges
        .iter()
        .map(|j| items.iter().map(|i| answer(i, j).outcome()).collect())
        .collect();
    cohen_table(judges, &outcomes)
}

/// Cohen's kappa for every unordered pair of raters of a table: `outcomes[r][i]` is rater
/// `r`'s outcome on item `i` (`None`: not rated). Each pair counts the items both rated.
pub fn cohen_table(judges: &[String], outcomes: &[Vec<Option<Outcome>>]) -> Vec<PairKappa> {
    let mut out = Vec::new();
    for x in 0..judges.len() {
        for y in x + 1..judges.len() {
            let (a, b): (Vec<Outcome>, Vec<Outcome>) = outcomes[x]
                .iter()
                .zip(&outcomes[y])
                .filter_map(|(p, q)| Some(((*p)?, (*q)?)))
                .unzip();
            out.push(PairKappa {
                judge_a: judges[x].clone(),
                judge_b: judges[y].clone(),
                items: a.len(),
                agreed: a.iter().zip(&b).filter(|(p, q)| p == q).count(),
                kappa: cohen_kappa(&a, &b),
            });
        }
    }
    out
}

/// Fleiss' kappa of a panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleissKappa {
    pub judges: Vec<String>,
    /// Items where every panel judge gave a readable verdict (the only ones Fleiss counts).
    pub items: usize,
    /// Items left out because some panel judge had no readable verdict.
    pub skipped: usize,
    pub kappa: Option<f64>,
}

/// Fleiss' kappa of `panel` over the items every panel judge rated.
pub fn fleiss(items: &[Item], panel: &[String]) -> FleissKappa {
    let mut counts = Vec::new();
    for item in items {
        let mut c = [0usize; 3];
        let mut complete = true;
        for j in panel {
            match answer(item, j).outcome() {
                Some(o) => c[class(o)] += 1,
                None => complete = false,
            }
        }
        if complete {
            counts.push(c);
        }
    }
    FleissKappa {
        judges: panel.to_vec(),
        items: counts.len(),
        skipped: items.len() - counts.len(),
        kappa: if panel.len() >= 2 {
            fleiss_kappa(&counts)
        } else {
            None
        },
    }
}

/// Krippendorff's alpha for nominal data. `units[u]` holds the values the raters gave unit `u`
/// (a missing rating is simply absent); units with fewer than two values cannot be paired and
/// are left out, as Krippendorff prescribes. Values are class indices (any `usize`).
///
/// With the coincidence matrix `o[c][k] = sum over units of pairs(c, k) / (m_u - 1)`, the
/// marginals `n_c` and their total `n`: `alpha = 1 - (n - 1) * D_o / D_e`, where
/// `D_o = sum_{c != k} o[c][k]` and `D_e = sum_{c != k} n_c * n_k`.
/// `None` when it is undefined: no pairable values, or a single value used throughout
/// (`D_e = 0`).
pub fn krippendorff_alpha_nominal(units: &[Vec<usize>]) -> Option<f64> {
    let classes = units.iter().flatten().max().map_or(0, |&m| m + 1);
    let mut o = vec![vec![0.0f64; classes]; classes];
    for values in units.iter().filter(|v| v.len() >= 2) {
        let mut count = vec![0usize; classes];
        for &v in values {
            count[v] += 1;
        }
        let weight = 1.0 / (values.len() - 1) as f64;
        for c in 0..classes {
            for k in 0..classes {
                // Ordered pairs of distinct raters: c != k gives count_c * count_k, c == k
                // gives count_c * (count_c - 1).
                let pairs = if c == k {
                    count[c] * count[c].saturating_sub(1)
                } else {
                    count[c] * count[k]
                };
                o[c][k] += pairs as f64 * weight;
            }
        }
    }
    let n_c: Vec<f64> = o.iter().map(|row| row.iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    let mut observed = 0.0;
    let mut expected = 0.0;
    for c in 0..classes {
        for k in 0..classes {
            if c != k {
                observed += o[c][k];
                expected += n_c[c] * n_c[k];
            }
        }
    }
    if n < 2.0 || expected == 0.0 {
        return None;
    }
    Some(1.0 - (n - 1.0) * observed / expected)
}

/// Krippendorff's alpha of a panel, from the same three-way outcomes as the kappas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KrippendorffAlpha {
    pub judges: Vec<String>,
    /// Items at least two panel judges rated readably (the pairable ones alpha counts).
    pub items: usize,
    pub alpha: Option<f64>,
}

/// How far people agree with each other on the items several of them decided: Cohen's kappa
/// for every pair of annotators (on the items that pair shares; `judge_a`/`judge_b` name the
/// annotators) and Krippendorff's alpha over everyone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HumanAgreement {
    pub annotators: Vec<String>,
    /// Items at least two annotators decided.
    pub shared_items: usize,
    pub pairs: Vec<PairKappa>,
    pub alpha: KrippendorffAlpha,
}

/// Agreement of `annotators` from their decisions: `outcomes[r][i]` is annotator `r`'s
/// decision on item `i`, `None` where they made none.
pub fn humans(annotators: &[String], outcomes: &[Vec<Option<Outcome>>]) -> HumanAgreement {
    let items = outcomes.iter().map(Vec::len).max().unwrap_or(0);
    let units: Vec<Vec<usize>> = (0..items)
        .map(|i| {
            outcomes
                .iter()
                .filter_map(|row| row.get(i).copied().flatten().map(class))
                .collect::<Vec<usize>>()
        })
        .filter(|v| v.len() >= 2)
        .collect();
    HumanAgreement {
        annotators: annotators.to_vec(),
        shared_items: units.len(),
        pairs: cohen_table(annotators, outcomes),
        alpha: KrippendorffAlpha {
            judges: annotators.to_vec(),
            items: units.len(),
            alpha: krippendorff_alpha_nominal(&units),
        },
    }
}

/// Krippendorff's alpha (nominal) of `panel` over every item two or more of them rated.
pub fn krippendorff(items: &[Item], panel: &[String]) -> KrippendorffAlpha {
    let units: Vec<Vec<usize>> = items
        .iter()
        .map(|item| {
            panel
                .iter()
                .filter_map(|j| answer(item, j).outcome().map(class))
                .collect::<Vec<usize>>()
        })
        .filter(|v| v.len() >= 2)
        .collect();
    KrippendorffAlpha {
        judges: panel.to_vec(),
        items: units.len(),
        alpha: krippendorff_alpha_nominal(&units),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use proptest::prelude::*;
    use Outcome::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn humans_pair_on_shared_items_only() {
        let names: Vec<String> = ["ann", "bo", "cy"].iter().map(|s| s.to_string()).collect();
        // ann and bo share items 0-3, bo and cy share 2-5, ann and cy share 2-3.
        let rows = vec![
            vec![Some(A), Some(B), Some(A), Some(B), None, None],
            vec![Some(A), Some(B), Some(B), Some(B), Some(A), Some(Tie)],
            vec![None, None, Some(B), Some(A), Some(A), Some(Tie)],
        ];
        let h = humans(&names, &rows);
        assert_eq!(h.shared_items, 6);
        let ab = &h.pairs[0];
        assert_eq!((ab.items, ab.agreed), (4, 3));
        // ann A,B,A,B vs bo A,B,B,B: po .75, pe .5·.25 + .5·.75 = .5 → κ = .5.
        assert!(close(ab.kappa, 0.5));
        assert_eq!((h.pairs[1].items, h.pairs[2].items), (2, 4));
        assert_eq!(h.alpha.items, 6);
        assert!(h.alpha.alpha.is_some_and(|a| a < 1.0 && a > 0.0));
    }

    #[test]
    fn cohen_by_hand() {
        // 10 items: agree on 4 A and 3 B; disagree on 3.
        // a: A×6 B×4, b: A×5 B×5 → pe = .6·.5 + .4·.5 = .5; po = .7 → κ = .4.
        let a = [A, A, A, A, A, A, B, B, B, B];
        let b = [A, A, A, A, B, B, B, B, B, A];
        assert!(close(cohen_kappa(&a, &b), 0.4));
        // Complete disagreement on a balanced split is -1.
        assert!(close(cohen_kappa(&[A, B], &[B, A]), -1.0));
        assert_eq!(cohen_kappa(&[A, A], &[A, A]), None);
        assert_eq!(cohen_kappa(&[], &[]), None);
        // One rater constant, the other not: defined (pe < 1), and 0 here.
        assert!(close(cohen_kappa(&[A, A], &[A, B]), 0.0));
    }

    #[test]
    fn fleiss_by_hand() {
        // 3 raters, 4 items: [3,0,0] [0,3,0] [2,1,0] [1,1,1].
        // P_i: 1, 1, 1/3, 0 → P̄ = 7/12. Totals A 6, B 5, tie 1 of 12 →
        // Pe = (36+25+1)/144 = 62/144. κ = (7/12 − 62/144)/(1 − 62/144) = 22/82.
        let k = fleiss_kappa(&[[3, 0, 0], [0, 3, 0], [2, 1, 0], [1, 1, 1]]);
        assert!(close(k, 22.0 / 82.0), "{k:?}");
        assert_eq!(fleiss_kappa(&[[2, 0, 0], [2, 0, 0]]), None);
        assert_eq!(fleiss_kappa(&[[2, 0, 0], [1, 0, 0]]), None);
        assert_eq!(fleiss_kappa(&[[1, 0, 0]]), None);
    }

    #[test]
    fn pairs_and_panel_skip_items_without_every_verdict() {
        let items = panel_items(
            &["x", "y", "z"],
            &[
                vec![Some(A), Some(B), Some(A), None],
                vec![Some(A), Some(B), Some(B), Some(A)],
                vec![Some(A), Some(A), Some(B), Some(B)],
            ],
        );
        let names: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let pairs = cohen_pairs(&items, &names);
        assert_eq!(pairs.len(), 3);
        assert_eq!(
            (pairs[0].judge_a.as_str(), pairs[0].judge_b.as_str()),
            ("x", "y")
        );
        assert_eq!((pairs[0].items, pairs[0].agreed), (3, 2));
        assert_eq!((pairs[2].items, pairs[2].agreed), (4, 2));
        let f = fleiss(&items, &names);
        assert_eq!((f.items, f.skipped), (3, 1));
        // By hand: items [3,0,0], [1,2,0], [1,2,0] → P̄ = (1 + 1/3 + 1/3)/3 = 5/9;
        // totals A 5, B 4 of 9 → Pe = 41/81; κ = (45/81 − 41/81)/(40/81) = 0.1.
        assert!(close(f.kappa, 0.1), "{:?}", f.kappa);
    }

    #[test]
    fn krippendorff_matches_the_published_example() {
        // Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
        // observers, twelve units, values 1-5 with gaps; nominal alpha = 0.743 (to 3 places).
        // Unit 12 has one value and is unpairable.
        let units: Vec<Vec<usize>> = vec![
            vec![1, 1, 1],
            vec![2, 2, 3, 2],
            vec![3, 3, 3, 3],
            vec![3, 3, 3, 3],
            vec![2, 2, 2, 2],
            vec![1, 2, 3, 4],
            vec![4, 4, 4, 4],
            vec![1, 1, 2, 1],
            vec![2, 2, 2, 2],
            vec![5, 5, 5],
            vec![1, 1],
            vec![3],
        ];
        let a = krippendorff_alpha_nominal(&units).expect("defined");
        assert!((a - 0.743).abs() < 5e-4, "{a}");
        // By hand, two units (0,0) and (0,1): o00 = 2, o01 = o10 = 1, so n0 = 3, n1 = 1,
        // n = 4, D_o = 2, D_e = 2 * 3 * 1 = 6 → alpha = 1 - 3 * 2 / 6 = 0.
        let two = krippendorff_alpha_nominal(&[vec![0, 0], vec![0, 1]]).expect("defined");
        assert!(two.abs() < 1e-12, "{two}");
        assert_eq!(
            krippendorff_alpha_nominal(&[vec![1, 1], vec![1, 1, 1]]),
            None
        );
        assert_eq!(krippendorff_alpha_nominal(&[vec![1], vec![2]]), None);
        assert_eq!(krippendorff_alpha_nominal(&[]), None);
    }

    #[test]
    fn krippendorff_uses_items_with_missing_verdicts() {
        let items = panel_items(
            &["x", "y", "z"],
            &[
                vec![Some(A), Some(B), Some(A), None],
                vec![Some(A), Some(B), Some(B), Some(A)],
                vec![Some(A), None, Some(B), None],
            ],
        );
        let names: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let k = krippendorff(&items, &names);
        // Item 4 has one verdict: unpairable. Units: [A,A,A], [B,B], [A,B,B].
        assert_eq!(k.items, 3);
        let want = krippendorff_alpha_nominal(&[vec![0, 0, 0], vec![1, 1], vec![0, 1, 1]]);
        assert_eq!(k.alpha, want);
        assert!(k.alpha.is_some_and(|a| a > 0.0 && a < 1.0));
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![Just(A), Just(B), Just(Tie)]
    }

    proptest! {
        #[test]
        fn cohen_is_symmetric_bounded_and_one_for_identical_judges(
            pairs in prop::collection::vec((arb_outcome(), arb_outcome()), 1..60)
        ) {
            let (a, b): (Vec<Outcome>, Vec<Outcome>) = pairs.into_iter().unzip();
            let ab = cohen_kappa(&a, &b);
            prop_assert_eq!(ab, cohen_kappa(&b, &a));
            if let Some(k) = ab {
                prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&k), "{}", k);
            }
            // Identical judges: 1 whenever defined, and defined unless they used one label.
            let same = cohen_kappa(&a, &a);
            let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
            if distinct > 1 {
                prop_assert!(close(same, 1.0), "{:?}", same);
            } else {
                prop_assert_eq!(same, None);
            }
        }

        #[test]
        fn fleiss_is_bounded_one_when_unanimous_and_ignores_rater_order(
            rows in prop::collection::vec(prop::collection::vec(arb_outcome(), 3), 1..40)
        ) {
            let names: Vec<String> = ["p", "q", "r"].map(String::from).to_vec();
            let votes: Vec<Vec<Option<Outcome>>> =
                (0..3).map(|k| rows.iter().map(|r| Some(r[k])).collect()).collect();
            let items = panel_items(&["p", "q", "r"], &votes);
            let f = fleiss(&items, &names);
            if let Some(k) = f.kappa {
                prop_assert!((-1.0 - 1e-12..=1.0 + 1e-12).contains(&k), "{}", k);
            }
            let reversed: Vec<String> = names.iter().rev().cloned().collect();
            prop_assert_eq!(f.kappa, fleiss(&items, &reversed).kappa);
            // Three copies of the first judge agree perfectly.
            let copies: Vec<Vec<Option<Outcome>>> = (0..3).map(|_| votes[0].clone()).collect();
            let unanimous = fleiss(&panel_items(&["p", "q", "r"], &copies), &names);
            let distinct = votes[0].iter().collect::<std::collections::HashSet<_>>().len();
            if distinct > 1 {
                prop_assert!(close(unanimous.kappa, 1.0), "{:?}", unanimous.kappa);
            } else {
                prop_assert_eq!(unanimous.kappa, None);
            }
        }
    }
}
