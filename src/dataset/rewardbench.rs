//! RewardBench records (`prompt`, `chosen`, `rejected`, `subset`, and when present `id`,
//! `chosen_model`, `rejected_model`).
//!
//! The chosen answer goes to A or B by a seeded shuffle that depends only on the record itself:
//! bit 0 of `xxh3_64_with_seed(key, SHUFFLE_SEED)` where the key is the record's `id` (or, when
//! it has none, its prompt and chosen answer). Reordering or filtering the file therefore never
//! changes a side. The side is the item's gold, and `meta` records it with the seed.

use super::common::{id_like, malformed, object, opt_str, RecordError};
use super::frame::Record;
use super::{Item, Message, Response};
use crate::verdict::Outcome;
use serde_json::{Map, Value};

/// The seed of the chosen-side shuffle. Changing it changes every RewardBench item's sides.
pub const SHUFFLE_SEED: u64 = 0x4152_4249_5445_5221;

/// The side the chosen answer is shown on for a record with this shuffle key.
pub fn chosen_side(key: &str) -> Outcome {
    if xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), SHUFFLE_SEED) & 1 == 0 {
        Outcome::A
    } else {
        Outcome::B
    }
}

pub(crate) fn item(rec: &Record<'_>) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let context = prompt(&obj)?;
    let chosen = answer(&obj, "chosen")?;
    let rejected = answer(&obj, "rejected")?;
    let subset = opt_str(&obj, "subset")?;
    let source_id = id_like(&obj, "id")?;
    let id = source_id
        .clone()
        .unwrap_or_else(|| (rec.index + 1).to_string());
    let key = match &source_id {
        Some(id) => id.clone(),
        None => format!("{}\u{0}{}", last_user(&context), chosen),
    };
    let side = chosen_side(&key);
    let chosen = Response {
        model: opt_str(&obj, "chosen_model")?
            .unwrap_or_default()
            .to_string(),
        text: chosen,
        prior_turns: Vec::new(),
    };
    let rejected = Response {
        model: opt_str(&obj, "rejected_model")?
            .unwrap_or_default()
            .to_string(),
        text: rejected,
        prior_turns: Vec::new(),
    };
    let (response_a, response_b) = match side {
        Outcome::A => (chosen, rejected),
        _ => (rejected, chosen),
    };
    let mut meta = Map::new();
    meta.insert("chosen_side".into(), Value::String(side.label().into()));
    meta.insert("shuffle_seed".into(), Value::from(SHUFFLE_SEED));
    meta.insert(
        "shuffle_key".into(),
        Value::String(
            if source_id.is_some() {
                "id"
            } else {
                "prompt+chosen"
            }
            .into(),
        ),
    );
    Ok(Item {
        id,
        category: subset.map(str::to_string),
        language: None,
        context,
        response_a,
        response_b,
        judgments: Vec::new(),
        gold: Some(side),
        meta,
    })
}

fn last_user(context: &[Message]) -> &str {
    context
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("")
}

/// The prompt: a string, or a list of chat turns.
fn prompt(obj: &Map<String, Value>) -> Result<Vec<Message>, RecordError> {
    match obj.get("prompt") {
        Some(Value::String(s)) => Ok(vec![Message::new("user", s.clone())]),
        Some(v @ Value::Array(_)) => serde_json::from_value(v.clone()).map_err(|e| {
            malformed(format!(
                "\"prompt\" must be a string or a list of {{\"role\", \"content\"}} turns: {e}"
            ))
        }),
        Some(_) => Err(malformed(
            "\"prompt\" must be a string or a list of {\"role\", \"content\"} turns",
        )),
        None => Err(malformed("missing \"prompt\"")),
    }
}

/// An answer: a string, or a chat list whose last turn is the answer.
fn answer(obj: &Map<String, Value>, key: &str) -> Result<String, RecordError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ Value::Array(_)) => {
            let turns: Vec<Message> = serde_json::from_value(v.clone()).map_err(|_| {
                malformed(format!(
                    "\"{key}\" must be a string or a list of {{\"role\", \"content\"}} turns (RewardBench 2's best-of-4 lists of answers are not pairwise)"
                ))
            })?;
            match turns.last() {
                Some(m) if m.role == "assistant" => Ok(m.content.clone()),
                _ => Err(malformed(format!(
                    "\"{key}\" must end with the assistant's answer"
                ))),
            }
        }
        Some(_) => Err(malformed(format!("\"{key}\" must be a string"))),
        None => Err(malformed(format!("missing \"{key}\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: usize, text: &str) -> Result<Item, RecordError> {
        item(&Record {
            line: index + 1,
            index,
            key: None,
            text: text.as_bytes(),
        })
    }

    #[test]
    fn chosen_side_depends_on_the_id_only() {
        let text = r#"{"id": 30, "prompt": "p", "chosen": "good", "rejected": "bad", "subset": "math-prm", "chosen_model": "m1"}"#;
        let first = at(0, text).expect("item");
        let moved = at(41, text).expect("item");
        assert_eq!(first.response_a, moved.response_a);
        assert_eq!(first.id, "30");
        let gold = first.gold.expect("gold");
        let chosen = if gold == Outcome::A {
            &first.response_a
        } else {
            &first.response_b
        };
        assert_eq!(
            (chosen.text.as_str(), chosen.model.as_str()),
            ("good", "m1")
        );
        assert_eq!(first.meta["chosen_side"], gold.label());
        assert_eq!(first.category.as_deref(), Some("math-prm"));
    }

    #[test]
    fn the_shuffle_puts_chosen_on_both_sides() {
        let sides: Vec<Outcome> = (0..64).map(|i| chosen_side(&i.to_string())).collect();
        let a = sides.iter().filter(|&&s| s == Outcome::A).count();
        assert!((16..=48).contains(&a), "{a} of 64 on A");
    }

    #[test]
    fn best_of_four_lists_are_refused() {
        let e = at(
            0,
            r#"{"prompt": "p", "chosen": ["x"], "rejected": ["y", "z"]}"#,
        )
        .expect_err("lists of answers");
        assert!(e.reason().contains("not pairwise"), "{e:?}");
    }
}
