//! The structured critique a judge writes, and its incremental parser.
//!
//! A `CritiqueParser` is fed the judge's output as raw byte chunks while it streams (chunks
//! may split UTF-8 characters) and keeps a `Critique` that can be shown at any moment: the
//! fields written so far, each `Absent`, `Filling` or `Complete`, and the verdict as soon as
//! it is decided. The parse is a single forward pass over the bytes (no re-parsing per
//! chunk), so cost stays linear in the output's length however finely it is chunked.
//!
//! What a critique lists, by format:
//! - CompassJudger-2 JSON: its seven keys, always in the prompt's order (`Absent` until seen),
//!   then any other key the judge wrote; the verdict when `Choice` completes.
//! - JudgerBenchV2: `analysis`/`winner` (or `分析`/`胜者`); the verdict when `winner` completes,
//!   read as strictly as the benchmark does (one uppercase letter).
//! - Any other JSON object: its keys in order of appearance. Arrays and objects as values are
//!   shown compactly.
//! - `[[A]]`, ArenaHard, pointwise and free critiques: an `explanation`, the prose around the
//!   verdict tags. A tag is held out of it until more prose follows (so a closing tag is not
//!   shown twice) and never ends the critique: a judge may rate each answer with a label and
//!   conclude with another, so the verdict of a tagged text is decided by the rules of
//!   `crate::verdict` once the stream ends, never by whichever tag came first.
//! - `Auto`: prose is an `explanation` until a JSON object or a verdict tag shows the format.
//!   A JSON object starts at the first `{` followed by a quoted key, so a critique in `Auto`
//!   that quotes JSON is read as that JSON; pick `Critique` to read prose only.
//!
//! Streaming guarantees (checked by `Critique::continues`): a field never loses text it
//! showed, states only advance, a shown verdict never changes. Hence two documented choices:
//! a repeated key starts a new entry and marks the earlier one `superseded` (the last
//! occurrence counts: `Critique::field` returns it), and of two JSON objects only the first
//! is read. When the stream finishes, anything cut off or unreadable is listed in `problems`;
//! with no verdict read, the verdict patterns of `crate::verdict` are tried on the whole text.

mod board;
mod json;
mod jstring;
mod prose;
mod schema;
mod utf8;

pub use schema::{CJ2_KEYS, JUDGERBENCH_CN_KEYS, JUDGERBENCH_EN_KEYS};

use crate::verdict::{self, OutputFormat, ParseError, Rule, Verdict};
use board::Board;
use json::ObjectScanner;
use prose::{Marker, ProseScanner};
use serde::{Deserialize, Serialize};
use utf8::Utf8Stream;

/// The key under which prose formats show their text.
pub const EXPLANATION: &str = "explanation";

/// How far a field has been written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldState {
    /// Expected (a known shape lists it) but not written yet.
    Absent,
    /// Being written; at the end of a stream this means it was cut off.
    Filling,
    Complete,
}

/// One part of a critique: a JSON member, or the explanation of a prose verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub key: String,
    /// The decoded text (escapes resolved); compact JSON for array or object values.
    pub text: String,
    pub state: FieldState,
    /// A later occurrence of the same key replaced this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

/// A judge's critique as far as it has been read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Critique {
    /// The format the text is read as: the parser's, or for `Auto` the one detected so far.
    pub format: OutputFormat,
    pub fields: Vec<Field>,
    /// The pairwise verdict, set once decided and never changed afterwards.
    pub verdict: Option<Verdict>,
    /// The pointwise score, set once decided and never changed afterwards.
    pub score: Option<f64>,
    /// What could not be read; filled in by `CritiqueParser::finish`.
    pub problems: Vec<String>,
    /// The rule that decided the verdict or score (`crate::verdict::Rule`); set when the
    /// stream finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// The labels, when the output holds several different verdict labels that no rule
    /// settles: the critique then has no verdict, and a person should decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicting: Option<String>,
    /// Bytes of output fed so far.
    pub raw_len: usize,
}

impl Critique {
    /// The field for `key`: its last occurrence when the judge repeated it.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().rev().find(|f| f.key == key)
    }

    /// Whether this critique is a valid later state of `earlier` while streaming: same
    /// fields in the same order (plus new ones), each field's text extended, never cut,
    /// states advanced or kept, superseded marks kept, a decided verdict or score unchanged.
    pub fn continues(&self, earlier: &Critique) -> bool {
        self.fields.len() >= earlier.fields.len()
            && self.raw_len >= earlier.raw_len
            && earlier.fields.iter().zip(&self.fields).all(|(old, new)| {
                old.key == new.key
                    && new.text.starts_with(&old.text)
                    && new.state >= old.state
                    && (new.superseded || !old.superseded)
            })
            && (earlier.verdict.is_none() || earlier.verdict == self.verdict)
            && (earlier.score.is_none() || earlier.score == self.score)
    }
}

#[derive(Debug)]
enum Mode {
    Prose(ProseScanner),
    Json(ObjectScanner),
}

/// Reads a judge's output while it streams. See the module documentation.
pub struct CritiqueParser {
    base: OutputFormat,
    utf8: Utf8Stream,
    board: Board,
    mode: Mode,
    text: String,
}

impl CritiqueParser {
    pub fn new(format: OutputFormat) -> CritiqueParser {
        CritiqueParser {
            base: format,
            utf8: Utf8Stream::default(),
            board: Board::new(format),
            mode: Mode::Prose(ProseScanner::new(format)),
            text: String::new(),
        }
    }

    /// Reads the next chunk of output, as raw bytes, cut anywhere.
    pub fn feed(&mut self, chunk: &[u8]) {
        let CritiqueParser {
            utf8,
            board,
            mode,
            text,
            ..
        } = self;
        board.critique.raw_len += chunk.len();
        utf8.feed(chunk, &mut |s| {
            text.push_str(s);
            read(mode, board, s);
        });
    }

    /// The critique as read so far.
    pub fn snapshot(&self) -> &Critique {
        &self.board.critique
    }

    /// The decoded output so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The output is complete: close what can be closed, report what was cut off or could
    /// not be read, and fall back to the verdict patterns when no verdict was read.
    pub fn finish(self) -> Critique {
        let CritiqueParser {
            base,
            mut utf8,
            mut board,
            mut mode,
            mut text,
        } = self;
        utf8.finish(&mut |s| {
            text.push_str(s);
            read(&mut mode, &mut board, s);
        });
        match &mut mode {
            Mode::Prose(prose) => {
                prose.finish(&mut board);
                board.close_prose();
                if matches!(base, OutputFormat::Cj2Json | OutputFormat::JudgerBench) {
                    board.note("no JSON object found in the output".into());
                }
            }
            Mode::Json(object) => object.finish(&mut board),
        }
        let critique = &board.critique;
        if base != OutputFormat::Critique && critique.verdict.is_none() && critique.score.is_none()
        {
            // A tagged text in `Auto` is read by the review rule, whatever its first tag was.
            let format = match (base, critique.format) {
                (OutputFormat::Auto, f @ (OutputFormat::Cj2Json | OutputFormat::JudgerBench)) => f,
                (OutputFormat::Auto, _) => OutputFormat::Auto,
                (b, _) => b,
            };
            match verdict::parse_as(&text, format) {
                Ok(found) => {
                    board.decide_reading(found.reading, found.format);
                    board.critique.rule = Some(found.rule);
                }
                Err(err) => {
                    if let ParseError::Conflicting(labels) = &err {
                        board.critique.conflicting = Some(labels.clone());
                    }
                    board.note(format!("no verdict read: {err}"));
                }
            }
        } else if board.critique.verdict.is_some() && board.critique.rule.is_none() {
            // Decided while streaming: only a JSON answer's verdict field is.
            board.critique.rule = Some(Rule::JsonField);
        }
        board.finish()
    }
}

/// Parses a complete output at once (the same result as feeding it in any chunks).
pub fn parse_critique(output: &str, format: OutputFormat) -> Critique {
    let mut parser = CritiqueParser::new(format);
    parser.feed(output.as_bytes());
    parser.finish()
}

fn read(mode: &mut Mode, board: &mut Board, text: &str) {
    for c in text.chars() {
        match mode {
            Mode::Json(object) => object.push(c, board),
            Mode::Prose(prose) => {
                let Some((marker, after)) = prose.push(c, board) else {
                    continue;
                };
                match marker {
                    Marker::Json(quote) => {
                        board.close_prose();
                        let mut object = ObjectScanner::in_first_key(quote);
                        object.push_str(&after, board);
                        *mode = Mode::Json(object);
                    }
                    Marker::Tag(_, format) => {
                        // The tag shows the format; the verdict waits for the end (see above).
                        board.detect_format(format);
                        read(mode, board, &after);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(format: OutputFormat, chunks: &[&[u8]]) -> CritiqueParser {
        let mut parser = CritiqueParser::new(format);
        for chunk in chunks {
            parser.feed(chunk);
        }
        parser
    }

    #[test]
    fn cj2_lists_all_seven_keys_before_any_is_written() {
        let parser = fed(OutputFormat::Cj2Json, &[]);
        let keys: Vec<_> = parser.snapshot().fields.iter().map(|f| &f.key).collect();
        assert_eq!(keys, CJ2_KEYS.iter().collect::<Vec<_>>());
        assert!(parser
            .snapshot()
            .fields
            .iter()
            .all(|f| f.state == FieldState::Absent));
    }

    #[test]
    fn a_partial_key_is_not_shown_and_a_partial_value_grows() {
        let parser = fed(OutputFormat::Auto, &[b"{\"analy"]);
        assert!(parser.snapshot().fields.is_empty());
        let parser = fed(OutputFormat::Auto, &[b"{\"analysis\": \"B is wro"]);
        let field = parser.snapshot().field("analysis").expect("analysis shown");
        assert_eq!(
            (field.text.as_str(), field.state),
            ("B is wro", FieldState::Filling)
        );
        assert_eq!(
            parser.snapshot().field("winner").map(|f| f.state),
            Some(FieldState::Absent)
        );
    }

    #[test]
    fn the_verdict_is_decided_before_the_stream_ends() {
        let parser = fed(
            OutputFormat::Cj2Json,
            &[
                b"```json\n{\"Reasoning\": \"x\", \"Choice\": \"Model B\"",
                b"\n}",
            ],
        );
        assert_eq!(parser.snapshot().verdict, Some(Verdict::B));
        assert_eq!(
            parser.snapshot().field("Choice").map(|f| f.state),
            Some(FieldState::Complete)
        );
    }

    #[test]
    fn a_surrogate_pair_split_across_chunks_joins() {
        let parser = fed(
            OutputFormat::Auto,
            &[b"{\"a\": \"x\\ud8", b"3d\\u", b"de00", b"y"],
        );
        assert_eq!(
            parser.snapshot().field("a").map(|f| f.text.as_str()),
            Some("x😀y")
        );
    }

    #[test]
    fn a_verdict_tag_is_held_back_from_the_explanation() {
        let mut parser = fed(OutputFormat::Brackets, &[b"A is better. [", b"[A"]);
        assert_eq!(parser.snapshot().fields[0].text, "A is better.");
        parser.feed(b"]]");
        // A closing tag is not shown as text; the verdict waits for the end of the output,
        // since a later label could contradict it.
        assert_eq!(parser.snapshot().fields[0].text, "A is better.");
        assert_eq!(parser.snapshot().verdict, None);
        let done = parser.finish();
        assert_eq!(done.fields[0].text, "A is better.");
        assert_eq!(done.fields[0].state, FieldState::Complete);
        assert_eq!(done.verdict, Some(Verdict::A));
        assert_eq!(done.rule, Some(Rule::LetterPriority));
        assert!(done.problems.is_empty(), "{:?}", done.problems);
    }

    #[test]
    fn prose_after_a_tag_keeps_the_tag_and_a_later_label_is_not_overruled() {
        let mut parser = fed(OutputFormat::Auto, &[b"For A alone: [[A>B]] and ", b"then"]);
        assert_eq!(
            parser.snapshot().fields[0].text,
            "For A alone: [[A>B]] and then"
        );
        assert_eq!(parser.snapshot().format, OutputFormat::Arena5);
        parser.feed(b"\nFor B alone: [[B>A]]");
        let done = parser.finish();
        assert_eq!(done.verdict, None);
        assert!(done
            .conflicting
            .as_deref()
            .is_some_and(|l| l.contains("[[A>B]], [[B>A]]")));
        let settled = parse_critique(
            "For A alone: [[A>B]]\nFor B alone: [[B>A]]\nMy final verdict is [[B>A]]",
            OutputFormat::Auto,
        );
        assert_eq!(
            settled.verdict.map(|v| v.outcome),
            Some(crate::verdict::Outcome::B)
        );
        assert_eq!(settled.rule, Some(Rule::FinalVerdict));
    }

    #[test]
    fn truncation_keeps_what_was_read_and_says_so() {
        let done = parse_critique(
            "{\"Reasoning\": \"Model A handles the edge ca",
            OutputFormat::Cj2Json,
        );
        let reasoning = done.field("Reasoning").expect("listed");
        assert_eq!(reasoning.state, FieldState::Filling);
        assert_eq!(reasoning.text, "Model A handles the edge ca");
        assert!(done.problems.iter().any(|p| p.contains("\"Reasoning\"")));
        assert_eq!(done.verdict, None);
    }

    #[test]
    fn a_later_choice_never_overrides_a_shown_verdict() {
        let done = parse_critique(
            "{\"Choice\": \"Model A\", \"Choice\": \"Model B\"}",
            OutputFormat::Cj2Json,
        );
        assert_eq!(done.verdict, Some(Verdict::A));
        assert_eq!(
            done.field("Choice").map(|f| f.text.as_str()),
            Some("Model B")
        );
        assert!(done.problems.iter().any(|p| p.contains("first is kept")));
    }

    #[test]
    fn continues_rejects_lost_text_and_changed_verdicts() {
        let earlier = parse_critique("{\"Choice\": \"Model A\"}", OutputFormat::Cj2Json);
        let mut later = earlier.clone();
        assert!(later.continues(&earlier));
        later.verdict = Some(Verdict::B);
        assert!(!later.continues(&earlier));
        let mut later = earlier.clone();
        later.fields[6].text.pop();
        assert!(!later.continues(&earlier));
        let mut later = earlier.clone();
        later.fields[6].state = FieldState::Filling;
        assert!(!later.continues(&earlier));
    }

    #[test]
    fn raw_len_counts_bytes_fed() {
        let parser = fed(OutputFormat::Critique, &["é".as_bytes(), b"ab"]);
        assert_eq!(parser.snapshot().raw_len, 4);
        assert_eq!(parser.text(), "éab");
    }
}
