//! A pairwise verdict stated in words at the end of free text: `Model B is better.`,
//! `Final verdict: Assistant A`, `Therefore, Response A is better`, `I prefer Model B`,
//! `It's a tie`, `模型A更好。`, `最终结论：回答B`.
//!
//! Only the closing sentences are read (the last `CLOSING` sentences of the text's tail), and
//! only the last of them that states a preference decides. That sentence must state exactly
//! one side, plainly: a sentence that names both sides is `Conflicting`, and a negated,
//! conditional or questioning one (`I don't think Model A is better`, `If brevity matters,
//! Model B is better`) is `Unreadable`. Sides are the capital letters A and B after a word
//! such as model, response, assistant (or 模型, 回答, 回复 ...), or alone right after a
//! verdict word (`Verdict: A`). Phrases that only describe (`Model B is more concise`) are
//! not verdicts.

use super::ParseError;
use crate::verdict::Verdict;
use regex::Regex;
use std::sync::LazyLock;

pub(super) const LOOKED_FOR: &str =
    "a closing sentence such as \"Model A is better\" or \"Final verdict: Assistant B\" (or 模型A更好)";

/// How many closing sentences may hold the verdict (the verdict, then a justification and a
/// sign-off such as "I hope this helps").
const CLOSING: usize = 3;
/// Bytes of the text's end that are read; closing sentences are never longer.
const TAIL: usize = 2000;

/// A side named by a noun: `Model A`, `response_b`, `Assistant B's`.
const SUBJ: &str = r"(?:model|response|assistant|answer|output|candidate|completion|option|system)\s*[_-]?\s*((?-i:[AB]))\b";
/// A side in Chinese text: `模型A`, `回答 B`, also the English nouns before a Chinese predicate.
const SUBJ_CN: &str =
    r"(?:模型|回答|回复|答案|助手|响应|输出|(?i:model|response|assistant|answer))\s*[_-]?\s*([AB])";
/// A bare letter after a verdict word: `Verdict: A`.
const BARE: &str = r"((?-i:[AB]))\b";
const ADVERB: &str = r"(?:(?:clearly|slightly|significantly|much|far|somewhat|marginally|overall|definitely|obviously|noticeably|generally|substantially|(?-i:a)\s+bit|(?-i:a)\s+little)\s+)?";

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the prose verdict patterns are valid regexes")
}

/// Patterns that name a side as the better one; the side is the pattern's capture group.
static SIDE: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        // Model A is (clearly) better / the winner / wins; Model A's answer is better.
        compile(&format!(
            r"(?i)\b{SUBJ}(?:'s\s+(?:response|answer|output|reply)\s+)?\s*,?\s*(?:(?:is|was|seems|appears|remains|looks|comes\s+out)\s+)?(?:to\s+be\s+)?(?:the\s+)?{ADVERB}(?:better|superior|preferable|preferred|stronger|winner|best|more\s+(?:helpful|accurate|correct|complete)|wins|prevails|(?:does|did|performs)\s+better)\b"
        )),
        // Final verdict: Assistant A / Verdict: A / The better response: Response B.
        compile(&format!(
            r"(?i)\b(?:final\s+(?:verdict|decision|judgment|judgement|choice|answer|conclusion|result)|verdict|decision|judgment|judgement|choice|conclusion|winner|preference|(?:better|preferred)\s+(?:response|answer|model|one))\s*[:：]\s*(?:{SUBJ}|{BARE})"
        )),
        // The winner is Model B / my verdict is A / the better response is Response A.
        compile(&format!(
            r"(?i)\b(?:verdict|decision|choice|winner|preference|(?:better|preferred)\s+(?:response|answer|one|model))\s+(?:is|goes\s+to)\s+(?:{SUBJ}|{BARE})"
        )),
        // I prefer / choose / would pick Model A.
        compile(&format!(
            r"(?i)\b(?:prefer|choose|chose|pick|select|favou?r|recommend|go\s+with|vote\s+for)\s+(?:{SUBJ}|{BARE})"
        )),
        // 模型A更好 / 回答B明显更优 / 模型A胜出.
        compile(&format!(
            r"{SUBJ_CN}\s*(?:的(?:回答|回复|答案))?\s*(?:明显|稍微|略微|略|显然|整体上?|总体上?|更加)?\s*(?:更好|更优|更佳|更胜一筹|胜出|获胜|更强|较好|更出色|更准确|更有帮助|优于|好于|占优)"
        )),
        // 最终结论：回答B / 结论是A / 我选择模型A.
        compile(&format!(
            r"(?:结论|判断|裁决|判决|选择|胜者|获胜者|评判结果|倾向于|推荐|更喜欢|偏好)\s*(?:是|为)?\s*[:：]?\s*(?:{SUBJ_CN}|([AB])(?:[^A-Za-z]|$))"
        )),
    ]
});

/// A side named with a negated preference: `Model A is not better`, `模型A并不更好`.
static NEGATED: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        compile(&format!(
            r"(?i)\b{SUBJ}\s*(?:is|was|does)\s*(?:not\b|n't\b)"
        )),
        compile(&format!(
            r"{SUBJ_CN}\s*(?:并)?(?:不是|不如|不比|不更|没有|未能)"
        )),
    ]
});

/// Words that make a preference conditional or negated when they come before it.
static HEDGE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:not|never|no|neither|nor|if|whether|unless|cannot|hardly)\b|n't\b|不是|并非|并不|不认为|如果|假如|是否|若|不一定",
    )
});

static TIE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\bit(?:'s|\s+is)\s+(?-i:a)\s+(?:tie|draw)\b|\b(?:verdict|decision|result|conclusion|choice)\s*(?:is\s+|[:：]\s*)(?:(?-i:a)\s+)?(?:tie|draw)\b|\bboth\s+(?:responses|answers|models|assistants|outputs)\s+are\s+(?:about\s+)?equally\s+(?:good|bad|strong|weak|helpful|valid|correct)\b|\bneither\s+(?:response|answer|model|assistant|output)\s+is\s+(?:clearly\s+)?better\b|平局|打平|不分伯仲|不相上下|(?:两者|二者|两个回答)(?:质量)?(?:相当|一样好|同样好)",
    )
});

pub(super) fn read(text: &str) -> Result<Verdict, ParseError> {
    let cleaned = clean(tail(text));
    let sentences = sentences(&cleaned);
    for sentence in sentences.iter().rev().take(CLOSING) {
        if let Some(decided) = judge_sentence(sentence) {
            return decided;
        }
    }
    Err(ParseError::NotFound(format!("looked for {LOOKED_FOR}")))
}

/// What one sentence says: `None` when it states no preference at all.
fn judge_sentence(sentence: &Sentence) -> Option<Result<Verdict, ParseError>> {
    let text = sentence.text.as_str();
    let mut sides: Vec<Verdict> = Vec::new();
    let mut hedged = false;
    for pattern in SIDE.iter() {
        for c in pattern.captures_iter(text) {
            let Some(letter) = c.iter().skip(1).flatten().next() else {
                continue;
            };
            let start = c.get(0).map_or(0, |m| m.start());
            if sentence.question || HEDGE.is_match(&text[..start]) {
                hedged = true;
            }
            let side = if letter.as_str() == "A" {
                Verdict::A
            } else {
                Verdict::B
            };
            if !sides.contains(&side) {
                sides.push(side);
            }
        }
    }
    hedged |= NEGATED.iter().any(|p| p.is_match(text));
    let tie = TIE.is_match(text);
    if tie && !sides.contains(&Verdict::TIE) {
        sides.push(Verdict::TIE);
    }
    if sides.is_empty() && !hedged {
        return None;
    }
    let quoted = || text.chars().take(160).collect::<String>();
    Some(match sides.as_slice() {
        _ if hedged => Err(ParseError::Unreadable(format!(
            "the closing sentence {:?} states a preference only negated, conditionally or \
             as a question",
            quoted()
        ))),
        [one] => Ok(*one),
        _ => Err(ParseError::Conflicting(format!(
            "the closing sentence {:?} names more than one side as the better one",
            quoted()
        ))),
    })
}

/// The end of the text, cut at a character boundary.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Markdown emphasis and headings removed, curly apostrophes straightened, so that
/// `**Final verdict:** *Model A*` reads as plain words.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '*' | '#' | '`'))
        .map(|c| if c == '’' { '\'' } else { c })
        .collect()
}

struct Sentence {
    text: String,
    question: bool,
}

/// Splits at sentence ends and line breaks; a line ending in a colon (`Final verdict:`)
/// continues on the next line. A full stop ends a sentence only before whitespace or the
/// end, so `3.5` and `v1.2` stay whole.
fn sentences(text: &str) -> Vec<Sentence> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let ends = match c {
            '!' | '?' | '。' | '！' | '？' | '；' | ';' => true,
            '.' => chars.peek().is_none_or(|n| n.is_whitespace()),
            '\n' => !current.trim_end().ends_with([':', '：']),
            _ => false,
        };
        if ends {
            push_sentence(&mut out, &current, matches!(c, '?' | '？'));
            current.clear();
        } else {
            current.push(if c == '\n' { ' ' } else { c });
        }
    }
    push_sentence(&mut out, &current, false);
    out
}

fn push_sentence(out: &mut Vec<Sentence>, text: &str, question: bool) {
    let text = text.trim();
    if !text.is_empty() {
        out.push(Sentence {
            text: text.to_string(),
            question,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_endings() {
        let cases = [
            ("Both are polite. Model B is better.", Verdict::B),
            ("Final verdict: Assistant A", Verdict::A),
            ("Therefore, Response A is better", Verdict::A),
            (
                "A covers edge cases; B does not. Overall, Model A is clearly better.",
                Verdict::A,
            ),
            ("**Final Verdict:**\n\nAssistant B", Verdict::B),
            (
                "The winner is Model B. It cites sources. Hope this helps!",
                Verdict::B,
            ),
            ("I prefer Response A because it runs.", Verdict::A),
            ("Model A's answer is better.", Verdict::A),
            ("Verdict: B", Verdict::B),
            ("The better response is Response A.", Verdict::A),
            ("Model B wins.", Verdict::B),
            ("In conclusion, Response_B is superior.", Verdict::B),
            (
                "Assistant A’s answer is better than Assistant B’s.",
                Verdict::A,
            ),
            (
                "Model A is better in tone. However, Model B is better overall.",
                Verdict::B,
            ),
            (
                "Model A is the better one, as version 2.5 of the API is used.",
                Verdict::A,
            ),
            ("It's a tie.", Verdict::TIE),
            ("Both responses are equally good.", Verdict::TIE),
            ("Final verdict: tie", Verdict::TIE),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn chinese_endings() {
        let cases = [
            ("两个回答都礼貌。综上所述，模型A更好。", Verdict::A),
            ("回答B更好", Verdict::B),
            ("最终结论：回答B", Verdict::B),
            ("我选择模型A。", Verdict::A),
            ("模型B明显更优，因为它给出了完整的代码。", Verdict::B),
            ("Model A更好。", Verdict::A),
            ("两者不相上下。", Verdict::TIE),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn only_the_closing_sentences_count() {
        let text = "Model A is better at first sight. We look at step one. Then step two. \
                    Then step three. Then step four.";
        assert!(matches!(read(text), Err(ParseError::NotFound(_))));
    }

    #[test]
    fn both_sides_in_the_deciding_sentence_conflict() {
        for text in [
            "Model A is better for beginners and Model B is better for experts.",
            "I prefer Model A, but Model B wins on style.",
            "模型A更好，但回答B更准确。",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::Conflicting(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn hedged_preferences_are_not_verdicts() {
        for text in [
            "I don't think Model A is better.",
            "If brevity matters, Model B is better.",
            "Is Model A better?",
            "Model A is not better than Model B.",
            "It is unclear whether Response B is better.",
            "我不认为模型A更好。",
            "模型A并不更好。",
            "模型B不如模型A好。",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::Unreadable(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn descriptions_are_not_verdicts() {
        for text in [
            "",
            "Model B is more concise.",
            "A better approach would be a hash map.",
            "Final answer: a list of primes.",
            "Assistant and answer both begin with A.",
            "The modelAB is better.",
            "The response is polite and mostly correct. Nothing else to add.",
            "{\"better\": \"A\", \"why\": \"A compiles\"}",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::NotFound(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn sentences_split_at_ends_but_not_inside_numbers() {
        let got: Vec<String> = sentences("Use v1.2 now. Why?\nVerdict:\nA!")
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(got, ["Use v1.2 now", "Why", "Verdict: A"]);
    }

    #[test]
    fn a_long_text_is_read_from_its_tail_without_splitting_characters() {
        let text = format!("{}模型B更好。", "好".repeat(3000));
        assert_eq!(read(&text), Ok(Verdict::B));
    }
}
