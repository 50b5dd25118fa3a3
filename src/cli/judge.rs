//! `arbiter judge`: run a local judge model over a dataset's items, streaming each critique to
//! the terminal and appending each judgment to the journal; `arbiter chat`: plain generation
//! from standard input, to check that a model works.

use super::models::ProgressLine;
use super::{DatasetArgs, PanelArgs};
use crate::batch;
use crate::engine::catalogue;
use crate::engine::device::{parse_dtype, DeviceChoice};
use crate::engine::hub::{Hub, HubSettings};
use crate::engine::judge::{conclude, JudgeSpec, JudgeTask};
use crate::engine::{
    ConstrainMode, FinishReason, GenerateRequest, GrammarSpec, LoadEvent, LoadOptions, LoadedModel,
    Prompt, SamplingParams,
};
use crate::prompts::{resolve_preference, Library, Template};
use crate::verdict::{Orders, PairedVerdict};
use anyhow::Context;
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which model to run and where.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A catalogue name (`cj2-7b`...), a hub id `owner/name[@revision]`, a model folder or a
    /// `.gguf` file. Default: the catalogue's default judge.
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: Option<String>,
    /// cpu, cuda[:N] or metal[:N] (as this build allows). Default: the best one built in.
    #[arg(long, value_parser = |s: &str| s.parse::<DeviceChoice>().map_err(|e| e.to_string()))]
    pub device: Option<DeviceChoice>,
    /// Weights' dtype for safetensors models: f32, f16, bf16 (default: bf16 on GPUs, f32 on CPU).
    #[arg(long, value_parser = |s: &str| parse_dtype(s))]
    pub dtype: Option<candle_core::DType>,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<LoadedModel> {
        let spec = self
            .model
            .clone()
            .unwrap_or_else(|| catalogue::DEFAULT_JUDGE.to_string());
        let source = catalogue::resolve(&spec)?;
        let options = LoadOptions {
            device: self.device.unwrap_or_else(DeviceChoice::best_available),
            dtype: self.dtype,
            context: None,
        };
        let hub = Hub::new(HubSettings::from_env());
        let mut bar = ProgressLine::new(std::io::stderr().is_terminal());
        let result = crate::engine::load(&source, &options, &hub, &mut |event| match event {
            LoadEvent::Download(e) => bar.show(&e),
            LoadEvent::Stage(s) => {
                bar.finish();
                eprintln!("{s}");
            }
        });
        bar.finish();
        let model = result.with_context(|| format!("loading {spec}"))?;
        eprintln!(
            "loaded {} ({}, {} parameters, {}, {}) in {:.1} s",
            model.info.name,
            model.info.family,
            format_parameters(model.info.parameters),
            model.info.precision,
            model.info.device,
            model.info.load_seconds
        );
        Ok(model)
    }
}

/// `134.5M`, `7.62B`: parameter counts as model cards write them.
pub fn format_parameters(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else {
        format!("{:.1}M", n / 1e6)
    }
}

/// Sampling settings: greedy unless a temperature is given.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate per answer.
    #[arg(long, default_value_t = 1024)]
    pub max_new_tokens: usize,
    /// 0 (the default) decodes greedily: the same judgment every run.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    pub seed: u64,
    /// Off by default; e.g. 1.1 discourages repeating the last 64 tokens.
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
            repeat_penalty: self.repeat_penalty,
            ..SamplingParams::default()
        }
    }
}

/// `--constrain`: keep answers inside the template's grammar.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConstrainArg {
    /// On for templates that declare an answer grammar, off for the others.
    #[default]
    Auto,
    /// On; a template without an answer grammar is an error.
    On,
    /// Off: sample freely and read the answer as it comes.
    Off,
}

impl ConstrainArg {
    /// The mode a local judge runs `template` with.
    pub fn local_mode(self, template: &Template) -> anyhow::Result<ConstrainMode> {
        Ok(match self {
            ConstrainArg::Off => ConstrainMode::None,
            ConstrainArg::Auto if !template.has_answer_grammar() => ConstrainMode::None,
            ConstrainArg::On if !template.has_answer_grammar() => anyhow::bail!(
                "--constrain on: template {} declares no answer grammar; add an `answer:` line to its header (`arbiter prompts show {}` shows the built-in ones) or use --constrain off",
                template.name(),
                template.name()
            ),
            _ => ConstrainMode::Grammar,
        })
    }
}

/// Which items a judging command takes, in which orders, and whether to redo: shared by
/// `arbiter judge` and `arbiter run`.
#[derive(clap::Args, Debug, Clone)]
pub struct SelectionArgs {
    /// Judge only these items.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    pub items: Vec<String>,
    /// Judge at most this many items (after --items).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also judge with the responses swapped, and report position consistency.
    #[arg(long)]
    pub swap: bool,
    /// Judge again what is already judged with the same settings.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The prompt template (`arbiter prompts list`). Default: `judgerbench-v2` for JudgerBenchV2
    /// files, else `cj2-critical-thinking`.
    #[arg(long, short = 't')]
    pub template: Option<String>,
    /// A style preference for pairwise templates: a preset name or a sentence.
    #[arg(long)]
    pub preference: Option<String>,
    /// Keep each answer inside the template's answer grammar (its `answer:` line), so that
    /// every field is filled and the verdict always fits in --max-new-tokens.
    #[arg(long, value_enum, default_value_t = ConstrainArg::Auto)]
    pub constrain: ConstrainArg,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Do not stream critiques; print one line per judgment.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print each judgment as a JSON line on standard output (implies --quiet).
    #[arg(long)]
    pub json: bool,
}

/// Ctrl-C stops the current generation (its partial judgment is not recorded) and the run.
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    if let Err(e) = ctrlc::set_handler(move || f.store(true, Ordering::Relaxed)) {
        tracing::warn!("cannot catch Ctrl-C: {e}");
    }
    flag
}

pub fn judge(args: JudgeArgs) -> anyhow::Result<i32> {
    let mut review = super::open_reviewed(&args.data, &PanelArgs::default())?;
    let library = Library::load()?;
    let template_name = args
        .template
        .clone()
        .unwrap_or_else(|| batch::default_template(review.dataset.format, &library));
    let template = library.get(&template_name)?;
    let preference = args.preference.as_deref().map(resolve_preference);
    let constrain = args.constrain.local_mode(template)?;

    let items = batch::select_items(&review, &args.selection.items, args.selection.limit)?;
    // Render every prompt before loading a model: a template that cannot be filled fails now.
    let orders = Orders::from_swap_flag(args.selection.swap);
    let mut tasks = Vec::new();
    for id in &items {
        let item = review.dataset.get(id).context("item listed but missing")?;
        for &order in orders.list() {
            tasks.push(JudgeTask::new(
                template,
                item,
                order,
                preference.as_deref(),
            )?);
        }
    }

    let mut model = args.model.load()?;
    let spec = JudgeSpec {
        model: model.info.name.clone(),
        template: template_name.clone(),
        preference: preference.clone(),
        sampling: args.sampling.params(),
        constrain,
    };
    let key = spec.settings_key(&model.info.source, template.source_text());
    let judge_name = spec.judge_name();
    // Judged already, by this judge with these settings: in the journal, or in the file itself
    // (a dataset that ships judgments with their `run`, as the demo does).
    let done = batch::judged_in_dataset(review.items(), &judge_name, &key);

    let interrupted = interrupt_flag();
    let stream = !(args.quiet || args.json);
    let (mut judged, mut skipped, mut unreadable) = (0usize, 0usize, 0usize);
    let mut pairs: HashMap<String, PairedVerdict> = HashMap::new();
    eprintln!(
        "judging {} item(s){}{} as {judge_name}; judgments go to {}",
        items.len(),
        if args.selection.swap {
            " in both orders"
        } else {
            ""
        },
        if constrain.is_on() {
            ", answers constrained to the template's grammar"
        } else {
            ""
        },
        review.journal_path().display()
    );
    let mut out = std::io::stdout();
    for task in &tasks {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        let swapped = task.order.is_swapped();
        if !args.selection.force && done.contains(&(task.item.clone(), swapped)) {
            skipped += 1;
            continue;
        }
        if stream {
            writeln!(
                out,
                "\n=== {} ({}) ===",
                task.item,
                if swapped { "B/A" } else { "A/B" }
            )?;
        }
        let request = GenerateRequest::new(task.chat_prompt(), spec.sampling.clone())
            .with_grammar(task.grammar(constrain));
        let generation = model.generate(&request, &interrupted, &mut |text| {
            if stream {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        })?;
        if generation.finish == FinishReason::Cancelled {
            eprintln!("\ninterrupted: {} not recorded", task.item);
            break;
        }
        let outcome = conclude(&spec, &key, task, &generation, &model.info);
        let verdict = outcome.judgment.verdict;
        if verdict.is_none() && outcome.judgment.problem.is_some() {
            unreadable += 1;
        }
        let pair = pairs.entry(task.item.clone()).or_default();
        if swapped {
            pair.swapped = verdict;
        } else {
            pair.original = verdict;
        }
        if args.json {
            let line = serde_json::json!({
                "item": task.item,
                "judgment": outcome.judgment,
                "run": outcome.run,
            });
            writeln!(out, "{line}")?;
        }
        review
            .add_judgment(&task.item, outcome.judgment, outcome.run)
            .with_context(|| format!("saving the judgment of {}", task.item))?;
        judged += 1;
        let t = &generation.timing;
        let label = verdict.map_or("no verdict".to_string(), |v| format!("verdict {v}"));
        if stream {
            writeln!(out)?;
        }
        if !args.json {
            eprintln!(
                "{} ({}): {label}, {} prompt + {} new tokens, first token {:.0} ms, {:.1} tok/s{}",
                task.item,
                if swapped { "B/A" } else { "A/B" },
                t.prompt_tokens,
                t.generated_tokens,
                t.time_to_first_token_ms,
                t.decode_tokens_per_s,
                if generation.finish == FinishReason::Length {
                    ", cut off at --max-new-tokens"
                } else {
                    ""
                }
            );
        }
    }
    eprintln!(
        "judged {judged}, skipped {skipped} already judged with these settings{}, {unreadable} without a readable verdict",
        if skipped > 0 { " (--force to redo)" } else { "" }
    );
    if args.selection.swap {
        let inconsistent = pairs.values().filter(|p| p.is_inconsistent()).count();
        let complete = pairs
            .values()
            .filter(|p| p.original.is_some() && p.swapped.is_some())
            .count();
        eprintln!(
            "position consistency: {} of {complete} pairs agree",
            complete - inconsistent
        );
    }
    Ok(if interrupted.load(Ordering::Relaxed) {
        130
    } else {
        0
    })
}

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed standard input as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Read standard input as a JSON list of `{"role", "content"}` messages and send them as
    /// they are, nothing trimmed: e.g. the `prompt` of an `arbiter export --as dpo` row, to
    /// replay what a judge was sent.
    #[arg(long, conflicts_with_all = ["raw", "system"])]
    pub messages: bool,
    /// Keep the reply inside a grammar: a template's name (its answer grammar, e.g. after
    /// `arbiter prompts render`), a `.lark` file (llguidance's Lark syntax) or a `.json` file
    /// (a JSON Schema).
    #[arg(long, value_name = "TEMPLATE|FILE")]
    pub constrain: Option<String>,
}

pub fn chat(args: ChatArgs) -> anyhow::Result<i32> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the prompt from standard input")?;
    if text.trim().is_empty() {
        anyhow::bail!("no prompt: write it on standard input, e.g. `echo Hello | arbiter chat`");
    }
    let grammar = args.constrain.as_deref().map(chat_grammar).transpose()?;
    let mut model = args.model.load()?;
    let prompt = if args.raw {
        Prompt::Raw(text)
    } else if args.messages {
        let messages: Vec<crate::dataset::Message> = serde_json::from_str(&text).context(
            "--messages: standard input must be a JSON list of {\"role\": ..., \"content\": ...} messages",
        )?;
        if messages.is_empty() {
            anyhow::bail!("--messages: the list of messages on standard input is empty");
        }
        Prompt::Chat(messages)
    } else {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(crate::dataset::Message::new("system", s.clone()));
        }
        messages.push(crate::dataset::Message::new(
            "user",
            text.trim_end().to_string(),
        ));
        Prompt::Chat(messages)
    };
    let interrupted = interrupt_flag();
    let request = GenerateRequest::new(prompt, args.sampling.params()).with_grammar(grammar);
    let mut out = std::io::stdout();
    let generation = model.generate(&request, &interrupted, &mut |t| {
        let _ = out.write_all(t.as_bytes());
        let _ = out.flush();
    })?;
    writeln!(out)?;
    let t = &generation.timing;
    eprintln!(
        "[{}: {} prompt tokens, {} generated, prefill {:.0} ms, first token {:.0} ms, {:.1} tok/s]",
        generation.finish.label(),
        t.prompt_tokens,
        t.generated_tokens,
        t.prefill_ms,
        t.time_to_first_token_ms,
        t.decode_tokens_per_s
    );
    Ok(0)
}

/// The grammar `arbiter chat --constrain` names: a template, or a grammar file.
fn chat_grammar(name: &str) -> anyhow::Result<GrammarSpec> {
    let path = std::path::Path::new(name);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "lark" | "json") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the grammar {}", path.display()))?;
        let what = path.display().to_string();
        return Ok(if ext == "lark" {
            GrammarSpec::Lark { what, text }
        } else {
            let schema = serde_json::from_str(&text)
                .with_context(|| format!("{what} is not valid JSON (a JSON Schema)"))?;
            GrammarSpec::JsonSchema { what, schema }
        });
    }
    let library = Library::load()?;
    let template = library.get(name)?;
    let grammar = template.answer_for(None).cloned().with_context(|| {
        format!("template {name} declares no answer grammar (no `answer:` line in its header)")
    })?;
    Ok(GrammarSpec::Answer {
        what: format!("template {name}"),
        grammar,
    })
}
