//! Telling a file's format from its first records' keys (and, where two formats share keys,
//! from a value or two), so that `--format` is only needed for unusual files.

use super::frame::Record;
use super::Format;
use serde_json::{Map, Value};

/// How many readable records are looked at before giving up on their shape.
const LOOK_AT: usize = 8;
/// How far past unreadable records to look for readable ones (a file with a damaged head).
const SCAN_AT_MOST: usize = 1000;

/// What the first records looked like when no format matched, for the error message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unrecognised {
    /// None of the first records was readable JSON.
    NothingReadable,
    /// Readable records, none of a known shape; the hint says what was seen.
    Shape(String),
}

/// The format of the first record that has a recognisable shape.
pub(crate) fn detect(records: &[Record<'_>]) -> Result<Format, Unrecognised> {
    let mut first_seen: Option<String> = None;
    let mut readable = 0;
    for rec in records.iter().take(SCAN_AT_MOST) {
        let Ok(value) = serde_json::from_slice::<Value>(rec.text) else {
            continue;
        };
        readable += 1;
        if readable > LOOK_AT {
            break;
        }
        match &value {
            Value::Object(obj) => {
                if let Some(f) = classify(obj) {
                    return Ok(f);
                }
                first_seen.get_or_insert_with(|| {
                    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                    // Sorted: the message must not depend on how the JSON map orders keys.
                    keys.sort_unstable();
                    keys.truncate(12);
                    format!("the first record has the keys {}", keys.join(", "))
                });
            }
            other => {
                first_seen.get_or_insert_with(|| {
                    format!(
                        "the records are {}, not objects",
                        super::common::kind_of(other)
                    )
                });
            }
        }
    }
    Err(first_seen.map_or(Unrecognised::NothingReadable, Unrecognised::Shape))
}

/// The format a single record's shape says.
pub(crate) fn classify(obj: &Map<String, Value>) -> Option<Format> {
    let has = |k: &str| obj.contains_key(k);
    if has("response_a") && has("response_b") {
        return Some(Format::Native);
    }
    if has("base_model_response") && has("models_response") {
        return Some(Format::Judgerbench);
    }
    if has("prediction") && obj.get("gold").is_some_and(Value::is_object) {
        return Some(Format::Opencompass);
    }
    if has("pair_id") && has("response_A") && has("response_B") && has("label") {
        return Some(Format::JudgeBench);
    }
    if has("chosen") && has("rejected") {
        return Some(Format::Rewardbench);
    }
    if has("instruction") && has("output_1") && has("output_2") {
        return Some(Format::AlpacaEval);
    }
    if has("games") && has("model") && (has("uid") || has("question_id")) {
        return Some(Format::ArenaHard);
    }
    if has("g1_winner") || (has("model_1") && has("model_2")) {
        return Some(Format::MtBench);
    }
    if has("winner") && has("conversation_a") && has("conversation_b") {
        // MT-Bench's human judgments share Arena's keys; its judges are named experts and
        // authors (or GPT-4), and it lacks Arena's battle fields.
        let arena_only = ["anony", "language", "tstamp", "conv_metadata"];
        if arena_only.iter().any(|k| has(k)) {
            return Some(Format::Arena);
        }
        let mt_judge = match obj.get("judge") {
            Some(Value::String(j)) => {
                j.starts_with("expert") || j.starts_with("author") || j.starts_with("gpt4")
            }
            Some(Value::Array(_)) => true,
            _ => false,
        };
        return Some(if mt_judge {
            Format::MtBench
        } else {
            Format::Arena
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: serde_json::Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn each_format_is_recognised_by_its_keys() {
        let cases = [
            (
                serde_json::json!({"id": 1, "question": "q", "response_a": "", "response_b": ""}),
                Format::Native,
            ),
            (
                serde_json::json!({"prompt": "", "gold": {}, "base_model_response": {}, "models_response": {}}),
                Format::Judgerbench,
            ),
            (
                serde_json::json!({"origin_prompt": "", "prediction": "", "gold": {}}),
                Format::Opencompass,
            ),
            (
                serde_json::json!({"prompt": "", "chosen": "", "rejected": "", "subset": ""}),
                Format::Rewardbench,
            ),
            (
                serde_json::json!({"question_id": 81, "model_1": "", "model_2": "", "g1_winner": ""}),
                Format::MtBench,
            ),
            (
                serde_json::json!({"winner": "", "conversation_a": [], "conversation_b": [], "judge": "expert_1"}),
                Format::MtBench,
            ),
            (
                serde_json::json!({"winner": "", "conversation_a": [], "conversation_b": [], "judge": "arena_user_1", "anony": true}),
                Format::Arena,
            ),
            (
                serde_json::json!({"pair_id": "p", "source": "livecodebench", "question": "q",
                    "response_A": "", "response_B": "", "label": "A>B"}),
                Format::JudgeBench,
            ),
            (
                serde_json::json!({"instruction": "", "output_1": "", "output_2": "", "preference": 1.5}),
                Format::AlpacaEval,
            ),
            (
                serde_json::json!({"uid": "q", "model": "m", "baseline": "b", "games": []}),
                Format::ArenaHard,
            ),
        ];
        for (v, f) in cases {
            assert_eq!(classify(&obj(v.clone())), Some(f), "{v}");
        }
        assert_eq!(classify(&obj(serde_json::json!({"text": "x"}))), None);
    }

    #[test]
    fn unknown_shapes_say_what_was_seen() {
        let rec = |t: &'static str| Record {
            line: 1,
            index: 0,
            key: None,
            text: t.as_bytes(),
        };
        match detect(&[rec("{\"text\": 1, \"label\": 2}")]) {
            Err(Unrecognised::Shape(h)) => assert!(
                h.contains("text, label") || h.contains("label, text"),
                "{h}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(detect(&[rec("{oops")]), Err(Unrecognised::NothingReadable));
        // A bad first line does not hide a good second one.
        assert_eq!(
            detect(&[
                rec("{oops"),
                rec("{\"prompt\": \"\", \"chosen\": \"\", \"rejected\": \"\"}")
            ]),
            Ok(Format::Rewardbench)
        );
    }
}
