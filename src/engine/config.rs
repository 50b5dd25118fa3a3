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
    rope_type: Option<String>,
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
        if let Some(scaling) = hf.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            tracing::warn!(
                "config.json sets rope_scaling {scaling}; Arbiter applies plain RoPE, so prompts \
                 longer than the model's native context may degrade"
            );
        }
        if let Some(kind) = hf
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.as_deref())
            .filter(|t| *t != "default")
        {
            tracing::warn!(
                "config.json sets rope_type `{kind}`; Arbiter applies plain RoPE, so prompts \
                 longer than the model's native context may degrade"
            );
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
