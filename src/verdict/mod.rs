//! Verdicts: which of two responses a judge (or a person) preferred, and how strongly.
//!
//! `Verdict` is the one type every other module speaks; `parse` reads a verdict out of any
//! judge's free text (see `parse.rs`) and says when it cannot find one instead of guessing.

mod pair;
mod parse;

pub use pair::{Consistency, Order, Orders, PairedVerdict};
pub use parse::{
    parse, parse_as, parse_judgerbench, JudgeReading, OutputFormat, ParseError, Reading, Rule,
};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The side a verdict favours, with strengths collapsed: what consensus and accuracy count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Outcome {
    A,
    B,
    #[serde(rename = "tie", alias = "Tie")]
    Tie,
}

impl Outcome {
    /// The same preference seen with the two responses shown in the other order.
    pub fn swapped(self) -> Outcome {
        match self {
            Outcome::A => Outcome::B,
            Outcome::B => Outcome::A,
            Outcome::Tie => Outcome::Tie,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::A => "A",
            Outcome::B => "B",
            Outcome::Tie => "tie",
        }
    }

    pub const ALL: [Outcome; 3] = [Outcome::A, Outcome::B, Outcome::Tie];
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How strongly a verdict prefers its side. `Plain` is a verdict that states no strength
/// (`[[A]]`, `"Choice": "Model A"`); the ArenaHard labels give `Slight` (`A>B`) or `Strong` (`A>>B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Strength {
    Plain,
    Slight,
    Strong,
}

/// A pairwise verdict: an outcome and its strength. A tie has strength `Plain`, except the
/// ArenaHard `A=B`, which is the same tie written in the five-way scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Verdict {
    pub outcome: Outcome,
    pub strength: Strength,
}

impl Verdict {
    pub const A: Verdict = Verdict::plain(Outcome::A);
    pub const B: Verdict = Verdict::plain(Outcome::B);
    pub const TIE: Verdict = Verdict::plain(Outcome::Tie);

    pub const fn plain(outcome: Outcome) -> Verdict {
        Verdict {
            outcome,
            strength: Strength::Plain,
        }
    }

    pub const fn new(outcome: Outcome, strength: Strength) -> Verdict {
        Verdict { outcome, strength }
    }

    /// The verdict as it reads with the responses in the other order (A>>B becomes B>>A).
    pub fn swapped(self) -> Verdict {
        Verdict {
            outcome: self.outcome.swapped(),
            strength: self.strength,
        }
    }

    /// The canonical label, the one `FromStr` reads back: `A`, `B`, `tie`, `A>>B`, `A>B`,
    /// `A=B`, `B>A`, `B>>A`.
    pub fn label(self) -> &'static str {
        match (self.outcome, self.strength) {
            (Outcome::A, Strength::Plain) => "A",
            (Outcome::A, Strength::Slight) => "A>B",
            (Outcome::A, Strength::Strong) => "A>>B",
            (Outcome::B, Strength::Plain) => "B",
            (Outcome::B, Strength::Slight) => "B>A",
            (Outcome::B, Strength::Strong) => "B>>A",
            (Outcome::Tie, Strength::Plain) => "tie",
            (Outcome::Tie, _) => "A=B",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A verdict label that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict label {label:?}: expected one of A, B, tie, A>>B, A>B, A=B, B>A, B>>A")]
pub struct UnknownLabel {
    pub label: String,
}

impl FromStr for Verdict {
    type Err = UnknownLabel;

    /// Reads the labels people and files use for a verdict. Case-insensitive for the words;
    /// accepts the spellings datasets use in the wild (`model_a`, `tie (bothbad)`, `[[A>B]]`).
    fn from_str(s: &str) -> Result<Verdict, UnknownLabel> {
        let t = s.trim();
        let t = t
            .strip_prefix("[[")
            .and_then(|x| x.strip_suffix("]]"))
            .unwrap_or(t)
            .trim();
        let lower = t.to_ascii_lowercase();
        let v = match lower.as_str() {
            "a" | "model_a" | "model a" | "1" => Verdict::A,
            "b" | "model_b" | "model b" | "2" => Verdict::B,
            "tie" | "c" | "draw" | "tie (bothbad)" | "tie(bothbad)" | "both_bad" | "bothbad"
            | "3" => Verdict::TIE,
            "a>>b" => Verdict::new(Outcome::A, Strength::Strong),
            "a>b" => Verdict::new(Outcome::A, Strength::Slight),
            "a=b" | "b=a" => Verdict::new(Outcome::Tie, Strength::Slight),
            "b>a" => Verdict::new(Outcome::B, Strength::Slight),
            "b>>a" => Verdict::new(Outcome::B, Strength::Strong),
            "a<b" => Verdict::new(Outcome::B, Strength::Slight),
            "a<<b" => Verdict::new(Outcome::B, Strength::Strong),
            _ => {
                return Err(UnknownLabel {
                    label: s.to_string(),
                })
            }
        };
        Ok(v)
    }
}

impl From<Verdict> for String {
    fn from(v: Verdict) -> String {
        v.label().to_string()
    }
}

impl TryFrom<String> for Verdict {
    type Error = UnknownLabel;
    fn try_from(s: String) -> Result<Verdict, UnknownLabel> {
        s.parse()
    }
}

impl From<Outcome> for Verdict {
    fn from(o: Outcome) -> Verdict {
        Verdict::plain(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        for label in ["A", "B", "tie", "A>>B", "A>B", "A=B", "B>A", "B>>A"] {
            let v: Verdict = label.parse().expect("canonical label parses");
            assert_eq!(v.label(), label);
        }
    }

    #[test]
    fn swapping_twice_is_identity_and_flips_sides() {
        let v: Verdict = "A>>B".parse().expect("label");
        assert_eq!(v.swapped().label(), "B>>A");
        assert_eq!(v.swapped().swapped(), v);
        assert_eq!(Verdict::TIE.swapped(), Verdict::TIE);
    }

    #[test]
    fn unknown_labels_are_errors() {
        for bad in ["", "AB", "maybe", "A>>>B", "[[D]]"] {
            assert!(bad.parse::<Verdict>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn serde_uses_labels() {
        let v: Verdict = serde_json::from_str("\"B>A\"").expect("json label");
        assert_eq!(v, Verdict::new(Outcome::B, Strength::Slight));
        assert_eq!(
            serde_json::to_string(&Verdict::TIE).expect("serialise"),
            "\"tie\""
        );
        assert!(serde_json::from_str::<Verdict>("\"nope\"").is_err());
    }
}
