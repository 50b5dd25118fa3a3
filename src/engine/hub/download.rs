//! Fetching one file into the cache: metadata from a `HEAD`, bytes into
//! `blobs/{etag}.incomplete` (resumed with a `Range` request after a dropped connection or an
//! earlier run), checked against the size and, for LFS files, the sha256 the hub names it by,
//! then moved into place and linked from the snapshot.

use super::cache::RepoCache;
use super::http::{read_some, HubClient};
use super::progress::DownloadEvent;
use super::repo::RepoId;
use super::HubError;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;
/// Progress events per file are at most this often (the last one always comes).
const EVENT_INTERVAL: Duration = Duration::from_millis(100);

/// Downloads files of one repository at one commit, keeping the running byte count for
/// progress events.
pub(crate) struct Fetcher<'a> {
    pub client: HubClient<'a>,
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
    pub fn fetch(&mut self, file: &str, size: Option<u64>) -> Result<PathBuf, HubError> {
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
            match self.try_fetch(file, size) {
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
                    std::thread::sleep(self.retry_delay * factor);
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

    fn try_fetch(&mut self, file: &str, size_hint: Option<u64>) -> Result<PathBuf, HubError> {
        let meta = self.client.file_meta(self.repo, self.commit, file)?;
        if meta.commit != self.commit {
            tracing::warn!(
                "{file}: the hub served commit {} for {}",
                meta.commit,
                self.commit
            );
        }
        let size = meta.size.or(size_hint);
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
                self.download_blob(file, &meta.etag, &meta.location, size, &blob)?;
            }
            drop(lock);
        } else {
            self.done += size.unwrap_or(0);
        }
        let pointer = self.cache.link(self.commit, file, &meta.etag)?;
        (self.progress)(DownloadEvent::FileDone {
            file: file.to_string(),
            bytes: size.unwrap_or(0),
            from_cache: false,
        });
        Ok(pointer)
    }

    fn download_blob(
        &mut self,
        file: &str,
        etag: &str,
        url: &str,
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
        if size.is_some_and(|s| have > s) {
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
            if have > 0 {
                tracing::info!("{file}: resuming from byte {have}");
            }
            let body = self.client.open(self.repo, self.commit, file, url, have)?;
            let mut reader = body.reader;
            match body.status {
                200 if have > 0 => {
                    // The server ignored the range: start over rather than append a second copy.
                    self.done -= have;
                    have = restart(&mut out).map_err(|e| io("truncate", e))?;
                    hasher = Sha256::new();
                }
                206 if body.start != have => {
                    return Err(HubError::BadResponse {
                        url: body.url,
                        detail: format!("asked for bytes from {have}, got from {}", body.start),
                    });
                }
                416 => {
                    // Our partial file does not fit the file the hub has now: start afresh.
                    self.done -= have;
                    restart(&mut out).map_err(|e| io("truncate", e))?;
                    return Err(HubError::Interrupted {
                        url: body.url,
                        received: 0,
                        expected: size.unwrap_or(0),
                        detail: "the hub refused to resume; starting again".into(),
                    });
                }
                _ => {}
            }
            let expected = size.or(body.length.map(|l| l + have));
            let mut buf = vec![0u8; CHUNK];
            let mut last_event = Instant::now();
            loop {
                self.check_cancel(file)?;
                let n = match read_some(&mut reader, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        out.flush().map_err(|e| io("write", e))?;
                        return Err(HubError::Interrupted {
                            url: body.url,
                            received: have,
                            expected: expected.unwrap_or(0),
                            detail: e.to_string(),
                        });
                    }
                };
                out.write_all(&buf[..n]).map_err(|e| io("write", e))?;
                if expected_sha.is_some() {
                    hasher.update(&buf[..n]);
                }
                have += n as u64;
                self.done += n as u64;
                self.transferred += n as u64;
                if last_event.elapsed() >= EVENT_INTERVAL {
                    last_event = Instant::now();
                    self.emit_bytes(file, have, expected);
                }
            }
            if let Some(expected) = expected.filter(|e| have < *e) {
                return Err(HubError::Interrupted {
                    url: body.url,
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

fn restart(out: &mut File) -> std::io::Result<u64> {
    out.set_len(0)?;
    out.seek(SeekFrom::Start(0))?;
    Ok(0)
}

fn hash_prefix(file: &mut File, len: u64, hasher: &mut Sha256) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    let mut limited = (&mut *file).take(len);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_some(&mut limited, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

fn remove_quietly(path: &std::path::Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!("cannot delete the bad download {}: {e}", path.display());
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
