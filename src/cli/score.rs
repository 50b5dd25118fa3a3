//! `arbiter score`: judge metrics against the final labels (accuracy, JudgerBenchV2 score,
//! JudgeBench score, kappa, position consistency, per category, win counts, the AlpacaEval win
//! rate), as tables or as the JSON `Report`.

use super::table::Table;
use super::{open::open_reviewed_with, ScoreArgs};
use crate::dataset::judge_bench::GROUPS as JUDGE_BENCH_GROUPS;
use crate::metrics::alpaca_eval::WinRate;
use crate::metrics::judge_bench::{Games, JudgeBenchReport};
use crate::metrics::judgerbench::{
    GroundTruth, GtSource, JudgeScore, JudgerbenchOptions, JudgerbenchReport, Quirks,
};
use crate::metrics::{AccuracyOptions, Report, ScoreOptions, TiePolicy, UnparsedPolicy};
use crate::moj::LabelPolicy;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `--gt`: where the ground truth comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GtArg {
    /// The dataset's gold labels (JudgerBenchV2: DeepSeek-R1's), then the panel's consensus.
    R1,
    /// The panel's majority (Mixture of Judges).
    Moj,
}

/// `--quirks`: reproduce the JudgerBenchV2 reference code's quirks or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QuirksArg {
    Reference,
    Intended,
}

/// `--ties`: accuracy on items labelled tie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TiesArg {
    ThreeWay,
    Exclude,
}

/// `--unparsed`: accuracy on unreadable judge outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UnparsedArg {
    Wrong,
    Exclude,
}

fn options(args: &ScoreArgs, panel: Vec<String>) -> ScoreOptions {
    ScoreOptions {
        judges: args.judges.clone(),
        panel,
        accuracy: AccuracyOptions {
            ties: match args.ties {
                TiesArg::ThreeWay => TiePolicy::ThreeWay,
                TiesArg::Exclude => TiePolicy::ExcludeTieLabels,
            },
            unparsed: match args.unparsed {
                UnparsedArg::Wrong => UnparsedPolicy::Wrong,
                UnparsedArg::Exclude => UnparsedPolicy::Excluded,
            },
        },
        judgerbench: JudgerbenchOptions {
            base_model: args.base_model.clone(),
            ground_truth: match args.gt {
                GtArg::R1 => GroundTruth::R1,
                GtArg::Moj => GroundTruth::Moj,
            },
            quirks: match args.quirks {
                QuirksArg::Reference => Quirks::Reference,
                QuirksArg::Intended => Quirks::Intended,
            },
        },
        judgerbench_always: args.judgerbench,
    }
}

pub fn run(args: ScoreArgs) -> anyhow::Result<i32> {
    let policy = match args.gt {
        GtArg::R1 => LabelPolicy::HumanThenGoldThenConsensus,
        GtArg::Moj => LabelPolicy::HumanThenConsensus,
    };
    let review = open_reviewed_with(&args.data, &args.panel, policy)?;
    let panel = review
        .panel()
        .map(|p| p.judges().to_vec())
        .unwrap_or_default();
    let mut report = Report::build(
        review.items(),
        &review.final_labels(),
        &options(&args, panel),
    )?;
    report.humans = review.human_agreement();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

fn num(x: Option<usize>) -> String {
    x.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn kappa(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// Agreement between the annotators: kappa per pair on the items the pair shares, alpha over
/// everyone.
fn humans_section(h: &crate::metrics::agreement::HumanAgreement) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nAgreement between annotators ({} items decided by two or more)",
        h.shared_items
    );
    let mut t = Table::new(["annotators", "shared items", "agreed", "Cohen's kappa"]);
    for p in &h.pairs {
        t.row([
            format!("{} / {}", p.judge_a, p.judge_b),
            p.items.to_string(),
            p.agreed.to_string(),
            kappa(p.kappa),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "Krippendorff's alpha of the annotators ({}): {} over {} items",
        h.annotators.join(", "),
        kappa(h.alpha.alpha),
        h.alpha.items
    );
    out
}

/// The human-readable report: one section per metric, empty sections left out.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let l = &r.labels;
    let _ = writeln!(
        out,
        "{} items, {} with a final label (A {}, B {}, tie {})",
        r.items, r.labelled, l.a, l.b, l.tie
    );
    if let Some(h) = &r.humans {
        out.push_str(&humans_section(h));
    }
    if r.judges.is_empty() {
        let _ = writeln!(out, "no judges to score: the dataset has no judgments yet");
        return out;
    }

    let _ = writeln!(out, "\nAccuracy against the final labels");
    let mut t = Table::new([
        "judge",
        "accuracy",
        "correct",
        "compared",
        "unparsed",
        "off-scale",
        "missing",
        "no label",
    ]);
    for a in &r.accuracy {
        let c = &a.counts;
        t.row([
            a.judge.clone(),
            pct(a.accuracy),
            c.correct.to_string(),
            c.compared.to_string(),
            c.unparsed.to_string(),
            c.out_of_scale.to_string(),
            c.missing.to_string(),
            c.no_label.to_string(),
        ]);
    }
    out.push_str(&t.render());

    if let Some(jb) = &r.judgerbench {
        out.push_str(&judgerbench_section(jb));
    }
    if let Some(jb) = &r.judge_bench {
        out.push_str(&judge_bench_section(jb));
    }
    if let Some(rates) = r.alpaca_eval.as_deref().filter(|w| !w.is_empty()) {
        out.push_str(&alpaca_eval_section(rates));
    }

    if r.judges.len() > 1 {
        let _ = writeln!(out, "\nCohen's kappa (items both judged readably)");
        let mut pairs: BTreeMap<(&str, &str), String> = BTreeMap::new();
        for p in &r.agreement.cohen {
            let cell = format!("{} ({})", kappa(p.kappa), p.items);
            pairs.insert((&p.judge_a, &p.judge_b), cell.clone());
            pairs.insert((&p.judge_b, &p.judge_a), cell);
        }
        let mut t = Table::new(std::iter::once("").chain(r.judges.iter().map(String::as_str)));
        for a in &r.judges {
            let mut row = vec![a.clone()];
            for b in &r.judges {
                row.push(if a == b {
                    "·".to_string()
                } else {
                    pairs
                        .get(&(a.as_str(), b.as_str()))
                        .cloned()
                        .unwrap_or_default()
                });
            }
            t.row(row);
        }
        out.push_str(&t.render());
    }
    if let Some(f) = &r.agreement.fleiss {
        let _ = writeln!(
            out,
            "Fleiss' kappa of the panel ({}): {} over {} items ({} without every verdict left out)",
            f.judges.join(", "),
            kappa(f.kappa),
            f.items,
            f.skipped
        );
    }
    if let Some(k) = &r.agreement.krippendorff {
        let _ = writeln!(
            out,
            "Krippendorff's alpha of the panel (nominal): {} over {} items (every item two or more judges rated, missing verdicts kept out)",
            kappa(k.alpha),
            k.items
        );
    }

    if !r.position_consistency.is_empty() {
        let _ = writeln!(out, "\nPosition consistency (judged in both orders)");
        let mut t = Table::new([
            "judge",
            "consistent",
            "pairs",
            "rate",
            "first",
            "second",
            "tie",
            "incomplete",
        ]);
        for p in &r.position_consistency {
            t.row([
                p.judge.clone(),
                p.consistent.to_string(),
                p.pairs.to_string(),
                pct(p.rate),
                p.first_position.to_string(),
                p.second_position.to_string(),
                p.tie_involved.to_string(),
                p.incomplete.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }

    if r.categories.len() > 1 {
        let _ = writeln!(out, "\nAccuracy per category");
        let header = ["category", "items", "labelled"]
            .into_iter()
            .map(String::from)
            .chain(r.judges.iter().cloned());
        let mut t = Table::new(header);
        for c in &r.categories {
            let mut row = vec![
                c.category.clone().unwrap_or_else(|| "(none)".into()),
                c.items.to_string(),
                c.labelled.to_string(),
            ];
            row.extend(c.accuracy.iter().map(|a| pct(a.accuracy)));
            t.row(row);
        }
        out.push_str(&t.render());
    }

    if !r.leaderboard.labels.is_empty() {
        let _ = writeln!(out, "\nWins per model (final labels, then each judge)");
        let header = ["model", "labels", "losses", "ties"]
            .into_iter()
            .map(String::from)
            .chain(r.leaderboard.judges.iter().map(|j| j.judge.clone()));
        let mut t = Table::new(header);
        for m in &r.leaderboard.labels {
            let mut row = vec![
                m.model.clone(),
                m.wins.to_string(),
                m.losses.to_string(),
                m.ties.to_string(),
            ];
            for j in &r.leaderboard.judges {
                let w = j
                    .models
                    .iter()
                    .find(|x| x.model == m.model)
                    .map_or(0, |x| x.wins);
                row.push(w.to_string());
            }
            t.row(row);
        }
        out.push_str(&t.render());
    }
    out
}

/// The AlpacaEval section: each evaluated model's win rate against its baseline, per annotator,
/// with the columns of AlpacaEval's leaderboards.
fn alpaca_eval_section(rates: &[WinRate]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nAlpacaEval win rate (100 x mean preference for the model over the baseline)"
    );
    let mut t = Table::new([
        "annotator",
        "model",
        "baseline",
        "win rate",
        "std err",
        "wins",
        "base wins",
        "draws",
        "total",
        "no pref",
        "discrete",
    ]);
    for w in rates {
        t.row([
            w.judge.clone(),
            w.model.clone(),
            w.baseline.clone(),
            pct(w.win_rate),
            pct(w.standard_error),
            w.n_wins.to_string(),
            w.n_wins_base.to_string(),
            w.n_draws.to_string(),
            w.n_total.to_string(),
            w.missing.to_string(),
            pct(w.discrete_win_rate),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// The JudgerBenchV2 section: each judge's table by category, then, for several judges, the
/// paper's summary (one row per judge, each column's mean over the categories) and the final
/// score of every judge in every category.
fn judgerbench_section(jb: &JudgerbenchReport) -> String {
    let mut out = String::new();
    let o = &jb.options;
    let _ = writeln!(
        out,
        "\nJudgerBenchV2 (ground truth {}, quirks {}, base model {})",
        match o.ground_truth {
            GroundTruth::R1 => "r1",
            GroundTruth::Moj => "moj",
        },
        match o.quirks {
            Quirks::Reference => "reference",
            Quirks::Intended => "intended",
        },
        o.base_model
    );
    let _ = writeln!(
        out,
        "final = (accuracy - normalized + 100) / 2; normalized = 100 * mean over models of (|rank diff| / (n - 1) + |win diff| / max |win diff|)"
    );
    for j in &jb.judges {
        out.push_str(&judgerbench_table(j));
    }
    if jb.judges.len() > 1 {
        let mut t = Table::new([
            "judge",
            "accuracy",
            "rank diff",
            "score diff",
            "normalized",
            "final",
            "categories",
        ]);
        for j in &jb.judges {
            let m = &j.mean;
            t.row([
                j.judge.clone(),
                pct(m.accuracy),
                pct(m.rank_diff),
                pct(m.score_diff),
                pct(m.normalized_diff),
                pct(m.final_score),
                format!("{}/{}", m.categories, j.categories.len()),
            ]);
        }
        let _ = writeln!(
            out,
            "\nJudgerBenchV2 summary: mean over the scored categories"
        );
        out.push_str(&t.render());

        let mut t = Table::new(
            std::iter::once("category".to_string())
                .chain(jb.judges.iter().map(|j| j.judge.clone())),
        );
        let names: Vec<&str> = jb.judges[0]
            .categories
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        for name in names {
            let row = std::iter::once(name.to_string()).chain(jb.judges.iter().map(|j| {
                pct(j
                    .categories
                    .iter()
                    .find(|c| c.category == name)
                    .and_then(|c| c.final_score))
            }));
            t.row(row);
        }
        let _ = writeln!(out, "\nJudgerBenchV2 final score per category");
        out.push_str(&t.render());
    }
    out
}

/// The JudgeBench section (ScalerLab's benchmark, not JudgerBenchV2): one row per judge, the
/// score per source group and overall, as `run_judge.py` prints them.
fn judge_bench_section(jb: &JudgeBenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nJudgeBench (ScalerLab) over {} labelled pairs: a pair is correct when its right decisions outnumber the flipped ones over the games played",
        jb.pairs
    );
    let header = ["judge", "games"]
        .into_iter()
        .map(String::from)
        .chain(JUDGE_BENCH_GROUPS.iter().map(|(g, _)| g.to_string()))
        .chain(["overall".to_string(), "correct".to_string()]);
    let mut t = Table::new(header);
    for j in &jb.judges {
        let mut row = vec![
            j.judge.clone(),
            match j.games {
                Games::Both => "both".to_string(),
                Games::Single => "single".to_string(),
            },
        ];
        row.extend(j.groups.iter().map(|g| pct(g.score)));
        row.push(pct(j.overall.score));
        row.push(format!("{}/{}", j.overall.correct, j.overall.pairs));
        t.row(row);
    }
    out.push_str(&t.render());
    out
}

/// A judge's JudgerBenchV2 table: one row per category and the mean, like the paper's
/// Appendix B.
fn judgerbench_table(j: &JudgeScore) -> String {
    let mut t = Table::new([
        "category",
        "accuracy",
        "rank diff",
        "score diff",
        "normalized",
        "final",
        "parsed",
        "gt",
    ]);
    for c in &j.categories {
        t.row([
            c.category.clone(),
            pct(c.accuracy),
            num(c.rank_diff),
            num(c.score_diff),
            pct(c.normalized_diff),
            pct(c.final_score),
            format!("{}/{}", c.parsed, c.items),
            match c.gt_source {
                GtSource::R1Table => "r1 table".to_string(),
                GtSource::Tally => "tally".to_string(),
            },
        ]);
    }
    let m = &j.mean;
    t.row([
        format!("mean ({})", m.categories),
        pct(m.accuracy),
        pct(m.rank_diff),
        pct(m.score_diff),
        pct(m.normalized_diff),
        pct(m.final_score),
        String::new(),
        String::new(),
    ]);
    format!("\n{}\n{}", j.judge, t.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Item;
    use crate::metrics::testutil::{item, judged};
    use crate::verdict::Outcome::{self, *};

    fn battle(
        id: &str,
        category: &str,
        a: &str,
        b: &str,
        js: Vec<crate::dataset::Judgment>,
    ) -> Item {
        let mut it = item(id, js);
        it.category = Some(category.into());
        it.response_a.model = a.into();
        it.response_b.model = b.into();
        it
    }

    #[test]
    fn renders_every_section_with_the_numbers_of_the_report() {
        let base = crate::metrics::DEFAULT_BASE_MODEL;
        let items = vec![
            battle(
                "1",
                "Knowledge",
                "m1",
                base,
                vec![
                    judged("x", Some(A), false),
                    judged("y", Some(A), false),
                    judged("x", Some(A), true),
                ],
            ),
            battle(
                "2",
                "Knowledge",
                base,
                "m2",
                vec![
                    judged("x", Some(B), false),
                    judged("y", Some(A), false),
                    judged("x", Some(A), true),
                ],
            ),
            battle(
                "3",
                "Code & AI",
                "m1",
                base,
                vec![judged("x", Some(B), false), judged("y", Some(B), false)],
            ),
            battle(
                "4",
                "Code & AI",
                base,
                "m2",
                vec![judged("x", Some(B), false), judged("y", Some(B), false)],
            ),
        ];
        let labels: Vec<Option<Outcome>> = vec![Some(A), Some(B), Some(B), Some(A)];
        let r = Report::build(&items, &labels, &ScoreOptions::default()).expect("valid");
        let text = render(&r);
        for needle in [
            "4 items, 4 with a final label (A 2, B 2, tie 0)",
            "Accuracy against the final labels",
            "JudgerBenchV2 (ground truth r1, quirks intended",
            "Code_and_AI",
            "mean (2)",
            "final = (accuracy - normalized + 100) / 2",
            "JudgerBenchV2 summary: mean over the scored categories",
            "JudgerBenchV2 final score per category",
            "Cohen's kappa",
            "Fleiss' kappa of the panel (x, y)",
            "Krippendorff's alpha of the panel (nominal)",
            "Position consistency",
            "Accuracy per category",
            "Wins per model",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // x: right on 1, 2 and 4 → 75.00; y: right on 1 and 3 → 50.00.
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Accuracy against"))
            .skip(3)
            .take(2)
            .collect();
        assert!(
            rows[0].starts_with("x ") && rows[0].contains("75.00"),
            "{text}"
        );
        assert!(
            rows[1].starts_with("y ") && rows[1].contains("50.00"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_alpaca_eval_section_only_for_graded_preferences() {
        let mut items = vec![
            battle("1", "c", "base", "m", vec![judged("ann", Some(B), false)]),
            battle("2", "c", "base", "m", vec![judged("ann", Some(A), false)]),
        ];
        let plain =
            Report::build(&items, &[Some(B), Some(A)], &ScoreOptions::default()).expect("report");
        assert!(!render(&plain).contains("AlpacaEval"));
        items[0].judgments[0].preference = Some(0.9);
        items[1].judgments[0].preference = Some(0.0);
        let r =
            Report::build(&items, &[Some(B), Some(A)], &ScoreOptions::default()).expect("report");
        let rates = r.alpaca_eval.as_ref().expect("graded preferences");
        let text = render(&r);
        assert!(text.contains("AlpacaEval win rate"), "{text}");
        assert!(text.contains(&pct(rates[0].win_rate)), "{text}");
        assert_eq!(rates[0].win_rate, Some(45.0));
    }
}
