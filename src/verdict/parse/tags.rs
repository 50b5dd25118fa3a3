//! `[[...]]` tags: the double-bracketed verdicts and ratings of MT-Bench, CompassJudger-1 and
//! ArenaHard. Shared by the readers of those formats so they agree on what a tag is.

use regex::Regex;
use std::sync::LazyLock;

/// A tag's content: short, on one line, without brackets. Longer bracketed text is a wiki
/// link or a quotation, never a verdict.
static TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[\[([^\[\]\n]{1,24})\]\]").expect("the tag pattern is a valid regex")
});

/// The content of every tag, in order of appearance, with all whitespace removed
/// (`[[ A >> B ]]` gives `A>>B`).
pub(super) fn contents(text: &str) -> impl Iterator<Item = String> + '_ {
    spans(text).map(|(_, content)| content)
}

/// Every tag with its byte range (the whole `[[...]]`) and its content, as `contents` gives it.
pub(super) fn spans(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, String)> + '_ {
    TAG.captures_iter(text).filter_map(|c| {
        let whole = c.get(0)?;
        let content = c[1].chars().filter(|ch| !ch.is_whitespace()).collect();
        Some((whole.range(), content))
    })
}

/// The distinct items in order of first appearance.
pub(super) fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// `[[A>B]]`, `[[B>A]]` for a conflict message.
pub(super) fn list(labels: &[impl AsRef<str>]) -> String {
    labels
        .iter()
        .map(|l| format!("[[{}]]", l.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_with_spaces_removed() {
        let found: Vec<_> = contents("x [[A]] y [[ B >> A ]] [[[C]]] [[\nA]] [[]]").collect();
        assert_eq!(found, ["A", "B>>A", "C"]);
    }

    #[test]
    fn long_bracketed_text_is_not_a_tag() {
        assert_eq!(
            contents("see [[Some Long Wiki Page Title Here]]").count(),
            0
        );
    }

    #[test]
    fn distinct_keeps_first_appearance_order() {
        assert_eq!(distinct(["b", "a", "b", "c", "a"]), ["b", "a", "c"]);
    }
}
