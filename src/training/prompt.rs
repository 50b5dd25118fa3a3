//! The prompt a judgment's judge was sent: the messages its run record holds when it was made
//! in Arbiter, else the template rendered again for the item in the judgment's order, checked
//! against the template text the run's settings key was computed over.

use super::Skip;
use crate::dataset::{Item, Judgment, Message};
use crate::engine::judge::{JudgeSpec, JudgeTask};
use crate::engine::{ConstrainMode, SamplingParams};
use crate::prompts::Library;
use crate::verdict::Order;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a prompt came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// The messages recorded with the judgment when it was made: what was sent, byte for byte.
    Recorded,
    /// Rendered again from the template, whose text the run's settings key shows is the one
    /// the judge used (judgments recorded before the messages were kept).
    Rerendered,
    /// Rendered again from a template that cannot be shown to be the one the judge used.
    RerenderedUnverified,
}

impl PromptSource {
    pub fn describe(self) -> &'static str {
        match self {
            PromptSource::Recorded => "recorded when judged",
            PromptSource::Rerendered => "re-rendered from the unchanged template",
            PromptSource::RerenderedUnverified => {
                "re-rendered from a template not confirmed unchanged"
            }
        }
    }
}

/// A judgment's prompt and the template it was rendered from.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveredPrompt {
    pub messages: Vec<Message>,
    pub source: PromptSource,
    /// The template's name as the run record gives it.
    pub template: String,
}

/// The prompt `judgment` of `item` was made with, or why it cannot be known.
pub fn recover_prompt(
    item: &Item,
    judgment: &Judgment,
    library: &Library,
) -> Result<RecoveredPrompt, Skip> {
    let run = &judgment.run;
    let Some(template_name) = run.get("template").and_then(Value::as_str) else {
        // A judgment that came with the dataset: nothing says how its judge was asked.
        return Err(Skip::NoPrompt);
    };
    if let Some(recorded) = run.get("messages") {
        match serde_json::from_value::<Vec<Message>>(recorded.clone()) {
            Ok(messages) if !messages.is_empty() => {
                return Ok(RecoveredPrompt {
                    messages,
                    source: PromptSource::Recorded,
                    template: template_name.to_string(),
                })
            }
            _ => tracing::warn!(
                item = %item.id,
                judge = %judgment.judge,
                "the run record's `messages` is not a list of role/content messages; rendering the template again"
            ),
        }
    }
    let template = library
        .get(template_name)
        .map_err(|_| Skip::TemplateUnavailable)?;
    let order = if judgment.swapped {
        Order::Swapped
    } else {
        Order::Original
    };
    let preference = run.get("preference").and_then(Value::as_str);
    let task =
        JudgeTask::new(template, item, order, preference).map_err(|_| Skip::TemplateUnavailable)?;
    let source = if template_confirmed(run, template_name, template.source_text()) {
        PromptSource::Rerendered
    } else {
        PromptSource::RerenderedUnverified
    };
    Ok(RecoveredPrompt {
        messages: task.messages(),
        source,
        template: template_name.to_string(),
    })
}

/// Whether the run's settings key was computed over `template_text`: the key hashes the model
/// source, the template text, the preference, the sampling and the constraint, so recomputing
/// it from the recorded settings and today's text gives the same key only when the text is
/// unchanged. The source is not always recorded as the key saw it (`arbiter run` keys on
/// `local:`/`remote:` and the panel file's model), so each spelling the runners use is tried.
fn template_confirmed(
    run: &serde_json::Map<String, Value>,
    template_name: &str,
    template_text: &str,
) -> bool {
    let Some(key) = run.get("settings_key").and_then(Value::as_str) else {
        return false;
    };
    let Some(sampling) = run
        .get("sampling")
        .and_then(|s| serde_json::from_value::<SamplingParams>(s.clone()).ok())
    else {
        return false;
    };
    let constrain = run
        .get("constrain")
        .and_then(|c| serde_json::from_value::<ConstrainMode>(c.clone()).ok())
        .unwrap_or_default();
    let spec = JudgeSpec {
        model: String::new(),
        template: template_name.to_string(),
        preference: run
            .get("preference")
            .and_then(Value::as_str)
            .map(String::from),
        sampling,
        constrain,
    };
    let text = |k: &str| run.get(k).and_then(Value::as_str);
    let mut sources: Vec<String> = Vec::new();
    if let Some(s) = text("model_source") {
        sources.push(s.to_string());
        sources.push(format!("local:{s}"));
    }
    if let Some(m) = text("model") {
        sources.push(format!("local:{m}"));
        sources.push(format!("remote:{m}"));
    }
    sources
        .iter()
        .any(|source| spec.settings_key(source, template_text) == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Provenance, Response};
    use crate::verdict::Verdict;
    use serde_json::json;

    fn item() -> Item {
        Item {
            id: "q1".into(),
            category: None,
            language: Some("en".into()),
            context: vec![Message::new("user", "What is 2+2?")],
            response_a: Response {
                model: "m1".into(),
                text: "4".into(),
                prior_turns: vec![],
            },
            response_b: Response {
                model: "m2".into(),
                text: "5".into(),
                prior_turns: vec![],
            },
            judgments: vec![],
            gold: None,
            meta: Default::default(),
        }
    }

    fn judgment(swapped: bool, run: Value) -> Judgment {
        Judgment {
            judge: "j".into(),
            verdict: Some(Verdict::A),
            output: Some("{\"Choice\": \"Model A\"}".into()),
            swapped,
            problem: None,
            provenance: Provenance::Journal,
            preference: None,
            run: run.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn recorded_messages_are_taken_as_they_are() {
        let library = Library::with_user_dir(None).expect("built-in templates");
        let j = judgment(
            false,
            json!({"template": "cj2-quick", "messages": [{"role": "user", "content": "as sent \n"}]}),
        );
        let p = recover_prompt(&item(), &j, &library).expect("recorded");
        assert_eq!(p.source, PromptSource::Recorded);
        assert_eq!(p.messages, vec![Message::new("user", "as sent \n")]);
        assert_eq!(p.template, "cj2-quick");
    }

    #[test]
    fn a_legacy_judgment_is_rendered_again_and_checked_against_its_settings_key() {
        let library = Library::with_user_dir(None).expect("built-in templates");
        let template = library.get("cj2-quick").expect("built in");
        let spec = JudgeSpec {
            model: "any".into(),
            template: "cj2-quick".into(),
            preference: None,
            sampling: SamplingParams::default(),
            constrain: ConstrainMode::Grammar,
        };
        let key = spec.settings_key("llm/model.gguf", template.source_text());
        let run = json!({"template": "cj2-quick", "model": "model.gguf",
            "model_source": "llm/model.gguf", "sampling": SamplingParams::default(),
            "constrain": "grammar", "settings_key": key});
        let swapped = judgment(true, run.clone());
        let p = recover_prompt(&item(), &swapped, &library).expect("re-rendered");
        assert_eq!(p.source, PromptSource::Rerendered);
        let expected = JudgeTask::new(template, &item(), Order::Swapped, None).expect("renders");
        assert_eq!(p.messages, expected.messages());
        // The swapped order shows response B ("5") first.
        let text = &p.messages[0].content;
        assert!(text.find('5') < text.find('4'), "{text}");

        // A key computed over another template text: the template changed since judging.
        let mut changed = run.clone();
        changed["settings_key"] = json!(spec.settings_key("llm/model.gguf", "old text"));
        let p = recover_prompt(&item(), &judgment(false, changed), &library).expect("renders");
        assert_eq!(p.source, PromptSource::RerenderedUnverified);
    }

    #[test]
    fn a_judgment_without_a_run_record_or_with_an_unknown_template_has_no_prompt() {
        let library = Library::with_user_dir(None).expect("built-in templates");
        assert_eq!(
            recover_prompt(&item(), &judgment(false, json!({})), &library),
            Err(Skip::NoPrompt)
        );
        assert_eq!(
            recover_prompt(
                &item(),
                &judgment(false, json!({"template": "no-such-template"})),
                &library
            ),
            Err(Skip::TemplateUnavailable)
        );
    }
}
