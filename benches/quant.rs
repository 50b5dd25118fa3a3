//! Quantized matmul speed: `QuantMatrix::forward` against candle's `QMatMul::forward` on the
//! projection shapes of SmolLM2-135M (hidden 576, kv 192, MLP 1536) in Q4_1, for one row
//! (decode) and 128 rows (prefill); also the tied Q8_0 lm_head, Q4_0, Q5_0, Q5_1, the K-quants
//! (Q4_K, Q5_K, Q6_K, also at Qwen2.5-1.5B's shapes), and one decode step's worth of
//! projections (30 layers x 7) back to back. Best and median of N runs each
//! (`cargo bench --bench quant`).

// The module is `pub(crate)` inside the library, so the benchmark compiles its own copy.
#[allow(dead_code)]
#[path = "../src/engine/model/quant.rs"]
mod quant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use quant::QuantMatrix;
use std::time::{Duration, Instant};

/// SplitMix64: reproducible inputs without a rand dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn tensor(&mut self, dims: &[usize]) -> Result<Tensor> {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.next_f32()).collect();
        Tensor::from_vec(v, dims, &Device::Cpu)
    }
}

/// Best and median wall time of `runs` calls, after a few warm-up calls.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(Duration, Duration)> {
    for _ in 0..3 {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[0], times[runs / 2]))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> Result<()> {
    // `cargo bench --bench quant -- q4_1` runs only the cases whose label contains "q4_1"
    // (cargo itself passes `--bench`, hence the dash filter).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |label: &str| filter.is_empty() || filter.iter().any(|f| label.contains(f));
    let mut rng = SplitMix(0x5EED);
    println!(
        "{:<6} {:>12} {:>4} | {:>13} {:>13} | {:>13} {:>13} | {:>6}",
        "dtype", "(n, k)", "m", "candle best", "median us", "ours best", "median us", "ratio"
    );
    let cases: &[(GgmlDType, usize, usize, &[usize])] = &[
        (GgmlDType::Q4_1, 576, 576, &[1, 128]),
        (GgmlDType::Q4_1, 192, 576, &[1, 128]),
        (GgmlDType::Q4_1, 1536, 576, &[1, 128]),
        (GgmlDType::Q4_1, 576, 1536, &[1, 128]),
        (GgmlDType::Q4_0, 1536, 576, &[1, 128]),
        (GgmlDType::Q8_0, 1536, 576, &[1, 128]),
        (GgmlDType::Q8_0, 49152, 576, &[1]),
        // The rest of the types llama.cpp's quantizer writes: Q5_0 / Q5_1 at SmolLM2's width
        // (its Q4_K_M / Q5_K_M mixes), the K-quants on SmolLM2's down projection and on the
        // Qwen2.5-1.5B shapes (hidden 1536, MLP 8960), where every matrix takes them.
        (GgmlDType::Q5_0, 1536, 576, &[1, 128]),
        (GgmlDType::Q5_1, 1536, 576, &[1, 128]),
        (GgmlDType::Q4K, 576, 1536, &[1, 128]),
        (GgmlDType::Q5K, 576, 1536, &[1, 128]),
        (GgmlDType::Q6K, 576, 1536, &[1, 128]),
        (GgmlDType::Q4K, 8960, 1536, &[1, 128]),
        (GgmlDType::Q4K, 1536, 8960, &[1, 128]),
        (GgmlDType::Q5K, 8960, 1536, &[1, 128, 512]),
        (GgmlDType::Q6K, 8960, 1536, &[1, 128]),
        (GgmlDType::Q6K, 1536, 8960, &[1, 128]),
        (GgmlDType::Q8_0, 8960, 1536, &[1]),
    ];
    for &(dtype, n, k, ms) in cases {
        let q = QTensor::quantize(&rng.tensor(&[n, k])?, dtype)?;
        let ours = QuantMatrix::from_qtensor(&q)?.ok_or_else(|| {
            candle_core::Error::Msg(format!("{dtype:?} ({n}, {k}) should be supported"))
        })?;
        let candle = QMatMul::from_qtensor(q)?;
        for &m in ms {
            let label = format!("{} ({n}, {k}) m={m}", ours.dtype_name());
            if !wanted(&label) {
                continue;
            }
            let x = rng.tensor(&[1, m, k])?;
            let runs = if m == 1 { 400 } else { 20 };
            let (cb, cm) = time(runs, || candle.forward(&x).map(drop))?;
            let (ob, om) = time(runs, || ours.forward(&x).map(drop))?;
            println!(
                "{:<6} {:>12} {:>4} | {:>13.1} {:>13.1} | {:>13.1} {:>13.1} | {:>5.2}x",
                ours.dtype_name(),
                format!("({n}, {k})"),
                m,
                us(cb),
                us(cm),
                us(ob),
                us(om),
                cb.as_secs_f64() / ob.as_secs_f64()
            );
        }
    }

    if !wanted("decode step") {
        return Ok(());
    }
    // One decode step of SmolLM2-135M's projections: 30 layers of q, k, v, o, gate, up, down.
    let layer: [(usize, usize); 7] = [
        (576, 576),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];
    let mut candle_step = Vec::new();
    let mut ours_step = Vec::new();
    for _ in 0..30 {
        for &(n, k) in &layer {
            let q = QTensor::quantize(&rng.tensor(&[n, k])?, GgmlDType::Q4_1)?;
            ours_step.push(QuantMatrix::from_qtensor(&q)?.ok_or_else(|| {
                candle_core::Error::Msg(format!("Q4_1 ({n}, {k}) should be supported"))
            })?);
            candle_step.push(QMatMul::from_qtensor(q)?);
        }
    }
    let x576 = rng.tensor(&[1, 1, 576])?;
    let x1536 = rng.tensor(&[1, 1, 1536])?;
    let input = |i: usize| if i % 7 == 6 { &x1536 } else { &x576 };
    let (cb, cm) = time(30, || {
        for (i, w) in candle_step.iter().enumerate() {
            w.forward(input(i))?;
        }
        Ok(())
    })?;
    let (ob, om) = time(30, || {
        for (i, w) in ours_step.iter().enumerate() {
            w.forward(input(i))?;
        }
        Ok(())
    })?;
    println!(
        "decode step, 210 q4_1 projections: candle best {:.2} ms (median {:.2}), ours best {:.2} \
         ms (median {:.2}), ratio {:.2}x",
        us(cb) / 1e3,
        us(cm) / 1e3,
        us(ob) / 1e3,
        us(om) / 1e3,
        cb.as_secs_f64() / ob.as_secs_f64()
    );
    Ok(())
}
