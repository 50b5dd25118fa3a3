//! The JSON shapes judges are asked for, and how a field's value becomes a verdict.
//!
//! CompassJudger-2 asks for seven fixed keys ending in `Choice`; JudgerBenchV2 asks for
//! `analysis`/`winner` (or `分析`/`胜者` in Chinese). Knowing the shape lets a critique list
//! the fields a judge will write before it writes them, and read the verdict the moment the
//! deciding field completes.

use crate::verdict::Verdict;

/// The CompassJudger-2 critical-thinking keys, in the order its prompt asks for them.
pub const CJ2_KEYS: [&str; 7] = [
    "User's Demand",
    "Strengths of Model A",
    "Weaknesses of Model A",
    "Strengths of Model B",
    "Weaknesses of Model B",
    "Reasoning",
    "Choice",
];

/// JudgerBenchV2's English keys.
pub const JUDGERBENCH_EN_KEYS: [&str; 2] = ["analysis", "winner"];
/// JudgerBenchV2's Chinese keys.
pub const JUDGERBENCH_CN_KEYS: [&str; 2] = ["分析", "胜者"];

/// Which known shape a JSON object follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    Cj2,
    JudgerBenchEn,
    JudgerBenchCn,
}

impl Shape {
    pub(crate) fn keys(self) -> &'static [&'static str] {
        match self {
            Shape::Cj2 => &CJ2_KEYS,
            Shape::JudgerBenchEn => &JUDGERBENCH_EN_KEYS,
            Shape::JudgerBenchCn => &JUDGERBENCH_CN_KEYS,
        }
    }

    /// The shape a first key announces, if any.
    pub(crate) fn announced_by(key: &str) -> Option<Shape> {
        let norm = normalize_key(key);
        if CJ2_KEYS.iter().any(|k| normalize_key(k) == norm) {
            Some(Shape::Cj2)
        } else if JUDGERBENCH_EN_KEYS.contains(&key) {
            Some(Shape::JudgerBenchEn)
        } else if JUDGERBENCH_CN_KEYS.contains(&key) {
            Some(Shape::JudgerBenchCn)
        } else {
            None
        }
    }
}

/// The identity a key is matched by. CompassJudger-2 keys are matched loosely because models
/// vary case, spacing and the apostrophe (`User’s demand`); every other key, JudgerBenchV2's
/// included (its reference reads `winner` case-sensitively), is matched exactly.
pub(crate) fn normalize_key(key: &str) -> String {
    let folded: String = key
        .chars()
        .map(|c| match c {
            '\u{2019}' | '\u{2018}' | '`' => '\'',
            other => other.to_ascii_lowercase(),
        })
        .collect();
    let collapsed = folded.split_whitespace().collect::<Vec<_>>().join(" ");
    if CJ2_KEYS.iter().any(|k| k.to_ascii_lowercase() == collapsed) {
        collapsed
    } else {
        key.to_string()
    }
}

/// The canonical spelling of a key: the CompassJudger-2 name when it is one of those.
pub(crate) fn canonical_key(key: &str) -> String {
    let norm = normalize_key(key);
    CJ2_KEYS
        .iter()
        .find(|k| k.to_ascii_lowercase() == norm)
        .map(|k| k.to_string())
        .unwrap_or_else(|| key.to_string())
}

/// What a field's value decides, by its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Text,
    /// CompassJudger-2 `Choice`: `Model A`, `Model B` and the usual spellings.
    Choice,
    /// JudgerBenchV2 `winner` / `胜者`: exactly one uppercase letter, as its reference reads it.
    Winner,
}

impl Role {
    pub(crate) fn of(key: &str) -> Role {
        if normalize_key(key) == "choice" {
            Role::Choice
        } else if key == "winner" || key == "胜者" {
            Role::Winner
        } else {
            Role::Text
        }
    }

    /// Reads a completed value; `Err` says why it is not a verdict.
    pub(crate) fn read(self, key: &str, value: &str) -> Option<Result<Verdict, String>> {
        match self {
            Role::Text => None,
            Role::Choice => {
                let trimmed = value.trim().trim_end_matches('.').trim();
                Some(trimmed.parse::<Verdict>().map_err(|_| {
                    format!(
                        "{key:?} is {value:?}, which is not a verdict; expected \"Model A\" or \"Model B\""
                    )
                }))
            }
            Role::Winner => Some(match value {
                "A" => Ok(Verdict::A),
                "B" => Ok(Verdict::B),
                v if v.len() == 1 && v.chars().all(|c| c.is_ascii_uppercase()) => Err(format!(
                    "{key:?} is {v:?}, outside the A/B scale; the item counts as judged wrongly"
                )),
                v => Err(format!(
                    "{key:?} is {v:?}; JudgerBenchV2 accepts only a single uppercase letter (\"A\" or \"B\")"
                )),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cj2_keys_match_loosely_and_read_canonically() {
        assert_eq!(canonical_key("user’s  DEMAND"), "User's Demand");
        assert_eq!(Shape::announced_by("choice"), Some(Shape::Cj2));
        assert_eq!(Shape::announced_by("胜者"), Some(Shape::JudgerBenchCn));
        assert_eq!(Shape::announced_by("Winner"), None);
    }

    #[test]
    fn choice_is_lenient_and_winner_is_strict() {
        assert_eq!(
            Role::of("Choice").read("Choice", "Model B."),
            Some(Ok(Verdict::B))
        );
        assert_eq!(Role::of("Choice").read("Choice", "A"), Some(Ok(Verdict::A)));
        assert!(matches!(
            Role::of("Choice").read("Choice", "both"),
            Some(Err(_))
        ));
        assert_eq!(Role::of("winner").read("winner", "A"), Some(Ok(Verdict::A)));
        assert!(matches!(
            Role::of("winner").read("winner", "a"),
            Some(Err(_))
        ));
        assert!(matches!(
            Role::of("winner").read("winner", "C"),
            Some(Err(_))
        ));
        assert_eq!(Role::of("Winner"), Role::Text);
        assert_eq!(Role::of("analysis"), Role::Text);
    }
}
