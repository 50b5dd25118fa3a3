//! `arbiter inspect` and `arbiter disputes`: what a dataset holds, and its arbitration queue.

use super::table::Table;
use super::{open_reviewed, DisputesArgs, InspectArgs};
use crate::moj::{Consensus, DisputeReason, Summary};
use crate::review::Review;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct JudgeInfo {
    judge: String,
    judgments: usize,
    unreadable: usize,
    swapped: usize,
}

#[derive(Serialize)]
struct Inspection {
    path: String,
    format: &'static str,
    items: usize,
    multi_turn: usize,
    skipped_records: usize,
    categories: BTreeMap<String, usize>,
    languages: BTreeMap<String, usize>,
    judges: Vec<JudgeInfo>,
    summary: Summary,
    decided: usize,
    disputes_decided: usize,
    journal: String,
}

fn inspection(review: &Review) -> Inspection {
    let ds = &review.dataset;
    let mut categories = BTreeMap::new();
    let mut languages = BTreeMap::new();
    let mut judges: Vec<JudgeInfo> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for item in &ds.items {
        *categories
            .entry(item.category.clone().unwrap_or_else(|| "(none)".into()))
            .or_insert(0) += 1;
        *languages
            .entry(item.language.clone().unwrap_or_else(|| "(unknown)".into()))
            .or_insert(0) += 1;
        for j in &item.judgments {
            let k = *index.entry(j.judge.clone()).or_insert_with(|| {
                judges.push(JudgeInfo {
                    judge: j.judge.clone(),
                    judgments: 0,
                    unreadable: 0,
                    swapped: 0,
                });
                judges.len() - 1
            });
            judges[k].judgments += 1;
            judges[k].unreadable += usize::from(j.verdict.is_none());
            judges[k].swapped += usize::from(j.swapped);
        }
    }
    let decided = ds
        .items
        .iter()
        .filter(|i| review.decision(&i.id).is_some())
        .count();
    let disputes_decided = ds
        .items
        .iter()
        .zip(review.consensus())
        .filter(|(i, c)| c.is_dispute() && review.decision(&i.id).is_some())
        .count();
    Inspection {
        path: ds.path.display().to_string(),
        format: ds.format.name(),
        items: ds.items.len(),
        multi_turn: ds.items.iter().filter(|i| i.is_multi_turn()).count(),
        skipped_records: ds.skipped.len(),
        categories,
        languages,
        judges,
        summary: review.summary(),
        decided,
        disputes_decided,
        journal: review.journal_path().display().to_string(),
    }
}

fn counts_line(map: &BTreeMap<String, usize>) -> String {
    let mut v: Vec<(&String, &usize)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: InspectArgs) -> anyhow::Result<i32> {
    let review = open_reviewed(&args.data, &args.panel)?;
    let info = inspection(&review);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    println!("{}", info.path);
    println!(
        "  format      {} ({} items, {} multi-turn{})",
        info.format,
        info.items,
        info.multi_turn,
        if info.skipped_records > 0 {
            format!(", {} records skipped", info.skipped_records)
        } else {
            String::new()
        }
    );
    println!("  categories  {}", counts_line(&info.categories));
    println!("  languages   {}", counts_line(&info.languages));
    if info.judges.is_empty() {
        println!("  judges      none yet (judgments join the dataset from judge runs, kept in its journal)");
    } else {
        let mut t = Table::new(["judge", "judgments", "unreadable", "swapped"]);
        for j in &info.judges {
            t.row([
                j.judge.clone(),
                j.judgments.to_string(),
                j.unreadable.to_string(),
                j.swapped.to_string(),
            ]);
        }
        println!("\n{}", t.render());
        let s = &info.summary;
        println!("  panel       {}", s.panel.join(", "));
        println!(
            "  consensus   A {}, B {}, tie {}",
            s.consensus.a, s.consensus.b, s.consensus.tie
        );
        println!(
            "  disputes    {} (no majority {}, missing verdict {}, unparseable verdict {}, conflicting labels {}); {} decided",
            s.disputes,
            s.disputes_by_reason.no_majority,
            s.disputes_by_reason.missing,
            s.disputes_by_reason.unparseable,
            s.disputes_by_reason.conflicting_labels,
            info.disputes_decided
        );
    }
    println!(
        "  decided     {} of {} items by a person (journal: {})",
        info.decided, info.items, info.journal
    );
    Ok(0)
}

/// One line of a dispute's reasons, for people.
pub fn describe(c: &Consensus) -> String {
    c.disputes
        .iter()
        .map(DisputeReason::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Serialize)]
struct DisputeRow<'a> {
    item: &'a str,
    category: Option<&'a str>,
    consensus: &'a Consensus,
    decision: Option<&'a crate::journal::Decision>,
    /// Every person's decision on the item.
    decisions: Vec<&'a crate::journal::Decision>,
    escalated: bool,
}

/// `disputes --escalated`: the items the annotators disagree on, with each person's decision.
fn escalations(args: &DisputesArgs, review: &crate::review::Review) -> anyhow::Result<i32> {
    let rows: Vec<DisputeRow> = (0..review.items().len())
        .filter(|&i| review.is_escalated(i) && (args.all || !review.is_adjudicated(i)))
        .map(|i| dispute_row(review, i))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let mut t = Table::new(["item", "category", "decisions", "settled"]);
    for r in &rows {
        t.row([
            r.item.to_string(),
            r.category.unwrap_or("").to_string(),
            r.decisions
                .iter()
                .filter(|d| !d.adjudicator)
                .map(|d| format!("{} {}", d.annotator, d.verdict))
                .collect::<Vec<_>>()
                .join(", "),
            r.decision
                .map(|d| format!("{} by {}", d.verdict, d.annotator))
                .unwrap_or_default(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "\n{} item(s) escalated and waiting for an adjudicator (`arbiter annotate --adjudicate`)",
        review.escalations().len()
    );
    Ok(0)
}

fn dispute_row(review: &crate::review::Review, i: usize) -> DisputeRow<'_> {
    let item = &review.items()[i];
    DisputeRow {
        item: &item.id,
        category: item.category.as_deref(),
        consensus: &review.consensus()[i],
        decision: review.decision(&item.id),
        decisions: review.human_decisions(&item.id),
        escalated: review.is_escalated(i),
    }
}

/// `disputes --mine` as text: the annotator's items and how many of them they have decided.
fn print_mine(review: &crate::review::Review, queue: &[usize], rows: &[DisputeRow], all: bool) {
    let mut t = Table::new(["item", "category", "why", "your decision"]);
    for r in rows {
        t.row([
            r.item.to_string(),
            r.category.unwrap_or("").to_string(),
            describe(r.consensus),
            review
                .my_decision(r.item)
                .map(|d| d.verdict.to_string())
                .unwrap_or_default(),
        ]);
    }
    print!("{}", t.render());
    let done = queue
        .iter()
        .filter(|&&i| review.my_decision(&review.items()[i].id).is_some())
        .count();
    println!(
        "\n{done} of your {} item(s) decided{}",
        queue.len(),
        if all { "" } else { " (--all lists them too)" }
    );
}

pub fn disputes(args: DisputesArgs) -> anyhow::Result<i32> {
    let review = open_reviewed(&args.data, &args.panel)?;
    if args.escalated {
        return escalations(&args, &review);
    }
    let mine = if args.mine {
        if review.annotator().is_none() {
            return Err(crate::review::ReviewError::NoAnnotator.into());
        }
        if review.assignment().is_none() {
            anyhow::bail!(
                "no assignment for {}: run `arbiter assign {} --annotators ...` first",
                review.dataset.path.display(),
                review.dataset.path.display()
            );
        }
        Some(review.my_queue())
    } else {
        None
    };
    // With --mine, "decided" means decided by this annotator: the queue is theirs to finish.
    let rows: Vec<DisputeRow> = (0..review.items().len())
        .filter(|&i| review.consensus()[i].is_dispute())
        .filter(|i| mine.as_ref().is_none_or(|q| q.contains(i)))
        .filter(|&i| {
            let id = &review.items()[i].id;
            args.all
                || if mine.is_some() {
                    review.my_decision(id).is_none()
                } else {
                    review.decision(id).is_none()
                }
        })
        .map(|i| dispute_row(&review, i))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if let Some(queue) = &mine {
        print_mine(&review, queue, &rows, args.all);
        return Ok(0);
    }
    let total = review.consensus().iter().filter(|c| c.is_dispute()).count();
    if total == 0 {
        println!(
            "no disputes: the panel agrees on every item (or the dataset has no judgments yet)"
        );
        return Ok(0);
    }
    let mut t = Table::new(["item", "category", "why", "decision"]);
    for r in &rows {
        t.row([
            r.item.to_string(),
            r.category.unwrap_or("").to_string(),
            describe(r.consensus),
            r.decision
                .map(|d| d.verdict.to_string())
                .unwrap_or_default(),
        ]);
    }
    print!("{}", t.render());
    let decided = total
        - rows
            .iter()
            .filter(|r| r.decision.is_none())
            .count()
            .min(total);
    println!(
        "\n{} of {} disputes decided{}",
        if args.all {
            decided
        } else {
            total - rows.len()
        },
        total,
        if args.all {
            ""
        } else {
            " (--all lists them too)"
        }
    );
    Ok(0)
}
