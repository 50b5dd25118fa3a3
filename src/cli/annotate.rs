//! `arbiter annotate`: record human decisions in the journal, one from the arguments or many
//! from standard input, reporting each as saved only once it is durable.

use super::{open_reviewed, AnnotateArgs, PanelArgs};
use crate::verdict::{Outcome, Verdict};
use anyhow::Context;
use std::io::{BufRead, Write};

fn outcome(label: &str) -> anyhow::Result<Outcome> {
    let v: Verdict = label.parse()?;
    Ok(v.outcome)
}

pub fn run(args: AnnotateArgs) -> anyhow::Result<i32> {
    let mut review = open_reviewed(&args.data, &PanelArgs::default())?;
    let stdout = std::io::stdout();
    if !args.stdin {
        let item = args
            .item
            .as_deref()
            .context("--item is required without --stdin")?;
        if args.undo {
            let undo = review.undo(item)?;
            let now = review
                .decision(item)
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
        writeln!(stdout.lock(), "saved {item}")?;
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
