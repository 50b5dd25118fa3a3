//! One report with every metric of a dataset, what `arbiter score --json` prints and what
//! front ends show.

use super::accuracy::{accuracy, AccuracyOptions, JudgeAccuracy};
use super::agreement::{
    cohen_pairs, fleiss, krippendorff, FleissKappa, KrippendorffAlpha, PairKappa,
};
use super::alpaca_eval::{self, WinRate};
use super::category::{by_category, CategoryBreakdown};
use super::consistency::{position_consistency, PositionConsistency};
use super::judge_bench::{self, JudgeBenchReport};
use super::judgerbench::{self, JudgerbenchOptions, JudgerbenchReport};
use super::leaderboard::Leaderboards;
use super::{judges, MetricsError};
use crate::dataset::Item;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};

/// What to score and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreOptions {
    /// The judges to score; empty: every judge in the items.
    pub judges: Vec<String>,
    /// The panel whose agreement Fleiss' kappa measures; empty: every judge in the items.
    pub panel: Vec<String>,
    pub accuracy: AccuracyOptions,
    pub judgerbench: JudgerbenchOptions,
    /// Compute the JudgerBenchV2 score even when the items are not in its categories (the
    /// ground-truth wins are then a tally of the labels).
    #[serde(default)]
    pub judgerbench_always: bool,
}

/// Cohen's kappa for each judge pair, Fleiss' kappa and Krippendorff's alpha for the panel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    pub cohen: Vec<PairKappa>,
    /// `None` when the panel has fewer than two judges.
    pub fleiss: Option<FleissKappa>,
    /// Nominal Krippendorff's alpha: unlike Fleiss' kappa it keeps items where some panel
    /// judge's verdict is missing or unreadable. `None` when the panel has fewer than two judges.
    #[serde(default)]
    pub krippendorff: Option<KrippendorffAlpha>,
}

/// Every metric of a dataset's judges against its final labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub items: usize,
    /// Items with a final label.
    pub labelled: usize,
    pub labels: LabelCounts,
    pub judges: Vec<String>,
    pub options: ScoreOptions,
    pub accuracy: Vec<JudgeAccuracy>,
    pub agreement: Agreement,
    /// Judges that judged some item in both orders.
    pub position_consistency: Vec<PositionConsistency>,
    pub categories: Vec<CategoryBreakdown>,
    /// Present when the items look like JudgerBenchV2 (one of its categories and the base model
    /// on a side), or when asked for.
    pub judgerbench: Option<JudgerbenchReport>,
    /// Present when the items are JudgeBench pairs (ScalerLab's benchmark) that some judge
    /// judged: its score against the pairs' labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge_bench: Option<JudgeBenchReport>,
    /// The AlpacaEval win rate of each evaluated model against its baseline, per annotator;
    /// present when judgments carry graded preferences (AlpacaEval annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpaca_eval: Option<Vec<WinRate>>,
    pub leaderboard: Leaderboards,
    /// Agreement between the people who decided items (present when at least two did); set by
    /// the caller, which knows the decisions (`Review::human_agreement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humans: Option<super::agreement::HumanAgreement>,
    pub warnings: Vec<String>,
}

/// How the final labels split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCounts {
    pub a: usize,
    pub b: usize,
    pub tie: usize,
    pub none: usize,
}

impl Report {
    /// Scores the judges of `items` against `labels` (one final label per item, in item order:
    /// `Review::final_labels`).
    pub fn build(
        items: &[Item],
        labels: &[Option<Outcome>],
        opts: &ScoreOptions,
    ) -> Result<Report, MetricsError> {
        if labels.len() != items.len() {
            return Err(MetricsError::LabelCount {
                items: items.len(),
                labels: labels.len(),
            });
        }
        let present = judges(items);
        let check = |names: &[String]| -> Result<Vec<String>, MetricsError> {
            if names.is_empty() {
                return Ok(present.clone());
            }
            match names.iter().find(|n| !present.contains(n)) {
                Some(unknown) => Err(MetricsError::UnknownJudge {
                    judge: unknown.clone(),
                    known: if present.is_empty() {
                        "none".into()
                    } else {
                        present.join(", ")
                    },
                }),
                None => Ok(names.to_vec()),
            }
        };
        let scored = check(&opts.judges)?;
        let panel = check(&opts.panel)?;
        let mut warnings = Vec::new();

        let mut counts = LabelCounts::default();
        for l in labels {
            match l {
                Some(Outcome::A) => counts.a += 1,
                Some(Outcome::B) => counts.b += 1,
                Some(Outcome::Tie) => counts.tie += 1,
                None => counts.none += 1,
            }
        }
        if counts.none > 0 {
            warnings.push(format!(
                "{} of {} items have no final label (undecided disputes) and are not scored for accuracy",
                counts.none,
                items.len()
            ));
        }
        let wanted =
            opts.judgerbench_always || judgerbench::applies(items, &opts.judgerbench.base_model);
        let judgerbench = wanted.then(|| {
            let r = judgerbench::score(items, labels, &scored, &opts.judgerbench);
            warnings.extend(r.warnings.iter().map(|w| format!("JudgerBenchV2: {w}")));
            r
        });
        Ok(Report {
            items: items.len(),
            labelled: items.len() - counts.none,
            labels: counts,
            accuracy: scored
                .iter()
                .map(|j| accuracy(items.iter().zip(labels.iter().copied()), j, opts.accuracy))
                .collect(),
            agreement: Agreement {
                cohen: cohen_pairs(items, &scored),
                fleiss: (panel.len() >= 2).then(|| fleiss(items, &panel)),
                krippendorff: (panel.len() >= 2).then(|| krippendorff(items, &panel)),
            },
            position_consistency: position_consistency(items, &scored),
            categories: by_category(items, labels, &scored, opts.accuracy),
            judgerbench,
            judge_bench: judge_bench::applies(items).then(|| judge_bench::score(items, &scored)),
            alpaca_eval: alpaca_eval::applies(items).then(|| {
                alpaca_eval::win_rates(items)
                    .into_iter()
                    .filter(|w| scored.contains(&w.judge))
                    .collect()
            }),
            leaderboard: Leaderboards::of(items, labels, &scored),
            judges: scored,
            options: opts.clone(),
            humans: None,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use Outcome::*;

    #[test]
    fn builds_every_section_and_checks_its_inputs() {
        let items = panel_items(
            &["x", "y"],
            &[
                vec![Some(A), Some(B), Some(A)],
                vec![Some(A), Some(A), None],
            ],
        );
        let labels = [Some(A), Some(B), None];
        let r = Report::build(&items, &labels, &ScoreOptions::default()).expect("valid");
        assert_eq!(r.judges, ["x", "y"]);
        assert_eq!((r.labelled, r.labels.none), (2, 1));
        assert_eq!(r.accuracy[0].accuracy, Some(100.0));
        assert_eq!(r.accuracy[1].accuracy, Some(50.0));
        assert_eq!(r.agreement.cohen.len(), 1);
        assert_eq!(r.agreement.fleiss.as_ref().map(|f| f.items), Some(2));
        let alpha = r.agreement.krippendorff.as_ref().expect("two judges");
        assert_eq!(alpha.items, 2);
        assert!(alpha.alpha.is_some());
        assert!(r.judgerbench.is_none());
        assert!(r.position_consistency.is_empty());
        assert_eq!(r.categories.len(), 1);
        assert_eq!(r.warnings.len(), 1);
        let json = serde_json::to_value(&r).expect("serialisable");
        assert_eq!(json["accuracy"][1]["compared"], 2);

        assert_eq!(
            Report::build(&items, &labels[..2], &ScoreOptions::default()),
            Err(MetricsError::LabelCount {
                items: 3,
                labels: 2
            })
        );
        let opts = ScoreOptions {
            judges: vec!["z".into()],
            ..Default::default()
        };
        assert!(matches!(
            Report::build(&items, &labels, &opts),
            Err(MetricsError::UnknownJudge { judge, .. }) if judge == "z"
        ));
    }

    #[test]
    fn judgerbench_section_follows_the_data_or_the_option() {
        let base = crate::metrics::DEFAULT_BASE_MODEL;
        let mut items = panel_items(&["x"], &[vec![Some(A), Some(B)]]);
        for it in &mut items {
            it.category = Some("Creation".into());
            it.response_a.model = "m".into();
            it.response_b.model = base.into();
        }
        let labels = [Some(A), Some(A)];
        let r = Report::build(&items, &labels, &ScoreOptions::default()).expect("valid");
        let jb = r.judgerbench.as_ref().expect("JudgerBenchV2 categories");
        assert_eq!(jb.judges[0].categories[0].category, "Creation");
        assert_eq!(jb.judges[0].categories[0].correct, 1);
        // Two items of one model against R1's full table: warned, and the warning reaches the
        // report.
        assert!(r
            .warnings
            .iter()
            .any(|w| w.starts_with("JudgerBenchV2: x: Creation")));

        for it in &mut items {
            it.category = Some("Poetry".into());
        }
        let r = Report::build(&items, &labels, &ScoreOptions::default()).expect("valid");
        assert!(r.judgerbench.is_none());
        let forced = ScoreOptions {
            judgerbench_always: true,
            ..Default::default()
        };
        let r = Report::build(&items, &labels, &forced).expect("valid");
        let c = &r.judgerbench.expect("asked for").judges[0].categories[0];
        assert_eq!(c.gt_source, crate::metrics::judgerbench::GtSource::Tally);
    }
}
