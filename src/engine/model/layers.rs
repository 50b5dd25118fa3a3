//! The decoder's building blocks: projections (dense or quantized), RMS norm, RoPE tables and
//! the per-layer key/value cache.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Result, Tensor};

/// A linear projection `x W^T + b`, from safetensors (dense) or GGUF (quantized).
#[derive(Debug, Clone)]
pub(crate) enum Proj {
    Dense {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Quant {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
    /// Q4_0 / Q4_1 / Q8_0 on the CPU through the project's own kernels (candle's Q4_1 path
    /// is scalar and its thread pool spins; see `quant`).
    Fast {
        weight: super::quant::QuantMatrix,
        bias: Option<Tensor>,
    },
}

impl Proj {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (y, bias) = match self {
            Proj::Dense {
                weight,
                bias: Some(bias),
            } if widened_on_cpu(x) => {
                return dense_bias_rounded_once(x, weight, bias);
            }
            Proj::Dense { weight, bias } => (dense_product(x, weight)?, bias),
            Proj::Quant { weight, bias } => (weight.forward(x)?, bias),
            Proj::Fast { weight, bias } => (weight.forward(x)?, bias),
        };
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// `x W^T` of a dense weight (n, k) for `x` (b, s, k) or any shape candle broadcasts.
fn dense_product(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    match x.dims() {
        [b, s, k] => matmul_t(&x.reshape((b * s, *k))?, weight)?.reshape((*b, *s, ())),
        _ => x.broadcast_matmul(&weight.t()?),
    }
}

/// `x W^T + b` of a 16-bit float model on the CPU, in f32 and rounded once. A 16-bit product
/// rounded before the bias is added, then the sum rounded again, costs a bf16 model much of its
/// agreement with f32: 8 random sequences (1,200 down to 500 positions, the last 128
/// teacher-forced) through the tiny random Qwen2 in bf16 (`gpu_check.py teacher --device cpu
/// --batch 8`) had a logit error 1.69x transformers' bf16 with the second rounding, 1.12x
/// without it; rounding the value projection once alone gives nearly all of that. candle widens
/// 16-bit products to f32 on the CPU anyway (it has no 16-bit kernel), so this costs no more.
fn dense_bias_rounded_once(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    dense_product(&wide(x)?, &wide(weight)?)?
        .broadcast_add(&wide(bias)?)?
        .to_dtype(x.dtype())
}

/// Whether `t` is a 16-bit float tensor on the CPU: the projections with a bias, the norms and
/// silu·up compute those in f32 and round once (candle's 16-bit CPU operations round at every
/// step).
fn widened_on_cpu(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::BF16 | DType::F16)
}

/// `t` in f32 (exact from a 16-bit type).
fn wide(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// `x W^T` for rows `x` (m, k) and a dense weight (n, k). One row on a GPU takes the
/// project's GEMV kernel (see `cuda`): the decode step.
pub(crate) fn matmul_t(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(y) = super::cuda::gemv(x, weight)? {
        return Ok(y);
    }
    x.matmul(&weight.t()?)
}

/// Whether the rotation tables take their angles as transformers does, frequency times
/// position in f32 (`ARBITER_ROPE_ANGLES=f32`), instead of in f64 rounded once. The f32
/// reference a bf16 run is scored against uses transformers' angles, whose error grows with
/// the position (about 2e-4 rad at 4,000); this is for measuring what that costs.
fn f32_angles() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ARBITER_ROPE_ANGLES").is_ok_and(|v| v == "f32"))
}

/// Root-mean-square layer norm.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl RmsNorm {
    /// On the CPU a 16-bit model's norm is computed in f32 and rounded once: candle's CPU
    /// kernel rounds the row's root mean square to the model's type before dividing by it (a
    /// scale error of up to 0.2% in bf16 on the whole row) and rounds the quotient before the weight.
    /// Through the tiny random Qwen2 in bf16 (`gpu_check.py teacher --device cpu --batch 8`),
    /// the logit error against f32 fell from 1.12x transformers' bf16 to 0.92x.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if widened_on_cpu(x) {
            return candle_nn::ops::rms_norm(&wide(x)?, &wide(&self.weight)?, self.eps)?
                .to_dtype(x.dtype());
        }
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }

    /// The residual stream after adding `delta` to `x` (just `x` without one), and its norm:
    /// one kernel on a GPU, where the add and the norm would each read the stream.
    pub(crate) fn add_forward(
        &self,
        x: &Tensor,
        delta: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        #[cfg(feature = "cuda")]
        if let Some(both) = super::cuda::add_rmsnorm(x, delta, &self.weight, self.eps)? {
            return Ok(both);
        }
        let x = match delta {
            Some(d) => (x + d)?,
            None => x.clone(),
        };
        let normed = self.forward(&x)?;
        Ok((x, normed))
    }
}

/// Rotary position tables, built in f32 whatever the model's dtype: computing the angles in
/// bf16 rounds positions above ~256 (the trap in candle-transformers' qwen2, PR #3520). Only
/// the finished cos/sin values are cast, as transformers does.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    theta: f64,
    head_dim: usize,
    interleaved: bool,
    /// Per-frequency divisors (Llama 3's RoPE scaling), head_dim / 2 of them, or none.
    divisors: Option<Vec<f64>>,
}

impl Rope {
    pub(crate) fn new(
        theta: f64,
        head_dim: usize,
        positions: usize,
        interleaved: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<Rope> {
        Self::with_divisors(theta, head_dim, positions, interleaved, None, dtype, device)
    }

    /// RoPE whose frequency `i` is divided by `divisors[i]` (Llama 3's scaling; see
    /// `crate::engine::config::llama3_rope_divisors`).
    pub(crate) fn with_divisors(
        theta: f64,
        head_dim: usize,
        positions: usize,
        interleaved: bool,
        divisors: Option<Vec<f64>>,
        dtype: DType,
        device: &Device,
    ) -> Result<Rope> {
        if let Some(d) = &divisors {
            if d.len() != head_dim / 2 {
                candle_core::bail!(
                    "RoPE frequency factors: {} values for a head of {head_dim} (expected {})",
                    d.len(),
                    head_dim / 2
                );
            }
        }
        let (cos, sin) = Self::tables(
            theta,
            head_dim,
            positions,
            divisors.as_deref(),
            dtype,
            device,
        )?;
        Ok(Rope {
            cos,
            sin,
            theta,
            head_dim,
            interleaved,
            divisors,
        })
    }

    /// The rotation frequencies: theta^(-2i/d), each divided by its factor where given.
    pub(crate) fn inv_freq(theta: f64, head_dim: usize, divisors: Option<&[f64]>) -> Vec<f64> {
        (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                divisors.map_or(f, |d| f / d[i])
            })
            .collect()
    }

    /// The frequencies as transformers computes them, every step in f32:
    /// `1 / theta ** (float(2i) / d)`, each divided by its factor where given.
    pub(crate) fn inv_freq_f32(theta: f64, head_dim: usize, divisors: Option<&[f64]>) -> Vec<f32> {
        (0..head_dim / 2)
            .map(|i| {
                let f = 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32);
                divisors.map_or(f, |d| f / d[i] as f32)
            })
            .collect()
    }

    fn tables(
        theta: f64,
        head_dim: usize,
        positions: usize,
        divisors: Option<&[f64]>,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = head_dim / 2;
        let inv_freq = Self::inv_freq(theta, head_dim, divisors);
        let as_transformers = f32_angles().then(|| Self::inv_freq_f32(theta, head_dim, divisors));
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for (i, f) in inv_freq.iter().enumerate() {
                let angle = match &as_transformers {
                    Some(f32_freqs) => p as f32 * f32_freqs[i],
                    // Angles in f64 then rounded once to f32: as exact as the f32 reference.
                    None => (p as f64 * f) as f32,
                };
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (positions, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (positions, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    pub(crate) fn positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// The tables, (positions, head_dim / 2) each, for kernels that rotate in place.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Makes the tables cover `positions`, doubling so growth is rare.
    pub(crate) fn reserve(&mut self, positions: usize) -> Result<()> {
        if positions <= self.positions() {
            return Ok(());
        }
        let n = positions.max(self.positions() * 2);
        let (cos, sin) = Self::tables(
            self.theta,
            self.head_dim,
            n,
            self.divisors.as_deref(),
            self.cos.dtype(),
            self.cos.device(),
        )?;
        self.cos = cos;
        self.sin = sin;
        Ok(())
    }

    /// The tables' rows for `positions` (any order), (n, head_dim / 2) each: the rotation of
    /// a batched step, whose tokens sit at each sequence's own positions.
    pub(crate) fn tables_at(&mut self, positions: &[u32]) -> Result<(Tensor, Tensor)> {
        let last = positions.iter().copied().max().unwrap_or(0) as usize;
        self.reserve(last + 1)?;
        let index = Tensor::new(positions, self.cos.device())?;
        Ok((
            self.cos.index_select(&index, 0)?,
            self.sin.index_select(&index, 0)?,
        ))
    }

    /// Rotates `x` (batch, heads, n, head_dim) by tables `cos`, `sin` of n rows each (see
    /// [`tables_at`](Self::tables_at)).
    pub(crate) fn apply_with(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(&x, cos, sin)
        }
    }

    /// Rotates `x` of shape (batch, heads, seq, head_dim) for positions `start..start+seq`.
    pub(crate) fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, start, seq)?;
        let sin = self.sin.narrow(0, start, seq)?;
        let x = x.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        }
    }
}

/// One layer's keys and values, (1, kv_heads, capacity, head_dim), written in place. Growing
/// copies the cache once per doubling instead of concatenating on every token (the trap in
/// candle-transformers' qwen2, whose per-token `Tensor::cat` costs O(n) per step).
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

impl KvCache {
    pub(crate) fn new() -> KvCache {
        KvCache {
            k: None,
            v: None,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn capacity(&self) -> usize {
        self.k.as_ref().and_then(|k| k.dim(2).ok()).unwrap_or(0)
    }

    pub(crate) fn reset(&mut self) {
        self.len = 0;
    }

    /// Drops the buffers (frees their memory).
    pub(crate) fn clear(&mut self) {
        *self = KvCache::new();
    }

    /// Rewinds to `len` tokens, keeping the buffers (for re-using a shared prompt prefix).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    pub(crate) fn reserve(
        &mut self,
        capacity: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<()> {
        if capacity <= self.capacity() {
            return Ok(());
        }
        let shape = (1, kv_heads, capacity, head_dim);
        let k = Tensor::zeros(shape, dtype, device)?;
        let v = Tensor::zeros(shape, dtype, device)?;
        if let (Some(old_k), Some(old_v)) = (&self.k, &self.v) {
            if self.len > 0 {
                k.slice_set(&old_k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                v.slice_set(&old_v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
        }
        self.k = Some(k);
        self.v = Some(v);
        Ok(())
    }

    /// Makes room for `seq` more positions and counts them as cached, for the caller to write
    /// (`append`, or a kernel that writes them itself); returns the whole buffers (1, kv_heads,
    /// capacity, head_dim) and the first new position.
    pub(crate) fn extend(
        &mut self,
        seq: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor, usize)> {
        let start = self.len;
        let need = start + seq;
        if need > self.capacity() {
            let grown = need.max(self.capacity() * 2).max(256);
            self.reserve(grown, kv_heads, head_dim, dtype, device)?;
        }
        let (Some(ck), Some(cv)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache buffers missing after reserve");
        };
        self.len = need;
        Ok((ck.clone(), cv.clone(), start))
    }

    /// Appends (1, kv_heads, seq, head_dim) keys and values; returns views of everything cached.
    pub(crate) fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, kv_heads, seq, head_dim) = k.dims4()?;
        let (ck, cv, start) = self.extend(seq, kv_heads, head_dim, k.dtype(), k.device())?;
        ck.slice_set(&k.contiguous()?, 2, start)?;
        cv.slice_set(&v.contiguous()?, 2, start)?;
        Ok((ck.narrow(2, 0, self.len)?, cv.narrow(2, 0, self.len)?))
    }
}

/// Softmax over the last dimension, computed in f32 for half-precision inputs.
pub(crate) fn softmax_f32(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    if dtype == DType::F32 {
        candle_nn::ops::softmax_last_dim(x)
    } else {
        candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)
    }
}

/// The additive causal mask of a chunk of `seq` new tokens after `past` cached ones:
/// (seq, past + seq), 0 where a query may look, -inf where it may not.
pub(crate) fn causal_mask(
    seq: usize,
    past: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let total = past + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (seq, total), device)?.to_dtype(dtype)
}

/// The gate and up projections of an MLP: apart, or as one matrix (gate rows, then up rows)
/// that a GPU runs as one product.
#[derive(Debug, Clone)]
pub(crate) enum GateUp {
    Separate { gate: Proj, up: Proj },
    Merged(Proj),
}

/// SiLU-gated MLP.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) gate_up: GateUp,
    pub(crate) down: Proj,
}

impl Mlp {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_marked(x, &mut |_| Ok(()))
    }

    /// [`forward`](Self::forward), calling `mark` at the end of each stage (for profiling).
    pub(crate) fn forward_marked(
        &self,
        x: &Tensor,
        mark: &mut dyn FnMut(&'static str) -> Result<()>,
    ) -> Result<Tensor> {
        let h = match &self.gate_up {
            GateUp::Separate { gate, up } => silu_mul_fresh(gate.forward(x)?, &up.forward(x)?)?,
            GateUp::Merged(proj) => {
                let both = proj.forward(x)?;
                mark("gate/up projection")?;
                silu_mul_halves(&both)?
            }
        };
        mark("silu")?;
        let out = self.down.forward(&h)?;
        mark("down projection")?;
        Ok(out)
    }
}

/// `silu(gate) * up` for two tensors of one shape. On the CPU in f32, one pass into one new
/// buffer (candle's two operations write a whole intermediate, 18 MB for a 1.5B model's
/// 512-token prefill, and read it again), with candle's very operations in its order (`silu(g)
/// = g / (1 + exp(-g))` rounded to f32, then the product), so the bits are the same.
fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu()
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.dims() == up.dims()
    {
        return gate
            .contiguous()?
            .apply_op2_no_bwd(&up.contiguous()?, &SiluMul);
    }
    // A 16-bit model on the CPU: in f32, rounded once. candle's 16-bit silu rounds its
    // exponential, the sum and the quotient, then the product rounds again; through the tiny
    // random Qwen2 in bf16 the logit error against f32 is 3.5% lower this way.
    if widened_on_cpu(gate) {
        return silu_mul(&wide(gate)?, &wide(up)?)?.to_dtype(gate.dtype());
    }
    gate.silu()? * up
}

/// [`silu_mul`] of a `gate` that nothing else holds (a product just computed): on the CPU in
/// f32 the result is written over the gate's own buffer, so a prefill's MLP holds two buffers of
/// its width rather than three (18 MB less at the peak for a 1.5B model's 512 tokens); the
/// same bits as [`silu_mul`], each value read before it is written. Elsewhere as [`silu_mul`].
fn silu_mul_fresh(gate: Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu()
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.dims() == up.dims()
        && gate.is_contiguous()
        && up.is_contiguous()
    {
        gate.inplace_op2(up, &SiluMul)?;
        return Ok(gate);
    }
    silu_mul(&gate, up)
}

/// `silu(g) * u` as candle computes it: `g / (1 + exp(-g))` rounded to f32, then the product.
#[inline(always)]
fn silu_times(g: f32, u: f32) -> f32 {
    let silu = g / (1.0 + (-g).exp());
    silu * u
}

/// Values per work item of [`SiluMul`]: a fixed size, so the split does not depend on the
/// core count (each value is computed alone anyway).
const SILU_MUL_PIECE: usize = 1 << 15;

/// The CPU operation behind [`silu_mul`]: f32, contiguous inputs of one shape.
struct SiluMul;

/// Where the gate's and up's values lie in their storages: [`SiluMul`] takes contiguous
/// inputs of one shape.
fn silu_mul_spans(
    gate: &candle_core::Layout,
    up: &candle_core::Layout,
) -> Result<((usize, usize), (usize, usize))> {
    let (Some(g), Some(u)) = (gate.contiguous_offsets(), up.contiguous_offsets()) else {
        candle_core::bail!("silu-mul: the inputs must be contiguous");
    };
    if gate.shape() != up.shape() {
        candle_core::bail!(
            "silu-mul: gate {:?} and up {:?} differ in shape",
            gate.shape(),
            up.shape()
        );
    }
    Ok((g, u))
}

impl candle_core::CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        gate: &candle_core::CpuStorage,
        gate_layout: &candle_core::Layout,
        up: &candle_core::CpuStorage,
        up_layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let ((g0, g1), (u0, u1)) = silu_mul_spans(gate_layout, up_layout)?;
        let gate = &gate.as_slice::<f32>()?[g0..g1];
        let up = &up.as_slice::<f32>()?[u0..u1];
        let n = gate.len();
        let mut out: Vec<f32> = Vec::with_capacity(n);
        let pieces: Vec<_> = out.spare_capacity_mut()[..n]
            .chunks_mut(SILU_MUL_PIECE)
            .zip(gate.chunks(SILU_MUL_PIECE).zip(up.chunks(SILU_MUL_PIECE)))
            .collect();
        super::quant::par_pieces(pieces, |(out, (gate, up))| {
            for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                o.write(silu_times(g, u));
            }
        });
        // SAFETY: the pieces cover out[..n] and each piece writes every one of its elements
        // (gate, up and out are chunked alike from n values each); a panic in a piece is
        // raised again by `par_pieces` before this line.
        unsafe { out.set_len(n) };
        Ok((
            candle_core::CpuStorage::F32(out),
            gate_layout.shape().clone(),
        ))
    }
}

impl candle_core::InplaceOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul-in-place"
    }

    fn cpu_fwd(
        &self,
        gate: &mut candle_core::CpuStorage,
        gate_layout: &candle_core::Layout,
        up: &candle_core::CpuStorage,
        up_layout: &candle_core::Layout,
    ) -> Result<()> {
        let ((g0, g1), (u0, u1)) = silu_mul_spans(gate_layout, up_layout)?;
        let up = &up.as_slice::<f32>()?[u0..u1];
        let candle_core::CpuStorage::F32(gate) = gate else {
            candle_core::bail!("silu-mul: the gate must be f32");
        };
        let pieces: Vec<_> = gate[g0..g1]
            .chunks_mut(SILU_MUL_PIECE)
            .zip(up.chunks(SILU_MUL_PIECE))
            .collect();
        super::quant::par_pieces(pieces, |(gate, up)| {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = silu_times(*g, u);
            }
        });
        Ok(())
    }
}

/// `silu(gate) * up` of a merged gate/up output, gate in the first half of the last dimension.
fn silu_mul_halves(both: &Tensor) -> Result<Tensor> {
    let last = both.rank() - 1;
    let inter = both.dim(last)? / 2;
    #[cfg(feature = "cuda")]
    if both.device().is_cuda() && super::cuda::supports_dtype(both.dtype()) {
        let mut dims = both.dims().to_vec();
        dims[last] = inter;
        let rows = both.elem_count() / (2 * inter);
        return super::cuda::silu_mul(&both.reshape((rows, 2 * inter))?)?.reshape(dims);
    }
    silu_mul(
        &both.narrow(last, 0, inter)?,
        &both.narrow(last, inter, inter)?,
    )
}

/// Concatenates dense projections along their output rows into one (weights and biases), so
/// a GPU runs one matrix product instead of several. `None` if any is not dense or only some
/// have a bias.
pub(crate) fn merge_dense(parts: &[&Proj]) -> Result<Option<Proj>> {
    let mut weights = Vec::with_capacity(parts.len());
    let mut biases = Vec::with_capacity(parts.len());
    for p in parts {
        let Proj::Dense { weight, bias } = p else {
            return Ok(None);
        };
        weights.push(weight.clone());
        if let Some(b) = bias {
            biases.push(b.clone());
        }
    }
    if !biases.is_empty() && biases.len() != parts.len() {
        return Ok(None);
    }
    let weight = Tensor::cat(&weights, 0)?;
    let bias = if biases.is_empty() {
        None
    } else {
        Some(Tensor::cat(&biases, 0)?)
    };
    Ok(Some(Proj::Dense { weight, bias }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_lets_each_query_see_only_its_past() {
        let m = causal_mask(2, 3, DType::F32, &Device::Cpu).expect("mask");
        let rows: Vec<Vec<f32>> = m.to_vec2().expect("rows");
        assert_eq!(rows[0][..4], [0.0, 0.0, 0.0, 0.0]);
        assert_eq!(rows[0][4], f32::NEG_INFINITY);
        assert!(rows[1].iter().all(|x| *x == 0.0));
    }

    #[test]
    fn fused_silu_mul_has_candle_bits() {
        // Over several work items (and a ragged last one), across the sign and magnitude
        // range, including the large negative gates where exp(-g) overflows.
        let n = 2 * SILU_MUL_PIECE + 123;
        let gate: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) * 0.09)
            .collect();
        let up: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 0.013)
            .collect();
        let bits = |t: Result<Tensor>| -> Vec<u32> {
            t.and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values")
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        let g = Tensor::from_vec(gate.clone(), n, &Device::Cpu).expect("gate");
        let u = Tensor::from_vec(up.clone(), n, &Device::Cpu).expect("up");
        let fused = bits(silu_mul(&g, &u));
        assert_eq!(fused.len(), n);
        assert!(
            fused == bits(g.silu().and_then(|s| s * &u)),
            "fused silu*up differs"
        );
        // Written over a fresh gate's buffer: the same bits, and the gate's storage reused.
        let fresh = Tensor::from_vec(gate.clone(), n, &Device::Cpu).expect("gate");
        let in_place = silu_mul_fresh(fresh.clone(), &u).expect("in place");
        assert!(bits(Ok(in_place)) == fused, "in-place silu*up differs");
        assert!(
            bits(Ok(fresh)) == fused,
            "the gate's own buffer was not written"
        );
        // Transposed (non-contiguous) inputs give the same values in the same layout.
        let g = Tensor::from_vec(gate[..600].to_vec(), (20, 30), &Device::Cpu)
            .and_then(|t| t.t())
            .expect("gate");
        let u = Tensor::from_vec(up[..600].to_vec(), (20, 30), &Device::Cpu)
            .and_then(|t| t.t())
            .expect("up");
        assert_eq!(bits(silu_mul(&g, &u)), bits(g.silu().and_then(|s| s * &u)));
    }

    #[test]
    fn rope_tables_stay_exact_at_long_positions_in_bf16() {
        // Angle of the fastest frequency at position 3000 is 3000 rad: in bf16 the position
        // itself would round to 2992; built in f32 the cos must match f64 to bf16 precision.
        let rope = Rope::new(10_000.0, 64, 4001, false, DType::BF16, &Device::Cpu).expect("rope");
        let cos: Vec<f32> = rope
            .cos
            .narrow(0, 3000, 1)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("cos");
        let exact = 3000f64.cos() as f32;
        assert!((cos[0] - exact).abs() < 1e-2, "{} vs {exact}", cos[0]);
    }

    #[test]
    fn f32_frequencies_are_transformers_own() {
        // transformers' default RoPE frequencies for theta 1e6 and heads of 128 (Qwen2.5),
        // `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`, from torch 2.15 on a CPU:
        // entries 0, 1, 7, 33 and 63 as f32 bits.
        let theirs = [
            (0, 0x3f80_0000u32),
            (1, 0x3f4e_4bad),
            (7, 0x3e61_f835),
            (33, 0x3a53_3f28),
            (63, 0x35a6_8e4c),
        ];
        let ours = Rope::inv_freq_f32(1e6, 128, None);
        for (i, bits) in theirs {
            assert_eq!(ours[i].to_bits(), bits, "frequency {i}: {}", ours[i]);
        }
        // And within an f32 rounding of the f64 frequencies the default tables use.
        for (a, b) in ours.iter().zip(Rope::inv_freq(1e6, 128, None)) {
            assert!(
                ((*a as f64) - b).abs() <= b * 2.0 * f32::EPSILON as f64,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn a_bf16_projection_adds_its_bias_before_the_one_rounding() {
        // Small multiples of powers of two: every product and sum below is exact in f32 (and
        // f64), so one rounding of the f64 result is the correctly rounded answer.
        let (rows, k, n) = (6usize, 16usize, 40usize);
        let mut state = 7u32;
        let mut next = |range: u32| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) % range
        };
        let x: Vec<f32> = (0..rows * k).map(|_| next(61) as f32 / 8.0 - 3.5).collect();
        let w: Vec<f32> = (0..n * k).map(|_| next(33) as f32 / 16.0 - 1.0).collect();
        let b: Vec<f32> = (0..n).map(|_| next(4001) as f32 / 4.0 - 500.0).collect();
        // x and w are exact in bf16 (at most 8 significant bits); the bias may need more, so
        // the reference takes it as the model holds it, rounded to bf16.
        let (xt, wt, bt) = (
            bf16_tensor(x, &[rows, k]),
            bf16_tensor(w, &[n, k]),
            bf16_tensor(b, &[n]),
        );
        let (xs, ws, bs) = (values(&xt), values(&wt), values(&bt));
        // Each output's exact product (no bias) and its bias.
        let exact: Vec<(f64, f64)> = (0..rows * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let dot: f64 = (0..k).map(|j| xs[r * k + j] * ws[c * k + j]).sum();
                (dot, bs[c])
            })
            .collect();
        let once: Vec<u16> = exact
            .iter()
            .map(|(dot, b)| half::bf16::from_f64(dot + b).to_bits())
            .collect();
        let twice: Vec<u16> = exact
            .iter()
            .map(|(dot, b)| (half::bf16::from_f64(*dot) + half::bf16::from_f64(*b)).to_bits())
            .collect();
        assert_ne!(once, twice, "the inputs must tell one rounding from two");
        let proj = Proj::Dense {
            weight: wt,
            bias: Some(bt),
        };
        let got = proj
            .forward(&xt.unsqueeze(0).expect("batch"))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<half::bf16>())
            .expect("forward");
        let got: Vec<u16> = got.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, once);
    }

    #[test]
    fn a_bf16_norm_on_the_cpu_is_rounded_once() {
        let (rows, n) = (8usize, 96usize);
        let x: Vec<f32> = (0..rows * n)
            .map(|i| ((i as f32) * 0.731).sin() * (1.0 + (i % 7) as f32))
            .collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + ((i as f32) * 0.17).cos()).collect();
        let (xt, wt) = (bf16_tensor(x, &[rows, n]), bf16_tensor(w, &[n]));
        let (xs, ws) = (values(&xt), values(&wt));
        let eps = 1e-6;
        let exact: Vec<f64> = (0..rows * n)
            .map(|i| {
                let row = &xs[(i / n) * n..(i / n + 1) * n];
                let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
                xs[i] / (ms + eps).sqrt() * ws[i % n]
            })
            .collect();
        let norm = RmsNorm {
            weight: wt.clone(),
            eps: eps as f32,
        };
        // Within half a bf16 step of the exact value (and a hair for f32's own rounding).
        let ours = bf16_steps_off(&values(&norm.forward(&xt).expect("norm")), &exact);
        assert!(ours <= 0.5 + 1e-3, "ours {ours} bf16 steps from exact");
        let candle = bf16_steps_off(
            &values(&candle_nn::ops::rms_norm(&xt, &wt, eps as f32).expect("candle's norm")),
            &exact,
        );
        assert!(
            candle > 0.5 + 1e-3,
            "candle's bf16 kernel {candle} steps: no difference to test"
        );
    }

    /// `v` of `shape` as a bf16 tensor on the CPU.
    fn bf16_tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::BF16))
            .expect("bf16 tensor")
    }

    /// Every value of `t`, in order, as f64 (exact from any float type).
    fn values(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("values")
    }

    /// The most bf16 steps (at the exact value's magnitude) any of `got` is from `exact`.
    fn bf16_steps_off(got: &[f64], exact: &[f64]) -> f64 {
        assert_eq!(got.len(), exact.len());
        got.iter()
            .zip(exact)
            .map(|(g, e)| {
                if *e == 0.0 {
                    return if *g == 0.0 { 0.0 } else { f64::INFINITY };
                }
                // bf16 keeps 8 significant bits: its step at e is 2^(floor(log2|e|) - 7).
                let step = 2f64.powf(e.abs().log2().floor() - 7.0);
                (g - e).abs() / step
            })
            .fold(0f64, f64::max)
    }

    #[test]
    fn a_bf16_silu_mul_on_the_cpu_is_rounded_once() {
        let n = 4096;
        let gate: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.377).sin() * 6.0).collect();
        let up: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.123).cos() * 3.0).collect();
        let (g, u) = (bf16_tensor(gate, &[8, n / 8]), bf16_tensor(up, &[8, n / 8]));
        let exact: Vec<f64> = values(&g)
            .iter()
            .zip(values(&u))
            .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
            .collect();
        let ours = bf16_steps_off(&values(&silu_mul(&g, &u).expect("silu_mul")), &exact);
        assert!(ours <= 0.5 + 1e-3, "ours {ours} bf16 steps from exact");
        let theirs = g.silu().and_then(|s| s * &u).expect("candle's ops");
        let candle = bf16_steps_off(&values(&theirs), &exact);
        assert!(
            candle > 0.5 + 1e-3,
            "candle's bf16 ops {candle} steps: no difference to test"
        );
    }

    fn dense(out: usize, inp: usize, bias: bool, seed: f32) -> Proj {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..out * inp)
            .map(|i| ((i as f32 + seed) * 0.37).sin())
            .collect();
        Proj::Dense {
            weight: Tensor::from_vec(w, (out, inp), &dev).expect("w"),
            bias: bias.then(|| {
                let b: Vec<f32> = (0..out).map(|i| (i as f32 * 0.11 + seed).cos()).collect();
                Tensor::from_vec(b, out, &dev).expect("b")
            }),
        }
    }

    #[test]
    fn merged_projections_compute_what_separate_ones_do() {
        let x = Tensor::from_vec(
            (0..2 * 3 * 8)
                .map(|i| (i as f32 * 0.21).cos())
                .collect::<Vec<_>>(),
            (2, 3, 8),
            &Device::Cpu,
        )
        .expect("x");
        let (a, b) = (dense(5, 8, true, 1.0), dense(3, 8, true, 2.0));
        let merged = merge_dense(&[&a, &b])
            .expect("merge")
            .expect("dense merges");
        let both = merged.forward(&x).expect("merged");
        let apart =
            Tensor::cat(&[a.forward(&x).expect("a"), b.forward(&x).expect("b")], 2).expect("cat");
        let diff = (both - apart)
            .expect("diff")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max");
        assert!(diff.to_scalar::<f32>().expect("scalar") < 1e-5);
        // Only some with a bias: left apart.
        let c = dense(3, 8, false, 3.0);
        assert!(merge_dense(&[&a, &c]).expect("merge").is_none());

        let (gate, up, down) = (
            dense(6, 8, false, 4.0),
            dense(6, 8, false, 5.0),
            dense(8, 6, false, 6.0),
        );
        let gate_up = merge_dense(&[&gate, &up])
            .expect("merge")
            .expect("dense merges");
        let separate = Mlp {
            gate_up: GateUp::Separate { gate, up },
            down: down.clone(),
        };
        let merged = Mlp {
            gate_up: GateUp::Merged(gate_up),
            down,
        };
        let diff = (separate.forward(&x).expect("separate") - merged.forward(&x).expect("merged"))
            .expect("diff")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max");
        assert!(diff.to_scalar::<f32>().expect("scalar") < 1e-4);
    }

    #[test]
    fn cache_grows_without_losing_entries() {
        let mut cache = KvCache::new();
        let dev = Device::Cpu;
        for step in 0..300u32 {
            let k = Tensor::full(step as f32, (1, 2, 1, 4), &dev).expect("k");
            let (ck, _) = cache.append(&k, &k).expect("append");
            assert_eq!(ck.dim(2).expect("dim"), step as usize + 1);
        }
        assert!(cache.capacity() >= 300);
        let (k, _) = cache
            .append(
                &Tensor::zeros((1, 2, 1, 4), DType::F32, &dev).expect("z"),
                &Tensor::zeros((1, 2, 1, 4), DType::F32, &dev).expect("z"),
            )
            .expect("append");
        let v: Vec<f32> = k
            .narrow(2, 299, 1)
            .expect("n")
            .flatten_all()
            .expect("f")
            .to_vec1()
            .expect("v");
        assert!(v.iter().all(|x| *x == 299.0));
    }
}
