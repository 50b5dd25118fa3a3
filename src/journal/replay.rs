//! Reading a journal back: the current decision per item, every judgment, and an account of
//! every line that could not be read. Damage is reported, never fatal, and never hides a
//! readable record: a journal is the only copy of a person's work.

use super::record::{Decision, Header, JudgmentRecord, Record};
use crate::dataset::{Dataset, Provenance};
use serde::Serialize;
use std::collections::HashMap;

/// The last line of the journal was cut off mid-write (power loss, `kill -9`). It is skipped;
/// the next append starts on a fresh line so the fragment stays where it is, untouched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// 1-based line number.
    pub line: usize,
    /// Length of the fragment in bytes.
    pub bytes: usize,
}

/// Something in the journal that replay passed over or could not place. Each is also logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplayWarning {
    #[error("line {line}: a {bytes}-byte fragment of a record cut off by an earlier interrupted write was skipped")]
    TornLine { line: usize, bytes: usize },
    #[error("line {line}: unreadable record skipped ({reason}); the line is kept in the file, inspect it by hand")]
    BadLine { line: usize, reason: String },
    #[error("line {line}: a second header was ignored")]
    ExtraHeader { line: usize },
    #[error("line {line}: item {item:?} is not in the dataset; its record is kept but not shown")]
    UnknownItem { line: usize, item: String },
    #[error("line {line}: undo of decision {undoes} on item {item:?}, which is not a live decision; ignored")]
    DanglingUndo {
        line: usize,
        item: String,
        undoes: u64,
    },
}

/// The live decisions of every item: a stack per item, so that an undo brings back the decision
/// it replaced.
#[derive(Clone, Debug, Default)]
pub(crate) struct Decisions {
    live: HashMap<String, Vec<Decision>>,
}

impl Decisions {
    pub(crate) fn push(&mut self, d: Decision) {
        self.live.entry(d.item.clone()).or_default().push(d);
    }

    /// Withdraws decision `seq` of `item`; false when it is not live.
    pub(crate) fn withdraw(&mut self, item: &str, seq: u64) -> bool {
        let Some(stack) = self.live.get_mut(item) else {
            return false;
        };
        let Some(pos) = stack.iter().rposition(|d| d.seq == seq) else {
            return false;
        };
        stack.remove(pos);
        if stack.is_empty() {
            self.live.remove(item);
        }
        true
    }

    pub(crate) fn current(&self, item: &str) -> Option<&Decision> {
        self.live.get(item).and_then(|s| s.last())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Decision> {
        self.live.values().filter_map(|s| s.last())
    }
}

/// What a journal says.
#[derive(Clone, Debug)]
pub struct Replay {
    /// `None` only while a journal has no header yet (a new or empty file).
    pub header: Option<Header>,
    /// Every readable record after the header, in file order.
    pub history: Vec<Record>,
    /// Journal judgments in file order (provenance `Journal`).
    pub judgments: Vec<JudgmentRecord>,
    pub torn_tail: Option<TornTail>,
    pub warnings: Vec<ReplayWarning>,
    pub(crate) decisions: Decisions,
    /// The line of each entry of `judgments`, for warnings raised when they are applied.
    judgment_lines: Vec<usize>,
    pub(crate) last_seq: u64,
    /// True when the file does not end with a newline, so the next append must write one first.
    pub(crate) needs_newline: bool,
    /// Readable records that came before any header (a journal without a header is not ours).
    pub(crate) records_before_header: usize,
}

impl Replay {
    /// The current decision on `item`: its latest decision that has not been undone.
    pub fn decision(&self, item: &str) -> Option<&Decision> {
        self.decisions.current(item)
    }

    /// The current decision of every decided item, in no particular order.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter()
    }

    /// True when replay found nothing to report.
    pub fn is_clean(&self) -> bool {
        self.torn_tail.is_none() && self.warnings.is_empty()
    }

    /// Replays journal bytes. `known` says whether an item id is in the dataset.
    pub(crate) fn from_bytes(bytes: &[u8], known: &dyn Fn(&str) -> bool) -> Replay {
        let mut r = Replay {
            header: None,
            history: Vec::new(),
            judgments: Vec::new(),
            torn_tail: None,
            warnings: Vec::new(),
            decisions: Decisions::default(),
            judgment_lines: Vec::new(),
            last_seq: 0,
            needs_newline: bytes.last().is_some_and(|&b| b != b'\n'),
            records_before_header: 0,
        };
        let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        if bytes.last() == Some(&b'\n') || bytes.is_empty() {
            // split leaves an empty piece after the final newline: not a line.
            lines.pop();
        }
        let count = lines.len();
        for (i, raw) in lines.into_iter().enumerate() {
            let line = i + 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Record>(raw) {
                Ok(record) => r.take(line, record, known),
                Err(e) => {
                    let last = line == count;
                    if last && (r.needs_newline || e.is_eof()) {
                        tracing::warn!(line, bytes = raw.len(), "journal: torn last line skipped");
                        r.torn_tail = Some(TornTail {
                            line,
                            bytes: raw.len(),
                        });
                    } else if e.is_eof() {
                        r.warn(ReplayWarning::TornLine {
                            line,
                            bytes: raw.len(),
                        });
                    } else {
                        r.warn(ReplayWarning::BadLine {
                            line,
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        r
    }

    fn warn(&mut self, w: ReplayWarning) {
        tracing::warn!("journal: {w}");
        self.warnings.push(w);
    }

    fn take(&mut self, line: usize, record: Record, known: &dyn Fn(&str) -> bool) {
        if let Record::Header(h) = record {
            if self.header.is_some() {
                self.warn(ReplayWarning::ExtraHeader { line });
            } else {
                self.header = Some(h);
            }
            return;
        }
        if self.header.is_none() {
            self.records_before_header += 1;
        }
        if let Some(seq) = record.seq() {
            self.last_seq = self.last_seq.max(seq);
        }
        if let Some(item) = record.item() {
            if !known(item) {
                self.warn(ReplayWarning::UnknownItem {
                    line,
                    item: item.to_string(),
                });
            }
        }
        match &record {
            Record::Header(_) => {}
            Record::Decision(d) => self.decisions.push(d.clone()),
            Record::Undo(u) => {
                if !self.decisions.withdraw(&u.item, u.undoes) {
                    self.warn(ReplayWarning::DanglingUndo {
                        line,
                        item: u.item.clone(),
                        undoes: u.undoes,
                    });
                }
            }
            Record::Judgment(j) => {
                self.judgments.push(j.clone());
                self.judgment_lines.push(line);
            }
        }
        self.history.push(record);
    }
}

/// Adds the journal's judgments to their items (provenance `Journal`). A judgment already on
/// the item is not added twice, so applying the same replay again changes nothing. Judgments of
/// items the dataset does not have are returned as warnings.
pub fn apply(replay: &Replay, dataset: &mut Dataset) -> Vec<ReplayWarning> {
    let mut warnings = Vec::new();
    for (rec, &line) in replay.judgments.iter().zip(&replay.judgment_lines) {
        let Some(item) = dataset.get_mut(&rec.item) else {
            tracing::warn!(item = %rec.item, "journal judgment for an item not in the dataset");
            warnings.push(ReplayWarning::UnknownItem {
                line,
                item: rec.item.clone(),
            });
            continue;
        };
        let mut judgment = rec.judgment.clone();
        judgment.provenance = Provenance::Journal;
        judgment.run = rec.run.clone();
        if !item.judgments.contains(&judgment) {
            item.judgments.push(judgment);
        }
    }
    warnings
}
