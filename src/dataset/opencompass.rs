//! OpenCompass judge output files: what its `GenInferencer` saves for a judge run, an object
//! keyed by record index (`{"0": {"origin_prompt", "prediction", "gold"}, ...}`), or the same
//! records as JSON Lines with an `idx` field. `prediction` is the judge's raw output and `gold`
//! is the reference OpenCompass passed along. Two kinds of `gold` are read:
//!
//! - Subjective pairwise comparisons (`LMEvaluator` with two models): `gold` has `question`,
//!   `capability`, `answer1`/`answer2` (the models shown as A and B) and, when the run kept
//!   predictions, `prediction1`/`prediction2` (their answers; otherwise the texts are only inside
//!   `origin_prompt`, kept in `meta`, and the responses are empty). The verdict is read from the
//!   output with the general verdict parser. With `infer_order='double'` OpenCompass judges each
//!   pair twice in both orders; those are separate records here, hence separate items.
//! - JudgerBenchV2 predictions: `gold` has `category`, `lan`, `r1_gt`, `ModelA`, `ModelB`. The
//!   verdict is read with JudgerBenchV2's own rule (`"winner": "A"` / `"胜者": "A"`), the answers
//!   and question are recovered from the benchmark's prompt markers in `origin_prompt`, and the
//!   item id is the record index, as in `judgerbench` files, so both line up.
//!
//! The judge's name is not in the records: it is taken from the folder OpenCompass wrote the file
//! to (`.../{model}_judged-by--{judge}/` for subjective runs, `.../{judge}/` for JudgerBenchV2),
//! else `opencompass-judge`.

use super::common::{id_like, object, opt_str, read_output, req_obj, req_str, RecordError};
use super::frame::Record;
use super::judgerbench::{language_of, side_of};
use super::{Item, Judgment, Message, Provenance, Response};
use crate::verdict::OutputFormat;
use serde_json::{Map, Value};
use std::path::Path;

/// The judge name OpenCompass's output folder implies for a file.
pub fn judge_from_path(path: &Path) -> String {
    let folder = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|f| f.to_str())
        .unwrap_or("");
    if let Some((_, judge)) = folder.split_once("judged-by--") {
        if !judge.is_empty() {
            return judge.to_string();
        }
    }
    if folder.is_empty() || folder == "." {
        "opencompass-judge".to_string()
    } else {
        folder.to_string()
    }
}

pub(crate) fn item(rec: &Record<'_>, judge: &str) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let output = req_str(&obj, "prediction")?;
    let gold = req_obj(&obj, "gold")?;
    let id = match &rec.key {
        Some(k) => k.to_string(),
        None => id_like(&obj, "idx")?.unwrap_or_else(|| rec.index.to_string()),
    };
    let origin = origin_prompt(obj.get("origin_prompt"));
    let mut meta = Map::new();
    meta.insert("gold".into(), Value::Object(gold.clone()));
    if let Some(o) = obj.get("origin_prompt") {
        meta.insert("origin_prompt".into(), o.clone());
    }
    if gold.contains_key("ModelA") {
        judgerbench_prediction(id, gold, output, &origin, judge, meta)
    } else {
        comparison(id, gold, output, judge, meta)
    }
}

fn comparison(
    id: String,
    gold: &Map<String, Value>,
    output: &str,
    judge: &str,
    meta: Map<String, Value>,
) -> Result<Item, RecordError> {
    let (verdict, problem) = read_output(output, OutputFormat::Auto, false);
    Ok(Item {
        id,
        category: opt_str(gold, "capability")?.map(str::to_string),
        language: None,
        context: vec![Message::new("user", req_str(gold, "question")?)],
        response_a: Response {
            model: req_str(gold, "answer1")?.to_string(),
            text: opt_str(gold, "prediction1")?
                .unwrap_or_default()
                .to_string(),
            prior_turns: Vec::new(),
        },
        response_b: Response {
            model: req_str(gold, "answer2")?.to_string(),
            text: opt_str(gold, "prediction2")?
                .unwrap_or_default()
                .to_string(),
            prior_turns: Vec::new(),
        },
        judgments: vec![Judgment {
            judge: judge.to_string(),
            verdict,
            output: Some(output.to_string()),
            swapped: false,
            problem,
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        }],
        gold: None,
        meta,
    })
}

fn judgerbench_prediction(
    id: String,
    gold: &Map<String, Value>,
    output: &str,
    origin: &str,
    judge: &str,
    meta: Map<String, Value>,
) -> Result<Item, RecordError> {
    let model_a = req_str(gold, "ModelA")?;
    let model_b = req_str(gold, "ModelB")?;
    let lan = opt_str(gold, "lan")?;
    let (verdict, problem) = read_output(output, OutputFormat::JudgerBench, false);
    let markers = if lan.is_some_and(|l| matches!(l, "cn" | "zh")) {
        &MARKERS_CN
    } else {
        &MARKERS_EN
    };
    let section = |i: usize| between(origin, markers[i].0, markers[i].1).unwrap_or_default();
    Ok(Item {
        id,
        category: opt_str(gold, "category")?.map(str::to_string),
        language: lan.map(language_of),
        context: vec![Message::new("user", section(0))],
        response_a: Response {
            model: model_a.to_string(),
            text: section(1).to_string(),
            prior_turns: Vec::new(),
        },
        response_b: Response {
            model: model_b.to_string(),
            text: section(2).to_string(),
            prior_turns: Vec::new(),
        },
        judgments: vec![Judgment {
            judge: judge.to_string(),
            verdict,
            output: Some(output.to_string()),
            swapped: false,
            problem,
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        }],
        gold: opt_str(gold, "r1_gt")?.and_then(|w| side_of(w, model_a, model_b)),
        meta,
    })
}

/// The section markers of JudgerBenchV2's judge prompt (question, answer A, answer B).
const MARKERS_EN: [(&str, &str); 3] = [
    ("[User's question starts]\n", "\n[User's question ends]"),
    (
        "[Model A's response starts]\n",
        "\n[Model A's response ends]",
    ),
    (
        "[Model B's response starts]\n",
        "\n[Model B's response ends]",
    ),
];
const MARKERS_CN: [(&str, &str); 3] = [
    ("[用户问题开始]\n", "\n[用户问题结束]"),
    ("[模型A的回复开始]\n", "\n[模型A的回复结束]"),
    ("[模型B的回复开始]\n", "\n[模型B的回复结束]"),
];

/// The text between the first `start` and the last `end` after it (a response may quote the
/// end marker itself; the prompt's own marker is the last one).
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].rfind(end)? + from;
    Some(&text[from..to])
}

/// OpenCompass saves the prompt as a string, or for chat models as a list of
/// `{"role": "HUMAN", "prompt": ...}` turns; the first human turn holds the judge prompt.
fn origin_prompt(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(turns)) => turns
            .iter()
            .filter_map(|t| t.get("prompt").and_then(Value::as_str))
            .next()
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn read(key: &str, v: serde_json::Value) -> Result<Item, RecordError> {
        let text = v.to_string();
        item(
            &Record {
                line: 2,
                index: 0,
                key: Some(Cow::Owned(key.to_string())),
                text: text.as_bytes(),
            },
            "judge-x",
        )
    }

    #[test]
    fn judge_names_come_from_the_output_folder() {
        assert_eq!(
            judge_from_path(Path::new(
                "out/results/qwen_judged-by--gpt4o/compass_arena.json"
            )),
            "gpt4o"
        );
        assert_eq!(
            judge_from_path(Path::new("out/predictions/cj2-7b/Knowledge.json")),
            "cj2-7b"
        );
        assert_eq!(
            judge_from_path(Path::new("Knowledge.json")),
            "opencompass-judge"
        );
    }

    #[test]
    fn subjective_comparison_records() {
        let it = read(
            "3",
            serde_json::json!({"origin_prompt": "judge this", "prediction": "...",
                "gold": {"capability": "creation", "question": "Write a haiku", "answer1": "m1", "answer2": "m2",
                         "prediction1": "five seven five", "prediction2": "no"}}),
        )
        .expect("item");
        assert_eq!(it.id, "3");
        assert_eq!(it.category.as_deref(), Some("creation"));
        assert_eq!(it.question(), "Write a haiku");
        assert_eq!(it.response_a.model, "m1");
        assert_eq!(it.response_a.text, "five seven five");
        assert_eq!(it.judgments[0].judge, "judge-x");
        assert_eq!(it.judgments[0].output.as_deref(), Some("..."));
    }

    #[test]
    fn judgerbench_predictions_recover_texts_from_the_prompt() {
        let prompt = "Intro.\n\n[User's question starts]\nWhat is 2+2?\n[User's question ends]\n\n[Model A's response starts]\n4\n[Model A's response ends]\n\n[Model B's response starts]\nfive\n[Model B's response ends]\n\nFinally...";
        let it = read(
            "12",
            serde_json::json!({"origin_prompt": [{"role": "HUMAN", "prompt": prompt}],
                "prediction": "{\"analysis\": \"A is right\", \"winner\": \"A\"}",
                "gold": {"category": "Knowledge", "lan": "en", "r1_gt": "mB", "ModelA": "mA", "ModelB": "mB"}}),
        )
        .expect("item");
        assert_eq!(it.id, "12");
        assert_eq!(it.question(), "What is 2+2?");
        assert_eq!(
            (it.response_a.text.as_str(), it.response_b.text.as_str()),
            ("4", "five")
        );
        assert_eq!(it.gold, Some(crate::verdict::Outcome::B));
        assert_eq!(it.language.as_deref(), Some("en"));
    }

    #[test]
    fn a_record_without_prediction_is_malformed() {
        let e = read("0", serde_json::json!({"gold": {}})).expect_err("no prediction");
        assert!(e.reason().contains("prediction"), "{e:?}");
    }
}
