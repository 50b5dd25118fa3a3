//! An answer declaration as a GBNF grammar: llama.cpp's format (its server's `grammar` field),
//! which vLLM's and SGLang's xgrammar backends also read as EBNF.
//!
//! A free text excludes the first character of the fixed text after it, as in the local
//! grammar, so both read an answer the same way. A server cannot know Arbiter's token budget,
//! so texts are unbounded here: the server's `max_tokens` still applies as it is.

use super::{opening, AnswerGrammar, Item, Value};
use std::fmt::Write;

pub(super) fn compile(grammar: &AnswerGrammar) -> String {
    let mut rules = String::new();
    let mut root = Vec::new();
    let mut slot = 0;
    let items = grammar.items();
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Text => {
                let stop = items
                    .get(i + 1)
                    .and_then(|next| opening(next).chars().next());
                root.push(text_rules(&mut rules, slot, stop));
                slot += 1;
            }
            Item::Literal(s) => root.push(literal(s)),
            Item::Choice(options) => root.push(choice(options.iter().map(|o| literal(o)))),
            Item::Range(lo, hi) => root.push(range(*lo, *hi)),
            Item::Object(members) => {
                let mut parts = Vec::new();
                for (m_i, m) in members.iter().enumerate() {
                    let sep = if m_i == 0 { "{" } else { ", " };
                    parts.push(literal(&format!("{sep}{}: ", super::json_string(&m.key))));
                    match &m.value {
                        Value::Text => parts.push("jstring".to_string()),
                        Value::Choice(options) => parts.push(choice(
                            options.iter().map(|o| literal(&super::json_string(o))),
                        )),
                        Value::Range(lo, hi) => parts.push(range(*lo, *hi)),
                    }
                }
                parts.push(literal("}"));
                root.push(parts.join(" "));
            }
        }
    }
    let uses_jstring = items.iter().any(|i| match i {
        Item::Object(members) => members.iter().any(|m| m.value == Value::Text),
        _ => false,
    });
    if uses_jstring {
        rules.push_str(
            "jstring ::= \"\\\"\" jchar+ \"\\\"\"\n\
             jchar ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])\n",
        );
    }
    format!("root ::= {}\n{rules}", root.join(" "))
}

/// A rule for free text with a visible character, without `stop` when given; returns its name.
fn text_rules(rules: &mut String, slot: usize, stop: Option<char>) -> String {
    let ws: String = [' ', '\t', '\n', '\r']
        .into_iter()
        .filter(|w| Some(*w) != stop)
        .map(class_char)
        .collect();
    let all_ws = " \\t\\n\\r";
    let rule = match stop {
        None => format!("[{ws}]* [^{all_ws}] [^\\x00]*"),
        Some(c) => {
            let c = class_char(c);
            format!("[{ws}]* [^{all_ws}{c}] [^{c}]*")
        }
    };
    let _ = writeln!(rules, "text{slot} ::= {rule}");
    format!("text{slot}")
}

/// A GBNF string literal.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A character inside a GBNF `[...]` class.
fn class_char(c: char) -> String {
    match c {
        ']' | '[' | '\\' | '^' | '-' => format!("\\{c}"),
        '\n' => "\\n".into(),
        '\r' => "\\r".into(),
        '\t' => "\\t".into(),
        c => c.to_string(),
    }
}

fn choice(options: impl Iterator<Item = String>) -> String {
    format!("({})", options.collect::<Vec<_>>().join(" | "))
}

fn range(lo: i64, hi: i64) -> String {
    let mut values: Vec<String> = (lo..=hi).map(|n| literal(&n.to_string())).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    choice(values.into_iter())
}
