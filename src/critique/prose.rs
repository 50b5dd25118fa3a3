//! Prose outside JSON: the explanation a judge writes before its verdict tag, and the
//! lookout for where the prose ends (a `[[A]]`-style tag, or a JSON object, possibly inside
//! a ```json fence).
//!
//! Text that might be the start of such a marker (`[`, `{`, a backtick, trailing whitespace)
//! is held back until it is decided, so the explanation shown while streaming never has to
//! take text back. The hold is bounded, which keeps the scan linear.

use super::board::Board;
use crate::verdict::{OutputFormat, Reading, Verdict};

/// Longest marker prefix worth holding (a fence with its language, blank lines, `{` and a quote).
const MAX_HELD: usize = 64;
/// Longest text between `[[` and `]]` that can be a verdict tag.
const MAX_TAG: usize = 12;

/// Where the prose ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Marker {
    /// A JSON object starts; its first key opens with this quote.
    Json(char),
    /// A verdict tag, in the format it belongs to.
    Tag(Reading, OutputFormat),
}

#[derive(Debug, PartialEq)]
enum Hold {
    Viable,
    Done(Marker),
    Dead,
}

#[derive(Debug)]
pub(crate) struct ProseScanner {
    format: OutputFormat,
    held_space: String,
    held: String,
    /// Verdict tags read (with the space before them), held out of the explanation until
    /// more prose follows: a closing tag is shown as the verdict, not as text.
    held_tags: String,
}

impl ProseScanner {
    pub(crate) fn new(format: OutputFormat) -> ProseScanner {
        ProseScanner {
            format,
            held_space: String::new(),
            held: String::new(),
            held_tags: String::new(),
        }
    }

    fn looks_for_json(&self) -> bool {
        matches!(
            self.format,
            OutputFormat::Auto | OutputFormat::Cj2Json | OutputFormat::JudgerBench
        )
    }

    fn looks_for_tags(&self) -> bool {
        matches!(
            self.format,
            OutputFormat::Auto
                | OutputFormat::Brackets
                | OutputFormat::Arena5
                | OutputFormat::Pointwise
        )
    }

    fn may_start_marker(&self, c: char) -> bool {
        match c {
            '{' | '`' => self.looks_for_json(),
            '[' => self.looks_for_tags(),
            _ => false,
        }
    }

    /// Reads one character. When it completes a marker, returns it with whatever held text
    /// followed the marker (to be read by whatever comes next).
    pub(crate) fn push(&mut self, c: char, board: &mut Board) -> Option<(Marker, String)> {
        if self.held.is_empty() {
            if c.is_whitespace() {
                self.held_space.push(c);
                return None;
            }
            if !self.may_start_marker(c) {
                self.flush_space(board);
                board.commit_prose_char(c);
                return None;
            }
        }
        self.held.push(c);
        match self.classify() {
            Hold::Viable => None,
            Hold::Done(marker) => {
                if matches!(marker, Marker::Tag(..)) {
                    self.held_tags.push_str(&self.held_space);
                    self.held_tags.push_str(&self.held);
                }
                self.held.clear();
                self.held_space.clear();
                Some((marker, String::new()))
            }
            Hold::Dead => {
                // The first held character is plain text; the rest may still start a marker.
                let held = std::mem::take(&mut self.held);
                self.flush_space(board);
                let mut chars = held.chars();
                if let Some(first) = chars.next() {
                    board.commit_prose_char(first);
                }
                let mut rest = chars;
                while let Some(ch) = rest.next() {
                    if let Some((marker, mut after)) = self.push(ch, board) {
                        after.extend(rest);
                        return Some((marker, after));
                    }
                }
                None
            }
        }
    }

    fn flush_space(&mut self, board: &mut Board) {
        if !self.held_tags.is_empty() {
            board.commit_prose(&self.held_tags);
            self.held_tags.clear();
        }
        if !self.held_space.is_empty() {
            board.commit_prose(&self.held_space);
            self.held_space.clear();
        }
    }

    /// The input ended: held text that never became a marker is prose (trailing whitespace
    /// and trailing tags are dropped).
    pub(crate) fn finish(&mut self, board: &mut Board) {
        if !self.held.is_empty() {
            self.flush_space(board);
            let held = std::mem::take(&mut self.held);
            board.commit_prose(held.trim_end());
        }
        self.held_space.clear();
        self.held_tags.clear();
    }

    fn classify(&self) -> Hold {
        if self.held.len() > MAX_HELD {
            return Hold::Dead;
        }
        let mut chars = self.held.chars().peekable();
        match chars.peek() {
            Some('`') => {
                for _ in 0..3 {
                    match chars.next() {
                        None => return Hold::Viable,
                        Some('`') => {}
                        Some(_) => return Hold::Dead,
                    }
                }
                // The fence's language, then the end of its line.
                while chars
                    .next_if(|c| c.is_alphanumeric() || "_+-".contains(*c))
                    .is_some()
                {}
                while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
                match chars.next() {
                    None => return Hold::Viable,
                    Some('\n') => {}
                    Some(_) => return Hold::Dead,
                }
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                match chars.next() {
                    None => Hold::Viable,
                    Some('{') => json_start(chars),
                    Some(_) => Hold::Dead,
                }
            }
            Some('{') => {
                chars.next();
                json_start(chars)
            }
            Some('[') => {
                chars.next();
                match chars.next() {
                    None => return Hold::Viable,
                    Some('[') => {}
                    Some(_) => return Hold::Dead,
                }
                let mut content = String::new();
                loop {
                    match chars.next() {
                        None => return Hold::Viable,
                        Some(']') => break,
                        Some('[' | '\n') => return Hold::Dead,
                        Some(c) if content.len() < MAX_TAG => content.push(c),
                        Some(_) => return Hold::Dead,
                    }
                }
                match (chars.next(), chars.next()) {
                    (None, _) => Hold::Viable,
                    (Some(']'), None) => match read_tag(&content, self.format) {
                        Some((reading, format)) => Hold::Done(Marker::Tag(reading, format)),
                        None => Hold::Dead,
                    },
                    _ => Hold::Dead,
                }
            }
            _ => Hold::Dead,
        }
    }
}

/// After a `{`: whitespace, then the quote of the first key completes a JSON start.
fn json_start(chars: impl Iterator<Item = char>) -> Hold {
    let mut chars = chars.skip_while(|c| c.is_whitespace());
    match (chars.next(), chars.next()) {
        (None, _) => Hold::Viable,
        (Some(q @ ('"' | '\'')), None) => Hold::Done(Marker::Json(q)),
        _ => Hold::Dead,
    }
}

/// Reads the text between `[[` and `]]` as the verdict of the given format (any, for Auto).
fn read_tag(content: &str, format: OutputFormat) -> Option<(Reading, OutputFormat)> {
    let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
    let brackets = || match compact.as_str() {
        "A" => Some(Verdict::A),
        "B" => Some(Verdict::B),
        "C" => Some(Verdict::TIE),
        _ => None,
    };
    let arena = || {
        if compact.contains(['>', '<', '=']) {
            compact.parse::<Verdict>().ok()
        } else {
            None
        }
    };
    let score = || {
        compact
            .parse::<f64>()
            .ok()
            .filter(|s| (0.0..=10.0).contains(s))
    };
    let pairwise = |v: Option<Verdict>, f| v.map(|v| (Reading::Pairwise(v), f));
    match format {
        OutputFormat::Brackets => pairwise(brackets(), OutputFormat::Brackets),
        OutputFormat::Arena5 => pairwise(arena(), OutputFormat::Arena5),
        OutputFormat::Pointwise => score().map(|s| (Reading::Score(s), OutputFormat::Pointwise)),
        OutputFormat::Auto => pairwise(brackets(), OutputFormat::Brackets)
            .or_else(|| pairwise(arena(), OutputFormat::Arena5))
            .or_else(|| score().map(|s| (Reading::Score(s), OutputFormat::Pointwise))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Outcome, Strength};

    #[test]
    fn tags_are_read_per_format() {
        assert_eq!(
            read_tag("A", OutputFormat::Brackets),
            Some((Reading::Pairwise(Verdict::A), OutputFormat::Brackets))
        );
        assert_eq!(read_tag("A>B", OutputFormat::Brackets), None);
        assert_eq!(
            read_tag("B >> A", OutputFormat::Arena5),
            Some((
                Reading::Pairwise(Verdict::new(Outcome::B, Strength::Strong)),
                OutputFormat::Arena5
            ))
        );
        assert_eq!(
            read_tag("7.5", OutputFormat::Auto),
            Some((Reading::Score(7.5), OutputFormat::Pointwise))
        );
        assert_eq!(read_tag("11", OutputFormat::Pointwise), None);
        assert_eq!(read_tag("link", OutputFormat::Auto), None);
        assert_eq!(read_tag("A", OutputFormat::Critique), None);
    }
}
