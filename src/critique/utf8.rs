//! Incremental UTF-8 decoding of a judge's byte stream.
//!
//! Chunks arrive as raw bytes and may end in the middle of a multi-byte character (CJK and
//! emoji arrive in pieces). `Utf8Stream` keeps the incomplete tail between chunks and decodes
//! exactly as `String::from_utf8_lossy` would decode the whole stream at once, so the text a
//! critique shows never depends on where the chunks were cut.

use std::str;

const REPLACEMENT: &str = "\u{FFFD}";

/// Decoder state carried between chunks: at most three bytes of a started character.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Stream {
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Stream {
    /// Decodes `chunk`, handing every complete piece of text to `emit` in order.
    pub(crate) fn feed(&mut self, chunk: &[u8], emit: &mut impl FnMut(&str)) {
        let mut rest = chunk;
        if self.pending_len > 0 {
            // Join the held tail with just enough new bytes to finish (or refute) it; a UTF-8
            // character is at most four bytes, so four new bytes always settle the question.
            let take = rest.len().min(4);
            let held = self.pending_len;
            let mut joined = [0u8; 8];
            joined[..held].copy_from_slice(&self.pending[..held]);
            joined[held..held + take].copy_from_slice(&rest[..take]);
            self.pending_len = 0;
            let consumed = decode_lossy(&joined[..held + take], emit);
            if consumed < held {
                // The whole new chunk is still part of one unfinished character.
                let tail = &joined[consumed..held + take];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                return;
            }
            rest = &rest[consumed - held..];
        }
        let consumed = decode_lossy(rest, emit);
        let tail = &rest[consumed..];
        self.pending[..tail.len()].copy_from_slice(tail);
        self.pending_len = tail.len();
    }

    /// Ends the stream: an unfinished character becomes one replacement character, as
    /// `from_utf8_lossy` does for a truncated sequence at the end of its input.
    pub(crate) fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if self.pending_len > 0 {
            self.pending_len = 0;
            emit(REPLACEMENT);
        }
    }
}

/// Decodes `bytes` lossily up to an incomplete trailing sequence; returns how many bytes it
/// consumed (everything but that tail, which is at most three bytes).
fn decode_lossy(bytes: &[u8], emit: &mut impl FnMut(&str)) -> usize {
    let mut at = 0;
    loop {
        match str::from_utf8(&bytes[at..]) {
            Ok(text) => {
                if !text.is_empty() {
                    emit(text);
                }
                return bytes.len();
            }
            Err(err) => {
                let valid = err.valid_up_to();
                if valid > 0 {
                    let text = str::from_utf8(&bytes[at..at + valid])
                        .expect("valid_up_to marks a prefix that is valid UTF-8");
                    emit(text);
                }
                match err.error_len() {
                    Some(bad) => {
                        emit(REPLACEMENT);
                        at += valid + bad;
                    }
                    None => return at + valid,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_in_chunks(bytes: &[u8], sizes: &[usize]) -> String {
        let mut stream = Utf8Stream::default();
        let mut out = String::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let size = sizes
                .get(i % sizes.len().max(1))
                .copied()
                .unwrap_or(1)
                .max(1);
            let end = (at + size).min(bytes.len());
            stream.feed(&bytes[at..end], &mut |s| out.push_str(s));
            at = end;
            i += 1;
        }
        stream.finish(&mut |s| out.push_str(s));
        out
    }

    #[test]
    fn split_characters_are_joined() {
        let text = "判断 😀 ok";
        for size in 1..6 {
            assert_eq!(decode_in_chunks(text.as_bytes(), &[size]), text);
        }
    }

    #[test]
    fn truncated_character_at_the_end_is_one_replacement() {
        let bytes = &"ab😀".as_bytes()[..4];
        assert_eq!(decode_in_chunks(bytes, &[1]), "ab\u{FFFD}");
    }

    #[test]
    fn invalid_lead_byte_followed_by_ascii_keeps_the_ascii() {
        assert_eq!(decode_in_chunks(&[0xE2, b'A', b'B'], &[1]), "\u{FFFD}AB");
    }

    proptest! {
        #[test]
        fn any_split_decodes_like_from_utf8_lossy(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            sizes in proptest::collection::vec(1usize..7, 1..8),
        ) {
            let expected = String::from_utf8_lossy(&bytes).into_owned();
            prop_assert_eq!(decode_in_chunks(&bytes, &sizes), expected);
        }

        #[test]
        fn any_split_of_mixed_text_is_lossless(
            text in "[a-z\u{4e00}-\u{4e20}\u{1F600}-\u{1F610} \"\\\\]{0,40}",
            sizes in proptest::collection::vec(1usize..7, 1..8),
        ) {
            prop_assert_eq!(decode_in_chunks(text.as_bytes(), &sizes), text);
        }
    }
}
