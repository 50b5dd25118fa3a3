//! Datasets of pairwise items: the in-memory model (`Item`, `Response`, `Judgment`, `Dataset`),
//! import of every supported file format (one submodule per format) and export.
//!
//! Loading never touches the network or a model, and never writes to the input file.
//! `load` reads a file or a folder of files (`folder`); `load_bytes` does the same from memory. The pipeline is in `loader`
//! (`read` → `frame` → `detect` → one reader per format); `write_native` exports.

pub mod alpaca_eval;
mod arena;
pub mod arena_hard;
mod common;
mod detect;
mod folder;
mod frame;
pub mod judge_bench;
pub mod judgerbench;
mod loader;
pub mod mtbench;
mod native;
pub mod opencompass;
mod parquet;
mod read;
pub mod rewardbench;

use folder::load_folder;
pub use loader::load_bytes;
pub use native::write_native;

use crate::verdict::{Outcome, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One of the two responses an item compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Response {
    /// The model that wrote it (may be empty where the source does not say).
    pub model: String,
    /// The final answer being judged.
    pub text: String,
    /// Earlier turns of this side's conversation after the shared `Item::context`, when the two
    /// sides' conversations diverged before the last turn (Chatbot Arena multi-turn battles).
    /// Empty in the usual case where both answered the same conversation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prior_turns: Vec<Message>,
}

/// Where a judgment came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// It was in the input file.
    #[default]
    Dataset,
    /// It was produced in Arbiter and replayed from the journal.
    Journal,
}

/// What one judge said about one item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgment {
    /// The judge's name as datasets and panels refer to it.
    pub judge: String,
    /// The verdict in the item's own A/B orientation; `None` when the judge gave none or its
    /// output could not be read (`problem` then says why).
    pub verdict: Option<Verdict>,
    /// The judge's raw output, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// True when the judge saw the responses in the other order (B first). `verdict` is already
    /// mapped back to the item's orientation; `output` is as the judge wrote it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swapped: bool,
    /// Why `verdict` is `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
    #[serde(default)]
    pub provenance: Provenance,
    /// The judge's graded preference for B over A in the item's orientation, from 0 (A) through
    /// 0.5 (tie) to 1 (B), when the source gives one (AlpacaEval's `preference` − 1; weighted
    /// annotators give fractions such as 0.93). `verdict` is then the nearer side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preference: Option<f64>,
    /// How the judgment was produced, when known: model, template, sampling, settings key,
    /// timings, token usage (what `engine::judge::conclude` records). It travels in a native
    /// file's `run` and in a journal record's own `run`, not inside the judgment's JSON.
    #[serde(skip)]
    pub run: serde_json::Map<String, serde_json::Value>,
}

/// Why a judgment has no verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Problem {
    /// No verdict could be read from the judge's output (the detail says what was tried).
    Unreadable(String),
    /// The judge answered, but with a label outside the scale it was given (JudgerBenchV2's
    /// `"winner": "C"`): it counts as answered, and wrong, where the benchmark says so.
    OutOfScale(String),
    /// The output holds several different verdict labels and no rule settles them (the
    /// detail names them): never read as one of them, so a person decides.
    Conflicting(String),
}

impl Problem {
    /// A sentence for people: what went wrong with the judge's answer.
    pub fn describe(&self) -> String {
        match self {
            Problem::Unreadable(why) => format!("no verdict could be read: {why}"),
            Problem::Conflicting(labels) => format!("conflicting labels: {labels}"),
            Problem::OutOfScale(label) => {
                format!("answered {label:?}, outside the scale it was given (counts as wrong)")
            }
        }
    }
}

impl Judgment {
    pub fn outcome(&self) -> Option<Outcome> {
        self.verdict.map(|v| v.outcome)
    }
}

/// One pairwise comparison: a prompt (question or conversation), two responses, and whatever
/// judges and references the source file carried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Language code (`en`, `zh`, `fr`...), when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The conversation up to and including the last user turn; a single-question item has one
    /// `user` message.
    pub context: Vec<Message>,
    pub response_a: Response,
    pub response_b: Response,
    #[serde(default)]
    pub judgments: Vec<Judgment>,
    /// A reference label shipped with the source (RewardBench's chosen side, Chatbot Arena's
    /// human vote, JudgerBenchV2's ground-truth winner); `None` for unlabelled data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<Outcome>,
    /// Source-specific facts worth keeping (the RewardBench shuffle, JudgerBenchV2's `gold`
    /// record...), as they came.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl Item {
    /// The question: the last user turn.
    pub fn question(&self) -> &str {
        self.context
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .unwrap_or("")
    }

    /// True when the prompt has more than one user turn or any prior assistant turn.
    pub fn is_multi_turn(&self) -> bool {
        self.context.len() > 1
            || !self.response_a.prior_turns.is_empty()
            || !self.response_b.prior_turns.is_empty()
    }

    /// The names of the judges that judged this item, in first-seen order, without repeats.
    pub fn judges(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for j in &self.judgments {
            if !seen.contains(&j.judge.as_str()) {
                seen.push(&j.judge);
            }
        }
        seen
    }
}

/// The file formats Arbiter imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Format {
    /// Arbiter's own JSON Lines format.
    Native,
    /// OpenCompass JudgerBenchV2 records (`prompt`, `gold`, `base_model_response`, `models_response`).
    Judgerbench,
    /// OpenCompass subjective-evaluation pairwise records.
    Opencompass,
    /// RewardBench (`prompt`, `chosen`, `rejected`, `subset`).
    Rewardbench,
    /// Chatbot Arena human-preference battles (`model_a`, `model_b`, `winner`, `conversation_a/b`).
    Arena,
    /// MT-Bench pairwise judgments (GPT-4 `model_1/model_2/g1_winner`, or human).
    MtBench,
    /// ScalerLab's JudgeBench pairs and judge outputs (`pair_id`, `response_A`, `response_B`,
    /// `label`, `judgments`); not OpenCompass's JudgerBenchV2 (`judgerbench`).
    JudgeBench,
    /// An Arena-Hard-Auto benchmark folder (`question.jsonl`, `model_answer/`,
    /// `model_judgment/<judge>/`), v0.1 or v2.0.
    ArenaHard,
    /// AlpacaEval annotations (`instruction`, `output_1`, `output_2`, `preference`).
    AlpacaEval,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Judgerbench => "judgerbench",
            Format::Opencompass => "opencompass",
            Format::Rewardbench => "rewardbench",
            Format::Arena => "arena",
            Format::MtBench => "mt-bench",
            Format::JudgeBench => "judge-bench",
            Format::ArenaHard => "arena-hard",
            Format::AlpacaEval => "alpaca-eval",
        }
    }
}

/// A loaded dataset. Items keep the order of the file.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub format: Format,
    pub items: Vec<Item>,
    index: HashMap<String, usize>,
    /// Lines or records that `--skip-bad-lines` passed over, with why.
    pub skipped: Vec<BadRecord>,
}

/// A record that could not be read, kept for the report `--skip-bad-lines` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// 1-based line on which the record starts (in a JSON array too).
    pub line: usize,
    pub reason: String,
}

impl Dataset {
    /// Builds a dataset from items, checking that ids are unique.
    pub fn new(path: PathBuf, format: Format, items: Vec<Item>) -> Result<Dataset, DatasetError> {
        let mut index = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(first) = index.insert(item.id.clone(), i) {
                return Err(DatasetError::DuplicateId {
                    path: path.clone(),
                    id: item.id.clone(),
                    first: first + 1,
                    second: i + 1,
                });
            }
        }
        Ok(Dataset {
            path,
            format,
            items,
            index,
            skipped: Vec::new(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.index.get(id).map(|&i| &self.items[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Item> {
        self.index.get(id).map(|&i| &mut self.items[i])
    }

    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Every judge that appears in the dataset, in first-seen order.
    pub fn judges(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for item in &self.items {
            for j in &item.judgments {
                if seen.insert(j.judge.as_str()) {
                    out.push(j.judge.clone());
                }
            }
        }
        out
    }

    /// Every category, sorted; items without one are not counted.
    pub fn categories(&self) -> Vec<String> {
        let mut cats: Vec<String> = self
            .items
            .iter()
            .filter_map(|i| i.category.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        cats.dedup();
        cats
    }

    /// A fingerprint of the dataset's identity (its item ids, in order), used to make sure a
    /// journal is replayed onto the dataset it was written for.
    pub fn fingerprint(&self) -> String {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for item in &self.items {
            h.update(item.id.as_bytes());
            h.update(&[0]);
        }
        format!("{:016x}", h.digest())
    }
}

/// Everything that can go wrong reading a dataset; each message names the file and says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path} does not exist; check the path (a dataset is a JSON, JSON Lines or Parquet file, optionally gzipped, or a folder of them)")]
    NotFound { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is empty: a dataset needs at least one item")]
    Empty { path: PathBuf },
    #[error("cannot decompress {path}: {source}; the gzip data is damaged or cut short, fetch the file again")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not JSON or JSON Lines (it starts with {start:?}); Arbiter reads JSON arrays and JSON Lines: convert the file to one of those")]
    NotJson { path: PathBuf, start: String },
    #[error("{path} looks like a binary file, not JSON, JSON Lines or Parquet (gzip is read transparently; other archives must be unpacked first)")]
    Binary { path: PathBuf },
    #[error("{path}: the Parquet file cannot be read: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{path}: line {line}: {reason} (use --skip-bad-lines to load the rest)")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: cannot tell the format{hint}; pass --format (one of native, judgerbench, opencompass, rewardbench, arena, mt-bench, judge-bench, arena-hard, alpaca-eval)")]
    UnknownFormat { path: PathBuf, hint: String },
    #[error("{path}: line {line}: unknown verdict label {label:?}; the valid labels are A, B, tie, A>>B, A>B, A=B, B>A, B>>A (fix the label, or use --skip-bad-lines to load the rest)")]
    UnknownVerdict {
        path: PathBuf,
        line: usize,
        label: String,
    },
    /// `first` and `second` are 1-based line numbers when loading a file (positions in the
    /// item list for `Dataset::new`).
    #[error(
        "{path}: item id {id:?} appears twice (lines {first} and {second}); ids must be unique: rename one, or use --skip-bad-lines to keep the first"
    )]
    DuplicateId {
        path: PathBuf,
        id: String,
        first: usize,
        second: usize,
    },
    #[error("{path}: every record was unreadable ({count} skipped); is this the right --format?")]
    NothingLoaded { path: PathBuf, count: usize },
    #[error("{path} is a file of an Arena-Hard-Auto benchmark; open its folder instead (the one that holds question.jsonl, model_answer/ and model_judgment/, e.g. data/arena-hard-v2.0)")]
    ArenaHardFile { path: PathBuf },
    #[error("{path} holds several Arena-Hard-Auto benchmarks ({found}); open one of them")]
    AmbiguousArenaHard { path: PathBuf, found: String },
    #[error("{path} is not an Arena-Hard-Auto benchmark folder: expected question.jsonl, model_answer/ and model_judgment/<judge>/ in it or below it")]
    NotArenaHard { path: PathBuf },
    #[error("{path} holds no judgments: Arena-Hard-Auto judgments are model_judgment/<judge>/<model>.jsonl files")]
    NoArenaHardJudgments { path: PathBuf },
    #[error(
        "the folder {path} holds no dataset files (*.json, *.jsonl, optionally .gz, or *.parquet)"
    )]
    EmptyFolder { path: PathBuf },
    #[error("the folder {path} mixes formats: {first} is {} but {other} is {}; keep one format per folder", first_format.name(), other_format.name())]
    MixedFormats {
        path: PathBuf,
        first: PathBuf,
        first_format: Format,
        other: PathBuf,
        other_format: Format,
    },
    #[error("the folder {path}: JudgeBench pair {id:?} in {} differs from the pair of that id in {first} (other responses or label); keep files of one set of pairs per folder", other.display())]
    ConflictingPair {
        path: PathBuf,
        id: String,
        /// The file name of the pair's first appearance.
        first: String,
        other: PathBuf,
    },
}

/// How to load a dataset.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Force a format instead of detecting it.
    pub format: Option<Format>,
    /// Skip malformed records instead of failing on the first one.
    pub skip_bad_lines: bool,
}

/// Loads a dataset from a file, detecting its format unless `opts.format` says, reading gzip
/// transparently; a folder loads every dataset file in it as one dataset (`folder`).
pub fn load(path: &std::path::Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    if path.is_dir() {
        return load_folder(path, opts);
    }
    let bytes = read::read_file(path)?;
    load_bytes(path, &bytes, opts)
}
