//! Names on the hub: model ids (`owner/name`), revisions, and file paths inside a repository,
//! checked before they become URLs or paths in the cache.

use super::HubError;
use std::fmt;

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// A model repository id, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    owner: String,
    name: String,
}

impl RepoId {
    /// Parses `owner/name` with the hub's rules: ASCII letters, digits, `-`, `_`, `.`; each
    /// part starts and ends with a letter or digit; no `--` or `..` (the cache folder name
    /// joins the parts with `--`, so a `--` inside a part could not be read back).
    pub fn parse(text: &str) -> Result<RepoId, HubError> {
        let bad = || HubError::BadRepoId(text.to_string());
        let (owner, name) = text.split_once('/').ok_or_else(bad)?;
        if !valid_part(owner) || !valid_part(name) {
            return Err(bad());
        }
        Ok(RepoId {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The repository's folder in the hub cache, `models--{owner}--{name}`.
    pub fn folder_name(&self) -> String {
        format!("models--{}--{}", self.owner, self.name)
    }

    /// The inverse of [`RepoId::folder_name`]; `None` for other folders (datasets, spaces).
    pub fn from_folder_name(folder: &str) -> Option<RepoId> {
        let rest = folder.strip_prefix("models--")?;
        let (owner, name) = rest.split_once("--")?;
        RepoId::parse(&format!("{owner}/{name}")).ok()
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn valid_part(part: &str) -> bool {
    let ok_chars = part
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let edges_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !part.is_empty()
        && part.len() <= 96
        && ok_chars
        && edges_ok(part.chars().next())
        && edges_ok(part.chars().last())
        && !part.contains("--")
        && !part.contains("..")
}

/// Splits `owner/name@revision`; the revision is `None` when absent.
pub fn parse_spec(spec: &str) -> Result<(RepoId, Option<String>), HubError> {
    match spec.split_once('@') {
        Some((id, rev)) => {
            check_revision(rev)?;
            Ok((RepoId::parse(id)?, Some(rev.to_string())))
        }
        None => Ok((RepoId::parse(spec)?, None)),
    }
}

/// Whether `text` is a full commit hash (then the cache needs no `refs/` lookup).
pub fn is_commit_hash(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A revision becomes a path under `refs/` (branches like `refs/pr/1` nest), so it must be a
/// plain relative path with no `..`.
pub fn check_revision(revision: &str) -> Result<(), HubError> {
    let ok = !revision.is_empty()
        && revision.len() <= 256
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && revision
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRevision(revision.to_string()))
    }
}

/// A file name from the hub (its file list or a safetensors index) becomes a path inside the
/// snapshot folder: it must stay inside it.
pub fn check_repo_file(file: &str) -> Result<(), HubError> {
    let ok = !file.is_empty()
        && !file.starts_with('/')
        && !file.contains('\\')
        && !file.contains('\0')
        && file
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(HubError::BadFileName(file.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        let id = RepoId::parse("opencompass/CompassJudger-2-7B-Instruct").unwrap();
        assert_eq!(id.owner(), "opencompass");
        assert_eq!(id.name(), "CompassJudger-2-7B-Instruct");
        assert_eq!(
            id.folder_name(),
            "models--opencompass--CompassJudger-2-7B-Instruct"
        );
        assert_eq!(RepoId::from_folder_name(&id.folder_name()), Some(id));
        for bad in [
            "gpt2",
            "a/b/c",
            "/name",
            "owner/",
            "own--er/x",
            "o/x..y",
            "o/-x",
            "o/x.",
            "o/x y",
            "o/ü",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(RepoId::from_folder_name("datasets--a--b"), None);
    }

    #[test]
    fn specs_and_revisions() {
        let (id, rev) = parse_spec("Qwen/Qwen2.5-0.5B-Instruct@refs/pr/3").unwrap();
        assert_eq!(id.to_string(), "Qwen/Qwen2.5-0.5B-Instruct");
        assert_eq!(rev.as_deref(), Some("refs/pr/3"));
        assert_eq!(parse_spec("a/b").unwrap().1, None);
        assert!(parse_spec("a/b@").is_err());
        assert!(parse_spec("a/b@../x").is_err());
        assert!(parse_spec("a/b@/abs").is_err());
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
    }

    #[test]
    fn repo_files_stay_inside_the_snapshot() {
        assert!(check_repo_file("model-00001-of-00002.safetensors").is_ok());
        assert!(check_repo_file("onnx/model.safetensors").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a\\b",
            "./a",
        ] {
            assert!(check_repo_file(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
