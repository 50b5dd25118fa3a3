//! Unit tests of the journal: naming, append and replay, undo, damage, foreign journals.

use super::*;
use crate::dataset::{Format, Item, Message, Response};
use crate::verdict::Verdict;
use std::fs;

fn item(id: &str) -> Item {
    Item {
        id: id.to_string(),
        category: None,
        language: None,
        context: vec![Message::new("user", format!("question {id}"))],
        response_a: Response::default(),
        response_b: Response::default(),
        judgments: Vec::new(),
        gold: None,
        meta: Default::default(),
    }
}

fn dataset(dir: &Path, name: &str, ids: &[&str]) -> Dataset {
    Dataset::new(
        dir.join(name),
        Format::Native,
        ids.iter().map(|id| item(id)).collect(),
    )
    .expect("unique ids")
}

fn judgment(judge: &str, verdict: Verdict) -> Judgment {
    Judgment {
        judge: judge.to_string(),
        verdict: Some(verdict),
        output: Some("[[A]]".into()),
        swapped: false,
        problem: None,
        provenance: Provenance::Dataset,
        preference: None,
        run: Default::default(),
    }
}

fn current(replay: &Replay, item: &str) -> Option<Outcome> {
    replay.decision(item).map(|d| d.verdict)
}

#[test]
fn journal_sits_beside_the_dataset() {
    assert_eq!(
        default_path(Path::new("/data/runs/demo.jsonl")),
        PathBuf::from("/data/runs/demo.jsonl.arbiter-journal.jsonl")
    );
    assert_eq!(
        default_path(Path::new("demo.jsonl.gz")),
        PathBuf::from("demo.jsonl.gz.arbiter-journal.jsonl")
    );
}

#[test]
fn create_append_and_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "demo.jsonl", &["q1", "q2", "q3"]);
    let (mut j, replay) = Journal::open(&ds).expect("creates");
    assert_eq!(
        j.path(),
        dir.path().join("demo.jsonl.arbiter-journal.jsonl")
    );
    assert!(replay.is_clean());
    assert!(replay.history.is_empty());
    let header = replay.header.clone().expect("header written");
    assert_eq!(header.dataset, "demo.jsonl");
    assert_eq!(header.fingerprint, ds.fingerprint());

    j.set_annotator("ann");
    let d1 = j
        .record_decision("q1", Outcome::A, Some("clearer"))
        .expect("saved");
    let d2 = j.record_decision("q2", Outcome::Tie, None).expect("saved");
    assert!(d2.seq > d1.seq);
    let mut run = serde_json::Map::new();
    run.insert("model".into(), "local-7b".into());
    let jr = j
        .record_judgment("q3", judgment("local-7b", Verdict::B), run)
        .expect("saved");
    assert_eq!(jr.judgment.provenance, Provenance::Journal);
    drop(j);

    let text = fs::read_to_string(dir.path().join("demo.jsonl.arbiter-journal.jsonl"))
        .expect("journal readable");
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a first line")).expect("json");
    assert_eq!(first["type"], "header");
    assert_eq!(first["version"], VERSION);
    assert_eq!(text.lines().count(), 4);
    assert!(text.ends_with('\n'));

    let (mut j, replay) = Journal::open(&ds).expect("reopens");
    assert!(replay.is_clean(), "{:?}", replay.warnings);
    assert_eq!(replay.header, Some(header));
    assert_eq!(current(&replay, "q1"), Some(Outcome::A));
    assert_eq!(
        replay.decision("q1").and_then(|d| d.note.as_deref()),
        Some("clearer")
    );
    assert_eq!(
        replay.decision("q1").map(|d| d.annotator.as_str()),
        Some("ann")
    );
    assert_eq!(current(&replay, "q2"), Some(Outcome::Tie));
    assert_eq!(current(&replay, "q3"), None);
    assert_eq!(replay.judgments.len(), 1);
    assert_eq!(replay.history.len(), 3);
    // Sequence numbers keep growing across sessions.
    let d3 = j.record_decision("q3", Outcome::B, None).expect("saved");
    assert!(d3.seq > jr.seq);
}

#[test]
fn unknown_items_are_refused_when_recording() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1"]);
    let (mut j, _) = Journal::open(&ds).expect("creates");
    let err = j
        .record_decision("nope", Outcome::A, None)
        .expect_err("unknown id");
    assert!(matches!(err, JournalError::UnknownItem { .. }));
    assert!(err.to_string().contains("d.jsonl"));
}

#[test]
fn undo_walks_back_through_decisions_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
    let (mut j, _) = Journal::open(&ds).expect("creates");
    j.record_decision("q1", Outcome::A, None).expect("saved");
    j.record_decision("q1", Outcome::B, None).expect("saved");
    let third = j.record_decision("q1", Outcome::Tie, None).expect("saved");
    j.record_decision("q2", Outcome::A, None).expect("saved");

    let u = j.undo("q1").expect("undo tie");
    assert_eq!(u.undoes, third.seq);
    assert_eq!(j.decision("q1").map(|d| d.verdict), Some(Outcome::B));
    drop(j);

    let (mut j, replay) = Journal::open(&ds).expect("reopens");
    assert_eq!(current(&replay, "q1"), Some(Outcome::B));
    assert_eq!(current(&replay, "q2"), Some(Outcome::A));
    j.undo("q1").expect("undo B");
    // A new decision after an undo stacks on what is left.
    j.record_decision("q1", Outcome::Tie, None).expect("saved");
    j.undo("q1").expect("undo the new tie");
    assert_eq!(j.decision("q1").map(|d| d.verdict), Some(Outcome::A));
    j.undo("q1").expect("undo A");
    assert!(j.decision("q1").is_none());
    assert!(matches!(
        j.undo("q1"),
        Err(JournalError::NothingToUndo { .. })
    ));
    drop(j);

    let (_, replay) = Journal::open(&ds).expect("reopens");
    assert!(replay.is_clean(), "{:?}", replay.warnings);
    assert_eq!(current(&replay, "q1"), None);
    assert_eq!(current(&replay, "q2"), Some(Outcome::A));
}

#[test]
fn a_journal_of_another_dataset_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = dataset(dir.path(), "ours.jsonl", &["q1", "q2"]);
    let (_, _) = Journal::open(&ours).expect("creates");
    let theirs = dataset(dir.path(), "theirs.jsonl", &["x1"]);
    let path = default_path(&ours.path);
    let err = Journal::open_at(&theirs, &path).expect_err("foreign journal");
    assert!(matches!(err, JournalError::Foreign { .. }));
    let msg = err.to_string();
    assert!(msg.contains("ours.jsonl.arbiter-journal.jsonl"), "{msg}");
    assert!(msg.contains("theirs.jsonl"), "{msg}");
    assert!(msg.contains("move the journal aside"), "{msg}");
}

#[test]
fn records_without_a_header_are_not_ours() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1"]);
    let path = default_path(&ds.path);
    fs::write(
        &path,
        "{\"type\":\"decision\",\"seq\":1,\"item\":\"q1\",\"verdict\":\"A\",\"annotator\":\"a\",\"time\":\"2025-01-01T00:00:00Z\"}\n",
    )
    .expect("write");
    let err = Journal::open(&ds).expect_err("no header");
    assert!(matches!(err, JournalError::MissingHeader { .. }));
    // Nothing was written to a file that is not ours.
    assert_eq!(fs::read_to_string(&path).expect("read").lines().count(), 1);
}

#[test]
fn an_empty_file_gets_a_header() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1"]);
    fs::write(default_path(&ds.path), "").expect("write");
    let (_, replay) = Journal::open(&ds).expect("opens");
    assert!(replay.header.is_some());
    let (_, again) = Journal::open(&ds).expect("reopens");
    assert!(again.is_clean());
}

/// Writes a journal of a few records and returns its bytes and where its last line starts.
fn sample_journal(ds: &Dataset) -> (Vec<u8>, usize) {
    let (mut j, _) = Journal::open(ds).expect("creates");
    j.record_decision("q1", Outcome::A, Some("first"))
        .expect("saved");
    j.record_decision("q2", Outcome::B, None).expect("saved");
    j.record_judgment("q1", judgment("j", Verdict::TIE), Default::default())
        .expect("saved");
    j.record_decision("q1", Outcome::Tie, Some("changed my mind"))
        .expect("saved");
    let path = j.path().to_path_buf();
    drop(j);
    let bytes = fs::read(path).expect("read");
    let body = &bytes[..bytes.len() - 1];
    let last_start = body
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("several lines")
        + 1;
    (bytes, last_start)
}

#[test]
fn a_torn_last_line_is_skipped_at_every_cut_and_loses_nothing_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
    let (bytes, last_start) = sample_journal(&ds);
    let path = default_path(&ds.path);
    for cut in last_start..=bytes.len() {
        fs::write(&path, &bytes[..cut]).expect("truncate");
        let (mut j, replay) =
            Journal::open(&ds).unwrap_or_else(|e| panic!("cut at {cut}: replay failed: {e}"));
        let whole_line = cut >= bytes.len() - 1;
        let fragment = cut > last_start && !whole_line;
        assert_eq!(replay.torn_tail.is_some(), fragment, "cut at {cut}");
        assert!(
            replay.warnings.is_empty(),
            "cut at {cut}: {:?}",
            replay.warnings
        );
        // The three records before the torn one are all there.
        assert_eq!(
            replay.history.len(),
            if whole_line { 4 } else { 3 },
            "cut at {cut}"
        );
        assert_eq!(replay.judgments.len(), 1);
        assert_eq!(current(&replay, "q2"), Some(Outcome::B));
        let expected_q1 = if whole_line { Outcome::Tie } else { Outcome::A };
        assert_eq!(current(&replay, "q1"), Some(expected_q1), "cut at {cut}");

        // The next append starts on its own line and the fragment's bytes stay untouched.
        j.record_decision("q2", Outcome::A, None).expect("saved");
        drop(j);
        let after = fs::read(&path).expect("read");
        assert_eq!(
            &after[..cut],
            &bytes[..cut],
            "cut at {cut}: bytes rewritten"
        );
        let (_, replay) = Journal::open(&ds).expect("reopens");
        assert!(replay.torn_tail.is_none(), "cut at {cut}");
        assert_eq!(current(&replay, "q2"), Some(Outcome::A), "cut at {cut}");
        assert_eq!(current(&replay, "q1"), Some(expected_q1), "cut at {cut}");
        assert_eq!(
            replay.warnings.len(),
            usize::from(fragment),
            "cut at {cut}: {:?}",
            replay.warnings
        );
        if fragment {
            assert!(matches!(
                replay.warnings[0],
                ReplayWarning::TornLine { line: 5, .. }
            ));
        }
    }
}

#[test]
fn a_bad_line_in_the_middle_is_reported_and_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
    let (bytes, last_start) = sample_journal(&ds);
    let mut damaged = bytes[..last_start].to_vec();
    damaged.extend_from_slice(b"{\"type\":\"mystery\"}\nnot json at all\n");
    damaged.extend_from_slice(&bytes[last_start..]);
    fs::write(default_path(&ds.path), &damaged).expect("write");
    let (_, replay) = Journal::open(&ds).expect("opens");
    assert!(replay.torn_tail.is_none());
    assert_eq!(replay.warnings.len(), 2, "{:?}", replay.warnings);
    assert!(replay
        .warnings
        .iter()
        .all(|w| matches!(w, ReplayWarning::BadLine { .. })));
    assert_eq!(current(&replay, "q1"), Some(Outcome::Tie));
    assert_eq!(replay.history.len(), 4);
}

#[test]
fn records_of_unknown_items_and_dangling_undos_are_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1"]);
    let (j, _) = Journal::open(&ds).expect("creates");
    let path = j.path().to_path_buf();
    drop(j);
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("{\"type\":\"decision\",\"seq\":1,\"item\":\"gone\",\"verdict\":\"B\",\"annotator\":\"a\",\"time\":\"2025-01-01T00:00:00Z\"}\n");
    text.push_str("{\"type\":\"undo\",\"seq\":2,\"item\":\"q1\",\"undoes\":9,\"annotator\":\"a\",\"time\":\"2025-01-01T00:00:01Z\"}\n");
    fs::write(&path, text).expect("write");
    let (mut j, replay) = Journal::open(&ds).expect("opens");
    assert_eq!(
        replay.warnings,
        vec![
            ReplayWarning::UnknownItem {
                line: 2,
                item: "gone".into()
            },
            ReplayWarning::DanglingUndo {
                line: 3,
                item: "q1".into(),
                undoes: 9
            },
        ]
    );
    // The unknown item's decision is kept, not dropped.
    assert_eq!(current(&replay, "gone"), Some(Outcome::B));
    let d = j.record_decision("q1", Outcome::A, None).expect("saved");
    assert_eq!(d.seq, 3);
}

#[test]
fn apply_adds_journal_judgments_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
    ds.get_mut("q1")
        .expect("q1")
        .judgments
        .push(judgment("from-file", Verdict::A));
    let (mut j, _) = Journal::open(&ds).expect("creates");
    j.record_judgment("q1", judgment("local", Verdict::B), Default::default())
        .expect("saved");
    drop(j);
    let (_, replay) = Journal::open(&ds).expect("reopens");
    assert!(apply(&replay, &mut ds).is_empty());
    assert!(apply(&replay, &mut ds).is_empty());
    let q1 = ds.get("q1").expect("q1");
    assert_eq!(q1.judgments.len(), 2);
    assert_eq!(q1.judgments[1].judge, "local");
    assert_eq!(q1.judgments[1].provenance, Provenance::Journal);
    assert_eq!(q1.judgments[0].provenance, Provenance::Dataset);

    let mut other = dataset(dir.path(), "d.jsonl", &["q2"]);
    let warnings = apply(&replay, &mut other);
    assert_eq!(
        warnings,
        vec![ReplayWarning::UnknownItem {
            line: 2,
            item: "q1".into()
        }]
    );
}

#[test]
fn annotator_names_must_name_a_file_anywhere() {
    assert_eq!(check_annotator("  ann-b.2_x ").expect("fine"), "ann-b.2_x");
    assert_eq!(
        check_annotator("Zoë").expect("letters of any script"),
        "Zoë"
    );
    for bad in [
        "", "  ", "a/b", "..", ".hidden", "-rf", "a b", "con", "NUL.txt", "com3",
    ] {
        assert!(
            matches!(check_annotator(bad), Err(JournalError::BadAnnotator { .. })),
            "{bad:?} was accepted"
        );
    }
    assert!(check_annotator(&"x".repeat(65)).is_err());
    assert!(check_annotator("com10").is_ok());
}

#[test]
fn annotator_journals_live_in_the_team_folder_and_one_process_holds_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
    let path = annotator_path(&ds.path, "ann");
    assert_eq!(path, dir.path().join("d.jsonl.arbiter/ann.journal.jsonl"));
    assert!(annotator_journals(&ds.path).expect("lists").is_empty());

    let (mut held, _) = Journal::open_exclusive(&ds, &path).expect("creates folder and file");
    held.set_annotator("ann");
    held.set_adjudicator(true);
    held.record_decision("q1", Outcome::A, None).expect("saved");
    // A second opener (another process, or this one through another file handle) is refused.
    match Journal::open_exclusive(&ds, &path) {
        Err(JournalError::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = JournalError::Locked { path: path.clone() }.to_string();
    assert!(msg.contains("another Arbiter process"), "{msg}");
    drop(held);
    let (_again, replay) = Journal::open_exclusive(&ds, &path).expect("free again");
    let d = replay.decision("q1").expect("kept");
    assert!(d.adjudicator);
    assert_eq!(d.annotator, "ann");

    // Listing finds annotator journals only.
    fs::write(dir.path().join("d.jsonl.arbiter/assignments.json"), "{}").expect("write");
    fs::write(
        dir.path().join("d.jsonl.arbiter/bad name.journal.jsonl"),
        "",
    )
    .expect("write");
    let found = annotator_journals(&ds.path).expect("lists");
    assert_eq!(found, vec![("ann".to_string(), path)]);
}

#[test]
fn read_only_replay_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ds = dataset(dir.path(), "d.jsonl", &["q1"]);
    let path = default_path(&ds.path);
    assert!(matches!(read(&path, &ds), Err(JournalError::Io { .. })));
    assert!(!path.exists());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is in the file, replay returns (it may warn), and readable records survive
        /// garbage inserted between them.
        #[test]
        fn replay_survives_garbage_between_records(
            garbage in prop::collection::vec(any::<u8>(), 0..200),
            at in 0usize..4,
        ) {
            let dir = tempfile::tempdir().expect("temp dir");
            let ds = dataset(dir.path(), "d.jsonl", &["q1", "q2"]);
            let (bytes, _) = sample_journal(&ds);
            let starts: Vec<usize> = std::iter::once(0)
                .chain(bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1))
                .collect();
            // Insert whole garbage lines after line `at + 1` (the header stays first).
            let pos = starts[(at + 1).min(starts.len() - 1)];
            let clean: Vec<u8> = garbage.into_iter().filter(|&b| b != b'\n').collect();
            let mut damaged = bytes[..pos].to_vec();
            damaged.extend_from_slice(&clean);
            damaged.push(b'\n');
            damaged.extend_from_slice(&bytes[pos..]);
            let replay = Replay::from_bytes(&damaged, &|_| true);
            prop_assert!(replay.header.is_some());
            prop_assert!(replay.history.len() >= 4);
            prop_assert_eq!(current(&replay, "q1"), Some(Outcome::Tie));
        }

        #[test]
        fn replay_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let replay = Replay::from_bytes(&bytes, &|_| true);
            prop_assert!(replay.history.len() <= bytes.len());
        }
    }
}
