//! A tiny Qwen2 model written by the tests themselves: random weights (a fixed seed), a real
//! `config.json`, a small byte-level BPE `tokenizer.json` with ChatML special tokens, and a
//! `tokenizer_config.json` carrying a chat template. Small enough to run in milliseconds,
//! shaped like the real thing (grouped-query attention, q/k/v biases, tied embeddings).

#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

pub const HIDDEN: usize = 64;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const INTERMEDIATE: usize = 128;

/// Multi-character merges on top of the 256 byte tokens, so both whole and split multi-byte
/// characters occur.
const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ã", "©"),
    ("ä", "¸"),
    ("ä¸", "Ń"),
    ("æ", "ĸ"),
    ("æĸ", "ĩ"),
    ("ð", "Ł"),
    ("ðŁ", "ĺ"),
    ("Ġ", "A"),
    ("Ġ", "B"),
    ("M", "o"),
    ("Mo", "d"),
    ("Mod", "e"),
    ("Mode", "l"),
];

pub const SPECIALS: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The GPT-2 byte-to-character table byte-level BPE uses.
pub fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(chars) {
        table[*b as usize] = char::from_u32(c).expect("valid char");
    }
    table
}

pub fn vocab() -> Vec<String> {
    let mut vocab: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
    for (a, b) in MERGES {
        vocab.push(format!("{a}{b}"));
    }
    vocab
}

/// Vocabulary size including the special tokens (the embedding's row count).
pub fn vocab_size() -> usize {
    vocab().len() + SPECIALS.len()
}

pub fn tokenizer_json() -> serde_json::Value {
    let vocab = vocab();
    let mut map = serde_json::Map::new();
    for (i, t) in vocab.iter().enumerate() {
        map.insert(t.clone(), json!(i));
    }
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": vocab.len() + i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let merges: Vec<String> = MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": map, "merges": merges}
    })
}

/// A ChatML template in the shape chat models ship: system turn first when given.
pub const CHAT_TEMPLATE: &str = "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}";

/// SplitMix64 normal-ish values: the same weights on every platform.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // Uniform in [-1, 1) scaled: enough spread for non-degenerate logits.
            (((z >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0) as f32 * scale
        })
        .collect()
}

/// Writes the whole model folder into `dir` (created if missing).
pub fn write(dir: &Path) {
    std::fs::create_dir_all(dir).expect("model dir");
    let vocab = vocab_size();
    let head_dim = HIDDEN / HEADS;
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": vocab,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "sliding_window": null,
        "use_sliding_window": false,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "eos_token_id": vocab - 1,
        "bos_token_id": null,
        "hidden_act": "silu"
    });
    let dev = Device::Cpu;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut seed = 1u64;
    let mut norms: Vec<String> = Vec::new();
    let mut add = |name: String, shape: &[usize], scale: f32| {
        let n = shape.iter().product();
        seed += 1;
        let t = Tensor::from_vec(values(n, seed, scale), shape, &dev).expect("tensor");
        tensors.insert(name, t);
    };
    add("model.embed_tokens.weight".into(), &[vocab, HIDDEN], 1.0);
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        add(
            format!("{p}.self_attn.q_proj.weight"),
            &[HEADS * head_dim, HIDDEN],
            0.3,
        );
        add(
            format!("{p}.self_attn.q_proj.bias"),
            &[HEADS * head_dim],
            0.1,
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            &[KV_HEADS * head_dim, HIDDEN],
            0.3,
        );
        add(
            format!("{p}.self_attn.k_proj.bias"),
            &[KV_HEADS * head_dim],
            0.1,
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            &[KV_HEADS * head_dim, HIDDEN],
            0.3,
        );
        add(
            format!("{p}.self_attn.v_proj.bias"),
            &[KV_HEADS * head_dim],
            0.1,
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            &[HIDDEN, HEADS * head_dim],
            0.2,
        );
        add(
            format!("{p}.mlp.gate_proj.weight"),
            &[INTERMEDIATE, HIDDEN],
            0.2,
        );
        add(
            format!("{p}.mlp.up_proj.weight"),
            &[INTERMEDIATE, HIDDEN],
            0.2,
        );
        add(
            format!("{p}.mlp.down_proj.weight"),
            &[HIDDEN, INTERMEDIATE],
            0.2,
        );
        norms.push(format!("{p}.input_layernorm.weight"));
        norms.push(format!("{p}.post_attention_layernorm.weight"));
    }
    norms.push("model.norm.weight".into());
    for name in norms {
        tensors.insert(name, Tensor::ones(HIDDEN, DType::F32, &dev).expect("ones"));
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("weights");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("json"),
    )
    .expect("config");
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_string(&tokenizer_json()).expect("json"),
    )
    .expect("tokenizer");
    let tok_config = json!({
        "chat_template": CHAT_TEMPLATE,
        "eos_token": "<|im_end|>",
        "bos_token": null,
        "model_max_length": 8192
    });
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&tok_config).expect("json"),
    )
    .expect("tokenizer config");
    std::fs::write(
        dir.join("generation_config.json"),
        json!({"eos_token_id": [vocab - 1, vocab - 3]}).to_string(),
    )
    .expect("generation config");
}

/// A "scripted" tiny Qwen2: real files, real tokenizer, real decoder, but weights chosen so
/// that greedy decoding writes exactly `script` (then ends its turn), whatever the prompt.
///
/// How: every piece of the script is its own vocabulary entry, the embedding is one-hot,
/// attention and MLP outputs are zero (so the last hidden state is the current token's
/// one-hot), and `lm_head` maps each piece to the next one. The first piece follows the
/// newline that opens the assistant turn. Pieces must be distinct.
pub fn write_scripted(dir: &Path, script: &[&str]) {
    std::fs::create_dir_all(dir).expect("model dir");
    let base = vocab();
    let mut tok = tokenizer_json();
    let mut added: Vec<serde_json::Value> = tok["added_tokens"].as_array().expect("added").clone();
    let first_piece = base.len() + SPECIALS.len();
    for (i, piece) in script.iter().enumerate() {
        added.push(
            json!({"id": first_piece + i, "content": piece, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": false}),
        );
    }
    tok["added_tokens"] = serde_json::Value::Array(added);
    let vocab = first_piece + script.len();
    let hidden = vocab.div_ceil(HEADS) * HEADS;
    let head_dim = hidden / HEADS;
    let im_end = base.len() + 2;
    let newline = byte_chars()[b'\n' as usize].to_string();
    let newline_id = base
        .iter()
        .position(|t| *t == newline)
        .expect("newline token");
    let mut next = vec![im_end; vocab];
    next[newline_id] = first_piece;
    for i in 0..script.len() {
        next[first_piece + i] = if i + 1 < script.len() {
            first_piece + i + 1
        } else {
            im_end
        };
    }
    let dev = Device::Cpu;
    let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).expect("zeros");
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let eye: Vec<f32> = (0..vocab * hidden)
        .map(|k| if k / hidden == k % hidden { 1.0 } else { 0.0 })
        .collect();
    tensors.insert(
        "model.embed_tokens.weight".into(),
        Tensor::from_vec(eye, (vocab, hidden), &dev).expect("embed"),
    );
    let mut head = vec![0f32; vocab * hidden];
    for (t, n) in next.iter().enumerate() {
        head[n * hidden + t] = 1.0;
    }
    tensors.insert(
        "lm_head.weight".into(),
        Tensor::from_vec(head, (vocab, hidden), &dev).expect("lm_head"),
    );
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![HEADS * head_dim, hidden]),
            ("self_attn.q_proj.bias", vec![HEADS * head_dim]),
            ("self_attn.k_proj.weight", vec![KV_HEADS * head_dim, hidden]),
            ("self_attn.k_proj.bias", vec![KV_HEADS * head_dim]),
            ("self_attn.v_proj.weight", vec![KV_HEADS * head_dim, hidden]),
            ("self_attn.v_proj.bias", vec![KV_HEADS * head_dim]),
            ("self_attn.o_proj.weight", vec![hidden, HEADS * head_dim]),
            ("mlp.gate_proj.weight", vec![INTERMEDIATE, hidden]),
            ("mlp.up_proj.weight", vec![INTERMEDIATE, hidden]),
            ("mlp.down_proj.weight", vec![hidden, INTERMEDIATE]),
        ] {
            tensors.insert(format!("{p}.{name}"), zeros(&shape));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.insert(
                format!("{p}.{norm}.weight"),
                Tensor::ones(hidden, DType::F32, &dev).expect("ones"),
            );
        }
    }
    tensors.insert(
        "model.norm.weight".into(),
        Tensor::ones(hidden, DType::F32, &dev).expect("ones"),
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("weights");
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": hidden, "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "vocab_size": vocab,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "tie_word_embeddings": false, "eos_token_id": im_end, "hidden_act": "silu"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).expect("tokenizer");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({"chat_template": CHAT_TEMPLATE, "eos_token": "<|im_end|>"}).to_string(),
    )
    .expect("tokenizer config");
}

/// A CompassJudger-2 critique cut into distinct pieces, long enough to stream over many
/// tokens: the script `write_scripted` models use in the GUI and demo tests.
pub fn cj2_script() -> Vec<String> {
    let mut pieces = vec!["{\"User's Demand\": \"".to_string()];
    let fields = [
        ("Strengths of Model A", "A"),
        ("Weaknesses of Model A", "B"),
        ("Strengths of Model B", "C"),
        ("Weaknesses of Model B", "D"),
        ("Reasoning", "E"),
    ];
    let words = |tag: &str, pieces: &mut Vec<String>| {
        for w in 0..12 {
            pieces.push(format!("{tag}word{w} "));
        }
    };
    words("demand", &mut pieces);
    for (key, tag) in fields {
        pieces.push(format!("\", \"{key}\": \""));
        words(tag, &mut pieces);
    }
    pieces.push("\", \"Choice\": \"Model B\"}".to_string());
    pieces
}
