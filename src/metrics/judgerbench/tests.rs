//! Unit tests of the JudgerBenchV2 score, built around the worked example of the facts sheet
//! (Knowledge, 1,000 parsed verdicts, 780 correct).

use super::*;
use crate::dataset::{Judgment, Message, Problem, Provenance, Response};
use crate::metrics::testutil::{judged, out_of_scale};

const BASE: &str = crate::metrics::DEFAULT_BASE_MODEL;

fn battle(
    id: String,
    category: &str,
    model: &str,
    model_is_a: bool,
    judge: Option<Judgment>,
    gold: Outcome,
) -> Item {
    let tested = Response {
        model: model.to_string(),
        text: "tested".into(),
        prior_turns: Vec::new(),
    };
    let base = Response {
        model: BASE.to_string(),
        text: "base".into(),
        prior_turns: Vec::new(),
    };
    let (a, b) = if model_is_a {
        (tested, base)
    } else {
        (base, tested)
    };
    Item {
        id,
        category: Some(category.to_string()),
        language: Some("en".into()),
        context: vec![Message::new("user", "q")],
        response_a: a,
        response_b: b,
        judgments: judge.into_iter().collect(),
        gold: Some(gold),
        meta: Default::default(),
    }
}

/// 100 items per model; the judge picks the tested model on the first `wins` of them and the
/// base model on the rest; the gold label agrees with the judge on the first `correct` items.
fn category(name: &str, wins: &[(&str, usize)], correct: usize) -> Vec<Item> {
    let mut items = Vec::new();
    for (m, w) in wins {
        for k in 0..100 {
            let model_is_a = k % 3 != 0;
            let tested_side = if model_is_a { Outcome::A } else { Outcome::B };
            let pick = if k < *w {
                tested_side
            } else {
                tested_side.swapped()
            };
            let gold = if k < correct { pick } else { pick.swapped() };
            items.push(battle(
                format!("{name}-{m}-{k}"),
                name,
                m,
                model_is_a,
                Some(judged("judge", Some(pick), false)),
                gold,
            ));
        }
    }
    items
}

fn example_wins(llama31: usize) -> Vec<(&'static str, usize)> {
    let w = [50, 56, llama31, 46, 60, 80, 75, 44, 70, 80];
    r1::MODELS.iter().copied().zip(w).collect()
}

fn gold_labels(items: &[Item]) -> Vec<Option<Outcome>> {
    items.iter().map(|i| i.gold).collect()
}

fn run(items: &[Item], quirks: Quirks) -> CategoryScore {
    let opts = JudgerbenchOptions {
        quirks,
        ..Default::default()
    };
    let r = score(items, &gold_labels(items), &["judge".to_string()], &opts);
    assert_eq!(r.judges[0].categories.len(), 1);
    r.judges[0].categories[0].clone()
}

fn close(x: Option<f64>, want: f64) -> bool {
    x.is_some_and(|x| (x - want).abs() < 1e-6)
}

#[test]
fn worked_example_both_variants_agree_when_every_model_has_wins() {
    let items = category("Knowledge", &example_wins(30), 78);
    for quirks in [Quirks::Reference, Quirks::Intended] {
        let s = run(&items, quirks);
        assert_eq!(s.gt_source, GtSource::R1Table);
        assert_eq!((s.parsed, s.correct), (1000, 780));
        assert!(close(s.accuracy, 78.0));
        assert_eq!(s.rank_diff, Some(6));
        assert_eq!(s.score_diff, Some(25));
        assert_eq!(s.max_score_diff, Some(8));
        assert!(
            close(s.normalized_diff, 37.916667),
            "{:?}",
            s.normalized_diff
        );
        assert!(close(s.final_score, 70.041667), "{:?}", s.final_score);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }
}

#[test]
fn worked_example_with_a_zero_win_model() {
    let items = category("Knowledge", &example_wins(0), 78);
    let r = run(&items, Quirks::Reference);
    // The reference drops Llama-3.1 and zips misaligned lists.
    assert_eq!(r.max_score_diff, Some(35));
    assert_eq!(r.score_diff, Some(23));
    assert!(
        close(r.normalized_diff, 15.634921),
        "{:?}",
        r.normalized_diff
    );
    assert!(close(r.final_score, 81.182540), "{:?}", r.final_score);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("Llama-3.1-70B-Instruct") && w.contains("drop out")));
    let dropped = r
        .models
        .iter()
        .find(|m| m.model == "Llama-3.1-70B-Instruct")
        .expect("listed");
    assert_eq!((dropped.wins, dropped.rank), (0, None));

    // Intended: all ten ranked, max|ΔW| over the same model (Llama-3.1: |0 − 28| = 28).
    let i = run(&items, Quirks::Intended);
    assert_eq!(i.rank_diff, Some(6));
    assert_eq!(i.score_diff, Some(51));
    assert_eq!(i.max_score_diff, Some(28));
    assert!(
        close(i.normalized_diff, 24.880952),
        "{:?}",
        i.normalized_diff
    );
    assert!(close(i.final_score, 76.559524), "{:?}", i.final_score);
    // The default says where and how OpenCompass's figure differs.
    assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
    let w = &i.warnings[0];
    assert!(
        w.contains("Llama-3.1-70B-Instruct")
            && w.contains("normalized_diff 15.634921")
            && w.contains("--quirks reference"),
        "{w}"
    );
}

#[test]
fn final_score_relation_holds_per_category_and_for_the_mean() {
    let mut items = category("Knowledge", &example_wins(30), 78);
    items.extend(category("Code & AI", &example_wins(12), 61));
    let r = score(
        &items,
        &gold_labels(&items),
        &["judge".to_string()],
        &JudgerbenchOptions::default(),
    );
    let j = &r.judges[0];
    let names: Vec<&str> = j.categories.iter().map(|c| c.category.as_str()).collect();
    assert_eq!(
        names,
        ["Knowledge", "Code_and_AI"],
        "paper order, file-name spelling"
    );
    for c in &j.categories {
        let (acc, norm, fin) = (
            c.accuracy.unwrap(),
            c.normalized_diff.unwrap(),
            c.final_score.unwrap(),
        );
        assert!((fin - (acc - norm + 100.0) / 2.0).abs() < 1e-12);
    }
    assert_eq!(j.mean.categories, 2);
    let m = &j.mean;
    assert!(
        (m.final_score.unwrap() - (m.accuracy.unwrap() - m.normalized_diff.unwrap() + 100.0) / 2.0)
            .abs()
            < 1e-12
    );
    assert!(close(m.accuracy, (78.0 + 61.0) / 2.0));
}

#[test]
fn final_score_reproduces_the_papers_appendix_b_row() {
    // CompassJudger-2-7B in the paper: accuracy 78.04, normalized 57.00, final 60.52.
    assert!((final_score(78.04, 57.00) - 60.52).abs() < 1e-9);
}

#[test]
fn out_of_scale_counts_wrong_unreadable_is_dropped_and_base_wins_do_not_count() {
    let mk = |k: usize, j: Judgment, gold: Outcome| {
        battle(
            format!("x{k}"),
            "Knowledge",
            r1::MODELS[k % 10],
            true,
            Some(j),
            gold,
        )
    };
    let items = vec![
        mk(0, judged("judge", Some(Outcome::A), false), Outcome::A),
        mk(1, judged("judge", Some(Outcome::B), false), Outcome::B),
        mk(2, out_of_scale("judge"), Outcome::A),
        mk(3, judged("judge", None, false), Outcome::A),
        mk(4, judged("judge", Some(Outcome::Tie), false), Outcome::B),
    ];
    let s = run(&items, Quirks::Intended);
    assert_eq!(
        (s.parsed, s.correct, s.out_of_scale, s.unparsed),
        (4, 2, 2, 1)
    );
    assert!(close(s.accuracy, 50.0));
    let wins: usize = s.models.iter().map(|m| m.wins).sum();
    assert_eq!(wins, 1, "B was the base model: only item x0's win counts");
    assert!(s.models.iter().all(|m| m.model != BASE));
}

#[test]
fn human_labels_switch_the_ground_truth_to_a_tally() {
    let items = category("Knowledge", &example_wins(30), 78);
    let mut labels = gold_labels(&items);
    labels[0] = labels[0].map(Outcome::swapped);
    let r = score(
        &items,
        &labels,
        &["judge".to_string()],
        &JudgerbenchOptions::default(),
    );
    let c = &r.judges[0].categories[0];
    assert_eq!(c.gt_source, GtSource::Tally);
    assert!(c.warnings.iter().any(|w| w.contains("tally")));
    // The labels' winners for the first model: the judge picks it on items 0..50 and the
    // labels agree on 0..78, so it wins 0..50 and 78..100 (72), less item 0, now flipped.
    let first = c
        .models
        .iter()
        .find(|m| m.model == r1::MODELS[0])
        .expect("listed");
    assert_eq!(first.gt_wins, 71);
}

#[test]
fn moj_ground_truth_always_tallies_and_unknown_categories_work() {
    let items = category("Math", &[("m1", 10), ("m2", 20)], 100);
    let opts = JudgerbenchOptions {
        ground_truth: GroundTruth::Moj,
        ..Default::default()
    };
    let r = score(&items, &gold_labels(&items), &["judge".to_string()], &opts);
    let c = &r.judges[0].categories[0];
    assert_eq!(c.gt_source, GtSource::Tally);
    // The judge agrees with every label: no drift at all, and max|ΔW| = 0 is not a division.
    assert_eq!(
        (c.rank_diff, c.score_diff, c.max_score_diff),
        (Some(0), Some(0), Some(0))
    );
    assert!(close(c.final_score, 100.0));
    let reference = score(
        &items,
        &gold_labels(&items),
        &["judge".to_string()],
        &JudgerbenchOptions {
            quirks: Quirks::Reference,
            ..opts
        },
    );
    let c = &reference.judges[0].categories[0];
    assert_eq!(c.reference_error, Some(ReferenceFailure::ZeroMaxDiff));
    assert_eq!(c.final_score, None);
    assert_eq!(reference.judges[0].mean.categories, 0);
    assert!(!reference.warnings.is_empty());
    let json = serde_json::to_value(&reference).expect("serialisable");
    assert_eq!(
        json["judges"][0]["categories"][0]["reference_error"]["error"],
        "zero_max_diff"
    );
}

#[test]
fn no_parsed_verdicts_give_no_score_and_missing_labels_follow_the_quirks() {
    let mut items = category("Knowledge", &example_wins(30), 78);
    for it in &mut items {
        it.judgments = vec![Judgment {
            judge: "judge".into(),
            verdict: None,
            output: Some("I cannot decide".into()),
            swapped: false,
            problem: Some(Problem::Unreadable("no winner".into())),
            provenance: Provenance::Dataset,
            preference: None,
            run: Default::default(),
        }];
    }
    for q in [Quirks::Reference, Quirks::Intended] {
        let s = run(&items, q);
        assert_eq!((s.parsed, s.unparsed), (0, 1000));
        assert_eq!((s.accuracy, s.final_score), (None, None));
    }

    // An item without an A/B label: the reference counts it as B.
    let mut items = category("Knowledge", &example_wins(30), 100);
    items[0].judgments = vec![judged("judge", Some(Outcome::B), false)];
    let mut labels = gold_labels(&items);
    labels[0] = None;
    let opts = |quirks| JudgerbenchOptions {
        quirks,
        ..Default::default()
    };
    let r = score(
        &items,
        &labels,
        &["judge".to_string()],
        &opts(Quirks::Reference),
    );
    let c = &r.judges[0].categories[0];
    assert_eq!((c.no_label, c.correct, c.parsed), (1, 1000, 1000));
    let i = score(
        &items,
        &labels,
        &["judge".to_string()],
        &opts(Quirks::Intended),
    );
    let c = &i.judges[0].categories[0];
    assert!(close(c.accuracy, 100.0 * 999.0 / 999.0));
    assert_eq!(c.no_label, 1);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// (tested model, base on side A, judge's answer 0..5, gold A/B/none, category)
    type Row = (usize, bool, u8, u8, bool);

    fn build(rows: &[Row], flip: bool) -> (Vec<Item>, Vec<Option<Outcome>>) {
        let models = ["m1", "M2", "m3", "alpha"];
        let f = |o: Outcome| if flip { o.swapped() } else { o };
        let mut items = Vec::new();
        let mut labels = Vec::new();
        for (k, &(m, base_a, ans, gold, cat)) in rows.iter().enumerate() {
            let judgment = match ans {
                0 => judged("judge", Some(f(Outcome::A)), false),
                1 => judged("judge", Some(f(Outcome::B)), false),
                2 => judged("judge", Some(Outcome::Tie), false),
                3 => out_of_scale("judge"),
                _ => judged("judge", None, false),
            };
            let label = match gold {
                0 => Some(f(Outcome::A)),
                1 => Some(f(Outcome::B)),
                _ => None,
            };
            let category = if cat { "Knowledge" } else { "Other" };
            let mut it = battle(
                format!("{k}"),
                category,
                models[m],
                base_a != flip,
                Some(judgment),
                Outcome::A,
            );
            it.gold = label;
            items.push(it);
            labels.push(label);
        }
        (items, labels)
    }

    fn arb_rows() -> impl Strategy<Value = Vec<Row>> {
        prop::collection::vec(
            (0..4usize, any::<bool>(), 0..6u8, 0..3u8, any::<bool>()),
            0..60,
        )
    }

    proptest! {
        #[test]
        fn invariant_under_swapping_a_and_b_everywhere(rows in arb_rows(), reference in any::<bool>()) {
            let opts = JudgerbenchOptions {
                quirks: if reference { Quirks::Reference } else { Quirks::Intended },
                ..Default::default()
            };
            let judges = ["judge".to_string()];
            // The reference reads a missing label as "B", which is not symmetric: give every
            // item a label there.
            let rows: Vec<Row> = rows
                .into_iter()
                .map(|(m, b, a, g, c)| (m, b, a, if reference { g % 2 } else { g }, c))
                .collect();
            let (items, labels) = build(&rows, false);
            let (flipped, flipped_labels) = build(&rows, true);
            prop_assert_eq!(
                score(&items, &labels, &judges, &opts),
                score(&flipped, &flipped_labels, &judges, &opts)
            );
        }

        #[test]
        fn intended_scores_are_bounded_and_keep_the_appendix_relation(rows in arb_rows()) {
            let (items, labels) = build(&rows, false);
            let r = score(&items, &labels, &["judge".to_string()], &JudgerbenchOptions::default());
            for c in &r.judges[0].categories {
                prop_assert!(c.reference_error.is_none());
                if let Some(n) = c.normalized_diff {
                    prop_assert!((0.0..=200.0).contains(&n), "{}", n);
                }
                if let (Some(a), Some(n), Some(f)) = (c.accuracy, c.normalized_diff, c.final_score) {
                    prop_assert!((0.0..=100.0).contains(&a));
                    prop_assert!((f - (a - n + 100.0) / 2.0).abs() < 1e-9);
                } else {
                    prop_assert!(c.final_score.is_none());
                }
                prop_assert_eq!(
                    c.parsed + c.unparsed + c.missing,
                    c.items
                );
                prop_assert!(c.correct <= c.parsed);
            }
            serde_json::to_string(&r).expect("serialisable");
        }
    }
}

#[test]
fn intended_counts_only_the_models_in_the_items() {
    // Two of the ten models only: the reference ranks the judge's two against R1's ten.
    let wins = example_wins(30);
    let items = category("Knowledge", &wins[..2], 78);
    let i = run(&items, Quirks::Intended);
    assert_eq!(i.gt_source, GtSource::R1Table);
    assert_eq!(i.models.iter().filter(|m| m.rank.is_some()).count(), 2);
    assert!(i.warnings.iter().any(|w| w.contains("not in these items")));
    // Judge: Distill-Llama 50, Distill-Qwen 56 (Qwen first); R1: 58 and 56 (Llama first):
    // |Δr| = 1 + 1, |ΔW| = 8 + 0.
    assert_eq!(
        (i.rank_diff, i.score_diff, i.max_score_diff),
        (Some(2), Some(8), Some(8))
    );
    let r = run(&items, Quirks::Reference);
    // The reference ranks R1's side over all ten: Distill-Llama is 5th, Distill-Qwen 6th,
    // against the judge's 2nd and 1st.
    assert_eq!(r.rank_diff, Some(3 + 5));
}

#[test]
fn applies_only_to_its_categories_with_the_base_model() {
    let items = category("Knowledge", &example_wins(30)[..1], 50);
    assert!(applies(&items, BASE));
    assert!(!applies(&items, "another-base"));
    let other = category("Math", &example_wins(30)[..1], 50);
    assert!(!applies(&other, BASE));
    let mut spelled = category("Reason & Analysis", &example_wins(30)[..1], 50);
    assert!(applies(&spelled, BASE));
    spelled[0].category = None;
    spelled.truncate(1);
    assert!(!applies(&spelled, BASE));
}
