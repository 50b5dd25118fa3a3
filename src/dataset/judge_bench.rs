//! JudgeBench (ScalerLab/JudgeBench, arXiv 2410.12784) pairs and judge outputs. Not to be
//! confused with OpenCompass's JudgerBenchV2 (`judgerbench.rs`), a different benchmark.
//!
//! - `data/*.jsonl`: one response pair a line (`pair_id`, `original_id`, `source`, `question`,
//!   `response_model`, `response_A`, `response_B`, `label`). The `label` (`A>B`, `B>A`) says
//!   which response is objectively correct: it is the item's gold.
//! - `outputs/*.jsonl`: the same records plus `judge_name` and `judgments`, one entry per game
//!   (`null` where the judge call failed): the first with the responses as given, the second with
//!   them swapped (`run_judge.py` calls the judge with `response_B, response_A`). Each entry's
//!   `decision` is written in the frame the judge saw; the second is mapped back here, as
//!   `utils/metrics.py` flips it before comparing.
//! - The judge's name is `{judge_name}/{judge_model}`, the model taken from the entries'
//!   `judgment.judge_model`, else from the output file's name (`...,judge_model=X.jsonl`).
//! - Category: the source's group as `run_judge.py` reports it (`group_of`); `meta.source`
//!   keeps the raw source.
//!
//! A folder of such files is one dataset whose items are the pairs (`merge_into`): two judges'
//! output files on the same pairs give two judges on the same items.

use super::common::{id_like, kind_of, malformed, object, opt_str, req_str, RecordError};
use super::frame::Record;
use super::{DatasetError, Item, Judgment, Message, Problem, Provenance, Response};
use crate::verdict::{Outcome, Strength, Verdict};
use serde_json::{Map, Value};
use std::path::Path;

/// JudgeBench's source groups in the order its reports list them, each with the prefix of the
/// `source` values it covers (`run_judge.py`: `x["source"].startswith(prefix)`).
pub const GROUPS: [(&str, &str); 4] = [
    ("knowledge", "mmlu-pro"),
    ("reasoning", "livebench-reasoning"),
    ("math", "livebench-math"),
    ("coding", "livecodebench"),
];

/// The group a JudgeBench `source` belongs to, or `None` for a source outside the four.
pub fn group_of(source: &str) -> Option<&'static str> {
    GROUPS
        .iter()
        .find(|(_, prefix)| source.starts_with(prefix))
        .map(|(group, _)| *group)
}

/// The judge model an output file's name gives (`...,judge_model=o1-mini-2024-09-12.jsonl`).
pub fn file_judge_model(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let name = name
        .strip_suffix(".jsonl")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    name.split(',')
        .find_map(|part| part.strip_prefix("judge_model="))
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

/// The gold label of a pair.
fn label(obj: &Map<String, Value>) -> Result<Outcome, RecordError> {
    match req_str(obj, "label")? {
        "A>B" => Ok(Outcome::A),
        "B>A" => Ok(Outcome::B),
        "A=B" => Ok(Outcome::Tie),
        other => Err(malformed(format!(
            "\"label\" must be \"A>B\" or \"B>A\" (JudgeBench's labels), found {other:?}"
        ))),
    }
}

pub(crate) fn item(rec: &Record<'_>, file_model: Option<&str>) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let id = id_like(&obj, "pair_id")?.ok_or_else(|| malformed("missing \"pair_id\""))?;
    let source = req_str(&obj, "source")?;
    let question = req_str(&obj, "question")?;
    let model = opt_str(&obj, "response_model")?.unwrap_or_default();
    let response = |key: &str| -> Result<Response, RecordError> {
        Ok(Response {
            model: model.to_string(),
            text: req_str(&obj, key)?.to_string(),
            prior_turns: Vec::new(),
        })
    };
    let response_a = response("response_A")?;
    let response_b = response("response_B")?;
    let gold = label(&obj)?;

    let mut meta = Map::new();
    meta.insert("source".into(), Value::String(source.to_string()));
    if let Some(original) = id_like(&obj, "original_id")? {
        meta.insert("original_id".into(), Value::String(original));
    }
    if !model.is_empty() {
        meta.insert("response_model".into(), Value::String(model.to_string()));
    }
    let judgments = match obj.get("judgments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(games)) => judgments(&obj, games, file_model)?,
        Some(other) => {
            return Err(malformed(format!(
                "\"judgments\" must be a list of one or two games, found {}",
                kind_of(other)
            )))
        }
    };
    Ok(Item {
        id,
        category: Some(group_of(source).unwrap_or(source).to_string()),
        language: None,
        context: vec![Message::new("user", question)],
        response_a,
        response_b,
        judgments,
        gold: Some(gold),
        meta,
    })
}

/// One `Judgment` per game: the first as given, the second swapped.
fn judgments(
    obj: &Map<String, Value>,
    games: &[Value],
    file_model: Option<&str>,
) -> Result<Vec<Judgment>, RecordError> {
    if games.len() > 2 {
        return Err(malformed(format!(
            "\"judgments\" has {} entries; JudgeBench writes one (single game) or two (both orders)",
            games.len()
        )));
    }
    let mut entries = Vec::with_capacity(games.len());
    for (i, game) in games.iter().enumerate() {
        match game {
            Value::Null => entries.push(None),
            Value::Object(entry) => entries.push(Some(entry)),
            other => {
                return Err(malformed(format!(
                    "\"judgments[{i}]\" must be an object or null, found {}",
                    kind_of(other)
                )))
            }
        }
    }
    let mut record_model = None;
    for (i, entry) in entries.iter().enumerate() {
        if let Some(Value::Object(inner)) = entry.and_then(|e| e.get("judgment")) {
            if let Some(m) = opt_str(inner, "judge_model")
                .map_err(|e| at(&format!("judgments[{i}].judgment"), e))?
            {
                record_model.get_or_insert(m);
            }
        }
    }
    let judge_name = opt_str(obj, "judge_name")?;
    let judge = match (judge_name, record_model.or(file_model)) {
        (Some(name), Some(model)) => format!("{name}/{model}"),
        (Some(name), None) => name.to_string(),
        (None, Some(model)) => model.to_string(),
        (None, None) if games.is_empty() => String::new(),
        (None, None) => return Err(malformed(
            "missing \"judge_name\" (a record with \"judgments\" must say which judge gave them)",
        )),
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| game(&judge, i, entry))
        .collect()
}

/// Prefixes a field error with where it is in the record.
fn at(place: &str, e: RecordError) -> RecordError {
    match e {
        RecordError::Malformed(r) => malformed(format!("{place}: {r}")),
        other => other,
    }
}

fn game(
    judge: &str,
    index: usize,
    entry: Option<&Map<String, Value>>,
) -> Result<Judgment, RecordError> {
    let swapped = index == 1;
    let mut judgment = Judgment {
        judge: judge.to_string(),
        verdict: None,
        output: None,
        swapped,
        problem: None,
        provenance: Provenance::Dataset,
        preference: None,
        run: Map::new(),
    };
    let Some(entry) = entry else {
        judgment.problem = Some(Problem::Unreadable(
            "JudgeBench recorded no judgment for this order (the judge call failed)".into(),
        ));
        return Ok(judgment);
    };
    let place = format!("judgments[{index}]");
    judgment.output = match entry.get("judgment") {
        Some(Value::Object(inner)) => output(inner).map_err(|e| at(&place, e))?,
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let decision = opt_str(entry, "decision").map_err(|e| at(&place, e))?;
    match decision {
        None => {
            judgment.problem = Some(Problem::Unreadable(
                "JudgeBench extracted no decision from the judge's answer".into(),
            ))
        }
        Some(d) => match decision_verdict(d) {
            Some(v) => judgment.verdict = Some(if swapped { v.swapped() } else { v }),
            None => {
                judgment.problem = Some(Problem::Unreadable(format!(
                    "the decision {d:?} is not one of JudgeBench's A>B, B>A, A=B (its score counts it as neither right nor wrong)"
                )))
            }
        },
    }
    Ok(judgment)
}

/// A decision as JudgeBench writes it, in the frame the judge saw. Only the exact strings its
/// metric compares count: anything else matches neither the label nor its flip there.
fn decision_verdict(d: &str) -> Option<Verdict> {
    match d {
        "A>B" => Some(Verdict::new(Outcome::A, Strength::Slight)),
        "B>A" => Some(Verdict::new(Outcome::B, Strength::Slight)),
        "A=B" => Some(Verdict::new(Outcome::Tie, Strength::Slight)),
        _ => None,
    }
}

/// The judge's raw answer; a reward model's scores (given as `[first shown, second shown]`) as
/// a line of text, since it wrote none.
fn output(inner: &Map<String, Value>) -> Result<Option<String>, RecordError> {
    let response = opt_str(inner, "response")?.filter(|r| !r.is_empty());
    let scores = match inner.get("scores") {
        None | Some(Value::Null) => None,
        Some(Value::Array(s)) if s.len() == 2 && s.iter().all(Value::is_number) => Some(format!(
            "reward scores as shown to the model: A {}, B {}",
            s[0], s[1]
        )),
        Some(other) => {
            return Err(malformed(format!(
                "judgment.scores must be a list of two numbers, found {}",
                match other {
                    Value::Array(a) => format!("a list of {}", a.len()),
                    v => kind_of(v).to_string(),
                }
            )))
        }
    };
    Ok(match (response, scores) {
        (Some(r), Some(s)) => Some(format!("{r}\n\n{s}")),
        (Some(r), None) => Some(r.to_string()),
        (None, s) => s,
    })
}

/// Adds one file's items to a folder's pairs, merging a pair seen in an earlier file (another
/// judge's output on it, or the pairs file itself) into that item. A pair whose responses come
/// the other way round has its verdicts turned; one whose texts or label differ is refused.
pub(super) fn merge_into(
    dir: &Path,
    pairs: &mut Vec<Item>,
    index: &mut std::collections::HashMap<String, usize>,
    file: &Path,
    items: Vec<Item>,
) -> Result<(), DatasetError> {
    for mut item in items {
        let Some(&i) = index.get(&item.id) else {
            index.insert(item.id.clone(), pairs.len());
            pairs.push(item);
            continue;
        };
        let first = &mut pairs[i];
        let same = first.response_a.text == item.response_a.text
            && first.response_b.text == item.response_b.text
            && first.gold == item.gold;
        let turned = first.response_a.text == item.response_b.text
            && first.response_b.text == item.response_a.text
            && first.gold == item.gold.map(Outcome::swapped);
        if turned && !same {
            for j in &mut item.judgments {
                j.verdict = j.verdict.map(Verdict::swapped);
                j.swapped = !j.swapped;
            }
        } else if !same {
            return Err(DatasetError::ConflictingPair {
                path: dir.to_path_buf(),
                id: item.id,
                first: first
                    .meta
                    .get("file")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into(),
                other: file.to_path_buf(),
            });
        }
        first.judgments.append(&mut item.judgments);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: serde_json::Value, file_model: Option<&str>) -> Result<Item, RecordError> {
        let text = v.to_string();
        item(
            &Record {
                line: 1,
                index: 0,
                key: None,
                text: text.as_bytes(),
            },
            file_model,
        )
    }

    fn pair(extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({"pair_id": "p1", "original_id": 7, "source": "mmlu-pro-law",
            "question": "q", "response_model": "gpt-4o", "response_A": "a", "response_B": "b",
            "label": "B>A"});
        if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    }

    #[test]
    fn a_pair_keeps_its_label_as_gold_and_its_source_in_meta() {
        let it = read(pair(serde_json::json!({})), None).expect("reads");
        assert_eq!(it.id, "p1");
        assert_eq!(it.gold, Some(Outcome::B));
        assert_eq!(it.category.as_deref(), Some("knowledge"));
        assert_eq!(it.meta["source"], "mmlu-pro-law");
        assert_eq!(it.meta["original_id"], "7");
        assert_eq!(it.question(), "q");
        assert_eq!(
            (it.response_a.text.as_str(), it.response_b.model.as_str()),
            ("a", "gpt-4o")
        );
        assert!(it.judgments.is_empty());
    }

    #[test]
    fn the_second_game_is_swapped_and_mapped_back() {
        let it = read(
            pair(serde_json::json!({"judge_name": "arena_hard", "judgments": [
                {"judgment": {"judge_model": "o1-mini", "prompt": "p", "response": "[[B>A]]"}, "decision": "B>A"},
                {"judgment": {"judge_model": "o1-mini", "prompt": "p", "response": "[[A>>B]]"}, "decision": "A>B"}]})),
            Some("ignored"),
        )
        .expect("reads");
        let [first, second] = &it.judgments[..] else {
            panic!("two games")
        };
        assert_eq!(first.judge, "arena_hard/o1-mini");
        assert_eq!(first.verdict.map(|v| v.outcome), Some(Outcome::B));
        assert!(!first.swapped && second.swapped);
        // The judge saw B first and preferred it: B in the item's orientation.
        assert_eq!(second.verdict.map(|v| v.outcome), Some(Outcome::B));
        assert_eq!(second.output.as_deref(), Some("[[A>>B]]"));
    }

    #[test]
    fn missing_decisions_failed_calls_and_odd_labels_have_no_verdict() {
        let it = read(
            pair(serde_json::json!({"judge_name": "arena_hard", "judgments": [
                {"judgment": {"judge_model": "m", "response": "no label"}, "decision": null}, null]})),
            None,
        )
        .expect("reads");
        assert!(it.judgments.iter().all(|j| j.verdict.is_none()));
        assert!(
            matches!(&it.judgments[0].problem, Some(Problem::Unreadable(w)) if w.contains("no decision"))
        );
        assert!(
            matches!(&it.judgments[1].problem, Some(Problem::Unreadable(w)) if w.contains("failed"))
        );
        assert_eq!(it.judgments[1].judge, "arena_hard/m");

        let it = read(
            pair(serde_json::json!({"judge_name": "x", "judgments": [{"decision": "B"}]})),
            Some("file-model"),
        )
        .expect("reads");
        assert_eq!(it.judgments[0].judge, "x/file-model");
        assert!(it.judgments[0].verdict.is_none());
        assert!(
            matches!(&it.judgments[0].problem, Some(Problem::Unreadable(w)) if w.contains("\"B\""))
        );
    }

    #[test]
    fn reward_scores_become_the_output_text() {
        let it = read(
            pair(serde_json::json!({"judge_name": "reward_model", "judgments": [
                {"judgment": {"judge_model": "rm", "prompt": "", "response": "", "scores": [1.5, -2]}, "decision": "A>B"},
                {"judgment": {"judge_model": "rm", "prompt": "", "response": "", "scores": [-2, 1.5]}, "decision": "B>A"}]})),
            None,
        )
        .expect("reads");
        assert_eq!(
            it.judgments[1].output.as_deref(),
            Some("reward scores as shown to the model: A -2, B 1.5")
        );
        assert_eq!(it.judgments[1].verdict.map(|v| v.outcome), Some(Outcome::A));
    }

    #[test]
    fn bad_records_name_the_field() {
        let reason = |v| read(v, None).expect_err("refused").reason();
        assert!(reason(pair(serde_json::json!({"label": "A"}))).contains("\"label\""));
        assert!(reason(pair(serde_json::json!({"response_B": 3}))).contains("\"response_B\""));
        let r = reason(pair(
            serde_json::json!({"judge_name": "j", "judgments": [{"decision": 1}]}),
        ));
        assert!(
            r.contains("judgments[0]") && r.contains("\"decision\""),
            "{r}"
        );
        let r = reason(pair(
            serde_json::json!({"judge_name": "j", "judgments": [null, null, null]}),
        ));
        assert!(r.contains("3 entries"), "{r}");
        let r = reason(pair(
            serde_json::json!({"judgments": [{"decision": "A>B"}]}),
        ));
        assert!(r.contains("judge_name"), "{r}");
    }

    #[test]
    fn sources_map_to_groups_and_file_names_give_the_judge_model() {
        assert_eq!(group_of("mmlu-pro-computer science"), Some("knowledge"));
        assert_eq!(group_of("livebench-reasoning"), Some("reasoning"));
        assert_eq!(group_of("livebench-math"), Some("math"));
        assert_eq!(group_of("livecodebench"), Some("coding"));
        assert_eq!(group_of("gsm8k"), None);
        assert_eq!(
            file_judge_model(Path::new(
                "o/dataset=judgebench,response_model=gpt-4o,judge_name=arena_hard,judge_model=o1-mini-2024-09-12.jsonl.gz"
            ))
            .as_deref(),
            Some("o1-mini-2024-09-12")
        );
        assert_eq!(file_judge_model(Path::new("pairs.jsonl")), None);
    }
}
