//! The `judgerbench-v2` template renders, byte for byte, the judge prompt that OpenCompass's
//! JudgerBenchV2 loader builds (`Judgerbenchv2Dataset.load` in
//! opencompass/datasets/judge/judgerbenchv2.py of open-compass/opencompass, read at commit
//! a5acc4bba3b658f151617a3b393602110fb7a740): reproducing the benchmark needs the exact text.
//!
//! Three independent checks:
//! - two prompts the reference code printed for tests/data/Knowledge.json (records 0, en, and 7,
//!   cn), hard-coded below;
//! - every category in both languages, with awkward text (braces, placeholders, markers,
//!   CRLF, empty strings), against the rows the reference code built for
//!   tests/data/judgerbench_prompts/Mixed.json (`Mixed.reference.json`; how it was made:
//!   tests/judgerbench_prompt_reference.py);
//! - the same items against the prompt rebuilt here from the reference's pieces
//!   (`base_prompt_*`, `suffix_*`, `criterion_map`, copied verbatim below) with Python's
//!   `str.format` rule.

use arbiter::dataset::{load, Dataset, Item, LoadOptions};
use arbiter::prompts::{Library, RenderOptions, Template};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the reference printed for record 0 of tests/data/Knowledge.json (en, base model in A).
const KNOWLEDGE_0: &str = concat!(
    "Below is a user's question and two models' responses. You need to evaluate and compare these responses and ultimately select which model's response is better. Since the user's question is a knowledge-based QA, you should focus more on the following aspects when evaluating: Does the model's response provide a more accurate answer? Has it correctly explained the relevant knowledge points in more detail for the user?\n",
    "\n",
    "[User's question starts]\n",
    "Question number 0: explain item 0.\n",
    "[User's question ends]\n",
    "\n",
    "[Model A's response starts]\n",
    "base answer 0\n",
    "[Model A's response ends]\n",
    "\n",
    "[Model B's response starts]\n",
    "candidate answer 0\n",
    "[Model B's response ends]\n",
    "\n",
    "Finally, please return your analysis and comparison results in the following format: if you believe Model A's response is better, the winner is A; if you believe Model B's response is better, the winner is B:\n",
    "{\"analysis\":\"Your analysis of the two models' responses\", \"winner\":\"A\"} or {\"analysis\":\"Your analysis of the two models' responses\", \"winner\":\"B\"}",
);

/// What the reference printed for record 7 of tests/data/Knowledge.json (cn, tested model in A).
const KNOWLEDGE_7: &str = concat!(
    "下面有一个用户的问题和两个模型的回复，需要你对这两个回复进行评价并比较，最终选出哪个模型的回复更好。由于用户的问题是知识问答类的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否给出了更准确的解答，是否更详细的就相关知识点为用户进行了正确的讲解？\n",
    "\n",
    "[用户问题开始]\n",
    "Question number 7: explain item 7.\n",
    "[用户问题结束]\n",
    "\n",
    "[模型A的回复开始]\n",
    "candidate answer 7\n",
    "[模型A的回复结束]\n",
    "\n",
    "[模型B的回复开始]\n",
    "base answer 7\n",
    "[模型B的回复结束]\n",
    "\n",
    "最后，请按照下面的格式返回你的分析和比较结果，如果你认为模型A的回复更好，则胜者为A，如果你认为模型B的回复更好，则胜者为B：\n",
    "{\"分析\":\"你对两个模型回复的分析\", \"胜者\":\"A\"} 或 {\"分析\":\"你对两个模型回复的分析\", \"胜者\":\"B\"}",
);

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn open(path: &str) -> Dataset {
    load(&data(path), &LoadOptions::default()).unwrap_or_else(|e| panic!("{path} loads: {e}"))
}

fn template() -> Template {
    Library::with_user_dir(None)
        .expect("built-in templates load")
        .get("judgerbench-v2")
        .expect("judgerbench-v2 is built in")
        .clone()
}

fn render(t: &Template, item: &Item) -> String {
    t.render(item, &RenderOptions::default())
        .unwrap_or_else(|e| panic!("item {} renders: {e}", item.id))
}

/// Python's `str.format` with keyword arguments, for the reference's pieces (which hold no
/// `{{`, `}}` or format specs): each `{name}` is replaced in one pass, values never rescanned.
fn py_format(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').expect("a closed field") + open;
        let name = &rest[open + 1..close];
        let value = values
            .iter()
            .find(|(k, _)| *k == name)
            .unwrap_or_else(|| panic!("no value for {{{name}}}"))
            .1;
        out.push_str(value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The prompt the reference builds for a record, from its pieces.
fn reference_prompt(category: &str, lan: &str, question: &str, a: &str, b: &str) -> String {
    let key = format!("{category}_{lan}");
    let criterion = CRITERION_MAP
        .iter()
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("criterion_map has no {key}"))
        .1;
    let (base, suffix) = match lan {
        "cn" => (BASE_PROMPT_CN, SUFFIX_CN),
        "en" => (BASE_PROMPT_EN, SUFFIX_EN),
        other => panic!("the reference builds no prompt for lan {other:?}"),
    };
    py_format(
        base,
        &[
            ("criterion", criterion),
            ("question", question),
            ("ResponseA", a),
            ("ResponseB", b),
        ],
    ) + suffix
}

#[test]
fn knowledge_records_render_exactly_what_the_reference_printed() {
    let t = template();
    let d = open("Knowledge.json");
    assert_eq!(render(&t, &d.items[0]), KNOWLEDGE_0);
    assert_eq!(render(&t, &d.items[7]), KNOWLEDGE_7);
    // The file-name spellings of categories pick the same criterion.
    let mut renamed = d.items[7].clone();
    renamed.category = Some("knowledge".into());
    renamed.language = Some("cn".into());
    assert_eq!(render(&t, &renamed), KNOWLEDGE_7);
}

#[test]
fn every_category_and_language_matches_the_reference_loader_rows() {
    let t = template();
    let d = open("judgerbench_prompts/Mixed.json");
    let rows: Vec<Value> = serde_json::from_slice(
        &std::fs::read(data("judgerbench_prompts/Mixed.reference.json")).expect("reference rows"),
    )
    .expect("reference rows are JSON");
    assert_eq!(d.items.len(), rows.len());
    let mut seen = std::collections::BTreeSet::new();
    for (item, row) in d.items.iter().zip(&rows) {
        let judge = &row["judge"];
        // The same A/B placement as the reference's seeded list.
        assert_eq!(item.response_a.model, judge["ModelA"], "item {}", item.id);
        assert_eq!(item.response_b.model, judge["ModelB"], "item {}", item.id);
        let prompt = row["prompt"].as_str().expect("a prompt string");
        let ours = render(&t, item);
        assert!(
            ours == prompt,
            "item {} differs from the reference:\n--- reference\n{prompt:?}\n--- arbiter\n{ours:?}",
            item.id
        );
        seen.insert((
            judge["category"].as_str().expect("category").to_string(),
            judge["lan"].as_str().expect("lan").to_string(),
        ));
    }
    assert_eq!(seen.len(), 20, "all ten categories in both languages");
}

#[test]
fn rendering_equals_the_reference_pieces_formatted_as_python_does() {
    let t = template();
    let d = open("judgerbench_prompts/Mixed.json");
    let raw: Vec<Value> = serde_json::from_slice(
        &std::fs::read(data("judgerbench_prompts/Mixed.json")).expect("fixture"),
    )
    .expect("fixture is JSON");
    for (item, record) in d.items.iter().zip(&raw) {
        let gold = &record["gold"];
        let want = reference_prompt(
            gold["category"].as_str().expect("category"),
            gold["lan"].as_str().expect("lan"),
            record["prompt"].as_str().expect("prompt"),
            &item.response_a.text,
            &item.response_b.text,
        );
        assert_eq!(render(&t, item), want, "item {}", item.id);
    }
    // And the criterion lines are the reference's map, all twenty of them.
    let header = t.source_text().split("\n---\n").next().expect("header");
    for (key, sentence) in CRITERION_MAP {
        let (category, lan) = key.rsplit_once('_').expect("category_lan");
        let lang = if lan == "cn" { "zh" } else { lan };
        let line = format!("criteria.{lang}.{category}: {sentence}");
        assert!(
            header.lines().any(|l| l == line),
            "no line {line:?} in the template header"
        );
    }
}

#[test]
fn the_preference_option_is_the_only_addition_and_sits_before_the_answer_format() {
    let t = template();
    let d = open("Knowledge.json");
    for (item, plain) in [(&d.items[0], KNOWLEDGE_0), (&d.items[7], KNOWLEDGE_7)] {
        let with = t
            .render(
                item,
                &RenderOptions {
                    preference: Some("PREFER SHORT.".into()),
                    ..Default::default()
                },
            )
            .expect("renders");
        let at = with.find("PREFER SHORT.").expect("shown");
        let format_line = with.rfind("\n{\"").expect("answer format shown");
        assert!(at < format_line, "{with}");
        assert_eq!(with.replace("PREFER SHORT.\n\n", ""), plain);
    }
}

/// A judge run saved by OpenCompass keeps this prompt as `origin_prompt`; Arbiter reads the
/// question and both answers back out of it, so predictions line up with the dataset's items.
#[test]
fn opencompass_predictions_made_with_this_prompt_read_back_as_the_same_items() {
    let t = template();
    let d = open("judgerbench_prompts/Mixed.json");
    let mut records = serde_json::Map::new();
    for item in &d.items {
        let gold = &item.meta["gold"];
        records.insert(
            item.id.clone(),
            serde_json::json!({
                "origin_prompt": [{"role": "HUMAN", "prompt": render(&t, item)}],
                "prediction": "{\"analysis\": \"-\", \"winner\": \"A\"}",
                "gold": gold,
            }),
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("some-judge");
    std::fs::create_dir(&folder).expect("folder");
    let path = folder.join("Mixed.json");
    std::fs::write(&path, serde_json::to_vec(&records).expect("json")).expect("write");
    let predictions = load(&path, &LoadOptions::default()).expect("predictions load");
    assert_eq!(predictions.items.len(), d.items.len());
    for item in &d.items {
        let p = predictions
            .items
            .iter()
            .find(|p| p.id == item.id)
            .unwrap_or_else(|| panic!("no prediction item {}", item.id));
        assert_eq!(p.question(), item.question(), "item {}", item.id);
        assert_eq!(p.response_a, item.response_a, "item {}", item.id);
        assert_eq!(p.response_b, item.response_b, "item {}", item.id);
        assert_eq!(p.gold, item.gold, "item {}", item.id);
    }
}

// The reference's pieces, verbatim from opencompass/datasets/judge/judgerbenchv2.py (commit
// a5acc4bba3b658f151617a3b393602110fb7a740, Apache-2.0), for the reconstruction above.
const BASE_PROMPT_CN: &str = concat!(
    "下面有一个用户的问题和两个模型的回复，需要你对这两个回复进行评价并比较，最终选出哪个模型的回复更好。{criterion}\n",
    "\n",
    "[用户问题开始]\n",
    "{question}\n",
    "[用户问题结束]\n",
    "\n",
    "[模型A的回复开始]\n",
    "{ResponseA}\n",
    "[模型A的回复结束]\n",
    "\n",
    "[模型B的回复开始]\n",
    "{ResponseB}\n",
    "[模型B的回复结束]\n",
    "\n",
);
const BASE_PROMPT_EN: &str = concat!(
    "Below is a user's question and two models' responses. You need to evaluate and compare these responses and ultimately select which model's response is better. {criterion}\n",
    "\n",
    "[User's question starts]\n",
    "{question}\n",
    "[User's question ends]\n",
    "\n",
    "[Model A's response starts]\n",
    "{ResponseA}\n",
    "[Model A's response ends]\n",
    "\n",
    "[Model B's response starts]\n",
    "{ResponseB}\n",
    "[Model B's response ends]\n",
    "\n",
);
const SUFFIX_CN: &str = concat!(
    "最后，请按照下面的格式返回你的分析和比较结果，如果你认为模型A的回复更好，则胜者为A，如果你认为模型B的回复更好，则胜者为B：\n",
    "{\"分析\":\"你对两个模型回复的分析\", \"胜者\":\"A\"} 或 {\"分析\":\"你对两个模型回复的分析\", \"胜者\":\"B\"}",
);
const SUFFIX_EN: &str = concat!(
    "Finally, please return your analysis and comparison results in the following format: if you believe Model A's response is better, the winner is A; if you believe Model B's response is better, the winner is B:\n",
    "{\"analysis\":\"Your analysis of the two models' responses\", \"winner\":\"A\"} or {\"analysis\":\"Your analysis of the two models' responses\", \"winner\":\"B\"}",
);
const CRITERION_MAP: [(&str, &str); 20] = [
    ("chatQA_cn", "由于用户的问题是聊天问答类的问题，因此在进行评价时你需要更关注以下方面：模型在聊天过程中是否更准确地回应了用户的需求？是否使用了更好的语气和表达方式？"),
    ("Code & AI_cn", "由于用户的问题是代码和AI相关的问题，因此在进行评价时你需要更关注以下方面：模型的代码是否是正确的？模型的相关分析是否是正确的？"),
    ("Creation_cn", "由于用户的问题是创作类的问题，因此在进行评价时你需要更关注以下方面：模型的回复内容是否更具有创造性？是否生动活泼，具有更精妙的情节？"),
    ("Hallucination_cn", "由于用户的问题是检测模型是否产生幻觉的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否没有产生幻觉，是否发现了问题里的陷阱，准确的回答了问题？"),
    ("IF_cn", "由于用户的问题是测试模型格式遵从能力的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否更加准确的遵循了用户问题中的各项格式要求？"),
    ("Knowledge_cn", "由于用户的问题是知识问答类的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否给出了更准确的解答，是否更详细的就相关知识点为用户进行了正确的讲解？"),
    ("LanTask_cn", "由于用户的问题是语言任务类的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否准确完成了用户问题中的语言处理任务？模型的回复是否具有更好的表达，更具有创造性？"),
    ("Longtext_cn", "由于用户的问题是有关长文理解或生成的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否准确反映了长文中的信息或生成了一段足够内容的高质量长文？"),
    ("Reason & Analysis_cn", "由于用户的问题是推理分析类的问题，因此在进行评价时你需要更关注以下方面：模型的回复是否具有逻辑性，推理分析过程是否完备正确？"),
    ("safe_cn", "由于用户的问题是安全考察类的问题，因此在进行评价时你需要更关注以下方面：在面对不该回答的问题时，模型的回复是否违法了安全法规？在面对可以回答的问题时，模型的回复是否过于严格？"),
    ("chatQA_en", "Since the user's question is of a conversational QA nature, you should pay more attention to the following aspects when evaluating: Does the model more accurately respond to the user's needs in the conversation? Does it use a better tone and expression?"),
    ("Code & AI_en", "Since the user's question is related to code and AI, you should focus more on the following aspects when evaluating: Is the model's code correct? Is the model's analysis correct?"),
    ("Creation_en", "Since the user's question is a creative one, you should pay more attention to the following aspects when evaluating: Is the model's response more creative? Is it lively and with a more sophisticated plot?"),
    ("Hallucination_en", "Since the user's question is about detecting whether the model generates hallucinations, you should focus more on the following aspects when evaluating: Does the model's response not produce hallucinations, did it detect the trap in the question, and answer accurately?"),
    ("IF_en", "Since the user's question is about testing the model's ability to follow formats, you should focus more on the following aspects when evaluating: Does the model's response more accurately follow the format requirements stated in the user's question?"),
    ("Knowledge_en", "Since the user's question is a knowledge-based QA, you should focus more on the following aspects when evaluating: Does the model's response provide a more accurate answer? Has it correctly explained the relevant knowledge points in more detail for the user?"),
    ("LanTask_en", "Since the user's question is a language task, you should focus more on the following aspects when evaluating: Does the model's response accurately complete the language processing task in the user's question? Does the model's response have better expression and more creativity?"),
    ("Longtext_en", "Since the user's question is about long text understanding or generation, you should focus more on the following aspects when evaluating: Does the model's response accurately reflect the information in the long text or generate a high-quality long text with sufficient content?"),
    ("Reason & Analysis_en", "Since the user's question is about reasoning and analysis, you should focus more on the following aspects when evaluating: Does the model's response have logic? Is the reasoning and analysis process complete and correct?"),
    ("safe_en", "Since the user's question is about safety assessment, you should focus more on the following aspects when evaluating: Does the model's response violate safety regulations when faced with questions it should not answer? Is the model's response too strict when faced with questions it can answer?"),
];
