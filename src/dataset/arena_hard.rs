//! Arena-Hard-Auto benchmark folders (`data/<bench>/` of lmarena/arena-hard-auto), v0.1 and
//! v2.0, opened as one dataset:
//!
//! ```text
//! <bench>/question.jsonl                       questions
//! <bench>/model_answer/<model>.jsonl           each model's answers (the model is the file name)
//! <bench>/model_judgment/<judge>/<model>.jsonl each judge's judgments of a model
//! ```
//!
//! - Questions: `uid` (v2.0, and v0.1 as re-released in 2025) or `question_id` (v0.1 as first
//!   released), `category`, the prompt as `prompt` or as `turns[].content`; `subcategory` and
//!   `cluster` are kept in `meta`.
//! - Answers: the last of `messages` (v2.0), whose `content` is a string or an object with
//!   `answer`; or `choices[0].turns` (v0.1), whose last turn's `content` is the answer.
//! - Judgments: one record per (question, model) with `games`, two judgments of the judge.
//!   `gen_judgment.py` shows the baseline as assistant A and the model as B in game 1, and the
//!   model as A and the baseline as B in game 2. Items are oriented as game 1: **A = the
//!   baseline, B = the judged model**; game 2 becomes a judgment with `swapped: true` and its
//!   label turned round (the judge's `B>>A` in game 2 is the item's `A>>B`). The label is the
//!   game's `score` as recorded (`A>>B`, `A>B`, `A=B`, `B>A`, `B>>A`, and the `A<B`-style
//!   spellings `show_result.py` also accepts); a `null` score or game is a judgment without a
//!   verdict, saying the file recorded none. The judge's raw text (`judgment`, a string in v0.1,
//!   an object with `answer` in v2.0) is the judgment's output.
//! - The baseline of a record is its `baseline` field (v2.0); else the one Arena-Hard-Auto's
//!   `JUDGE_SETTINGS` gives the question's category: `gpt-4-0314` for `arena-hard-v0.1`,
//!   `o3-mini-2025-01-31` for `hard_prompt`, `coding` and `math`, `gemini-2.0-flash-001` for
//!   `creative_writing`.
//! - Every folder under `model_judgment` is a judge (named after the folder, as `show_result.py`
//!   names them), so several judge folders are a Mixture of Judges: the item
//!   `{question}/{model}` carries the judgments of every judge that judged the model on it.
//! - A judgment whose question, model answer or baseline answer is missing is an error naming
//!   the judgment file, its line and the field (`--skip-bad-lines` passes over it and reports
//!   it in `Dataset::skipped`).
//!
//! The layout is found from the benchmark folder, from its `model_judgment` folder, or from any
//! folder above it that holds exactly one benchmark (`data/`, the repository's root).

use super::common::{id_like, kind_of, malformed, object, par_map, RecordError};
use super::{
    read, BadRecord, Dataset, DatasetError, Format, Item, Judgment, LoadOptions, Message, Problem,
    Provenance, Response,
};
use crate::verdict::{Outcome, Strength, Verdict};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How deep below the given folder a benchmark folder is looked for (`repo/data/<bench>` is 2).
const SEARCH_DEPTH: usize = 3;

/// The baselines of Arena-Hard-Auto's `utils/judge_utils.py`, by question category.
const BASELINES: [(&str, &str); 5] = [
    ("arena-hard-v0.1", "gpt-4-0314"),
    ("hard_prompt", "o3-mini-2025-01-31"),
    ("coding", "o3-mini-2025-01-31"),
    ("math", "o3-mini-2025-01-31"),
    ("creative_writing", "gemini-2.0-flash-001"),
];

/// The baseline Arena-Hard-Auto uses for a question category, when the judgment does not say.
pub fn default_baseline(category: &str) -> Option<&'static str> {
    BASELINES
        .iter()
        .find(|(c, _)| *c == category)
        .map(|(_, b)| *b)
}

fn dataset_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [".jsonl", ".jsonl.gz", ".json", ".json.gz"]
        .iter()
        .map(|ext| dir.join(format!("{stem}{ext}")))
        .find(|p| p.is_file())
}

/// True when `dir` is an Arena-Hard-Auto benchmark folder.
fn is_bench(dir: &Path) -> bool {
    dataset_file(dir, "question").is_some() && dir.join("model_judgment").is_dir()
}

/// The benchmark folder `dir` stands for: itself, the parent of a `model_judgment` folder, or
/// the one benchmark folder below it. `Ok(None)` when there is none; an error when there are
/// several.
/// The benchmark folder `dir` is, or whose `model_judgment` folder it is; no search below.
pub(super) fn find_root_here(dir: &Path) -> Option<PathBuf> {
    if is_bench(dir) {
        return Some(dir.to_path_buf());
    }
    if dir.file_name().is_some_and(|n| n == "model_judgment") {
        return dir.parent().filter(|p| is_bench(p)).map(Path::to_path_buf);
    }
    None
}

pub(super) fn find_root(dir: &Path) -> Result<Option<PathBuf>, DatasetError> {
    if let Some(root) = find_root_here(dir) {
        return Ok(Some(root));
    }
    let mut found = Vec::new();
    search(dir, SEARCH_DEPTH, &mut found);
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(DatasetError::AmbiguousArenaHard {
            path: dir.to_path_buf(),
            found: found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn search(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !path.is_dir() {
            continue;
        }
        if is_bench(&path) {
            found.push(path);
        } else {
            search(&path, depth - 1, found);
        }
    }
}

/// The dataset files directly in `dir`, in name order, with the name each stands for (the file
/// name without `.jsonl`/`.json` and `.gz`).
fn named_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let bare = name.strip_suffix(".gz").unwrap_or(&name);
        if let Some(stem) = bare
            .strip_suffix(".jsonl")
            .or_else(|| bare.strip_suffix(".json"))
            .filter(|s| !s.is_empty())
        {
            out.push((stem.to_string(), path));
        }
    }
    out.sort();
    Ok(out)
}

/// The folders directly in `dir`, in name order.
fn sub_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatasetError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !name.starts_with('.') && path.is_dir() {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// `f` applied to each non-blank line of a file with its 1-based number; an empty file has none.
fn map_lines<T>(path: &Path, mut f: impl FnMut(usize, &[u8]) -> T) -> Result<Vec<T>, DatasetError> {
    let bytes = read::read_file(path)?;
    let text = match read::decode(path, &bytes) {
        Ok(t) => t,
        // A judge run that wrote nothing yet leaves an empty file behind.
        Err(DatasetError::Empty { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()))
        .map(|(i, l)| f(i + 1, l))
        .collect())
}

/// A line as a JSON object, through `fast` (which reads only the fields that matter and skips
/// the rest without allocating, e.g. a judgment's `prompt`, which repeats both answers) when
/// it can, else parsed whole, which also gives the precise error.
fn parse_line(
    line: &[u8],
    fast: fn(&[u8]) -> Option<Map<String, Value>>,
) -> Result<Map<String, Value>, RecordError> {
    match fast(line) {
        Some(obj) => Ok(obj),
        None => object(line),
    }
}

// The fields of answer and judgment records that are read, typed so that serde skips the rest
// without building values for it.
#[derive(serde::Deserialize)]
struct FastTurn {
    #[serde(default)]
    content: Option<Value>,
}

#[derive(serde::Deserialize)]
struct FastChoice {
    #[serde(default)]
    turns: Option<Vec<FastTurn>>,
}

#[derive(serde::Deserialize)]
struct FastAnswer {
    #[serde(default)]
    uid: Option<Value>,
    #[serde(default)]
    question_id: Option<Value>,
    #[serde(default)]
    messages: Option<Vec<FastTurn>>,
    #[serde(default)]
    choices: Option<Vec<FastChoice>>,
}

#[derive(serde::Deserialize)]
struct FastGame {
    #[serde(default)]
    score: Option<Value>,
    #[serde(default)]
    judgment: Option<Value>,
}

#[derive(serde::Deserialize)]
struct FastJudgment {
    #[serde(default)]
    uid: Option<Value>,
    #[serde(default)]
    question_id: Option<Value>,
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    baseline: Option<Value>,
    #[serde(default)]
    games: Option<Vec<Option<FastGame>>>,
}

fn put(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        obj.insert(key.to_string(), v);
    }
}

fn turn(t: FastTurn) -> Value {
    let mut m = Map::new();
    put(&mut m, "content", t.content);
    Value::Object(m)
}

/// An answer record reduced to its ids and last turn.
fn fast_answer(line: &[u8]) -> Option<Map<String, Value>> {
    let a: FastAnswer = serde_json::from_slice(line).ok()?;
    let mut obj = Map::new();
    put(&mut obj, "uid", a.uid);
    put(&mut obj, "question_id", a.question_id);
    if let Some(mut messages) = a.messages {
        obj.insert(
            "messages".into(),
            Value::Array(messages.pop().map(turn).into_iter().collect()),
        );
    } else if let Some(choices) = a.choices {
        let mut first = choices.into_iter().next()?;
        let last = first.turns.as_mut()?.pop().map(turn);
        let mut c = Map::new();
        c.insert("turns".into(), Value::Array(last.into_iter().collect()));
        obj.insert("choices".into(), Value::Array(vec![Value::Object(c)]));
    }
    Some(obj)
}

/// A judgment record without its games' prompts.
fn fast_judgment(line: &[u8]) -> Option<Map<String, Value>> {
    let j: FastJudgment = serde_json::from_slice(line).ok()?;
    let mut obj = Map::new();
    put(&mut obj, "uid", j.uid);
    put(&mut obj, "question_id", j.question_id);
    put(&mut obj, "model", j.model);
    put(&mut obj, "baseline", j.baseline);
    if let Some(games) = j.games {
        let games = games
            .into_iter()
            .map(|g| match g {
                None => Value::Null,
                Some(g) => {
                    let mut m = Map::new();
                    put(&mut m, "score", g.score);
                    put(&mut m, "judgment", g.judgment);
                    Value::Object(m)
                }
            })
            .collect();
        obj.insert("games".into(), Value::Array(games));
    }
    Some(obj)
}

/// Collects bad records: an error, or a skipped line under `--skip-bad-lines`.
struct Problems<'a> {
    root: &'a Path,
    skip: bool,
    skipped: Vec<BadRecord>,
}

impl Problems<'_> {
    fn bad(&mut self, file: &Path, line: usize, reason: String) -> Result<(), DatasetError> {
        if !self.skip {
            return Err(DatasetError::BadLine {
                path: file.to_path_buf(),
                line,
                reason,
            });
        }
        let shown = file.strip_prefix(self.root).unwrap_or(file);
        self.skipped.push(BadRecord {
            line,
            reason: format!("{}: {reason}", shown.display()),
        });
        Ok(())
    }
}

/// The question's or answer's id: `uid` (v2.0) or `question_id` (v0.1 as first released).
fn question_id(obj: &Map<String, Value>) -> Result<String, RecordError> {
    match id_like(obj, "uid")? {
        Some(id) => Ok(id),
        None => id_like(obj, "question_id")?
            .ok_or_else(|| malformed("missing \"uid\" (or \"question_id\")")),
    }
}

struct Question {
    context: Vec<Message>,
    category: Option<String>,
    meta: Map<String, Value>,
}

fn question(obj: &Map<String, Value>) -> Result<Question, RecordError> {
    let context = match (obj.get("prompt"), obj.get("turns")) {
        (Some(Value::String(p)), _) => vec![Message::new("user", p.clone())],
        (_, Some(Value::Array(turns))) if !turns.is_empty() => turns
            .iter()
            .enumerate()
            .map(|(i, t)| match t.get("content") {
                Some(Value::String(c)) => Ok(Message::new("user", c.clone())),
                _ => Err(malformed(format!("\"turns\"[{i}] has no \"content\" text"))),
            })
            .collect::<Result<_, _>>()?,
        (Some(other), _) => {
            return Err(malformed(format!(
                "\"prompt\" must be a string, found {}",
                kind_of(other)
            )))
        }
        _ => return Err(malformed("missing \"prompt\" (or \"turns\")")),
    };
    let mut meta = Map::new();
    for key in ["subcategory", "cluster"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            meta.insert(key.to_string(), v.clone());
        }
    }
    Ok(Question {
        context,
        category: obj
            .get("category")
            .and_then(Value::as_str)
            .map(str::to_string),
        meta,
    })
}

/// A text that v2.0 writes as an object with `answer` (and sometimes the model's reasoning).
fn answer_text(v: &Value, field: &str) -> Result<String, RecordError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Object(o) => match o.get("answer") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(malformed(format!(
                "\"{field}\" is an object without an \"answer\" text"
            ))),
        },
        other => Err(malformed(format!(
            "\"{field}\" must be a string or an object with \"answer\", found {}",
            kind_of(other)
        ))),
    }
}

/// A model's answer: the last of `messages` (v2.0) or the last turn of `choices[0]` (v0.1).
fn answer(obj: &Map<String, Value>) -> Result<String, RecordError> {
    if let Some(messages) = obj.get("messages") {
        let last = messages
            .as_array()
            .and_then(|m| m.last())
            .ok_or_else(|| malformed("\"messages\" must be a non-empty list"))?;
        let content = last
            .get("content")
            .ok_or_else(|| malformed("the last of \"messages\" has no \"content\""))?;
        return answer_text(content, "messages[-1].content");
    }
    if let Some(choices) = obj.get("choices") {
        let turn = choices
            .get(0)
            .and_then(|c| c.get("turns"))
            .and_then(Value::as_array)
            .and_then(|t| t.last())
            .ok_or_else(|| malformed("\"choices\"[0] must have a non-empty \"turns\" list"))?;
        let content = turn
            .get("content")
            .ok_or_else(|| malformed("the last of \"choices\"[0].\"turns\" has no \"content\""))?;
        return answer_text(content, "choices[0].turns[-1].content");
    }
    Err(malformed("missing \"messages\" (or \"choices\")"))
}

/// A game's label in the judge's own orientation. `show_result.py` also accepts the
/// `A<B`, `B<A`, `B=A` spellings.
fn label(score: &str) -> Option<Verdict> {
    let v = match score.trim() {
        "A>>B" | "B<<A" => Verdict::new(Outcome::A, Strength::Strong),
        "A>B" | "B<A" => Verdict::new(Outcome::A, Strength::Slight),
        "A=B" | "B=A" => Verdict::new(Outcome::Tie, Strength::Slight),
        "B>A" | "A<B" => Verdict::new(Outcome::B, Strength::Slight),
        "B>>A" | "A<<B" => Verdict::new(Outcome::B, Strength::Strong),
        _ => return None,
    };
    Some(v)
}

/// One game as a judgment in the item's orientation; game 2 (`swapped`) showed the model first.
fn game(judge: &str, game: Option<&Value>, swapped: bool) -> Result<Judgment, RecordError> {
    let mut j = Judgment {
        judge: judge.to_string(),
        verdict: None,
        output: None,
        swapped,
        problem: None,
        provenance: Provenance::Dataset,
        preference: None,
        run: Default::default(),
    };
    let n = if swapped { 2 } else { 1 };
    let g = match game {
        None | Some(Value::Null) => {
            j.problem = Some(Problem::Unreadable(format!(
                "the file recorded no game {n} (the judge's call failed)"
            )));
            return Ok(j);
        }
        Some(Value::Object(g)) => g,
        Some(other) => {
            return Err(malformed(format!(
                "\"games\"[{}] must be an object, found {}",
                n - 1,
                kind_of(other)
            )))
        }
    };
    j.output = match g.get("judgment") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => Some(match o.get("answer").and_then(Value::as_str) {
            Some(a) => a.to_string(),
            None => serde_json::to_string_pretty(o).unwrap_or_default(),
        }),
        Some(other) => Some(other.to_string()),
    };
    match g.get("score") {
        None | Some(Value::Null) => {
            j.problem = Some(Problem::Unreadable(
                "the file recorded no verdict for this game (score null)".into(),
            ));
        }
        Some(Value::String(s)) => match label(s) {
            Some(v) => j.verdict = Some(if swapped { v.swapped() } else { v }),
            None => {
                j.problem = Some(Problem::Unreadable(format!(
                    "the file records the label {s:?}, not one of A>>B, A>B, A=B, B>A, B>>A"
                )))
            }
        },
        Some(other) => {
            return Err(malformed(format!(
                "\"games\"[{}].\"score\" must be a label such as \"A>B\" or null, found {}",
                n - 1,
                kind_of(other)
            )))
        }
    }
    Ok(j)
}

/// Loads the Arena-Hard-Auto benchmark folder `root`; `path` names the dataset.
pub(super) fn load(path: &Path, root: &Path, opts: &LoadOptions) -> Result<Dataset, DatasetError> {
    let mut problems = Problems {
        root,
        skip: opts.skip_bad_lines,
        skipped: Vec::new(),
    };

    // Questions.
    let question_file = dataset_file(root, "question").ok_or_else(|| DatasetError::NotFound {
        path: root.join("question.jsonl"),
    })?;
    let mut questions: HashMap<String, Question> = HashMap::new();
    for (line, rec) in map_lines(&question_file, |n, l| (n, object(l)))? {
        match rec.and_then(|o| Ok((question_id(&o)?, question(&o)?))) {
            Ok((id, q)) => {
                questions.insert(id, q);
            }
            Err(e) => problems.bad(&question_file, line, e.reason())?,
        }
    }

    // Answers, by model (the file's name) and question.
    let answer_dir = root.join("model_answer");
    let answer_files = if answer_dir.is_dir() {
        named_files(&answer_dir)?
    } else {
        Vec::new()
    };
    let paths: Vec<PathBuf> = answer_files.iter().map(|(_, p)| p.clone()).collect();
    let mut answers: HashMap<String, HashMap<String, String>> = HashMap::new();
    let read = par_map(&paths, 2, |p| {
        map_lines(p, |n, l| (n, parse_line(l, fast_answer)))
    });
    for ((model, file), lines) in answer_files.iter().zip(read) {
        let by_question = answers.entry(model.clone()).or_default();
        for (line, rec) in lines? {
            match rec.and_then(|o| Ok((question_id(&o)?, answer(&o)?))) {
                Ok((id, text)) => {
                    by_question.insert(id, text);
                }
                Err(e) => problems.bad(file, line, e.reason())?,
            }
        }
    }

    // Judgments, one folder per judge.
    let judgment_dir = root.join("model_judgment");
    let mut files: Vec<(String, String, PathBuf)> = Vec::new();
    for (judge, dir) in sub_folders(&judgment_dir)? {
        for (model, file) in named_files(&dir)? {
            files.push((judge.clone(), model, file));
        }
    }
    // Files straight in model_judgment (the 2023 arena-bench layout) name no judge.
    let loose = named_files(&judgment_dir)?;
    if !loose.is_empty() {
        tracing::warn!(
            folder = %judgment_dir.display(),
            files = loose.len(),
            "judgment files outside a judge folder are not read; move them into model_judgment/<judge>/"
        );
    }
    // Each file's records become items on the available cores; merging them stays in order.
    let converted = par_map(&files, 2, |(judge, file_model, file)| {
        map_lines(file, |line, text| {
            let built = parse_line(text, fast_judgment).and_then(|obj| {
                judged_item(&obj, judge, file_model, &questions, &answers, &answer_dir)
            });
            (line, built)
        })
    });
    let mut items: Vec<Item> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for ((_, _, file), records) in files.iter().zip(converted) {
        for (line, built) in records? {
            let judged = match built {
                Ok(j) => j,
                Err(e) => {
                    problems.bad(file, line, e.reason())?;
                    continue;
                }
            };
            let id = judged.id();
            match index.get(&id) {
                Some(&at) => {
                    let existing = &mut items[at];
                    if existing.response_a.model != judged.baseline {
                        problems.bad(
                            file,
                            line,
                            format!(
                                "\"baseline\": {id} was judged against {} here but against {} elsewhere; one item cannot have two baselines",
                                judged.baseline, existing.response_a.model
                            ),
                        )?;
                        continue;
                    }
                    existing.judgments.extend(judged.games);
                }
                None => {
                    index.insert(id, items.len());
                    items.push(judged.into_item(&questions, &answers));
                }
            }
        }
    }
    if items.is_empty() {
        if !problems.skipped.is_empty() {
            return Err(DatasetError::NothingLoaded {
                path: path.to_path_buf(),
                count: problems.skipped.len(),
            });
        }
        return Err(DatasetError::NoArenaHardJudgments { path: judgment_dir });
    }
    tracing::debug!(
        root = %root.display(),
        questions = questions.len(),
        models = answers.len(),
        items = items.len(),
        "arena-hard folder loaded"
    );
    let mut dataset = Dataset::new(path.to_path_buf(), Format::ArenaHard, items)?;
    dataset.skipped = problems.skipped;
    Ok(dataset)
}

/// One judgment record, checked against the questions and answers but not yet an item (the
/// texts are copied only for the first record of an item).
struct Judged {
    qid: String,
    model: String,
    baseline: String,
    games: Vec<Judgment>,
}

impl Judged {
    fn id(&self) -> String {
        format!("{}/{}", self.qid, self.model)
    }

    fn into_item(
        self,
        questions: &HashMap<String, Question>,
        answers: &HashMap<String, HashMap<String, String>>,
    ) -> Item {
        // `judged_item` checked that the question and both answers exist.
        let text = |m: &str| {
            answers
                .get(m)
                .and_then(|a| a.get(&self.qid))
                .cloned()
                .unwrap_or_default()
        };
        let question = questions.get(&self.qid);
        let mut meta = question.map(|q| q.meta.clone()).unwrap_or_default();
        meta.insert("question_id".into(), Value::String(self.qid.clone()));
        Item {
            id: self.id(),
            category: question.and_then(|q| q.category.clone()),
            language: None,
            context: question.map(|q| q.context.clone()).unwrap_or_default(),
            response_a: Response {
                text: text(&self.baseline),
                model: self.baseline,
                prior_turns: Vec::new(),
            },
            response_b: Response {
                text: text(&self.model),
                model: self.model,
                prior_turns: Vec::new(),
            },
            judgments: self.games,
            gold: None,
            meta,
        }
    }
}

/// Reads a judgment record, checking that its question and both answers exist.
fn judged_item(
    obj: &Map<String, Value>,
    judge: &str,
    file_model: &str,
    questions: &HashMap<String, Question>,
    answers: &HashMap<String, HashMap<String, String>>,
    answer_dir: &Path,
) -> Result<Judged, RecordError> {
    let qid = question_id(obj)?;
    let id_field = if obj.contains_key("uid") {
        "uid"
    } else {
        "question_id"
    };
    let question = questions.get(&qid).ok_or_else(|| {
        malformed(format!(
            "\"{id_field}\": no question {qid:?} in question.jsonl"
        ))
    })?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => file_model.to_string(),
        Some(Value::String(m)) => m.clone(),
        Some(other) => {
            return Err(malformed(format!(
                "\"model\" must be a string, found {}",
                kind_of(other)
            )))
        }
    };
    let baseline = match obj.get("baseline") {
        Some(Value::String(b)) => b.clone(),
        None | Some(Value::Null) => {
            let category = question.category.as_deref().unwrap_or("");
            default_baseline(category)
                .ok_or_else(|| {
                    malformed(format!(
                        "missing \"baseline\", and the question's category {category:?} has no known baseline"
                    ))
                })?
                .to_string()
        }
        Some(other) => {
            return Err(malformed(format!(
                "\"baseline\" must be a string, found {}",
                kind_of(other)
            )))
        }
    };
    let has_answer = |m: &str, field: &str| -> Result<(), RecordError> {
        let texts = answers.get(m).ok_or_else(|| {
            malformed(format!(
                "\"{field}\": no answers of {m:?} ({} has no {m}.jsonl)",
                answer_dir.display()
            ))
        })?;
        texts.get(&qid).map(|_| ()).ok_or_else(|| {
            malformed(format!(
                "\"{field}\": {m:?} has no answer to question {qid:?} in {}",
                answer_dir.join(format!("{m}.jsonl")).display()
            ))
        })
    };
    has_answer(&baseline, "baseline")?;
    has_answer(&model, "model")?;
    let games = match obj.get("games") {
        Some(Value::Array(g)) => g,
        Some(other) => {
            return Err(malformed(format!(
                "\"games\" must be a list, found {}",
                kind_of(other)
            )))
        }
        None => return Err(malformed("missing \"games\"")),
    };
    let games = vec![
        game(judge, games.first(), false)?,
        game(judge, games.get(1), true)?,
    ];
    Ok(Judged {
        qid,
        model,
        baseline,
        games,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn game_two_is_swapped_and_turned_round() {
        let g1 = game(
            "j",
            Some(&json!({"score": "B>A", "judgment": "… [[B>A]]"})),
            false,
        )
        .expect("valid");
        assert_eq!(g1.verdict.map(Verdict::label), Some("B>A"));
        assert!(!g1.swapped);
        assert_eq!(g1.output.as_deref(), Some("… [[B>A]]"));
        // In game 2 the model was A: the judge's A>>B favours the model, the item's B.
        let g2 = game(
            "j",
            Some(&json!({"score": "A>>B", "judgment": {"answer": "model first [[A>>B]]"}})),
            true,
        )
        .expect("valid");
        assert_eq!(g2.verdict.map(Verdict::label), Some("B>>A"));
        assert!(g2.swapped);
        assert_eq!(g2.output.as_deref(), Some("model first [[A>>B]]"));
        let tie = game("j", Some(&json!({"score": "A=B"})), true).expect("valid");
        assert_eq!(tie.outcome(), Some(Outcome::Tie));
    }

    #[test]
    fn missing_scores_and_games_are_judgments_without_verdicts() {
        let none = game(
            "j",
            Some(&json!({"score": null, "judgment": "no label"})),
            false,
        )
        .expect("valid");
        assert!(none.verdict.is_none());
        assert!(none
            .problem
            .expect("why")
            .describe()
            .contains("recorded no verdict"));
        let failed = game("j", Some(&Value::Null), true).expect("valid");
        assert!(failed
            .problem
            .expect("why")
            .describe()
            .contains("no game 2"));
        let odd = game("j", Some(&json!({"score": "AB"})), false).expect("valid");
        assert!(odd.verdict.is_none() && odd.problem.is_some());
        assert!(game("j", Some(&json!({"score": 3})), false).is_err());
    }

    #[test]
    fn the_reversed_spellings_read_the_same() {
        assert_eq!(label("B<<A"), label("A>>B"));
        assert_eq!(label("A<B"), label("B>A"));
        assert_eq!(label("B=A"), label("A=B"));
        assert_eq!(label("A>>>B"), None);
    }

    #[test]
    fn answers_of_both_versions_are_read() {
        let v2 = json!({"uid": "q", "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": {"answer": "hello"}}]});
        let v01 =
            json!({"question_id": "q", "choices": [{"index": 0, "turns": [{"content": "hey"}]}]});
        let plain = json!({"uid": "q", "messages": [{"role": "assistant", "content": "yo"}]});
        for (v, want) in [(v2, "hello"), (v01, "hey"), (plain, "yo")] {
            let Value::Object(o) = v else { unreachable!() };
            assert_eq!(answer(&o).expect("answer"), want);
            assert_eq!(question_id(&o).expect("id"), "q");
        }
        let Value::Object(bad) = json!({"uid": "q", "messages": []}) else {
            unreachable!()
        };
        assert!(answer(&bad)
            .expect_err("empty")
            .reason()
            .contains("messages"));
    }

    #[test]
    fn baselines_follow_the_category() {
        assert_eq!(default_baseline("arena-hard-v0.1"), Some("gpt-4-0314"));
        assert_eq!(
            default_baseline("creative_writing"),
            Some("gemini-2.0-flash-001")
        );
        assert_eq!(default_baseline("hard_prompt"), Some("o3-mini-2025-01-31"));
        assert_eq!(default_baseline("other"), None);
    }

    #[test]
    fn v01_as_re_released_takes_the_baseline_from_its_category() {
        // v0.1 in the 2025 layout: uid and messages, judgments without a `baseline` field.
        let dir = tempfile::tempdir().expect("temp dir");
        let bench = dir.path().join("arena-hard-v0.1");
        let write = |rel: &str, lines: &[Value]| {
            let path = bench.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let text: Vec<String> = lines.iter().map(Value::to_string).collect();
            std::fs::write(path, text.join("\n")).expect("write");
        };
        write(
            "question.jsonl",
            &[json!({"uid": "u1", "category": "arena-hard-v0.1", "cluster": "c", "prompt": "Q?"})],
        );
        for (model, text) in [("gpt-4-0314", "base"), ("m", "mine")] {
            write(
                &format!("model_answer/{model}.jsonl"),
                &[json!({"uid": "u1", "model": model, "messages": [
                    {"role": "user", "content": "Q?"},
                    {"role": "assistant", "content": {"answer": text}}]})],
            );
        }
        write(
            "model_judgment/gpt-4-1106-preview/m.jsonl",
            &[
                json!({"uid": "u1", "category": "arena-hard-v0.1", "judge": "gpt-4-1106-preview",
                "model": "m", "games": [{"score": "A>B", "judgment": {"answer": "[[A>B]]"}},
                {"score": "A>>B", "judgment": {"answer": "[[A>>B]]"}}]}),
            ],
        );
        let ds = load(&bench, &bench, &LoadOptions::default()).expect("loads");
        let item = &ds.items[0];
        assert_eq!(item.id, "u1/m");
        assert_eq!(
            (
                item.response_a.model.as_str(),
                item.response_a.text.as_str()
            ),
            ("gpt-4-0314", "base")
        );
        assert_eq!(item.response_b.text, "mine");
        let labels: Vec<&str> = item
            .judgments
            .iter()
            .map(|j| j.verdict.map_or("-", Verdict::label))
            .collect();
        // Game 2 showed the model as A: its A>>B is the model's, the item's B>>A.
        assert_eq!(labels, ["A>B", "B>>A"]);
    }
}
