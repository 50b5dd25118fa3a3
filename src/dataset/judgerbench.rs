//! OpenCompass JudgerBenchV2 files (`{name}.json`, a JSON array of records with `prompt`,
//! `gold` {`category`, `lan`, `r1_gt`, ...}, `base_model_response` and `models_response`
//! {`model_name`, `response`}), placed on A/B sides exactly as the reference loader
//! (`opencompass/datasets/judge/judgerbenchv2.py`) does, so that ids and sides line up with
//! OpenCompass runs.
//!
//! - Item id: the record's 0-based position in the file, as a string (`"0"`, `"1"`, ...): the key
//!   OpenCompass gives each record in its prediction files for the same dataset.
//! - Sides: the reference seeds Python's `random` with 0 and shuffles fifty 0s and fifty 1s;
//!   record `idx` uses entry `idx % 100` of that list (the reference repeats it ten times):
//!   0 puts the base (reference) model's answer in A, 1 puts the tested model's answer in A.
//!   Past 1,000 records the reference raises `IndexError`; Arbiter keeps repeating the list
//!   (so a file that concatenates category files of a multiple of 100 records each keeps
//!   every record's side, though not its per-file id).
//! - Gold: the side whose model is named by `r1_gt` (DeepSeek-R1's choice); `None` when
//!   neither side's model has that name (the reference would count that as B; `meta` keeps the
//!   raw record so the metrics can follow it).
//! - Language: `lan` `cn` becomes `zh` and `en` stays `en` (other values are kept lower-cased);
//!   the raw `lan`, which picks the benchmark's prompt and verdict key, stays in `meta.lan`.
//! - Category: `gold.category` (`Reason & Analysis`, `Code & AI`, ...); `meta.gold` keeps the
//!   whole `gold` record with the reference's `ModelA`/`ModelB` added, as OpenCompass passes it
//!   to its evaluator.

use super::common::{object, opt_str, req_obj, req_str, RecordError};
use super::frame::Record;
use super::{Item, Message, Response};
use crate::verdict::Outcome;
use serde_json::{Map, Value};

/// The reference loader's placement list, as a string of 0/1 (its `generate_balanced_list(100)`
/// with `random.seed(0)`, then shuffled).
pub const PLACEMENT: &str =
    "0000000111011010011100001000101101100100110000011111101010101101110011111001001101010010101011100110";

/// True when record `index` puts the tested model's answer in A.
pub fn tested_model_is_a(index: usize) -> bool {
    PLACEMENT.as_bytes()[index % PLACEMENT.len()] == b'1'
}

/// The language code Arbiter uses for a JudgerBenchV2 `lan` value.
pub fn language_of(lan: &str) -> String {
    match lan.to_ascii_lowercase().as_str() {
        "cn" | "zh" => "zh".to_string(),
        other => other.to_string(),
    }
}

/// The outcome a winner's model name selects, given the two sides' models. A name matching
/// both sides counts as A, as the reference's `r1_gt == ModelA` test does.
pub(crate) fn side_of(winner: &str, model_a: &str, model_b: &str) -> Option<Outcome> {
    if winner == model_a {
        Some(Outcome::A)
    } else if winner == model_b {
        Some(Outcome::B)
    } else {
        None
    }
}

pub(crate) fn item(rec: &Record<'_>) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let prompt = req_str(&obj, "prompt")?;
    let gold = req_obj(&obj, "gold")?;
    let base = req_obj(&obj, "base_model_response")?;
    let tested = req_obj(&obj, "models_response")?;
    let base_model = in_field(req_str(base, "model_name"), "base_model_response")?;
    let base_text = in_field(req_str(base, "response"), "base_model_response")?;
    let tested_model = in_field(req_str(tested, "model_name"), "models_response")?;
    let tested_text = in_field(req_str(tested, "response"), "models_response")?;
    let category = in_field(opt_str(gold, "category"), "gold")?;
    let lan = in_field(opt_str(gold, "lan"), "gold")?;
    let r1_gt = in_field(opt_str(gold, "r1_gt"), "gold")?;

    let tested_a = tested_model_is_a(rec.index);
    let (a, b) = if tested_a {
        ((tested_model, tested_text), (base_model, base_text))
    } else {
        ((base_model, base_text), (tested_model, tested_text))
    };
    let mut gold_meta = gold.clone();
    gold_meta.insert("ModelA".into(), Value::String(a.0.to_string()));
    gold_meta.insert("ModelB".into(), Value::String(b.0.to_string()));
    let mut meta = Map::new();
    meta.insert("gold".into(), Value::Object(gold_meta));
    if let Some(lan) = lan {
        meta.insert("lan".into(), Value::String(lan.to_string()));
    }
    meta.insert("base_model".into(), Value::String(base_model.to_string()));
    meta.insert(
        "base_model_side".into(),
        Value::String(if tested_a { "B" } else { "A" }.into()),
    );
    Ok(Item {
        id: rec.index.to_string(),
        category: category.map(str::to_string),
        language: lan.map(language_of),
        context: vec![Message::new("user", prompt)],
        response_a: Response {
            model: a.0.to_string(),
            text: a.1.to_string(),
            prior_turns: Vec::new(),
        },
        response_b: Response {
            model: b.0.to_string(),
            text: b.1.to_string(),
            prior_turns: Vec::new(),
        },
        judgments: Vec::new(),
        gold: r1_gt.and_then(|w| side_of(w, a.0, b.0)),
        meta,
    })
}

fn in_field<T>(r: Result<T, RecordError>, outer: &str) -> Result<T, RecordError> {
    r.map_err(|e| match e {
        RecordError::Malformed(m) => RecordError::Malformed(format!("in \"{outer}\": {m}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, r1: &str) -> String {
        serde_json::json!({
            "prompt": "Name a prime.",
            "gold": {"category": "Knowledge", "lan": "cn", "r1_gt": r1},
            "base_model_response": {"model_name": "base-m", "response": "2"},
            "models_response": {"model_name": model, "response": "9"},
        })
        .to_string()
    }

    fn at(index: usize, text: &str) -> Item {
        item(&Record {
            line: index + 2,
            index,
            key: None,
            text: text.as_bytes(),
        })
        .expect("item")
    }

    #[test]
    fn placement_string_is_balanced() {
        assert_eq!(PLACEMENT.len(), 100);
        assert_eq!(PLACEMENT.bytes().filter(|&b| b == b'1').count(), 50);
    }

    #[test]
    fn sides_follow_the_reference_list_and_repeat_every_hundred() {
        // PLACEMENT starts 0000000111: records 0..7 put the base model in A, 7 the tested one.
        let r = record("tested-m", "base-m");
        let first = at(0, &r);
        assert_eq!(first.response_a.model, "base-m");
        assert_eq!(first.gold, Some(Outcome::A));
        let seventh = at(7, &r);
        assert_eq!(seventh.response_a.model, "tested-m");
        assert_eq!(seventh.response_b.text, "2");
        assert_eq!(seventh.gold, Some(Outcome::B));
        assert_eq!(at(107, &r).response_a.model, "tested-m");
        assert_eq!(seventh.id, "7");
        assert_eq!(seventh.meta["gold"]["ModelA"], "tested-m");
        assert_eq!(seventh.meta["base_model_side"], "B");
    }

    #[test]
    fn language_and_unknown_winner() {
        let it = at(0, &record("tested-m", "someone-else"));
        assert_eq!(it.language.as_deref(), Some("zh"));
        assert_eq!(it.meta["lan"], "cn");
        assert_eq!(it.category.as_deref(), Some("Knowledge"));
        assert_eq!(it.gold, None);
    }

    #[test]
    fn missing_nested_fields_are_named() {
        let bad = r#"{"prompt": "p", "gold": {}, "base_model_response": {"model_name": "x"}, "models_response": {"model_name": "y", "response": "z"}}"#;
        let e = item(&Record {
            line: 1,
            index: 0,
            key: None,
            text: bad.as_bytes(),
        })
        .expect_err("no response");
        assert!(e.reason().contains("base_model_response"), "{e:?}");
        assert!(e.reason().contains("response"), "{e:?}");
    }
}
