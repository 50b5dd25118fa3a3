//! The AlpacaEval win rate: how often, on average, an annotator prefers the evaluated model
//! (`generator_2`, side B) over the baseline (`generator_1`, side A), from the graded
//! preferences judgments carry (`Judgment::preference`, 0 = A, 0.5 = tie, 1 = B).
//!
//! As AlpacaEval's `get_winrate` computes it (`metrics/helpers.py`, `describe_head2head` of
//! the absolute scoring rule), for one annotator and one pair of generators:
//!
//! - `win_rate` = 100 × the mean preference over the judgments that have one (a judgment
//!   without a preference, AlpacaEval's `null`, is left out of every count but `missing`);
//! - `standard_error` = 100 × the sample standard deviation (n − 1) / √n, pandas' `sem`;
//! - `n_wins`, `n_wins_base`: preferences above and below one half; `n_draws`: exactly one half;
//! - `discrete_win_rate` = 100 × (wins + draws / 2) / total, the zero-one rule's win rate.
//!
//! Only judgments with a graded preference count, so the section appears only for datasets that
//! have them (AlpacaEval annotations, or a native file that kept them).

use crate::dataset::Item;
use serde::{Deserialize, Serialize};

/// The win rate of one evaluated model against one baseline, by one annotator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    /// The annotator (the judge).
    pub judge: String,
    /// The baseline generator (side A, AlpacaEval's `generator_1`).
    pub baseline: String,
    /// The evaluated generator (side B, AlpacaEval's `generator_2`).
    pub model: String,
    /// 100 × the mean preference for the model; `None` without any preference.
    pub win_rate: Option<f64>,
    /// 100 × the standard error of that mean; `None` with fewer than two preferences.
    pub standard_error: Option<f64>,
    pub n_wins: usize,
    pub n_wins_base: usize,
    pub n_draws: usize,
    /// Preferences counted.
    pub n_total: usize,
    /// Judgments of this annotator on these items without a preference (AlpacaEval's `null`).
    pub missing: usize,
    /// 100 × (wins + draws / 2) / total.
    pub discrete_win_rate: Option<f64>,
}

/// True when some judgment carries a graded preference: the win rate then means something.
pub fn applies(items: &[Item]) -> bool {
    items
        .iter()
        .any(|i| i.judgments.iter().any(|j| j.preference.is_some()))
}

/// One win rate per (annotator, baseline, model), in first-seen order, over every item whose
/// judges gave a graded preference. An annotator's judgments without one are counted as
/// `missing` for the pairs where it gave some elsewhere.
pub fn win_rates(items: &[Item]) -> Vec<WinRate> {
    struct Acc {
        key: (String, String, String),
        prefs: Vec<f64>,
        missing: usize,
    }
    let graders: std::collections::HashSet<&str> = items
        .iter()
        .flat_map(|i| &i.judgments)
        .filter(|j| j.preference.is_some())
        .map(|j| j.judge.as_str())
        .collect();
    let mut groups: Vec<Acc> = Vec::new();
    let mut index: std::collections::HashMap<(String, String, String), usize> =
        std::collections::HashMap::new();
    for item in items {
        for j in &item.judgments {
            if !graders.contains(j.judge.as_str()) {
                continue;
            }
            let key = (
                j.judge.clone(),
                item.response_a.model.clone(),
                item.response_b.model.clone(),
            );
            let at = *index.entry(key.clone()).or_insert_with(|| {
                groups.push(Acc {
                    key,
                    prefs: Vec::new(),
                    missing: 0,
                });
                groups.len() - 1
            });
            match j.preference {
                Some(p) => groups[at].prefs.push(p),
                None => groups[at].missing += 1,
            }
        }
    }
    groups
        .into_iter()
        .filter(|g| !g.prefs.is_empty())
        .map(|g| {
            let (judge, baseline, model) = g.key;
            summarise(judge, baseline, model, &g.prefs, g.missing)
        })
        .collect()
}

fn summarise(
    judge: String,
    baseline: String,
    model: String,
    prefs: &[f64],
    missing: usize,
) -> WinRate {
    let n = prefs.len();
    let mean = (n > 0).then(|| prefs.iter().sum::<f64>() / n as f64);
    let standard_error = mean.filter(|_| n >= 2).map(|m| {
        let var = prefs.iter().map(|p| (p - m) * (p - m)).sum::<f64>() / (n - 1) as f64;
        100.0 * var.sqrt() / (n as f64).sqrt()
    });
    let n_wins = prefs.iter().filter(|&&p| p > 0.5).count();
    let n_wins_base = prefs.iter().filter(|&&p| p < 0.5).count();
    let n_draws = n - n_wins - n_wins_base;
    WinRate {
        judge,
        baseline,
        model,
        win_rate: mean.map(|m| 100.0 * m),
        standard_error,
        n_wins,
        n_wins_base,
        n_draws,
        n_total: n,
        missing,
        discrete_win_rate: (n > 0)
            .then(|| 100.0 * (n_wins as f64 + n_draws as f64 / 2.0) / n as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testutil::{judged, panel_items};
    use crate::verdict::Outcome;

    fn graded(items: &mut [Item], prefs: &[Option<f64>]) {
        for (item, p) in items.iter_mut().zip(prefs) {
            item.response_a.model = "base".into();
            item.response_b.model = "m".into();
            item.judgments = vec![crate::dataset::Judgment {
                preference: *p,
                ..judged("ann", p.map(|_| Outcome::A), false)
            }];
        }
    }

    #[test]
    fn mean_standard_error_and_counts_follow_alpaca_eval() {
        let mut items = panel_items(&["ann"], &[vec![None; 5]]);
        graded(
            &mut items,
            &[Some(0.0), Some(1.0), Some(0.5), Some(0.93), None],
        );
        assert!(applies(&items));
        let r = win_rates(&items);
        assert_eq!(r.len(), 1);
        let w = &r[0];
        assert_eq!((w.baseline.as_str(), w.model.as_str()), ("base", "m"));
        let prefs = [0.0, 1.0, 0.5, 0.93];
        let mean = prefs.iter().sum::<f64>() / 4.0;
        let sd = (prefs.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!((w.win_rate.unwrap() - 100.0 * mean).abs() < 1e-12);
        assert!((w.standard_error.unwrap() - 100.0 * sd / 2.0).abs() < 1e-12);
        assert_eq!((w.n_wins, w.n_wins_base, w.n_draws), (2, 1, 1));
        assert_eq!((w.n_total, w.missing), (4, 1));
        assert_eq!(w.discrete_win_rate, Some(62.5));
    }

    #[test]
    fn no_graded_preference_no_section() {
        let items = panel_items(&["x"], &[vec![Some(Outcome::A)]]);
        assert!(!applies(&items));
        assert!(win_rates(&items).is_empty());
        let mut one = panel_items(&["ann"], &[vec![None]]);
        graded(&mut one, &[Some(1.0)]);
        let w = &win_rates(&one)[0];
        assert_eq!((w.win_rate, w.standard_error), (Some(100.0), None));
    }
}
