//! Where the hub client talks to and where it keeps files, read from the same environment
//! variables as Python's `huggingface_hub` so both share one cache and one login.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The public hub, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A hub access token. Its `Debug` never shows the secret, so a settings struct can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from text as users paste it or as the token file holds it: line breaks and
    /// surrounding spaces are dropped (as `huggingface_hub` does); empty text is no token.
    pub fn new(text: &str) -> Option<Token> {
        let cleaned: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let cleaned = cleaned.trim();
        (!cleaned.is_empty()).then(|| Token(cleaned.to_string()))
    }

    /// The secret itself, only for building the `Authorization` header.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Where a token came from, for messages such as "using the token from ~/.cache/huggingface/token".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`).
    Env(&'static str),
    /// The token file written by `hf auth login`.
    File(PathBuf),
    /// Given by the program.
    Explicit,
}

/// Everything the hub client needs to know. Build it with [`HubSettings::from_env`] in a
/// program, or fill it in by hand (tests do, so they never touch the process environment).
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Base URL of the hub, without a trailing slash.
    pub endpoint: String,
    /// The hub cache: the folder that holds `models--{owner}--{name}` folders.
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer` to the endpoint's own host only.
    pub token: Option<Token>,
    pub token_source: Option<TokenSource>,
    /// Use only the cache; never open a connection.
    pub offline: bool,
    /// How many more times one file is tried after a dropped connection or a 5xx answer,
    /// each time resuming from the bytes already on disk.
    pub retries: u32,
    /// Pause before the first retry; doubled for each later one.
    pub retry_delay: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading an answer before the attempt counts as dropped.
    pub read_timeout: Duration,
    /// Honour `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY`.
    pub proxy_from_env: bool,
    pub user_agent: String,
}

impl HubSettings {
    /// Settings from the process environment, with the variables and precedence of Python's
    /// `huggingface_hub`: `HF_ENDPOINT`, `HF_HOME` (else `$XDG_CACHE_HOME/huggingface`, else
    /// `~/.cache/huggingface`), `HF_HUB_CACHE` (else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`),
    /// `HF_TOKEN` (else `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH` or `$HF_HOME/token`),
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1/on/yes/true.
    pub fn from_env() -> HubSettings {
        HubSettings::from_vars(|name| std::env::var(name).ok(), dirs::home_dir())
    }

    /// [`HubSettings::from_env`] over any variable lookup, so it can be tested with a map.
    /// An empty variable counts as unset (Python would take it literally and use the current
    /// directory, which is never what was meant).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> HubSettings {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let home_dir = home.clone().unwrap_or_else(|| PathBuf::from("."));
        let expand = |value: String| expand_home(&value, home.as_deref());

        let hf_home = match get("HF_HOME") {
            Some(v) => expand(v),
            None => match get("XDG_CACHE_HOME") {
                Some(v) => expand(v).join("huggingface"),
                None => home_dir.join(".cache").join("huggingface"),
            },
        };
        let cache_dir = get("HF_HUB_CACHE")
            .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| hf_home.join("hub"));
        let endpoint = get("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|name| get(name).is_some_and(|v| is_true(&v)));

        let mut token = None;
        let mut token_source = None;
        for name in ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"] {
            if let Some(t) = get(name).and_then(|v| Token::new(&v)) {
                token = Some(t);
                token_source = Some(TokenSource::Env(name));
                break;
            }
        }
        if token.is_none() {
            let path = get("HF_TOKEN_PATH")
                .map(expand)
                .unwrap_or_else(|| hf_home.join("token"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    token = Token::new(&text);
                    token_source = token.as_ref().map(|_| TokenSource::File(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot read the hub token file {}: {e}", path.display()),
            }
        }

        HubSettings {
            endpoint,
            cache_dir,
            token,
            token_source,
            offline,
            ..HubSettings::defaults()
        }
    }

    /// Settings for a given endpoint and cache with no token, online, and the default
    /// network behaviour.
    pub fn new(endpoint: &str, cache_dir: impl Into<PathBuf>) -> HubSettings {
        HubSettings {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
            ..HubSettings::defaults()
        }
    }

    fn defaults() -> HubSettings {
        HubSettings {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            cache_dir: PathBuf::new(),
            token: None,
            token_source: None,
            offline: false,
            retries: 5,
            retry_delay: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            proxy_from_env: true,
            user_agent: format!("arbiter/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// `huggingface_hub`'s notion of a true environment value.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// `~` and `~/...` as the shell would expand them; other text is taken as a path.
fn expand_home(value: &str, home: Option<&Path>) -> PathBuf {
    match (value, home) {
        ("~", Some(home)) => home.to_path_buf(),
        (v, Some(home)) if v.starts_with("~/") => home.join(&v[2..]),
        (v, _) => PathBuf::from(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)], home: &Path) -> HubSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(|k| map.get(k).cloned(), Some(home.to_path_buf()))
    }

    #[test]
    fn defaults_follow_the_python_layout() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(&[], home.path());
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(
            s.cache_dir,
            home.path().join(".cache").join("huggingface").join("hub")
        );
        assert!(s.token.is_none());
        assert!(!s.offline);
    }

    #[test]
    fn hf_home_moves_cache_and_token_file() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "hf_fromfile\r\n").unwrap();
        let s = settings(&[("HF_HOME", hf_home.to_str().unwrap())], home.path());
        assert_eq!(s.cache_dir, hf_home.join("hub"));
        assert_eq!(s.token, Token::new("hf_fromfile"));
        assert_eq!(
            s.token_source,
            Some(TokenSource::File(hf_home.join("token")))
        );
    }

    #[test]
    fn xdg_cache_home_is_used_without_hf_home() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(&[("XDG_CACHE_HOME", "/x/cache")], home.path());
        assert_eq!(s.cache_dir, PathBuf::from("/x/cache/huggingface/hub"));
    }

    #[test]
    fn hub_cache_beats_legacy_and_hf_home() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(
            &[
                ("HF_HOME", "/a"),
                ("HUGGINGFACE_HUB_CACHE", "/legacy"),
                ("HF_HUB_CACHE", "~/hubcache"),
            ],
            home.path(),
        );
        assert_eq!(s.cache_dir, home.path().join("hubcache"));
        let s = settings(
            &[("HF_HOME", "/a"), ("HUGGINGFACE_HUB_CACHE", "/legacy")],
            home.path(),
        );
        assert_eq!(s.cache_dir, PathBuf::from("/legacy"));
    }

    #[test]
    fn env_token_beats_token_file_and_is_never_printed() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "hf_fromfile").unwrap();
        let s = settings(
            &[
                ("HF_HOME", hf_home.to_str().unwrap()),
                ("HUGGING_FACE_HUB_TOKEN", "hf_legacy"),
                ("HF_TOKEN", " hf_secret\n"),
            ],
            home.path(),
        );
        assert_eq!(s.token.as_ref().map(Token::secret), Some("hf_secret"));
        assert_eq!(s.token_source, Some(TokenSource::Env("HF_TOKEN")));
        assert!(!format!("{s:?}").contains("hf_secret"));
        let s = settings(&[("HUGGING_FACE_HUB_TOKEN", "hf_legacy")], home.path());
        assert_eq!(s.token.as_ref().map(Token::secret), Some("hf_legacy"));
    }

    #[test]
    fn token_path_variable_and_empty_token() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("elsewhere");
        std::fs::write(&file, "  \n").unwrap();
        let s = settings(&[("HF_TOKEN_PATH", file.to_str().unwrap())], home.path());
        assert!(s.token.is_none(), "a blank token file is no token");
        std::fs::write(&file, "hf_x").unwrap();
        let s = settings(&[("HF_TOKEN_PATH", file.to_str().unwrap())], home.path());
        assert_eq!(s.token.as_ref().map(Token::secret), Some("hf_x"));
    }

    #[test]
    fn endpoint_loses_trailing_slash() {
        let home = tempfile::tempdir().unwrap();
        let s = settings(
            &[("HF_ENDPOINT", "http://127.0.0.1:9/mirror/")],
            home.path(),
        );
        assert_eq!(s.endpoint, "http://127.0.0.1:9/mirror");
    }

    #[test]
    fn offline_values() {
        let home = tempfile::tempdir().unwrap();
        for (value, expected) in [
            ("1", true),
            ("on", true),
            ("Yes", true),
            ("TRUE", true),
            ("0", false),
            ("no", false),
            ("", false),
        ] {
            let s = settings(&[("HF_HUB_OFFLINE", value)], home.path());
            assert_eq!(s.offline, expected, "HF_HUB_OFFLINE={value:?}");
        }
        let s = settings(&[("TRANSFORMERS_OFFLINE", "1")], home.path());
        assert!(s.offline);
    }
}
