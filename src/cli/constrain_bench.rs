//! `arbiter constrain-bench`: judge items with every template, in both orders, once free and
//! once constrained to the template's answer grammar, alternating on one loaded model, and
//! report per template the share of judgments with a readable verdict and with every field
//! complete, and the decode speed of each, as a markdown table. Constrained pairwise
//! judgments can be saved to the dataset's journal, the free ones to another journal.

use super::judge::ModelArgs;
use super::{DatasetArgs, PanelArgs};
use crate::batch;
use crate::critique::{Critique, FieldState, EXPLANATION};
use crate::engine::judge::{conclude, JudgeOutcome, JudgeSpec, JudgeTask};
use crate::engine::{ConstrainMode, FinishReason, GenerateRequest, SamplingParams};
use crate::journal::Journal;
use crate::prompts::{Library, RenderOptions, Side, Template, TemplateKind};
use crate::verdict::Orders;
use anyhow::Context;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct ConstrainBenchArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Templates to run (default: every one).
    #[arg(long, value_delimiter = ',', value_name = "T,...")]
    pub templates: Vec<String>,
    /// Most new tokens per answer, for every template...
    #[arg(long, default_value_t = 160)]
    pub max_new_tokens: usize,
    /// ...except these, as `template=N` (e.g. cj2-critical-thinking=256).
    #[arg(long, value_delimiter = ',', value_name = "T=N,...")]
    pub budget: Vec<String>,
    /// Off unless set (as `arbiter judge --repeat-penalty`).
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Judge only these items.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub items: Vec<String>,
    /// At most this many items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Save the constrained judgments of pairwise templates to the dataset's journal (as
    /// `arbiter judge` would), and the free ones to this journal, if given.
    #[arg(long)]
    pub save: bool,
    #[arg(long, value_name = "PATH")]
    pub free_journal: Option<PathBuf>,
    /// One JSON line per judgment (template, item, order, mode, verdict, complete, timing).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

#[derive(Default, Clone)]
struct Tally {
    n: usize,
    readable: usize,
    complete: usize,
    cut: usize,
    tokens: usize,
    decode_s: f64,
    total_s: f64,
}

impl Tally {
    fn add(
        &mut self,
        readable: bool,
        complete: bool,
        finish: FinishReason,
        t: &crate::engine::Timing,
    ) {
        self.n += 1;
        self.readable += usize::from(readable);
        self.complete += usize::from(complete);
        self.cut += usize::from(finish == FinishReason::Length);
        // Decode time: from the first token to the last, as `decode_tokens_per_s` counts it.
        if t.decode_tokens_per_s > 0.0 {
            self.tokens += t.generated_tokens.saturating_sub(1);
            self.decode_s += t.generated_tokens.saturating_sub(1) as f64 / t.decode_tokens_per_s;
        }
        self.total_s += t.total_ms / 1000.0;
    }

    fn share(&self, k: usize) -> String {
        if self.n == 0 {
            return "—".into();
        }
        format!("{:.0}% ({k}/{})", 100.0 * k as f64 / self.n as f64, self.n)
    }

    fn rate(&self) -> f64 {
        if self.decode_s > 0.0 {
            self.tokens as f64 / self.decode_s
        } else {
            0.0
        }
    }
}

/// Whether every field the template asks for is there and not empty, as the critique parser
/// reads it (lenient about code fences and spacing).
fn complete(template: &Template, task: &JudgeTask, text: &str, critique: &Critique) -> bool {
    let filled = |key: &str| {
        critique
            .field(key)
            .is_some_and(|f| f.state == FieldState::Complete && !f.text.trim().is_empty())
    };
    match task.answer.as_ref().and_then(|a| a.as_object()) {
        Some(members) => members.iter().all(|m| filled(&m.key)),
        None => match template.kind() {
            TemplateKind::Critique => {
                let lower = text.to_lowercase();
                let at = |h: &str| lower.find(h);
                match (at("strengths:"), at("weaknesses:"), at("suggestions:")) {
                    (Some(a), Some(b), Some(c)) if a < b && b < c => {
                        !text[a + 10..b].trim().is_empty()
                            && !text[b + 11..c].trim().is_empty()
                            && !text[c + 12..].trim().is_empty()
                    }
                    _ => false,
                }
            }
            _ => {
                // A template whose answer is the label alone (skywork-critic) asks for no
                // explanation: the verdict is then every field there is.
                let asks_text = task.answer.as_ref().is_none_or(|a| a.text_slots() > 0);
                (!asks_text
                    || critique
                        .field(EXPLANATION)
                        .is_some_and(|f| !f.text.trim().is_empty()))
                    && (critique.verdict.is_some() || critique.score.is_some())
            }
        },
    }
}

pub fn run(args: ConstrainBenchArgs) -> anyhow::Result<i32> {
    let mut review = super::open_reviewed(&args.data, &PanelArgs::default())?;
    let library = Library::load()?;
    let names: Vec<String> = if args.templates.is_empty() {
        library.list().into_iter().map(|t| t.name).collect()
    } else {
        args.templates.clone()
    };
    let mut budgets = std::collections::HashMap::new();
    for b in &args.budget {
        let (t, n) = b
            .split_once('=')
            .with_context(|| format!("--budget {b:?}: write template=N"))?;
        budgets.insert(t.trim().to_string(), n.trim().parse::<usize>()?);
    }
    let items = batch::select_items(&review, &args.items, args.limit)?;
    let mut model = args.model.load()?;
    let mut free_journal = match &args.free_journal {
        Some(p) => Some(
            Journal::open_at(&review.dataset, p)
                .with_context(|| format!("opening {}", p.display()))?
                .0,
        ),
        None => None,
    };
    let mut out = match &args.out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let interrupted = super::judge::interrupt_flag();
    let mut rows = Vec::new();
    let started = Instant::now();
    'templates: for name in &names {
        let template = library.get(name)?;
        let max_new_tokens = budgets.get(name).copied().unwrap_or(args.max_new_tokens);
        let sampling = SamplingParams {
            max_new_tokens,
            repeat_penalty: args.repeat_penalty,
            ..SamplingParams::default()
        };
        let spec = |constrain| JudgeSpec {
            model: model.info.name.clone(),
            template: name.clone(),
            preference: None,
            sampling: sampling.clone(),
            constrain,
        };
        let (free_spec, on_spec) = (spec(ConstrainMode::None), spec(ConstrainMode::Grammar));
        let free_key = free_spec.settings_key(&model.info.source, template.source_text());
        let on_key = on_spec.settings_key(&model.info.source, template.source_text());
        let mut tally = [Tally::default(), Tally::default()];
        for id in &items {
            let item = review
                .dataset
                .get(id)
                .context("item listed but missing")?
                .clone();
            for &order in Orders::Both.list() {
                let mut task = JudgeTask::new(template, &item, order, None)?;
                if template.kind() != TemplateKind::Pairwise && order.is_swapped() {
                    // A single-answer template's other "order" is the other answer.
                    task.prompt = template.render(
                        &item,
                        &RenderOptions {
                            side: Side::B,
                            ..RenderOptions::default()
                        },
                    )?;
                }
                for (i, (spec, key)) in [(&free_spec, &free_key), (&on_spec, &on_key)]
                    .into_iter()
                    .enumerate()
                {
                    if interrupted.load(Ordering::Relaxed) {
                        break 'templates;
                    }
                    let mut request =
                        GenerateRequest::new(task.chat_prompt(), spec.sampling.clone())
                            .with_grammar(task.grammar(spec.constrain));
                    // The constrained run reads the same prompt the free one just read.
                    request.reuse_prefix = true;
                    let generation = model.generate(&request, &interrupted, &mut |_| {})?;
                    if generation.finish == FinishReason::Cancelled {
                        break 'templates;
                    }
                    let JudgeOutcome {
                        judgment,
                        critique,
                        run,
                    } = conclude(spec, key, &task, &generation, &model.info);
                    let readable = match template.kind() {
                        TemplateKind::Pairwise => judgment.verdict.is_some(),
                        TemplateKind::Pointwise => critique.score.is_some(),
                        TemplateKind::Critique => true,
                    };
                    let full = readable && complete(template, &task, &generation.text, &critique);
                    tally[i].add(readable, full, generation.finish, &generation.timing);
                    if let Some(out) = out.as_mut() {
                        writeln!(
                            out,
                            "{}",
                            json!({
                                "template": name, "item": id, "order": order,
                                "constrain": spec.constrain, "verdict": judgment.verdict,
                                "score": critique.score, "readable": readable, "complete": full,
                                "finish": generation.finish, "timing": generation.timing,
                                "output": generation.text,
                            })
                        )?;
                    }
                    if template.kind() != TemplateKind::Pairwise || !args.save {
                        continue;
                    }
                    if spec.constrain.is_on() {
                        review
                            .add_judgment(id, judgment, run)
                            .with_context(|| format!("saving the judgment of {id}"))?;
                    } else if let Some(j) = free_journal.as_mut() {
                        j.record_judgment(id, judgment, run)?;
                    }
                }
            }
            eprintln!(
                "{name} {id}: free {}/{} readable, constrained {}/{} ({:.0} s so far)",
                tally[0].readable,
                tally[0].n,
                tally[1].readable,
                tally[1].n,
                started.elapsed().as_secs_f64()
            );
        }
        rows.push((name.clone(), max_new_tokens, tally));
    }
    println!("| template | max new tokens | judgments | readable verdict, free | readable verdict, constrained | all fields complete, free | all fields complete, constrained | cut at the budget, free / constrained | decode tok/s, free | decode tok/s, constrained | constrained / free |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut all = [Tally::default(), Tally::default()];
    for (name, budget, [free, on]) in &rows {
        for (sum, t) in all.iter_mut().zip([free, on]) {
            sum.n += t.n;
            sum.readable += t.readable;
            sum.complete += t.complete;
            sum.cut += t.cut;
            sum.tokens += t.tokens;
            sum.decode_s += t.decode_s;
            sum.total_s += t.total_s;
        }
        println!(
            "| `{name}` | {budget} | {} × 2 | {} | {} | {} | {} | {} / {} | {:.1} | {:.1} | {:.2} |",
            free.n,
            free.share(free.readable),
            on.share(on.readable),
            free.share(free.complete),
            on.share(on.complete),
            free.cut,
            on.cut,
            free.rate(),
            on.rate(),
            if free.rate() > 0.0 { on.rate() / free.rate() } else { 0.0 }
        );
    }
    let [free, on] = &all;
    println!(
        "| all | | {} × 2 | {} | {} | {} | {} | {} / {} | {:.1} | {:.1} | {:.2} |",
        free.n,
        free.share(free.readable),
        on.share(on.readable),
        free.share(free.complete),
        on.share(on.complete),
        free.cut,
        on.cut,
        free.rate(),
        on.rate(),
        if free.rate() > 0.0 {
            on.rate() / free.rate()
        } else {
            0.0
        }
    );
    eprintln!(
        "{} judgments in {:.0} s (free {:.0} s, constrained {:.0} s in all)",
        free.n + on.n,
        started.elapsed().as_secs_f64(),
        free.total_s,
        on.total_s
    );
    Ok(if interrupted.load(Ordering::Relaxed) {
        130
    } else {
        0
    })
}
