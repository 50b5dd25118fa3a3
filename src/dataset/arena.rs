//! Chatbot Arena human-preference battles (`question_id`, `model_a`, `model_b`, `winner`,
//! `conversation_a`, `conversation_b`, `turn`, `language`, ...), as LMSYS releases them.
//!
//! The human vote is the item's gold: `model_a` → A, `model_b` → B, `tie` and `tie (bothbad)`
//! → tie, with the raw vote kept in `meta.winner` so the "both bad" nuance survives. The two
//! conversations are split into the shared prompt (`context`) and, where the battle went on for
//! several turns, each side's own earlier turns (`Response::prior_turns`).

use super::common::{
    id_like, language_code, malformed, messages, object, opt_str, req_str, split_conversations,
    RecordError,
};
use super::frame::Record;
use super::Item;
use crate::verdict::{Outcome, Verdict};
use serde_json::{Map, Value};

/// Reads an Arena or MT-Bench `winner` value as an outcome in the record's A/B orientation.
pub(crate) fn winner(label: &str) -> Result<Outcome, RecordError> {
    label
        .parse::<Verdict>()
        .map(|v| v.outcome)
        .map_err(|_| RecordError::UnknownVerdict(label.to_string()))
}

pub(crate) fn item(rec: &Record<'_>) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let id = id_like(&obj, "question_id")?
        .or(id_like(&obj, "id")?)
        .ok_or_else(|| malformed("missing \"question_id\""))?;
    let model_a = req_str(&obj, "model_a")?;
    let model_b = req_str(&obj, "model_b")?;
    let vote = req_str(&obj, "winner")?;
    let gold = winner(vote)?;
    let (context, mut a, mut b) = split_conversations(
        messages(&obj, "conversation_a")?,
        messages(&obj, "conversation_b")?,
    )?;
    a.model = model_a.to_string();
    b.model = model_b.to_string();
    let mut meta = Map::new();
    meta.insert("winner".into(), Value::String(vote.to_string()));
    let language = opt_str(&obj, "language")?;
    if let Some(l) = language {
        meta.insert("language".into(), Value::String(l.to_string()));
    }
    for key in ["turn", "judge", "anony", "tstamp"] {
        if let Some(v) = obj.get(key) {
            meta.insert(key.into(), v.clone());
        }
    }
    Ok(Item {
        id,
        category: None,
        language: language.map(language_code),
        context,
        response_a: a,
        response_b: b,
        judgments: Vec::new(),
        gold: Some(gold),
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn battle(winner: &str) -> String {
        serde_json::json!({
            "question_id": "abc123", "model_a": "m1", "model_b": "m2", "winner": winner,
            "judge": "arena_user_9", "language": "English", "turn": 1, "anony": true,
            "conversation_a": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
            "conversation_b": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}],
        })
        .to_string()
    }

    fn read(text: &str) -> Result<Item, RecordError> {
        item(&Record {
            line: 1,
            index: 0,
            key: None,
            text: text.as_bytes(),
        })
    }

    #[test]
    fn the_human_vote_is_gold_and_bothbad_is_kept() {
        let it = read(&battle("tie (bothbad)")).expect("item");
        assert_eq!(it.gold, Some(Outcome::Tie));
        assert_eq!(it.meta["winner"], "tie (bothbad)");
        assert_eq!(it.language.as_deref(), Some("en"));
        assert_eq!(it.question(), "hi");
        assert_eq!(it.response_b.text, "hey");
        assert_eq!(
            read(&battle("model_b")).expect("item").gold,
            Some(Outcome::B)
        );
    }

    #[test]
    fn an_unknown_vote_is_an_unknown_verdict() {
        assert_eq!(
            read(&battle("model_c")).expect_err("bad vote"),
            RecordError::UnknownVerdict("model_c".into())
        );
    }
}
