//! Attention of one new token over the cached keys and values, on the CPU in f32: the decode
//! step. The general path (a batched matmul, softmax, matmul) pays for packing the strided
//! cache views and for allocating score tensors on every layer of every token; at a few
//! hundred cached positions that was a quarter of a SmolLM2 decode step. Here each query head
//! reads its key/value head's rows straight out of the cache buffer, in parallel over heads.
//!
//! The arithmetic is the general path's: scores q·k scaled by 1/sqrt(d), a max-subtracted
//! softmax in f32, then the probability-weighted sum of the values.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};

/// `q` is (1, heads, 1, d) after RoPE; `k` and `v` are (1, kv_heads, total, d) views of the
/// cache. Returns (1, 1, heads * d), or `None` when this path does not apply (another device
/// or dtype, or a layout it does not read), so the caller takes the general one.
pub(crate) fn decode(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    if q.dtype() != DType::F32 || !q.device().is_cpu() || k.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, heads, seq, d) = q.dims4()?;
    let (_, kv_heads, total, _) = k.dims4()?;
    if b != 1 || seq != 1 || kv_heads == 0 || heads % kv_heads != 0 || total == 0 {
        return Ok(None);
    }
    let q = q.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(k_data)), Storage::Cpu(CpuStorage::F32(v_data))) =
        (&*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let (Some(keys), Some(values)) = (
        Rows::of(k_data, k_layout, kv_heads, total, d),
        Rows::of(v_data, v_layout, kv_heads, total, d),
    ) else {
        return Ok(None);
    };
    let group = heads / kv_heads;
    let mut out = vec![0f32; heads * d];
    let dest = Dest(out.as_mut_ptr());
    super::quant::par_items(heads, |h| {
        let kv = h / group;
        let mut scores = vec![0f32; total];
        let qh = &q[h * d..(h + 1) * d];
        let mut max = f32::NEG_INFINITY;
        for (t, s) in scores.iter_mut().enumerate() {
            *s = dot(qh, keys.row(kv, t)) * scale;
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let mut acc = vec![0f32; d];
        for (t, &p) in scores.iter().enumerate() {
            for (a, &x) in acc.iter_mut().zip(values.row(kv, t)) {
                *a += p * x;
            }
        }
        let inv = 1.0 / sum;
        // SAFETY: head h writes only its own d values, and `out` outlives `par_items`, which
        // returns only after every head has finished.
        let row = unsafe { dest.range(h * d, d) };
        for (o, a) in row.iter_mut().zip(&acc) {
            *o = a * inv;
        }
    });
    Ok(Some(Tensor::from_vec(
        out,
        (1, 1, heads * d),
        &candle_core::Device::Cpu,
    )?))
}

/// Where heads write their outputs: disjoint ranges of one buffer.
struct Dest(*mut f32);
// SAFETY: each head writes a range no other head touches (see `decode`).
unsafe impl Sync for Dest {}

impl Dest {
    /// # Safety
    /// `at + len` is within the buffer, which outlives the slice, and no one else uses that
    /// range meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn range(&self, at: usize, len: usize) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
}

/// Rows of a (1, kv_heads, total, d) view whose last dimension is contiguous.
struct Rows<'a> {
    data: &'a [f32],
    start: usize,
    head_stride: usize,
    row_stride: usize,
    d: usize,
}

impl<'a> Rows<'a> {
    fn of(data: &'a [f32], layout: &Layout, heads: usize, total: usize, d: usize) -> Option<Self> {
        let stride = layout.stride();
        if stride.len() != 4 || stride[3] != 1 {
            return None;
        }
        let rows = Rows {
            data,
            start: layout.start_offset(),
            head_stride: stride[1],
            row_stride: stride[2],
            d,
        };
        let last = rows.start + (heads - 1) * rows.head_stride + (total - 1) * rows.row_stride + d;
        (last <= data.len()).then_some(rows)
    }

    fn row(&self, head: usize, t: usize) -> &'a [f32] {
        let at = self.start + head * self.head_stride + t * self.row_stride;
        &self.data[at..at + self.d]
    }
}

/// A dot product in eight independent lanes, so that it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The general path, as `Layer::attention` computes it for one token.
    fn general(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (_, heads, _, d) = q.dims4().unwrap();
        let kv_heads = k.dim(1).unwrap();
        let q = (q * scale)
            .unwrap()
            .reshape((1, kv_heads, heads / kv_heads, d))
            .unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs.matmul(v).unwrap().reshape((1, 1, heads * d)).unwrap()
    }

    #[test]
    fn decode_attention_equals_the_general_path_on_a_strided_cache() {
        let dev = Device::Cpu;
        for (heads, kv_heads, d, total, cap) in
            [(9, 3, 64, 37, 64), (4, 4, 12, 1, 8), (8, 2, 20, 300, 512)]
        {
            let q = Tensor::randn(0f32, 1.0, (1, heads, 1, d), &dev).unwrap();
            // Views of a larger buffer, as the cache hands them out.
            let kb = Tensor::randn(0f32, 1.0, (1, kv_heads, cap, d), &dev).unwrap();
            let vb = Tensor::randn(0f32, 1.0, (1, kv_heads, cap, d), &dev).unwrap();
            let (k, v) = (
                kb.narrow(2, 0, total).unwrap(),
                vb.narrow(2, 0, total).unwrap(),
            );
            let scale = 1.0 / (d as f64).sqrt();
            let ours = decode(&q, &k, &v, scale as f32).unwrap().expect("applies");
            let theirs = general(&q, &k, &v, scale);
            let diff = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff < 1e-5,
                "heads {heads}/{kv_heads} d {d} total {total}: {diff}"
            );
        }
    }

    #[test]
    fn other_dtypes_and_prefill_take_the_general_path() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 3, 4), DType::F32, &dev).unwrap();
        assert!(decode(&q, &k, &k, 0.5).unwrap().is_none());
        let q = Tensor::zeros((1, 2, 1, 4), DType::BF16, &dev).unwrap();
        let k = Tensor::zeros((1, 2, 3, 4), DType::BF16, &dev).unwrap();
        assert!(decode(&q, &k, &k, 0.5).unwrap().is_none());
    }
}
