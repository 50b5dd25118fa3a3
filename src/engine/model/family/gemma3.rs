//! Gemma 3 from GGUF or safetensors: the project's corrected version of candle-transformers'
//! `quantized_gemma3` and `gemma3`, written against the same tensor names and metadata.
//!
//! candle-transformers 0.11's `gemma3` (safetensors) fails any prompt longer than the sliding
//! window (its rotating cache is handed a non-contiguous value tensor: "slice-set only supports
//! contiguous tensors").
//!
//! candle-transformers 0.11's `quantized_gemma3` cannot be trusted as is (checked against
//! llama.cpp on the Gemma-3-270M GGUF, see `tests/engine_families.rs`):
//! - its MLP gates with SiLU, where Gemma uses GELU (tanh approximation), so every layer's
//!   output is off;
//! - a multi-token forward after the first (chunked prefill, forced grammar tokens) builds a
//!   mask that hides every cached token (and mixes f32 and u32 in one `cat`);
//! - a single-token step passes no mask at all, so sliding-window layers read the whole cache
//!   once a conversation is longer than the window (512 tokens for the 270M);
//! - every layer precomputes RoPE tables for 131,072 positions (2.4 GB for the 270M's 18
//!   layers) and the KV cache grows by `Tensor::cat` on every token.
//!
//! Here the MLP uses GELU, masks are causal against the cache and windowed on sliding layers,
//! RoPE tables are f32 and grow with the sequence (one table per base: local and global), and
//! the cache is the decoder's in-place [`KvCache`], so rewinding a shared prompt prefix works
//! as it does on our own path.

use super::super::layers::{softmax_f32, KvCache, Proj, RmsNorm, Rope};
use super::super::quant::QuantMatrix;
use super::super::Embedding;
use crate::engine::config::ModelConfig;
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;

/// Every `SLIDING_PATTERN`-th layer attends globally; the others through the window
/// (llama.cpp's default for Gemma 3 when the file does not say).
const SLIDING_PATTERN: usize = 6;
/// RoPE base of the sliding layers when the file does not give `rope.local_freq_base`.
const LOCAL_ROPE_BASE: f64 = 10_000.0;
/// RoPE positions built at load; the tables grow (doubling) past this.
const INITIAL_POSITIONS: usize = 1024;

#[derive(Debug, Clone)]
struct Layer {
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    attn_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    post_ffn_norm: RmsNorm,
    gate: Proj,
    up: Proj,
    down: Proj,
    /// The window of a sliding layer; `None` on a global one.
    window: Option<usize>,
    cache: KvCache,
}

/// A Gemma 3 decoder from GGUF with its KV cache.
#[derive(Debug, Clone)]
pub struct Gemma3 {
    config: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    rope_global: Rope,
    rope_local: Rope,
    /// Queries are scaled by this (`query_pre_attn_scalar`^-1/2).
    scale: f64,
    device: Device,
}

/// What `config.json` says about Gemma 3's attention that `ModelConfig` does not carry.
#[derive(Debug, serde::Deserialize)]
struct HfGemma3 {
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    /// Newer configs list each layer's kind instead of a pattern.
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f64>,
    query_pre_attn_scalar: Option<f64>,
}

/// A GGUF matrix as a projection: the project's CPU kernels where they take its type, else
/// candle's quantized matmul.
fn proj(q: candle_core::quantized::QTensor) -> Result<Proj> {
    Ok(match QuantMatrix::from_qtensor(&q)? {
        Some(weight) => Proj::Fast { weight, bias: None },
        None => Proj::Quant {
            weight: QMatMul::from_qtensor(q)?,
            bias: None,
        },
    })
}

impl Gemma3 {
    /// Loads the `gemma3` GGUF `content` read from `reader`.
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        config: &ModelConfig,
        content: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Gemma3> {
        let md = &content.metadata;
        let float = |key: &str| {
            md.get(&format!("gemma3.{key}"))
                .and_then(|v| v.to_f32().ok())
                .map(f64::from)
        };
        let int = |key: &str| {
            md.get(&format!("gemma3.{key}"))
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
        };
        let window = int("attention.sliding_window");
        let pattern = int("attention.sliding_window_type").unwrap_or(SLIDING_PATTERN);
        let global_base = config.rope_theta;
        let local_base = float("rope.local_freq_base").unwrap_or(LOCAL_ROPE_BASE);
        let eps = config.rms_norm_eps as f32;
        let norm = |reader: &mut R, name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: content.tensor(reader, name, device)?.dequantize(device)?,
                eps,
            })
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("blk.{i}");
            let q_norm = norm(reader, &format!("{p}.attn_q_norm.weight"))?;
            let k_norm = norm(reader, &format!("{p}.attn_k_norm.weight"))?;
            let attn_norm = norm(reader, &format!("{p}.attn_norm.weight"))?;
            let post_attn_norm = norm(reader, &format!("{p}.post_attention_norm.weight"))?;
            let ffn_norm = norm(reader, &format!("{p}.ffn_norm.weight"))?;
            let post_ffn_norm = norm(reader, &format!("{p}.post_ffw_norm.weight"))?;
            let mut weight =
                |name: &str| proj(content.tensor(reader, &format!("{p}.{name}.weight"), device)?);
            let sliding = pattern > 0 && (i + 1) % pattern != 0;
            layers.push(Layer {
                q: weight("attn_q")?,
                k: weight("attn_k")?,
                v: weight("attn_v")?,
                o: weight("attn_output")?,
                gate: weight("ffn_gate")?,
                up: weight("ffn_up")?,
                down: weight("ffn_down")?,
                q_norm,
                k_norm,
                attn_norm,
                post_attn_norm,
                ffn_norm,
                post_ffn_norm,
                window: window.filter(|_| sliding),
                cache: KvCache::new(),
            });
        }
        let norm = RmsNorm {
            weight: content
                .tensor(reader, "output_norm.weight", device)?
                .dequantize(device)?,
            eps,
        };
        let embed_q = Arc::new(content.tensor(reader, "token_embd.weight", device)?);
        let (lm_head, embed) = if content.tensor_infos.contains_key("output.weight") {
            let head = proj(content.tensor(reader, "output.weight", device)?)?;
            (head, Embedding::Quant(QMatMul::from_arc(embed_q)?))
        } else {
            // Tied: one table serves both, held once.
            match QuantMatrix::from_qtensor(&embed_q)? {
                Some(weight) => (
                    Proj::Fast {
                        weight: weight.clone(),
                        bias: None,
                    },
                    Embedding::Fast(weight),
                ),
                None => (
                    Proj::Quant {
                        weight: QMatMul::from_arc(embed_q.clone())?,
                        bias: None,
                    },
                    Embedding::Quant(QMatMul::from_arc(embed_q)?),
                ),
            }
        };
        let positions = INITIAL_POSITIONS.min(config.max_position.max(1));
        let rope =
            |base: f64| Rope::new(base, config.head_dim, positions, false, DType::F32, device);
        Ok(Gemma3 {
            config: config.clone(),
            embed,
            layers,
            norm,
            lm_head,
            rope_global: rope(global_base)?,
            rope_local: rope(local_base)?,
            scale: gguf_scale(config),
            device: device.clone(),
        })
    }

    /// Loads transformers-layout safetensors (`Gemma3ForCausalLM`), in f32.
    pub fn from_safetensors(
        config: &ModelConfig,
        weights: &[std::path::PathBuf],
        device: &Device,
    ) -> Result<Gemma3> {
        let hf: HfGemma3 = serde_json::from_str(config.json.as_deref().unwrap_or("{}"))
            .map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))?;
        // SAFETY: the weight files are memory-mapped read-only; like every model loader we
        // rely on nobody truncating them while the model is loaded.
        let vb =
            unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(weights, DType::F32, device)? };
        let (h, d) = (config.hidden_size, config.head_dim);
        let (nq, nkv) = (config.heads * d, config.kv_heads * d);
        let eps = config.rms_norm_eps as f32;
        let dense = |name: &str, rows: usize, cols: usize| -> Result<Proj> {
            Ok(Proj::Dense {
                weight: vb.get((rows, cols), name)?,
                bias: None,
            })
        };
        // transformers' Gemma norm scales by (1 + w); GGUF files store 1 + w already.
        let norm = |name: &str, n: usize| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: (vb.get(n, name)? + 1.0)?,
                eps,
            })
        };
        let pattern = hf.sliding_window_pattern.unwrap_or(SLIDING_PATTERN);
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = format!("model.layers.{i}");
            let sliding = match &hf.layer_types {
                Some(kinds) => kinds.get(i).is_some_and(|k| k == "sliding_attention"),
                None => pattern > 0 && (i + 1) % pattern != 0,
            };
            let inter = config.intermediate_size;
            layers.push(Layer {
                q: dense(&format!("{p}.self_attn.q_proj.weight"), nq, h)?,
                k: dense(&format!("{p}.self_attn.k_proj.weight"), nkv, h)?,
                v: dense(&format!("{p}.self_attn.v_proj.weight"), nkv, h)?,
                o: dense(&format!("{p}.self_attn.o_proj.weight"), h, nq)?,
                gate: dense(&format!("{p}.mlp.gate_proj.weight"), inter, h)?,
                up: dense(&format!("{p}.mlp.up_proj.weight"), inter, h)?,
                down: dense(&format!("{p}.mlp.down_proj.weight"), h, inter)?,
                q_norm: norm(&format!("{p}.self_attn.q_norm.weight"), d)?,
                k_norm: norm(&format!("{p}.self_attn.k_norm.weight"), d)?,
                attn_norm: norm(&format!("{p}.input_layernorm.weight"), h)?,
                post_attn_norm: norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
                ffn_norm: norm(&format!("{p}.pre_feedforward_layernorm.weight"), h)?,
                post_ffn_norm: norm(&format!("{p}.post_feedforward_layernorm.weight"), h)?,
                window: hf.sliding_window.filter(|_| sliding),
                cache: KvCache::new(),
            });
        }
        let table = vb.get((config.vocab_size, h), "model.embed_tokens.weight")?;
        let positions = INITIAL_POSITIONS.min(config.max_position.max(1));
        let rope = |base: f64| Rope::new(base, d, positions, false, DType::F32, device);
        Ok(Gemma3 {
            config: config.clone(),
            // Gemma ties the output projection to the embedding.
            lm_head: Proj::Dense {
                weight: table.clone(),
                bias: None,
            },
            embed: Embedding::Dense(table),
            layers,
            norm: norm("model.norm.weight", h)?,
            rope_global: rope(config.rope_theta)?,
            rope_local: rope(hf.rope_local_base_freq.unwrap_or(LOCAL_ROPE_BASE))?,
            scale: 1.0 / hf.query_pre_attn_scalar.unwrap_or(d as f64).sqrt(),
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn position(&self) -> usize {
        self.layers.first().map(|l| l.cache.len()).unwrap_or(0)
    }

    pub fn truncate(&mut self, len: usize) {
        for layer in &mut self.layers {
            layer.cache.truncate(len);
        }
    }

    pub fn clear_cache(&mut self) {
        for layer in &mut self.layers {
            layer.cache.clear();
        }
    }

    pub fn reserve(&mut self, tokens: usize) -> Result<()> {
        self.rope_global.reserve(tokens)?;
        self.rope_local.reserve(tokens)?;
        let (kv, d) = (self.config.kv_heads, self.config.head_dim);
        for layer in &mut self.layers {
            layer
                .cache
                .reserve(tokens, kv, d, DType::F32, &self.device)?;
        }
        Ok(())
    }

    /// Runs `tokens` after what is cached; the f32 hidden states of every one, (1, seq, hidden).
    fn hidden(&mut self, tokens: &[u32]) -> Result<Tensor> {
        crate::engine::model::check_tokens(tokens, self.config.vocab_size)?;
        let start = self.position();
        let seq = tokens.len();
        let total = start + seq;
        self.rope_global.reserve(total)?;
        self.rope_local.reserve(total)?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        // Gemma scales the embedding by sqrt(hidden) before the first layer.
        let mut x = (self.embed.forward(&ids)?.to_dtype(DType::F32)?
            * (self.config.hidden_size as f64).sqrt())?;
        let scale = self.scale;
        let (heads, kv_heads, d) = (
            self.config.heads,
            self.config.kv_heads,
            self.config.head_dim,
        );
        let group = heads / kv_heads;
        let mut masks: Vec<(Option<usize>, Option<Tensor>)> = Vec::new();
        for layer in &mut self.layers {
            let rope = if layer.window.is_some() {
                &self.rope_local
            } else {
                &self.rope_global
            };
            let h = layer.attn_norm.forward(&x)?;
            let split = |t: Tensor, n: usize| -> Result<Tensor> {
                t.reshape((1, seq, n, d))?.transpose(1, 2)?.contiguous()
            };
            let q = layer.q_norm.forward(&split(layer.q.forward(&h)?, heads)?)?;
            let k = layer
                .k_norm
                .forward(&split(layer.k.forward(&h)?, kv_heads)?)?;
            let v = split(layer.v.forward(&h)?, kv_heads)?;
            let q = rope.apply(&q, start)?;
            let k = rope.apply(&k, start)?;
            let (k, v) = layer.cache.append(&k, &v)?;
            // Keys no query of this chunk may see through the window are cut off the front;
            // the mask handles the rest.
            let first = match layer.window {
                Some(w) => (start + 1).saturating_sub(w),
                None => 0,
            };
            let (k, v) = (
                k.narrow(2, first, total - first)?,
                v.narrow(2, first, total - first)?,
            );
            let mask = match masks.iter().find(|(w, _)| *w == layer.window) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = window_mask(seq, start, first, layer.window, &self.device)?;
                    masks.push((layer.window, m.clone()));
                    m
                }
            };
            let q = (q * scale)?.reshape((1, kv_heads, group * seq, d))?;
            let scores = q.matmul(&k.t()?)?;
            let scores = match &mask {
                Some(m) => scores
                    .reshape((1, kv_heads, group, seq, total - first))?
                    .broadcast_add(m)?
                    .reshape((1, kv_heads, group * seq, total - first))?,
                None => scores,
            };
            let out = softmax_f32(&scores)?
                .matmul(&v.contiguous()?)?
                .reshape((1, heads, seq, d))?
                .transpose(1, 2)?
                .reshape((1, seq, heads * d))?;
            let attn = layer.post_attn_norm.forward(&layer.o.forward(&out)?)?;
            x = (x + attn)?;
            let h = layer.ffn_norm.forward(&x)?;
            // GELU (tanh approximation), Gemma's activation; candle-transformers' quantized
            // copy uses SiLU here.
            let act = (layer.gate.forward(&h)?.gelu()? * layer.up.forward(&h)?)?;
            let mlp = layer.post_ffn_norm.forward(&layer.down.forward(&act)?)?;
            x = (x + mlp)?;
        }
        self.norm.forward(&x)
    }

    /// Runs `tokens` after what is cached and returns the f32 logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let hidden = self.hidden(tokens)?;
        let last = hidden.narrow(1, tokens.len() - 1, 1)?;
        self.lm_head
            .forward(&last)?
            .flatten_all()?
            .to_dtype(DType::F32)
    }

    /// Logits of every one of `tokens`, (len, vocab).
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let hidden = self.hidden(tokens)?;
        let s = tokens.len();
        self.lm_head
            .forward(&hidden)?
            .reshape((s, ()))?
            .to_dtype(DType::F32)
    }
}

/// The attention scale of a GGUF Gemma 3. Gemma 3 scales queries by
/// `query_pre_attn_scalar`^-1/2, which the GGUF does not carry: it is the head size except for
/// the 27B (62 layers), where it is hidden / heads, as llama.cpp assumes too.
fn gguf_scale(c: &ModelConfig) -> f64 {
    let d = if c.layers == 62 {
        c.hidden_size / c.heads.max(1)
    } else {
        c.head_dim
    };
    1.0 / (d as f64).sqrt()
}

/// The additive mask of `seq` queries at positions `start..` over keys `first..start + seq`:
/// causal, and on a sliding layer no further back than the window (a query at `i` sees keys
/// `j` with `i - window < j <= i`, as transformers and llama.cpp do). `None` where nothing
/// is masked (one query whose keys are all in reach).
fn window_mask(
    seq: usize,
    start: usize,
    first: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = start + seq;
    let visible = |i: usize, j: usize| j <= i && window.is_none_or(|w| i - j < w);
    let mask: Vec<f32> = (start..total)
        .flat_map(|i| {
            (first..total).map(move |j| {
                if visible(i, j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    if mask.iter().all(|m| *m == 0.0) {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(mask, (seq, total - first), device)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_mask_is_causal_and_windowed() {
        let dev = Device::Cpu;
        // 3 queries at 4, 5, 6 after 4 cached; window 3: query 6 sees 4, 5, 6 only.
        let m = window_mask(3, 4, 0, Some(3), &dev).unwrap().unwrap();
        let rows: Vec<Vec<f32>> = m.to_vec2().unwrap();
        let seen = |r: &Vec<f32>| {
            r.iter()
                .enumerate()
                .filter(|(_, v)| **v == 0.0)
                .map(|(j, _)| j)
                .collect::<Vec<_>>()
        };
        assert_eq!(seen(&rows[0]), vec![2, 3, 4]);
        assert_eq!(seen(&rows[1]), vec![3, 4, 5]);
        assert_eq!(seen(&rows[2]), vec![4, 5, 6]);
        // Global: plain causal over the cache.
        let m = window_mask(2, 3, 0, None, &dev).unwrap().unwrap();
        let rows: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(seen(&rows[0]), vec![0, 1, 2, 3]);
        assert_eq!(seen(&rows[1]), vec![0, 1, 2, 3, 4]);
        // One query, keys already cut to the window: nothing to mask.
        assert!(window_mask(1, 9, 7, Some(3), &dev).unwrap().is_none());
    }
}
