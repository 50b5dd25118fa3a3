//! Fetching one file into the cache. The bytes come through `hf-hub`'s byte stream (its HTTP
//! client, token and redirects) into `blobs/{etag}.incomplete`, resumed with a range after a
//! dropped connection or an earlier run, checked against the size and, for LFS files, the
//! sha256 the hub names it by, then moved into place; `hf-hub` then links it from the
//! snapshot. Xet-backed files are transferred by `hf-hub` whole.
//!
//! `hf-hub` 1.0's own `download_file` starts every `.incomplete` afresh and checks no hash,
//! which is why the blob itself is written here.

use super::cache::RepoCache;
use super::client::{error_chain, HubClient};
use super::progress::DownloadEvent;
use super::repo::RepoId;
use super::HubError;
use futures::StreamExt;
use hf_hub::progress::{ProgressEvent, ProgressHandler};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Progress events per file are at most this often (the last one always comes).
const EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// Downloads files of one repository at one commit, keeping the running byte count for
/// progress events.
pub(crate) struct Fetcher<'a> {
    pub client: &'a HubClient,
    pub cache: RepoCache,
    pub repo: &'a RepoId,
    pub commit: &'a str,
    pub retries: u32,
    pub retry_delay: Duration,
    pub cancel: Option<&'a AtomicBool>,
    pub progress: &'a mut dyn FnMut(DownloadEvent),
    /// Bytes of the plan on disk, and the plan's total.
    pub done: u64,
    pub total: u64,
    /// Bytes transferred over the network by this run.
    pub transferred: u64,
}

impl Fetcher<'_> {
    /// Makes `snapshots/{commit}/{file}` present, downloading it unless it already is; `size` is
    /// what the hub's file list said, for progress before the `HEAD` answers.
    pub async fn fetch(&mut self, file: &str, size: Option<u64>) -> Result<PathBuf, HubError> {
        let pointer = self.cache.pointer_path(self.commit, file);
        // `exists` follows the link: a pointer whose blob was deleted counts as missing.
        if pointer.exists() {
            (self.progress)(DownloadEvent::FileDone {
                file: file.to_string(),
                bytes: size.unwrap_or(0),
                from_cache: true,
            });
            return Ok(pointer);
        }
        let done_before = self.done;
        let mut attempt = 0;
        loop {
            self.check_cancel(file)?;
            match self.try_fetch(file, size).await {
                Ok(path) => return Ok(path),
                Err(e) if e.is_transient() && attempt < self.retries => {
                    attempt += 1;
                    let resume_from = self.done.saturating_sub(done_before);
                    tracing::warn!(
                        "{file}: {e}; trying again ({attempt} of {}) from byte {resume_from}",
                        self.retries
                    );
                    (self.progress)(DownloadEvent::Retry {
                        file: file.to_string(),
                        attempt,
                        resume_from,
                        reason: e.to_string(),
                    });
                    let factor = 1u32 << (attempt - 1).min(6);
                    tokio::time::sleep(self.retry_delay * factor).await;
                }
                Err(e) if e.is_transient() && attempt > 0 => {
                    return Err(HubError::GaveUp {
                        file: file.to_string(),
                        attempts: attempt + 1,
                        last: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
            // The next attempt recounts the bytes it finds on disk.
            self.done = done_before;
        }
    }

    fn check_cancel(&self, file: &str) -> Result<(), HubError> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(HubError::Cancelled {
                file: file.to_string(),
            }),
            _ => Ok(()),
        }
    }

    async fn try_fetch(&mut self, file: &str, size_hint: Option<u64>) -> Result<PathBuf, HubError> {
        let meta = self.client.file_meta(self.repo, self.commit, file).await?;
        if meta.commit != self.commit {
            tracing::warn!(
                "{file}: the hub served commit {} for {}",
                meta.commit,
                self.commit
            );
        }
        let size = meta.size.or(size_hint);
        if meta.xet_hash.is_some() {
            return self.fetch_xet(file, size).await;
        }
        let blob = self.cache.blob_path(&meta.etag);
        if !blob.is_file() {
            let lock_path = self.cache.lock_path(&meta.etag);
            if let Some(dir) = lock_path.parent() {
                fs::create_dir_all(dir).map_err(|e| HubError::io("create", dir, e))?;
            }
            // The same lock file as huggingface_hub, so a Python download of the same blob and
            // this one never write the same file at once.
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| HubError::io("open the lock file", &lock_path, e))?;
            lock.lock()
                .map_err(|e| HubError::io("lock", &lock_path, e))?;
            if !blob.is_file() {
                self.download_blob(file, &meta.etag, size, &blob).await?;
            }
            drop(lock);
        } else {
            self.done += size.unwrap_or(0);
        }
        // The blob is in place: hf-hub finds it and links the snapshot to it.
        let pointer = self
            .client
            .repo
            .download_file()
            .filename(file)
            .revision(self.commit)
            .send()
            .await
            .map_err(|e| self.client.error(e, self.repo, self.commit, Some(file)))?;
        (self.progress)(DownloadEvent::FileDone {
            file: file.to_string(),
            bytes: size.unwrap_or(0),
            from_cache: false,
        });
        Ok(pointer)
    }

    /// A Xet-backed file: `hf-hub` reconstructs it from chunks into the cache; its progress
    /// events are read every 100 ms into ours.
    async fn fetch_xet(&mut self, file: &str, size: Option<u64>) -> Result<PathBuf, HubError> {
        let seen = Arc::new(ByteCount::default());
        let download = self
            .client
            .repo
            .download_file()
            .filename(file)
            .revision(self.commit)
            .progress(hf_hub::progress::Progress::from(seen.clone()))
            .send();
        tokio::pin!(download);
        let mut tick = tokio::time::interval(EVENT_INTERVAL);
        let start = self.done;
        let result = loop {
            tokio::select! {
                result = &mut download => break result,
                _ = tick.tick() => {
                    self.check_cancel(file)?;
                    let have = seen.0.load(Ordering::Relaxed);
                    self.done = start + have;
                    self.emit_bytes(file, have, size);
                }
            }
        };
        let pointer =
            result.map_err(|e| self.client.error(e, self.repo, self.commit, Some(file)))?;
        let bytes = size.unwrap_or_else(|| seen.0.load(Ordering::Relaxed));
        self.done = start + bytes;
        self.transferred += bytes;
        self.emit_bytes(file, bytes, size);
        (self.progress)(DownloadEvent::FileDone {
            file: file.to_string(),
            bytes,
            from_cache: false,
        });
        Ok(pointer)
    }

    async fn download_blob(
        &mut self,
        file: &str,
        etag: &str,
        size: Option<u64>,
        blob: &std::path::Path,
    ) -> Result<(), HubError> {
        let dir = blob.parent().unwrap_or(&self.cache.root);
        fs::create_dir_all(dir).map_err(|e| HubError::io("create", dir, e))?;
        let part = self.cache.incomplete_path(etag);
        let mut out = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&part)
            .map_err(|e| HubError::io("open", &part, e))?;
        let io = |action, e| HubError::io(action, &part, e);
        let mut have = out.metadata().map_err(|e| io("read", e))?.len();
        if size.is_none_or(|s| have > s) {
            have = restart(&mut out).map_err(|e| io("truncate", e))?;
        }
        // LFS files are named by their sha256: check it. Other files only by their size.
        let expected_sha = (etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| etag.to_ascii_lowercase());
        let mut hasher = Sha256::new();
        if have > 0 && expected_sha.is_some() {
            hash_prefix(&mut out, have, &mut hasher).map_err(|e| io("read", e))?;
        }
        out.seek(SeekFrom::Start(have)).map_err(|e| io("seek", e))?;
        self.done += have;

        if size != Some(have) || have == 0 {
            let range = match size {
                Some(total) if have > 0 => {
                    tracing::info!("{file}: resuming from byte {have}");
                    Some(have..total)
                }
                _ => None,
            };
            let asked_from = have;
            let (length, mut stream) = self
                .client
                .repo
                .download_file_stream()
                .filename(file)
                .revision(self.commit)
                .maybe_range(range)
                .send()
                .await
                .map_err(|e| self.client.error(e, self.repo, self.commit, Some(file)))?;
            if asked_from > 0 && length.is_some() && length == size {
                // The server ignored the range: start over rather than append a second copy.
                self.done -= have;
                have = restart(&mut out).map_err(|e| io("truncate", e))?;
                hasher = Sha256::new();
            }
            let expected = size.or(length.map(|l| l + have));
            let url = self.client.hf.endpoint().to_string();
            let mut last_event = Instant::now();
            while let Some(chunk) = stream.next().await {
                self.check_cancel(file)?;
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        out.flush().map_err(|e| io("write", e))?;
                        return Err(HubError::Interrupted {
                            url: format!("{url}/{}/resolve/{}/{file}", self.repo, self.commit),
                            received: have,
                            expected: expected.unwrap_or(0),
                            detail: error_chain(&e),
                        });
                    }
                };
                out.write_all(&chunk).map_err(|e| io("write", e))?;
                if expected_sha.is_some() {
                    hasher.update(&chunk);
                }
                have += chunk.len() as u64;
                self.done += chunk.len() as u64;
                self.transferred += chunk.len() as u64;
                if last_event.elapsed() >= EVENT_INTERVAL {
                    last_event = Instant::now();
                    self.emit_bytes(file, have, expected);
                }
            }
            if let Some(expected) = expected.filter(|e| have < *e) {
                out.flush().map_err(|e| io("write", e))?;
                return Err(HubError::Interrupted {
                    url: format!("{url}/{}/resolve/{}/{file}", self.repo, self.commit),
                    received: have,
                    expected,
                    detail: "the connection closed early".into(),
                });
            }
        }
        self.emit_bytes(file, have, size);
        out.sync_all().map_err(|e| io("write", e))?;
        drop(out);

        if let Some(expected) = size.filter(|s| *s != have) {
            remove_quietly(&part);
            return Err(HubError::SizeMismatch {
                repo: self.repo.to_string(),
                file: file.to_string(),
                expected,
                actual: have,
            });
        }
        if let Some(expected) = expected_sha {
            let actual = hex(&hasher.finalize());
            if actual != expected {
                remove_quietly(&part);
                return Err(HubError::Corrupt {
                    repo: self.repo.to_string(),
                    file: file.to_string(),
                    expected,
                    actual,
                });
            }
        }
        fs::rename(&part, blob).map_err(|e| HubError::io("move into place", blob, e))
    }

    fn emit_bytes(&mut self, file: &str, file_done: u64, file_total: Option<u64>) {
        (self.progress)(DownloadEvent::Bytes {
            file: file.to_string(),
            file_done,
            file_total,
            done: self.done,
            total: self.total.max(self.done),
        });
    }
}

/// Counts the bytes `hf-hub` reports for one file; read by the download loop.
#[derive(Default)]
struct ByteCount(AtomicU64);

impl ProgressHandler for ByteCount {
    fn on_progress(&self, event: &ProgressEvent) {
        use hf_hub::progress::DownloadEvent as Hf;
        match event {
            ProgressEvent::Download(Hf::Progress { files }) => {
                if let Some(done) = files.iter().map(|f| f.bytes_completed).max() {
                    self.0.fetch_max(done, Ordering::Relaxed);
                }
            }
            ProgressEvent::Download(Hf::AggregateProgress {
                bytes_completed, ..
            }) => {
                self.0.fetch_max(*bytes_completed, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

fn restart(out: &mut File) -> std::io::Result<u64> {
    out.set_len(0)?;
    out.seek(SeekFrom::Start(0))?;
    Ok(0)
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut limited = (&mut *file).take(len);
    std::io::copy(&mut limited, hasher)?;
    Ok(())
}

fn remove_quietly(path: &std::path::Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!("cannot delete the bad download {}: {e}", path.display());
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
