use super::*;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use std::sync::LazyLock;

const CJ2: &str = r#"{"User's Demand": text, "Strengths of Model A": text, "Weaknesses of Model A": text, "Strengths of Model B": text, "Weaknesses of Model B": text, "Reasoning": text, "Choice": "Model A" | "Model B"}"#;
const BRACKETS: &str = r#"text ("[[A]]" | "[[B]]" | "[[C]]")"#;

/// A vocabulary of one token per byte (llguidance's test tokenizer): a text is accepted when
/// its bytes are, whatever a real tokenizer would make of them.
static BYTES: LazyLock<ParserFactory> = LazyLock::new(|| {
    let mut f = ParserFactory::new_simple(&toktrie::ApproximateTokEnv::single_byte_env())
        .expect("the byte vocabulary builds");
    f.quiet();
    f
});

fn matcher(lark: &str) -> Matcher {
    let parser = BYTES
        .create_parser(TopLevelGrammar::from_lark(lark.to_string()))
        .unwrap_or_else(|e| panic!("{e}\n{lark}"));
    Matcher::new(Ok(parser))
}

/// Whether the grammar accepts `answer` whole (and may end after it).
fn accepts(lark: &str, answer: &str) -> bool {
    let mut m = matcher(lark);
    let tokens: Vec<u32> = answer.bytes().map(u32::from).collect();
    m.validate_tokens(&tokens).expect("validates") == tokens.len()
        && m.consume_tokens(&tokens).is_ok()
        && m.is_accepting().expect("state")
}

fn unbounded(g: &AnswerGrammar) -> String {
    g.to_lark(&TextBudgets::default())
}

#[test]
fn declarations_are_read() {
    let g = AnswerGrammar::parse(CJ2).expect("valid");
    assert_eq!(g.text_slots(), 6);
    let members = g.as_object().expect("one object");
    assert_eq!(members.len(), 7);
    assert_eq!(members[0].key, "User's Demand");
    assert_eq!(
        members[6].value,
        Value::Choice(vec!["Model A".into(), "Model B".into()])
    );
    let g = AnswerGrammar::parse(r#"text "[[" 1..10 "]]""#).expect("valid");
    assert_eq!(
        g.items(),
        &[
            Item::Text,
            Item::Literal("[[".into()),
            Item::Range(1, 10),
            Item::Literal("]]".into())
        ]
    );
    assert!(g.as_object().is_none());
    assert_eq!(g.fixed_parts(), vec!["[[", "10", "]]"]);
}

#[test]
fn mistakes_are_named() {
    for (text, says) in [
        ("", "empty"),
        ("text text", "in a row"),
        ("text 1..10", "followed by fixed text"),
        ("words", "unknown word"),
        (r#"("a" | "a")"#, "twice"),
        (r#"{"k": text, "k": text}"#, "twice"),
        ("5..1", "empty"),
        ("1..5000", "too wide"),
        (r#""open"#, "not closed"),
        (r#"{"k" text}"#, "`:`"),
        (r#"{"k": maybe}"#, "must be text"),
        (r#""""#, "empty string"),
    ] {
        let e = AnswerGrammar::parse(text).expect_err(text).to_string();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}

proptest::proptest! {
    #[test]
    fn parsing_any_declaration_never_panics(text in r#"(text|"[^"]{0,4}"|\(|\)|\||\{|\}|:|,|[0-9]{1,3}\.\.[0-9]{1,3}| ){0,12}"#) {
        if let Ok(g) = AnswerGrammar::parse(&text) {
            let _ = g.to_gbnf();
            let _ = g.to_json_schema();
            let _ = g.fixed_parts();
            let _ = unbounded(&g);
        }
    }
}

#[test]
fn the_cj2_answer_is_its_seven_keys_in_order_with_a_choice() {
    let lark = unbounded(&AnswerGrammar::parse(CJ2).expect("valid"));
    let good = r#"{"User's Demand": "Reverse a list.", "Strengths of Model A": "Correct; says \"why\".", "Weaknesses of Model A": "None.", "Strengths of Model B": "Short.", "Weaknesses of Model B": "Off by one.", "Reasoning": "A is right, B is not.", "Choice": "Model A"}"#;
    assert!(accepts(&lark, good), "{lark}");
    for bad in [
        // a blank field
        good.replace(r#""None.""#, r#""""#),
        good.replace(r#""None.""#, r#"" None.""#),
        // a verdict out of scale
        good.replace("Model A\"}", "Tie\"}"),
        // keys out of order
        good.replace("Strengths of Model A", "Weaknesses of Model A"),
        // a raw line break inside a string
        good.replace("Short.", "Short.\nVery."),
        // not closed
        good.trim_end_matches('}').to_string(),
    ] {
        assert!(!accepts(&lark, &bad), "{bad}");
    }
}

#[test]
fn a_label_ends_the_text_at_its_first_occurrence() {
    let lark = unbounded(&AnswerGrammar::parse(BRACKETS).expect("valid"));
    assert!(accepts(&lark, "A fixes the bug; B does not.\n\n[[A]]"));
    assert!(accepts(&lark, "Both are fine [[C]]"));
    assert!(!accepts(&lark, "[[A]]"), "the explanation comes first");
    assert!(!accepts(&lark, "No verdict at all."));
    assert!(!accepts(&lark, "Close call [[D]]"));
    assert!(
        !accepts(&lark, "I said [[A]] but then [[B]]"),
        "the first label is the verdict"
    );
    let arena = AnswerGrammar::parse(
        r#"text ("[[A>>B]]" | "[[A>B]]" | "[[A=B]]" | "[[B>A]]" | "[[B>>A]]")"#,
    )
    .expect("valid");
    assert!(accepts(
        &unbounded(&arena),
        "My answer: 42.\nFinal verdict: [[B>A]]"
    ));
    let rating = AnswerGrammar::parse(r#"text "[[" 1..10 "]]""#).expect("valid");
    let lark = unbounded(&rating);
    assert!(accepts(&lark, "Mostly right. Rating: [[10]]"));
    assert!(accepts(&lark, "Mostly right. Rating: [[7]]"));
    assert!(!accepts(&lark, "Rating: [[11]]"));
    assert!(!accepts(&lark, "Rating: [[0]]"));
    let sections =
        AnswerGrammar::parse(r#""Strengths:" text "\nWeaknesses:" text "\nSuggestions:" text"#)
            .expect("valid");
    let lark = unbounded(&sections);
    assert!(accepts(
        &lark,
        "Strengths: clear.\nWeaknesses: no tests.\nSuggestions: add some."
    ));
    assert!(!accepts(&lark, "Strengths: clear.\nSuggestions: add some."));
    // The label starts at the first `[`: a bracket in the explanation ends it.
    let lark = unbounded(&AnswerGrammar::parse(BRACKETS).expect("valid"));
    assert!(!accepts(&lark, "Use a[i] here. [[A]]"));
    assert!(accepts(&lark, "Use a(i) here.\n[[B]]"));
}

#[test]
fn budgets_are_written_per_text() {
    let g = AnswerGrammar::parse(BRACKETS).expect("valid");
    let lark = g.to_lark(&TextBudgets(Some(vec![40])));
    assert!(lark.contains("text0[max_tokens=40]: TEXT0"), "{lark}");
    // With a budget of 5 one-byte tokens, the text ends after them and the label must follow.
    let lark = g.to_lark(&TextBudgets(Some(vec![5])));
    let mut m = matcher(&lark);
    let consumed = "Good answer"
        .bytes()
        .take_while(|b| m.consume_token(u32::from(*b)).is_ok())
        .count();
    assert_eq!(consumed, 5, "{lark}");
    let mut m = matcher(&lark);
    for b in "Good [[B]]".bytes() {
        m.consume_token(u32::from(b))
            .expect("the label follows the budget");
    }
    assert!(m.is_accepting().expect("state"));
}

#[test]
fn the_json_schema_requires_every_key_and_nothing_else() {
    let schema = AnswerGrammar::parse(CJ2)
        .expect("valid")
        .to_json_schema()
        .expect("an object");
    assert_eq!(schema["required"].as_array().map(Vec::len), Some(7));
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["Choice"]["enum"],
        serde_json::json!(["Model A", "Model B"])
    );
    let score = AnswerGrammar::parse(r#"{"score": 1..10}"#)
        .expect("valid")
        .to_json_schema()
        .expect("an object");
    assert_eq!(score["properties"]["score"]["maximum"], 10);
    assert!(AnswerGrammar::parse(BRACKETS)
        .expect("valid")
        .to_json_schema()
        .is_none());
}

#[test]
fn gbnf_has_a_rule_for_everything_it_uses() {
    for text in [
        CJ2,
        BRACKETS,
        r#"text "[[" 1..10 "]]""#,
        r#""Strengths:" text "\nWeaknesses:" text "\nSuggestions:" text"#,
        r#"text "abab" "!""#,
    ] {
        let gbnf = AnswerGrammar::parse(text).expect("valid").to_gbnf();
        assert!(gbnf.starts_with("root ::= "), "{gbnf}");
        let defined: Vec<&str> = gbnf
            .lines()
            .filter_map(|l| l.split_once(" ::= ").map(|(name, _)| name))
            .collect();
        // Every rule name used on a right-hand side (outside quotes and classes) is defined.
        for line in gbnf.lines() {
            let rhs = line.split_once(" ::= ").map_or("", |(_, r)| r);
            for word in names_outside_literals(rhs) {
                assert!(defined.contains(&word.as_str()), "{word} in {gbnf}");
            }
        }
    }
}

fn names_outside_literals(rhs: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = rhs.chars().peekable();
    let mut word = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '[' => {
                while let Some(d) = chars.next() {
                    match d {
                        '\\' => {
                            chars.next();
                        }
                        ']' => break,
                        _ => {}
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
            _ => {
                if !word.is_empty() {
                    names.push(std::mem::take(&mut word));
                }
            }
        }
    }
    if !word.is_empty() {
        names.push(word);
    }
    names
}
