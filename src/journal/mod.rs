//! The journal: an append-only JSON Lines record, beside the dataset, of everything produced
//! in Arbiter (human decisions, undos, new judgments). The input dataset is never modified.
//!
//! Durability contract: `record_decision` returns `Ok` only after the line is written and
//! `fsync`ed (and, for a journal it just created, after the folder entry is `fsync`ed too), so
//! a caller may show "saved" exactly then. Bytes already in the file are never rewritten or
//! truncated: after a torn last line the next append writes a newline first, leaving the
//! fragment as its own unreadable line, which replay reports and skips.
//!
//! Teams: each annotator's decisions go to a journal of their own in a folder beside the
//! dataset (`<dataset>.arbiter/<annotator>.journal.jsonl`), so annotators on a shared folder
//! never append to one file; `Journal::open_exclusive` takes an advisory lock on it so that a
//! second process deciding as the same annotator is refused with a clear message instead of
//! interleaving lines. The dataset's single journal (`<dataset>.arbiter-journal.jsonl`) keeps
//! the judgments produced in Arbiter and the decisions of journals written before teams.

mod record;
mod replay;

pub use record::{Decision, Header, JudgmentRecord, Record, Undo, VERSION};
pub use replay::{apply, Replay, ReplayWarning, TornTail};

use crate::dataset::{Dataset, Judgment, Provenance};
use crate::verdict::Outcome;
use replay::Decisions;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// The suffix appended to the dataset's file name to name its journal.
pub const SUFFIX: &str = ".arbiter-journal.jsonl";

/// Everything that can go wrong with a journal; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {action} the journal {path}: {source} (check that the folder exists and is writable)")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal {journal} belongs to another dataset: it was written for {journal_dataset:?} (fingerprint {found}), but {dataset} has fingerprint {expected}; move the journal aside, or choose another journal path, to start a new one")]
    Foreign {
        journal: PathBuf,
        journal_dataset: String,
        dataset: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path} has records but no header line, so it is not an Arbiter journal or its start is damaged; move it aside to start a new journal")]
    MissingHeader { path: PathBuf },
    #[error("the journal {path} is format version {found}, newer than this Arbiter reads ({supported}); upgrade Arbiter to open it")]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("item {item:?} is not in {dataset}; check the item id")]
    UnknownItem { item: String, dataset: PathBuf },
    #[error("item {item:?} has no decision to undo")]
    NothingToUndo { item: String },
    #[error("the annotator name {name:?} cannot be used: {reason} (it names a file: use letters, digits, '.', '_' or '-')")]
    BadAnnotator { name: String, reason: &'static str },
    #[error("another Arbiter process is recording decisions in {path} (the same annotator on this dataset); close it, or decide under another annotator name")]
    Locked { path: PathBuf },
    #[error("cannot encode a journal record for item {item:?}: {source}")]
    Encode {
        item: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The default journal path of a dataset: `<file name>.arbiter-journal.jsonl` in the same
/// folder (`demo.jsonl` -> `demo.jsonl.arbiter-journal.jsonl`).
pub fn default_path(dataset: &Path) -> PathBuf {
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".to_string());
    dataset.with_file_name(format!("{name}{SUFFIX}"))
}

/// The suffix of an annotator's journal inside the team folder.
pub const ANNOTATOR_SUFFIX: &str = ".journal.jsonl";

/// The folder beside the dataset that holds its team's files (each annotator's journal, the
/// assignment of the disputes): `demo.jsonl` -> `demo.jsonl.arbiter/`.
pub fn team_dir(dataset: &Path) -> PathBuf {
    let name = dataset
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".to_string());
    dataset.with_file_name(format!("{name}.arbiter"))
}

/// The journal of one annotator's decisions on `dataset`.
pub fn annotator_path(dataset: &Path, annotator: &str) -> PathBuf {
    team_dir(dataset).join(format!("{annotator}{ANNOTATOR_SUFFIX}"))
}

/// Every annotator journal of `dataset`, as (annotator, path), sorted by name; empty when the
/// team folder does not exist.
pub fn annotator_journals(dataset: &Path) -> Result<Vec<(String, PathBuf)>, JournalError> {
    let dir = team_dir(dataset);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Io {
                action: "list",
                path: dir,
                source,
            })
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| JournalError::Io {
            action: "list",
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(annotator) = name.strip_suffix(ANNOTATOR_SUFFIX) {
            if check_annotator(annotator).is_ok() {
                found.push((annotator.to_string(), entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The longest annotator name accepted (it becomes a file name).
const MAX_ANNOTATOR: usize = 64;

/// Checks that `name` can name an annotator and their journal file on every platform: 1 to 64
/// letters, digits, `.`, `_` or `-`, not starting with `.` or `-`. Returns it trimmed.
pub fn check_annotator(name: &str) -> Result<String, JournalError> {
    let trimmed = name.trim();
    let bad = |reason: &'static str| JournalError::BadAnnotator {
        name: name.to_string(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.chars().count() > MAX_ANNOTATOR {
        return Err(bad("it is longer than 64 characters"));
    }
    if trimmed.starts_with('.') || trimmed.starts_with('-') {
        return Err(bad("it starts with '.' or '-'"));
    }
    if !trimmed
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
    }
    // Windows refuses these as file names whatever the extension, and a team folder may be
    // shared with a Windows machine.
    let stem = trimmed
        .split('.')
        .next()
        .unwrap_or(trimmed)
        .to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err(bad("it is a device name on Windows"));
    }
    Ok(trimmed.to_string())
}

/// The annotator named by the environment: `$ARBITER_ANNOTATOR`, else `$USER`; `None` when
/// neither is set, so that callers ask the person instead of recording an anonymous decision.
pub fn env_annotator() -> Option<String> {
    ["ARBITER_ANNOTATOR", "USER"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

/// Who is deciding when nobody said: `env_annotator()`, else `unknown`. Only for journals
/// opened directly; a review refuses to record a decision without a named annotator.
pub fn default_annotator() -> String {
    env_annotator().unwrap_or_else(|| "unknown".to_string())
}

/// Reads a journal without creating or changing anything (for reports and export).
pub fn read(path: &Path, dataset: &Dataset) -> Result<Replay, JournalError> {
    let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let replay = Replay::from_bytes(&bytes, &|id| dataset.get(id).is_some());
    check_header(&replay, path, dataset)?;
    Ok(replay)
}

fn check_header(replay: &Replay, path: &Path, dataset: &Dataset) -> Result<(), JournalError> {
    match &replay.header {
        None if replay.records_before_header > 0 => Err(JournalError::MissingHeader {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
        Some(h) if h.version > VERSION => Err(JournalError::NewerVersion {
            path: path.to_path_buf(),
            found: h.version,
            supported: VERSION,
        }),
        Some(h) if h.fingerprint != dataset.fingerprint() => Err(JournalError::Foreign {
            journal: path.to_path_buf(),
            journal_dataset: h.dataset.clone(),
            dataset: dataset.path.clone(),
            expected: dataset.fingerprint(),
            found: h.fingerprint.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// An open journal, ready to append.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    dataset: PathBuf,
    items: HashSet<String>,
    annotator: String,
    /// Decisions recorded from now on are an adjudicator's.
    adjudicator: bool,
    last_seq: u64,
    /// The file does not end with a newline (a torn tail, or a failed write).
    needs_newline: bool,
    decisions: Decisions,
}

impl Journal {
    /// Opens the dataset's journal at its default path, creating it (with a header) if needed.
    pub fn open(dataset: &Dataset) -> Result<(Journal, Replay), JournalError> {
        Journal::open_at(dataset, &default_path(&dataset.path))
    }

    /// Opens the journal at `path`: creates it with a header, or replays it after checking that
    /// it was written for this dataset.
    pub fn open_at(dataset: &Dataset, path: &Path) -> Result<(Journal, Replay), JournalError> {
        Journal::open_inner(dataset, path, false)
    }

    /// Like `open_at`, but creates the folder if needed and holds an advisory lock on the file
    /// for as long as the journal is open: a second process opening it this way gets
    /// `JournalError::Locked`. For an annotator's own journal, which only they append to.
    pub fn open_exclusive(
        dataset: &Dataset,
        path: &Path,
    ) -> Result<(Journal, Replay), JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
                    action: "create the folder of",
                    path: path.to_path_buf(),
                    source,
                })?;
                // The new folder's own entry must survive a power cut too.
                sync_dir(dir).map_err(|source| JournalError::Io {
                    action: "sync the folder of",
                    path: path.to_path_buf(),
                    source,
                })?;
            }
        }
        Journal::open_inner(dataset, path, true)
    }

    fn open_inner(
        dataset: &Dataset,
        path: &Path,
        exclusive: bool,
    ) -> Result<(Journal, Replay), JournalError> {
        let io = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                action,
                path,
                source,
            }
        };
        let (mut file, created) = match OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
        {
            Ok(f) => (f, true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .open(path)
                    .map_err(io("open"))?,
                false,
            ),
            Err(e) => return Err(io("create")(e)),
        };
        if exclusive {
            // Locked before reading, so that what is replayed is everything: nobody else can
            // be appending to this file while we hold it.
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(JournalError::Locked {
                        path: path.to_path_buf(),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io("lock")(e)),
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let mut replay = Replay::from_bytes(&bytes, &|id| dataset.get(id).is_some());
        check_header(&replay, path, dataset)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            dataset: dataset.path.clone(),
            items: dataset.items.iter().map(|i| i.id.clone()).collect(),
            annotator: default_annotator(),
            adjudicator: false,
            last_seq: replay.last_seq,
            needs_newline: replay.needs_newline,
            decisions: replay.decisions.clone(),
        };
        if replay.header.is_none() {
            let header = Header {
                version: VERSION,
                dataset: dataset
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| dataset.path.display().to_string()),
                fingerprint: dataset.fingerprint(),
                created: OffsetDateTime::now_utc(),
            };
            journal.append(&Record::Header(header.clone()), "")?;
            replay.header = Some(header);
        }
        if created {
            sync_dir(path).map_err(io("sync the folder of"))?;
            tracing::info!(path = %path.display(), "journal created");
        }
        Ok((journal, replay))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn annotator(&self) -> &str {
        &self.annotator
    }

    /// Overrides the annotator recorded with each decision (default: `default_annotator()`).
    pub fn set_annotator(&mut self, annotator: impl Into<String>) {
        self.annotator = annotator.into();
    }

    /// Marks the decisions recorded from now on as an adjudicator's (they settle escalations).
    pub fn set_adjudicator(&mut self, adjudicator: bool) {
        self.adjudicator = adjudicator;
    }

    /// The current decision on `item`, including those made since opening.
    pub fn decision(&self, item: &str) -> Option<&Decision> {
        self.decisions.current(item)
    }

    /// Records a person's verdict on `item`. Returns only once the line is durable on disk.
    pub fn record_decision(
        &mut self,
        item: &str,
        verdict: Outcome,
        note: Option<&str>,
    ) -> Result<Decision, JournalError> {
        self.check_item(item)?;
        let decision = Decision {
            seq: self.last_seq + 1,
            item: item.to_string(),
            verdict,
            note: note.map(str::to_string).filter(|n| !n.trim().is_empty()),
            annotator: self.annotator.clone(),
            adjudicator: self.adjudicator,
            time: OffsetDateTime::now_utc(),
        };
        self.append(&Record::Decision(decision.clone()), item)?;
        self.decisions.push(decision.clone());
        Ok(decision)
    }

    /// Withdraws the latest live decision on `item`; the one before it, if any, is current again.
    pub fn undo(&mut self, item: &str) -> Result<Undo, JournalError> {
        let undoes = self.decisions.current(item).map(|d| d.seq).ok_or_else(|| {
            JournalError::NothingToUndo {
                item: item.to_string(),
            }
        })?;
        let undo = Undo {
            seq: self.last_seq + 1,
            item: item.to_string(),
            undoes,
            annotator: self.annotator.clone(),
            time: OffsetDateTime::now_utc(),
        };
        self.append(&Record::Undo(undo.clone()), item)?;
        self.decisions.withdraw(item, undoes);
        Ok(undo)
    }

    /// Records a judgment produced in Arbiter, with free-form run metadata (model, template,
    /// sampling, timings, token usage). Durable on return, like a decision.
    pub fn record_judgment(
        &mut self,
        item: &str,
        mut judgment: Judgment,
        run: serde_json::Map<String, serde_json::Value>,
    ) -> Result<JudgmentRecord, JournalError> {
        self.check_item(item)?;
        judgment.provenance = Provenance::Journal;
        let record = JudgmentRecord {
            seq: self.last_seq + 1,
            item: item.to_string(),
            judgment,
            run,
        };
        self.append(&Record::Judgment(record.clone()), item)?;
        Ok(record)
    }

    fn check_item(&self, item: &str) -> Result<(), JournalError> {
        if self.items.contains(item) {
            Ok(())
        } else {
            Err(JournalError::UnknownItem {
                item: item.to_string(),
                dataset: self.dataset.clone(),
            })
        }
    }

    /// Writes one record as one line, in one `write`, and `fsync`s it.
    fn append(&mut self, record: &Record, item: &str) -> Result<(), JournalError> {
        let mut line = Vec::with_capacity(256);
        if self.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, record).map_err(|source| JournalError::Encode {
            item: item.to_string(),
            source,
        })?;
        line.push(b'\n');
        // A sequence number is spent even when the write fails: the record may have reached
        // the disk anyway, and reusing its number would make an undo ambiguous.
        if let Some(seq) = record.seq() {
            self.last_seq = seq;
        }
        // Until the write is known complete, assume a fragment may be on disk.
        self.needs_newline = true;
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io {
                action,
                path,
                source,
            }
        };
        self.file
            .write_all(&line)
            .map_err(io("append to", &self.path))?;
        self.file
            .sync_data()
            .map_err(io("flush to disk", &self.path))?;
        self.needs_newline = false;
        Ok(())
    }
}

/// Makes a newly created file's directory entry durable, so the journal itself survives a
/// power cut and not just its contents.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals its metadata anyway.
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
