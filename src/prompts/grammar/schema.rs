//! An answer that is one JSON object, as a JSON Schema: what OpenAI-style `response_format`
//! (and vLLM, SGLang, llama.cpp's server) take. Every key is required and no other key is
//! allowed, which is also what OpenAI's strict mode demands; the keys are listed in the
//! answer's order, which servers that generate properties in schema order follow.

use super::{Member, Value};
use serde_json::{json, Map};

pub(super) fn object(members: &[Member]) -> serde_json::Value {
    let mut properties = Map::new();
    for m in members {
        let value = match &m.value {
            Value::Text => json!({"type": "string"}),
            Value::Choice(options) => json!({"type": "string", "enum": options}),
            Value::Range(lo, hi) => json!({"type": "integer", "minimum": lo, "maximum": hi}),
        };
        properties.insert(m.key.clone(), value);
    }
    let required: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}
