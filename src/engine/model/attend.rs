//! Attention on the CPU in f32, straight out of the cache buffer: one new token over the cached
//! keys and values (the decode step), and a chunk of new tokens under the causal mask (prefill).
//!
//! Decode: the general path (a batched matmul, softmax, matmul) pays for packing the strided
//! cache views and for allocating score tensors on every layer of every token; at a few
//! hundred cached positions that was a quarter of a SmolLM2 decode step. Here each query head
//! reads its key/value head's rows straight out of the cache buffer, in parallel over heads.
//!
//! Prefill: the general path multiplies every query by every key, adds a (seq, total) mask
//! that sets half the scores to -inf, and exponentiates all of them; here each query row meets
//! only the keys it sees, and the softmax needs no mask.
//!
//! The arithmetic is the general path's: scores q·k scaled by 1/sqrt(d), a max-subtracted
//! softmax in f32, then the probability-weighted sum of the values. Every sum here runs in an
//! order fixed by the source (never by the vector width the CPU offers), so the result does not
//! depend on the CPU's features or core count.

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

/// Query rows that share one pass over the transposed keys in [`causal`]: each key component
/// loaded serves this many rows.
const ROWS: usize = 4;
/// Keys scored at once per row in [`causal`] (two AVX registers of f32).
const KEYS: usize = 16;
/// Output components accumulated at once per row in [`causal`] (four AVX registers).
const LANES: usize = 32;

/// Causal attention of a chunk of `seq` new tokens: `q` is (1, heads, seq, d) after RoPE, `k`
/// and `v` are (1, kv_heads, total, d) views of the cache that end with the chunk's own keys
/// and values, so query row i sees keys 0..=total - seq + i (what `causal_mask` allows).
/// Returns (1, seq, heads * d), or `None` when this path does not apply (another device or
/// dtype, or a layout it does not read), so the caller takes the general one.
pub(crate) fn causal(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    if q.dtype() != DType::F32 || !q.device().is_cpu() || k.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, heads, seq, d) = q.dims4()?;
    let (_, kv_heads, total, _) = k.dims4()?;
    if b != 1 || seq == 0 || kv_heads == 0 || heads % kv_heads != 0 || total < seq || d == 0 {
        return Ok(None);
    }
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let (
        Storage::Cpu(CpuStorage::F32(q_data)),
        Storage::Cpu(CpuStorage::F32(k_data)),
        Storage::Cpu(CpuStorage::F32(v_data)),
    ) = (&*q_storage, &*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let (Some(queries), Some(keys), Some(values)) = (
        Rows::of(q_data, q_layout, heads, seq, d),
        Rows::of(k_data, k_layout, kv_heads, total, d),
        Rows::of(v_data, v_layout, kv_heads, total, d),
    ) else {
        return Ok(None);
    };
    let past = total - seq;
    let group = heads / kv_heads;
    // Each kv head's keys transposed, (d, padded) with zeros past `total`: scoring KEYS keys
    // against one query is then KEYS independent sums over the d components, in order.
    // An odd number of KEYS-wide (64-byte) lines per component row: a power-of-two stride
    // would put every row of a column in the same few cache sets.
    let mut padded = total.div_ceil(KEYS) * KEYS;
    if (padded / KEYS).is_multiple_of(2) {
        padded += KEYS;
    }
    let mut kt = vec![0f32; kv_heads * d * padded];
    let kt_dest = Dest(kt.as_mut_ptr());
    super::quant::par_items(kv_heads, |kv| {
        // SAFETY: kv head `kv` writes only its own (d, padded) block, and `kt` outlives
        // `par_items`, which returns only after every item has finished.
        let block = unsafe { kt_dest.range(kv * d * padded, d * padded) };
        // KEYS keys at a time, so that each component row is written a whole line at once.
        for t0 in (0..total).step_by(KEYS) {
            let tile: Vec<&[f32]> = (t0..(t0 + KEYS).min(total))
                .map(|t| keys.row(kv, t))
                .collect();
            for j in 0..d {
                for (x, key) in block[j * padded + t0..].iter_mut().zip(&tile) {
                    *x = key[j];
                }
            }
        }
    });
    let kt = &kt;
    let mut out = vec![0f32; seq * heads * d];
    let dest = Dest(out.as_mut_ptr());
    let blocks = seq.div_ceil(ROWS);
    // The last rows see the most keys: hand them out first, so the cores finish together.
    super::quant::par_items(blocks * heads, |item| {
        let (block, h) = (blocks - 1 - item / heads, item % heads);
        let kv = h / group;
        let rows = block * ROWS..((block + 1) * ROWS).min(seq);
        let seen = past + rows.end; // keys the block's last row sees
        let kt = &kt[kv * d * padded..(kv + 1) * d * padded];
        // Scaled queries, as the general path scales q before its product.
        let mut qs = vec![[0f32; ROWS]; d];
        for (r, i) in rows.clone().enumerate() {
            for (j, &x) in queries.row(h, i).iter().enumerate() {
                qs[j][r] = x * scale;
            }
        }
        let width = seen.div_ceil(KEYS) * KEYS;
        let mut scores = vec![0f32; ROWS * width];
        for t0 in (0..width).step_by(KEYS) {
            let mut acc = [[0f32; KEYS]; ROWS];
            for (j, qj) in qs.iter().enumerate() {
                let kr = &kt[j * padded + t0..j * padded + t0 + KEYS];
                for (a, &qr) in acc.iter_mut().zip(qj) {
                    for (x, &y) in a.iter_mut().zip(kr) {
                        *x += qr * y;
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                scores[r * width + t0..r * width + t0 + KEYS].copy_from_slice(a);
            }
        }
        let mut acc = vec![0f32; d];
        for (r, i) in rows.enumerate() {
            let n = past + i + 1;
            let row = &mut scores[r * width..r * width + n];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            let mut sum = 0f32;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in row.iter_mut() {
                *s /= sum;
            }
            // LANES components at a time, held in registers across all the keys.
            for c0 in (0..d).step_by(LANES) {
                let width = LANES.min(d - c0);
                let part = if width == LANES {
                    weigh_lanes(row, &values, kv, c0)
                } else {
                    weigh(row, &values, kv, c0)
                };
                acc[c0..c0 + width].copy_from_slice(&part[..width]);
            }
            // SAFETY: (row i, head h) writes only its own d values, and `out` outlives
            // `par_items`, which returns only after every item has finished.
            unsafe { dest.range((i * heads + h) * d, d) }.copy_from_slice(&acc);
        }
    });
    Ok(Some(Tensor::from_vec(
        out,
        (1, seq, heads * d),
        &candle_core::Device::Cpu,
    )?))
}

/// The probability-weighted sum of components c0.. (up to LANES of them) of kv head `kv`'s
/// values, over the keys `probs` covers, summed in key order.
fn weigh(probs: &[f32], values: &Rows<'_>, kv: usize, c0: usize) -> [f32; LANES] {
    let mut part = [0f32; LANES];
    for (t, &p) in probs.iter().enumerate() {
        for (a, &x) in part.iter_mut().zip(&values.row(kv, t)[c0..]) {
            *a += p * x;
        }
    }
    part
}

/// [`weigh`] of a whole LANES components, with the sums held in four AVX registers (the
/// compiler spills them otherwise). A multiply then an add per lane, in key order: the same
/// roundings as [`weigh`].
#[cfg(all(target_arch = "x86_64", target_feature = "avx"))]
fn weigh_lanes(probs: &[f32], values: &Rows<'_>, kv: usize, c0: usize) -> [f32; LANES] {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let mut part = [0f32; LANES];
    // SAFETY: AVX is enabled for the whole build (the cfg above); each load reads 8 floats
    // inside `x`, a slice of exactly LANES = 32, and each store writes 8 inside `part`.
    unsafe {
        let mut a = [_mm256_setzero_ps(); 4];
        for (t, &p) in probs.iter().enumerate() {
            let x = &values.row(kv, t)[c0..c0 + LANES];
            let p = _mm256_set1_ps(p);
            for (i, a) in a.iter_mut().enumerate() {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(p, _mm256_loadu_ps(x.as_ptr().add(8 * i))));
            }
        }
        for (i, a) in a.iter().enumerate() {
            _mm256_storeu_ps(part.as_mut_ptr().add(8 * i), *a);
        }
    }
    part
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
fn weigh_lanes(probs: &[f32], values: &Rows<'_>, kv: usize, c0: usize) -> [f32; LANES] {
    weigh(probs, values, kv, c0)
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

    /// The largest absolute difference between two tensors of one shape.
    /// Random queries (1, heads, seq, d) and keys and values (1, kv_heads, total, d) that are
    /// views of larger (cap-long) buffers, as the cache hands them out.
    fn random_views(
        dev: &Device,
        heads: usize,
        kv_heads: usize,
        seq: usize,
        d: usize,
        total: usize,
        cap: usize,
    ) -> (Tensor, Tensor, Tensor) {
        let randn = |dims: (usize, usize, usize, usize)| {
            Tensor::randn(0f32, 1.0, dims, dev).expect("random tensor on the CPU")
        };
        let q = randn((1, heads, seq, d));
        let (kb, vb) = (randn((1, kv_heads, cap, d)), randn((1, kv_heads, cap, d)));
        let view = |t: &Tensor| t.narrow(2, 0, total).expect("total <= cap");
        let (k, v) = (view(&kb), view(&vb));
        (q, k, v)
    }

    fn max_diff(a: Tensor, b: Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn decode_attention_equals_the_general_path_on_a_strided_cache() {
        let dev = Device::Cpu;
        for (heads, kv_heads, d, total, cap) in
            [(9, 3, 64, 37, 64), (4, 4, 12, 1, 8), (8, 2, 20, 300, 512)]
        {
            let (q, k, v) = random_views(&dev, heads, kv_heads, 1, d, total, cap);
            let scale = 1.0 / (d as f64).sqrt();
            let ours = decode(&q, &k, &v, scale as f32).unwrap().expect("applies");
            let diff = max_diff(ours, general(&q, &k, &v, scale));
            assert!(
                diff < 1e-5,
                "heads {heads}/{kv_heads} d {d} total {total}: {diff}"
            );
        }
    }

    /// The general path under the causal mask, as `Attention::attend` computes a chunk (one
    /// token: a decode step, which sees every cached position).
    fn general(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (_, heads, seq, d) = q.dims4().unwrap();
        let (_, kv_heads, total, _) = k.dims4().unwrap();
        let group = heads / kv_heads;
        let mask =
            crate::engine::model::layers::causal_mask(seq, total - seq, DType::F32, &Device::Cpu)
                .unwrap();
        let q = (q * scale)
            .unwrap()
            .reshape((1, kv_heads, group * seq, d))
            .unwrap();
        let scores = q
            .matmul(&k.t().unwrap())
            .unwrap()
            .reshape((1, kv_heads, group, seq, total))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap()
            .reshape((1, kv_heads, group * seq, total))
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs
            .matmul(v)
            .unwrap()
            .reshape((1, heads, seq, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((1, seq, heads * d))
            .unwrap()
    }

    #[test]
    fn causal_attention_equals_the_masked_general_path() {
        let dev = Device::Cpu;
        // Head sizes with and without a whole number of LANES, chunks with and without a
        // whole number of ROWS and KEYS, with and without cached tokens before the chunk.
        for (heads, kv_heads, d, past, seq, cap) in [
            (9, 3, 64, 0, 37, 64),
            (4, 4, 12, 5, 3, 8),
            (8, 2, 40, 100, 33, 200),
            (2, 1, 128, 7, 64, 80),
            (3, 1, 16, 0, 1, 4),
        ] {
            let total = past + seq;
            // q as RoPE leaves it: the transpose of (1, seq, heads, d) made contiguous.
            let (q, k, v) = random_views(&dev, heads, kv_heads, seq, d, total, cap);
            let scale = 1.0 / (d as f64).sqrt();
            let ours = causal(&q, &k, &v, scale as f32).unwrap().expect("applies");
            let theirs = general(&q, &k, &v, scale);
            assert_eq!(ours.dims(), theirs.dims());
            let diff = max_diff(ours, theirs);
            assert!(
                diff < 1e-5,
                "heads {heads}/{kv_heads} d {d} past {past} seq {seq}: {diff}"
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
        assert!(causal(&q, &k, &k, 0.5).unwrap().is_none());
    }
}
