//! Splitting a file's text into records, each with the line it starts on: JSON Lines (one
//! record a line), a JSON array of records, or one JSON object — either a single record or an
//! OpenCompass results file (an object keyed by record index).
//!
//! Records are not parsed here beyond what framing needs; each format reader parses its own
//! records, in parallel.

use super::DatasetError;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// One record of the file, not yet parsed.
#[derive(Clone, Debug)]
pub(crate) struct Record<'a> {
    /// 1-based line on which the record starts.
    pub line: usize,
    /// 0-based position among the file's records (JudgerBenchV2 places A/B by it).
    pub index: usize,
    /// The key of a record in an object keyed by index (OpenCompass results files).
    pub key: Option<Cow<'a, str>>,
    /// The record's JSON text. JSON Lines records are checked for UTF-8 by the reader, so that a
    /// bad line can be skipped rather than failing the file.
    pub text: &'a [u8],
}

/// How the records were laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    JsonLines,
    Array,
    /// One JSON object holding one record.
    Single,
    /// One JSON object whose values are the records (`{"0": {...}, "1": {...}}`).
    Keyed,
}

/// Splits `text` (already checked by `read::decode` to start with `{` or `[`) into records.
pub(crate) fn split<'a>(
    path: &Path,
    text: &'a [u8],
) -> Result<(Framing, Vec<Record<'a>>), DatasetError> {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if text.get(start) == Some(&b'[') {
        return split_array(path, text).map(|r| (Framing::Array, r));
    }
    let lines = split_lines(text);
    // A first line that is a whole JSON value means JSON Lines; otherwise the file may be one
    // pretty-printed object. If it is not that either, JSON Lines reports the bad first line.
    let first_is_whole = lines
        .first()
        .is_some_and(|r| serde_json::from_slice::<serde::de::IgnoredAny>(r.text).is_ok());
    if !first_is_whole {
        if let Some(found) = split_object(text) {
            return Ok(found);
        }
    } else if lines.len() == 1 {
        // A one-line file may still be an OpenCompass results object written without indent.
        if let Some((Framing::Keyed, records)) = split_object(text) {
            return Ok((Framing::Keyed, records));
        }
    }
    Ok((Framing::JsonLines, lines))
}

fn split_lines(text: &[u8]) -> Vec<Record<'_>> {
    let mut records = Vec::new();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len()));
    for (n, end) in ends.enumerate() {
        let mut raw = &text[start..end];
        start = end + 1;
        if let Some(stripped) = raw.strip_suffix(b"\r") {
            raw = stripped;
        }
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records.push(Record {
            line: n + 1,
            index: records.len(),
            key: None,
            text: raw,
        });
    }
    records
}

fn split_array<'a>(path: &Path, text: &'a [u8]) -> Result<Vec<Record<'a>>, DatasetError> {
    let s = std::str::from_utf8(text).map_err(|e| DatasetError::BadLine {
        path: path.to_path_buf(),
        line: line_at(text, e.valid_up_to()),
        reason: "the text is not valid UTF-8 (convert the file to UTF-8)".into(),
    })?;
    let raws: Vec<&RawValue> = serde_json::from_str(s).map_err(|e| DatasetError::BadLine {
        path: path.to_path_buf(),
        line: e.line(),
        reason: format!("the JSON array is malformed: {e}"),
    })?;
    let mut lines = LineCounter::new(text);
    Ok(raws
        .into_iter()
        .enumerate()
        .map(|(index, raw)| Record {
            line: lines.line_of(offset_in(text, raw.get())),
            index,
            key: None,
            text: raw.get().as_bytes(),
        })
        .collect())
}

/// Reads the whole text as one JSON object: a results object keyed by index when every key is
/// a number and every value an object, else a single record. `None` when it is not one object.
fn split_object(text: &[u8]) -> Option<(Framing, Vec<Record<'_>>)> {
    let s = std::str::from_utf8(text).ok()?;
    let entries: Entries<'_> = serde_json::from_str(s).ok()?;
    let keyed = !entries.0.is_empty()
        && entries
            .0
            .iter()
            .all(|(k, v)| k.parse::<u64>().is_ok() && v.get().trim_start().starts_with('{'));
    if !keyed {
        let line = line_at(text, text.iter().position(|b| *b == b'{').unwrap_or(0));
        let record = Record {
            line,
            index: 0,
            key: None,
            text: s.trim().as_bytes(),
        };
        return Some((Framing::Single, vec![record]));
    }
    let mut lines = LineCounter::new(text);
    let records = entries
        .0
        .into_iter()
        .enumerate()
        .map(|(index, (key, raw))| Record {
            line: lines.line_of(offset_in(text, raw.get())),
            index,
            key: Some(key),
            text: raw.get().as_bytes(),
        })
        .collect();
    Some((Framing::Keyed, records))
}

/// An object's entries in file order (a map type would reorder `"10"` before `"2"`).
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Byte offset of `inner` (a slice borrowed from `outer`) within `outer`.
fn offset_in(outer: &[u8], inner: &str) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// 1-based line of a byte offset.
pub(crate) fn line_at(text: &[u8], offset: usize) -> usize {
    memchr::memchr_iter(b'\n', &text[..offset.min(text.len())]).count() + 1
}

/// Line numbers for increasing offsets, counting each stretch of text once.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset >= self.offset {
            self.line += memchr::memchr_iter(b'\n', &self.text[self.offset..offset]).count();
            self.offset = offset;
            self.line
        } else {
            line_at(self.text, offset)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the tests compare it: line, index, key, text.
    type Flat = (usize, usize, Option<String>, String);

    fn split_ok(text: &str) -> (Framing, Vec<Flat>) {
        let (f, recs) = split(Path::new("t"), text.as_bytes()).expect("frames");
        (
            f,
            recs.into_iter()
                .map(|r| {
                    (
                        r.line,
                        r.index,
                        r.key.map(|k| k.into_owned()),
                        String::from_utf8(r.text.to_vec()).expect("utf8"),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn json_lines_skip_blank_lines_and_keep_line_numbers() {
        let (f, r) = split_ok("{\"a\":1}\r\n\n  \n{\"a\":2}\n");
        assert_eq!(f, Framing::JsonLines);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1, r[0].3.as_str()), (1, 0, "{\"a\":1}"));
        assert_eq!((r[1].0, r[1].1), (4, 1));
    }

    #[test]
    fn a_bad_first_line_stays_json_lines_so_it_can_be_skipped() {
        let (f, r) = split_ok("{\"a\":\n{\"a\":2}\n");
        assert_eq!(f, Framing::JsonLines);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn arrays_give_record_start_lines() {
        let (f, r) = split_ok("[\n  {\"a\": 1},\n\n  {\"a\": [\n 2]}\n]");
        assert_eq!(f, Framing::Array);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(r[1].3, "{\"a\": [\n 2]}");
    }

    #[test]
    fn a_malformed_array_names_the_line() {
        match split(Path::new("t"), b"[\n{\"a\":1},\n{\"a\" 2}\n]") {
            Err(DatasetError::BadLine { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected BadLine, got {other:?}"),
        }
    }

    #[test]
    fn pretty_object_is_one_record_and_numeric_keys_are_keyed_records() {
        let (f, r) = split_ok("{\n  \"id\": \"x\",\n  \"n\": 1\n}\n");
        assert_eq!(f, Framing::Single);
        assert_eq!(r.len(), 1);
        let (f, r) =
            split_ok("{\n \"0\": {\"p\": 1},\n \"2\": {\"p\": 2},\n \"10\": {\"p\": 3}\n}");
        assert_eq!(f, Framing::Keyed);
        let keys: Vec<_> = r.iter().map(|x| x.2.clone().unwrap_or_default()).collect();
        assert_eq!(keys, vec!["0", "2", "10"]);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 3, 4]);
        let (f, _) = split_ok("{\"0\": {\"p\": 1}, \"1\": {\"p\": 2}}");
        assert_eq!(f, Framing::Keyed);
    }
}
