//! Per-language, per-category criterion sentences declared in a template's header
//! (`criteria.en.Knowledge: ...`), from which `{criterion}` picks the one for an item.
//!
//! Matching forgives the spellings datasets use for the same thing: languages compare by their
//! primary subtag, case-insensitively, with `cn` read as `zh` (JudgerBenchV2 writes `cn`);
//! categories compare case-insensitively with `&` read as `and` and everything but letters and
//! digits ignored, so `Reason & Analysis` matches `Reason_and_analysis`. The most specific
//! line wins: language and category, then language with `*`, then `*` with category, then `*.*`.

/// The criterion lines of one template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Criteria {
    /// (language key or `None` for `*`, category key or `None` for `*`, sentence)
    lines: Vec<(Option<String>, Option<String>, String)>,
}

pub(crate) fn language_key(language: &str) -> String {
    let primary = language
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if primary == "cn" {
        "zh".to_string()
    } else {
        primary
    }
}

pub(crate) fn category_key(category: &str) -> String {
    category
        .to_lowercase()
        .replace('&', "and")
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

impl Criteria {
    /// Adds the line `criteria.<selector>: <sentence>`; `selector` is `<language>.<category>`.
    pub(crate) fn add(&mut self, selector: &str, sentence: &str) -> Result<(), String> {
        let Some((language, category)) = selector.split_once('.') else {
            return Err(format!(
                "criteria.{selector}: write criteria.<language>.<category> (use * for any)"
            ));
        };
        let pick = |s: &str, key: fn(&str) -> String| {
            let s = s.trim();
            (s != "*").then(|| key(s))
        };
        let language = pick(language, language_key);
        let category = pick(category, category_key);
        if language.as_deref() == Some("") || category.as_deref() == Some("") {
            return Err(format!(
                "criteria.{selector}: the language and the category must not be empty (use * for any)"
            ));
        }
        if sentence.is_empty() {
            return Err(format!(
                "criteria.{selector} has no sentence after the colon"
            ));
        }
        if self
            .lines
            .iter()
            .any(|(l, c, _)| *l == language && *c == category)
        {
            return Err(format!("criteria.{selector} is given twice"));
        }
        self.lines.push((language, category, sentence.to_string()));
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The sentence for an item of this language and category, if any line covers it.
    pub(crate) fn select(&self, language: Option<&str>, category: Option<&str>) -> Option<&str> {
        let language = language.map(language_key);
        let category = category.map(category_key);
        let find = |want_l: bool, want_c: bool| {
            self.lines.iter().find_map(|(l, c, sentence)| {
                let l_ok = if want_l {
                    l.is_some() && *l == language
                } else {
                    l.is_none()
                };
                let c_ok = if want_c {
                    c.is_some() && *c == category
                } else {
                    c.is_none()
                };
                (l_ok && c_ok).then_some(sentence.as_str())
            })
        };
        find(true, true)
            .or_else(|| find(true, false))
            .or_else(|| find(false, true))
            .or_else(|| find(false, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria(lines: &[(&str, &str)]) -> Criteria {
        let mut c = Criteria::default();
        for (sel, s) in lines {
            c.add(sel, s).expect("valid line");
        }
        c
    }

    #[test]
    fn most_specific_line_wins() {
        let c = criteria(&[
            ("*.*", "any"),
            ("en.*", "english"),
            ("*.Knowledge", "knowledge"),
            ("en.Knowledge", "english knowledge"),
        ]);
        assert_eq!(
            c.select(Some("en"), Some("Knowledge")),
            Some("english knowledge")
        );
        assert_eq!(c.select(Some("en"), Some("IF")), Some("english"));
        assert_eq!(c.select(Some("zh"), Some("knowledge")), Some("knowledge"));
        assert_eq!(c.select(None, None), Some("any"));
    }

    #[test]
    fn spellings_of_languages_and_categories_match() {
        let c = criteria(&[("zh.Reason_and_analysis", "r"), ("en-US.Code & AI", "c")]);
        assert_eq!(c.select(Some("cn"), Some("Reason & Analysis")), Some("r"));
        assert_eq!(
            c.select(Some("zh-CN"), Some("reason and analysis")),
            Some("r")
        );
        assert_eq!(c.select(Some("EN"), Some("Code_and_AI")), Some("c"));
        assert_eq!(c.select(Some("en"), Some("Creation")), None);
        assert_eq!(c.select(None, Some("Code & AI")), None);
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let mut c = Criteria::default();
        assert!(c.add("en", "x").is_err());
        assert!(c.add("en.", "x").is_err());
        assert!(c.add("en.IF", "").is_err());
        c.add("en.IF", "x").expect("first");
        assert!(c.add("EN.if", "y").is_err(), "same selector twice");
    }
}
