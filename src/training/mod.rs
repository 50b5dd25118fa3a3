//! Training data from the resolved labels, in the layouts TRL's trainers read (`rows`):
//! - `sft`: each critique whose verdict matches its item's final label (rejection sampling, as
//!   CompassJudger-2's training data was kept), as the messages its judge was sent followed by
//!   the critique;
//! - `dpo`: a matching and a non-matching critique of the same prompt (item, template, order);
//! - `preference`: each item's two responses ranked by its final label, for reward models.
//!
//! The prompt of a critique is the one its judge was sent (`prompt`). Every judgment or item
//! left out is counted with its reason in a `Summary`, per judge.

mod prompt;
mod rows;

pub use prompt::{recover_prompt, PromptSource, RecoveredPrompt};
pub use rows::{write_rows, DpoRow, PreferenceRow, SftRow};

use crate::critique::parse_critique;
use crate::dataset::{Item, Judgment, Message};
use crate::moj::LabelSource;
use crate::prompts::Library;
use crate::verdict::{Order, Outcome, OutputFormat};
use serde::Serialize;
use std::collections::BTreeMap;

/// An item's final label and where it came from, in dataset order (`Review::final_label`).
pub type Label = Option<(Outcome, LabelSource)>;

/// Which layout is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    #[default]
    Sft,
    Dpo,
    Preference,
}

/// Which labels and critiques may become training data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only items a person decided; the panel's consensus is not taken as a label.
    pub human_only: bool,
    /// A critique counts as matching only when its judge's critique of the same item in the
    /// other order matches the label too (no position bias behind the verdict).
    pub both_orders: bool,
    /// Leave out critiques whose generation stopped at its token limit.
    pub drop_truncated: bool,
    /// Leave out critiques the template's parser cannot read cleanly, or that lack a field the
    /// template's answer asks for.
    pub drop_malformed: bool,
    /// Keep critiques whose prompt was rendered again from a template that cannot be shown to
    /// be the one their judge used.
    pub allow_unverified_prompts: bool,
}

/// Why a judgment (or, for `preference`, an item) did not become training data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    NoLabel,
    NotHumanDecided,
    TieLabel,
    NoOutput,
    NoVerdict,
    Disagrees,
    NoPrompt,
    TemplateUnavailable,
    PromptUnverified,
    Truncated,
    Malformed,
    OtherOrderDisagrees,
    NoCounterpart,
}

impl Skip {
    /// What the reason means, for the summary people read.
    pub fn describe(self) -> &'static str {
        match self {
            Skip::NoLabel => "the item has no final label (an undecided dispute)",
            Skip::NotHumanDecided => "no person decided the item (--human-only)",
            Skip::TieLabel => "the final label is a tie",
            Skip::NoOutput => "the judge's output text is not known",
            Skip::NoVerdict => "no verdict could be read from the output",
            Skip::Disagrees => "its verdict differs from the final label",
            Skip::NoPrompt => "no record of the prompt (the judgment came with the dataset)",
            Skip::TemplateUnavailable => "its template is no longer available to render",
            Skip::PromptUnverified => {
                "its template may have changed since judging (--allow-unverified-prompts keeps it)"
            }
            Skip::Truncated => "the output hit its token limit (--drop-truncated)",
            Skip::Malformed => "the output is malformed or lacks a field (--drop-malformed)",
            Skip::OtherOrderDisagrees => {
                "its critique in the other order does not match the label (--both-orders)"
            }
            Skip::NoCounterpart => "no critique of the same prompt on the other side of the label",
        }
    }
}

/// How one judge's judgments were used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JudgeTally {
    /// Judgments written (for `dpo`: used in at least one pair).
    pub kept: usize,
    /// For `dpo`: pairs where this judge's critique is the chosen one, and the rejected one.
    #[serde(skip_serializing_if = "is_zero")]
    pub chosen: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub rejected: usize,
    /// The other judgments, by reason.
    pub skipped: BTreeMap<Skip, usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What an export wrote and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub layout: Layout,
    /// Rows written.
    pub written: usize,
    /// Per judge (`sft`, `dpo`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub judges: BTreeMap<String, JudgeTally>,
    /// Where the prompts of the written rows came from (`sft`, `dpo`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<PromptSource, usize>,
    /// Items left out, by reason (`preference`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub items_skipped: BTreeMap<Skip, usize>,
}

impl Summary {
    fn skip(&mut self, judge: &str, why: Skip) {
        *self
            .judges
            .entry(judge.to_string())
            .or_default()
            .skipped
            .entry(why)
            .or_default() += 1;
    }
}

/// A judgment that passed every check but the label's: it can be written.
#[derive(Clone, Debug)]
struct Candidate<'a> {
    item: &'a Item,
    judgment: &'a Judgment,
    output: &'a str,
    prompt: RecoveredPrompt,
    label: Outcome,
    label_source: LabelSource,
    matches: bool,
}

impl Candidate<'_> {
    fn order(&self) -> Order {
        if self.judgment.swapped {
            Order::Swapped
        } else {
            Order::Original
        }
    }
}

/// The item's label if `filters` let it be used.
fn usable_label(label: Label, filters: &Filters) -> Result<(Outcome, LabelSource), Skip> {
    let (outcome, source) = label.ok_or(Skip::NoLabel)?;
    if filters.human_only && source != LabelSource::Human {
        return Err(Skip::NotHumanDecided);
    }
    Ok((outcome, source))
}

/// Every judgment of every item, checked: the ones that can be written (matching the label or
/// not), and the reasons for the others counted in `summary`. `for_pairs` keeps judgments that
/// disagree with the label (the rejected side of DPO pairs).
fn candidates<'a>(
    items: &'a [Item],
    labels: &[Label],
    library: &Library,
    filters: &Filters,
    summary: &mut Summary,
    for_pairs: bool,
) -> Vec<Candidate<'a>> {
    let mut out = Vec::new();
    for (item, label) in items.iter().zip(labels) {
        for judgment in &item.judgments {
            match check(item, judgment, *label, library, filters, for_pairs) {
                Ok(c) => out.push(c),
                Err(why) => summary.skip(&judgment.judge, why),
            }
        }
    }
    out
}

fn check<'a>(
    item: &'a Item,
    judgment: &'a Judgment,
    label: Label,
    library: &Library,
    filters: &Filters,
    for_pairs: bool,
) -> Result<Candidate<'a>, Skip> {
    let (label, label_source) = usable_label(label, filters)?;
    let verdict = judgment.outcome().ok_or(Skip::NoVerdict)?;
    let matches = verdict == label;
    if !matches && !for_pairs {
        return Err(Skip::Disagrees);
    }
    let output = judgment.output.as_deref().ok_or(Skip::NoOutput)?;
    let prompt = recover_prompt(item, judgment, library)?;
    if prompt.source == PromptSource::RerenderedUnverified && !filters.allow_unverified_prompts {
        return Err(Skip::PromptUnverified);
    }
    if filters.drop_truncated && truncated(judgment) {
        return Err(Skip::Truncated);
    }
    if filters.drop_malformed && malformed(item, output, &prompt.template, library) {
        return Err(Skip::Malformed);
    }
    if matches && filters.both_orders && !other_order_matches(item, judgment, label) {
        return Err(Skip::OtherOrderDisagrees);
    }
    Ok(Candidate {
        item,
        judgment,
        output,
        prompt,
        label,
        label_source,
        matches,
    })
}

/// Whether the generation stopped at its token limit, as the run record says (`finish`, or a
/// remote server's own `finish_reason`).
fn truncated(judgment: &Judgment) -> bool {
    ["finish", "finish_reason"]
        .iter()
        .any(|k| judgment.run.get(*k).and_then(|v| v.as_str()) == Some("length"))
}

/// Whether `output` is not a clean answer in the template's format: the parser reports a
/// problem (a field cut off, a repeated verdict, conflicting labels), finds no verdict or
/// score, or a key the template's JSON answer asks for is missing or empty.
fn malformed(item: &Item, output: &str, template: &str, library: &Library) -> bool {
    let template = library.get(template).ok();
    let format = template.map_or(OutputFormat::Auto, |t| t.output());
    let critique = parse_critique(output, format);
    if !critique.problems.is_empty()
        || critique.conflicting.is_some()
        || (critique.verdict.is_none() && critique.score.is_none())
    {
        return true;
    }
    let keys = template
        .and_then(|t| t.answer_for(item.language.as_deref()))
        .and_then(|a| a.as_object());
    keys.is_some_and(|members| {
        members.iter().any(|m| {
            critique
                .field(&m.key)
                .is_none_or(|f| f.text.trim().is_empty())
        })
    })
}

/// Whether the same judge judged `item` in the other order with a verdict matching `label`.
fn other_order_matches(item: &Item, judgment: &Judgment, label: Outcome) -> bool {
    item.judgments.iter().any(|other| {
        other.judge == judgment.judge
            && other.swapped != judgment.swapped
            && other.outcome() == Some(label)
    })
}

fn sft_row(c: &Candidate<'_>) -> SftRow {
    let mut messages = c.prompt.messages.clone();
    messages.push(Message::new("assistant", c.output));
    SftRow {
        messages,
        item: c.item.id.clone(),
        judge: c.judgment.judge.clone(),
        order: c.order(),
        template: c.prompt.template.clone(),
        verdict: c
            .judgment
            .verdict
            .map(|v| v.label().to_string())
            .unwrap_or_default(),
        label: c.label,
        label_source: c.label_source,
        prompt_source: c.prompt.source,
    }
}

/// SFT examples: every critique whose verdict matches its item's final label, in dataset
/// order. `labels` is in dataset order too.
pub fn sft(
    items: &[Item],
    labels: &[Label],
    library: &Library,
    filters: &Filters,
) -> (Vec<SftRow>, Summary) {
    let mut summary = Summary {
        layout: Layout::Sft,
        ..Summary::default()
    };
    let rows: Vec<SftRow> = candidates(items, labels, library, filters, &mut summary, false)
        .iter()
        .map(|c| {
            summary
                .judges
                .entry(c.judgment.judge.clone())
                .or_default()
                .kept += 1;
            *summary.prompts.entry(c.prompt.source).or_default() += 1;
            sft_row(c)
        })
        .collect();
    summary.written = rows.len();
    (rows, summary)
}

/// DPO pairs: for each prompt (item, template, order and the exact messages), every critique
/// matching the final label paired with every critique contradicting it, in dataset order.
pub fn dpo(
    items: &[Item],
    labels: &[Label],
    library: &Library,
    filters: &Filters,
) -> (Vec<DpoRow>, Summary) {
    let mut summary = Summary {
        layout: Layout::Dpo,
        ..Summary::default()
    };
    let found = candidates(items, labels, library, filters, &mut summary, true);
    // Groups in first-seen order, so rows follow the dataset. Candidates come item by item,
    // so a candidate's group can only be among those its item opened.
    let mut groups: Vec<Vec<&Candidate<'_>>> = Vec::new();
    let mut item_start = 0;
    for c in &found {
        if groups
            .last()
            .is_some_and(|g| !std::ptr::eq(g[0].item, c.item))
        {
            item_start = groups.len();
        }
        let same_prompt = |g: &&mut Vec<&Candidate<'_>>| {
            let first = g[0];
            first.prompt.template == c.prompt.template
                && first.judgment.swapped == c.judgment.swapped
                && first.prompt.messages == c.prompt.messages
        };
        match groups[item_start..].iter_mut().find(same_prompt) {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    let mut rows = Vec::new();
    for group in &groups {
        let (chosen, rejected): (Vec<&Candidate<'_>>, Vec<&Candidate<'_>>) =
            group.iter().partition(|c| c.matches);
        if chosen.is_empty() || rejected.is_empty() {
            for c in group {
                summary.skip(&c.judgment.judge, Skip::NoCounterpart);
            }
            continue;
        }
        for c in group {
            summary
                .judges
                .entry(c.judgment.judge.clone())
                .or_default()
                .kept += 1;
        }
        for good in &chosen {
            for bad in &rejected {
                summary
                    .judges
                    .entry(good.judgment.judge.clone())
                    .or_default()
                    .chosen += 1;
                summary
                    .judges
                    .entry(bad.judgment.judge.clone())
                    .or_default()
                    .rejected += 1;
                // Both sides share the prompt, so either's source describes it; the weaker
                // one is reported.
                let source = good.prompt.source.max(bad.prompt.source);
                *summary.prompts.entry(source).or_default() += 1;
                rows.push(DpoRow {
                    prompt: good.prompt.messages.clone(),
                    chosen: rows::assistant(good.output),
                    rejected: rows::assistant(bad.output),
                    item: good.item.id.clone(),
                    template: good.prompt.template.clone(),
                    order: good.order(),
                    chosen_judge: good.judgment.judge.clone(),
                    rejected_judge: bad.judgment.judge.clone(),
                    label: good.label,
                    label_source: good.label_source,
                    prompt_source: source,
                });
            }
        }
    }
    summary.written = rows.len();
    (rows, summary)
}

/// Reward-model pairs: each item with a final label for one side, its conversation as the
/// prompt and the preferred response as `chosen`; ties are left out.
pub fn preference(
    items: &[Item],
    labels: &[Label],
    filters: &Filters,
) -> (Vec<PreferenceRow>, Summary) {
    let mut summary = Summary {
        layout: Layout::Preference,
        ..Summary::default()
    };
    let mut rows = Vec::new();
    for (item, label) in items.iter().zip(labels) {
        let (outcome, source) = match usable_label(*label, filters) {
            Ok(l) => l,
            Err(why) => {
                *summary.items_skipped.entry(why).or_default() += 1;
                continue;
            }
        };
        let (good, bad) = match outcome {
            Outcome::A => (&item.response_a, &item.response_b),
            Outcome::B => (&item.response_b, &item.response_a),
            Outcome::Tie => {
                *summary.items_skipped.entry(Skip::TieLabel).or_default() += 1;
                continue;
            }
        };
        let completion = |side: &crate::dataset::Response| {
            let mut turns = side.prior_turns.clone();
            turns.push(Message::new("assistant", side.text.clone()));
            turns
        };
        rows.push(PreferenceRow {
            prompt: item.context.clone(),
            chosen: completion(good),
            rejected: completion(bad),
            item: item.id.clone(),
            chosen_model: good.model.clone(),
            rejected_model: bad.model.clone(),
            label: outcome,
            label_source: source,
        });
    }
    summary.written = rows.len();
    (rows, summary)
}

#[cfg(test)]
mod tests;
