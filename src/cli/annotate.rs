//! `arbiter annotate`: record human decisions in the annotator's journal, one from the arguments
//! or many from standard input, reporting each as saved only once it is durable, and saying
//! when a decision escalates an item (annotators disagree) or settles it (an adjudicator).

use super::{open_reviewed, AnnotateArgs, PanelArgs};
use crate::verdict::{Outcome, Verdict};
use anyhow::Context;
use std::io::{BufRead, Write};

fn outcome(label: &str) -> anyhow::Result<Outcome> {
    let v: Verdict = label.parse()?;
    Ok(v.outcome)
}

/// After `saved ID`: `escalated ID: ann A, bo B` when the annotators now disagree on the
/// item and no adjudicator has settled it, or `settled ID: X by NAME` when an adjudicator has.
fn escalation_note(
    review: &crate::review::Review,
    id: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(index) = review.dataset.position(id) else {
        return Ok(());
    };
    if !review.is_escalated(index) {
        return Ok(());
    }
    let who = review
        .human_decisions(id)
        .iter()
        .filter(|d| !d.adjudicator)
        .map(|d| format!("{} {}", d.annotator, d.verdict))
        .collect::<Vec<_>>()
        .join(", ");
    match review.decision(id).filter(|d| d.adjudicator) {
        Some(d) => writeln!(
            out,
            "settled {id}: {} by {} (the annotators said {who})",
            d.verdict, d.annotator
        )?,
        None => writeln!(
            out,
            "escalated {id}: the annotators disagree ({who}); an adjudicator settles it"
        )?,
    }
    Ok(())
}

pub fn run(args: AnnotateArgs) -> anyhow::Result<i32> {
    let mut review = open_reviewed(&args.data, &PanelArgs::default())?;
    review.set_adjudicator(args.adjudicate);
    if review.annotator().is_none() {
        return Err(crate::review::ReviewError::NoAnnotator.into());
    }
    let stdout = std::io::stdout();
    if !args.stdin {
        let item = args
            .item
            .as_deref()
            .context("--item is required without --stdin")?;
        if args.undo {
            let undo = review.undo(item)?;
            let now = review
                .my_decision(item)
                .map(|d| format!("; its decision is {} again", d.verdict))
                .unwrap_or_else(|| "; it is undecided again".to_string());
            writeln!(
                stdout.lock(),
                "undone {item} (decision #{}){now}",
                undo.undoes
            )?;
            return Ok(0);
        }
        let label = args
            .verdict
            .as_deref()
            .context("--verdict is required without --stdin")?;
        review.decide(item, outcome(label)?, args.note.as_deref())?;
        let mut out = stdout.lock();
        writeln!(out, "saved {item}")?;
        escalation_note(&review, item, &mut out)?;
        return Ok(0);
    }

    // One decision per line: `ID VERDICT [NOTE]`. A bad line is reported and skipped so that a
    // long batch is not lost to one typo; the exit code says something went wrong.
    let mut failures = 0usize;
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut parts = trimmed.splitn(3, char::is_whitespace);
        let (Some(id), Some(label)) = (parts.next(), parts.next()) else {
            eprintln!(
                "error: stdin line {}: expected `ID VERDICT [NOTE]`, got {trimmed:?}",
                n + 1
            );
            failures += 1;
            continue;
        };
        let note = parts.next().map(str::trim).filter(|s| !s.is_empty());
        let result = outcome(label).and_then(|o| Ok(review.decide(id, o, note)?));
        match result {
            Ok(_) => {
                let mut out = stdout.lock();
                writeln!(out, "saved {id}")?;
                escalation_note(&review, id, &mut out)?;
                out.flush()?;
            }
            Err(e) => {
                eprintln!("error: stdin line {}: {e:#}", n + 1);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} line(s) were not saved");
        return Ok(1);
    }
    Ok(0)
}
