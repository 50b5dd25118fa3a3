//! End-to-end tests of the GGUF tokenizer and chat template on a real model file:
//! SmolLM2-135M-Instruct (Q4_1), whose path `ARBITER_TEST_GGUF` gives. The token ids must be
//! exactly those llama.cpp produces on the same file.

#[path = "common/real_model.rs"]
mod real_model;

use arbiter::engine::chat::{ChatMessage, ChatTemplate};
use arbiter::engine::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file::{Content, Value};

/// Texts with the token ids llama.cpp gives them.
type IdCases = &'static [(&'static str, &'static [u32])];

fn load() -> Option<(Content, Tokenizer)> {
    let path = real_model::gguf("the GGUF tokenizer tests")?;
    let mut file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}={}: {e}", real_model::VAR, path.display()));
    let content = Content::read(&mut file).unwrap_or_else(|e| {
        panic!(
            "{}={} is not a GGUF file: {e}",
            real_model::VAR,
            path.display()
        )
    });
    let tokenizer = Tokenizer::from_gguf(&content).expect("SmolLM2's GGUF tokenizer loads");
    Some((content, tokenizer))
}

/// Texts with the ids llama.cpp gives them on SmolLM2-135M-Instruct.Q4_1.gguf.
///
/// Obtained with llama-cpp-python 0.3.36 (which builds its vendored llama.cpp):
/// `Llama(model_path=..., vocab_only=True).tokenize(text.encode(), add_bos=False, special=True)`.
/// Non-ASCII text is written as escapes (the comment above each shows it) so no editor or
/// Unicode normalisation can change the bytes under test.
const LLAMA_CPP_IDS: IdCases = &[
    (
        "The quick brown fox jumps over the lazy dog.",
        &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
    ),
    (
        "Hello, world! How are you today?",
        &[19556, 28, 905, 17, 1073, 359, 346, 1834, 47],
    ),
    (
        "def add(a, b):\n    return a + b\n\nif __name__ == \"__main__\":\n\tprint(add(1,  2))",
        &[1604, 803, 24, 81, 28, 278, 727, 472, 1003, 253, 1232, 278, 198, 198, 342, 2758, 1245, 890, 1758, 17892, 6157, 18953, 198, 197, 3272, 24, 2104, 24, 33, 28, 256, 34, 1292],
    ),
    (
        "12345 3.14159 and 2024-07-26, 1,000,000",
        &[33, 34, 35, 36, 37, 216, 35, 30, 33, 36, 33, 37, 41, 284, 216, 34, 32, 34, 36, 29, 32, 39, 29, 34, 38, 28, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32],
    ),
    (
        "don't I'm you're we've they'll she'd IT'S",
        &[12420, 982, 339, 5248, 346, 2316, 392, 3543, 502, 3060, 1041, 6737, 9627, 23, 67],
    ),
    (
        "\n\n",
        &[1116],
    ),
    (
        "   leading and trailing spaces   ",
        &[256, 2899, 284, 35079, 5600, 333],
    ),
    // 中文分词测试：你好，世界！
    (
        "\u{4e2d}\u{6587}\u{5206}\u{8bcd}\u{6d4b}\u{8bd5}\u{ff1a}\u{4f60}\u{597d}\u{ff0c}\u{4e16}\u{754c}\u{ff01}",
        &[28589, 29184, 37349, 16313, 231, 43222, 229, 16313, 239, 24713, 18645, 250, 48392, 138, 12831, 7906, 240, 178, 239, 230, 8083, 219],
    ),
    // emoji 😀👍🏽 and ❤️
    (
        "emoji \u{1f600}\u{1f44d}\u{1f3fd} and \u{2764}\u{fe0f}",
        &[391, 33777, 40303, 218, 10813, 235, 231, 10813, 233, 138, 284, 4636, 247, 114, 31752],
    ),
    (
        "<|im_start|>user\nWhich answer is better, A or B?<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 14413, 2988, 314, 1365, 28, 330, 355, 389, 47, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        &[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198],
    ),
    // Ünïcödé naïve café — “quotes” ‘single’ … ½ ² ٣
    (
        "\u{dc}n\u{ef}c\u{f6}d\u{e9} na\u{ef}ve caf\u{e9} \u{2014} \u{201c}quotes\u{201d} \u{2018}single\u{2019} \u{2026} \u{bd} \u{b2} \u{663}",
        &[142, 246, 94, 25972, 83, 7466, 84, 2756, 15486, 46494, 37366, 1841, 619, 385, 2346, 573, 1551, 18536, 417, 5548, 216, 16738, 216, 19133, 216, 164, 113],
    ),
    (
        "mixedCASE camelCase snake_case kebab-case URL: https://example.com/path?q=1&r=2#frag",
        &[35781, 51, 13108, 32782, 10802, 14321, 79, 7544, 902, 82, 369, 29, 7544, 12107, 42, 5141, 1742, 7434, 30, 824, 31, 1537, 47, 97, 45, 33, 22, 98, 45, 34, 19, 28082],
    ),
    (
        "tabs\tand\r\nwindows newlines\r\n",
        &[100, 7366, 197, 397, 201, 198, 37066, 725, 5110, 2738],
    ),
    (
        "a<|im_end|>b<|endoftext|><repo_name>x",
        &[81, 2, 82, 0, 3, 104],
    ),
    (
        "    def f():\n        pass    \n",
        &[333, 753, 275, 3734, 448, 1301, 289, 198],
    ),
    (
        "",
        &[],
    ),
    (
        " ",
        &[216],
    ),
    // ¡Hola! ¿Qué tal? Ça va? Привет, как дела? Γειά σου
    (
        "\u{a1}Hola! \u{bf}Qu\u{e9} tal? \u{c7}a va? \u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}, \u{43a}\u{430}\u{43a} \u{434}\u{435}\u{43b}\u{430}? \u{393}\u{3b5}\u{3b9}\u{3ac} \u{3c3}\u{3bf}\u{3c5}",
        &[141, 111, 56, 7866, 17, 3351, 140, 6317, 2756, 5252, 47, 5549, 225, 81, 46316, 47, 5470, 249, 46879, 16464, 32547, 28, 31338, 6511, 13760, 33427, 42292, 6511, 47, 5664, 237, 14240, 12001, 26112, 32437, 39963],
    ),
    (
        "$$ x^2 + y_1 = \\frac{1}{2} $$ {\"json\": [1, 2, {\"k\": null}]}",
        &[9212, 1792, 78, 34, 1232, 329, 79, 33, 446, 3814, 18169, 107, 33, 15009, 34, 109, 17410, 9583, 5518, 1799, 933, 33, 28, 216, 34, 28, 9583, 91, 1799, 10034, 109, 28852],
    ),
];

#[test]
fn gguf_token_ids_match_llama_cpp() {
    let Some((_, tok)) = load() else { return };
    let mut mismatches = Vec::new();
    for (text, expected) in LLAMA_CPP_IDS {
        let ids = tok.encode(text, false).expect("encodes");
        if ids != *expected {
            mismatches.push(format!(
                "{text:?}\n  llama.cpp: {expected:?}\n  ours:      {ids:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "ids differ from llama.cpp:\n{}",
        mismatches.join("\n")
    );
}

/// llama.cpp's ids on the same file with `tokenizer.ggml.pre` rewritten to another family
/// (a copy of its metadata with only that key changed, tokenized by the same llama-cpp-python
/// call as `LLAMA_CPP_IDS`), so the Qwen2 and Llama-3 splits are checked against llama.cpp too.
/// Only texts whose ids differ from the smollm split are listed; the rest must stay equal.
const OTHER_PRE_IDS: &[(&str, IdCases)] = &[
    (
        "qwen2",
        &[
            (
                "def add(a, b):\n    return a + b\n\nif __name__ == \"__main__\":\n\tprint(add(1,  2))",
                &[1604, 803, 24, 81, 28, 278, 727, 198, 333, 1003, 253, 1232, 278, 1116, 342, 2758, 1245, 890, 1758, 17892, 6157, 18953, 198, 197, 3272, 24, 2104, 24, 33, 28, 216, 216, 34, 1292],
            ),
            (
                "tabs\tand\r\nwindows newlines\r\n",
                &[100, 7366, 197, 397, 2738, 37066, 725, 5110, 2738],
            ),
            (
                "    def f():\n        pass    \n",
                &[333, 753, 275, 3734, 198, 415, 1301, 289, 198],
            ),
        ],
    ),
    (
        "llama-bpe",
        &[
            (
                "def add(a, b):\n    return a + b\n\nif __name__ == \"__main__\":\n\tprint(add(1,  2))",
                &[1604, 803, 24, 81, 28, 278, 727, 198, 333, 1003, 253, 1232, 278, 1116, 342, 2758, 1245, 890, 1758, 17892, 6157, 18953, 198, 197, 3272, 24, 2104, 24, 33, 28, 216, 216, 34, 1292],
            ),
            (
                "tabs\tand\r\nwindows newlines\r\n",
                &[100, 7366, 197, 397, 2738, 37066, 725, 5110, 2738],
            ),
            (
                "    def f():\n        pass    \n",
                &[333, 753, 275, 3734, 198, 415, 1301, 289, 198],
            ),
        ],
    ),
];

#[test]
fn gguf_other_pre_tokenizers_match_llama_cpp() {
    let Some((mut content, _)) = load() else {
        return;
    };
    for (pre, differing) in OTHER_PRE_IDS {
        content.metadata.insert(
            "tokenizer.ggml.pre".to_string(),
            Value::String((*pre).to_string()),
        );
        let tok = Tokenizer::from_gguf(&content).expect("the rewritten GGUF tokenizer loads");
        for (text, smollm_ids) in LLAMA_CPP_IDS {
            let expected = differing
                .iter()
                .find(|(t, _)| t == text)
                .map_or(*smollm_ids, |(_, ids)| *ids);
            assert_eq!(
                tok.encode(text, false).unwrap(),
                expected,
                "pre {pre}, text {text:?}"
            );
        }
    }
}

#[test]
fn gguf_metadata_is_read() {
    let Some((_, tok)) = load() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(0).as_deref(), Some("<|endoftext|>"));
    // tokenizer.ggml.add_bos_token is false: llama.cpp's add_bos=True adds nothing either
    // (`tokenize(b"Hi there", add_bos=True, special=True)` gives [26843, 665]).
    assert_eq!(tok.encode("Hi there", true).unwrap(), [26843, 665]);
}

#[test]
fn gguf_decode_inverts_encode() {
    let Some((_, tok)) = load() else { return };
    for (text, _) in LLAMA_CPP_IDS {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), *text, "ids {ids:?}");
    }
    let ids = tok
        .encode("<|im_start|>user\nHi<|im_end|>\n", false)
        .unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi\n");
}

#[test]
fn gguf_decode_stream_reassembles_split_characters() {
    let Some((_, tok)) = load() else { return };
    // Byte-level BPE splits CJK and emoji over several tokens; DecodeStream must hold the
    // partial UTF-8 back until a character is whole.
    let text = "\u{4e2d}\u{6587} emoji \u{1f600}\u{1f44d}\u{1f3fd} ok";
    let ids = tok.encode(text, false).unwrap();
    let mut stream = tok.inner().decode_stream(false);
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = stream.step(id).unwrap() {
            assert!(
                !piece.contains('\u{fffd}'),
                "a split character leaked: {piece:?}"
            );
            out.push_str(&piece);
        }
    }
    assert_eq!(out, text);
}

#[test]
fn gguf_chat_template_renders_system_and_user_with_generation_prompt() {
    let Some((content, tok)) = load() else { return };
    let template = ChatTemplate::from_gguf(&content, &tok)
        .expect("the template compiles")
        .expect("SmolLM2's GGUF carries a chat template");
    let messages = [
        ChatMessage::new("system", "You are a strict judge."),
        ChatMessage::new("user", "Which answer is better?"),
    ];
    let prompt = template.render(&messages, true).unwrap();
    // Python jinja2 (ImmutableSandboxedEnvironment, trim_blocks and lstrip_blocks on, as
    // transformers renders) gives exactly this for the file's template.
    let expected = "<|im_start|>system\nYou are a strict judge.<|im_end|>\n\
                    <|im_start|>user\nWhich answer is better?<|im_end|>\n\
                    <|im_start|>assistant\n";
    assert_eq!(prompt, expected);
    // llama.cpp's ids for that prompt (same call as LLAMA_CPP_IDS).
    assert_eq!(
        tok.encode(&prompt, false).unwrap(),
        [
            1, 9690, 198, 2683, 359, 253, 6844, 8048, 30, 2, 198, 1, 4093, 198, 14413, 2988, 314,
            1365, 47, 2, 198, 1, 520, 9531, 198
        ]
    );
    // Without a system message the template inserts its own.
    let prompt = template
        .render(&[ChatMessage::new("user", "Hi")], true)
        .unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{prompt}"
    );
}

#[test]
fn gguf_end_of_turn_tokens_include_im_end() {
    let Some((content, tok)) = load() else { return };
    let template = ChatTemplate::from_gguf(&content, &tok).unwrap().unwrap();
    let stops = template.end_of_turn_tokens(&tok);
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    assert!(stops.contains(&im_end), "{stops:?}");
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    assert!(!stops.contains(&im_start), "{stops:?}");
}

/// Optional wider check: `ARBITER_TEST_TOKENIZER_CASES` names a JSON file of
/// `[{"text": ..., "ids": [...]}]` produced by llama.cpp on the same GGUF (as above).
#[test]
fn gguf_token_ids_match_llama_cpp_on_extra_cases() {
    let Some((_, tok)) = load() else { return };
    let Some(cases) = std::env::var_os("ARBITER_TEST_TOKENIZER_CASES") else {
        return;
    };
    let text = std::fs::read_to_string(&cases).expect("the cases file reads");
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&text).expect("the cases file is JSON");
    let mut mismatches = Vec::new();
    for case in &cases {
        let text = case["text"].as_str().expect("a text");
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("an id") as u32)
            .collect();
        let ids = tok.encode(text, false).unwrap();
        if ids != expected {
            mismatches.push(format!(
                "{text:?}\n  llama.cpp: {expected:?}\n  ours:      {ids:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from llama.cpp:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}
