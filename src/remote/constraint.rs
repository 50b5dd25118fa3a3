//! What a remote judge's request says about the answer's shape: the template's answer
//! grammar, in the field the server reads it from. OpenAI's `response_format` with a JSON
//! schema (also vLLM, SGLang and llama.cpp's server), `response_format` `json_object` with a
//! `schema` (llama.cpp's and llama-cpp-python's servers), or a GBNF grammar in the field the
//! panel file names (`grammar` for llama.cpp, `ebnf` for SGLang, `structured_outputs.grammar`
//! for vLLM).

use crate::engine::ConstrainMode;
use crate::prompts::AnswerGrammar;
use serde_json::{json, Value};

/// The shape one request asks the server to enforce.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteConstraint {
    /// `response_format: {"type": "json_schema", "json_schema": {name, schema, strict}}`.
    JsonSchema { name: String, schema: Value },
    /// `response_format: {"type": "json_object", "schema": schema}`.
    JsonObject { schema: Value },
    /// A GBNF grammar at `field` (dots for nested objects).
    Grammar { field: String, gbnf: String },
}

impl RemoteConstraint {
    /// The constraint for `answer` under `mode` (`None` when off, or when a JSON mode meets an
    /// answer that is not one JSON object, which planning refuses beforehand). `name` names the
    /// schema (the template's name); `grammar_field` is where a grammar goes.
    pub fn new(
        mode: ConstrainMode,
        answer: &AnswerGrammar,
        name: &str,
        grammar_field: &str,
    ) -> Option<RemoteConstraint> {
        match mode {
            ConstrainMode::None => None,
            ConstrainMode::JsonSchema => {
                answer
                    .to_json_schema()
                    .map(|schema| RemoteConstraint::JsonSchema {
                        name: schema_name(name),
                        schema,
                    })
            }
            ConstrainMode::JsonObject => answer
                .to_json_schema()
                .map(|schema| RemoteConstraint::JsonObject { schema }),
            ConstrainMode::Grammar => Some(RemoteConstraint::Grammar {
                field: grammar_field.to_string(),
                gbnf: answer.to_gbnf(),
            }),
        }
    }

    /// Adds the constraint to a `/chat/completions` request body.
    pub fn apply(&self, body: &mut Value) {
        match self {
            RemoteConstraint::JsonSchema { name, schema } => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": schema, "strict": true},
                });
            }
            RemoteConstraint::JsonObject { schema } => {
                body["response_format"] = json!({"type": "json_object", "schema": schema});
            }
            RemoteConstraint::Grammar { field, gbnf } => {
                let mut at = body;
                let mut parts = field.split('.').peekable();
                while let Some(part) = parts.next() {
                    if parts.peek().is_none() {
                        at[part] = json!(gbnf);
                        break;
                    }
                    if !at[part].is_object() {
                        at[part] = json!({});
                    }
                    at = &mut at[part];
                }
            }
        }
    }
}

/// OpenAI's schema names allow `[a-zA-Z0-9_-]`, at most 64 characters.
fn schema_name(template: &str) -> String {
    let name: String = template
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "answer".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_lands_where_its_server_reads_it() {
        let answer = AnswerGrammar::parse(r#"{"why": text, "winner": "A" | "B"}"#).expect("valid");
        let mut body = json!({"model": "m"});
        RemoteConstraint::new(
            ConstrainMode::JsonSchema,
            &answer,
            "judgerbench v2",
            "grammar",
        )
        .expect("a JSON answer")
        .apply(&mut body);
        let format = &body["response_format"];
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["json_schema"]["name"], "judgerbench_v2");
        assert_eq!(format["json_schema"]["strict"], true);
        assert_eq!(
            format["json_schema"]["schema"]["properties"]["winner"]["enum"],
            json!(["A", "B"])
        );
        let mut body = json!({"model": "m"});
        RemoteConstraint::new(ConstrainMode::JsonObject, &answer, "t", "grammar")
            .expect("a JSON answer")
            .apply(&mut body);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(
            body["response_format"]["schema"]["required"],
            json!(["why", "winner"])
        );
        let mut body = json!({"model": "m"});
        RemoteConstraint::new(
            ConstrainMode::Grammar,
            &answer,
            "t",
            "structured_outputs.grammar",
        )
        .expect("a grammar")
        .apply(&mut body);
        assert!(body["structured_outputs"]["grammar"]
            .as_str()
            .is_some_and(|g| g.starts_with("root ::=")));
        assert_eq!(body["model"], "m");
        let prose = AnswerGrammar::parse(r#"text ("[[A]]" | "[[B]]")"#).expect("valid");
        assert_eq!(
            RemoteConstraint::new(ConstrainMode::JsonSchema, &prose, "t", "grammar"),
            None
        );
        assert_eq!(
            RemoteConstraint::new(ConstrainMode::None, &answer, "t", "grammar"),
            None
        );
    }
}
