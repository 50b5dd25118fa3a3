//! JudgerBenchV2 end to end, as a user runs it: a file in the reference layout (`prompt`,
//! `gold` {`category`, `lan`, `r1_gt`}, `base_model_response`, `models_response`), judgments of a
//! panel (J1, J2, J3) and of a tested judge J in its journal, a few human decisions, then
//! `arbiter score FILE --panel J1,J2,J3 --judge J --json` with `--gt r1|moj` and
//! `--quirks reference|intended`. Every figure, per category and averaged, must match to 1e-6
//! what `tests/judgerbench_end_to_end.py` computes from the same file and raw outputs on its
//! own (its own A/B placement from the seeded list, the reference's verdict regex, the formula),
//! and the Appendix B relation final = (accuracy − normalized + 100) / 2 must hold in the output.
//!
//! The judgments are read with the reference's rule (`parse_judgerbench` with the item's
//! language), as the benchmark reads its predictions.

use arbiter::dataset::{load, Judgment, LoadOptions, Problem, Provenance};
use arbiter::journal::{Decision, Header, JudgmentRecord, Record, VERSION};
use arbiter::metrics::DEFAULT_BASE_MODEL;
use arbiter::verdict::{parse_judgerbench, Outcome, ParseError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MODELS: [&str; 10] = [
    "DeepSeek-R1-Distill-Llama-70B",
    "DeepSeek-R1-Distill-Qwen-32B",
    "Llama-3.1-70B-Instruct",
    "Llama-3.3-70B-Instruct",
    "Qwen2.5-32B-Instruct",
    "Qwen2.5-72B-Instruct",
    "deepseek-v2_5-1210-turbomind",
    "gemma-2-27b-it-turbomind",
    "mixtral-large-instruct-2407-lmdeploy",
    "nvidia-Llama-3.1-Nemotron-70B-Instruct-HF",
];
/// Categories as the records spell them.
const CATEGORIES: [&str; 10] = [
    "Knowledge",
    "Longtext",
    "Reason & Analysis",
    "safe",
    "Hallucination",
    "chatQA",
    "IF",
    "LanTask",
    "Creation",
    "Code & AI",
];
/// A category outside the release (ground truth: a tally), with code-point-ordered names.
const OTHER_MODELS: [&str; 3] = ["alpha", "Beta", "beta"];
const PANEL: [&str; 3] = ["J1", "J2", "J3"];
const JUDGE: &str = "J";

/// xorshift64*, so that what each seed covers is stable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

/// The reference loader's placement (fifty 0s and fifty 1s, `random.seed(0)`, shuffled):
/// 1 puts the tested model's answer in A. The Python side derives it on its own.
const PLACEMENT: &[u8] =
    b"0000000111011010011100001000101101100100110000011111101010101101110011111001001101010010101011100110";

/// One judge output picking `side` ("A"/"B") in the record's language, in one of the shapes
/// judges write; some are unreadable or off the scale on purpose.
fn output(rng: &mut Rng, side: &str, cn: bool, garbage: bool) -> String {
    let (analysis, key) = if cn {
        ("分析", "胜者")
    } else {
        ("analysis", "winner")
    };
    let other = if side == "A" { "B" } else { "A" };
    let roll = if garbage { 95 } else { rng.below(100) };
    match roll {
        0..=69 => format!("{{\"{analysis}\": \"...\", \"{key}\": \"{side}\"}}"),
        70..=77 => format!("```json\n{{\"{analysis}\": \"x\",\n  {key} : \"{side}\"}}\n```"),
        78..=85 => format!("\"{key}\": \"{other}\" at first; on reflection \"{key}\":\"{side}\""),
        86..=90 => format!("{{\"{key}\": \"{}\"}}", ["C", "D"][rng.below(2)]),
        _ => match rng.below(4) {
            0 => format!("{{\"Winner\": \"{side}\"}}"),
            1 => format!("{{\"{key}\": \"{}\"}}", side.to_lowercase()),
            2 => format!("{{'{key}': '{side}'}}"),
            _ => "I cannot decide.".to_string(),
        },
    }
}

struct Case {
    dir: tempfile::TempDir,
    dataset: PathBuf,
    /// Outputs per judge, in record order.
    outputs: BTreeMap<&'static str, Vec<String>>,
    decisions: BTreeMap<usize, &'static str>,
}

fn build(seed: u64) -> Case {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut order: Vec<usize> = (0..CATEGORIES.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut blocks: Vec<(&str, Vec<&str>)> = order[..2 + rng.below(2)]
        .iter()
        .map(|&c| (CATEGORIES[c], MODELS.to_vec()))
        .collect();
    if rng.percent(70) {
        blocks.push(("Other", OTHER_MODELS.to_vec()));
    }
    let mut records = Vec::new();
    let mut outputs: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut decisions = BTreeMap::new();
    for (category, models) in blocks {
        // How the tested judge treats this category: sometimes nothing readable, and some
        // models never win (the reference drops them).
        let garbage = rng.percent(8);
        let never_wins: Vec<bool> = models.iter().map(|_| rng.percent(15)).collect();
        let prompts = 3 + rng.below(4);
        for k in 0..prompts {
            for (m, model) in models.iter().enumerate() {
                let idx = records.len();
                let tested_a = PLACEMENT[idx % PLACEMENT.len()] == b'1';
                let tested_side = if tested_a { "A" } else { "B" };
                let base_side = if tested_a { "B" } else { "A" };
                let cn = rng.percent(35);
                let r1_side = if rng.percent(55) {
                    tested_side
                } else {
                    base_side
                };
                let r1_gt = if r1_side == tested_side {
                    *model
                } else {
                    DEFAULT_BASE_MODEL
                };
                records.push(json!({
                    "prompt": format!("{category} question {k} for {model}"),
                    "gold": {"category": category, "lan": if cn { "cn" } else { "en" }, "r1_gt": r1_gt},
                    "base_model_response": {"model_name": DEFAULT_BASE_MODEL, "response": format!("base answer {idx}")},
                    "models_response": {"model_name": model, "response": format!("answer {idx} by {model}")},
                }));
                for judge in PANEL.into_iter().chain([JUDGE]) {
                    let side = if judge == JUDGE && never_wins[m] {
                        base_side
                    } else if rng.percent(72) {
                        r1_side
                    } else if r1_side == "A" {
                        "B"
                    } else {
                        "A"
                    };
                    let text = output(&mut rng, side, cn, judge == JUDGE && garbage);
                    outputs.entry(judge).or_default().push(text);
                }
                if !seed.is_multiple_of(3) && rng.percent(6) {
                    decisions.insert(idx, ["A", "B", "tie"][rng.below(3)]);
                }
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let dataset = dir.path().join("JudgerBenchV2.json");
    std::fs::write(&dataset, serde_json::to_vec(&records).expect("json")).expect("write data");
    write_journal(&dataset, &outputs, &decisions);
    Case {
        dir,
        dataset,
        outputs,
        decisions,
    }
}

/// The same case as a folder of one file per category, as the benchmark ships (`Knowledge.json`,
/// ...): every record moves to its category's file, so it takes the A/B side of its position
/// there and the id `{category}/{position}`; outputs and decisions follow their records.
fn into_folder(case: Case) -> Case {
    let records: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&case.dataset).expect("read data")).expect("json");
    let mut files: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (idx, rec) in records.iter().enumerate() {
        let category = rec["gold"]["category"].as_str().expect("category");
        files
            .entry(format!("{category}.json"))
            .or_default()
            .push(idx);
    }
    let folder = case.dir.path().join("JudgerBenchV2");
    std::fs::create_dir(&folder).expect("folder");
    // Record order in the folder: files by name, records in file order.
    let mut order = Vec::new();
    for (name, members) in &files {
        let part: Vec<&Value> = members.iter().map(|&i| &records[i]).collect();
        std::fs::write(folder.join(name), serde_json::to_vec(&part).expect("json"))
            .expect("write part");
        order.extend(members.iter().copied());
    }
    // Outputs keep their text; the side each names is read against the folder's placement by
    // both implementations alike.
    let outputs = case
        .outputs
        .iter()
        .map(|(&judge, texts)| (judge, order.iter().map(|&i| texts[i].clone()).collect()))
        .collect();
    let decisions = order
        .iter()
        .enumerate()
        .filter_map(|(new, old)| case.decisions.get(old).map(|&l| (new, l)))
        .collect();
    write_journal(&folder, &outputs, &decisions);
    Case {
        dir: case.dir,
        dataset: folder,
        outputs,
        decisions,
    }
}

/// Writes the dataset's journal: each output as a judgment read the benchmark's way, then the
/// human decisions.
fn write_journal(
    dataset: &Path,
    outputs: &BTreeMap<&'static str, Vec<String>>,
    decisions: &BTreeMap<usize, &'static str>,
) {
    let data = load(dataset, &LoadOptions::default()).expect("the JudgerBenchV2 file loads");
    let now = time::OffsetDateTime::now_utc();
    let mut lines = vec![Record::Header(Header {
        version: VERSION,
        dataset: dataset
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_string(),
        fingerprint: data.fingerprint(),
        created: now,
    })];
    let mut seq = 0;
    for (judge, texts) in outputs {
        for (item, text) in data.items.iter().zip(texts) {
            let chinese = item.meta["lan"] == "cn";
            let (verdict, problem) = match parse_judgerbench(text, chinese) {
                Ok(v) => (Some(v), None),
                Err(ParseError::OutOfScale(l)) => (None, Some(Problem::OutOfScale(l))),
                Err(e) => (None, Some(Problem::Unreadable(e.to_string()))),
            };
            seq += 1;
            lines.push(Record::Judgment(JudgmentRecord {
                seq,
                item: item.id.clone(),
                judgment: Judgment {
                    judge: judge.to_string(),
                    verdict,
                    output: Some(text.clone()),
                    swapped: false,
                    problem,
                    provenance: Provenance::Journal,
                    preference: None,
                    run: Default::default(),
                },
                run: Default::default(),
            }));
        }
    }
    for (&idx, &label) in decisions {
        seq += 1;
        let verdict = match label {
            "A" => Outcome::A,
            "B" => Outcome::B,
            _ => Outcome::Tie,
        };
        lines.push(Record::Decision(Decision {
            seq,
            item: data.items[idx].id.clone(),
            verdict,
            note: None,
            annotator: "tester".into(),
            adjudicator: false,
            time: now,
        }));
    }
    let mut text = String::new();
    for line in &lines {
        text.push_str(&serde_json::to_string(line).expect("record serialises"));
        text.push('\n');
    }
    let journal = PathBuf::from(format!("{}.arbiter-journal.jsonl", dataset.display()));
    std::fs::write(journal, text).expect("write journal");
}

fn arbiter_score(dataset: &Path, gt: &str, quirks: &str) -> Value {
    let panel = PANEL.join(",");
    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("score")
        .arg(dataset)
        .args(["--panel", &panel, "--judge", JUDGE, "--json"])
        .args(["--gt", gt, "--quirks", quirks])
        .output()
        .expect("the arbiter binary runs");
    assert!(
        out.status.success(),
        "arbiter score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("arbiter score --json prints JSON")
}

fn python_score(case: &Case, gt: &str, quirks: &str) -> Value {
    let spec = json!({
        "dataset": case.dataset,
        "base_model": DEFAULT_BASE_MODEL,
        "judge": JUDGE,
        "panel": PANEL,
        "outputs": case.outputs,
        "decisions": case.decisions.iter().map(|(i, l)| (i.to_string(), json!(l))).collect::<serde_json::Map<_, _>>(),
        "gt": gt,
        "quirks": quirks,
    });
    let path = case.dir.path().join(format!("spec-{gt}-{quirks}.json"));
    std::fs::write(&path, serde_json::to_vec(&spec).expect("json")).expect("write spec");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/judgerbench_end_to_end.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn close(what: &str, ours: &Value, theirs: &Value) {
    match (ours.as_f64(), theirs.as_f64()) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{what}: Arbiter {a}, script {b}"),
        (None, None) => assert!(
            ours.is_null() && theirs.is_null(),
            "{what}: Arbiter {ours}, script {theirs}"
        ),
        _ => panic!("{what}: Arbiter {ours}, script {theirs}"),
    }
}

/// The Appendix B relation, on what `arbiter score` printed.
fn appendix_b(what: &str, row: &Value) {
    if let (Some(acc), Some(norm), Some(fin)) = (
        row["accuracy"].as_f64(),
        row["normalized_diff"].as_f64(),
        row["final_score"].as_f64(),
    ) {
        assert!(
            (fin - (acc - norm + 100.0) / 2.0).abs() < 1e-9,
            "{what}: final {fin} != ({acc} - {norm} + 100) / 2"
        );
    }
}

const FIGURES: [&str; 6] = [
    "accuracy",
    "rank_diff",
    "score_diff",
    "max_score_diff",
    "normalized_diff",
    "final_score",
];

fn python3_missing() -> bool {
    match Command::new("python3").arg("--version").output() {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("\n\n!!! SKIPPED judgerbench end to end: python3 is not installed !!!\n\n");
            true
        }
        Err(e) => panic!("cannot run python3: {e}"),
    }
}

#[test]
fn arbiter_score_on_a_judgerbench_file_matches_the_formula_per_category_and_overall() {
    if python3_missing() {
        return;
    }
    let mut coverage: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 1..=12u64 {
        for case in [build(seed), into_folder(build(seed))] {
            for (gt, quirks) in [
                ("r1", "reference"),
                ("r1", "intended"),
                ("moj", "reference"),
                ("moj", "intended"),
            ] {
                let ours = arbiter_score(&case.dataset, gt, quirks);
                let theirs = python_score(&case, gt, quirks);
                let jb = &ours["judgerbench"];
                assert_eq!(jb["options"]["ground_truth"], gt, "seed {seed}");
                let judges = jb["judges"].as_array().expect("judges");
                assert_eq!(judges.len(), 1, "--judge scores one judge");
                let judge = &judges[0];
                assert_eq!(judge["judge"], JUDGE);
                let ours_cats = judge["categories"].as_array().expect("categories");
                let theirs_cats = theirs["categories"].as_array().expect("categories");
                let names = |cats: &[Value]| -> Vec<String> {
                    cats.iter()
                        .map(|c| c["category"].as_str().expect("name").to_string())
                        .collect()
                };
                assert_eq!(names(ours_cats), names(theirs_cats), "seed {seed}");
                for (o, t) in ours_cats.iter().zip(theirs_cats) {
                    let what = |f: &str| {
                        format!(
                            "seed {seed} --gt {gt} --quirks {quirks} {} {f}",
                            o["category"]
                        )
                    };
                    assert_eq!(o["gt_source"], t["gt_source"], "{}", what("gt_source"));
                    close(&what("accuracy"), &o["accuracy"], &t["accuracy"]);
                    if let Some(err) = t.get("error") {
                        let ours_err = o["reference_error"]["error"].as_str().unwrap_or("none");
                        let class = match ours_err {
                            "unknown_model" => "KeyError",
                            "no_wins" => "ValueError",
                            "single_model" | "zero_max_diff" => "ZeroDivisionError",
                            other => panic!("{}: Arbiter has {other}, script {err}", what("error")),
                        };
                        assert_eq!(class, err, "{}", what("error"));
                        assert!(o["final_score"].is_null(), "{}", what("final"));
                        *coverage
                            .entry(format!("{quirks}: {}", err.as_str().unwrap_or("?")))
                            .or_default() += 1;
                        continue;
                    }
                    for f in FIGURES {
                        close(&what(f), &o[f], &t[f]);
                    }
                    appendix_b(&what("relation"), o);
                    let dropped = o["models"]
                        .as_array()
                        .expect("models")
                        .iter()
                        .any(|m| m["rank"].is_null());
                    *coverage
                        .entry(format!(
                            "{quirks}, {}{}",
                            t["gt_source"].as_str().expect("source"),
                            if dropped { ", a model dropped" } else { "" }
                        ))
                        .or_default() += 1;
                }
                let (om, tm) = (&judge["mean"], &theirs["mean"]);
                assert_eq!(om["categories"], tm["categories"], "seed {seed} mean count");
                for f in [
                    "accuracy",
                    "rank_diff",
                    "score_diff",
                    "normalized_diff",
                    "final_score",
                ] {
                    close(
                        &format!("seed {seed} {gt} {quirks} mean {f}"),
                        &om[f],
                        &tm[f],
                    );
                }
                appendix_b(&format!("seed {seed} {gt} {quirks} mean"), om);
            }
        }
    }
    eprintln!("coverage: {coverage:#?}");
    for case in [
        "reference, r1_table",
        "reference, r1_table, a model dropped",
        "reference, tally",
        "intended, r1_table",
        "intended, tally",
        "reference: ValueError",
    ] {
        assert!(
            coverage.contains_key(case),
            "no seed exercised {case:?}: {coverage:#?}"
        );
    }
}

#[test]
fn human_decisions_override_the_ground_truth_and_the_text_report_has_the_table() {
    let case = build(3);
    let before = arbiter_score(&case.dataset, "r1", "intended");
    let categories = before["judgerbench"]["judges"][0]["categories"]
        .as_array()
        .expect("categories");
    // Seed 3 has no decisions, so the released categories use R1's table.
    let (k, first) = categories
        .iter()
        .enumerate()
        .find(|(_, c)| c["gt_source"] == "r1_table" && c["accuracy"].is_number())
        .expect("a released category with parsed verdicts");
    // Decide every item of the first category against R1: the labels flip, the accuracy
    // becomes its complement and the ground truth a tally.
    let data = load(&case.dataset, &LoadOptions::default()).expect("loads");
    let name = first["category"].as_str().expect("name");
    let members: Vec<usize> = data
        .items
        .iter()
        .enumerate()
        .filter(|(_, it)| {
            it.category
                .as_deref()
                .is_some_and(|c| c.replace(" & ", "_and_").eq_ignore_ascii_case(name))
        })
        .map(|(i, _)| i)
        .collect();
    assert!(!members.is_empty());
    let flipped: BTreeMap<usize, &'static str> = members
        .iter()
        .map(|&i| {
            let gold = data.items[i].gold.expect("labelled");
            (i, if gold == Outcome::A { "B" } else { "A" })
        })
        .collect();
    write_journal(&case.dataset, &case.outputs, &flipped);
    let after = arbiter_score(&case.dataset, "r1", "intended");
    let c = &after["judgerbench"]["judges"][0]["categories"][k];
    assert_eq!(c["category"], first["category"]);
    assert_eq!(c["gt_source"], "tally");
    let (a0, a1) = (
        first["accuracy"].as_f64().expect("accuracy"),
        c["accuracy"].as_f64().expect("accuracy"),
    );
    // Out-of-scale answers are wrong under either label, so the two need not sum to 100.
    let off = c["out_of_scale"].as_u64().expect("count") as f64;
    let parsed = c["parsed"].as_u64().expect("count") as f64;
    assert!(
        (a0 + a1 + 100.0 * off / parsed - 100.0).abs() < 1e-9,
        "{a0} + {a1} with {off} of {parsed} off the scale"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .arg("score")
        .arg(&case.dataset)
        .args(["--panel", &PANEL.join(","), "--judge", JUDGE])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "JudgerBenchV2",
        "category",
        "accuracy",
        "rank diff",
        "score diff",
        "normalized",
        "final",
        name,
        "mean (",
    ] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }
}
