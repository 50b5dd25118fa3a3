//! `arbiter parse`: read a judge's output from standard input and print the structured
//! critique, the verdict and the rule that decided it (as JSON with `--json`); with `--stream`,
//! print the parser's view after every chunk, as JSON lines, so the incremental behaviour can
//! be watched from the shell.

use crate::critique::{Critique, CritiqueParser};
use crate::verdict::OutputFormat;
use anyhow::Context;
use std::io::{Read, Write};

#[derive(clap::Args, Debug)]
pub struct ParseArgs {
    /// The output format the judge was asked for (default: detect it).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    pub format: FormatArg,
    /// Print one JSON line per chunk of input, as a streaming judge would be read.
    #[arg(long)]
    pub stream: bool,
    /// Print the critique as JSON (--stream always prints JSON lines).
    #[arg(long)]
    pub json: bool,
    /// Chunk size in bytes for --stream (chunks may split multi-byte characters, as tokens do).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: u64,
}

/// `OutputFormat` as the command line spells it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FormatArg {
    Auto,
    Cj2Json,
    Brackets,
    Arena5,
    Judgerbench,
    Pointwise,
    Critique,
    Prose,
    /// `[RESULT] A` (Prometheus-2) or `**Result:** B` (Selene).
    Result,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> OutputFormat {
        match f {
            FormatArg::Auto => OutputFormat::Auto,
            FormatArg::Cj2Json => OutputFormat::Cj2Json,
            FormatArg::Brackets => OutputFormat::Brackets,
            FormatArg::Arena5 => OutputFormat::Arena5,
            FormatArg::Judgerbench => OutputFormat::JudgerBench,
            FormatArg::Pointwise => OutputFormat::Pointwise,
            FormatArg::Critique => OutputFormat::Critique,
            FormatArg::Prose => OutputFormat::Prose,
            FormatArg::Result => OutputFormat::ResultMarker,
        }
    }
}

pub fn run(args: ParseArgs) -> anyhow::Result<i32> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the judge's output from standard input")?;
    let mut parser = CritiqueParser::new(args.format.into());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.stream {
        let chunk = usize::try_from(args.chunk).unwrap_or(usize::MAX);
        for (n, piece) in input.chunks(chunk).enumerate() {
            parser.feed(piece);
            let line = serde_json::json!({
                "chunk": n + 1,
                "bytes": (n * chunk + piece.len()),
                "critique": parser.snapshot(),
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        let done = parser.finish();
        serde_json::to_writer(&mut out, &serde_json::json!({ "final": done }))?;
        out.write_all(b"\n")?;
    } else {
        parser.feed(&input);
        let done = parser.finish();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &done)?;
            out.write_all(b"\n")?;
        } else {
            out.write_all(human(&done).as_bytes())?;
        }
    }
    Ok(0)
}

/// The critique for people: verdict, the rule that decided it, problems, then the fields.
fn human(c: &Critique) -> String {
    let mut s = String::new();
    let verdict = match (c.verdict, c.score) {
        (Some(v), _) => v.label().to_string(),
        (None, Some(score)) => format!("score {score}"),
        (None, None) => "none".to_string(),
    };
    s.push_str(&format!("verdict   {verdict}\n"));
    s.push_str(&format!("format    {:?}\n", c.format));
    if let Some(rule) = c.rule {
        s.push_str(&format!("read by   {}\n", rule.describe()));
    }
    if let Some(labels) = &c.conflicting {
        s.push_str(&format!("conflict  {labels}\n"));
    }
    for p in &c.problems {
        s.push_str(&format!("problem   {p}\n"));
    }
    for f in &c.fields {
        let text: String = f
            .text
            .chars()
            .take(200)
            .collect::<String>()
            .replace('\n', "\n  ");
        let more = if f.text.chars().count() > 200 {
            "..."
        } else {
            ""
        };
        s.push_str(&format!("\n{} ({:?}):\n  {text}{more}\n", f.key, f.state));
    }
    s
}
