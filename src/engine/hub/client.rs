//! The connection to the hub: an `hf_hub::HFClient` built from our settings and driven on a
//! tokio runtime the engine owns (made once and kept, so the GUI thread never runs network
//! code and callers stay synchronous), plus the one request `hf-hub` 1.0 does not offer in a
//! usable form and the wording of its errors.
//!
//! The one request is the file metadata `HEAD` without following redirects: `hf-hub`'s
//! `get_file_metadata` follows them, so for a large file it reads the storage host's answer,
//! which has no `X-Repo-Commit`; and its tree listings drop the LFS sha256 (the hub names that
//! field `oid`). The etag decides where the partial download lives (`blobs/{etag}.incomplete`),
//! so it must be known before the bytes are asked for.

use super::repo::RepoId;
use super::settings::HubSettings;
use super::HubError;
use hf_hub::{HFClient, HFError, HFRepository, RepoTypeModel};
use reqwest::{StatusCode, Url};
use std::sync::OnceLock;
use tokio::runtime::Runtime;

/// Redirect hops followed within the hub before giving up (renamed repositories use one).
const MAX_REDIRECTS: usize = 10;

/// The runtime every hub request runs on: two worker threads, created on first use.
static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The engine's tokio runtime. Callers `block_on` it from worker or CLI threads, never from
/// inside another runtime.
pub(crate) fn runtime() -> Result<&'static Runtime, HubError> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("arbiter-hub")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| HubError::Runtime(e.clone()))
}

/// What a `HEAD` on a file's resolve URL says.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub commit: String,
    /// The blob name in the cache: the sha256 for LFS files, the git blob id otherwise.
    pub etag: String,
    pub size: Option<u64>,
    /// Set when the file is stored in Xet; `hf-hub` then transfers it by chunks.
    pub xet_hash: Option<String>,
}

/// One repository on the hub, through `hf-hub`, and the `HEAD` it lacks.
pub(crate) struct HubClient {
    pub hf: HFClient,
    pub repo: HFRepository<RepoTypeModel>,
    head_client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

impl HubClient {
    pub fn new(settings: &HubSettings, repo: &RepoId) -> Result<HubClient, HubError> {
        let http = |redirects: bool| {
            let mut b = reqwest::Client::builder()
                .user_agent(settings.user_agent.as_str())
                .connect_timeout(settings.connect_timeout)
                .read_timeout(settings.read_timeout);
            if !redirects {
                b = b.redirect(reqwest::redirect::Policy::none());
            }
            if !settings.proxy_from_env {
                b = b.no_proxy();
            }
            b.build().map_err(|e| HubError::Runtime(e.to_string()))
        };
        let mut builder = HFClient::builder()
            .endpoint(settings.endpoint.as_str())
            .cache_dir(settings.cache_dir.clone())
            .user_agent(settings.user_agent.as_str())
            .client(http(true)?)
            .retry_max_attempts(settings.retries as usize)
            .retry_base_delay(settings.retry_delay);
        if let Some(token) = &settings.token {
            builder = builder.token(token.secret());
        }
        let hf = builder.build().map_err(|e| HubError::BadResponse {
            url: settings.endpoint.clone(),
            detail: format!("the endpoint is not usable: {e}"),
        })?;
        let repo_handle = hf.model(repo.owner(), repo.name());
        Ok(HubClient {
            repo: repo_handle,
            hf,
            head_client: http(false)?,
            endpoint: settings.endpoint.clone(),
            token: settings.token.as_ref().map(|t| t.secret().to_string()),
        })
    }

    /// `HEAD` on a file at a commit: its commit, blob name, size and Xet hash. Redirects within
    /// the hub are followed; the first one that leaves it carries the metadata.
    pub async fn file_meta(
        &self,
        repo: &RepoId,
        commit: &str,
        file: &str,
    ) -> Result<FileMeta, HubError> {
        let endpoint = Url::parse(&self.endpoint).map_err(|e| HubError::BadResponse {
            url: self.endpoint.clone(),
            detail: e.to_string(),
        })?;
        let mut url = resolve_url(&endpoint, repo, commit, file)?;
        let mut hops = 0;
        let resp = loop {
            let mut req = self
                .head_client
                .head(url.clone())
                .header("Accept-Encoding", "identity");
            if let Some(token) = &self.token {
                if same_origin(&url, &endpoint) {
                    req = req.bearer_auth(token);
                }
            }
            let resp = req.send().await.map_err(|e| HubError::Network {
                url: redact(url.as_str()),
                detail: e.to_string(),
            })?;
            // Like huggingface_hub: a relative redirect stays on the hub (a renamed
            // repository) and is followed; an absolute one goes to storage and carries the
            // metadata itself.
            let next = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .filter(|loc| is_relative(loc))
                .and_then(|loc| url.join(loc).ok());
            match next {
                Some(next) if resp.status().is_redirection() && hops < MAX_REDIRECTS => {
                    hops += 1;
                    url = next;
                }
                _ => break resp,
            }
        };
        let status = resp.status();
        if !status.is_success() && !status.is_redirection() {
            let code = header(&resp, "x-error-code").unwrap_or_default();
            return Err(status_error(
                status.as_u16(),
                &code,
                url.as_str(),
                &self.endpoint,
                repo,
                commit,
                Some(file),
            ));
        }
        let bad = |detail: &str| HubError::BadResponse {
            url: redact(url.as_str()),
            detail: detail.to_string(),
        };
        let commit =
            header(&resp, "x-repo-commit").ok_or_else(|| bad("no X-Repo-Commit header"))?;
        let etag = header(&resp, "x-linked-etag")
            .or_else(|| header(&resp, "etag"))
            .map(|e| normalize_etag(&e))
            .filter(|e| valid_blob_name(e))
            .ok_or_else(|| bad("no usable ETag header"))?;
        let size = header(&resp, "x-linked-size")
            .or(if status.is_redirection() {
                None
            } else {
                header(&resp, "content-length")
            })
            .and_then(|v| v.parse().ok());
        Ok(FileMeta {
            commit,
            etag,
            size,
            xet_hash: header(&resp, "x-xet-hash"),
        })
    }

    /// An `hf-hub` error in our words, for a request about `repo` at `revision` (and `file`).
    pub fn error(&self, e: HFError, repo: &RepoId, revision: &str, file: Option<&str>) -> HubError {
        map_error(e, &self.endpoint, repo, revision, file)
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `{endpoint}/{owner}/{name}/resolve/{revision}/{file}`, each piece percent-encoded.
fn resolve_url(endpoint: &Url, repo: &RepoId, revision: &str, file: &str) -> Result<Url, HubError> {
    let mut url = endpoint.clone();
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|()| HubError::BadResponse {
                url: endpoint.to_string(),
                detail: "HF_ENDPOINT is not an http(s) URL".into(),
            })?;
        segs.pop_if_empty();
        segs.extend([repo.owner(), repo.name(), "resolve", revision]);
        segs.extend(file.split('/'));
    }
    Ok(url)
}

/// A `Location` without scheme and host.
fn is_relative(location: &str) -> bool {
    !location.contains("://") && !location.starts_with("//")
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// An HTTP error status in our words: gated, missing repository, revision or file, refused.
fn status_error(
    status: u16,
    code: &str,
    url: &str,
    endpoint: &str,
    repo: &RepoId,
    revision: &str,
    file: Option<&str>,
) -> HubError {
    match (code, file) {
        ("GatedRepo", _) => HubError::Gated {
            repo: repo.to_string(),
            url: format!("{endpoint}/{repo}"),
        },
        ("RevisionNotFound", _) => HubError::RevisionNotFound {
            repo: repo.to_string(),
            revision: revision.to_string(),
        },
        ("RepoNotFound", _) => HubError::RepoNotFound {
            repo: repo.to_string(),
            endpoint: endpoint.to_string(),
            status,
        },
        (_, None) if status == 404 || status == 401 => HubError::RepoNotFound {
            repo: repo.to_string(),
            endpoint: endpoint.to_string(),
            status,
        },
        (_, Some(file)) if status == 404 => HubError::FileNotFound {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
        },
        _ if status == 401 || status == 403 => HubError::Unauthorized {
            url: redact(url),
            status,
        },
        _ => HubError::Status {
            url: redact(url),
            status,
        },
    }
}

/// `hf-hub`'s errors in our words; the hub's `X-Error-Code` decides, as it does for Python.
pub(crate) fn map_error(
    e: HFError,
    endpoint: &str,
    repo: &RepoId,
    revision: &str,
    file: Option<&str>,
) -> HubError {
    let from_context = |status: StatusCode, code: Option<&str>, url: &str| {
        status_error(
            status.as_u16(),
            code.unwrap_or(""),
            url,
            endpoint,
            repo,
            revision,
            file,
        )
    };
    match e {
        HFError::Http { context }
        | HFError::AuthRequired { context }
        | HFError::Forbidden { context }
        | HFError::Conflict { context }
        | HFError::RateLimited { context, .. } => {
            from_context(context.status, context.error_code.as_deref(), &context.url)
        }
        HFError::RepoNotFound {
            context: Some(context),
            ..
        }
        | HFError::RevisionNotFound {
            context: Some(context),
            ..
        }
        | HFError::EntryNotFound {
            context: Some(context),
            ..
        } => from_context(context.status, context.error_code.as_deref(), &context.url),
        HFError::RepoNotFound { .. } => HubError::RepoNotFound {
            repo: repo.to_string(),
            endpoint: endpoint.to_string(),
            status: StatusCode::NOT_FOUND.as_u16(),
        },
        HFError::RevisionNotFound { .. } => HubError::RevisionNotFound {
            repo: repo.to_string(),
            revision: revision.to_string(),
        },
        HFError::EntryNotFound { path, .. } => HubError::FileNotFound {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: path,
        },
        HFError::Request { source, url } => HubError::Network {
            url: redact(url.as_deref().unwrap_or(endpoint)),
            detail: error_chain(&source),
        },
        HFError::Io(source) => HubError::Io {
            action: "write into",
            path: file.unwrap_or("the hub cache").into(),
            source,
        },
        other => HubError::BadResponse {
            url: endpoint.to_string(),
            detail: other.to_string(),
        },
    }
}

/// An error and its causes on one line (`reqwest` puts the useful part in the sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `huggingface_hub`'s `_normalize_etag`: drop a weak-validator prefix and the quotes.
fn normalize_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// The etag becomes a file name in `blobs/`: only hex-like names are accepted.
fn valid_blob_name(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && etag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A URL for messages and logs: storage URLs carry signatures in their query string.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_normalized_like_huggingface_hub() {
        assert_eq!(normalize_etag("\"abc123\""), "abc123");
        assert_eq!(normalize_etag("W/\"abc123\""), "abc123");
        assert!(valid_blob_name("0123abcdef"));
        assert!(!valid_blob_name("../x"));
        assert!(!valid_blob_name(""));
    }

    #[test]
    fn resolve_urls_encode_each_piece() {
        let repo = RepoId::parse("org/m").unwrap();
        let base = Url::parse("http://127.0.0.1:9/mirror").unwrap();
        let url = resolve_url(&base, &repo, "refs/pr/1", "onnx/model a.json").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/mirror/org/m/resolve/refs%2Fpr%2F1/onnx/model%20a.json"
        );
        assert!(same_origin(
            &Url::parse("HTTP://127.0.0.1:9/x?y").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("http://127.0.0.1:10/x").unwrap(),
            &base
        ));
        assert!(is_relative("/org/m2/resolve/main/x.json"));
        assert!(!is_relative("http://127.0.0.1:9/blobs/x"));
        assert!(!is_relative("//cdn.example/x"));
        assert_eq!(
            redact("https://cdn/x?X-Amz-Signature=abc"),
            "https://cdn/x?…"
        );
    }
}
