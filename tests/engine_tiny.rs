//! The engine on a tiny Qwen2 model the tests write themselves (random weights, real config,
//! byte-level BPE tokenizer, chat template): correctness against a plain reference forward,
//! determinism, chunked prefill, streaming text, cancel, and the worker thread's protocol.

mod common;

use arbiter::engine::catalogue::ModelSource;
use arbiter::engine::hub::{Hub, HubSettings};
use arbiter::engine::loader::load_dir;
use arbiter::engine::{
    Engine, EngineEvent, FinishReason, GenerateRequest, LoadOptions, LoadedModel, Prompt,
    SamplingParams,
};
use common::tiny_model;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    tiny_model::write(dir.path());
    dir
}

fn load(dir: &Path) -> LoadedModel {
    load_dir(dir, &LoadOptions::default(), &mut |_| {}).expect("tiny model loads")
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams {
        max_new_tokens: n,
        ..SamplingParams::default()
    }
}

fn sampled(n: usize) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed: 11,
        max_new_tokens: n,
        ..SamplingParams::default()
    }
}

/// `n` greedy tokens after `ids`, prefilled in chunks of `chunk`, not stopping at end of turn.
fn greedy_in_chunks(model: &mut LoadedModel, ids: &[u32], chunk: usize, n: usize) -> Vec<u32> {
    let mut request = GenerateRequest::new(Prompt::Raw(String::new()), greedy(n));
    request.prefill_chunk = chunk;
    request.ignore_stop = true;
    model
        .generate_tokens(ids, &request, &never(), &mut |_| {}, Instant::now())
        .expect("generates")
        .tokens
}

fn never() -> AtomicBool {
    AtomicBool::new(false)
}

/// A plain, loop-by-loop Qwen2 forward over the same safetensors, written from the
/// architecture's definition: the independent reference the decoder must match.
struct Reference {
    w: HashMap<String, Vec<f32>>,
}

impl Reference {
    fn new(dir: &Path) -> Reference {
        let tensors = candle_core::safetensors::load(
            dir.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .expect("weights");
        let w = tensors
            .into_iter()
            .map(|(k, t)| {
                (
                    k,
                    t.flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .expect("f32"),
                )
            })
            .collect();
        Reference { w }
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.w[name]
    }

    fn matvec(&self, name: &str, x: &[f32], bias: Option<&str>) -> Vec<f32> {
        let w = self.get(name);
        let n = w.len() / x.len();
        (0..n)
            .map(|r| {
                let dot: f32 = w[r * x.len()..(r + 1) * x.len()]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum();
                dot + bias.map_or(0.0, |b| self.get(b)[r])
            })
            .collect()
    }

    fn rms(x: &[f32], w: &[f32]) -> Vec<f32> {
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let s = 1.0 / (ms + 1e-6).sqrt();
        x.iter().zip(w).map(|(v, g)| v * s * g).collect()
    }

    fn rope(x: &mut [f32], pos: usize, d: usize) {
        for head in x.chunks_mut(d) {
            for i in 0..d / 2 {
                let angle = pos as f64 / 10_000f64.powf(2.0 * i as f64 / d as f64);
                let (s, c) = (angle as f32).sin_cos();
                let (a, b) = (head[i], head[i + d / 2]);
                head[i] = a * c - b * s;
                head[i + d / 2] = b * c + a * s;
            }
        }
    }

    /// Logits at every position of `tokens`.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        use tiny_model::{HEADS, HIDDEN, KV_HEADS, LAYERS};
        let d = HIDDEN / HEADS;
        let embed = self.get("model.embed_tokens.weight");
        let mut keys: Vec<Vec<Vec<f32>>> = vec![vec![]; LAYERS];
        let mut values: Vec<Vec<Vec<f32>>> = vec![vec![]; LAYERS];
        let mut out = vec![];
        for (pos, &t) in tokens.iter().enumerate() {
            let mut x = embed[t as usize * HIDDEN..(t as usize + 1) * HIDDEN].to_vec();
            for l in 0..LAYERS {
                let p = format!("model.layers.{l}");
                let h = Self::rms(&x, self.get(&format!("{p}.input_layernorm.weight")));
                let a = format!("{p}.self_attn");
                let mut q = self.matvec(
                    &format!("{a}.q_proj.weight"),
                    &h,
                    Some(&format!("{a}.q_proj.bias")),
                );
                let mut k = self.matvec(
                    &format!("{a}.k_proj.weight"),
                    &h,
                    Some(&format!("{a}.k_proj.bias")),
                );
                let v = self.matvec(
                    &format!("{a}.v_proj.weight"),
                    &h,
                    Some(&format!("{a}.v_proj.bias")),
                );
                Self::rope(&mut q, pos, d);
                Self::rope(&mut k, pos, d);
                keys[l].push(k);
                values[l].push(v);
                let mut attn = vec![0f32; HEADS * d];
                for hq in 0..HEADS {
                    let kv = hq / (HEADS / KV_HEADS);
                    let qh = &q[hq * d..(hq + 1) * d];
                    let scores: Vec<f32> = keys[l]
                        .iter()
                        .map(|k| {
                            qh.iter()
                                .zip(&k[kv * d..(kv + 1) * d])
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                                / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f32 = e.iter().sum();
                    for (j, w) in e.iter().enumerate() {
                        for i in 0..d {
                            attn[hq * d + i] += w / sum * values[l][j][kv * d + i];
                        }
                    }
                }
                let o = self.matvec(&format!("{a}.o_proj.weight"), &attn, None);
                x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
                let h = Self::rms(
                    &x,
                    self.get(&format!("{p}.post_attention_layernorm.weight")),
                );
                let gate = self.matvec(&format!("{p}.mlp.gate_proj.weight"), &h, None);
                let up = self.matvec(&format!("{p}.mlp.up_proj.weight"), &h, None);
                let act: Vec<f32> = gate
                    .iter()
                    .zip(&up)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let down = self.matvec(&format!("{p}.mlp.down_proj.weight"), &act, None);
                x.iter_mut().zip(&down).for_each(|(x, o)| *x += o);
            }
            let h = Self::rms(&x, self.get("model.norm.weight"));
            out.push(self.matvec("model.embed_tokens.weight", &h, None));
        }
        out
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn prompt_ids(model: &LoadedModel, text: &str) -> Vec<u32> {
    model
        .prompt_tokens(&Prompt::user(text))
        .expect("prompt tokenizes")
}

#[test]
fn logits_match_a_plain_reference_forward_at_every_position() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    let ids = prompt_ids(&model, "Model A is better than Model B, é 中文 😀 the end.");
    assert!(ids.len() > 20, "prompt of {} tokens", ids.len());
    let reference = Reference::new(dir.path());
    let expected = reference.logits(&ids);
    // All at once, then one token at a time through the cache: both must match.
    model.decoder.reset();
    let all = model.decoder.forward_all(&ids).expect("forward");
    let all: Vec<Vec<f32>> = all.to_vec2().expect("logits");
    model.decoder.reset();
    for (i, &t) in ids.iter().enumerate() {
        let step: Vec<f32> = model
            .decoder
            .forward(&[t])
            .expect("step")
            .to_vec1()
            .expect("logits");
        assert!(
            max_diff(&step, &expected[i]) < 1e-4,
            "position {i}: {}",
            max_diff(&step, &expected[i])
        );
        assert!(
            max_diff(&all[i], &expected[i]) < 1e-4,
            "position {i} (batched)"
        );
    }
}

#[test]
fn greedy_generation_is_deterministic() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    let request = GenerateRequest::new(Prompt::user("Which answer is better?"), greedy(40));
    let a = model
        .generate(&request, &never(), &mut |_| {})
        .expect("generates");
    let b = model
        .generate(&request, &never(), &mut |_| {})
        .expect("generates");
    assert!(!a.tokens.is_empty());
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.text, b.text);
    // A fresh load of the same files gives the same tokens too.
    let mut again = load(dir.path());
    let c = again
        .generate(&request, &never(), &mut |_| {})
        .expect("generates");
    assert_eq!(a.tokens, c.tokens);
}

#[test]
fn chunked_prefill_equals_single_pass() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    let long = "The first answer explains the loop; the second one uses a built-in. ".repeat(30);
    let ids = prompt_ids(&model, &long);
    assert!(ids.len() > 600, "long prompt of {} tokens", ids.len());
    let mut run = |chunk: usize| greedy_in_chunks(&mut model, &ids, chunk, 32);
    let single = run(ids.len());
    assert_eq!(single.len(), 32);
    for chunk in [1, 7, 64, 512] {
        assert_eq!(run(chunk), single, "prefill in chunks of {chunk}");
    }
    // And the logits themselves agree closely.
    model.decoder.reset();
    let one: Vec<f32> = model
        .decoder
        .forward(&ids)
        .expect("f")
        .to_vec1()
        .expect("v");
    model.decoder.reset();
    let mut last = None;
    for piece in ids.chunks(100) {
        last = Some(model.decoder.forward(piece).expect("f"));
    }
    let chunked: Vec<f32> = last.expect("some").to_vec1().expect("v");
    assert!(max_diff(&one, &chunked) < 1e-4);
}

#[test]
fn streamed_text_equals_the_final_decode() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    for seed in 0..4u64 {
        let params = SamplingParams {
            temperature: 1.5,
            seed,
            max_new_tokens: 80,
            ..SamplingParams::default()
        };
        let request = GenerateRequest::new(Prompt::user("中文 and é, 😀"), params);
        let mut streamed = String::new();
        let g = model
            .generate(&request, &never(), &mut |t| streamed.push_str(t))
            .expect("generates");
        assert_eq!(streamed, g.text, "seed {seed}");
        assert_eq!(
            g.text,
            model.tokenizer.decode(&g.tokens, true).expect("decode")
        );
    }
}

#[test]
fn multi_byte_characters_stream_whole() {
    let dir = tiny_dir();
    let model = load(dir.path());
    let text = "naïve 中文 😀 and é";
    let ids = model.tokenizer.encode(text, false).expect("encode");
    // The tiny vocabulary splits these characters over several byte tokens.
    assert!(ids.len() > text.chars().count() / 2);
    let mut stream = model.tokenizer.inner().decode_stream(true);
    let mut pieces = vec![];
    for id in ids {
        if let Some(p) = stream.step(id).expect("step") {
            pieces.push(p);
        }
    }
    assert_eq!(pieces.concat(), text);
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
}

#[test]
fn cancel_stops_within_one_token() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    // Cancelled before it starts: nothing is generated.
    let cancel = AtomicBool::new(true);
    let mut request = GenerateRequest::new(Prompt::user("Go on."), sampled(2000));
    request.ignore_stop = true;
    let g = model
        .generate(&request, &cancel, &mut |_| {})
        .expect("generates");
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert!(g.tokens.is_empty());
    // Cancelled from the first piece of text: the token that made it is the last one.
    let cancel = AtomicBool::new(false);
    let mut pieces: Vec<String> = vec![];
    let g = model
        .generate(&request, &cancel, &mut |t| {
            pieces.push(t.to_string());
            cancel.store(true, Ordering::Relaxed);
        })
        .expect("generates");
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert!(g.tokens.len() < 2000);
    assert!(!pieces.is_empty());
    // Replaying the tokens through a fresh stream: the first text appears at the last token,
    // so not a single token was generated after the cancel.
    let mut stream = model.tokenizer.inner().decode_stream(true);
    let first_text = g
        .tokens
        .iter()
        .position(|&t| stream.step(t).expect("step").is_some());
    assert_eq!(
        first_text,
        Some(g.tokens.len() - 1),
        "{} tokens",
        g.tokens.len()
    );
    assert_eq!(pieces.concat(), g.text);
}

#[test]
fn budget_and_stop_reasons_are_reported() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    let mut request = GenerateRequest::new(Prompt::user("Hi"), greedy(5));
    request.ignore_stop = true;
    let g = model
        .generate(&request, &never(), &mut |_| {})
        .expect("generates");
    assert_eq!(g.finish, FinishReason::Length);
    assert_eq!(g.tokens.len(), 5);
    assert_eq!(g.timing.generated_tokens, 5);
    assert!(g.timing.prompt_tokens > 0);
    assert!(g.timing.time_to_first_token_ms >= g.timing.prefill_ms);
    // The template's end-of-turn token and the config's EOS ids stop generation.
    let im_end = model
        .tokenizer
        .token_to_id("<|im_end|>")
        .expect("special token");
    assert!(model.stop_ids.contains(&im_end), "{:?}", model.stop_ids);
}

#[test]
fn the_chat_template_is_the_models_own() {
    let dir = tiny_dir();
    let model = load(dir.path());
    let text = model.render(&Prompt::user("Judge this.")).expect("renders");
    assert_eq!(
        text,
        "<|im_start|>user\nJudge this.<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = prompt_ids(&model, "Judge this.");
    assert_eq!(
        ids[0],
        model
            .tokenizer
            .token_to_id("<|im_start|>")
            .expect("special")
    );
}

fn next_event(engine: &Engine) -> EngineEvent {
    engine
        .recv_timeout(Duration::from_secs(60))
        .expect("the engine answers within a minute")
}

#[test]
fn the_worker_loads_streams_cancels_and_reports_errors() {
    let dir = tiny_dir();
    let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = wakes.clone();
    let engine = Engine::spawn(
        Hub::new(HubSettings::from_env()),
        Some(std::sync::Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        })),
    );
    // Generating before a load is a clear error, not a hang.
    let early = engine
        .generate(GenerateRequest::new(Prompt::user("x"), greedy(3)))
        .expect("queued");
    match next_event(&engine) {
        EngineEvent::Failed { id, error } => {
            assert_eq!(id, early);
            assert!(error.to_string().contains("no model is loaded"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // A missing folder fails the load with its name.
    let missing = dir.path().join("nope");
    std::fs::create_dir_all(&missing).expect("dir");
    engine
        .load(ModelSource::Dir(missing.clone()), LoadOptions::default())
        .expect("queued");
    loop {
        match next_event(&engine) {
            EngineEvent::LoadFailed { error, .. } => {
                assert!(error.to_string().contains("config.json"), "{error}");
                break;
            }
            EngineEvent::Loading { .. } => continue,
            other => panic!("expected a load failure, got {other:?}"),
        }
    }
    let load_id = engine
        .load(
            ModelSource::Dir(dir.path().to_path_buf()),
            LoadOptions::default(),
        )
        .expect("queued");
    loop {
        match next_event(&engine) {
            EngineEvent::Loaded { id, info } => {
                assert_eq!(id, load_id);
                assert_eq!(info.family, "qwen2");
                break;
            }
            EngineEvent::Loading { .. } => continue,
            other => panic!("expected the load, got {other:?}"),
        }
    }
    // A full generation: Started, Text..., Finished with the same text.
    let id = engine
        .generate(GenerateRequest::new(
            Prompt::user("Which is better?"),
            greedy(30),
        ))
        .expect("queued");
    let mut text = String::new();
    let generation = loop {
        match next_event(&engine) {
            EngineEvent::Started {
                id: i,
                prompt_tokens,
            } => {
                assert_eq!(i, id);
                assert!(prompt_tokens > 0);
            }
            EngineEvent::Text { id: i, text: t } => {
                assert_eq!(i, id);
                text.push_str(&t);
            }
            EngineEvent::Finished { id: i, generation } => {
                assert_eq!(i, id);
                break generation;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(text, generation.text);
    assert!(
        wakes.load(Ordering::Relaxed) > 3,
        "the waker runs on events"
    );
    // Cancel a long generation as soon as its first text arrives.
    let mut request = GenerateRequest::new(Prompt::user("Go on."), sampled(5000));
    request.ignore_stop = true;
    let id = engine.generate(request).expect("queued");
    let generation = loop {
        match next_event(&engine) {
            EngineEvent::Text { .. } => engine.cancel(id),
            EngineEvent::Started { .. } => {}
            EngineEvent::Finished { generation, .. } => break generation,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(generation.finish, FinishReason::Cancelled);
    assert!(
        generation.tokens.len() < 5000,
        "{} tokens",
        generation.tokens.len()
    );
}

#[test]
fn a_4000_token_prompt_prefills_in_chunks_exactly_as_in_one_pass() {
    let dir = tiny_dir();
    let mut model = load(dir.path());
    let text =
        "Answer B handles the empty list, answer A does not; both print the sum. ".repeat(200);
    let mut ids = prompt_ids(&model, &text);
    ids.truncate(4000);
    assert_eq!(ids.len(), 4000);
    let mut run = |chunk: usize| greedy_in_chunks(&mut model, &ids, chunk, 16);
    assert_eq!(run(512), run(4000));
}

#[test]
fn bf16_on_the_cpu_agrees_with_f32() {
    let dir = tiny_dir();
    let mut f32_model = load(dir.path());
    let mut bf16_model = load_dir(
        dir.path(),
        &LoadOptions {
            dtype: Some(candle_core::DType::BF16),
            ..LoadOptions::default()
        },
        &mut |_| {},
    )
    .expect("loads in bf16");
    assert_eq!(bf16_model.info.precision, "bf16");
    let ids = prompt_ids(&f32_model, "Which of the two answers is correct?");
    let a: Vec<f32> = f32_model
        .decoder
        .forward(&ids)
        .expect("f32")
        .to_vec1()
        .expect("v");
    let b: Vec<f32> = bf16_model
        .decoder
        .forward(&ids)
        .expect("bf16")
        .to_vec1()
        .expect("v");
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_diff(&a, &b);
    assert!(
        diff < 0.05 * scale,
        "bf16 logits drift {diff} on a scale of {scale}"
    );
}

#[test]
fn a_model_that_cannot_fit_is_refused_with_the_numbers() {
    let dir = tiny_dir();
    // A context of a billion tokens needs a KV cache larger than any machine's memory.
    let err = load_dir(
        dir.path(),
        &LoadOptions {
            context: Some(1_000_000_000),
            ..LoadOptions::default()
        },
        &mut |_| {},
    )
    .expect_err("cannot fit");
    let text = err.to_string();
    assert!(
        text.contains("needs about") && text.contains("free"),
        "{text}"
    );
}

#[test]
fn a_device_this_build_lacks_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tiny_dir();
    let err = load_dir(
        dir.path(),
        &LoadOptions {
            device: arbiter::engine::device::DeviceChoice::Cuda(0),
            ..LoadOptions::default()
        },
        &mut |_| {},
    )
    .expect_err("no cuda in this build");
    assert!(err.to_string().contains("--features cuda"), "{err}");
}
