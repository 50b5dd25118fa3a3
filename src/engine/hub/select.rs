//! Which files of a repository the engine needs: its config, tokenizer, chat template and
//! safetensors weights (one file, or the shards a `model.safetensors.index.json` names).
//! Pickle-based weights (`*.bin`, `*.pth`, ...) are never chosen.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";
pub const WEIGHT_INDEX: &str = "model.safetensors.index.json";

/// Files fetched when the repository has them; a model loads without them.
pub const OPTIONAL: [&str; 2] = [TOKENIZER_CONFIG, GENERATION_CONFIG];

/// Weight formats that can run code when loaded.
const PICKLE_SUFFIXES: [&str; 6] = [".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle"];

/// Where a repository's weights are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightFiles {
    /// Sharded: the index names the shards.
    Index,
    /// One or more top-level `*.safetensors` files without an index.
    Files(Vec<String>),
}

/// The files to fetch from a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// `config.json`, `tokenizer.json` and whichever optional files exist.
    pub metadata: Vec<String>,
    /// Optional files the repository does not have.
    pub absent_optional: Vec<String>,
    pub weights: WeightFiles,
}

/// Chooses the files to fetch from a repository's file list, or says why it is not a model
/// Arbiter can load.
pub fn select(files: &[&str]) -> Result<Selection, String> {
    let has = |name: &str| files.contains(&name);
    let mut problems = Vec::new();
    for needed in [CONFIG, TOKENIZER] {
        if !has(needed) {
            problems.push(format!("it has no {needed}"));
        }
    }
    let weights = if has(WEIGHT_INDEX) {
        Some(WeightFiles::Index)
    } else {
        let mut top: Vec<String> = files
            .iter()
            .filter(|f| !f.contains('/') && f.ends_with(".safetensors"))
            .map(|f| f.to_string())
            .collect();
        top.sort();
        (!top.is_empty()).then_some(WeightFiles::Files(top))
    };
    if weights.is_none() {
        problems.push(no_weights_reason(files));
    }
    match weights {
        Some(weights) if problems.is_empty() => {
            let mut metadata = vec![CONFIG.to_string(), TOKENIZER.to_string()];
            let mut absent_optional = Vec::new();
            for name in OPTIONAL {
                if has(name) {
                    metadata.push(name.to_string());
                } else {
                    absent_optional.push(name.to_string());
                }
            }
            Ok(Selection {
                metadata,
                absent_optional,
                weights,
            })
        }
        _ => Err(problems.join("; ")),
    }
}

fn no_weights_reason(files: &[&str]) -> String {
    let pickles: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| PICKLE_SUFFIXES.iter().any(|s| f.ends_with(s)))
        .take(3)
        .collect();
    let ggufs: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| f.ends_with(".gguf"))
        .take(3)
        .collect();
    if !ggufs.is_empty() {
        format!(
            "it has no safetensors weights but GGUF files ({}): download one and give its path",
            ggufs.join(", ")
        )
    } else if !pickles.is_empty() {
        format!(
            "its weights are only in pickle files ({}), which Arbiter never loads because they can \
             run code: pick a repository with safetensors or a .gguf file",
            pickles.join(", ")
        )
    } else {
        "it has no safetensors weights (model.safetensors or model.safetensors.index.json)".into()
    }
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The shard files a `model.safetensors.index.json` names, each once, sorted.
pub fn shards(index_json: &str) -> Result<Vec<String>, String> {
    let index: Index = serde_json::from_str(index_json)
        .map_err(|e| format!("{WEIGHT_INDEX} is not a safetensors index: {e}"))?;
    let names: BTreeSet<String> = index.weight_map.into_values().collect();
    if names.is_empty() {
        return Err(format!("{WEIGHT_INDEX} names no weight files"));
    }
    if let Some(bad) = names.iter().find(|n| !n.ends_with(".safetensors")) {
        return Err(format!(
            "{WEIGHT_INDEX} names {bad}, which is not a safetensors file"
        ));
    }
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_metadata_and_single_file_weights() {
        let files = [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "README.md",
            "onnx/model.safetensors",
            "vocab.json",
        ];
        let s = select(&files).unwrap();
        assert_eq!(
            s.metadata,
            ["config.json", "tokenizer.json", "tokenizer_config.json"]
        );
        assert_eq!(s.absent_optional, ["generation_config.json"]);
        assert_eq!(
            s.weights,
            WeightFiles::Files(vec!["model.safetensors".into()])
        );
    }

    #[test]
    fn index_wins_over_loose_files() {
        let files = [
            "config.json",
            "tokenizer.json",
            "generation_config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ];
        assert_eq!(select(&files).unwrap().weights, WeightFiles::Index);
    }

    #[test]
    fn explains_what_is_missing() {
        let err = select(&["config.json", "tokenizer.json", "pytorch_model.bin"]).unwrap_err();
        assert!(
            err.contains("pickle") && err.contains("pytorch_model.bin"),
            "{err}"
        );
        let err = select(&["README.md", "qwen2.5-0.5b-instruct-q4_k_m.gguf"]).unwrap_err();
        assert!(err.contains("no config.json") && err.contains("no tokenizer.json"));
        assert!(err.contains("GGUF"), "{err}");
    }

    #[test]
    fn shards_from_an_index() {
        let json = r#"{"metadata":{"total_size":10},"weight_map":{
            "a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors",
            "c":"model-00001-of-00002.safetensors"}}"#;
        assert_eq!(
            shards(json).unwrap(),
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        assert!(shards(r#"{"weight_map":{}}"#).is_err());
        assert!(shards(r#"{"weight_map":{"a":"x.bin"}}"#)
            .unwrap_err()
            .contains("x.bin"));
        assert!(shards("not json").is_err());
    }
}
