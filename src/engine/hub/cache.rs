//! The hub cache on disk, laid out exactly as Python's `huggingface_hub` lays it out so that
//! both programs use each other's downloads:
//!
//! ```text
//! {cache}/models--{owner}--{name}/
//!     blobs/{etag}                    file contents, named by sha256 (LFS) or git blob id
//!     blobs/{etag}.incomplete         a download in progress (resumed from its length)
//!     refs/{revision}                 the commit hash a branch or tag pointed to
//!     snapshots/{commit}/{file}       relative symlink to ../../blobs/{etag} (made by hf-hub)
//!     .no_exist/{commit}/{file}       empty: the repository has no such file
//! {cache}/.locks/models--{owner}--{name}/{etag}.lock   held while a blob is written
//! ```

use super::repo::RepoId;
use super::HubError;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One repository's folder in the cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    pub root: PathBuf,
    locks: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &RepoId) -> RepoCache {
        let folder = repo.folder_name();
        RepoCache {
            root: cache_dir.join(&folder),
            locks: cache_dir.join(".locks").join(folder),
        }
    }

    pub fn blob_path(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    pub fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    pub fn pointer_path(&self, commit: &str, file: &str) -> PathBuf {
        self.snapshot_dir(commit).join(file)
    }

    /// The commit a branch or tag pointed to when it was last downloaded.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        let text = fs::read_to_string(self.root.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        super::repo::is_commit_hash(commit).then(|| commit.to_string())
    }

    /// Records the commit a revision points to (no trailing newline, as Python writes it);
    /// written through a temporary file so a reader never sees half a hash.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit || self.read_ref(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.root.join("refs").join(revision);
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| HubError::io("create", dir, e))?;
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&tmp, commit).map_err(|e| HubError::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| HubError::io("write", &path, e))
    }

    /// Notes that the repository has no such file at that commit (Python's `.no_exist`), so an
    /// offline run knows it is not missing.
    pub fn mark_absent(&self, commit: &str, file: &str) {
        let path = self.root.join(".no_exist").join(commit).join(file);
        let written = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::OpenOptions::new().create(true).append(true).open(&path));
        if let Err(e) = written {
            tracing::warn!(
                "cannot note that {file} is absent in {}: {e}",
                path.display()
            );
        }
    }

    pub fn known_absent(&self, commit: &str, file: &str) -> bool {
        self.root
            .join(".no_exist")
            .join(commit)
            .join(file)
            .is_file()
    }

    /// Bytes in `blobs/`: complete files and partial downloads.
    fn blob_sizes(&self) -> (u64, u64) {
        let mut complete = 0;
        let mut partial = 0;
        if let Ok(entries) = fs::read_dir(self.root.join("blobs")) {
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                if entry.file_name().to_string_lossy().ends_with(".incomplete") {
                    partial += meta.len();
                } else {
                    complete += meta.len();
                }
            }
        }
        (complete, partial)
    }
}

/// A model repository found in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedModel {
    pub repo: RepoId,
    pub path: PathBuf,
    /// Bytes of complete files (shared by all its snapshots).
    pub size_on_disk: u64,
    /// Bytes of interrupted downloads that a new download would resume.
    pub partial_bytes: u64,
    /// `(revision, commit)` pairs, e.g. `("main", "a1b2…")`.
    pub refs: Vec<(String, String)>,
    /// Commits with a snapshot folder.
    pub snapshots: Vec<String>,
    pub modified: Option<SystemTime>,
}

/// Every model repository in the hub cache, sorted by id. A missing cache is an empty list.
pub fn cached_models(cache_dir: &Path) -> Result<Vec<CachedModel>, HubError> {
    let entries = match fs::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HubError::io("read", cache_dir, e)),
    };
    let mut models = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(repo) = RepoId::from_folder_name(&name.to_string_lossy()) else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        let cache = RepoCache::new(cache_dir, &repo);
        let (size_on_disk, partial_bytes) = cache.blob_sizes();
        let mut refs = Vec::new();
        collect_refs(&cache.root.join("refs"), "", &mut refs);
        refs.sort();
        let mut snapshots: Vec<String> = fs::read_dir(cache.root.join("snapshots"))
            .map(|it| {
                it.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        snapshots.sort();
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        models.push(CachedModel {
            path: cache.root.clone(),
            repo,
            size_on_disk,
            partial_bytes,
            refs,
            snapshots,
            modified,
        });
    }
    models.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(models)
}

fn collect_refs(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if path.is_dir() {
            collect_refs(&path, &format!("{name}/"), out);
        } else if let Ok(text) = fs::read_to_string(&path) {
            if super::repo::is_commit_hash(text.trim()) {
                out.push((name, text.trim().to_string()));
            }
        }
    }
}

/// Removes a model repository (all its revisions) from the cache; returns the bytes freed.
pub fn delete(cache_dir: &Path, repo: &RepoId) -> Result<u64, HubError> {
    let cache = RepoCache::new(cache_dir, repo);
    if !cache.root.is_dir() {
        return Err(HubError::NotInCache {
            repo: repo.to_string(),
            cache: cache_dir.to_path_buf(),
        });
    }
    let (complete, partial) = cache.blob_sizes();
    fs::remove_dir_all(&cache.root).map_err(|e| HubError::io("delete", &cache.root, e))?;
    match fs::remove_dir_all(&cache.locks) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "cannot delete the lock folder {}: {e}",
                cache.locks.display()
            )
        }
        _ => {}
    }
    Ok(complete + partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_refs_links_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoId::parse("org/tiny").unwrap();
        let cache = RepoCache::new(dir.path(), &repo);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(cache.read_ref("main"), None);
        cache.write_ref("main", commit).unwrap();
        cache.write_ref("refs/pr/1", commit).unwrap();
        assert_eq!(
            fs::read_to_string(cache.root.join("refs/main")).unwrap(),
            commit
        );
        assert_eq!(cache.read_ref("refs/pr/1").as_deref(), Some(commit));

        fs::create_dir_all(cache.root.join("blobs")).unwrap();
        fs::write(cache.blob_path("abc"), b"hello").unwrap();
        fs::write(cache.incomplete_path("def"), b"par").unwrap();
        let pointer = cache.pointer_path(commit, "config.json");
        fs::create_dir_all(pointer.parent().unwrap()).unwrap();
        fs::write(&pointer, b"hello").unwrap();

        cache.mark_absent(commit, "generation_config.json");
        assert!(cache.known_absent(commit, "generation_config.json"));
        assert!(!cache.known_absent(commit, "config.json"));

        fs::create_dir_all(dir.path().join("datasets--a--b")).unwrap();
        let models = cached_models(dir.path()).unwrap();
        assert_eq!(models.len(), 1);
        let m = &models[0];
        assert_eq!(m.repo, repo);
        assert_eq!((m.size_on_disk, m.partial_bytes), (5, 3));
        assert_eq!(
            m.refs,
            vec![
                ("main".to_string(), commit.to_string()),
                ("refs/pr/1".to_string(), commit.to_string())
            ]
        );
        assert_eq!(m.snapshots, vec![commit.to_string()]);

        fs::create_dir_all(cache.lock_path("abc").parent().unwrap()).unwrap();
        assert_eq!(delete(dir.path(), &repo).unwrap(), 8);
        assert!(!cache.root.exists());
        assert!(!cache.lock_path("abc").parent().unwrap().exists());
        assert!(matches!(
            delete(dir.path(), &repo),
            Err(HubError::NotInCache { .. })
        ));
        assert!(cached_models(&dir.path().join("none")).unwrap().is_empty());
    }
}
