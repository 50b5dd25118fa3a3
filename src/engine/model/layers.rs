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
            Proj::Dense { weight, bias } => {
                let y = match x.dims() {
                    [b, s, k] => {
                        x.reshape((b * s, *k))?
                            .matmul(&weight.t()?)?
                            .reshape((*b, *s, ()))?
                    }
                    _ => x.broadcast_matmul(&weight.t()?)?,
                };
                (y, bias)
            }
            Proj::Quant { weight, bias } => (weight.forward(x)?, bias),
            Proj::Fast { weight, bias } => (weight.forward(x)?, bias),
        };
        match bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// Root-mean-square layer norm.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl RmsNorm {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
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
        let (cos, sin) = Self::tables(theta, head_dim, positions, dtype, device)?;
        Ok(Rope {
            cos,
            sin,
            theta,
            head_dim,
            interleaved,
        })
    }

    fn tables(
        theta: f64,
        head_dim: usize,
        positions: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for f in &inv_freq {
                // Angles in f64 then rounded once to f32: as exact as the f32 reference.
                let angle = (p as f64 * f) as f32;
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
            self.cos.dtype(),
            self.cos.device(),
        )?;
        self.cos = cos;
        self.sin = sin;
        Ok(())
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

    /// Appends (1, kv_heads, seq, head_dim) keys and values; returns views of everything cached.
    pub(crate) fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (_, kv_heads, seq, head_dim) = k.dims4()?;
        let need = self.len + seq;
        if need > self.capacity() {
            let grown = need.max(self.capacity() * 2).max(256);
            self.reserve(grown, kv_heads, head_dim, k.dtype(), k.device())?;
        }
        let (Some(ck), Some(cv)) = (&self.k, &self.v) else {
            candle_core::bail!("kv cache buffers missing after reserve");
        };
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = need;
        Ok((ck.narrow(2, 0, need)?, cv.narrow(2, 0, need)?))
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

/// SiLU-gated MLP.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) gate: Proj,
    pub(crate) up: Proj,
    pub(crate) down: Proj,
}

impl Mlp {
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate.forward(x)?.silu()?;
        let up = self.up.forward(x)?;
        self.down.forward(&(gate * up)?)
    }
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
