//! The template text language: `{name}` placeholders, `{#name}...{/name}` sections and
//! `{{` / `}}` escapes, parsed once into a small tree and rendered from a map of values.
//!
//! The rules, chosen so that judge prompts can show JSON examples without escaping:
//! - `{name}` with `name` made only of `a-z` and `_` is a placeholder; any other brace is
//!   literal, so `{"Choice": "Model A"}` and `{Choice}` render as written.
//! - `{{` renders `{` and `}}` renders `}` (write `{{question}}` to show a literal
//!   `{question}`; a literal `}}`, as in nested JSON, is written `}}}}`).
//! - `{#name}...{/name}` is a section: its contents render only when `name` has a non-empty
//!   value, so an optional part of a prompt (the earlier conversation) disappears cleanly.
//!   Sections nest. A section tag alone on its line takes its line break with it, so tag
//!   lines leave no blank lines behind.
//! - Values are inserted as they are, never scanned again: an answer that contains
//!   `{question}` stays literal.

use std::collections::{BTreeSet, HashMap};

/// A problem in a template's text, or a value it needs and was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("line {line}: section {{#{name}}} is never closed; add {{/{name}}} where it ends")]
    Unclosed { name: String, line: usize },
    #[error("line {line}: {{/{found}}} closes a section that is not open{}", expected_hint(.expected))]
    Mismatched {
        found: String,
        expected: Option<String>,
        line: usize,
    },
    #[error("no value for placeholder {{{placeholder}}}")]
    Missing { placeholder: String },
}

fn expected_hint(expected: &Option<String>) -> String {
    match expected {
        Some(name) => format!(" (the open section is {{#{name}}}: close it first)"),
        None => String::new(),
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Text(String),
    Placeholder(String),
    Section { name: String, body: Vec<Node> },
}

/// A template body parsed into its pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Body {
    nodes: Vec<Node>,
}

/// What a `{` at some position starts.
enum Tag<'a> {
    Placeholder(&'a str),
    Open(&'a str),
    Close(&'a str),
}

/// Reads a tag at the start of `s` (which begins with `{`), returning it and its length.
fn read_tag(s: &str) -> Option<(Tag<'_>, usize)> {
    let inner = &s[1..];
    let (sigil, rest) = match inner.as_bytes().first()? {
        b'#' => (Some('#'), &inner[1..]),
        b'/' => (Some('/'), &inner[1..]),
        _ => (None, inner),
    };
    let len = rest
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
        .count();
    if len == 0 || rest.as_bytes().get(len) != Some(&b'}') {
        return None;
    }
    let name = &rest[..len];
    let total = 1 + sigil.map_or(0, |_| 1) + len + 1;
    let tag = match sigil {
        Some('#') => Tag::Open(name),
        Some(_) => Tag::Close(name),
        None => Tag::Placeholder(name),
    };
    Some((tag, total))
}

impl Body {
    pub(crate) fn parse(text: &str) -> Result<Body, TextError> {
        // Each open section keeps its name, the line it opened on and the nodes before it.
        let mut stack: Vec<(String, usize, Vec<Node>)> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut literal = String::new();
        let mut line = 1;
        let mut i = 0;
        let bytes = text.as_bytes();
        while i < text.len() {
            let rest = &text[i..];
            if rest.starts_with("{{") {
                literal.push('{');
                i += 2;
                continue;
            }
            if rest.starts_with("}}") {
                literal.push('}');
                i += 2;
                continue;
            }
            if rest.starts_with('{') {
                if let Some((tag, len)) = read_tag(rest) {
                    let mut end = i + len;
                    let at_line_start = i == 0 || bytes[i - 1] == b'\n';
                    // The line break after a standalone tag: `\n`, or `\r\n` in files
                    // written on Windows.
                    let line_break = |end: usize| match &bytes[end..] {
                        [b'\n', ..] => Some(1),
                        [b'\r', b'\n', ..] => Some(2),
                        _ => None,
                    };
                    match tag {
                        Tag::Placeholder(name) => {
                            flush(&mut literal, &mut nodes);
                            nodes.push(Node::Placeholder(name.to_string()));
                        }
                        Tag::Open(name) => {
                            flush(&mut literal, &mut nodes);
                            stack.push((name.to_string(), line, std::mem::take(&mut nodes)));
                            if let Some(len) = line_break(end).filter(|_| at_line_start) {
                                end += len;
                                line += 1;
                            }
                        }
                        Tag::Close(name) => {
                            flush(&mut literal, &mut nodes);
                            if let Some(len) = line_break(end).filter(|_| at_line_start) {
                                end += len;
                                line += 1;
                            }
                            match stack.pop() {
                                Some((open, _, outer)) if open == name => {
                                    let body = std::mem::replace(&mut nodes, outer);
                                    nodes.push(Node::Section { name: open, body });
                                }
                                other => {
                                    return Err(TextError::Mismatched {
                                        found: name.to_string(),
                                        expected: other.map(|(open, _, _)| open),
                                        line,
                                    })
                                }
                            }
                        }
                    }
                    i = end;
                    continue;
                }
            }
            let Some(c) = rest.chars().next() else { break };
            if c == '\n' {
                line += 1;
            }
            literal.push(c);
            i += c.len_utf8();
        }
        if let Some((name, line, _)) = stack.pop() {
            return Err(TextError::Unclosed { name, line });
        }
        flush(&mut literal, &mut nodes);
        Ok(Body { nodes })
    }

    /// Every name the body refers to, as a placeholder or a section, sorted.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        fn walk(nodes: &[Node], out: &mut BTreeSet<String>) {
            for n in nodes {
                match n {
                    Node::Text(_) => {}
                    Node::Placeholder(name) => {
                        out.insert(name.clone());
                    }
                    Node::Section { name, body } => {
                        out.insert(name.clone());
                        walk(body, out);
                    }
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.nodes, &mut out);
        out
    }

    /// Renders the body. `value` answers `None` for a name it cannot fill: that is an error
    /// for a placeholder that would be shown, and hides a section.
    pub(crate) fn render_with(
        &self,
        value: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<String, TextError> {
        let mut out = String::new();
        render_nodes(&self.nodes, value, &mut out)?;
        Ok(out)
    }
}

fn flush(literal: &mut String, nodes: &mut Vec<Node>) {
    if !literal.is_empty() {
        nodes.push(Node::Text(std::mem::take(literal)));
    }
}

fn render_nodes(
    nodes: &[Node],
    value: &mut dyn FnMut(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), TextError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Placeholder(name) => match value(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(TextError::Missing {
                        placeholder: name.clone(),
                    })
                }
            },
            Node::Section { name, body } => {
                if value(name).is_some_and(|v| !v.is_empty()) {
                    render_nodes(body, value, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Renders template text with the given values: the lower-level form of
/// [`Template::render`](super::Template::render), for callers that build their own values.
/// A placeholder without a value is an error naming it; a section without one is hidden.
pub fn render_text(template: &str, values: &HashMap<String, String>) -> Result<String, TextError> {
    Body::parse(template)?.render_with(&mut |name| values.get(name).cloned())
}

/// The placeholder and section names that template text uses, sorted.
pub fn placeholders(template: &str) -> Result<BTreeSet<String>, TextError> {
    Ok(Body::parse(template)?.names())
}

/// Escapes text so that it renders as itself: every brace is doubled.
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_and_json_stays_literal() {
        let out = render_text(
            "Q: {question}\nReply {\"Choice\": \"Model A\"} or {Choice} or {a-b} or {}.",
            &values(&[("question", "2+2?")]),
        )
        .expect("renders");
        assert_eq!(
            out,
            "Q: 2+2?\nReply {\"Choice\": \"Model A\"} or {Choice} or {a-b} or {}."
        );
    }

    #[test]
    fn doubled_braces_are_escapes() {
        let out = render_text(
            "{{question}} is {question}; }} {{",
            &values(&[("question", "x")]),
        )
        .expect("renders");
        assert_eq!(out, "{question} is x; } {");
    }

    #[test]
    fn missing_value_names_the_placeholder() {
        let err = render_text("A {answer_a} B {answer_b}", &values(&[("answer_a", "1")]))
            .expect_err("answer_b has no value");
        assert_eq!(
            err,
            TextError::Missing {
                placeholder: "answer_b".into()
            }
        );
        assert!(err.to_string().contains("{answer_b}"));
    }

    #[test]
    fn values_are_not_scanned_again() {
        let out = render_text(
            "{answer}",
            &values(&[("answer", "see {question} and {{x}}")]),
        )
        .expect("renders");
        assert_eq!(out, "see {question} and {{x}}");
    }

    #[test]
    fn sections_show_only_with_a_non_empty_value_and_tag_lines_vanish() {
        let text = "Intro\n\n{#history}\nHistory:\n{history}\n\n{/history}\nQuestion";
        let shown = render_text(text, &values(&[("history", "h1")])).expect("renders");
        assert_eq!(shown, "Intro\n\nHistory:\nh1\n\nQuestion");
        let empty = render_text(text, &values(&[("history", "")])).expect("renders");
        assert_eq!(empty, "Intro\n\nQuestion");
        // A hidden section does not need values for what it contains.
        let absent = render_text("a{#x}{y}{/x}b", &HashMap::new()).expect("renders");
        assert_eq!(absent, "ab");
    }

    #[test]
    fn tag_lines_vanish_with_windows_line_breaks_too() {
        let text = "a\r\n{#x}\r\nX\r\n{/x}\r\nb";
        assert_eq!(
            render_text(text, &values(&[("x", "1")])).expect("renders"),
            "a\r\nX\r\nb"
        );
        assert_eq!(
            render_text(text, &HashMap::new()).expect("renders"),
            "a\r\nb"
        );
    }

    #[test]
    fn inline_sections_keep_surrounding_text() {
        let out = render_text("a {#p}[{p}]{/p} b", &values(&[("p", "x")])).expect("renders");
        assert_eq!(out, "a [x] b");
    }

    #[test]
    fn nested_sections() {
        let text = "{#a}A{#b}B{b}{/b}{/a}";
        assert_eq!(
            render_text(text, &values(&[("a", "1"), ("b", "2")])).expect("renders"),
            "AB2"
        );
        assert_eq!(
            render_text(text, &values(&[("a", "1")])).expect("renders"),
            "A"
        );
    }

    #[test]
    fn unbalanced_sections_are_errors_with_lines() {
        assert_eq!(
            render_text("x\n{#a}\nno end", &HashMap::new()),
            Err(TextError::Unclosed {
                name: "a".into(),
                line: 2
            })
        );
        let err = render_text("{#a}{/b}", &HashMap::new()).expect_err("mismatch");
        assert!(matches!(err, TextError::Mismatched { ref found, .. } if found == "b"));
        assert!(render_text("text\n{/a}", &HashMap::new()).is_err());
    }

    #[test]
    fn names_lists_placeholders_and_sections() {
        let names =
            placeholders("{#conversation}{conversation}{/conversation}{question} {\"k\": 1}")
                .expect("parses");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            vec!["conversation".to_string(), "question".to_string()]
        );
    }

    proptest! {
        #[test]
        fn escaped_text_renders_as_itself(s in "\\PC*") {
            let out = render_text(&escape(&s), &HashMap::new());
            prop_assert_eq!(out, Ok(s));
        }

        #[test]
        fn parsing_never_panics(s in "[{}#/a-z_ \n\"]{0,40}") {
            let _ = render_text(&s, &HashMap::new());
        }

        #[test]
        fn text_without_braces_is_unchanged(s in "[^{}]*") {
            prop_assert_eq!(render_text(&s, &HashMap::new()), Ok(s));
        }
    }
}
