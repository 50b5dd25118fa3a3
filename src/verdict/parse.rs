//! Reading a verdict out of a judge's free text, for every output format Arbiter knows.
//!
//! Each format has its own reader in `parse/` and the same contract: a verdict when the text
//! states one clearly, `ParseError::NotFound` (saying what was looked for) when the text does
//! not use the format at all, and another `ParseError` when it uses the format but the verdict
//! cannot be trusted (two different verdicts, a label outside the scale, an unreadable value).
//! No reader ever picks one of two conflicting answers.
//!
//! `OutputFormat::Auto` runs the readers in a fixed order; see `auto.rs` for how it decides.

mod arena;
mod auto;
mod brackets;
mod cj2;
mod judgerbench;
mod labels;
mod pointwise;
mod prose;
mod result;
mod tags;

#[cfg(test)]
mod props;

pub use judgerbench::parse_judgerbench;
pub use labels::Rule;

use super::Verdict;
use serde::{Deserialize, Serialize};

/// The output format a judge was asked for; it selects how its text is read.
/// `Auto` tries every format and takes the one the text clearly uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    Auto,
    /// CompassJudger-2 JSON: `{"...": ..., "Choice": "Model A"}`.
    Cj2Json,
    /// `[[A]]`, `[[B]]`, `[[C]]` (tie): CompassJudger-1 / MT-Bench.
    Brackets,
    /// ArenaHard five-way labels `[[A>>B]]` ... `[[B>>A]]`.
    Arena5,
    /// JudgerBenchV2: `{"analysis": ..., "winner": "A"}` or `{"分析": ..., "胜者": "A"}`.
    JudgerBench,
    /// A 1-10 rating of one answer (`Rating: [[7]]`).
    Pointwise,
    /// A free-text critique of one answer: it carries no verdict, so reading one always fails.
    Critique,
    /// A pairwise verdict stated in the closing sentence of free text (`Model A is better.`,
    /// `Final verdict: Assistant B`, `模型A更好。`).
    Prose,
    /// A result marker and the better response's letter: Prometheus-2's `[RESULT] A`, Atla
    /// Selene's `**Result:** B`.
    #[serde(rename = "result")]
    ResultMarker,
}

/// What a judge's text says.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    Pairwise(Verdict),
    Score(f64),
}

impl Reading {
    /// The same reading with the two responses shown in the other order (a score is unchanged).
    pub fn swapped(self) -> Reading {
        match self {
            Reading::Pairwise(v) => Reading::Pairwise(v.swapped()),
            Reading::Score(s) => Reading::Score(s),
        }
    }
}

/// A reading, the format it was found in and the rule that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReading {
    pub reading: Reading,
    pub format: OutputFormat,
    pub rule: Rule,
}

/// Why no verdict could be read. The messages are shown to users as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The text does not use the format(s) looked for; the payload says what was looked for.
    #[error("no verdict found in the judge's output: {0}")]
    NotFound(String),
    /// The judge answered with a label outside the scale it was given (JudgerBenchV2's
    /// `"winner": "C"`, a rating of 11).
    #[error("the judge's verdict {0:?} is outside the scale it was asked for")]
    OutOfScale(String),
    /// The text gives two different verdicts; the payload names them.
    #[error(
        "the judge's output gives conflicting verdicts ({0}); \
         decide this item by hand or run the judge again"
    )]
    Conflicting(String),
    /// The text uses a format's verdict slot, but what it wrote there is not a verdict.
    #[error("the judge's verdict cannot be read: {0}")]
    Unreadable(String),
    /// `OutputFormat::Critique` asks for a critique of one answer, which holds no verdict.
    #[error(
        "the critique format carries no verdict by design; ask the judge for a pairwise \
         (e.g. cj2-json, brackets) or pointwise format to get one"
    )]
    NoVerdictInCritique,
}

/// Reads a verdict in whatever format the text uses.
pub fn parse(text: &str) -> Result<JudgeReading, ParseError> {
    parse_as(text, OutputFormat::Auto)
}

/// Reads a verdict in the given format.
pub fn parse_as(text: &str, format: OutputFormat) -> Result<JudgeReading, ParseError> {
    let pairwise = |v: Result<Verdict, ParseError>, rule| {
        v.map(|v| JudgeReading {
            reading: Reading::Pairwise(v),
            format,
            rule,
        })
    };
    match format {
        OutputFormat::Auto => auto::read(text),
        OutputFormat::Cj2Json => pairwise(cj2::read(text), Rule::JsonField),
        OutputFormat::Brackets => pairwise(brackets::read(text), Rule::LetterPriority),
        OutputFormat::Arena5 => pairwise(arena::read(text), Rule::OneDistinctLabel),
        OutputFormat::JudgerBench => pairwise(judgerbench::read(text), Rule::LastMatch),
        OutputFormat::Prose => pairwise(prose::read(text), Rule::ClosingSentence),
        OutputFormat::ResultMarker => pairwise(result::read(text), Rule::OnlyLabel),
        OutputFormat::Pointwise => pointwise::read(text).map(|s| JudgeReading {
            reading: Reading::Score(s),
            format,
            rule: Rule::Rating,
        }),
        OutputFormat::Critique => Err(ParseError::NoVerdictInCritique),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Outcome, Strength};

    #[test]
    fn each_format_reads_its_own_verdict() {
        let cases: [(&str, OutputFormat, Reading); 7] = [
            (
                r#"{"Reasoning": "fine", "Choice": "Model B"}"#,
                OutputFormat::Cj2Json,
                Reading::Pairwise(Verdict::B),
            ),
            (
                "Both fine. [[C]]",
                OutputFormat::Brackets,
                Reading::Pairwise(Verdict::TIE),
            ),
            (
                "My final verdict is: [[B>>A]]",
                OutputFormat::Arena5,
                Reading::Pairwise(Verdict::new(Outcome::B, Strength::Strong)),
            ),
            (
                r#"{"analysis": "x", "winner": "A"}"#,
                OutputFormat::JudgerBench,
                Reading::Pairwise(Verdict::A),
            ),
            (
                r#"{"分析": "x", "胜者": "B"}"#,
                OutputFormat::JudgerBench,
                Reading::Pairwise(Verdict::B),
            ),
            (
                "Rating: [[6]]",
                OutputFormat::Pointwise,
                Reading::Score(6.0),
            ),
            (
                "Both are fine, but overall Response A is better.",
                OutputFormat::Prose,
                Reading::Pairwise(Verdict::A),
            ),
        ];
        for (text, format, reading) in cases {
            let got = parse_as(text, format).map(|r| (r.reading, r.format));
            assert_eq!(got, Ok((reading, format)), "{text}");
        }
    }

    #[test]
    fn an_explicit_format_ignores_the_others() {
        assert!(matches!(
            parse_as("[[A]]", OutputFormat::Cj2Json),
            Err(ParseError::NotFound(_))
        ));
        assert!(matches!(
            parse_as(r#"{"Choice": "Model A"}"#, OutputFormat::Brackets),
            Err(ParseError::NotFound(_))
        ));
        assert!(matches!(
            parse_as("Model A is better.", OutputFormat::Arena5),
            Err(ParseError::NotFound(_))
        ));
    }

    #[test]
    fn critique_never_yields_a_verdict() {
        for text in ["[[A]]", r#"{"Choice": "Model A"}"#, "Rating: [[7]]", ""] {
            assert_eq!(
                parse_as(text, OutputFormat::Critique),
                Err(ParseError::NoVerdictInCritique)
            );
        }
    }

    #[test]
    fn messages_say_what_was_looked_for() {
        let err = parse_as("nothing here", OutputFormat::Brackets).expect_err("no tag");
        assert!(err.to_string().contains("[[A]]"), "{err}");
        let err = parse_as("nothing here", OutputFormat::Cj2Json).expect_err("no choice");
        assert!(err.to_string().contains("\"Choice\""), "{err}");
        let err = parse_as("nothing here", OutputFormat::JudgerBench).expect_err("no winner");
        assert!(err.to_string().contains("\"winner\""), "{err}");
        assert!(err.to_string().contains("\"胜者\""), "{err}");
        let err = parse_as("nothing here", OutputFormat::Pointwise).expect_err("no score");
        assert!(err.to_string().contains("Rating: [[7]]"), "{err}");
        let err = parse("nothing here").expect_err("nothing");
        for looked_for in [
            "\"Choice\"",
            "\"winner\"",
            "[[A>B]]",
            "[[A]]",
            "[[7]]",
            "Model A is better",
        ] {
            assert!(
                err.to_string().contains(looked_for),
                "{looked_for} missing in {err}"
            );
        }
    }

    #[test]
    fn out_of_scale_keeps_its_label() {
        assert_eq!(
            parse_as(r#"{"winner": "C"}"#, OutputFormat::JudgerBench),
            Err(ParseError::OutOfScale("C".into()))
        );
        assert_eq!(
            parse_as("Rating: [[11]]", OutputFormat::Pointwise),
            Err(ParseError::OutOfScale("11".into()))
        );
    }

    #[test]
    fn reading_swaps_like_its_verdict() {
        let strong_a = Reading::Pairwise(Verdict::new(Outcome::A, Strength::Strong));
        assert_eq!(
            strong_a.swapped(),
            Reading::Pairwise(Verdict::new(Outcome::B, Strength::Strong))
        );
        assert_eq!(Reading::Score(7.5).swapped(), Reading::Score(7.5));
    }
}
