//! The set of judge templates a run can choose from: the ones built into the binary (the files
//! in `prompts/`), overridden or extended by `.txt` files in the user's prompts directory.
//!
//! The user directory is `$ARBITER_PROMPTS_DIR` when set, else `<config dir>/arbiter/prompts/`
//! (`~/.config/arbiter/prompts/` on Linux). A user file named like a built-in template replaces
//! it; any other name adds a template. A missing directory is not an error; a broken file is,
//! naming the file, so a typo never silently falls back to the built-in prompt.

use super::{PromptError, Template, TemplateKind};
use crate::verdict::OutputFormat;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The templates shipped in `prompts/`, embedded at build time.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "cj2-critical-thinking",
        include_str!("../../prompts/cj2-critical-thinking.txt"),
    ),
    ("cj2-quick", include_str!("../../prompts/cj2-quick.txt")),
    ("pairwise-ab", include_str!("../../prompts/pairwise-ab.txt")),
    ("arena-5way", include_str!("../../prompts/arena-5way.txt")),
    (
        "pointwise-10",
        include_str!("../../prompts/pointwise-10.txt"),
    ),
    ("critique", include_str!("../../prompts/critique.txt")),
    (
        "judgerbench-v2",
        include_str!("../../prompts/judgerbench-v2.txt"),
    ),
    // The open judges' own prompt formats (each file names its source).
    (
        "prometheus2-relative",
        include_str!("../../prompts/prometheus2-relative.txt"),
    ),
    (
        "skywork-critic",
        include_str!("../../prompts/skywork-critic.txt"),
    ),
    (
        "selene-pairwise",
        include_str!("../../prompts/selene-pairwise.txt"),
    ),
    ("flow-judge", include_str!("../../prompts/flow-judge.txt")),
];

/// The environment variable that points at a prompts directory instead of the config one.
pub const PROMPTS_DIR_ENV: &str = "ARBITER_PROMPTS_DIR";

/// Where a template came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Built into the binary.
    Embedded,
    /// A user file with a name no built-in template has.
    User(PathBuf),
    /// A user file that replaces the built-in template of the same name.
    Overridden(PathBuf),
}

/// A summary of one template, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateInfo {
    pub name: String,
    pub kind: TemplateKind,
    pub output: OutputFormat,
    pub description: String,
    /// The placeholders and section names its body uses, sorted.
    pub placeholders: Vec<String>,
    pub source: Source,
}

/// The loaded templates, by name.
#[derive(Clone, Debug)]
pub struct Library {
    templates: BTreeMap<String, (Template, Source)>,
}

impl Library {
    /// The built-in templates and those of the user's prompts directory.
    pub fn load() -> Result<Library, PromptError> {
        Library::with_user_dir(Library::user_dir().as_deref())
    }

    /// The built-in templates and those of `dir` (none when `None` or when it does not exist).
    /// Reads no environment variable, which is what tests want.
    pub fn with_user_dir(dir: Option<&Path>) -> Result<Library, PromptError> {
        let mut templates = BTreeMap::new();
        for (name, text) in EMBEDDED {
            let origin = format!("prompts/{name}.txt (built in)");
            let template = Template::parse(name, &origin, text)?;
            templates.insert(name.to_string(), (template, Source::Embedded));
        }
        if let Some(dir) = dir {
            for (name, path) in user_files(dir)? {
                let text = std::fs::read_to_string(&path).map_err(|source| PromptError::Io {
                    path: path.clone(),
                    source,
                })?;
                let template = Template::parse(&name, &path.display().to_string(), &text)?;
                let source = if templates.contains_key(&name) {
                    tracing::info!(template = %name, path = %path.display(), "user template overrides the built-in one");
                    Source::Overridden(path)
                } else {
                    tracing::debug!(template = %name, path = %path.display(), "user template added");
                    Source::User(path)
                };
                templates.insert(name, (template, source));
            }
        }
        Ok(Library { templates })
    }

    /// The user prompts directory: `$ARBITER_PROMPTS_DIR`, else `<config dir>/arbiter/prompts`.
    pub fn user_dir() -> Option<PathBuf> {
        match std::env::var_os(PROMPTS_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
            _ => dirs::config_dir().map(|d| d.join("arbiter").join("prompts")),
        }
    }

    /// Every template, sorted by name.
    pub fn list(&self) -> Vec<TemplateInfo> {
        self.templates
            .values()
            .map(|(t, source)| TemplateInfo {
                name: t.name().to_string(),
                kind: t.kind(),
                output: t.output(),
                description: t.description().to_string(),
                placeholders: t.placeholders().iter().cloned().collect(),
                source: source.clone(),
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<&Template, PromptError> {
        self.templates
            .get(name)
            .map(|(t, _)| t)
            .ok_or_else(|| PromptError::UnknownTemplate {
                name: name.to_string(),
                available: self
                    .templates
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.templates.get(name).map(|(_, s)| s)
    }
}

/// The `.txt` files of a user directory as (template name, path), sorted for a stable order.
fn user_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, PromptError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(dir = %dir.display(), "no user prompts directory");
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(PromptError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PromptError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("txt") || !path.is_file() {
            continue;
        }
        match path.file_stem().and_then(|s| s.to_str()) {
            Some(name) if !name.is_empty() && !name.starts_with('.') => {
                files.push((name.to_string(), path.clone()))
            }
            _ => {
                tracing::warn!(path = %path.display(), "skipping a prompt file whose name is not valid UTF-8")
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_prompts_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let on_disk: Vec<String> = user_files(&dir)
            .expect("prompts/ is readable")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new prompts/ files to EMBEDDED");
    }

    #[test]
    fn unknown_template_lists_the_available_ones() {
        let lib = Library::with_user_dir(None).expect("built-ins load");
        let err = lib.get("nope").expect_err("no such template");
        let msg = err.to_string();
        assert!(msg.contains("nope") && msg.contains("cj2-quick"), "{msg}");
    }
}
