//! End-to-end loading of every supported format from small fixture files (tests/data/), their
//! gzip and JSON-array variants, every error a user can cause, the demo dataset, and a property
//! test that native export and load round-trip.

use arbiter::dataset::{
    self, judgerbench, load, load_bytes, write_native, Dataset, DatasetError, Format, Item,
    LoadOptions, Message, Problem, Provenance, Response,
};
use arbiter::verdict::{Outcome, Verdict};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn open(name: &str) -> Dataset {
    load(&data(name), &LoadOptions::default()).unwrap_or_else(|e| panic!("{name} should load: {e}"))
}

fn open_err(name: &str, opts: LoadOptions) -> DatasetError {
    match load(&data(name), &opts) {
        Ok(d) => panic!("{name} should not load, got {} items", d.items.len()),
        Err(e) => e,
    }
}

fn skipping() -> LoadOptions {
    LoadOptions {
        format: None,
        skip_bad_lines: true,
    }
}

#[test]
fn native_jsonl_loads_with_verdicts_context_and_gold() {
    let d = open("native.jsonl");
    assert_eq!(d.format, Format::Native);
    assert_eq!(d.items.len(), 3);
    let n1 = d.get("n1").expect("n1");
    assert_eq!(n1.question(), "What is 17 times 3?");
    assert_eq!(n1.gold, Some(Outcome::A));
    let labels: Vec<_> = n1
        .judgments
        .iter()
        .map(|j| j.verdict.map(|v| v.label()))
        .collect();
    assert_eq!(labels, vec![Some("A"), Some("A>>B"), Some("tie")]);
    assert!(n1.judgments[2].swapped);
    let n2 = d.get("n2").expect("n2");
    assert!(n2.is_multi_turn());
    assert_eq!(n2.question(), "Jetzt poetischer.");
    assert_eq!(n2.language.as_deref(), Some("de"));
    assert_eq!(d.judges(), vec!["j-one", "j-two", "j-three"]);
    assert!(d.skipped.is_empty());
}

#[test]
fn gzip_and_json_array_variants_give_the_same_items() {
    let plain = open("native.jsonl");
    let gz = open("native.jsonl.gz");
    let array = open("native_array.json");
    assert_eq!(plain.items, gz.items);
    assert_eq!(plain.items, array.items);
    assert_eq!(plain.fingerprint(), gz.fingerprint());
}

#[test]
fn judgerbench_file_places_sides_like_the_reference_loader() {
    let d = open("Knowledge.json");
    assert_eq!(d.format, Format::Judgerbench);
    assert_eq!(d.items.len(), 10);
    for (idx, item) in d.items.iter().enumerate() {
        assert_eq!(item.id, idx.to_string());
        let base_in_a = item.response_a.model == "gpt-4o-mini-2024-07-18";
        assert_eq!(
            base_in_a,
            !judgerbench::tested_model_is_a(idx),
            "record {idx}"
        );
        assert_eq!(
            item.meta["base_model_side"],
            if base_in_a { "A" } else { "B" }
        );
        // The tested answer always says "candidate", the base one "base", whatever the side.
        let tested = if base_in_a {
            &item.response_b
        } else {
            &item.response_a
        };
        assert_eq!(tested.text, format!("candidate answer {idx}"));
        // r1_gt names the tested model on every third record, else the base model.
        let winner_is_tested = idx % 3 == 0;
        let expect = if winner_is_tested == base_in_a {
            Outcome::B
        } else {
            Outcome::A
        };
        assert_eq!(item.gold, Some(expect), "record {idx}");
        assert_eq!(item.category.as_deref(), Some("Knowledge"));
        let (lang, lan) = if idx < 5 { ("en", "en") } else { ("zh", "cn") };
        assert_eq!(item.language.as_deref(), Some(lang));
        assert_eq!(item.meta["lan"], lan);
    }
    // The reference list begins 0000000111: record 7 is the first with the tested model in A.
    assert_eq!(d.items[7].response_a.model, "cand-two");
    assert_eq!(d.items[6].response_a.model, "gpt-4o-mini-2024-07-18");
}

#[test]
fn opencompass_compare_results_take_the_judge_from_the_folder() {
    let d = open("opencompass/m-left_judged-by--judge-q/compare_set.json");
    assert_eq!(d.format, Format::Opencompass);
    assert_eq!(d.items.len(), 3);
    assert_eq!(d.judges(), vec!["judge-q"]);
    let second = d.get("1").expect("item 1");
    assert_eq!(second.response_a.model, "m-right");
    assert_eq!(second.response_a.text, "m-right says 1");
    assert_eq!(second.question(), "Question 1?");
    assert_eq!(second.category.as_deref(), Some("creation"));
    assert!(second.judgments[0]
        .output
        .as_deref()
        .unwrap_or("")
        .ends_with("Choice: B"));
    // Each judgment either has a verdict or says why not.
    for item in &d.items {
        let j = &item.judgments[0];
        assert!(j.verdict.is_some() != j.problem.is_some());
    }
}

#[test]
fn rewardbench_chosen_side_is_gold_and_stable_under_reordering() {
    let d = open("rewardbench.jsonl");
    assert_eq!(d.format, Format::Rewardbench);
    assert_eq!(d.items.len(), 6);
    for item in &d.items {
        let gold = item.gold.expect("gold");
        let chosen = if gold == Outcome::A {
            &item.response_a
        } else {
            &item.response_b
        };
        assert_eq!(chosen.model, "strong");
        assert!(chosen.text.starts_with("good answer"));
        assert_eq!(item.meta["chosen_side"], gold.label());
    }
    // Reversing the file changes no side.
    let text = std::fs::read_to_string(data("rewardbench.jsonl")).expect("read");
    let reversed: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
    let r = load_bytes(
        Path::new("rev.jsonl"),
        reversed.as_bytes(),
        &LoadOptions::default(),
    )
    .expect("reversed");
    for item in &r.items {
        assert_eq!(Some(item), d.get(&item.id));
    }
}

#[test]
fn arena_votes_are_gold_and_diverged_turns_are_kept_per_side() {
    let d = open("arena.jsonl");
    assert_eq!(d.format, Format::Arena);
    let a1 = d.get("q-a1").expect("q-a1");
    assert_eq!(a1.gold, Some(Outcome::A));
    assert_eq!(a1.language.as_deref(), Some("en"));
    let a2 = d.get("q-a2").expect("q-a2");
    assert_eq!(a2.gold, Some(Outcome::Tie));
    assert_eq!(a2.meta["winner"], "tie (bothbad)");
    assert_eq!(a2.context, vec![Message::new("user", "讲个笑话")]);
    assert_eq!(
        a2.response_a.prior_turns,
        vec![
            Message::new("assistant", "笑话一"),
            Message::new("user", "再来一个")
        ]
    );
    assert_eq!(a2.response_b.text, "第三个");
    assert!(a2.is_multi_turn());
    assert_eq!(d.get("q-a3").expect("q-a3").meta["winner"], "tie");
}

#[test]
fn mt_bench_gpt4_pairs_have_a_swapped_second_game_and_no_texts() {
    let d = open("mtbench_gpt4_pair.jsonl");
    assert_eq!(d.format, Format::MtBench);
    assert_eq!(d.items.len(), 3);
    let t1 = d.get("81-t1-model-x-vs-model-y").expect("turn 1");
    assert_eq!(t1.category.as_deref(), Some("writing"));
    assert!(t1.context.is_empty());
    assert_eq!(t1.meta["texts_missing"], true);
    let (g1, g2) = (&t1.judgments[0], &t1.judgments[1]);
    assert_eq!((g1.verdict, g1.swapped), (Some(Verdict::A), false));
    assert_eq!((g2.verdict, g2.swapped), (Some(Verdict::A), true));
    let t2 = d.get("81-t2-model-x-vs-model-y").expect("turn 2");
    assert_eq!(t2.judgments[0].judge, "gpt-4/pair-v2-multi-turn");
    assert!(matches!(
        t2.judgments[1].problem,
        Some(Problem::Unreadable(_))
    ));
    let coding = d.get("125-t1-model-y-vs-model-z").expect("coding");
    assert_eq!(coding.category.as_deref(), Some("coding"));
    assert_eq!(coding.judgments[0].verdict, Some(Verdict::B));
}

#[test]
fn mt_bench_human_votes_on_one_pair_merge_into_one_item() {
    let d = open("mtbench_human.jsonl");
    assert_eq!(d.format, Format::MtBench);
    assert_eq!(d.items.len(), 2);
    let t1 = d.get("81-t1-model-x-vs-model-y").expect("turn 1");
    assert_eq!(t1.response_a.model, "model-x");
    assert_eq!(t1.response_a.text, "model-x limerick");
    let votes: Vec<_> = t1
        .judgments
        .iter()
        .map(|j| (j.judge.as_str(), j.verdict))
        .collect();
    // expert_1 saw model-y as A and picked it: model-y is B here.
    assert_eq!(
        votes,
        vec![
            ("expert_0", Some(Verdict::B)),
            ("expert_1", Some(Verdict::B))
        ]
    );
    let t2 = d.get("81-t2-model-x-vs-model-y").expect("turn 2");
    assert_eq!(t2.context, vec![Message::new("user", "Write a limerick.")]);
    assert_eq!(t2.response_b.text, "model-y short");
    assert_eq!(t2.response_b.prior_turns.len(), 2);
}

#[test]
fn a_forced_format_overrides_detection() {
    let opts = LoadOptions {
        format: Some(Format::Rewardbench),
        skip_bad_lines: false,
    };
    let e = load(&data("native.jsonl"), &opts).expect_err("native is not rewardbench");
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(e.to_string().contains("\"prompt\""), "{e}");
}

#[test]
fn missing_empty_binary_and_non_json_files_are_named_errors() {
    let e = open_err("no-such-file.jsonl", LoadOptions::default());
    assert!(matches!(e, DatasetError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("no-such-file.jsonl"));
    for name in ["empty.jsonl", "whitespace.jsonl"] {
        let e = open_err(name, LoadOptions::default());
        assert!(matches!(e, DatasetError::Empty { .. }), "{name}: {e}");
        assert!(e.to_string().contains(name));
    }
    let e = open_err("binary.bin", LoadOptions::default());
    assert!(matches!(e, DatasetError::Binary { .. }), "{e}");
    let e = open_err("not_json.csv", LoadOptions::default());
    assert!(e.to_string().contains("id,question,answer"), "{e}");
    let e = open_err("unknown_format.jsonl", LoadOptions::default());
    assert!(matches!(e, DatasetError::UnknownFormat { .. }), "{e}");
    assert!(e.to_string().contains("label, text"), "{e}");
    assert!(e.to_string().contains("--format"), "{e}");
}

#[test]
fn a_malformed_line_is_named_and_can_be_skipped() {
    let e = open_err("malformed_line.jsonl", LoadOptions::default());
    match &e {
        DatasetError::BadLine { line, path, .. } => {
            assert_eq!(*line, 2);
            assert!(path.ends_with("malformed_line.jsonl"));
        }
        other => panic!("expected BadLine, got {other}"),
    }
    assert!(e.to_string().contains("--skip-bad-lines"));
    let d = load(&data("malformed_line.jsonl"), &skipping()).expect("skips");
    assert_eq!(d.items.len(), 2);
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].line, 2);
}

#[test]
fn duplicate_ids_are_refused_or_skipped() {
    let e = open_err("duplicate_ids.jsonl", LoadOptions::default());
    match e {
        DatasetError::DuplicateId {
            id, first, second, ..
        } => {
            assert_eq!((id.as_str(), first, second), ("n1", 1, 3));
        }
        other => panic!("expected DuplicateId, got {other}"),
    }
    let d = load(&data("duplicate_ids.jsonl"), &skipping()).expect("skips");
    assert_eq!(d.items.len(), 2);
    assert_eq!(
        d.get("n1").expect("n1").response_a.text,
        "51",
        "the first one is kept"
    );
    assert_eq!(d.skipped[0].line, 3);
}

#[test]
fn unknown_verdict_labels_name_the_line_and_the_valid_labels() {
    let e = open_err("unknown_verdict.jsonl", LoadOptions::default());
    match &e {
        DatasetError::UnknownVerdict { line, label, .. } => {
            assert_eq!((*line, label.as_str()), (2, "A>>>B"));
        }
        other => panic!("expected UnknownVerdict, got {other}"),
    }
    assert!(e.to_string().contains("A>>B, A>B, A=B"), "{e}");
    let d = load(&data("unknown_verdict.jsonl"), &skipping()).expect("skips");
    assert_eq!(d.items.len(), 1);
    assert!(d.skipped[0].reason.contains("A>>>B"));
}

#[test]
fn nothing_loaded_when_every_line_is_bad() {
    let e = open_err("all_bad.jsonl", skipping());
    assert!(
        matches!(e, DatasetError::NothingLoaded { count: 2, .. }),
        "{e}"
    );
    let e = open_err("all_bad.jsonl", LoadOptions::default());
    assert!(matches!(e, DatasetError::BadLine { line: 1, .. }), "{e}");
}

#[test]
fn the_demo_dataset_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.jsonl");
    let d = load(&path, &LoadOptions::default()).expect("demo loads");
    assert_eq!(d.format, Format::Native);
    assert!(d.items.len() >= 40, "{} items", d.items.len());
    assert!(d.categories().len() >= 3);
    let languages: std::collections::BTreeSet<_> =
        d.items.iter().filter_map(|i| i.language.clone()).collect();
    assert!(languages.len() >= 3, "{languages:?}");
    assert!(d.items.iter().any(Item::is_multi_turn));
    // Bundled judgments come from real runs, each labelled with its model and settings.
    let judgments: Vec<_> = d.items.iter().flat_map(|i| &i.judgments).collect();
    assert!(!judgments.is_empty());
    for j in judgments {
        assert!(j.output.is_some(), "{}", j.judge);
        for key in ["model", "template", "sampling", "settings_key", "timing"] {
            assert!(j.run.contains_key(key), "{} lacks run.{key}", j.judge);
        }
        let model = j.run["model"].as_str().expect("model");
        let template = j.run["template"].as_str().expect("template");
        assert_eq!(j.judge, format!("{model}:{template}"));
    }
}

#[test]
fn a_large_file_loads_in_parallel_in_file_order() {
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "{{\"id\": \"i{i}\", \"question\": \"q{i}\", \"response_a\": \"a\", \"response_b\": \"b\", \"judgments\": [{{\"judge\": \"j\", \"verdict\": \"{}\"}}]}}\n",
            if i % 2 == 0 { "A" } else { "B>>A" }
        ));
    }
    text.push_str("{\"id\": \"bad\"}\n");
    let d = load_bytes(Path::new("big.jsonl"), text.as_bytes(), &skipping()).expect("loads");
    assert_eq!(d.items.len(), 3000);
    assert!(d
        .items
        .iter()
        .enumerate()
        .all(|(i, it)| it.id == format!("i{i}")));
    assert_eq!(d.skipped.len(), 1);
    assert_eq!(d.skipped[0].line, 3001);
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,12}",
        any::<String>(),
        Just("line\nbreak \"quoted\" \\ tab\t é 中 😀".to_string()),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![Just("user"), Just("assistant"), Just("system")],
        text(),
    )
        .prop_map(|(r, c)| Message::new(r, c))
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof!["A", "B", "tie", "A>>B", "A>B", "A=B", "B>A", "B>>A"]
        .prop_map(|l| l.parse::<Verdict>().expect("canonical label"))
}

fn judgment() -> impl Strategy<Value = dataset::Judgment> {
    (
        "[a-z0-9-]{1,8}",
        proptest::option::of(verdict()),
        proptest::option::of(text()),
        any::<bool>(),
        prop_oneof![
            text().prop_map(Problem::Unreadable),
            text().prop_map(Problem::OutOfScale)
        ],
    )
        .prop_map(
            |(judge, verdict, output, swapped, problem)| dataset::Judgment {
                judge,
                verdict,
                output,
                swapped,
                problem: if verdict.is_none() {
                    Some(problem)
                } else {
                    None
                },
                provenance: Provenance::Dataset,
                preference: None,
                run: Default::default(),
            },
        )
}

fn response() -> impl Strategy<Value = Response> {
    (text(), text(), proptest::collection::vec(message(), 0..3)).prop_map(
        |(model, text, prior_turns)| Response {
            model,
            text,
            prior_turns,
        },
    )
}

fn item(i: usize) -> impl Strategy<Value = Item> {
    (
        proptest::option::of(text()),
        proptest::option::of("[a-z]{2}"),
        proptest::collection::vec(message(), 0..4),
        response(),
        response(),
        proptest::collection::vec(judgment(), 0..4),
        proptest::option::of(prop_oneof![
            Just(Outcome::A),
            Just(Outcome::B),
            Just(Outcome::Tie)
        ]),
        proptest::collection::btree_map("[a-z]{1,5}", text(), 0..3),
    )
        .prop_map(
            move |(category, language, context, a, b, judgments, gold, meta)| Item {
                id: format!("item-{i}"),
                category,
                language,
                context,
                response_a: a,
                response_b: b,
                judgments,
                gold,
                meta: meta
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn native_export_round_trips(
        items in (1usize..6).prop_flat_map(|n| (0..n).map(item).collect::<Vec<_>>()),
        gzip in any::<bool>(),
    ) {
        let mut out = Vec::new();
        write_native(&items, &mut out).expect("write");
        let bytes = if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&out).expect("gzip");
            enc.finish().expect("gzip")
        } else {
            out
        };
        let opts = LoadOptions { format: Some(Format::Native), skip_bad_lines: false };
        let back = load_bytes(Path::new("export.jsonl"), &bytes, &opts).expect("reload");
        prop_assert_eq!(&back.items, &items);
        // Detection finds the format of what Arbiter writes.
        let detected = load_bytes(Path::new("export.jsonl"), &bytes, &LoadOptions::default())
            .expect("reload detected");
        prop_assert_eq!(detected.format, Format::Native);
    }
}

/// The Parquet twins in `tests/data/parquet/` were written by pyarrow from the JSON fixtures
/// (`scripts/make_parquet_fixtures.py`), with several row groups each.
#[test]
fn parquet_files_load_as_their_json_twins() {
    for (parquet, json, format) in [
        (
            "parquet/rewardbench.parquet",
            "rewardbench.jsonl",
            Format::Rewardbench,
        ),
        ("parquet/arena.parquet", "arena.jsonl", Format::Arena),
        (
            "parquet/mtbench_human.parquet",
            "mtbench_human.jsonl",
            Format::MtBench,
        ),
        (
            "parquet/Knowledge.parquet",
            "Knowledge.json",
            Format::Judgerbench,
        ),
        ("parquet/native.parquet", "native.jsonl", Format::Native),
    ] {
        let from_parquet = open(parquet);
        let from_json = open(json);
        assert_eq!(from_parquet.format, format, "{parquet}");
        assert_eq!(from_parquet.items.len(), from_json.items.len(), "{parquet}");
        assert_eq!(from_parquet.items, from_json.items, "{parquet}");
    }
}

#[test]
fn parquet_nulls_are_missing_values_and_hub_shards_make_one_dataset() {
    let nulls = open("parquet/rewardbench_nulls.parquet");
    let plain = open("rewardbench.jsonl");
    assert_eq!(nulls.items.len(), plain.items.len());
    assert_eq!(nulls.items[0].category, None);
    assert_eq!(plain.items[0].category.as_deref(), Some("alpacaeval-easy"));

    let hub = open("parquet/hub/data");
    assert_eq!(hub.format, Format::Rewardbench);
    assert_eq!(hub.items.len(), plain.items.len());
    assert!(
        hub.items[0].id.starts_with("train-00000-of-00002/"),
        "{}",
        hub.items[0].id
    );
    let questions = |d: &Dataset| {
        d.items
            .iter()
            .map(|i| i.question().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        questions(&hub),
        questions(&plain),
        "shards in name order, rows in file order"
    );
}

#[test]
fn parquet_errors_name_the_file() {
    let e = open_err("parquet/unknown_layout.parquet", LoadOptions::default());
    assert!(matches!(e, DatasetError::UnknownFormat { .. }), "{e}");
    assert!(e.to_string().contains("unknown_layout.parquet"), "{e}");
    assert!(e.to_string().contains("label, text"), "{e}");
    // A file cut short keeps its magic at the start but not its footer: not Parquet, binary.
    let whole = std::fs::read(data("parquet/arena.parquet")).expect("fixture");
    let cut = &whole[..whole.len() / 2];
    let e =
        load_bytes(Path::new("cut.parquet"), cut, &LoadOptions::default()).expect_err("a cut file");
    assert!(e.to_string().contains("cut.parquet"), "{e}");
    // A damaged footer: the Parquet reader's own error, with the file's name.
    let mut damaged = whole.clone();
    let n = damaged.len();
    damaged[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = load_bytes(
        Path::new("damaged.parquet"),
        &damaged,
        &LoadOptions::default(),
    )
    .expect_err("a damaged footer");
    assert!(matches!(e, DatasetError::Parquet { .. }), "{e}");
    assert!(e.to_string().contains("damaged.parquet"), "{e}");
}
