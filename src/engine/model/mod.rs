//! The decoder that runs Qwen2 and Llama judges, from safetensors or GGUF.
//!
//! This is the project's own model code rather than candle-transformers' `qwen2` /
//! `quantized_*`: those build RoPE tables in the model dtype (long prompts drift in bf16),
//! pass no causal mask to a multi-token forward after the first (so chunked prefill is wrong),
//! and grow the KV cache with a `Tensor::cat` per token. Here RoPE is built in f32, every
//! multi-token forward is masked causally against what is cached (chunked prefill equals
//! single-pass prefill), the cache is written in place, and grouped-query attention reads
//! each key/value head once instead of materialising `repeat_kv` copies.

mod attend;
#[cfg(feature = "cuda")]
mod cuda;
pub mod family;
mod layers;
mod load;
pub mod paged;
pub(crate) mod quant;

use candle_core::{DType, Device, Result, Tensor};
use layers::{causal_mask, softmax_f32, KvCache, Mlp, Proj, RmsNorm, Rope};
use paged::{PagedCache, SeqId};

pub use family::Backend;
pub use load::{load_gguf, load_safetensors};

use super::config::ModelConfig;

/// Sets glibc's allocator, once per process, to keep the CPU prefill's large buffers in the
/// heap. By default glibc maps each allocation above its threshold (a few MB once raised)
/// afresh and trims the heap's top whenever more than twice that is free, so each prefill-sized
/// product output (18 MB for a 1.5B model's MLP at 512 tokens) came from the kernel as new
/// pages, was faulted in page by page, zeroed, and given back at free: a tenth of a 1.5B
/// prefill. With allocations below 32 MiB (glibc's largest) taken from the heap and up to
/// 128 MiB of free heap top kept, freed buffers are reused as they are. Peak RSS does not grow:
/// the pages kept were resident when they were last in use, so the resident set only stays at
/// a level it has already reached, by at most the 128 MiB; larger allocations (weights, caches)
/// are still mapped and unmapped alone. Elsewhere than glibc, nothing to do.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes two tuning parameters of the allocator (which takes
            // its own lock); it returns 0 where a value is refused, and then glibc keeps its
            // default, which is only slower.
            let set = unsafe {
                (
                    libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20),
                    libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20),
                )
            };
            if set != (1, 1) {
                tracing::debug!("glibc refused the allocator settings: {set:?}");
            }
        });
    }
}

/// The token embedding: a dense table, or a quantized one whose rows are dequantized on use.
#[derive(Debug, Clone)]
enum Embedding {
    Dense(Tensor),
    Quant(candle_core::quantized::QMatMul),
    /// Shared with the output projection's fast kernels (a tied GGUF table, held once).
    Fast(quant::QuantMatrix),
}

impl Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Embedding::Dense(table) => {
                let (b, s) = ids.dims2()?;
                table
                    .index_select(&ids.flatten_all()?, 0)?
                    .reshape((b, s, ()))
            }
            Embedding::Quant(q) => q.embedding(ids),
            Embedding::Fast(q) => q.embedding(ids),
        }
    }
}

/// The query, key and value projections: apart, or as one matrix (q rows, k rows, v rows)
/// that a GPU runs as one product.
#[derive(Debug, Clone)]
enum Qkv {
    Separate { q: Proj, k: Proj, v: Proj },
    Merged(Proj),
}

#[derive(Debug, Clone)]
struct Attention {
    qkv: Qkv,
    o: Proj,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// q, k and v of `x` (b, seq, hidden), each (b, seq, n * head_dim).
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        match &self.qkv {
            Qkv::Separate { q, k, v } => Ok((q.forward(x)?, k.forward(x)?, v.forward(x)?)),
            Qkv::Merged(proj) => {
                let all = proj.forward(x)?;
                let (nq, nkv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
                Ok((
                    all.narrow(2, 0, nq)?,
                    all.narrow(2, nq, nkv)?,
                    all.narrow(2, nq + nkv, nkv)?,
                ))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: RmsNorm,
    attn: Attention,
    mlp_norm: RmsNorm,
    mlp: Mlp,
    cache: KvCache,
}

impl Layer {
    /// Runs the layer on the residual stream `x + delta` (`delta`: the previous layer's MLP
    /// output, not yet added, so that the add and this layer's first norm are one step) and
    /// returns the stream after attention with the MLP output beside it, likewise not added.
    ///
    /// `len_dev`: inside a CUDA graph's capture, where the positions held are read when the
    /// graph runs (see [`Decoder::forward_graphed`]); `None` otherwise.
    fn forward(
        &mut self,
        x: &Tensor,
        delta: Option<&Tensor>,
        start: usize,
        rope: &Rope,
        mask: Option<&Tensor>,
        len_dev: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (x, h) = self.attn_norm.add_forward(x, delta)?;
        let h = self.attention(&h, start, rope, mask, len_dev)?;
        let (x, h) = self.mlp_norm.add_forward(&x, Some(&h))?;
        Ok((x, self.mlp.forward(&h)?))
    }

    fn attention(
        &mut self,
        x: &Tensor,
        start: usize,
        rope: &Rope,
        mask: Option<&Tensor>,
        len_dev: Option<&Tensor>,
    ) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let Some(out) = self.attention_cuda(x, rope, len_dev)? {
            return Ok(out);
        }
        if len_dev.is_some() {
            candle_core::bail!("a captured decode step needs the fused CUDA attention");
        }
        let a = &self.attn;
        let (b, seq, _) = x.dims3()?;
        let (q, k, v) = a.project(x)?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((b, seq, n, a.head_dim))?.transpose(1, 2)
        };
        let q = rope.apply(&heads(q, a.heads)?, start)?;
        let k = rope.apply(&heads(k, a.kv_heads)?, start)?;
        let v = heads(v, a.kv_heads)?;
        let (k, v) = self.cache.append(&k, &v)?;
        a.o.forward(&a.attend(&q, &k, &v, mask)?)
    }
}

impl Attention {
    /// Attention of queries `q` (b, heads, seq, d), rotated, over keys and values `k`, `v`
    /// (b, kv_heads, total, d) that end with the queries' own, masked by `mask` (seq, total)
    /// when given; returns (b, seq, heads * d) before the output projection.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, seq, _) = q.dims4()?;
        let total = k.dim(2)?;
        let scale32 = 1.0 / (self.head_dim as f32).sqrt();
        match mask {
            None => {
                if let Some(out) = attend::decode(q, k, v, scale32)? {
                    return Ok(out);
                }
            }
            // Every mask given here is `causal_mask(seq, total - seq)`, which the causal path
            // applies by skipping the keys a row may not see.
            Some(mask) if mask.dims() == [seq, total] => {
                if let Some(out) = attend::causal(q, k, v, scale32)? {
                    return Ok(out);
                }
            }
            Some(_) => {}
        }
        let group = self.heads / self.kv_heads;
        // Query heads that share a kv head are adjacent, so (b, heads, seq, d) regroups as
        // (b, kv_heads, group*seq, d) and attends to each cached kv head directly.
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = (q * scale)?.reshape((b, self.kv_heads, group * seq, self.head_dim))?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((b, self.kv_heads, group, seq, total))?
                .broadcast_add(mask)?
                .reshape((b, self.kv_heads, group * seq, total))?,
            None => scores,
        };
        let probs = softmax_f32(&scores)?;
        let out = probs.matmul(v)?; // (b, kv_heads, group*seq, d)
        out.reshape((b, self.heads, seq, self.head_dim))?
            .transpose(1, 2)?
            .reshape((b, seq, self.heads * self.head_dim))
    }
}

#[cfg(feature = "cuda")]
impl Attention {
    /// Causal attention of a prompt piece `q` (1, heads, seq, d) over its sequence's keys
    /// and values `k`, `v` (1, kv_heads, total, d), which end with the piece's own, with the
    /// scores in f32 (the products of 16-bit values are exact in f32) and the scale applied
    /// in f32 by the softmax, as fused attention kernels keep them; the probabilities meet
    /// `v` in its own type. Returns (1, seq, heads * d).
    fn attend_f32_scores(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (_, heads, seq, d) = q.dims4()?;
        let total = k.dim(2)?;
        let group = heads / self.kv_heads;
        let q = q
            .reshape((self.kv_heads, group * seq, d))?
            .to_dtype(DType::F32)?;
        let k = k.squeeze(0)?.to_dtype(DType::F32)?;
        let scores = q.matmul(&k.t()?)?.contiguous()?;
        cuda::softmax_causal_(&scores, seq, total - seq, 1.0 / (d as f32).sqrt())?;
        let out = scores.to_dtype(v.dtype())?.matmul(&v.squeeze(0)?)?;
        cuda::heads_to_rows(&out.reshape((heads, seq, d))?)?.unsqueeze(0)
    }
}

/// Where the tokens of a batched step go: each input's cache rows and mask, and the rotation
/// tables of every token, in step order.
struct BatchStep<'a> {
    inputs: &'a [StepInput<'a>],
    rows: &'a [Vec<u32>],
    /// The rotation tables of every token, (tokens, head_dim / 2) each; `None` when every
    /// layer rotates in the fused CUDA kernel, which reads the whole tables itself.
    cos: Option<&'a Tensor>,
    sin: Option<&'a Tensor>,
    /// Each input's causal mask over its cache, for inputs of several tokens: built once a
    /// step rather than once a layer (on a GPU, each is an upload).
    masks: &'a [Option<Tensor>],
    /// What the CUDA kernels need, uploaded once a step for every layer; `None` elsewhere.
    #[cfg(feature = "cuda")]
    cuda: Option<CudaStep>,
    /// The step's stage timings (`ARBITER_STEP_PROFILE=1`); `None` when off.
    #[cfg(feature = "cuda")]
    clock: std::cell::RefCell<Option<cuda::StageClock>>,
}

impl BatchStep<'_> {
    /// Ends profiling stage `name` of the step (nothing unless profiling is on).
    fn mark(&self, _name: &'static str) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(clock) = self.clock.borrow_mut().as_mut() {
            clock.mark(_name)?;
        }
        Ok(())
    }
}

/// A batched step's slots and block tables on the GPU.
#[cfg(feature = "cuda")]
struct CudaStep {
    /// Every token's pool slot, in step order (u32).
    slots: Tensor,
    /// Every token's position in its own sequence, in step order (u32).
    positions: Tensor,
    /// The inputs of one token (decode steps, and a prompt's last single token), attended
    /// in one launch over their blocks; with paged prompt attention (the default), every
    /// input's every token, each a row seeing its sequence up to itself.
    pool_rows: Option<PoolRows>,
}

#[cfg(feature = "cuda")]
struct PoolRows {
    /// Their indices among the inputs, in order.
    inputs: Vec<usize>,
    /// Their tokens' rows among the step's tokens (u32); `None` when every token of the step
    /// is a row (every input one token, or prompt pieces attended paged).
    rows: Option<Tensor>,
    /// (rows, max_blocks) u32 block tables, padded with block 0.
    tables: Tensor,
    /// Positions each row sees, its own token included (u32).
    lens: Tensor,
    max_len: usize,
}

#[cfg(feature = "cuda")]
impl CudaStep {
    /// `None` unless the fused kernels run this model here.
    fn new(
        cache: &PagedCache,
        inputs: &[StepInput<'_>],
        rows: &[Vec<u32>],
        positions: &[u32],
        dtype: DType,
        head_dim: usize,
        device: &Device,
    ) -> Result<Option<CudaStep>> {
        if !device.is_cuda() || !cuda::enabled() || !cuda::supports(dtype, head_dim) {
            return Ok(None);
        }
        let slots: Vec<u32> = rows.concat();
        // With prompt pieces over their blocks, every token of every input is a row of the
        // one launch, seeing its sequence up to itself.
        let paged = cuda::prompt_attention() == cuda::PromptAttention::Paged;
        let ones: Vec<usize> = (0..inputs.len())
            .filter(|&i| paged || inputs[i].tokens.len() == 1)
            .collect();
        let pool_rows = if ones.is_empty() {
            None
        } else if paged {
            let mut width = 1;
            for input in inputs {
                width = width.max(cache.blocks(input.seq)?.len());
            }
            let tokens = slots.len();
            let mut tables = vec![0u32; tokens * width];
            let mut lens = Vec::with_capacity(tokens);
            for input in inputs {
                let blocks = cache.blocks(input.seq)?;
                let held = cache.len(input.seq)?;
                let n = input.tokens.len();
                for j in 0..n {
                    let at = lens.len() * width;
                    tables[at..at + blocks.len()].copy_from_slice(blocks);
                    lens.push((held - (n - 1 - j)) as u32);
                }
            }
            let max_len = lens.iter().copied().max().unwrap_or(1) as usize;
            Some(PoolRows {
                rows: None,
                tables: Tensor::from_vec(tables, (tokens, width), device)?,
                lens: Tensor::new(lens.as_slice(), device)?,
                inputs: ones,
                max_len,
            })
        } else {
            // Each input's first token among the step's tokens.
            let mut offsets = Vec::with_capacity(inputs.len());
            let mut at = 0u32;
            for input in inputs {
                offsets.push(at);
                at += input.tokens.len() as u32;
            }
            let offsets: Vec<u32> = ones.iter().map(|&i| offsets[i]).collect();
            let mut width = 1;
            for &i in &ones {
                width = width.max(cache.blocks(inputs[i].seq)?.len());
            }
            let mut tables = vec![0u32; ones.len() * width];
            let mut lens = Vec::with_capacity(ones.len());
            for (j, &i) in ones.iter().enumerate() {
                let blocks = cache.blocks(inputs[i].seq)?;
                tables[j * width..j * width + blocks.len()].copy_from_slice(blocks);
                lens.push(cache.len(inputs[i].seq)? as u32);
            }
            let max_len = lens.iter().copied().max().unwrap_or(1) as usize;
            let rows = if ones.len() < inputs.len() {
                Some(Tensor::new(offsets.as_slice(), device)?)
            } else {
                None
            };
            Some(PoolRows {
                rows,
                tables: Tensor::from_vec(tables, (ones.len(), width), device)?,
                lens: Tensor::new(lens.as_slice(), device)?,
                inputs: ones,
                max_len,
            })
        };
        Ok(Some(CudaStep {
            slots: Tensor::new(slots.as_slice(), device)?,
            positions: Tensor::new(positions, device)?,
            pool_rows,
        }))
    }
}

impl Layer {
    /// The layer on a batched step: `x` (1, tokens, hidden), every input's tokens stacked,
    /// so the projections and the MLP are one matrix product for the whole batch; attention
    /// runs per sequence over its own blocks of `cache` (layer `index`).
    fn forward_batch(
        &self,
        x: &Tensor,
        delta: Option<&Tensor>,
        index: usize,
        cache: &PagedCache,
        step: &BatchStep<'_>,
        rope: &Rope,
    ) -> Result<(Tensor, Tensor)> {
        let (x, h) = self.attn_norm.add_forward(x, delta)?;
        step.mark("attention norm")?;
        let h = self.attention_batch(&h, index, cache, step, rope)?;
        step.mark("o projection")?;
        let (x, h) = self.mlp_norm.add_forward(&x, Some(&h))?;
        step.mark("mlp norm")?;
        let out = self.mlp.forward_marked(&h, &mut |name| step.mark(name))?;
        Ok((x, out))
    }

    fn attention_batch(
        &self,
        x: &Tensor,
        index: usize,
        cache: &PagedCache,
        step: &BatchStep<'_>,
        rope: &Rope,
    ) -> Result<Tensor> {
        let a = &self.attn;
        let (_, total, _) = x.dims3()?;
        let d = a.head_dim;
        #[cfg(feature = "cuda")]
        if let (Some(fast), Qkv::Merged(Proj::Dense { weight, bias })) = (&step.cuda, &a.qkv) {
            // One product for q, k and v, then one kernel for the bias, both rotations and the
            // pool write; q comes back as the (tokens, heads, d) rows decode attention reads.
            let qkv = qkv_product(&x.reshape((total, x.dim(2)?))?, weight)?;
            step.mark("qkv projection")?;
            let (k_pool, v_pool) = cache.pools(index)?;
            let (cos, sin) = rope.cos_sin();
            let q_rows = cuda::qkv_rope_paged(
                &qkv,
                bias.as_ref(),
                cos,
                sin,
                &fast.positions,
                &fast.slots,
                k_pool,
                v_pool,
                a.heads,
            )?;
            step.mark("bias, rope, cache write")?;
            let out = self.attend_rows(&q_rows, index, cache, step, fast)?;
            step.mark("attention")?;
            return a.o.forward(&out);
        }
        let (q, k, v) = a.project(x)?;
        let q = q.reshape((1, total, a.heads, d))?.transpose(1, 2)?;
        let (Some(cos), Some(sin)) = (step.cos, step.sin) else {
            candle_core::bail!("a batched step without rotation tables for this layer");
        };
        let q = rope.apply_with(&q, cos, sin)?;
        let k = k.reshape((1, total, a.kv_heads, d))?.transpose(1, 2)?;
        let k = rope.apply_with(&k, cos, sin)?;
        let k_rows = k.squeeze(0)?.transpose(0, 1)?; // (tokens, kv_heads, d)
        let v_rows = v.reshape((total, a.kv_heads, d))?;
        #[cfg(feature = "cuda")]
        if let Some(fast) = &step.cuda {
            let (k_pool, v_pool) = cache.pools(index)?;
            let (k_rows, v_rows) = (k_rows.contiguous()?, v_rows.contiguous()?);
            cuda::paged_write(&k_rows, &v_rows, &fast.slots, k_pool, v_pool)?;
            // (tokens, heads, d): the query rows decode attention reads.
            let q_rows = q.squeeze(0)?.transpose(0, 1)?.contiguous()?;
            step.mark("bias, rope, cache write")?;
            let out = self.attend_rows(&q_rows, index, cache, step, fast)?;
            step.mark("attention")?;
            return a.o.forward(&out);
        }
        let mut at = 0;
        for (input, rows) in step.inputs.iter().zip(step.rows) {
            let n = input.tokens.len();
            let (k, v) = (k_rows.narrow(0, at, n)?, v_rows.narrow(0, at, n)?);
            cache.write(index, rows, &k, &v)?;
            at += n;
        }
        // Each sequence's keys and values gathered out of its blocks.
        let mut outs = Vec::with_capacity(step.inputs.len());
        let mut at = 0;
        for (input, mask) in step.inputs.iter().zip(step.masks) {
            let n = input.tokens.len();
            let q = q.narrow(2, at, n)?;
            let (k, v) = cache.gather(index, input.seq)?;
            outs.push(a.attend(&q, &k, &v, mask.as_ref())?);
            at += n;
        }
        let out = if outs.len() == 1 {
            outs.remove(0)
        } else {
            Tensor::cat(&outs, 1)?
        };
        a.o.forward(&out)
    }
}

impl Layer {
    /// Whether attention on `x` (b, seq, hidden) runs through the fused CUDA kernels.
    #[cfg(feature = "cuda")]
    fn fused(&self, x: &Tensor) -> bool {
        matches!(self.attn.qkv, Qkv::Merged(Proj::Dense { .. }))
            && x.device().is_cuda()
            && x.dim(0).is_ok_and(|b| b == 1)
            && cuda::supports(x.dtype(), self.attn.head_dim)
    }

    #[cfg(not(feature = "cuda"))]
    fn fused(&self, _x: &Tensor) -> bool {
        false
    }
}

/// The merged q/k/v product for the fused kernel: in the model's type, or in f32 where
/// [`cuda::qkv_in_f32`] asks.
#[cfg(feature = "cuda")]
fn qkv_product(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if cuda::qkv_in_f32(x.dtype()) {
        cuda::matmul_t_f32(x, weight)
    } else {
        layers::matmul_t(x, weight)
    }
}

#[cfg(feature = "cuda")]
impl Layer {
    /// A batched step's attention from rotated query rows `q_rows` (tokens, heads, d), the
    /// step's keys and values already in the pool: the rows of `fast.pool_rows` in one launch
    /// over their blocks (every token, by default), any other input (a prompt piece, with
    /// `ARBITER_CUDA_PROMPT=f32` or `bf16`) over its gathered blocks. Returns (1, tokens,
    /// heads * d), the o projection's input.
    fn attend_rows(
        &self,
        q_rows: &Tensor,
        index: usize,
        cache: &PagedCache,
        step: &BatchStep<'_>,
        fast: &CudaStep,
    ) -> Result<Tensor> {
        let a = &self.attn;
        let d = a.head_dim;
        let mut outs: Vec<Option<Tensor>> = vec![None; step.inputs.len()];
        if let Some(one) = &fast.pool_rows {
            let (k_pool, v_pool) = cache.pools(index)?;
            let q = match &one.rows {
                Some(rows) => q_rows.index_select(rows, 0)?,
                None => q_rows.clone(),
            };
            let out = cuda::attend_paged(
                &q,
                k_pool,
                v_pool,
                &one.tables,
                &one.lens,
                cache.block_size(),
                one.max_len,
                1.0 / (d as f32).sqrt(),
            )?;
            if one.rows.is_none() {
                return out.unsqueeze(0);
            }
            for (j, &i) in one.inputs.iter().enumerate() {
                outs[i] = Some(out.narrow(0, j, 1)?.unsqueeze(0)?);
            }
        }
        let mut at = 0;
        for ((input, mask), slot) in step.inputs.iter().zip(step.masks).zip(outs.iter_mut()) {
            let n = input.tokens.len();
            if slot.is_none() {
                let q = q_rows.narrow(0, at, n)?.transpose(0, 1)?.unsqueeze(0)?;
                let (k, v) = cache.gather(index, input.seq)?;
                *slot = Some(match cuda::prompt_attention() {
                    cuda::PromptAttention::F32Scores => a.attend_f32_scores(&q, &k, &v)?,
                    _ => a.attend(&q, &k, &v, mask.as_ref())?,
                });
            }
            at += n;
        }
        let mut outs: Vec<Tensor> = outs.into_iter().flatten().collect();
        if outs.len() == 1 {
            return Ok(outs.remove(0));
        }
        Tensor::cat(&outs, 1)
    }

    /// Attention through the fused kernels (see `cuda`), for a merged dense q/k/v projection
    /// on a CUDA device, one sequence, f32 or bf16; `None` where they do not apply. Writes
    /// the cache like the general path and computes the same function.
    fn attention_cuda(
        &mut self,
        x: &Tensor,
        rope: &Rope,
        len_dev: Option<&Tensor>,
    ) -> Result<Option<Tensor>> {
        if !self.fused(x) {
            return Ok(None);
        }
        let a = &self.attn;
        let Qkv::Merged(Proj::Dense { weight, bias }) = &a.qkv else {
            return Ok(None);
        };
        let (_, seq, hidden) = x.dims3()?;
        let (heads, kv_heads, d) = (a.heads, a.kv_heads, a.head_dim);
        let qkv = qkv_product(&x.reshape((seq, hidden))?, weight)?;
        let (k_cache, v_cache, start) =
            self.cache.extend(seq, kv_heads, d, x.dtype(), x.device())?;
        let (cos, sin) = rope.cos_sin();
        let q = cuda::qkv_rope(
            &qkv,
            bias.as_ref(),
            cos,
            sin,
            &k_cache,
            &v_cache,
            heads,
            kv_heads,
            start,
            len_dev,
        )?;
        let total = start + seq;
        let scale = 1.0 / (d as f32).sqrt();
        let out = if seq == 1 {
            cuda::attend_decode(&q, &k_cache, &v_cache, total, scale, len_dev)?
        } else {
            let group = heads / kv_heads;
            let k = k_cache.narrow(2, 0, total)?.squeeze(0)?;
            let v = v_cache.narrow(2, 0, total)?.squeeze(0)?;
            let scores = q
                .reshape((kv_heads, group * seq, d))?
                .matmul(&k.t()?)?
                .contiguous()?;
            cuda::softmax_causal_(&scores, seq, start, scale)?;
            cuda::heads_to_rows(&scores.matmul(&v)?.reshape((heads, seq, d))?)?
        };
        Ok(Some(a.o.forward(&out.reshape((1, seq, heads * d))?)?))
    }
}

/// The index of the largest of f32 `logits` (vocab,), where they are (no copy of the
/// vocabulary off a GPU): greedy decoding's pick.
/// Refuses an empty step and a token id outside the vocabulary (ids come from users too:
/// `arbiter logits --tokens`), for every backend alike.
pub(crate) fn check_tokens(tokens: &[u32], vocab_size: usize) -> Result<()> {
    if tokens.is_empty() {
        candle_core::bail!("forward needs at least one token");
    }
    if let Some(bad) = tokens.iter().find(|t| **t as usize >= vocab_size) {
        candle_core::bail!("token id {bad} is outside the model's vocabulary of {vocab_size}");
    }
    Ok(())
}

pub(crate) fn argmax(logits: &Tensor) -> Result<u32> {
    #[cfg(feature = "cuda")]
    if let Some(i) = cuda::argmax(logits)? {
        return Ok(i);
    }
    logits.argmax(0)?.to_scalar::<u32>()
}

/// The GPU time of batched decode steps (every input one token) by stage, gathered while
/// `ARBITER_STEP_PROFILE=1` (name, times seen, total ms, in the order stages first ran), and
/// emptied; nothing elsewhere.
pub fn take_step_profile() -> Vec<(&'static str, u64, f64)> {
    #[cfg(feature = "cuda")]
    return cuda::take_step_profile();
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// Adds a host-side stage of a batched decode step to the step profile (see
/// [`take_step_profile`]): `since` is when the stage began. Nothing unless profiling is on.
pub fn profile_host(_name: &'static str, _since: std::time::Instant) {
    #[cfg(feature = "cuda")]
    if cuda::profiling() {
        cuda::add_stage(_name, _since.elapsed().as_secs_f64() * 1e3);
    }
}

/// Copies batched steps' greedy tokens to the host. On CUDA each copy goes into page-locked
/// memory behind an event, so reading the tokens waits for the step that made them and not
/// for a step queued after it (a plain read synchronizes the whole stream); elsewhere the
/// tokens are read at once.
#[derive(Default)]
pub struct TokenReadback {
    #[cfg(feature = "cuda")]
    copies: cuda::TokenCopies,
}

/// Tokens on their way to the host: [`TokenReadback::finish`] gives them.
pub struct PendingTokens(Pending);

enum Pending {
    Ready(Vec<u32>),
    #[cfg(feature = "cuda")]
    Copying(cuda::TokenCopy),
}

impl TokenReadback {
    /// Starts copying `ids` (u32) to the host without waiting for the device.
    pub fn start(&mut self, ids: &Tensor) -> Result<PendingTokens> {
        #[cfg(feature = "cuda")]
        if ids.device().is_cuda() {
            return Ok(PendingTokens(Pending::Copying(self.copies.start(ids)?)));
        }
        Ok(PendingTokens(Pending::Ready(ids.flatten_all()?.to_vec1()?)))
    }

    /// The tokens, once the device has computed and copied them.
    pub fn finish(&mut self, pending: PendingTokens) -> Result<Vec<u32>> {
        match pending.0 {
            Pending::Ready(tokens) => Ok(tokens),
            #[cfg(feature = "cuda")]
            Pending::Copying(copy) => self.copies.finish(copy),
        }
    }
}

/// One sequence's share of a batched step (`Decoder::forward_batch`): its new tokens (a
/// piece of its prompt, or the one token it decodes next), run after what the paged cache
/// holds for it.
#[derive(Debug, Clone, Copy)]
pub struct StepInput<'a> {
    pub seq: SeqId,
    pub tokens: &'a [u32],
}

/// A loaded decoder with its KV cache: one sequence at a time, or several through
/// [`forward_batch`](Decoder::forward_batch) and a [`PagedCache`].
#[derive(Debug, Clone)]
pub struct Decoder {
    config: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    rope: Rope,
    device: Device,
    /// The dtype activations and the KV cache use.
    dtype: DType,
    /// The single stream's decode step as a CUDA graph, once captured.
    #[cfg(feature = "cuda")]
    graph: GraphSlot,
}

/// Where a decoder keeps its captured decode step (see [`Decoder::forward_graphed`]).
#[cfg(feature = "cuda")]
#[derive(Debug, Default)]
pub(crate) struct GraphSlot {
    step: Option<cuda::StepGraph>,
    /// Set when a capture failed: this decoder launches kernel by kernel from then on.
    off: bool,
}

#[cfg(feature = "cuda")]
impl Clone for GraphSlot {
    /// A graph holds its own decoder's cache addresses: a copy captures its own.
    fn clone(&self) -> Self {
        GraphSlot {
            step: None,
            off: self.off,
        }
    }
}

impl Decoder {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Tokens in the cache: the position the next token will take.
    pub fn position(&self) -> usize {
        self.layers.first().map(|l| l.cache.len()).unwrap_or(0)
    }

    /// Forgets the sequence (keeps the cache's memory for the next one).
    pub fn reset(&mut self) {
        for layer in &mut self.layers {
            layer.cache.reset();
        }
    }

    /// Rewinds the sequence to its first `len` tokens.
    pub fn truncate(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.cache.truncate(len);
        }
    }

    /// Frees the cache's memory.
    pub fn clear_cache(&mut self) {
        for layer in &mut self.layers {
            layer.cache.clear();
        }
        // The graph holds the freed buffers' addresses.
        #[cfg(feature = "cuda")]
        {
            self.graph.step = None;
        }
    }

    /// Allocates cache and RoPE tables for `tokens` positions up front, so a generation of
    /// known length never reallocates mid-stream (and an out-of-memory shows before it starts).
    pub fn reserve(&mut self, tokens: usize) -> Result<()> {
        self.rope.reserve(tokens)?;
        let (kv, d) = (self.config.kv_heads, self.config.head_dim);
        for layer in &mut self.layers {
            layer
                .cache
                .reserve(tokens, kv, d, self.dtype, &self.device)?;
        }
        Ok(())
    }

    /// Runs `tokens` after what is cached and returns the f32 logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if let [token] = tokens {
            if let Some(logits) = self.forward_graphed(*token)? {
                return Ok(logits);
            }
        }
        let hidden = self.hidden(tokens)?;
        let last = hidden.narrow(1, tokens.len() - 1, 1)?;
        self.lm_head
            .forward(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)
    }

    /// Runs `tokens` after what is cached and returns f32 logits for every one, (len, vocab):
    /// for teacher-forced comparisons.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let hidden = self.hidden(tokens)?;
        let (_, s, h) = hidden.dims3()?;
        self.lm_head
            .forward(&hidden.reshape((1, s, h))?)?
            .reshape((s, ()))?
            .to_dtype(DType::F32)
    }

    /// An empty paged cache for this model: blocks of `block_size` tokens, up to `max_blocks`.
    pub fn paged_cache(&self, block_size: usize, max_blocks: usize) -> PagedCache {
        PagedCache::new(
            self.layers.len(),
            self.config.kv_heads,
            self.config.head_dim,
            block_size,
            max_blocks,
            self.dtype,
            &self.device,
        )
    }

    /// One step of several sequences at once: every input's tokens run after what `cache`
    /// holds for its sequence (admitted there first), and the f32 logits of each input's last
    /// token come back, (inputs, vocab), in input order. The tokens of all inputs go through
    /// the projections and the MLP as one matrix; attention reads each sequence's own blocks.
    /// A sequence gives the same logits here as alone through [`forward`](Self::forward).
    /// On an error the inputs' sequences are left holding tokens whose keys may not be
    /// written: release them.
    pub fn forward_batch(
        &mut self,
        cache: &mut PagedCache,
        inputs: &[StepInput<'_>],
    ) -> Result<Tensor> {
        self.batch_step(cache, inputs, None)
    }

    /// [`forward_batch`](Self::forward_batch) for a decode step whose tokens are already on
    /// the device: `ids` (u32, one per input, every input one token long) are fed in place
    /// of the inputs' own token values, which are not read. A step's greedy tokens can so
    /// feed the next step before they reach the host (the scheduler's step ahead). The ids
    /// come from the model's own output head, so they are within its vocabulary.
    pub fn forward_batch_fed(
        &mut self,
        cache: &mut PagedCache,
        inputs: &[StepInput<'_>],
        ids: &Tensor,
    ) -> Result<Tensor> {
        if ids.dtype() != DType::U32
            || ids.elem_count() != inputs.len()
            || inputs.iter().any(|i| i.tokens.len() != 1)
        {
            candle_core::bail!(
                "a step fed from the device takes one u32 id per one-token input: {} inputs, \
                 ids {:?} of {:?}",
                inputs.len(),
                ids.shape(),
                ids.dtype()
            );
        }
        self.batch_step(cache, inputs, Some(ids))
    }

    fn batch_step(
        &mut self,
        cache: &mut PagedCache,
        inputs: &[StepInput<'_>],
        fed: Option<&Tensor>,
    ) -> Result<Tensor> {
        if inputs.is_empty() {
            candle_core::bail!("a batched step needs at least one sequence");
        }
        let mut tokens = Vec::new();
        let mut positions = Vec::new();
        let mut starts = Vec::with_capacity(inputs.len());
        let mut last = Vec::with_capacity(inputs.len());
        for input in inputs {
            if fed.is_none() {
                check_tokens(input.tokens, self.config.vocab_size)?;
            }
            let start = cache.len(input.seq)?;
            let end = start + input.tokens.len();
            if end > self.config.max_position {
                candle_core::bail!(
                    "sequence {} would reach {end} tokens, past the model's context of {}",
                    input.seq,
                    self.config.max_position
                );
            }
            starts.push(start);
            tokens.extend_from_slice(input.tokens);
            positions.extend((start..end).map(|p| p as u32));
            last.push(tokens.len() as u32 - 1);
        }
        let grow: Vec<(SeqId, usize)> = inputs.iter().map(|i| (i.seq, i.tokens.len())).collect();
        let rows = cache.extend(&grow)?;
        #[cfg(feature = "cuda")]
        let cuda = CudaStep::new(
            cache,
            inputs,
            &rows,
            &positions,
            self.dtype,
            self.config.head_dim,
            &self.device,
        )?;
        // The fused kernel rotates from the whole tables: no per-token rows to gather.
        #[cfg(feature = "cuda")]
        let gather = cuda.is_none()
            || !self
                .layers
                .iter()
                .all(|l| matches!(l.attn.qkv, Qkv::Merged(Proj::Dense { .. })));
        #[cfg(not(feature = "cuda"))]
        let gather = true;
        let tables = if gather {
            Some(self.rope.tables_at(&positions)?)
        } else {
            let last = positions.iter().copied().max().unwrap_or(0) as usize;
            self.rope.reserve(last + 1)?;
            None
        };
        // The CUDA prompt paths other than the general one apply causality themselves.
        #[cfg(feature = "cuda")]
        let need_masks = cuda.is_none() || cuda::prompt_attention() == cuda::PromptAttention::Bf16;
        #[cfg(not(feature = "cuda"))]
        let need_masks = true;
        let masks = inputs
            .iter()
            .zip(&starts)
            .map(|(input, &start)| {
                (need_masks && input.tokens.len() > 1)
                    .then(|| causal_mask(input.tokens.len(), start, self.dtype, &self.device))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let step = BatchStep {
            inputs,
            rows: &rows,
            cos: tables.as_ref().map(|t| &t.0),
            sin: tables.as_ref().map(|t| &t.1),
            masks: &masks,
            #[cfg(feature = "cuda")]
            cuda,
            #[cfg(feature = "cuda")]
            // Decode steps only: a step with prompt pieces has another profile.
            clock: std::cell::RefCell::new(if inputs.iter().all(|i| i.tokens.len() == 1) {
                cuda::StageClock::start(&self.device)?
            } else {
                None
            }),
        };
        let ids = match fed {
            Some(ids) => ids.reshape((1, inputs.len()))?,
            None => Tensor::new(tokens.as_slice(), &self.device)?.unsqueeze(0)?,
        };
        let mut x = self.embed.forward(&ids)?.to_dtype(self.dtype)?;
        step.mark("embedding")?;
        let mut delta = None;
        for (index, layer) in self.layers.iter().enumerate() {
            let (next, mlp_out) =
                layer.forward_batch(&x, delta.as_ref(), index, cache, &step, &self.rope)?;
            x = next;
            delta = Some(mlp_out);
        }
        let hidden = self.norm.add_forward(&x, delta.as_ref())?.1;
        // Each input's last token; every token when all are one token long (decode steps).
        let hidden = if last.len() == tokens.len() {
            hidden
        } else {
            hidden.index_select(&Tensor::new(last.as_slice(), &self.device)?, 1)?
        };
        let logits = self
            .lm_head
            .forward(&hidden)?
            .squeeze(0)?
            .to_dtype(DType::F32)?;
        step.mark("final norm, output head")?;
        #[cfg(feature = "cuda")]
        if let Some(clock) = step.clock.into_inner() {
            clock.finish()?;
        }
        Ok(logits)
    }

    /// One decode step of the single stream on CUDA, replayed from a graph of the whole
    /// layer stack, the final norm and the output head: one launch instead of ~12 a layer,
    /// so no per-kernel launch gaps. Captured on the first step and again whenever the KV
    /// cache or the rope tables were reallocated (the graph holds their addresses); the
    /// step's embedding, the positions held and the logits pass through device buffers.
    /// `None` where it does not apply (not CUDA, a layer off the fused kernels, an output
    /// head that is not dense, `ARBITER_CUDA_GRAPH=0`, or a capture that failed before),
    /// and the caller runs the step kernel by kernel.
    #[cfg(feature = "cuda")]
    fn forward_graphed(&mut self, token: u32) -> Result<Option<Tensor>> {
        if self.graph.off
            || !self.device.is_cuda()
            || !cuda::graph_enabled()
            || !matches!(self.lm_head, Proj::Dense { .. })
        {
            return Ok(None);
        }
        check_tokens(&[token], self.config.vocab_size)?;
        let ids = Tensor::new(&[token], &self.device)?.unsqueeze(0)?;
        let x = self
            .embed
            .forward(&ids)?
            .to_dtype(self.dtype)?
            .contiguous()?;
        if !self.layers.iter().all(|l| l.fused(&x)) {
            self.graph.off = true;
            return Ok(None);
        }
        let start = self.position();
        let len = start + 1;
        let capacity = |d: &Decoder| d.layers.iter().map(|l| l.cache.capacity()).min();
        if let Some(step) = &self.graph.step {
            if capacity(self) != Some(step.capacity)
                || len > step.capacity
                || self.rope.positions() != step.rope_positions
            {
                self.graph.step = None;
            }
        }
        if self.graph.step.is_none() {
            // Room first, as the single stream grows it, so that nothing is reallocated
            // inside the capture.
            let held = capacity(self).unwrap_or(0);
            if len > held {
                self.reserve(len.max(held * 2).max(256))?;
            }
            let held = capacity(self).unwrap_or(0);
            self.rope.reserve(held)?;
            match self.capture_step(&x, held) {
                Ok(step) => self.graph.step = Some(step),
                Err(e) => {
                    tracing::warn!("decode steps run without a CUDA graph: {e}");
                    self.graph.off = true;
                    // The capture's host side counted the step's position in every cache.
                    self.truncate(start);
                    return Ok(None);
                }
            }
        } else {
            // The replay writes each cache at `len - 1`: count it, as the capture's host side
            // did (no layer grows: the capacity was checked above).
            let (kv, d) = (self.config.kv_heads, self.config.head_dim);
            for layer in &mut self.layers {
                layer.cache.extend(1, kv, d, self.dtype, &self.device)?;
            }
        }
        match &self.graph.step {
            Some(step) => step.replay(&x, len).map(Some),
            None => Ok(None),
        }
    }

    /// Captures a decode step over the cache as it stands (`capacity` positions, the next
    /// token at the current position); the step's host side (each cache counting one more
    /// position) runs once, here.
    #[cfg(feature = "cuda")]
    fn capture_step(&mut self, x: &Tensor, capacity: usize) -> Result<cuda::StepGraph> {
        let start = self.position();
        let x_in = Tensor::zeros(x.shape(), x.dtype(), &self.device)?;
        let len_dev = Tensor::new(&[start as u32 + 1], &self.device)?;
        let logits = Tensor::zeros(self.config.vocab_size, DType::F32, &self.device)?;
        let rope_positions = self.rope.positions();
        let (layers, rope, norm, lm_head) =
            (&mut self.layers, &self.rope, &self.norm, &self.lm_head);
        cuda::StepGraph::capture(
            &self.device,
            x_in,
            len_dev,
            logits,
            capacity,
            rope_positions,
            |x_in, len_dev, logits| {
                let mut x = x_in.clone();
                let mut delta = None;
                for layer in layers.iter_mut() {
                    let (next, mlp_out) =
                        layer.forward(&x, delta.as_ref(), start, rope, None, Some(len_dev))?;
                    x = next;
                    delta = Some(mlp_out);
                }
                let hidden = norm.add_forward(&x, delta.as_ref())?.1;
                let out = lm_head
                    .forward(&hidden)?
                    .flatten_all()?
                    .to_dtype(DType::F32)?;
                cuda::copy_into(logits, &out)
            },
        )
    }

    fn hidden(&mut self, tokens: &[u32]) -> Result<Tensor> {
        check_tokens(tokens, self.config.vocab_size)?;
        let start = self.position();
        let seq = tokens.len();
        self.rope.reserve(start + seq)?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut x = self.embed.forward(&ids)?.to_dtype(self.dtype)?;
        // The fused CUDA attention masks as it goes; building the (seq, past + seq) mask on the
        // host and uploading it would cost milliseconds of a long prefill.
        let mask = if seq > 1 && !self.layers.iter().all(|l| l.fused(&x)) {
            Some(causal_mask(seq, start, self.dtype, &self.device)?)
        } else {
            None
        };
        let mut delta = None;
        for layer in &mut self.layers {
            let (next, mlp_out) =
                layer.forward(&x, delta.as_ref(), start, &self.rope, mask.as_ref(), None)?;
            x = next;
            delta = Some(mlp_out);
        }
        Ok(self.norm.add_forward(&x, delta.as_ref())?.1)
    }
}
