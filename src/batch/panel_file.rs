//! The panel file: a TOML list of judges (local models and remote endpoints), each with its
//! template, sampling, concurrency and retries. Read once and checked whole, so that a typo
//! fails before any request is sent, with the file's line number in the message. API keys are
//! never in it: a judge names the environment variable that holds its key.

use crate::engine::device::{parse_dtype, DeviceChoice};
use crate::engine::{ConstrainMode, SamplingParams};
use crate::prompts::Library;
use crate::remote::RetryPolicy;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What is wrong with a panel file.
#[derive(Debug, thiserror::Error)]
pub enum PanelFileError {
    #[error("cannot read the panel file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid panel file: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path} line {line}{}: {message}", judge.as_ref().map(|j| format!(" (judge {j:?})")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        judge: Option<String>,
        message: String,
    },
}

/// How a judge runs.
#[derive(Debug, Clone, PartialEq)]
pub enum JudgeKind {
    /// A model run by Arbiter's own engine, one request at a time.
    Local {
        /// A catalogue name, hub id, folder or `.gguf` file (as `arbiter judge --model`).
        model: String,
        device: Option<DeviceChoice>,
        dtype: Option<candle_core::DType>,
    },
    /// An OpenAI-compatible endpoint.
    Remote {
        base_url: String,
        /// The `model` field of the requests.
        model: String,
        /// The environment variable holding the API key (the key itself is never stored).
        api_key_env: Option<String>,
        timeout: Duration,
        /// Where `constrain = "grammar"` puts the GBNF grammar in the request body: `grammar`
        /// (llama.cpp's server), `ebnf` (SGLang), `structured_outputs.grammar` (vLLM).
        grammar_field: String,
    },
}

impl JudgeKind {
    /// What a resumed run must find unchanged, besides template and sampling: the model, and
    /// whether it ran here or behind an endpoint. The endpoint's URL is left out on purpose:
    /// the same model moved to another host gives the same judgments.
    pub fn source(&self) -> String {
        match self {
            JudgeKind::Local { model, .. } => format!("local:{model}"),
            JudgeKind::Remote { model, .. } => format!("remote:{model}"),
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, JudgeKind::Remote { .. })
    }
}

/// One judge of a panel file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelJudge {
    /// The judge's name in judgments, panels and scores.
    pub name: String,
    /// Where its table starts in the file.
    pub line: usize,
    pub kind: JudgeKind,
    /// `None`: the dataset's default template.
    pub template: Option<String>,
    /// A preset name or a sentence, as `arbiter judge --preference`.
    pub preference: Option<String>,
    pub sampling: SamplingParams,
    /// How answers are kept inside the template's grammar; `None`: the default for the
    /// template (see `plan`).
    pub constrain: Option<ConstrainMode>,
    /// Requests in flight at once; for a local judge, the batch size of the engine's
    /// continuous batching (1, the default: one generation at a time).
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
}

/// A checked panel file.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelFile {
    pub path: PathBuf,
    pub judges: Vec<PanelJudge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    judge: Vec<toml::Spanned<JudgeToml>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindToml {
    Local,
    Remote,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgeToml {
    name: String,
    kind: KindToml,
    model: Option<String>,
    device: Option<String>,
    dtype: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    /// Only here to refuse it with a clear message.
    api_key: Option<toml::Value>,
    template: Option<String>,
    preference: Option<String>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    max_concurrency: Option<usize>,
    timeout_s: Option<f64>,
    retries: Option<u32>,
    constrain: Option<String>,
    grammar_field: Option<String>,
}

/// Default wait for the next bytes from an endpoint.
pub const DEFAULT_TIMEOUT_S: f64 = 120.0;
/// Where a remote judge's GBNF grammar goes by default: llama.cpp's server's field.
pub const DEFAULT_GRAMMAR_FIELD: &str = "grammar";
/// Default requests in flight per remote judge.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

impl PanelFile {
    /// Reads and checks the panel file at `path`; templates are checked against `library`.
    pub fn load(path: &Path, library: &Library) -> Result<PanelFile, PanelFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| PanelFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PanelFile::parse(path, &text, library)
    }

    /// Checks panel file `text` (`path` only names it in messages).
    pub fn parse(path: &Path, text: &str, library: &Library) -> Result<PanelFile, PanelFileError> {
        let file: FileToml = toml::from_str(text).map_err(|e| PanelFileError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if file.judge.is_empty() {
            return Err(PanelFileError::Invalid {
                path: path.to_path_buf(),
                line: 1,
                judge: None,
                message: "no judges: add at least one [[judge]] table (the README shows one)"
                    .into(),
            });
        }
        let mut judges: Vec<PanelJudge> = Vec::new();
        for spanned in file.judge {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let name = raw.name.trim().to_string();
            let fail = |message: String| PanelFileError::Invalid {
                path: path.to_path_buf(),
                line,
                judge: (!name.is_empty()).then(|| name.clone()),
                message,
            };
            let judge = check(raw, &name, line, library).map_err(fail)?;
            if let Some(first) = judges.iter().find(|j| j.name == judge.name) {
                return Err(fail(format!(
                    "the name is already used by the judge on line {}; give each judge its own name",
                    first.line
                )));
            }
            judges.push(judge);
        }
        Ok(PanelFile {
            path: path.to_path_buf(),
            judges,
        })
    }

    pub fn names(&self) -> Vec<String> {
        self.judges.iter().map(|j| j.name.clone()).collect()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn check(raw: JudgeToml, name: &str, line: usize, library: &Library) -> Result<PanelJudge, String> {
    if name.is_empty() {
        return Err("`name` is empty: name the judge as it should appear in the panel".into());
    }
    if name.contains(',') {
        return Err("a judge name cannot contain a comma (panels are written J1,J2,...)".into());
    }
    if raw.api_key.is_some() {
        return Err("`api_key` is not allowed: keys never go in the panel file. Put the key in an environment variable and name that variable with `api_key_env`".into());
    }
    let model = raw
        .model
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    let kind = match raw.kind {
        KindToml::Local => {
            for (field, set) in [
                ("base_url", raw.base_url.is_some()),
                ("api_key_env", raw.api_key_env.is_some()),
                ("timeout_s", raw.timeout_s.is_some()),
                ("retries", raw.retries.is_some()),
                ("grammar_field", raw.grammar_field.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "`{field}` is for remote judges; this one has kind = \"local\""
                    ));
                }
            }
            let model = model.ok_or(
                "a local judge needs `model`: a catalogue name (`arbiter models list`), a hub id, a folder or a .gguf file",
            )?;
            let device = raw
                .device
                .map(|d| {
                    d.parse::<DeviceChoice>()
                        .map_err(|e| format!("`device`: {e}"))
                })
                .transpose()?;
            let dtype = raw
                .dtype
                .map(|d| parse_dtype(&d).map_err(|e| format!("`dtype`: {e}")))
                .transpose()?;
            JudgeKind::Local {
                model,
                device,
                dtype,
            }
        }
        KindToml::Remote => {
            for (field, set) in [
                ("device", raw.device.is_some()),
                ("dtype", raw.dtype.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "`{field}` is for local judges; this one has kind = \"remote\""
                    ));
                }
            }
            let base_url = raw
                .base_url
                .map(|u| u.trim().to_string())
                .ok_or("a remote judge needs `base_url`, e.g. \"http://127.0.0.1:8000/v1\"")?;
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(format!(
                    "`base_url` {base_url:?} must start with http:// or https://"
                ));
            }
            if base_url.contains('?') {
                return Err(
                    "`base_url` must not carry a query string: pass the key through `api_key_env`"
                        .into(),
                );
            }
            let model = model.ok_or(
                "a remote judge needs `model`: the model id the server serves (GET {base_url}/models lists them)",
            )?;
            let api_key_env = raw.api_key_env.map(|v| v.trim().to_string());
            if let Some(var) = &api_key_env {
                let valid = !var.is_empty()
                    && !var.starts_with(|c: char| c.is_ascii_digit())
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!("`api_key_env` must be the NAME of an environment variable (letters, digits, _), not {}", if var.len() > 12 { "what looks like a key" } else { "this" }));
                }
            }
            let timeout = raw.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
            if !(timeout.is_finite() && timeout > 0.0) {
                return Err("`timeout_s` must be a positive number of seconds".into());
            }
            let grammar_field = raw
                .grammar_field
                .map(|f| f.trim().to_string())
                .unwrap_or_else(|| DEFAULT_GRAMMAR_FIELD.to_string());
            let valid = !grammar_field.is_empty()
                && grammar_field.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid
                || matches!(
                    grammar_field.split('.').next(),
                    Some("model" | "messages" | "stream")
                )
            {
                return Err(format!("`grammar_field` {grammar_field:?} must name a field of the request body (letters, digits, _ and - , with dots for nested fields), e.g. \"grammar\" (llama.cpp), \"ebnf\" (SGLang) or \"structured_outputs.grammar\" (vLLM)"));
            }
            JudgeKind::Remote {
                base_url,
                model,
                api_key_env,
                timeout: Duration::from_secs_f64(timeout),
                grammar_field,
            }
        }
    };
    let constrain = match raw.constrain.as_deref().map(str::trim) {
        None => None,
        Some(value) => {
            let mode = ConstrainMode::parse(value).ok_or_else(|| format!(
                "`constrain` {value:?} is not one of \"json_schema\", \"json_object\", \"grammar\", \"none\""
            ))?;
            if !kind.is_remote()
                && matches!(mode, ConstrainMode::JsonSchema | ConstrainMode::JsonObject)
            {
                return Err(format!("`constrain = \"{value}\"` is for remote judges: a local judge follows the template's grammar itself; write constrain = \"grammar\" or \"none\""));
            }
            Some(mode)
        }
    };
    if let Some(t) = &raw.template {
        library.get(t).map_err(|e| format!("`template`: {e}"))?;
    }
    let mut sampling = SamplingParams::default();
    if let Some(t) = raw.temperature {
        if !(t.is_finite() && t >= 0.0) {
            return Err("`temperature` must be 0 (greedy) or more".into());
        }
        sampling.temperature = t;
    }
    if let Some(p) = raw.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err("`top_p` must be in (0, 1]".into());
        }
        sampling.top_p = Some(p);
    }
    if let Some(n) = raw.max_tokens {
        if n == 0 {
            return Err("`max_tokens` must be at least 1".into());
        }
        sampling.max_new_tokens = n;
    }
    if let Some(s) = raw.seed {
        sampling.seed = s;
    }
    let max_concurrency = match &kind {
        JudgeKind::Local { .. } => raw.max_concurrency.unwrap_or(1),
        JudgeKind::Remote { .. } => raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
    };
    if max_concurrency == 0 || max_concurrency > 256 {
        return Err("`max_concurrency` must be between 1 and 256".into());
    }
    let mut retry = RetryPolicy::default();
    if let Some(r) = raw.retries {
        retry.max_retries = r;
    }
    Ok(PanelJudge {
        name: name.to_string(),
        line,
        kind,
        template: raw.template,
        preference: raw.preference.filter(|p| !p.trim().is_empty()),
        sampling,
        constrain,
        max_concurrency,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PanelFile, PanelFileError> {
        let library = Library::with_user_dir(None).expect("built-in templates");
        PanelFile::parse(Path::new("panel.toml"), text, &library)
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    const GOOD: &str = r#"
[[judge]]
name = "big"
kind = "remote"
base_url = "http://127.0.0.1:8000/v1"
model = "qwen"
api_key_env = "BIG_KEY"
template = "cj2-quick"
temperature = 0.7
top_p = 0.9
max_tokens = 256
seed = 7
max_concurrency = 8
timeout_s = 30
retries = 2
constrain = "grammar"
grammar_field = "structured_outputs.grammar"

[[judge]]
name = "small"
kind = "local"
model = "cj2-1.5b"
device = "cpu"
"#;

    #[test]
    fn a_good_file_gives_every_setting() {
        let p = parse(GOOD).expect("valid");
        assert_eq!(p.names(), ["big", "small"]);
        let big = &p.judges[0];
        assert_eq!(big.line, 2);
        assert_eq!(big.max_concurrency, 8);
        assert_eq!(big.retry.max_retries, 2);
        assert_eq!(big.sampling.max_new_tokens, 256);
        assert_eq!(big.sampling.top_p, Some(0.9));
        assert_eq!(big.sampling.seed, 7);
        assert_eq!(
            big.kind,
            JudgeKind::Remote {
                base_url: "http://127.0.0.1:8000/v1".into(),
                model: "qwen".into(),
                api_key_env: Some("BIG_KEY".into()),
                timeout: Duration::from_secs(30),
                grammar_field: "structured_outputs.grammar".into(),
            }
        );
        assert_eq!(big.constrain, Some(ConstrainMode::Grammar));
        let small = &p.judges[1];
        assert_eq!(small.constrain, None);
        assert_eq!(small.line, 19);
        assert_eq!(small.max_concurrency, 1);
        assert_eq!(small.template, None);
        assert!(matches!(
            small.kind,
            JudgeKind::Local {
                device: Some(DeviceChoice::Cpu),
                ..
            }
        ));
    }

    #[test]
    fn mistakes_name_the_line_and_the_fix() {
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h\"\nmax_tokns = 3\n");
        assert!(e.contains("line 6") && e.contains("max_tokns"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h\"\napi_key = \"sk-1\"\n");
        assert!(e.contains("line 1") && e.contains("api_key_env"), "{e}");
        assert!(!e.contains("sk-1"), "the key is not echoed: {e}");
        let e = error(
            "[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"h:80\"\n",
        );
        assert!(e.contains("http://"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h\"\napi_key_env = \"sk-abcdef0123456789\"\n");
        assert!(e.contains("NAME") && !e.contains("abcdef"), "{e}");
        let e = error(
            "[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"m\"\nmax_concurrency = 0\n",
        );
        assert!(e.contains("between 1 and 256"), "{e}");
        let e = error(
            "[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"m\"\ntemplate = \"nope\"\n",
        );
        assert!(e.contains("template"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"cloud\"\nmodel = \"m\"\n");
        assert!(e.contains("line 3"), "{e}");
        let twice = "[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"m\"\n\n[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"n\"\n";
        let e = error(twice);
        assert!(e.contains("line 6") && e.contains("line 1"), "{e}");
        assert!(error("").contains("no judges"));
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nbase_url = \"http://h\"\n");
        assert!(e.contains("needs `model`"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h\"\nconstrain = \"regex\"\n");
        assert!(e.contains("line 1") && e.contains("json_schema"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"m\"\nconstrain = \"json_schema\"\n");
        assert!(e.contains("remote judges") && e.contains("grammar"), "{e}");
        let e = error(
            "[[judge]]\nname = \"x\"\nkind = \"local\"\nmodel = \"m\"\ngrammar_field = \"ebnf\"\n",
        );
        assert!(e.contains("grammar_field"), "{e}");
        let e = error("[[judge]]\nname = \"x\"\nkind = \"remote\"\nmodel = \"m\"\nbase_url = \"http://h\"\ngrammar_field = \"messages\"\n");
        assert!(e.contains("grammar_field"), "{e}");
    }
}
