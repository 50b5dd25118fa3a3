//! AlpacaEval annotations, as `alpaca_eval` writes them to
//! `results/<model>/<annotator>/annotations.json` (a JSON list; JSON Lines is read too): one
//! record per instruction with `instruction`, `output_1` (the baseline's answer, by
//! `generator_1`), `output_2` (the evaluated model's, by `generator_2`), `annotator`,
//! `preference` and, optionally, `raw_completion` and `dataset`.
//!
//! - One item per record: A = `output_1`, B = `output_2`, as AlpacaEval orders them. The id is
//!   the record's position in the file (0-based), stable for a file and unique even where an
//!   instruction repeats; AlpacaEval's own evaluation set keeps one order for every model.
//! - The annotator is the judge (a record without one takes the name of the folder holding
//!   `annotations.json`, as the layout names it).
//! - `preference`: 1 = output_1 (A), 2 = output_2 (B), 1.5 = tie, 0 = tie (AlpacaEval's older
//!   encoding, read as 1.5 as it does), `null` = no verdict. Weighted annotators give fractions
//!   (1.93): the verdict is the nearer side, exactly 1.5 a tie, and the graded value (`preference
//!   − 1`, 0 = A … 1 = B) is kept in `Judgment::preference`, from which the win rate is computed
//!   (`metrics::alpaca_eval`). A value outside 1..2 is a judgment without a verdict.
//! - `raw_completion` is the judgment's output: a string as it is; a chat completion object by
//!   its message text (`message.content`, or `text`); anything else as JSON.
//! - `dataset` (AlpacaEval's source subset: helpful_base, koala, oasst, selfinstruct, vicuna)
//!   becomes the category.

use super::common::{kind_of, malformed, object, opt_str, req_str, RecordError};
use super::frame::Record;
use super::{Item, Judgment, Message, Problem, Provenance, Response};
use crate::verdict::{Outcome, Verdict};
use serde_json::{Map, Value};
use std::path::Path;

/// The judge's name for records that do not name their annotator: the folder of an
/// `annotations.json` (the layout's `<annotator>`), else `alpaca_eval`.
pub(crate) fn annotator_from_path(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("annotations.json") {
        if let Some(dir) = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
        {
            return dir;
        }
    }
    "alpaca_eval".to_string()
}

/// The verdict and graded preference (0 = A … 1 = B) an AlpacaEval `preference` value says.
pub fn read_preference(value: f64) -> Result<(Verdict, f64), String> {
    // 0 is AlpacaEval's older way of writing a tie; it reads it as 1.5.
    let p = if value == 0.0 { 1.5 } else { value };
    if !(1.0..=2.0).contains(&p) {
        return Err(format!(
            "the preference {value} is outside AlpacaEval's scale (1 = output_1, 2 = output_2, 1.5 = tie)"
        ));
    }
    let graded = p - 1.0;
    let outcome = if p == 1.5 {
        Outcome::Tie
    } else if graded < 0.5 {
        Outcome::A
    } else {
        Outcome::B
    };
    Ok((Verdict::plain(outcome), graded))
}

/// A readable text for a `raw_completion`: what the annotator wrote.
fn completion_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let content = o
                .get("message")
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .or_else(|| o.get("text").and_then(Value::as_str));
            Some(match content {
                Some(text) => text.to_string(),
                None => serde_json::to_string_pretty(v).unwrap_or_default(),
            })
        }
        other => Some(serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

fn judgment(obj: &Map<String, Value>, annotator: String) -> Result<Judgment, RecordError> {
    let output = obj.get("raw_completion").and_then(completion_text);
    let (verdict, preference, problem) = match obj.get("preference") {
        None | Some(Value::Null) => (
            None,
            None,
            Some(Problem::Unreadable(
                "the file recorded no preference (null)".into(),
            )),
        ),
        Some(Value::Number(n)) => {
            let value = n
                .as_f64()
                .ok_or_else(|| malformed("\"preference\" is not a finite number"))?;
            match read_preference(value) {
                Ok((v, g)) => (Some(v), Some(g), None),
                Err(why) => (None, None, Some(Problem::Unreadable(why))),
            }
        }
        Some(other) => {
            return Err(malformed(format!(
                "\"preference\" must be a number (1 = output_1, 2 = output_2, 1.5 = tie) or null, found {}",
                kind_of(other)
            )))
        }
    };
    Ok(Judgment {
        judge: annotator,
        verdict,
        output,
        swapped: false,
        problem,
        provenance: Provenance::Dataset,
        preference,
        run: Default::default(),
    })
}

/// An answer text; AlpacaEval writes a missing output as `null`, kept as an empty text.
fn output_text(obj: &Map<String, Value>, key: &str) -> Result<String, RecordError> {
    if !obj.contains_key(key) {
        return Err(malformed(format!("missing \"{key}\"")));
    }
    Ok(opt_str(obj, key)?.unwrap_or_default().to_string())
}

pub(crate) fn item(rec: &Record<'_>, default_annotator: &str) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let instruction = req_str(&obj, "instruction")?;
    let output_1 = output_text(&obj, "output_1")?;
    let output_2 = output_text(&obj, "output_2")?;
    let annotator = opt_str(&obj, "annotator")?
        .unwrap_or(default_annotator)
        .to_string();
    let judgment = judgment(&obj, annotator)?;
    let mut meta = Map::new();
    for key in ["price_per_example", "time_per_example"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            meta.insert(key.to_string(), v.clone());
        }
    }
    Ok(Item {
        id: rec.index.to_string(),
        category: opt_str(&obj, "dataset")?.map(str::to_string),
        language: None,
        context: vec![Message::new("user", instruction)],
        response_a: Response {
            model: opt_str(&obj, "generator_1")?.unwrap_or("").to_string(),
            text: output_1,
            prior_turns: Vec::new(),
        },
        response_b: Response {
            model: opt_str(&obj, "generator_2")?.unwrap_or("").to_string(),
            text: output_2,
            prior_turns: Vec::new(),
        },
        judgments: vec![judgment],
        gold: None,
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str, index: usize) -> Record<'_> {
        Record {
            line: index + 1,
            index,
            key: None,
            text: text.as_bytes(),
        }
    }

    fn record(pref: Value, raw: Value) -> String {
        serde_json::json!({
            "instruction": "Say hi", "output_1": "hi", "generator_1": "base",
            "output_2": "hello", "generator_2": "model", "annotator": "ann",
            "preference": pref, "raw_completion": raw, "dataset": "koala",
        })
        .to_string()
    }

    #[test]
    fn preferences_map_to_sides_ties_and_graded_values() {
        for (pref, outcome, graded) in [
            (1.0, Outcome::A, 0.0),
            (2.0, Outcome::B, 1.0),
            (1.5, Outcome::Tie, 0.5),
            (0.0, Outcome::Tie, 0.5),
            (1.93, Outcome::B, 0.93),
            (1.0000000918, Outcome::A, 0.0000000918),
            (1.49, Outcome::A, 0.49),
        ] {
            let (v, g) = read_preference(pref).expect("on the scale");
            assert_eq!(v.outcome, outcome, "{pref}");
            assert!((g - graded).abs() < 1e-12, "{pref}: {g}");
        }
        assert!(read_preference(2.5).is_err());
        assert!(read_preference(-1.0).is_err());
    }

    #[test]
    fn a_record_becomes_an_item_with_the_annotators_judgment() {
        let text = record(
            serde_json::json!(1.93),
            serde_json::json!({"message": {"content": "M"}}),
        );
        let it = item(&rec(&text, 7), "x").expect("valid");
        assert_eq!(it.id, "7");
        assert_eq!(it.category.as_deref(), Some("koala"));
        assert_eq!(it.question(), "Say hi");
        assert_eq!(
            (it.response_a.model.as_str(), it.response_a.text.as_str()),
            ("base", "hi")
        );
        assert_eq!(
            (it.response_b.model.as_str(), it.response_b.text.as_str()),
            ("model", "hello")
        );
        let j = &it.judgments[0];
        assert_eq!(j.judge, "ann");
        assert_eq!(j.outcome(), Some(Outcome::B));
        assert!((j.preference.expect("graded") - 0.93).abs() < 1e-12);
        assert_eq!(j.output.as_deref(), Some("M"));
    }

    #[test]
    fn null_preference_is_a_judgment_without_verdict() {
        let text = record(Value::Null, Value::String("Output (a)".into()));
        let it = item(&rec(&text, 0), "x").expect("valid");
        let j = &it.judgments[0];
        assert!(j.verdict.is_none() && j.preference.is_none());
        assert!(matches!(&j.problem, Some(Problem::Unreadable(w)) if w.contains("no preference")));
        assert_eq!(j.output.as_deref(), Some("Output (a)"));

        let off = item(&rec(&record(serde_json::json!(3), Value::Null), 0), "x").expect("valid");
        assert!(off.judgments[0].verdict.is_none());
        assert!(off.judgments[0].output.is_none());
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = record(Value::String("2".into()), Value::Null);
        let err = item(&rec(&bad, 0), "x").expect_err("string preference");
        assert!(err.reason().contains("\"preference\""), "{err:?}");
        let no_output = r#"{"instruction": "q", "output_1": "a", "preference": 1}"#;
        let err = item(&rec(no_output, 0), "x").expect_err("no output_2");
        assert!(err.reason().contains("output_2"), "{err:?}");
    }

    #[test]
    fn annotator_defaults_to_the_layouts_folder() {
        let p = Path::new("results/m/weighted_alpaca_eval_gpt4_turbo/annotations.json");
        assert_eq!(annotator_from_path(p), "weighted_alpaca_eval_gpt4_turbo");
        assert_eq!(
            annotator_from_path(Path::new("x/prefs.jsonl")),
            "alpaca_eval"
        );
        let text = r#"{"instruction": "q", "output_1": "a", "output_2": "b", "preference": 2}"#;
        let it = item(&rec(text, 0), "ann2").expect("valid");
        assert_eq!(it.judgments[0].judge, "ann2");
    }
}
