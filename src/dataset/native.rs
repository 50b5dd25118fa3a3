//! Arbiter's own format, JSON Lines with one pairwise item a line, read and written.
//!
//! ```json
//! {"id": "q1", "category": "math", "language": "en",
//!  "question": "...",                     // or "conversation": [{"role", "content"}...]
//!  "model_a": "m1", "response_a": "...", "model_b": "m2", "response_b": "...",
//!  "judgments": [{"judge": "j", "verdict": "A>B", "output": "...", "swapped": false,
//!                  "run": {"model": ..., "template": ..., "sampling": ...}}],
//!  "gold": "A", "meta": {...}}
//! ```
//!
//! A judgment's `verdict` is in the item's orientation; when it is absent its `output` is read
//! by the verdict parser (and turned back when `swapped`). Export adds what the model can hold
//! beyond that: `prior_turns_a`/`prior_turns_b` (side-specific earlier turns) and `problem`
//! (why a judgment has no verdict) and `preference` (a graded preference, as AlpacaEval's
//! weighted annotators give), so that a loaded dataset round-trips. `run` is how the
//! judgment was produced (as a journal records it), kept as written. Judgments replayed
//! from a journal are written like any other: a written file is a new dataset.

use super::common::{json_error, malformed, read_output, RecordError};
use super::frame::Record;
use super::{Item, Judgment, Message, Problem, Provenance, Response};
use crate::verdict::{Outcome, OutputFormat, Verdict};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Write;

#[derive(Deserialize)]
struct NativeRecord<'a> {
    id: IdValue,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    conversation: Option<Vec<Message>>,
    #[serde(default)]
    model_a: Option<String>,
    response_a: String,
    #[serde(default)]
    model_b: Option<String>,
    response_b: String,
    #[serde(default)]
    prior_turns_a: Vec<Message>,
    #[serde(default)]
    prior_turns_b: Vec<Message>,
    #[serde(default, borrow)]
    judgments: Vec<NativeJudgment<'a>>,
    #[serde(default, borrow)]
    gold: Option<Cow<'a, str>>,
    #[serde(default)]
    meta: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Ids are strings in Arbiter's files, but converted data often has numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

#[derive(Deserialize)]
struct NativeJudgment<'a> {
    judge: String,
    #[serde(default, borrow)]
    verdict: Option<Cow<'a, str>>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    swapped: bool,
    #[serde(default)]
    problem: Option<Problem>,
    #[serde(default)]
    preference: Option<f64>,
    #[serde(default)]
    run: serde_json::Map<String, serde_json::Value>,
}

/// Reads one native record.
pub(crate) fn item(rec: &Record<'_>) -> Result<Item, RecordError> {
    let text = std::str::from_utf8(rec.text)
        .map_err(|_| malformed("the line is not valid UTF-8 (convert the file to UTF-8)"))?;
    let r: NativeRecord<'_> = serde_json::from_str(text)
        .map_err(|e| malformed(format!("not a native item: {}", json_error(&e))))?;
    let id = match r.id {
        IdValue::Text(s) => s,
        IdValue::Number(n) => n.to_string(),
    };
    if id.is_empty() {
        return Err(malformed("\"id\" is empty"));
    }
    let context = match (r.question, r.conversation) {
        (Some(q), None) => vec![Message::new("user", q)],
        (None, Some(c)) => c,
        (Some(_), Some(_)) => {
            return Err(malformed(
                "has both \"question\" and \"conversation\"; keep one",
            ))
        }
        (None, None) => return Err(malformed("needs \"question\" or \"conversation\"")),
    };
    let judgments = r
        .judgments
        .into_iter()
        .map(judgment)
        .collect::<Result<Vec<_>, _>>()?;
    let gold = match r.gold {
        None => None,
        Some(label) => Some(
            label
                .parse::<Verdict>()
                .map_err(|_| RecordError::UnknownVerdict(label.into_owned()))?
                .outcome,
        ),
    };
    Ok(Item {
        id,
        category: r.category,
        language: r.language,
        context,
        response_a: Response {
            model: r.model_a.unwrap_or_default(),
            text: r.response_a,
            prior_turns: r.prior_turns_a,
        },
        response_b: Response {
            model: r.model_b.unwrap_or_default(),
            text: r.response_b,
            prior_turns: r.prior_turns_b,
        },
        judgments,
        gold,
        meta: r.meta.unwrap_or_default(),
    })
}

fn judgment(j: NativeJudgment<'_>) -> Result<Judgment, RecordError> {
    let (verdict, problem) = match (j.verdict, &j.output) {
        (Some(label), _) => (
            Some(
                label
                    .parse::<Verdict>()
                    .map_err(|_| RecordError::UnknownVerdict(label.into_owned()))?,
            ),
            None,
        ),
        // A recorded problem is kept as written: re-reading the output could only repeat it.
        (None, _) if j.problem.is_some() => (None, j.problem),
        (None, Some(output)) => read_output(output, OutputFormat::Auto, j.swapped),
        (None, None) => (
            None,
            Some(Problem::Unreadable(
                "the judgment has neither a verdict nor an output".into(),
            )),
        ),
    };
    Ok(Judgment {
        judge: j.judge,
        verdict,
        output: j.output,
        swapped: j.swapped,
        problem,
        provenance: Provenance::Dataset,
        preference: j.preference,
        run: j.run,
    })
}

#[derive(Serialize)]
struct OutRecord<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    question: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<&'a [Message]>,
    model_a: &'a str,
    response_a: &'a str,
    model_b: &'a str,
    response_b: &'a str,
    #[serde(skip_serializing_if = "<[Message]>::is_empty")]
    prior_turns_a: &'a [Message],
    #[serde(skip_serializing_if = "<[Message]>::is_empty")]
    prior_turns_b: &'a [Message],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    judgments: Vec<OutJudgment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gold: Option<&'static str>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    meta: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct OutJudgment<'a> {
    judge: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    swapped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preference: Option<f64>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    run: &'a serde_json::Map<String, serde_json::Value>,
}

/// Writes items as native JSON Lines, one item a line, in order. Loading the output gives the
/// same items back (judgments' provenance becomes `Dataset`).
pub fn write_native<'a, W: Write>(
    items: impl IntoIterator<Item = &'a Item>,
    mut writer: W,
) -> std::io::Result<()> {
    for item in items {
        let single_question = matches!(item.context.as_slice(), [m] if m.role == "user");
        let record = OutRecord {
            id: &item.id,
            category: item.category.as_deref(),
            language: item.language.as_deref(),
            question: single_question.then(|| item.context[0].content.as_str()),
            conversation: (!single_question).then_some(item.context.as_slice()),
            model_a: &item.response_a.model,
            response_a: &item.response_a.text,
            model_b: &item.response_b.model,
            response_b: &item.response_b.text,
            prior_turns_a: &item.response_a.prior_turns,
            prior_turns_b: &item.response_b.prior_turns,
            judgments: item
                .judgments
                .iter()
                .map(|j| OutJudgment {
                    judge: &j.judge,
                    verdict: j.verdict.map(Verdict::label),
                    output: j.output.as_deref(),
                    swapped: j.swapped,
                    // Without a verdict, keep why; an output alone would be re-read on load.
                    problem: if j.verdict.is_none() {
                        j.problem.as_ref()
                    } else {
                        None
                    },
                    preference: j.preference,
                    run: &j.run,
                })
                .collect(),
            gold: item.gold.map(Outcome::label),
            meta: &item.meta,
        };
        serde_json::to_writer(&mut writer, &record)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(text: &str) -> Record<'_> {
        Record {
            line: 1,
            index: 0,
            key: None,
            text: text.as_bytes(),
        }
    }

    #[test]
    fn reads_a_question_item_with_labelled_verdicts() {
        let it = item(&rec(
            r#"{"id": 7, "question": "q", "model_a": "m1", "response_a": "x", "model_b": "m2", "response_b": "y",
               "judgments": [{"judge": "j1", "verdict": "A>>B"}, {"judge": "j2", "verdict": "tie", "swapped": true}], "gold": "B"}"#,
        ))
        .expect("item");
        assert_eq!(it.id, "7");
        assert_eq!(it.question(), "q");
        assert_eq!(it.judgments[0].verdict.map(|v| v.label()), Some("A>>B"));
        assert_eq!(it.judgments[1].verdict, Some(Verdict::TIE));
        assert!(it.judgments[1].swapped);
        assert_eq!(it.gold, Some(Outcome::B));
    }

    #[test]
    fn unknown_verdict_label_is_its_own_error() {
        let err = item(&rec(
            r#"{"id": "a", "question": "q", "response_a": "x", "response_b": "y", "judgments": [{"judge": "j", "verdict": "A>>>B"}]}"#,
        ))
        .expect_err("bad label");
        assert_eq!(err, RecordError::UnknownVerdict("A>>>B".into()));
    }

    #[test]
    fn structure_errors_say_what_is_missing() {
        let e = item(&rec(r#"{"id": "a", "response_a": "x", "response_b": "y"}"#))
            .expect_err("no prompt");
        assert!(e.reason().contains("question"), "{e:?}");
        let e = item(&rec(r#"{"id": "a", "question": "q", "response_b": "y"}"#))
            .expect_err("no response");
        assert!(e.reason().contains("response_a"), "{e:?}");
        let e = item(&rec(
            r#"{"id": "a", "question": "q", "conversation": [], "response_a": "x", "response_b": "y"}"#,
        ))
        .expect_err("both");
        assert!(e.reason().contains("both"), "{e:?}");
    }

    #[test]
    fn a_judgment_without_verdict_or_output_is_a_problem_not_a_failure() {
        let it = item(&rec(
            r#"{"id": "a", "question": "q", "response_a": "x", "response_b": "y", "judgments": [{"judge": "j"}]}"#,
        ))
        .expect("item");
        assert!(it.judgments[0].verdict.is_none());
        assert!(matches!(
            it.judgments[0].problem,
            Some(Problem::Unreadable(_))
        ));
    }

    #[test]
    fn multi_turn_items_write_a_conversation_and_read_back() {
        let it = item(&rec(
            r#"{"id": "a", "conversation": [{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "3"}],
                "response_a": "x", "response_b": "y", "meta": {"k": [1, "v"]}}"#,
        ))
        .expect("item");
        let mut out = Vec::new();
        write_native([&it], &mut out).expect("write");
        let line = String::from_utf8(out).expect("utf8");
        assert!(line.contains("\"conversation\""), "{line}");
        assert_eq!(item(&rec(line.trim_end())).expect("reload"), it);
    }

    #[test]
    fn a_graded_preference_round_trips() {
        let it = item(&rec(
            r#"{"id": "a", "question": "q", "response_a": "x", "response_b": "y",
                "judgments": [{"judge": "ann", "verdict": "B", "preference": 0.93}, {"judge": "j", "verdict": "A"}]}"#,
        ))
        .expect("item");
        assert_eq!(it.judgments[0].preference, Some(0.93));
        assert_eq!(it.judgments[1].preference, None);
        let mut out = Vec::new();
        write_native([&it], &mut out).expect("write");
        let line = String::from_utf8(out).expect("utf8");
        assert_eq!(line.matches("\"preference\"").count(), 1, "{line}");
        assert_eq!(item(&rec(line.trim_end())).expect("reload"), it);
    }
}
