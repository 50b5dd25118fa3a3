//! Ready-made style preferences: one sentence that turns any pairwise template into a
//! style judge (`RenderOptions::preference`), so a user can ask "which answer would a reader
//! who likes detail prefer?" without keeping a copy of the template.

/// The named preference presets, `(name, sentence)`.
pub const PREFERENCE_PRESETS: &[(&str, &str)] = &[
    (
        "detailed",
        "The user values thoroughness: when both answers are correct, prefer the one that explains more, covers more of the relevant cases and gives useful examples, as long as the extra length adds substance rather than repetition.",
    ),
    (
        "concise",
        "The user values brevity: when both answers are correct, prefer the one that gets to the point with the fewest words, and count padding, repetition and unrequested background against an answer.",
    ),
    (
        "plain-language",
        "The user is not an expert: when both answers are correct, prefer the one a newcomer could follow, with everyday words, terms explained when first used, and no unexplained jargon.",
    ),
];

/// The sentence of a named preset.
pub fn preference_preset(name: &str) -> Option<&'static str> {
    PREFERENCE_PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, sentence)| *sentence)
}

/// What a user typed as a preference: a preset's name gives its sentence, anything else is
/// taken as the sentence itself.
pub fn resolve_preference(name_or_sentence: &str) -> String {
    let trimmed = name_or_sentence.trim();
    preference_preset(trimmed)
        .map(str::to_string)
        .unwrap_or_else(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_resolve_by_name_and_other_text_passes_through() {
        assert_eq!(
            resolve_preference(" concise "),
            preference_preset("concise").expect("preset exists")
        );
        assert_eq!(resolve_preference("Prefer rhymes."), "Prefer rhymes.");
        assert!(preference_preset("verbose").is_none());
    }

    #[test]
    fn presets_are_single_sentences_with_distinct_names() {
        let mut names: Vec<_> = PREFERENCE_PRESETS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PREFERENCE_PRESETS.len());
        for (name, sentence) in PREFERENCE_PRESETS {
            assert!(!sentence.contains('\n'), "{name} spans lines");
            assert!(
                !sentence.contains('{') && !sentence.contains('}'),
                "{name} has braces"
            );
            assert_eq!(sentence.matches(". ").count(), 0, "{name} is one sentence");
        }
    }
}
