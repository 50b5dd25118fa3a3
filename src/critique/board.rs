//! The critique under construction: where the scanners put what they read.
//!
//! The board owns the rules that keep a streamed critique trustworthy: fields are listed in a
//! stable order, their text only grows, their state only advances, and a verdict once shown
//! is never changed. Anything odd it meets is noted and reported when the stream finishes.

use super::schema::{canonical_key, normalize_key, Role, Shape};
use super::{Critique, Field, FieldState, EXPLANATION};
use crate::verdict::{OutputFormat, Reading, Verdict};
use std::collections::HashMap;

/// More problems than this are not worth listing one by one.
const MAX_NOTES: usize = 32;

pub(crate) struct Board {
    pub(crate) critique: Critique,
    base: OutputFormat,
    /// Field index by normalized key, for the fields a JSON object writes (last occurrence).
    by_key: HashMap<String, usize>,
    /// What each field decides, parallel to `critique.fields`.
    roles: Vec<Role>,
    explanation: Option<usize>,
    saw_key: bool,
    notes: Vec<String>,
}

impl Board {
    pub(crate) fn new(base: OutputFormat) -> Board {
        let mut board = Board {
            critique: Critique {
                format: base,
                fields: Vec::new(),
                verdict: None,
                score: None,
                problems: Vec::new(),
                rule: None,
                conflicting: None,
                raw_len: 0,
            },
            base,
            by_key: HashMap::new(),
            roles: Vec::new(),
            explanation: None,
            saw_key: false,
            notes: Vec::new(),
        };
        match base {
            OutputFormat::Cj2Json => board.list(Shape::Cj2),
            OutputFormat::Brackets
            | OutputFormat::Arena5
            | OutputFormat::Pointwise
            | OutputFormat::Critique
            | OutputFormat::Prose
            | OutputFormat::ResultMarker => {
                board.explanation = Some(board.push_field(EXPLANATION, FieldState::Absent));
            }
            OutputFormat::Auto | OutputFormat::JudgerBench => {}
        }
        board
    }

    /// Whether prose outside JSON is shown as the `explanation` field.
    pub(crate) fn shows_explanation(&self) -> bool {
        !matches!(self.base, OutputFormat::Cj2Json | OutputFormat::JudgerBench)
    }

    pub(crate) fn note(&mut self, note: String) {
        // Bounded so that hostile output (thousands of repeated keys) stays linear to read.
        if self.notes.len() < MAX_NOTES && !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn push_field(&mut self, key: &str, state: FieldState) -> usize {
        self.critique.fields.push(Field {
            key: key.to_string(),
            text: String::new(),
            state,
            superseded: false,
        });
        self.roles.push(Role::of(key));
        self.critique.fields.len() - 1
    }

    /// Lists a known shape's keys (absent until written), in the order its prompt asks.
    fn list(&mut self, shape: Shape) {
        for key in shape.keys() {
            let idx = self.push_field(key, FieldState::Absent);
            self.by_key.insert(normalize_key(key), idx);
        }
        if self.critique.format == OutputFormat::Auto {
            self.critique.format = match shape {
                Shape::Cj2 => OutputFormat::Cj2Json,
                Shape::JudgerBenchEn | Shape::JudgerBenchCn => OutputFormat::JudgerBench,
            };
        }
    }

    /// A key has been read in full: the field it starts. A repeated key starts a new entry
    /// and marks the earlier one superseded, so the last occurrence is the one that counts
    /// while nothing already shown disappears.
    pub(crate) fn open_field(&mut self, key: &str) -> usize {
        if !self.saw_key {
            self.saw_key = true;
            match self.base {
                OutputFormat::Auto => {
                    if let Some(shape) = Shape::announced_by(key) {
                        self.list(shape);
                    }
                }
                OutputFormat::JudgerBench => {
                    let shape = if Shape::announced_by(key) == Some(Shape::JudgerBenchCn) {
                        Shape::JudgerBenchCn
                    } else {
                        Shape::JudgerBenchEn
                    };
                    self.list(shape);
                }
                _ => {}
            }
        }
        let norm = normalize_key(key);
        if let Some(&idx) = self.by_key.get(&norm) {
            let field = &mut self.critique.fields[idx];
            if field.state == FieldState::Absent {
                field.state = FieldState::Filling;
                return idx;
            }
            field.superseded = true;
            let shown = field.key.clone();
            self.note(format!(
                "the key {shown:?} appears more than once; the last occurrence is used"
            ));
        }
        let idx = self.push_field(&canonical_key(key), FieldState::Filling);
        self.by_key.insert(norm, idx);
        idx
    }

    pub(crate) fn text_mut(&mut self, idx: usize) -> &mut String {
        &mut self.critique.fields[idx].text
    }

    /// A field's value has been read in full; if its key decides the verdict, decide it.
    pub(crate) fn complete(&mut self, idx: usize) {
        let field = &mut self.critique.fields[idx];
        if field.state == FieldState::Complete {
            return;
        }
        field.state = FieldState::Complete;
        match self.roles[idx].read(&field.key, &field.text) {
            Some(Ok(verdict)) => {
                let format = match self.roles[idx] {
                    Role::Winner => OutputFormat::JudgerBench,
                    _ => OutputFormat::Cj2Json,
                };
                let key = field.key.clone();
                self.decide(verdict, &key, format);
            }
            Some(Err(problem)) => self.note(problem),
            None => {}
        }
    }

    fn decide(&mut self, verdict: Verdict, source: &str, format: OutputFormat) {
        match self.critique.verdict {
            None => {
                self.critique.verdict = Some(verdict);
                if self.critique.format == OutputFormat::Auto {
                    self.critique.format = format;
                }
            }
            Some(shown) if shown != verdict => self.note(format!(
                "{source:?} later says {verdict}, but the verdict {shown} was already given; \
                 the first is kept"
            )),
            Some(_) => {}
        }
    }

    /// A verdict tag showed the format of an `Auto` critique.
    pub(crate) fn detect_format(&mut self, format: OutputFormat) {
        if self.critique.format == OutputFormat::Auto {
            self.critique.format = format;
        }
    }

    /// A fallback reading decided the critique.
    pub(crate) fn decide_reading(&mut self, reading: Reading, format: OutputFormat) {
        match reading {
            Reading::Pairwise(verdict) => self.decide(verdict, "verdict tag", format),
            Reading::Score(score) => {
                if self.critique.score.is_none() {
                    self.critique.score = Some(score);
                    if self.critique.format == OutputFormat::Auto {
                        self.critique.format = format;
                    }
                }
            }
        }
    }

    /// Appends prose to the explanation (created on its first visible character).
    pub(crate) fn commit_prose(&mut self, text: &str) {
        if !self.shows_explanation() {
            return;
        }
        let idx = match self.explanation {
            Some(idx) => idx,
            None if text.trim().is_empty() => return,
            None => {
                let idx = self.push_field(EXPLANATION, FieldState::Absent);
                self.explanation = Some(idx);
                idx
            }
        };
        let field = &mut self.critique.fields[idx];
        if field.state == FieldState::Complete {
            return;
        }
        let text = if field.text.is_empty() {
            text.trim_start()
        } else {
            text
        };
        if !text.is_empty() {
            field.text.push_str(text);
            field.state = FieldState::Filling;
        }
    }

    pub(crate) fn commit_prose_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.commit_prose(c.encode_utf8(&mut buf));
    }

    /// The prose before a JSON object or a verdict tag (or before the end) is all there is.
    pub(crate) fn close_prose(&mut self) {
        if let Some(idx) = self.explanation {
            self.critique.fields[idx].state = FieldState::Complete;
        }
    }

    /// Reports what could not be read and hands the critique over.
    pub(crate) fn finish(mut self) -> Critique {
        for (idx, field) in self.critique.fields.iter().enumerate() {
            if field.state == FieldState::Filling && Some(idx) != self.explanation {
                let note = format!(
                    "the output ended inside {:?}: the field is cut off (the judge probably \
                     hit its token limit); what was read is kept",
                    field.key
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
            }
        }
        self.critique.problems = self.notes;
        tracing::debug!(
            bytes = self.critique.raw_len,
            fields = self.critique.fields.len(),
            verdict = ?self.critique.verdict,
            problems = self.critique.problems.len(),
            "critique read"
        );
        self.critique
    }
}
