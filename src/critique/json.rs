//! A streaming scanner for the one JSON object a judge writes, one character at a time.
//!
//! It never re-reads what it has seen, so a critique of any length costs time linear in its
//! size however finely it is chunked. It is lenient the way judge output needs: single
//! quotes, trailing or missing commas, unescaped quotes inside strings (see `jstring`), an
//! object that ends in a code fence without its closing brace. Values that are arrays or
//! objects are shown compactly (whitespace outside strings dropped, strings as written).
//! Only the first object counts; a later one is noted and ignored.

use super::board::Board;
use super::jstring::{Place, Step, StrDecoder};

#[derive(Debug)]
enum State {
    ExpectKey,
    Key(StrDecoder),
    ExpectColon,
    ExpectValue,
    Str(StrDecoder),
    Scalar,
    Nested(Nested),
    AfterValue,
    Closed { brace_seen: bool },
}

/// Where a compact array/object value stands.
#[derive(Debug)]
struct Nested {
    depth: u32,
    string: Option<char>,
    escaped: bool,
}

#[derive(Debug)]
pub(crate) struct ObjectScanner {
    state: State,
    key: String,
    field: usize,
}

impl ObjectScanner {
    /// A scanner positioned just after the opening quote of the object's first key.
    pub(crate) fn in_first_key(quote: char) -> ObjectScanner {
        ObjectScanner {
            state: State::Key(StrDecoder::new(quote, Place::Key)),
            key: String::new(),
            field: 0,
        }
    }

    pub(crate) fn push_str(&mut self, text: &str, board: &mut Board) {
        for c in text.chars() {
            self.push(c, board);
        }
    }

    pub(crate) fn push(&mut self, c: char, board: &mut Board) {
        match &mut self.state {
            State::ExpectKey => match c {
                '"' | '\'' => self.state = State::Key(StrDecoder::new(c, Place::Key)),
                '}' => self.close(board),
                '`' => self.end_without_brace(board),
                // Commas and whitespace between members; anything else is not a key.
                _ => {}
            },
            State::Key(dec) => {
                if let Step::Closed { rest } = dec.push(c, &mut self.key) {
                    let key = std::mem::take(&mut self.key);
                    self.field = board.open_field(&key);
                    self.state = State::ExpectColon;
                    self.push_str(&rest, board);
                }
            }
            State::ExpectColon => {
                if c == ':' {
                    self.state = State::ExpectValue;
                } else if !c.is_whitespace() {
                    // A missing colon: read this as the value.
                    self.state = State::ExpectValue;
                    self.push(c, board);
                }
            }
            State::ExpectValue => match c {
                c if c.is_whitespace() => {}
                '"' | '\'' => self.state = State::Str(StrDecoder::new(c, Place::Value)),
                '{' | '[' => {
                    board.text_mut(self.field).push(c);
                    self.state = State::Nested(Nested {
                        depth: 1,
                        string: None,
                        escaped: false,
                    });
                }
                '}' => {
                    board.complete(self.field);
                    self.close(board);
                }
                ',' => {
                    board.complete(self.field);
                    self.state = State::ExpectKey;
                }
                _ => {
                    board.text_mut(self.field).push(c);
                    self.state = State::Scalar;
                }
            },
            State::Str(dec) => {
                if let Step::Closed { rest } = dec.push(c, board.text_mut(self.field)) {
                    board.complete(self.field);
                    self.state = State::AfterValue;
                    self.push_str(&rest, board);
                }
            }
            State::Scalar => {
                if c.is_whitespace() || matches!(c, ',' | '}' | ']') {
                    board.complete(self.field);
                    self.state = State::AfterValue;
                    self.push(c, board);
                } else {
                    board.text_mut(self.field).push(c);
                }
            }
            State::Nested(nested) => {
                let text = board.text_mut(self.field);
                if let Some(quote) = nested.string {
                    text.push(c);
                    if nested.escaped {
                        nested.escaped = false;
                    } else if c == '\\' {
                        nested.escaped = true;
                    } else if c == quote {
                        nested.string = None;
                    }
                    return;
                }
                match c {
                    c if c.is_whitespace() => return,
                    '"' | '\'' => nested.string = Some(c),
                    '{' | '[' => nested.depth += 1,
                    '}' | ']' => nested.depth -= 1,
                    _ => {}
                }
                text.push(c);
                if nested.depth == 0 {
                    board.complete(self.field);
                    self.state = State::AfterValue;
                }
            }
            State::AfterValue => match c {
                ',' => self.state = State::ExpectKey,
                '}' => self.close(board),
                // A missing comma: the next key starts straight away.
                '"' | '\'' => self.state = State::Key(StrDecoder::new(c, Place::Key)),
                '`' => self.end_without_brace(board),
                _ => {}
            },
            State::Closed { brace_seen } => match c {
                '{' => *brace_seen = true,
                '"' | '\'' if *brace_seen => {
                    *brace_seen = false;
                    board.note(
                        "a second JSON object follows the first; only the first is read".into(),
                    );
                }
                c if c.is_whitespace() => {}
                _ => *brace_seen = false,
            },
        }
    }

    fn close(&mut self, _board: &mut Board) {
        self.state = State::Closed { brace_seen: false };
    }

    /// A code fence where a key or `}` was due: the judge forgot the closing brace.
    fn end_without_brace(&mut self, board: &mut Board) {
        board.note("the JSON object has no closing brace; it was read up to the code fence".into());
        self.close(board);
    }

    /// The input ended: finish what can be finished, note what was cut off.
    pub(crate) fn finish(&mut self, board: &mut Board) {
        let ended_cleanly = match &mut self.state {
            State::Closed { .. } => return,
            State::Key(dec) => {
                if dec.finish(&mut self.key) {
                    let key = std::mem::take(&mut self.key);
                    board.open_field(&key);
                } else {
                    board.note(format!(
                        "the output ended inside a key ({:?}); it was dropped",
                        self.key
                    ));
                }
                false
            }
            State::Str(dec) => {
                let closed = dec.finish(board.text_mut(self.field));
                if closed {
                    board.complete(self.field);
                }
                closed
            }
            State::Scalar => {
                board.complete(self.field);
                true
            }
            State::AfterValue | State::ExpectKey => true,
            State::ExpectColon | State::ExpectValue | State::Nested(_) => false,
        };
        board.note(if ended_cleanly {
            "the JSON object has no closing brace; it was read up to the end".into()
        } else {
            "the output ended inside the JSON object (the judge probably hit its token limit)"
                .into()
        });
    }
}
