//! Building a [`Decoder`] from safetensors (transformers' tensor names) or from GGUF
//! (llama.cpp's names), onto a device.

use super::layers::{merge_dense, GateUp, KvCache, Mlp, Proj, RmsNorm, Rope};
use super::quant::QuantMatrix;
use super::{Attention, Decoder, Embedding, Layer, Qkv};
use crate::engine::config::ModelConfig;
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Result};
use candle_nn::VarBuilder;
use std::path::PathBuf;
use std::sync::Arc;

/// RoPE positions built at load; the tables grow when a longer sequence comes.
const INITIAL_POSITIONS: usize = 4096;

/// Loads transformers-layout safetensors (one file or the shards of an index) in `dtype`.
pub fn load_safetensors(
    config: &ModelConfig,
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<Decoder> {
    // SAFETY: the files are memory-mapped read-only; they are our cache's or the user's model
    // files and are not expected to change while loaded (as in every candle example).
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device)? };
    #[cfg(feature = "cuda")]
    super::cuda::configure_blas(device)?;
    let (h, d) = (config.hidden_size, config.head_dim);
    let dense = |vb: &VarBuilder, name: &str, out: usize, inp: usize, bias: bool| -> Result<Proj> {
        let p = vb.pp(name);
        Ok(Proj::Dense {
            weight: p.get((out, inp), "weight")?,
            bias: if bias {
                Some(p.get(out, "bias")?)
            } else {
                None
            },
        })
    };
    let norm = |vb: &VarBuilder, name: &str| -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: vb.pp(name).get(h, "weight")?,
            eps: config.rms_norm_eps as f32,
        })
    };
    let m = vb.pp("model");
    let embed = m.pp("embed_tokens").get((config.vocab_size, h), "weight")?;
    let merge = merge_projections(device, dtype, config);
    let merged = |parts: &[&Proj]| {
        if merge {
            merge_dense(parts)
        } else {
            Ok(None)
        }
    };
    let mut layers = Vec::with_capacity(config.layers);
    for i in 0..config.layers {
        let l = m.pp(format!("layers.{i}"));
        let a = l.pp("self_attn");
        let bias = config.attention_bias;
        let (nq, nkv) = (config.heads * d, config.kv_heads * d);
        let (q, k, v) = (
            dense(&a, "q_proj", nq, h, bias)?,
            dense(&a, "k_proj", nkv, h, bias)?,
            dense(&a, "v_proj", nkv, h, bias)?,
        );
        let qkv = match merged(&[&q, &k, &v])? {
            Some(merged) => Qkv::Merged(merged),
            None => Qkv::Separate { q, k, v },
        };
        let mlp = l.pp("mlp");
        let inter = config.intermediate_size;
        let (gate, up) = (
            dense(&mlp, "gate_proj", inter, h, false)?,
            dense(&mlp, "up_proj", inter, h, false)?,
        );
        let gate_up = match merged(&[&gate, &up])? {
            Some(merged) => GateUp::Merged(merged),
            None => GateUp::Separate { gate, up },
        };
        layers.push(Layer {
            attn_norm: norm(&l, "input_layernorm")?,
            attn: Attention {
                qkv,
                o: dense(&a, "o_proj", h, nq, false)?,
                heads: config.heads,
                kv_heads: config.kv_heads,
                head_dim: d,
            },
            mlp_norm: norm(&l, "post_attention_layernorm")?,
            mlp: Mlp {
                gate_up,
                down: dense(&mlp, "down_proj", h, inter, false)?,
            },
            cache: KvCache::new(),
        });
    }
    let lm_head = if config.tie_embeddings || !vb.contains_tensor("lm_head.weight") {
        Proj::Dense {
            weight: embed.clone(),
            bias: None,
        }
    } else {
        dense(&vb, "lm_head", config.vocab_size, h, false)?
    };
    Ok(Decoder {
        config: config.clone(),
        embed: Embedding::Dense(embed),
        layers,
        norm: norm(&m, "norm")?,
        lm_head,
        rope: Rope::with_divisors(
            config.rope_theta,
            d,
            INITIAL_POSITIONS.min(config.max_position.max(1)),
            config.rope_interleaved,
            config.rope_freq_divisors.clone(),
            dtype,
            device,
        )?,
        device: device.clone(),
        dtype,
        #[cfg(feature = "cuda")]
        graph: Default::default(),
    })
}

/// Whether a safetensors model's q/k/v and gate/up projections are concatenated at load, for
/// the fused CUDA kernels (one matrix product each instead of three and two). Only on a CUDA
/// device the kernels support; `ARBITER_CUDA_FUSED=0` keeps candle's plain ops, for comparing.
#[cfg(feature = "cuda")]
fn merge_projections(device: &Device, dtype: DType, config: &ModelConfig) -> bool {
    super::cuda::enabled()
        && device.is_cuda()
        && !config.rope_interleaved
        && super::cuda::supports(dtype, config.head_dim)
}

#[cfg(not(feature = "cuda"))]
fn merge_projections(_device: &Device, _dtype: DType, _config: &ModelConfig) -> bool {
    false
}

/// Loads a GGUF model. Quantized matrices stay quantized; norms, biases and activations are f32.
pub fn load_gguf<R: std::io::Read + std::io::Seek>(
    config: &ModelConfig,
    content: &gguf_file::Content,
    reader: &mut R,
    device: &Device,
) -> Result<Decoder> {
    if device.is_cpu() {
        super::keep_freed_buffers();
    }
    let mut qtensor = |name: &str| content.tensor(reader, name, device);
    let mut layers = Vec::with_capacity(config.layers);
    let eps = config.rms_norm_eps as f32;
    let embed = Arc::new(qtensor("token_embd.weight")?);
    let has = |name: &str| content.tensor_infos.contains_key(name);
    for i in 0..config.layers {
        let p = format!("blk.{i}");
        let mut proj = |name: &str| -> Result<Proj> {
            let q = qtensor(&format!("{p}.{name}.weight"))?;
            let bias_name = format!("{p}.{name}.bias");
            let bias = if has(&bias_name) {
                Some(qtensor(&bias_name)?.dequantize(device)?)
            } else {
                None
            };
            match QuantMatrix::from_qtensor(&q)? {
                Some(weight) => {
                    tracing::trace!(
                        "{p}.{name}: {} through the project's kernels",
                        weight.dtype_name()
                    );
                    Ok(Proj::Fast { weight, bias })
                }
                None => Ok(Proj::Quant {
                    weight: QMatMul::from_qtensor(q)?,
                    bias,
                }),
            }
        };
        let q = proj("attn_q")?;
        let k = proj("attn_k")?;
        let v = proj("attn_v")?;
        let o = proj("attn_output")?;
        let gate = proj("ffn_gate")?;
        let up = proj("ffn_up")?;
        let down = proj("ffn_down")?;
        let attn_norm = RmsNorm {
            weight: qtensor(&format!("{p}.attn_norm.weight"))?.dequantize(device)?,
            eps,
        };
        let mlp_norm = RmsNorm {
            weight: qtensor(&format!("{p}.ffn_norm.weight"))?.dequantize(device)?,
            eps,
        };
        layers.push(Layer {
            attn_norm,
            attn: Attention {
                qkv: Qkv::Separate { q, k, v },
                o,
                heads: config.heads,
                kv_heads: config.kv_heads,
                head_dim: config.head_dim,
            },
            mlp_norm,
            mlp: Mlp {
                gate_up: GateUp::Separate { gate, up },
                down,
            },
            cache: KvCache::new(),
        });
    }
    let norm = RmsNorm {
        weight: qtensor("output_norm.weight")?.dequantize(device)?,
        eps,
    };
    // The output projection is the largest matrix (vocab x hidden): it takes the fast kernels
    // too when its type has them (often Q8_0, or the tied Q8_0 embedding).
    // A tied table the fast kernels take is held once, repacked, for both uses.
    let tied = !has("output.weight");
    let head = if tied {
        embed.clone()
    } else {
        Arc::new(qtensor("output.weight")?)
    };
    let (lm_head, embed) = match QuantMatrix::from_qtensor(&head)? {
        Some(weight) if tied => {
            drop(head);
            (
                Proj::Fast {
                    weight: weight.clone(),
                    bias: None,
                },
                Embedding::Fast(weight),
            )
        }
        Some(weight) => (
            Proj::Fast { weight, bias: None },
            Embedding::Quant(QMatMul::from_arc(embed)?),
        ),
        None => (
            Proj::Quant {
                weight: QMatMul::from_arc(head)?,
                bias: None,
            },
            Embedding::Quant(QMatMul::from_arc(embed)?),
        ),
    };
    // Llama 3.x GGUFs carry their RoPE scaling as one factor per frequency.
    let rope_freqs: Option<Vec<f64>> = if content.tensor_infos.contains_key("rope_freqs.weight") {
        let t = qtensor("rope_freqs.weight")?.dequantize(&Device::Cpu)?;
        Some(
            t.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect(),
        )
    } else {
        None
    };
    let mut config = config.clone();
    config.rope_freq_divisors = rope_freqs.clone();
    Ok(Decoder {
        config: config.clone(),
        embed,
        layers,
        norm,
        lm_head,
        rope: Rope::with_divisors(
            config.rope_theta,
            config.head_dim,
            INITIAL_POSITIONS.min(config.max_position.max(1)),
            config.rope_interleaved,
            rope_freqs,
            DType::F32,
            device,
        )?,
        device: device.clone(),
        dtype: DType::F32,
        #[cfg(feature = "cuda")]
        graph: Default::default(),
    })
}
