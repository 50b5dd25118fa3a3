use super::*;
use crate::dataset::{Provenance, Response};
use crate::verdict::Verdict;
use serde_json::json;

fn library() -> Library {
    Library::with_user_dir(None).expect("built-in templates")
}

/// The prompt recorded for `item` in one order: what the judge "was sent".
fn sent(item: &str, swapped: bool) -> serde_json::Value {
    json!([{"role": "user", "content": format!("judge {item} swapped={swapped}\n")}])
}

fn judgment(judge: &str, item: &str, verdict: Option<Verdict>, swapped: bool) -> Judgment {
    let choice = match verdict.map(|v| v.outcome) {
        Some(Outcome::A) => "Model A",
        Some(Outcome::B) => "Model B",
        _ => "neither",
    };
    let run = json!({"template": "cj2-quick", "finish": "stop", "messages": sent(item, swapped)});
    Judgment {
        judge: judge.into(),
        verdict,
        output: Some(format!("{{\"Choice\": \"{choice}\"}}")),
        swapped,
        problem: None,
        provenance: Provenance::Journal,
        preference: None,
        run: run.as_object().cloned().unwrap_or_default(),
    }
}

fn item(id: &str, judgments: Vec<Judgment>) -> Item {
    Item {
        id: id.into(),
        category: None,
        language: None,
        context: vec![Message::new("user", format!("question {id}"))],
        response_a: Response {
            model: "alpha".into(),
            text: format!("alpha answers {id}"),
            prior_turns: vec![],
        },
        response_b: Response {
            model: "beta".into(),
            text: format!("beta answers {id}"),
            prior_turns: vec![],
        },
        judgments,
        gold: None,
        meta: Default::default(),
    }
}

/// q1 (decided A by a person): `good` says A in both orders, `flip` says B then A, `cut` says
/// A but was cut off, `dumb` gives no verdict, `imported` came with the dataset. q2 has no
/// label; q3's label is the panel's tie; q4's is the panel's B.
fn fixture() -> (Vec<Item>, Vec<Label>) {
    let mut cut = judgment("cut", "q1", Some(Verdict::A), false);
    cut.run.insert("finish".into(), json!("length"));
    cut.output = Some("{\"Choice\": \"Model A\", \"Reasoning\": \"because".into());
    let mut imported = judgment("imported", "q1", Some(Verdict::A), false);
    imported.run.clear();
    imported.provenance = Provenance::Dataset;
    let items = vec![
        item(
            "q1",
            vec![
                judgment("good", "q1", Some(Verdict::A), false),
                judgment("good", "q1", Some(Verdict::A), true),
                judgment("flip", "q1", Some(Verdict::B), false),
                judgment("flip", "q1", Some(Verdict::A), true),
                cut,
                judgment("dumb", "q1", None, false),
                imported,
            ],
        ),
        item("q2", vec![judgment("good", "q2", Some(Verdict::A), false)]),
        item(
            "q3",
            vec![judgment("good", "q3", Some(Verdict::TIE), false)],
        ),
        item(
            "q4",
            vec![
                judgment("good", "q4", Some(Verdict::B), false),
                judgment("flip", "q4", Some(Verdict::A), false),
            ],
        ),
    ];
    let labels = vec![
        Some((Outcome::A, LabelSource::Human)),
        None,
        Some((Outcome::Tie, LabelSource::Consensus)),
        Some((Outcome::B, LabelSource::Consensus)),
    ];
    (items, labels)
}

fn keys(rows: &[SftRow]) -> Vec<(String, String, Order)> {
    rows.iter()
        .map(|r| (r.item.clone(), r.judge.clone(), r.order))
        .collect()
}

fn key(item: &str, judge: &str, order: Order) -> (String, String, Order) {
    (item.to_string(), judge.to_string(), order)
}

#[test]
fn sft_keeps_the_critiques_that_match_the_label_with_the_prompt_as_sent() {
    let (items, labels) = fixture();
    let (rows, summary) = sft(&items, &labels, &library(), &Filters::default());
    assert_eq!(
        keys(&rows),
        vec![
            key("q1", "good", Order::Original),
            key("q1", "good", Order::Swapped),
            key("q1", "flip", Order::Swapped),
            key("q1", "cut", Order::Original),
            key("q3", "good", Order::Original),
            key("q4", "good", Order::Original),
        ]
    );
    let first = &rows[0];
    assert_eq!(first.messages.len(), 2);
    assert_eq!(first.messages[0].content, "judge q1 swapped=false\n");
    assert_eq!(first.messages[1].role, "assistant");
    assert_eq!(first.messages[1].content, "{\"Choice\": \"Model A\"}");
    assert_eq!(first.prompt_source, PromptSource::Recorded);
    assert_eq!(first.label_source, LabelSource::Human);
    assert_eq!(rows[1].messages[0].content, "judge q1 swapped=true\n");

    assert_eq!(summary.written, 6);
    assert_eq!(summary.prompts.get(&PromptSource::Recorded), Some(&6));
    let good = &summary.judges["good"];
    assert_eq!(good.kept, 4);
    assert_eq!(good.skipped.get(&Skip::NoLabel), Some(&1));
    let flip = &summary.judges["flip"];
    assert_eq!(flip.kept, 1);
    assert_eq!(flip.skipped.get(&Skip::Disagrees), Some(&2));
    assert_eq!(
        summary.judges["dumb"].skipped.get(&Skip::NoVerdict),
        Some(&1)
    );
    assert_eq!(
        summary.judges["imported"].skipped.get(&Skip::NoPrompt),
        Some(&1)
    );
    // Every judgment is accounted for, once.
    let total: usize = summary
        .judges
        .values()
        .map(|t| t.kept + t.skipped.values().sum::<usize>())
        .sum();
    assert_eq!(
        total,
        items.iter().map(|i| i.judgments.len()).sum::<usize>()
    );
}

#[test]
fn sft_filters_drop_what_they_name() {
    let (items, labels) = fixture();
    let human = Filters {
        human_only: true,
        ..Filters::default()
    };
    let (rows, summary) = sft(&items, &labels, &library(), &human);
    assert!(rows.iter().all(|r| r.item == "q1"), "{:?}", keys(&rows));
    assert_eq!(
        summary.judges["good"].skipped.get(&Skip::NotHumanDecided),
        Some(&2)
    );

    let both = Filters {
        both_orders: true,
        ..Filters::default()
    };
    let (rows, summary) = sft(&items, &labels, &library(), &both);
    assert_eq!(
        keys(&rows)
            .into_iter()
            .filter(|k| k.0 == "q1")
            .collect::<Vec<_>>(),
        vec![
            key("q1", "good", Order::Original),
            key("q1", "good", Order::Swapped)
        ],
        "flip's swapped critique matches, but its original one does not"
    );
    assert_eq!(
        summary.judges["flip"]
            .skipped
            .get(&Skip::OtherOrderDisagrees),
        Some(&1)
    );
    assert_eq!(
        summary.judges["cut"]
            .skipped
            .get(&Skip::OtherOrderDisagrees),
        Some(&1)
    );

    let clean = Filters {
        drop_truncated: true,
        ..Filters::default()
    };
    let (_, summary) = sft(&items, &labels, &library(), &clean);
    assert_eq!(
        summary.judges["cut"].skipped.get(&Skip::Truncated),
        Some(&1)
    );
    let clean = Filters {
        drop_malformed: true,
        ..Filters::default()
    };
    let (rows, summary) = sft(&items, &labels, &library(), &clean);
    assert_eq!(
        summary.judges["cut"].skipped.get(&Skip::Malformed),
        Some(&1),
        "its Reasoning field is cut off"
    );
    assert!(rows.iter().any(|r| r.judge == "good"), "clean ones stay");
}

#[test]
fn dpo_pairs_a_matching_and_a_contradicting_critique_of_one_prompt() {
    let (items, labels) = fixture();
    let (rows, summary) = dpo(&items, &labels, &library(), &Filters::default());
    let pairs: Vec<(&str, Order, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.item.as_str(),
                r.order,
                r.chosen_judge.as_str(),
                r.rejected_judge.as_str(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("q1", Order::Original, "good", "flip"),
            ("q1", Order::Original, "cut", "flip"),
            ("q4", Order::Original, "good", "flip"),
        ]
    );
    let r = &rows[0];
    assert_eq!(
        r.prompt,
        vec![Message::new("user", "judge q1 swapped=false\n")]
    );
    assert_eq!(
        r.chosen,
        vec![Message::new("assistant", "{\"Choice\": \"Model A\"}")]
    );
    assert_eq!(
        r.rejected,
        vec![Message::new("assistant", "{\"Choice\": \"Model B\"}")]
    );
    assert_eq!(r.label, Outcome::A);
    // q1 swapped: good and flip both match, nobody contradicts; q3: only good.
    assert_eq!(
        summary.judges["good"].skipped.get(&Skip::NoCounterpart),
        Some(&2)
    );
    assert_eq!(summary.judges["flip"].rejected, 3, "one per pair");
    assert_eq!(summary.judges["good"].chosen, 2);
    assert_eq!(summary.written, 3);
}

#[test]
fn preference_ranks_the_responses_by_the_final_label_and_leaves_ties_out() {
    let (items, labels) = fixture();
    let (rows, summary) = preference(&items, &labels, &Filters::default());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].item, "q1");
    assert_eq!(rows[0].prompt, vec![Message::new("user", "question q1")]);
    assert_eq!(
        rows[0].chosen,
        vec![Message::new("assistant", "alpha answers q1")]
    );
    assert_eq!(
        rows[0].rejected,
        vec![Message::new("assistant", "beta answers q1")]
    );
    assert_eq!(rows[1].item, "q4");
    assert_eq!(rows[1].chosen_model, "beta");
    assert_eq!(summary.items_skipped.get(&Skip::TieLabel), Some(&1));
    assert_eq!(summary.items_skipped.get(&Skip::NoLabel), Some(&1));

    let human = Filters {
        human_only: true,
        ..Filters::default()
    };
    let (rows, summary) = preference(&items, &labels, &human);
    assert_eq!(rows.len(), 1);
    assert_eq!(summary.items_skipped.get(&Skip::NotHumanDecided), Some(&2));
}

#[test]
fn a_side_s_own_earlier_turns_open_its_completion() {
    let mut it = item("q1", vec![]);
    it.response_b.prior_turns = vec![
        Message::new("assistant", "beta's first answer"),
        Message::new("user", "and then?"),
    ];
    let (rows, _) = preference(
        &[it],
        &[Some((Outcome::B, LabelSource::Human))],
        &Filters::default(),
    );
    assert_eq!(
        rows[0].chosen,
        vec![
            Message::new("assistant", "beta's first answer"),
            Message::new("user", "and then?"),
            Message::new("assistant", "beta answers q1"),
        ]
    );
}

#[test]
fn rows_are_one_json_object_per_line_in_trl_s_column_names() {
    let (items, labels) = fixture();
    let (rows, _) = sft(&items, &labels, &library(), &Filters::default());
    let mut out = Vec::new();
    write_rows(&rows, &mut out).expect("writes");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(text.lines().count(), rows.len());
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    assert_eq!(first["messages"][0]["role"], "user");
    assert_eq!(first["order"], "original");
    assert_eq!(first["label"], "A");
    assert_eq!(first["label_source"], "human");
    assert_eq!(first["prompt_source"], "recorded");
}

#[test]
fn a_prompt_that_cannot_be_confirmed_is_left_out_unless_asked_for() {
    let mut legacy = judgment("old", "q1", Some(Verdict::A), false);
    legacy.run.remove("messages");
    legacy
        .run
        .insert("settings_key".into(), json!("0000000000000000"));
    let items = vec![item("q1", vec![legacy])];
    let labels = vec![Some((Outcome::A, LabelSource::Human))];
    let (rows, summary) = sft(&items, &labels, &library(), &Filters::default());
    assert!(rows.is_empty());
    assert_eq!(
        summary.judges["old"].skipped.get(&Skip::PromptUnverified),
        Some(&1)
    );
    let allow = Filters {
        allow_unverified_prompts: true,
        ..Filters::default()
    };
    let (rows, summary) = sft(&items, &labels, &library(), &allow);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].prompt_source, PromptSource::RerenderedUnverified);
    assert!(
        rows[0].messages[0].content.contains("alpha answers q1"),
        "rendered from the template for the item"
    );
    assert_eq!(
        summary.prompts.get(&PromptSource::RerenderedUnverified),
        Some(&1)
    );
}
