//! Pieces every format reader shares: the record-level error, reading a judge's raw output into
//! a verdict, picking fields out of loosely typed records, and splitting two conversations into
//! the shared prompt and each side's own turns.

use super::{Message, Problem, Response};
use crate::verdict::{self, JudgeReading, OutputFormat, ParseError, Reading, Verdict};
use serde_json::{Map, Value};

/// Why one record could not become an item. The loader adds the file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The record is not what the format expects (the text says what is wrong).
    Malformed(String),
    /// A verdict label that `Verdict::from_str` does not know.
    UnknownVerdict(String),
}

impl RecordError {
    pub(crate) fn reason(&self) -> String {
        match self {
            RecordError::Malformed(r) => r.clone(),
            RecordError::UnknownVerdict(l) => {
                format!("unknown verdict label {l:?} (valid: A, B, tie, A>>B, A>B, A=B, B>A, B>>A)")
            }
        }
    }
}

pub(crate) fn malformed(reason: impl Into<String>) -> RecordError {
    RecordError::Malformed(reason.into())
}

/// Parses a record's text as a JSON object.
pub(crate) fn object(text: &[u8]) -> Result<Map<String, Value>, RecordError> {
    let s = std::str::from_utf8(text)
        .map_err(|_| malformed("the line is not valid UTF-8 (convert the file to UTF-8)"))?;
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(malformed(format!(
            "expected a JSON object, found {}",
            kind_of(&other)
        ))),
        Err(e) => Err(malformed(format!("malformed JSON: {}", json_error(&e)))),
    }
}

/// A serde_json error without its "at line 1" (the loader names the file's line already).
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.line() == 1 {
        let suffix = format!(" at line 1 column {}", e.column());
        if let Some(msg) = text.strip_suffix(&suffix) {
            return format!("{msg} (column {})", e.column());
        }
    }
    text
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required string field.
pub(crate) fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, RecordError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(malformed(format!(
            "\"{key}\" must be a string, found {}",
            kind_of(other)
        ))),
        None => Err(malformed(format!("missing \"{key}\""))),
    }
}

/// An optional string field; `null` counts as absent.
pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, RecordError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(malformed(format!(
            "\"{key}\" must be a string, found {}",
            kind_of(other)
        ))),
    }
}

/// A required object field.
pub(crate) fn req_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Map<String, Value>, RecordError> {
    match obj.get(key) {
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(malformed(format!(
            "\"{key}\" must be an object, found {}",
            kind_of(other)
        ))),
        None => Err(malformed(format!("missing \"{key}\""))),
    }
}

/// An id-like field that sources write as a number or a string.
pub(crate) fn id_like(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, RecordError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(malformed(format!(
            "\"{key}\" must be a string or a number, found {}",
            kind_of(other)
        ))),
    }
}

/// A list of `{"role", "content"}` turns.
pub(crate) fn messages(obj: &Map<String, Value>, key: &str) -> Result<Vec<Message>, RecordError> {
    let value = obj
        .get(key)
        .ok_or_else(|| malformed(format!("missing \"{key}\"")))?;
    serde_json::from_value::<Vec<Message>>(value.clone()).map_err(|e| {
        malformed(format!(
            "\"{key}\" must be a list of {{\"role\", \"content\"}} turns: {e}"
        ))
    })
}

/// Reads a verdict out of a judge's raw output. `swapped` says the judge saw B first, so the
/// verdict it gives is turned back into the item's orientation.
pub(crate) fn read_output(
    output: &str,
    format: OutputFormat,
    swapped: bool,
) -> (Option<Verdict>, Option<Problem>) {
    match verdict::parse_as(output, format) {
        Ok(JudgeReading {
            reading: Reading::Pairwise(v),
            ..
        }) => (Some(if swapped { v.swapped() } else { v }), None),
        Ok(JudgeReading {
            reading: Reading::Score(s),
            ..
        }) => (
            None,
            Some(Problem::Unreadable(format!(
                "the output gives a pointwise score ({s}), not a pairwise verdict"
            ))),
        ),
        Err(ParseError::OutOfScale(label)) => (None, Some(Problem::OutOfScale(label))),
        Err(ParseError::Conflicting(labels)) => (None, Some(Problem::Conflicting(labels))),
        Err(e) => (None, Some(Problem::Unreadable(e.to_string()))),
    }
}

/// Two full conversations (each ending in the answer being judged) split into the shared
/// prompt and each side's response; turns after the shared prefix and before the final answer
/// become that side's `prior_turns` (Chatbot Arena battles diverge after the first answer).
pub(crate) fn split_conversations(
    mut a: Vec<Message>,
    mut b: Vec<Message>,
) -> Result<(Vec<Message>, Response, Response), RecordError> {
    let last_a = take_answer(&mut a, "conversation_a")?;
    let last_b = take_answer(&mut b, "conversation_b")?;
    let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let prior_a = a.split_off(shared);
    let prior_b = b.split_off(shared);
    Ok((
        a,
        Response {
            model: String::new(),
            text: last_a,
            prior_turns: prior_a,
        },
        Response {
            model: String::new(),
            text: last_b,
            prior_turns: prior_b,
        },
    ))
}

fn take_answer(conv: &mut Vec<Message>, name: &str) -> Result<String, RecordError> {
    match conv.last() {
        Some(m) if m.role == "assistant" => Ok(conv.pop().map(|m| m.content).unwrap_or_default()),
        Some(m) => Err(malformed(format!(
            "\"{name}\" must end with the assistant's answer, but its last turn is {:?}",
            m.role
        ))),
        None => Err(malformed(format!("\"{name}\" is empty"))),
    }
}

/// A language name as Chatbot Arena writes it (`English`, `Chinese`) as a code; names not in
/// the table are kept lower-cased.
pub(crate) fn language_code(name: &str) -> String {
    const CODES: [(&str, &str); 20] = [
        ("english", "en"),
        ("chinese", "zh"),
        ("russian", "ru"),
        ("spanish", "es"),
        ("german", "de"),
        ("french", "fr"),
        ("japanese", "ja"),
        ("korean", "ko"),
        ("portuguese", "pt"),
        ("italian", "it"),
        ("polish", "pl"),
        ("vietnamese", "vi"),
        ("arabic", "ar"),
        ("dutch", "nl"),
        ("turkish", "tr"),
        ("indonesian", "id"),
        ("ukrainian", "uk"),
        ("persian", "fa"),
        ("hindi", "hi"),
        ("swedish", "sv"),
    ];
    let lower = name.trim().to_ascii_lowercase();
    CODES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, c)| (*c).to_string())
        .unwrap_or(lower)
}

/// Runs `f` on every input on the available cores (at most 16 threads) and returns the results
/// in input order; below `min_len` inputs, threads cost more than they save and it runs inline.
/// Used for records, files and Parquet row groups alike.
pub(super) fn par_map<I: Sync, T: Send>(
    inputs: &[I],
    min_len: usize,
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    if threads < 2 || inputs.len() < min_len.max(2) {
        return inputs.iter().map(&f).collect();
    }
    let chunk = inputs.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(inputs.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // The work never panics by design; if it did, re-raise it here rather than
                // return a dataset with parts missing.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, c: &str) -> Message {
        Message::new(role, c)
    }

    #[test]
    fn single_turn_conversations_share_the_question() {
        let (ctx, a, b) = split_conversations(
            vec![m("user", "q"), m("assistant", "x")],
            vec![m("user", "q"), m("assistant", "y")],
        )
        .expect("split");
        assert_eq!(ctx, vec![m("user", "q")]);
        assert_eq!((a.text.as_str(), b.text.as_str()), ("x", "y"));
        assert!(a.prior_turns.is_empty() && b.prior_turns.is_empty());
    }

    #[test]
    fn diverged_multi_turn_conversations_keep_each_sides_turns() {
        let (ctx, a, b) = split_conversations(
            vec![
                m("user", "q1"),
                m("assistant", "a1"),
                m("user", "q2"),
                m("assistant", "a2"),
            ],
            vec![
                m("user", "q1"),
                m("assistant", "b1"),
                m("user", "q2"),
                m("assistant", "b2"),
            ],
        )
        .expect("split");
        assert_eq!(ctx, vec![m("user", "q1")]);
        assert_eq!(a.prior_turns, vec![m("assistant", "a1"), m("user", "q2")]);
        assert_eq!(b.prior_turns, vec![m("assistant", "b1"), m("user", "q2")]);
        assert_eq!((a.text.as_str(), b.text.as_str()), ("a2", "b2"));
    }

    #[test]
    fn a_conversation_must_end_with_an_answer() {
        let err =
            split_conversations(vec![m("user", "q")], vec![m("user", "q")]).expect_err("no answer");
        assert!(err.reason().contains("conversation_a"), "{err:?}");
    }

    #[test]
    fn output_without_a_verdict_becomes_a_problem() {
        // Whatever the verdict parser reads, a judgment never carries both a verdict and a problem.
        let (v, p) = read_output("no verdict here at all", OutputFormat::Auto, false);
        assert!(v.is_none() != p.is_none());
    }

    #[test]
    fn arena_language_names_map_to_codes() {
        assert_eq!(language_code("English"), "en");
        assert_eq!(language_code("Chinese"), "zh");
        assert_eq!(language_code("Klingon"), "klingon");
    }
}
