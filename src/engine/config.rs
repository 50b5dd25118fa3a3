//! The shape of a decoder, read from a hub model's `config.json` or a GGUF file's metadata.
//!
//! Real `config.json` files carry extra keys, `null`s (`"sliding_window": null`) and omit
//! optional ones, so every optional key has the default transformers uses for it. Qwen2 and
//! Llama share the project's own decoder; they differ here only in defaults (Qwen2 has q/k/v
//! biases). The other families (Qwen3, Gemma 2/3, Phi-3, Mistral with a sliding window,
//! Mixtral) run through candle-transformers' model code; [`ModelConfig::route`] says which path a
//! model takes and why.

use candle_core::quantized::gguf_file;
use serde::Deserialize;
use std::path::Path;

/// Which family a model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Qwen2,
    Llama,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
    /// Mistral with a sliding attention window (without one it is Llama-shaped: `Llama`).
    Mistral,
    Mixtral,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Qwen2 => "qwen2",
            Family::Llama => "llama",
            Family::Qwen3 => "qwen3",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
            Family::Mistral => "mistral",
            Family::Mixtral => "mixtral",
        }
    }

    /// Whether the project's own decoder runs this family (else candle-transformers does).
    pub fn native(self) -> bool {
        matches!(self, Family::Qwen2 | Family::Llama)
    }
}

/// Which decoder code runs a model, and why: what `arbiter models` and the Models window show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `arbiter` (the project's decoder) or `candle-transformers <module>`.
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

/// Everything the decoder needs to know about a model's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Llama 3's RoPE scaling as one divisor per rotation frequency (head_dim / 2 values):
    /// from `rope_scaling` with `rope_type: llama3` in config.json, or a GGUF's
    /// `rope_freqs.weight` (filled in when the weights load). `None`: plain RoPE.
    pub rope_freq_divisors: Option<Vec<f64>>,
    pub max_position: usize,
    pub tie_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// RoPE rotates adjacent pairs (GGUF `llama`, whose q/k rows the converter permuted)
    /// rather than the two halves of each head (transformers' layout, GGUF `qwen2`).
    pub rope_interleaved: bool,
    /// End-of-sequence ids the config declares (`eos_token_id` may be a list).
    pub eos_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    /// The architecture as the source names it (`Gemma3ForCausalLM`, GGUF `gemma3`).
    pub architecture_name: String,
    /// Sliding attention window, where the model has one.
    pub sliding_window: Option<usize>,
    /// Experts per MoE layer (0: a dense model).
    pub experts: usize,
    /// The `config.json` text, which candle-transformers' own config types read.
    pub json: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model config: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("model type `{0}` is not supported: Arbiter runs qwen2, llama, qwen3, gemma2, gemma3, phi3, mistral and mixtral models")]
    Unsupported(String),
    #[error("{what}: {why}")]
    Invalid { what: String, why: String },
    #[error("GGUF metadata lacks `{0}`: the file is not a complete model")]
    MissingKey(String),
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 writes `rope_theta` and the scaling here instead.
    #[serde(default)]
    rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    eos_token_id: Option<IdOrIds>,
    #[serde(default)]
    bos_token_id: Option<IdOrIds>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    sliding_window: Option<usize>,
    #[serde(default)]
    num_local_experts: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    /// `type` in older configs.
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum IdOrIds {
    One(u32),
    Many(Vec<u32>),
}

impl IdOrIds {
    fn into_vec(self) -> Vec<u32> {
        match self {
            IdOrIds::One(id) => vec![id],
            IdOrIds::Many(ids) => ids,
        }
    }
}

/// Llama 3's RoPE scaling as a divisor per frequency, as transformers'
/// `_compute_llama3_parameters` and llama.cpp's converter (`rope_freqs`) compute it: frequencies
/// whose wavelength is shorter than `original / high` are kept, longer than `original / low`
/// are divided by `factor`, and those between are blended smoothly.
pub fn llama3_rope_divisors(
    theta: f64,
    head_dim: usize,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f64> {
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

impl ModelConfig {
    /// Reads a transformers `config.json`.
    pub fn from_config_json(path: &Path) -> Result<ModelConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_str(&text).map_err(|e| match e {
            ConfigError::Json { source, .. } => ConfigError::Json {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })
    }

    pub fn from_json_str(text: &str) -> Result<ModelConfig, ConfigError> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: "config.json".into(),
            source,
        })?;
        let kind = hf
            .model_type
            .clone()
            .or_else(|| hf.architectures.first().cloned())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let family = if kind.starts_with("qwen2") {
            Family::Qwen2
        } else if kind.starts_with("qwen3") && !kind.contains("moe") {
            Family::Qwen3
        } else if kind.starts_with("llama") {
            Family::Llama
        } else if kind.starts_with("mistral") {
            // Mistral without a window is Llama's shape; with one, our decoder (which attends
            // to the whole cache) would read past it, so candle-transformers' mistral runs it.
            if hf.sliding_window.is_some() {
                Family::Mistral
            } else {
                Family::Llama
            }
        } else if kind.starts_with("mixtral") {
            Family::Mixtral
        } else if kind.starts_with("gemma3") {
            Family::Gemma3
        } else if kind.starts_with("gemma2") {
            Family::Gemma2
        } else if kind.starts_with("phi3") {
            Family::Phi3
        } else {
            return Err(ConfigError::Unsupported(kind));
        };
        if let Some(act) = hf.hidden_act.as_ref().filter(|_| family.native()) {
            if act != "silu" {
                return Err(ConfigError::Invalid {
                    what: "config.json hidden_act".into(),
                    why: format!("`{act}` is not supported (only silu)"),
                });
            }
        }
        // Llama 3.x writes its scaling under rope_scaling (transformers 4) or rope_parameters
        // (transformers 5); both have the same fields.
        let scaling: Option<RopeParameters> = hf
            .rope_scaling
            .as_ref()
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .or_else(|| {
                hf.rope_parameters.as_ref().map(|p| RopeParameters {
                    rope_theta: p.rope_theta,
                    rope_type: p.rope_type.clone(),
                    factor: p.factor,
                    low_freq_factor: p.low_freq_factor,
                    high_freq_factor: p.high_freq_factor,
                    original_max_position_embeddings: p.original_max_position_embeddings,
                })
            });
        let mut llama3: Option<[f64; 4]> = None;
        if let Some(s) = &scaling {
            match s.rope_type.as_deref() {
                None | Some("default") => {}
                Some("llama3") => match (
                    s.factor,
                    s.low_freq_factor,
                    s.high_freq_factor,
                    s.original_max_position_embeddings,
                ) {
                    (Some(f), Some(lo), Some(hi), Some(orig)) if hi > lo && f > 0.0 => {
                        llama3 = Some([f, lo, hi, orig]);
                    }
                    _ => {
                        return Err(ConfigError::Invalid {
                            what: "config.json rope_scaling".into(),
                            why: "llama3 scaling needs factor, low_freq_factor > 0, \
                                  high_freq_factor > low_freq_factor and \
                                  original_max_position_embeddings"
                                .into(),
                        })
                    }
                },
                Some(kind) => tracing::warn!(
                    "config.json sets rope_type `{kind}`; Arbiter applies plain RoPE, so prompts \
                     longer than the model's native context may degrade"
                ),
            }
        }
        let rope_theta = hf
            .rope_theta
            .or_else(|| hf.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0);
        let heads = hf.num_attention_heads;
        let kv_heads = hf.num_key_value_heads.unwrap_or(heads);
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / heads.max(1));
        let cfg = ModelConfig {
            family,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            layers: hf.num_hidden_layers,
            heads,
            kv_heads,
            head_dim,
            vocab_size: hf.vocab_size,
            rms_norm_eps: hf.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_freq_divisors: llama3.map(|[f, lo, hi, orig]| {
                llama3_rope_divisors(rope_theta, head_dim, f, lo, hi, orig)
            }),
            max_position: hf.max_position_embeddings.unwrap_or(32_768),
            tie_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            attention_bias: hf.attention_bias.unwrap_or(family == Family::Qwen2),
            rope_interleaved: false,
            eos_ids: hf.eos_token_id.map(IdOrIds::into_vec).unwrap_or_default(),
            bos_id: hf
                .bos_token_id
                .and_then(|b| b.into_vec().into_iter().next()),
            architecture_name: hf
                .architectures
                .first()
                .cloned()
                .or(hf.model_type.clone())
                .unwrap_or(kind),
            sliding_window: hf.sliding_window,
            experts: hf.num_local_experts.unwrap_or(0),
            json: (!family.native()).then(|| text.to_string()),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads the metadata of a GGUF file of the `qwen2` or `llama` architecture.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<ModelConfig, ConfigError> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .ok_or_else(|| ConfigError::MissingKey("general.architecture".into()))?;
        let experts = md
            .get(&format!("{arch}.expert_count"))
            .and_then(|v| v.to_u32().ok())
            .unwrap_or(0) as usize;
        let family = match arch.as_str() {
            "qwen2" => Family::Qwen2,
            // Mixtral's GGUF says `llama` and carries experts.
            "llama" if experts > 0 => Family::Mixtral,
            "llama" => Family::Llama,
            "qwen3" => Family::Qwen3,
            "gemma3" => Family::Gemma3,
            "phi3" => Family::Phi3,
            other => return Err(ConfigError::Unsupported(other.to_string())),
        };
        let get = |key: &str| -> Result<&gguf_file::Value, ConfigError> {
            md.get(&format!("{arch}.{key}"))
                .ok_or_else(|| ConfigError::MissingKey(format!("{arch}.{key}")))
        };
        let int = |key: &str| -> Result<usize, ConfigError> {
            let v = get(key)?;
            v.to_u64()
                .or_else(|_| v.to_u32().map(u64::from))
                .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
                .map(|x| x as usize)
                .map_err(|e| ConfigError::Invalid {
                    what: format!("GGUF {arch}.{key}"),
                    why: e.to_string(),
                })
        };
        let float = |key: &str| -> Option<f64> {
            get(key)
                .ok()
                .and_then(|v| v.to_f32().map(f64::from).or_else(|_| v.to_f64()).ok())
        };
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        let head_dim = int("attention.key_length")
            .or_else(|_| int("rope.dimension_count"))
            .unwrap_or(hidden / heads.max(1));
        let vocab_size = match content.tensor_infos.get("token_embd.weight") {
            Some(info) => info.shape.dims()[0],
            None => return Err(ConfigError::MissingKey("tensor token_embd.weight".into())),
        };
        let token_id = |key: &str| -> Option<u32> { md.get(key).and_then(|v| v.to_u32().ok()) };
        let cfg = ModelConfig {
            family,
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            rope_theta: float("rope.freq_base").unwrap_or(10_000.0),
            // From the rope_freqs.weight tensor, read with the weights.
            rope_freq_divisors: None,
            max_position: int("context_length").unwrap_or(4096),
            tie_embeddings: !content.tensor_infos.contains_key("output.weight"),
            attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            rope_interleaved: family == Family::Llama,
            eos_ids: token_id("tokenizer.ggml.eos_token_id")
                .into_iter()
                .collect(),
            bos_id: token_id("tokenizer.ggml.bos_token_id"),
            architecture_name: arch.clone(),
            sliding_window: int("attention.sliding_window").ok(),
            experts,
            json: None,
        };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |why: String| {
            Err(ConfigError::Invalid {
                what: "model config".into(),
                why,
            })
        };
        if self.heads == 0 || self.kv_heads == 0 || self.layers == 0 || self.hidden_size == 0 {
            return bad("heads, kv heads, layers and hidden size must be positive".into());
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} attention heads are not a multiple of {} kv heads",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        Ok(())
    }

    /// Which decoder runs this model, and why.
    pub fn route(&self) -> Route {
        if self.family.native() {
            return Route {
                path: "arbiter".into(),
                why: format!(
                    "architecture {} is one our own decoder implements (the fast path)",
                    self.architecture_name
                ),
            };
        }
        let why = match self.family {
            Family::Mistral => format!(
                "architecture {} with a {}-token sliding window, which our decoder does not \
                 implement",
                self.architecture_name,
                self.sliding_window.unwrap_or(0)
            ),
            _ => format!(
                "architecture {} is not one our decoder implements",
                self.architecture_name
            ),
        };
        let module = match (self.family, self.json.is_some()) {
            // Gemma 3 runs the project's corrected copy of candle-transformers' gemma3 /
            // quantized_gemma3 (see model::family::gemma3).
            (Family::Gemma3, false) => "quantized_gemma3 (fixed copy)",
            (Family::Gemma3, true) => "gemma3 (fixed copy)",
            (Family::Qwen3, false) => "quantized_qwen3",
            (Family::Phi3, false) => "quantized_phi3",
            (Family::Mixtral, false) => "quantized_llama",
            (family, _) => family.name(),
        };
        Route {
            path: format!("candle-transformers {module}"),
            why,
        }
    }

    /// The catalogue's view of this shape, for memory estimates.
    pub fn architecture(&self) -> super::catalogue::Architecture {
        super::catalogue::Architecture {
            hidden_size: self.hidden_size as u64,
            layers: self.layers as u64,
            attention_heads: self.heads as u64,
            kv_heads: self.kv_heads as u64,
            head_dim: self.head_dim as u64,
            intermediate_size: self.intermediate_size as u64,
            vocab_size: self.vocab_size as u64,
            tied_embeddings: self.tie_embeddings,
            max_context: self.max_position as u64,
            qkv_bias: self.attention_bias,
            // 0 in a dense model's config; the estimate counts one MLP per expert.
            experts: self.experts.max(1) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_config_with_nulls_and_missing_keys_loads() {
        let text = r#"{
          "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
          "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
          "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
          "sliding_window": null, "rope_scaling": null, "use_sliding_window": false,
          "eos_token_id": 151645, "torch_dtype": "bfloat16", "rope_theta": 1000000.0,
          "max_window_layers": 28, "rms_norm_eps": 1e-06, "tie_word_embeddings": false
        }"#;
        let cfg = ModelConfig::from_json_str(text).expect("loads");
        assert_eq!(cfg.family, Family::Qwen2);
        assert_eq!(cfg.head_dim, 128);
        assert!(cfg.attention_bias, "qwen2 has q/k/v biases by default");
        assert_eq!(cfg.eos_ids, vec![151645]);
        assert_eq!(cfg.architecture().parameters(), 7_615_616_512);
    }

    #[test]
    fn transformers_5_rope_parameters_give_the_theta() {
        // transformers 5 writes no top-level rope_theta; it is under rope_parameters.
        let text = r#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
            "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},
            "dtype": "float32"}"#;
        let cfg = ModelConfig::from_json_str(text).expect("loads");
        assert_eq!(cfg.rope_theta, 1_000_000.0);
        let old = text.replace(
            r#""rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"},"#,
            "",
        );
        assert_eq!(
            ModelConfig::from_json_str(&old).expect("loads").rope_theta,
            10_000.0
        );
    }

    #[test]
    fn eos_list_and_llama_defaults() {
        let text = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
            "eos_token_id": [2, 7], "bos_token_id": 1}"#;
        let cfg = ModelConfig::from_json_str(text).expect("loads");
        assert_eq!(cfg.kv_heads, 4);
        assert!(!cfg.attention_bias);
        assert_eq!(cfg.eos_ids, vec![2, 7]);
        assert_eq!(cfg.bos_id, Some(1));
    }

    #[test]
    fn unsupported_and_inconsistent_configs_are_named() {
        let gpt = r#"{"model_type": "gpt_neox", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300}"#;
        let e = ModelConfig::from_json_str(gpt).unwrap_err();
        assert!(e.to_string().contains("gpt_neox"), "{e}");
        let odd = r#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 3, "vocab_size": 300}"#;
        let e = ModelConfig::from_json_str(odd).unwrap_err();
        assert!(e.to_string().contains("multiple"), "{e}");
    }

    #[test]
    fn llama3_rope_scaling_is_read_and_other_scalings_are_left_out() {
        let config = |scaling: &str| {
            format!(
                r#"{{"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                "rope_theta": 500000.0, "max_position_embeddings": 131072,
                "rope_scaling": {scaling}}}"#
            )
        };
        let llama31 = config(
            r#"{"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}"#,
        );
        let cfg = ModelConfig::from_json_str(&llama31).expect("Llama 3.1 loads");
        let d = cfg.rope_freq_divisors.expect("scaled");
        assert_eq!(d.len(), 64);
        // Wavelengths under 8192/4 keep their frequency, over 8192 are slowed 8x, and the
        // band between is blended: 2*pi*500000^(60/128) = 2,948.30 tokens gives
        // s = (8192/2948.30 - 1)/3 = 0.59285 and a divisor of 1/(0.40715/8 + 0.59285) = 1.55341.
        assert_eq!(d[0], 1.0);
        assert_eq!(d[63], 8.0);
        assert!((d[30] - 1.55341).abs() < 1e-5, "{}", d[30]);
        assert!(d.windows(2).all(|w| w[0] <= w[1]));
        // transformers 5 writes the same under rope_parameters.
        let v5 = llama31.replace("\"rope_scaling\"", "\"rope_parameters\"");
        assert_eq!(
            ModelConfig::from_json_str(&v5)
                .expect("loads")
                .rope_freq_divisors,
            Some(d)
        );
        // Other scalings are not applied (a warning says so); a broken llama3 one is refused.
        let linear = config(r#"{"type": "linear", "factor": 2.0}"#);
        assert_eq!(
            ModelConfig::from_json_str(&linear)
                .expect("loads")
                .rope_freq_divisors,
            None
        );
        assert!(ModelConfig::from_json_str(&config(r#"{"rope_type": "llama3"}"#)).is_err());
    }

    #[test]
    fn each_family_is_routed_with_its_reason() {
        let base = |kind: &str, arch: &str, extra: &str| {
            format!(
                r#"{{"model_type": "{kind}", "architectures": ["{arch}"], "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "vocab_size": 300, "hidden_act": "gelu_pytorch_tanh"{extra}}}"#
            )
        };
        let gemma = ModelConfig::from_json_str(&base("gemma2", "Gemma2ForCausalLM", "")).unwrap();
        assert_eq!(gemma.family, Family::Gemma2);
        assert_eq!(
            gemma.route().to_string(),
            "candle-transformers gemma2: architecture Gemma2ForCausalLM is not one our decoder \
             implements"
        );
        assert!(
            gemma.json.is_some(),
            "candle-transformers reads the config itself"
        );
        let g3 = ModelConfig::from_json_str(&base("gemma3_text", "Gemma3ForCausalLM", "")).unwrap();
        assert_eq!(g3.route().path, "candle-transformers gemma3 (fixed copy)");
        // Mistral without a window is Llama-shaped and stays on the fast path; with one it
        // does not.
        let plain = base(
            "mistral",
            "MistralForCausalLM",
            r#", "sliding_window": null"#,
        )
        .replace("gelu_pytorch_tanh", "silu");
        let m = ModelConfig::from_json_str(&plain).unwrap();
        assert_eq!(
            (m.family, m.route().path.as_str()),
            (Family::Llama, "arbiter")
        );
        let windowed = plain.replace("null", "4096");
        let m = ModelConfig::from_json_str(&windowed).unwrap();
        assert_eq!(m.family, Family::Mistral);
        assert!(
            m.route().why.contains("4096-token sliding window"),
            "{}",
            m.route()
        );
        // A non-silu activation is still refused on our own decoder.
        let e = ModelConfig::from_json_str(&base("qwen2", "Qwen2ForCausalLM", "")).unwrap_err();
        assert!(e.to_string().contains("gelu_pytorch_tanh"), "{e}");
        let moe = base("qwen3_moe", "Qwen3MoeForCausalLM", "");
        assert!(
            ModelConfig::from_json_str(&moe).is_err(),
            "Qwen3-MoE is not wired"
        );
    }
}
