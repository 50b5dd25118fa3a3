//! `[[A]]` / `[[B]]` / `[[C]]` (tie): the CompassJudger-1 and MT-Bench pairwise format.
//!
//! FastChat's MT-Bench rule is followed: `[[A]]` anywhere means A, else `[[B]]` means B, else
//! `[[C]]` means a tie; so `[[C]]` beside `[[A]]` is A. Where FastChat would silently pick A
//! because both `[[A]]` and `[[B]]` appear (an echoed instruction, a changed mind), Arbiter
//! reports `Conflicting` instead. Tags are case-sensitive, as in FastChat; spaces inside
//! (`[[ A ]]`) are allowed.

use super::tags;
use super::ParseError;
use crate::verdict::Verdict;

pub(super) const LOOKED_FOR: &str = "a bracketed verdict [[A]], [[B]] or [[C]] (tie)";

pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    let found = tags::distinct(tags::contents(text).filter(|t| {
        let mut chars = t.chars();
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_uppercase())
    }));
    let has = |l: &str| found.iter().any(|t| t == l);
    if has("A") && has("B") {
        return Err(ParseError::Conflicting(
            "both [[A]] and [[B]] appear in the output".into(),
        ));
    }
    if has("A") {
        return Ok(Verdict::A);
    }
    if has("B") {
        return Ok(Verdict::B);
    }
    if has("C") {
        return Ok(Verdict::TIE);
    }
    // Only other letters, such as [[D]]: the judge used the format with a label it was not given.
    match found.into_iter().next() {
        Some(letter) => Err(ParseError::OutOfScale(letter)),
        None => Err(ParseError::NotFound(format!("looked for {LOOKED_FOR}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt_bench_style_endings() {
        let cases = [
            (
                "Assistant A answers the question directly and cites the correct statute, \
                 while Assistant B drifts into an unrelated anecdote.\n\n[[A]]",
                Verdict::A,
            ),
            (
                "After comparing both, I find B's code handles the empty list.\n\
                 Final verdict: [[B]]",
                Verdict::B,
            ),
            (
                "Both answers are equally correct and equally terse. [[C]]",
                Verdict::TIE,
            ),
            ("**Verdict:** [[ B ]]\n", Verdict::B),
            ("判断：助手B的回答更完整。\n[[B]]", Verdict::B),
            ("[[A]] [[A]] — I repeat, [[A]]", Verdict::A),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn fastchat_priority_for_the_tie_tag() {
        assert_eq!(read("Not quite [[C]]; I pick [[A]]."), Ok(Verdict::A));
        assert_eq!(read("[[C]] would be unfair; [[B]]"), Ok(Verdict::B));
    }

    #[test]
    fn a_and_b_together_conflict() {
        let text = "Output [[A]] if A is better, [[B]] if B is better.\nI choose [[B]].";
        assert!(matches!(read(text), Err(ParseError::Conflicting(_))));
        assert!(matches!(
            read("[[B]] ... [[A]] [[C]]"),
            Err(ParseError::Conflicting(_))
        ));
    }

    #[test]
    fn other_letters_are_out_of_scale() {
        assert_eq!(read("[[D]]"), Err(ParseError::OutOfScale("D".into())));
    }

    #[test]
    fn near_misses_give_no_verdict() {
        for text in [
            "",
            "[A]",
            "[[a]]",
            "[[A>B]]",
            "[[Model A]]",
            "A is better",
            "[[A]",
            "[[\nA]]",
            "[[8]]",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::NotFound(_))),
                "{text:?}"
            );
        }
    }
}
