//! Texts that hold several verdict labels (`[[A>B]]`, `[[A]]`), and the rule that decides
//! them. A review tool must never guess between two labels: the item is one a person should
//! see. So, by default (the *review rule*, used by `Auto`):
//!
//! 1. **Echoes never count.** A label on a line that gives instructions is the judge reciting
//!    its prompt, not judging: `output`, `respond with`, `reply with`, `answer with`, `e.g.`,
//!    `for example`, `such as` or `in the format` before it on its line, or `if`/`when` right
//!    after it (`Output "[[A]]" if assistant A is better`), or a line that lists three or more
//!    different labels (the scale itself).
//! 2. **One distinct label** left (however often repeated): it is the verdict.
//! 3. **Several distinct labels**: the last one decides only when it is phrased as the final
//!    verdict ("My final verdict is ...", "Final verdict: [[B>A]]", "final decision",
//!    "In conclusion", "最终"; not "final answer", which judges of maths items use for the
//!    answer being judged), on its line or the nearest line above it, and no earlier label is also phrased as final
//!    with a different label. That is the shape of a judge that rates each answer and then
//!    concludes. Anything else (per-answer verdicts with no conclusion, two final verdicts
//!    that disagree) is `Conflicting`, naming the labels.
//!
//! Labels inside code blocks count like any other: judges do put their verdict in a fence.
//! Benchmarks that have their own rule keep it, so that their numbers reproduce: ArenaHard
//! and JudgeBench read one distinct label or nothing (`arena.rs`, echoes included, as their
//! regex does), JudgerBenchV2 the last match (`judgerbench.rs`), MT-Bench its letter priority
//! (`brackets.rs`). `Rule` names which rule decided a reading.

use super::{arena, tags, ParseError};
use crate::verdict::Verdict;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// Which rule decided a verdict; shown by `arbiter parse` and the app beside the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The review rule: the output holds one distinct label (echoes aside).
    OnlyLabel,
    /// The review rule: several labels, the last phrased as the final verdict.
    FinalVerdict,
    /// ArenaHard and JudgeBench: exactly one distinct label, or no verdict.
    OneDistinctLabel,
    /// JudgerBenchV2: the last `"winner"` match counts.
    LastMatch,
    /// MT-Bench: `[[A]]`, else `[[B]]`, else `[[C]]` (both A and B: no verdict).
    LetterPriority,
    /// The verdict field of a JSON answer (CompassJudger-2 `"Choice"`).
    JsonField,
    /// A verdict stated in the closing sentences of free text.
    ClosingSentence,
    /// A rating (`[[7]]`, `Score: 7/10`).
    Rating,
}

impl Rule {
    /// A sentence for people: how the verdict was decided.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::OnlyLabel => "the only verdict label in the output",
            Rule::FinalVerdict => {
                "several labels; the last is phrased as the final verdict and decides"
            }
            Rule::OneDistinctLabel => {
                "ArenaHard/JudgeBench rule: exactly one distinct label (several give no verdict)"
            }
            Rule::LastMatch => "JudgerBenchV2 rule: the last \"winner\" match counts",
            Rule::LetterPriority => "MT-Bench rule: [[A]], else [[B]], else [[C]]",
            Rule::JsonField => "the verdict field of the JSON answer",
            Rule::ClosingSentence => "the verdict stated in the closing sentences",
            Rule::Rating => "the rating given",
        }
    }
}

/// A verdict tag in the text: its content without spaces and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Label {
    pub(super) text: String,
    /// Byte offsets of the whole `[[...]]`.
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) echo: bool,
    pub(super) final_phrase: bool,
}

static CUE_BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:output|respond\s+with|reply\s+with|answer\s+with|e\.g\.|for\s+example|such\s+as|in\s+the\s+format)\b",
    )
    .expect("the instruction-cue pattern is a valid regex")
});
static CUE_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)^["'`*\s)]*(?:if|when)\b"#).expect("the conditional pattern is a valid regex")
});
static FINAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)final\s+(?:verdict|decision|judge?ment|assessment|ruling)|overall\s+verdict|in\s+conclusion|最终",
    )
    .expect("the final-verdict pattern is a valid regex")
});

/// Whether a tag's content is a pairwise verdict label: one uppercase letter (`[[A]]`) or a
/// comparison of A and B (`[[A>B]]`, also the malformed `[[A>=B]]`, which is out of scale).
fn is_label(content: &str) -> bool {
    let mut chars = content.chars();
    let single = matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_uppercase());
    single
        || (content.chars().all(|c| "AB<>=".contains(c))
            && content.contains(['<', '>', '='])
            && content.contains(['A', 'B']))
}

/// Every verdict label in the text, in order, each marked as echo or final-phrased.
pub(super) fn find(text: &str) -> Vec<Label> {
    let mut labels: Vec<Label> = tags::spans(text)
        .filter_map(|(range, content)| {
            let content = if content == "B=A" {
                "A=B".to_string()
            } else {
                content
            };
            is_label(&content).then_some(Label {
                text: content,
                start: range.start,
                end: range.end,
                echo: false,
                final_phrase: false,
            })
        })
        .collect();
    // Labels come in text order, so those of one line are a run: each line is looked at once.
    let mut first = 0;
    while first < labels.len() {
        let at = labels[first].start;
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let run_end = first + labels[first..].partition_point(|l| l.end <= line_end);
        let recited = distinct(&labels[first..run_end]).len() >= 3;
        // A label alone on its line takes its phrasing from the nearest line above with text
        // ("**Final verdict**", a blank line, then the tag).
        let above = text[..line_start].trim_end();
        let previous_line = &above[above.rfind('\n').map_or(0, |i| i + 1)..];
        for label in &mut labels[first..run_end] {
            let before = &text[line_start..label.start];
            let after = &text[label.end..line_end];
            label.echo = recited || CUE_BEFORE.is_match(before) || CUE_AFTER.is_match(after);
            label.final_phrase = FINAL.is_match(before)
                || (before.trim().is_empty() && FINAL.is_match(previous_line));
        }
        first = run_end;
    }
    labels
}

/// The distinct labels, in order of first appearance.
fn distinct<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Vec<&'a str> {
    tags::distinct(labels.into_iter().map(|l| l.text.as_str()))
}

/// The verdict a label denotes, or `None` for a label outside the scales.
pub(super) fn verdict_of(label: &str) -> Option<Verdict> {
    match label {
        "A" => Some(Verdict::A),
        "B" => Some(Verdict::B),
        "C" => Some(Verdict::TIE),
        comparison => arena::five_way(comparison),
    }
}

/// Reads a text by the review rule (see the module documentation). `NotFound` when the text
/// holds no label but echoes.
pub(super) fn read_review(text: &str) -> Result<(Verdict, Rule, String), ParseError> {
    let labels = find(text);
    let counted: Vec<&Label> = labels.iter().filter(|l| !l.echo).collect();
    let kinds = distinct(counted.iter().copied());
    let (label, rule) = match kinds.as_slice() {
        [] => {
            let echoed = distinct(labels.iter());
            let mut what = format!("looked for {LOOKED_FOR}");
            if !echoed.is_empty() {
                what.push_str(&format!(
                    "; {} only in instructions the judge repeated, which never count",
                    tags::list(&echoed)
                ));
            }
            return Err(ParseError::NotFound(what));
        }
        [only] => (*only, Rule::OnlyLabel),
        several => {
            let last = counted.last().expect("several labels means a last one");
            let finals_agree = counted
                .iter()
                .filter(|l| l.final_phrase)
                .all(|l| l.text == last.text);
            if last.final_phrase && finals_agree {
                (last.text.as_str(), Rule::FinalVerdict)
            } else {
                let why = if counted.iter().filter(|l| l.final_phrase).count() > 1 {
                    "two final verdicts disagree"
                } else {
                    "no final verdict settles them"
                };
                return Err(ParseError::Conflicting(format!(
                    "different verdict labels appear: {}; {why}",
                    tags::list(several)
                )));
            }
        }
    };
    match verdict_of(label) {
        Some(v) => Ok((v, rule, label.to_string())),
        None => Err(ParseError::OutOfScale(label.to_string())),
    }
}

pub(super) const LOOKED_FOR: &str =
    "a verdict label [[A]], [[B]], [[C]] (tie) or [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]]";

#[cfg(test)]
mod tests {
    use super::*;

    fn review(text: &str) -> Result<(Verdict, Rule), ParseError> {
        read_review(text).map(|(v, r, _)| (v, r))
    }

    fn v(label: &str) -> Verdict {
        verdict_of(label).expect("a known label")
    }

    #[test]
    fn one_label_however_repeated() {
        assert_eq!(review("Fine. [[A>B]]"), Ok((v("A>B"), Rule::OnlyLabel)));
        assert_eq!(
            review("[[B]] and again [[ B ]]"),
            Ok((Verdict::B, Rule::OnlyLabel))
        );
        assert_eq!(review("[[B=A]]"), Ok((v("A=B"), Rule::OnlyLabel)));
    }

    #[test]
    fn per_answer_ratings_then_a_final_verdict() {
        let text = "Assistant A: I would rate it slightly better than my answer: [[A>B]]\n\n\
                    Assistant B: slightly worse than A: [[B>A]]\n\n\
                    My final verdict is that Assistant A is slightly better: [[A>B]]";
        assert_eq!(review(text), Ok((v("A>B"), Rule::FinalVerdict)));
        let heading = "A is thin [[B>A]]. B is thorough [[A>B]].\n\n**Final verdict**\n[[B>>A]]";
        assert_eq!(review(heading), Ok((v("B>>A"), Rule::FinalVerdict)));
    }

    #[test]
    fn per_answer_verdicts_without_a_conclusion_conflict() {
        let text = "My verdict: Assistant A is significantly better. [[A>>B]]\n\n\
                    Assistant B's response: ...\n\nMy verdict: Assistant B is slightly better. [[B>A]]";
        let err = review(text).expect_err("two labels");
        assert!(matches!(err, ParseError::Conflicting(_)), "{err}");
        assert!(err.to_string().contains("[[A>>B]], [[B>A]]"), "{err}");
        assert!(err.to_string().contains("no final verdict"), "{err}");
    }

    #[test]
    fn the_final_answer_of_a_maths_item_is_not_a_final_verdict() {
        let text = "A is right: [[A>B]]\nB is wrong, its final answer is 7: [[B>A]]\n\
                    My final verdict is that A is better: [[A>B]]";
        assert_eq!(review(text), Ok((v("A>B"), Rule::FinalVerdict)));
    }

    #[test]
    fn two_final_verdicts_that_disagree_conflict() {
        let text = "My final verdict is: Assistant A is slightly better: [[A>B]]\n\n\
                    Evaluation of B ...\n\nMy final verdict is: Tie, relatively the same: [[A=B]]";
        let err = review(text).expect_err("two finals");
        assert!(
            err.to_string().contains("two final verdicts disagree"),
            "{err}"
        );
        // A final verdict that comes before another label does not settle it either.
        let text = "Final verdict: [[A>B]]\nOn reflection, [[B>A]]";
        assert!(matches!(review(text), Err(ParseError::Conflicting(_))));
    }

    #[test]
    fn echoed_instructions_never_count() {
        let text = "Output \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is \
                    better.\nAfter reading both: B is right.\n[[B]]";
        assert_eq!(review(text), Ok((Verdict::B, Rule::OnlyLabel)));
        let scale = "The scale is [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]].\nVerdict: [[A>B]]";
        assert_eq!(review(scale), Ok((v("A>B"), Rule::OnlyLabel)));
        let only_echo = "Respond with [[A]] or [[B]].";
        let err = review(only_echo).expect_err("only an echo");
        assert!(matches!(err, ParseError::NotFound(_)));
        assert!(err.to_string().contains("never count"), "{err}");
    }

    #[test]
    fn labels_inside_code_blocks_count() {
        assert_eq!(
            review("Both compile.\n```\n[[B>A]]\n```"),
            Ok((v("B>A"), Rule::OnlyLabel))
        );
        let err = review("```\n[[A]]\n```\nbut really [[B]]").expect_err("two labels");
        assert!(matches!(err, ParseError::Conflicting(_)));
    }

    #[test]
    fn a_lone_label_outside_the_scales_is_out_of_scale() {
        assert_eq!(review("[[D]]"), Err(ParseError::OutOfScale("D".into())));
        assert_eq!(
            review("[[A>=B]]"),
            Err(ParseError::OutOfScale("A>=B".into()))
        );
    }

    #[test]
    fn wiki_links_and_ratings_are_not_labels() {
        assert!(matches!(
            review("See [[Main Page]] and [[7]]."),
            Err(ParseError::NotFound(_))
        ));
    }
}
