//! End to end: `arbiter annotate DATASET --stdin`, killed with SIGKILL at random moments while
//! decisions stream in, never loses a decision it reported as saved, and its journal always
//! replays (a torn last line may be reported, never fatal). Two annotators decide the same
//! dataset at once, each killed at its own moment: neither loses any saved decision, its own
//! or the other's, and neither writes into the other's journal.
//!
//! Contract with the command: it reads lines `ID VERDICT [NOTE]` from stdin and prints
//! `saved ID` on stdout once that decision is durable in the annotator's journal beside the
//! dataset.

use arbiter::dataset::{Dataset, Format, Item, Message, Response};
use arbiter::journal::{self, Journal, Record, ReplayWarning};
use arbiter::verdict::Outcome;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

const ITEMS: usize = 200;
const ROUNDS: usize = 50;
/// Kills land between 0 and this many milliseconds after the process starts.
const MAX_KILL_DELAY_MS: u64 = 150;
/// Pace of the stream: 200 lines take longer than the latest kill, so most kills land mid-stream.
const LINE_INTERVAL: Duration = Duration::from_millis(1);

/// A tiny seeded generator (xorshift64), so a failing schedule of kills can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn id(i: usize) -> String {
    format!("item-{i:03}")
}

/// The two annotators deciding at once.
const TEAM: [&str; 2] = ["kill-a", "kill-b"];

/// Each round gives each item a verdict that differs from the previous round's, so a stale
/// decision cannot pass for the new one; the two annotators differ from each other too.
fn verdict(who: usize, round: usize, i: usize) -> Outcome {
    Outcome::ALL[(round + i + who) % 3]
}

fn note(who: usize, round: usize) -> String {
    format!("{} round {round}", TEAM[who])
}

fn write_dataset(path: &Path) -> Dataset {
    let mut text = String::new();
    let mut items = Vec::new();
    for i in 0..ITEMS {
        let question = format!("Question number {i}: which answer is better?");
        let line = serde_json::json!({
            "id": id(i),
            "question": question,
            "model_a": "model-x",
            "response_a": format!("Answer A to {i}."),
            "model_b": "model-y",
            "response_b": format!("Answer B to {i}."),
        });
        text.push_str(&line.to_string());
        text.push('\n');
        items.push(Item {
            id: id(i),
            category: None,
            language: None,
            context: vec![Message::new("user", question)],
            response_a: Response::default(),
            response_b: Response::default(),
            judgments: Vec::new(),
            gold: None,
            meta: Default::default(),
        });
    }
    std::fs::write(path, text).expect("write the dataset");
    // Only the ids matter to the journal (they make the fingerprint), so this in-memory copy
    // opens the journal the command writes for the file.
    Dataset::new(path.to_path_buf(), Format::Native, items).expect("unique ids")
}

struct Round {
    saved: Vec<usize>,
    stderr: String,
}

/// Starts one annotator's stream and kills it after `kill_after`; runs on its own thread so
/// that both annotators' processes live at once.
fn run_round(dataset: &Path, who: usize, round: usize, kill_after: Duration) -> Round {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("annotate")
        .arg(dataset)
        .arg("--stdin")
        .env("ARBITER_ANNOTATOR", TEAM[who])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arbiter");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");

    let writer = thread::spawn(move || {
        for i in 0..ITEMS {
            let line = format!(
                "{} {} {}\n",
                id(i),
                verdict(who, round, i).label(),
                note(who, round)
            );
            // The process may be dead already: a broken pipe just ends the stream.
            if stdin.write_all(line.as_bytes()).is_err() || stdin.flush().is_err() {
                return;
            }
            thread::sleep(LINE_INTERVAL);
        }
    });
    let reader = thread::spawn(move || {
        let mut saved = Vec::new();
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match out.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut off by the kill promises nothing.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if let Some(rest) = line.trim_end().strip_prefix("saved ") {
                        saved.push(rest.to_string());
                    }
                }
            }
        }
        saved
    });
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    thread::sleep(kill_after);
    // Ignored: the process may have exited on its own, which the caller's checks catch.
    let _ = child.kill();
    let _ = child.wait();
    let saved_ids = reader.join().expect("stdout reader");
    writer.join().expect("stdin writer");
    let stderr = errors.join().expect("stderr reader");

    let saved = saved_ids
        .iter()
        .map(|s| {
            s.strip_prefix("item-")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n < ITEMS)
                .unwrap_or_else(|| panic!("round {round}: saved an id never sent: {s:?}"))
        })
        .collect();
    Round { saved, stderr }
}

#[test]
fn killed_annotate_never_loses_a_saved_decision() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kill.jsonl");
    let dataset = write_dataset(&path);
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    // Every (round, item) pair reported saved so far, per annotator.
    let mut all_saved: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
    let mut mid_stream = 0;
    let mut last_stderr = String::new();

    for round in 0..ROUNDS {
        let delays = [0, 1].map(|_| Duration::from_millis(rng.next() % (MAX_KILL_DELAY_MS + 1)));
        let rounds: Vec<Round> = thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|who| {
                    let path = &path;
                    let delay = delays[who];
                    s.spawn(move || run_round(path, who, round, delay))
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("round thread"))
                .collect()
        });

        for (who, r) in rounds.into_iter().enumerate() {
            if !r.saved.is_empty() && r.saved.len() < ITEMS {
                mid_stream += 1;
            }
            let journal_path = journal::annotator_path(&path, TEAM[who]);
            let (journal, replay) = Journal::open_at(&dataset, &journal_path).unwrap_or_else(|e| {
                panic!(
                    "round {round}, {} (killed after {:?}): replay failed: {e}\n{}",
                    TEAM[who], delays[who], r.stderr
                )
            });
            drop(journal);
            last_stderr = r.stderr;
            if let Some(torn) = &replay.torn_tail {
                eprintln!(
                    "round {round}, {}: torn last line reported: {torn:?}",
                    TEAM[who]
                );
            }
            // Fragments left by earlier kills are expected; any other damage is a bug.
            assert!(
                replay
                    .warnings
                    .iter()
                    .all(|w| matches!(w, ReplayWarning::TornLine { .. })),
                "round {round}, {}: unexpected damage: {:?}",
                TEAM[who],
                replay.warnings
            );
            // Only this annotator's decisions are in this annotator's journal.
            assert!(replay.history.iter().all(|rec| match rec {
                Record::Decision(d) => d.annotator == TEAM[who],
                Record::Undo(u) => u.annotator == TEAM[who],
                _ => true,
            }));

            // This round's saved decisions are the current ones.
            for &i in &r.saved {
                let current = replay.decision(&id(i)).map(|d| d.verdict);
                assert_eq!(
                    current,
                    Some(verdict(who, round, i)),
                    "round {round}: {} was reported saved by {} but the journal says {current:?}",
                    id(i),
                    TEAM[who]
                );
            }
            // And nothing saved in any earlier round has gone missing from the history.
            all_saved[who].extend(r.saved.iter().map(|&i| (round, i)));
            for &(rd, i) in &all_saved[who] {
                let expected_note = note(who, rd);
                let found = replay.history.iter().any(|rec| match rec {
                    Record::Decision(d) => {
                        d.item == id(i)
                            && d.verdict == verdict(who, rd, i)
                            && d.note.as_deref() == Some(expected_note.as_str())
                    }
                    _ => false,
                });
                assert!(
                    found,
                    "round {round}: the decision of {} on {} saved in round {rd} is gone",
                    TEAM[who],
                    id(i)
                );
            }
        }
    }

    for (who, saved) in all_saved.iter().enumerate() {
        assert!(
            !saved.is_empty(),
            "{} never had a decision reported saved; stderr of the last run:\n{last_stderr}",
            TEAM[who]
        );
    }
    assert!(
        mid_stream > 0,
        "no kill landed mid-stream in {ROUNDS} rounds; the test proves nothing about torn writes"
    );
}
