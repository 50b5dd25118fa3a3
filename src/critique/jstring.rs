//! Decoding one JSON string as it streams in: escapes (`\"`, `\n`, `\uXXXX` with surrogate
//! pairs, any of them split across chunks) and the lenient reading real judges need.
//!
//! Judges write unescaped quotes inside their strings (`"Model A said "hi" ..."`) and
//! single-quoted JSON. So a quote only closes the string when what follows it fits the
//! place the string is in: `:` after a key; `}`, `]`, a code fence, another quote, or `,`
//! followed by a quote or `}` after a value. Until that is known the quote is held back, so
//! nothing shown is ever taken back.

/// Whether the string is an object key or a value: they are closed by different followers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    Key,
    Value,
}

#[derive(Clone, Copy, Debug)]
enum Escape {
    None,
    Backslash,
    /// `\u` and the hex digits read so far.
    Unicode {
        digits: u8,
        value: u32,
    },
}

/// A quote that may close the string, and the text after it held back until it is decided.
#[derive(Debug)]
struct Closing {
    held: String,
    after_comma: bool,
}

/// What a character did to the string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Open,
    /// The string ended; `rest` is what followed its closing quote, up to and including the
    /// character that confirmed it, for the caller to read next.
    Closed {
        rest: String,
    },
}

#[derive(Debug)]
pub(crate) struct StrDecoder {
    quote: char,
    place: Place,
    escape: Escape,
    unicode_raw: String,
    high_surrogate: Option<u32>,
    closing: Option<Closing>,
}

impl StrDecoder {
    pub(crate) fn new(quote: char, place: Place) -> StrDecoder {
        StrDecoder {
            quote,
            place,
            escape: Escape::None,
            unicode_raw: String::new(),
            high_surrogate: None,
            closing: None,
        }
    }

    /// Reads one character, appending decoded text to `out`.
    pub(crate) fn push(&mut self, c: char, out: &mut String) -> Step {
        if let Some(closing) = &mut self.closing {
            if c.is_whitespace() {
                closing.held.push(c);
                return Step::Open;
            }
            let confirms = match (self.place, closing.after_comma) {
                (Place::Key, _) => c == ':',
                (Place::Value, false) => {
                    if c == ',' {
                        closing.held.push(c);
                        closing.after_comma = true;
                        return Step::Open;
                    }
                    matches!(c, '}' | ']' | '`' | '"' | '\'')
                }
                (Place::Value, true) => matches!(c, '}' | '`' | '"' | '\''),
            };
            let Closing { held, .. } = self.closing.take().expect("checked just above");
            if confirms {
                let mut rest: String = held.chars().skip(1).collect();
                rest.push(c);
                return Step::Closed { rest };
            }
            // The quote was part of the text after all.
            out.push_str(&held);
        }
        match self.escape {
            Escape::Backslash => {
                self.escape = Escape::None;
                if c == 'u' {
                    self.escape = Escape::Unicode {
                        digits: 0,
                        value: 0,
                    };
                    self.unicode_raw.clear();
                    return Step::Open;
                }
                self.flush_high_surrogate(out);
                match c {
                    '"' | '\\' | '/' | '\'' => out.push(c),
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    // Not a JSON escape: keep it as the judge wrote it.
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                return Step::Open;
            }
            Escape::Unicode { digits, value } => {
                if let Some(d) = c.to_digit(16) {
                    self.unicode_raw.push(c);
                    let value = value * 16 + d;
                    if digits == 3 {
                        self.escape = Escape::None;
                        self.unicode(value, out);
                    } else {
                        self.escape = Escape::Unicode {
                            digits: digits + 1,
                            value,
                        };
                    }
                    return Step::Open;
                }
                // A broken `\u` escape: keep what was written and read `c` as usual.
                self.escape = Escape::None;
                self.flush_high_surrogate(out);
                out.push_str("\\u");
                out.push_str(&self.unicode_raw);
            }
            Escape::None => {}
        }
        if c == '\\' {
            // A pending high surrogate waits: this may be the `\u` of its low half.
            self.escape = Escape::Backslash;
            return Step::Open;
        }
        self.flush_high_surrogate(out);
        if c == self.quote {
            self.closing = Some(Closing {
                held: c.to_string(),
                after_comma: false,
            });
            return Step::Open;
        }
        out.push(c);
        Step::Open
    }

    /// The input ended. Returns true when the string counts as closed (it ended right after
    /// a quote); an escape cut in half is dropped.
    pub(crate) fn finish(&mut self, out: &mut String) -> bool {
        if self.closing.take().is_some() {
            return true;
        }
        self.escape = Escape::None;
        self.flush_high_surrogate(out);
        false
    }

    fn unicode(&mut self, value: u32, out: &mut String) {
        match value {
            0xD800..=0xDBFF => {
                self.flush_high_surrogate(out);
                self.high_surrogate = Some(value);
            }
            0xDC00..=0xDFFF => match self.high_surrogate.take() {
                Some(high) => {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00);
                    out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                None => out.push(char::REPLACEMENT_CHARACTER),
            },
            _ => {
                self.flush_high_surrogate(out);
                out.push(char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
        }
    }

    /// A high surrogate not followed by its low half stands for nothing readable.
    fn flush_high_surrogate(&mut self, out: &mut String) {
        if self.high_surrogate.take().is_some() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` (which starts after the opening quote); returns text, and what
    /// followed the closing quote if it closed.
    fn decode(quote: char, place: Place, input: &str) -> (String, Option<String>) {
        let mut dec = StrDecoder::new(quote, place);
        let mut out = String::new();
        for c in input.chars() {
            if let Step::Closed { rest } = dec.push(c, &mut out) {
                return (out, Some(rest));
            }
        }
        let closed = dec.finish(&mut out);
        (out, closed.then(String::new))
    }

    #[test]
    fn standard_escapes_decode() {
        let (text, rest) = decode('"', Place::Value, r#"a\"b\\c\/d\ne\tf\u00e9" }"#);
        assert_eq!(text, "a\"b\\c/d\ne\tfé");
        assert_eq!(rest.as_deref(), Some(" }"));
    }

    #[test]
    fn surrogate_pairs_join_and_lone_halves_are_replaced() {
        assert_eq!(decode('"', Place::Value, r#"\ud83d\ude00"}"#).0, "😀");
        assert_eq!(decode('"', Place::Value, r#"\ud83dx"}"#).0, "\u{FFFD}x");
        assert_eq!(decode('"', Place::Value, r#"\ude00"}"#).0, "\u{FFFD}");
        assert_eq!(decode('"', Place::Value, r#"\ud83d\n"}"#).0, "\u{FFFD}\n");
    }

    #[test]
    fn unescaped_inner_quotes_stay_text() {
        let (text, rest) = decode('"', Place::Value, r#"he said "hi" to me", "next"#);
        assert_eq!(text, "he said \"hi\" to me");
        assert_eq!(rest.as_deref(), Some(", \""));
    }

    #[test]
    fn apostrophes_in_single_quoted_strings_stay_text() {
        let (text, rest) = decode('\'', Place::Value, "Model A's answer', 'x");
        assert_eq!(text, "Model A's answer");
        assert_eq!(rest.as_deref(), Some(", '"));
    }

    #[test]
    fn a_key_closes_only_before_a_colon() {
        let (text, rest) = decode('"', Place::Key, r#"User"s Demand" :"#);
        assert_eq!(text, "User\"s Demand");
        assert_eq!(rest.as_deref(), Some(" :"));
    }

    #[test]
    fn a_cut_string_stays_open_and_a_final_quote_closes() {
        assert_eq!(
            decode('"', Place::Value, "half a sen"),
            ("half a sen".into(), None)
        );
        assert_eq!(
            decode('"', Place::Value, "Model A\"  "),
            ("Model A".into(), Some(String::new()))
        );
        assert_eq!(
            decode('"', Place::Value, r"cut \u00"),
            ("cut ".into(), None)
        );
    }

    #[test]
    fn broken_unicode_escape_is_kept_as_written() {
        assert_eq!(decode('"', Place::Value, r#"\u12G"}"#).0, "\\u12G");
    }
}
