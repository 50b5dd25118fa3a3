//! `arbiter export`: every item with its consensus, human decision, final label and dispute
//! reasons; or the dataset in Arbiter's native format; or training data built from the final
//! labels (`--as sft|dpo|preference`), with a summary of what was kept and why the rest was not.

use super::{open_reviewed, ExportArgs};
use crate::prompts::Library;
use crate::training::{self, Filters, Label, Summary};
use anyhow::Context;
use std::io::Write;

/// What `arbiter export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportAs {
    /// Every item with its consensus, votes, dispute reasons, human decision and final label.
    #[default]
    Labels,
    /// A dataset in Arbiter's native format: every item with every judgment, the journal's
    /// included with their run metadata (human decisions are not judgments and stay in the
    /// journal).
    Dataset,
    /// Supervised fine-tuning data (TRL's conversational `messages`): each critique whose
    /// verdict matches its item's final label, after the messages its judge was sent.
    Sft,
    /// DPO pairs (`prompt`, `chosen`, `rejected` lists of messages): a critique matching the
    /// final label and one contradicting it, for the same item, template and order.
    Dpo,
    /// Reward-model pairs (`prompt`, `chosen`, `rejected`, explicit prompt): each item's two
    /// responses ranked by its final label; ties are left out.
    Preference,
}

/// The choices of `arbiter export --as sft|dpo|preference`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrainingArgs {
    /// What to write: labels (the default), the native dataset, or training data.
    #[arg(long = "as", value_enum, default_value_t, value_name = "WHAT")]
    pub layout: ExportAs,
    /// Take only the items a person decided as labels, not the panel's consensus.
    #[arg(long)]
    pub human_only: bool,
    /// Keep a critique only when the same judge's critique of the item in the other order
    /// matches the label too.
    #[arg(long)]
    pub both_orders: bool,
    /// Leave out critiques whose generation stopped at its token limit.
    #[arg(long)]
    pub drop_truncated: bool,
    /// Leave out critiques the template's parser cannot read cleanly or that lack a field
    /// the template asks for.
    #[arg(long)]
    pub drop_malformed: bool,
    /// Keep critiques recorded before prompts were kept whose template cannot be shown to be
    /// unchanged since (their prompt is rendered again from today's template).
    #[arg(long)]
    pub allow_unverified_prompts: bool,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

impl TrainingArgs {
    fn filters(&self) -> Filters {
        Filters {
            human_only: self.human_only,
            both_orders: self.both_orders,
            drop_truncated: self.drop_truncated,
            drop_malformed: self.drop_malformed,
            allow_unverified_prompts: self.allow_unverified_prompts,
        }
    }
}

pub fn export(args: ExportArgs) -> anyhow::Result<i32> {
    let layout = if args.as_dataset {
        ExportAs::Dataset
    } else {
        args.training.layout
    };
    let review = open_reviewed(&args.data, &args.panel)?;
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let writing = || format!("writing {}", args.output.display());
    match layout {
        ExportAs::Dataset => {
            crate::dataset::write_native(review.items(), &mut out)
                .and_then(|()| out.flush())
                .with_context(writing)?;
            let judgments: usize = review.items().iter().map(|i| i.judgments.len()).sum();
            eprintln!(
                "wrote {} items with {judgments} judgments to {}",
                review.items().len(),
                args.output.display()
            );
        }
        ExportAs::Labels => {
            let n = review.export_labels(&mut out).with_context(writing)?;
            out.flush().with_context(writing)?;
            let labelled = review.final_labels().iter().flatten().count();
            eprintln!(
                "wrote {n} items to {} ({labelled} with a final label, {} without)",
                args.output.display(),
                n - labelled
            );
        }
        ExportAs::Sft | ExportAs::Dpo | ExportAs::Preference => {
            let labels: Vec<Label> = (0..review.items().len())
                .map(|i| review.final_label(i))
                .collect();
            let filters = args.training.filters();
            let items = review.items();
            let summary = match layout {
                ExportAs::Preference => {
                    let (rows, summary) = training::preference(items, &labels, &filters);
                    training::write_rows(&rows, &mut out).with_context(writing)?;
                    summary
                }
                ExportAs::Dpo | ExportAs::Sft => {
                    // The templates judgments were made with, the user's overrides included:
                    // only needed for judgments recorded before their prompts were kept.
                    let library = Library::load().context("loading the prompt templates")?;
                    if layout == ExportAs::Dpo {
                        let (rows, summary) = training::dpo(items, &labels, &library, &filters);
                        training::write_rows(&rows, &mut out).with_context(writing)?;
                        summary
                    } else {
                        let (rows, summary) = training::sft(items, &labels, &library, &filters);
                        training::write_rows(&rows, &mut out).with_context(writing)?;
                        summary
                    }
                }
                ExportAs::Labels | ExportAs::Dataset => unreachable!("handled above"),
            };
            out.flush().with_context(writing)?;
            eprint!("{}", describe(&summary, &args.output));
            if args.training.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            }
        }
    }
    Ok(0)
}

/// The summary for people: rows written, where their prompts came from, and per judge what
/// was kept and why the rest was not.
fn describe(summary: &Summary, output: &std::path::Path) -> String {
    use std::fmt::Write as _;
    let what = match summary.layout {
        training::Layout::Sft => "SFT examples",
        training::Layout::Dpo => "DPO pairs",
        training::Layout::Preference => "preference pairs",
    };
    let mut text = format!("wrote {} {what} to {}\n", summary.written, output.display());
    if !summary.prompts.is_empty() {
        let sources: Vec<String> = summary
            .prompts
            .iter()
            .map(|(source, n)| format!("{n} {}", source.describe()))
            .collect();
        let _ = writeln!(text, "prompts: {}", sources.join(", "));
    }
    for (judge, tally) in &summary.judges {
        let mut kept = format!("{} kept", tally.kept);
        if tally.chosen + tally.rejected > 0 {
            let _ = write!(
                kept,
                " (in {} pairs as chosen, {} as rejected)",
                tally.chosen, tally.rejected
            );
        }
        let _ = writeln!(text, "{judge}: {kept}");
        for (why, n) in &tally.skipped {
            let _ = writeln!(text, "  {n} left out: {}", why.describe());
        }
    }
    for (why, n) in &summary.items_skipped {
        let _ = writeln!(text, "{n} items left out: {}", why.describe());
    }
    text
}
