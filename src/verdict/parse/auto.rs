//! `OutputFormat::Auto`: read a text whose format is not known.
//!
//! The readers run in tiers, strongest evidence first; the first tier in which the text uses
//! some format decides, and later tiers are not consulted:
//! 1. the pairwise formats with explicit markers: CompassJudger-2 `"Choice"`, JudgerBenchV2
//!    `"winner"`/`"胜者"`, and verdict labels (`[[A>B]]`, `[[A]]`) read together by the review
//!    rule of `labels.rs` (echoed instructions never count; several distinct labels give no
//!    verdict unless the last is phrased as the final one);
//! 2. rating tags (`[[7]]`);
//! 3. a verdict in the closing sentences (`Model A is better.`);
//! 4. labelled ratings (`Score: 8/10`).
//!
//! A CompassJudger-2 or JudgerBenchV2 JSON answer without a readable verdict (cut off before
//! `Choice`, a `"Winner"` the benchmark does not read) stops after tier 1: its reasoning
//! ("Model A is better because...") is not its verdict, so prose and ratings are not read.
//!
//! Within a tier, every format the text uses must agree: a format that is present but
//! unreadable (two different labels, a label outside its scale) makes the whole reading an
//! error, and two formats that give different outcomes are `Conflicting`. When they agree (a
//! `"Choice": "Model A"` and an `[[A>B]]`), the reading of the first format in the order above
//! is returned. So a pairwise text that also rates each answer (`[[8]]`, `Score: 6/10`) is
//! read by its pairwise verdict, and prose only speaks when no marker does.

use super::{
    cj2, judgerbench, labels, pointwise, prose, result, JudgeReading, OutputFormat, ParseError,
    Reading, Rule,
};

type Attempt = (OutputFormat, Result<(Reading, Rule), ParseError>);

pub(super) fn read(text: &str) -> Result<JudgeReading, ParseError> {
    let pairwise =
        |format, rule, r: Result<_, ParseError>| (format, r.map(|v| (Reading::Pairwise(v), rule)));
    let score = |r: Result<_, ParseError>| {
        (
            OutputFormat::Pointwise,
            r.map(|s| (Reading::Score(s), Rule::Rating)),
        )
    };
    let label = || -> Attempt {
        match labels::read_review(text) {
            Ok((v, rule, label)) => {
                let format = if label.contains(['<', '>', '=']) {
                    OutputFormat::Arena5
                } else {
                    OutputFormat::Brackets
                };
                (format, Ok((Reading::Pairwise(v), rule)))
            }
            Err(e) => (OutputFormat::Brackets, Err(e)),
        }
    };
    let tiers: [&dyn Fn() -> Vec<Attempt>; 4] = [
        &|| {
            vec![
                pairwise(OutputFormat::Cj2Json, Rule::JsonField, cj2::read(text)),
                pairwise(
                    OutputFormat::JudgerBench,
                    Rule::LastMatch,
                    judgerbench::read(text),
                ),
                label(),
                pairwise(
                    OutputFormat::ResultMarker,
                    Rule::OnlyLabel,
                    result::read(text),
                ),
            ]
        },
        &|| vec![score(pointwise::read_tags(text))],
        &|| {
            vec![pairwise(
                OutputFormat::Prose,
                Rule::ClosingSentence,
                prose::read(text),
            )]
        },
        &|| vec![score(pointwise::read_labelled(text))],
    ];
    let mut looked_for: Vec<String> = Vec::new();
    for (n, tier) in tiers.iter().enumerate() {
        if let Some(decided) = decide(tier(), &mut looked_for) {
            return decided;
        }
        if n == 0 && (cj2::started(text) || judgerbench::started(text)) {
            break;
        }
    }
    Err(ParseError::NotFound(format!(
        "looked for {}",
        looked_for.join("; ")
    )))
}

/// The tier's reading, or `None` when the text uses none of its formats (what each looked
/// for is added to `looked_for`).
fn decide(
    attempts: Vec<Attempt>,
    looked_for: &mut Vec<String>,
) -> Option<Result<JudgeReading, ParseError>> {
    let mut used: Vec<(OutputFormat, (Reading, Rule))> = Vec::new();
    for (format, attempt) in attempts {
        match attempt {
            Ok(reading) => used.push((format, reading)),
            Err(ParseError::NotFound(what)) => looked_for.push(
                what.strip_prefix("looked for ")
                    .unwrap_or(&what)
                    .to_string(),
            ),
            Err(err) => return Some(Err(err)),
        }
    }
    let &(format, (reading, rule)) = used.first()?;
    if let Some((other_format, (other, _))) = used.iter().find(|(_, (r, _))| !agree(*r, reading)) {
        return Some(Err(ParseError::Conflicting(format!(
            "{} reads {} but {} reads {}",
            name(format),
            describe(reading),
            name(*other_format),
            describe(*other)
        ))));
    }
    Some(Ok(JudgeReading {
        reading,
        format,
        rule,
    }))
}

/// Two readings agree when they favour the same side (strengths aside) or give the same score.
fn agree(a: Reading, b: Reading) -> bool {
    match (a, b) {
        (Reading::Pairwise(x), Reading::Pairwise(y)) => x.outcome == y.outcome,
        (Reading::Score(x), Reading::Score(y)) => x == y,
        _ => false,
    }
}

fn name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Cj2Json => "the CompassJudger-2 \"Choice\"",
        OutputFormat::JudgerBench => "the JudgerBenchV2 \"winner\"",
        OutputFormat::Arena5 => "the ArenaHard label",
        OutputFormat::Brackets => "the bracket tag",
        OutputFormat::Pointwise => "the rating",
        OutputFormat::Prose => "the closing sentence",
        OutputFormat::ResultMarker => "the result marker",
        OutputFormat::Auto | OutputFormat::Critique => "the text",
    }
}

fn describe(reading: Reading) -> String {
    match reading {
        Reading::Pairwise(v) => v.label().to_string(),
        Reading::Score(s) => format!("a rating of {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Outcome, Strength, Verdict};

    fn auto(text: &str) -> Result<(Reading, OutputFormat), ParseError> {
        read(text).map(|r| (r.reading, r.format))
    }

    fn pair(v: Verdict, format: OutputFormat) -> Result<(Reading, OutputFormat), ParseError> {
        Ok((Reading::Pairwise(v), format))
    }

    #[test]
    fn each_format_is_detected() {
        assert_eq!(
            auto("```json\n{\"Reasoning\": \"...\", \"Choice\": \"Model B\"}\n```"),
            pair(Verdict::B, OutputFormat::Cj2Json)
        );
        assert_eq!(
            auto("{\"analysis\": \"...\", \"winner\": \"A\"}"),
            pair(Verdict::A, OutputFormat::JudgerBench)
        );
        assert_eq!(
            auto("{\"分析\": \"...\", \"胜者\": \"B\"}"),
            pair(Verdict::B, OutputFormat::JudgerBench)
        );
        assert_eq!(
            auto("My final verdict is: [[B>>A]]"),
            pair(
                Verdict::new(Outcome::B, Strength::Strong),
                OutputFormat::Arena5
            )
        );
        assert_eq!(
            auto("Reasons...\n[[C]]"),
            pair(Verdict::TIE, OutputFormat::Brackets)
        );
        assert_eq!(
            auto("Correct but terse.\nRating: [[7]]"),
            Ok((Reading::Score(7.0), OutputFormat::Pointwise))
        );
        assert_eq!(
            auto("Both try hard. In the end, Assistant B is better."),
            pair(Verdict::B, OutputFormat::Prose)
        );
        assert_eq!(
            auto("Solid answer.\nScore: 6/10"),
            Ok((Reading::Score(6.0), OutputFormat::Pointwise))
        );
    }

    #[test]
    fn long_real_looking_outputs() {
        let arena = "My own answer first:\n\n```python\ngrid = [[0]]\npairs = [[1, 2], [3, 4]]\n\
                     print(grid[0][0])\n```\n\nAssistant A forgets to reset the grid between \
                     runs. Assistant B resets it and explains why.\n\nMy final verdict is \
                     Assistant B is slightly better: [[B>A]]";
        assert_eq!(
            auto(arena),
            pair(
                Verdict::new(Outcome::B, Strength::Slight),
                OutputFormat::Arena5
            )
        );
        let mt_bench = "Both assistants identify the bug. Assistant A's fix, however, changes \
                        the function's return type, which the user asked to keep. Assistant B \
                        keeps it and adds a test.\n\nTherefore, my final verdict is: [[B]]";
        assert_eq!(auto(mt_bench), pair(Verdict::B, OutputFormat::Brackets));
        let cj1 = "回答A准确地给出了公式，并解释了每一步；回答B的推导在第二步出现了符号错误。\n\
                   综合来看，回答A更好。\n[[A]]";
        assert_eq!(auto(cj1), pair(Verdict::A, OutputFormat::Brackets));
        let cj2 = "Here is my evaluation.\n\n```json\n{\n  \"User's Demand\": \"A haiku about \
                   rain\",\n  \"Strengths of Model A\": \"5-7-5 kept\",\n  \"Weaknesses of \
                   Model A\": \"Flat imagery\",\n  \"Strengths of Model B\": \"Vivid\",\n  \
                   \"Weaknesses of Model B\": \"Six syllables in line one\",\n  \"Reasoning\": \
                   \"The user asked for a haiku; B breaks the form.\",\n  \"Choice\": \"Model A\"\n}\n```";
        assert_eq!(auto(cj2), pair(Verdict::A, OutputFormat::Cj2Json));
        let pointwise = "[Explanation] The answer is accurate but omits the edge case n = 0.\n\
                         Rating: [[7]]";
        assert_eq!(
            auto(pointwise),
            Ok((Reading::Score(7.0), OutputFormat::Pointwise))
        );
    }

    #[test]
    fn agreeing_formats_give_the_first_in_order() {
        assert_eq!(
            auto("{\"Choice\": \"Model A\"}\n[[A>B]]"),
            pair(Verdict::A, OutputFormat::Cj2Json)
        );
        // Two different labels are never read as one of them, even when they lean the same
        // way, unless the last is phrased as the final verdict.
        assert!(matches!(
            auto("[[A]] -- that is, [[A>>B]]"),
            Err(ParseError::Conflicting(_))
        ));
        assert_eq!(
            auto("For A alone: [[A]].\nFinal verdict: [[A>>B]]"),
            pair(
                Verdict::new(Outcome::A, Strength::Strong),
                OutputFormat::Arena5
            )
        );
    }

    #[test]
    fn the_reading_names_the_rule_that_decided() {
        let rule = |t: &str| read(t).map(|r| r.rule);
        assert_eq!(rule("[[B]]"), Ok(Rule::OnlyLabel));
        assert_eq!(
            rule("A: [[A>B]]\nB: [[B>A]]\nMy final verdict is [[A>B]]"),
            Ok(Rule::FinalVerdict)
        );
        assert_eq!(rule("{\"Choice\": \"Model A\"}"), Ok(Rule::JsonField));
        assert_eq!(rule("{\"winner\": \"B\"}"), Ok(Rule::LastMatch));
        assert_eq!(
            rule("Overall, Model A is better."),
            Ok(Rule::ClosingSentence)
        );
        assert_eq!(rule("Rating: [[7]]"), Ok(Rule::Rating));
    }

    #[test]
    fn disagreeing_formats_conflict() {
        let err = auto("{\"Choice\": \"Model A\"}\nFinal: [[B]]").expect_err("A vs B");
        assert!(matches!(err, ParseError::Conflicting(_)));
        assert!(err.to_string().contains("\"Choice\" reads A"), "{err}");
        assert!(matches!(
            auto("{\"winner\": \"B\"} [[A>B]]"),
            Err(ParseError::Conflicting(_))
        ));
    }

    #[test]
    fn a_broken_marker_is_an_error_even_beside_a_good_one() {
        assert!(matches!(
            auto("{\"Choice\": \"Model A\"} [[A>B]] [[B>A]]"),
            Err(ParseError::Conflicting(_))
        ));
        assert_eq!(
            auto("{\"analysis\": \"...\", \"winner\": \"C\"}"),
            Err(ParseError::OutOfScale("C".into()))
        );
    }

    #[test]
    fn markers_outrank_ratings_and_prose() {
        // A pairwise judge that also rates both answers.
        assert_eq!(
            auto("Assistant A: [[8]]. Assistant B: [[6]]. Final verdict: [[A]]"),
            pair(Verdict::A, OutputFormat::Brackets)
        );
        // Prose after the marker is commentary, not a second verdict.
        assert_eq!(
            auto("[[A]]\n\nModel A is better at formatting, but Model B is better at maths."),
            pair(Verdict::A, OutputFormat::Brackets)
        );
        // Per-answer scores, then a closing verdict: the closing sentence decides.
        assert_eq!(
            auto("Model A score: 8/10. Model B score: 6/10. Overall, Model A is better."),
            pair(Verdict::A, OutputFormat::Prose)
        );
    }

    #[test]
    fn nothing_found_lists_every_format_tried() {
        let err = auto("The weather is nice today.").expect_err("no verdict");
        let ParseError::NotFound(what) = &err else {
            panic!("expected NotFound, got {err:?}");
        };
        for expected in [
            "\"Choice\"",
            "\"winner\"",
            "\"胜者\"",
            "[[A>>B]]",
            "[[C]]",
            "[[7]]",
            "Model A is better",
            "Score: 8/10",
        ] {
            assert!(what.contains(expected), "{expected} not in {what}");
        }
        assert!(!what.contains("looked for looked for"), "{what}");
    }

    #[test]
    fn a_json_answer_cut_off_before_its_verdict_is_not_read_as_prose() {
        for text in [
            "```json\n{\"Reasoning\": \"Overall, Model A is better",
            "{\"analysis\": \"回答A更好。\", \"Winner\": \"A\"}",
            "{\"Reasoning\": \"Rating: [[7]] for A\", \"Cho",
        ] {
            assert!(matches!(auto(text), Err(ParseError::NotFound(_))), "{text}");
        }
        // Without JSON, the same sentence is a verdict.
        assert_eq!(
            auto("Overall, Model A is better"),
            pair(Verdict::A, OutputFormat::Prose)
        );
    }

    #[test]
    fn hints_survive_into_the_auto_message() {
        let err = auto("{\"Reasoning\": \"B is right\", \"Choice\": \"Mo").expect_err("cut");
        assert!(err.to_string().contains("cut off"), "{err}");
    }
}
