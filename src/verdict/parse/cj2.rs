//! CompassJudger-2's JSON verdict: `{"User's Demand": ..., ..., "Choice": "Model A"}`.
//!
//! Real outputs wrap the object in a ```json fence, put prose around it, use single quotes,
//! leave trailing commas, repeat the object, or stop right after the verdict. So this reader
//! does not parse JSON: it finds every `"Choice": "..."` member (key spelled exactly as the
//! model was trained, value in single or double quotes), which works the same in all those
//! cases, and then decides:
//! - the last `Choice` must be readable (`Model A`, `Model B`, `A`, `[[A]]`, `Response A`,
//!   any case; `Tie`/`Draw` or `[[C]]` for a tie); an earlier unreadable one (an echoed
//!   `"Model A|Model B"` placeholder) is skipped;
//! - every readable `Choice` must agree, else `Conflicting`.
//!
//! When no `Choice` is found, the error says whether the output looks cut off before it.

use super::ParseError;
use crate::verdict::Verdict;
use regex::Regex;
use std::sync::LazyLock;

pub(super) const LOOKED_FOR: &str = "a CompassJudger-2 \"Choice\": \"Model A\" or \"Model B\"";

/// The keys of CompassJudger-2's critical-thinking answer, in its order.
pub(super) const KEYS: [&str; 7] = [
    "User's Demand",
    "Strengths of Model A",
    "Weaknesses of Model A",
    "Strengths of Model B",
    "Weaknesses of Model B",
    "Reasoning",
    "Choice",
];

/// A `Choice` member. The key's opening quote must not be escaped: `\"Choice\"` inside a
/// string value is a quotation, not the verdict.
static CHOICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:^|[^\\])["']Choice["']\s*:\s*(?:"((?:[^"\\\n]|\\.){0,200})"|'([^'\n]{0,200})')"#,
    )
    .expect("the Choice pattern is a valid regex")
});
/// A `Choice` member whose value the output never finished.
static CUT_OFF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"["']Choice["']\s*(?::\s*(?:["'][^"'\n]*)?)?$"#)
        .expect("the cut-off pattern is a valid regex")
});
/// `Choice` spelled another way, to name it in the error.
static CHOICE_NEAR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)["'](?:final[ _])?choice["']\s*:\s*["']?[^"'\n,}]{0,20}["']?"#)
        .expect("the near-miss pattern is a valid regex")
});

pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    let choices: Vec<&str> = CHOICE
        .captures_iter(text)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str()))
        .collect();
    let Some(last) = choices.last() else {
        return Err(ParseError::NotFound(not_found(text)));
    };
    // The last Choice decides whether there is a verdict at all: the judge's final word.
    let decided = choice_value(last)?;
    let mut seen: Vec<(Verdict, &str)> = Vec::new();
    for raw in &choices {
        if let Ok(v) = choice_value(raw) {
            if !seen.iter().any(|(s, _)| *s == v) {
                seen.push((v, raw));
            }
        }
    }
    if seen.len() > 1 {
        let values: Vec<String> = seen.iter().map(|(_, raw)| format!("{raw:?}")).collect();
        return Err(ParseError::Conflicting(format!(
            "\"Choice\" is given as {}",
            values.join(" and as ")
        )));
    }
    Ok(decided)
}

/// Reads a `Choice` value.
fn choice_value(raw: &str) -> Result<Verdict, ParseError> {
    let trimmed = raw.trim();
    let unwrapped = trimmed
        .trim_matches(|c: char| "*[]()`".contains(c) || c.is_whitespace())
        .trim_end_matches('.')
        .trim();
    if trimmed.starts_with("[[") && unwrapped == "C" {
        return Ok(Verdict::TIE);
    }
    let compact: String = unwrapped
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .collect::<String>()
        .to_lowercase();
    let side = [
        "model",
        "response",
        "assistant",
        "answer",
        "output",
        "candidate",
    ]
    .iter()
    .find_map(|p| compact.strip_prefix(p))
    .unwrap_or(&compact);
    match side {
        "a" => return Ok(Verdict::A),
        "b" => return Ok(Verdict::B),
        "tie" | "draw" => return Ok(Verdict::TIE),
        _ => {}
    }
    let mut chars = side.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_ascii_alphabetic() {
            return Err(ParseError::OutOfScale(trimmed.to_string()));
        }
    }
    Err(ParseError::Unreadable(format!(
        "the last \"Choice\" is {trimmed:?}, which is neither \"Model A\" nor \"Model B\""
    )))
}

/// The CompassJudger-2 keys other than `Choice` that the text writes as quoted keys.
fn keys_present(text: &str) -> Vec<&'static str> {
    KEYS[..6]
        .iter()
        .copied()
        .filter(|k| text.contains(&format!("\"{k}\"")) || text.contains(&format!("'{k}'")))
        .collect()
}

/// Whether the text is a CompassJudger-2 answer, with or without its `Choice`.
pub(super) fn started(text: &str) -> bool {
    CUT_OFF.is_match(text.trim_end())
        || CHOICE_NEAR.is_match(text)
        || CHOICE.is_match(text)
        || !keys_present(text).is_empty()
}

fn not_found(text: &str) -> String {
    let mut message = format!("looked for {LOOKED_FOR}");
    if CUT_OFF.is_match(text.trim_end()) {
        message.push_str("; the output stops inside \"Choice\" (cut off by a token limit?)");
        return message;
    }
    if let Some(m) = CHOICE_NEAR.find(text) {
        message.push_str(&format!(
            "; found {:?}, but the key must be spelled \"Choice\" exactly",
            m.as_str()
        ));
        return message;
    }
    let present = keys_present(text);
    if !present.is_empty() {
        message.push_str(&format!(
            "; the output has CompassJudger-2 keys ({}) but no \"Choice\" (cut off before it?)",
            present.join(", ")
        ));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_B: &str = r#"```json
{
  "User's Demand": "The user wants a shell one-liner that counts unique IPs in access.log.",
  "Strengths of Model A": "Short and readable.",
  "Weaknesses of Model A": "Uses `uniq` without `sort`, so repeated IPs that are not adjacent are counted twice.",
  "Strengths of Model B": "Sorts before `uniq -c` and explains each stage of the pipe.",
  "Weaknesses of Model B": "Slightly verbose.",
  "Reasoning": "Model A's command gives a wrong count on real logs; Model B's is correct.",
  "Choice": "Model B"
}
```"#;

    #[test]
    fn a_full_fenced_answer() {
        assert_eq!(read(FULL_B), Ok(Verdict::B));
    }

    #[test]
    fn messy_real_looking_outputs() {
        let cases = [
            // Prose around the object.
            (
                "Let me compare them carefully.\n\n{\"Reasoning\": \"A is right\", \"Choice\": \
                 \"Model A\"}\n\nI hope this helps!",
                Verdict::A,
            ),
            // Single quotes, apostrophes inside values, trailing comma.
            (
                "{'User's Demand': 'Explain TCP's handshake', 'Reasoning': 'B's diagram is \
                 wrong', 'Choice': 'Model A',}",
                Verdict::A,
            ),
            // Cut off right after the verdict.
            (
                "{\"Reasoning\": \"B is complete\", \"Choice\": \"Model B\"",
                Verdict::B,
            ),
            ("{\"Choice\": \"Model B\",\n  \"Confid", Verdict::B),
            // Quick prompt.
            ("{\"Choice\": \"Model A\"}", Verdict::A),
            // Values the model was not trained on but that are unambiguous.
            ("{\"Choice\": \"A\"}", Verdict::A),
            ("{\"Choice\": \"[[B]]\"}", Verdict::B),
            ("{\"Choice\": \"model b\"}", Verdict::B),
            ("{\"Choice\": \"Response A\"}", Verdict::A),
            ("{\"Choice\": \"**Model B**\"}", Verdict::B),
            ("{\"Choice\": \"Model_A\"}", Verdict::A),
            ("{\"Choice\": \"Tie\"}", Verdict::TIE),
            ("{\"Choice\": \"[[C]]\"}", Verdict::TIE),
            // Chinese critique, English keys.
            (
                "{\"Reasoning\": \"模型B的解释更清楚，代码也能运行。\", \"Choice\": \"Model B\"}",
                Verdict::B,
            ),
            // Missing comma between members, spaces around the colon.
            (
                "{\"Reasoning\": \"A wins\"\n\"Choice\" :  \"Model A\"}",
                Verdict::A,
            ),
            // The object repeated with the same verdict.
            (
                "{\"Choice\": \"Model B\"}\nTo restate: {\"Choice\": \"Model B\"}",
                Verdict::B,
            ),
            // Escaped quotes inside values.
            (
                r#"{"Reasoning": "A says \"Choice\": \"Model B\" is wrong", "Choice": "Model A"}"#,
                Verdict::A,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn an_echoed_placeholder_before_the_answer_is_skipped() {
        let text = "The format is {\"Choice\": \"Model A|Model B\"}. My answer: \
                    {\"Choice\": \"Model B\"}";
        assert_eq!(read(text), Ok(Verdict::B));
    }

    #[test]
    fn different_choices_conflict() {
        let text = "{\"Choice\": \"Model A\"}\nOn second thought:\n{\"Choice\": \"Model B\"}";
        let err = read(text).expect_err("two choices");
        assert!(matches!(err, ParseError::Conflicting(_)));
        assert!(err.to_string().contains("\"Model A\""), "{err}");
        let same_object = "{\"Choice\": \"Model A\", \"Choice\": \"Model B\"}";
        assert!(matches!(read(same_object), Err(ParseError::Conflicting(_))));
    }

    #[test]
    fn an_unreadable_last_choice_is_an_error() {
        for value in ["Model A|Model B", "Both", "Neither", "", "A or B"] {
            let text = format!("{{\"Choice\": \"{value}\"}}");
            let err = read(&text).expect_err(&text);
            assert!(matches!(err, ParseError::Unreadable(_)), "{text}: {err}");
        }
        let text = "{\"Choice\": \"Model A\"} ... {\"Choice\": \"Both\"}";
        assert!(matches!(read(text), Err(ParseError::Unreadable(_))));
    }

    #[test]
    fn other_sides_are_out_of_scale() {
        assert_eq!(
            read("{\"Choice\": \"Model C\"}"),
            Err(ParseError::OutOfScale("Model C".into()))
        );
    }

    #[test]
    fn no_choice_says_why() {
        let cases = [
            (
                "{\"Reasoning\": \"B is better\", \"Choice\": \"Mod",
                "cut off",
            ),
            ("{\"Reasoning\": \"B is better\", \"Choice\":", "cut off"),
            ("{\"Reasoning\": \"B is better\", \"Cho", "no \"Choice\""),
            ("{\"choice\": \"Model A\"}", "exactly"),
            ("{\"Final Choice\": \"Model A\"}", "exactly"),
            ("Model A is better.", "\"Choice\""),
            ("{Choice: Model A}", "\"Choice\""),
        ];
        for (text, says) in cases {
            let err = read(text).expect_err(text);
            assert!(matches!(err, ParseError::NotFound(_)), "{text}: {err}");
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_started_answer_is_recognised_without_its_choice() {
        assert!(started("{\"Reasoning\": \"Model A is better because"));
        assert!(started("{'Strengths of Model B': 'short'"));
        assert!(started("{\"Choice\": \"Mo"));
        assert!(!started("Model A is better."));
        assert!(!started("{\"analysis\": \"x\"}"));
    }

    #[test]
    fn an_escaped_key_is_a_quotation() {
        let text = r#"{"Reasoning": "the format is \"Choice\": \"Model A\""}"#;
        assert!(matches!(read(text), Err(ParseError::NotFound(_))));
    }
}
