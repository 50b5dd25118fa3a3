//! A folder of dataset files opened as one dataset, as benchmarks that ship one file per
//! category are (JudgerBenchV2's ten `{name}.json` files).
//!
//! - Files: every `*.json`, `*.jsonl`, `*.json.gz`/`*.jsonl.gz` and `*.parquet` directly in the folder, in
//!   name order; hidden files and Arbiter's own journals are left out. Sub-folders are not read.
//! - Each file is loaded on its own (its own format detection, its own record positions), so a
//!   JudgerBenchV2 record's A/B side comes from its position in its own file, as in the
//!   reference loader.
//! - Ids: `{stem}/{id}`, where `stem` is the file name without `.gz` and `.json`/`.jsonl`:
//!   `Knowledge.json`'s record 7 is `Knowledge/7`, the name OpenCompass gives the same record
//!   in a run over all the files. `meta.file` keeps the file name.
//! - JudgeBench output files (one per judge, over the same pairs) are the exception: their
//!   items keep the pair id, and a pair's judgments from every file gather on one item.
//! - Every file must be of the same format; a folder that mixes formats is refused, naming the
//!   two files.
//! - An Arena-Hard-Auto benchmark folder (`question.jsonl` beside `model_judgment/`) is not a
//!   folder of separate files but one benchmark: it is recognised by its sub-folders and loaded
//!   by `arena_hard`, also from its `model_judgment` folder or from a folder above it that holds
//!   exactly one benchmark and no dataset files of its own.

use super::{arena_hard, load, BadRecord, Dataset, DatasetError, Format, LoadOptions};
use std::path::{Path, PathBuf};

/// The files a folder dataset is made of, in name order.
fn files(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.contains(crate::journal::SUFFIX) || !path.is_file() {
            continue;
        }
        if stem(&name).is_some() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DatasetError::EmptyFolder {
            path: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// The part of a file name that prefixes its items' ids, or `None` for a file that is not a
/// dataset by its name.
fn stem(name: &str) -> Option<&str> {
    if let Some(stem) = name.strip_suffix(".parquet").filter(|s| !s.is_empty()) {
        return Some(stem);
    }
    let name = name.strip_suffix(".gz").unwrap_or(name);
    name.strip_suffix(".jsonl")
        .or_else(|| name.strip_suffix(".json"))
        .filter(|s| !s.is_empty())
}

/// Loads every dataset file of `dir` as one dataset; an Arena-Hard-Auto benchmark folder (or a
/// folder that holds exactly one) loads as that benchmark (`arena_hard`).
pub(super) fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    if matches!(opts.format, None | Some(Format::ArenaHard)) {
        // A folder with dataset files of its own is searched below only when asked to.
        let own_files = files(dir).is_ok();
        let root = if own_files && opts.format.is_none() {
            arena_hard::find_root_here(dir)
        } else {
            arena_hard::find_root(dir)?
        };
        match root {
            Some(root) => return arena_hard::load(dir, &root, opts),
            None if opts.format == Some(Format::ArenaHard) => {
                return Err(DatasetError::NotArenaHard {
                    path: dir.to_path_buf(),
                })
            }
            None => {}
        }
    }
    let mut format: Option<(Format, PathBuf)> = None;
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let mut by_pair = std::collections::HashMap::new();
    for file in files(dir)? {
        let part = load(&file, opts)?;
        match &format {
            None => format = Some((part.format, file.clone())),
            Some((f, first)) if *f != part.format => {
                return Err(DatasetError::MixedFormats {
                    path: dir.to_path_buf(),
                    first: first.clone(),
                    first_format: *f,
                    other: file.clone(),
                    other_format: part.format,
                })
            }
            Some(_) => {}
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = stem(&name).unwrap_or(&name).to_string();
        skipped.extend(part.skipped.into_iter().map(|b| BadRecord {
            line: b.line,
            reason: format!("{name}: {}", b.reason),
        }));
        let mut part_items = part.items;
        for item in &mut part_items {
            item.meta
                .insert("file".to_string(), serde_json::Value::String(name.clone()));
        }
        if part.format == Format::JudgeBench {
            // JudgeBench ships one file per judge over the same pairs: the pair id is the item.
            super::judge_bench::merge_into(dir, &mut items, &mut by_pair, &file, part_items)?;
            continue;
        }
        for mut item in part_items {
            item.id = format!("{prefix}/{}", item.id);
            items.push(item);
        }
    }
    let Some((format, _)) = format else {
        return Err(DatasetError::EmptyFolder {
            path: dir.to_path_buf(),
        });
    };
    let mut dataset = Dataset::new(dir.to_path_buf(), format, items)?;
    dataset.skipped = skipped;
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jb_record(category: &str, tested: &str) -> String {
        serde_json::json!({
            "prompt": format!("question about {category}"),
            "gold": {"category": category, "lan": "en", "r1_gt": tested},
            "base_model_response": {"model_name": "base", "response": "base answer"},
            "models_response": {"model_name": tested, "response": "tested answer"},
        })
        .to_string()
    }

    #[test]
    fn a_folder_of_judgerbench_files_keeps_each_files_positions() {
        let dir = tempfile::tempdir().unwrap();
        for (name, cat) in [("Knowledge.json", "Knowledge"), ("chatQA.json", "chatQA")] {
            let records: Vec<String> = (0..12).map(|i| jb_record(cat, &format!("m{i}"))).collect();
            std::fs::write(dir.path().join(name), format!("[{}]", records.join(",\n"))).unwrap();
        }
        // Not datasets: a journal, a hidden file, notes, a sub-folder.
        std::fs::write(dir.path().join("Knowledge.json.arbiter-journal.jsonl"), "").unwrap();
        std::fs::write(dir.path().join(".hidden.json"), "[]").unwrap();
        std::fs::write(dir.path().join("README.md"), "notes").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();

        let ds = load_folder(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!(ds.format, Format::Judgerbench);
        assert_eq!(ds.items.len(), 24);
        assert_eq!(ds.items[0].id, "Knowledge/0");
        assert_eq!(ds.items[12].id, "chatQA/0");
        assert_eq!(ds.items[23].id, "chatQA/11");
        for (i, item) in ds.items.iter().enumerate() {
            // Each file's record k takes the side of position k, not of its place in the folder.
            let k = i % 12;
            let tested_a = crate::dataset::judgerbench::tested_model_is_a(k);
            assert_eq!(
                item.response_a.model == format!("m{k}"),
                tested_a,
                "{}",
                item.id
            );
        }
        assert_eq!(ds.items[13].meta["file"], "chatQA.json");
        assert_eq!(ds.position("Knowledge/3"), Some(3));
    }

    #[test]
    fn a_folder_that_mixes_formats_or_holds_nothing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_folder(dir.path(), &LoadOptions::default()),
            Err(DatasetError::EmptyFolder { .. })
        ));
        std::fs::write(
            dir.path().join("a.json"),
            format!("[{}]", jb_record("IF", "m")),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.jsonl"),
            r#"{"id": "x", "question": "q", "response_a": "1", "response_b": "2"}"#,
        )
        .unwrap();
        let err = load_folder(dir.path(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, DatasetError::MixedFormats { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("a.json") && text.contains("b.jsonl"),
            "{text}"
        );
    }
}
