//! End-to-end tests of the prompt library: the shipped templates, rendering real items, and
//! templates from a user directory.

use arbiter::dataset::{Item, Message, Response};
use arbiter::prompts::{
    preference_preset, Library, PromptError, RenderOptions, Side, Source, TemplateKind,
    KNOWN_PLACEHOLDERS, PREFERENCE_PRESETS,
};
use arbiter::verdict::OutputFormat;
use std::fs;

const SHIPPED: &[&str] = &[
    "cj2-critical-thinking",
    "cj2-quick",
    "pairwise-ab",
    "arena-5way",
    "pointwise-10",
    "critique",
    "judgerbench-v2",
    "prometheus2-relative",
    "skywork-critic",
    "selene-pairwise",
    "flow-judge",
];

fn response(model: &str, text: &str) -> Response {
    Response {
        model: model.into(),
        text: text.into(),
        prior_turns: Vec::new(),
    }
}

fn single_turn() -> Item {
    Item {
        id: "single".into(),
        category: Some("Knowledge".into()),
        language: Some("en".into()),
        context: vec![Message::new(
            "user",
            "What is the boiling point of water at sea level?",
        )],
        response_a: response("alpha", "ALPHA: 100 degrees Celsius."),
        response_b: response("beta", "BETA: about 90 degrees."),
        judgments: Vec::new(),
        gold: None,
        meta: Default::default(),
    }
}

fn multi_turn() -> Item {
    let mut item = single_turn();
    item.id = "multi".into();
    item.context = vec![
        Message::new("user", "EARLIER-QUESTION: name a gas."),
        Message::new("assistant", "EARLIER-ANSWER: nitrogen."),
        Message::new("user", "And its boiling point?"),
    ];
    item
}

fn library() -> Library {
    Library::with_user_dir(None).expect("built-in templates load")
}

fn leftover_tags(text: &str) -> Vec<String> {
    KNOWN_PLACEHOLDERS
        .iter()
        .flat_map(|p| [format!("{{{p}}}"), format!("{{#{p}}}"), format!("{{/{p}}}")])
        .filter(|tag| text.contains(tag.as_str()))
        .collect()
}

#[test]
fn every_shipped_template_loads_with_a_consistent_header() {
    let lib = library();
    let listed: Vec<String> = lib.list().into_iter().map(|i| i.name).collect();
    for name in SHIPPED {
        assert!(listed.contains(&name.to_string()), "{name} is not listed");
        let t = lib.get(name).expect("shipped template");
        let p = t.placeholders();
        assert!(p.contains("question"), "{name}");
        match t.kind() {
            TemplateKind::Pairwise => {
                assert!(p.contains("answer_a") && p.contains("answer_b"), "{name}");
                assert!(!p.contains("answer"), "{name}");
                assert!(matches!(
                    t.output(),
                    OutputFormat::Cj2Json
                        | OutputFormat::Brackets
                        | OutputFormat::Arena5
                        | OutputFormat::JudgerBench
                        | OutputFormat::ResultMarker
                ));
            }
            TemplateKind::Pointwise => {
                assert!(p.contains("answer"), "{name}");
                assert_eq!(t.output(), OutputFormat::Pointwise);
            }
            TemplateKind::Critique => {
                assert!(p.contains("answer"), "{name}");
                assert_eq!(t.output(), OutputFormat::Critique);
            }
        }
        assert!(!t.description().is_empty(), "{name} has no description");
    }
    let expect = |name: &str| lib.get(name).expect("shipped").output();
    assert_eq!(expect("cj2-critical-thinking"), OutputFormat::Cj2Json);
    assert_eq!(expect("cj2-quick"), OutputFormat::Cj2Json);
    assert_eq!(expect("pairwise-ab"), OutputFormat::Brackets);
    assert_eq!(expect("arena-5way"), OutputFormat::Arena5);
    assert_eq!(expect("judgerbench-v2"), OutputFormat::JudgerBench);
    assert_eq!(expect("prometheus2-relative"), OutputFormat::ResultMarker);
    assert_eq!(expect("skywork-critic"), OutputFormat::Brackets);
    assert_eq!(expect("selene-pairwise"), OutputFormat::ResultMarker);
    assert_eq!(expect("flow-judge"), OutputFormat::Pointwise);
    assert!(lib.list().iter().all(|i| i.source == Source::Embedded));
}

#[test]
fn every_shipped_template_renders_single_and_multi_turn_items() {
    let lib = library();
    for name in SHIPPED {
        let t = lib.get(name).expect("shipped template");
        let single = t
            .render(&single_turn(), &RenderOptions::default())
            .expect("single-turn renders");
        assert!(single.contains("What is the boiling point"), "{name}");
        assert!(single.contains("ALPHA: 100"), "{name}");
        assert!(!single.contains("EARLIER"), "{name}");
        assert!(
            !single.contains("Earlier conversation"),
            "{name}: empty history shown"
        );
        assert!(
            leftover_tags(&single).is_empty(),
            "{name}: {:?}",
            leftover_tags(&single)
        );
        assert!(
            !single.contains("\n\n\n"),
            "{name}: hidden sections leave blank lines"
        );

        let multi = t
            .render(&multi_turn(), &RenderOptions::default())
            .expect("multi-turn renders");
        let history = multi.find("EARLIER-QUESTION").expect("history shown");
        let earlier_answer = multi.find("EARLIER-ANSWER").expect("history shown");
        let question = multi
            .find("And its boiling point?")
            .expect("question shown");
        let answer = multi.find("ALPHA: 100").expect("answer shown");
        assert!(
            history < earlier_answer && earlier_answer < question && question < answer,
            "{name}"
        );
        assert!(multi.contains("### User:\nEARLIER-QUESTION"), "{name}");
        assert!(leftover_tags(&multi).is_empty(), "{name}");

        if t.kind() == TemplateKind::Pairwise {
            assert!(single.contains("BETA: about 90"), "{name}");
            assert!(
                single.find("ALPHA").expect("a") < single.find("BETA").expect("b"),
                "{name}"
            );
        }
    }
}

#[test]
fn critical_thinking_prompt_names_every_trained_key_verbatim() {
    let out = library()
        .get("cj2-critical-thinking")
        .expect("shipped")
        .render(&single_turn(), &RenderOptions::default())
        .expect("renders");
    for key in [
        "\"User's Demand\"",
        "\"Strengths of Model A\"",
        "\"Weaknesses of Model A\"",
        "\"Strengths of Model B\"",
        "\"Weaknesses of Model B\"",
        "\"Reasoning\"",
        "\"Choice\"",
        "\"Model A\"",
        "\"Model B\"",
    ] {
        assert!(out.contains(key), "{key} missing from the prompt");
    }
}

#[test]
fn quick_and_bracket_prompts_keep_their_literal_formats() {
    let lib = library();
    let render = |name: &str| {
        lib.get(name)
            .expect("shipped")
            .render(&single_turn(), &RenderOptions::default())
            .expect("renders")
    };
    let quick = render("cj2-quick");
    assert!(
        quick.contains("{\"Choice\": \"Model A\"}") && quick.contains("{\"Choice\": \"Model B\"}")
    );
    let ab = render("pairwise-ab");
    for label in ["[[A]]", "[[B]]", "[[C]]"] {
        assert!(ab.contains(label), "{label}");
    }
    let arena = render("arena-5way");
    for label in ["[[A>>B]]", "[[A>B]]", "[[A=B]]", "[[B>A]]", "[[B>>A]]"] {
        assert!(arena.contains(label), "{label}");
    }
    assert!(render("pointwise-10").contains("Rating: [["));
    let critique = render("critique");
    assert!(!critique.contains("[[") && !critique.contains("Choice"));
}

#[test]
fn judgerbench_prompt_follows_the_item_language_and_category() {
    let t = library().get("judgerbench-v2").expect("shipped").clone();
    assert_eq!(t.languages(), vec!["zh"]);
    let en = t
        .render(&single_turn(), &RenderOptions::default())
        .expect("renders");
    assert!(en.contains("knowledge-based QA") && en.ends_with("\"winner\":\"B\"}"));
    let mut zh = single_turn();
    zh.language = Some("cn".into());
    zh.category = Some("Code_and_AI".into());
    let zh = t.render(&zh, &RenderOptions::default()).expect("renders");
    assert!(zh.contains("代码和AI相关的问题") && zh.ends_with("\"胜者\":\"B\"}"));
    assert!(zh.contains("ALPHA: 100") && !zh.contains("winner"));
    // JudgerBenchV2 has no criterion for other categories: say so rather than guess.
    let mut other = single_turn();
    other.category = Some("Math".into());
    let err = t
        .render(&other, &RenderOptions::default())
        .expect_err("no criterion for Math");
    assert!(err.to_string().contains("Math"), "{err}");
}

#[test]
fn a_user_template_can_have_one_body_per_language() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("two-tongues.txt"),
        "kind: pairwise\noutput: brackets\ndescription: both\n---\nEN {question} {answer_a} {answer_b}\n--- language: fr\nFR {question} {answer_a} {answer_b}\n",
    )
    .expect("write");
    let lib = Library::with_user_dir(Some(dir.path())).expect("loads");
    let t = lib.get("two-tongues").expect("added");
    let mut item = single_turn();
    let en = t.render(&item, &RenderOptions::default()).expect("renders");
    item.language = Some("fr-CA".into());
    let fr = t.render(&item, &RenderOptions::default()).expect("renders");
    assert!(en.starts_with("EN What is") && en.ends_with("about 90 degrees."));
    assert!(fr.starts_with("FR What is") && fr.ends_with("about 90 degrees.\n"));
}

#[test]
fn swap_exchanges_the_answer_blocks_exactly() {
    let lib = library();
    let mut item = multi_turn();
    item.response_a.prior_turns = vec![
        Message::new("assistant", "A-SIDE-EARLY"),
        Message::new("user", "A-SIDE-FOLLOWUP"),
    ];
    let swapped_item = {
        let mut it = item.clone();
        std::mem::swap(&mut it.response_a, &mut it.response_b);
        it
    };
    for name in SHIPPED {
        let t = lib.get(name).expect("shipped");
        if t.kind() != TemplateKind::Pairwise {
            continue;
        }
        let swapped = t
            .render(
                &item,
                &RenderOptions {
                    swap: true,
                    ..Default::default()
                },
            )
            .expect("renders");
        let reference = t
            .render(&swapped_item, &RenderOptions::default())
            .expect("renders");
        assert_eq!(swapped, reference, "{name}");
        let straight = t.render(&item, &RenderOptions::default()).expect("renders");
        assert_ne!(straight, swapped, "{name}");
        // The side's own earlier turns travel inside its block.
        let early = swapped.find("A-SIDE-EARLY").expect("prior turns shown");
        let beta = swapped.find("BETA").expect("B's answer shown");
        let alpha = swapped.find("ALPHA").expect("A's answer shown");
        assert!(beta < early && early < alpha, "{name}");
    }
}

#[test]
fn pointwise_side_selects_the_answer() {
    let t = library().get("pointwise-10").expect("shipped").clone();
    let b = t
        .render(
            &single_turn(),
            &RenderOptions {
                side: Side::B,
                ..Default::default()
            },
        )
        .expect("renders");
    assert!(b.contains("BETA") && !b.contains("ALPHA"));
}

#[test]
fn preference_presets_apply_to_every_pairwise_template_once() {
    let lib = library();
    let (_, sentence) = PREFERENCE_PRESETS[0];
    for name in SHIPPED {
        let t = lib.get(name).expect("shipped");
        let opts = RenderOptions {
            preference: Some(sentence.to_string()),
            ..Default::default()
        };
        match t.kind() {
            TemplateKind::Pairwise => {
                let out = t.render(&single_turn(), &opts).expect("renders");
                assert_eq!(out.matches(sentence).count(), 1, "{name}");
                // It comes after the answers and before the final output instructions.
                assert!(out.find(sentence).expect("shown") > out.find("BETA").expect("b"));
                let plain = t
                    .render(&single_turn(), &RenderOptions::default())
                    .expect("renders");
                assert_eq!(out.replace(&format!("\n{sentence}\n"), ""), plain, "{name}");
            }
            _ => assert!(matches!(
                t.render(&single_turn(), &opts),
                Err(PromptError::PreferenceNeedsPairwise { .. })
            )),
        }
    }
    assert!(preference_preset("concise").is_some());
}

#[test]
fn user_directory_overrides_and_adds_templates() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("pairwise-ab.txt"),
        "kind: pairwise\noutput: brackets\ndescription: mine\n---\nMINE {question} {answer_a} {answer_b} {{literal}} {\"k\": 1}",
    )
    .expect("write override");
    fs::write(
        dir.path().join("by-topic.txt"),
        "name: by-topic\nkind: pairwise\noutput: judgerbench\ncriteria.en.Knowledge: FACTS FIRST.\ncriteria.*.*: OVERALL.\n---\n{criterion} {question} {answer_a} {answer_b}",
    )
    .expect("write addition");
    fs::write(dir.path().join("notes.md"), "not a template").expect("write other file");

    let lib = Library::with_user_dir(Some(dir.path())).expect("loads");
    assert_eq!(
        lib.source("pairwise-ab"),
        Some(&Source::Overridden(dir.path().join("pairwise-ab.txt")))
    );
    assert_eq!(
        lib.source("by-topic"),
        Some(&Source::User(dir.path().join("by-topic.txt")))
    );
    assert_eq!(lib.source("cj2-quick"), Some(&Source::Embedded));
    assert!(lib.get("notes").is_err());
    assert_eq!(lib.list().len(), SHIPPED.len() + 1);

    let out = lib
        .get("pairwise-ab")
        .expect("overridden")
        .render(&single_turn(), &RenderOptions::default())
        .expect("renders");
    assert!(out.starts_with("MINE What is the boiling point"));
    assert!(out.ends_with("{literal} {\"k\": 1}"), "{out}");

    let topic = lib.get("by-topic").expect("added");
    let out = topic
        .render(&single_turn(), &RenderOptions::default())
        .expect("renders");
    assert!(out.starts_with("FACTS FIRST. "), "{out}");
    let mut other = single_turn();
    other.category = Some("Creation".into());
    let out = topic
        .render(&other, &RenderOptions::default())
        .expect("renders");
    assert!(out.starts_with("OVERALL. "), "{out}");
}

#[test]
fn a_broken_user_template_is_an_error_naming_its_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("half.txt");
    fs::write(
        &path,
        "kind: pairwise\noutput: cj2-json\n---\n{question} {answer_a}",
    )
    .expect("write");
    let err = Library::with_user_dir(Some(dir.path())).expect_err("missing {answer_b}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("{answer_b}"), "{msg}");
}

#[test]
fn a_missing_user_directory_means_built_ins_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lib = Library::with_user_dir(Some(&dir.path().join("absent"))).expect("loads");
    assert_eq!(lib.list().len(), SHIPPED.len());
}

#[test]
fn unfillable_placeholder_error_names_placeholder_and_template() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(
        dir.path().join("needs-category.txt"),
        "kind: critique\noutput: critique\n---\n[{category}] {question} {answer}",
    )
    .expect("write");
    let lib = Library::with_user_dir(Some(dir.path())).expect("loads");
    let mut item = single_turn();
    item.category = None;
    let err = lib
        .get("needs-category")
        .expect("added")
        .render(&item, &RenderOptions::default())
        .expect_err("no category to show");
    let msg = err.to_string();
    assert!(
        msg.contains("{category}") && msg.contains("needs-category"),
        "{msg}"
    );
}
