//! A result marker followed by the letter of the better response: Prometheus-2's relative
//! grading (`Feedback: ... [RESULT] A`) and Atla Selene's pairwise template
//! (`**Reasoning:** ... **Result:** B`).
//!
//! The markers are the ones Prometheus's own parser accepts (`[RESULT]`, `[RESULT:`,
//! `[Result]`, `[Result:`, `Result:` at the start of a line, case-insensitive) plus Selene's
//! `**Result:**`, each followed by optional spaces, quotes or brackets and then `A` or `B` as a
//! word. Prometheus's parser takes the first marker; Arbiter reads every one and, as for
//! bracket labels, reports `Conflicting` when two name different responses (a judge that
//! recites the format, `[RESULT] (Either "A" or "B")`, names no single letter and is skipped).

use super::ParseError;
use crate::verdict::Verdict;
use regex::Regex;
use std::sync::LazyLock;

pub(super) const LOOKED_FOR: &str =
    "a result marker with the better response: [RESULT] A (Prometheus-2) or **Result:** B (Selene)";

static RESULT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?im)(?:\[RESULT\]|\[RESULT:|\*\*RESULT:?\*\*:?|^[ \t]*RESULT:)[ \t]*["'(\[]?[ \t]*([AB])(?:\b|$)"#,
    )
    .expect("the result pattern is a valid regex")
});

/// Reads the letter after the result markers.
pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    let mut letters: Vec<String> = Vec::new();
    for c in RESULT.captures_iter(text) {
        let letter = c[1].to_ascii_uppercase();
        if !letters.contains(&letter) {
            letters.push(letter);
        }
    }
    match letters.as_slice() {
        [] => Err(ParseError::NotFound(format!("looked for {LOOKED_FOR}"))),
        [one] if one == "A" => Ok(Verdict::A),
        [_] => Ok(Verdict::B),
        _ => Err(ParseError::Conflicting(
            "result markers name both responses: [RESULT] A, [RESULT] B".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_selene_results() {
        let cases = [
            (
                "Feedback: B cites the statute, A does not. [RESULT] B",
                Verdict::B,
            ),
            (
                "Feedback: both are close; A is tighter.\n[RESULT] A",
                Verdict::A,
            ),
            ("Response A is more precise. [RESULT: A]", Verdict::A),
            ("[Result] B", Verdict::B),
            ("Some feedback.\nResult: A", Verdict::A),
            (
                "**Reasoning:** B follows the rubric.\n\n**Result:** B",
                Verdict::B,
            ),
            ("**Reasoning:** fine.\n\n**Result:** \"A\"", Verdict::A),
            ("[RESULT] a", Verdict::A),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_recited_format_names_no_letter_and_two_letters_conflict() {
        let recited = "The format is \"Feedback: (feedback) [RESULT] (Either \"A\" or \"B\")\".\n\
                       Feedback: B is right. [RESULT] B";
        assert_eq!(read(recited), Ok(Verdict::B));
        assert!(matches!(
            read("[RESULT] A\n...on reflection [RESULT] B"),
            Err(ParseError::Conflicting(_))
        ));
    }

    #[test]
    fn near_misses_give_no_verdict() {
        for text in [
            "",
            "The result is A",
            "[RESULT] C",
            "RESULTS: A",
            "[RESULT] Alpha",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::NotFound(_))),
                "{text:?}"
            );
        }
    }
}
