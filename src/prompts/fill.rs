//! Filling a template from an `Item`: what each placeholder renders, and the layout of
//! conversations in a prompt.
//!
//! Placeholders:
//! - `{question}`: the last user turn of the item's shared context.
//! - `{conversation}`: every turn of the shared context before that last user turn, in the
//!   conversation layout below; empty for a single-turn item, so `{#conversation}...{/conversation}`
//!   shows a history section only when there is one.
//! - `{answer_a}`, `{answer_b}` (pairwise): each side's answer block, exchanged when
//!   `RenderOptions::swap` is set. `{answer}` (pointwise, critique): the block of
//!   `RenderOptions::side`. A block is the answer's text as it is; when the side has its own
//!   earlier turns (`Response::prior_turns`), the block is that side's dialogue in the
//!   conversation layout, ending with its final answer as the last `### Assistant:` turn.
//! - `{preference}`: the style preference sentence, empty when none is set. A pairwise template
//!   that does not place `{preference}` gets it appended at its end, after a blank line.
//! - `{criterion}`: the header's criterion sentence for the item's language and category.
//! - `{category}`, `{language}`: the item's own.
//!
//! Conversation layout: each turn is `### User:` (or `### Assistant:`, `### System:`) on its
//! own line followed by the text, turns separated by a blank line.
//!
//! A template that never shows `{conversation}`, given an item with earlier turns, still shows
//! them: the earlier conversation is put before the whole prompt under a short heading, so a
//! judge never sees a follow-up question without what it follows up.

use super::{PromptError, RenderOptions, Side, Template, TemplateKind};
use crate::dataset::{Item, Message, Response};

fn role_heading(role: &str) -> String {
    match role {
        "user" | "human" => "User".to_string(),
        "assistant" | "gpt" | "model" => "Assistant".to_string(),
        "system" => "System".to_string(),
        other => {
            let mut chars = other.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => "Unknown".to_string(),
            }
        }
    }
}

/// Renders turns in the conversation layout (`### User:\n...`, blank line between turns).
pub fn conversation_text(turns: &[Message]) -> String {
    turns
        .iter()
        .map(|m| format!("### {}:\n{}", role_heading(&m.role), m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The turns before the last user turn: what `{conversation}` shows.
fn earlier_turns(item: &Item) -> &[Message] {
    match item.context.iter().rposition(|m| m.role == "user") {
        Some(last) => &item.context[..last],
        None => &item.context,
    }
}

fn answer_block(response: &Response) -> String {
    if response.prior_turns.is_empty() {
        return response.text.clone();
    }
    let mut turns = response.prior_turns.clone();
    turns.push(Message::new("assistant", response.text.clone()));
    conversation_text(&turns)
}

const HISTORY_HEADING: &str = "The conversation so far, before the question below:";

impl Template {
    /// Renders the prompt for one item, from the body for its language (see `template.rs`).
    /// Fails, naming the placeholder and the template, when the item cannot fill a placeholder
    /// the prompt shows (a `{criterion}` for a category the header does not cover, a
    /// `{category}` on an item without one...).
    pub fn render(&self, item: &Item, opts: &RenderOptions) -> Result<String, PromptError> {
        let preference = opts.preference.as_deref().map(str::trim).unwrap_or("");
        if !preference.is_empty() && self.kind != TemplateKind::Pairwise {
            return Err(PromptError::PreferenceNeedsPairwise {
                template: self.name.clone(),
            });
        }
        let (first, second) = if opts.swap {
            (&item.response_b, &item.response_a)
        } else {
            (&item.response_a, &item.response_b)
        };
        // Why a value is missing, kept for the error message.
        let mut why_missing = String::new();
        let mut value = |name: &str| -> Option<String> {
            let v = match name {
                "question" => {
                    let has_user_turn = item.context.iter().any(|m| m.role == "user");
                    if !has_user_turn {
                        why_missing = "the item has no user turn".into();
                    }
                    has_user_turn.then(|| item.question().to_string())
                }
                "conversation" => Some(conversation_text(earlier_turns(item))),
                "answer_a" => Some(answer_block(first)),
                "answer_b" => Some(answer_block(second)),
                "answer" => Some(answer_block(match opts.side {
                    Side::A => &item.response_a,
                    Side::B => &item.response_b,
                })),
                "preference" => Some(preference.to_string()),
                "criterion" => {
                    let found = self
                        .criteria
                        .select(item.language.as_deref(), item.category.as_deref());
                    if found.is_none() {
                        why_missing = format!(
                            "no criteria line covers language {} and category {}; add one, or a `*` line",
                            item.language.as_deref().unwrap_or("(none)"),
                            item.category.as_deref().unwrap_or("(none)")
                        );
                    }
                    found.map(str::to_string)
                }
                "category" => {
                    if item.category.is_none() {
                        why_missing = "the item has no category".into();
                    }
                    item.category.clone()
                }
                "language" => {
                    if item.language.is_none() {
                        why_missing = "the item has no language".into();
                    }
                    item.language.clone()
                }
                _ => {
                    why_missing = "it is not a known placeholder".into();
                    None
                }
            };
            v
        };
        let body = self.body_for(item.language.as_deref());
        let names = body.names();
        let mut out = body.render_with(&mut value).map_err(|e| match e {
            super::text::TextError::Missing { placeholder } => PromptError::Unfilled {
                template: self.name.clone(),
                item: item.id.clone(),
                placeholder,
                reason: why_missing.clone(),
            },
            other => PromptError::Invalid {
                origin: self.name.clone(),
                reason: other.to_string(),
            },
        })?;

        if !names.contains("preference") && !preference.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
            out.push_str(preference);
            out.push('\n');
        }
        let earlier = earlier_turns(item);
        if !names.contains("conversation") && !earlier.is_empty() {
            out = format!(
                "{HISTORY_HEADING}\n\n{}\n\n{out}",
                conversation_text(earlier)
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Response;

    fn response(model: &str, text: &str) -> Response {
        Response {
            model: model.into(),
            text: text.into(),
            prior_turns: Vec::new(),
        }
    }

    pub(crate) fn item(context: Vec<Message>) -> Item {
        Item {
            id: "q1".into(),
            category: None,
            language: None,
            context,
            response_a: response("m1", "answer one"),
            response_b: response("m2", "answer two"),
            judgments: Vec::new(),
            gold: None,
            meta: Default::default(),
        }
    }

    fn template(text: &str) -> Template {
        Template::parse("t", "t.txt", text).expect("valid test template")
    }

    const PAIR: &str = "kind: pairwise\noutput: brackets\n---\n{#conversation}\nHistory:\n{conversation}\n\n{/conversation}\nQ: {question}\nA: {answer_a}\nB: {answer_b}\n";

    #[test]
    fn conversation_layout_is_headed_turns() {
        let text = conversation_text(&[
            Message::new("system", "be brief"),
            Message::new("user", "hi"),
            Message::new("assistant", "hello"),
        ]);
        assert_eq!(
            text,
            "### System:\nbe brief\n\n### User:\nhi\n\n### Assistant:\nhello"
        );
    }

    #[test]
    fn single_turn_hides_history_and_multi_turn_shows_it() {
        let t = template(PAIR);
        let single = item(vec![Message::new("user", "2+2?")]);
        let out = t
            .render(&single, &RenderOptions::default())
            .expect("renders");
        assert_eq!(out, "Q: 2+2?\nA: answer one\nB: answer two\n");

        let multi = item(vec![
            Message::new("user", "hi"),
            Message::new("assistant", "hello"),
            Message::new("user", "2+2?"),
        ]);
        let out = t
            .render(&multi, &RenderOptions::default())
            .expect("renders");
        assert_eq!(
            out,
            "History:\n### User:\nhi\n\n### Assistant:\nhello\n\nQ: 2+2?\nA: answer one\nB: answer two\n"
        );
    }

    #[test]
    fn template_without_conversation_still_shows_history_first() {
        let t =
            template("kind: pairwise\noutput: brackets\n---\nQ: {question} {answer_a} {answer_b}");
        let multi = item(vec![
            Message::new("user", "first"),
            Message::new("assistant", "reply"),
            Message::new("user", "second"),
        ]);
        let out = t
            .render(&multi, &RenderOptions::default())
            .expect("renders");
        let history = out.find("### User:\nfirst").expect("history shown");
        let question = out.find("Q: second").expect("question shown");
        assert!(history < question, "{out}");
    }

    #[test]
    fn prior_turns_render_inside_each_answer_block() {
        let t = template(PAIR);
        let mut it = item(vec![Message::new("user", "start")]);
        it.response_a.prior_turns = vec![
            Message::new("assistant", "a-early"),
            Message::new("user", "more?"),
        ];
        let out = t.render(&it, &RenderOptions::default()).expect("renders");
        assert!(out.contains(
            "A: ### Assistant:\na-early\n\n### User:\nmore?\n\n### Assistant:\nanswer one\nB: answer two"
        ), "{out}");
    }

    #[test]
    fn swap_exchanges_the_answer_blocks() {
        let t = template(PAIR);
        let mut it = item(vec![Message::new("user", "q")]);
        it.response_b.prior_turns = vec![Message::new("assistant", "b-early")];
        let straight = t.render(&it, &RenderOptions::default()).expect("renders");
        let swapped = t
            .render(
                &it,
                &RenderOptions {
                    swap: true,
                    ..Default::default()
                },
            )
            .expect("renders");
        let block_b = answer_block(&it.response_b);
        assert_eq!(straight, format!("Q: q\nA: answer one\nB: {block_b}\n"));
        assert_eq!(swapped, format!("Q: q\nA: {block_b}\nB: answer one\n"));
    }

    #[test]
    fn side_picks_the_pointwise_answer() {
        let t = template("kind: pointwise\noutput: pointwise\n---\n{question}|{answer}");
        let it = item(vec![Message::new("user", "q")]);
        let a = t.render(&it, &RenderOptions::default()).expect("renders");
        let b = t
            .render(
                &it,
                &RenderOptions {
                    side: Side::B,
                    ..Default::default()
                },
            )
            .expect("renders");
        assert_eq!((a.as_str(), b.as_str()), ("q|answer one", "q|answer two"));
    }

    #[test]
    fn preference_goes_to_its_placeholder_or_the_end() {
        let opts = RenderOptions {
            preference: Some("Prefer short.".into()),
            ..Default::default()
        };
        let it = item(vec![Message::new("user", "q")]);
        let placed = template(
            "kind: pairwise\noutput: brackets\n---\n{question}{#preference}\n[{preference}]{/preference}\nend{answer_a}{answer_b}",
        );
        assert_eq!(
            placed.render(&it, &opts).expect("renders"),
            "q\n[Prefer short.]\nendanswer oneanswer two"
        );
        assert_eq!(
            placed
                .render(&it, &RenderOptions::default())
                .expect("renders"),
            "q\nendanswer oneanswer two"
        );
        let appended =
            template("kind: pairwise\noutput: brackets\n---\n{question} {answer_a} {answer_b}");
        assert_eq!(
            appended.render(&it, &opts).expect("renders"),
            "q answer one answer two\n\nPrefer short.\n"
        );
        let pointwise = template("kind: pointwise\noutput: pointwise\n---\n{question}{answer}");
        let err = pointwise
            .render(&it, &opts)
            .expect_err("preference is pairwise only");
        assert!(err.to_string().contains("t"), "{err}");
    }

    #[test]
    fn unfillable_placeholder_names_itself_and_the_template() {
        let t = template(
            "kind: pairwise\noutput: brackets\n---\n{question} ({category}) {answer_a} {answer_b}",
        );
        let it = item(vec![Message::new("user", "q")]);
        let err = t
            .render(&it, &RenderOptions::default())
            .expect_err("no category");
        match &err {
            PromptError::Unfilled {
                template,
                placeholder,
                ..
            } => {
                assert_eq!((template.as_str(), placeholder.as_str()), ("t", "category"));
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("{category}") && msg.contains("t"), "{msg}");

        let no_user = item(vec![Message::new("system", "s")]);
        let err = t
            .render(&no_user, &RenderOptions::default())
            .expect_err("no question");
        assert!(err.to_string().contains("{question}"), "{err}");
    }

    #[test]
    fn the_body_follows_the_item_language_with_its_own_layout_rules() {
        let t = template(
            "kind: pairwise\noutput: judgerbench\ncriteria.en.*: Be fair.\ncriteria.zh.*: 公平。\n---\n{criterion} Q: {question} {answer_a} {answer_b}{#preference}\n[{preference}]{/preference}\n--- language: zh\n{criterion} 问: {question} {answer_a} {answer_b}",
        );
        let mut it = item(vec![Message::new("user", "q")]);
        let render = |it: &Item, opts: &RenderOptions| t.render(it, opts).expect("renders");
        let plain = RenderOptions::default();
        it.language = Some("en".into());
        assert_eq!(render(&it, &plain), "Be fair. Q: q answer one answer two");
        it.language = None;
        let err = t
            .render(&it, &plain)
            .expect_err("no criterion without a language");
        assert!(err.to_string().contains("{criterion}"), "{err}");
        it.language = Some("cn".into());
        assert_eq!(render(&it, &plain), "公平。 问: q answer one answer two");
        // The preference goes where the chosen body puts it, else at its end.
        let pref = RenderOptions {
            preference: Some("P.".into()),
            ..Default::default()
        };
        assert_eq!(
            render(&it, &pref),
            "公平。 问: q answer one answer two\n\nP.\n"
        );
        it.language = Some("en".into());
        assert_eq!(
            render(&it, &pref),
            "Be fair. Q: q answer one answer two\n[P.]"
        );
    }

    #[test]
    fn criterion_follows_language_and_category() {
        let t = template(
            "kind: pairwise\noutput: judgerbench\ncriteria.en.Knowledge: Check the facts.\ncriteria.zh.Knowledge: 核对事实。\ncriteria.en.*: Judge overall quality.\n---\n{criterion}|{question}|{answer_a}|{answer_b}",
        );
        let mut it = item(vec![Message::new("user", "q")]);
        it.language = Some("en".into());
        it.category = Some("Knowledge".into());
        let render = |it: &Item| t.render(it, &RenderOptions::default());
        assert!(render(&it)
            .expect("renders")
            .starts_with("Check the facts.|"));
        it.language = Some("cn".into());
        assert!(render(&it).expect("renders").starts_with("核对事实。|"));
        it.language = Some("en".into());
        it.category = Some("Creation".into());
        assert!(render(&it)
            .expect("renders")
            .starts_with("Judge overall quality.|"));
        it.language = Some("zh".into());
        let err = render(&it).expect_err("no zh line for Creation");
        let msg = err.to_string();
        assert!(
            msg.contains("{criterion}") && msg.contains("Creation"),
            "{msg}"
        );
    }
}
