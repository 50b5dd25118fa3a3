//! The hub's HTTP routes as `huggingface_hub` uses them: the revision info
//! (`/api/models/{repo}/revision/{rev}`), file metadata from a `HEAD` on
//! `/{repo}/resolve/{commit}/{file}` (`X-Repo-Commit`, `X-Linked-Etag`/`ETag`, `X-Linked-Size`,
//! a redirect to the storage host for large files) and ranged `GET`s for the bytes.
//!
//! Redirects are followed by hand so that the token is sent to the endpoint's own host only,
//! never to the storage host a large file redirects to.

use super::repo::RepoId;
use super::settings::HubSettings;
use super::HubError;
use serde::Deserialize;
use std::io::Read;

type Response = ureq::http::Response<ureq::Body>;

/// Redirect hops followed before giving up (the hub uses one or two).
const MAX_REDIRECTS: usize = 10;
/// The revision info of a repository with many files can be a few MB; anything larger is not
/// a hub answer.
const MAX_INFO_BYTES: u64 = 64 << 20;

/// A repository at one commit, as the API lists it.
#[derive(Debug, Clone)]
pub(crate) struct RevisionInfo {
    pub commit: String,
    pub files: Vec<RemoteFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteFile {
    pub name: String,
    pub size: Option<u64>,
}

/// What a `HEAD` on a file's resolve URL says.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub commit: String,
    /// The blob name in the cache: the sha256 for LFS files, the git blob id otherwise.
    pub etag: String,
    pub size: Option<u64>,
    /// Where the bytes are: the resolve URL itself or the storage host it redirects to.
    pub location: String,
}

/// An open `GET` whose body is being read.
pub(crate) struct Body {
    pub url: String,
    /// 200 (whole file) or 206 (from `start`).
    pub status: u16,
    pub start: u64,
    pub length: Option<u64>,
    pub reader: ureq::BodyReader<'static>,
}

pub(crate) struct HubClient<'a> {
    settings: &'a HubSettings,
    agent: ureq::Agent,
}

/// Which route an answer came from, to turn its status into the right error.
enum Route<'a> {
    Info {
        repo: &'a RepoId,
        revision: &'a str,
    },
    File {
        repo: &'a RepoId,
        revision: &'a str,
        file: &'a str,
    },
}

#[derive(Deserialize)]
struct ApiModelInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    size: Option<u64>,
}

impl<'a> HubClient<'a> {
    pub fn new(settings: &'a HubSettings) -> HubClient<'a> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(settings.connect_timeout))
            .timeout_recv_response(Some(settings.read_timeout))
            .timeout_per_read(Some(settings.read_timeout))
            .user_agent(settings.user_agent.as_str());
        if !settings.proxy_from_env {
            config = config.proxy(None);
        }
        HubClient {
            settings,
            agent: config.build().into(),
        }
    }

    /// The commit a revision points to and the files it holds.
    pub fn revision_info(&self, repo: &RepoId, revision: &str) -> Result<RevisionInfo, HubError> {
        let url = format!(
            "{}/api/models/{}/revision/{}?blobs=true",
            self.settings.endpoint,
            repo,
            encode(revision, false)
        );
        let mut resp = self.follow("GET", &url, None, |_| true)?.1;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.status_error(&resp, &url, Route::Info { repo, revision }));
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_INFO_BYTES)
            .read_to_string()
            .map_err(|source| HubError::Network {
                url: redact(&url),
                source,
            })?;
        let info: ApiModelInfo =
            serde_json::from_str(&text).map_err(|e| HubError::BadResponse {
                url: redact(&url),
                detail: format!("its model info is not the expected JSON: {e}"),
            })?;
        let commit = info
            .sha
            .filter(|s| super::repo::is_commit_hash(s))
            .ok_or_else(|| HubError::BadResponse {
                url: redact(&url),
                detail: "its model info has no commit `sha`".into(),
            })?;
        let files = info
            .siblings
            .into_iter()
            .map(|s| RemoteFile {
                size: s.lfs.and_then(|l| l.size).or(s.size),
                name: s.rfilename,
            })
            .collect();
        Ok(RevisionInfo { commit, files })
    }

    /// `HEAD` on a file: its commit, blob name, size and where to fetch it.
    pub fn file_meta(&self, repo: &RepoId, commit: &str, file: &str) -> Result<FileMeta, HubError> {
        let url = self.resolve_url(repo, commit, file);
        // Like huggingface_hub: follow redirects within the hub (renamed repositories), stop at
        // the first one that leaves it and read the metadata from that answer.
        let endpoint = origin(&self.settings.endpoint).to_string();
        let (final_url, resp) = self.follow("HEAD", &url, None, |next| origin(next) == endpoint)?;
        let status = resp.status().as_u16();
        let redirect = (300..400).contains(&status);
        if !(200..300).contains(&status) && !redirect {
            let route = Route::File {
                repo,
                revision: commit,
                file,
            };
            return Err(self.status_error(&resp, &final_url, route));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let bad = |detail: &str| HubError::BadResponse {
            url: redact(&final_url),
            detail: detail.to_string(),
        };
        let commit = header("x-repo-commit")
            .ok_or_else(|| bad("no X-Repo-Commit header"))?
            .to_string();
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(normalize_etag)
            .filter(|e| valid_blob_name(e))
            .ok_or_else(|| bad("no usable ETag header"))?;
        let size = header("x-linked-size")
            .or(if redirect {
                None
            } else {
                header("content-length")
            })
            .and_then(|v| v.parse().ok());
        let location = match header("location") {
            Some(loc) if redirect => join_location(&final_url, loc),
            _ => final_url,
        };
        Ok(FileMeta {
            commit,
            etag,
            size,
            location,
        })
    }

    /// Starts a `GET` of a file's bytes from `start` on, following redirects.
    pub fn open(
        &self,
        repo: &RepoId,
        commit: &str,
        file: &str,
        url: &str,
        start: u64,
    ) -> Result<Body, HubError> {
        let range = (start > 0).then(|| format!("bytes={start}-"));
        let (final_url, resp) = self.follow("GET", url, range.as_deref(), |_| true)?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let length = header("content-length").and_then(|v| v.trim().parse().ok());
        let begin = match status {
            200 => 0,
            206 => header("content-range")
                .as_deref()
                .and_then(content_range_start)
                .ok_or_else(|| HubError::BadResponse {
                    url: redact(&final_url),
                    detail: "a partial answer (206) without a usable Content-Range".into(),
                })?,
            // The range starts at or past the end: the caller decides what its bytes are worth.
            416 => start,
            _ => {
                let route = Route::File {
                    repo,
                    revision: commit,
                    file,
                };
                return Err(self.status_error(&resp, &final_url, route));
            }
        };
        Ok(Body {
            url: redact(&final_url),
            status,
            start: begin,
            length,
            reader: resp.into_body().into_reader(),
        })
    }

    pub fn resolve_url(&self, repo: &RepoId, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.settings.endpoint,
            repo,
            encode(revision, false),
            encode(file, true)
        )
    }

    /// Sends a request and follows redirects while `keep_going` accepts the next URL; returns
    /// the last URL asked and its answer.
    fn follow(
        &self,
        method: &str,
        url: &str,
        range: Option<&str>,
        keep_going: impl Fn(&str) -> bool,
    ) -> Result<(String, Response), HubError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self.send(method, &url, range)?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|loc| join_location(&url, loc));
            match location {
                Some(next) if (300..400).contains(&status) && keep_going(&next) => {
                    tracing::debug!("{} redirected to {}", redact(&url), redact(&next));
                    url = next;
                }
                _ => return Ok((url, resp)),
            }
        }
        Err(HubError::BadResponse {
            url: redact(&url),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn send(&self, method: &str, url: &str, range: Option<&str>) -> Result<Response, HubError> {
        tracing::debug!("{method} {}", redact(url));
        let mut req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        }
        .header("Accept-Encoding", "identity");
        if let Some(range) = range {
            req = req.header("Range", range);
        }
        // The token goes to the hub itself only, never to a storage host it redirects to.
        if let Some(token) = &self.settings.token {
            if origin(url) == origin(&self.settings.endpoint) {
                req = req.header("Authorization", format!("Bearer {}", token.secret()));
            }
        }
        req.call().map_err(|source| HubError::Network {
            url: redact(url),
            source,
        })
    }

    fn status_error(&self, resp: &Response, url: &str, route: Route<'_>) -> HubError {
        let status = resp.status().as_u16();
        let code = resp
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let endpoint = self.settings.endpoint.clone();
        let info_route = matches!(route, Route::Info { .. });
        match route {
            Route::Info { repo, .. } | Route::File { repo, .. } if code == "GatedRepo" => {
                HubError::Gated {
                    repo: repo.to_string(),
                    url: format!("{endpoint}/{repo}"),
                }
            }
            Route::Info { repo, revision } | Route::File { repo, revision, .. }
                if code == "RevisionNotFound" =>
            {
                HubError::RevisionNotFound {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                }
            }
            Route::Info { repo, .. } | Route::File { repo, .. }
                if code == "RepoNotFound" || (status == 404 && info_route) =>
            {
                HubError::RepoNotFound {
                    repo: repo.to_string(),
                    endpoint,
                    status,
                }
            }
            Route::Info { repo, .. } if status == 401 => HubError::RepoNotFound {
                repo: repo.to_string(),
                endpoint,
                status,
            },
            Route::File {
                repo,
                revision,
                file,
            } if status == 404 => HubError::FileNotFound {
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

/// The first byte of `bytes START-END/TOTAL`.
fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

/// Percent-encodes a path piece; `/` is kept only in file paths (a revision like `refs/pr/1`
/// is one segment in the URL, as the hub expects).
pub(crate) fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if plain || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of a URL, lower-cased scheme and host.
pub(crate) fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

/// A `Location` header made absolute against the URL that sent it.
pub(crate) fn join_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split_once("://").map(|(s, _)| s).unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(path_end, |i| i + 1);
        format!("{}{location}", &base[..dir_end])
    }
}

/// A URL for messages and logs: storage URLs carry signatures in their query string.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => url.to_string(),
    }
}

/// Reads into `buf`, retrying on interruption by a signal.
pub(crate) fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
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
    fn encoding_keeps_file_slashes_only() {
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("onnx/model a.json", true), "onnx/model%20a.json");
        assert_eq!(encode("ü", true), "%C3%BC");
    }

    #[test]
    fn locations_resolve_against_the_sender() {
        let base = "https://huggingface.co/a/b/resolve/main/x.json?y=1";
        assert_eq!(
            join_location(base, "/c/d/resolve/main/x.json"),
            "https://huggingface.co/c/d/resolve/main/x.json"
        );
        assert_eq!(
            join_location(base, "https://cdn.example/blob?sig=s"),
            "https://cdn.example/blob?sig=s"
        );
        assert_eq!(
            join_location(base, "//cdn.example/b"),
            "https://cdn.example/b"
        );
        assert_eq!(
            join_location(base, "z.json"),
            "https://huggingface.co/a/b/resolve/main/z.json"
        );
        assert_eq!(origin("HTTP://127.0.0.1:8080/x?y"), "http://127.0.0.1:8080");
        assert_ne!(
            origin("https://huggingface.co"),
            origin("https://cdn.example")
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(
            redact("https://cdn/x?X-Amz-Signature=abc"),
            "https://cdn/x?…"
        );
    }
}
