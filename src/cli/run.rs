//! `arbiter run`: a panel file's judges over a dataset, concurrently within each judge's limit,
//! with a progress line per judge, every judgment saved to the journal as it arrives, and the
//! Mixture-of-Judges summary at the end. Resumable: a rerun of the same command makes only the
//! judgments the journal does not hold yet.

use super::judge::interrupt_flag;
use super::{DatasetArgs, PanelArgs};
use crate::batch::{
    self, order_label, Batch, BatchEvent, BatchProgress, JudgeKind, PanelFile, Plan, Scope,
};
use crate::moj::{Panel, Summary};
use crate::prompts::Library;
use crate::review::Review;
use anyhow::Context;
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// The panel file (TOML) naming the judges: local models and OpenAI-compatible endpoints.
    #[arg(long, value_name = "PANEL.toml")]
    pub panel: PathBuf,
    /// Run only this judge of the panel.
    #[arg(long, value_name = "NAME")]
    pub judge: Option<String>,
    /// Constrained answers: `auto` as each judge's panel-file `constrain` says (default: on
    /// for templates with an answer grammar; a remote judge sends a JSON answer's schema),
    /// `on` every judge constrained, `off` none.
    #[arg(long, value_enum, default_value_t = super::judge::ConstrainArg::Auto)]
    pub constrain: super::judge::ConstrainArg,
    #[command(flatten)]
    pub selection: super::judge::SelectionArgs,
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let mut review = super::open_reviewed(&args.data, &PanelArgs::default())?;
    let library = Library::load()?;
    let panel = PanelFile::load(&args.panel, &library)?;
    let scope = Scope {
        items: args.selection.items.clone(),
        limit: args.selection.limit,
        swap: args.selection.swap,
        force: args.selection.force,
        judge: args.judge.clone(),
        constrain: match args.constrain {
            super::judge::ConstrainArg::Auto => None,
            super::judge::ConstrainArg::On => Some(true),
            super::judge::ConstrainArg::Off => Some(false),
        },
    };
    let plan = batch::plan(&review, &panel, &library, &scope)?;
    let selected: HashSet<String> =
        batch::select_items(&review, &args.selection.items, args.selection.limit)?
            .into_iter()
            .collect();
    announce(&plan, &review, args.selection.swap);

    let interrupted = interrupt_flag();
    let batch = Batch::start(&plan, None);
    let mut progress = BatchProgress::new(&plan);
    let mut board = Board::new(std::io::stderr().is_terminal());
    let mut failures: Vec<String> = Vec::new();
    let mut write_error: Option<anyhow::Error> = None;
    board.draw(&progress, true);
    while !progress.is_finished() {
        if interrupted.load(Ordering::Relaxed) && !batch.is_cancelled() {
            batch.cancel();
            board.message("interrupted: stopping; judgments in flight are not recorded (rerun the same command to resume)");
        }
        let event = match batch.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) if batch.is_cancelled() => break,
            Err(RecvTimeoutError::Timeout) => {
                board.draw(&progress, false);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        progress.apply(&event, Instant::now());
        let name = |j: usize| progress.judges[j].name.clone();
        match event {
            BatchEvent::Judged { item, outcome, .. } => {
                let outcome = *outcome;
                if let Err(e) = review
                    .add_judgment(&item, outcome.judgment, outcome.run)
                    .with_context(|| format!("saving a judgment of {item}"))
                {
                    batch.cancel();
                    write_error = Some(e);
                    break;
                }
            }
            BatchEvent::Failed { judge, .. } => {
                for line in event.failures(&name(judge)) {
                    board.message(&format!("failed: {line}"));
                    failures.push(line);
                }
            }
            BatchEvent::Retrying {
                judge,
                item,
                order,
                retry,
                max_retries,
                wait,
                error,
            } => board.message(&format!(
                "retry {retry}/{max_retries} in {:.1} s: {} {item} ({}): {error}",
                wait.as_secs_f64(),
                name(judge),
                order_label(order)
            )),
            BatchEvent::Stopped {
                judge,
                ref error,
                ref not_started,
            } => {
                board.message(&format!(
                    "{} stopped: {error}; {} of its judgments not attempted",
                    name(judge),
                    not_started.len()
                ));
                failures.extend(event.failures(&name(judge)));
            }
            BatchEvent::Status { .. }
            | BatchEvent::Started { .. }
            | BatchEvent::Finished { .. } => {}
        }
        board.draw(&progress, false);
    }
    // Judgments that finished while the run was stopping are saved, not thrown away.
    while let Some(event) = batch.try_recv() {
        progress.apply(&event, Instant::now());
        if let BatchEvent::Judged { item, outcome, .. } = event {
            if write_error.is_none() {
                let outcome = *outcome;
                if let Err(e) = review.add_judgment(&item, outcome.judgment, outcome.run) {
                    write_error =
                        Some(anyhow::Error::new(e).context(format!("saving a judgment of {item}")));
                }
            }
        }
    }
    board.draw(&progress, true);
    board.finish();
    if let Some(e) = write_error {
        return Err(e);
    }
    let skipped: usize = plan.judges.iter().map(|j| j.already_done).sum();
    eprintln!(
        "judged {}, failed {}, skipped {skipped} already in the journal{}",
        progress.done(),
        progress.failed(),
        if skipped > 0 {
            " (--force to redo)"
        } else {
            ""
        }
    );
    if !failures.is_empty() {
        eprintln!("without a judgment:");
        for f in failures.iter().take(30) {
            eprintln!("  {f}");
        }
        if failures.len() > 30 {
            eprintln!("  ... and {} more", failures.len() - 30);
        }
        eprintln!("rerun the same command to try them again; what is judged is not redone");
    }
    print_summary(&mut review, &panel, &selected, &args.data)?;
    Ok(if interrupted.load(Ordering::Relaxed) {
        130
    } else if !failures.is_empty() {
        1
    } else {
        0
    })
}

fn announce(plan: &Plan, review: &Review, swap: bool) {
    eprintln!(
        "running {} judge(s) over {} item(s){}; judgments go to {}",
        plan.judges.len(),
        plan.items,
        if swap { " in both orders" } else { "" },
        review.journal_path().display()
    );
    for j in &plan.judges {
        let how = match &j.judge.kind {
            JudgeKind::Remote {
                base_url, model, ..
            } => format!(
                "{model} at {base_url}, up to {} at a time",
                j.judge.max_concurrency
            ),
            JudgeKind::Local { model, .. } => format!("local {model}"),
        };
        eprintln!(
            "  {}: {} to judge, {} already in the journal ({how}, template {}, constrain {})",
            j.judge.name,
            j.tasks.len(),
            j.already_done,
            j.spec.template,
            j.spec.constrain
        );
    }
}

/// The panel's consensus over the items of the run, and how to arbitrate its disputes.
fn print_summary(
    review: &mut Review,
    panel: &PanelFile,
    selected: &HashSet<String>,
    data: &DatasetArgs,
) -> anyhow::Result<()> {
    let names = panel.names();
    review.set_panel(Some(Panel::from_names(&names)?));
    let consensus: Vec<_> = review
        .consensus()
        .iter()
        .filter(|c| selected.contains(&c.item))
        .cloned()
        .collect();
    let panel_view = Panel::from_names(&names)?;
    let s = Summary::of(&panel_view, &consensus);
    println!(
        "Mixture of Judges: {} over {} item(s)",
        s.panel.join(", "),
        s.items
    );
    println!(
        "  consensus   A {}, B {}, tie {}",
        s.consensus.a, s.consensus.b, s.consensus.tie
    );
    println!(
        "  disputes    {} (no majority {}, missing verdict {}, unparseable verdict {}, conflicting labels {})",
        s.disputes,
        s.disputes_by_reason.no_majority,
        s.disputes_by_reason.missing,
        s.disputes_by_reason.unparseable,
        s.disputes_by_reason.conflicting_labels
    );
    let dataset = shell_quote(&data.dataset);
    let journal = data
        .journal
        .as_ref()
        .map(|j| format!(" --journal {}", shell_quote(j)))
        .unwrap_or_default();
    if s.disputes > 0 {
        if data.journal.is_none() {
            println!("arbitrate them in the app:  arbiter {dataset}");
        }
        println!(
            "list them here:             arbiter disputes {dataset}{journal} --panel {}",
            names.join(",")
        );
    }
    Ok(())
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The progress lines on standard error: redrawn in place on a terminal, printed every few
/// seconds otherwise (a log file gets a readable history, not a flood).
struct Board {
    tty: bool,
    drawn: usize,
    last: Option<Instant>,
    last_lines: Vec<String>,
}

impl Board {
    fn new(tty: bool) -> Board {
        Board {
            tty,
            drawn: 0,
            last: None,
            last_lines: Vec::new(),
        }
    }

    fn lines(progress: &BatchProgress) -> Vec<String> {
        let now = Instant::now();
        let width = progress
            .judges
            .iter()
            .map(|j| j.name.chars().count())
            .max()
            .unwrap_or(0);
        progress
            .judges
            .iter()
            .map(|j| format!("  {:<width$}  {}", j.name, j.line(now)))
            .collect()
    }

    fn clear(&mut self) {
        if self.tty && self.drawn > 0 {
            let mut err = std::io::stderr();
            let _ = write!(err, "\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn draw(&mut self, progress: &BatchProgress, force: bool) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(10)
        };
        if !force && self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        let lines = Board::lines(progress);
        if !self.tty && lines == self.last_lines {
            return;
        }
        self.last = Some(Instant::now());
        self.clear();
        let mut err = std::io::stderr();
        for l in &lines {
            let _ = writeln!(err, "{l}");
        }
        if self.tty {
            self.drawn = lines.len();
        }
        self.last_lines = lines;
    }

    /// A line above the progress lines.
    fn message(&mut self, text: &str) {
        let drawn = self.drawn;
        self.clear();
        eprintln!("{text}");
        if drawn > 0 {
            let lines = std::mem::take(&mut self.last_lines);
            let mut err = std::io::stderr();
            for l in &lines {
                let _ = writeln!(err, "{l}");
            }
            self.drawn = lines.len();
            self.last_lines = lines;
        }
    }

    /// Leaves the last drawing on screen.
    fn finish(&mut self) {
        self.drawn = 0;
    }
}
