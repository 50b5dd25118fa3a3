//! Judging one item with a local model: the prompt for an item in one order, and the
//! `Judgment` (with its run record for the journal) built from what the model wrote.

use super::generate::{Generation, Prompt};
use super::loader::ModelInfo;
use super::sampling::SamplingParams;
use crate::critique::{Critique, CritiqueParser};
use crate::dataset::{Item, Judgment, Problem, Provenance};
use crate::prompts::{PromptError, RenderOptions, Template};
use crate::verdict::{Order, OutputFormat};
use serde_json::{json, Map, Value};

/// Who judges and how: the same spec gives the same judge name and settings key.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    /// The model as labelled in judgments (`ModelInfo::name`).
    pub model: String,
    pub template: String,
    /// A style-preference sentence appended to pairwise templates.
    pub preference: Option<String>,
    pub sampling: SamplingParams,
}

impl JudgeSpec {
    /// The judge's name in datasets, panels and scores: `MODEL:TEMPLATE`, with `+pref` when a
    /// style preference is set (a different judge, whose verdicts must not mix with the plain one).
    pub fn judge_name(&self) -> String {
        match &self.preference {
            Some(p) if !p.trim().is_empty() => format!(
                "{}:{}+pref-{:08x}",
                self.model,
                self.template,
                xxhash_rust::xxh3::xxh3_64(p.trim().as_bytes()) as u32
            ),
            _ => format!("{}:{}", self.model, self.template),
        }
    }

    /// What must match for an earlier judgment to count as this one (resume): model source,
    /// template text, preference and sampling.
    pub fn settings_key(&self, model_source: &str, template_text: &str) -> String {
        let text = json!({
            "source": model_source,
            "template": xxhash_rust::xxh3::xxh3_64(template_text.as_bytes()),
            "preference": self.preference,
            "sampling": self.sampling,
        })
        .to_string();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

/// One generation to run: an item shown in one order.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeTask {
    pub item: String,
    pub order: Order,
    /// The prompt text before the chat template.
    pub prompt: String,
    pub output: OutputFormat,
}

impl JudgeTask {
    pub fn new(
        template: &Template,
        item: &Item,
        order: Order,
        preference: Option<&str>,
    ) -> Result<JudgeTask, PromptError> {
        let opts = RenderOptions {
            swap: order.is_swapped(),
            preference: preference.map(String::from),
            ..RenderOptions::default()
        };
        Ok(JudgeTask {
            item: item.id.clone(),
            order,
            prompt: template.render(item, &opts)?,
            output: template.output(),
        })
    }

    /// The request's prompt: one user turn, rendered by the model's chat template.
    pub fn chat_prompt(&self) -> Prompt {
        Prompt::user(self.prompt.clone())
    }

    /// A parser for the streamed output, in the template's format.
    pub fn parser(&self) -> CritiqueParser {
        CritiqueParser::new(self.output)
    }
}

/// A finished judgment and the run record that goes with it into the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeOutcome {
    pub judgment: Judgment,
    pub critique: Critique,
    pub run: Map<String, Value>,
}

/// Reads `generation`'s text as the template's format and builds the judgment: the verdict
/// mapped back to the item's order, the raw output, and a run record with the model, template,
/// order, sampling, timings, finish reason and the critique's fields.
pub fn conclude(
    spec: &JudgeSpec,
    settings_key: &str,
    task: &JudgeTask,
    generation: &Generation,
    model: &ModelInfo,
) -> JudgeOutcome {
    let mut parser = task.parser();
    parser.feed(generation.text.as_bytes());
    let critique = parser.finish();
    let verdict = critique.verdict.map(|v| task.order.to_item(v));
    let problem = match (&verdict, critique.score) {
        (None, None) if task.output != OutputFormat::Critique => {
            let mut why = if critique.problems.is_empty() {
                "no verdict in the output".to_string()
            } else {
                critique.problems.join("; ")
            };
            if generation.finish == super::generate::FinishReason::Length {
                why.push_str(" (generation hit max_new_tokens: raise --max-new-tokens)");
            }
            Some(Problem::Unreadable(why))
        }
        _ => None,
    };
    let judgment = Judgment {
        judge: spec.judge_name(),
        verdict,
        output: Some(generation.text.clone()),
        swapped: task.order.is_swapped(),
        problem,
        provenance: Provenance::Journal,
    };
    let mut run = Map::new();
    run.insert("engine".into(), json!("local"));
    run.insert("model".into(), json!(model.name));
    run.insert("model_source".into(), json!(model.source));
    run.insert("precision".into(), json!(model.precision));
    run.insert("device".into(), json!(model.device));
    run.insert("template".into(), json!(spec.template));
    if let Some(p) = &spec.preference {
        run.insert("preference".into(), json!(p));
    }
    run.insert("order".into(), json!(task.order));
    run.insert("sampling".into(), json!(spec.sampling));
    run.insert("settings_key".into(), json!(settings_key));
    run.insert("finish".into(), json!(generation.finish));
    run.insert("timing".into(), json!(generation.timing));
    run.insert(
        "tokens".into(),
        json!({"prompt": generation.timing.prompt_tokens, "completion": generation.timing.generated_tokens}),
    );
    if let Some(score) = critique.score {
        run.insert("score".into(), json!(score));
    }
    let fields: Map<String, Value> = critique
        .fields
        .iter()
        .filter(|f| !f.superseded && !f.text.is_empty())
        .map(|f| (f.key.clone(), json!(f.text)))
        .collect();
    if !fields.is_empty() {
        run.insert("critique".into(), Value::Object(fields));
    }
    JudgeOutcome {
        judgment,
        critique,
        run,
    }
}
