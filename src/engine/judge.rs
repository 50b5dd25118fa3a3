//! Judging one item: the prompt for an item in one order, and the `Judgment` (with its run
//! record for the journal) built from what the judge wrote, by the local engine or a remote
//! endpoint alike.

use super::constrain::{ConstrainMode, GrammarSpec};
use super::generate::{FinishReason, Generation, Prompt, Timing};
use super::loader::ModelInfo;
use super::sampling::SamplingParams;
use crate::critique::{Critique, CritiqueParser};
use crate::dataset::{Item, Judgment, Message, Problem, Provenance};
use crate::prompts::{AnswerGrammar, PromptError, RenderOptions, Template};
use crate::verdict::{self, Order, OutputFormat, ParseError};
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
    /// Whether (and how) the answer is kept inside the template's grammar.
    pub constrain: ConstrainMode,
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
    /// template text, preference, sampling and, when on, the constraint. Hashed over JSON
    /// with sorted keys, so the key does not depend on how a map orders its entries (an
    /// unconstrained judge keeps the key it had before constraints existed).
    pub fn settings_key(&self, model_source: &str, template_text: &str) -> String {
        let mut settings = json!({
            "source": model_source,
            "template": xxhash_rust::xxh3::xxh3_64(template_text.as_bytes()),
            "preference": self.preference,
            "sampling": self.sampling,
        });
        if self.constrain.is_on() {
            settings["constrain"] = json!(self.constrain);
        }
        let text = canonical_json(&settings);
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    }
}

/// Compact JSON with every object's keys sorted.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// One generation to run: an item shown in one order.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeTask {
    pub item: String,
    /// The item's language, for formats whose verdict key depends on it (JudgerBenchV2).
    pub language: Option<String>,
    pub order: Order,
    /// The prompt text before the chat template.
    pub prompt: String,
    pub output: OutputFormat,
    /// The template's name, for messages.
    pub template: String,
    /// The answer grammar the template declares for this item's language, if any.
    pub answer: Option<AnswerGrammar>,
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
            language: item.language.clone(),
            order,
            prompt: template.render(item, &opts)?,
            output: template.output(),
            template: template.name().to_string(),
            answer: template.answer_for(item.language.as_deref()).cloned(),
        })
    }

    /// The grammar the local engine keeps the answer in under `mode`: the template's answer
    /// grammar, or `None` when off or when the template declares none.
    pub fn grammar(&self, mode: ConstrainMode) -> Option<GrammarSpec> {
        if !mode.is_on() {
            return None;
        }
        self.answer.clone().map(|grammar| GrammarSpec::Answer {
            what: format!("template {}", self.template),
            grammar,
        })
    }

    /// The messages the judge is sent: one user turn holding the rendered template. The local
    /// engine renders them with the model's chat template; a remote endpoint gets them as the
    /// request's `messages`.
    pub fn messages(&self) -> Vec<Message> {
        vec![Message::new("user", self.prompt.clone())]
    }

    /// The request's prompt: `messages`, rendered by the model's chat template.
    pub fn chat_prompt(&self) -> Prompt {
        Prompt::Chat(self.messages())
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

/// What a judge wrote and how the generation went, whoever ran it (the local engine or a
/// remote endpoint): the input `conclude_output` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeOutput<'a> {
    /// The judge's name in the judgment (`JudgeSpec::judge_name()` for local runs; a panel
    /// file names its judges itself).
    pub judge: &'a str,
    pub text: &'a str,
    pub finish: FinishReason,
    pub timing: Timing,
    /// Who ran it: `engine`, `model`, ... (`local_description` for the local engine). Goes
    /// into the run record first, so the common fields below it cannot be overridden.
    pub runner: Map<String, Value>,
    /// The critique as the runner's parser read it while the text streamed in; read from
    /// `text` when `None`.
    pub critique: Option<Critique>,
}

/// The run record's description of a local model.
pub fn local_description(model: &ModelInfo) -> Map<String, Value> {
    let mut run = Map::new();
    run.insert("engine".into(), json!("local"));
    run.insert("model".into(), json!(model.name));
    run.insert("model_source".into(), json!(model.source));
    run.insert("precision".into(), json!(model.precision));
    run.insert("device".into(), json!(model.device));
    run
}

/// Reads `generation`'s text as the template's format and builds the judgment: the verdict
/// mapped back to the item's order, the raw output, and a run record with the model, template,
/// order, sampling, the messages sent, timings, finish reason and the critique's fields.
pub fn conclude(
    spec: &JudgeSpec,
    settings_key: &str,
    task: &JudgeTask,
    generation: &Generation,
    model: &ModelInfo,
) -> JudgeOutcome {
    let judge = spec.judge_name();
    let output = JudgeOutput {
        judge: &judge,
        text: &generation.text,
        finish: generation.finish,
        timing: generation.timing,
        runner: local_description(model),
        critique: None,
    };
    conclude_output(spec, settings_key, task, output)
}

/// `conclude` for any runner: the same judgment and run record from a finished output.
pub fn conclude_output(
    spec: &JudgeSpec,
    settings_key: &str,
    task: &JudgeTask,
    output: JudgeOutput<'_>,
) -> JudgeOutcome {
    let text = output.text;
    let critique = output.critique.unwrap_or_else(|| {
        let mut parser = task.parser();
        parser.feed(text.as_bytes());
        parser.finish()
    });
    let cut_off = output.finish == FinishReason::Length;
    let hint = |mut why: String| {
        if cut_off {
            why.push_str(" (generation hit its token limit: raise max_new_tokens)");
        }
        why
    };
    let (as_judged, problem) = if task.output == OutputFormat::JudgerBench {
        // The benchmark's own reading, so scores match OpenCompass: the last `"winner"` (or
        // `"胜者"` for Chinese items) wins, and a letter other than A/B is a wrong answer.
        let chinese = task.language.as_deref().is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("cn") || l.starts_with("zh")
        });
        match verdict::parse_judgerbench(text, chinese) {
            Ok(v) => (Some(v), None),
            Err(ParseError::OutOfScale(letter)) => (None, Some(Problem::OutOfScale(letter))),
            Err(e) => (None, Some(Problem::Unreadable(hint(e.to_string())))),
        }
    } else {
        let problem = match (&critique.verdict, critique.score) {
            (None, None) if critique.conflicting.is_some() => {
                critique.conflicting.clone().map(Problem::Conflicting)
            }
            (None, None) if task.output != OutputFormat::Critique => {
                Some(Problem::Unreadable(hint(if critique.problems.is_empty() {
                    "no verdict in the output".to_string()
                } else {
                    critique.problems.join("; ")
                })))
            }
            _ => None,
        };
        (critique.verdict, problem)
    };
    let verdict = as_judged.map(|v| task.order.to_item(v));
    let judgment = Judgment {
        judge: output.judge.to_string(),
        verdict,
        output: Some(text.to_string()),
        swapped: task.order.is_swapped(),
        problem,
        provenance: Provenance::Journal,
        preference: None,
        run: Default::default(),
    };
    let mut run = output.runner;
    run.insert("template".into(), json!(spec.template));
    if let Some(p) = &spec.preference {
        run.insert("preference".into(), json!(p));
    }
    run.insert("order".into(), json!(task.order));
    // The prompt exactly as sent: a template can be overridden from the user's directory or
    // edited later, so re-rendering it afterwards may not give back what the judge saw, and
    // training data built from this judgment needs that prompt byte for byte.
    run.insert("messages".into(), json!(task.messages()));
    run.insert("sampling".into(), json!(spec.sampling));
    run.insert("constrain".into(), json!(spec.constrain));
    run.insert("settings_key".into(), json!(settings_key));
    run.insert("finish".into(), json!(output.finish));
    run.insert("timing".into(), json!(output.timing));
    run.insert(
        "tokens".into(),
        json!({"prompt": output.timing.prompt_tokens, "completion": output.timing.generated_tokens}),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Verdict;

    /// A judge of model "m" with template "t" and the default sampling, unconstrained.
    fn spec() -> JudgeSpec {
        JudgeSpec {
            model: "m".into(),
            template: "t".into(),
            preference: None,
            sampling: SamplingParams::default(),
            constrain: ConstrainMode::None,
        }
    }

    fn run(output: OutputFormat, language: &str, order: Order, text: &str) -> JudgeOutcome {
        let spec = spec();
        let task = JudgeTask {
            item: "q1".into(),
            language: Some(language.into()),
            order,
            prompt: String::new(),
            output,
            template: "t".into(),
            answer: None,
        };
        let generation = Generation {
            text: text.into(),
            tokens: vec![],
            finish: FinishReason::Stop,
            timing: Timing::default(),
        };
        let info = ModelInfo {
            name: "m".into(),
            source: "m".into(),
            family: "qwen2",
            route: "arbiter".into(),
            device: "cpu".into(),
            precision: "f32".into(),
            parameters: 0,
            layers: 0,
            max_context: 0,
            load_seconds: 0.0,
        };
        conclude(&spec, "k", &task, &generation, &info)
    }

    #[test]
    fn judgerbench_outputs_are_read_as_the_benchmark_reads_them() {
        let two = r#"{"analysis": "x", "winner": "A"} then {"analysis": "y", "winner": "B"}"#;
        let o = run(OutputFormat::JudgerBench, "en", Order::Original, two);
        assert_eq!(
            o.judgment.verdict,
            Some(Verdict::B),
            "the last match counts"
        );
        let swapped = run(OutputFormat::JudgerBench, "en", Order::Swapped, two);
        assert_eq!(
            swapped.judgment.verdict,
            Some(Verdict::A),
            "mapped back to the item's order"
        );
        let cn = run(
            OutputFormat::JudgerBench,
            "cn",
            Order::Original,
            r#"{"winner": "A"}"#,
        );
        assert_eq!(
            cn.judgment.verdict, None,
            "a Chinese item is read by its 胜者 key"
        );
        let cn = run(
            OutputFormat::JudgerBench,
            "cn",
            Order::Original,
            r#"{"分析": "好", "胜者": "A"}"#,
        );
        assert_eq!(cn.judgment.verdict, Some(Verdict::A));
        let c = run(
            OutputFormat::JudgerBench,
            "en",
            Order::Original,
            r#"{"winner": "C"}"#,
        );
        assert_eq!(c.judgment.problem, Some(Problem::OutOfScale("C".into())));
        let cj2 = run(
            OutputFormat::Cj2Json,
            "en",
            Order::Original,
            r#"{"Reasoning": "r", "Choice": "Model B"}"#,
        );
        assert_eq!(cj2.judgment.verdict, Some(Verdict::B));
        assert_eq!(cj2.run["critique"]["Reasoning"], "r");
    }

    #[test]
    fn the_run_record_holds_the_messages_as_sent() {
        let spec = spec();
        let task = JudgeTask {
            item: "q1".into(),
            language: None,
            order: Order::Swapped,
            prompt: "Compare A and B.\n  trailing space kept ".into(),
            output: OutputFormat::Cj2Json,
            template: "t".into(),
            answer: None,
        };
        let output = JudgeOutput {
            judge: "m:t",
            text: r#"{"Choice": "Model A"}"#,
            finish: FinishReason::Stop,
            timing: Timing::default(),
            runner: Map::new(),
            critique: None,
        };
        let o = conclude_output(&spec, "k", &task, output);
        let sent: Vec<Message> =
            serde_json::from_value(o.run["messages"].clone()).expect("messages read back");
        assert_eq!(sent, task.messages());
        assert_eq!(sent[0].role, "user");
        assert_eq!(sent[0].content, task.prompt);
        assert_eq!(task.chat_prompt(), Prompt::Chat(sent));
    }
}
