//! The command-line front end: headless subcommands over the library. Each subcommand lives in
//! its own file and only parses arguments, calls the library and prints.

mod annotate;
mod assign;
mod bench;
mod constrain_bench;
mod inspect;
mod judge;
mod models;
mod open;
mod parse;
mod prompts;
mod report;
mod run;
mod score;
mod table;

use crate::dataset::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub use open::{open_reviewed, Reviewed};

#[derive(Parser, Debug)]
#[command(
    name = "arbiter",
    version,
    about = "Review LLM judges, combine them into a Mixture of Judges, arbitrate the disputes",
    long_about = "Review LLM judges, combine them into a Mixture of Judges, arbitrate the disputes.\n\n\
                  Everything Arbiter produces about a dataset goes to journals beside it: new judgments \
                  to DATASET.arbiter-journal.jsonl, each person's decisions to \
                  DATASET.arbiter/NAME.journal.jsonl; the dataset itself is never modified."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open this dataset in the app (with no subcommand and no dataset, the app opens the
    /// bundled demo dataset).
    #[arg(value_name = "DATASET")]
    pub dataset: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a dataset's format, items, judges, categories and disputes by reason.
    Inspect(InspectArgs),
    /// Score judges against the final labels: accuracy, JudgerBenchV2 score, agreement,
    /// position consistency, per category.
    Score(ScoreArgs),
    /// Record human decisions in the journal (one item, or many from standard input).
    Annotate(AnnotateArgs),
    /// Split the disputes between annotators (a share of them to two people, to measure their
    /// agreement), deterministically for a seed; the app's "my queue" reads the split.
    Assign(assign::AssignArgs),
    /// List the arbitration queue: items where the panel has no consensus (or, with
    /// --escalated, where the annotators disagree; with --mine, the annotator's own items).
    Disputes(DisputesArgs),
    /// Write every item with its consensus, human decision, final label and dispute reason.
    Export(ExportArgs),
    /// List, show and render the judge prompt templates.
    Prompts(prompts::PromptsArgs),
    /// Read a judge's output from standard input and print its structured critique and verdict.
    Parse(parse::ParseArgs),
    /// List the judge catalogue and the hub cache; download or remove models.
    Models(models::ModelsArgs),
    /// Download a model into the hub cache (same as `arbiter models download`).
    Download(models::DownloadArgs),
    /// Judge a dataset's items with a local model, streaming each critique and saving each
    /// judgment to the journal (resumable: what is judged is not judged again).
    Judge(judge::JudgeArgs),
    /// Judge a dataset with every judge of a panel file (local models and OpenAI-compatible
    /// endpoints) concurrently, saving each judgment to the journal; resumable. Ends with the
    /// Mixture-of-Judges summary.
    Run(run::RunArgs),
    /// Plain generation from a prompt on standard input: check that a model works.
    Chat(judge::ChatArgs),
    /// Time prefill, first token and decode of a model and report peak memory, as JSON.
    Bench(bench::BenchArgs),
    /// Judge items with every template in both orders, free and constrained to the template's
    /// answer grammar, and report readable verdicts, complete fields and decode speed of each.
    ConstrainBench(constrain_bench::ConstrainBenchArgs),
    /// Run a model over given token ids and write its top token (and optionally every logit)
    /// at each step, greedy or teacher-forced: for checking the engine against another one.
    Logits(bench::LogitsArgs),
}

/// How to open a dataset: shared by every subcommand that reads one.
#[derive(Args, Debug, Clone)]
pub struct DatasetArgs {
    /// The dataset file (JSON or JSON Lines, optionally gzip-compressed), or a folder of such
    /// files read as one dataset (ids become `{file stem}/{id}`; JudgeBench output files keep
    /// the pair id, so several judges' files over the same pairs judge the same items).
    pub dataset: PathBuf,
    /// Read the file as this format instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Skip malformed records (reporting how many) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Use this journal instead of the default DATASET.arbiter-journal.jsonl beside the dataset
    /// (human decisions are then recorded there too, instead of in each annotator's journal).
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
    /// Who is deciding (default: $ARBITER_ANNOTATOR, else $USER). Each annotator's decisions go
    /// to their own journal, DATASET.arbiter/NAME.journal.jsonl.
    #[arg(long, value_name = "NAME")]
    pub annotator: Option<String>,
}

/// Which judges form the Mixture-of-Judges panel.
#[derive(Args, Debug, Clone, Default)]
pub struct PanelArgs {
    /// The judges of the panel, comma-separated (default: every judge in the dataset).
    #[arg(long, value_delimiter = ',', value_name = "J1,J2,...")]
    pub panel: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub panel: PanelArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub panel: PanelArgs,
    /// Score only these judges (repeatable; default: every judge).
    #[arg(long = "judge", value_name = "J")]
    pub judges: Vec<String>,
    /// The ground truth where no person decided an item: `r1` the dataset's gold labels
    /// (JudgerBenchV2's DeepSeek-R1 verdicts; the panel's consensus where an item has none),
    /// `moj` the panel's majority. A human decision overrides either.
    #[arg(long, value_enum, default_value_t = score::GtArg::R1)]
    pub gt: score::GtArg,
    /// The reference model whose wins JudgerBenchV2 does not count.
    #[arg(long, default_value = crate::metrics::DEFAULT_BASE_MODEL, value_name = "M")]
    pub base_model: String,
    /// `intended`: the JudgerBenchV2 formula as meant; `reference`: number for number what the
    /// OpenCompass code computes, quirks included (a model with no wins drops out; no score
    /// where it raises), with warnings.
    #[arg(long, value_enum, default_value_t = score::QuirksArg::Intended)]
    pub quirks: score::QuirksArg,
    /// Compute the JudgerBenchV2 score even when the data is not in its ten categories.
    #[arg(long)]
    pub judgerbench: bool,
    /// Accuracy on tie labels: `three-way` (a tie is its own class, as OpenCompass does) or
    /// `exclude` (items labelled tie are not compared).
    #[arg(long, value_enum, default_value_t = score::TiesArg::ThreeWay)]
    pub ties: score::TiesArg,
    /// Accuracy on unreadable judge outputs: `wrong` (counted, as OpenCompass's judge
    /// benchmarks do) or `exclude` (left out, as JudgerBenchV2 does).
    #[arg(long, value_enum, default_value_t = score::UnparsedArg::Wrong)]
    pub unparsed: score::UnparsedArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// The item to decide.
    #[arg(long, required_unless_present = "stdin", conflicts_with = "stdin")]
    pub item: Option<String>,
    /// The decision: A, B or tie.
    #[arg(long, required_unless_present_any = ["stdin", "undo"], conflicts_with = "stdin")]
    pub verdict: Option<String>,
    /// A note kept with the decision.
    #[arg(long, conflicts_with = "stdin")]
    pub note: Option<String>,
    /// Read decisions from standard input, one per line: `ID VERDICT [NOTE]`; prints
    /// `saved ID` once each is durable on disk.
    #[arg(long)]
    pub stdin: bool,
    /// Undo the latest decision on --item instead of recording one.
    #[arg(long, requires = "item", conflicts_with_all = ["verdict", "stdin"])]
    pub undo: bool,
    /// Decide as adjudicator: the decision settles an item the annotators disagree on and is
    /// its final label.
    #[arg(long)]
    pub adjudicate: bool,
}

#[derive(Args, Debug)]
pub struct DisputesArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub panel: PanelArgs,
    /// Include disputes a human has already decided.
    #[arg(long)]
    pub all: bool,
    /// List the escalation queue instead: items the annotators disagree on that no
    /// adjudicator has settled (with --all, settled ones too), with every person's decision.
    #[arg(long, conflicts_with = "mine")]
    pub escalated: bool,
    /// List only the items `arbiter assign` gave to this annotator (--annotator).
    #[arg(long)]
    pub mine: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub panel: PanelArgs,
    /// Where to write (JSON Lines).
    #[arg(short, long, value_name = "OUT.jsonl")]
    pub output: PathBuf,
    /// Same as `--as dataset`.
    #[arg(long, conflicts_with = "layout")]
    pub as_dataset: bool,
    #[command(flatten)]
    pub training: report::TrainingArgs,
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let Some(command) = cli.command else {
        #[cfg(feature = "gui")]
        {
            crate::gui::run(cli.dataset)?;
            return Ok(0);
        }
        #[cfg(not(feature = "gui"))]
        {
            let _ = cli.dataset;
            use clap::CommandFactory;
            Cli::command().print_help()?;
            println!("\n\nThis build has no desktop app: rebuild with the `gui` feature (on by default).");
            return Ok(0);
        }
    };
    match command {
        Command::Inspect(a) => inspect::run(a),
        Command::Score(a) => score::run(a),
        Command::Annotate(a) => annotate::run(a),
        Command::Assign(a) => assign::run(a),
        Command::Disputes(a) => inspect::disputes(a),
        Command::Export(a) => report::export(a),
        Command::Prompts(a) => prompts::run(a),
        Command::Parse(a) => parse::run(a),
        Command::Models(a) => models::run(a),
        Command::Download(a) => models::download(a),
        Command::Judge(a) => judge::judge(a),
        Command::Run(a) => run::run(a),
        Command::Chat(a) => judge::chat(a),
        Command::Bench(a) => bench::run(a),
        Command::Logits(a) => bench::logits(a),
        Command::ConstrainBench(a) => constrain_bench::run(a),
    }
}
