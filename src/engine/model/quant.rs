//! A CPU matrix multiply for GGUF weights in Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants
//! Q4_K, Q5_K, Q6_K: every type of the files people download (Q4_K_M and Q5_K_M mix them);
//! candle's CPU path for Q4_1 is a scalar loop. As llama.cpp does, activations are quantized to
//! 8 bits once per call (32-value blocks, or Q8_K's 256 for the K-quants) and each weight row
//! meets them in block dot products: AVX2, AVX-512-VNNI for the K-quants, NEON with or without
//! dotprod on aarch64, and a portable scalar version elsewhere; weight rows are shared out
//! between the calling thread and a few helper threads. Every tier forms the same exact
//! integers and then computes the same f32 operations in the same order, so a product has the
//! same bits on every CPU; the tier is chosen once per process from the CPU, capped by
//! `ARBITER_CPU_KERNELS`. For the 32-value types the integers are eight lanes of four-value
//! sums per block (the portable code follows the AVX2 lanes). For the K-quants the product is
//! defined per row and super-block by two exact integers, `dot = Σ_s sc[s] · Σ_{v in s} q_v
//! x_v` over the sub-blocks (Q6_K: of `q_v - 32`) and, for Q4_K and Q5_K, `mins = Σ_s m[s] ·
//! bsum(s)` against the activations' sub-block sums, then two fused multiply-adds on the row's
//! one accumulator, `acc += (d · dx) · dot` and `acc -= (dmin · dx) · mins`
//! (`kquant::products` and `kquant::step`); any tier may form the integers in any order.
//! Where the tier is AVX-512, the matrices of every type are stored at load as tiles of sixteen
//! interleaved rows (one per 32-bit lane of a 64-byte register; all but the last `rows % 16`
//! rows) in place of the file's layout, with exactly the file's bytes: one `vpdpbusd` then
//! multiplies four values of sixteen rows by four broadcast activations, a K-quant sub-block's
//! scale is applied once to its sum, and the unpacking of a tile is shared by several
//! activation rows.
//! candle's `QMatMul` is no reference: on AVX-512-VNNI and AVX-VNNI CPUs it quantizes the
//! activations of Q8_0 (and K-quant) products per 256 values instead of per 32.
//!
//! This file uses only `candle_core`, `half`, `thiserror` and `std` (no `crate::`
//! paths) so that `benches/quant.rs` can include it with `#[path]` and time it against candle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use half::f16;

/// Elements per quantization block of the 32-value types and their activations.
const QK: usize = 32;

/// Block scales are read eight at a time (one AVX register of f32), so each row's scale arrays
/// are padded with zeros to a multiple of this.
const SCALE_GROUP: usize = 8;

/// Why a forward pass was refused; wrapped into `candle_core::Error` at the API boundary.
#[derive(Debug, thiserror::Error)]
enum QuantError {
    #[error(
        "the quantized {dtype} matrix holds {got} bytes but a ({rows}, {cols}) matrix needs \
         {expected}: the GGUF tensor data is truncated or mislabelled"
    )]
    DataSize {
        dtype: &'static str,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error(
        "input of shape {shape:?} cannot be multiplied by a {dtype} matrix with {cols} input \
         features: its last dimension must be {cols}"
    )]
    InputWidth {
        shape: Vec<usize>,
        cols: usize,
        dtype: &'static str,
    },
    #[error("the quantized CPU matmul got an input on another device; move it to the CPU first")]
    NotCpu,
}

impl From<QuantError> for candle_core::Error {
    fn from(e: QuantError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// The supported GGML weight types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `d * (q - 8)`, 4-bit `q`.
    Q4_0,
    /// `d * q + m`, 4-bit `q`.
    Q4_1,
    /// `d * (q - 16)`, 5-bit `q`: four bits in the nibbles, the fifth in a 32-bit mask.
    Q5_0,
    /// `d * q + m`, 5-bit `q` as in Q5_0.
    Q5_1,
    /// `d * q`, signed 8-bit `q`.
    Q8_0,
    /// 256-value super-blocks of eight 32-value sub-blocks: `d * sc * q - dmin * m`, 4-bit `q`,
    /// 6-bit sub-block scales `sc` and minimums `m` packed into 12 bytes.
    Q4K,
    /// As Q4K with 5-bit `q`: the fifth bits in a 32-byte array.
    Q5K,
    /// 256-value super-blocks of sixteen 16-value sub-blocks: `d * sc * (q - 32)`, 6-bit `q`
    /// (low nibbles and high two bits in separate arrays), signed 8-bit `sc`.
    Q6K,
}

/// Values per K-quant super-block.
const QK_K: usize = 256;

/// Block-family ids, the const generic by which the SIMD kernels specialise per weight type.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod kind {
    pub(super) const Q4_0: u8 = 0;
    pub(super) const Q4_1: u8 = 1;
    pub(super) const Q8_0: u8 = 2;
    pub(super) const Q5_0: u8 = 3;
    pub(super) const Q5_1: u8 = 4;
    pub(super) const Q4K: u8 = 5;
    pub(super) const Q5K: u8 = 6;
    pub(super) const Q6K: u8 = 7;
}

impl Format {
    fn from_ggml(dtype: GgmlDType) -> Option<Format> {
        match dtype {
            GgmlDType::Q4_0 => Some(Format::Q4_0),
            GgmlDType::Q4_1 => Some(Format::Q4_1),
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            GgmlDType::Q5_1 => Some(Format::Q5_1),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            GgmlDType::Q4K => Some(Format::Q4K),
            GgmlDType::Q5K => Some(Format::Q5K),
            GgmlDType::Q6K => Some(Format::Q6K),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
            Format::Q5_0 => "q5_0",
            Format::Q5_1 => "q5_1",
            Format::Q8_0 => "q8_0",
            Format::Q4K => "q4_k",
            Format::Q5K => "q5_k",
            Format::Q6K => "q6_k",
        }
    }

    /// The K-quants: 256-value super-blocks stored as the file has them, against Q8_K-style
    /// activations.
    fn is_k(self) -> bool {
        matches!(self, Format::Q4K | Format::Q5K | Format::Q6K)
    }

    /// Values per block (a super-block for the K-quants).
    fn block_values(self) -> usize {
        if self.is_k() {
            QK_K
        } else {
            QK
        }
    }

    /// Bytes of one GGML block as stored in the GGUF file.
    fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q8_0 => 34,
            Format::Q4K => 144,
            Format::Q5K => 176,
            Format::Q6K => 210,
        }
    }

    /// Bytes of quants per block once the scales (and Q5's high bits) are split off; the
    /// K-quants keep their whole super-blocks.
    fn quant_bytes(self) -> usize {
        match self {
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 => QK / 2,
            Format::Q8_0 => QK,
            Format::Q4K | Format::Q5K | Format::Q6K => self.block_bytes(),
        }
    }

    /// Whether the block carries a minimum `m` added to every value (Q4_1, Q5_1).
    fn has_min(self) -> bool {
        matches!(self, Format::Q4_1 | Format::Q5_1)
    }

    /// Whether the block carries a 32-bit mask of fifth bits (Q5_0, Q5_1).
    fn has_high_bits(self) -> bool {
        matches!(self, Format::Q5_0 | Format::Q5_1)
    }
}

/// The weights, repacked from GGML's interleaved blocks into separate arrays: quants contiguous
/// per row, and per-row scale arrays padded to `SCALE_GROUP` so the kernel converts eight f16
/// scales with one instruction instead of one per block. Same bytes as the file, plus padding.
/// K-quant super-blocks stay as the file has them (in `qs`), except where tiled (`tiles`).
struct Weights {
    /// `rows * blocks * quant_bytes`.
    qs: Vec<u8>,
    /// `rows * stride` block scales `d`, zero in the padding (empty for the K-quants).
    d: Vec<f16>,
    /// `rows * stride` block minimums `m` (Q4_1 and Q5_1 only, empty otherwise).
    m: Vec<f16>,
    /// `rows * blocks` masks of fifth bits, bit `i` for value `i` (Q5_0 and Q5_1 only).
    qh: Vec<u32>,
    /// Rows `0..tiled` (any type), sixteen rows interleaved per super-block or block (see
    /// `kquant::pack_q4k_tiles`, `kquant::pack_q6k_tiles` and `tile32::pack`), for the AVX-512
    /// kernels; `qs` then holds only the rows after them.
    /// Empty when the matrix is not tiled.
    tiles: Vec<u8>,
}

/// A GGUF weight matrix of shape (rows, cols) = (n output features, k input features) that
/// multiplies f32 activations on the CPU. Cloning shares the weights.
#[derive(Clone)]
pub(crate) struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    /// `cols / QK`.
    blocks: usize,
    /// `blocks` rounded up to `SCALE_GROUP`: the row pitch of the scale arrays.
    stride: usize,
    /// Rows kept in `Weights::tiles` (a multiple of `kquant::TILE_ROWS`); row `j >= tiled` is
    /// row `j - tiled` of `Weights::qs`.
    tiled: usize,
    weights: Arc<Weights>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("dtype", &self.format.name())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl QuantMatrix {
    /// Some for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 tensors of shape (n, k) stored on the CPU with
    /// k % 32 == 0, and Q4_K, Q5_K, Q6_K ones with k % 256 == 0; None otherwise (the caller
    /// falls back to `QMatMul`).
    pub(crate) fn from_qtensor(q: &QTensor) -> Result<Option<QuantMatrix>> {
        let Some(format) = Format::from_ggml(q.dtype()) else {
            return Ok(None);
        };
        if !q.device().is_cpu() {
            return Ok(None);
        }
        let &[rows, cols] = q.shape().dims() else {
            return Ok(None);
        };
        if rows == 0 || cols == 0 || !cols.is_multiple_of(format.block_values()) {
            return Ok(None);
        }
        let data = q.data()?;
        Self::from_blocks(format, rows, cols, &data).map(Some)
    }

    /// Splits GGML blocks (`d`, [`m`,] quants per block, little-endian f16) into `Weights`;
    /// the rows are tiled where the process runs the AVX-512 kernels, which read that layout.
    fn from_blocks(format: Format, rows: usize, cols: usize, data: &[u8]) -> Result<QuantMatrix> {
        #[cfg(target_arch = "x86_64")]
        let tile = Kernel::detect() == Kernel::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        let tile = false;
        Self::from_blocks_with(format, rows, cols, data, tile)
    }

    /// As `from_blocks`, tiling the rows (all but the last `rows % 16`) or not.
    fn from_blocks_with(
        format: Format,
        rows: usize,
        cols: usize,
        data: &[u8],
        tile: bool,
    ) -> Result<QuantMatrix> {
        let blocks = cols / format.block_values();
        let stride = if format.is_k() {
            blocks
        } else {
            blocks.div_ceil(SCALE_GROUP) * SCALE_GROUP
        };
        let block_bytes = format.block_bytes();
        let quant_bytes = format.quant_bytes();
        let expected = rows * blocks * block_bytes;
        if data.len() != expected {
            return Err(QuantError::DataSize {
                dtype: format.name(),
                rows,
                cols,
                expected,
                got: data.len(),
            }
            .into());
        }
        if format.is_k() {
            let tiled = if tile && format.is_k() {
                rows / kquant::TILE_ROWS * kquant::TILE_ROWS
            } else {
                0
            };
            let (head, tail) = data.split_at(tiled * blocks * block_bytes);
            return Ok(QuantMatrix {
                format,
                rows,
                cols,
                blocks,
                stride,
                tiled,
                weights: Arc::new(Weights {
                    qs: tail.to_vec(),
                    d: Vec::new(),
                    m: Vec::new(),
                    qh: Vec::new(),
                    tiles: if format != Format::Q6K {
                        kquant::pack_q4k_tiles(format, head, blocks)
                    } else {
                        kquant::pack_q6k_tiles(head, blocks)
                    },
                }),
            });
        }
        let tiled = if tile {
            rows / tile32::ROWS * tile32::ROWS
        } else {
            0
        };
        let (head, data) = data.split_at(tiled * blocks * block_bytes);
        let tiles = tile32::pack(format, head, blocks);
        let rows_left = rows - tiled;
        let mut qs = Vec::with_capacity(rows_left * blocks * quant_bytes);
        let mut d = vec![f16::ZERO; rows_left * stride];
        let mut m = if format.has_min() {
            vec![f16::ZERO; rows_left * stride]
        } else {
            Vec::new()
        };
        let mut qh = Vec::new();
        if format.has_high_bits() {
            qh.reserve_exact(rows_left * blocks);
        }
        let half_at = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]);
        for (i, block) in data.chunks_exact(block_bytes).enumerate() {
            let (row, b) = (i / blocks, i % blocks);
            d[row * stride + b] = half_at(block, 0);
            let mut quants_at = 2;
            if format.has_min() {
                m[row * stride + b] = half_at(block, 2);
                quants_at = 4;
            }
            if format.has_high_bits() {
                let mask = &block[quants_at..quants_at + 4];
                qh.push(u32::from_le_bytes([mask[0], mask[1], mask[2], mask[3]]));
                quants_at += 4;
            }
            qs.extend_from_slice(&block[quants_at..]);
        }
        Ok(QuantMatrix {
            format,
            rows,
            cols,
            blocks,
            stride,
            tiled,
            weights: Arc::new(Weights {
                qs,
                d,
                m,
                qh,
                tiles,
            }),
        })
    }

    /// x: f32 tensor of shape (..., k) (any leading dims, e.g. (1, seq, k)); returns
    /// (..., n) = x W^T. Other float dtypes are computed in f32 and cast back.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Kernel::detect())
    }

    /// Rows `ids` of the matrix, dequantized: the token embedding, when the output projection
    /// shares its table (one copy of the largest matrix instead of two). `ids` is (b, s) u32;
    /// returns (b, s, cols) f32.
    pub(crate) fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let ids = ids.flatten_all()?.to_vec1::<u32>()?;
        let mut out = vec![0f32; ids.len() * self.cols];
        for (dst, &id) in out.chunks_exact_mut(self.cols).zip(&ids) {
            let row = id as usize;
            if row >= self.rows {
                return Err(candle_core::Error::Msg(format!(
                    "token id {id} is outside the {}-row embedding table",
                    self.rows
                )));
            }
            self.dequantize_row(row, dst);
        }
        Tensor::from_vec(out, (b, s, self.cols), &candle_core::Device::Cpu)
    }

    /// Row `row` as f32, as GGML dequantizes it: Q8_0 `d * q`; Q4_0 `d * (nibble - 8)`; Q4_1
    /// `d * nibble + m`, with a block's low nibbles its first 16 values and high nibbles the
    /// rest; Q5_0 / Q5_1 as Q4_0 / Q4_1 with the fifth bit (and Q5_0's offset 16); the K-quants
    /// in `kquant::dequantize`.
    fn dequantize_row(&self, row: usize, dst: &mut [f32]) {
        let w = &self.weights;
        let qb = self.format.quant_bytes();
        if self.format.is_k() {
            for (b, out) in dst.chunks_exact_mut(QK_K).enumerate().take(self.blocks) {
                let out: &mut [f32; QK_K] = out.try_into().expect("QK_K values");
                kquant::dequantize(self.format, &self.k_block(row, b), out);
            }
            return;
        }
        if row < self.tiled {
            return self.file_row(row).dequantize_row(0, dst);
        }
        let row = row - self.tiled;
        for (b, out) in dst.chunks_exact_mut(QK).enumerate().take(self.blocks) {
            let at = row * self.stride + b;
            let d = w.d[at].to_f32();
            let q = &w.qs[(row * self.blocks + b) * qb..][..qb];
            match self.format {
                Format::Q8_0 => {
                    for (o, &v) in out.iter_mut().zip(q) {
                        *o = d * f32::from(v as i8);
                    }
                }
                Format::Q4_0 | Format::Q4_1 => {
                    let (offset, m) = if self.format == Format::Q4_1 {
                        (0.0, w.m[at].to_f32())
                    } else {
                        (-8.0, 0.0)
                    };
                    let (low, high) = out.split_at_mut(QK / 2);
                    for ((l, h), &v) in low.iter_mut().zip(high.iter_mut()).zip(q) {
                        *l = d * (f32::from(v & 0x0F) + offset) + m;
                        *h = d * (f32::from(v >> 4) + offset) + m;
                    }
                }
                Format::Q5_0 | Format::Q5_1 => {
                    let mask = w.qh[row * self.blocks + b];
                    for (i, o) in out.iter_mut().enumerate() {
                        let q = i32::from(five_bit(q, mask, i));
                        // GGML: integer offset first, then one product (and Q5_1's sum).
                        *o = if self.format == Format::Q5_1 {
                            q as f32 * d + w.m[at].to_f32()
                        } else {
                            (q - 16) as f32 * d
                        };
                    }
                }
                Format::Q4K | Format::Q5K | Format::Q6K => unreachable!("handled above"),
            }
        }
    }

    pub(crate) fn dtype_name(&self) -> &'static str {
        self.format.name()
    }

    /// Tiled row `row` of a 32-value type as a one-row matrix in the file's layout, for the
    /// portable code (tests and tiers other than AVX-512 only: it copies).
    fn file_row(&self, row: usize) -> QuantMatrix {
        let bytes = tile32::unpack_row(self.format, &self.weights.tiles, self.blocks, row);
        QuantMatrix::from_blocks_with(self.format, 1, self.cols, &bytes, false)
            .expect("a tiled row holds one row of whole blocks")
    }

    /// Super-block `b` of K-quant row `row`, unpacked from whichever layout holds it.
    fn k_block(&self, row: usize, b: usize) -> kquant::Unpacked {
        if row < self.tiled {
            return if self.format != Format::Q6K {
                kquant::unpack_q4k_tile(self.format, &self.weights.tiles, self.blocks, row, b)
            } else {
                kquant::unpack_q6k_tile(&self.weights.tiles, self.blocks, row, b)
            };
        }
        let bb = self.format.block_bytes();
        let at = ((row - self.tiled) * self.blocks + b) * bb;
        kquant::unpack(self.format, &self.weights.qs[at..at + bb])
    }

    fn forward_with(&self, x: &Tensor, kernel: Kernel) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return Err(QuantError::NotCpu.into());
        }
        let dims = x.dims();
        if dims.last() != Some(&self.cols) {
            return Err(QuantError::InputWidth {
                shape: dims.to_vec(),
                cols: self.cols,
                dtype: self.format.name(),
            }
            .into());
        }
        let in_dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let y = x32.apply_op1_no_bwd(&Op {
            matrix: self,
            kernel,
        })?;
        y.to_dtype(in_dtype)
    }

    /// y (m, n) = x (m, k) W^T. Each work item is a run of consecutive weight rows, so a weight
    /// row is read once for all m activation rows while it is in cache.
    fn matmul(&self, x: &[f32], m: usize, kernel: Kernel) -> Vec<f32> {
        let n = self.rows;
        // Reusing the activation buffers saves page faults on every prefill-sized call.
        thread_local! {
            static SCRATCH: std::cell::Cell<Activations> = const {
                std::cell::Cell::new(Activations::EMPTY)
            };
        }
        let mut acts = SCRATCH.take();
        acts.quantize(x, m, self.cols, self.format, kernel);
        let chunk_rows = if m == 1 {
            // A decode matvec takes tens of microseconds; items of a few microseconds (64 rows)
            // let the caller start at once and absorb a helper that starts late.
            64
        } else if self.tiled > 0 {
            // Whole tiles of sixteen rows.
            (n / (pool_threads() * 8))
                .clamp(16, 64)
                .next_multiple_of(kquant::TILE_ROWS)
        } else {
            (n / (pool_threads() * 8)).clamp(4, 64).next_multiple_of(4)
        };
        // Left unzeroed: the kernels write every element, and zeroing a prefill's output (18 MB
        // for a 1.5B model's MLP) would be one more pass over memory, on every call.
        let mut out: Vec<f32> = Vec::with_capacity(m * n);
        let y = Output::new(&mut out.spare_capacity_mut()[..m * n], n);
        par_items(n.div_ceil(chunk_rows), |i| {
            let first = i * chunk_rows;
            let count = chunk_rows.min(n - first);
            self.rows_times(kernel, &acts, first, count, &y);
        });
        // SAFETY: the items cover the weight rows 0..n, each once; `rows_times` writes column j
        // of every activation row 0..m (= `acts.rows`) for each of its rows j, on every tier, so
        // all m * n elements are initialised. A panic in an item is raised again by `par_items`
        // before this line.
        unsafe { out.set_len(m * n) };
        SCRATCH.set(acts);
        out
    }

    /// Weight rows `first..first + count` against every activation row, into columns
    /// `first..first + count` of `y`. Callers give concurrent calls disjoint row ranges.
    fn rows_times(
        &self,
        kernel: Kernel,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        assert!(first + count <= self.rows && y.cols == self.rows);
        // Tiled rows are the AVX-512 kernel's layout; the other tiers meet them only where a
        // test compares tiers, and take them portably (the same bits).
        #[cfg(target_arch = "x86_64")]
        let tiled_here = kernel != Kernel::Avx512;
        #[cfg(not(target_arch = "x86_64"))]
        let tiled_here = true;
        if tiled_here && first < self.tiled {
            let end = (first + count).min(self.tiled);
            for j in first..end {
                for r in 0..acts.rows {
                    // SAFETY: column j belongs to this call alone (see above).
                    unsafe { y.set(r, j, dot_scalar(self, j, acts, r)) };
                }
            }
            if end < first + count {
                self.rows_times(kernel, acts, end, first + count - end, y);
            }
            return;
        }
        match kernel {
            Kernel::Scalar => {
                for j in first..first + count {
                    for r in 0..acts.rows {
                        // SAFETY: column j belongs to this call alone (see above).
                        unsafe { y.set(r, j, dot_scalar(self, j, acts, r)) };
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                // SAFETY: `Kernel::Avx2` is only constructed after detecting avx2, fma and f16c;
                // the rows are in bounds (asserted above) and the columns are this call's alone.
                unsafe { avx2::rows_times(self, acts, first, count, y) }
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => {
                // SAFETY: `Kernel::NeonDot` is only constructed after detecting dotprod; the
                // rows are in bounds (asserted above) and the columns are this call's alone.
                unsafe { neon::rows_times_dotprod(self, acts, first, count, y) }
            }
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => {
                // SAFETY: the rows are in bounds (asserted above) and the columns are this
                // call's alone.
                unsafe { neon::rows_times_plain(self, acts, first, count, y) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                // SAFETY: `Kernel::Avx512` is only constructed after detecting its features and
                // Avx2's; bounds and columns as above.
                unsafe { avx512::rows_times(self, acts, first, count, y) }
            }
        }
    }
}

/// The (m, n) output matrix, written by several threads at once. Each writes only the columns
/// of its own weight rows, which are strided in memory, hence a raw pointer rather than split
/// `&mut` slices. The memory may start uninitialised: elements are only written, never read.
struct Output<'a> {
    ptr: *mut f32,
    len: usize,
    cols: usize,
    _out: std::marker::PhantomData<&'a mut [std::mem::MaybeUninit<f32>]>,
}

// SAFETY: `Output` only hands out writes through `set`, whose callers guarantee that no two
// threads write the same element.
unsafe impl Sync for Output<'_> {}

impl<'a> Output<'a> {
    fn new(out: &'a mut [std::mem::MaybeUninit<f32>], cols: usize) -> Self {
        Output {
            ptr: out.as_mut_ptr().cast(),
            len: out.len(),
            cols,
            _out: std::marker::PhantomData,
        }
    }

    /// Writes `y[r][j]`.
    ///
    /// # Safety
    /// No other thread may write `y[r][j]` during this `Output`'s lifetime.
    unsafe fn set(&self, r: usize, j: usize, v: f32) {
        let at = r * self.cols + j;
        assert!(
            j < self.cols && at < self.len,
            "output index ({r}, {j}) out of bounds"
        );
        self.ptr.add(at).write(v);
    }
}

/// The custom op that lets candle hand over the input buffer without a copy.
struct Op<'a> {
    matrix: &'a QuantMatrix,
    kernel: Kernel,
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "quant-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = storage.as_slice::<f32>()?;
        let count = layout.shape().elem_count();
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => &x[start..end],
            None => candle_core::bail!("quant-matmul: input is not contiguous {layout:?}"),
        };
        let k = self.matrix.cols;
        let m = count / k;
        let mut dims = layout.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.matrix.rows;
        }
        let y = if m == 0 {
            Vec::new()
        } else {
            self.matrix.matmul(x, m, self.kernel)
        };
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }
}

/// Which dot-product implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// aarch64 NEON without the dotprod extension.
    #[cfg(target_arch = "aarch64")]
    Neon,
    /// aarch64 NEON with dotprod's `sdot`.
    #[cfg(target_arch = "aarch64")]
    NeonDot,
    /// AVX2 plus AVX-512F/BW/VL and AVX-512-VNNI: tiled rows of every type from 64-byte
    /// registers; the rows after the last tile also so for the K-quants, as `Avx2` otherwise.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Environment variable that caps the kernel tier (`scalar` or `avx2`, where the best is `avx512`
/// on CPUs with AVX-512-VNNI; on aarch64 `scalar` or `neon`, which leaves out the dotprod
/// kernels): to compare the tiers on one machine, or to reproduce on one CPU what another
/// computes. Unset or any other value: the best tier this CPU has.
pub(crate) const KERNELS_VAR: &str = "ARBITER_CPU_KERNELS";

impl Kernel {
    /// The tier every product in this process uses: the best one the CPU has, capped by
    /// `ARBITER_CPU_KERNELS`. Decided once, so that a model never mixes tiers.
    fn detect() -> Kernel {
        static CHOSEN: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Kernel::best();
            match std::env::var(KERNELS_VAR).as_deref() {
                Ok("scalar") => Kernel::Scalar,
                #[cfg(target_arch = "aarch64")]
                Ok("neon") if best == Kernel::NeonDot => Kernel::Neon,
                #[cfg(target_arch = "x86_64")]
                Ok("avx2") if best == Kernel::Avx512 => Kernel::Avx2,
                _ => best,
            }
        })
    }

    fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if Kernel::Avx2.available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
        {
            return Kernel::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if Kernel::Avx2.available() {
            return Kernel::Avx2;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            return if std::arch::is_aarch64_feature_detected!("dotprod") {
                Kernel::NeonDot
            } else {
                Kernel::Neon
            };
        }
        Kernel::Scalar
    }

    /// Whether this CPU runs this tier (for `Avx512`, also needs `Avx2`'s features). Only the
    /// x86 tier choice asks it; on aarch64 `best` decides between the two NEON tiers alone.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Kernel::best() == Kernel::Avx512,
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => Kernel::best() == Kernel::NeonDot,
        }
    }
}

/// Activation rows quantized to 8-bit blocks, bit for bit as candle's (and llama.cpp's) Q8_0 /
/// Q8_1 do it: per block `d = max|x| / 127` rounded to f16, `q = round(x * (1 / d))` with the
/// unrounded `d` (ties away from zero). Matching them keeps model outputs unchanged when this
/// kernel replaces `QMatMul`.
struct Activations {
    rows: usize,
    /// Row pitch of `d` and `off`: blocks per row rounded up to `SCALE_GROUP`.
    stride: usize,
    /// `rows * blocks * QK` quants.
    qs: Vec<i8>,
    /// `rows * stride` block scales, zero in the padding.
    d: Vec<f32>,
    /// `rows * stride * 16` sums of each 16 quants (K-quants only, empty otherwise), which
    /// the super-blocks' minimums (Q4_K, Q5_K) and offset 32 (Q6_K) multiply.
    bsums: Vec<i16>,
    /// `rows * stride` per-block offset terms, multiplied by a weight-side factor: for Q4_1
    /// the block sum `s = d * sum(q)` (rounded through f16 like candle's Q8_1, and multiplied
    /// by the weight's `m`); for Q4_0 `-8 * d * sum(q)` (multiplied by the weight's `d`), which
    /// folds the `- 8` of every weight into one term per block; Q5_1 as Q4_1 and Q5_0 as Q4_0
    /// with `-16`; unused for Q8_0 and the K-quants.
    off: Vec<f32>,
}

impl Default for Activations {
    fn default() -> Self {
        Activations::EMPTY
    }
}

impl Activations {
    const EMPTY: Activations = Activations {
        rows: 0,
        stride: 0,
        qs: Vec::new(),
        d: Vec::new(),
        bsums: Vec::new(),
        off: Vec::new(),
    };

    /// Quantizes `rows` rows of `cols` values, reusing this value's buffers.
    fn quantize(&mut self, x: &[f32], rows: usize, cols: usize, format: Format, kernel: Kernel) {
        if format.is_k() {
            self.quantize_k(x, rows, cols);
            return;
        }
        self.bsums.clear();
        let blocks = cols / QK;
        let stride = blocks.div_ceil(SCALE_GROUP) * SCALE_GROUP;
        self.rows = rows;
        self.stride = stride;
        self.qs.resize(rows * cols, 0);
        // The padding must read as zero scales; the rest is overwritten below.
        self.d.clear();
        self.d.resize(rows * stride, 0.0);
        self.off.clear();
        self.off.resize(rows * stride, 0.0);
        // Quantizing is linear in m * k against the matmul's m * k * n: only worth spreading
        // over the pool for prefill-sized inputs.
        let rows_per_piece = if rows * cols >= 1 << 16 {
            rows.div_ceil(pool_threads() * 2)
        } else {
            rows
        };
        let pieces: Vec<_> = x
            .chunks(rows_per_piece * cols)
            .zip(self.qs.chunks_mut(rows_per_piece * cols))
            .zip(self.d.chunks_mut(rows_per_piece * stride))
            .zip(self.off.chunks_mut(rows_per_piece * stride))
            .map(|(((x, qs), d), off)| (x, qs, d, off))
            .collect();
        par_pieces(pieces, |(x, qs, d, off)| {
            quantize_rows(x, qs, d, off, blocks, stride, format, kernel);
        });
    }
}

impl Activations {
    /// Quantizes `rows` rows of `cols` values (a multiple of 256) per super-block as llama.cpp's
    /// Q8_K, for the K-quant kernels. One portable loop for every tier: it is linear in the
    /// input, and the compiler vectorizes it.
    fn quantize_k(&mut self, x: &[f32], rows: usize, cols: usize) {
        let blocks = cols / QK_K;
        self.rows = rows;
        self.stride = blocks;
        self.qs.resize(rows * cols, 0);
        self.d.resize(rows * blocks, 0.0);
        self.bsums.resize(rows * blocks * 16, 0);
        self.off.clear();
        let per_piece = if rows * cols >= 1 << 16 {
            (rows * blocks).div_ceil(pool_threads() * 2)
        } else {
            rows * blocks
        };
        let pieces: Vec<_> = x
            .chunks(per_piece * QK_K)
            .zip(self.qs.chunks_mut(per_piece * QK_K))
            .zip(self.d.chunks_mut(per_piece))
            .zip(self.bsums.chunks_mut(per_piece * 16))
            .map(|(((x, qs), d), bsums)| (x, qs, d, bsums))
            .collect();
        par_pieces(pieces, |(x, qs, d, bsums)| {
            for (((x, q), d), bsums) in x
                .chunks_exact(QK_K)
                .zip(qs.chunks_exact_mut(QK_K))
                .zip(d.iter_mut())
                .zip(bsums.chunks_exact_mut(16))
            {
                *d = kquant::quantize_q8k(
                    x.try_into().expect("QK_K values"),
                    q.try_into().expect("QK_K quants"),
                    bsums.try_into().expect("16 sums"),
                );
            }
        });
    }
}

/// Quantizes whole rows `x` into `qs` and the per-block `d` / `off` (row pitch `stride`).
#[allow(clippy::too_many_arguments)]
fn quantize_rows(
    x: &[f32],
    qs: &mut [i8],
    d_out: &mut [f32],
    off_out: &mut [f32],
    blocks: usize,
    stride: usize,
    format: Format,
    kernel: Kernel,
) {
    for (i, (xb, qb)) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).enumerate() {
        let qb: &mut [i8; QK] = qb.try_into().expect("chunks_exact yields QK-sized blocks");
        let xb: &[f32; QK] = xb.try_into().expect("chunks_exact yields QK-sized blocks");
        let (d, sum) = match kernel {
            Kernel::Scalar => quantize_block_scalar(xb, qb),
            // SAFETY: `Kernel::Avx2` and `Kernel::Avx512` exist only once avx2/fma/f16c were
            // detected.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512 => unsafe { avx2::quantize_block(xb, qb) },
            // Quantizing is linear in the input; the portable loop serves the NEON tiers.
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon | Kernel::NeonDot => quantize_block_scalar(xb, qb),
        };
        let at = (i / blocks) * stride + i % blocks;
        let df = d.to_f32();
        d_out[at] = df;
        off_out[at] = match format {
            // candle's Q8_1 rounds the sum and then the product through f16.
            Format::Q4_1 | Format::Q5_1 => (f16::from_f32(sum as f32) * d).to_f32(),
            Format::Q4_0 => -8.0 * df * sum as f32,
            Format::Q5_0 => -16.0 * df * sum as f32,
            Format::Q8_0 | Format::Q4K | Format::Q5K | Format::Q6K => 0.0,
        };
    }
}

/// Quantizes one block; returns its f16 scale and the sum of its quants.
fn quantize_block_scalar(x: &[f32; QK], q: &mut [i8; QK]) -> (f16, i32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        // `as` saturates; |v * id| <= 127 (plus rounding) anyway.
        *q = (v * id).round() as i8;
        sum += i32::from(*q);
    }
    (f16::from_f32(d), sum)
}

/// One weight row against one activation row, portable, and bit for bit what the AVX2 tile
/// computes, so that the tier a CPU gets never changes a result (8-bit activations turn the
/// smallest difference into a different rounding of some later activation, and a greedy
/// choice can follow it). The AVX2 order: eight f32 lanes, lane `l` holding the integer
/// products of values `4l..4l+4` of every block, scaled by `d_w * d_x` with one fused
/// multiply-add a block; per group of eight blocks, the offset terms of those blocks first,
/// block `base + l` in lane `l`; at the end the lanes summed as `((0+4)+(2+6))+((1+5)+(3+7))`.
/// Values are in memory order: for 4-bit weights the low nibbles of a block's 16 bytes are its
/// first 16 values and the high nibbles the rest (Q5's fifth bit from the mask, bit `i` for
/// value `i`).
fn dot_scalar(w: &QuantMatrix, row: usize, acts: &Activations, r: usize) -> f32 {
    if w.format.is_k() {
        return dot_k_scalar(w, row, acts, r);
    }
    if row < w.tiled {
        return dot_scalar(&w.file_row(row), 0, acts, r);
    }
    let row = row - w.tiled;
    let qb = w.format.quant_bytes();
    let wq = &w.weights.qs[row * w.blocks * qb..(row + 1) * w.blocks * qb];
    let xq = &acts.qs[r * w.cols..(r + 1) * w.cols];
    let (ws, xs) = (row * w.stride, r * acts.stride);
    let mut acc = [0f32; SCALE_GROUP];
    for base in (0..w.blocks).step_by(SCALE_GROUP) {
        if w.format != Format::Q8_0 {
            // The scale arrays are padded to whole groups with zeros, as the SIMD loads see them.
            for (l, a) in acc.iter_mut().enumerate() {
                let ow = if w.format.has_min() {
                    w.weights.m[ws + base + l]
                } else {
                    w.weights.d[ws + base + l]
                };
                *a = ow.to_f32().mul_add(acts.off[xs + base + l], *a);
            }
        }
        for b in base..(base + SCALE_GROUP).min(w.blocks) {
            let wb = &wq[b * qb..(b + 1) * qb];
            let xb = &xq[b * QK..(b + 1) * QK];
            let mask = if w.format.has_high_bits() {
                w.weights.qh[row * w.blocks + b]
            } else {
                0
            };
            let weight = |v: usize| -> i32 {
                match w.format {
                    Format::Q8_0 => i32::from(wb[v] as i8),
                    Format::Q4_0 | Format::Q4_1 if v < QK / 2 => i32::from(wb[v] & 0x0F),
                    Format::Q4_0 | Format::Q4_1 => i32::from(wb[v - QK / 2] >> 4),
                    _ => i32::from(five_bit(wb, mask, v)),
                }
            };
            let scale = w.weights.d[ws + b].to_f32() * acts.d[xs + b];
            for (l, a) in acc.iter_mut().enumerate() {
                let p: i32 = (4 * l..4 * l + 4)
                    .map(|v| weight(v) * i32::from(xb[v]))
                    .sum();
                *a = scale.mul_add(p as f32, *a);
            }
        }
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Value `i` (0..32) of a Q5 block as the unsigned 5-bit integer: the nibble (low nibbles
/// first) and bit `i` of the mask as its fifth bit.
fn five_bit(nibbles: &[u8], mask: u32, i: usize) -> u8 {
    let low = if i < QK / 2 {
        nibbles[i] & 0x0F
    } else {
        nibbles[i - QK / 2] >> 4
    };
    low | ((((mask >> i) & 1) as u8) << 4)
}

/// One weight row of K-quant super-blocks against one activation row, portable: the
/// definition every tier computes bit for bit. Per super-block the two exact integers of
/// `kquant::products`, then `kquant::step`'s f32 steps on one accumulator, super-block by
/// super-block in order.
fn dot_k_scalar(w: &QuantMatrix, row: usize, acts: &Activations, r: usize) -> f32 {
    let mut acc = 0f32;
    for b in 0..w.blocks {
        let u = w.k_block(row, b);
        let x: &[i8; QK_K] = acts.qs[r * w.cols + b * QK_K..][..QK_K]
            .try_into()
            .expect("QK_K quants");
        let at = r * acts.stride + b;
        let bsums: &[i16; 16] = acts.bsums[at * 16..][..16].try_into().expect("16 sums");
        let (dot, mins) = kquant::products(w.format, &u, x, bsums);
        acc = kquant::step(
            acc,
            u.d,
            u.dmin,
            acts.d[at],
            dot,
            mins,
            w.format == Format::Q6K,
        );
    }
    acc
}

mod kquant {
    //! The K-quant super-blocks read portably: their layouts, GGML's dequantization, llama.cpp's
    //! Q8_K activation quantization, and the definition of a product (`products`, `step`)
    //! that every tier's kernel computes.

    use super::{Format, QK_K};
    use half::f16;

    /// A super-block with its quants as unsigned integers in value order.
    pub(super) struct Unpacked {
        /// Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 (GGML subtracts 32 from these).
        pub(super) q: [u8; QK_K],
        /// The scale of each 16 values (Q4_K, Q5_K: a 32-value sub-block's, twice).
        pub(super) sc: [i32; 16],
        /// The minimum of each 32-value sub-block (zero for Q6_K).
        pub(super) mins: [i32; 8],
        pub(super) d: f32,
        pub(super) dmin: f32,
    }

    fn half(b: &[u8], at: usize) -> f32 {
        f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
    }

    /// Sub-block scales and minimums of a Q4_K / Q5_K super-block, from their 12 bytes of 6-bit
    /// fields: scales 0-3 and minimums 0-3 are the low six bits of bytes 0-3 and 4-7; scales
    /// 4-7 and minimums 4-7 take their low four bits from the low and high nibbles of bytes
    /// 8-11 and their top two bits from the top bits of bytes 0-3 and 4-7. Four bytes at a
    /// time as 32-bit words.
    pub(super) fn scales_mins(packed: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
        let word = |i: usize| {
            u32::from_le_bytes([
                packed[4 * i],
                packed[4 * i + 1],
                packed[4 * i + 2],
                packed[4 * i + 3],
            ])
        };
        let (w0, w1, w2) = (word(0), word(1), word(2));
        const LOW6: u32 = 0x3f3f_3f3f;
        const LOW4: u32 = 0x0f0f_0f0f;
        const LOW2: u32 = 0x0303_0303;
        let join = |a: u32, b: u32| {
            let mut out = [0u8; 8];
            out[..4].copy_from_slice(&a.to_le_bytes());
            out[4..].copy_from_slice(&b.to_le_bytes());
            out
        };
        (
            join(w0 & LOW6, (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4)),
            join(w1 & LOW6, ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4)),
        )
    }

    /// Unpacks one super-block of `format`'s file layout:
    /// Q4_K: f16 d, f16 dmin, 12 bytes of scales, 128 bytes of nibbles. Each 32 bytes hold 64
    /// values: low nibbles the first 32 (sub-block 2j), high nibbles the next 32 (2j + 1).
    /// Q5_K: as Q4_K with 32 bytes of fifth bits before the nibbles: bit 2j of byte l for
    /// value 64j + l, bit 2j + 1 for value 64j + 32 + l.
    /// Q6_K: 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 signed scales, f16 d.
    /// Each half of 128 values takes 64 nibble bytes `a` (0..32), `b` (32..64) and 32 bytes
    /// `h`: value l is a's low nibble with h's bits 0-1, 32 + l b's low nibble with bits 2-3,
    /// 64 + l a's high nibble with bits 4-5, 96 + l b's high nibble with bits 6-7.
    pub(super) fn unpack(format: Format, block: &[u8]) -> Unpacked {
        let mut u = Unpacked {
            q: [0; QK_K],
            sc: [0; 16],
            mins: [0; 8],
            d: 0.0,
            dmin: 0.0,
        };
        match format {
            Format::Q6K => {
                let (ql, rest) = block.split_at(128);
                let (qh, rest) = rest.split_at(64);
                for half_at in 0..2 {
                    for l in 0..32 {
                        let a = ql[64 * half_at + l];
                        let b = ql[64 * half_at + 32 + l];
                        let h = qh[32 * half_at + l];
                        let q = &mut u.q[128 * half_at..];
                        q[l] = (a & 0x0F) | ((h & 3) << 4);
                        q[32 + l] = (b & 0x0F) | (((h >> 2) & 3) << 4);
                        q[64 + l] = (a >> 4) | (((h >> 4) & 3) << 4);
                        q[96 + l] = (b >> 4) | (((h >> 6) & 3) << 4);
                    }
                }
                for (s, &b) in u.sc.iter_mut().zip(&rest[..16]) {
                    *s = i32::from(b as i8);
                }
                u.d = half(rest, 16);
            }
            _ => {
                u.d = half(block, 0);
                u.dmin = half(block, 2);
                let packed: &[u8; 12] = block[4..16].try_into().expect("12 scale bytes");
                let (sc, mins) = scales_mins(packed);
                let (high, qs) = if format == Format::Q5K {
                    (Some(&block[16..48]), &block[48..176])
                } else {
                    (None, &block[16..144])
                };
                for j in 0..4 {
                    for l in 0..32 {
                        let byte = qs[32 * j + l];
                        let (mut lo, mut hi) = (byte & 0x0F, byte >> 4);
                        if let Some(h) = high {
                            lo |= ((h[l] >> (2 * j)) & 1) << 4;
                            hi |= ((h[l] >> (2 * j + 1)) & 1) << 4;
                        }
                        u.q[64 * j + l] = lo;
                        u.q[64 * j + 32 + l] = hi;
                    }
                }
                for (i, s) in u.sc.iter_mut().enumerate() {
                    *s = i32::from(sc[i / 2]);
                }
                for (m, &v) in u.mins.iter_mut().zip(&mins) {
                    *m = i32::from(v);
                }
            }
        }
        u
    }

    /// One super-block as GGML dequantizes it (and candle, bit for bit): Q4_K / Q5_K
    /// `(d * sc) * q - dmin * m`, Q6_K `(d * sc) * (q - 32)`.
    pub(super) fn dequantize(format: Format, u: &Unpacked, out: &mut [f32; QK_K]) {
        for (v, o) in out.iter_mut().enumerate() {
            let q = i32::from(u.q[v]);
            let scale = u.d * u.sc[v / 16] as f32;
            *o = if format == Format::Q6K {
                scale * (q - 32) as f32
            } else {
                scale * q as f32 - u.dmin * u.mins[v / 32] as f32
            };
        }
    }

    /// Weight rows per tile of the tiled Q4_K layout: one per i32 lane of a 64-byte register.
    pub(super) const TILE_ROWS: usize = 16;
    /// Bytes of one super-block of a tile: quants, then the packed scales and minimums, `d`
    /// and `dmin`: 2304, the file's bytes for sixteen rows.
    pub(super) const Q4K_TILE_BYTES: usize = TILE_DMIN + 2 * TILE_ROWS;
    /// Bytes of one super-block of a Q5_K tile: Q4_K's, then the fifth bits at
    /// `Q5K_TILE_HIGH`, per sub-block `s` and run `l` of four values a 64-bit mask, bit
    /// `4r + j` for value `32s + 4l + j` of row `r`: 2816, as the file.
    pub(super) const Q5K_TILE_BYTES: usize = Q5K_TILE_HIGH + QK_K * TILE_ROWS / 8;
    pub(super) const Q5K_TILE_HIGH: usize = Q4K_TILE_BYTES;
    const TILE_QUANTS: usize = QK_K * TILE_ROWS / 2;
    /// Offsets in a tile's super-block of the 12 bytes of packed 6-bit scales and minimums of
    /// each row as the file has them, stored as three 64-byte runs of 32-bit words (word `i`
    /// of row `r` at `64i + 4r`, so one load gives word `i` of the sixteen rows), and of the
    /// f16 `d` and `dmin` (`[row]`).
    pub(super) const TILE_SCALES: usize = TILE_QUANTS;
    pub(super) const TILE_D: usize = TILE_SCALES + 12 * TILE_ROWS;
    pub(super) const TILE_DMIN: usize = TILE_D + 2 * TILE_ROWS;

    /// Where value `v` of tile row `row` sits in a tile's quants: byte and nibble (4 for the
    /// high one). Sub-block `s` (values `32s..32s + 32`) takes 256 bytes, four 64-byte runs;
    /// run `p` holds the four values `32s + 4p..` of each row in its low nibbles (row `r` in
    /// bytes `4r..4r + 4`, one 32-bit lane) and the values `32s + 16 + 4p..` in its high ones.
    /// So one load and two masks give a register of four consecutive values of sixteen rows,
    /// and the four runs' low (high) nibbles are the first (second) 16 values of sub-block `s`.
    fn tile_at(row: usize, v: usize) -> (usize, u32) {
        let (s, i) = (v / 32, v % 32);
        let (p, high) = ((i % 16) / 4, i >= 16);
        (256 * s + 64 * p + 4 * row + i % 4, if high { 4 } else { 0 })
    }

    /// Q4_K or Q5_K rows (whole super-blocks as the file stores them, a multiple of
    /// `TILE_ROWS` rows of `blocks` super-blocks) in the tiled layout: per tile of sixteen rows
    /// and super-block, the low four bits of the quants placed by `tile_at`, then the packed
    /// 6-bit scales and minimums as the file has them (`TILE_SCALES`), then `d` and `dmin`
    /// (and Q5_K's fifth bits): exactly the file's bytes, reordered.
    pub(super) fn pack_q4k_tiles(format: Format, data: &[u8], blocks: usize) -> Vec<u8> {
        let bb = format.block_bytes();
        let tb = if format == Format::Q5K {
            Q5K_TILE_BYTES
        } else {
            Q4K_TILE_BYTES
        };
        let tiles = data.len() / (TILE_ROWS * blocks * bb);
        let mut out = vec![0u8; tiles * blocks * tb];
        super::pack_tiles(&mut out, blocks * tb, |t, chunk| {
            for (b, tile) in chunk.chunks_exact_mut(tb).enumerate() {
                for row in 0..TILE_ROWS {
                    let blk = &data[((t * TILE_ROWS + row) * blocks + b) * bb..][..bb];
                    tile[TILE_D + 2 * row..][..2].copy_from_slice(&blk[0..2]);
                    tile[TILE_DMIN + 2 * row..][..2].copy_from_slice(&blk[2..4]);
                    for i in 0..3 {
                        tile[TILE_SCALES + 64 * i + 4 * row..][..4]
                            .copy_from_slice(&blk[4 + 4 * i..8 + 4 * i]);
                    }
                    for (v, &q) in unpack(format, blk).q.iter().enumerate() {
                        let (at, shift) = tile_at(row, v);
                        tile[at] |= (q & 0x0F) << shift;
                        if q >> 4 != 0 {
                            let (at, bit) = q5k_high_at(row, v);
                            tile[at] |= 1 << bit;
                        }
                    }
                }
            }
        });
        out
    }

    /// Where the fifth bit of Q5_K value `v` of tile row `row` sits: byte and bit.
    fn q5k_high_at(row: usize, v: usize) -> (usize, u32) {
        let bit = 4 * row + v % 4;
        (Q5K_TILE_HIGH + 8 * (v / 4) + bit / 8, (bit % 8) as u32)
    }

    /// Super-block `b` of row `row` of `pack_q4k_tiles`'s output, as `unpack` gives it.
    pub(super) fn unpack_q4k_tile(
        format: Format,
        tiles: &[u8],
        blocks: usize,
        row: usize,
        b: usize,
    ) -> Unpacked {
        let tb = if format == Format::Q5K {
            Q5K_TILE_BYTES
        } else {
            Q4K_TILE_BYTES
        };
        let tile = &tiles[((row / TILE_ROWS) * blocks + b) * tb..][..tb];
        let r = row % TILE_ROWS;
        let mut u = Unpacked {
            q: [0; QK_K],
            sc: [0; 16],
            mins: [0; 8],
            d: half(tile, TILE_D + 2 * r),
            dmin: half(tile, TILE_DMIN + 2 * r),
        };
        for (v, q) in u.q.iter_mut().enumerate() {
            let (at, shift) = tile_at(r, v);
            *q = (tile[at] >> shift) & 0x0F;
            if format == Format::Q5K {
                let (at, bit) = q5k_high_at(r, v);
                *q |= ((tile[at] >> bit) & 1) << 4;
            }
        }
        let packed: [u8; 12] =
            std::array::from_fn(|j| tile[TILE_SCALES + 64 * (j / 4) + 4 * r + j % 4]);
        let (sc, mins) = scales_mins(&packed);
        for (i, s) in u.sc.iter_mut().enumerate() {
            *s = i32::from(sc[i / 2]);
        }
        for (m, &v) in u.mins.iter_mut().zip(&mins) {
            *m = i32::from(v);
        }
        u
    }

    /// Bytes of one super-block of a Q6_K tile: the low nibbles placed as Q4_K's, the high bit
    /// pairs, the scales and `d`: 16 times the file's 210.
    pub(super) const Q6K_TILE_BYTES: usize = Q6K_TILE_D + 2 * TILE_ROWS;
    /// Offsets in a Q6_K tile's super-block of the high bit pairs, the scales (sub-blocks
    /// `2i` and `2i + 1` of row `r` in bytes `32i + 2r` and `32i + 2r + 1`) and the f16 `d`.
    pub(super) const Q6K_TILE_HIGH: usize = TILE_QUANTS;
    pub(super) const Q6K_TILE_SC: usize = Q6K_TILE_HIGH + QK_K * TILE_ROWS / 4;
    pub(super) const Q6K_TILE_D: usize = Q6K_TILE_SC + 16 * TILE_ROWS;

    /// Where the high bit pair of Q6_K value `v` of tile row `row` sits: byte and shift. The
    /// 64-byte run `2t + p / 2` of the high pairs serves the nibble runs `p` of sub-block pair
    /// `t` (see `tile_at`) with `p` even and odd: shift 0 and 2 for the low and high nibbles
    /// of the even run, 4 and 6 for the odd one.
    fn q6k_high_at(row: usize, v: usize) -> (usize, u32) {
        let (t, i) = (v / 32, v % 32);
        let p = (i % 16) / 4;
        let shift = 4 * (p % 2) + if i >= 16 { 2 } else { 0 };
        (
            Q6K_TILE_HIGH + 128 * t + 64 * (p / 2) + 4 * row + i % 4,
            shift as u32,
        )
    }

    /// Q6_K rows (a multiple of `TILE_ROWS` rows of `blocks` super-blocks) in the tiled
    /// layout: per tile of sixteen rows and super-block, the low nibbles placed by `tile_at`,
    /// the high bit pairs by `q6k_high_at`, the signed scales in pairs per row, then `d`.
    pub(super) fn pack_q6k_tiles(data: &[u8], blocks: usize) -> Vec<u8> {
        const BB: usize = 210;
        let tiles = data.len() / (TILE_ROWS * blocks * BB);
        let mut out = vec![0u8; tiles * blocks * Q6K_TILE_BYTES];
        super::pack_tiles(&mut out, blocks * Q6K_TILE_BYTES, |t, chunk| {
            for (b, tile) in chunk.chunks_exact_mut(Q6K_TILE_BYTES).enumerate() {
                for row in 0..TILE_ROWS {
                    let blk = &data[((t * TILE_ROWS + row) * blocks + b) * BB..][..BB];
                    let u = unpack(Format::Q6K, blk);
                    for (v, &q) in u.q.iter().enumerate() {
                        let (at, shift) = tile_at(row, v);
                        tile[at] |= (q & 0x0F) << shift;
                        let (at, shift) = q6k_high_at(row, v);
                        tile[at] |= (q >> 4) << shift;
                    }
                    for (j, &sc) in blk[192..208].iter().enumerate() {
                        tile[Q6K_TILE_SC + 32 * (j / 2) + 2 * row + j % 2] = sc;
                    }
                    tile[Q6K_TILE_D + 2 * row..][..2].copy_from_slice(&blk[208..210]);
                }
            }
        });
        out
    }

    /// Super-block `b` of row `row` of `pack_q6k_tiles`'s output, as `unpack` gives it.
    pub(super) fn unpack_q6k_tile(tiles: &[u8], blocks: usize, row: usize, b: usize) -> Unpacked {
        let tile = &tiles[((row / TILE_ROWS) * blocks + b) * Q6K_TILE_BYTES..][..Q6K_TILE_BYTES];
        let r = row % TILE_ROWS;
        let mut u = Unpacked {
            q: [0; QK_K],
            sc: [0; 16],
            mins: [0; 8],
            d: half(tile, Q6K_TILE_D + 2 * r),
            dmin: 0.0,
        };
        for (v, q) in u.q.iter_mut().enumerate() {
            let (at, shift) = tile_at(r, v);
            let (high_at, high_shift) = q6k_high_at(r, v);
            *q = ((tile[at] >> shift) & 0x0F) | (((tile[high_at] >> high_shift) & 3) << 4);
        }
        for (j, s) in u.sc.iter_mut().enumerate() {
            *s = i32::from(tile[Q6K_TILE_SC + 32 * (j / 2) + 2 * r + j % 2] as i8);
        }
        u
    }

    /// Rounds to the nearest integer, ties to even, as llama.cpp's `nearest_int` does (valid
    /// for |v| < 2^22): adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits.
    fn nearest(v: f32) -> i32 {
        let bits = (v + 12_582_912.0).to_bits() as i32;
        (bits & 0x007f_ffff) - 0x0040_0000
    }

    /// Quantizes 256 activations as llama.cpp's Q8_K: `iscale = -127 / max` for the value of
    /// largest magnitude (the first one, keeping its sign), `q = min(127, nearest(iscale * x))`,
    /// and the sums of each 16 quants; returns the scale `d = 1 / iscale` (0 for a zero block).
    /// Matching llama.cpp here keeps greedy tokens equal to its own.
    pub(super) fn quantize_q8k(x: &[f32; QK_K], q: &mut [i8; QK_K], bsums: &mut [i16; 16]) -> f32 {
        // The largest magnitude first (a maximum, which the compiler vectorizes: the order
        // does not matter), then the first value that has it: the value a running "strictly
        // greater" scan keeps, without its serial compare-and-branch per value.
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        if amax == 0.0 {
            q.fill(0);
            bsums.fill(0);
            return 0.0;
        }
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = nearest(iscale * v).min(127) as i8;
        }
        for (s, group) in bsums.iter_mut().zip(q.chunks_exact(16)) {
            *s = group.iter().map(|&v| i16::from(v)).sum();
        }
        1.0 / iscale
    }

    /// The two exact integers every tier forms for one super-block against Q8_K activations
    /// `x` (the product's definition): `dot = Σ_s sc[s] · Σ_{v in s} q_v x_v` over the
    /// sub-blocks `s` (Q4_K, Q5_K: eight of 32 values; Q6_K: sixteen of 16), for Q6_K less its
    /// offset, `32 Σ_s sc[s] · bsums[s]` (so `Σ_s sc[s] · Σ (q_v - 32) x_v`); and (Q4_K, Q5_K)
    /// `mins = Σ_s m[s] · (bsums[2s] + bsums[2s + 1])`. Integers, so a kernel may sum them in
    /// any order. Bounds (|x| <= 127): Q4_K |dot| <= 8 · 63 · 32 · 15 · 127 < 2^25, Q5_K
    /// (q <= 31) < 2^26, Q6_K 16 · 128 · 16 · 63 · 127 < 2^28 before the offset and
    /// 16 · 128 · 16 · 32 · 127 < 2^27 after it; |mins| <= 8 · 63 · 32 · 127 < 2^21; i32
    /// holds every partial sum.
    pub(super) fn products(
        format: Format,
        u: &Unpacked,
        x: &[i8; QK_K],
        bsums: &[i16; 16],
    ) -> (i32, i32) {
        let bs = |i: usize| i32::from(bsums[i]);
        let (mut dot, mut mins) = (0i32, 0i32);
        if format == Format::Q6K {
            for s in 0..16 {
                let sum: i32 = (16 * s..16 * s + 16)
                    .map(|v| i32::from(u.q[v]) * i32::from(x[v]))
                    .sum();
                dot += u.sc[s] * (sum - 32 * bs(s));
            }
        } else {
            for s in 0..8 {
                let sum: i32 = (32 * s..32 * s + 32)
                    .map(|v| i32::from(u.q[v]) * i32::from(x[v]))
                    .sum();
                dot += u.sc[2 * s] * sum;
                mins += u.mins[s] * (bs(2 * s) + bs(2 * s + 1));
            }
        }
        (dot, mins)
    }

    /// The f32 steps of one super-block of a row's product, on the row's single accumulator,
    /// the same on every tier: `acc + (d_w · d_x) · dot`, then (Q4_K, Q5_K) `acc - (dmin_w ·
    /// d_x) · mins`, each one fused multiply-add (one rounding). `dot` and `mins` convert to
    /// f32 with round-to-nearest-even, as every tier's conversion does.
    #[inline(always)]
    pub(super) fn step(
        acc: f32,
        d: f32,
        dmin: f32,
        dx: f32,
        dot: i32,
        mins: i32,
        six: bool,
    ) -> f32 {
        let acc = (d * dx).mul_add(dot as f32, acc);
        if six {
            acc
        } else {
            (-(dmin * dx)).mul_add(mins as f32, acc)
        }
    }
}

mod tile32 {
    //! The 32-value types' rows interleaved sixteen to a tile for the AVX-512 kernels: per tile
    //! and 32-value block, each run of four values of the sixteen rows is one 64-byte register,
    //! row `r` in bytes `4r..4r + 4` (one i32 lane), so one `vpdpbusd` against four broadcast
    //! activations forms the four-value sums that the other tiers' lane `(v % 32) / 4` holds,
    //! for all sixteen rows. Exactly the file's bytes per row and block: a tile block holds the
    //! quants (Q8_0's bytes, or the 4-bit types' nibbles), then Q5_0 / Q5_1's fifth bits, then
    //! Q4_1 / Q5_1's sixteen f16 minimums `m`, then the sixteen f16 scales `d`.

    use super::{Format, QK};

    /// Weight rows per tile.
    pub(super) const ROWS: usize = 16;
    /// Offset in a Q5_0 or Q5_1 tile block of its fifth bits: per run `l` of four values a
    /// 64-bit mask, bit `4r + j` for value `4l + j` of row `r`.
    pub(super) const Q5_HIGH: usize = 256;

    /// Bytes of one block of a tile.
    pub(super) fn bytes(format: Format) -> usize {
        format.block_bytes() * ROWS
    }

    /// Offset in a tile block of the rows' f16 scales `d`: last.
    pub(super) fn d_at(format: Format) -> usize {
        (format.block_bytes() - 2) * ROWS
    }

    /// Offset in a Q4_1 or Q5_1 tile block of the rows' f16 minimums `m`: before the scales.
    pub(super) fn m_at(format: Format) -> usize {
        (format.block_bytes() - 4) * ROWS
    }

    /// Offsets in a file block of the fifth-bit mask (where the type has one) and of the
    /// quants: after `d` and, for Q4_1 / Q5_1, `m`.
    fn file_offsets(format: Format) -> (usize, usize) {
        let mask_at = if format.has_min() { 4 } else { 2 };
        let quants_at = mask_at + if format.has_high_bits() { 4 } else { 0 };
        (mask_at, quants_at)
    }

    /// Run `c` (64 bytes) of a tile block holds four bytes of each row, row `r` in bytes
    /// `4r..4r + 4`: Q8_0's values `4c..4c + 4`; for the 4-bit and 5-bit types the file's quant
    /// bytes `4c..4c + 4` as they are, whose low nibbles are values `4c..4c + 4` and high ones
    /// `16 + 4c..` (the file pairs value `i` with `16 + i`), so that masking or shifting a run
    /// gives the other tiers' lanes `c` and `c + 4`.
    fn runs(format: Format) -> usize {
        if format == Format::Q8_0 {
            QK / 4
        } else {
            QK / 8
        }
    }

    /// Rows of a 32-value type as the file stores them (a multiple of `ROWS` rows of `blocks`
    /// blocks) in tiles; empty for the K-quants. Fifth bits: value `4l + j` of row `r` is bit
    /// `4r + j` of run `l`'s 64-bit mask, i.e. the row's four bits `(mask >> 4l) & 0xF` are
    /// nibble `r` of it.
    pub(super) fn pack(format: Format, data: &[u8], blocks: usize) -> Vec<u8> {
        if format.is_k() || data.is_empty() {
            return Vec::new();
        }
        let (bb, tb) = (format.block_bytes(), bytes(format));
        let (mask_at, quants_at) = file_offsets(format);
        let mut out = vec![0u8; data.len()];
        super::pack_tiles(&mut out, blocks * tb, |t, chunk| {
            for (b, tile) in chunk.chunks_exact_mut(tb).enumerate() {
                for row in 0..ROWS {
                    let blk = &data[((t * ROWS + row) * blocks + b) * bb..][..bb];
                    tile[d_at(format) + 2 * row..][..2].copy_from_slice(&blk[..2]);
                    if format.has_min() {
                        tile[m_at(format) + 2 * row..][..2].copy_from_slice(&blk[2..4]);
                    }
                    for c in 0..runs(format) {
                        tile[64 * c + 4 * row..][..4]
                            .copy_from_slice(&blk[quants_at + 4 * c..][..4]);
                    }
                    if format.has_high_bits() {
                        let m = &blk[mask_at..mask_at + 4];
                        let mask = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
                        for l in 0..QK / 4 {
                            let bits = ((mask >> (4 * l)) & 0x0F) as u8;
                            tile[Q5_HIGH + 8 * l + row / 2] |= bits << (4 * (row % 2));
                        }
                    }
                }
            }
        });
        out
    }

    /// Row `row` of `pack`'s output as the file's blocks.
    pub(super) fn unpack_row(format: Format, tiles: &[u8], blocks: usize, row: usize) -> Vec<u8> {
        let (bb, tb) = (format.block_bytes(), bytes(format));
        let (mask_at, quants_at) = file_offsets(format);
        let r = row % ROWS;
        let mut out = vec![0u8; blocks * bb];
        for (b, blk) in out.chunks_exact_mut(bb).enumerate() {
            let tile = &tiles[((row / ROWS) * blocks + b) * tb..][..tb];
            blk[..2].copy_from_slice(&tile[d_at(format) + 2 * r..][..2]);
            if format.has_min() {
                blk[2..4].copy_from_slice(&tile[m_at(format) + 2 * r..][..2]);
            }
            for c in 0..runs(format) {
                blk[quants_at + 4 * c..][..4].copy_from_slice(&tile[64 * c + 4 * r..][..4]);
            }
            if format.has_high_bits() {
                let mask = (0..QK / 4).fold(0u32, |mask, l| {
                    let bits = (tile[Q5_HIGH + 8 * l + r / 2] >> (4 * (r % 2))) & 0x0F;
                    mask | u32::from(bits) << (4 * l)
                });
                blk[mask_at..mask_at + 4].copy_from_slice(&mask.to_le_bytes());
            }
        }
        out
    }
}

/// Fills `out`, tiles of `per_tile` bytes each (one tile: sixteen rows, every block), by
/// `fill(t, tile t's bytes)` over the thread pool: packing at load is a pass over the whole
/// model, each tile written alone.
fn pack_tiles(out: &mut [u8], per_tile: usize, fill: impl Fn(usize, &mut [u8]) + Sync) {
    if per_tile == 0 {
        return;
    }
    par_pieces(
        out.chunks_mut(per_tile).enumerate().collect(),
        |(t, tile)| fill(t, tile),
    );
}

/// Threads that `par_items` spreads work over: the calling thread and its helpers.
fn pool_threads() -> usize {
    helpers().threads.len() + 1
}

/// The helper threads and the job they pick up next.
struct Helpers {
    /// The latest job; a helper that finds an older or finished one just returns from it.
    job: Mutex<Option<Arc<Claims>>>,
    /// Bumped for every new job, so that waiting helpers notice it.
    generation: AtomicUsize,
    threads: Vec<std::thread::Thread>,
}

/// How long an idle helper spins for the next job before it parks. Decode calls come every
/// few tens of microseconds, so helpers stay awake through a generation; waking a parked
/// thread costs more than many small matvecs on a virtual machine.
const HELPER_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The helpers, started on first use: one fewer than candle's thread count (RAYON_NUM_THREADS,
/// else the physical cores this process may use), so that they and the calling thread fill the
/// cores without a third thread contending for two. Fewer (or none: all work on the caller) if
/// threads cannot be started.
fn helpers() -> &'static Helpers {
    static HELPERS: std::sync::OnceLock<Helpers> = std::sync::OnceLock::new();
    HELPERS.get_or_init(|| {
        let count = candle_core::utils::get_num_threads().saturating_sub(1);
        let threads = (0..count)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("quant-matmul-{i}"))
                    .spawn(helper_loop)
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .collect();
        Helpers {
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            threads,
        }
    })
}

fn helper_loop() {
    let board = helpers();
    let mut seen = 0;
    loop {
        let started = std::time::Instant::now();
        let mut spins = 0u32;
        loop {
            let generation = board.generation.load(Ordering::Acquire);
            if generation != seen {
                seen = generation;
                break;
            }
            spins = spins.wrapping_add(1);
            // Reading the clock every 64 spins keeps its cost out of the wake-up latency.
            if !spins.is_multiple_of(64) || started.elapsed() < HELPER_SPIN {
                std::hint::spin_loop();
            } else {
                // `par_items` unparks after bumping the generation, so no job is missed.
                std::thread::park();
            }
        }
        let job = board
            .job
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(job) = job {
            job.run();
        }
    }
}

/// Runs `f(0)` .. `f(items - 1)` on the calling thread and the helpers, all claiming items
/// from one counter. The caller never waits for a helper that has not started (a late helper
/// finds the counter spent and leaves), and when it must wait for an item in progress it
/// sleeps rather than spins, so a helper that the OS preempted can be moved onto the caller's
/// core. A spin barrier (candle's pool) instead holds a core while it waits for a thread that
/// has none: on two cores with one busy process beside it, one decode step's 210 SmolLM2
/// projections took 140 ms that way and 9 ms this way (about 4.6 ms either way on idle cores).
///
/// A panic in `f` on a helper ends that helper and is raised again on the caller once all
/// claimed items have finished.
pub(crate) fn par_items(items: usize, f: impl Fn(usize) + Sync) {
    let board = helpers();
    if items <= 1 || board.threads.is_empty() {
        (0..items).for_each(f);
        return;
    }
    let work: &(dyn Fn(usize) + Sync) = &f;
    // SAFETY: only the lifetime is erased. `work` is called only for a claimed item, claims
    // stop once `next` passes `items`, and `PendingItems` below does not let this function
    // return (or unwind) before every claimed item has finished; helpers that run later only
    // touch the reference-counted counters.
    let work: *const (dyn Fn(usize) + Sync + 'static) = unsafe { std::mem::transmute(work) };
    let shared = Arc::new(Claims {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: std::sync::atomic::AtomicBool::new(false),
        items,
        work,
        caller: std::thread::current(),
    });
    *board.job.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&shared));
    board.generation.fetch_add(1, Ordering::Release);
    // Cheap for a spinning helper (no system call), and wakes a parked one.
    for (i, thread) in board.threads.iter().enumerate() {
        if i + 1 < items {
            thread.unpark();
        }
    }
    let pending = PendingItems(&shared);
    shared.run();
    drop(pending);
    assert!(
        !shared.panicked.load(Ordering::Relaxed),
        "a quant-matmul helper thread panicked"
    );
}

/// The item counters of one `par_items` call.
struct Claims {
    /// The next item to claim; grows past `items` once all are claimed.
    next: AtomicUsize,
    /// Items finished (or given up by a panicking caller).
    done: AtomicUsize,
    /// Set when an item's work panicked.
    panicked: std::sync::atomic::AtomicBool,
    items: usize,
    work: *const (dyn Fn(usize) + Sync),
    caller: std::thread::Thread,
}

// SAFETY: `work` points at a `Sync` closure and is only called as `par_items` allows.
unsafe impl Send for Claims {}
// SAFETY: as above; the counters are atomics.
unsafe impl Sync for Claims {}

impl Claims {
    fn run(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.items {
                return;
            }
            let finished = FinishedItem(self);
            // SAFETY: item `i` is claimed and not finished, so `par_items` is still waiting
            // and the closure is alive.
            unsafe { (*self.work)(i) };
            drop(finished);
        }
    }
}

/// Counts an item as finished when dropped, also when its work panics.
struct FinishedItem<'a>(&'a Claims);

impl Drop for FinishedItem<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.panicked.store(true, Ordering::Relaxed);
        }
        // Release: the item's writes happen before the caller sees it finished.
        if self.0.done.fetch_add(1, Ordering::Release) + 1 == self.0.items {
            self.0.caller.unpark();
        }
    }
}

/// Held by the caller of `par_items`: on drop, gives up unclaimed items (only left when the
/// caller's own work panicked) and waits until every claimed item has finished.
struct PendingItems<'a>(&'a Claims);

impl Drop for PendingItems<'_> {
    fn drop(&mut self) {
        let claims = self.0;
        while claims.next.fetch_add(1, Ordering::Relaxed) < claims.items {
            claims.done.fetch_add(1, Ordering::Relaxed);
        }
        let mut spins = 0u32;
        while claims.done.load(Ordering::Acquire) < claims.items {
            // Items take microseconds: spin briefly, then sleep so that the core is free for
            // the thread we wait for (the last helper unparks us).
            if spins < 256 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::park_timeout(std::time::Duration::from_micros(200));
            }
        }
    }
}

/// `par_items` over owned pieces (e.g. disjoint `&mut` slices), each handed out once.
pub(crate) fn par_pieces<T: Send>(pieces: Vec<T>, f: impl Fn(T) + Sync) {
    if pieces.len() <= 1 {
        pieces.into_iter().for_each(f);
        return;
    }
    // The (never contended) locks let the pool's shared closure take each piece by value.
    let pieces: Vec<Mutex<Option<T>>> = pieces.into_iter().map(|p| Mutex::new(Some(p))).collect();
    par_items(pieces.len(), |i| {
        let piece = pieces[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(piece) = piece {
            f(piece);
        }
    });
}

#[cfg(target_arch = "aarch64")]
mod neon {
    //! The NEON kernels for aarch64: the integer lanes and f32 operations of
    //! `super::dot_scalar` and `super::dot_k_scalar`, in the same order, so a product has the
    //! same bits as on every other tier. NEON is part of every aarch64 target; the dotprod
    //! extension (`sdot`: four byte products summed into an i32 lane) is not, so each kernel
    //! comes twice: with `sdot`, and with widening multiplies and pairwise adds, which form
    //! the same exact integers.

    use super::{Activations, Format, Output, QuantMatrix, QK, QK_K, SCALE_GROUP};
    use half::f16;
    use std::arch::aarch64::*;
    use std::arch::asm;

    use super::kind::*;

    /// Weight rows `first..first + count` against every activation row, into those columns
    /// of `y`, with `sdot`.
    ///
    /// # Safety
    /// The CPU must have the dotprod extension; `first + count <= w.rows`, and no other
    /// thread writes columns `first..first + count` of `y` meanwhile.
    #[target_feature(enable = "dotprod")]
    pub(super) unsafe fn rows_times_dotprod(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        rows_times::<true>(w, acts, first, count, y)
    }

    /// As `rows_times_dotprod`, for any aarch64 CPU.
    ///
    /// # Safety
    /// `first + count <= w.rows`, and no other thread writes columns `first..first + count`
    /// of `y` meanwhile.
    pub(super) unsafe fn rows_times_plain(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        rows_times::<false>(w, acts, first, count, y)
    }

    // `inline(always)` from here down: the bodies must land in `rows_times_dotprod`, whose
    // target feature lets the assembler accept `sdot`.
    #[inline(always)]
    unsafe fn rows_times<const DOT: bool>(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        match w.format {
            Format::Q4_0 => rows_kind::<DOT, Q4_0>(w, acts, first, count, y),
            Format::Q4_1 => rows_kind::<DOT, Q4_1>(w, acts, first, count, y),
            Format::Q8_0 => rows_kind::<DOT, Q8_0>(w, acts, first, count, y),
            Format::Q5_0 => rows_kind::<DOT, Q5_0>(w, acts, first, count, y),
            Format::Q5_1 => rows_kind::<DOT, Q5_1>(w, acts, first, count, y),
            Format::Q4K => rows_kind::<DOT, Q4K>(w, acts, first, count, y),
            Format::Q5K => rows_kind::<DOT, Q5K>(w, acts, first, count, y),
            Format::Q6K => rows_kind::<DOT, Q6K>(w, acts, first, count, y),
        }
    }

    #[inline(always)]
    unsafe fn rows_kind<const DOT: bool, const KIND: u8>(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        // The kernels read quants through raw pointers: these bounds cover every read.
        assert!(first + count <= w.rows && acts.qs.len() >= acts.rows * w.cols);
        assert!(w.weights.qs.len() >= (w.rows - w.tiled) * w.blocks * w.format.quant_bytes());
        if KIND >= Q4K {
            assert!(
                acts.stride == w.blocks
                    && acts.d.len() >= acts.rows * w.blocks
                    && acts.bsums.len() >= acts.rows * w.blocks * 16
            );
        }
        for j in first..first + count {
            for r in 0..acts.rows {
                let v = if KIND >= Q4K {
                    dot_k::<DOT, KIND>(w, j, acts, r)
                } else {
                    dot::<DOT, KIND>(w, j, acts, r)
                };
                y.set(r, j, v);
            }
        }
    }

    /// `acc` plus, in i32 lane `i`, the sum of the products of bytes `4i..4i + 4` of `a` and
    /// `b` (signed). `DOT` only where the CPU has dotprod.
    #[inline(always)]
    unsafe fn dot4<const DOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        if DOT {
            // `vdotq_s32` is not stable Rust yet; this is the instruction it stands for.
            let mut acc = acc;
            asm!(
                "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
                inout(vreg) acc,
                in(vreg) a,
                in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
            acc
        } else {
            // Byte products fit i16 (|a * b| <= 128 * 128); pairs of them to i32, then pairs
            // of pairs: lane i sums bytes 4i..4i + 4, as `sdot` does.
            let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let hi = vmull_high_s8(a, b);
            vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)))
        }
    }

    /// Sixteen bits of a Q5 mask as sixteen bytes, byte `i` 0x10 where bit `i` is set.
    #[inline(always)]
    unsafe fn fifth_bits(bits: u16) -> uint8x16_t {
        let spread = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
        let select = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
        vandq_u8(vtstq_u8(spread, select), vdupq_n_u8(0x10))
    }

    /// The eight f32 lanes (0-3 in `lo`, 4-7 in `hi`) summed as the scalar tier sums them:
    /// `((0+4)+(2+6))+((1+5)+(3+7))`.
    #[inline(always)]
    unsafe fn hsum(lo: float32x4_t, hi: float32x4_t) -> f32 {
        let s = vaddq_f32(lo, hi);
        let t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
        vget_lane_f32::<0>(t) + vget_lane_f32::<1>(t)
    }

    /// One weight row of 32-value blocks against one activation row: `super::dot_scalar`'s
    /// lanes. A block's 32 quants are two 16-byte registers, whose `dot4` lanes are f32 lanes
    /// 0-3 and 4-7; 4-bit weights enter as unsigned nibbles (Q5's fifth bit or'ed in), Q8_0's
    /// as the signed bytes they are.
    #[inline(always)]
    unsafe fn dot<const DOT: bool, const KIND: u8>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> f32 {
        let qb = if KIND == Q8_0 { QK } else { QK / 2 };
        let blocks = w.blocks;
        // Rows after the tiles (the NEON tiers never see tiled ones).
        let row = row - w.tiled;
        let wq = w.weights.qs.as_ptr().add(row * blocks * qb);
        let xq = acts.qs.as_ptr().add(r * w.cols);
        let (ws, xs) = (row * w.stride, r * acts.stride);
        let has_min = KIND == Q4_1 || KIND == Q5_1;
        let five = KIND == Q5_0 || KIND == Q5_1;
        let low4 = vdupq_n_u8(0x0F);
        let zero = vdupq_n_s32(0);
        let (mut lo, mut hi) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        for base in (0..blocks).step_by(SCALE_GROUP) {
            if KIND != Q8_0 {
                // The scale arrays are padded to whole groups with zeros.
                let ow = if has_min {
                    &w.weights.m[ws + base..ws + base + SCALE_GROUP]
                } else {
                    &w.weights.d[ws + base..ws + base + SCALE_GROUP]
                };
                let ow: [f32; SCALE_GROUP] = std::array::from_fn(|l| ow[l].to_f32());
                let off = &acts.off[xs + base..xs + base + SCALE_GROUP];
                lo = vfmaq_f32(lo, vld1q_f32(ow.as_ptr()), vld1q_f32(off.as_ptr()));
                hi = vfmaq_f32(
                    hi,
                    vld1q_f32(ow.as_ptr().add(4)),
                    vld1q_f32(off.as_ptr().add(4)),
                );
            }
            for b in base..(base + SCALE_GROUP).min(blocks) {
                let (w0, w1) = if KIND == Q8_0 {
                    let p = wq.add(b * QK).cast::<i8>();
                    (vld1q_s8(p), vld1q_s8(p.add(16)))
                } else {
                    let v = vld1q_u8(wq.add(b * qb));
                    let (mut l, mut h) = (vandq_u8(v, low4), vshrq_n_u8::<4>(v));
                    if five {
                        let mask = w.weights.qh[row * blocks + b];
                        l = vorrq_u8(l, fifth_bits(mask as u16));
                        h = vorrq_u8(h, fifth_bits((mask >> 16) as u16));
                    }
                    (vreinterpretq_s8_u8(l), vreinterpretq_s8_u8(h))
                };
                let x = xq.add(b * QK);
                let p0 = dot4::<DOT>(zero, w0, vld1q_s8(x));
                let p1 = dot4::<DOT>(zero, w1, vld1q_s8(x.add(16)));
                let scale = vdupq_n_f32(w.weights.d[ws + b].to_f32() * acts.d[xs + b]);
                lo = vfmaq_f32(lo, scale, vcvtq_f32_s32(p0));
                hi = vfmaq_f32(hi, scale, vcvtq_f32_s32(p1));
            }
        }
        hsum(lo, hi)
    }

    /// One weight row of K-quant super-blocks against one activation row: per super-block
    /// eight i32 lanes (0-3 from the first 16 values of every 32, 4-7 from the other 16; each
    /// 16 values share one scale) summed to the exact integers of `super::kquant::products`,
    /// then `super::dot_k_scalar`'s f32 steps.
    #[inline(always)]
    unsafe fn dot_k<const DOT: bool, const KIND: u8>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> f32 {
        let bb = w.format.block_bytes();
        let blocks = w.blocks;
        let low4 = vdupq_n_u8(0x0F);
        let zero = vdupq_n_s32(0);
        let mut acc = 0f32;
        for b in 0..blocks {
            let blk = &w.weights.qs[((row - w.tiled) * blocks + b) * bb..][..bb];
            let bp = blk.as_ptr();
            let x = acts.qs.as_ptr().add(r * w.cols + b * QK_K);
            let at = r * acts.stride + b;
            let bs = &acts.bsums[at * 16..at * 16 + 16];
            let (bs0, bs1) = (vld1q_s16(bs.as_ptr()), vld1q_s16(bs.as_ptr().add(8)));
            // Integer lanes 0-3 and 4-7.
            let (mut dlo, mut dhi) = (zero, zero);
            let (mut mlo, mut mhi) = (zero, zero);
            let (d, dmin);
            if KIND == Q6K {
                d = f16::from_le_bytes([blk[208], blk[209]]).to_f32();
                dmin = 0.0;
                let sc = &blk[192..208];
                let three = vdupq_n_u8(3);
                for h in 0..2 {
                    for part in 0..2 {
                        let o = 16 * part;
                        let a = vld1q_u8(bp.add(64 * h + o));
                        let c = vld1q_u8(bp.add(64 * h + 32 + o));
                        let qh = vld1q_u8(bp.add(128 + 32 * h + o));
                        let regs = [
                            vorrq_u8(vandq_u8(a, low4), vshlq_n_u8::<4>(vandq_u8(qh, three))),
                            vorrq_u8(
                                vandq_u8(c, low4),
                                vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(qh), three)),
                            ),
                            vorrq_u8(
                                vshrq_n_u8::<4>(a),
                                vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(qh), three)),
                            ),
                            vorrq_u8(vshrq_n_u8::<4>(c), vshlq_n_u8::<4>(vshrq_n_u8::<6>(qh))),
                        ];
                        // Register `reg` holds values 128h + 32reg + o + (0..16): sub-block
                        // (8h + 2reg + part) of sixteen.
                        for (reg, &q) in regs.iter().enumerate() {
                            let chunk = 4 * h + reg;
                            let s = i32::from(sc[2 * chunk + part] as i8);
                            let xv = vld1q_s8(x.add(32 * chunk + o));
                            let p = dot4::<DOT>(zero, vreinterpretq_s8_u8(q), xv);
                            if part == 0 {
                                dlo = vmlaq_n_s32(dlo, p, s);
                            } else {
                                dhi = vmlaq_n_s32(dhi, p, s);
                            }
                        }
                    }
                }
                // The offset 32 of every quant: lane l less 32 * (sc[2l] * bsums[2l] +
                // sc[2l + 1] * bsums[2l + 1]).
                let sc0 = vmovl_s8(vld1_s8(sc.as_ptr().cast()));
                let sc1 = vmovl_s8(vld1_s8(sc.as_ptr().add(8).cast()));
                let off = |bs: int16x8_t, sc: int16x8_t| {
                    vpaddq_s32(
                        vmull_s16(vget_low_s16(bs), vget_low_s16(sc)),
                        vmull_high_s16(bs, sc),
                    )
                };
                dlo = vsubq_s32(dlo, vshlq_n_s32::<5>(off(bs0, sc0)));
                dhi = vsubq_s32(dhi, vshlq_n_s32::<5>(off(bs1, sc1)));
            } else {
                d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                dmin = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
                let packed: &[u8; 12] = blk[4..16].try_into().expect("12 scale bytes");
                let (sc, m) = super::kquant::scales_mins(packed);
                let qs = bp.add(if KIND == Q5K { 48 } else { 16 });
                for j in 0..4 {
                    // Values 64j + (0..32) are the low nibbles, 64j + 32 + (0..32) the high.
                    let (s_lo, s_hi) = (i32::from(sc[2 * j]), i32::from(sc[2 * j + 1]));
                    for part in 0..2 {
                        let o = 16 * part;
                        let v = vld1q_u8(qs.add(32 * j + o));
                        let (mut ql, mut qh) = (vandq_u8(v, low4), vshrq_n_u8::<4>(v));
                        if KIND == Q5K {
                            // Bits 2j and 2j + 1 of the high-bit bytes, moved to bit 4.
                            let high = vld1q_u8(bp.add(16 + o));
                            let sixteen = vdupq_n_u8(0x10);
                            let shift = 4 - 2 * j as i8;
                            ql = vorrq_u8(ql, vandq_u8(vshlq_u8(high, vdupq_n_s8(shift)), sixteen));
                            qh = vorrq_u8(
                                qh,
                                vandq_u8(vshlq_u8(high, vdupq_n_s8(shift - 1)), sixteen),
                            );
                        }
                        let at_x = 64 * j + o;
                        let p_lo =
                            dot4::<DOT>(zero, vreinterpretq_s8_u8(ql), vld1q_s8(x.add(at_x)));
                        let p_hi =
                            dot4::<DOT>(zero, vreinterpretq_s8_u8(qh), vld1q_s8(x.add(at_x + 32)));
                        let acc = if part == 0 { &mut dlo } else { &mut dhi };
                        *acc = vmlaq_n_s32(vmlaq_n_s32(*acc, p_lo, s_lo), p_hi, s_hi);
                    }
                }
                // Lane l: m[l] * (bsums[2l] + bsums[2l + 1]).
                let m: [i32; 8] = std::array::from_fn(|l| i32::from(m[l]));
                mlo = vmulq_s32(vpaddlq_s16(bs0), vld1q_s32(m.as_ptr()));
                mhi = vmulq_s32(vpaddlq_s16(bs1), vld1q_s32(m.as_ptr().add(4)));
            }
            acc = super::kquant::step(
                acc,
                d,
                dmin,
                acts.d[at],
                vaddvq_s32(vaddq_s32(dlo, dhi)),
                vaddvq_s32(vaddq_s32(mlo, mhi)),
                KIND == Q6K,
            );
        }
        acc
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The AVX2 kernels. Every function here requires avx2, fma and f16c.

    use super::{Activations, Format, Output, QuantMatrix, QK, QK_K, SCALE_GROUP};
    use half::f16;
    use std::arch::x86_64::*;

    use super::kind::*;

    /// See `super::quantize_block_scalar`; identical results.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_block(x: &[f32; QK], q: &mut [i8; QK]) -> (f16, i32) {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let sign = _mm256_set1_ps(-0.0);
        let abs = |a| _mm256_andnot_ps(sign, a);
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let amax = _mm_cvtss_f32(m);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        // f32::round rounds ties away from zero; the SIMD nearest mode rounds them to even,
        // so round toward zero and step away when the dropped fraction is at least a half.
        let round = |a| {
            let s = _mm256_mul_ps(a, id);
            let t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            let frac = abs(_mm256_sub_ps(s, t));
            let step = _mm256_or_ps(_mm256_and_ps(s, sign), one);
            let away = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), step);
            _mm256_cvtps_epi32(_mm256_add_ps(t, away))
        };
        let i = [round(v[0]), round(v[1]), round(v[2]), round(v[3])];
        let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let sum = _mm_hadd_epi32(sum, sum);
        let sum = _mm_hadd_epi32(sum, sum);
        // The packs work per 128-bit lane; the permute puts the four 8-value runs back in order.
        let w16a = _mm256_packs_epi32(i[0], i[1]);
        let w16b = _mm256_packs_epi32(i[2], i[3]);
        let w8 = _mm256_packs_epi16(w16a, w16b);
        let w8 = _mm256_permutevar8x32_epi32(w8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr().cast(), w8);
        (f16::from_f32(d), _mm_cvtsi128_si32(sum))
    }

    /// Weight rows `first..first + count` against every activation row, into those columns
    /// of `y`: pairs of weight rows against tiles of four activation rows, so each unpacked
    /// weight block serves four activation rows and each activation block two weight rows.
    ///
    /// # Safety
    /// avx2, fma and f16c must be available; `first + count <= w.rows`, and no other thread
    /// writes columns `first..first + count` of `y` meanwhile.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_times(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        match w.format {
            Format::Q4_0 => rows_times_kind::<Q4_0>(w, acts, first, count, y),
            Format::Q4_1 => rows_times_kind::<Q4_1>(w, acts, first, count, y),
            Format::Q8_0 => rows_times_kind::<Q8_0>(w, acts, first, count, y),
            Format::Q5_0 => rows_times_kind::<Q5_0>(w, acts, first, count, y),
            Format::Q5_1 => rows_times_kind::<Q5_1>(w, acts, first, count, y),
            Format::Q4K => rows_times_kind::<Q4K>(w, acts, first, count, y),
            Format::Q5K => rows_times_kind::<Q5K>(w, acts, first, count, y),
            Format::Q6K => rows_times_kind::<Q6K>(w, acts, first, count, y),
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_times_kind<const KIND: u8>(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        assert!(first + count <= w.rows && acts.qs.len() >= acts.rows * w.cols);
        if KIND >= Q4K {
            assert!(
                acts.d.len() >= acts.rows * w.blocks
                    && acts.bsums.len() >= acts.rows * w.blocks * 16
                    && acts.stride == w.blocks
                    && w.weights.qs.len() >= (w.rows - w.tiled) * w.blocks * w.format.block_bytes()
            );
        }
        tiled_rows::<Avx2Tiles, KIND>(w, acts, first, count, y);
    }

    /// The tile kernels of one SIMD tier: dot products of weight rows `row..row + W` with
    /// activation rows `r..r + R` for the block family `KIND`.
    pub(super) trait Tiles {
        /// # Safety
        /// The tier's CPU features were detected; the rows are in bounds.
        unsafe fn tile<const KIND: u8, const W: usize, const R: usize>(
            w: &QuantMatrix,
            row: usize,
            acts: &Activations,
            r: usize,
        ) -> [[f32; R]; W];
    }

    /// This tier's tiles.
    struct Avx2Tiles;

    impl Tiles for Avx2Tiles {
        #[inline(always)]
        unsafe fn tile<const KIND: u8, const W: usize, const R: usize>(
            w: &QuantMatrix,
            row: usize,
            acts: &Activations,
            r: usize,
        ) -> [[f32; R]; W] {
            any_tile::<KIND, W, R>(w, row, acts, r)
        }
    }

    /// Weight rows `first..first + count` times every activation row, tile by tile with `T`'s
    /// kernels: the tiling every x86 tier shares. Inlined into each tier's `target_feature`
    /// function, so that its tiles inline there too.
    ///
    /// # Safety
    /// As `T::tile`; the columns of these rows are this call's alone.
    #[inline(always)]
    pub(super) unsafe fn tiled_rows<T: Tiles, const KIND: u8>(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        let m = acts.rows;
        let mut j = 0;
        while j < count {
            // A single activation row (decode) takes four weight rows at a time: more
            // independent accumulators and more memory streams in flight.
            if m == 1 && count - j >= 4 {
                let out = T::tile::<KIND, 4, 1>(w, first + j, acts, 0);
                for (jw, o) in out.iter().enumerate() {
                    y.set(0, first + j + jw, o[0]);
                }
                j += 4;
                continue;
            }
            let pair = count - j >= 2;
            let mut r = 0;
            while r < m {
                let left = m - r;
                let row = first + j;
                macro_rules! tile {
                    ($w:literal, $r:literal) => {{
                        let out = T::tile::<KIND, $w, $r>(w, row, acts, r);
                        for (jw, o) in out.iter().enumerate() {
                            for (k, &v) in o.iter().enumerate() {
                                y.set(r + k, row + jw, v);
                            }
                        }
                        $r
                    }};
                }
                r += match (pair, left) {
                    (true, 4..) => tile!(2, 4),
                    (true, 3) => tile!(2, 3),
                    (true, 2) => tile!(2, 2),
                    (true, _) => tile!(2, 1),
                    (false, 4..) => tile!(1, 4),
                    (false, 3) => tile!(1, 3),
                    (false, 2) => tile!(1, 2),
                    (false, _) => tile!(1, 1),
                };
            }
            j += if pair { 2 } else { 1 };
        }
    }

    /// The tile of `KIND`'s block family.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn any_tile<const KIND: u8, const W: usize, const R: usize>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; R]; W] {
        if KIND >= Q4K {
            ktile::<KIND, W, R>(w, row, acts, r)
        } else {
            tile::<KIND, W, R>(w, row, acts, r)
        }
    }

    /// The 32 bits of a Q5 mask as 32 bytes, byte `i` 0x10 where bit `i` is set: each byte
    /// picks the mask byte holding its bit, then tests its own bit.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn fifth_bits(mask: u32) -> __m256i {
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(mask as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                3, 3, 3, 3,
            ),
        );
        let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bits), bits);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }

    /// Shuffle control that copies 16-bit element `e` of each 128-bit half to all of it.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn word_broadcast(low: i16, high: i16) -> __m256i {
        let pick = |e: i16| _mm_set1_epi16(((2 * e + 1) << 8) | (2 * e));
        _mm256_set_m128i(pick(high), pick(low))
    }

    /// Dot products of K-quant weight rows `row..row + W` with activation rows `r..r + R`,
    /// computing what `super::dot_k_scalar` computes (see `super::kquant::products`): per
    /// 32-value register of unsigned quants, `maddubs` against the activations (pairs of
    /// u8 x i8 to i16: at most 2 * 63 * 127, no saturation), then `madd` against the sub-block
    /// scales as 16-bit words (pairs to i32), summed over the super-block in eight i32 lanes
    /// and then across them: the exact integer `dot`. The minimums (and Q6_K's offset 32) meet
    /// the activations' 16-value sums with one `madd`, summed likewise.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn ktile<const KIND: u8, const W: usize, const R: usize>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; R]; W] {
        let bb = match KIND {
            Q4K => 144,
            Q5K => 176,
            _ => 210,
        };
        let (blocks, cols) = (w.blocks, w.cols);
        let wb: [*const u8; W] =
            std::array::from_fn(|i| w.weights.qs.as_ptr().add((row - w.tiled + i) * blocks * bb));
        let xq: [*const i8; R] = std::array::from_fn(|k| acts.qs.as_ptr().add((r + k) * cols));
        let xd: [*const f32; R] = std::array::from_fn(|k| acts.d.as_ptr().add((r + k) * blocks));
        let xs: [*const i16; R] =
            std::array::from_fn(|k| acts.bsums.as_ptr().add((r + k) * blocks * 16));
        let low4 = _mm256_set1_epi8(0x0F);
        let mut acc = [[0f32; R]; W];
        for b in 0..blocks {
            for p in wb.iter() {
                let ahead = p.wrapping_add(W * blocks * bb + b * bb);
                for line in (0..bb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
            }
            for i in 0..W {
                let blk = wb[i].add(b * bb);
                let mut dot = [_mm256_setzero_si256(); R];
                let mut mins = [_mm256_setzero_si256(); R];
                let (d, dmin);
                if KIND == Q6K {
                    d = f16::from_le_bytes([*blk.add(208), *blk.add(209)]).to_f32();
                    dmin = 0.0;
                    let three = _mm256_set1_epi8(3);
                    for h in 0..2 {
                        let qa = _mm256_loadu_si256(blk.add(64 * h).cast());
                        let qb = _mm256_loadu_si256(blk.add(64 * h + 32).cast());
                        let qh = _mm256_loadu_si256(blk.add(128 + 32 * h).cast());
                        let regs = [
                            _mm256_or_si256(
                                _mm256_and_si256(qa, low4),
                                _mm256_slli_epi16::<4>(_mm256_and_si256(qh, three)),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(qb, low4),
                                _mm256_slli_epi16::<4>(_mm256_and_si256(
                                    _mm256_srli_epi16::<2>(qh),
                                    three,
                                )),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(qa), low4),
                                _mm256_slli_epi16::<4>(_mm256_and_si256(
                                    _mm256_srli_epi16::<4>(qh),
                                    three,
                                )),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16::<4>(qb), low4),
                                _mm256_slli_epi16::<4>(_mm256_and_si256(
                                    _mm256_srli_epi16::<6>(qh),
                                    three,
                                )),
                            ),
                        ];
                        let sc8 = _mm_loadl_epi64(blk.add(192 + 8 * h).cast());
                        let sc = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8));
                        for (reg, &q) in regs.iter().enumerate() {
                            let e = 2 * reg as i16;
                            let s = _mm256_shuffle_epi8(sc, word_broadcast(e, e + 1));
                            let at = b * QK_K + 128 * h + 32 * reg;
                            for k in 0..R {
                                let x = _mm256_loadu_si256(xq[k].add(at).cast());
                                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), s);
                                dot[k] = _mm256_add_epi32(dot[k], p);
                            }
                        }
                    }
                    let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast()));
                    for k in 0..R {
                        let bs = _mm256_loadu_si256(xs[k].add(b * 16).cast());
                        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc));
                        dot[k] = _mm256_sub_epi32(dot[k], off);
                    }
                } else {
                    d = f16::from_le_bytes([*blk, *blk.add(1)]).to_f32();
                    dmin = f16::from_le_bytes([*blk.add(2), *blk.add(3)]).to_f32();
                    let packed: &[u8; 12] = &*blk.add(4).cast::<[u8; 12]>();
                    let (sc8, m8) = super::kquant::scales_mins(packed);
                    let sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                        sc8.as_ptr().cast(),
                    )));
                    let m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(m8.as_ptr().cast()));
                    let m16 = _mm256_set_m128i(
                        _mm_unpackhi_epi16(m16, m16),
                        _mm_unpacklo_epi16(m16, m16),
                    );
                    let qs = blk.add(if KIND == Q5K { 48 } else { 16 });
                    let high = if KIND == Q5K {
                        _mm256_loadu_si256(blk.add(16).cast())
                    } else {
                        _mm256_setzero_si256()
                    };
                    let one = _mm256_set1_epi8(1);
                    for j in 0..4 {
                        let q = _mm256_loadu_si256(qs.add(32 * j).cast());
                        let mut lo = _mm256_and_si256(q, low4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4);
                        if KIND == Q5K {
                            let bit = |shift: usize| {
                                let s = _mm_cvtsi32_si128(shift as i32);
                                _mm256_slli_epi16::<4>(_mm256_and_si256(
                                    _mm256_srl_epi16(high, s),
                                    one,
                                ))
                            };
                            lo = _mm256_or_si256(lo, bit(2 * j));
                            hi = _mm256_or_si256(hi, bit(2 * j + 1));
                        }
                        let e = 2 * j as i16;
                        let s_lo = _mm256_shuffle_epi8(sc, word_broadcast(e, e));
                        let s_hi = _mm256_shuffle_epi8(sc, word_broadcast(e + 1, e + 1));
                        let at = b * QK_K + 64 * j;
                        for k in 0..R {
                            let x_lo = _mm256_loadu_si256(xq[k].add(at).cast());
                            let x_hi = _mm256_loadu_si256(xq[k].add(at + 32).cast());
                            let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x_lo), s_lo);
                            let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x_hi), s_hi);
                            dot[k] = _mm256_add_epi32(dot[k], _mm256_add_epi32(p_lo, p_hi));
                        }
                    }
                    for k in 0..R {
                        let bs = _mm256_loadu_si256(xs[k].add(b * 16).cast());
                        mins[k] = _mm256_madd_epi16(bs, m16);
                    }
                }
                for k in 0..R {
                    acc[i][k] = super::kquant::step(
                        acc[i][k],
                        d,
                        dmin,
                        *xd[k].add(b),
                        hsum_i32(dot[k]),
                        hsum_i32(mins[k]),
                        KIND == Q6K,
                    );
                }
            }
        }
        acc
    }

    /// Sum of eight i32 lanes (exact: the callers' lanes are bounded well inside i32).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// Horizontal sum of eight f32 lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Dot products of weight rows `row..row + W` with activation rows `r..r + R`.
    ///
    /// Per block, the integer dot product comes from `maddubs` (u8 x i8 pairs summed to i16)
    /// and `madd` against ones (to i32); it is scaled by `d_w * d_x` into f32 lanes. 4-bit
    /// weights enter as unsigned nibbles (0..15), so `maddubs` can never saturate
    /// (2 * 15 * 128 < 32767); their offset (Q4_0's -8, Q4_1's m) is one term per block, added
    /// eight blocks at a time. Q8_0 weights are signed: their absolute value goes in the
    /// unsigned operand and their sign is moved onto the activation (at most 2 * 128 * 127,
    /// no saturation, because activations never reach -128).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn tile<const KIND: u8, const W: usize, const R: usize>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; R]; W] {
        let qb = if KIND == Q8_0 { QK } else { QK / 2 };
        let blocks = w.blocks;
        // Rows after the tiles: the AVX-512 tier takes the tiled ones itself.
        let row = row - w.tiled;
        let (w_stride, x_stride) = (w.stride, acts.stride);
        let wq: [*const u8; W] =
            std::array::from_fn(|i| w.weights.qs.as_ptr().add((row + i) * blocks * qb));
        let wd: [*const f16; W] =
            std::array::from_fn(|i| w.weights.d.as_ptr().add((row + i) * w_stride));
        let has_min = KIND == Q4_1 || KIND == Q5_1;
        let wm: [*const f16; W] = std::array::from_fn(|i| {
            if has_min {
                w.weights.m.as_ptr().add((row + i) * w_stride)
            } else {
                wd[i]
            }
        });
        let xq: [*const i8; R] =
            std::array::from_fn(|i| acts.qs.as_ptr().add((r + i) * blocks * QK));
        let xd: [*const f32; R] = std::array::from_fn(|i| acts.d.as_ptr().add((r + i) * x_stride));
        let xo: [*const f32; R] =
            std::array::from_fn(|i| acts.off.as_ptr().add((r + i) * x_stride));

        let ones = _mm256_set1_epi16(1);
        let low4 = _mm256_set1_epi8(0x0F);
        let mut acc = [[_mm256_setzero_ps(); R]; W];
        let mut scale = [[[0f32; SCALE_GROUP]; R]; W];
        let mut g = 0;
        while g * SCALE_GROUP < blocks {
            let base = g * SCALE_GROUP;
            // Ask for the same stretch of the next tile's weight rows now: decode streams
            // weights from memory, and the hardware prefetcher alone leaves the loads waiting.
            for row in wq.iter() {
                let ahead = row.wrapping_add(W * blocks * qb + base * qb);
                for line in (0..SCALE_GROUP * qb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
            }
            for i in 0..W {
                let dw = _mm256_cvtph_ps(_mm_loadu_si128(wd[i].add(base).cast()));
                let ow = if has_min {
                    _mm256_cvtph_ps(_mm_loadu_si128(wm[i].add(base).cast()))
                } else {
                    dw
                };
                for k in 0..R {
                    let s = _mm256_mul_ps(dw, _mm256_loadu_ps(xd[k].add(base)));
                    _mm256_storeu_ps(scale[i][k].as_mut_ptr(), s);
                    if KIND != Q8_0 {
                        let off = _mm256_loadu_ps(xo[k].add(base));
                        acc[i][k] = _mm256_fmadd_ps(ow, off, acc[i][k]);
                    }
                }
            }
            let end = (base + SCALE_GROUP).min(blocks);
            for b in base..end {
                let mut wv = [_mm256_setzero_si256(); W];
                let mut wsign = [_mm256_setzero_si256(); W];
                for i in 0..W {
                    if KIND == Q8_0 {
                        let v = _mm256_loadu_si256(wq[i].add(b * QK).cast());
                        wv[i] = _mm256_sign_epi8(v, v);
                        wsign[i] = v;
                    } else {
                        let lo = _mm_loadu_si128(wq[i].add(b * QK / 2).cast());
                        let hi = _mm_srli_epi16(lo, 4);
                        wv[i] = _mm256_and_si256(_mm256_set_m128i(hi, lo), low4);
                        if KIND == Q5_0 || KIND == Q5_1 {
                            let mask = w.weights.qh[(row + i) * blocks + b];
                            wv[i] = _mm256_or_si256(wv[i], fifth_bits(mask));
                        }
                    }
                }
                for k in 0..R {
                    let xv = _mm256_loadu_si256(xq[k].add(b * QK).cast());
                    for i in 0..W {
                        let xs = if KIND == Q8_0 {
                            _mm256_sign_epi8(xv, wsign[i])
                        } else {
                            xv
                        };
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], xs), ones);
                        let s = _mm256_broadcast_ss(&scale[i][k][b - base]);
                        acc[i][k] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(p), acc[i][k]);
                    }
                }
            }
            g += 1;
        }
        let mut out = [[0f32; R]; W];
        for i in 0..W {
            for k in 0..R {
                out[i][k] = hsum(acc[i][k]);
            }
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The AVX-512 tier: tiles of sixteen rows (every type, where tiled),
    //! and for the K-quant rows after the last tile the integers of `avx2::ktile` formed from
    //! 64-byte registers (two 32-value runs at once, the sub-block scales applied and summed by
    //! VNNI's `vpdpwssd`); the same exact integers and f32 steps as the other tiers, so its
    //! products have their bits. Untiled 32-value types keep the AVX2 kernels. Every function
    //! here requires avx512f, avx512bw, avx512vl, avx512vnni, avx2, fma and f16c.

    use super::{Activations, Format, Output, QuantMatrix, QK_K};
    use half::f16;
    use std::arch::x86_64::*;

    use super::kind::{Q4K, Q4_0, Q4_1, Q5K, Q5_0, Q5_1, Q6K, Q8_0};

    /// Word-permute indices that spread a super-block's sub-block scales (16-bit words, in the
    /// low words of a register) over the 64 values of one register. Q4_K / Q5_K register `n`
    /// holds sub-blocks 2n and 2n + 1 (32 values each); Q6_K register `n` holds scales
    /// 4n..4n + 4 (16 values each).
    const fn scale_index(six: bool, n: usize) -> [i16; 32] {
        let mut a = [0i16; 32];
        let mut t = 0;
        while t < 32 {
            a[t] = if six { 4 * n + t / 8 } else { 2 * n + t / 16 } as i16;
            t += 1;
        }
        a
    }

    static K_INDEX: [[i16; 32]; 4] = [
        scale_index(false, 0),
        scale_index(false, 1),
        scale_index(false, 2),
        scale_index(false, 3),
    ];
    static Q6_INDEX: [[i16; 32]; 4] = [
        scale_index(true, 0),
        scale_index(true, 1),
        scale_index(true, 2),
        scale_index(true, 3),
    ];

    /// Weight rows `first..first + count` against every activation row, into those columns
    /// of `y`, tiled as `avx2::rows_times` tiles them.
    ///
    /// # Safety
    /// avx512f, avx512bw, avx512vl, avx512vnni, avx2, fma and f16c must be available;
    /// `first + count <= w.rows`, and no other thread writes columns `first..first + count`
    /// of `y` meanwhile.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn rows_times(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        count: usize,
        y: &Output<'_>,
    ) {
        match w.format {
            Format::Q4K => rows_times_kind::<Q4K>(w, acts, first, count, y),
            Format::Q5K => rows_times_kind::<Q5K>(w, acts, first, count, y),
            Format::Q6K => rows_times_kind::<Q6K>(w, acts, first, count, y),
            Format::Q8_0 if w.tiled > 0 => rows_times_kind::<Q8_0>(w, acts, first, count, y),
            Format::Q5_0 if w.tiled > 0 => rows_times_kind::<Q5_0>(w, acts, first, count, y),
            Format::Q4_0 if w.tiled > 0 => rows_times_kind::<Q4_0>(w, acts, first, count, y),
            Format::Q4_1 if w.tiled > 0 => rows_times_kind::<Q4_1>(w, acts, first, count, y),
            Format::Q5_1 if w.tiled > 0 => rows_times_kind::<Q5_1>(w, acts, first, count, y),
            _ => super::avx2::rows_times(w, acts, first, count, y),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn rows_times_kind<const KIND: u8>(
        w: &QuantMatrix,
        acts: &Activations,
        mut first: usize,
        mut count: usize,
        y: &Output<'_>,
    ) {
        if first < w.tiled {
            let end = (first + count).min(w.tiled);
            k_tiles::<KIND>(w, acts, first, end, y);
            count -= end - first;
            first = end;
            if count == 0 {
                return;
            }
        }
        if KIND < Q4K {
            // The rows after the tiles.
            return super::avx2::rows_times(w, acts, first, count, y);
        }
        assert!(
            first + count <= w.rows
                && acts.qs.len() >= acts.rows * w.cols
                && acts.d.len() >= acts.rows * w.blocks
                && acts.bsums.len() >= acts.rows * w.blocks * 16
                && acts.stride == w.blocks
                && w.weights.qs.len() >= (w.rows - w.tiled) * w.blocks * w.format.block_bytes()
        );
        super::avx2::tiled_rows::<Avx512Tiles, KIND>(w, acts, first, count, y);
    }

    /// Bytes ahead of the block being read that the tile kernels ask the cache for: decode
    /// streams the tiles from memory, in order, and the hardware prefetcher alone leaves the
    /// loads waiting (prefill reads each tile from cache once per few activation rows, where
    /// the hints cost a few instructions).
    const PREFETCH_BYTES: usize = 3072;

    /// Prefetch hints for the `len` bytes `PREFETCH_BYTES` after `at` (which may lie past the
    /// tiles: a hint never faults).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    fn prefetch_ahead(at: *const u8, len: usize) {
        let ahead = at.wrapping_add(PREFETCH_BYTES);
        for line in (0..len).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
        }
    }

    /// Activation rows per pass of the K-quant tile kernels: each unpacked weight register
    /// serves this many rows' `vpdpbusd`s.
    const K_ROWS: usize = 8;

    /// Tiled rows `first..end` (whole tiles) against every activation row, into those columns
    /// of `y`: each tile against `K_ROWS` activation rows at a time (the K-quants, whose
    /// kernels keep one register per activation row) or two (the 32-value types, which keep
    /// eight: three rows' 24 accumulators left too few registers, and the spills cost more
    /// than unpacking each tile block once per two rows instead of three).
    ///
    /// # Safety
    /// As `rows_times`; `end <= w.tiled`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn k_tiles<const KIND: u8>(
        w: &QuantMatrix,
        acts: &Activations,
        first: usize,
        end: usize,
        y: &Output<'_>,
    ) {
        use super::kquant::{Q4K_TILE_BYTES, Q5K_TILE_BYTES, Q6K_TILE_BYTES, TILE_ROWS};
        let tile_bytes = match KIND {
            Q4K => Q4K_TILE_BYTES,
            Q5K => Q5K_TILE_BYTES,
            Q6K => Q6K_TILE_BYTES,
            _ => super::tile32::bytes(w.format),
        };
        // The kernel reads through raw pointers: these bounds cover every read.
        if KIND < Q4K {
            assert!(
                acts.d.len() >= acts.rows * acts.stride
                    && acts.off.len() >= acts.rows * acts.stride
                    && acts.stride >= w.blocks.next_multiple_of(super::SCALE_GROUP)
            );
        }
        assert!(
            matches!(KIND, Q4K | Q5K | Q6K | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1)
                && super::tile32::ROWS == TILE_ROWS
                && first.is_multiple_of(TILE_ROWS)
                && end.is_multiple_of(TILE_ROWS)
                && end <= w.tiled
                && w.weights.tiles.len() >= w.tiled / TILE_ROWS * w.blocks * tile_bytes
                && acts.qs.len() >= acts.rows * w.cols
                && (KIND < Q4K
                    || acts.d.len() >= acts.rows * w.blocks
                        && acts.bsums.len() >= acts.rows * w.blocks * 16
                        && acts.stride == w.blocks)
        );
        let m = acts.rows;
        for tile in first / TILE_ROWS..end / TILE_ROWS {
            let mut r = 0;
            while r < m {
                macro_rules! run {
                    ($r:tt) => {{
                        let out = match KIND {
                            Q4K | Q5K => q4k_tile::<KIND, $r>(w, tile, acts, r),
                            Q6K => q6k_tile::<$r>(w, tile, acts, r),
                            _ => tile32::<KIND, $r>(w, tile, acts, r),
                        };
                        for (k, o) in out.iter().enumerate() {
                            for (i, &v) in o.iter().enumerate() {
                                y.set(r + k, tile * TILE_ROWS + i, v);
                            }
                        }
                        $r
                    }};
                }
                r += if KIND >= Q4K {
                    match m - r {
                        K_ROWS.. => run!(K_ROWS),
                        4.. => run!(4),
                        2..=3 => run!(2),
                        _ => run!(1),
                    }
                } else if m - r >= 2 {
                    run!(2)
                } else {
                    run!(1)
                };
            }
        }
    }

    /// One tile of sixteen Q4_K or Q5_K rows against activation rows `r..r + R`, computing
    /// what `super::dot_k_scalar` computes. The rows sit in the sixteen i32 lanes: per run of
    /// four values, one `vpdpbusd` multiplies each row's four quants (u8, 0..15 or 0..31) by
    /// the same four activations (s8, broadcast) and adds them to the row's lane of the
    /// sub-block's sum, one register per activation row; once per sub-block `vpmulld` applies
    /// the rows' scales and adds the products into the super-block's `dot`. The minimums meet
    /// the activations' 16-value sums, two at a time, with `vpdpwssd`. The unpacking of the
    /// quants and of the packed scales is done once per tile and super-block for all `R`
    /// activation rows. Sums: a sub-block's |sum| <= 32 * 31 * 127 < 2^17, the scaled sums and
    /// `dot` as bounded in `super::kquant::products`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn q4k_tile<const KIND: u8, const R: usize>(
        w: &QuantMatrix,
        tile: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; 16]; R] {
        use super::kquant::{Q4K_TILE_BYTES, Q5K_TILE_BYTES, Q5K_TILE_HIGH};
        use super::kquant::{TILE_D, TILE_DMIN, TILE_SCALES};
        let tb = if KIND == Q5K {
            Q5K_TILE_BYTES
        } else {
            Q4K_TILE_BYTES
        };
        let (blocks, cols) = (w.blocks, w.cols);
        let base = w.weights.tiles.as_ptr().add(tile * blocks * tb);
        let xq: [*const i8; R] = std::array::from_fn(|k| acts.qs.as_ptr().add((r + k) * cols));
        let xd: [*const f32; R] = std::array::from_fn(|k| acts.d.as_ptr().add((r + k) * blocks));
        let xs: [*const i16; R] =
            std::array::from_fn(|k| acts.bsums.as_ptr().add((r + k) * blocks * 16));
        let low4 = _mm512_set1_epi8(0x0F);
        let fifth = _mm512_set1_epi8(0x10);
        let byte = _mm512_set1_epi32(0xFF);
        let (low6w, low4w, low2w) = (
            _mm512_set1_epi32(0x3f3f_3f3f),
            _mm512_set1_epi32(0x0f0f_0f0f),
            _mm512_set1_epi32(0x0303_0303),
        );
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let t = base.add(b * tb);
            prefetch_ahead(t.add(TILE_SCALES), tb - TILE_SCALES);
            // The rows' 12 packed bytes of scales and minimums, as three 32-bit words per
            // lane, unpacked as `super::kquant::scales_mins` does: bytes of `sc[0]` are the
            // scales of sub-blocks 0-3, of `sc[1]` those of 4-7; `mn` likewise.
            let word = |i: usize| _mm512_loadu_si512(t.add(TILE_SCALES + 64 * i).cast());
            let (w0, w1, w2) = (word(0), word(1), word(2));
            let top = |v: __m512i| {
                _mm512_slli_epi32::<4>(_mm512_and_si512(_mm512_srli_epi32::<6>(v), low2w))
            };
            let sc = [
                _mm512_and_si512(w0, low6w),
                _mm512_or_si512(_mm512_and_si512(w2, low4w), top(w0)),
            ];
            let mn = [
                _mm512_and_si512(w1, low6w),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32::<4>(w2), low4w), top(w1)),
            ];
            let field = |v: &[__m512i; 2], s: usize| {
                let shift = _mm_cvtsi32_si128(8 * (s % 4) as i32);
                _mm512_and_si512(_mm512_srl_epi32(v[s / 4], shift), byte)
            };
            let mut dot = [zero; R];
            for s in 0..8 {
                // A few lines at a time, between the multiply-adds.
                prefetch_ahead(t.add(256 * s), 256);
                let mut sub = [zero; R];
                for p in 0..4 {
                    let raw = _mm512_loadu_si512(t.add(256 * s + 64 * p).cast());
                    let mut lo = _mm512_and_si512(raw, low4);
                    let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low4);
                    if KIND == Q5K {
                        let bits = |l: usize| {
                            let at = Q5K_TILE_HIGH + 64 * s + 8 * l;
                            let mask = t.add(at).cast::<u64>().read_unaligned();
                            _mm512_and_si512(_mm512_movm_epi8(mask), fifth)
                        };
                        lo = _mm512_or_si512(lo, bits(p));
                        hi = _mm512_or_si512(hi, bits(p + 4));
                    }
                    let at = b * QK_K + 32 * s + 4 * p;
                    for k in 0..R {
                        let xa = _mm512_set1_epi32(xq[k].add(at).cast::<i32>().read_unaligned());
                        let xb =
                            _mm512_set1_epi32(xq[k].add(at + 16).cast::<i32>().read_unaligned());
                        sub[k] = _mm512_dpbusd_epi32(sub[k], lo, xa);
                        sub[k] = _mm512_dpbusd_epi32(sub[k], hi, xb);
                    }
                }
                let scale = field(&sc, s);
                for k in 0..R {
                    dot[k] = _mm512_add_epi32(dot[k], _mm512_mullo_epi32(sub[k], scale));
                }
            }
            // mins = sum over s of m[s] * (bsums[2s] + bsums[2s + 1]): the minimum in both
            // 16-bit halves of the lane against the two sums, broadcast.
            let mut mins = [zero; R];
            for s in 0..8 {
                let m = field(&mn, s);
                let m = _mm512_or_si512(m, _mm512_slli_epi32::<16>(m));
                for k in 0..R {
                    let bs = xs[k].add(b * 16 + 2 * s).cast::<i32>().read_unaligned();
                    mins[k] = _mm512_dpwssd_epi32(mins[k], m, _mm512_set1_epi32(bs));
                }
            }
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(TILE_D).cast()));
            let mw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(TILE_DMIN).cast()));
            for k in 0..R {
                // `super::kquant::step`, lane-wise: the same products and fused steps.
                let dx = _mm512_set1_ps(*xd[k].add(b));
                acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(dot[k]), acc[k]);
                acc[k] =
                    _mm512_fnmadd_ps(_mm512_mul_ps(mw, dx), _mm512_cvtepi32_ps(mins[k]), acc[k]);
            }
        }
        let mut out = [[0f32; 16]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), *a);
        }
        out
    }

    /// One tile of sixteen Q6_K rows against activation rows `r..r + R`, computing what
    /// `super::dot_k_scalar` computes, as `q4k_tile` does for Q4_K: the six-bit quants from a
    /// run of nibbles and a run of high bit pairs, one `vpdpbusd` per four values into the sum
    /// of each 16-value sub-block (|sum| <= 16 * 63 * 127), scaled once by the rows' signed
    /// scales with `vpmulld`; the offset 32 of every quant is `-32 * sc` (16-bit words, two
    /// sub-blocks at a time) against the activations' sums with `vpdpwssd`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn q6k_tile<const R: usize>(
        w: &QuantMatrix,
        tile: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; 16]; R] {
        use super::kquant::{Q6K_TILE_BYTES, Q6K_TILE_D, Q6K_TILE_HIGH, Q6K_TILE_SC};
        let (blocks, cols) = (w.blocks, w.cols);
        let base = w.weights.tiles.as_ptr().add(tile * blocks * Q6K_TILE_BYTES);
        let xq: [*const i8; R] = std::array::from_fn(|k| acts.qs.as_ptr().add((r + k) * cols));
        let xd: [*const f32; R] = std::array::from_fn(|k| acts.d.as_ptr().add((r + k) * blocks));
        let xs: [*const i16; R] =
            std::array::from_fn(|k| acts.bsums.as_ptr().add((r + k) * blocks * 16));
        let low4 = _mm512_set1_epi8(0x0F);
        let pair_bits = _mm512_set1_epi8(0x30);
        let zero = _mm512_setzero_si512();
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..blocks {
            let t = base.add(b * Q6K_TILE_BYTES);
            prefetch_ahead(t.add(Q6K_TILE_SC), Q6K_TILE_BYTES - Q6K_TILE_SC);
            let mut dot = [zero; R];
            for s in 0..8 {
                prefetch_ahead(t.add(256 * s), 256);
                prefetch_ahead(t.add(Q6K_TILE_HIGH + 128 * s), 128);
                // Per row lane, the scales of sub-blocks 2s (low word) and 2s + 1 (high word).
                let pair =
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(t.add(Q6K_TILE_SC + 32 * s).cast()));
                // Sub-block 2s is the low nibbles of the four runs, 2s + 1 the high ones.
                let mut sub = [[zero; R]; 2];
                for p in 0..4 {
                    let raw = _mm512_loadu_si512(t.add(256 * s + 64 * p).cast());
                    let high =
                        _mm512_loadu_si512(t.add(Q6K_TILE_HIGH + 128 * s + 64 * (p / 2)).cast());
                    let high = if p % 2 == 1 {
                        _mm512_srli_epi16::<4>(high)
                    } else {
                        high
                    };
                    let lo = _mm512_or_si512(
                        _mm512_and_si512(raw, low4),
                        _mm512_and_si512(_mm512_slli_epi16::<4>(high), pair_bits),
                    );
                    let hi = _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low4),
                        _mm512_and_si512(_mm512_slli_epi16::<2>(high), pair_bits),
                    );
                    let at = b * QK_K + 32 * s + 4 * p;
                    for k in 0..R {
                        let xa = _mm512_set1_epi32(xq[k].add(at).cast::<i32>().read_unaligned());
                        let xb =
                            _mm512_set1_epi32(xq[k].add(at + 16).cast::<i32>().read_unaligned());
                        sub[0][k] = _mm512_dpbusd_epi32(sub[0][k], lo, xa);
                        sub[1][k] = _mm512_dpbusd_epi32(sub[1][k], hi, xb);
                    }
                }
                // The scales sign-extended to whole lanes; and, for the offset, -32 times
                // each (within 16 bits) against the two sub-blocks' activation sums.
                let even = _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(pair));
                let odd = _mm512_srai_epi32::<16>(pair);
                let minus32 = _mm512_sub_epi16(zero, _mm512_slli_epi16::<5>(pair));
                for k in 0..R {
                    let bs = xs[k].add(b * 16 + 2 * s).cast::<i32>().read_unaligned();
                    let mut d = _mm512_dpwssd_epi32(dot[k], minus32, _mm512_set1_epi32(bs));
                    d = _mm512_add_epi32(d, _mm512_mullo_epi32(sub[0][k], even));
                    dot[k] = _mm512_add_epi32(d, _mm512_mullo_epi32(sub[1][k], odd));
                }
            }
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(Q6K_TILE_D).cast()));
            for k in 0..R {
                let dx = _mm512_set1_ps(*xd[k].add(b));
                acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(dot[k]), acc[k]);
            }
        }
        let mut out = [[0f32; 16]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), *a);
        }
        out
    }

    /// One tile of sixteen rows of a 32-value type against activation rows `r..r + R`,
    /// computing what `super::dot_scalar` computes: per block and run of four values one
    /// `vpdpbusd` forms the sixteen rows' four-value sums (the other tiers' integer lane
    /// `(v % 32) / 4`), which take the f32 steps of that lane in registers of their own, row by
    /// row in the sixteen f32 lanes. The 4-bit and 5-bit weights enter unsigned (the nibble,
    /// with Q5's fifth bit), and their offset terms (`d` times the activations' `off` for
    /// Q4_0 / Q5_0, `m` times it for Q4_1 / Q5_1) come first in each group of eight blocks, as
    /// there. Q8_0's weights are signed, so the activations enter offset by 128 (unsigned)
    /// and `128 * sum(w)`, formed once per run for all activation rows, is taken back.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn tile32<const KIND: u8, const R: usize>(
        w: &QuantMatrix,
        tile: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; 16]; R] {
        use super::tile32::{bytes, d_at, m_at, Q5_HIGH};
        use super::{QK, SCALE_GROUP};
        let (blocks, cols, stride) = (w.blocks, w.cols, acts.stride);
        let (tb, dpos) = (bytes(w.format), d_at(w.format));
        let five = KIND == Q5_0 || KIND == Q5_1;
        // The factor of the offset terms: `m` where the type has it, else `d`.
        let opos = if KIND == Q4_1 || KIND == Q5_1 {
            m_at(w.format)
        } else {
            dpos
        };
        let base = w.weights.tiles.as_ptr().add(tile * blocks * tb);
        let xq: [*const i8; R] = std::array::from_fn(|k| acts.qs.as_ptr().add((r + k) * cols));
        let xd: [*const f32; R] = std::array::from_fn(|k| acts.d.as_ptr().add((r + k) * stride));
        let xo: [*const f32; R] = std::array::from_fn(|k| acts.off.as_ptr().add((r + k) * stride));
        let low4 = _mm512_set1_epi8(0x0F);
        let fifth = _mm512_set1_epi8(0x10);
        let bias = _mm512_set1_epi8(-128);
        let zero = _mm512_setzero_si512();
        // Lane register l of activation row k in acc[l][k].
        let mut acc = [[_mm512_setzero_ps(); R]; 8];
        for group in (0..blocks).step_by(SCALE_GROUP) {
            if KIND != Q8_0 {
                // The offset terms of blocks group..group + 8 (zero past the last block, as
                // the other tiers' padded scale arrays read).
                for (l, acc_l) in acc.iter_mut().enumerate() {
                    let b = group + l;
                    let ow = if b < blocks {
                        _mm512_cvtph_ps(_mm256_loadu_si256(base.add(b * tb + opos).cast()))
                    } else {
                        _mm512_setzero_ps()
                    };
                    for (a, x) in acc_l.iter_mut().zip(&xo) {
                        *a = _mm512_fmadd_ps(ow, _mm512_set1_ps(*x.add(b)), *a);
                    }
                }
            }
            for b in group..(group + SCALE_GROUP).min(blocks) {
                let t = base.add(b * tb);
                prefetch_ahead(t, tb);
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(t.add(dpos).cast()));
                let scale: [__m512; R] =
                    std::array::from_fn(|k| _mm512_mul_ps(dw, _mm512_set1_ps(*xd[k].add(b))));
                let x4 = |k: usize, v: usize| {
                    _mm512_set1_epi32(xq[k].add(b * QK + v).cast::<i32>().read_unaligned())
                };
                if KIND == Q8_0 {
                    for (l, acc_l) in acc.iter_mut().enumerate() {
                        let q = _mm512_loadu_si512(t.add(64 * l).cast());
                        let minus = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, q));
                        for k in 0..R {
                            let x = _mm512_xor_si512(x4(k, 4 * l), bias);
                            let p = _mm512_dpbusd_epi32(minus, x, q);
                            acc_l[k] = _mm512_fmadd_ps(scale[k], _mm512_cvtepi32_ps(p), acc_l[k]);
                        }
                    }
                } else {
                    for c in 0..4 {
                        let raw = _mm512_loadu_si512(t.add(64 * c).cast());
                        let mut lo = _mm512_and_si512(raw, low4);
                        let mut hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low4);
                        if five {
                            let bits = |l: usize| {
                                let mask = t.add(Q5_HIGH + 8 * l).cast::<u64>().read_unaligned();
                                _mm512_and_si512(_mm512_movm_epi8(mask), fifth)
                            };
                            lo = _mm512_or_si512(lo, bits(c));
                            hi = _mm512_or_si512(hi, bits(c + 4));
                        }
                        for k in 0..R {
                            let p_lo = _mm512_dpbusd_epi32(zero, lo, x4(k, 4 * c));
                            let p_hi = _mm512_dpbusd_epi32(zero, hi, x4(k, 16 + 4 * c));
                            acc[c][k] =
                                _mm512_fmadd_ps(scale[k], _mm512_cvtepi32_ps(p_lo), acc[c][k]);
                            acc[c + 4][k] =
                                _mm512_fmadd_ps(scale[k], _mm512_cvtepi32_ps(p_hi), acc[c + 4][k]);
                        }
                    }
                }
            }
        }
        let mut out = [[0f32; 16]; R];
        for (k, o) in out.iter_mut().enumerate() {
            *o = lane_sum(&std::array::from_fn(|l| acc[l][k]));
        }
        out
    }

    /// A tile's eight lane registers for one activation row summed as the other tiers sum
    /// their lanes, `((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7))`, for the sixteen rows at once.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn lane_sum(a: &[__m512; 8]) -> [f32; 16] {
        let sum = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
            _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])),
        );
        let mut out = [0f32; 16];
        _mm512_storeu_ps(out.as_mut_ptr(), sum);
        out
    }

    /// This tier's tiles (K-quants only; the other types take the AVX2 tier's).
    struct Avx512Tiles;

    impl super::avx2::Tiles for Avx512Tiles {
        #[inline(always)]
        unsafe fn tile<const KIND: u8, const W: usize, const R: usize>(
            w: &QuantMatrix,
            row: usize,
            acts: &Activations,
            r: usize,
        ) -> [[f32; R]; W] {
            ktile::<KIND, W, R>(w, row, acts, r)
        }
    }

    /// Dot products of K-quant weight rows `row..row + W` with activation rows `r..r + R`.
    /// A 64-byte register pairs two of `avx2::ktile`'s 32-value registers (whose activations
    /// are adjacent in memory); `maddubs` forms the same u8 x i8 pair sums and `vpdpwssd`
    /// multiplies them by the scale words and adds the pairs into the 16 i32 lanes, with no
    /// saturation. The sixteen lanes then sum to the exact integer of
    /// `super::kquant::products` (the order does not matter), and the f32 steps are AVX2's.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    unsafe fn ktile<const KIND: u8, const W: usize, const R: usize>(
        w: &QuantMatrix,
        row: usize,
        acts: &Activations,
        r: usize,
    ) -> [[f32; R]; W] {
        let bb = match KIND {
            Q4K => 144,
            Q5K => 176,
            _ => 210,
        };
        let (blocks, cols) = (w.blocks, w.cols);
        let wb: [*const u8; W] =
            std::array::from_fn(|i| w.weights.qs.as_ptr().add((row - w.tiled + i) * blocks * bb));
        let xq: [*const i8; R] = std::array::from_fn(|k| acts.qs.as_ptr().add((r + k) * cols));
        let xd: [*const f32; R] = std::array::from_fn(|k| acts.d.as_ptr().add((r + k) * blocks));
        let xs: [*const i16; R] =
            std::array::from_fn(|k| acts.bsums.as_ptr().add((r + k) * blocks * 16));
        let table = if KIND == Q6K { &Q6_INDEX } else { &K_INDEX };
        let index = [
            _mm512_loadu_si512(table[0].as_ptr().cast()),
            _mm512_loadu_si512(table[1].as_ptr().cast()),
            _mm512_loadu_si512(table[2].as_ptr().cast()),
            _mm512_loadu_si512(table[3].as_ptr().cast()),
        ];
        let low4 = _mm512_set1_epi8(0x0F);
        let mut acc = [[0f32; R]; W];
        for b in 0..blocks {
            for p in wb.iter() {
                let ahead = p.wrapping_add(W * blocks * bb + b * bb);
                for line in (0..bb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                }
            }
            for i in 0..W {
                let blk = wb[i].add(b * bb);
                let mut wide = [_mm512_setzero_si512(); R];
                let mut mins = [_mm256_setzero_si256(); R];
                let (d, dmin);
                if KIND == Q6K {
                    d = f16::from_le_bytes([*blk.add(208), *blk.add(209)]).to_f32();
                    dmin = 0.0;
                    let three = _mm512_set1_epi8(3);
                    let sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
                        blk.add(192).cast(),
                    )));
                    for h in 0..2 {
                        // Nibble bytes a (values 0..32, 64..96 of this half) and b (32..64,
                        // 96..128) are adjacent; the high pairs of b sit two bits above a's.
                        let ab = _mm512_loadu_si512(blk.add(64 * h).cast());
                        let qh = _mm256_loadu_si256(blk.add(128 + 32 * h).cast());
                        let hb = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(qh),
                            _mm256_srli_epi16::<2>(qh),
                        );
                        let first_half = _mm512_or_si512(
                            _mm512_and_si512(ab, low4),
                            _mm512_slli_epi16::<4>(_mm512_and_si512(hb, three)),
                        );
                        let second_half = _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi16::<4>(ab), low4),
                            _mm512_slli_epi16::<4>(_mm512_and_si512(
                                _mm512_srli_epi16::<4>(hb),
                                three,
                            )),
                        );
                        for (n, q) in [first_half, second_half].into_iter().enumerate() {
                            let s = _mm512_permutexvar_epi16(index[2 * h + n], sc16);
                            let at = b * QK_K + 128 * h + 64 * n;
                            for k in 0..R {
                                let x = _mm512_loadu_si512(xq[k].add(at).cast());
                                wide[k] =
                                    _mm512_dpwssd_epi32(wide[k], _mm512_maddubs_epi16(q, x), s);
                            }
                        }
                    }
                } else {
                    d = f16::from_le_bytes([*blk, *blk.add(1)]).to_f32();
                    dmin = f16::from_le_bytes([*blk.add(2), *blk.add(3)]).to_f32();
                    let packed: &[u8; 12] = &*blk.add(4).cast::<[u8; 12]>();
                    let (sc8, m8) = super::kquant::scales_mins(packed);
                    let sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                        sc8.as_ptr().cast(),
                    )));
                    let m16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(m8.as_ptr().cast()));
                    let m16 = _mm256_set_m128i(
                        _mm_unpackhi_epi16(m16, m16),
                        _mm_unpacklo_epi16(m16, m16),
                    );
                    let qs = blk.add(if KIND == Q5K { 48 } else { 16 });
                    // Fifth bits: bit 2j of each byte for the low nibbles of run j, bit 2j + 1
                    // for the high ones; shifting the upper copy by one puts both at bit 2j.
                    let high = if KIND == Q5K {
                        let h = _mm256_loadu_si256(blk.add(16).cast());
                        _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(h),
                            _mm256_srli_epi16::<1>(h),
                        )
                    } else {
                        _mm512_setzero_si512()
                    };
                    let one = _mm512_set1_epi8(1);
                    for (j, &spread) in index.iter().enumerate() {
                        let q = _mm256_loadu_si256(qs.add(32 * j).cast());
                        let q = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(q),
                            _mm256_srli_epi16::<4>(q),
                        );
                        let mut q = _mm512_and_si512(q, low4);
                        if KIND == Q5K {
                            let s = _mm_cvtsi32_si128(2 * j as i32);
                            let bit = _mm512_and_si512(_mm512_srl_epi16(high, s), one);
                            q = _mm512_or_si512(q, _mm512_slli_epi16::<4>(bit));
                        }
                        let s = _mm512_permutexvar_epi16(spread, sc16);
                        let at = b * QK_K + 64 * j;
                        for k in 0..R {
                            let x = _mm512_loadu_si512(xq[k].add(at).cast());
                            wide[k] = _mm512_dpwssd_epi32(wide[k], _mm512_maddubs_epi16(q, x), s);
                        }
                    }
                    for k in 0..R {
                        let bs = _mm256_loadu_si256(xs[k].add(b * 16).cast());
                        mins[k] = _mm256_madd_epi16(bs, m16);
                    }
                }
                for k in 0..R {
                    let mut dot = _mm256_add_epi32(
                        _mm512_castsi512_si256(wide[k]),
                        _mm512_extracti64x4_epi64::<1>(wide[k]),
                    );
                    if KIND == Q6K {
                        let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(192).cast()));
                        let bs = _mm256_loadu_si256(xs[k].add(b * 16).cast());
                        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc));
                        dot = _mm256_sub_epi32(dot, off);
                    }
                    acc[i][k] = super::kquant::step(
                        acc[i][k],
                        d,
                        dmin,
                        *xd[k].add(b),
                        super::avx2::hsum_i32(dot),
                        super::avx2::hsum_i32(mins[k]),
                        KIND == Q6K,
                    );
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Test-only items are spelled out in the tests: `cargo clippy --all-targets` also builds
    // this file into `benches/quant.rs` with cfg(test) but without the test functions.
    use candle_core::Device;

    /// SplitMix64: fixed-seed inputs without a rand dependency.
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

        /// Values in [-1, 1) with a per-row scale spread over two decades, a few outliers, and
        /// (for activations) an all-zero block, so the scale and zero paths are exercised.
        fn matrix(&mut self, rows: usize, cols: usize) -> Vec<f32> {
            let mut v = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                let scale = 10f32.powf(self.next_f32());
                for c in 0..cols {
                    let mut x = self.next_f32() * scale;
                    if (r * cols + c).is_multiple_of(97) {
                        x *= 8.0;
                    }
                    if r % 3 == 1 && c < QK {
                        x = 0.0;
                    }
                    v.push(x);
                }
            }
            v
        }
    }

    fn tensor(v: Vec<f32>, dims: &[usize]) -> Tensor {
        Tensor::from_vec(v, dims, &Device::Cpu).expect("tensor")
    }

    /// Largest |a - b| over the largest |b|.
    fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a: Vec<f32> = a.flatten_all().and_then(|t| t.to_vec1()).expect("a");
        let b: Vec<f32> = b.flatten_all().and_then(|t| t.to_vec1()).expect("b");
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |s, v| s.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |s, (x, y)| s.max((x - y).abs()));
        diff / scale
    }

    /// Every tier this CPU has, whatever `ARBITER_CPU_KERNELS` says.
    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Scalar];
        #[cfg(target_arch = "aarch64")]
        if Kernel::best() != Kernel::Scalar {
            k.push(Kernel::best());
        }
        // A dotprod CPU also runs the plain NEON kernels (what `ARBITER_CPU_KERNELS=neon` picks).
        #[cfg(target_arch = "aarch64")]
        if Kernel::best() == Kernel::NeonDot {
            k.push(Kernel::Neon);
        }
        #[cfg(target_arch = "x86_64")]
        k.extend(
            [Kernel::Avx2, Kernel::Avx512]
                .into_iter()
                .filter(|t| t.available()),
        );
        k
    }

    const BLOCK32: [GgmlDType; 5] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
    ];
    const KQUANTS: [GgmlDType; 3] = [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K];

    fn block_values(dtype: GgmlDType) -> usize {
        if KQUANTS.contains(&dtype) {
            QK_K
        } else {
            QK
        }
    }

    /// One K-quant super-block as the file stores it, read here with GGML's reference loops
    /// (independently of the kernels' unpacking): per value the integer `w` that `d`
    /// multiplies (`sc * q`; Q6_K `sc * (q - 32)`) and the integer `m` that `dmin` multiplies.
    struct KBlock {
        d: f64,
        dmin: f64,
        w: [i64; QK_K],
        m: [i64; QK_K],
        /// Q6_K's scale of each value (zero for Q4_K, Q5_K).
        sc: [i64; QK_K],
    }

    fn ggml_k_blocks(format: Format, data: &[u8]) -> Vec<KBlock> {
        let half = |b: &[u8], at: usize| f64::from(f16::from_le_bytes([b[at], b[at + 1]]));
        data.chunks_exact(format.block_bytes())
            .map(|b| {
                let mut k = KBlock {
                    d: 0.0,
                    dmin: 0.0,
                    w: [0; QK_K],
                    m: [0; QK_K],
                    sc: [0; QK_K],
                };
                if format == Format::Q6K {
                    let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
                    k.d = half(b, 208);
                    for n in 0..2 {
                        for l in 0..32 {
                            let is = l / 16;
                            let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
                            let q1 = i64::from((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                            let q2 = i64::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                            let q3 = i64::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                            let q4 = i64::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                            let s = |i: usize| i64::from(sc[i] as i8);
                            let y = &mut k.w[128 * n..];
                            y[l] = s(is) * q1;
                            y[l + 32] = s(is + 2) * q2;
                            y[l + 64] = s(is + 4) * q3;
                            y[l + 96] = s(is + 6) * q4;
                            for (quarter, at) in [l, l + 32, l + 64, l + 96].into_iter().enumerate()
                            {
                                k.sc[128 * n + at] = s(is + 2 * quarter);
                            }
                        }
                    }
                    return k;
                }
                k.d = half(b, 0);
                k.dmin = half(b, 2);
                let scales = &b[4..16];
                // GGML's get_scale_min_k4.
                let scale_min = |j: usize| -> (i64, i64) {
                    if j < 4 {
                        (i64::from(scales[j] & 63), i64::from(scales[j + 4] & 63))
                    } else {
                        (
                            i64::from((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4)),
                            i64::from((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4)),
                        )
                    }
                };
                let (qh, qs) = if format == Format::Q5K {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[16..16], &b[16..144])
                };
                for j in 0..4 {
                    let (s1, m1) = scale_min(2 * j);
                    let (s2, m2) = scale_min(2 * j + 1);
                    for l in 0..32 {
                        let (mut lo, mut hi) = (
                            i64::from(qs[32 * j + l] & 0xF),
                            i64::from(qs[32 * j + l] >> 4),
                        );
                        if format == Format::Q5K {
                            lo += i64::from((qh[l] >> (2 * j)) & 1) * 16;
                            hi += i64::from((qh[l] >> (2 * j + 1)) & 1) * 16;
                        }
                        k.w[64 * j + l] = s1 * lo;
                        k.m[64 * j + l] = m1;
                        k.w[64 * j + 32 + l] = s2 * hi;
                        k.m[64 * j + 32 + l] = m2;
                    }
                }
                k
            })
            .collect()
    }

    /// Activations as the K-quant kernels quantize them (llama.cpp's Q8_K): per super-block
    /// the scale and the quants.
    fn q8k_blocks(x: &[f32]) -> Vec<(f64, [i64; QK_K])> {
        x.chunks_exact(QK_K)
            .map(|xb| {
                let (mut q, mut bsums) = ([0i8; QK_K], [0i16; 16]);
                let d = kquant::quantize_q8k(xb.try_into().expect("QK_K"), &mut q, &mut bsums);
                for (s, g) in bsums.iter().zip(q.chunks_exact(16)) {
                    assert_eq!(i64::from(*s), g.iter().map(|&v| i64::from(v)).sum::<i64>());
                }
                (f64::from(d), q.map(i64::from))
            })
            .collect()
    }

    /// The exact product of one row of super-blocks with Q8_K activations, and the magnitude
    /// that bounds the f32 error: every term the kernels scale separately, in absolute value.
    fn k_reference_dot(w: &[KBlock], x: &[(f64, [i64; QK_K])]) -> (f64, f64) {
        let (mut exact, mut magnitude) = (0f64, 0f64);
        for (wb, (dx, xq)) in w.iter().zip(x) {
            let (mut dot, mut abs, mut mins, mut mins_abs) = (0i64, 0i64, 0i64, 0i64);
            for (v, &x) in xq.iter().enumerate() {
                dot += wb.w[v] * x;
                // Q6_K's kernels form `sc * q * x` and `32 * sc * x` apart (q unsigned).
                abs += (wb.w[v] * x).abs() + 2 * (32 * wb.sc[v] * x).abs();
                mins += wb.m[v] * x;
                mins_abs += (wb.m[v] * x).abs();
            }
            exact += wb.d * dx * dot as f64 - wb.dmin * dx * mins as f64;
            magnitude += (wb.d * dx).abs() * abs as f64 + (wb.dmin * dx).abs() * mins_abs as f64;
        }
        (exact, magnitude)
    }

    /// Our K-quant product of `q` with `x` (m rows) against the exact reference, every tier;
    /// returns the worst error as a share of its bound. Also checks that the reference's
    /// reading of the blocks is GGML's: its values equal candle's dequantization to within
    /// the f32 roundings of `(d * sc) * q - dmin * m`.
    fn check_k_against_reference(q: &QTensor, x: &[f32], m: usize, what: &str) -> f64 {
        let format = Format::from_ggml(q.dtype()).expect("a supported type");
        let (n, k) = q.shape().dims2().expect("a matrix");
        let blocks = k / QK_K;
        let data = q.data().expect("block bytes");
        let w = ggml_k_blocks(format, &data);
        let candle: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("dequantize");
        for (b, wb) in w.iter().enumerate() {
            for v in 0..QK_K {
                let (dw, dm) = (wb.d * wb.w[v] as f64, wb.dmin * wb.m[v] as f64);
                let got = f64::from(candle[b * QK_K + v]);
                let bound = 4.0 * f64::from(f32::EPSILON) * (dw.abs() + dm.abs());
                assert!(
                    (got - (dw - dm)).abs() <= bound,
                    "{what} {format:?} value {b}/{v}"
                );
            }
        }
        let acts: Vec<_> = x.chunks_exact(k).map(q8k_blocks).collect();
        let ours = QuantMatrix::from_qtensor(q)
            .expect("repack")
            .expect("supported");
        let mut worst = 0f64;
        for kernel in kernels() {
            let got: Vec<f32> = ours
                .forward_with(&tensor(x.to_vec(), &[m, k]), kernel)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("forward");
            for (r, xr) in acts.iter().enumerate() {
                for j in 0..n {
                    let (want, magnitude) = k_reference_dot(&w[j * blocks..(j + 1) * blocks], xr);
                    // Per super-block: the scale product, the integer's conversion to f32 and
                    // the fused multiply-add each round once (twice with minimums).
                    let bound = f32_bound(4 * blocks, magnitude);
                    let diff = (f64::from(got[r * n + j]) - want).abs();
                    assert!(
                        diff <= bound,
                        "{what} {format:?} {kernel:?} ({r},{j}): |{} - {want}| = {diff} > {bound}",
                        got[r * n + j]
                    );
                    if bound > 0.0 {
                        worst = worst.max(diff / bound);
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn k_quant_products_match_the_exact_reference() {
        // Rows spread over eight decades, down to weights whose f16 super-block scales are
        // subnormal and up to ones near the f16 range, against activations of every size.
        let mut rng = SplitMix(17);
        for dtype in KQUANTS {
            for (n, k) in [(64, 1536), (13, 256), (130, 512)] {
                let mut wv = rng.matrix(n, k);
                for (r, row) in wv.chunks_exact_mut(k).enumerate() {
                    let scale = [1e-4f32, 1.0, 3e3, 1e-2][r % 4];
                    row.iter_mut().for_each(|v| *v *= scale);
                }
                let w = QTensor::quantize(&tensor(wv, &[n, k]), dtype).expect("quantize");
                for m in [1, 3, 9] {
                    let x = rng.matrix(m, k);
                    check_k_against_reference(&w, &x, m, &format!("({n},{k}) m={m}"));
                }
            }
        }
    }

    /// Q4_K / Q5_K / Q6_K bytes of one super-block: Q4_K / Q5_K from `d`, `dmin`, 6-bit
    /// scales and minimums and unsigned quants (0..15 / 0..31); Q6_K from `d`, signed scales
    /// (one per 16 values) and unsigned quants 0..63. Written from the layouts in GGML's
    /// `block_q*_K` definitions.
    fn k_block_bytes(
        format: Format,
        d: f16,
        dmin: f16,
        sc: &[i64],
        mins: &[i64],
        q: &[i64; QK_K],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        if format == Format::Q6K {
            let mut ql = [0u8; 128];
            let mut qh = [0u8; 64];
            for (v, &x) in q.iter().enumerate() {
                let (half_at, r) = (v / 128, v % 128);
                let (quarter, l) = (r / 32, r % 32);
                let nib = (x & 0xF) as u8;
                let hi2 = ((x >> 4) & 3) as u8;
                let byte = 64 * half_at + l + if quarter % 2 == 1 { 32 } else { 0 };
                ql[byte] |= if quarter >= 2 { nib << 4 } else { nib };
                qh[32 * half_at + l] |= hi2 << (2 * quarter);
            }
            out.extend_from_slice(&ql);
            out.extend_from_slice(&qh);
            out.extend(sc.iter().map(|&s| s as i8 as u8));
            out.extend_from_slice(&d.to_le_bytes());
            return out;
        }
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&dmin.to_le_bytes());
        let mut packed = [0u8; 12];
        for j in 0..8 {
            let (s, m) = (sc[j] as u8, mins[j] as u8);
            if j < 4 {
                packed[j] |= s & 63;
                packed[j + 4] |= m & 63;
            } else {
                packed[j + 4] |= (s & 0xF) | ((m & 0xF) << 4);
                packed[j - 4] |= (s >> 4) << 6;
                packed[j] |= (m >> 4) << 6;
            }
        }
        out.extend_from_slice(&packed);
        if format == Format::Q5K {
            let mut qh = [0u8; 32];
            for (v, &x) in q.iter().enumerate() {
                let (j, r) = (v / 64, v % 64);
                qh[r % 32] |= (((x >> 4) & 1) as u8) << (2 * j + r / 32);
            }
            out.extend_from_slice(&qh);
        }
        for j in 0..4 {
            for l in 0..32 {
                out.push((q[64 * j + l] & 0xF) as u8 | (((q[64 * j + 32 + l] & 0xF) as u8) << 4));
            }
        }
        out
    }

    #[test]
    fn k_quant_integer_products_are_exact() {
        // Power-of-two super-block scales across the f16 range (subnormal included) and
        // integer activations with a 127 in every super-block, so the Q8_K scale is exactly
        // -1 or 1 and the quants are the values themselves (negated). Quants take their
        // extremes, sub-block scales and minimums their 6-bit (Q6_K: signed 8-bit) extremes.
        // Magnitudes are kept such that every lane, every partial sum and the result are
        // multiples of the row's smallest scale below 2^24 of it: f32 holds them exactly in
        // any order, so the kernels must equal exact integer arithmetic to the bit.
        let mut rng = SplitMix(23);
        let mut int = |lo: i64, hi: i64| -> i64 {
            let u = f64::from(rng.next_f32()) * 0.5 + 0.5;
            (lo + ((hi - lo + 1) as f64 * u) as i64).min(hi)
        };
        let (rows, k, m) = (9usize, 512usize, 3usize);
        let blocks = k / QK_K;
        let mut x = vec![0f32; m * k];
        for (i, v) in x.iter_mut().enumerate() {
            let (r, c) = (i / k, i % k);
            *v = if r == 1 && c < QK_K {
                0.0
            } else if c % QK_K == (r * 37 + c / QK_K) % QK_K {
                if (c / QK_K + r).is_multiple_of(2) {
                    127.0
                } else {
                    -127.0
                }
            } else {
                int(-3, 3) as f32
            };
        }
        for format in [Format::Q4K, Format::Q5K, Format::Q6K] {
            let qmax = match format {
                Format::Q4K => 15,
                Format::Q5K => 31,
                _ => 63,
            };
            let mut data = Vec::new();
            let exponents = [-24, -14, -7, 0, 6, 12];
            for row in 0..rows {
                let e = exponents[row % exponents.len()];
                for b in 0..blocks {
                    let d = f16::from_f32(
                        2f32.powi(e + (b % 2) as i32) * if (row + b) % 3 == 0 { -1.0 } else { 1.0 },
                    );
                    let dmin = f16::from_f32(2f32.powi(e + ((b + 1) % 2) as i32));
                    let (sc, mins): (Vec<i64>, Vec<i64>) = if format == Format::Q6K {
                        (
                            (0..16)
                                .map(|i| match (row + i) % 5 {
                                    0 => -128,
                                    1 => 127,
                                    _ => int(-128, 127),
                                })
                                .collect(),
                            Vec::new(),
                        )
                    } else {
                        (
                            (0..8)
                                .map(|i| match (row + i) % 4 {
                                    0 => 63,
                                    1 => 0,
                                    _ => int(0, 63),
                                })
                                .collect(),
                            (0..8)
                                .map(|i| match (row + i) % 3 {
                                    0 => 63,
                                    _ => int(0, 63),
                                })
                                .collect(),
                        )
                    };
                    let q: [i64; QK_K] = std::array::from_fn(|i| match (row + b + i) % 11 {
                        0 => 0,
                        1 => qmax,
                        _ => int(0, qmax),
                    });
                    data.extend(k_block_bytes(format, d, dmin, &sc, &mins, &q));
                }
            }
            let ours = QuantMatrix::from_blocks(format, rows, k, &data).expect("blocks");
            let w = ggml_k_blocks(format, &data);
            let acts: Vec<_> = x.chunks_exact(k).map(q8k_blocks).collect();
            for xr in &acts {
                for (d, q) in xr {
                    assert!(
                        d.abs() == 1.0 || q.iter().all(|&v| v == 0),
                        "exact activations"
                    );
                }
            }
            for kernel in kernels() {
                let got: Vec<f32> = ours
                    .forward_with(&tensor(x.clone(), &[m, k]), kernel)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("forward");
                for (r, xr) in acts.iter().enumerate() {
                    for j in 0..rows {
                        let (want, _) = k_reference_dot(&w[j * blocks..(j + 1) * blocks], xr);
                        assert_eq!(
                            f64::from(want as f32),
                            want,
                            "the reference is exact in f32"
                        );
                        assert_eq!(
                            (want as f32).to_bits(),
                            got[r * rows + j].to_bits(),
                            "{format:?} {kernel:?} ({r},{j}): want {want}, got {}",
                            got[r * rows + j]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn q8k_activations_follow_llama_cpp() {
        // The largest magnitude keeps its sign (iscale = -127 / max); ties round to even;
        // a zero block has scale 0.
        let mut x = [0f32; QK_K];
        x[3] = -127.0;
        x[4] = 127.0;
        x[5] = 2.5;
        x[6] = 3.5;
        x[7] = -0.5;
        x[20] = 1.0;
        let (mut q, mut bsums) = ([0i8; QK_K], [0i16; 16]);
        let d = kquant::quantize_q8k(&x, &mut q, &mut bsums);
        assert_eq!(d, 1.0);
        assert_eq!(&q[3..8], &[-127, 127, 2, 4, 0]);
        assert_eq!((bsums[0], bsums[1]), (6, 1));
        x[4] = 254.0;
        let d = kquant::quantize_q8k(&x, &mut q, &mut bsums);
        assert_eq!(d, -2.0);
        assert_eq!(&q[3..8], &[64, -127, -1, -2, 0]);
        let d = kquant::quantize_q8k(&[0.0; QK_K], &mut q, &mut bsums);
        assert_eq!((d, q.iter().all(|&v| v == 0), bsums), (0.0, true, [0; 16]));
    }

    /// One GGML block as the file stores it, read here independently of the repacking: the
    /// f16 scale `d`, Q4_1's f16 minimum `m` (0 otherwise), and the 32 quants as the integers
    /// GGML multiplies by `d` (Q4_0: nibble - 8; Q4_1: nibble; Q8_0: signed byte), a byte's
    /// low nibble being value `j` and its high nibble value `j + 16`.
    struct GgmlBlock {
        d: f64,
        m: f64,
        q: [i64; QK],
    }

    fn ggml_blocks(format: Format, data: &[u8]) -> Vec<GgmlBlock> {
        let half = |b: &[u8], at: usize| f64::from(f16::from_le_bytes([b[at], b[at + 1]]));
        data.chunks_exact(format.block_bytes())
            .map(|b| {
                let mut q = [0i64; QK];
                let (m, quants) = match format {
                    Format::Q4_1 | Format::Q5_1 => (half(b, 2), &b[4..]),
                    _ => (0.0, &b[2..]),
                };
                match format {
                    Format::Q8_0 => {
                        for (v, &byte) in q.iter_mut().zip(quants) {
                            *v = i64::from(byte as i8);
                        }
                    }
                    Format::Q4_0 | Format::Q4_1 => {
                        let offset = if format == Format::Q4_0 { 8 } else { 0 };
                        for (j, &byte) in quants.iter().enumerate() {
                            q[j] = i64::from(byte & 0x0F) - offset;
                            q[j + QK / 2] = i64::from(byte >> 4) - offset;
                        }
                    }
                    Format::Q5_0 | Format::Q5_1 => {
                        // A little-endian 32-bit mask of fifth bits, then the nibbles.
                        let offset = if format == Format::Q5_0 { 16 } else { 0 };
                        let mask = u32::from_le_bytes([quants[0], quants[1], quants[2], quants[3]]);
                        for (j, &byte) in quants[4..].iter().enumerate() {
                            let bit = |i: usize| i64::from((mask >> i) & 1) * 16;
                            q[j] = i64::from(byte & 0x0F) + bit(j) - offset;
                            q[j + QK / 2] = i64::from(byte >> 4) + bit(j + QK / 2) - offset;
                        }
                    }
                    _ => unreachable!("32-value block formats only"),
                }
                GgmlBlock {
                    d: half(b, 0),
                    m,
                    q,
                }
            })
            .collect()
    }

    /// One activation block as the kernels quantize it (the scalar quantizer, which the SIMD
    /// one equals bit for bit: `simd_quantization_equals_scalar`): scale, quants, and the block
    /// sum term Q4_1 multiplies by `m`, rounded through f16 exactly as the kernels round it.
    struct ActBlock {
        d: f64,
        q: [i64; QK],
        s: f64,
    }

    fn act_blocks(x: &[f32]) -> Vec<ActBlock> {
        x.chunks_exact(QK)
            .map(|xb| {
                let mut q8 = [0i8; QK];
                let (d, sum) = quantize_block_scalar(xb.try_into().expect("QK values"), &mut q8);
                ActBlock {
                    d: f64::from(d),
                    q: q8.map(i64::from),
                    s: f64::from(f16::from_f32(sum as f32) * d),
                }
            })
            .collect()
    }

    /// The exact product of one weight row's blocks with one activation row's blocks (f64 holds
    /// every term exactly: 11-bit scales times 24-bit scales times integers under 2^20), and
    /// the magnitude `M` that bounds what f32 arithmetic may lose computing it: every term the
    /// kernels form separately, in absolute value (the integer products unsummed, since a SIMD
    /// kernel scales partial sums of them one by one; Q4_0's -8 and Q4_1's `m` as their own
    /// terms).
    fn reference_dot(format: Format, w: &[GgmlBlock], x: &[ActBlock]) -> (f64, f64) {
        let (mut exact, mut magnitude) = (0f64, 0f64);
        for (wb, xb) in w.iter().zip(x) {
            let scale = wb.d * xb.d;
            let dot: i64 = wb.q.iter().zip(&xb.q).map(|(a, b)| a * b).sum();
            let unsigned = |a: i64| match format {
                Format::Q4_0 => a + 8,
                Format::Q5_0 => a + 16,
                _ => a,
            };
            let abs: i64 =
                wb.q.iter()
                    .zip(&xb.q)
                    .map(|(&a, b)| (unsigned(a) * b).abs())
                    .sum();
            exact += scale * dot as f64;
            magnitude += scale.abs() * abs as f64;
            match format {
                Format::Q4_0 | Format::Q5_0 => {
                    let sum: i64 = xb.q.iter().sum();
                    let offset = if format == Format::Q4_0 { 8.0 } else { 16.0 };
                    magnitude += (offset * scale * sum as f64).abs();
                }
                Format::Q4_1 | Format::Q5_1 => {
                    exact += wb.m * xb.s;
                    magnitude += (wb.m * xb.s).abs();
                }
                _ => {}
            }
        }
        (exact, magnitude)
    }

    /// How far an f32 computation of a row of `blocks` blocks may be from the exact product,
    /// relative to `M`: each term is rounded at most three times and the sum of at most
    /// `2 * blocks + 8` terms (two a block, and a horizontal sum of lanes) adds one rounding a
    /// term, each at most 2^-24 of the running magnitude.
    fn f32_bound(blocks: usize, magnitude: f64) -> f64 {
        (2 * blocks + 8 + 3) as f64 * f64::from(f32::EPSILON / 2.0) * magnitude
    }

    /// Our product of `w` with `x` (m rows of k) against the exact block reference, for every
    /// tier; returns the worst error as a share of its bound.
    fn check_against_blocks(q: &QTensor, x: &[f32], m: usize, what: &str) -> f64 {
        let format = Format::from_ggml(q.dtype()).expect("a supported type");
        let (n, k) = q.shape().dims2().expect("a matrix");
        let blocks = k / QK;
        let data = q.data().expect("block bytes");
        let w = ggml_blocks(format, &data);
        let acts: Vec<Vec<ActBlock>> = x.chunks_exact(k).map(act_blocks).collect();
        let ours = QuantMatrix::from_qtensor(q)
            .expect("repack")
            .expect("supported");
        let mut worst = 0f64;
        for kernel in kernels() {
            let got: Vec<f32> = ours
                .forward_with(&tensor(x.to_vec(), &[m, k]), kernel)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("forward");
            for (r, xr) in acts.iter().enumerate() {
                for j in 0..n {
                    let (want, magnitude) =
                        reference_dot(format, &w[j * blocks..(j + 1) * blocks], xr);
                    let bound = f32_bound(blocks, magnitude);
                    let diff = (f64::from(got[r * n + j]) - want).abs();
                    assert!(
                        diff <= bound,
                        "{what} {format:?} {kernel:?} ({r},{j}): |{} - {want}| = {diff} > {bound}",
                        got[r * n + j]
                    );
                    if bound > 0.0 {
                        worst = worst.max(diff / bound);
                    }
                }
            }
        }
        worst
    }

    #[test]
    fn products_match_the_exact_block_reference() {
        let mut rng = SplitMix(42);
        for dtype in BLOCK32 {
            for (n, k) in [(576, 1536), (1536, 576), (192, 576), (7, 64)] {
                let w =
                    QTensor::quantize(&tensor(rng.matrix(n, k), &[n, k]), dtype).expect("quantize");
                for m in [1, 3, 64] {
                    let x = rng.matrix(m, k);
                    check_against_blocks(&w, &x, m, &format!("({n},{k}) m={m}"));
                }
            }
        }
    }

    #[test]
    fn every_tier_gives_the_same_bits() {
        // The portable code follows the SIMD lanes' order of operations, so no CPU computes a
        // different result: decode (m = 1, four rows a tile), prefill tiles and their edges.
        let mut rng = SplitMix(21);
        for dtype in BLOCK32.into_iter().chain(KQUANTS) {
            for (n, k) in [(67usize, 576usize), (5, 96), (130, 1536), (9, 256)] {
                if !k.is_multiple_of(block_values(dtype)) {
                    continue;
                }
                let w =
                    QTensor::quantize(&tensor(rng.matrix(n, k), &[n, k]), dtype).expect("quantize");
                let ours = QuantMatrix::from_qtensor(&w)
                    .expect("repack")
                    .expect("supported");
                for m in [1, 2, 5, 9] {
                    let x = tensor(rng.matrix(m, k), &[m, k]);
                    let outputs: Vec<Vec<u32>> = kernels()
                        .into_iter()
                        .map(|kernel| {
                            let y: Vec<f32> = ours
                                .forward_with(&x, kernel)
                                .and_then(|t| t.flatten_all())
                                .and_then(|t| t.to_vec1())
                                .expect("forward");
                            y.into_iter().map(f32::to_bits).collect()
                        })
                        .collect();
                    for other in &outputs[1..] {
                        assert!(other == &outputs[0], "{dtype:?} ({n},{k}) m={m}");
                    }
                }
            }
        }
    }

    /// GGML bytes for `rows` x `blocks` blocks with the given scales, minimums and quants.
    fn ggml_bytes(format: Format, scales: &[f16], mins: &[f16], quants: &[[i64; QK]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (b, q) in quants.iter().enumerate() {
            out.extend_from_slice(&scales[b].to_le_bytes());
            if format.has_min() {
                out.extend_from_slice(&mins[b].to_le_bytes());
            }
            match format {
                Format::Q5_0 | Format::Q5_1 => {
                    let offset = if format == Format::Q5_0 { 16 } else { 0 };
                    let u: Vec<u32> = q.iter().map(|&v| (v + offset) as u32).collect();
                    let mask = u
                        .iter()
                        .enumerate()
                        .fold(0u32, |m, (i, &v)| m | (((v >> 4) & 1) << i));
                    out.extend_from_slice(&mask.to_le_bytes());
                    out.extend((0..QK / 2).map(|j| (u[j] & 0x0F) as u8 | ((u[j + 16] as u8) << 4)));
                }
                Format::Q8_0 => out.extend(q.iter().map(|&v| v as i8 as u8)),
                Format::Q4_0 | Format::Q4_1 => {
                    let offset = if format == Format::Q4_0 { 8 } else { 0 };
                    out.extend((0..QK / 2).map(|j| {
                        ((q[j] + offset) as u8 & 0x0F) | (((q[j + QK / 2] + offset) as u8) << 4)
                    }));
                }
                _ => unreachable!("32-value block formats only"),
            }
        }
        out
    }

    #[test]
    fn integer_block_products_are_exact() {
        // Power-of-two weight scales (exact in f16, from the smallest normal f16 to the
        // largest), and integer activations with a 127 in every block, so that the activation
        // scale is exactly 1 and its quants are the values themselves. Within a row the scales
        // span two binades, so every term and every partial sum is a multiple of the row's
        // smallest scale below 2^24 of it: f32 holds them exactly in any order, and the result
        // must equal the exact integer arithmetic to the bit. Quants cover their extremes
        // (nibbles 0 and 15; Q8_0's -128 and 127), and one activation block is all zeros.
        // Twenty rows: one tile of sixteen where the AVX-512 tier tiles, and four after it.
        let mut rng = SplitMix(5);
        let mut int = |lo: i64, hi: i64| -> i64 {
            let u = f64::from(rng.next_f32()) * 0.5 + 0.5;
            (lo + ((hi - lo + 1) as f64 * u) as i64).min(hi)
        };
        let (rows, k, m) = (20usize, 256usize, 3usize);
        let blocks = k / QK;
        let mut x = vec![0f32; m * k];
        for (i, v) in x.iter_mut().enumerate() {
            let (r, c) = (i / k, i % k);
            *v = if r == 1 && c < QK {
                0.0
            } else if c % QK == (r * 7 + c / QK) % QK {
                if (c / QK).is_multiple_of(2) {
                    127.0
                } else {
                    -127.0
                }
            } else {
                int(-127, 127) as f32
            };
        }
        for format in [
            Format::Q4_0,
            Format::Q4_1,
            Format::Q5_0,
            Format::Q5_1,
            Format::Q8_0,
        ] {
            let (lo, hi) = match format {
                Format::Q4_0 => (-8, 7),
                Format::Q4_1 => (0, 15),
                Format::Q5_0 => (-16, 15),
                Format::Q5_1 => (0, 31),
                _ => (-128, 127),
            };
            let (mut scales, mut mins, mut quants) = (Vec::new(), Vec::new(), Vec::new());
            let exponents = [-14, -7, 0, 8, 14];
            for row in 0..rows {
                let e = exponents[row % exponents.len()];
                for b in 0..blocks {
                    let scale = 2f32.powi(e + (b % 2) as i32);
                    let sign = if (row + b) % 3 == 0 { -1.0 } else { 1.0 };
                    scales.push(f16::from_f32(sign * scale));
                    mins.push(f16::from_f32(-sign * 2f32.powi(e + ((b + 1) % 2) as i32)));
                    let mut q = [0i64; QK];
                    for (i, v) in q.iter_mut().enumerate() {
                        *v = match (row + b + i) % 11 {
                            0 => lo,
                            1 => hi,
                            _ => int(lo, hi),
                        };
                    }
                    quants.push(q);
                }
            }
            let data = ggml_bytes(format, &scales, &mins, &quants);
            let ours = QuantMatrix::from_blocks(format, rows, k, &data).expect("blocks");
            let w = ggml_blocks(format, &data);
            let acts: Vec<Vec<ActBlock>> = x.chunks_exact(k).map(act_blocks).collect();
            for xr in &acts {
                for xb in xr {
                    assert!(
                        xb.d == 1.0 || xb.q.iter().all(|&q| q == 0),
                        "exact activations"
                    );
                }
            }
            for kernel in kernels() {
                let got: Vec<f32> = ours
                    .forward_with(&tensor(x.clone(), &[m, k]), kernel)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("forward");
                for (r, xr) in acts.iter().enumerate() {
                    for j in 0..rows {
                        let (want, _) = reference_dot(format, &w[j * blocks..(j + 1) * blocks], xr);
                        assert_eq!(
                            (want as f32).to_bits(),
                            got[r * rows + j].to_bits(),
                            "{format:?} {kernel:?} ({r},{j}): want {want}, got {}",
                            got[r * rows + j]
                        );
                        assert_eq!(
                            f64::from(want as f32),
                            want,
                            "the reference is exact in f32"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiled_rows_give_the_same_bits() {
        // The tiled layout (what the AVX-512 kernels read) holds the same blocks: every
        // tier, on either layout, gives the portable kernel's bits on the file's layout, and
        // the rows dequantize alike; whole tiles, a partial last one and a matrix too short
        // for any.
        let mut rng = SplitMix(77);
        let shapes = [
            (67usize, 512usize),
            (48, 1536),
            (130, 256),
            (9, 256),
            (33, 96),
            (16, 800),
        ];
        let types = BLOCK32.into_iter().chain(KQUANTS);
        for (dtype, (n, k)) in types.flat_map(|d| shapes.map(|s| (d, s))) {
            if !k.is_multiple_of(block_values(dtype)) {
                continue;
            }
            let format = Format::from_ggml(dtype).expect("format");
            let w = QTensor::quantize(&tensor(rng.matrix(n, k), &[n, k]), dtype).expect("quantize");
            let data = w.data().expect("data");
            let file =
                QuantMatrix::from_blocks_with(format, n, k, &data, false).expect("file layout");
            let tiled = QuantMatrix::from_blocks_with(format, n, k, &data, true).expect("tiled");
            assert_eq!(tiled.tiled, n / 16 * 16);
            let (mut a, mut b) = (vec![0f32; k], vec![0f32; k]);
            for row in 0..n {
                file.dequantize_row(row, &mut a);
                tiled.dequantize_row(row, &mut b);
                assert!(
                    a == b,
                    "{dtype:?} ({n},{k}) row {row} dequantizes differently"
                );
            }
            for m in [1, 2, 3, 4, 7, 13] {
                let x = tensor(rng.matrix(m, k), &[m, k]);
                let bits = |q: &QuantMatrix, kernel| -> Vec<u32> {
                    let y: Vec<f32> = q
                        .forward_with(&x, kernel)
                        .and_then(|t| t.flatten_all())
                        .and_then(|t| t.to_vec1())
                        .expect("forward");
                    y.into_iter().map(f32::to_bits).collect()
                };
                let want = bits(&file, Kernel::Scalar);
                for kernel in kernels() {
                    let what = format!("{dtype:?} ({n},{k}) m={m} {kernel:?}");
                    assert!(bits(&tiled, kernel) == want, "tiled {what}");
                    assert!(bits(&file, kernel) == want, "file {what}");
                }
            }
        }
    }

    #[test]
    fn embedding_rows_equal_ggml_dequantization() {
        let mut rng = SplitMix(11);
        let (n, k) = (40, 512);
        for dtype in BLOCK32.into_iter().chain(KQUANTS) {
            let w = QTensor::quantize(&tensor(rng.matrix(n, k), &[n, k]), dtype).expect("q");
            let ours = QuantMatrix::from_qtensor(&w)
                .expect("repack")
                .expect("supported");
            let table: Vec<f32> = w
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("dequantize");
            let ids = Tensor::new(&[[0u32, 39, 7], [7, 1, 20]], &Device::Cpu).expect("ids");
            let got = ours.embedding(&ids).expect("embedding");
            assert_eq!(got.dims(), &[2, 3, k]);
            let got: Vec<f32> = got.flatten_all().and_then(|t| t.to_vec1()).expect("rows");
            for (slot, id) in [0usize, 39, 7, 7, 1, 20].into_iter().enumerate() {
                assert_eq!(
                    &got[slot * k..(slot + 1) * k],
                    &table[id * k..(id + 1) * k],
                    "{dtype:?} row {id}"
                );
            }
            let outside = Tensor::new(&[[40u32]], &Device::Cpu).expect("ids");
            assert!(ours.embedding(&outside).is_err());
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantization_equals_scalar() {
        let Kernel::Avx2 = Kernel::best() else {
            return;
        };
        let mut rng = SplitMix(7);
        let mut x = rng.matrix(64, QK);
        // Exact ties: x / d lands on k + 0.5, where round-half-even would differ.
        x[..QK].copy_from_slice(&std::array::from_fn::<f32, QK, _>(|i| {
            if i == 0 {
                127.0
            } else {
                i as f32 - 15.5
            }
        }));
        for block in x.chunks_exact(QK) {
            let block: &[f32; QK] = block.try_into().expect("block");
            let (mut a, mut b) = ([0i8; QK], [0i8; QK]);
            let sa = quantize_block_scalar(block, &mut a);
            // SAFETY: avx2/fma/f16c detected above.
            let sb = unsafe { avx2::quantize_block(block, &mut b) };
            assert_eq!((sa, a), (sb, b));
        }
    }

    #[test]
    fn dequantized_reference_agrees() {
        // Independent of how anyone quantizes activations: f64 products of GGML's dequantized
        // weights with the unquantized activations, each output held to a worst-case bound on
        // what 8-bit activations may cost. Ours: a block's scale is d = max|x| / 127, rounded
        // to f16 (relative error 2^-11), and q = round(x / d), so x moves by at most
        // d / 2 + |q| * 2^-11 * d <= max|x| * (1/254 + 2^-11). Q4_1 also takes each block's sum
        // through f16 twice (at most 2^-10 * |s| per block, times |m| <= max|w|).
        //
        // candle's `QMatMul` is held to the bound that covers every path it may take on any
        // CPU: per 32 values as ours, or, on AVX-512-VNNI / AVX-VNNI CPUs, Q8_K activations
        // with one f32 scale per 256 values, q = round(-128 x / max) clamped to 127, which
        // moves a value by up to max|x| / 128 of its 256-value block.
        //
        // The K-quants' Q8_K activations: d = max|x| / 127 over 256 values, unrounded, and
        // q = round(x / d), so x moves by at most max|x| / 254 of its 256-value block (plus
        // the rounding of the reciprocal scale).
        let mut rng = SplitMix(3);
        let (n, k, m) = (96, 512, 5);
        let blocks = k / QK;
        for dtype in BLOCK32.into_iter().chain(KQUANTS) {
            let w = QTensor::quantize(&tensor(rng.matrix(n, k), &[n, k]), dtype).expect("q");
            let wf: Vec<f32> = w
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("dequantize");
            let xv = rng.matrix(m, k);
            let ours = QuantMatrix::from_qtensor(&w).expect("ok").expect("some");
            let mut outputs: Vec<(String, Vec<f32>, bool)> = kernels()
                .into_iter()
                .map(|kernel| {
                    let got: Vec<f32> = ours
                        .forward_with(&tensor(xv.clone(), &[m, k]), kernel)
                        .and_then(|t| t.flatten_all())
                        .and_then(|t| t.to_vec1())
                        .expect("forward");
                    (format!("{kernel:?}"), got, false)
                })
                .collect();
            let candle = candle_core::quantized::QMatMul::from_qtensor(w).expect("qmatmul");
            let theirs: Vec<f32> =
                candle_core::Module::forward(&candle, &tensor(xv.clone(), &[m, k]))
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .expect("candle forward");
            outputs.push(("candle".into(), theirs, true));
            for (who, got, any_path) in &outputs {
                for r in 0..m {
                    let xr = &xv[r * k..(r + 1) * k];
                    let row_max = |at: usize, width: usize| {
                        let start = at / width * width;
                        xr[start..start + width]
                            .iter()
                            .fold(0f32, |a, v| a.max(v.abs()))
                    };
                    for j in 0..n {
                        let (mut want, mut bound) = (0f64, 0f64);
                        for b in 0..blocks {
                            let xs = &xr[b * QK..(b + 1) * QK];
                            let ws = &wf[j * k + b * QK..j * k + (b + 1) * QK];
                            let amax = f64::from(row_max(b * QK, QK));
                            let step = if *any_path {
                                f64::from(row_max(b * QK, 256)) / 128.0
                            } else if KQUANTS.contains(&dtype) {
                                f64::from(row_max(b * QK, 256)) * (1.0 / 254.0 + 1e-6)
                            } else {
                                amax * (1.0 / 254.0 + 1.0 / 2048.0)
                            };
                            let wmax = ws.iter().fold(0f32, |a, v| a.max(v.abs()));
                            let mut sum_x = 0f64;
                            for (&x, &wv) in xs.iter().zip(ws) {
                                want += f64::from(x) * f64::from(wv);
                                bound += f64::from(wv.abs()) * step;
                                sum_x += f64::from(x);
                            }
                            if dtype == GgmlDType::Q4_1 || dtype == GgmlDType::Q5_1 {
                                let s = sum_x.abs() + step * QK as f64;
                                bound += f64::from(wmax) * s / 1024.0;
                            }
                        }
                        // Plus f32 accumulation slack.
                        let bound = bound * 1.01 + 1e-5 * want.abs() + 1e-6;
                        let diff = (f64::from(got[r * n + j]) - want).abs();
                        assert!(diff <= bound, "{dtype:?} {who} ({r},{j}): {diff} > {bound}");
                    }
                }
            }
        }
    }

    /// Every matrix of the real test model (ARBITER_TEST_GGUF, which CI sets) that our kernels
    /// take against the exact block reference, decode and prefill shapes.
    #[test]
    fn real_gguf_matrices_match_the_exact_block_reference() {
        use candle_core::quantized::gguf_file;
        let Ok(path) = std::env::var("ARBITER_TEST_GGUF") else {
            eprintln!("SKIPPED: set ARBITER_TEST_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf to run this test");
            return;
        };
        let mut file = std::fs::File::open(&path).expect("open the GGUF file");
        let content = gguf_file::Content::read(&mut file).expect("read GGUF metadata");
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        let (mut checked, mut worst) = (0, 0f64);
        let mut rng = SplitMix(11);
        for name in names {
            let q = content
                .tensor(&mut file, name, &Device::Cpu)
                .expect("read tensor");
            if QuantMatrix::from_qtensor(&q)
                .expect("from_qtensor")
                .is_none()
            {
                continue;
            }
            let (_, k) = q.shape().dims2().expect("matrix");
            for m in [1, 17] {
                let x = rng.matrix(m, k);
                let worst_here = if KQUANTS.contains(&q.dtype()) {
                    check_k_against_reference(&q, &x, m, name)
                } else {
                    check_against_blocks(&q, &x, m, name)
                };
                worst = worst.max(worst_here);
            }
            checked += 1;
        }
        assert!(checked > 0, "no matrices our kernels take in {path}");
        eprintln!(
            "{checked} matrices match the block reference; worst error {worst:.3} of its bound"
        );
    }

    #[test]
    fn unsupported_tensors_are_declined() {
        let mut rng = SplitMix(1);
        let x = tensor(rng.matrix(64, 256), &[64, 256]);
        for dtype in [
            GgmlDType::F32,
            GgmlDType::F16,
            GgmlDType::Q2K,
            GgmlDType::Q3K,
            GgmlDType::Q8_1,
        ] {
            let q = QTensor::quantize(&x, dtype).expect("quantize");
            assert!(
                QuantMatrix::from_qtensor(&q).expect("ok").is_none(),
                "{dtype:?}"
            );
        }
        // Not a matrix.
        let q = QTensor::quantize(&x.reshape((4, 16, 256)).expect("r"), GgmlDType::Q4_0)
            .expect("quantize");
        assert!(QuantMatrix::from_qtensor(&q).expect("ok").is_none());
        let q = QTensor::quantize(&x.flatten_all().expect("f"), GgmlDType::Q8_0).expect("q");
        assert!(QuantMatrix::from_qtensor(&q).expect("ok").is_none());
        // candle itself refuses to build a Q4_0/Q4_1/Q8_0 tensor whose last dimension is not
        // a multiple of 32, so that case can only be checked on the raw-block constructor.
        let short = QuantMatrix::from_blocks(Format::Q4_1, 2, 64, &[0u8; 79]);
        assert!(short.is_err());
    }

    #[test]
    fn forward_checks_input_and_keeps_dtype_and_shape() {
        let mut rng = SplitMix(9);
        let w =
            QTensor::quantize(&tensor(rng.matrix(32, 64), &[32, 64]), GgmlDType::Q4_1).expect("q");
        let ours = QuantMatrix::from_qtensor(&w).expect("ok").expect("some");
        let wrong = tensor(rng.matrix(2, 96), &[2, 96]);
        let err = ours.forward(&wrong).expect_err("width mismatch");
        assert!(
            err.to_string().contains("last dimension must be 64"),
            "{err}"
        );

        // A transposed (non-contiguous) input and a bf16 input give the same result as f32.
        let x = tensor(rng.matrix(64, 3), &[64, 3]).t().expect("t");
        let y = ours.forward(&x).expect("forward");
        let y_ref = ours.forward(&x.contiguous().expect("c")).expect("forward");
        assert_eq!(rel_diff(&y, &y_ref), 0.0);
        let yb = ours
            .forward(&x.to_dtype(DType::BF16).expect("bf16"))
            .expect("forward");
        assert_eq!(yb.dtype(), DType::BF16);
        assert_eq!(yb.dims(), &[3, 32]);

        let empty = Tensor::zeros((1, 0, 64), DType::F32, &Device::Cpu).expect("zeros");
        assert_eq!(ours.forward(&empty).expect("forward").dims(), &[1, 0, 32]);
    }
}
