//! The answer grammar a template declares: the shape of the text it asks the judge for, written
//! in the template's header (`answer:`, and `answer.<language>:` where a language's prompt asks
//! for other keys). Arbiter compiles one declaration three ways:
//! - `lark`: an llguidance grammar for the local engine, with a token budget for each free text
//!   so that the verdict always fits in `max_new_tokens`;
//! - `schema`: a JSON Schema, when the whole answer is one JSON object (OpenAI-style
//!   `response_format` of remote judges);
//! - `gbnf`: a GBNF grammar (llama.cpp's server, and the EBNF fields of vLLM and SGLang).
//!
//! The declaration language, one line:
//! - `text`: free text with at least one visible character; it may not contain the first
//!   character of the fixed text that follows it (so the structure starts at the first `[`,
//!   `{`, line break... the judge writes: a text before `[[A]]` has no `[`);
//! - `"literal"`: exactly this text (JSON string syntax);
//! - `("a" | "b" | ...)`: one of these texts (a verdict label);
//! - `1..10`: a whole number in this range (a score);
//! - `{"key": value, ...}`: one JSON object with exactly these keys in this order, each value
//!   `text` (a JSON string of free text), `"a" | "b"` (one of these JSON strings) or a range
//!   (a JSON number).
//!
//! Items follow each other with nothing in between, e.g. `text ("[[A]]" | "[[B]]")`.

mod gbnf;
mod lark;
mod schema;

pub use lark::TextBudgets;

use std::fmt;

/// One element of an answer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Free text (budgeted locally).
    Text,
    /// Exactly this text.
    Literal(String),
    /// One of these texts.
    Choice(Vec<String>),
    /// A whole number in `lo..=hi`.
    Range(i64, i64),
    /// One JSON object, keys in this order.
    Object(Vec<Member>),
}

/// One key of a JSON object and what its value may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    pub value: Value,
}

/// The value of a JSON member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A JSON string of free text.
    Text,
    /// One of these JSON strings.
    Choice(Vec<String>),
    /// A JSON number in `lo..=hi`.
    Range(i64, i64),
}

/// A checked answer declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerGrammar {
    items: Vec<Item>,
    /// The declaration as written, for messages and settings keys.
    source: String,
}

/// Why a declaration cannot be read: the message says where and what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("answer grammar {declaration:?}: {reason}")]
pub struct GrammarError {
    pub declaration: String,
    pub reason: String,
}

/// The widest number range a declaration may name (each value becomes an alternative).
pub const MAX_RANGE: i64 = 1000;

impl AnswerGrammar {
    /// Reads a declaration (the value of an `answer:` header line).
    pub fn parse(text: &str) -> Result<AnswerGrammar, GrammarError> {
        let fail = |reason: String| GrammarError {
            declaration: text.to_string(),
            reason,
        };
        let mut p = Reader {
            s: text.as_bytes(),
            at: 0,
        };
        let mut items = Vec::new();
        loop {
            p.skip_space();
            if p.done() {
                break;
            }
            items.push(p.item().map_err(fail)?);
        }
        if items.is_empty() {
            return Err(fail(
                "it is empty: declare the answer's shape, e.g. text (\"[[A]]\" | \"[[B]]\")".into(),
            ));
        }
        for pair in items.windows(2) {
            if pair[0] == Item::Text && pair[1] == Item::Text {
                return Err(fail(
                    "two `text` in a row cannot be told apart: put fixed text between them".into(),
                ));
            }
            if pair[0] == Item::Text && opening(&pair[1]).is_empty() {
                return Err(fail(
                    "a `text` must be followed by fixed text (a literal, a choice of labels with a common first character, or a JSON object): the text ends at the first occurrence of that character".into(),
                ));
            }
        }
        Ok(AnswerGrammar {
            items,
            source: text.trim().to_string(),
        })
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The declaration as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The number of free texts (prose and JSON string values), in answer order: the slots
    /// a token budget is shared between.
    pub fn text_slots(&self) -> usize {
        self.items
            .iter()
            .map(|item| match item {
                Item::Text => 1,
                Item::Object(members) => members.iter().filter(|m| m.value == Value::Text).count(),
                _ => 0,
            })
            .sum()
    }

    /// The fixed text the answer must contain besides its free texts, in order, with the
    /// longest alternative of every choice: what a token budget must reserve room for.
    pub fn fixed_parts(&self) -> Vec<String> {
        let longest = |options: &[String]| {
            options
                .iter()
                .max_by_key(|o| o.len())
                .cloned()
                .unwrap_or_default()
        };
        let mut parts = Vec::new();
        for item in &self.items {
            match item {
                Item::Text => {}
                Item::Literal(s) => parts.push(s.clone()),
                Item::Choice(options) => parts.push(longest(options)),
                Item::Range(lo, hi) => parts.push(lo.to_string().max(hi.to_string())),
                Item::Object(members) => {
                    let mut piece = String::from("{");
                    for (i, m) in members.iter().enumerate() {
                        if i > 0 {
                            piece.push_str(", ");
                        }
                        piece.push_str(&json_string(&m.key));
                        piece.push_str(": ");
                        match &m.value {
                            Value::Text => {
                                // The string's quotes; its text is a slot.
                                piece.push('"');
                                parts.push(std::mem::take(&mut piece));
                                piece.push('"');
                            }
                            Value::Choice(options) => {
                                piece.push_str(&json_string(&longest(options)))
                            }
                            Value::Range(lo, hi) => {
                                piece.push_str(&lo.to_string().max(hi.to_string()))
                            }
                        }
                    }
                    piece.push('}');
                    parts.push(piece);
                }
            }
        }
        parts
    }

    /// When the whole answer is one JSON object: its members.
    pub fn as_object(&self) -> Option<&[Member]> {
        match self.items.as_slice() {
            [Item::Object(members)] => Some(members),
            _ => None,
        }
    }

    /// An llguidance (Lark) grammar with `budgets` tokens for each text slot.
    pub fn to_lark(&self, budgets: &TextBudgets) -> String {
        lark::compile(self, budgets)
    }

    /// A JSON Schema of the answer, when it is one JSON object.
    pub fn to_json_schema(&self) -> Option<serde_json::Value> {
        self.as_object().map(schema::object)
    }

    /// A GBNF grammar of the answer (llama.cpp's grammar format).
    pub fn to_gbnf(&self) -> String {
        gbnf::compile(self)
    }
}

impl fmt::Display for AnswerGrammar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The fixed text every way of writing `item` starts with (empty when it varies).
pub(crate) fn opening(item: &Item) -> String {
    match item {
        Item::Text | Item::Range(..) => String::new(),
        Item::Literal(s) => s.clone(),
        Item::Choice(options) => common_prefix(options),
        Item::Object(members) => match members.first() {
            Some(m) => format!("{{{}", json_string(&m.key)),
            None => "{".into(),
        },
    }
}

fn common_prefix(options: &[String]) -> String {
    let Some(first) = options.first() else {
        return String::new();
    };
    let mut end = first.len();
    for o in &options[1..] {
        end = end.min(
            first
                .char_indices()
                .zip(o.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8()),
        );
    }
    first[..end].to_string()
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected {what} at byte {}", self.at))
        }
    }

    fn word(&mut self) -> Option<&str> {
        self.skip_space();
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.at += 1;
        }
        (self.at > start).then(|| std::str::from_utf8(&self.s[start..self.at]).unwrap_or(""))
    }

    fn item(&mut self) -> Result<Item, String> {
        self.skip_space();
        match self.peek() {
            Some(b'"') => Ok(Item::Literal(self.string()?)),
            Some(b'(') => {
                self.at += 1;
                let options = self.choice()?;
                self.expect(b')', "`)` closing the choice")?;
                Ok(Item::Choice(options))
            }
            Some(b'{') => Ok(Item::Object(self.object()?)),
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let (lo, hi) = self.range()?;
                Ok(Item::Range(lo, hi))
            }
            _ => match self.word() {
                Some("text") => Ok(Item::Text),
                Some(w) => Err(format!(
                    "unknown word {w:?}; the items are text, \"literal\", (\"a\" | \"b\"), 1..10 and {{\"key\": value, ...}}"
                )),
                None => Err(format!(
                    "unexpected {:?} at byte {}",
                    self.peek().map(char::from).unwrap_or(' '),
                    self.at
                )),
            },
        }
    }

    /// A JSON string literal.
    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let start = self.at;
        if self.peek() != Some(b'"') {
            return Err(format!("expected a \"quoted string\" at byte {start}"));
        }
        self.at += 1;
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                b'\\' => self.at += 1,
                b'"' => {
                    let raw = std::str::from_utf8(&self.s[start..self.at])
                        .map_err(|_| "a string is not UTF-8".to_string())?;
                    let value: String = serde_json::from_str(raw)
                        .map_err(|e| format!("{raw} is not a valid JSON string ({e})"))?;
                    if value.is_empty() {
                        return Err("an empty string matches nothing: leave it out".into());
                    }
                    return Ok(value);
                }
                _ => {}
            }
        }
        Err(format!("the string starting at byte {start} is not closed"))
    }

    /// `"a" | "b" | ...` (at least one).
    fn choice(&mut self) -> Result<Vec<String>, String> {
        let mut options = vec![self.string()?];
        while self.eat(b'|') {
            let o = self.string()?;
            if options.contains(&o) {
                return Err(format!("{} is listed twice", json_string(&o)));
            }
            options.push(o);
        }
        Ok(options)
    }

    fn number(&mut self) -> Result<i64, String> {
        self.skip_space();
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("expected a whole number at byte {start}"))
    }

    fn range(&mut self) -> Result<(i64, i64), String> {
        let lo = self.number()?;
        if !(self.eat(b'.') && self.peek() == Some(b'.')) {
            return Err(format!(
                "a number must be a range such as 1..10 (byte {})",
                self.at
            ));
        }
        self.at += 1;
        let hi = self.number()?;
        if hi < lo {
            return Err(format!("the range {lo}..{hi} is empty"));
        }
        if hi - lo >= MAX_RANGE {
            return Err(format!(
                "the range {lo}..{hi} is too wide (at most {MAX_RANGE} values)"
            ));
        }
        Ok((lo, hi))
    }

    fn object(&mut self) -> Result<Vec<Member>, String> {
        self.expect(b'{', "`{`")?;
        let mut members: Vec<Member> = Vec::new();
        loop {
            let key = self.string()?;
            if members.iter().any(|m| m.key == key) {
                return Err(format!("the key {} is listed twice", json_string(&key)));
            }
            self.expect(b':', "`:` after a key")?;
            self.skip_space();
            let value = match self.peek() {
                Some(b'"') => Value::Choice(self.choice()?),
                Some(c) if c.is_ascii_digit() || c == b'-' => {
                    let (lo, hi) = self.range()?;
                    Value::Range(lo, hi)
                }
                _ => match self.word() {
                    Some("text") => Value::Text,
                    _ => {
                        return Err(format!(
                            "the value of {} must be text, \"a\" | \"b\", or a range such as 1..10",
                            json_string(&key)
                        ))
                    }
                },
            };
            members.push(Member { key, value });
            if self.eat(b'}') {
                return Ok(members);
            }
            self.expect(b',', "`,` or `}` after a member")?;
        }
    }
}

#[cfg(test)]
mod tests;
