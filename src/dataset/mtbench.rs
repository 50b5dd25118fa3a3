//! MT-Bench pairwise judgment files, as FastChat's `llm_judge` writes them and as LMSYS
//! released them (`mt_bench_human_judgments`):
//!
//! - GPT-4 pairwise judgments (`gen_judgment.py`'s `model_judgment/gpt-4_pair.jsonl`):
//!   `question_id`, `model_1`, `model_2`, `g1_winner`, `g2_winner`, `judge` (`[model, prompt
//!   name]`), `g1_judgment`, `g2_judgment`, `turn`. `g1` judged model_1 as A; `g2` judged the
//!   swapped order, and FastChat already maps `g2_winner` back to `model_1`/`model_2`, so it
//!   becomes a judgment with `swapped: true` in the item's orientation. `"error"` (no verdict in
//!   the output) becomes a judgment with a problem. These files carry no question or answers:
//!   such items have an empty `context` and empty response texts (the model names are set);
//!   `meta.texts_missing` says so. Join them with MT-Bench's question and answer files first
//!   (or with a human-judgment file in the same dataset) to review the texts.
//! - Human judgments (and the released `gpt4_pair` split): `question_id`, `model_a`, `model_b`,
//!   `winner` (`model_a`, `model_b`, `tie`), `judge` (`expert_0`, `author_2`, ...),
//!   `conversation_a/b`, `turn`. For turn t the conversations are cut after the t-th answer.
//!
//! One item per (question, model pair, turn): id `{question_id}-t{turn}-{model}-vs-{model}`
//! with the two model names sorted, so that every judge's vote on a pair lands on one item.
//! The first record seen fixes which model is A; later records with the models the other way
//! round have their verdicts turned round (and `swapped` set). The category comes from the
//! question id (81–160 in blocks of ten: writing, roleplay, reasoning, math, coding, extraction,
//! stem, humanities).

use super::arena::winner;
use super::common::{
    id_like, malformed, messages, object, opt_str, req_str, split_conversations, RecordError,
};
use super::frame::Record;
use super::{Item, Judgment, Message, Problem, Provenance, Response};
use crate::verdict::Verdict;
use serde_json::{Map, Value};
use std::collections::HashMap;

const CATEGORIES: [&str; 8] = [
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
];

/// MT-Bench's category for a question id (questions 81..=160, ten per category).
pub fn category_of(question_id: &str) -> Option<&'static str> {
    let n: usize = question_id.parse().ok()?;
    if !(81..=160).contains(&n) {
        return None;
    }
    CATEGORIES.get((n - 81) / 10).copied()
}

pub(crate) fn item(rec: &Record<'_>) -> Result<Item, RecordError> {
    let obj = object(rec.text)?;
    let qid = id_like(&obj, "question_id")?.ok_or_else(|| malformed("missing \"question_id\""))?;
    let turn = match obj.get("turn") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|t| *t >= 1)
            .ok_or_else(|| malformed("\"turn\" must be a positive whole number"))?,
        Some(_) => return Err(malformed("\"turn\" must be a positive whole number")),
    };
    let judge = judge_name(obj.get("judge"));
    let gpt4_layout = obj.contains_key("model_1");
    let (model_a, model_b) = if gpt4_layout {
        (req_str(&obj, "model_1")?, req_str(&obj, "model_2")?)
    } else {
        (req_str(&obj, "model_a")?, req_str(&obj, "model_b")?)
    };
    let mut meta = Map::new();
    meta.insert("question_id".into(), Value::String(qid.clone()));
    meta.insert("turn".into(), Value::from(turn));
    let (context, mut a, mut b, judgments) = if gpt4_layout {
        meta.insert("texts_missing".into(), Value::Bool(true));
        let g1 = pair_judgment(&obj, &judge, "g1", false)?;
        let g2 = pair_judgment(&obj, &judge, "g2", true)?;
        (
            Vec::new(),
            Response::default(),
            Response::default(),
            vec![g1, g2],
        )
    } else {
        let vote = req_str(&obj, "winner")?;
        let outcome = winner(vote)?;
        let cut = |m: Vec<Message>| cut_at_turn(m, turn as usize);
        let (ctx, a, b) = split_conversations(
            cut(messages(&obj, "conversation_a")?),
            cut(messages(&obj, "conversation_b")?),
        )?;
        let j = Judgment {
            judge: judge.clone(),
            verdict: Some(Verdict::plain(outcome)),
            output: None,
            swapped: false,
            problem: None,
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        };
        (ctx, a, b, vec![j])
    };
    a.model = model_a.to_string();
    b.model = model_b.to_string();
    let (lo, hi) = if model_a <= model_b {
        (model_a, model_b)
    } else {
        (model_b, model_a)
    };
    Ok(Item {
        id: format!("{qid}-t{turn}-{lo}-vs-{hi}"),
        category: category_of(&qid).map(str::to_string),
        language: None,
        context,
        response_a: a,
        response_b: b,
        judgments,
        gold: None,
        meta,
    })
}

/// FastChat writes the judge as `[model, prompt name]`; the released files use a string.
fn judge_name(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("/"),
        Some(other) => other.to_string(),
        None => "mt-bench-judge".to_string(),
    }
}

/// One of a GPT-4 record's two judgments (`g1` in the given order, `g2` in the swapped one).
fn pair_judgment(
    obj: &Map<String, Value>,
    judge: &str,
    game: &str,
    swapped: bool,
) -> Result<Judgment, RecordError> {
    let label = req_str(obj, &format!("{game}_winner"))?;
    let output = opt_str(obj, &format!("{game}_judgment"))?.map(str::to_string);
    let (verdict, problem) = match label {
        "model_1" => (Some(Verdict::A), None),
        "model_2" => (Some(Verdict::B), None),
        "tie" => (Some(Verdict::TIE), None),
        "error" => (
            None,
            Some(Problem::Unreadable(
                "MT-Bench found no verdict in the judge's output (\"error\")".into(),
            )),
        ),
        other => return Err(RecordError::UnknownVerdict(other.to_string())),
    };
    Ok(Judgment {
        judge: judge.to_string(),
        verdict,
        output,
        swapped,
        problem,
        provenance: Provenance::Dataset,
        preference: None,
        run: Default::default(),
    })
}

/// The conversation up to and including the `turn`-th assistant answer.
fn cut_at_turn(mut conv: Vec<Message>, turn: usize) -> Vec<Message> {
    let mut answers = 0;
    if let Some(end) = conv.iter().position(|m| {
        if m.role == "assistant" {
            answers += 1;
        }
        answers == turn
    }) {
        conv.truncate(end + 1);
    }
    conv
}

/// Merges the items of records that judged the same pair on the same turn into one item, in
/// first-seen order. `lines` are the items' record lines, kept parallel to the result.
pub(crate) fn merge(items: Vec<(usize, Item)>) -> Vec<(usize, Item)> {
    let mut out: Vec<(usize, Item)> = Vec::with_capacity(items.len());
    let mut at: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (line, mut item) in items {
        let Some(&i) = at.get(&item.id) else {
            at.insert(item.id.clone(), out.len());
            out.push((line, item));
            continue;
        };
        let target = &mut out[i].1;
        if item.response_a.model != target.response_a.model {
            // The same pair with the models the other way round.
            std::mem::swap(&mut item.response_a, &mut item.response_b);
            for j in &mut item.judgments {
                j.verdict = j.verdict.map(Verdict::swapped);
                j.swapped = !j.swapped;
            }
        }
        if target.context.is_empty() && !item.context.is_empty() {
            target.context = item.context;
            target.response_a = item.response_a;
            target.response_b = item.response_b;
            target.meta.remove("texts_missing");
        }
        target.judgments.extend(item.judgments);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(i: usize, v: serde_json::Value) -> (usize, Item) {
        let text = v.to_string();
        let it = item(&Record {
            line: i + 1,
            index: i,
            key: None,
            text: text.as_bytes(),
        })
        .expect("item");
        (i + 1, it)
    }

    #[test]
    fn gpt4_records_give_two_judgments_with_g2_swapped() {
        let (_, it) = read(
            0,
            serde_json::json!({"question_id": 113, "model_1": "vicuna", "model_2": "alpaca",
                "g1_winner": "model_1", "g2_winner": "error", "judge": ["gpt-4", "pair-v2"],
                "g1_judgment": "[[A]]", "g2_judgment": "hmm", "turn": 1}),
        );
        assert_eq!(it.id, "113-t1-alpaca-vs-vicuna");
        assert_eq!(it.category.as_deref(), Some("math"));
        assert_eq!(it.response_a.model, "vicuna");
        assert_eq!(it.judgments[0].judge, "gpt-4/pair-v2");
        assert_eq!(it.judgments[0].verdict, Some(Verdict::A));
        assert!(!it.judgments[0].swapped && it.judgments[1].swapped);
        assert!(it.judgments[1].problem.is_some());
        assert_eq!(it.meta["texts_missing"], true);
    }

    #[test]
    fn votes_on_the_same_pair_merge_and_reversed_records_are_turned_round() {
        let conv = |a: &str| {
            serde_json::json!([
                {"role": "user", "content": "q1"}, {"role": "assistant", "content": format!("{a}1")},
                {"role": "user", "content": "q2"}, {"role": "assistant", "content": format!("{a}2")}])
        };
        let first = read(
            0,
            serde_json::json!({"question_id": 81, "model_1": "x", "model_2": "y",
                "g1_winner": "model_2", "g2_winner": "model_2", "judge": ["gpt-4", "pair-v2"], "turn": 1}),
        );
        let second = read(
            1,
            serde_json::json!({"question_id": 81, "model_a": "y", "model_b": "x", "winner": "model_a",
                "judge": "expert_3", "turn": 1, "conversation_a": conv("y"), "conversation_b": conv("x")}),
        );
        let merged = merge(vec![first, second]);
        assert_eq!(merged.len(), 1);
        let it = &merged[0].1;
        assert_eq!(it.response_a.model, "x");
        assert_eq!(
            it.response_a.text, "x1",
            "turn 1 is cut after the first answer"
        );
        assert_eq!(it.question(), "q1");
        let human = &it.judgments[2];
        assert_eq!(human.judge, "expert_3");
        assert_eq!(human.verdict, Some(Verdict::B), "y won, and y is B here");
        assert!(human.swapped);
        assert!(!it.meta.contains_key("texts_missing"));
    }

    #[test]
    fn question_ids_map_to_categories() {
        assert_eq!(category_of("81"), Some("writing"));
        assert_eq!(category_of("160"), Some("humanities"));
        assert_eq!(category_of("161"), None);
    }
}
