//! The key/value cache of several sequences at once, held in fixed-size blocks of one pool
//! shared by every sequence (paged, as vLLM does). A sequence holds only the blocks its tokens
//! fill, so memory follows the tokens held rather than each sequence's maximum context; the
//! pool grows as blocks are taken, up to a limit, and a sequence whose reservation does not
//! fit waits (see `engine::schedule`) instead of failing mid-answer.

use candle_core::{DType, Device, Result, Tensor};
use std::collections::HashMap;

/// Tokens per block: small enough that a sequence wastes little of its last block, large
/// enough that block tables stay short.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// Identifies a sequence in the cache (the engine's request id).
pub type SeqId = u64;

/// One sequence's blocks, in order, and how many tokens they hold.
#[derive(Debug, Clone, Default)]
struct SeqBlocks {
    blocks: Vec<u32>,
    len: usize,
    /// Blocks promised at admission, whether taken yet or not.
    reserved: usize,
}

/// The shared pool. Every layer's keys and values are tensors of (capacity * block_size,
/// kv_heads, head_dim) rows: token `t` of a sequence lives in row
/// `blocks[t / block_size] * block_size + t % block_size` of each.
#[derive(Debug)]
pub struct PagedCache {
    block_size: usize,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
    /// Per layer (keys, values); empty until the first block is taken.
    pools: Vec<(Tensor, Tensor)>,
    /// Blocks allocated on the device.
    capacity: usize,
    /// The most blocks the pool may grow to.
    max_blocks: usize,
    free: Vec<u32>,
    seqs: HashMap<SeqId, SeqBlocks>,
    /// Blocks promised to admitted sequences, summed.
    reserved: usize,
    /// The most blocks in use at once since creation.
    peak_used: usize,
}

/// Why the cache refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("sequence {0} is not in the KV cache")]
    Unknown(SeqId),
    #[error("the KV cache has {free} free blocks of {block_size} tokens and {needed} are needed: lower the batch size or the context")]
    Full {
        free: usize,
        needed: usize,
        block_size: usize,
    },
}

impl From<CacheError> for candle_core::Error {
    fn from(e: CacheError) -> Self {
        candle_core::Error::Msg(e.to_string())
    }
}

impl PagedCache {
    /// An empty cache for a model of `layers` layers of `kv_heads` x `head_dim` keys, allowed
    /// to grow to `max_blocks` blocks of `block_size` tokens. Nothing is allocated yet.
    pub fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        block_size: usize,
        max_blocks: usize,
        dtype: DType,
        device: &Device,
    ) -> PagedCache {
        PagedCache {
            block_size: block_size.max(1),
            layers,
            kv_heads,
            head_dim,
            dtype,
            device: device.clone(),
            pools: Vec::new(),
            capacity: 0,
            max_blocks,
            free: Vec::new(),
            seqs: HashMap::new(),
            reserved: 0,
            peak_used: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn max_blocks(&self) -> usize {
        self.max_blocks
    }

    /// Bytes of one block across every layer, keys and values.
    pub fn block_bytes(&self) -> usize {
        2 * self.layers
            * self.block_size
            * self.kv_heads
            * self.head_dim
            * self.dtype.size_in_bytes()
    }

    /// Bytes the keys and values of `tokens` tokens need, without any block rounding.
    pub fn token_bytes(&self, tokens: usize) -> usize {
        2 * self.layers * tokens * self.kv_heads * self.head_dim * self.dtype.size_in_bytes()
    }

    /// Blocks that `tokens` tokens fill.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Blocks allocated on the device (the pool's memory is this times `block_bytes`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Blocks held by sequences now.
    pub fn used_blocks(&self) -> usize {
        self.capacity - self.free.len()
    }

    pub fn peak_used_blocks(&self) -> usize {
        self.peak_used
    }

    /// Tokens held by every sequence together.
    pub fn held_tokens(&self) -> usize {
        self.seqs.values().map(|s| s.len).sum()
    }

    /// Whether a sequence that may grow to `tokens` tokens can be promised its blocks now.
    pub fn can_admit(&self, tokens: usize) -> bool {
        self.reserved + self.blocks_for(tokens) <= self.max_blocks
    }

    /// Whether a sequence of `tokens` tokens could ever be admitted (into an empty cache).
    pub fn could_ever_admit(&self, tokens: usize) -> bool {
        self.blocks_for(tokens) <= self.max_blocks
    }

    /// Adds sequence `id` with room promised for `tokens` tokens; its blocks are taken as its
    /// tokens arrive.
    pub fn admit(&mut self, id: SeqId, tokens: usize) -> std::result::Result<(), CacheError> {
        let needed = self.blocks_for(tokens);
        if self.reserved + needed > self.max_blocks {
            return Err(CacheError::Full {
                free: self.max_blocks - self.reserved,
                needed,
                block_size: self.block_size,
            });
        }
        self.reserved += needed;
        self.seqs.insert(
            id,
            SeqBlocks {
                reserved: needed,
                ..SeqBlocks::default()
            },
        );
        Ok(())
    }

    /// Frees sequence `id`'s blocks and its promise.
    pub fn release(&mut self, id: SeqId) {
        if let Some(seq) = self.seqs.remove(&id) {
            self.reserved -= seq.reserved;
            self.free.extend(seq.blocks);
        }
    }

    pub fn contains(&self, id: SeqId) -> bool {
        self.seqs.contains_key(&id)
    }

    /// Tokens sequence `id` holds: the position its next token takes.
    pub fn len(&self, id: SeqId) -> std::result::Result<usize, CacheError> {
        self.seqs
            .get(&id)
            .map(|s| s.len)
            .ok_or(CacheError::Unknown(id))
    }

    /// Blocks that growing each `(id, n)` by `n` tokens takes beyond what it holds.
    fn new_blocks(&self, grow: &[(SeqId, usize)]) -> std::result::Result<usize, CacheError> {
        let mut total = 0;
        for &(id, n) in grow {
            let seq = self.seqs.get(&id).ok_or(CacheError::Unknown(id))?;
            total += self
                .blocks_for(seq.len + n)
                .saturating_sub(seq.blocks.len());
        }
        Ok(total)
    }

    /// Grows every `(id, n)` by `n` tokens, all or none, taking blocks as needed, and returns
    /// each one's rows for its new tokens (to write keys and values to) in the same order.
    pub fn extend(&mut self, grow: &[(SeqId, usize)]) -> Result<Vec<Vec<u32>>> {
        let needed = self.new_blocks(grow)?;
        if needed > self.free.len() {
            let want = self.capacity - self.free.len() + needed;
            if want > self.max_blocks {
                return Err(CacheError::Full {
                    free: self.max_blocks - (self.capacity - self.free.len()),
                    needed,
                    block_size: self.block_size,
                }
                .into());
            }
            self.grow_to(want)?;
        }
        let bs = self.block_size;
        let mut rows = Vec::with_capacity(grow.len());
        for &(id, n) in grow {
            let seq = self.seqs.get_mut(&id).ok_or(CacheError::Unknown(id))?;
            while seq.blocks.len() < (seq.len + n).div_ceil(bs) {
                let block = self.free.pop().ok_or(CacheError::Full {
                    free: 0,
                    needed: 1,
                    block_size: bs,
                })?;
                seq.blocks.push(block);
            }
            rows.push(
                (seq.len..seq.len + n)
                    .map(|t| seq.blocks[t / bs] * bs as u32 + (t % bs) as u32)
                    .collect(),
            );
            seq.len += n;
        }
        self.peak_used = self.peak_used.max(self.used_blocks());
        Ok(rows)
    }

    /// Rows of every token sequence `id` holds, in order.
    pub fn rows(&self, id: SeqId) -> std::result::Result<Vec<u32>, CacheError> {
        let seq = self.seqs.get(&id).ok_or(CacheError::Unknown(id))?;
        let bs = self.block_size;
        Ok((0..seq.len)
            .map(|t| seq.blocks[t / bs] * bs as u32 + (t % bs) as u32)
            .collect())
    }

    /// Sequence `id`'s block table (block indices in token order).
    pub fn blocks(&self, id: SeqId) -> std::result::Result<&[u32], CacheError> {
        self.seqs
            .get(&id)
            .map(|s| s.blocks.as_slice())
            .ok_or(CacheError::Unknown(id))
    }

    /// Layer `layer`'s whole key and value pools, (capacity * block_size, kv_heads, head_dim).
    pub fn pools(&self, layer: usize) -> Result<(&Tensor, &Tensor)> {
        self.pools
            .get(layer)
            .map(|(k, v)| (k, v))
            .ok_or_else(|| candle_core::Error::Msg(format!("KV pool of layer {layer} missing")))
    }

    /// Reallocates the pool to `blocks` blocks (a little more where the limit allows, so that
    /// growth is rare), keeping what is held. Growth by a quarter keeps the pool within 1.25x
    /// of the blocks in use.
    fn grow_to(&mut self, blocks: usize) -> Result<()> {
        let blocks = blocks
            .max(self.capacity + self.capacity / 4)
            .max(16)
            .min(self.max_blocks);
        if blocks <= self.capacity {
            return Ok(());
        }
        let shape = (blocks * self.block_size, self.kv_heads, self.head_dim);
        let mut pools = Vec::with_capacity(self.layers);
        for layer in 0..self.layers {
            let k = Tensor::zeros(shape, self.dtype, &self.device)?;
            let v = Tensor::zeros(shape, self.dtype, &self.device)?;
            if let Some((old_k, old_v)) = self.pools.get(layer) {
                k.slice_set(old_k, 0, 0)?;
                v.slice_set(old_v, 0, 0)?;
            }
            pools.push((k, v));
        }
        self.pools = pools;
        // Popped from the end: hand out low blocks first.
        self.free
            .extend((self.capacity as u32..blocks as u32).rev());
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        self.capacity = blocks;
        Ok(())
    }

    /// Writes keys and values `k`, `v` (n, kv_heads, head_dim) of layer `layer` to `rows`
    /// (n of them): one copy per run of consecutive rows (a block's worth at most).
    pub fn write(&self, layer: usize, rows: &[u32], k: &Tensor, v: &Tensor) -> Result<()> {
        let (pool_k, pool_v) = self.pools(layer)?;
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            pool_k.slice_set(&k.narrow(0, i, j - i)?.contiguous()?, 0, rows[i] as usize)?;
            pool_v.slice_set(&v.narrow(0, i, j - i)?.contiguous()?, 0, rows[i] as usize)?;
            i = j;
        }
        Ok(())
    }

    /// Sequence `id`'s keys and values of layer `layer` gathered out of the pool, each
    /// (1, kv_heads, len, head_dim): the per-sequence attention's input.
    pub fn gather(&self, layer: usize, id: SeqId) -> Result<(Tensor, Tensor)> {
        let rows = self.rows(id)?;
        let (pool_k, pool_v) = self.pools(layer)?;
        let index = Tensor::new(rows.as_slice(), &self.device)?;
        let take = |pool: &Tensor| -> Result<Tensor> {
            pool.index_select(&index, 0)?
                .transpose(0, 1)?
                .contiguous()?
                .unsqueeze(0)
        };
        Ok((take(pool_k)?, take(pool_v)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_blocks: usize) -> PagedCache {
        PagedCache::new(2, 2, 4, 4, max_blocks, DType::F32, &Device::Cpu)
    }

    #[test]
    fn sequences_take_blocks_as_tokens_arrive_and_give_them_back() {
        let mut c = cache(64);
        c.admit(1, 40).expect("fits");
        c.admit(2, 40).expect("fits");
        assert_eq!(c.capacity(), 0, "nothing allocated before a token arrives");
        let rows = c.extend(&[(1, 5), (2, 3)]).expect("extend");
        assert_eq!(rows[0].len(), 5);
        assert_eq!(rows[1].len(), 3);
        assert_eq!(
            c.used_blocks(),
            3,
            "5 tokens take two blocks of 4, 3 take one"
        );
        // Rows of different sequences never overlap.
        let all: std::collections::HashSet<u32> = rows.iter().flatten().copied().collect();
        assert_eq!(all.len(), 8);
        c.extend(&[(1, 3)]).expect("fills the second block");
        assert_eq!(c.used_blocks(), 3);
        assert_eq!(c.rows(1).expect("rows").len(), 8);
        c.release(1);
        assert_eq!(c.used_blocks(), 1);
        assert_eq!(c.len(2).expect("len"), 3);
        assert!(c.len(1).is_err());
    }

    #[test]
    fn admission_counts_promises_and_extension_is_all_or_nothing() {
        let mut c = cache(4);
        c.admit(1, 12).expect("three blocks");
        assert!(!c.can_admit(8), "two more blocks are not there");
        assert!(c.can_admit(4));
        assert!(c.admit(2, 8).is_err());
        assert!(c.could_ever_admit(16) && !c.could_ever_admit(17));
        c.admit(2, 4).expect("one block");
        c.extend(&[(1, 12)]).expect("its three");
        // Sequence 2 growing past its promise while 1 holds three of four blocks: 2 blocks
        // are needed, one is free, so nothing changes.
        assert!(c.extend(&[(2, 8)]).is_err());
        assert_eq!(c.len(2).expect("len"), 0);
        assert_eq!(c.used_blocks(), 3);
    }

    #[test]
    fn written_rows_read_back_per_sequence_across_pool_growth() {
        let mut c = cache(256);
        let dev = Device::Cpu;
        c.admit(7, 100).expect("fits");
        c.admit(8, 100).expect("fits");
        let mut expect7 = Vec::new();
        for step in 0..30u32 {
            // Interleaved growth, so the sequences' blocks alternate in the pool.
            let rows = c.extend(&[(7, 3), (8, 2)]).expect("extend");
            for (id, rows) in [(7u64, &rows[0]), (8u64, &rows[1])] {
                let n = rows.len();
                let vals: Vec<f32> = (0..n * 8)
                    .map(|i| (id as f32) * 1000.0 + step as f32 + i as f32 * 0.001)
                    .collect();
                let t = Tensor::from_vec(vals.clone(), (n, 2, 4), &dev).expect("t");
                for layer in 0..2 {
                    c.write(layer, rows, &t, &(&t * 2.0).expect("v"))
                        .expect("write");
                }
                if id == 7 {
                    expect7.extend(vals);
                }
            }
        }
        assert!(c.capacity() >= c.used_blocks());
        let (k, v) = c.gather(1, 7).expect("gather");
        assert_eq!(k.dims(), &[1, 2, 90, 4]);
        let back: Vec<f32> = k
            .squeeze(0)
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("k");
        assert_eq!(back, expect7);
        let v: Vec<f32> = v
            .squeeze(0)
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("v");
        assert_eq!(v[5], expect7[5] * 2.0);
    }
}
