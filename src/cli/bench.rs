//! `arbiter bench`: time prefill, first token and decode of a model on a synthetic prompt of a
//! given length, and report peak memory, as one JSON object (a companion script prints the same
//! fields for transformers or llama.cpp on the same checkpoint, so rows can be compared).

use super::judge::ModelArgs;
use crate::engine::{GenerateRequest, Prompt, SamplingParams};
use std::sync::atomic::AtomicBool;
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
    /// Prefill chunk size in tokens (default: the whole prompt in one pass).
    #[arg(long)]
    pub chunk: Option<usize>,
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
    request.prefill_chunk = args.chunk.unwrap_or(ids.len());
    let never = AtomicBool::new(false);
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
    let report = serde_json::json!({
        "engine": "arbiter",
        "model": model.info.name,
        "device": model.info.device,
        "precision": model.info.precision,
        "threads": candle_core::utils::get_num_threads(),
        "prompt_tokens": ids.len(),
        "new_tokens": generated,
        "runs": args.runs.max(1),
        "prefill_ms": median(prefill),
        "time_to_first_token_ms": median(ttft),
        "decode_tokens_per_s": median(decode),
        "load_s": model.info.load_seconds,
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_after_load_bytes": peak_after_load,
        "peak_rss_bytes": proc_status_kib("VmHWM:").map(|k| k * 1024),
        "peak_gpu_bytes": crate::engine::device::peak_gpu_bytes(model.decoder.device()),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(0)
}
