//! The loading pipeline every format shares: decode the bytes, frame the records, detect the
//! format, convert records to items on all cores, then apply `--skip-bad-lines`, check ids and
//! build the `Dataset`.

use super::common::RecordError;
use super::detect::{self, Unrecognised};
use super::frame;
use super::{
    alpaca_eval, arena, judge_bench, judgerbench, mtbench, native, opencompass, read, rewardbench,
    BadRecord, Dataset, DatasetError, Format, Item, LoadOptions,
};
use std::collections::HashMap;
use std::path::Path;

/// Below this many records, threads cost more than they save.
const PARALLEL_FROM: usize = 512;

/// Loads a dataset from bytes already in memory (gzip or plain); `path` names it in messages
/// and in the result, and OpenCompass judge files take the judge's name from its folder.
pub fn load_bytes(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let text = read::decode(path, bytes)?;
    let (framing, records) = frame::split(path, &text)?;
    tracing::debug!(path = %path.display(), ?framing, records = records.len(), "framed");
    if records.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    }
    let format = match opts.format {
        Some(f) => f,
        None => match detect::detect(&records) {
            Ok(f) => f,
            Err(Unrecognised::NothingReadable) if opts.skip_bad_lines => {
                return Err(DatasetError::NothingLoaded {
                    path: path.to_path_buf(),
                    count: records.len(),
                })
            }
            Err(Unrecognised::NothingReadable) => {
                // Nothing to go on: the first record's own error is the most useful message.
                let first = &records[0];
                let reason = super::common::object(first.text)
                    .err()
                    .map(|e| e.reason())
                    .unwrap_or_else(|| "not a record of any known format".into());
                return Err(DatasetError::BadLine {
                    path: path.to_path_buf(),
                    line: first.line,
                    reason,
                });
            }
            Err(Unrecognised::Shape(hint)) => {
                return Err(DatasetError::UnknownFormat {
                    path: path.to_path_buf(),
                    hint: format!(" ({hint})"),
                })
            }
        },
    };
    if format == Format::ArenaHard {
        return Err(DatasetError::ArenaHardFile {
            path: path.to_path_buf(),
        });
    }
    let judge = opencompass::judge_from_path(path);
    let judge_bench_model = judge_bench::file_judge_model(path);
    let annotator = alpaca_eval::annotator_from_path(path);
    let converted = super::common::par_map(&records, PARALLEL_FROM, |rec| match format {
        Format::Native => native::item(rec),
        Format::Judgerbench => judgerbench::item(rec),
        Format::Opencompass => opencompass::item(rec, &judge),
        Format::Rewardbench => rewardbench::item(rec),
        Format::Arena => arena::item(rec),
        Format::MtBench => mtbench::item(rec),
        Format::JudgeBench => judge_bench::item(rec, judge_bench_model.as_deref()),
        Format::AlpacaEval => alpaca_eval::item(rec, &annotator),
        // Refused above: an Arena-Hard-Auto benchmark is a folder, not a file.
        Format::ArenaHard => Err(super::common::malformed(
            "an Arena-Hard-Auto benchmark is a folder",
        )),
    });

    let mut skipped = Vec::new();
    let mut items: Vec<(usize, Item)> = Vec::with_capacity(records.len());
    for (rec, result) in records.iter().zip(converted) {
        match result {
            Ok(item) => items.push((rec.line, item)),
            Err(e) if opts.skip_bad_lines => skipped.push(BadRecord {
                line: rec.line,
                reason: e.reason(),
            }),
            Err(e) => return Err(record_error(path, rec.line, e)),
        }
    }
    if format == Format::MtBench {
        items = mtbench::merge(items);
    }

    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    let mut duplicates = Vec::new();
    for (i, (line, item)) in items.iter().enumerate() {
        if let Some(&first) = first_line.get(item.id.as_str()) {
            if !opts.skip_bad_lines {
                return Err(DatasetError::DuplicateId {
                    path: path.to_path_buf(),
                    id: item.id.clone(),
                    first,
                    second: *line,
                });
            }
            duplicates.push(i);
            skipped.push(BadRecord {
                line: *line,
                reason: format!("duplicate id {:?} (first on line {first})", item.id),
            });
        } else {
            first_line.insert(&item.id, *line);
        }
    }
    drop(first_line);
    for i in duplicates.into_iter().rev() {
        items.remove(i);
    }
    if items.is_empty() {
        return Err(DatasetError::NothingLoaded {
            path: path.to_path_buf(),
            count: skipped.len(),
        });
    }
    skipped.sort_by_key(|b| b.line);
    let items = items.into_iter().map(|(_, item)| item).collect();
    let mut dataset = Dataset::new(path.to_path_buf(), format, items)?;
    dataset.skipped = skipped;
    Ok(dataset)
}

fn record_error(path: &Path, line: usize, e: RecordError) -> DatasetError {
    match e {
        RecordError::UnknownVerdict(label) => DatasetError::UnknownVerdict {
            path: path.to_path_buf(),
            line,
            label,
        },
        RecordError::Malformed(reason) => DatasetError::BadLine {
            path: path.to_path_buf(),
            line,
            reason,
        },
    }
}
