//! `arbiter bench`: time prefill, first token and decode of a model on a synthetic prompt of a
//! given length, and report peak memory, as one JSON object (a companion script prints the same
//! fields for transformers or llama.cpp on the same checkpoint, so rows can be compared).

use super::judge::ModelArgs;
use crate::engine::model::Backend;
use crate::engine::schedule::{BatchSettings, Scheduler, SeqEvent};
use crate::engine::{GenerateRequest, LoadedModel, Prompt, SamplingParams};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 1500)]
    pub prompt_tokens: usize,
    /// Tokens to decode after the prompt (end-of-turn tokens do not stop it).
    #[arg(long, default_value_t = 256)]
    pub new_tokens: usize,
    /// Measured runs after one warm-up; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Prefill chunk size in tokens (default: the engine's, as the app and `arbiter judge`
    /// prefill; a size at least the prompt's runs it in one pass).
    #[arg(long, default_value_t = crate::engine::DEFAULT_PREFILL_CHUNK)]
    pub chunk: usize,
    /// Run this many sequences at once through continuous batching (the same prompt each):
    /// reports aggregate and per-sequence decode, time to first token under load, and the KV
    /// cache's peak against what the tokens need.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// With --batch: prompt tokens prefilled per step beside the decode tokens.
    #[arg(long, default_value_t = crate::engine::schedule::DEFAULT_STEP_TOKENS)]
    pub step_tokens: usize,
    /// With --batch: instead of timing, check that every sequence of the batch (prompts of
    /// different lengths, prefixes of the synthetic prompt) gets the greedy tokens and logits
    /// it gets alone, for --new-tokens steps. Exits 1 on an f32 disagreement.
    #[arg(long, requires = "batch")]
    pub check: bool,
}

/// Text for the synthetic prompt: ordinary prose and code, so tokenization is typical.
const FILLER: &str = "The judge reads both answers to the user's question and compares them on \
correctness, completeness and clarity. Answer A computes the sum with a loop: `for i in range(n): \
total += values[i]`, while answer B uses the built-in sum and handles the empty list. ";

fn proc_status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let mut model = args.model.load()?;
    let rss_after_load = proc_status_kib("VmRSS:").map(|k| k * 1024);
    let peak_after_load = proc_status_kib("VmHWM:").map(|k| k * 1024);
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.len() < args.prompt_tokens {
        text.push_str(FILLER);
        ids = model.tokenizer.encode(&text, false)?;
    }
    ids.truncate(args.prompt_tokens.max(1));
    let sampling = SamplingParams {
        max_new_tokens: args.new_tokens,
        ..SamplingParams::default()
    };
    let mut request = GenerateRequest::new(Prompt::Raw(String::new()), sampling);
    request.ignore_stop = true;
    request.prefill_chunk = args.chunk.max(1);
    if args.check {
        return batch_check(&args, &mut model, &ids);
    }
    if args.batch > 1 {
        return bench_batch(&args, &mut model, &ids, &request);
    }
    let never = AtomicBool::new(false);
    let watch = crate::engine::device::GpuMemoryWatch::start(model.decoder.device());
    // Warm-up: first-touch of weights, kernel selection, allocator pools.
    model.generate_tokens(&ids, &request, &never, &mut |_| {}, Instant::now())?;
    let (mut prefill, mut ttft, mut decode) = (vec![], vec![], vec![]);
    let mut generated = 0;
    for _ in 0..args.runs.max(1) {
        let g = model.generate_tokens(&ids, &request, &never, &mut |_| {}, Instant::now())?;
        prefill.push(g.timing.prefill_ms);
        ttft.push(g.timing.time_to_first_token_ms);
        decode.push(g.timing.decode_tokens_per_s);
        generated = g.timing.generated_tokens;
    }
    let peak_gpu = watch.finish();
    let report = serde_json::json!({
        "engine": "arbiter",
        "model": model.info.name,
        "device": model.info.device,
        "precision": model.info.precision,
        "threads": candle_core::utils::get_num_threads(),
        "prompt_tokens": ids.len(),
        "prefill_chunk": args.chunk.min(ids.len()),
        "new_tokens": generated,
        "runs": args.runs.max(1),
        "prefill_ms": median(prefill),
        "time_to_first_token_ms": median(ttft),
        "decode_tokens_per_s": median(decode),
        "load_s": model.info.load_seconds,
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_after_load_bytes": peak_after_load,
        "peak_rss_bytes": proc_status_kib("VmHWM:").map(|k| k * 1024),
        "peak_gpu_bytes": peak_gpu,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// What one batched run measured.
struct BatchRun {
    wall_s: f64,
    generated: usize,
    /// Decode tokens over the time of the steps that prefilled nothing.
    aggregate_decode: f64,
    per_sequence_decode: Vec<f64>,
    ttft_ms: Vec<f64>,
    kv_peak_bytes: usize,
    kv_needed_bytes: usize,
    pool_bytes: usize,
}

/// `args.batch` copies of `request` on `ids` at once through the scheduler, timed per step.
fn batch_once(
    args: &BenchArgs,
    model: &mut LoadedModel,
    ids: &[u32],
    request: &GenerateRequest,
) -> anyhow::Result<BatchRun> {
    let LoadedModel {
        decoder,
        tokenizer,
        stop_ids,
        ..
    } = model;
    let Backend::Arbiter(decoder) = decoder else {
        anyhow::bail!("--batch runs on Arbiter's own decoder (Qwen2 and Llama models)");
    };
    let mut settings = BatchSettings::for_decoder(args.batch, decoder);
    settings.step_tokens = args.step_tokens.max(1);
    let mut scheduler = Scheduler::new(decoder, tokenizer, stop_ids, settings);
    let started = Instant::now();
    for seq in 0..args.batch {
        scheduler.submit(
            seq as u64,
            ids.to_vec(),
            request,
            Arc::new(AtomicBool::new(false)),
            started,
        )?;
    }
    let (mut decode_tokens, mut decode_s) = (0usize, 0f64);
    let mut generations = Vec::with_capacity(args.batch);
    let mut failure = None;
    let mut peak_tokens = 0;
    while !scheduler.is_idle() {
        let step = Instant::now();
        scheduler.step(decoder, &mut |event| match event {
            SeqEvent::Finished { generation, .. } => generations.push(generation),
            SeqEvent::Failed { error, .. } => failure = Some(error),
            SeqEvent::Text { .. } => {}
        });
        // The step ends with its tokens copied to the host: the time is the device's.
        let took = step.elapsed().as_secs_f64();
        let stats = scheduler.last_step();
        if stats.prefill_tokens == 0 && stats.decode_rows > 0 {
            decode_tokens += stats.decode_rows;
            decode_s += took;
        }
        peak_tokens = peak_tokens.max(scheduler.cache().held_tokens());
        if let Some(error) = failure.take() {
            return Err(error.into());
        }
    }
    let cache = scheduler.cache();
    Ok(BatchRun {
        wall_s: started.elapsed().as_secs_f64(),
        generated: generations.iter().map(|g| g.tokens.len()).sum(),
        aggregate_decode: if decode_s > 0.0 {
            decode_tokens as f64 / decode_s
        } else {
            0.0
        },
        per_sequence_decode: generations
            .iter()
            .map(|g| g.timing.decode_tokens_per_s)
            .collect(),
        ttft_ms: generations
            .iter()
            .map(|g| g.timing.time_to_first_token_ms)
            .collect(),
        kv_peak_bytes: cache.peak_used_blocks() * cache.block_bytes(),
        kv_needed_bytes: cache.token_bytes(peak_tokens),
        pool_bytes: cache.capacity() * cache.block_bytes(),
    })
}

/// `arbiter bench --batch N`: one warm-up batch (two tokens each), then `runs` timed ones.
fn bench_batch(
    args: &BenchArgs,
    model: &mut LoadedModel,
    ids: &[u32],
    request: &GenerateRequest,
) -> anyhow::Result<i32> {
    model.decoder.clear_cache();
    let watch = crate::engine::device::GpuMemoryWatch::start(model.decoder.device());
    let mut warm = request.clone();
    warm.sampling.max_new_tokens = 2;
    batch_once(args, model, ids, &warm)?;
    crate::engine::model::take_step_profile();
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        runs.push(batch_once(args, model, ids, request)?);
    }
    let peak_gpu = watch.finish();
    // With ARBITER_STEP_PROFILE=1 on CUDA: each stage's GPU time per decode step (steps with
    // prompt pieces left out), averaged over the timed runs.
    let stages = crate::engine::model::take_step_profile();
    let steps = stages.first().map(|s| s.1).unwrap_or(0).max(1) as f64;
    let step_profile: Vec<serde_json::Value> = stages
        .iter()
        .map(|(name, seen, ms)| {
            serde_json::json!({"stage": name, "per_step": *seen as f64 / steps, "ms_per_step": ms / steps})
        })
        .collect();
    let pick = |f: &dyn Fn(&BatchRun) -> f64| median(runs.iter().map(f).collect());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let last = runs.last().ok_or_else(|| anyhow::anyhow!("no run"))?;
    let report = serde_json::json!({
        "engine": "arbiter",
        "model": model.info.name,
        "device": model.info.device,
        "precision": model.info.precision,
        "threads": candle_core::utils::get_num_threads(),
        "batch": args.batch,
        "step_tokens": args.step_tokens,
        "prompt_tokens": ids.len(),
        "prefill_chunk": args.chunk.min(ids.len()),
        "new_tokens": last.generated / args.batch.max(1),
        "runs": runs.len(),
        "aggregate_decode_tokens_per_s": pick(&|r| r.aggregate_decode),
        "per_sequence_decode_tokens_per_s": pick(&|r| mean(&r.per_sequence_decode)),
        "time_to_first_token_ms": pick(&|r| mean(&r.ttft_ms)),
        "max_time_to_first_token_ms": pick(&|r| max(&r.ttft_ms)),
        "throughput_tokens_per_s": pick(&|r| r.generated as f64 / r.wall_s),
        "wall_s": pick(&|r| r.wall_s),
        "kv_peak_bytes": last.kv_peak_bytes,
        "kv_needed_bytes": last.kv_needed_bytes,
        "kv_pool_bytes": last.pool_bytes,
        "load_s": model.info.load_seconds,
        "peak_rss_bytes": proc_status_kib("VmHWM:").map(|k| k * 1024),
        "peak_gpu_bytes": peak_gpu,
        "step_profile": step_profile,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}

/// `arbiter bench --batch N --check`: each sequence alone through the single-stream path,
/// then all together through batched steps fed the same tokens, logits compared on the
/// device; then all together through the scheduler (steps launched ahead where it can),
/// each generating its greedy tokens, which must be those it took alone.
fn batch_check(args: &BenchArgs, model: &mut LoadedModel, ids: &[u32]) -> anyhow::Result<i32> {
    use candle_core::{DType, Tensor};
    let f32 = model.decoder.dtype() == DType::F32;
    let LoadedModel {
        decoder,
        tokenizer,
        stop_ids,
        info,
        ..
    } = model;
    let Backend::Arbiter(decoder) = decoder else {
        anyhow::bail!("--batch runs on Arbiter's own decoder (Qwen2 and Llama models)");
    };
    let n = args.batch.max(1);
    let steps = args.new_tokens.max(1);
    let prompts: Vec<Vec<u32>> = (0..n)
        .map(|i| ids[..(ids.len() * (i + 1) / n).max(1)].to_vec())
        .collect();
    let argmax = |t: &Tensor| -> anyhow::Result<u32> { Ok(t.argmax(0)?.to_scalar::<u32>()?) };
    // Alone: every step's logits, kept on the device.
    let mut alone: Vec<(Vec<Tensor>, Vec<u32>)> = Vec::with_capacity(n);
    for p in &prompts {
        decoder.reset();
        let mut logits = decoder.forward(p)?;
        let (mut all, mut tokens) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
        for _ in 0..steps {
            let t = argmax(&logits)?;
            tokens.push(t);
            all.push(logits);
            logits = decoder.forward(&[t])?;
        }
        alone.push((all, tokens));
    }
    decoder.clear_cache();
    let block = crate::engine::model::paged::DEFAULT_BLOCK_SIZE;
    let blocks: usize = prompts
        .iter()
        .map(|p| (p.len() + steps).div_ceil(block))
        .sum();
    let mut cache = decoder.paged_cache(block, blocks);
    for (i, p) in prompts.iter().enumerate() {
        cache.admit(i as u64, p.len() + steps)?;
    }
    let (mut agree, mut max_diff) = (vec![0usize; n], vec![0f32; n]);
    let mut feed = prompts.clone();
    for step in 0..steps {
        let inputs: Vec<crate::engine::model::StepInput<'_>> = feed
            .iter()
            .enumerate()
            .map(|(i, t)| crate::engine::model::StepInput {
                seq: i as u64,
                tokens: t,
            })
            .collect();
        let rows = decoder.forward_batch(&mut cache, &inputs)?;
        let best = rows.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
        for i in 0..n {
            let diff = (rows.get(i)? - &alone[i].0[step])?
                .abs()?
                .max(0)?
                .to_scalar::<f32>()?;
            max_diff[i] = max_diff[i].max(diff);
            if best[i] == alone[i].1[step] {
                agree[i] += 1;
            }
        }
        // Fed the tokens alone chose, so one disagreement does not carry into the next steps.
        feed = alone.iter().map(|(_, t)| vec![t[step]]).collect();
    }
    let identical = agree.iter().filter(|a| **a == steps).count();
    let worst = max_diff.iter().copied().fold(0f32, f32::max);
    drop(cache);
    // Through the scheduler: greedy, `steps` tokens each, end of turn ignored.
    let mut settings = BatchSettings::for_decoder(n, decoder);
    settings.step_tokens = args.step_tokens.max(1);
    let mut scheduler = Scheduler::new(decoder, tokenizer, stop_ids, settings);
    let sampling = SamplingParams {
        max_new_tokens: steps,
        ..SamplingParams::default()
    };
    let mut request = GenerateRequest::new(Prompt::Raw(String::new()), sampling);
    request.ignore_stop = true;
    let started = Instant::now();
    for (i, p) in prompts.iter().enumerate() {
        let cancel = Arc::new(AtomicBool::new(false));
        scheduler.submit(i as u64, p.clone(), &request, cancel, started)?;
    }
    let mut generated: Vec<Option<Vec<u32>>> = vec![None; n];
    let (mut failure, mut ahead_steps) = (None, 0usize);
    while !scheduler.is_idle() {
        scheduler.step(decoder, &mut |event| match event {
            SeqEvent::Finished { id, generation } => {
                if let Some(slot) = generated.get_mut(id as usize) {
                    *slot = Some(generation.tokens);
                }
            }
            SeqEvent::Failed { error, .. } => failure = Some(error),
            SeqEvent::Text { .. } => {}
        });
        ahead_steps += usize::from(scheduler.last_step().ahead);
        if let Some(error) = failure.take() {
            return Err(error.into());
        }
    }
    let scheduled_identical = generated
        .iter()
        .zip(&alone)
        .filter(|(g, (_, tokens))| g.as_deref() == Some(&tokens[..]))
        .count();
    let report = serde_json::json!({
        "engine": "arbiter",
        "check": "batch",
        "model": info.name,
        "device": info.device,
        "precision": info.precision,
        "sequences": n,
        "prompt_tokens": prompts.iter().map(Vec::len).collect::<Vec<_>>(),
        "steps": steps,
        "identical_sequences": identical,
        "token_agreement": agree.iter().sum::<usize>() as f64 / (n * steps) as f64,
        "max_logit_diff": worst,
        "per_sequence_max_logit_diff": max_diff,
        "scheduled_identical_sequences": scheduled_identical,
        "scheduled_steps_ahead": ahead_steps,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(
        if f32 && (identical < n || worst > 1e-3 || scheduled_identical < n) {
            1
        } else {
            0
        },
    )
}

#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSON file `{"prompt": [ids], "steps": N, "force": [ids]}`: the prompt is prefilled in one
    /// pass, then N single-token steps follow, each feeding `force[i]` when given
    /// (teacher-forced) or the step's own top token (greedy). Prints
    /// `{"top1": [...], "top1_logit": [...], "vocab": V, ...}`.
    ///
    /// Or a JSON array of such objects (prompts and steps of any lengths): they run together
    /// through batched steps on a paged cache, as the scheduler runs a batch (Arbiter's own
    /// decoder only). Every step feeds each unfinished sequence its next piece of prompt or,
    /// once its prompt is in, its next token; the report has one `{"top1", "top1_logit"}` per
    /// sequence, in file order, under `"sequences"`.
    #[arg(long, value_name = "FILE")]
    pub tokens: std::path::PathBuf,
    /// Also write every step's logits here as little-endian f32, steps x vocab; for an array,
    /// each sequence's steps x vocab in file order, one after another.
    #[arg(long, value_name = "FILE")]
    pub logits_out: Option<std::path::PathBuf>,
    /// Prefill the prompt in chunks of this many tokens (1: every prompt token as a decode
    /// step) instead of one pass; with several sequences, the most a step feeds of each prompt.
    #[arg(long)]
    pub chunk: Option<usize>,
    /// With an array: run its sequences one after another through the single-stream cache
    /// instead of as one batch (what each gets alone, for comparing with the batch).
    #[arg(long)]
    pub alone: bool,
}

#[derive(serde::Deserialize)]
struct LogitsInput {
    prompt: Vec<u32>,
    steps: usize,
    #[serde(default)]
    force: Option<Vec<u32>>,
}

impl LogitsInput {
    /// Refuses a sequence that cannot run; `which` names it in the message ("sequence 2: ")
    /// when the file holds several.
    fn check(&self, file: &std::path::Path, which: &str) -> anyhow::Result<()> {
        if self.prompt.is_empty() {
            anyhow::bail!("{}: {which}the prompt has no tokens", file.display());
        }
        if let Some(force) = &self.force {
            if force.len() + 1 < self.steps {
                anyhow::bail!(
                    "{}: {which}{} steps need at least {} forced tokens, the file has {}",
                    file.display(),
                    self.steps,
                    self.steps - 1,
                    force.len()
                );
            }
        }
        Ok(())
    }

    /// The token fed after step `step` (whose top token was `best`).
    fn next(&self, step: usize, best: u32) -> u32 {
        match &self.force {
            Some(force) => force[step],
            None => best,
        }
    }
}

/// What one sequence's steps chose: the top token and its logit at every step.
#[derive(Default, serde::Serialize)]
struct TopTokens {
    top1: Vec<u32>,
    top1_logit: Vec<f32>,
}

/// `arbiter logits`: prints `{"top1": [...], "top1_logit": [...], "vocab": V}` as JSON (or
/// `{"sequences": [{"top1", "top1_logit"}...], "vocab": V}` for an array of sequences). Step
/// i's logits are those after the prompt and the first i fed tokens.
pub fn logits(args: LogitsArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let text = std::fs::read_to_string(&args.tokens)
        .with_context(|| format!("reading {}", args.tokens.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a token file", args.tokens.display()))?;
    let serde_json::Value::Array(records) = value else {
        let input: LogitsInput = serde_json::from_value(value)
            .with_context(|| format!("{} is not a token file", args.tokens.display()))?;
        input.check(&args.tokens, "")?;
        return logits_one(&args, &input);
    };
    if records.is_empty() {
        anyhow::bail!("{}: the array holds no sequences", args.tokens.display());
    }
    let mut inputs = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let input: LogitsInput = serde_json::from_value(record).with_context(|| {
            format!(
                "{}: sequence {i} (counting from 0) is not an object \
                 {{\"prompt\": [ids], \"steps\": N, \"force\": [ids]}}",
                args.tokens.display()
            )
        })?;
        input.check(&args.tokens, &format!("sequence {i} (counting from 0): "))?;
        inputs.push(input);
    }
    let mut out = create_logits_file(&args)?;
    let mut model = args.model.load()?;
    let (sequences, vocab) = if args.alone {
        let mut sequences = Vec::with_capacity(inputs.len());
        let mut vocab = 0;
        for input in &inputs {
            let (seen, v) = logits_alone(&mut model, input, args.chunk, out.as_mut())?;
            sequences.push(seen);
            vocab = v;
        }
        if let Some(mut out) = out {
            std::io::Write::flush(&mut out)?;
        }
        (sequences, vocab)
    } else {
        let out = match out {
            Some(out) => Some(out.into_inner().map_err(|e| e.into_error())?),
            None => None,
        };
        logits_batch(&mut model, &inputs, args.chunk, out)?
    };
    let report = serde_json::json!({
        "model": model.info.name,
        "device": model.info.device,
        "precision": model.info.precision,
        "vocab": vocab,
        "sequences": sequences,
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

/// One sequence through the single-stream cache.
fn logits_one(args: &LogitsArgs, input: &LogitsInput) -> anyhow::Result<i32> {
    let mut out = create_logits_file(args)?;
    let mut model = args.model.load()?;
    let (seen, vocab) = logits_alone(&mut model, input, args.chunk, out.as_mut())?;
    if let Some(mut out) = out {
        std::io::Write::flush(&mut out)?;
    }
    let report = serde_json::json!({
        "model": model.info.name,
        "device": model.info.device,
        "precision": model.info.precision,
        "vocab": vocab,
        "top1": seen.top1,
        "top1_logit": seen.top1_logit,
    });
    println!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

/// The `--logits-out` file, created (empty) if asked for.
fn create_logits_file(
    args: &LogitsArgs,
) -> anyhow::Result<Option<std::io::BufWriter<std::fs::File>>> {
    use anyhow::Context;
    Ok(match &args.logits_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    })
}

/// `input` through the single-stream cache from empty: its prompt in pieces of `chunk` (the
/// whole prompt without one), then its steps. Every step's logits are appended to `out` when
/// given. Returns the top tokens and the vocabulary size.
fn logits_alone(
    model: &mut LoadedModel,
    input: &LogitsInput,
    chunk: Option<usize>,
    mut out: Option<&mut std::io::BufWriter<std::fs::File>>,
) -> anyhow::Result<(TopTokens, usize)> {
    use std::io::Write;
    let decoder = &mut model.decoder;
    decoder.reset();
    decoder.reserve(input.prompt.len() + input.steps)?;
    let chunk = chunk.unwrap_or(input.prompt.len()).max(1);
    let mut logits = None;
    for piece in input.prompt.chunks(chunk) {
        logits = Some(decoder.forward(piece)?);
    }
    let Some(mut logits) = logits else {
        anyhow::bail!("the prompt has no tokens");
    };
    let vocab = logits.dim(0)?;
    let mut seen = TopTokens::default();
    for step in 0..input.steps {
        let best = logits.argmax(0)?.to_scalar::<u32>()?;
        seen.top1.push(best);
        seen.top1_logit
            .push(logits.get(best as usize)?.to_scalar::<f32>()?);
        if let Some(out) = out.as_mut() {
            for v in logits.to_vec1::<f32>()? {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        if step + 1 == input.steps {
            break;
        }
        logits = decoder.forward(&[input.next(step, best)])?;
    }
    Ok((seen, vocab))
}

/// Every sequence at once through `Decoder::forward_batch` on a paged cache, as the scheduler
/// runs a batch: each step feeds every unfinished sequence its next piece of prompt (at most
/// `chunk` tokens; the whole prompt without one) or, once its prompt is in, the token after
/// its last step. A sequence leaves the batch (and frees its blocks) after its last step.
/// Returns each sequence's top tokens, in input order, and the vocabulary size. With `out`,
/// every step's logits are written there too: sequence i's steps x vocab f32 after those of
/// the sequences before it.
fn logits_batch(
    model: &mut LoadedModel,
    inputs: &[LogitsInput],
    chunk: Option<usize>,
    mut out: Option<std::fs::File>,
) -> anyhow::Result<(Vec<TopTokens>, usize)> {
    use crate::engine::model::{paged::DEFAULT_BLOCK_SIZE, StepInput};
    use std::io::{Seek, SeekFrom, Write};
    let Backend::Arbiter(decoder) = &mut model.decoder else {
        anyhow::bail!(
            "several sequences run as a batch on Arbiter's own decoder (Qwen2 and Llama \
             models); give this model one sequence at a time"
        );
    };
    // The single stream's cache is not used here: free it for the blocks.
    decoder.clear_cache();
    let chunk = chunk.unwrap_or(usize::MAX).max(1);
    // Room for every token each sequence will hold, nothing more.
    let held = |s: &LogitsInput| s.prompt.len() + s.steps;
    let blocks = inputs
        .iter()
        .map(|s| held(s).div_ceil(DEFAULT_BLOCK_SIZE))
        .sum();
    let mut cache = decoder.paged_cache(DEFAULT_BLOCK_SIZE, blocks);
    for (i, s) in inputs.iter().enumerate() {
        cache.admit(i as u64, held(s))?;
    }
    let mut prefilled = vec![0usize; inputs.len()];
    // Where each sequence's rows start in `out`, in steps: after the steps of those before it.
    let first_step: Vec<usize> = inputs
        .iter()
        .scan(0, |before, s| {
            let first = *before;
            *before += s.steps;
            Some(first)
        })
        .collect();
    let mut seen: Vec<TopTokens> = inputs.iter().map(|_| TopTokens::default()).collect();
    let mut vocab = 0;
    loop {
        // (sequence, tokens it is fed this step).
        let mut feed: Vec<(usize, Vec<u32>)> = Vec::with_capacity(inputs.len());
        for (i, s) in inputs.iter().enumerate() {
            let done = seen[i].top1.len();
            if prefilled[i] < s.prompt.len() {
                let end = prefilled[i].saturating_add(chunk).min(s.prompt.len());
                feed.push((i, s.prompt[prefilled[i]..end].to_vec()));
                prefilled[i] = end;
            } else if done > 0 && done < s.steps {
                feed.push((i, vec![s.next(done - 1, seen[i].top1[done - 1])]));
            } else if cache.contains(i as u64) {
                cache.release(i as u64);
            }
        }
        if feed.is_empty() {
            break;
        }
        let step: Vec<StepInput<'_>> = feed
            .iter()
            .map(|(i, tokens)| StepInput {
                seq: *i as u64,
                tokens,
            })
            .collect();
        let rows = decoder.forward_batch(&mut cache, &step)?;
        vocab = rows.dim(1)?;
        let best = rows.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?;
        let best_logit = rows.max(candle_core::D::Minus1)?.to_vec1::<f32>()?;
        let all = match out {
            Some(_) => Some(rows.to_vec2::<f32>()?),
            None => None,
        };
        for (row, (i, _)) in feed.iter().enumerate() {
            // A piece short of the prompt's end predicts a prompt token: not a step.
            if prefilled[*i] == inputs[*i].prompt.len() && seen[*i].top1.len() < inputs[*i].steps {
                if let (Some(file), Some(all)) = (out.as_mut(), all.as_ref()) {
                    let at = (first_step[*i] + seen[*i].top1.len()) * vocab * 4;
                    let bytes: Vec<u8> = all[row].iter().flat_map(|v| v.to_le_bytes()).collect();
                    file.seek(SeekFrom::Start(at as u64))?;
                    file.write_all(&bytes)?;
                }
                seen[*i].top1.push(best[row]);
                seen[*i].top1_logit.push(best_logit[row]);
            }
        }
    }
    if let Some(mut file) = out {
        file.flush()?;
    }
    Ok((seen, vocab))
}
