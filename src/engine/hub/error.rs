//! What can go wrong between a model id and a model folder, each worded so the user knows what
//! to do next. No variant ever holds the token.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "`{0}` is not a hub model id: expected `owner/name` (letters, digits, `-`, `_`, `.`), \
         e.g. `Qwen/Qwen2.5-0.5B-Instruct`"
    )]
    BadRepoId(String),

    #[error("`{0}` is not a usable revision: give a branch, tag or commit hash such as `main`")]
    BadRevision(String),

    #[error(
        "the hub listed a file named {0:?}, which would land outside the model folder; refusing it"
    )]
    BadFileName(String),

    #[error(
        "{repo} was not found on {endpoint} (HTTP {status}): check the spelling; if it is private, \
         set HF_TOKEN or log in with `hf auth login`"
    )]
    RepoNotFound {
        repo: String,
        endpoint: String,
        status: u16,
    },

    #[error("{repo} has no revision `{revision}`: use an existing branch, tag or commit hash")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{repo} has no file {file} at {revision} (HTTP 404)")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },

    #[error(
        "{repo} is gated: accept its conditions at {url} and set HF_TOKEN to a token of that account"
    )]
    Gated { repo: String, url: String },

    #[error("access to {url} was refused (HTTP {status}): check HF_TOKEN or log in with `hf auth login`")]
    Unauthorized { url: String, status: u16 },

    #[error("the hub answered HTTP {status} for {url}")]
    Status { url: String, status: u16 },

    #[error(
        "could not reach {url}: {detail}; check the network and HF_ENDPOINT, or set HF_HUB_OFFLINE=1 \
         to use only models already downloaded"
    )]
    Network { url: String, detail: String },

    #[error("the connection to {url} broke after {received} of {expected} bytes: {detail}")]
    Interrupted {
        url: String,
        received: u64,
        expected: u64,
        detail: String,
    },

    #[error(
        "{url} did not answer like a Hugging Face hub ({detail}); if HF_ENDPOINT is set, check that it \
         points to a hub or a mirror of one"
    )]
    BadResponse { url: String, detail: String },

    #[error(
        "{file} of {repo} is corrupt: its sha256 is {actual} but the hub says {expected}; \
         the bad copy was deleted, download it again"
    )]
    Corrupt {
        repo: String,
        file: String,
        expected: String,
        actual: String,
    },

    #[error(
        "{file} of {repo} has {actual} bytes but the hub says {expected}; the bad copy was deleted, \
         download it again"
    )]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        actual: u64,
    },

    #[error("{repo} at {revision} is not a model Arbiter can load: {problem}")]
    NotAModel {
        repo: String,
        revision: String,
        problem: String,
    },

    #[error(
        "{repo}@{revision} is not fully in the hub cache {cache} and the hub cannot be used ({why}); \
         missing: {}. Connect to the network and run `arbiter models download {repo}`{}",
        missing.join(", "),
        if *.offline_env { " (and unset HF_HUB_OFFLINE)" } else { "" }
    )]
    NotCached {
        repo: String,
        revision: String,
        cache: PathBuf,
        missing: Vec<String>,
        why: String,
        offline_env: bool,
    },

    #[error("the download of {file} was cancelled; run it again to resume where it stopped")]
    Cancelled { file: String },

    #[error("{file} failed after {attempts} attempts: {last}")]
    GaveUp {
        file: String,
        attempts: u32,
        #[source]
        last: Box<HubError>,
    },

    #[error("{repo} is not in the hub cache {cache}")]
    NotInCache { repo: String, cache: PathBuf },

    #[error("the hub client cannot start: {0}")]
    Runtime(String),

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        HubError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Whether trying the same request again may succeed: dropped connections, timeouts and the
    /// hub's own trouble (5xx, 429), but not a wrong name or a refused token.
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::Network { .. } | HubError::Interrupted { .. } => true,
            HubError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
