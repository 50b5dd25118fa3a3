//! Continuous batching on the tiny Qwen2 model the tests write: a batched step gives every
//! sequence the logits it gets alone, and the scheduler gives every sequence the tokens it
//! generates alone, whatever joins, leaves, is cancelled or waits for memory beside it.

mod common;
#[path = "common/real_model.rs"]
mod real_model;

use arbiter::engine::catalogue::ModelSource;
use arbiter::engine::hub::{Hub, HubSettings};
use arbiter::engine::loader::load_dir;
use arbiter::engine::model::{Backend, Decoder, StepInput};
use arbiter::engine::schedule::{BatchSettings, Scheduler, SeqEvent};
use arbiter::engine::{
    Engine, EngineError, EngineEvent, FinishReason, GenerateRequest, Generation, GrammarSpec,
    LoadOptions, LoadedModel, Prompt, SamplingParams,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tiny() -> (tempfile::TempDir, LoadedModel) {
    let dir = tempfile::tempdir().expect("temp dir");
    common::tiny_model::write(dir.path());
    let model = load_dir(dir.path(), &LoadOptions::default(), &mut |_| {}).expect("loads");
    (dir, model)
}

fn decoder(model: &mut LoadedModel) -> &mut Decoder {
    match &mut model.decoder {
        Backend::Arbiter(d) => d,
        _ => panic!("the tiny Qwen2 runs on the project's decoder"),
    }
}

/// A prompt of `len` token ids, different for every `seed`, inside the byte vocabulary.
fn prompt(len: usize, seed: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(37).wrapping_add(seed * 101 + 13)) % 250 + 1)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0 as u32
}

/// Greedy decoding of `steps` tokens after `prompt`, alone through the single-stream cache:
/// the logits of every step and the tokens.
fn alone(d: &mut Decoder, prompt: &[u32], steps: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    d.reset();
    let mut logits: Vec<f32> = d.forward(prompt).expect("prefill").to_vec1().expect("v");
    let (mut all, mut tokens) = (vec![], vec![]);
    for _ in 0..steps {
        let t = argmax(&logits);
        all.push(logits);
        tokens.push(t);
        logits = d.forward(&[t]).expect("step").to_vec1().expect("v");
    }
    (all, tokens)
}

#[test]
fn a_batched_step_gives_each_of_16_sequences_its_logits_alone() {
    let (_dir, mut model) = tiny();
    let d = decoder(&mut model);
    let lengths = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 7, 17, 40, 100, 250];
    let prompts: Vec<Vec<u32>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| prompt(n, i as u32))
        .collect();
    let steps = 12;
    let expected: Vec<(Vec<Vec<f32>>, Vec<u32>)> =
        prompts.iter().map(|p| alone(d, p, steps)).collect();

    let mut cache = d.paged_cache(16, 1024);
    for (i, p) in prompts.iter().enumerate() {
        cache.admit(i as u64, p.len() + steps).expect("room");
    }
    // Every prompt in one step, all of different lengths; then every sequence's token at once.
    let mut feed: Vec<Vec<u32>> = prompts.clone();
    for step in 0..steps {
        let inputs: Vec<StepInput<'_>> = feed
            .iter()
            .enumerate()
            .map(|(i, t)| StepInput {
                seq: i as u64,
                tokens: t,
            })
            .collect();
        let rows: Vec<Vec<f32>> = d
            .forward_batch(&mut cache, &inputs)
            .expect("batched step")
            .to_vec2()
            .expect("rows");
        assert_eq!(rows.len(), 16);
        for (i, row) in rows.iter().enumerate() {
            let (logits, tokens) = &expected[i];
            let diff = max_diff(row, &logits[step]);
            assert!(
                diff < 1e-4,
                "sequence {i} step {step}: logits differ by {diff}"
            );
            assert_eq!(argmax(row), tokens[step], "sequence {i} step {step}");
        }
        feed = expected.iter().map(|(_, t)| vec![t[step]]).collect();
    }
    // Blocks only for the tokens held: each sequence wastes less than one block.
    let held: usize = prompts.iter().map(|p| p.len() + steps - 1).sum();
    assert_eq!(cache.held_tokens(), held);
    assert!(cache.used_blocks() * 16 < held + 16 * 16);
}

/// What `drive` saw: generations by id, the text each streamed, and (running, waiting)
/// after every step.
type Driven = (
    HashMap<u64, Generation>,
    HashMap<u64, String>,
    Vec<(usize, usize)>,
);

/// Runs the scheduler until every submitted request has finished; the generations by id and
/// the text each streamed. `between` runs before every step with the step's number.
fn drive(
    model: &mut LoadedModel,
    settings: BatchSettings,
    mut between: impl FnMut(usize, &mut Scheduler<'_>),
) -> Driven {
    let LoadedModel {
        decoder,
        tokenizer,
        stop_ids,
        ..
    } = model;
    let Backend::Arbiter(d) = decoder else {
        panic!("the tiny Qwen2 runs on the project's decoder");
    };
    let mut scheduler = Scheduler::new(d, tokenizer, stop_ids, settings);
    let (mut done, mut streamed) = (HashMap::new(), HashMap::<u64, String>::new());
    let mut shape = vec![];
    for step in 0..10_000 {
        between(step, &mut scheduler);
        if scheduler.is_idle() && step > 0 {
            break;
        }
        scheduler.step(d, &mut |event| match event {
            SeqEvent::Text { id, text } => streamed.entry(id).or_default().push_str(&text),
            SeqEvent::Finished { id, generation } => {
                assert!(done.insert(id, generation).is_none(), "{id} finished twice");
            }
            SeqEvent::Failed { id, error } => panic!("sequence {id} failed: {error}"),
        });
        shape.push((scheduler.running(), scheduler.waiting()));
        assert!(scheduler.cache().used_blocks() <= settings.max_blocks);
    }
    (done, streamed, shape)
}

fn request(n: usize, sampled: bool) -> GenerateRequest {
    let sampling = SamplingParams {
        max_new_tokens: n,
        temperature: if sampled { 0.9 } else { 0.0 },
        seed: 5,
        ..SamplingParams::default()
    };
    let mut r = GenerateRequest::new(Prompt::Raw(String::new()), sampling);
    r.ignore_stop = true;
    r.prefill_chunk = 48;
    r
}

/// The generation of `prompt` alone through the single-stream path.
fn generate_alone(model: &mut LoadedModel, prompt: &[u32], r: &GenerateRequest) -> Generation {
    model.decoder.reset();
    model
        .generate_tokens(
            prompt,
            r,
            &AtomicBool::new(false),
            &mut |_| {},
            Instant::now(),
        )
        .expect("generates")
}

fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

#[test]
fn every_sequence_of_a_scheduled_batch_of_16_generates_its_tokens_alone() {
    let (_dir, mut model) = tiny();
    // Different lengths, budgets and samplers; stop tokens count (the chat model's own).
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..16u32)
        .map(|i| {
            let mut r = request(10 + (i as usize * 7) % 23, i % 4 == 3);
            r.ignore_stop = i % 2 == 0;
            (prompt(3 + (i as usize * 29) % 170, i), r)
        })
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    let mut settings = BatchSettings::new(16, 8192);
    settings.step_tokens = 64; // prompts join over several steps, beside decodes
    let (done, streamed, shape) = drive(&mut model, settings, |step, s| {
        if step == 0 {
            for (i, (p, r)) in work.iter().enumerate() {
                s.submit(i as u64, p.clone(), r, flag(), Instant::now())
                    .expect("submits");
            }
        }
    });
    assert!(shape.iter().any(|&(running, _)| running == 16));
    for (i, want) in expected.iter().enumerate() {
        let got = &done[&(i as u64)];
        assert_eq!(got.tokens, want.tokens, "sequence {i}");
        assert_eq!(got.text, want.text, "sequence {i}");
        assert_eq!(got.finish, want.finish, "sequence {i}");
        assert_eq!(
            streamed.get(&(i as u64)).cloned().unwrap_or_default(),
            got.text
        );
        assert_eq!(got.timing.prompt_tokens, work[i].0.len());
        assert_eq!(got.timing.generated_tokens, got.tokens.len());
    }
}

#[test]
fn sequences_joining_and_leaving_mid_run_change_nothing_for_the_others() {
    let (_dir, mut model) = tiny();
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..7u32)
        .map(|i| {
            (
                prompt(20 + 31 * i as usize, i + 40),
                request(5 + 9 * i as usize, false),
            )
        })
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    // Two start; the rest join at different steps, while short ones have already left; at
    // most four run at once, so some wait for a place.
    let joins = [0, 0, 3, 4, 9, 9, 9];
    let mut settings = BatchSettings::new(4, 8192);
    settings.step_tokens = 40;
    let (done, _, shape) = drive(&mut model, settings, |step, s| {
        for (i, (p, r)) in work.iter().enumerate() {
            if joins[i] == step {
                s.submit(i as u64, p.clone(), r, flag(), Instant::now())
                    .expect("submits");
            }
        }
    });
    assert!(shape.iter().any(|&(_, waiting)| waiting > 0), "{shape:?}");
    assert!(shape.iter().all(|&(running, _)| running <= 4));
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(done[&(i as u64)].tokens, want.tokens, "sequence {i}");
    }
}

#[test]
fn cancelling_one_sequence_leaves_the_others_running() {
    let (_dir, mut model) = tiny();
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..4u32)
        .map(|i| (prompt(30 + 10 * i as usize, i + 7), request(40, i == 2)))
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    let flags: Vec<Arc<AtomicBool>> = (0..4).map(|_| flag()).collect();
    let (done, _, _) = drive(&mut model, BatchSettings::new(4, 8192), |step, s| {
        if step == 0 {
            for (i, (p, r)) in work.iter().enumerate() {
                s.submit(i as u64, p.clone(), r, flags[i].clone(), Instant::now())
                    .expect("submits");
            }
        }
        if step == 12 {
            flags[1].store(true, Ordering::Relaxed);
        }
    });
    let cancelled = &done[&1];
    assert_eq!(cancelled.finish, FinishReason::Cancelled);
    assert!(!cancelled.tokens.is_empty() && cancelled.tokens.len() < 40);
    assert_eq!(
        cancelled.tokens[..],
        expected[1].tokens[..cancelled.tokens.len()],
        "what it had is what it would have had"
    );
    for i in [0, 2, 3] {
        assert_eq!(done[&i].tokens, expected[i as usize].tokens, "sequence {i}");
        assert_eq!(done[&i].finish, FinishReason::Length);
    }
}

#[test]
fn steps_launched_ahead_give_every_sequence_its_tokens_alone() {
    let (_dir, mut model) = tiny();
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..9u32)
        .map(|i| {
            let mut r = request(12 + (i as usize * 5) % 17, false);
            r.ignore_stop = i % 3 == 0;
            (prompt(5 + (i as usize * 41) % 130, i + 60), r)
        })
        .collect();
    // A stop token that greedy decoding does reach: the sixth token of one answer. Sequences
    // that reach it stop while the step after theirs is already launched.
    let mut free = work[1].1.clone();
    free.ignore_stop = true;
    let stop = generate_alone(&mut model, &work[1].0, &free).tokens[5];
    model.stop_ids = vec![stop];
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    assert!(
        expected.iter().any(|g| g.finish == FinishReason::Stop),
        "some sequence stops on {stop}"
    );
    let flags: Vec<Arc<AtomicBool>> = (0..work.len()).map(|_| flag()).collect();
    for ahead in [true, false] {
        let mut settings = BatchSettings::new(4, 8192);
        settings.step_tokens = 40;
        settings.step_ahead = ahead;
        for f in &flags {
            f.store(false, Ordering::Relaxed);
        }
        let mut launched_ahead = 0;
        let (done, streamed, shape) = drive(&mut model, settings, |step, s| {
            launched_ahead += usize::from(s.last_step().ahead);
            // Four at a time: the rest wait and join as others leave.
            if step == 0 {
                for (i, (p, r)) in work.iter().enumerate() {
                    s.submit(i as u64, p.clone(), r, flags[i].clone(), Instant::now())
                        .expect("submits");
                }
            }
            if step == 9 {
                flags[2].store(true, Ordering::Relaxed);
            }
        });
        assert!(shape.iter().any(|&(_, waiting)| waiting > 0), "{shape:?}");
        assert_eq!(
            launched_ahead > 0,
            ahead,
            "steps launched ahead: {launched_ahead}"
        );
        let cancelled = &done[&2];
        assert_eq!(cancelled.finish, FinishReason::Cancelled);
        assert_eq!(
            cancelled.tokens[..],
            expected[2].tokens[..cancelled.tokens.len()]
        );
        for (i, want) in expected.iter().enumerate().filter(|(i, _)| *i != 2) {
            let got = &done[&(i as u64)];
            assert_eq!(got.tokens, want.tokens, "sequence {i}, ahead {ahead}");
            assert_eq!(got.text, want.text, "sequence {i}, ahead {ahead}");
            assert_eq!(got.finish, want.finish, "sequence {i}, ahead {ahead}");
            assert_eq!(
                streamed.get(&(i as u64)).cloned().unwrap_or_default(),
                got.text,
                "sequence {i}, ahead {ahead}"
            );
            assert_eq!(got.timing.generated_tokens, got.tokens.len());
        }
    }
}

#[test]
fn a_sequence_that_does_not_fit_waits_for_memory_and_one_that_never_fits_is_refused() {
    let (_dir, mut model) = tiny();
    // Each needs 100 + 28 = 128 tokens: 8 blocks of 16. The cache holds 20 blocks: two fit.
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..3u32)
        .map(|i| (prompt(100, i + 90), request(28, false)))
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    let mut settings = BatchSettings::new(8, 8192);
    settings.max_blocks = 20;
    let mut refused = None;
    let (done, _, shape) = drive(&mut model, settings, |step, s| {
        if step == 0 {
            for (i, (p, r)) in work.iter().enumerate() {
                s.submit(i as u64, p.clone(), r, flag(), Instant::now())
                    .expect("submits");
            }
            refused = Some(s.submit(
                9,
                prompt(400, 1),
                &request(10, false),
                flag(),
                Instant::now(),
            ));
        }
    });
    assert_eq!(shape[0], (2, 1), "two run, the third waits: {shape:?}");
    assert!(shape
        .iter()
        .any(|&(running, waiting)| running == 1 && waiting == 0));
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(done[&(i as u64)].tokens, want.tokens, "sequence {i}");
    }
    assert!(
        matches!(
            refused,
            Some(Err(EngineError::KvCacheTooSmall {
                tokens: 410,
                capacity: 320
            }))
        ),
        "{refused:?}"
    );
}

#[test]
fn the_engine_thread_batches_queued_generations_and_reports_each_as_alone() {
    let (dir, mut model) = tiny();
    let work: Vec<(String, GenerateRequest)> = (0..6)
        .map(|i| {
            let text = format!(
                "Item {i}: which answer is better? {}",
                "More words. ".repeat(i * 5)
            );
            let mut r = request(8 + 3 * i, i == 4);
            r.prompt = Prompt::user(text.clone());
            (text, r)
        })
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(_, r)| {
            model.decoder.reset();
            model
                .generate(r, &AtomicBool::new(false), &mut |_| {})
                .expect("generates")
        })
        .collect();
    let engine = Engine::spawn(Hub::new(HubSettings::from_env()), None);
    engine.set_max_batch(4).expect("set");
    engine
        .load(
            ModelSource::Dir(dir.path().to_path_buf()),
            LoadOptions::default(),
        )
        .expect("queued");
    let ids: Vec<u64> = work
        .iter()
        .map(|(_, r)| engine.generate(r.clone()).expect("queued"))
        .collect();
    // Long enough that the cancel, sent when its first text arrives, lands mid-answer.
    let mut long = request(4000, true);
    long.prompt = Prompt::user("Go on.");
    let cancelled = engine.generate(long).expect("queued");
    let (mut done, mut streamed) = (HashMap::new(), HashMap::<u64, String>::new());
    while done.len() < ids.len() + 1 {
        match engine
            .recv_timeout(Duration::from_secs(60))
            .expect("an event")
        {
            EngineEvent::Text { id, text } => {
                streamed.entry(id).or_default().push_str(&text);
                if id == cancelled {
                    engine.cancel(cancelled);
                }
            }
            EngineEvent::Finished { id, generation } => {
                done.insert(id, generation);
            }
            EngineEvent::Failed { id, error } => panic!("{id} failed: {error}"),
            _ => {}
        }
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(done[id].tokens, expected[i].tokens, "request {i}");
        assert_eq!(streamed[id], done[id].text);
    }
    assert_eq!(done[&cancelled].finish, FinishReason::Cancelled);
    assert!(done[&cancelled].tokens.len() < 4000);
}

/// `arbiter run` with the tiny model as a local judge over `dataset`, both orders, batches of
/// `width`; returns each judgment's output by (item, swapped).
fn run_local(
    dataset: &std::path::Path,
    model: &std::path::Path,
    width: usize,
) -> HashMap<(String, bool), String> {
    let dir = dataset.parent().expect("dir");
    let panel = dir.join(format!("panel-{width}.toml"));
    std::fs::write(
        &panel,
        format!(
            "[[judge]]\nname = \"tiny\"\nkind = \"local\"\nmodel = {:?}\ndevice = \"cpu\"\ntemplate = \"cj2-quick\"\nconstrain = \"none\"\nmax_tokens = 24\nmax_concurrency = {width}\n",
            model.display().to_string()
        ),
    )
    .expect("panel");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "run",
            dataset.to_str().expect("utf-8"),
            "--panel",
            panel.to_str().expect("utf-8"),
            "--swap",
        ])
        .output()
        .expect("arbiter runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let journal = dataset.with_file_name("items.jsonl.arbiter-journal.jsonl");
    let mut seen = HashMap::new();
    for j in common::journal_file::judgments(&journal) {
        let key = (
            j["item"].as_str().expect("item").to_string(),
            j["judgment"]["swapped"].as_bool().unwrap_or(false),
        );
        let text = j["judgment"]["output"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            seen.insert(key.clone(), text).is_none(),
            "{key:?} judged twice"
        );
    }
    seen
}

#[test]
fn arbiter_run_batches_a_local_judge_with_the_same_judgments_and_resume() {
    let model = tempfile::tempdir().expect("dir");
    common::tiny_model::write(model.path());
    let one = tempfile::tempdir().expect("dir");
    let four = tempfile::tempdir().expect("dir");
    let a = common::fake_openai::write_dataset(one.path(), 6);
    let b = common::fake_openai::write_dataset(four.path(), 6);
    let alone = run_local(&a, model.path(), 1);
    let batched = run_local(&b, model.path(), 4);
    assert_eq!(alone.len(), 12, "6 items in both orders");
    assert_eq!(
        batched, alone,
        "batches of 4 write the judgments one at a time writes"
    );
    // Run again: everything is judged, nothing is added.
    assert_eq!(run_local(&b, model.path(), 4), alone);
}

#[test]
fn constrained_sequences_in_a_batch_generate_what_they_generate_alone() {
    let Some(path) = real_model::gguf("the batched constrained-decoding test") else {
        return;
    };
    let mut model =
        arbiter::engine::loader::load_gguf_file(&path, &LoadOptions::default(), &mut |_| {})
            .expect("loads");
    let library = arbiter::prompts::Library::with_user_dir(None).expect("built-in templates");
    let quick = library
        .get("cj2-quick")
        .expect("template")
        .answer_for(None)
        .expect("declares one")
        .clone();
    let grammars = [
        Some(GrammarSpec::Answer {
            what: "template cj2-quick".into(),
            grammar: quick,
        }),
        Some(GrammarSpec::Lark {
            what: "the test grammar".into(),
            text: "start: \"The better answer is \" (\"A\" | \"B\") \", because \" /[a-z ]+/ \".\""
                .into(),
        }),
        None,
    ];
    let work: Vec<(Vec<u32>, GenerateRequest)> = (0..6usize)
        .map(|i| {
            let mut r = GenerateRequest::new(
                Prompt::user(format!(
                    "Question {i}: is answer A or answer B better? {}",
                    "Explain. ".repeat(i)
                )),
                SamplingParams {
                    max_new_tokens: 40,
                    temperature: if i % 2 == 1 { 0.8 } else { 0.0 },
                    seed: i as u64,
                    ..SamplingParams::default()
                },
            )
            .with_grammar(grammars[i % 3].clone());
            r.prefill_chunk = 32;
            (model.prompt_tokens(&r.prompt).expect("tokens"), r)
        })
        .collect();
    let expected: Vec<Generation> = work
        .iter()
        .map(|(p, r)| generate_alone(&mut model, p, r))
        .collect();
    let vocab = model.grammar_vocab().expect("vocabulary");
    let (done, streamed, _) = drive(&mut model, BatchSettings::new(4, 2048), |step, s| {
        if step == 0 {
            s.set_grammar_vocab(vocab.clone());
            for (i, (p, r)) in work.iter().enumerate() {
                s.submit(i as u64, p.clone(), r, flag(), Instant::now())
                    .expect("submits");
            }
        }
    });
    for (i, want) in expected.iter().enumerate() {
        let got = &done[&(i as u64)];
        assert_eq!(got.text, want.text, "sequence {i}");
        assert_eq!(got.tokens, want.tokens, "sequence {i}");
        assert_eq!(got.finish, want.finish, "sequence {i}");
        assert_eq!(
            streamed.get(&(i as u64)).cloned().unwrap_or_default(),
            got.text
        );
    }
    assert!(
        done[&1].text.starts_with("The better answer is "),
        "{:?}",
        done[&1].text
    );
}

/// `arbiter logits` on the tiny model with `body` as its token file; the process's output.
fn logits_cli(
    model: &std::path::Path,
    name: &str,
    body: &serde_json::Value,
    extra: &[&str],
) -> std::process::Output {
    let tokens = model.parent().expect("dir").join(format!("{name}.json"));
    std::fs::write(&tokens, body.to_string()).expect("token file");
    std::process::Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args([
            "logits",
            "--model",
            model.to_str().expect("utf-8"),
            "--device",
            "cpu",
            "--tokens",
            tokens.to_str().expect("utf-8"),
        ])
        .args(extra)
        .output()
        .expect("arbiter runs")
}

fn logits_report(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

fn top1_of(report: &serde_json::Value) -> (Vec<u64>, Vec<f64>) {
    let ids = report["top1"].as_array().expect("top1");
    let logits = report["top1_logit"].as_array().expect("top1_logit");
    (
        ids.iter().map(|v| v.as_u64().expect("id")).collect(),
        logits.iter().map(|v| v.as_f64().expect("logit")).collect(),
    )
}

#[test]
fn arbiter_logits_runs_an_array_of_sequences_as_one_batch_with_what_each_gets_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let model = dir.path().join("tiny");
    common::tiny_model::write(&model);
    // Prompts and steps of different lengths, teacher-forced but one (greedy), so sequences
    // leave the batch at different steps and, with --chunk, prefill beside others' decoding.
    let shapes = [
        (5usize, 12usize, true),
        (70, 3, true),
        (130, 20, false),
        (17, 9, true),
    ];
    let sequences: Vec<serde_json::Value> = shapes
        .iter()
        .enumerate()
        .map(|(i, &(len, steps, forced))| {
            let force = forced.then(|| prompt(steps, 40 + i as u32));
            serde_json::json!({"prompt": prompt(len, i as u32), "steps": steps, "force": force})
        })
        .collect();
    let alone: Vec<(Vec<u64>, Vec<f64>)> = sequences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let report = logits_report(&logits_cli(&model, &format!("alone-{i}"), s, &[]));
            assert!(report.get("sequences").is_none(), "one object, one report");
            top1_of(&report)
        })
        .collect();
    let array = serde_json::Value::Array(sequences.clone());
    for chunk in [None, Some("16")] {
        let extra: Vec<&str> = chunk.map(|c| vec!["--chunk", c]).unwrap_or_default();
        let report = logits_report(&logits_cli(&model, "batch", &array, &extra));
        let got = report["sequences"].as_array().expect("sequences");
        assert_eq!(got.len(), shapes.len());
        assert_eq!(
            report["vocab"],
            common::tiny_model::vocab_size(),
            "{report}"
        );
        for (i, ((ids, logits), seq)) in alone.iter().zip(got).enumerate() {
            let (batch_ids, batch_logits) = top1_of(seq);
            assert_eq!(ids.len(), shapes[i].1, "sequence {i}: one top token a step");
            assert_eq!(&batch_ids, ids, "sequence {i} (chunk {chunk:?})");
            for (step, (a, b)) in logits.iter().zip(&batch_logits).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "sequence {i} step {step} (chunk {chunk:?}): top logit {b} batched, {a} alone"
                );
            }
        }
    }
    // The greedy sequence feeds its own picks: the forced ones differ from them somewhere,
    // or forcing would not be tested.
    assert!(sequences
        .iter()
        .zip(&alone)
        .filter_map(|(s, (ids, _))| s["force"].as_array().map(|f| (f, ids)))
        .any(|(force, ids)| force.iter().zip(ids).any(|(f, t)| f.as_u64() != Some(*t))));

    // --logits-out of the array: each sequence's steps x vocab, in file order, as it writes
    // them alone.
    let floats = |path: &std::path::Path| -> Vec<f32> {
        std::fs::read(path)
            .expect("logits file")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let mut alone_logits = Vec::new();
    for (i, s) in sequences.iter().enumerate() {
        let raw = dir.path().join(format!("alone-{i}.f32"));
        let name = format!("alone-raw-{i}");
        let extra = ["--logits-out", raw.to_str().expect("utf-8")];
        logits_report(&logits_cli(&model, &name, s, &extra));
        alone_logits.extend(floats(&raw));
    }
    let vocab = common::tiny_model::vocab_size();
    let total_steps: usize = shapes.iter().map(|s| s.1).sum();
    assert_eq!(alone_logits.len(), total_steps * vocab);
    let raw = dir.path().join("batch.f32");
    let extra = [
        "--chunk",
        "16",
        "--logits-out",
        raw.to_str().expect("utf-8"),
    ];
    logits_report(&logits_cli(&model, "batch", &array, &extra));
    let batch_logits = floats(&raw);
    assert_eq!(batch_logits.len(), alone_logits.len());
    let worst = alone_logits
        .iter()
        .zip(&batch_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "batched logits up to {worst} from alone");
    // --alone runs the array one sequence after another through the single stream: each
    // sequence's report and logits exactly as from its own process.
    let raw = dir.path().join("alone.f32");
    let extra = ["--alone", "--logits-out", raw.to_str().expect("utf-8")];
    let report = logits_report(&logits_cli(&model, "alone", &array, &extra));
    let got = report["sequences"].as_array().expect("sequences");
    assert_eq!(got.len(), alone.len());
    for (i, (one, seq)) in alone.iter().zip(got).enumerate() {
        assert_eq!(&top1_of(seq), one, "sequence {i} --alone");
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&floats(&raw)), bits(&alone_logits), "--alone logits");
    // And the file's rows are the steps' logits: their maxima are the reported top logits.
    let firsts: Vec<f64> = alone.iter().flat_map(|(_, l)| l.clone()).collect();
    for (step, (row, top)) in batch_logits.chunks_exact(vocab).zip(&firsts).enumerate() {
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        assert!(
            (max - top).abs() < 1e-4,
            "row {step}: max {max}, top1 {top}"
        );
    }

    // A bad record is named by its place.
    let mut bad = sequences;
    bad[2]["force"] = serde_json::json!([1, 2]);
    let out = logits_cli(&model, "bad", &serde_json::Value::Array(bad), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sequence 2") && err.contains("forced tokens"),
        "{err}"
    );
}
