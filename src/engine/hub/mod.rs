//! Model repositories from the Hugging Face hub, kept in the cache that Python's
//! `huggingface_hub` uses (so each sees the other's downloads), with progress, resume,
//! integrity checks and an offline mode that says exactly what is missing.
//!
//! The network side is `hf-hub` 1.0's async client on the engine's own tokio runtime
//! ([`client`]); callers stay synchronous. What it does not do is here: choosing the files a
//! model needs (never pickles), resuming and checking each blob, progress with a plan, and
//! saying exactly what is missing when the hub cannot be used (`HF_HUB_OFFLINE`).
//!
//! ```no_run
//! use arbiter::engine::hub::{Hub, HubSettings, RepoId};
//! let hub = Hub::new(HubSettings::from_env());
//! let repo = RepoId::parse("Qwen/Qwen2.5-0.5B-Instruct").unwrap();
//! let model = hub.download(&repo, None, &mut |event| eprintln!("{event:?}")).unwrap();
//! println!("config at {}", model.config.display());
//! ```

mod cache;
mod client;
mod download;
mod error;
mod progress;
mod repo;
mod select;
mod settings;

pub use cache::CachedModel;
pub use error::HubError;
pub use progress::{format_bytes, format_duration, DownloadEvent, PlannedFile, TransferMeter};
pub use repo::{is_commit_hash, parse_spec, RepoId, DEFAULT_REVISION};
pub use select::{CONFIG, GENERATION_CONFIG, TOKENIZER, TOKENIZER_CONFIG, WEIGHT_INDEX};
pub use settings::{HubSettings, Token, TokenSource, DEFAULT_ENDPOINT};

use cache::RepoCache;
use client::HubClient;
use download::Fetcher;
use select::WeightFiles;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A model in the cache, ready to load: every path is inside `dir`, the snapshot folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    pub repo: RepoId,
    /// The revision asked for (`main` unless given).
    pub revision: String,
    pub commit: String,
    /// `{cache}/models--{owner}--{name}/snapshots/{commit}`: usable as a model directory.
    pub dir: PathBuf,
    pub config: PathBuf,
    pub tokenizer: PathBuf,
    pub tokenizer_config: Option<PathBuf>,
    pub generation_config: Option<PathBuf>,
    /// `model.safetensors.index.json` when the weights are sharded.
    pub weight_index: Option<PathBuf>,
    /// The safetensors files, in shard order.
    pub weights: Vec<PathBuf>,
    /// Bytes transferred by this call (0 when everything was cached).
    pub downloaded_bytes: u64,
}

/// The hub client: downloads, lists and deletes cached models.
#[derive(Debug, Clone)]
pub struct Hub {
    settings: HubSettings,
    cancel: Option<Arc<AtomicBool>>,
}

impl Hub {
    pub fn new(settings: HubSettings) -> Hub {
        Hub {
            settings,
            cancel: None,
        }
    }

    /// A flag that stops a running download between two chunks when set; the partial file
    /// stays in the cache and the next download resumes it.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Hub {
        self.cancel = Some(flag);
        self
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Makes the files the engine needs from `repo` at `revision` (default `main`) present in
    /// the cache and returns where they are. Files already cached are not fetched again. When
    /// offline (`HF_HUB_OFFLINE`), or when the hub cannot be reached, only the cache is used
    /// and a missing file is an error that names it.
    pub fn download(
        &self,
        repo: &RepoId,
        revision: Option<&str>,
        progress: &mut dyn FnMut(DownloadEvent),
    ) -> Result<ModelFiles, HubError> {
        let revision = revision.unwrap_or(DEFAULT_REVISION);
        repo::check_revision(revision)?;
        let cache = RepoCache::new(&self.settings.cache_dir, repo);
        if self.settings.offline {
            return self.cached(repo, revision, "HF_HUB_OFFLINE is set");
        }
        // A commit never changes: if it is all here, there is nothing to ask the hub.
        if is_commit_hash(revision) {
            if let Ok(files) = assemble(&cache, repo, revision, revision) {
                return Ok(files);
            }
        }
        let runtime = client::runtime()?;
        runtime.block_on(self.download_async(repo, revision, &cache, progress))
    }

    async fn download_async(
        &self,
        repo: &RepoId,
        revision: &str,
        cache: &RepoCache,
        progress: &mut dyn FnMut(DownloadEvent),
    ) -> Result<ModelFiles, HubError> {
        let client = HubClient::new(&self.settings, repo)?;
        let info = match client.repo.info().revision(revision).send().await {
            Ok(info) => info,
            Err(e) => match client.error(e, repo, revision, None) {
                e @ HubError::Network { .. } => {
                    tracing::warn!("{e}; trying the cache");
                    return self.cached(repo, revision, &format!("the hub is unreachable: {e}"));
                }
                e => return Err(e),
            },
        };
        let commit =
            info.sha
                .filter(|s| is_commit_hash(s))
                .ok_or_else(|| HubError::BadResponse {
                    url: format!("{}/api/models/{repo}", self.settings.endpoint),
                    detail: "its model info has no commit `sha`".into(),
                })?;
        cache.write_ref(revision, &commit)?;
        let siblings = info.siblings.unwrap_or_default();
        let names: Vec<&str> = siblings.iter().map(|f| f.rfilename.as_str()).collect();
        // Sizes are in the model info only when asked with `blobs=true`, which hf-hub does not
        // ask; the missing ones come from `paths-info` once the plan is known.
        let mut sizes: HashMap<String, Option<u64>> = siblings
            .iter()
            .map(|f| {
                let size = f.lfs.as_ref().and_then(|l| l.size).or(f.size);
                (f.rfilename.clone(), size)
            })
            .collect();
        let not_a_model = |problem: String| HubError::NotAModel {
            repo: repo.to_string(),
            revision: revision.to_string(),
            problem,
        };
        let selection = select::select(&names).map_err(not_a_model)?;
        for name in &selection.absent_optional {
            cache.mark_absent(&commit, name);
        }

        let mut fetcher = Fetcher {
            client: &client,
            cache: cache.clone(),
            repo,
            commit: &commit,
            retries: self.settings.retries,
            retry_delay: self.settings.retry_delay,
            cancel: self.cancel.as_deref(),
            progress,
            done: 0,
            total: 0,
            transferred: 0,
        };
        // The shard list is inside the index: fetch it before planning the rest.
        let mut plan: Vec<String> = selection.metadata.clone();
        let mut fetched_first = None;
        if selection.weights == WeightFiles::Index {
            plan.push(WEIGHT_INDEX.to_string());
            if !cache.pointer_path(&commit, WEIGHT_INDEX).exists() {
                fetched_first = Some(WEIGHT_INDEX);
            }
            let index = fetcher
                .fetch(WEIGHT_INDEX, sizes.get(WEIGHT_INDEX).copied().flatten())
                .await?;
            let text =
                std::fs::read_to_string(&index).map_err(|e| HubError::io("read", &index, e))?;
            let shards = select::shards(&text).map_err(not_a_model)?;
            if let Some(absent) = shards.iter().find(|s| !sizes.contains_key(s.as_str())) {
                return Err(not_a_model(format!(
                    "{WEIGHT_INDEX} names {absent}, which the repository does not have"
                )));
            }
            plan.extend(shards);
        } else if let WeightFiles::Files(files) = &selection.weights {
            plan.extend(files.iter().cloned());
        }
        for name in &plan {
            repo::check_repo_file(name)?;
        }
        let unknown: Vec<String> = plan
            .iter()
            .filter(|name| sizes.get(name.as_str()).copied().flatten().is_none())
            .filter(|name| !cache.pointer_path(&commit, name).exists())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let entries = client
                .repo
                .get_paths_info()
                .paths(unknown)
                .revision(commit.clone())
                .send()
                .await
                .map_err(|e| client.error(e, repo, &commit, None))?;
            for entry in entries {
                if let hf_hub::repository::RepoTreeEntry::File { path, size, .. } = entry {
                    sizes.insert(path, Some(size));
                }
            }
        }
        for name in &plan {
            let pointer = cache.pointer_path(&commit, name);
            if sizes.get(name.as_str()).copied().flatten().is_none() && pointer.exists() {
                let on_disk = std::fs::metadata(&pointer).map(|m| m.len()).ok();
                sizes.insert(name.clone(), on_disk);
            }
        }

        // `cached` is about the cache before this call; the index may just have been fetched.
        let planned: Vec<PlannedFile> = plan
            .iter()
            .map(|name| PlannedFile {
                name: name.clone(),
                size: sizes.get(name.as_str()).copied().flatten(),
                cached: fetched_first != Some(name.as_str())
                    && cache.pointer_path(&commit, name).exists(),
            })
            .collect();
        let total_bytes = planned.iter().filter_map(|f| f.size).sum();
        let cached_bytes = planned
            .iter()
            .filter(|f| f.cached)
            .filter_map(|f| f.size)
            .sum();
        fetcher.total = total_bytes;
        fetcher.done = planned
            .iter()
            .filter(|f| cache.pointer_path(&commit, &f.name).exists())
            .filter_map(|f| f.size)
            .sum();
        (fetcher.progress)(DownloadEvent::Plan {
            repo: repo.to_string(),
            commit: commit.clone(),
            files: planned.clone(),
            total_bytes,
            cached_bytes,
        });
        for file in planned
            .iter()
            .filter(|f| !f.cached && fetched_first != Some(&f.name))
        {
            fetcher.fetch(&file.name, file.size).await?;
        }
        let transferred = fetcher.transferred;
        let mut files = assemble(cache, repo, revision, &commit)?;
        files.downloaded_bytes = transferred;
        Ok(files)
    }

    /// The model as the cache has it, without any network access.
    pub fn cached(&self, repo: &RepoId, revision: &str, why: &str) -> Result<ModelFiles, HubError> {
        repo::check_revision(revision)?;
        let cache = RepoCache::new(&self.settings.cache_dir, repo);
        let not_cached = |missing: Vec<String>| HubError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
            cache: self.settings.cache_dir.clone(),
            missing,
            why: why.to_string(),
            offline_env: self.settings.offline,
        };
        if !cache.root.is_dir() {
            return Err(not_cached(vec![
                "the whole model (it was never downloaded)".into(),
            ]));
        }
        let commit = if is_commit_hash(revision) {
            revision.to_string()
        } else {
            cache.read_ref(revision).ok_or_else(|| {
                not_cached(vec![format!(
                    "refs/{revision} (which commit `{revision}` is was never recorded)"
                )])
            })?
        };
        assemble(&cache, repo, revision, &commit).map_err(|e| match e {
            HubError::NotCached { missing, .. } => not_cached(missing),
            other => other,
        })
    }

    /// Every model repository in the cache, with its size on disk.
    pub fn cached_models(&self) -> Result<Vec<CachedModel>, HubError> {
        cache::cached_models(&self.settings.cache_dir)
    }

    /// Deletes a repository (all revisions) from the cache; returns the bytes freed.
    pub fn delete(&self, repo: &RepoId) -> Result<u64, HubError> {
        cache::delete(&self.settings.cache_dir, repo)
    }
}

/// Collects a snapshot's files; every file the engine needs must be there (optional ones may
/// be absent when the cache records that the repository lacks them).
fn assemble(
    cache: &RepoCache,
    repo: &RepoId,
    revision: &str,
    commit: &str,
) -> Result<ModelFiles, HubError> {
    let dir = cache.snapshot_dir(commit);
    let mut missing = Vec::new();
    let required = |name: &str, missing: &mut Vec<String>| {
        let path = dir.join(name);
        if !path.exists() {
            missing.push(name.to_string());
        }
        path
    };
    let config = required(CONFIG, &mut missing);
    let tokenizer = required(TOKENIZER, &mut missing);
    let mut optional = |name: &str| {
        let path = dir.join(name);
        if path.exists() {
            Some(path)
        } else {
            if !cache.known_absent(commit, name) {
                missing.push(name.to_string());
            }
            None
        }
    };
    let tokenizer_config = optional(TOKENIZER_CONFIG);
    let generation_config = optional(GENERATION_CONFIG);

    let index_path = dir.join(WEIGHT_INDEX);
    let (weight_index, weights) = if index_path.exists() {
        let text = std::fs::read_to_string(&index_path)
            .map_err(|e| HubError::io("read", &index_path, e))?;
        let shards = select::shards(&text).map_err(|problem| HubError::NotAModel {
            repo: repo.to_string(),
            revision: revision.to_string(),
            problem,
        })?;
        let mut paths = Vec::new();
        for shard in shards {
            repo::check_repo_file(&shard)?;
            let path = dir.join(&shard);
            if !path.exists() {
                missing.push(shard);
            }
            paths.push(path);
        }
        (Some(index_path), paths)
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.exists())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        if found.is_empty() {
            missing.push(format!("{WEIGHT_INDEX} or model.safetensors"));
        }
        (None, found)
    };
    if !missing.is_empty() {
        return Err(HubError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
            cache: cache.root.clone(),
            missing,
            why: String::new(),
            offline_env: false,
        });
    }
    Ok(ModelFiles {
        repo: repo.clone(),
        revision: revision.to_string(),
        commit: commit.to_string(),
        dir,
        config,
        tokenizer,
        tokenizer_config,
        generation_config,
        weight_index,
        weights,
        downloaded_bytes: 0,
    })
}
