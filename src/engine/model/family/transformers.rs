//! Judge families run by candle-transformers' own model code (safetensors: Qwen3, Gemma 2,
//! Phi-3, Mistral with a sliding window, Mixtral; GGUF: `quantized_qwen3`,
//! `quantized_phi3`, and `quantized_llama` for Mixtral).
//!
//! Each was checked for the traps of candle-transformers' `qwen2` (CONVENTIONS.md), and is
//! driven so that none bites:
//! - RoPE tables: every safetensors model here builds its cos/sin in the model dtype, which in
//!   bf16 rounds positions above ~256. They are therefore loaded in f32 whatever was asked
//!   (the GGUF models compute in f32 anyway); the cost is memory, logged at load.
//! - Masks: their mask for a multi-token forward after the first is wrong or refused (the
//!   `mask0` they concatenate marks cached tokens as unseen in some, mixes dtypes in others).
//!   A multi-token forward is therefore only ever the first one; later pieces (a chunked
//!   prefill, tokens a grammar forces) go through one token at a time, which needs no mask.
//! - Sliding windows: Gemma 2, Mistral and Mixtral apply their window only in the mask of a
//!   multi-token step (Gemma 2 on every layer, where it alternates), while a single-token step
//!   attends to the whole cache. Within the window both agree, so their context is capped at
//!   the window: a longer prompt is refused rather than judged wrongly.
//! - KV cache: they grow it with `Tensor::cat` per token (O(n) copy per step), and cannot
//!   rewind it. Growth is accepted (judge answers are short next to their prompts); rewinding
//!   is reported as impossible, so a reused prompt prefix is prefilled again instead.

use crate::engine::config::{Family, ModelConfig};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::{
    gemma2, mistral, mixtral, phi3, quantized_llama, quantized_phi3, quantized_qwen3, qwen3,
};
use std::path::PathBuf;

/// One of candle-transformers' models.
#[derive(Debug, Clone)]
enum Model {
    Qwen3(qwen3::ModelForCausalLM),
    Gemma2(gemma2::Model),
    Phi3(phi3::Model),
    Mistral(mistral::Model),
    Mixtral(mixtral::Model),
    QQwen3(quantized_qwen3::ModelWeights),
    QPhi3(quantized_phi3::ModelWeights),
    QLlama(quantized_llama::ModelWeights),
}

impl Model {
    fn forward(&mut self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        match self {
            Model::Qwen3(m) => m.forward(ids, offset),
            Model::Gemma2(m) => m.forward(ids, offset),
            Model::Phi3(m) => m.forward(ids, offset),
            Model::Mistral(m) => m.forward(ids, offset),
            Model::Mixtral(m) => m.forward(ids, offset),
            Model::QQwen3(m) => m.forward(ids, offset),
            Model::QPhi3(m) => m.forward(ids, offset),
            Model::QLlama(m) => m.forward(ids, offset),
        }
    }
}

/// A candle-transformers model with the position it has reached.
#[derive(Debug, Clone)]
pub struct Transformers {
    config: ModelConfig,
    model: Model,
    /// The model as loaded, cache empty: resetting restores it (tensors are shared, so this
    /// costs no weight memory), which also covers `quantized_phi3`, that has no cache reset.
    fresh: Model,
    position: usize,
    device: Device,
}

fn bad_config(family: Family, e: serde_json::Error) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "config.json does not have what candle-transformers' {} needs: {e}",
        family.name()
    ))
}

/// The `config.json` with what candle-transformers' config types require but real files omit
/// or leave `null` filled in with transformers' defaults (a multimodal Gemma 3's text part is
/// its `text_config`).
fn with_defaults(config: &ModelConfig) -> Result<String> {
    use serde_json::{json, Value};
    let text = config.json.as_deref().unwrap_or("{}");
    let mut v: Value = serde_json::from_str(text)
        .map_err(|e| candle_core::Error::Msg(format!("config.json: {e}")))?;
    if let Some(inner) = v.get("text_config").filter(|t| t.is_object()).cloned() {
        v = inner;
    }
    let Some(obj) = v.as_object_mut() else {
        candle_core::bail!("config.json is not a JSON object");
    };
    let original_act = obj.get("hidden_act").filter(|a| !a.is_null()).cloned();
    let mut fill = |key: &str, value: Value| {
        if obj.get(key).is_none_or(Value::is_null) {
            obj.insert(key.to_string(), value);
        }
    };
    let c = config;
    fill("vocab_size", json!(c.vocab_size));
    fill("hidden_size", json!(c.hidden_size));
    fill("intermediate_size", json!(c.intermediate_size));
    fill("num_hidden_layers", json!(c.layers));
    fill("num_attention_heads", json!(c.heads));
    fill("num_key_value_heads", json!(c.kv_heads));
    fill("head_dim", json!(c.head_dim));
    fill("rms_norm_eps", json!(c.rms_norm_eps));
    fill("rope_theta", json!(c.rope_theta));
    fill("max_position_embeddings", json!(c.max_position));
    fill("tie_word_embeddings", json!(c.tie_embeddings));
    fill("attention_bias", json!(false));
    fill("use_flash_attn", json!(false));
    fill("hidden_act", json!("silu"));
    match c.family {
        Family::Qwen3 => {
            fill("max_window_layers", json!(c.layers));
            fill("use_sliding_window", json!(false));
        }
        Family::Gemma2 | Family::Gemma3 => {
            let act = original_act.unwrap_or(json!("gelu_pytorch_tanh"));
            let mut fill = |key: &str, value: Value| {
                if obj.get(key).is_none_or(Value::is_null) {
                    obj.insert(key.to_string(), value);
                }
            };
            fill("hidden_activation", act);
            fill("query_pre_attn_scalar", json!(c.head_dim));
            fill("rope_local_base_freq", json!(10_000.0));
            fill("sliding_window", json!(4096));
            fill("sliding_window_pattern", json!(6));
        }
        Family::Mixtral => {
            fill("sliding_window", json!(c.max_position));
            fill("num_experts_per_tok", json!(2));
        }
        _ => {}
    }
    Ok(v.to_string())
}

impl Transformers {
    /// Loads safetensors `weights` of a family our decoder does not run.
    pub fn from_safetensors(
        config: &ModelConfig,
        weights: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> Result<Transformers> {
        if dtype != DType::F32 {
            tracing::info!(
                "{} runs in f32 rather than {dtype:?}: candle-transformers builds its RoPE \
                 tables in the model dtype, which in half precision drifts on long prompts",
                config.family.name()
            );
        }
        let json = &with_defaults(config)?;
        // SAFETY: the weight files are memory-mapped read-only; like every model loader we
        // rely on nobody truncating them while the model is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(weights, DType::F32, device)? };
        let family = config.family;
        let parse = |e| bad_config(family, e);
        let model = match family {
            Family::Qwen3 => Model::Qwen3(qwen3::ModelForCausalLM::new(
                &serde_json::from_str(json).map_err(parse)?,
                vb,
            )?),
            Family::Gemma2 => Model::Gemma2(gemma2::Model::new(
                false,
                &serde_json::from_str(json).map_err(parse)?,
                vb,
            )?),
            Family::Phi3 => Model::Phi3(phi3::Model::new(
                &serde_json::from_str(json).map_err(parse)?,
                vb,
            )?),
            Family::Mistral => Model::Mistral(mistral::Model::new(
                &serde_json::from_str(json).map_err(parse)?,
                vb,
            )?),
            Family::Mixtral => Model::Mixtral(mixtral::Model::new(
                &serde_json::from_str(json).map_err(parse)?,
                vb,
            )?),
            Family::Qwen2 | Family::Llama | Family::Gemma3 => {
                candle_core::bail!("{} runs on the project's own model code", family.name())
            }
        };
        let mut config = config.clone();
        if matches!(family, Family::Gemma2 | Family::Mistral | Family::Mixtral) {
            if let Some(window) = config.sliding_window.filter(|w| *w < config.max_position) {
                tracing::warn!(
                    "{}: context capped at its {window}-token sliding window (candle-transformers \
                     ignores the window when decoding token by token)",
                    family.name()
                );
                config.max_position = window;
            }
        }
        Ok(Transformers::new(&config, model, device))
    }

    /// Loads a GGUF file of a family our decoder does not run (`content` is its header, read
    /// again by the caller: candle-transformers takes it by value).
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        config: &ModelConfig,
        content: gguf_file::Content,
        reader: &mut R,
        device: &Device,
    ) -> Result<Transformers> {
        let model = match config.family {
            Family::Qwen3 => Model::QQwen3(quantized_qwen3::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            Family::Phi3 => Model::QPhi3(quantized_phi3::ModelWeights::from_gguf(
                false, content, reader, device,
            )?),
            Family::Mixtral => Model::QLlama(quantized_llama::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            other => candle_core::bail!(
                "no candle-transformers GGUF model is wired for {}",
                other.name()
            ),
        };
        Ok(Transformers::new(config, model, device))
    }

    fn new(config: &ModelConfig, model: Model, device: &Device) -> Transformers {
        Transformers {
            config: config.clone(),
            fresh: model.clone(),
            model,
            position: 0,
            device: device.clone(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Forgets the sequence.
    pub fn reset(&mut self) {
        self.model = self.fresh.clone();
        self.position = 0;
    }

    /// Runs `tokens` after what is cached and returns the f32 logits of the last one.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Tensor> {
        crate::engine::model::check_tokens(tokens, self.config.vocab_size)?;
        let last = tokens[tokens.len() - 1];
        if self.position > 0 && tokens.len() > 1 {
            // Their masks are wrong for a multi-token step after the first (module doc).
            for &t in &tokens[..tokens.len() - 1] {
                self.step(&[t])?;
            }
            return self.step(&[last]);
        }
        self.step(tokens)
    }

    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let out = self.model.forward(&ids, self.position)?;
        self.position += tokens.len();
        // Shapes differ between models ((1, vocab), (1, 1, vocab), (1, seq, vocab)); the last
        // row is the last token's.
        let vocab = out.dim(D::Minus1)?;
        let flat = out.flatten_all()?;
        let n = flat.elem_count();
        flat.narrow(0, n - vocab, vocab)?.to_dtype(DType::F32)
    }

    /// Logits of every one of `tokens`, (len, vocab), one step each.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(tokens.len());
        for &t in tokens {
            rows.push(self.step(&[t])?);
        }
        Tensor::stack(&rows, 0)
    }
}
