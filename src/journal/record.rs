//! The records a journal holds, one JSON object per line, tagged by `"type"`. Their field names
//! are the file format: change them only with a new `VERSION` and a reader for the old one.

use crate::dataset::Judgment;
use crate::verdict::Outcome;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The journal format version this build writes and reads.
pub const VERSION: u32 = 1;

/// One line of a journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    Decision(Decision),
    Undo(Undo),
    Judgment(JudgmentRecord),
}

impl Record {
    /// The record's sequence number; the header has none.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Record::Header(_) => None,
            Record::Decision(d) => Some(d.seq),
            Record::Undo(u) => Some(u.seq),
            Record::Judgment(j) => Some(j.seq),
        }
    }

    pub fn item(&self) -> Option<&str> {
        match self {
            Record::Header(_) => None,
            Record::Decision(d) => Some(&d.item),
            Record::Undo(u) => Some(&u.item),
            Record::Judgment(j) => Some(&j.item),
        }
    }
}

/// The first line: which dataset this journal belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// The dataset's file name (not its full path, so the pair can be moved together).
    pub dataset: String,
    /// `Dataset::fingerprint()` of the dataset when the journal was created.
    pub fingerprint: String,
    #[serde(with = "rfc3339")]
    pub created: OffsetDateTime,
}

/// A person's verdict on an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub seq: u64,
    pub item: String,
    #[serde(with = "outcome_label")]
    pub verdict: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub annotator: String,
    /// Made by an adjudicator: it settles an item on which the other annotators disagree.
    /// Absent (false) in journals written before teams, which read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adjudicator: bool,
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
}

/// Withdraws an earlier decision; the item's previous decision, if any, becomes current again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub seq: u64,
    pub item: String,
    /// The `seq` of the decision withdrawn.
    pub undoes: u64,
    pub annotator: String,
    #[serde(with = "rfc3339")]
    pub time: OffsetDateTime,
}

/// A judgment produced in Arbiter (a local or remote judge run), with how it was produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgmentRecord {
    pub seq: u64,
    pub item: String,
    pub judgment: Judgment,
    /// Free-form run metadata: model id, template, sampling settings, timings, token usage.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub run: serde_json::Map<String, serde_json::Value>,
}

/// Timestamps as RFC 3339 strings, which people and other tools read without help.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

/// Decisions are written `A`, `B` or `tie`, the labels `Verdict` uses, and read back with
/// `Verdict`'s lenient parser so a hand-edited journal still loads.
mod outcome_label {
    use crate::verdict::{Outcome, Verdict};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(o: &Outcome, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(o.label())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Outcome, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<Verdict>()
            .map(|v| v.outcome)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Provenance;
    use crate::verdict::Verdict;
    use time::macros::datetime;

    #[test]
    fn decision_line_has_the_documented_shape() {
        let r = Record::Decision(Decision {
            seq: 7,
            item: "q1".into(),
            verdict: Outcome::Tie,
            note: Some("both wrong".into()),
            annotator: "ann".into(),
            adjudicator: false,
            time: datetime!(2025-03-01 12:00:00 UTC),
        });
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(v["type"], "decision");
        assert_eq!(v["verdict"], "tie");
        assert_eq!(v["time"], "2025-03-01T12:00:00Z");
        // An ordinary decision keeps the pre-team shape, so older builds still read it.
        assert!(v.get("adjudicator").is_none());
        let back: Record = serde_json::from_value(v).expect("reads back");
        assert_eq!(back, r);
        let Record::Decision(mut d) = r else {
            unreachable!()
        };
        d.adjudicator = true;
        let v = serde_json::to_value(Record::Decision(d)).expect("serialises");
        assert_eq!(v["adjudicator"], true);
    }

    #[test]
    fn judgment_line_round_trips_with_run_metadata() {
        let mut run = serde_json::Map::new();
        run.insert(
            "model".into(),
            "opencompass/CompassJudger-2-7B-Instruct".into(),
        );
        run.insert(
            "tokens".into(),
            serde_json::json!({"prompt": 812, "completion": 301}),
        );
        let r = Record::Judgment(JudgmentRecord {
            seq: 1,
            item: "q1".into(),
            judgment: Judgment {
                judge: "cj2-7b".into(),
                verdict: Some(Verdict::B),
                output: Some("{\"Choice\": \"Model B\"}\nline two".into()),
                swapped: true,
                problem: None,
                provenance: Provenance::Journal,
                preference: None,
                run: Default::default(),
            },
            run,
        });
        let line = serde_json::to_string(&r).expect("serialises");
        assert!(!line.contains('\n'), "a record must stay on one line");
        let back: Record = serde_json::from_str(&line).expect("reads back");
        assert_eq!(back, r);
    }

    #[test]
    fn unknown_types_and_bad_verdicts_are_rejected() {
        assert!(serde_json::from_str::<Record>(r#"{"type":"mystery","seq":1}"#).is_err());
        let bad = r#"{"type":"decision","seq":1,"item":"x","verdict":"maybe","annotator":"a","time":"2025-01-01T00:00:00Z"}"#;
        assert!(serde_json::from_str::<Record>(bad).is_err());
    }
}
