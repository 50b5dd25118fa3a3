//! Parity of Arbiter's JudgerBenchV2 score (`Quirks::Reference`) with the reference
//! evaluator: `Judgerbenchv2Evaluator.score` in
//! opencompass/openicl/icl_evaluator/icl_judge_evaluator.py of open-compass/opencompass, read at
//! commit a5acc4bba3b658f151617a3b393602110fb7a740 (the file's last change: 9eaa1f6, #2095).
//!
//! Random judgment sets (zero-win models, unreadable and out-of-scale outputs, Chinese records,
//! categories the reference raises on) are written as the reference's predictions and
//! references and scored by `tests/judgerbench_reference.py`, a statement-by-statement
//! re-implementation of that evaluator; every figure must match to 1e-6.

use arbiter::dataset::{Item, Judgment, Message, Problem, Provenance, Response};
use arbiter::metrics::judgerbench::drift::ReferenceFailure;
use arbiter::metrics::judgerbench::{score, CategoryScore, JudgerbenchOptions, Quirks};
use arbiter::metrics::DEFAULT_BASE_MODEL;
use arbiter::verdict::{Outcome, Verdict};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
/// Categories as records spell them, and as Arbiter's table names them.
const CATEGORIES: [(&str, &str); 10] = [
    ("Knowledge", "Knowledge"),
    ("Longtext", "Longtext"),
    ("Reason & Analysis", "Reason_and_analysis"),
    ("safe", "safe"),
    ("Hallucination", "Hallucination"),
    ("chatQA", "chatQA"),
    ("IF", "IF"),
    ("LanTask", "LanTask"),
    ("Creation", "Creation"),
    ("Code & AI", "Code_and_AI"),
];
/// Models for a category outside the release (ground truth: a tally), with names whose order
/// depends on code points.
const OTHER_MODELS: [&str; 4] = ["alpha", "Beta", "beta", "Zeta-1"];

/// xorshift64*: deterministic, so the coverage this test asserts is stable.
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

/// How the generated judge treats a category.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Random,
    /// Always the gold side, always readable: win counts equal a tally's.
    CopiesGold,
    /// Nothing readable.
    Garbage,
}

/// One judge output and the judgment Arbiter's loader would make of it.
fn output(
    rng: &mut Rng,
    pick: Outcome,
    cn: bool,
    mode: Mode,
) -> (String, Option<Verdict>, Option<Problem>) {
    let key = if cn { "胜者" } else { "winner" };
    let analysis = if cn { "分析" } else { "analysis" };
    let letter = pick.label();
    let other = pick.swapped().label();
    let roll = match mode {
        Mode::CopiesGold => 0,
        Mode::Garbage => 99,
        Mode::Random => rng.below(100),
    };
    let readable = |text: String| (text, Some(Verdict::plain(pick)), None);
    match roll {
        0..=59 => readable(format!(
            "{{\"{analysis}\": \"...\", \"{key}\": \"{letter}\"}}"
        )),
        60..=66 => readable(format!(
            "```json\n{{\"{analysis}\": \"x\", {key} : \"{letter}\"}}\n```"
        )),
        // Two matches: the last one counts.
        67..=74 => readable(format!(
            "\"{key}\": \"{other}\" at first, but finally \"{key}\": \"{letter}\""
        )),
        75..=81 => {
            let off = ["C", "D", "Z"][rng.below(3)];
            (
                format!("{{\"{key}\": \"{off}\"}}"),
                None,
                Some(Problem::OutOfScale(off.into())),
            )
        }
        _ => {
            let wrong_key = if cn { "winner" } else { "胜者" };
            let text = match rng.below(5) {
                0 => format!("{{\"Winner\": \"{letter}\"}}"),
                1 => format!("{{\"{key}\": \"{}\"}}", letter.to_lowercase()),
                2 => format!("{{'{key}': '{letter}'}}"),
                3 => format!("{{\"{wrong_key}\": \"{letter}\"}}"),
                _ => "I cannot decide.".to_string(),
            };
            (text, None, Some(Problem::Unreadable("no winner".into())))
        }
    }
}

struct Generated {
    items: Vec<Item>,
    /// (run name as Arbiter names the category, predictions, references)
    runs: Vec<(String, Vec<String>, Vec<Value>)>,
}

fn generate(seed: u64) -> Generated {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut items = Vec::new();
    let mut runs = Vec::new();
    let mut order: Vec<usize> = (0..CATEGORIES.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut chosen: Vec<(String, String, Vec<&str>)> = order[..2 + rng.below(3)]
        .iter()
        .map(|&c| {
            let (record, table) = CATEGORIES[c];
            // Both spellings reach the same table.
            let spelled = if rng.percent(50) { record } else { table };
            (spelled.to_string(), table.to_string(), MODELS.to_vec())
        })
        .collect();
    if rng.percent(60) {
        let n = 1 + rng.below(OTHER_MODELS.len());
        chosen.push(("Other".into(), "Other".into(), OTHER_MODELS[..n].to_vec()));
    }
    for (spelled, name, models) in chosen {
        let mode = match rng.below(20) {
            0..=1 => Mode::CopiesGold,
            2 => Mode::Garbage,
            _ => Mode::Random,
        };
        let zero_win: Vec<bool> = models.iter().map(|_| rng.percent(15)).collect();
        let mut predictions = Vec::new();
        let mut references = Vec::new();
        for (m, model) in models.iter().enumerate() {
            let prefer = rng.below(100);
            for k in 0..2 + rng.below(7) {
                let base_is_a = rng.percent(50);
                let tested_side = if base_is_a { Outcome::B } else { Outcome::A };
                let gold = if rng.percent(55) {
                    tested_side
                } else {
                    tested_side.swapped()
                };
                let cn = rng.percent(30);
                let pick = match mode {
                    Mode::CopiesGold => gold,
                    _ if zero_win[m] => tested_side.swapped(),
                    _ if rng.percent(prefer) => tested_side,
                    _ => tested_side.swapped(),
                };
                let (text, verdict, problem) = output(&mut rng, pick, cn, mode);
                let tested = Response {
                    model: model.to_string(),
                    text: "tested answer".into(),
                    prior_turns: Vec::new(),
                };
                let base = Response {
                    model: DEFAULT_BASE_MODEL.into(),
                    text: "base answer".into(),
                    prior_turns: Vec::new(),
                };
                let (a, b) = if base_is_a {
                    (base, tested)
                } else {
                    (tested, base)
                };
                let r1_gt = if gold == Outcome::A {
                    &a.model
                } else {
                    &b.model
                };
                references.push(json!({
                    "ModelA": a.model, "ModelB": b.model, "r1_gt": r1_gt,
                    "category": spelled, "lan": if cn { "cn" } else { "en" },
                }));
                predictions.push(text.clone());
                let mut meta = serde_json::Map::new();
                meta.insert("lan".into(), json!(if cn { "cn" } else { "en" }));
                items.push(Item {
                    id: format!("{name}-{m}-{k}"),
                    category: Some(spelled.clone()),
                    language: Some(if cn { "zh" } else { "en" }.into()),
                    context: vec![Message::new("user", "question")],
                    response_a: a,
                    response_b: b,
                    judgments: vec![Judgment {
                        judge: "judge".into(),
                        verdict,
                        output: Some(text),
                        swapped: false,
                        problem,
                        provenance: Provenance::Dataset,
                        preference: None,
                        run: Default::default(),
                    }],
                    gold: Some(gold),
                    meta,
                });
            }
        }
        runs.push((name, predictions, references));
    }
    Generated { items, runs }
}

fn python_class(e: &ReferenceFailure) -> &'static str {
    match e {
        ReferenceFailure::UnknownModel(_) => "KeyError",
        ReferenceFailure::NoWins => "ValueError",
        ReferenceFailure::SingleModel | ReferenceFailure::ZeroMaxDiff => "ZeroDivisionError",
    }
}

fn assert_close(what: &str, ours: Option<f64>, theirs: &Value) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: reference gave {theirs}"));
    let ours = ours.unwrap_or_else(|| panic!("{what}: Arbiter has no value, reference {theirs}"));
    assert!(
        (ours - theirs).abs() < 1e-6,
        "{what}: Arbiter {ours}, reference {theirs}"
    );
}

#[test]
fn reference_quirks_match_the_opencompass_evaluator_to_1e_6() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/judgerbench_reference.py"
    );
    match Command::new("python3").arg("--version").output() {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "\n\n!!! SKIPPED judgerbench reference parity: python3 is not installed !!!\n\n"
            );
            return;
        }
        Err(e) => panic!("cannot run python3: {e}"),
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut coverage: BTreeMap<&str, usize> = BTreeMap::new();
    let judges = ["judge".to_string()];
    for seed in 1..=40u64 {
        let g = generate(seed);
        let labels: Vec<Option<Outcome>> = g.items.iter().map(|i| i.gold).collect();
        let opts = JudgerbenchOptions {
            quirks: Quirks::Reference,
            ..Default::default()
        };
        let ours = score(&g.items, &labels, &judges, &opts);
        let intended = score(&g.items, &labels, &judges, &JudgerbenchOptions::default());
        let spec = json!({
            "base_model": DEFAULT_BASE_MODEL,
            "runs": g.runs.iter().map(|(name, p, r)| json!({"name": name, "predictions": p, "references": r})).collect::<Vec<_>>(),
        });
        let path = dir.path().join(format!("runs-{seed}.json"));
        std::fs::write(&path, serde_json::to_vec(&spec).expect("json")).expect("write runs");
        let out = Command::new("python3")
            .arg(script)
            .arg(&path)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Vec<Value> =
            serde_json::from_slice(&out.stdout).expect("reference prints JSON");
        let judge = &ours.judges[0];
        assert_eq!(
            judge.categories.len(),
            theirs.len(),
            "seed {seed}: one result per category"
        );
        let mut finals = Vec::new();
        for t in &theirs {
            let name = t["name"].as_str().expect("name");
            let c: &CategoryScore = judge
                .categories
                .iter()
                .find(|c| c.category == name)
                .unwrap_or_else(|| panic!("seed {seed}: Arbiter has no category {name}"));
            let what = |f: &str| format!("seed {seed} {name} {f}");
            if let Some(err) = t.get("error").and_then(Value::as_str) {
                let e = c.reference_error.as_ref().unwrap_or_else(|| {
                    panic!(
                        "{}: reference raised {err}, Arbiter scored {:?}",
                        what("error"),
                        c.final_score
                    )
                });
                assert_eq!(python_class(e), err, "{}", what("error"));
                assert_eq!(c.final_score, None);
                *coverage.entry(python_class(e)).or_default() += 1;
                continue;
            }
            assert_eq!(c.reference_error, None, "{}", what("error"));
            assert_close(&what("accuracy"), c.accuracy, &t["accuracy"]);
            assert_close(
                &what("normalized_diff"),
                c.normalized_diff,
                &t["normalized_diff"],
            );
            assert_close(&what("final_score"), c.final_score, &t["final_score"]);
            assert_eq!(
                c.rank_diff.map(|x| x as u64),
                t["rank_diff"].as_u64(),
                "{}",
                what("rank_diff")
            );
            assert_eq!(
                c.score_diff.map(|x| x as u64),
                t["score_diff"].as_u64(),
                "{}",
                what("score_diff")
            );
            assert_eq!(
                c.max_score_diff.map(|x| x as u64),
                t["max_score_diff"].as_u64(),
                "{}",
                what("max_score_diff")
            );
            finals.push(t["final_score"].as_f64().expect("number"));
            let dropped = c.models.iter().any(|m| m.rank.is_none());
            *coverage
                .entry(if dropped {
                    "scored with a dropped model"
                } else {
                    "scored, nothing dropped"
                })
                .or_default() += 1;
            if !dropped {
                // With every model present the quirk changes nothing: intended = reference.
                let i = intended.judges[0]
                    .categories
                    .iter()
                    .find(|i| i.category == name)
                    .expect("same categories");
                assert_eq!(
                    (i.rank_diff, i.score_diff, i.max_score_diff),
                    (c.rank_diff, c.score_diff, c.max_score_diff),
                    "{}",
                    what("intended")
                );
                assert_close(&what("intended final"), i.final_score, &t["final_score"]);
            }
        }
        if !finals.is_empty() {
            let mean = finals.iter().sum::<f64>() / finals.len() as f64;
            assert_close(
                &format!("seed {seed} mean final"),
                judge.mean.final_score,
                &json!(mean),
            );
            assert_eq!(judge.mean.categories, finals.len());
        }
    }
    eprintln!("coverage: {coverage:?}");
    for case in [
        "scored with a dropped model",
        "scored, nothing dropped",
        "ValueError",
        "ZeroDivisionError",
    ] {
        assert!(
            coverage.get(case).copied().unwrap_or(0) > 0,
            "no seed exercised {case:?}: {coverage:?}"
        );
    }
}
