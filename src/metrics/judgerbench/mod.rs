//! The JudgerBenchV2 score of a judge (CompassJudger-2 paper; reference implementation
//! `Judgerbenchv2Evaluator` in `opencompass/openicl/icl_evaluator/icl_judge_evaluator.py` of
//! open-compass/opencompass, read at commit a5acc4bba3b658f151617a3b393602110fb7a740, whose
//! last change to that file is 9eaa1f6 (#2095)).
//!
//! Per category: accuracy = 100 · correct / parsed verdicts (a letter outside A/B counts in
//! the denominator and is wrong; an unreadable output is dropped); win counts W(m) of each
//! tested model m (wins of the base model are not counted); ranks by (wins desc, name asc);
//! rank_diff = Σ|Δrank|, score_diff = Σ|ΔW|; normalized_diff = 100 · mean over models of
//! (|Δrank|/(n − 1) + |ΔW|/max|ΔW|); final = (accuracy − normalized_diff + 100) / 2. The
//! paper's table reports each column's plain mean over the categories.
//!
//! Ground truth (`GroundTruth`): `R1` uses the items' final labels as the reference uses R1's
//! `r1_gt`, and R1's win table for the ten released categories (`r1.rs`) when the labels are
//! exactly the dataset's gold labels; in every other case (other data, human decisions that
//! changed a label, `Moj`) the ground-truth wins are a tally of the labels. The labels passed in
//! are the final labels, so a human decision overrides either source.
//!
//! Where the reference misbehaves, `Quirks::Reference` reproduces it for parity (and warns),
//! and `Quirks::Intended` (the default) computes what the formula means:
//!
//! | case | `Reference` | `Intended` |
//! |---|---|---|
//! | a tested model with no wins from the judge | drops out of the judge's side: n shrinks, and max\|ΔW\| zips two name-sorted lists by position | ranked with 0 wins; max\|ΔW\| over each model's own pair; a warning gives the reference's normalized_diff |
//! | max\|ΔW\| = 0 (the judge's counts equal the ground truth's) | raises ZeroDivisionError: no score | win term 0 (warned) |
//! | one model counted (n − 1 = 0) | raises ZeroDivisionError: no score | rank term 0 (warned) |
//! | no tested model won (incl. no parsed verdict) | raises ValueError (`max()` of nothing): no score | drift over zero wins; no parsed verdict: no accuracy, no final score |
//! | the judge gave wins to a model the ground truth lacks | raises KeyError: no score | that model has 0 ground-truth wins |
//! | R1's table lists models absent from the items | the ground truth is ranked over all ten | only the models in the items count (warned) |
//! | an item whose label is neither A nor B | counted as "B" (`'A' if r1_gt == ModelA else 'B'`) | left out of the accuracy |
//!
//! Where the reference raises, `CategoryScore::reference_error` names the exception and the
//! category has no final score (the accuracy is still shown); the mean covers the categories
//! that have one.

pub mod drift;
pub mod r1;

use super::{answer, percent, Answer};
use crate::dataset::Item;
use crate::verdict::Outcome;
use drift::{Drift, ReferenceFailure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the ground truth comes from (a human decision overrides either).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundTruth {
    /// DeepSeek-R1's verdicts (the dataset's gold labels), as the reference implementation does.
    #[default]
    R1,
    /// The Mixture-of-Judges majority, as the paper describes its ground truth.
    Moj,
}

/// Whether to reproduce the reference implementation's misbehaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quirks {
    /// Number for number what the reference computes, including a model with no wins dropping
    /// out, and no score where it raises.
    Reference,
    /// The value the formula intends.
    #[default]
    Intended,
}

/// How to compute the JudgerBenchV2 score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgerbenchOptions {
    /// The reference model whose wins are not counted.
    pub base_model: String,
    pub ground_truth: GroundTruth,
    pub quirks: Quirks,
}

impl Default for JudgerbenchOptions {
    fn default() -> Self {
        JudgerbenchOptions {
            base_model: super::DEFAULT_BASE_MODEL.to_string(),
            ground_truth: GroundTruth::default(),
            quirks: Quirks::default(),
        }
    }
}

/// Where a category's ground-truth win counts came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GtSource {
    /// R1's table, as the reference hard-codes it.
    R1Table,
    /// A tally of the labels' winners.
    Tally,
}

/// One tested model's standing in a category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStanding {
    pub model: String,
    pub wins: usize,
    pub gt_wins: usize,
    /// `None` where the model was not ranked (the reference drops a model with no wins).
    pub rank: Option<usize>,
    pub gt_rank: Option<usize>,
}

/// A judge's score in one category. The figures are `None` where they are undefined (no
/// parsed verdict) or, with `Quirks::Reference`, where the reference raises.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoryScore {
    pub category: String,
    pub items: usize,
    /// Verdicts that count: A, B, or an answer outside the scale.
    pub parsed: usize,
    pub correct: usize,
    /// Parsed answers other than A or B (always wrong, never a win).
    pub out_of_scale: usize,
    /// Outputs with no readable verdict (dropped, as the reference does).
    pub unparsed: usize,
    /// Items the judge did not judge.
    pub missing: usize,
    /// Parsed items whose label is neither A nor B (left out under `Intended`, counted as B
    /// under `Reference`).
    pub no_label: usize,
    pub accuracy: Option<f64>,
    pub rank_diff: Option<usize>,
    pub score_diff: Option<usize>,
    pub max_score_diff: Option<usize>,
    pub normalized_diff: Option<f64>,
    pub final_score: Option<f64>,
    pub gt_source: GtSource,
    pub models: Vec<ModelStanding>,
    /// Set when `Quirks::Reference` and the reference raises here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_error: Option<ReferenceFailure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The mean of each column over the categories with a final score, like the paper's table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanScore {
    /// Categories averaged (those with a final score).
    pub categories: usize,
    pub accuracy: Option<f64>,
    pub rank_diff: Option<f64>,
    pub score_diff: Option<f64>,
    pub normalized_diff: Option<f64>,
    pub final_score: Option<f64>,
}

/// One judge's JudgerBenchV2 score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeScore {
    pub judge: String,
    pub categories: Vec<CategoryScore>,
    pub mean: MeanScore,
}

/// The JudgerBenchV2 part of a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgerbenchReport {
    pub options: JudgerbenchOptions,
    pub judges: Vec<JudgeScore>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// True when the items look like JudgerBenchV2: some item is in one of its ten categories and
/// has the base model on one side. (Other data can still be scored the JudgerBenchV2 way by
/// calling `score`; `ScoreOptions::judgerbench_always` does so in a report.)
pub fn applies(items: &[Item], base_model: &str) -> bool {
    items.iter().any(|i| {
        i.category
            .as_deref()
            .is_some_and(|c| r1::position(c).is_some())
            && (i.response_a.model == base_model || i.response_b.model == base_model)
    })
}

/// The items of each category (category name as the table shows it), the ten known
/// categories first in the paper's order, then the others by name.
fn categories(items: &[Item]) -> Vec<(String, Vec<usize>)> {
    let mut groups: BTreeMap<(usize, String), Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let raw = item.category.as_deref().unwrap_or("(none)");
        let key = match r1::position(raw) {
            Some(p) => (p, r1::canonical(raw).to_string()),
            None => (r1::WINS.len(), raw.to_string()),
        };
        groups.entry(key).or_default().push(i);
    }
    groups.into_iter().map(|((_, c), v)| (c, v)).collect()
}

/// The tested (non-base) models of an item.
fn tested<'a>(item: &'a Item, base: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    [&item.response_a.model, &item.response_b.model]
        .into_iter()
        .filter(move |m| m.as_str() != base)
        .map(String::as_str)
}

/// The winning tested model of an item under an outcome, if any.
fn winner<'a>(item: &'a Item, outcome: Outcome, base: &str) -> Option<&'a str> {
    let m = match outcome {
        Outcome::A => &item.response_a.model,
        Outcome::B => &item.response_b.model,
        Outcome::Tie => return None,
    };
    (m != base).then_some(m.as_str())
}

/// The ground truth's win counts for one category, and where they came from.
fn gt_wins(
    category: &str,
    members: &[usize],
    items: &[Item],
    labels: &[Option<Outcome>],
    opts: &JudgerbenchOptions,
    warnings: &mut Vec<String>,
) -> (BTreeMap<String, usize>, GtSource) {
    let base = opts.base_model.as_str();
    if opts.ground_truth == GroundTruth::R1 {
        if let Some(table) = r1::wins(category) {
            let table: BTreeMap<String, usize> = table.map(|(m, w)| (m.to_string(), w)).collect();
            let overridden = members
                .iter()
                .filter(|&&i| labels[i] != items[i].gold)
                .count();
            let unknown = members
                .iter()
                .flat_map(|&i| tested(&items[i], base))
                .find(|m| !table.contains_key(*m));
            match (overridden, unknown) {
                (0, None) => return (table, GtSource::R1Table),
                (n, None) => warnings.push(format!(
                    "{category}: {n} label(s) differ from R1's (human decisions), so the ground-truth wins are a tally of the labels, not R1's table"
                )),
                (_, Some(m)) => warnings.push(format!(
                    "{category}: model {m:?} is not in R1's table, so the ground-truth wins are a tally of the labels"
                )),
            }
        }
    }
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for &i in members {
        for m in tested(&items[i], base) {
            tally.entry(m.to_string()).or_insert(0);
        }
        if let Some(m) = labels[i].and_then(|o| winner(&items[i], o, base)) {
            *tally.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    (tally, GtSource::Tally)
}

/// Scores `judge` on one category's items.
fn score_category(
    category: &str,
    members: &[usize],
    items: &[Item],
    labels: &[Option<Outcome>],
    judge: &str,
    opts: &JudgerbenchOptions,
) -> CategoryScore {
    let base = opts.base_model.as_str();
    let reference = opts.quirks == Quirks::Reference;
    let mut warnings = Vec::new();
    let (gt, gt_source) = gt_wins(category, members, items, labels, opts, &mut warnings);
    let mut s = CategoryScore {
        category: category.to_string(),
        items: members.len(),
        parsed: 0,
        correct: 0,
        out_of_scale: 0,
        unparsed: 0,
        missing: 0,
        no_label: 0,
        accuracy: None,
        rank_diff: None,
        score_diff: None,
        max_score_diff: None,
        normalized_diff: None,
        final_score: None,
        gt_source,
        models: Vec::new(),
        reference_error: None,
        warnings: Vec::new(),
    };
    // Every tested model starts at zero wins; the reference's dictionary is the subset with
    // at least one.
    let mut wins: BTreeMap<String, usize> = BTreeMap::new();
    for &i in members {
        for m in tested(&items[i], base) {
            wins.entry(m.to_string()).or_insert(0);
        }
    }
    let mut compared = 0;
    for &i in members {
        let item = &items[i];
        let choice = match answer(item, judge) {
            Answer::Verdict(o @ (Outcome::A | Outcome::B)) => Some(o),
            // A tie is outside JudgerBenchV2's two-letter scale.
            Answer::Verdict(Outcome::Tie) | Answer::OutOfScale => {
                s.out_of_scale += 1;
                None
            }
            Answer::Unparsed => {
                s.unparsed += 1;
                continue;
            }
            Answer::Missing => {
                s.missing += 1;
                continue;
            }
        };
        s.parsed += 1;
        let gt_side = match labels[i] {
            Some(o @ (Outcome::A | Outcome::B)) => Some(o),
            _ => {
                s.no_label += 1;
                reference.then_some(Outcome::B)
            }
        };
        if let Some(g) = gt_side {
            compared += 1;
            s.correct += usize::from(choice == Some(g));
        }
        if let Some(m) = choice.and_then(|o| winner(item, o, base)) {
            *wins.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    s.accuracy = percent(s.correct, compared);
    if s.no_label > 0 {
        warnings.push(if reference {
            format!("{category}: {} parsed item(s) have no A/B label; counted as B, as the reference does", s.no_label)
        } else {
            format!("{category}: {} parsed item(s) have no A/B label and are left out of the accuracy", s.no_label)
        });
    }

    let drift: Option<Drift> = if reference {
        let present: BTreeMap<String, usize> = wins
            .iter()
            .filter(|(_, &w)| w > 0)
            .map(|(m, w)| (m.clone(), *w))
            .collect();
        let dropped: Vec<&String> = wins
            .iter()
            .filter(|(_, &w)| w == 0)
            .map(|(m, _)| m)
            .collect();
        if !dropped.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|m| m.as_str()).collect();
            warnings.push(format!(
                "{category}: reference quirk: {} had no wins from this judge and drop out (n = {}, and max|ΔW| pairs models by position)",
                names.join(", "),
                present.len()
            ));
        }
        match drift::reference(&present, &gt) {
            Ok(d) => Some(d),
            Err(e) => {
                warnings.push(format!(
                    "{category}: the reference raises here ({e}); no score"
                ));
                s.reference_error = Some(e);
                None
            }
        }
    } else {
        // The tested models are those in the category's items (`wins` lists every one). A
        // table model absent from the data would otherwise count as a judge's zero wins
        // against R1's full count.
        let absent: Vec<&str> = gt
            .keys()
            .filter(|m| !wins.contains_key(*m))
            .map(String::as_str)
            .collect();
        if !absent.is_empty() {
            warnings.push(format!(
                "{category}: R1's table lists {} not in these items (left out); the table counts 100 prompts per model, so the win differences are not comparable to the paper's",
                absent.join(", ")
            ));
        }
        let present_gt: BTreeMap<String, usize> = gt
            .iter()
            .filter(|(m, _)| wins.contains_key(*m))
            .map(|(m, w)| (m.clone(), *w))
            .collect();
        let d = drift::intended(&wins, &present_gt);
        if let Some(d) = &d {
            if d.models == 1 {
                warnings.push(format!(
                    "{category}: one tested model only; its rank term counts as 0 (OpenCompass's evaluator raises ZeroDivisionError here)"
                ));
            }
            if d.max_score_diff == 0 {
                warnings.push(format!("{category}: the judge's win counts equal the ground truth's; the win term counts as 0 (OpenCompass's evaluator raises ZeroDivisionError here)"));
            }
        }
        // Say where OpenCompass's own numbers would differ, so that a user comparing the two
        // knows why (the table above documents each case).
        let dropped: Vec<&str> = wins
            .iter()
            .filter(|(_, &w)| w == 0)
            .map(|(m, _)| m.as_str())
            .collect();
        if !dropped.is_empty() && s.parsed > 0 {
            let present: BTreeMap<String, usize> = wins
                .iter()
                .filter(|(_, &w)| w > 0)
                .map(|(m, w)| (m.clone(), *w))
                .collect();
            let theirs = match drift::reference(&present, &gt) {
                Ok(r) => format!(
                    "would report normalized_diff {:.6} (max|ΔW| {}) instead",
                    r.normalized_diff, r.max_score_diff
                ),
                Err(e) => format!("raises here ({e})"),
            };
            warnings.push(format!(
                "{category}: {} had no wins from this judge; OpenCompass's evaluator drops such models and {theirs}; Arbiter counts them with 0 wins (--quirks reference reproduces OpenCompass)",
                dropped.join(", ")
            ));
        }
        d
    };
    if s.parsed == 0 {
        warnings.push(format!(
            "{category}: no parsed verdict from this judge; no accuracy and no score"
        ));
    }

    let mut models: BTreeMap<&str, ModelStanding> = BTreeMap::new();
    for m in wins.keys().chain(gt.keys()) {
        models.entry(m).or_insert_with(|| ModelStanding {
            model: m.clone(),
            wins: wins.get(m).copied().unwrap_or(0),
            gt_wins: gt.get(m).copied().unwrap_or(0),
            rank: drift.as_ref().and_then(|d| d.ranks.get(m).copied()),
            gt_rank: drift.as_ref().and_then(|d| d.gt_ranks.get(m).copied()),
        });
    }
    s.models = models.into_values().collect();
    s.models.sort_by(|a, b| {
        b.gt_wins
            .cmp(&a.gt_wins)
            .then_with(|| a.model.cmp(&b.model))
    });
    if let (Some(d), Some(acc)) = (&drift, s.accuracy) {
        s.rank_diff = Some(d.rank_diff);
        s.score_diff = Some(d.score_diff);
        s.max_score_diff = Some(d.max_score_diff);
        s.normalized_diff = Some(d.normalized_diff);
        s.final_score = Some(final_score(acc, d.normalized_diff));
    } else if let Some(d) = &drift {
        // Without an accuracy there is no final score, but the drift is still worth showing.
        s.rank_diff = Some(d.rank_diff);
        s.score_diff = Some(d.score_diff);
        s.max_score_diff = Some(d.max_score_diff);
        s.normalized_diff = Some(d.normalized_diff);
    }
    s.warnings = warnings;
    s
}

/// final = (accuracy − normalized_diff + 100) / 2 (the paper's Appendix B relation).
pub fn final_score(accuracy: f64, normalized_diff: f64) -> f64 {
    (accuracy - normalized_diff + 100.0) / 2.0
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The plain mean of each column over the categories that have a final score.
pub fn mean_score(categories: &[CategoryScore]) -> MeanScore {
    let scored: Vec<&CategoryScore> = categories
        .iter()
        .filter(|c| c.final_score.is_some())
        .collect();
    MeanScore {
        categories: scored.len(),
        accuracy: mean(scored.iter().filter_map(|c| c.accuracy)),
        rank_diff: mean(scored.iter().filter_map(|c| c.rank_diff.map(|x| x as f64))),
        score_diff: mean(scored.iter().filter_map(|c| c.score_diff.map(|x| x as f64))),
        normalized_diff: mean(scored.iter().filter_map(|c| c.normalized_diff)),
        final_score: mean(scored.iter().filter_map(|c| c.final_score)),
    }
}

/// The JudgerBenchV2 score of each of `judges`, per category and averaged. `labels` are the
/// items' final labels in item order (missing entries count as unlabelled).
pub fn score(
    items: &[Item],
    labels: &[Option<Outcome>],
    judges: &[String],
    opts: &JudgerbenchOptions,
) -> JudgerbenchReport {
    let labels: Vec<Option<Outcome>> = (0..items.len())
        .map(|i| labels.get(i).copied().flatten())
        .collect();
    let groups = categories(items);
    let mut warnings = Vec::new();
    let judges: Vec<JudgeScore> = judges
        .iter()
        .map(|judge| {
            let categories: Vec<CategoryScore> = groups
                .iter()
                .map(|(c, members)| score_category(c, members, items, &labels, judge, opts))
                .collect();
            let mean = mean_score(&categories);
            if mean.categories < categories.len() {
                warnings.push(format!(
                    "{judge}: the mean covers {} of {} categories (the others have no score)",
                    mean.categories,
                    categories.len()
                ));
            }
            for c in &categories {
                warnings.extend(c.warnings.iter().map(|w| format!("{judge}: {w}")));
            }
            JudgeScore {
                judge: judge.clone(),
                categories,
                mean,
            }
        })
        .collect();
    JudgerbenchReport {
        options: opts.clone(),
        judges,
        warnings,
    }
}

#[cfg(test)]
mod tests;
