//! Constrained decoding on a real model: SmolLM2-135M-Instruct (Q4_1 GGUF), far too small to
//! follow a judge prompt by itself, which is what makes it a good test: every answer it gives
//! under its template's grammar must have every field and a verdict. `.ci/run` installs it and
//! sets ARBITER_TEST_GGUF; without the variable these tests say so loudly and do nothing.

#[path = "common/journal_file.rs"]
mod journal_file;
#[path = "common/real_model.rs"]
mod real_model;

use arbiter::critique::{FieldState, EXPLANATION};
use arbiter::dataset::{self, Item};
use arbiter::engine::judge::{conclude, JudgeSpec, JudgeTask};
use arbiter::engine::loader::load_gguf_file;
use arbiter::engine::{
    ConstrainError, ConstrainMode, EngineError, FinishReason, GenerateRequest, GrammarSpec,
    LoadOptions, LoadedModel, Prompt, SamplingParams,
};
use arbiter::prompts::{Library, TemplateKind};
use arbiter::verdict::Order;
use std::process::Command;
use std::sync::atomic::AtomicBool;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.jsonl");

fn load(path: &std::path::Path) -> LoadedModel {
    load_gguf_file(path, &LoadOptions::default(), &mut |_| {}).expect("loads")
}

fn demo_item(id: &str) -> Item {
    let data = dataset::load(std::path::Path::new(DEMO), &Default::default()).expect("demo loads");
    data.get(id).expect("demo item").clone()
}

fn sampling(n: usize) -> SamplingParams {
    SamplingParams {
        max_new_tokens: n,
        ..SamplingParams::default()
    }
}

/// Runs `template` on `item` constrained, streaming into a critique parser; checks that the
/// streamed critique is the final one and returns the judgment's outcome.
fn judge(
    model: &mut LoadedModel,
    template: &str,
    item: &Item,
    order: Order,
    params: SamplingParams,
) -> (
    arbiter::engine::judge::JudgeOutcome,
    arbiter::engine::Generation,
) {
    let library = Library::with_user_dir(None).expect("built-in templates");
    let t = library.get(template).expect("template");
    let task = JudgeTask::new(t, item, order, None).expect("renders");
    let spec = JudgeSpec {
        model: model.info.name.clone(),
        template: template.into(),
        preference: None,
        sampling: params,
        constrain: ConstrainMode::Grammar,
    };
    let request = GenerateRequest::new(task.chat_prompt(), spec.sampling.clone())
        .with_grammar(task.grammar(spec.constrain));
    assert!(request.grammar.is_some(), "{template} declares a grammar");
    let mut parser = task.parser();
    let mut streamed = String::new();
    let mut snapshots = vec![parser.snapshot().clone()];
    let generation = model
        .generate(&request, &AtomicBool::new(false), &mut |piece| {
            streamed.push_str(piece);
            parser.feed(piece.as_bytes());
            snapshots.push(parser.snapshot().clone());
        })
        .unwrap_or_else(|e| panic!("{template} on {}: {e}", item.id));
    assert_eq!(streamed, generation.text, "the stream is the answer");
    for pair in snapshots.windows(2) {
        assert!(
            pair[1].continues(&pair[0]),
            "{template}: the critique only grows"
        );
    }
    let live = parser.finish();
    let outcome = conclude(&spec, "k", &task, &generation, &model.info);
    assert_eq!(
        live, outcome.critique,
        "{template}: the streamed critique equals the one read from the final text"
    );
    assert_eq!(outcome.run["constrain"], "grammar");
    (outcome, generation)
}

fn assert_complete(template: &str, outcome: &arbiter::engine::judge::JudgeOutcome, text: &str) {
    let kind = Library::with_user_dir(None)
        .expect("built-in templates")
        .get(template)
        .expect("template")
        .kind();
    let filled = |key: &str| {
        outcome
            .critique
            .field(key)
            .is_some_and(|f| f.state == FieldState::Complete && !f.text.trim().is_empty())
    };
    match template {
        "cj2-critical-thinking" => {
            for key in arbiter::critique::CJ2_KEYS {
                assert!(filled(key), "{key} is filled in {text:?}");
            }
        }
        "cj2-quick" => assert!(filled("Choice"), "{text:?}"),
        // Skywork-Critic is asked for the verdict alone.
        "skywork-critic" => assert!(text == "[[A]]" || text == "[[B]]", "{text:?}"),
        "critique" => {
            for h in ["Strengths:", "Weaknesses:", "Suggestions:"] {
                assert!(text.contains(h), "{h} in {text:?}");
            }
        }
        _ => assert!(filled(EXPLANATION), "an explanation in {text:?}"),
    }
    match kind {
        TemplateKind::Pairwise => assert!(
            outcome.judgment.verdict.is_some(),
            "{template}: a verdict in {text:?} ({:?})",
            outcome.judgment.problem
        ),
        TemplateKind::Pointwise => assert!(
            outcome
                .critique
                .score
                .is_some_and(|s| (1.0..=10.0).contains(&s)),
            "{template}: a score in {text:?}"
        ),
        TemplateKind::Critique => assert!(outcome.judgment.problem.is_none()),
    }
}

#[test]
fn every_template_gives_a_complete_critique_with_its_verdict() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let mut model = load(&path);
    let item = demo_item("demo-003");
    for (template, budget) in [
        ("cj2-critical-thinking", 200),
        ("cj2-quick", 32),
        ("pairwise-ab", 96),
        ("arena-5way", 96),
        ("pointwise-10", 80),
        ("critique", 120),
        ("prometheus2-relative", 120),
        ("skywork-critic", 16),
        ("selene-pairwise", 120),
        ("flow-judge", 120),
    ] {
        for order in [Order::Original, Order::Swapped] {
            let (outcome, g) = judge(&mut model, template, &item, order, sampling(budget));
            assert!(g.tokens.len() <= budget, "{template}: within its budget");
            assert_eq!(g.finish, FinishReason::Stop, "{template}: {:?}", g.text);
            assert_complete(template, &outcome, &g.text);
        }
    }
}

#[test]
fn judgerbench_answers_use_the_keys_of_the_item_language() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let mut model = load(&path);
    let mut item = demo_item("demo-003");
    item.category = Some("Knowledge".into());
    for (language, winner) in [("en", "\"winner\": \""), ("zh", "\"胜者\": \"")] {
        item.language = Some(language.into());
        let (outcome, g) = judge(
            &mut model,
            "judgerbench-v2",
            &item,
            Order::Original,
            sampling(96),
        );
        assert!(g.text.contains(winner), "{language}: {:?}", g.text);
        assert!(outcome.judgment.verdict.is_some(), "{:?}", g.text);
    }
}

#[test]
fn the_verdict_is_written_even_when_the_budget_is_tight() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let mut model = load(&path);
    let item = demo_item("demo-010");
    for template in ["pairwise-ab", "arena-5way", "pointwise-10"] {
        let (outcome, g) = judge(&mut model, template, &item, Order::Original, sampling(48));
        assert!(
            g.tokens.len() <= 48,
            "{template}: {} tokens",
            g.tokens.len()
        );
        assert_complete(template, &outcome, &g.text);
    }
    // The seven-field answer needs more than 48 tokens for its keys alone; at the least it
    // can be given, every field still gets written.
    let (outcome, g) = judge(
        &mut model,
        "cj2-critical-thinking",
        &item,
        Order::Original,
        sampling(96),
    );
    assert!(g.tokens.len() <= 96);
    assert_complete("cj2-critical-thinking", &outcome, &g.text);
    // Sampled decoding keeps the shape too, and a seed reproduces it.
    let hot = SamplingParams {
        temperature: 1.2,
        top_p: Some(0.95),
        seed: 11,
        repeat_penalty: Some(1.1),
        ..sampling(64)
    };
    let (outcome, a) = judge(
        &mut model,
        "pairwise-ab",
        &item,
        Order::Swapped,
        hot.clone(),
    );
    assert_complete("pairwise-ab", &outcome, &a.text);
    let (_, b) = judge(&mut model, "pairwise-ab", &item, Order::Swapped, hot);
    assert_eq!(a.tokens, b.tokens);
}

#[test]
fn a_grammar_the_model_cannot_follow_fails_with_a_clear_error() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let mut model = load(&path);
    let run = |model: &mut LoadedModel, grammar: GrammarSpec, n: usize| {
        let request =
            GenerateRequest::new(Prompt::user("Say yes."), sampling(n)).with_grammar(Some(grammar));
        model.generate(&request, &AtomicBool::new(false), &mut |_| {})
    };
    let lark = |text: &str| GrammarSpec::Lark {
        what: "the test grammar".into(),
        text: text.into(),
    };
    // More fixed text than the budget holds: refused before generating.
    let library = Library::with_user_dir(None).expect("built-in templates");
    let cj2 = library
        .get("cj2-critical-thinking")
        .expect("template")
        .answer_for(None)
        .expect("declares one")
        .clone();
    let e = run(
        &mut model,
        GrammarSpec::Answer {
            what: "template cj2-critical-thinking".into(),
            grammar: cj2,
        },
        48,
    )
    .expect_err("48 tokens cannot hold seven keys");
    assert!(
        matches!(
            e,
            EngineError::Constrain(ConstrainError::BudgetTooSmall { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("raise max_new_tokens"), "{e}");
    // A special token this vocabulary does not have.
    let e =
        run(&mut model, lark(r#"start: "Yes" <|no_such_token|>"#), 16).expect_err("unknown token");
    assert!(
        e.to_string().contains("the test grammar") && e.to_string().contains("cannot be compiled"),
        "{e}"
    );
    // A grammar that ends the turn in the middle of its answer: nothing can follow the end.
    let e = run(&mut model, lark(r#"start: "Yes" <|im_end|> "more""#), 16)
        .expect_err("no token can follow");
    assert!(
        matches!(e, EngineError::Constrain(ConstrainError::Stuck { .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("the test grammar") && e.to_string().contains("Yes"),
        "{e}"
    );
    // A token id past the vocabulary.
    let e = run(&mut model, lark(r#"start: "Yes" <[60000]>"#), 16).expect_err("no such id");
    assert!(e.to_string().contains("the test grammar"), "{e}");
    // Broken Lark is a compile error naming the grammar.
    let e = run(&mut model, lark("start: ("), 16).expect_err("not Lark");
    assert!(e.to_string().contains("cannot be compiled"), "{e}");
}

fn arbiter(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .envs(env.iter().copied())
        .env("ARBITER_ANNOTATOR", "tester")
        .env("HF_HUB_OFFLINE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the arbiter binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writes the prompt");
    child.wait_with_output().expect("finishes")
}

#[test]
fn the_mask_computed_on_its_own_thread_gives_the_same_answer_as_inline() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let model = path.to_str().expect("utf-8");
    let prompt = arbiter(
        &[
            "prompts",
            "render",
            "cj2-critical-thinking",
            "--item",
            "demo-007",
            DEMO,
        ],
        &[],
        "",
    );
    assert!(prompt.status.success());
    let prompt = String::from_utf8(prompt.stdout).expect("utf-8");
    let chat = |thread: &str| {
        let out = arbiter(
            &[
                "chat",
                "--model",
                model,
                "--constrain",
                "cj2-critical-thinking",
                "--max-new-tokens",
                "160",
                "--repeat-penalty",
                "1.15",
            ],
            &[("ARBITER_CONSTRAIN_THREAD", thread)],
            &prompt,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let threaded = chat("1");
    assert_eq!(threaded, chat("0"));
    let value: serde_json::Value =
        serde_json::from_str(threaded.trim()).expect("the reply is the JSON object");
    assert!(value["Choice"] == "Model A" || value["Choice"] == "Model B");
}

#[test]
fn arbiter_judge_records_constrained_judgments_as_their_own_settings() {
    let Some(path) = real_model::gguf("the constrained-decoding tests") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("demo.jsonl");
    std::fs::copy(DEMO, &data).expect("copy");
    let data_s = data.to_str().expect("utf-8");
    let model = path.to_str().expect("utf-8");
    let judge = |extra: &[&str]| {
        let mut args = vec![
            "judge",
            data_s,
            "--model",
            model,
            "-t",
            "pairwise-ab",
            "--items",
            "demo-030",
            "--max-new-tokens",
            "48",
            "-q",
        ];
        args.extend_from_slice(extra);
        let out = arbiter(&args, &[], "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let on = judge(&[]);
    assert!(on.contains("constrained") && on.contains("verdict"), "{on}");
    // Off is another setting: judged again, not skipped.
    let off = judge(&["--constrain", "off"]);
    assert!(off.contains("judged 1"), "{off}");
    // On again: already in the journal.
    assert!(judge(&["--constrain", "on"]).contains("skipped 1"));
    let records = journal_file::judgments(&dir.path().join("demo.jsonl.arbiter-journal.jsonl"));
    let modes: Vec<&str> = records
        .iter()
        .map(|r| r["run"]["constrain"].as_str().expect("recorded"))
        .collect();
    assert_eq!(modes, ["grammar", "none"]);
    assert!(
        records[0]["judgment"]["verdict"].is_string(),
        "{}",
        records[0]
    );
    assert_ne!(
        records[0]["run"]["settings_key"],
        records[1]["run"]["settings_key"]
    );
    // A template without a grammar cannot be forced on.
    let out = arbiter(
        &[
            "chat",
            "--model",
            model,
            "--constrain",
            "no-such-template",
            "--max-new-tokens",
            "8",
        ],
        &[],
        "hi",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-template"));
}
