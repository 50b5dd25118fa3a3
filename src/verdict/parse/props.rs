//! Property tests over all readers: they never panic, a clear final verdict is always read,
//! and swapping the labels A and B in a text swaps its verdict.

use super::{parse, parse_as, parse_judgerbench, OutputFormat, ParseError, Reading};
use crate::verdict::{Outcome, Strength, Verdict};
use proptest::prelude::*;

const FORMATS: [OutputFormat; 9] = [
    OutputFormat::Auto,
    OutputFormat::Cj2Json,
    OutputFormat::Brackets,
    OutputFormat::Arena5,
    OutputFormat::JudgerBench,
    OutputFormat::Pointwise,
    OutputFormat::Critique,
    OutputFormat::Prose,
    OutputFormat::ResultMarker,
];

/// Text without any verdict marker: no capitals, brackets, braces, quotes or colons, so it
/// can neither name a side nor open a tag or a JSON member.
fn filler() -> impl Strategy<Value = String> {
    "[a-z0-9 ,.;!?()'\n\t\u{e9}\u{4e00}-\u{4e0f}\u{1f600}-\u{1f60f}-]{0,300}"
}

/// The same text with every capital A and B exchanged.
fn swap_labels(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'A' => 'B',
            'B' => 'A',
            other => other,
        })
        .collect()
}

/// Pieces of judge output; capital A and B appear only as labels.
const PIECES: &[&str] = &[
    "model A",
    "Model B",
    "response A",
    "assistant B",
    "[[A]]",
    "[[B]]",
    "[[C]]",
    "[[A>>B]]",
    "[[A >B]]",
    "[[A=B]]",
    "[[B>A]]",
    "[[B>>A]]",
    "[[A>=B]]",
    "[[8]]",
    "[[7.5]]",
    "[[12]]",
    "Rating: [[7]]",
    "score: 6/10",
    "score: 4/5",
    "{\"Choice\": \"Model A\"}",
    "'Choice': 'B',",
    "\"Choice\": \"Model A|Model B\"",
    "\"Choice\": \"Model C\"",
    "\"winner\": \"A\"",
    "\"winner\": \"C\"",
    "\"胜者\": \"B\"",
    "\"Winner\": \"B\"",
    " is better",
    " wins",
    " is not better",
    "final verdict: ",
    "the winner is ",
    "i prefer ",
    "模型A",
    "回答B",
    "更好",
    "最终结论：",
    "it's a tie",
    "两者不相上下",
    "```json\n",
    "```",
    "{",
    "}",
    "\"",
    "'",
    ",",
    ".",
    "。",
    "\n",
    ": ",
    " if ",
    " not ",
    " and ",
    " but ",
    " the ",
    " answer ",
    " overall ",
    "é",
    "😀",
];

fn judge_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(PIECES).prop_map(str::to_string),
            1 => "[a-z ]{0,12}",
        ],
        0..24,
    )
    .prop_map(|pieces| pieces.concat())
}

/// A verdict in some format, and the reading and format that must be read from it.
fn final_verdict() -> impl Strategy<Value = (String, Reading, OutputFormat)> {
    let pair = |v: Verdict| Reading::Pairwise(v);
    let arena = [
        ("A>>B", Verdict::new(Outcome::A, Strength::Strong)),
        ("A>B", Verdict::new(Outcome::A, Strength::Slight)),
        ("A=B", Verdict::new(Outcome::Tie, Strength::Slight)),
        ("B>A", Verdict::new(Outcome::B, Strength::Slight)),
        ("B>>A", Verdict::new(Outcome::B, Strength::Strong)),
    ];
    let mut cases: Vec<(String, Reading, OutputFormat)> = Vec::new();
    for (tag, v) in [("A", Verdict::A), ("B", Verdict::B), ("C", Verdict::TIE)] {
        cases.push((format!("\n[[{tag}]]"), pair(v), OutputFormat::Brackets));
    }
    for (label, v) in arena {
        cases.push((
            format!("\nMy final verdict: [[{label}]]"),
            pair(v),
            OutputFormat::Arena5,
        ));
    }
    for (side, v) in [("A", Verdict::A), ("B", Verdict::B)] {
        cases.push((
            format!(
                "\n```json\n{{\"Reasoning\": \"see above\", \"Choice\": \"Model {side}\"}}\n```"
            ),
            pair(v),
            OutputFormat::Cj2Json,
        ));
        cases.push((
            format!("\n{{'Reasoning': 'it's shorter', 'Choice': 'Model {side}',"),
            pair(v),
            OutputFormat::Cj2Json,
        ));
        cases.push((
            format!("\n{{\"analysis\": \"ok\", \"winner\": \"{side}\"}}"),
            pair(v),
            OutputFormat::JudgerBench,
        ));
        cases.push((
            format!("\n{{\"分析\": \"好\", \"胜者\": \"{side}\"}}"),
            pair(v),
            OutputFormat::JudgerBench,
        ));
        cases.push((
            format!("\n\nTherefore, Model {side} is better."),
            pair(v),
            OutputFormat::Prose,
        ));
        cases.push((
            format!("\n\n综上，回答{side}更好。"),
            pair(v),
            OutputFormat::Prose,
        ));
        cases.push((
            format!("\nFeedback: good. [RESULT] {side}"),
            pair(v),
            OutputFormat::ResultMarker,
        ));
    }
    for score in [1.0, 6.5, 10.0] {
        cases.push((
            format!("\nRating: [[{score}]]"),
            Reading::Score(score),
            OutputFormat::Pointwise,
        ));
    }
    prop::sample::select(cases)
}

fn same_kind(a: &ParseError, b: &ParseError) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_text(text in any::<String>()) {
        for format in FORMATS {
            let _ = parse_as(&text, format);
        }
        let _ = parse_judgerbench(&text, false);
        let _ = parse_judgerbench(&text, true);
    }

    #[test]
    fn never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        for format in FORMATS {
            let _ = parse_as(&text, format);
        }
    }

    #[test]
    fn never_panics_on_judge_like_text(text in judge_text()) {
        for format in FORMATS {
            let _ = parse_as(&text, format);
        }
    }

    #[test]
    fn a_final_verdict_after_any_text_is_read(
        text in filler(),
        (ending, reading, format) in final_verdict(),
    ) {
        let output = format!("{text}{ending}");
        let got = parse(&output).map_err(|e| TestCaseError::fail(format!("{output:?}: {e}")))?;
        prop_assert_eq!(got.reading, reading);
        prop_assert_eq!(got.format, format);
        let explicit = parse_as(&output, format)
            .map_err(|e| TestCaseError::fail(format!("{output:?}: {e}")))?;
        prop_assert_eq!(explicit.reading, reading);
    }

    #[test]
    fn swapping_labels_swaps_the_verdict(text in judge_text()) {
        let swapped = swap_labels(&text);
        for format in FORMATS {
            match (parse_as(&text, format), parse_as(&swapped, format)) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a.reading.swapped(), b.reading, "{:?}: {:?}", format, text);
                    prop_assert_eq!(a.format, b.format);
                }
                (Err(a), Err(b)) => prop_assert!(
                    same_kind(&a, &b),
                    "{:?}: {:?} gives {:?} but swapped gives {:?}", format, text, a, b
                ),
                (a, b) => prop_assert!(
                    false,
                    "{:?}: {:?} gives {:?} but swapped gives {:?}", format, text, a, b
                ),
            }
        }
        for chinese in [false, true] {
            let a = parse_judgerbench(&text, chinese);
            let b = parse_judgerbench(&swapped, chinese);
            prop_assert_eq!(a.map(Verdict::swapped).ok(), b.clone().ok());
        }
    }

    #[test]
    fn judgerbench_takes_the_last_winner(
        letters in prop::collection::vec(prop::char::range('A', 'Z'), 1..6),
        gaps in prop::collection::vec(filler(), 6),
    ) {
        let mut text = String::new();
        for (letter, gap) in letters.iter().zip(&gaps) {
            text.push_str(gap);
            text.push_str(&format!("{{\"analysis\": \"x\", \"winner\": \"{letter}\"}}"));
        }
        let want = match letters.last() {
            Some('A') => Ok(Verdict::A),
            Some('B') => Ok(Verdict::B),
            Some(other) => Err(ParseError::OutOfScale(other.to_string())),
            None => unreachable!("at least one letter"),
        };
        prop_assert_eq!(parse_judgerbench(&text, false), want);
    }

    #[test]
    fn cj2_objects_in_any_style_are_read(
        side in prop::sample::select(vec!["A", "B"]),
        single in any::<bool>(),
        fenced in any::<bool>(),
        trailing_comma in any::<bool>(),
        cut_after_choice in any::<bool>(),
        before in filler(),
        after in filler(),
        keys in prop::sample::subsequence(
            vec!["User's Demand", "Strengths of Model A", "Weaknesses of Model A",
                 "Strengths of Model B", "Weaknesses of Model B", "Reasoning"],
            0..=6,
        ),
    ) {
        let q = if single { '\'' } else { '"' };
        let mut object = String::from("{\n");
        for key in keys {
            object.push_str(&format!("  {q}{key}{q}: {q}some words, it's fine{q},\n"));
        }
        object.push_str(&format!("  {q}Choice{q}: {q}Model {side}{q}"));
        let text = if cut_after_choice {
            format!("{before}\n{object}")
        } else {
            if trailing_comma {
                object.push(',');
            }
            object.push_str("\n}");
            let block = if fenced { format!("```json\n{object}\n```") } else { object };
            format!("{before}\n{block}\n{after}")
        };
        let want = if side == "A" { Verdict::A } else { Verdict::B };
        let got = parse_as(&text, OutputFormat::Cj2Json)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(got.reading, Reading::Pairwise(want));
        let auto = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(auto.reading, Reading::Pairwise(want));
    }
}
