//! An answer declaration as an llguidance grammar (its Lark dialect), for the local engine.
//!
//! Each free text is its own terminal with `max_tokens=N`: once a text has used its N tokens
//! the grammar ends it (at the first point where it can end) and the fixed text after it is
//! forced, so a verdict that follows always fits in the budget the engine planned.
//!
//! llguidance's lexer is greedy: a terminal goes on as long as the next byte fits it, and never
//! gives bytes back. So a text cannot end where the fixed text after it begins unless that
//! text's first character is one the free text never contains: a text excludes the first
//! character of what follows it (`[` before `[[A]]`, a line break before `"\nWeaknesses:"`),
//! and the first such character the judge writes starts the structure.

use super::{json_string, opening, AnswerGrammar, Item, Value};
use std::fmt::Write;

/// Tokens each free text may use, in slot order (`AnswerGrammar::text_slots`); `None` leaves
/// the texts unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextBudgets(pub Option<Vec<usize>>);

impl TextBudgets {
    fn get(&self, slot: usize) -> Option<usize> {
        self.0.as_ref().and_then(|b| b.get(slot).copied())
    }
}

/// A character of a JSON string: anything but `"`, `\` and control characters, or an escape.
const JSON_CHAR: &str = r#"[^"\\\x00-\x1F]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4}"#;
/// The first character of a JSON string of free text: as above, but not white space, so that
/// a field is never left blank.
const JSON_FIRST: &str = r#"[^"\\\x00-\x20]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4}"#;

pub(super) fn compile(grammar: &AnswerGrammar, budgets: &TextBudgets) -> String {
    let mut rules = String::new();
    let mut start = Vec::new();
    let mut slot = 0;
    let items = grammar.items();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Text => {
                let stop = items
                    .get(i + 1)
                    .and_then(|next| opening(next).chars().next());
                let terminal = format!("TEXT{slot}");
                let _ = writeln!(rules, "{terminal}: /{}/", text_regex(stop));
                start.push(budgeted(&mut rules, slot, &terminal, budgets));
                slot += 1;
            }
            Item::Literal(s) => start.push(json_string(s)),
            Item::Choice(options) => {
                start.push(alternatives(options.iter().map(|o| json_string(o))))
            }
            Item::Range(lo, hi) => start.push(range(*lo, *hi)),
            Item::Object(members) => {
                let mut parts = Vec::new();
                let mut fixed = String::from("{");
                for (m_i, m) in members.iter().enumerate() {
                    if m_i > 0 {
                        fixed.push_str(", ");
                    }
                    fixed.push_str(&json_string(&m.key));
                    fixed.push_str(": ");
                    match &m.value {
                        Value::Text => {
                            fixed.push('"');
                            parts.push(json_string(&std::mem::take(&mut fixed)));
                            let terminal = format!("TEXT{slot}");
                            let _ = writeln!(rules, "{terminal}: /({JSON_FIRST})({JSON_CHAR})*/");
                            parts.push(budgeted(&mut rules, slot, &terminal, budgets));
                            slot += 1;
                            fixed.push('"');
                        }
                        Value::Choice(options) => {
                            if !fixed.is_empty() {
                                parts.push(json_string(&std::mem::take(&mut fixed)));
                            }
                            parts.push(alternatives(
                                options.iter().map(|o| json_string(&json_string(o))),
                            ));
                        }
                        Value::Range(lo, hi) => {
                            if !fixed.is_empty() {
                                parts.push(json_string(&std::mem::take(&mut fixed)));
                            }
                            parts.push(range(*lo, *hi));
                        }
                    }
                }
                fixed.push('}');
                parts.push(json_string(&fixed));
                start.push(parts.join(" "));
            }
        }
    }
    format!("start: {}\n{rules}", start.join(" "))
}

/// A rule for text slot `slot` with its token budget, if it has one; returns its name.
fn budgeted(rules: &mut String, slot: usize, terminal: &str, budgets: &TextBudgets) -> String {
    match budgets.get(slot) {
        Some(n) => {
            let name = format!("text{slot}");
            let _ = writeln!(rules, "{name}[max_tokens={}]: {terminal}", n.max(1));
            name
        }
        None => terminal.to_string(),
    }
}

fn alternatives(options: impl Iterator<Item = String>) -> String {
    format!("({})", options.collect::<Vec<_>>().join(" | "))
}

/// The numbers of a range as alternatives, longest first so that `10` is not read as `1`.
fn range(lo: i64, hi: i64) -> String {
    let mut values: Vec<String> = (lo..=hi).map(|n| json_string(&n.to_string())).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    alternatives(values.into_iter())
}

/// Free text with a visible character, without `stop` when given, as a `/.../` regex body.
fn text_regex(stop: Option<char>) -> String {
    match stop {
        None => r"\s*\S(?s:.*)".to_string(),
        Some(c) => {
            let c = class_char(c);
            format!(r"[\s&&[^{c}]]*[^\s{c}][^{c}]*")
        }
    }
}

/// `c` inside a regex character class (and inside `/.../`).
fn class_char(c: char) -> String {
    match c {
        '\n' => r"\n".into(),
        '\r' => r"\r".into(),
        '\t' => r"\t".into(),
        '/' => r"\/".into(),
        // Only the characters that are special in a class (or in regex syntax) are escaped:
        // the regex parser reads `\<` and `\>` as word boundaries, which a class refuses.
        c if r"\.+*?()|[]{}^$#&-~".contains(c) => format!("\\{c}"),
        c => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_before_any_punctuation_is_a_valid_regex() {
        // The grammar library parses `/.../` bodies with the same regex syntax as `regex`.
        for c in (b'!'..=b'~')
            .map(char::from)
            .filter(|c| c.is_ascii_punctuation())
        {
            let body = text_regex(Some(c));
            let re = regex::Regex::new(&format!("^(?:{body})$"))
                .unwrap_or_else(|e| panic!("stop {c:?}: {body}: {e}"));
            assert!(re.is_match("some text"), "{c:?}");
            assert!(!re.is_match(&format!("some {c} text")), "{c:?} excluded");
        }
        for c in ['\n', '\t'] {
            assert!(regex::Regex::new(&text_regex(Some(c))).is_ok());
        }
    }
}
