//! JudgerBenchV2's verdict: `{"analysis": ..., "winner": "A"}` or `{"分析": ..., "胜者": "A"}`.
//!
//! Read exactly as the reference evaluator (OpenCompass `Judgerbenchv2Evaluator`) reads it, so
//! benchmark numbers match: the pattern `"?winner"?\s*:\s*"([A-Z])"` (`胜者` for Chinese
//! items), case-sensitive, one uppercase letter in double quotes, and the LAST match counts,
//! even after earlier different ones. `"Winner"`, `"a"`, `"Model A"` and single quotes give
//! no verdict. A letter other than A or B is `OutOfScale`: the benchmark counts it as a
//! wrong answer, not as a missing one.

use super::ParseError;
use crate::verdict::Verdict;
use regex::Regex;
use std::sync::LazyLock;

pub(super) const LOOKED_FOR: &str =
    "a JudgerBenchV2 \"winner\": \"A\" or \"胜者\": \"A\" (one uppercase letter in double quotes)";

static WINNER_EN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""?winner"?\s*:\s*"([A-Z])""#).expect("the winner pattern is a valid regex")
});
static WINNER_CN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""?胜者"?\s*:\s*"([A-Z])""#).expect("the 胜者 pattern is a valid regex")
});
/// What a judge may have meant as a winner but the reference does not read; named in the
/// error so the user sees why the verdict was dropped.
static NEAR_MISS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)["']?(?:winner|胜者)["']?\s*[:：]\s*["']?[^"'\n,}]{0,20}["']?"#)
        .expect("the near-miss pattern is a valid regex")
});

/// Reads a JudgerBenchV2 verdict the way the reference evaluator does for an item in the
/// given language (`chinese`: the item's `lan` is `cn` or `zh`, so the key is `胜者`).
pub fn parse_judgerbench(text: &str, chinese: bool) -> Result<Verdict, ParseError> {
    let (pattern, key) = if chinese {
        (&*WINNER_CN, "胜者")
    } else {
        (&*WINNER_EN, "winner")
    };
    match pattern.captures_iter(text).last() {
        Some(c) => match &c[1] {
            "A" => Ok(Verdict::A),
            "B" => Ok(Verdict::B),
            other => Err(ParseError::OutOfScale(other.to_string())),
        },
        None => Err(ParseError::NotFound(not_found(
            text,
            &format!("a JudgerBenchV2 \"{key}\": \"A\" or \"{key}\": \"B\""),
        ))),
    }
}

fn not_found(text: &str, looked_for: &str) -> String {
    let mut message = format!("looked for {looked_for}");
    if let Some(m) = NEAR_MISS.find(text) {
        message.push_str(&format!(
            "; found {:?}, but the benchmark reads only the lowercase key with one uppercase \
             letter in double quotes",
            m.as_str()
        ));
    }
    message
}

/// A JudgerBenchV2 answer's keys, to recognise one that lacks a readable winner.
static KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"["'](?:analysis|分析)["']\s*:"#).expect("the key pattern is a valid regex")
});

/// Whether the text is a JudgerBenchV2 answer, with or without a readable winner.
pub(super) fn started(text: &str) -> bool {
    KEY.is_match(text) || NEAR_MISS.is_match(text)
}

/// Reads either language: the English key first, then the Chinese one.
pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    match parse_judgerbench(text, false) {
        Err(ParseError::NotFound(_)) => match parse_judgerbench(text, true) {
            Err(ParseError::NotFound(_)) => Err(ParseError::NotFound(not_found(text, LOOKED_FOR))),
            other => other,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_and_chinese_records() {
        let en = "```json\n{\n  \"analysis\": \"Response B cites the right year; A guesses.\",\n  \
                  \"winner\": \"B\"\n}\n```";
        assert_eq!(parse_judgerbench(en, false), Ok(Verdict::B));
        let cn = "{\"分析\": \"回答A更准确，B遗漏了关键步骤。\", \"胜者\": \"A\"}";
        assert_eq!(parse_judgerbench(cn, true), Ok(Verdict::A));
        // The language decides the key, as in the reference.
        assert!(matches!(
            parse_judgerbench(cn, false),
            Err(ParseError::NotFound(_))
        ));
        assert!(matches!(
            parse_judgerbench(en, true),
            Err(ParseError::NotFound(_))
        ));
        assert_eq!(read(en), Ok(Verdict::B));
        assert_eq!(read(cn), Ok(Verdict::A));
    }

    #[test]
    fn the_last_match_counts() {
        let text =
            r#"{"winner": "A"} Wait, I misread B's code. {"analysis": "...", "winner": "B"}"#;
        assert_eq!(parse_judgerbench(text, false), Ok(Verdict::B));
        let text = r#"{"winner": "B", "winner": "C"}"#;
        assert_eq!(
            parse_judgerbench(text, false),
            Err(ParseError::OutOfScale("C".into()))
        );
    }

    #[test]
    fn the_reference_pattern_is_loose_about_key_quotes_and_spacing() {
        for text in [
            r#"winner: "A""#,
            r#""winner"  :"A""#,
            "\"winner\":\n\t\"A\"",
            r#"{"final_winner": "A"}"#,
            r#"{"analysis": "...", "winner": "A",}"#,
        ] {
            assert_eq!(parse_judgerbench(text, false), Ok(Verdict::A), "{text}");
        }
        assert_eq!(parse_judgerbench("胜者: \"B\"", true), Ok(Verdict::B));
    }

    #[test]
    fn what_the_reference_rejects_gives_no_verdict() {
        for text in [
            r#"{"Winner": "A"}"#,
            r#"{"winner": "a"}"#,
            r#"{"winner": "Model A"}"#,
            r#"{'winner': 'A'}"#,
            r#"{"winner": " A"}"#,
            r#"{"winner": "AB"}"#,
            r#"{"winner": A}"#,
            "The winner is A.",
            "",
        ] {
            let err = parse_judgerbench(text, false).expect_err(text);
            assert!(matches!(err, ParseError::NotFound(_)), "{text}: {err}");
        }
    }

    #[test]
    fn near_misses_are_named_in_the_message() {
        let err = parse_judgerbench(r#"{"Winner": "A"}"#, false).expect_err("capitalised");
        assert!(err.to_string().contains("Winner"), "{err}");
        let err = read(r#"{"winner": "Model B"}"#).expect_err("not a letter");
        assert!(err.to_string().contains("Model B"), "{err}");
    }

    #[test]
    fn other_letters_are_out_of_scale() {
        assert_eq!(
            parse_judgerbench(r#"{"winner": "C"}"#, false),
            Err(ParseError::OutOfScale("C".into()))
        );
        assert_eq!(
            read(r#"{"胜者": "T"}"#),
            Err(ParseError::OutOfScale("T".into()))
        );
    }

    #[test]
    fn a_started_answer_is_recognised_without_its_winner() {
        assert!(started("{\"analysis\": \"Model A is better because"));
        assert!(started("{\"分析\": \"回答A更好"));
        assert!(started("{\"Winner\": \"A\"}"));
        assert!(!started("Model A is better."));
    }

    #[test]
    fn read_prefers_the_english_key() {
        let text = r#"{"winner": "A", "胜者": "B"}"#;
        assert_eq!(read(text), Ok(Verdict::A));
    }
}
