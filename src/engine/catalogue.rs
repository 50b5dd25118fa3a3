//! The judges Arbiter knows by name, with their architecture, download size and memory
//! needs, and [`resolve`], which turns what a user typed (a short name, a hub id, a local
//! folder or a `.gguf` file) into a model source.
//!
//! Memory estimate (bytes), for a context of `ctx` tokens and prefill chunks of `chunk` tokens:
//!
//! ```text
//! weights   = parameters x bytes per weight            (GGUF: the file size)
//! kv_cache  = 2 (K and V) x layers x kv_heads x head_dim x ctx x bytes per element
//! working   = chunk x heads x ctx x 4                  (f32 attention scores of one chunk)
//!           + chunk x (2 x intermediate + 4 x hidden) x bytes   (MLP and residual activations)
//!           + 2 x vocab x 4                            (f32 logits and the sampling copy)
//! total     = weights + kv_cache + working
//! ```
//!
//! Parameters are counted from the architecture: embeddings (twice unless tied), and per layer
//! q/k/v projections (with bias for Qwen2), the output projection, the three MLP matrices (once
//! per expert, plus the router, for a mixture of experts) and two norms. This reproduces the
//! published sizes (Qwen2.5-7B: 7,615,616,512, half its bf16 safetensors total; Mixtral-8x7B:
//! 46,702,792,704; Llama-3.1-8B: 8,030,261,248; checked by a test). Quantized GGUF models run in f32, so their KV cache and activations count 4 bytes.

use super::hub::{parse_spec, HubError, RepoId};
use std::path::{Path, PathBuf};

/// The judge used when the user names none.
pub const DEFAULT_JUDGE: &str = "opencompass/CompassJudger-2-7B-Instruct";
/// Context assumed by the estimates: a long judge prompt plus its critique.
pub const DEFAULT_CONTEXT: u64 = 8192;
/// Prefill chunk assumed by the estimates.
pub const DEFAULT_PREFILL_CHUNK: u64 = 512;

/// The shape of a decoder (Qwen2, Llama, Mistral, Mixtral, Phi-3...), as its `config.json` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    pub hidden_size: u64,
    pub layers: u64,
    pub attention_heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    pub tied_embeddings: bool,
    /// `max_position_embeddings`.
    pub max_context: u64,
    /// q/k/v projections carry a bias (Qwen2; not Llama, Mistral or Phi-3).
    pub qkv_bias: bool,
    /// MLP experts per layer (`num_local_experts`, Mixtral's 8); 1 for a dense model.
    pub experts: u64,
}

impl Architecture {
    /// Parameters, counted as in the module doc.
    pub fn parameters(&self) -> u64 {
        let h = self.hidden_size;
        let q = self.attention_heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        let bias = u64::from(self.qkv_bias);
        let attention = (h * q + bias * q) + 2 * (h * kv + bias * kv) + q * h;
        // A mixture of experts has one MLP per expert and a router (hidden x experts).
        let mlp = 3 * h * self.intermediate_size * self.experts
            + if self.experts > 1 {
                h * self.experts
            } else {
                0
            };
        let per_layer = attention + mlp + 2 * h;
        let embeddings = self.vocab_size * h * if self.tied_embeddings { 1 } else { 2 };
        embeddings + self.layers * per_layer + h
    }

    /// KV cache bytes for `context` tokens at `bytes` per element.
    pub fn kv_cache_bytes(&self, context: u64, bytes: u64) -> u64 {
        2 * self.layers * self.kv_heads * self.head_dim * context * bytes
    }

    /// Transient buffers of one prefill chunk and the logits (see the module doc).
    pub fn working_bytes(&self, context: u64, chunk: u64, bytes: u64) -> u64 {
        let scores = chunk * self.attention_heads * context * 4;
        let activations = chunk * (2 * self.intermediate_size + 4 * self.hidden_size) * bytes;
        let logits = 2 * self.vocab_size * 4;
        scores + activations + logits
    }
}

/// Weight precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Bf16,
    F16,
    F32,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::Bf16 | Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            Dtype::F32 => "f32",
        }
    }
}

/// Memory a model needs, in bytes, split as in the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub working: u64,
    pub context: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.working
    }

    /// Safetensors weights at `dtype`.
    pub fn for_dtype(arch: &Architecture, dtype: Dtype, context: u64) -> MemoryEstimate {
        let b = dtype.bytes();
        MemoryEstimate {
            weights: arch.parameters() * b,
            kv_cache: arch.kv_cache_bytes(context, b),
            working: arch.working_bytes(context, DEFAULT_PREFILL_CHUNK.min(context), b),
            context,
        }
    }

    /// A quantized GGUF file: its weights take about the file's size; the rest is f32.
    pub fn for_gguf(arch: &Architecture, file_size: u64, context: u64) -> MemoryEstimate {
        MemoryEstimate {
            weights: file_size,
            kv_cache: arch.kv_cache_bytes(context, 4),
            working: arch.working_bytes(context, DEFAULT_PREFILL_CHUNK.min(context), 4),
            context,
        }
    }
}

/// A judge in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueEntry {
    /// What the user can type, e.g. `compassjudger-2-7b`.
    pub short_name: &'static str,
    /// The hub id.
    pub repo: &'static str,
    /// The prompt template (in `prompts/`) this judge was trained for.
    pub template: &'static str,
    pub architecture: Architecture,
    pub summary: &'static str,
}

impl CatalogueEntry {
    pub fn repo_id(&self) -> RepoId {
        RepoId::parse(self.repo).expect("catalogue ids are valid hub ids (checked by a test)")
    }

    pub fn parameters(&self) -> u64 {
        self.architecture.parameters()
    }

    /// About what a download transfers: bf16 safetensors plus tokenizer and configs (~8 MB).
    pub fn download_bytes(&self) -> u64 {
        self.parameters() * 2 + 8_000_000
    }

    pub fn memory(&self, dtype: Dtype, context: u64) -> MemoryEstimate {
        MemoryEstimate::for_dtype(&self.architecture, dtype, context)
    }

    pub fn is_default(&self) -> bool {
        self.repo == DEFAULT_JUDGE
    }
}

// Architectures from the models' config.json files (Qwen2.5 sizes; CompassJudger models are
// fine-tunes of Qwen2.5-Instruct and keep their base model's shape).
const QWEN25_0_5B: Architecture = Architecture {
    hidden_size: 896,
    layers: 24,
    attention_heads: 14,
    kv_heads: 2,
    head_dim: 64,
    intermediate_size: 4864,
    vocab_size: 151_936,
    tied_embeddings: true,
    max_context: 32_768,
    qkv_bias: true,
    experts: 1,
};
const QWEN25_1_5B: Architecture = Architecture {
    hidden_size: 1536,
    layers: 28,
    attention_heads: 12,
    kv_heads: 2,
    head_dim: 128,
    intermediate_size: 8960,
    vocab_size: 151_936,
    tied_embeddings: true,
    max_context: 32_768,
    qkv_bias: true,
    experts: 1,
};
const QWEN25_7B: Architecture = Architecture {
    hidden_size: 3584,
    layers: 28,
    attention_heads: 28,
    kv_heads: 4,
    head_dim: 128,
    intermediate_size: 18_944,
    vocab_size: 152_064,
    tied_embeddings: false,
    max_context: 32_768,
    qkv_bias: true,
    experts: 1,
};
const QWEN25_14B: Architecture = Architecture {
    hidden_size: 5120,
    layers: 48,
    attention_heads: 40,
    kv_heads: 8,
    head_dim: 128,
    intermediate_size: 13_824,
    vocab_size: 152_064,
    tied_embeddings: false,
    max_context: 32_768,
    qkv_bias: true,
    experts: 1,
};
const QWEN25_32B: Architecture = Architecture {
    hidden_size: 5120,
    layers: 64,
    attention_heads: 40,
    kv_heads: 8,
    head_dim: 128,
    intermediate_size: 27_648,
    vocab_size: 152_064,
    tied_embeddings: false,
    max_context: 32_768,
    qkv_bias: true,
    experts: 1,
};

// The open judges of other families, from their config.json files: Prometheus-2 7B is
// Mistral-7B-Instruct-v0.2, 8x7B Mixtral-8x7B-Instruct; Skywork-Critic and Selene-1-Mini are
// Llama-3.1; Flow-Judge-v0.1 is Phi-3.5-mini-instruct.
const MISTRAL_7B: Architecture = Architecture {
    hidden_size: 4096,
    layers: 32,
    attention_heads: 32,
    kv_heads: 8,
    head_dim: 128,
    intermediate_size: 14_336,
    vocab_size: 32_000,
    tied_embeddings: false,
    max_context: 32_768,
    qkv_bias: false,
    experts: 1,
};
const MIXTRAL_8X7B: Architecture = Architecture {
    experts: 8,
    ..MISTRAL_7B
};
const LLAMA31_8B: Architecture = Architecture {
    hidden_size: 4096,
    layers: 32,
    attention_heads: 32,
    kv_heads: 8,
    head_dim: 128,
    intermediate_size: 14_336,
    vocab_size: 128_256,
    tied_embeddings: false,
    max_context: 131_072,
    qkv_bias: false,
    experts: 1,
};
const LLAMA31_70B: Architecture = Architecture {
    hidden_size: 8192,
    layers: 80,
    attention_heads: 64,
    kv_heads: 8,
    head_dim: 128,
    intermediate_size: 28_672,
    vocab_size: 128_256,
    tied_embeddings: false,
    max_context: 131_072,
    qkv_bias: false,
    experts: 1,
};
const PHI35_MINI: Architecture = Architecture {
    hidden_size: 3072,
    layers: 32,
    attention_heads: 32,
    kv_heads: 32,
    head_dim: 96,
    intermediate_size: 8192,
    vocab_size: 32_064,
    tied_embeddings: false,
    max_context: 131_072,
    qkv_bias: false,
    experts: 1,
};

const CJ2_TEMPLATE: &str = "cj2-critical-thinking";
const BRACKETS_TEMPLATE: &str = "pairwise-ab";

/// Every judge Arbiter knows by name; the first is the default.
pub const CATALOGUE: &[CatalogueEntry] = &[
    CatalogueEntry {
        short_name: "compassjudger-2-7b",
        repo: DEFAULT_JUDGE,
        template: CJ2_TEMPLATE,
        architecture: QWEN25_7B,
        summary: "CompassJudger-2 7B: structured critiques with a JSON verdict (the default)",
    },
    CatalogueEntry {
        short_name: "compassjudger-2-32b",
        repo: "opencompass/CompassJudger-2-32B-Instruct",
        template: CJ2_TEMPLATE,
        architecture: QWEN25_32B,
        summary: "CompassJudger-2 32B: the strongest CompassJudger, needs a large GPU",
    },
    CatalogueEntry {
        short_name: "compassjudger-1-1.5b",
        repo: "opencompass/CompassJudger-1-1.5B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_1_5B,
        summary: "CompassJudger-1 1.5B: small and fast, answers [[A]]/[[B]]",
    },
    CatalogueEntry {
        short_name: "compassjudger-1-7b",
        repo: "opencompass/CompassJudger-1-7B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_7B,
        summary: "CompassJudger-1 7B",
    },
    CatalogueEntry {
        short_name: "compassjudger-1-14b",
        repo: "opencompass/CompassJudger-1-14B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_14B,
        summary: "CompassJudger-1 14B",
    },
    CatalogueEntry {
        short_name: "compassjudger-1-32b",
        repo: "opencompass/CompassJudger-1-32B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_32B,
        summary: "CompassJudger-1 32B",
    },
    CatalogueEntry {
        short_name: "prometheus-2-7b",
        repo: "prometheus-eval/prometheus-7b-v2.0",
        template: "prometheus2-relative",
        architecture: MISTRAL_7B,
        summary: "Prometheus-2 7B (Mistral): relative grading, feedback then [RESULT] A or B",
    },
    CatalogueEntry {
        short_name: "prometheus-2-8x7b",
        repo: "prometheus-eval/prometheus-8x7b-v2.0",
        template: "prometheus2-relative",
        architecture: MIXTRAL_8X7B,
        summary: "Prometheus-2 8x7B (Mixtral, 8 experts): relative grading, needs a large GPU",
    },
    CatalogueEntry {
        short_name: "skywork-critic-8b",
        repo: "Skywork/Skywork-Critic-Llama-3.1-8B",
        template: "skywork-critic",
        architecture: LLAMA31_8B,
        summary: "Skywork-Critic Llama-3.1 8B: answers [[A]] or [[B]] alone",
    },
    CatalogueEntry {
        short_name: "skywork-critic-70b",
        repo: "Skywork/Skywork-Critic-Llama-3.1-70B",
        template: "skywork-critic",
        architecture: LLAMA31_70B,
        summary: "Skywork-Critic Llama-3.1 70B",
    },
    CatalogueEntry {
        short_name: "selene-1-mini",
        repo: "AtlaAI/Selene-1-Mini-Llama-3.1-8B",
        template: "selene-pairwise",
        architecture: LLAMA31_8B,
        summary: "Atla Selene-1-Mini (Llama-3.1 8B): reasoning, then **Result:** A or B",
    },
    CatalogueEntry {
        short_name: "flow-judge",
        repo: "flowaicom/Flow-Judge-v0.1",
        template: "flow-judge",
        architecture: PHI35_MINI,
        summary: "Flow-Judge-v0.1 (Phi-3.5-mini): pointwise, a 1-5 score per answer",
    },
    CatalogueEntry {
        short_name: "qwen2.5-0.5b",
        repo: "Qwen/Qwen2.5-0.5B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_0_5B,
        summary: "Qwen2.5 0.5B Instruct: a general model, for trying things out on a CPU",
    },
    CatalogueEntry {
        short_name: "qwen2.5-1.5b",
        repo: "Qwen/Qwen2.5-1.5B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_1_5B,
        summary: "Qwen2.5 1.5B Instruct: a general model",
    },
    CatalogueEntry {
        short_name: "qwen2.5-7b",
        repo: "Qwen/Qwen2.5-7B-Instruct",
        template: BRACKETS_TEMPLATE,
        architecture: QWEN25_7B,
        summary: "Qwen2.5 7B Instruct: a general model, the base of CompassJudger-2 7B",
    },
];

/// The default judge's entry.
pub fn default_judge() -> &'static CatalogueEntry {
    &CATALOGUE[0]
}

/// A catalogue entry by short name, hub id or repository name, ignoring case.
pub fn lookup(name: &str) -> Option<&'static CatalogueEntry> {
    let name = name.trim();
    CATALOGUE.iter().find(|e| {
        e.short_name.eq_ignore_ascii_case(name)
            || e.repo.eq_ignore_ascii_case(name)
            || e.repo
                .rsplit('/')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A hub repository, with its catalogue entry when it has one.
    Hub {
        repo: RepoId,
        revision: Option<String>,
        entry: Option<&'static CatalogueEntry>,
    },
    /// A local model folder (`config.json`, `tokenizer.json`, safetensors).
    Dir(PathBuf),
    /// A local GGUF file.
    Gguf(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(
        "no model given: name a judge ({}), a hub id `owner/name`, a model folder or a .gguf file",
        names()
    )]
    Empty,
    #[error("{0} does not exist: give an existing model folder or .gguf file")]
    NotFound(PathBuf),
    #[error("{0} is a file but not a .gguf model: give a .gguf file or a model folder")]
    NotGguf(PathBuf),
    #[error("`{0}` is neither a known judge ({names}), a hub id `owner/name[@revision]`, nor an existing folder or .gguf file", names = names())]
    Unknown(String),
    #[error(transparent)]
    Hub(Box<HubError>),
}

impl From<HubError> for CatalogueError {
    fn from(e: HubError) -> Self {
        CatalogueError::Hub(Box::new(e))
    }
}

fn names() -> String {
    CATALOGUE
        .iter()
        .map(|e| e.short_name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns what the user typed into a model source. An existing path wins (a folder named like
/// `owner/name` in the current directory is that folder); then a catalogue name (with an
/// optional `@revision`); then any hub id `owner/name[@revision]`.
pub fn resolve(spec: &str) -> Result<ModelSource, CatalogueError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(CatalogueError::Empty);
    }
    let path = expand_home(spec);
    if path.is_dir() {
        return Ok(ModelSource::Dir(path));
    }
    let is_gguf = spec.to_ascii_lowercase().ends_with(".gguf");
    if path.is_file() {
        return if is_gguf {
            Ok(ModelSource::Gguf(path))
        } else {
            Err(CatalogueError::NotGguf(path))
        };
    }
    let looks_like_path = is_gguf
        || spec.starts_with(['/', '.', '~'])
        || spec.contains('\\')
        || spec.split('@').next().unwrap_or("").matches('/').count() > 1;
    if looks_like_path {
        return Err(CatalogueError::NotFound(path));
    }
    let (name, revision) = match spec.split_once('@') {
        Some((name, rev)) => (name, Some(rev)),
        None => (spec, None),
    };
    if let Some(entry) = lookup(name) {
        let with_rev = match revision {
            Some(rev) => format!("{}@{rev}", entry.repo),
            None => entry.repo.to_string(),
        };
        let (repo, revision) = parse_spec(&with_rev)?;
        return Ok(ModelSource::Hub {
            repo,
            revision,
            entry: Some(entry),
        });
    }
    if !name.contains('/') {
        return Err(CatalogueError::Unknown(spec.to_string()));
    }
    let (repo, revision) = parse_spec(spec)?;
    Ok(ModelSource::Hub {
        entry: lookup(&repo.to_string()),
        repo,
        revision,
    })
}

fn expand_home(spec: &str) -> PathBuf {
    match (spec.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => Path::new(spec).to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_published_models() {
        // Half the `total_size` in each model's bf16 safetensors index.
        assert_eq!(QWEN25_7B.parameters(), 7_615_616_512);
        assert_eq!(QWEN25_0_5B.parameters(), 494_032_768);
        // The hub's rounded parameter counts of the safetensors files.
        let billions = |a: Architecture| a.parameters() as f64 / 1e9;
        assert!((billions(QWEN25_1_5B) - 1.54).abs() < 0.005);
        assert!((billions(QWEN25_14B) - 14.77).abs() < 0.005);
        assert!((billions(QWEN25_32B) - 32.76).abs() < 0.005);
        // The other families' published counts (half their bf16 safetensors totals).
        assert_eq!(MISTRAL_7B.parameters(), 7_241_732_096);
        assert_eq!(MIXTRAL_8X7B.parameters(), 46_702_792_704);
        assert_eq!(LLAMA31_8B.parameters(), 8_030_261_248);
        assert_eq!(LLAMA31_70B.parameters(), 70_553_706_496);
        assert_eq!(PHI35_MINI.parameters(), 3_821_079_552);
    }

    #[test]
    fn each_open_judge_has_its_own_template_and_architecture() {
        let judge = |name: &str| lookup(name).unwrap_or_else(|| panic!("{name} is catalogued"));
        for (name, template, params) in [
            ("prometheus-2-7b", "prometheus2-relative", 7_241_732_096),
            ("prometheus-2-8x7b", "prometheus2-relative", 46_702_792_704),
            ("skywork-critic-8b", "skywork-critic", 8_030_261_248),
            ("skywork-critic-70b", "skywork-critic", 70_553_706_496),
            ("selene-1-mini", "selene-pairwise", 8_030_261_248),
            ("flow-judge", "flow-judge", 3_821_079_552),
        ] {
            let e = judge(name);
            assert_eq!((e.template, e.parameters()), (template, params), "{name}");
        }
        // Mixtral's KV cache is a Mistral's (experts share attention); its weights are 6.4x.
        let (dense, moe) = (judge("prometheus-2-7b"), judge("prometheus-2-8x7b"));
        let (d, m) = (
            dense.memory(Dtype::Bf16, DEFAULT_CONTEXT),
            moe.memory(Dtype::Bf16, DEFAULT_CONTEXT),
        );
        assert_eq!(d.kv_cache, m.kv_cache);
        assert_eq!(d.kv_cache, 2 * 32 * 8 * 128 * 8192 * 2);
        assert_eq!(m.weights, 2 * 46_702_792_704);
    }

    #[test]
    fn memory_estimates_follow_the_formula() {
        let e = lookup("qwen2.5-0.5b").unwrap();
        let m = e.memory(Dtype::Bf16, 1000);
        assert_eq!(m.weights, 494_032_768 * 2);
        // 2 x 24 layers x 2 kv heads x 64 x 1000 tokens x 2 bytes
        assert_eq!(m.kv_cache, 12_288_000);
        let chunk = 512;
        let expected_working =
            chunk * 14 * 1000 * 4 + chunk * (2 * 4864 + 4 * 896) * 2 + 2 * 151_936 * 4;
        assert_eq!(m.working, expected_working);
        assert_eq!(m.total(), m.weights + m.kv_cache + m.working);
        let f32 = e.memory(Dtype::F32, 1000);
        assert_eq!(f32.weights, 2 * m.weights);
        assert_eq!(f32.kv_cache, 2 * m.kv_cache);
        let gguf = MemoryEstimate::for_gguf(&e.architecture, 400_000_000, 1000);
        assert_eq!(gguf.weights, 400_000_000);
        assert_eq!(gguf.kv_cache, f32.kv_cache);
        // The 7B judge in bf16 at the default context: weights 15.2 GB, KV cache 0.47 GB.
        let cj2 = default_judge().memory(Dtype::Bf16, DEFAULT_CONTEXT);
        assert_eq!(cj2.kv_cache, 2 * 28 * 4 * 128 * 8192 * 2);
        assert!(
            cj2.total() > 15_700_000_000 && cj2.total() < 17_000_000_000,
            "{cj2:?}"
        );
    }

    #[test]
    fn catalogue_is_consistent() {
        assert!(default_judge().is_default());
        assert_eq!(CATALOGUE.iter().filter(|e| e.is_default()).count(), 1);
        for e in CATALOGUE {
            assert_eq!(e.repo_id().to_string(), e.repo);
            assert!(e.download_bytes() > e.parameters() * 2, "{}", e.short_name);
            assert_eq!(lookup(e.short_name), Some(e));
        }
        let known_templates = [
            "cj2-critical-thinking",
            "pairwise-ab",
            "prometheus2-relative",
            "skywork-critic",
            "selene-pairwise",
            "flow-judge",
        ];
        assert!(CATALOGUE
            .iter()
            .all(|e| known_templates.contains(&e.template)));
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        for t in known_templates {
            assert!(
                dir.join(format!("{t}.txt")).is_file(),
                "template {t} exists"
            );
        }
    }

    #[test]
    fn resolves_names_ids_folders_and_gguf_files() {
        match resolve("compassjudger-1-7b").unwrap() {
            ModelSource::Hub {
                repo,
                revision,
                entry,
            } => {
                assert_eq!(repo.to_string(), "opencompass/CompassJudger-1-7B-Instruct");
                assert_eq!(revision, None);
                assert_eq!(entry.unwrap().short_name, "compassjudger-1-7b");
            }
            other => panic!("{other:?}"),
        }
        match resolve("CompassJudger-2-32B-Instruct@v1").unwrap() {
            ModelSource::Hub { repo, revision, .. } => {
                assert_eq!(repo.to_string(), "opencompass/CompassJudger-2-32B-Instruct");
                assert_eq!(revision.as_deref(), Some("v1"));
            }
            other => panic!("{other:?}"),
        }
        match resolve("someone/their-judge@refs/pr/2").unwrap() {
            ModelSource::Hub {
                repo,
                revision,
                entry,
            } => {
                assert_eq!(repo.to_string(), "someone/their-judge");
                assert_eq!(revision.as_deref(), Some("refs/pr/2"));
                assert!(entry.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            resolve("qwen/qwen2.5-7b-instruct").unwrap(),
            ModelSource::Hub { entry: Some(e), .. } if e.short_name == "qwen2.5-7b"
        ));

        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("m.Q4_1.GGUF");
        std::fs::write(&gguf, b"GGUF").unwrap();
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, b"x").unwrap();
        assert_eq!(
            resolve(dir.path().to_str().unwrap()).unwrap(),
            ModelSource::Dir(dir.path().to_path_buf())
        );
        assert_eq!(
            resolve(gguf.to_str().unwrap()).unwrap(),
            ModelSource::Gguf(gguf)
        );
        assert!(matches!(
            resolve(other.to_str().unwrap()),
            Err(CatalogueError::NotGguf(_))
        ));
        assert!(matches!(
            resolve("missing.gguf"),
            Err(CatalogueError::NotFound(_))
        ));
        assert!(matches!(
            resolve("./nowhere"),
            Err(CatalogueError::NotFound(_))
        ));
        let err = resolve("gpt-5-judge").unwrap_err().to_string();
        assert!(err.contains("compassjudger-2-7b"), "{err}");
        assert!(matches!(resolve(""), Err(CatalogueError::Empty)));
        assert!(matches!(
            resolve("bad--owner/x"),
            Err(CatalogueError::Hub(_))
        ));
    }
}
