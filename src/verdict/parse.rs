//! Reading a verdict out of a judge's free text, for every output format Arbiter knows.

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
}

/// What a judge's text says.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    Pairwise(Verdict),
    Score(f64),
}

/// A reading and the format it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReading {
    pub reading: Reading,
    pub format: OutputFormat,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("no verdict found in the judge's output ({0})")]
    NotFound(String),
    /// The judge answered with a label outside the scale it was given (JudgerBenchV2's
    /// `"winner": "C"`, a rating of 11).
    #[error("the judge's verdict {0:?} is outside the scale it was asked for")]
    OutOfScale(String),
}

/// Reads a verdict in whatever format the text uses.
pub fn parse(text: &str) -> Result<JudgeReading, ParseError> {
    parse_as(text, OutputFormat::Auto)
}

/// Reads a verdict in the given format.
pub fn parse_as(_text: &str, _format: OutputFormat) -> Result<JudgeReading, ParseError> {
    Err(ParseError::NotFound("not implemented yet".into()))
}
