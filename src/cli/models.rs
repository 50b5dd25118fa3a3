//! `arbiter models`: the judge catalogue and what the hub cache holds, downloads with a
//! progress line, and removal from the cache.

use super::table::Table;
use crate::engine::catalogue::{self, Dtype, ModelSource, CATALOGUE, DEFAULT_CONTEXT};
use crate::engine::config::{ModelConfig, Route};
use crate::engine::hub::{
    format_bytes, format_duration, CachedModel, DownloadEvent, Hub, HubSettings, RepoId,
    TokenSource, TransferMeter, DEFAULT_ENDPOINT,
};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: Option<ModelsCommand>,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the judge catalogue and the models in the hub cache, with sizes (the default).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the hub cache (shared with Python's huggingface_hub).
    Download(DownloadArgs),
    /// Remove a model (all its revisions) from the hub cache.
    Rm {
        /// A hub id `owner/name` or a catalogue name.
        model: String,
    },
}

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// A catalogue name (`arbiter models list`) or a hub id `owner/name[@revision]`.
    pub model: String,
    /// Branch, tag or commit to download (default: main).
    #[arg(long)]
    pub revision: Option<String>,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<i32> {
    let hub = Hub::new(HubSettings::from_env());
    match args.command.unwrap_or(ModelsCommand::List { json: false }) {
        ModelsCommand::List { json } => list(&hub, json),
        ModelsCommand::Download(a) => download_with(&hub, a),
        ModelsCommand::Rm { model } => remove(&hub, &model),
    }
}

/// `arbiter download MODEL`: the same as `arbiter models download MODEL`.
pub fn download(args: DownloadArgs) -> anyhow::Result<i32> {
    download_with(&Hub::new(HubSettings::from_env()), args)
}

fn list(hub: &Hub, json: bool) -> anyhow::Result<i32> {
    let cached = hub.cached_models().with_context(|| {
        format!(
            "listing the hub cache {}",
            hub.settings().cache_dir.display()
        )
    })?;
    let find = |repo: &str| cached.iter().find(|c| c.repo.to_string() == repo);
    if json {
        let judges: Vec<serde_json::Value> = CATALOGUE
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.short_name,
                    "repo": e.repo,
                    "default": e.is_default(),
                    "template": e.template,
                    "parameters": e.parameters(),
                    "download_bytes": e.download_bytes(),
                    "context": DEFAULT_CONTEXT,
                    "memory_bytes": {
                        "bf16": e.memory(Dtype::Bf16, DEFAULT_CONTEXT).total(),
                        "f32": e.memory(Dtype::F32, DEFAULT_CONTEXT).total(),
                    },
                    "cached_bytes": find(e.repo).map(|c| c.size_on_disk),
                    "decoder": find(e.repo).and_then(decoder_route).map(|r| r.to_string()),
                })
            })
            .collect();
        let cache: Vec<serde_json::Value> = cached.iter().map(cached_json).collect();
        let out = serde_json::json!({
            "cache_dir": hub.settings().cache_dir,
            "endpoint": hub.settings().endpoint,
            "offline": hub.settings().offline,
            "catalogue": judges,
            "cached": cache,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }

    let mut t = Table::new([
        "name",
        "hub id",
        "params",
        "download",
        "memory bf16",
        "memory f32",
        "template",
        "cached",
        "decoder",
    ]);
    for e in CATALOGUE {
        let name = if e.is_default() {
            format!("{} (default)", e.short_name)
        } else {
            e.short_name.to_string()
        };
        t.row([
            name,
            e.repo.to_string(),
            format!("{:.2}B", e.parameters() as f64 / 1e9),
            format_bytes(e.download_bytes()),
            format_bytes(e.memory(Dtype::Bf16, DEFAULT_CONTEXT).total()),
            format_bytes(e.memory(Dtype::F32, DEFAULT_CONTEXT).total()),
            e.template.to_string(),
            find(e.repo).map_or("-".to_string(), cached_label),
            find(e.repo)
                .and_then(decoder_route)
                .map_or("-".to_string(), |r| r.path),
        ]);
    }
    println!("Judges (memory for a {DEFAULT_CONTEXT}-token context):");
    print!("{}", t.render());

    let others: Vec<&CachedModel> = cached
        .iter()
        .filter(|c| catalogue::lookup(&c.repo.to_string()).is_none())
        .collect();
    if !others.is_empty() {
        let mut t = Table::new(["hub id", "on disk", "revisions", "decoder"]);
        for c in &others {
            t.row([
                c.repo.to_string(),
                cached_label(c),
                revisions(c),
                decoder_route(c).map_or("-".to_string(), |r| r.to_string()),
            ]);
        }
        println!("\nOther models in the cache:");
        print!("{}", t.render());
    }
    let total: u64 = cached
        .iter()
        .map(|c| c.size_on_disk + c.partial_bytes)
        .sum();
    let s = hub.settings();
    println!(
        "\nHub cache: {} ({} in {} models)",
        s.cache_dir.display(),
        format_bytes(total),
        cached.len()
    );
    if s.endpoint != DEFAULT_ENDPOINT {
        println!("Hub: {} (HF_ENDPOINT)", s.endpoint);
    }
    if s.offline {
        println!("Offline (HF_HUB_OFFLINE): only cached models can be used.");
    }
    match &s.token_source {
        Some(TokenSource::Env(name)) => println!("Token: from {name}"),
        Some(TokenSource::File(path)) => println!("Token: from {}", path.display()),
        Some(TokenSource::Explicit) => println!("Token: given"),
        None => println!("Token: none (set HF_TOKEN for gated or private models)"),
    }
    Ok(0)
}

/// Which decoder code would run a cached model, from its newest snapshot's `config.json`:
/// our own decoder for Qwen2/Llama, candle-transformers' model code for the other families
/// (`None` where the snapshot has no readable config).
fn decoder_route(c: &CachedModel) -> Option<Route> {
    let snapshots = c.path.join("snapshots");
    let commit = c
        .refs
        .iter()
        .find(|(name, _)| name == "main")
        .map(|(_, commit)| commit.clone())
        .or_else(|| c.snapshots.last().cloned())?;
    let config = snapshots.join(commit).join("config.json");
    if !config.is_file() {
        return None;
    }
    match ModelConfig::from_config_json(&config) {
        Ok(cfg) => Some(cfg.route()),
        Err(e) => Some(Route {
            path: "none".into(),
            why: e.to_string(),
        }),
    }
}

fn cached_label(c: &CachedModel) -> String {
    if c.partial_bytes > 0 {
        format!(
            "{} (+{} partial)",
            format_bytes(c.size_on_disk),
            format_bytes(c.partial_bytes)
        )
    } else {
        format_bytes(c.size_on_disk)
    }
}

fn revisions(c: &CachedModel) -> String {
    if c.refs.is_empty() {
        return c
            .snapshots
            .iter()
            .map(|s| s[..s.len().min(10)].to_string())
            .collect::<Vec<_>>()
            .join(", ");
    }
    c.refs
        .iter()
        .map(|(name, commit)| format!("{name}={}", &commit[..commit.len().min(10)]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cached_json(c: &CachedModel) -> serde_json::Value {
    serde_json::json!({
        "repo": c.repo.to_string(),
        "path": c.path,
        "size_on_disk": c.size_on_disk,
        "partial_bytes": c.partial_bytes,
        "refs": c.refs.iter().map(|(r, c)| serde_json::json!({"revision": r, "commit": c})).collect::<Vec<_>>(),
        "snapshots": c.snapshots,
        "decoder": decoder_route(c).map(|r| serde_json::json!({"path": r.path, "why": r.why})),
    })
}

fn download_with(hub: &Hub, args: DownloadArgs) -> anyhow::Result<i32> {
    let (repo, revision) = match catalogue::resolve(&args.model)? {
        ModelSource::Hub { repo, revision, .. } => (repo, args.revision.or(revision)),
        ModelSource::Dir(p) | ModelSource::Gguf(p) => anyhow::bail!(
            "{} is a local model; there is nothing to download",
            p.display()
        ),
    };
    let mut bar = ProgressLine::new(std::io::stderr().is_terminal());
    let result = hub.download(&repo, revision.as_deref(), &mut |event| bar.show(&event));
    bar.finish();
    let model = result.with_context(|| format!("downloading {repo}"))?;
    eprintln!(
        "{repo} at {} is ready ({} transferred)",
        &model.commit[..model.commit.len().min(10)],
        format_bytes(model.downloaded_bytes)
    );
    println!("{}", model.dir.display());
    Ok(0)
}

fn remove(hub: &Hub, model: &str) -> anyhow::Result<i32> {
    let repo = match catalogue::lookup(model) {
        Some(entry) => entry.repo_id(),
        None => RepoId::parse(model)?,
    };
    let freed = hub.delete(&repo)?;
    println!(
        "removed {repo} from the hub cache ({} freed)",
        format_bytes(freed)
    );
    Ok(0)
}

/// The download's progress on standard error: one line redrawn in place on a terminal, a line
/// per file otherwise (logs stay readable).
pub(crate) struct ProgressLine {
    terminal: bool,
    meter: TransferMeter,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    pub(crate) fn new(terminal: bool) -> ProgressLine {
        ProgressLine {
            terminal,
            meter: TransferMeter::new(),
            last_draw: None,
            drawn: false,
        }
    }

    pub(crate) fn show(&mut self, event: &DownloadEvent) {
        let mut err = std::io::stderr().lock();
        match event {
            DownloadEvent::Plan {
                repo,
                commit,
                files,
                total_bytes,
                cached_bytes,
            } => {
                self.meter.update(*cached_bytes, Instant::now());
                let _ = writeln!(
                    err,
                    "{repo} at {}: {} files, {} ({} already cached)",
                    &commit[..commit.len().min(10)],
                    files.len(),
                    format_bytes(*total_bytes),
                    format_bytes(*cached_bytes)
                );
            }
            DownloadEvent::Bytes {
                file, done, total, ..
            } => {
                let now = Instant::now();
                self.meter.update(*done, now);
                let due = self
                    .last_draw
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200));
                if self.terminal && due {
                    self.last_draw = Some(now);
                    let percent = if *total > 0 {
                        *done as f64 * 100.0 / *total as f64
                    } else {
                        0.0
                    };
                    let speed = self
                        .meter
                        .bytes_per_second()
                        .map_or("-".to_string(), |r| format!("{}/s", format_bytes(r as u64)));
                    let eta = self
                        .meter
                        .eta(*total)
                        .map_or("-".to_string(), format_duration);
                    let _ = write!(
                        err,
                        "\r\x1b[2K{percent:5.1}%  {} / {}  {speed}  ETA {eta}  {file}",
                        format_bytes(*done),
                        format_bytes(*total)
                    );
                    self.drawn = true;
                }
            }
            DownloadEvent::Retry {
                file,
                attempt,
                resume_from,
                reason,
            } => {
                self.clear(&mut err);
                let _ = writeln!(
                    err,
                    "{file}: {reason}; retry {attempt}, resuming from {}",
                    format_bytes(*resume_from)
                );
            }
            DownloadEvent::FileDone {
                file,
                bytes,
                from_cache,
            } => {
                if !self.terminal {
                    let how = if *from_cache { "cached" } else { "downloaded" };
                    let _ = writeln!(err, "{how} {file} ({})", format_bytes(*bytes));
                }
            }
        }
    }

    fn clear(&mut self, err: &mut impl Write) {
        if self.drawn {
            let _ = write!(err, "\r\x1b[2K");
            self.drawn = false;
        }
    }

    pub(crate) fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        self.clear(&mut err);
    }
}
