//! Pointwise ratings of one answer on a 1-10 scale: `Rating: [[7]]`, `[[8.5]]`,
//! `Score: 8/10`, `Overall rating: 6`, `评分：8分`.
//!
//! A `[[N]]` tag (MT-Bench's single-answer format), or a `<score>N</score>` tag (Flow-Judge's
//! format), outranks a labelled number. Every tag must
//! give the same number, else `Conflicting` (MT-Bench would take the first). Among labelled
//! numbers, those marked overall/final/total (`综合`/`最终`/`总`) outrank the rest
//! (sub-scores per criterion), and the remaining ones must agree. A number outside 1-10, or
//! a fraction of another scale (`4/5`), is `OutOfScale`.

use super::tags;
use super::ParseError;
use regex::Regex;
use std::sync::LazyLock;

pub(super) const LOOKED_FOR: &str = "a 1-10 rating such as Rating: [[7]] or Score: 8/10";

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^-?\d{1,6}(?:\.\d{0,6})?$").expect("the number pattern is a valid regex")
});
static LABELLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?:
            \b(?P<overall>(?:overall|final|total)\s+)?(?:rating|score|grade)\b
            \s*(?:is\s+|of\s+)?[:：=]?
          |
            (?P<overall_cn>综合|最终|总)?(?:评分|得分|分数|打分)\s*(?:为|是)?\s*[:：]?
        )
        \s*[*_]*\s*\[{0,2}\s*
        (?P<n>-?\d{1,6}(?:\.\d{1,6})?)
        \s*\]{0,2}\s*[*_]*\s*
        (?:(?:/|／|out\s+of)\s*(?P<d>\d{1,6}(?:\.\d{1,6})?))?",
    )
    .expect("the labelled score pattern is a valid regex")
});

/// Reads the rating: a `[[N]]` tag, else a labelled number.
pub(super) fn read(text: &str) -> Result<f64, ParseError> {
    match read_tags(text) {
        Err(ParseError::NotFound(_)) => read_labelled(text).map_err(|e| match e {
            ParseError::NotFound(_) => ParseError::NotFound(format!("looked for {LOOKED_FOR}")),
            other => other,
        }),
        other => other,
    }
}

static SCORE_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<score>\s*([^<\n]{1,12}?)\s*</score>")
        .expect("the score tag pattern is a valid regex")
});

/// Reads `[[N]]` tags only, or else `<score>N</score>` tags.
pub(super) fn read_tags(text: &str) -> Result<f64, ParseError> {
    let mut numbers: Vec<String> = tags::distinct(
        tags::contents(text)
            .filter(|t| NUMBER.is_match(t))
            .map(|t| t.trim_end_matches('.').to_string()),
    );
    if numbers.is_empty() {
        numbers = tags::distinct(
            SCORE_TAG
                .captures_iter(text)
                .map(|c| c[1].to_string())
                .filter(|t| NUMBER.is_match(t)),
        );
    }
    let values: Vec<(f64, &String)> = numbers
        .iter()
        .filter_map(|n| n.parse::<f64>().ok().map(|v| (v, n)))
        .collect();
    let Some(&(first, raw)) = values.first() else {
        return Err(ParseError::NotFound(
            "looked for a rating tag such as [[7]]".into(),
        ));
    };
    if values.iter().any(|(v, _)| *v != first) {
        return Err(ParseError::Conflicting(format!(
            "different ratings appear: {}",
            tags::list(&numbers)
        )));
    }
    on_scale(first, raw)
}

/// Reads labelled numbers (`Score: 8/10`) only.
pub(super) fn read_labelled(text: &str) -> Result<f64, ParseError> {
    struct Found<'t> {
        overall: bool,
        value: f64,
        raw: &'t str,
        denominator: Option<&'t str>,
    }
    let found: Vec<Found> = LABELLED
        .captures_iter(text)
        .filter_map(|c| {
            let n = c.name("n")?.as_str();
            Some(Found {
                overall: c.name("overall").is_some() || c.name("overall_cn").is_some(),
                value: n.parse().ok()?,
                raw: n,
                denominator: c.name("d").map(|d| d.as_str()),
            })
        })
        .collect();
    let overall = found.iter().any(|f| f.overall);
    let chosen: Vec<&Found> = found.iter().filter(|f| f.overall || !overall).collect();
    let Some(first) = chosen.first() else {
        return Err(ParseError::NotFound(
            "looked for a labelled rating such as Score: 8/10".into(),
        ));
    };
    let same = |f: &&Found| f.value == first.value && f.denominator == first.denominator;
    if !chosen.iter().all(same) {
        let all: Vec<String> = chosen
            .iter()
            .map(|f| match f.denominator {
                Some(d) => format!("{}/{d}", f.raw),
                None => f.raw.to_string(),
            })
            .collect();
        return Err(ParseError::Conflicting(format!(
            "different ratings appear: {}",
            tags::distinct(all).join(", ")
        )));
    }
    match first.denominator {
        Some(d) if d.parse::<f64>().ok() != Some(10.0) => {
            Err(ParseError::OutOfScale(format!("{}/{d}", first.raw)))
        }
        _ => on_scale(first.value, first.raw),
    }
}

fn on_scale(value: f64, raw: &str) -> Result<f64, ParseError> {
    if (1.0..=10.0).contains(&value) {
        Ok(value)
    } else {
        Err(ParseError::OutOfScale(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_judge_score_tags() {
        assert_eq!(
            read("<feedback>Accurate, but it skips the edge case.</feedback>\n<score>4</score>"),
            Ok(4.0)
        );
        assert_eq!(read("<score> 2 </score>"), Ok(2.0));
        assert!(matches!(
            read("<score>3</score> ... <score>5</score>"),
            Err(ParseError::Conflicting(_))
        ));
        // A bracket tag outranks a score tag, as it outranks a labelled number.
        assert_eq!(read("[[7]] <score>3</score>"), Ok(7.0));
        assert!(matches!(
            read("<score>high</score>"),
            Err(ParseError::NotFound(_))
        ));
    }

    #[test]
    fn mt_bench_style_tags() {
        let cases = [
            (
                "The answer is correct and well organised.\n\nRating: [[8]]",
                8.0,
            ),
            ("Rating: [[ 7 ]]", 7.0),
            ("Minor slip in step 3. [[8.5]]", 8.5),
            ("Rating: [[10]]", 10.0),
            ("Rating: [[1]]", 1.0),
            ("Rating: [[6.]]", 6.0),
            ("评分：[[7]]", 7.0),
            ("Rating: [[7]] (as I said, [[7]])", 7.0),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn labelled_numbers() {
        let cases = [
            ("Score: 8/10", 8.0),
            ("**Score:** 9 / 10", 9.0),
            ("Overall rating: 6", 6.0),
            ("I would give it a rating of 7 out of 10.", 7.0),
            (
                "Accuracy score: 9/10\nClarity score: 6/10\nOverall score: 7.5/10",
                7.5,
            ),
            ("Final Score = 4", 4.0),
            ("评分：8分", 8.0),
            ("准确性得分：6/10，综合评分：7/10", 7.0),
            ("Score: [8]", 8.0),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn a_tag_outranks_a_labelled_number() {
        assert_eq!(read("Clarity score: 9/10. Rating: [[6]]"), Ok(6.0));
    }

    #[test]
    fn out_of_scale() {
        let cases = [
            ("Rating: [[11]]", "11"),
            ("Rating: [[0]]", "0"),
            ("Rating: [[-1]]", "-1"),
            ("Rating: [[10.5]]", "10.5"),
            ("Score: 4/5", "4/5"),
            ("Score: 85/100", "85/100"),
            ("Score: 12", "12"),
        ];
        for (text, label) in cases {
            assert_eq!(
                read(text),
                Err(ParseError::OutOfScale(label.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn different_ratings_conflict() {
        for text in [
            "Rating: [[7]] ... on reflection Rating: [[8]]",
            "Accuracy score: 9/10. Clarity score: 6/10.",
            "Overall score: 7. Final score: 8.",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::Conflicting(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn no_rating() {
        for text in [
            "",
            "The response is fine but I will not give it a number.",
            "It scores 3 points higher than last year.",
            "{\"score_a\": 8, \"score_b\": 6}",
            "[[A]]",
            "Rating: [[seven]]",
            "There are 8/10 steps done.",
        ] {
            assert!(
                matches!(read(text), Err(ParseError::NotFound(_))),
                "{text:?}"
            );
        }
    }
}
