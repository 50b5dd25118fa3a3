//! The decoder's fused kernels on CUDA (`kernels.cu`, built to PTX by build.rs).
//!
//! Batch-1 decode of a 7B model moves ~15 GB of weights per token, about 4 ms on an H200; the
//! rest of a step is kernel launches. Through plain candle ops a layer launches ~28 kernels
//! (three projections and three bias adds, two RoPEs with their copies, two cache writes, the
//! scaled scores, three softmax casts, ...), so launch overhead, not memory, bounded decode.
//! Here a layer is 12 launches: the q/k/v projections are one matrix product (their weights
//! concatenated at load), one kernel adds the bias, rotates q and k and writes k and v into the
//! cache; decode attention is one split-over-positions kernel plus a combine (grouped-query
//! heads read their kv head in place); gate and up are one product and one SiLU-multiply.
//! Prefill keeps cuBLAS for the score and value products and fuses scale, causal mask and
//! softmax into one in-place pass over the scores.
//!
//! Around the layers: each residual add is folded into the RMS norm that follows it; one-row
//! products (every projection of a decode step, and the output head) take a GEMV kernel that
//! streams the weight rows, where cuBLAS ran split-K GEMMs plus a reduction; and greedy
//! decoding's argmax is reduced across the GPU.
//!
//! The kernels compute in f32 for f32 and bf16 tensors; other dtypes take candle's path.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaEvent, DevicePtr, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorage, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{bail, DType, Device, Result, Shape, Storage, Tensor};
use std::sync::OnceLock;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/arbiter_kernels.ptx"));
const MODULE: &str = "arbiter_kernels";

/// The most blocks a head the decode attention's combine kernel merges (`MAX_BLOCKS` there).
const MAX_COMBINED: usize = 2048;

/// Decode attention aims for this many blocks (about 16 a multiprocessor on an H100/H200), so
/// that each warp's run is short: the loop over positions is bound by memory latency.
const TARGET_BLOCKS: usize = 2048;

/// Whether the fused kernels are on: always, unless `ARBITER_CUDA_FUSED=0` asks for candle's
/// plain ops (for comparing).
pub(crate) fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ARBITER_CUDA_FUSED").map_or(true, |v| v != "0"))
}

/// Which kernel paged decode attention takes: the grouped-query one (one pass over a kv head
/// for all its query heads) with a lane a position in chunks of 32 (`Some(3)`, the default:
/// 2.02 ms a batch-32 step of the 7B on an H100 against 2.61), a whole warp a position
/// (`ARBITER_CUDA_GROUPED=1`), half a warp (`=2`, slower still), or one pass a head (`=0`,
/// `None`); the variants are there for comparing.
fn grouped_split() -> Option<usize> {
    static SPLIT: OnceLock<Option<usize>> = OnceLock::new();
    *SPLIT.get_or_init(|| match std::env::var("ARBITER_CUDA_GROUPED").as_deref() {
        Ok("0") => None,
        Ok("1") => Some(1),
        Ok("2") => Some(2),
        _ => Some(3),
    })
}

/// How a batched step attends its prompt pieces (inputs of several tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromptAttention {
    /// Every token of every piece a row of the paged decode kernel, over its sequence's
    /// blocks up to itself: f32 scores, probabilities and sums, nothing gathered, no mask.
    Paged,
    /// Each piece over its gathered blocks with f32 scores and 16-bit probabilities, as
    /// fused attention kernels keep them (`ARBITER_CUDA_PROMPT=f32`).
    F32Scores,
    /// Each piece over its gathered blocks through the general path: scores in the model's
    /// type, an uploaded causal mask (`ARBITER_CUDA_PROMPT=bf16`, the path before).
    Bf16,
}

/// The prompt pieces' attention: paged rows unless `ARBITER_CUDA_PROMPT` says `f32` or `bf16`
/// (for comparing). Measured on an H100 (7B bf16, 32 sequences of 1,500-token prompts): first
/// token at 1,364 ms on average (2,656 worst) paged, 1,249 (2,431) with f32 scores, 1,899
/// (3,678) through the general path, whose masks and gathers cost more than the attention;
/// agreement with f32 of 16 teacher-forced sequences of 4,000 to 1,000 positions: 83.9% paged,
/// 83.4% for both others.
pub(crate) fn prompt_attention() -> PromptAttention {
    static MODE: OnceLock<PromptAttention> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("ARBITER_CUDA_PROMPT").as_deref() {
        Ok("f32") => PromptAttention::F32Scores,
        Ok("bf16") => PromptAttention::Bf16,
        _ => PromptAttention::Paged,
    })
}

/// Makes cuBLAS reduce split-K partial sums in f32 on `device` when `ARBITER_CUDA_REDUCTION=f32`
/// asks (`CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION`). candle's handle keeps cuBLAS's
/// default mode, where a bf16 product split along k may add its parts in bf16: an extra
/// rounding the batched steps' skinny products (many k, few rows) can take and the single
/// stream's GEMV never does. For comparing the bf16 agreement with f32; off by default.
pub(crate) fn configure_blas(device: &Device) -> Result<()> {
    static F32: OnceLock<bool> = OnceLock::new();
    let f32_reduction =
        *F32.get_or_init(|| std::env::var("ARBITER_CUDA_REDUCTION").is_ok_and(|v| v == "f32"));
    let Device::Cuda(dev) = device else {
        return Ok(());
    };
    if !f32_reduction {
        return Ok(());
    }
    use candle_core::cuda_backend::cudarc::cublas::sys;
    let blas = dev.cublas_handle();
    // SAFETY: the handle is candle's live handle for this device; setting its math mode only
    // changes how later products reduce, on the one stream the engine runs.
    let status = unsafe {
        sys::cublasSetMathMode(
            *blas.handle(),
            sys::cublasMath_t::CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION,
        )
    };
    if status != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        bail!("cublasSetMathMode: {status:?}");
    }
    Ok(())
}

/// Whether one-row products take the project's GEMV kernel: with the fused kernels, unless
/// `ARBITER_CUDA_GEMV=0` keeps cuBLAS for them (for comparing).
fn gemv_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| enabled() && std::env::var("ARBITER_CUDA_GEMV").map_or(true, |v| v != "0"))
}

/// Elements of `dtype` in the 16-byte chunks the vectorised kernels move.
fn chunk(dtype: DType) -> usize {
    16 / dtype.size_in_bytes()
}

/// Whether the fused kernels take `dtype` tensors.
pub(crate) fn supports_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

/// Whether the fused attention kernels can run `dtype` tensors with heads of `head_dim`.
pub(crate) fn supports(dtype: DType, head_dim: usize) -> bool {
    supports_dtype(dtype) && matches!(head_dim, 64 | 128)
}

fn suffix(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("f32"),
        DType::BF16 => Ok("bf16"),
        other => bail!("the fused CUDA kernels take f32 or bf16, not {other:?}"),
    }
}

fn device(t: &Tensor) -> Result<CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d.clone()),
        _ => bail!("the fused CUDA kernels need tensors on a CUDA device"),
    }
}

/// The device address of a contiguous tensor's first element.
fn ptr(t: &Tensor) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    if !layout.is_contiguous() {
        bail!(
            "fused kernel input of shape {:?} is not contiguous",
            t.dims()
        );
    }
    let Storage::Cuda(cuda) = &*storage else {
        bail!("fused kernel input is not on a CUDA device");
    };
    let stream = cuda.device().cuda_stream();
    let offset = layout.start_offset() as u64;
    Ok(match t.dtype() {
        DType::F32 => cuda.as_cuda_slice::<f32>()?.device_ptr(&stream).0 + offset * 4,
        DType::BF16 => cuda.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0 + offset * 2,
        DType::U32 => cuda.as_cuda_slice::<u32>()?.device_ptr(&stream).0 + offset * 4,
        DType::I64 => cuda.as_cuda_slice::<i64>()?.device_ptr(&stream).0 + offset * 8,
        other => bail!("fused kernel input of dtype {other:?}"),
    })
}

/// A new, uninitialised tensor on `dev`; every element must be written by the kernel.
fn alloc(dev: &CudaDevice, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor> {
    let shape = shape.into();
    let n = shape.elem_count();
    // SAFETY: callers launch a kernel that writes every element before anything reads it.
    let storage = match dtype {
        DType::F32 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<f32>(n)? }, dev.clone()),
        DType::BF16 => {
            CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<half::bf16>(n)? }, dev.clone())
        }
        DType::U32 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<u32>(n)? }, dev.clone()),
        DType::I64 => CudaStorage::wrap_cuda_slice(unsafe { dev.alloc::<i64>(n)? }, dev.clone()),
        other => bail!("fused kernel output of dtype {other:?}"),
    };
    Ok(Tensor::from_storage(
        Storage::Cuda(storage),
        shape,
        BackpropOp::none(),
        false,
    ))
}

fn grid(x: usize, y: usize, block: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (block as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Whether a bf16 model's merged q/k/v product is kept in f32 (`ARBITER_CUDA_QKV=f32`) for the
/// kernel that adds the bias and rotates: one rounding to bf16 after the bias, where the
/// bf16 product rounds once before it too (a GEMM epilogue, as torch's, adds the bias before
/// its one rounding). For comparing the bf16 agreement with f32; off by default.
pub(crate) fn qkv_in_f32(dtype: DType) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    dtype == DType::BF16
        && enabled()
        && *ON.get_or_init(|| std::env::var("ARBITER_CUDA_QKV").is_ok_and(|v| v == "f32"))
}

/// `x · weightᵀ` for bf16 `x` (rows, k) and `weight` (n, k), returned in f32 (rows, n): the
/// project's GEMV for one row, else cuBLAS, accumulating in f32 and writing the sums unrounded.
pub(crate) fn matmul_t_f32(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    use candle_core::cuda_backend::cudarc::cublas::{result, sys};
    if let Some(y) = gemv_to(x, weight, DType::F32)? {
        return Ok(y);
    }
    let dev = device(x)?;
    let (rows, k) = x.dims2()?;
    let (n, wk) = weight.dims2()?;
    if wk != k || x.dtype() != DType::BF16 || weight.dtype() != DType::BF16 {
        bail!(
            "matmul_t_f32: x {:?} {:?} and weight {:?} {:?}",
            x.dims(),
            x.dtype(),
            weight.dims(),
            weight.dtype()
        );
    }
    let x = x.contiguous()?;
    let out = alloc(&dev, (rows, n), DType::F32)?;
    let (p_x, p_w, p_out) = (ptr(&x)?, ptr(weight)?, ptr(&out)?);
    let (alpha, beta) = (1f32, 0f32);
    let blas = dev.cublas_handle();
    // Column-major, as cuBLAS sees row-major buffers: out (n x rows) = weight (k x n)ᵀ · x
    // (k x rows).
    // SAFETY: the three buffers hold (rows, k), (n, k) and (rows, n) elements of the types
    // named, contiguous (checked by `ptr`); beta is 0, so out's unwritten contents are not
    // read; the handle runs on the device's one stream, after the kernels that wrote x.
    unsafe {
        result::gemm_ex(
            *blas.handle(),
            sys::cublasOperation_t::CUBLAS_OP_T,
            sys::cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            rows as i32,
            k as i32,
            (&alpha as *const f32).cast(),
            p_w as *const std::ffi::c_void,
            sys::cudaDataType_t::CUDA_R_16BF,
            k as i32,
            p_x as *const std::ffi::c_void,
            sys::cudaDataType_t::CUDA_R_16BF,
            k as i32,
            (&beta as *const f32).cast(),
            p_out as *mut std::ffi::c_void,
            sys::cudaDataType_t::CUDA_R_32F,
            n as i32,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
        )
    }
    .w()?;
    Ok(out)
}

/// The q/k/v kernel `base` for a product of `input` type and a model of `dtype`: the model's
/// own, or the bf16 one reading an f32 product ([`qkv_in_f32`]).
fn qkv_kernel(base: &str, input: DType, dtype: DType) -> Result<String> {
    match (input, dtype) {
        (i, d) if i == d => Ok(format!("{base}_{}", suffix(d)?)),
        (DType::F32, DType::BF16) => Ok(format!("{base}_bf16_f32in")),
        (i, d) => bail!("{base}: a {i:?} product for a {d:?} model"),
    }
}

/// Adds the bias to the merged q/k/v projection `qkv` (seq, (heads + 2 kv_heads) d), rotates q
/// and k for positions `start..start+seq`, writes k and v into the cache buffers (1, kv_heads,
/// capacity, d) at those positions, and returns q as (heads, seq, d). With `len_dev` (a u32
/// on the device: the positions held after this step), the kernel reads start there when it
/// runs, so that a captured graph replays at any position (`start` is then only checked).
#[allow(clippy::too_many_arguments)]
pub(crate) fn qkv_rope(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    cos: &Tensor,
    sin: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    heads: usize,
    kv_heads: usize,
    start: usize,
    len_dev: Option<&Tensor>,
) -> Result<Tensor> {
    let dev = device(qkv)?;
    let dtype = k_cache.dtype();
    let name = qkv_kernel("qkv_rope", qkv.dtype(), dtype)?;
    let (_, kvh, cap, d) = k_cache.dims4()?;
    let (seq, width) = qkv.dims2()?;
    if kvh != kv_heads
        || width != (heads + 2 * kv_heads) * d
        || start + seq > cap
        || !d.is_multiple_of(4)
    {
        bail!(
            "qkv_rope: qkv {:?} does not fit cache {:?} at {start}",
            qkv.dims(),
            k_cache.dims()
        );
    }
    if cos.dim(0)? < start + seq || cos.dim(1)? * 2 != d {
        bail!(
            "qkv_rope: rope table {:?} too short for {}",
            cos.dims(),
            start + seq
        );
    }
    for t in [cos, sin, k_cache, v_cache].into_iter().chain(bias) {
        if t.dtype() != dtype {
            bail!("qkv_rope: mixed dtypes {:?} and {:?}", dtype, t.dtype());
        }
    }
    let q = alloc(&dev, (heads, seq, d), dtype)?;
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (p_qkv, p_bias, p_cos, p_sin) = (
        ptr(qkv)?,
        bias.map(ptr).transpose()?.unwrap_or(0),
        ptr(cos)?,
        ptr(sin)?,
    );
    let (p_q, p_k, p_v) = (ptr(&q)?, ptr(k_cache)?, ptr(v_cache)?);
    let p_len = len_dev.map(ptr).transpose()?.unwrap_or(0);
    let ints = [seq, heads, kv_heads, d, cap, start].map(|v| v as i32);
    let mut b = func.builder();
    for p in [&p_qkv, &p_bias, &p_cos, &p_sin, &p_q, &p_k, &p_v] {
        b.arg(p);
    }
    for v in &ints {
        b.arg(v);
    }
    b.arg(&p_len);
    // SAFETY: shapes checked above; the kernel writes q entirely and the cache at start..+seq
    // (a graph's replays keep len_dev within the capacity it was captured for).
    unsafe { b.launch(grid(seq, 1, 256)) }.w()?;
    Ok(q)
}

/// The batched step's version of [`qkv_rope`]: token t of `qkv` (tokens, (heads + 2 kv_heads) d)
/// sits at position `positions[t]` of its sequence and owns pool slot `slots[t]` (both u32,
/// one a token); the bias is added, q and k rotated, k and v written into the pools (slots,
/// kv_heads, d), and q returned as (tokens, heads, d). One launch for what was a bias add,
/// two rotations with their copies, two transposes and the pool write.
#[allow(clippy::too_many_arguments)]
pub(crate) fn qkv_rope_paged(
    qkv: &Tensor,
    bias: Option<&Tensor>,
    cos: &Tensor,
    sin: &Tensor,
    positions: &Tensor,
    slots: &Tensor,
    k_pool: &Tensor,
    v_pool: &Tensor,
    heads: usize,
) -> Result<Tensor> {
    let dev = device(qkv)?;
    let dtype = k_pool.dtype();
    let name = qkv_kernel("qkv_rope_paged", qkv.dtype(), dtype)?;
    let (_, kv_heads, d) = k_pool.dims3()?;
    let (tokens, width) = qkv.dims2()?;
    if width != (heads + 2 * kv_heads) * d
        || !d.is_multiple_of(4)
        || positions.elem_count() != tokens
        || slots.elem_count() != tokens
        || positions.dtype() != DType::U32
        || slots.dtype() != DType::U32
        || v_pool.dims() != k_pool.dims()
        || cos.dim(1)? * 2 != d
    {
        bail!(
            "qkv_rope_paged: qkv {:?} does not fit pool {:?} with {} positions",
            qkv.dims(),
            k_pool.dims(),
            positions.elem_count()
        );
    }
    for t in [cos, sin, k_pool, v_pool].into_iter().chain(bias) {
        if t.dtype() != dtype {
            bail!(
                "qkv_rope_paged: mixed dtypes {:?} and {:?}",
                dtype,
                t.dtype()
            );
        }
    }
    let q = alloc(&dev, (tokens, heads, d), dtype)?;
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (p_qkv, p_bias, p_cos, p_sin, p_pos, p_slots) = (
        ptr(qkv)?,
        bias.map(ptr).transpose()?.unwrap_or(0),
        ptr(cos)?,
        ptr(sin)?,
        ptr(positions)?,
        ptr(slots)?,
    );
    let (p_q, p_k, p_v) = (ptr(&q)?, ptr(k_pool)?, ptr(v_pool)?);
    let ints = [heads, kv_heads, d].map(|v| v as i32);
    let mut b = func.builder();
    for p in [
        &p_qkv, &p_bias, &p_cos, &p_sin, &p_pos, &p_slots, &p_q, &p_k, &p_v,
    ] {
        b.arg(p);
    }
    for v in &ints {
        b.arg(v);
    }
    // SAFETY: shapes checked above; the caller's rope tables cover every position (the
    // decoder reserves them for the step's last position first); slots are distinct rows of
    // the pools, so no two blocks write one element; q is written entirely.
    unsafe { b.launch(grid(tokens, 1, 256)) }.w()?;
    Ok(q)
}

/// Attention of one new token's q (heads, 1, d) over the first `len` cached positions of the
/// cache buffers (1, kv_heads, capacity, d); returns (1, heads * d).
///
/// With `len_dev` (a u32 on the device), the kernel reads len there when it runs and the
/// launch covers the whole capacity (blocks past len write empty parts), so that a captured
/// graph replays at any length.
pub(crate) fn attend_decode(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    len: usize,
    scale: f32,
    len_dev: Option<&Tensor>,
) -> Result<Tensor> {
    let dev = device(q)?;
    let dtype = q.dtype();
    let (heads, one, d) = q.dims3()?;
    let (_, kv_heads, cap, _) = k_cache.dims4()?;
    if one != 1 || len == 0 || len > cap || !heads.is_multiple_of(kv_heads) || !supports(dtype, d) {
        bail!(
            "attend_decode: q {:?}, cache {:?}, len {len}",
            q.dims(),
            k_cache.dims()
        );
    }
    // Split the positions so the launch fills the GPU: runs of `per_run` positions, one warp
    // each, four warps a block.
    let span = if len_dev.is_some() { cap } else { len };
    let blocks_y = TARGET_BLOCKS.div_ceil(heads).max(1);
    let per_run = span.div_ceil(blocks_y * 4).max(8);
    let blocks_y = span.div_ceil(per_run * 4);
    if blocks_y > MAX_COMBINED {
        bail!("attend_decode: {blocks_y} blocks a head, more than the combine takes");
    }
    let part = alloc(&dev, (heads, blocks_y, d), DType::F32)?;
    let ml = alloc(&dev, (heads, blocks_y, 2), DType::F32)?;
    let out = alloc(&dev, (1, heads * d), dtype)?;
    let sfx = suffix(dtype)?;
    let partial =
        dev.get_or_load_custom_func(&format!("attn_decode_partial_d{d}_{sfx}"), MODULE, PTX)?;
    let combine =
        dev.get_or_load_custom_func(&format!("attn_decode_combine_d{d}_{sfx}"), MODULE, PTX)?;
    let (p_q, p_k, p_v, p_part, p_ml, p_out) = (
        ptr(q)?,
        ptr(k_cache)?,
        ptr(v_cache)?,
        ptr(&part)?,
        ptr(&ml)?,
        ptr(&out)?,
    );
    let p_len = len_dev.map(ptr).transpose()?.unwrap_or(0);
    let ints = [heads, kv_heads, cap, len, per_run].map(|v| v as i32);
    let mut b = partial.builder();
    for p in [&p_q, &p_k, &p_v, &p_part, &p_ml] {
        b.arg(p);
    }
    for v in &ints {
        b.arg(v);
    }
    b.arg(&scale);
    b.arg(&p_len);
    // SAFETY: every (head, block) slot of part and ml is written, empty runs included.
    unsafe { b.launch(grid(heads, blocks_y, 128)) }.w()?;
    let blocks_i = blocks_y as i32;
    let mut b = combine.builder();
    b.arg(&p_part).arg(&p_ml).arg(&p_out).arg(&blocks_i);
    // SAFETY: one thread per output element.
    unsafe { b.launch(grid(heads, 1, d)) }.w()?;
    Ok(out)
}

/// Decode attention of several sequences, one new token each, over their blocks of a paged
/// pool, in one launch (and one to combine): `q` (n, heads, d); `k_pool`, `v_pool` (slots,
/// kv_heads, d); `tables` (n, max_blocks) u32 block indices; `lens` (n) u32 positions held,
/// the longest `max_len`. Returns (n, heads * d), the o projection's input rows.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_paged(
    q: &Tensor,
    k_pool: &Tensor,
    v_pool: &Tensor,
    tables: &Tensor,
    lens: &Tensor,
    block: usize,
    max_len: usize,
    scale: f32,
) -> Result<Tensor> {
    let dev = device(q)?;
    let dtype = q.dtype();
    let (n, heads, d) = q.dims3()?;
    let (_, kv_heads, pd) = k_pool.dims3()?;
    let (tn, max_blocks) = tables.dims2()?;
    if tn != n
        || lens.elem_count() != n
        || pd != d
        || max_len == 0
        || kv_heads == 0
        || !heads.is_multiple_of(kv_heads)
        || !supports(dtype, d)
        || k_pool.dtype() != dtype
        || tables.dtype() != DType::U32
        || lens.dtype() != DType::U32
    {
        bail!(
            "attend_paged: q {:?}, pool {:?}, tables {:?}, lens {:?}",
            q.dims(),
            k_pool.dims(),
            tables.dims(),
            lens.dims()
        );
    }
    let rows = n * heads;
    // The heads of a group read their kv head's keys and values once together where the
    // kernel has that group size.
    let group = heads / kv_heads;
    let split = grouped_split().filter(|_| (2..=8).contains(&group));
    let grouped = split.is_some();
    let block_rows = if grouped { n * kv_heads } else { rows };
    // Every (sequence, head or group) is a block row already; split positions only as far as
    // it takes to fill the GPU.
    let blocks_y = TARGET_BLOCKS.div_ceil(block_rows).max(1);
    let per_run = max_len.div_ceil(blocks_y * 4).max(8);
    // The lane-a-position kernel takes its run 32 positions at a time.
    let per_run = if split == Some(3) {
        per_run.next_multiple_of(32)
    } else {
        per_run
    };
    let blocks_y = max_len.div_ceil(per_run * 4);
    if blocks_y > MAX_COMBINED {
        bail!("attend_paged: {blocks_y} blocks a head, more than the combine takes");
    }
    let part = alloc(&dev, (rows, blocks_y, d), DType::F32)?;
    let ml = alloc(&dev, (rows, blocks_y, 2), DType::F32)?;
    let out = alloc(&dev, (n, heads * d), dtype)?;
    let sfx = suffix(dtype)?;
    let kind = match split {
        Some(2) => "group2",
        Some(3) => "group3",
        Some(_) => "group",
        None => "partial",
    };
    let partial =
        dev.get_or_load_custom_func(&format!("attn_paged_{kind}_d{d}_{sfx}"), MODULE, PTX)?;
    let combine =
        dev.get_or_load_custom_func(&format!("attn_decode_combine_d{d}_{sfx}"), MODULE, PTX)?;
    let (p_q, p_k, p_v, p_t, p_l, p_part, p_ml, p_out) = (
        ptr(q)?,
        ptr(k_pool)?,
        ptr(v_pool)?,
        ptr(tables)?,
        ptr(lens)?,
        ptr(&part)?,
        ptr(&ml)?,
        ptr(&out)?,
    );
    let ints = [heads, kv_heads, max_blocks, block, per_run].map(|v| v as i32);
    let mut b = partial.builder();
    for p in [&p_q, &p_k, &p_v, &p_t, &p_l, &p_part, &p_ml] {
        b.arg(p);
    }
    for v in &ints {
        b.arg(v);
    }
    b.arg(&scale);
    let mut config = grid(block_rows, blocks_y, 128);
    if grouped {
        // Each warp's accumulators and maxima for every head of the group; the
        // lane-a-position kernel also holds the group's queries and each warp's chunk weights.
        let mut floats = 4 * group * (d + 2);
        if split == Some(3) {
            floats += group * d + 4 * 32 * 8;
        }
        config.shared_mem_bytes = (floats * std::mem::size_of::<f32>()) as u32;
    }
    // SAFETY: every (row, block) slot of part and ml is written, empty runs included; the
    // grouped kernel's shared memory is sized above for its group.
    unsafe { b.launch(config) }.w()?;
    let blocks_i = blocks_y as i32;
    let mut b = combine.builder();
    b.arg(&p_part).arg(&p_ml).arg(&p_out).arg(&blocks_i);
    // SAFETY: one thread per output element.
    unsafe { b.launch(grid(rows, 1, d)) }.w()?;
    Ok(out)
}

/// Writes a step's new keys and values `k`, `v` (tokens, kv_heads, d) to their pool slots
/// `slots` (tokens, u32) of `k_pool`, `v_pool` (slots, kv_heads, d), in one launch.
pub(crate) fn paged_write(
    k: &Tensor,
    v: &Tensor,
    slots: &Tensor,
    k_pool: &Tensor,
    v_pool: &Tensor,
) -> Result<()> {
    let dev = device(k)?;
    let dtype = k.dtype();
    let tokens = k.dim(0)?;
    let width = k.elem_count() / tokens.max(1);
    let pool_width = k_pool.elem_count() / k_pool.dim(0)?.max(1);
    if v.dims() != k.dims()
        || slots.elem_count() != tokens
        || slots.dtype() != DType::U32
        || pool_width != width
        || k_pool.dtype() != dtype
        || v_pool.dtype() != dtype
        || !supports_dtype(dtype)
    {
        bail!(
            "paged_write: k {:?}, slots {:?}, pool {:?}",
            k.dims(),
            slots.dims(),
            k_pool.dims()
        );
    }
    let func =
        dev.get_or_load_custom_func(&format!("paged_write_{}", suffix(dtype)?), MODULE, PTX)?;
    let (p_k, p_v, p_s, p_kp, p_vp) = (ptr(k)?, ptr(v)?, ptr(slots)?, ptr(k_pool)?, ptr(v_pool)?);
    let (tokens_i, width_i) = (tokens as i32, width as i32);
    let mut b = func.builder();
    for p in [&p_k, &p_v, &p_s, &p_kp, &p_vp] {
        b.arg(p);
    }
    b.arg(&tokens_i).arg(&width_i);
    // SAFETY: one thread per element; slots are distinct rows of the pools (the cache hands
    // each position its own slot), so no two threads write one element.
    unsafe { b.launch(grid((tokens * width).div_ceil(256), 1, 256)) }.w()?;
    Ok(())
}

/// In place: scale, causal mask and softmax of prefill scores (rows, past + seq), rows being
/// (query head, token) pairs with `seq` tokens per head.
pub(crate) fn softmax_causal_(scores: &Tensor, seq: usize, past: usize, scale: f32) -> Result<()> {
    let dev = device(scores)?;
    let dims = scores.dims();
    let cols = *dims.last().unwrap_or(&0);
    let rows = scores.elem_count() / cols.max(1);
    if cols != past + seq || !rows.is_multiple_of(seq) {
        bail!("softmax_causal: scores {dims:?} for {seq} tokens after {past}");
    }
    let func = dev.get_or_load_custom_func(
        &format!("softmax_causal_{}", suffix(scores.dtype())?),
        MODULE,
        PTX,
    )?;
    let p = ptr(scores)?;
    let ints = [rows, cols, seq, past].map(|v| v as i32);
    let mut b = func.builder();
    b.arg(&p);
    for v in &ints {
        b.arg(v);
    }
    b.arg(&scale);
    // SAFETY: one warp per row (8 a block), each touching only its row.
    unsafe { b.launch(grid(rows.div_ceil(8), 1, 256)) }.w()?;
    Ok(())
}

/// `silu(gate) * up` of the merged gate/up projection (rows, 2 inter) -> (rows, inter).
pub(crate) fn silu_mul(x: &Tensor) -> Result<Tensor> {
    let dev = device(x)?;
    let (rows, two) = x.dims2()?;
    let inter = two / 2;
    if !two.is_multiple_of(2) || rows > 65_535 {
        bail!("silu_mul: input {:?}", x.dims());
    }
    let out = alloc(&dev, (rows, inter), x.dtype())?;
    // bf16 two columns at a time where the row length allows 4-byte accesses.
    let pairs = x.dtype() == DType::BF16 && inter.is_multiple_of(2);
    let (name, cols) = if pairs {
        ("silu_mul2_bf16".to_string(), inter / 2)
    } else {
        (format!("silu_mul_{}", suffix(x.dtype())?), inter)
    };
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (p_x, p_out) = (ptr(x)?, ptr(&out)?);
    let cols_i = cols as i32;
    let mut b = func.builder();
    b.arg(&p_x).arg(&p_out).arg(&cols_i);
    // SAFETY: one thread per output element (or pair), rows on the grid's y axis.
    unsafe { b.launch(grid(cols.div_ceil(256), rows, 256)) }.w()?;
    Ok(out)
}

/// The residual add and the RMS norm after it, in one kernel: returns `x + delta` (or `x` when
/// there is no delta) and its norm with `weight`. `None` where the kernel does not apply (fused
/// kernels off, another device or dtype, a row length it does not take).
pub(crate) fn add_rmsnorm(
    x: &Tensor,
    delta: Option<&Tensor>,
    weight: &Tensor,
    eps: f32,
) -> Result<Option<(Tensor, Tensor)>> {
    let dtype = x.dtype();
    let h = weight.elem_count();
    let c = chunk(dtype);
    if !enabled()
        || !x.device().is_cuda()
        || !supports_dtype(dtype)
        || weight.dtype() != dtype
        || delta.is_some_and(|d| d.dtype() != dtype || d.dims() != x.dims())
        || x.dims().last() != Some(&h)
        || !h.is_multiple_of(c)
        || h / c > 4 * 256
        || !x.is_contiguous()
        || delta.is_some_and(|d| !d.is_contiguous())
        || [Some(x), delta, Some(weight)]
            .into_iter()
            .flatten()
            .any(|t| ptr(t).is_ok_and(|p| p % 16 != 0))
    {
        return Ok(None);
    }
    let dev = device(x)?;
    let rows = x.elem_count() / h;
    let out = alloc(&dev, x.shape().clone(), dtype)?;
    let res = match delta {
        Some(_) => alloc(&dev, x.shape().clone(), dtype)?,
        None => x.clone(),
    };
    let func =
        dev.get_or_load_custom_func(&format!("add_rmsnorm_{}", suffix(dtype)?), MODULE, PTX)?;
    let (p_x, p_d, p_w, p_res, p_out) = (
        ptr(x)?,
        delta.map(ptr).transpose()?.unwrap_or(0),
        ptr(weight)?,
        ptr(&res)?,
        ptr(&out)?,
    );
    let h_i = h as i32;
    let mut b = func.builder();
    for p in [&p_x, &p_d, &p_w, &p_res, &p_out] {
        b.arg(p);
    }
    b.arg(&h_i).arg(&eps);
    // SAFETY: one block per row; each writes only its row of out (and of res with a delta).
    unsafe { b.launch(grid(rows, 1, 256)) }.w()?;
    Ok(Some((res, out)))
}

/// `x W^T` for one row `x` (1, k) and a dense weight (n, k): the decode step's projections.
/// `None` where the kernel does not apply (more rows, another device or dtype, a row length
/// that is not a whole number of 16-byte chunks, unaligned data, or turned off).
pub(crate) fn gemv(x: &Tensor, weight: &Tensor) -> Result<Option<Tensor>> {
    gemv_to(x, weight, x.dtype())
}

/// [`gemv`] with the result in `out`: the model's type, or f32 for a bf16 model (the sums
/// unrounded).
fn gemv_to(x: &Tensor, weight: &Tensor, out: DType) -> Result<Option<Tensor>> {
    let dtype = x.dtype();
    let out_suffix = match (dtype, out) {
        (d, o) if d == o => "",
        (DType::BF16, DType::F32) => "_f32out",
        _ => return Ok(None),
    };
    let (rows, k) = x.dims2()?;
    let Ok((n, wk)) = weight.dims2() else {
        return Ok(None);
    };
    if !gemv_enabled()
        || rows != 1
        || wk != k
        || !x.device().is_cuda()
        || !supports_dtype(dtype)
        || weight.dtype() != dtype
        || !k.is_multiple_of(chunk(dtype))
        || !x.is_contiguous()
        || !weight.is_contiguous()
        || ptr(x)? % 16 != 0
        || ptr(weight)? % 16 != 0
    {
        return Ok(None);
    }
    let dev = device(x)?;
    let y = alloc(&dev, (1, n), out)?;
    // Rows a warp: enough warps to fill the GPU for the small matrices, fewer and longer runs
    // for the large ones.
    let r = match n {
        0..=8192 => 1,
        8193..=65_536 => 2,
        _ => 4,
    };
    let name = format!("gemv_r{r}_{}{out_suffix}", suffix(dtype)?);
    let func = dev.get_or_load_custom_func(&name, MODULE, PTX)?;
    let (p_x, p_w, p_y) = (ptr(x)?, ptr(weight)?, ptr(&y)?);
    let ints = [n, k].map(|v| v as i32);
    let mut b = func.builder();
    b.arg(&p_x).arg(&p_w).arg(&p_y);
    for v in &ints {
        b.arg(v);
    }
    // SAFETY: r rows a warp, 8 warps a block, every output row written by exactly one warp.
    unsafe { b.launch(grid(n.div_ceil(8 * r), 1, 256)) }.w()?;
    Ok(Some(y))
}

/// Prefill attention's output (heads, seq, d) as the o projection's input (seq, heads d).
pub(crate) fn heads_to_rows(t: &Tensor) -> Result<Tensor> {
    let dev = device(t)?;
    let dtype = t.dtype();
    let (heads, seq, d) = t.dims3()?;
    if !d.is_multiple_of(chunk(dtype)) || ptr(t)? % 16 != 0 {
        return t.transpose(0, 1)?.reshape((seq, heads * d));
    }
    let out = alloc(&dev, (seq, heads * d), dtype)?;
    let func =
        dev.get_or_load_custom_func(&format!("heads_to_rows_{}", suffix(dtype)?), MODULE, PTX)?;
    let (p_in, p_out) = (ptr(t)?, ptr(&out)?);
    let ints = [heads, seq, d].map(|v| v as i32);
    let mut b = func.builder();
    b.arg(&p_in).arg(&p_out);
    for v in &ints {
        b.arg(v);
    }
    let chunks = heads * seq * d / chunk(dtype);
    // SAFETY: one thread per 16-byte chunk, each written once.
    unsafe { b.launch(grid(chunks.div_ceil(256), 1, 256)) }.w()?;
    Ok(out)
}

/// The index of the largest of f32 `logits` (vocab,), the first one on ties: greedy decoding's
/// pick, reduced across the GPU instead of in candle's one-block pass. `None` where it does not
/// apply (another device or dtype, or not contiguous).
pub(crate) fn argmax(logits: &Tensor) -> Result<Option<u32>> {
    if !enabled()
        || !logits.device().is_cuda()
        || logits.dtype() != DType::F32
        || logits.rank() != 1
        || !logits.is_contiguous()
        || logits.elem_count() == 0
        || logits.elem_count() > i32::MAX as usize
    {
        return Ok(None);
    }
    let dev = device(logits)?;
    let n = logits.elem_count();
    let blocks = n.div_ceil(2048).clamp(1, 1024);
    let per = n.div_ceil(blocks);
    // The keys are u64; an i64 buffer holds them (candle has no u64 dtype).
    let keys = alloc(&dev, blocks, DType::I64)?;
    let out = alloc(&dev, 1, DType::U32)?;
    let partial = dev.get_or_load_custom_func("argmax_partial_f32", MODULE, PTX)?;
    let last = dev.get_or_load_custom_func("argmax_final", MODULE, PTX)?;
    let (p_x, p_keys, p_out) = (ptr(logits)?, ptr(&keys)?, ptr(&out)?);
    let ints = [n, per].map(|v| v as i32);
    let mut b = partial.builder();
    b.arg(&p_x).arg(&p_keys);
    for v in &ints {
        b.arg(v);
    }
    // SAFETY: block i writes keys[i] only; every block has at least one element.
    unsafe { b.launch(grid(blocks, 1, 256)) }.w()?;
    let blocks_i = blocks as i32;
    let mut b = last.builder();
    b.arg(&p_keys).arg(&blocks_i).arg(&p_out);
    // SAFETY: one block reads the keys written above and writes out[0].
    unsafe { b.launch(grid(1, 1, 1024)) }.w()?;
    Ok(Some(out.to_vec1::<u32>()?[0]))
}

/// Where a batched step's GPU time goes, stage by stage, when `ARBITER_STEP_PROFILE=1`: an
/// event is recorded on the stream at each stage's end, and the step's end waits once and adds
/// each stage's elapsed time (from the previous event) to process-wide totals, which
/// `arbiter bench --batch` prints. The events do not stall the stream, so the totals add up to
/// the step's GPU time, launch gaps included in the stage they delay. Off, a stage costs one
/// check.
pub(crate) struct StageClock {
    stream: std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
    start: candle_core::cuda_backend::cudarc::driver::CudaEvent,
    marks: Vec<(
        &'static str,
        candle_core::cuda_backend::cudarc::driver::CudaEvent,
    )>,
}

/// Each stage's (name, times seen, total ms), in the order stages first ran.
type StageTotals = Vec<(&'static str, u64, f64)>;

fn stage_totals() -> &'static std::sync::Mutex<StageTotals> {
    static TOTALS: OnceLock<std::sync::Mutex<StageTotals>> = OnceLock::new();
    TOTALS.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Whether step profiles are asked for: `ARBITER_STEP_PROFILE=1` (the GPU's stages and the
/// host's) or `=host` (the host's alone: no events, so nothing waits for the GPU and a step
/// launched ahead overlaps as it does unprofiled).
pub(crate) fn profiling() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ARBITER_STEP_PROFILE").is_ok_and(|v| v == "1" || v == "host"))
}

/// Whether the GPU's stages are timed (`ARBITER_STEP_PROFILE=1`).
fn profiling_gpu() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ARBITER_STEP_PROFILE").is_ok_and(|v| v == "1"))
}

/// Adds `ms` to stage `name`'s total (host-side stages of a step, timed by the caller).
pub(crate) fn add_stage(name: &'static str, ms: f64) {
    if let Ok(mut totals) = stage_totals().lock() {
        match totals.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += ms;
            }
            None => totals.push((name, 1, ms)),
        }
    }
}

impl StageClock {
    /// A clock for one step on `device`, or `None` when profiling is off or not on CUDA.
    pub(crate) fn start(device: &Device) -> Result<Option<StageClock>> {
        let Device::Cuda(dev) = device else {
            return Ok(None);
        };
        if !profiling_gpu() {
            return Ok(None);
        }
        let stream = dev.cuda_stream();
        let timed =
            Some(candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = stream.record_event(timed).w()?;
        Ok(Some(StageClock {
            stream,
            start,
            marks: Vec::with_capacity(512),
        }))
    }

    /// Ends stage `name` here (it began where the previous stage ended).
    pub(crate) fn mark(&mut self, name: &'static str) -> Result<()> {
        let timed =
            Some(candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let event = self.stream.record_event(timed).w()?;
        self.marks.push((name, event));
        Ok(())
    }

    /// Waits for the step and adds its stages to the totals.
    pub(crate) fn finish(self) -> Result<()> {
        let mut previous = &self.start;
        let mut times = Vec::with_capacity(self.marks.len());
        for (name, event) in &self.marks {
            times.push((*name, previous.elapsed_ms(event).w()? as f64));
            previous = event;
        }
        for (name, ms) in times {
            add_stage(name, ms);
        }
        Ok(())
    }
}

/// The stage totals gathered so far (name, times seen, total ms), emptied.
pub fn take_step_profile() -> Vec<(&'static str, u64, f64)> {
    stage_totals()
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default()
}

/// Whether a single stream's decode steps replay a captured CUDA graph: with the fused
/// kernels, unless `ARBITER_CUDA_GRAPH=0` runs them kernel by kernel (for comparing;
/// `scripts/gpu_check.py tiny` checks both against transformers).
pub(crate) fn graph_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        gemv_enabled() && std::env::var("ARBITER_CUDA_GRAPH").map_or(true, |v| v != "0")
    })
}

/// A decode step of the single stream captured as a CUDA graph: every layer's kernels, the
/// final norm and the output head, replayed with one launch. What changes from step to step
/// lives in device buffers the graph reads: the step's hidden state in, the positions held
/// (which the cache write and the attention read when they run), the logits out. The graph
/// holds the KV cache's and the rope tables' addresses, so it is captured again when either
/// is reallocated.
pub(crate) struct StepGraph {
    graph: SendGraph,
    /// The step's input, (1, 1, hidden): the new token's embedding, written before a replay.
    pub(crate) x_in: Tensor,
    /// Positions held after the step (one u32), written before a replay.
    pub(crate) len_dev: Tensor,
    /// The step's f32 logits (vocab,), written by the graph.
    pub(crate) logits: Tensor,
    /// The KV cache's capacity and the rope tables' length when captured.
    pub(crate) capacity: usize,
    pub(crate) rope_positions: usize,
}

/// A graph moved with the decoder that owns it.
struct SendGraph(candle_core::cuda_backend::cudarc::driver::CudaGraph);

// SAFETY: a graph's handles are used by the one thread that holds its decoder (`&mut self`
// for every launch), never by two at once; CUDA allows launching a graph from any thread.
unsafe impl Send for SendGraph {}

impl std::fmt::Debug for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepGraph")
            .field("capacity", &self.capacity)
            .field("rope_positions", &self.rope_positions)
            .finish_non_exhaustive()
    }
}

impl StepGraph {
    /// Captures what `body` launches on `device`'s stream (nothing runs until a replay) into
    /// a graph over the buffers given: `body` must read its input from `x_in` and the
    /// positions from `len_dev`, and leave the logits in `logits`.
    pub(crate) fn capture(
        device: &Device,
        x_in: Tensor,
        len_dev: Tensor,
        logits: Tensor,
        capacity: usize,
        rope_positions: usize,
        body: impl FnOnce(&Tensor, &Tensor, &Tensor) -> Result<()>,
    ) -> Result<StepGraph> {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let Device::Cuda(dev) = device else {
            bail!("a CUDA graph needs a CUDA device");
        };
        let stream = dev.cuda_stream();
        // Relaxed: other threads (a memory watch reading the free memory) may call the
        // driver meanwhile.
        stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .w()?;
        let ran = body(&x_in, &len_dev, &logits);
        // Always ended, so that the stream leaves capture mode whatever the body did.
        let ended = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        ran?;
        let Some(graph) = ended.w()? else {
            bail!("the decode step's capture recorded nothing");
        };
        graph.upload().w()?;
        Ok(StepGraph {
            graph: SendGraph(graph),
            x_in,
            len_dev,
            logits,
            capacity,
            rope_positions,
        })
    }

    /// Runs the step for `x` (1, 1, hidden), `len` positions held after it; returns a copy of
    /// its logits (the graph's own buffer is overwritten by the next replay).
    pub(crate) fn replay(&self, x: &Tensor, len: usize) -> Result<Tensor> {
        copy_into(&self.x_in, x)?;
        write_u32(&self.len_dev, len as u32)?;
        self.graph.0.launch().w()?;
        self.logits.copy()
    }
}

/// Page-locked host buffers that batched steps' tokens are copied into, reused from step to
/// step (allocating page-locked memory is slow).
#[derive(Default)]
pub(crate) struct TokenCopies {
    free: Vec<PinnedHostSlice<u32>>,
}

/// Tokens being copied into a page-locked buffer; `done` is recorded after the copy.
pub(crate) struct TokenCopy {
    buf: Option<PinnedHostSlice<u32>>,
    len: usize,
    done: CudaEvent,
    /// The source stays allocated until the copy has run.
    _src: Tensor,
}

impl Drop for TokenCopy {
    fn drop(&mut self) {
        // The buffer must not be freed or reused while the device may still write it.
        if let Err(e) = self.done.synchronize() {
            tracing::warn!("waiting for a token copy: {e}");
        }
    }
}

impl TokenCopies {
    /// Queues the copy of `ids` (u32) to the host on the stream, behind the work that
    /// computes them, and returns at once.
    pub(crate) fn start(&mut self, ids: &Tensor) -> Result<TokenCopy> {
        use candle_core::cuda_backend::cudarc::driver::{result, sys};
        if ids.dtype() != DType::U32 {
            bail!("token copy of {:?}", ids.dtype());
        }
        let src = ids.contiguous()?;
        let dev = device(&src)?;
        let len = src.elem_count();
        let stream = dev.cuda_stream();
        let mut buf = match self.free.iter().position(|b| b.len() >= len) {
            Some(i) => self.free.swap_remove(i),
            // SAFETY: the buffer is written by the copy below before anything reads it.
            // Flags 0: cached memory, for the host to read (write-combined is slow to read).
            None => unsafe {
                stream
                    .context()
                    .alloc_pinned_with_flags::<u32>(len.max(64), 0)
            }
            .w()?,
        };
        let dst = &mut buf.as_mut_slice().w()?[..len];
        // SAFETY: `dst` is page-locked memory of `len` u32, kept allocated by the returned
        // copy until `done` has completed (its drop waits); the source is `len` contiguous
        // u32 of a live buffer, also kept in the copy.
        unsafe { result::memcpy_dtoh_async(dst, ptr(&src)?, stream.cu_stream()) }.w()?;
        let done = stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .w()?;
        Ok(TokenCopy {
            buf: Some(buf),
            len,
            done,
            _src: src,
        })
    }

    /// Waits for `copy` (and only for the work queued before it) and gives its tokens.
    pub(crate) fn finish(&mut self, mut copy: TokenCopy) -> Result<Vec<u32>> {
        copy.done.synchronize().w()?;
        let Some(buf) = copy.buf.take() else {
            bail!("a token copy read twice");
        };
        let tokens = buf.as_slice().w()?[..copy.len].to_vec();
        self.free.push(buf);
        Ok(tokens)
    }
}

/// Copies `src` into `dst` on the device (same dtype and element count, both contiguous):
/// captured as a copy node when a capture is on.
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::result;
    let dev = device(dst)?;
    if dst.dtype() != src.dtype()
        || dst.elem_count() != src.elem_count()
        || !dst.is_contiguous()
        || !src.is_contiguous()
    {
        bail!("copy_into: {:?} into {:?}", src.shape(), dst.shape());
    }
    let bytes = src.elem_count() * src.dtype().size_in_bytes();
    let stream = dev.cuda_stream();
    // SAFETY: both pointers address `bytes` bytes of live device buffers (checked above); the
    // copy is ordered on the stream every kernel runs on.
    unsafe { result::memcpy_dtod_async(ptr(dst)?, ptr(src)?, bytes, stream.cu_stream()) }.w()?;
    Ok(())
}

/// Writes `value` into the one-element u32 tensor `dst` on the device.
fn write_u32(dst: &Tensor, value: u32) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::result;
    let dev = device(dst)?;
    if dst.dtype() != DType::U32 || dst.elem_count() != 1 {
        bail!("write_u32: {:?} of {:?}", dst.shape(), dst.dtype());
    }
    let stream = dev.cuda_stream();
    // SAFETY: dst holds one u32; a copy from pageable host memory returns once the source
    // has been read, so the local may go.
    unsafe { result::memcpy_htod_async(ptr(dst)?, &[value], stream.cu_stream()) }.w()?;
    Ok(())
}
