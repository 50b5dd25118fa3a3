//! From a model source (hub id, folder, `.gguf` file) to a [`LoadedModel`]: weights on the
//! device, tokenizer, chat template and stop tokens, after checking that it fits in memory.

use super::catalogue::{MemoryEstimate, ModelSource, DEFAULT_CONTEXT};
use super::chat::ChatTemplate;
use super::config::ModelConfig;
use super::device::{available_memory, DeviceChoice};
use super::error::EngineError;
use super::hub::{format_bytes, DownloadEvent, Hub, WEIGHT_INDEX};
use super::model::family::{Gemma3, Transformers};
use super::model::{self, Backend};
use super::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file;
use candle_core::DType;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    /// Safetensors weights' dtype; `None` picks the device's default. GGUF ignores it.
    pub dtype: Option<DType>,
    /// Context the memory check plans for (default: `DEFAULT_CONTEXT` tokens).
    pub context: Option<usize>,
}

/// What loading reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadEvent {
    Download(DownloadEvent),
    /// A step with no byte count ("reading weights").
    Stage(String),
}

/// A description of the loaded model, for the UI and for the journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Hub id, file name or folder name: what judgments are labelled with.
    pub name: String,
    /// Where it was loaded from (a hub id with its commit, or a path).
    pub source: String,
    pub family: &'static str,
    /// Which decoder code runs it, and why (`ModelConfig::route`).
    pub route: String,
    pub device: String,
    /// `bf16`, `f32`, ... or the GGUF quantization (`Q4_1`).
    pub precision: String,
    pub parameters: u64,
    pub layers: usize,
    pub max_context: usize,
    pub load_seconds: f64,
}

impl ModelInfo {
    fn new(
        name: String,
        source: String,
        config: &ModelConfig,
        device: DeviceChoice,
        precision: String,
    ) -> ModelInfo {
        ModelInfo {
            name,
            source,
            family: config.family.name(),
            route: config.route().to_string(),
            device: device.to_string(),
            precision,
            parameters: config.architecture().parameters(),
            layers: config.layers,
            max_context: config.max_position,
            load_seconds: 0.0,
        }
    }
}

/// A model ready to generate.
pub struct LoadedModel {
    pub decoder: Backend,
    pub tokenizer: Tokenizer,
    /// `None` for a model without a chat template: prompts are then fed as plain text.
    pub template: Option<ChatTemplate>,
    /// Generation stops on any of these (EOS and the template's end-of-turn tokens).
    pub stop_ids: Vec<u32>,
    pub info: ModelInfo,
    /// The vocabulary as constrained decoding needs it, built on first use.
    pub grammar_vocab: Option<std::sync::Arc<super::constrain::GrammarVocab>>,
    /// The tokens the decoder's cache holds, in order (for `GenerateRequest::reuse_prefix`).
    pub(crate) cached_tokens: Vec<u32>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("info", &self.info)
            .finish()
    }
}

/// Loads `source`, downloading it first when it is a hub model not yet cached.
pub fn load(
    source: &ModelSource,
    opts: &LoadOptions,
    hub: &Hub,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<LoadedModel, EngineError> {
    let started = Instant::now();
    let mut model = match source {
        ModelSource::Hub { repo, revision, .. } => {
            let files = hub.download(repo, revision.as_deref(), &mut |e| {
                progress(LoadEvent::Download(e))
            })?;
            let mut m = load_dir(&files.dir, opts, progress)?;
            m.info.name = repo.to_string();
            m.info.source = format!("{repo}@{}", files.commit);
            m
        }
        ModelSource::Dir(dir) => load_dir(dir, opts, progress)?,
        ModelSource::Gguf(path) => load_gguf_file(path, opts, progress)?,
    };
    model.info.load_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        "loaded {} ({}, {}, {}, {}) in {:.1} s",
        model.info.name,
        model.info.family,
        model.info.route,
        model.info.precision,
        model.info.device,
        model.info.load_seconds
    );
    Ok(model)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Refuses, with the numbers, a model that cannot fit.
fn check_memory(
    what: &str,
    estimate: &MemoryEstimate,
    device: &candle_core::Device,
    choice: DeviceChoice,
) -> Result<(), EngineError> {
    let need = estimate.total();
    if let Some(available) = available_memory(device) {
        tracing::debug!(
            "{what}: needs ~{} of {} free",
            format_bytes(need),
            format_bytes(available)
        );
        if need > available {
            return Err(EngineError::OutOfMemory {
                what: what.to_string(),
                device: choice.to_string(),
                need,
                available,
            });
        }
    }
    Ok(())
}

/// A model folder: `config.json`, `tokenizer.json`, safetensors, optional chat template.
pub fn load_dir(
    dir: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<LoadedModel, EngineError> {
    let config = ModelConfig::from_config_json(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let template = ChatTemplate::from_model_dir(dir)?;
    let weights = weight_files(dir)?;
    let device = opts.device.open()?;
    let dtype = opts.dtype.unwrap_or_else(|| opts.device.default_dtype());
    let context = opts.context.unwrap_or(DEFAULT_CONTEXT as usize) as u64;
    let dtype_name = match dtype {
        DType::BF16 => super::catalogue::Dtype::Bf16,
        DType::F16 => super::catalogue::Dtype::F16,
        _ => super::catalogue::Dtype::F32,
    };
    let estimate = MemoryEstimate::for_dtype(&config.architecture(), dtype_name, context);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    check_memory(&name, &estimate, &device, opts.device)?;
    progress(LoadEvent::Stage(format!(
        "reading {} weight file(s) in {}",
        weights.len(),
        dtype_name.name()
    )));
    let decoder = if config.family.native() {
        model::load_safetensors(&config, &weights, dtype, &device).map(Backend::Arbiter)
    } else if config.family == super::config::Family::Gemma3 {
        Gemma3::from_safetensors(&config, &weights, &device).map(|m| Backend::Gemma3(Box::new(m)))
    } else {
        Transformers::from_safetensors(&config, &weights, dtype, &device)
            .map(|m| Backend::Transformers(Box::new(m)))
    }
    .map_err(|e| EngineError::compute(format!("loading the weights of {name}"), e))?;
    let stop_ids = stop_ids(
        &config,
        &tokenizer,
        template.as_ref(),
        dir.join("generation_config.json").as_path(),
    );
    Ok(LoadedModel {
        info: ModelInfo::new(
            name.clone(),
            dir.display().to_string(),
            // The backend's: it may cap the context (see model::family).
            decoder.config(),
            opts.device,
            dtype_name.name().to_string(),
        ),
        decoder,
        tokenizer,
        template,
        stop_ids,
        grammar_vocab: None,
        cached_tokens: Vec::new(),
    })
}

/// The safetensors of a folder: the shards its index lists, else `model.safetensors`, else
/// every `*.safetensors`. Never `.bin`.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let index = dir.join(WEIGHT_INDEX);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| EngineError::Io {
            path: index.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let mut shards: Vec<String> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .map(|m| {
                m.values()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        shards.sort();
        shards.dedup();
        if !shards.is_empty() {
            return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
        }
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    all.sort();
    if all.is_empty() {
        return Err(EngineError::NoWeights {
            path: dir.display().to_string(),
        });
    }
    Ok(all)
}

/// A lone GGUF file: shape, tokenizer, chat template and quantized weights all from it.
pub fn load_gguf_file(
    path: &Path,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(LoadEvent),
) -> Result<LoadedModel, EngineError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| EngineError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a readable GGUF file: {e}"),
        ),
    })?;
    let config = ModelConfig::from_gguf(&content)?;
    let tokenizer = Tokenizer::from_gguf(&content)?;
    let template = ChatTemplate::from_gguf(&content, &tokenizer)?;
    let device = opts.device.open()?;
    let file_size = std::fs::metadata(path).map_err(io(path))?.len();
    let context = opts.context.unwrap_or(DEFAULT_CONTEXT as usize) as u64;
    let estimate = MemoryEstimate::for_gguf(&config.architecture(), file_size, context);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    check_memory(&name, &estimate, &device, opts.device)?;
    progress(LoadEvent::Stage(format!(
        "reading {}",
        format_bytes(file_size)
    )));
    let precision = content
        .tensor_infos
        .get("blk.0.attn_q.weight")
        .map(|t| format!("{:?}", t.ggml_dtype))
        .unwrap_or_else(|| "gguf".into());
    let decoder = match config.family {
        family if family.native() => {
            model::load_gguf(&config, &content, &mut file, &device).map(Backend::Arbiter)
        }
        super::config::Family::Gemma3 => Gemma3::from_gguf(&config, &content, &mut file, &device)
            .map(|m| Backend::Gemma3(Box::new(m))),
        _ => {
            // candle-transformers takes the header by value: read it again.
            let mut again = std::fs::File::open(path).map_err(io(path))?;
            gguf_file::Content::read(&mut again).and_then(|content| {
                Transformers::from_gguf(&config, content, &mut again, &device)
                    .map(|m| Backend::Transformers(Box::new(m)))
            })
        }
    }
    .map_err(|e| EngineError::compute(format!("loading the tensors of {name}"), e))?;
    let stop_ids = stop_ids(&config, &tokenizer, template.as_ref(), Path::new(""));
    Ok(LoadedModel {
        info: ModelInfo::new(
            name,
            path.display().to_string(),
            // The backend's: it may cap the context (see model::family).
            decoder.config(),
            opts.device,
            precision,
        ),
        decoder,
        tokenizer,
        template,
        stop_ids,
        grammar_vocab: None,
        cached_tokens: Vec::new(),
    })
}

/// EOS ids from the config, `generation_config.json` and the tokenizer, plus the template's
/// end-of-turn tokens: a judge stops at the end of its turn whichever the model emits.
fn stop_ids(
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    generation_config: &Path,
) -> Vec<u32> {
    let mut ids = config.eos_ids.clone();
    ids.extend(tokenizer.eos_id());
    if let Ok(text) = std::fs::read_to_string(generation_config) {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            match json.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => ids.extend(n.as_u64().map(|n| n as u32)),
                Some(serde_json::Value::Array(a)) => {
                    ids.extend(a.iter().filter_map(|v| v.as_u64().map(|n| n as u32)))
                }
                _ => {}
            }
        }
    }
    if let Some(t) = template {
        ids.extend(t.end_of_turn_tokens(tokenizer));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}
