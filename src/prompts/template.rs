//! One judge template: its header (name, kind, output format, description, criteria) and its
//! parsed body, checked at load time so that a broken template fails when it is read, naming
//! its file, rather than when a judge is run.
//!
//! File layout: header lines `key: value`, a line `---`, then the body.
//! - `name` (optional; when given it must equal the file name without `.txt`),
//! - `kind`: `pairwise` | `pointwise` | `critique`,
//! - `output`: `cj2-json` | `brackets` | `arena5` | `judgerbench` | `result` | `pointwise` |
//!   `critique`,
//! - `description`: one line,
//! - `criteria.<language>.<category>: sentence` (any number): the sentence `{criterion}`
//!   renders for items of that language and category; `*` stands for any language or category.
//! - `answer: declaration` (optional): the shape of the answer the prompt asks for, which
//!   constrained decoding enforces (see `grammar`); `answer.<language>: declaration` for the
//!   items of a language whose prompt asks for another shape (other JSON keys).
//!
//! A line starting with `#` is a comment, and so is `#...` after the value of `name`, `kind`
//! and `output` (descriptions and criteria may contain `#`).
//!
//! Per-language bodies: a body line `--- language: <code>` ends the body before it and starts
//! the body for items of that language (compared as criteria compare languages, so `zh` also
//! serves `cn` and `zh-CN`). The first body serves every other language and items without one.
//! The line break before such a line belongs to it, not to the body it ends, so a body can end
//! without one (as a benchmark's prompt may have to). Each body is checked on its own.

use super::criteria::{language_key, Criteria};
use super::grammar::AnswerGrammar;
use super::text::Body;
use super::PromptError;
use crate::verdict::OutputFormat;
use std::collections::BTreeSet;
use std::fmt;

/// What a template asks the judge to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    /// Compare two answers (`{answer_a}`, `{answer_b}`) and name the better one.
    Pairwise,
    /// Rate one answer (`{answer}`).
    Pointwise,
    /// Comment on one answer (`{answer}`) without a verdict.
    Critique,
}

impl TemplateKind {
    pub fn name(self) -> &'static str {
        match self {
            TemplateKind::Pairwise => "pairwise",
            TemplateKind::Pointwise => "pointwise",
            TemplateKind::Critique => "critique",
        }
    }

    fn from_header(s: &str) -> Option<TemplateKind> {
        match s {
            "pairwise" => Some(TemplateKind::Pairwise),
            "pointwise" => Some(TemplateKind::Pointwise),
            "critique" => Some(TemplateKind::Critique),
            _ => None,
        }
    }

    /// The output formats that make sense for this kind of template.
    fn accepts(self, output: OutputFormat) -> bool {
        match self {
            TemplateKind::Pairwise => matches!(
                output,
                OutputFormat::Cj2Json
                    | OutputFormat::Brackets
                    | OutputFormat::Arena5
                    | OutputFormat::JudgerBench
                    | OutputFormat::ResultMarker
            ),
            TemplateKind::Pointwise => output == OutputFormat::Pointwise,
            TemplateKind::Critique => output == OutputFormat::Critique,
        }
    }
}

impl fmt::Display for TemplateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header spelling of an output format (the one template files use).
pub fn output_name(output: OutputFormat) -> &'static str {
    match output {
        OutputFormat::Auto => "auto",
        OutputFormat::Cj2Json => "cj2-json",
        OutputFormat::Brackets => "brackets",
        OutputFormat::Arena5 => "arena5",
        OutputFormat::JudgerBench => "judgerbench",
        OutputFormat::Pointwise => "pointwise",
        OutputFormat::Critique => "critique",
        OutputFormat::Prose => "prose",
        OutputFormat::ResultMarker => "result",
    }
}

fn output_from_header(s: &str) -> Option<OutputFormat> {
    // `auto` is deliberately absent: a template knows what it asks for.
    match s {
        "cj2-json" => Some(OutputFormat::Cj2Json),
        "brackets" => Some(OutputFormat::Brackets),
        "arena5" => Some(OutputFormat::Arena5),
        "judgerbench" => Some(OutputFormat::JudgerBench),
        "pointwise" => Some(OutputFormat::Pointwise),
        "critique" => Some(OutputFormat::Critique),
        "result" => Some(OutputFormat::ResultMarker),
        _ => None,
    }
}

/// Every placeholder a template may use; see `fill.rs` for what each renders.
pub const KNOWN_PLACEHOLDERS: &[&str] = &[
    "question",
    "conversation",
    "answer_a",
    "answer_b",
    "answer",
    "preference",
    "criterion",
    "category",
    "language",
];

/// A loaded, checked judge template.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) name: String,
    pub(crate) kind: TemplateKind,
    pub(crate) output: OutputFormat,
    pub(crate) description: String,
    pub(crate) criteria: Criteria,
    /// The first body: for items whose language has no body of its own.
    pub(crate) body: Body,
    /// `(language key, body)` for each `--- language: <code>` section, in file order.
    pub(crate) localized: Vec<(String, Body)>,
    /// The placeholders and section names of every body.
    pub(crate) placeholders: BTreeSet<String>,
    /// The declared answer grammar: `(None, g)` for every language, `(Some(key), g)` for one.
    pub(crate) answers: Vec<(Option<String>, AnswerGrammar)>,
    /// The file as it was read, for `arbiter prompts show`.
    pub(crate) source_text: String,
}

impl Template {
    /// Parses and checks a template. `name` is its file name without `.txt`; `origin` says
    /// where it came from (a path, or the built-in file) for error messages.
    pub fn parse(name: &str, origin: &str, text: &str) -> Result<Template, PromptError> {
        let bad = |reason: String| PromptError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (header, body_text) = split_header(text).ok_or_else(|| {
            bad("no header: start the file with `kind:` and `output:` lines, then a line `---`, then the prompt".into())
        })?;

        let mut kind = None;
        let mut output = None;
        let mut description = String::new();
        let mut criteria = Criteria::default();
        let mut answers: Vec<(Option<String>, AnswerGrammar)> = Vec::new();
        for (i, raw) in header.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(bad(format!(
                    "header line {}: {line:?} is not `key: value`",
                    i + 1
                )));
            };
            let key = key.trim();
            let value = value.trim();
            let word = || value.split('#').next().unwrap_or("").trim();
            match key {
                "name" => {
                    if word() != name {
                        return Err(bad(format!(
                            "the header says name: {}, but the file is named {name}.txt; make them agree",
                            word()
                        )));
                    }
                }
                "kind" => {
                    kind = Some(TemplateKind::from_header(word()).ok_or_else(|| {
                        bad(format!(
                            "kind: {:?} is not one of pairwise, pointwise, critique",
                            word()
                        ))
                    })?)
                }
                "output" => {
                    output = Some(output_from_header(word()).ok_or_else(|| {
                        bad(format!(
                            "output: {:?} is not one of cj2-json, brackets, arena5, judgerbench, pointwise, critique",
                            word()
                        ))
                    })?)
                }
                "description" => description = value.to_string(),
                _ if key == "answer" || key.starts_with("answer.") => {
                    let language = key.strip_prefix("answer.").map(|l| language_key(l.trim()));
                    if language.as_deref().is_some_and(|l| l.is_empty() || l == "*") {
                        return Err(bad(format!(
                            "header line {}: name one language after `answer.` (for instance answer.zh); plain `answer:` serves all others",
                            i + 1
                        )));
                    }
                    if answers.iter().any(|(l, _)| *l == language) {
                        return Err(bad(format!(
                            "header line {}: `{key}:` is given twice; keep one",
                            i + 1
                        )));
                    }
                    let grammar = AnswerGrammar::parse(value)
                        .map_err(|e| bad(format!("header line {}: {}", i + 1, e.reason)))?;
                    answers.push((language, grammar));
                }
                _ => match key.strip_prefix("criteria.") {
                    Some(selector) => criteria.add(selector, value).map_err(bad)?,
                    None => {
                        return Err(bad(format!(
                            "unknown header key {key:?}; the keys are name, kind, output, description, answer, answer.<language> and criteria.<language>.<category>"
                        )))
                    }
                },
            }
        }
        let kind = kind.ok_or_else(|| bad("the header has no `kind:` line".into()))?;
        let output = output.ok_or_else(|| bad("the header has no `output:` line".into()))?;
        if !kind.accepts(output) {
            return Err(bad(format!(
                "a {kind} template cannot ask for output {}",
                output_name(output)
            )));
        }

        let mut body = None;
        let mut localized: Vec<(String, Body)> = Vec::new();
        let mut placeholders = BTreeSet::new();
        for (language, text) in split_bodies(body_text).map_err(bad)? {
            let what = match &language {
                None => "the prompt text".to_string(),
                Some(l) => format!("the prompt text for language {l}"),
            };
            let parsed = Body::parse(text).map_err(|e| bad(format!("in {what}: {e}")))?;
            let names = parsed.names();
            check_placeholders(kind, &names, &criteria)
                .map_err(|e| bad(format!("in {what}: {e}")))?;
            placeholders.extend(names);
            match language {
                None => body = Some(parsed),
                Some(l) => {
                    let key = language_key(&l);
                    if localized.iter().any(|(k, _)| *k == key) {
                        return Err(bad(format!(
                            "`--- language: {l}` is given twice; keep one prompt per language"
                        )));
                    }
                    localized.push((key, parsed));
                }
            }
        }
        let body = body.expect("split_bodies always yields the first body");
        if !answers.is_empty() && !answers.iter().any(|(l, _)| l.is_none()) {
            return Err(bad(
                "the header has `answer.<language>:` lines but no plain `answer:` for the other languages".into(),
            ));
        }
        Ok(Template {
            name: name.to_string(),
            kind,
            output,
            description,
            criteria,
            body,
            localized,
            placeholders,
            answers,
            source_text: text.to_string(),
        })
    }

    /// The template file's text as it was read (header and body).
    pub fn source_text(&self) -> &str {
        &self.source_text
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> TemplateKind {
        self.kind
    }

    /// The output format the template asks for, which selects how the judge's text is read.
    pub fn output(&self) -> OutputFormat {
        self.output
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The placeholders and section names the body uses, sorted.
    pub fn placeholders(&self) -> &BTreeSet<String> {
        &self.placeholders
    }

    /// Whether any of the template's bodies uses this placeholder or section.
    pub fn uses(&self, placeholder: &str) -> bool {
        self.placeholders.contains(placeholder)
    }

    /// The answer grammar the template declares for items of `language` (its own, else the
    /// plain `answer:`), or `None` when it declares none.
    pub fn answer_for(&self, language: Option<&str>) -> Option<&AnswerGrammar> {
        let key = language.map(language_key);
        self.answers
            .iter()
            .find(|(l, _)| l.is_some() && *l == key)
            .or_else(|| self.answers.iter().find(|(l, _)| l.is_none()))
            .map(|(_, g)| g)
    }

    /// Whether the template declares an answer grammar (constrained decoding is possible).
    pub fn has_answer_grammar(&self) -> bool {
        !self.answers.is_empty()
    }

    /// The languages that have a body of their own (`--- language: <code>`), as keys (`zh`).
    pub fn languages(&self) -> Vec<&str> {
        self.localized.iter().map(|(l, _)| l.as_str()).collect()
    }

    /// The body for an item of this language: its own, else the first.
    pub(crate) fn body_for(&self, language: Option<&str>) -> &Body {
        language
            .map(language_key)
            .and_then(|key| self.localized.iter().find(|(l, _)| *l == key))
            .map_or(&self.body, |(_, b)| b)
    }
}

/// Splits at the first line that is exactly `---`.
fn split_header(text: &str) -> Option<(&str, &str)> {
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "---" {
            return Some((&text[..start], &text[start + line.len()..]));
        }
        start += line.len();
    }
    None
}

/// The language a body line `--- language: <code>` starts a body for, if it is one.
fn language_line(line: &str) -> Option<&str> {
    let rest = line.trim_end().strip_prefix("---")?.trim_start();
    let code = rest
        .strip_prefix("language")?
        .trim_start()
        .strip_prefix(':')?;
    Some(code.trim())
}

/// Splits the text after the header into its bodies: the first (language `None`), then one per
/// `--- language: <code>` line. The line break before such a line is not part of the body it
/// ends.
fn split_bodies(text: &str) -> Result<Vec<(Option<String>, &str)>, String> {
    let mut bodies = Vec::new();
    let mut language: Option<String> = None;
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some(code) = language_line(line.trim_end_matches(['\n', '\r'])) {
            if code.is_empty() || code == "*" || code.contains(char::is_whitespace) {
                return Err(format!(
                    "{:?}: name one language after `--- language:` (for instance zh); the first prompt serves all others",
                    line.trim_end()
                ));
            }
            let before = &text[start..offset];
            let before = before
                .strip_suffix('\n')
                .map(|b| b.strip_suffix('\r').unwrap_or(b))
                .unwrap_or(before);
            bodies.push((language.take(), before));
            language = Some(code.to_string());
            start = offset + line.len();
        }
        offset += line.len();
    }
    bodies.push((language, &text[start..]));
    Ok(bodies)
}

fn check_placeholders(
    kind: TemplateKind,
    used: &BTreeSet<String>,
    criteria: &Criteria,
) -> Result<(), String> {
    if let Some(unknown) = used
        .iter()
        .find(|p| !KNOWN_PLACEHOLDERS.contains(&p.as_str()))
    {
        return Err(format!(
            "unknown placeholder {{{unknown}}}; the known ones are {}",
            KNOWN_PLACEHOLDERS
                .iter()
                .map(|p| format!("{{{p}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let has = |p: &str| used.contains(p);
    if !has("question") {
        return Err("the prompt never shows the question: add {question}".into());
    }
    match kind {
        TemplateKind::Pairwise => {
            for p in ["answer_a", "answer_b"] {
                if !has(p) {
                    return Err(format!(
                        "a pairwise template must show both answers, and {{{p}}} is missing"
                    ));
                }
            }
            if has("answer") {
                return Err(
                    "a pairwise template shows {answer_a} and {answer_b}, not {answer}".into(),
                );
            }
        }
        TemplateKind::Pointwise | TemplateKind::Critique => {
            if !has("answer") {
                return Err(format!(
                    "a {kind} template must show the answer it judges: add {{answer}}"
                ));
            }
            if let Some(p) = ["answer_a", "answer_b", "preference"]
                .into_iter()
                .find(|p| has(p))
            {
                return Err(format!(
                    "a {kind} template judges one answer and cannot use {{{p}}}; make it pairwise or use {{answer}}"
                ));
            }
        }
    }
    if has("criterion") && criteria.is_empty() {
        return Err(
            "{criterion} is used but the header has no criteria.<language>.<category> lines".into(),
        );
    }
    if !has("criterion") && !criteria.is_empty() {
        return Err("the header has criteria lines but the prompt never shows {criterion}".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRWISE: &str = "kind: pairwise  # a comment\noutput: brackets\ndescription: test #1\n---\n{question} {answer_a} {answer_b}";

    proptest::proptest! {
        #[test]
        fn parsing_any_file_never_panics(text in "(kind: pairwise\n|output: brackets\n|name: t\n|criteria\\.[a-z*]{0,2}\\.[A-Za-z*& ]{0,4}: x\n|---\n|--- language: ?[a-z*]{0,3}\r?\n|\\{[#/]?[a-z_]{1,9}\\}|[^\n]{0,8}\n){0,12}") {
            let _ = Template::parse("t", "t.txt", &text);
        }
    }

    #[test]
    fn header_and_body_are_read() {
        let t = Template::parse("t", "t.txt", PAIRWISE).expect("valid");
        assert_eq!(t.kind(), TemplateKind::Pairwise);
        assert_eq!(t.output(), OutputFormat::Brackets);
        assert_eq!(t.description(), "test #1");
        assert_eq!(
            t.placeholders().iter().cloned().collect::<Vec<_>>(),
            vec!["answer_a", "answer_b", "question"]
        );
    }

    fn invalid(name: &str, text: &str) -> String {
        match Template::parse(name, "user/bad.txt", text) {
            Ok(_) => panic!("{text:?} should be rejected"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("user/bad.txt"), "{msg} should name the file");
                msg
            }
        }
    }

    #[test]
    fn pairwise_without_both_answers_is_rejected_naming_the_file() {
        let msg = invalid(
            "bad",
            "kind: pairwise\noutput: cj2-json\n---\n{question} {answer_a}",
        );
        assert!(msg.contains("{answer_b}"), "{msg}");
    }

    #[test]
    fn kind_and_output_must_agree() {
        let msg = invalid(
            "bad",
            "kind: pointwise\noutput: brackets\n---\n{question} {answer}",
        );
        assert!(msg.contains("brackets"), "{msg}");
    }

    #[test]
    fn single_answer_kinds_reject_pairwise_placeholders() {
        invalid(
            "bad",
            "kind: critique\noutput: critique\n---\n{question} {answer} {answer_a}",
        );
        invalid("bad", "kind: pointwise\noutput: pointwise\n---\n{question}");
    }

    const BILINGUAL: &str = "kind: pairwise\noutput: judgerbench\n---\nEN {question} {answer_a} {answer_b}\n---\nstill EN\n--- language: zh\nZH {question} {answer_a} {answer_b}\n";

    #[test]
    fn per_language_bodies_are_split_at_their_lines() {
        let t = Template::parse("t", "t.txt", BILINGUAL).expect("valid");
        assert_eq!(t.languages(), vec!["zh"]);
        let render = |b: &Body| {
            b.render_with(&mut |name| Some(format!("<{name}>")))
                .expect("renders")
        };
        // A plain `---` line in a body is text; the line break before `--- language:` is not.
        assert_eq!(
            render(t.body_for(None)),
            "EN <question> <answer_a> <answer_b>\n---\nstill EN"
        );
        assert_eq!(
            render(t.body_for(Some("zh"))),
            "ZH <question> <answer_a> <answer_b>\n"
        );
        for same in ["cn", "zh-CN", "ZH"] {
            assert_eq!(t.body_for(Some(same)), t.body_for(Some("zh")), "{same}");
        }
        assert_eq!(t.body_for(Some("fr")), t.body_for(None));
        // CRLF files: the separator takes `\r\n`.
        let crlf = BILINGUAL.replace('\n', "\r\n");
        let t = Template::parse("t", "t.txt", &crlf).expect("valid");
        assert!(render(t.body_for(None)).ends_with("still EN"));
        assert!(Template::parse("t", "t.txt", PAIRWISE)
            .expect("valid")
            .languages()
            .is_empty());
    }

    #[test]
    fn every_language_body_is_checked_on_its_own() {
        let msg = invalid(
            "bad",
            "kind: pairwise\noutput: brackets\n---\n{question} {answer_a} {answer_b}\n--- language: zh\n{question} {answer_a}",
        );
        assert!(
            msg.contains("language zh") && msg.contains("{answer_b}"),
            "{msg}"
        );
        let msg = invalid(
            "bad",
            "kind: pairwise\noutput: brackets\n---\n{question} {answer_a} {answer_b}\n--- language: zh\n{question} {answer_a} {answer_b}\n--- language: cn\n{question} {answer_a} {answer_b}",
        );
        assert!(msg.contains("twice"), "{msg}");
        for code in ["", "*", "zh en"] {
            let msg = invalid(
                "bad",
                &format!("kind: pairwise\noutput: brackets\n---\n{{question}} {{answer_a}} {{answer_b}}\n--- language: {code}\n{{question}} {{answer_a}} {{answer_b}}"),
            );
            assert!(msg.contains("--- language:"), "{code:?}: {msg}");
        }
        let msg = invalid(
            "bad",
            "kind: pairwise\noutput: judgerbench\ncriteria.*.*: c\n---\n{criterion} {question} {answer_a} {answer_b}\n--- language: zh\n{question} {answer_a} {answer_b}",
        );
        assert!(
            msg.contains("language zh") && msg.contains("{criterion}"),
            "{msg}"
        );
    }

    #[test]
    fn other_header_problems_are_reported() {
        assert!(invalid("bad", "{question}").contains("no header"));
        assert!(invalid("bad", "output: brackets\n---\n").contains("kind"));
        assert!(invalid("bad", "kind: judge\noutput: brackets\n---\n").contains("judge"));
        assert!(invalid(
            "bad",
            "name: other\nkind: pairwise\noutput: brackets\n---\n"
        )
        .contains("other"));
        assert!(invalid("bad", "kind: pairwise\nouput: brackets\n---\n").contains("ouput"));
        assert!(invalid(
            "bad",
            "kind: pairwise\noutput: brackets\n---\n{question}{answer_a}{answer_b}{typo}"
        )
        .contains("{typo}"));
        assert!(invalid(
            "bad",
            "kind: pairwise\noutput: brackets\n---\n{question}{answer_a}{answer_b}{criterion}"
        )
        .contains("criteria"));
    }
}
