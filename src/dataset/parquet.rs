//! Parquet files, as the Hugging Face hub serves every dataset (`data/train-00000-of-00001.parquet`)
//! and as pyarrow and pandas write them.
//!
//! A Parquet file is a container, not a layout: its rows have the columns of one of the formats
//! Arbiter reads (RewardBench's `prompt`/`chosen`/`rejected`, Chatbot Arena's and MT-Bench's
//! `conversation_a`/`winner`, JudgerBenchV2's nested `gold`, the native layout...). So each
//! row is turned into the JSON object it stands for (nested lists and structs as arrays and
//! objects, nulls left out) by the Apache Arrow readers, and the rows then go through the same
//! detection and readers as a JSON Lines file: row N is "line N" in messages. Row groups are
//! decoded on all cores; their order is kept.

use super::DatasetError;
use arrow_json::LineDelimitedWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use std::path::Path;

/// The four bytes every Parquet file starts (and ends) with.
pub(super) const MAGIC: &[u8; 4] = b"PAR1";

/// Whether the bytes are a Parquet file.
pub(super) fn is_parquet(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(MAGIC) && bytes.ends_with(MAGIC)
}

/// The rows of a Parquet file as JSON Lines, one object per row, in file order.
pub(super) fn to_json_lines(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DatasetError> {
    let bad = |what: String| DatasetError::Parquet {
        path: path.to_path_buf(),
        reason: what,
    };
    let data = bytes::Bytes::copy_from_slice(bytes);
    let metadata = ArrowReaderMetadata::load(&data, Default::default())
        .map_err(|e| bad(format!("cannot read the file's metadata: {e}")))?;
    let groups = metadata.metadata().num_row_groups();
    let rows = metadata.metadata().file_metadata().num_rows();
    tracing::debug!(path = %path.display(), groups, rows, "parquet");
    let decode = |group: usize| -> Result<Vec<u8>, DatasetError> {
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), metadata.clone())
                .with_row_groups(vec![group])
                .with_batch_size(4096)
                .build()
                .map_err(|e| bad(format!("row group {group}: {e}")))?;
        let mut writer = LineDelimitedWriter::new(Vec::new());
        for batch in reader {
            let batch = batch.map_err(|e| bad(format!("row group {group}: {e}")))?;
            writer.write(&batch).map_err(|e| {
                bad(format!(
                    "row group {group}: a column cannot be written as JSON ({e}); \
                     convert the file with pyarrow or pandas to JSON Lines"
                ))
            })?;
        }
        writer
            .finish()
            .map_err(|e| bad(format!("row group {group}: {e}")))?;
        Ok(writer.into_inner())
    };
    let group_ids: Vec<usize> = (0..groups).collect();
    let parts = super::common::par_map(&group_ids, 2, |&g| decode(g));
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for part in parts {
        out.extend_from_slice(&part?);
    }
    Ok(out)
}
