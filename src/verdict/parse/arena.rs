//! ArenaHard's five-way labels: `[[A>>B]]`, `[[A>B]]`, `[[A=B]]`, `[[B>A]]`, `[[B>>A]]`.
//!
//! As ArenaHard does, every tag made of `A`, `B`, `<`, `>`, `=` counts as a label (so a stray
//! `[[A]]` counts too), and an output with more than one distinct label gives no verdict
//! (`Conflicting`). Spaces inside a tag are ignored (`[[A >> B]]`). A single label outside
//! the five (`[[A>=B]]`, `[[A]]`) is `OutOfScale`. Labels are case-sensitive, as in ArenaHard.
//! One deliberate difference: `[[B=A]]` is read as the tie `A=B` (ArenaHard drops it as an
//! unknown label), so that reading a text with A and B exchanged gives the exchanged verdict.
//!
//! This is the rule of the ArenaHard (and JudgeBench) format, kept so that their numbers
//! reproduce; `Auto` reads labels by the review rule of `labels.rs` instead.

use super::tags;
use super::ParseError;
use crate::verdict::{Outcome, Strength, Verdict};

pub(super) const LOOKED_FOR: &str =
    "an ArenaHard label [[A>>B]], [[A>B]], [[A=B]], [[B>A]] or [[B>>A]]";

/// Reads the output of a judge asked for the five-way scale.
pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    decide(labels(text, |l| l.chars().all(|c| "AB<>=".contains(c))))
}

fn labels(text: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    tags::distinct(tags::contents(text).filter(|l| keep(l)).map(|l| {
        if l == "B=A" {
            "A=B".to_string()
        } else {
            l
        }
    }))
}

fn decide(labels: Vec<String>) -> Result<Verdict, ParseError> {
    match labels.as_slice() {
        [] => Err(ParseError::NotFound(format!("looked for {LOOKED_FOR}"))),
        [label] => five_way(label).ok_or_else(|| ParseError::OutOfScale(label.clone())),
        several => Err(ParseError::Conflicting(format!(
            "different ArenaHard labels appear: {}",
            tags::list(several)
        ))),
    }
}

/// The verdict of one of the five labels (`A=B` for a tie), `None` for any other.
pub(super) fn five_way(label: &str) -> Option<Verdict> {
    let (outcome, strength) = match label {
        "A>>B" => (Outcome::A, Strength::Strong),
        "A>B" => (Outcome::A, Strength::Slight),
        "A=B" => (Outcome::Tie, Strength::Slight),
        "B>A" => (Outcome::B, Strength::Slight),
        "B>>A" => (Outcome::B, Strength::Strong),
        _ => return None,
    };
    Some(Verdict::new(outcome, strength))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(label: &str) -> Verdict {
        label.parse().expect("a canonical label")
    }

    #[test]
    fn the_five_labels() {
        let cases = [
            (
                "My final verdict is Assistant A is significantly better: [[A>>B]]",
                "A>>B",
            ),
            (
                "My final verdict is Assistant A is slightly better: [[A>B]].",
                "A>B",
            ),
            ("My final verdict is tie: [[A=B]]", "A=B"),
            ("Final verdict: [[B>A]]", "B>A"),
            ("B is clearly better.\n\n**[[B>>A]]**", "B>>A"),
            ("Verdict: [[A >> B]]", "A>>B"),
            ("Verdict: [[ B > A ]]", "B>A"),
            ("结论：[[A=B]]", "A=B"),
        ];
        for (text, label) in cases {
            assert_eq!(read(text), Ok(v(label)), "{text}");
        }
    }

    #[test]
    fn strengths_map_onto_the_verdict_type() {
        assert_eq!(
            read("[[A>>B]]"),
            Ok(Verdict::new(Outcome::A, Strength::Strong))
        );
        assert_eq!(
            read("[[B>A]]"),
            Ok(Verdict::new(Outcome::B, Strength::Slight))
        );
        assert_eq!(read("[[A=B]]").map(|v| v.outcome), Ok(Outcome::Tie));
    }

    #[test]
    fn b_equals_a_is_the_same_tie() {
        assert_eq!(read("[[B=A]]"), Ok(v("A=B")));
        assert_eq!(
            read("[[A=B]] or, put the other way, [[B = A]]"),
            Ok(v("A=B"))
        );
    }

    #[test]
    fn a_repeated_label_is_one_label() {
        let text = "First impression [[A>B]]. After checking the maths again: [[A > B]]";
        assert_eq!(read(text), Ok(v("A>B")));
    }

    #[test]
    fn two_distinct_labels_give_no_verdict() {
        let text = "Initially [[A>B]], but on reflection [[B>A]].";
        let err = read(text).expect_err("two labels");
        assert!(matches!(err, ParseError::Conflicting(_)));
        assert!(err.to_string().contains("[[A>B]], [[B>A]]"), "{err}");
        // ArenaHard counts a plain [[A]] as a label too.
        assert!(matches!(
            read("[[A]] ... [[A>B]]"),
            Err(ParseError::Conflicting(_))
        ));
    }

    #[test]
    fn labels_outside_the_five_are_out_of_scale() {
        assert_eq!(read("[[A>=B]]"), Err(ParseError::OutOfScale("A>=B".into())));
        assert_eq!(read("[[A]]"), Err(ParseError::OutOfScale("A".into())));
        assert_eq!(read("[[A<B]]"), Err(ParseError::OutOfScale("A<B".into())));
    }

    #[test]
    fn near_misses_give_no_verdict() {
        for text in [
            "",
            "A>>B",
            "[A>B]",
            "[[a>b]]",
            "[[A>C]]",
            "[[7]]",
            "Assistant A is better",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::NotFound(_))),
                "{text:?}"
            );
        }
    }
}
