//! Turning a file's bytes into text a format reader can use: gzip is undone transparently (by
//! its magic number, not its name), a byte-order mark is dropped, and files that are empty,
//! binary or not JSON at all are refused with a message that says what was seen.

use super::DatasetError;
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// The first bytes of a gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How many leading bytes decide whether a file is binary: enough to see past a header, small
/// enough that the check costs nothing on a 300 MB file.
const SNIFF_BYTES: usize = 8 * 1024;

/// Reads a whole file, telling a missing file apart from other I/O failures.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DatasetError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DatasetError::NotFound {
            path: path.to_path_buf(),
        },
        _ => DatasetError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Undoes gzip (possibly several concatenated members, as `cat a.gz b.gz` makes), strips a
/// UTF-8 byte-order mark and checks that what is left is non-empty text starting like JSON.
pub(crate) fn decode<'a>(path: &Path, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, DatasetError> {
    let text: Cow<'a, [u8]> = if super::parquet::is_parquet(bytes) {
        Cow::Owned(super::parquet::to_json_lines(path, bytes)?)
    } else if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|source| DatasetError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    };
    let text = strip_bom(text);
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Err(DatasetError::Empty {
            path: path.to_path_buf(),
        });
    };
    if looks_binary(&text[..text.len().min(SNIFF_BYTES)]) {
        return Err(DatasetError::Binary {
            path: path.to_path_buf(),
        });
    }
    if !matches!(text[first], b'{' | b'[') {
        return Err(DatasetError::NotJson {
            path: path.to_path_buf(),
            start: start_of(&text[first..]),
        });
    }
    Ok(text)
}

fn strip_bom(text: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    const BOM: &[u8] = b"\xef\xbb\xbf";
    match text {
        Cow::Borrowed(b) => Cow::Borrowed(b.strip_prefix(BOM).unwrap_or(b)),
        Cow::Owned(mut v) => {
            if v.starts_with(BOM) {
                v.drain(..BOM.len());
            }
            Cow::Owned(v)
        }
    }
}

/// A file is binary when its head has a NUL byte, bytes that are not UTF-8 (a character cut at
/// the end of the window is fine), or many control characters. JSON text has none of these.
fn looks_binary(head: &[u8]) -> bool {
    if head.contains(&0) {
        return true;
    }
    if let Err(e) = std::str::from_utf8(head) {
        // `error_len() == None` means the window ends inside a valid-looking character.
        if e.error_len().is_some() {
            return true;
        }
    }
    let controls = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c))
        .count();
    controls * 20 > head.len()
}

/// The first line of a file, shortened, for an error message.
fn start_of(text: &[u8]) -> String {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(&line[..line.len().min(60)]);
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn p() -> &'static Path {
        Path::new("x.jsonl")
    }

    #[test]
    fn plain_text_passes_through_borrowed() {
        let t = decode(p(), b"{\"a\":1}\n").expect("json");
        assert!(matches!(t, Cow::Borrowed(_)));
    }

    #[test]
    fn gzip_is_detected_by_magic_and_concatenated_members_are_read() {
        let mut all = Vec::new();
        for part in ["{\"a\":1}\n", "{\"a\":2}\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part.as_bytes()).expect("write");
            all.extend(enc.finish().expect("finish"));
        }
        let t = decode(p(), &all).expect("gzip");
        assert_eq!(&*t, b"{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn truncated_gzip_is_a_gzip_error() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[b'{'; 5000]).expect("write");
        let gz = enc.finish().expect("finish");
        let err = decode(p(), &gz[..gz.len() / 2]).expect_err("cut short");
        assert!(matches!(err, DatasetError::Gzip { .. }), "{err}");
    }

    #[test]
    fn empty_whitespace_binary_and_non_json_are_refused() {
        assert!(matches!(decode(p(), b""), Err(DatasetError::Empty { .. })));
        assert!(matches!(
            decode(p(), b" \n\r\n\t"),
            Err(DatasetError::Empty { .. })
        ));
        assert!(matches!(
            decode(p(), b"PK\x03\x04\x00\x00binary"),
            Err(DatasetError::Binary { .. })
        ));
        assert!(matches!(
            decode(p(), b"{\xff\xfe\xfd}"),
            Err(DatasetError::Binary { .. })
        ));
        match decode(p(), b"id,question\n1,hello\n") {
            Err(DatasetError::NotJson { start, .. }) => assert_eq!(start, "id,question"),
            other => panic!("expected NotJson, got {other:?}"),
        }
    }

    #[test]
    fn bom_is_dropped_and_a_character_cut_by_the_window_is_not_binary() {
        let t = decode(p(), b"\xef\xbb\xbf[1]").expect("bom");
        assert_eq!(&*t, b"[1]");
        let mut text = b"[\"".to_vec();
        while text.len() < SNIFF_BYTES - 1 {
            text.push(b'a');
        }
        text.extend("中\"]".as_bytes());
        assert!(decode(p(), &text).is_ok());
    }
}
