//! Tokenizers for local models: a thin wrapper over `tokenizers::Tokenizer`, loaded from a hub
//! `tokenizer.json` or rebuilt from a GGUF file's `tokenizer.ggml.*` metadata so that a lone
//! `.gguf` splits text into exactly the ids llama.cpp gives on that same file.
//!
//! The GGUF path mirrors llama.cpp's `llama_vocab::load` and `llm_tokenizer_bpe`
//! (`src/llama-vocab.cpp`): the pre-tokenizer regexes per `tokenizer.ggml.pre`, which token types
//! are split out before BPE, `ignore_merges`, and the BOS default.

use candle_core::quantized::gguf_file::{Content, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "cannot load the tokenizer from {path}: {source}; it should be a Hugging Face \
         `tokenizer.json` (download it again if it is truncated)"
    )]
    Load {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    #[error(
        "the GGUF file has no `{key}` metadata, so it carries no usable tokenizer; \
         load the model's `tokenizer.json` instead"
    )]
    MissingKey { key: &'static str },
    #[error("the GGUF metadata `{key}` is malformed ({reason}); the file may be corrupt or from an unsupported converter")]
    BadMetadata { key: &'static str, reason: String },
    #[error(
        "the GGUF tokenizer model `{model}` is not supported (only `gpt2`, byte-level BPE, and \
         `llama`, SentencePiece BPE, are); \
         load the model's `tokenizer.json` instead"
    )]
    Unsupported { model: String },
    #[error("cannot build a tokenizer from the GGUF metadata: {source}")]
    Build {
        #[source]
        source: tokenizers::Error,
    },
    #[error("cannot tokenize the text: {source}")]
    Encode {
        #[source]
        source: tokenizers::Error,
    },
    #[error("cannot turn token ids back into text: {source}")]
    Decode {
        #[source]
        source: tokenizers::Error,
    },
}

/// A model's tokenizer, with the BOS/EOS ids its source declares.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
}

impl Tokenizer {
    /// Loads a hub `tokenizer.json`. Such files say nothing about which token is BOS/EOS
    /// (that lives in `tokenizer_config.json`), so both are `None`.
    pub fn from_file(tokenizer_json: &Path) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|source| {
            TokenizerError::Load {
                path: tokenizer_json.to_path_buf(),
                source,
            }
        })?;
        Ok(Tokenizer {
            inner,
            bos_id: None,
            eos_id: None,
        })
    }

    /// Built from GGUF metadata (a lone .gguf file carries its tokenizer).
    pub fn from_gguf(content: &Content) -> Result<Tokenizer, TokenizerError> {
        let meta = &content.metadata;
        let model =
            meta_str(meta, KEY_MODEL)?.ok_or(TokenizerError::MissingKey { key: KEY_MODEL })?;
        if model == "llama" {
            return Self::from_gguf_spm(content);
        }
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported {
                model: model.to_string(),
            });
        }
        let pre_name = meta_str(meta, KEY_PRE)?.unwrap_or("");
        let pre = pre_tokenizer_for(pre_name);

        let tokens = meta_str_array(meta, KEY_TOKENS)?
            .ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
        let n_tokens = tokens.len();
        let token_types = match meta.get(KEY_TOKEN_TYPE) {
            None => vec![TOKEN_TYPE_NORMAL; n_tokens],
            Some(value) => {
                let types = int_array(value, KEY_TOKEN_TYPE)?;
                if types.len() < n_tokens {
                    return Err(TokenizerError::BadMetadata {
                        key: KEY_TOKEN_TYPE,
                        reason: format!("{} types for {n_tokens} tokens", types.len()),
                    });
                }
                types
            }
        };

        // llama.cpp renames empty tokens so that every id keeps a distinct text; do the same so
        // the id numbering (and so the model's embedding rows) stays aligned.
        let texts: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    tracing::warn!(
                        id = i,
                        "GGUF vocabulary has an empty token; naming it as llama.cpp does"
                    );
                    format!("[EMPTY_{i}]")
                } else {
                    (*t).to_string()
                }
            })
            .collect();
        let mut vocab: Vocab = Vocab::default();
        for (i, text) in texts.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| TokenizerError::BadMetadata {
                key: KEY_TOKENS,
                reason: format!("{n_tokens} tokens do not fit 32-bit ids"),
            })?;
            if vocab.insert(text.clone(), id).is_some() {
                return Err(TokenizerError::BadMetadata {
                    key: KEY_TOKENS,
                    reason: format!("token {text:?} appears more than once"),
                });
            }
        }

        let merges = match meta_str_array(meta, KEY_MERGES)? {
            Some(merges) => parse_merges(&merges, &vocab),
            None => return Err(TokenizerError::MissingKey { key: KEY_MERGES }),
        };

        let bos_id = meta_token_id(meta, KEY_BOS_ID, n_tokens)?;
        let eos_id = meta_token_id(meta, KEY_EOS_ID, n_tokens)?;
        let add_bos = meta_bool(meta, KEY_ADD_BOS)?.unwrap_or(pre.add_bos_default);
        let add_eos = meta_bool(meta, KEY_ADD_EOS)?.unwrap_or(false);

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .build()
            .map_err(|source| TokenizerError::Build { source })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);

        let mut splits: Vec<PreTokenizerWrapper> = Vec::with_capacity(pre.regexes.len() + 1);
        for regex in pre.regexes {
            let split = Split::new(
                SplitPattern::Regex((*regex).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|source| TokenizerError::Build { source })?;
            splits.push(split.into());
        }
        // The regexes above already split the text, so ByteLevel only maps bytes to its
        // printable alphabet (use_regex false) and adds no leading space.
        splits.push(ByteLevel::new(false, false, false).into());
        inner.with_pre_tokenizer(Some(Sequence::new(splits)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let (special, user_defined) = split_out_tokens(&texts, &token_types);
        let (n_special, n_user_defined) = (special.len(), user_defined.len());
        inner
            .add_special_tokens(special)
            .map_err(|source| TokenizerError::Build { source })?;
        inner
            .add_tokens(user_defined)
            .map_err(|source| TokenizerError::Build { source })?;

        let bos = if add_bos { bos_id } else { None };
        let eos = if add_eos { eos_id } else { None };
        if add_bos && bos_id.is_none() {
            tracing::warn!("GGUF asks for a BOS token but declares none; encoding without one");
        }
        if add_eos && eos_id.is_none() {
            tracing::warn!("GGUF asks for an EOS token but declares none; encoding without one");
        }
        if let Some(processor) = boundary_processor(bos, eos, &texts) {
            inner.with_post_processor(Some(processor));
        }

        tracing::debug!(
            pre = pre_name,
            tokens = n_tokens,
            special = n_special,
            user_defined = n_user_defined,
            add_bos,
            "built tokenizer from GGUF metadata"
        );
        Ok(Tokenizer {
            inner,
            bos_id,
            eos_id,
        })
    }

    /// A SentencePiece BPE vocabulary from GGUF (`tokenizer.ggml.model` = `llama`: Gemma,
    /// Llama 2, Mistral, Phi-3), split as llama.cpp's `llm_tokenizer_spm` does: spaces become
    /// `▁`, the text starts as single characters, and the adjacent pair whose concatenation is
    /// the highest-scoring token merges first (leftmost on a tie); a character not in the
    /// vocabulary falls back to its `<0xXX>` byte tokens. That is BPE whose merges are every
    /// (left, right) split of every token, ranked by the merged token's score, which is how
    /// it is built here.
    fn from_gguf_spm(content: &Content) -> Result<Tokenizer, TokenizerError> {
        use tokenizers::decoders::byte_fallback::ByteFallback;
        use tokenizers::decoders::fuse::Fuse;
        use tokenizers::decoders::sequence::Sequence as DecoderSequence;
        use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
        use tokenizers::DecoderWrapper;

        let meta = &content.metadata;
        let tokens = meta_str_array(meta, KEY_TOKENS)?
            .ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
        let n_tokens = tokens.len();
        let types = match meta.get(KEY_TOKEN_TYPE) {
            None => vec![TOKEN_TYPE_NORMAL; n_tokens],
            Some(value) => int_array(value, KEY_TOKEN_TYPE)?,
        };
        let scores: Vec<f32> = match meta.get(KEY_SCORES) {
            Some(Value::Array(items)) => items.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            Some(other) => {
                return Err(TokenizerError::BadMetadata {
                    key: KEY_SCORES,
                    reason: format!(
                        "expected an array of floats, found {:?}",
                        other.value_type()
                    ),
                })
            }
            None => return Err(TokenizerError::MissingKey { key: KEY_SCORES }),
        };
        if types.len() < n_tokens || scores.len() < n_tokens {
            return Err(TokenizerError::BadMetadata {
                key: KEY_SCORES,
                reason: format!(
                    "{} scores and {} types for {n_tokens} tokens",
                    scores.len(),
                    types.len()
                ),
            });
        }
        let texts: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    (*t).to_string()
                }
            })
            .collect();
        let mut vocab: Vocab = Vocab::default();
        for (i, text) in texts.iter().enumerate() {
            // A repeated text keeps its first id, as llama.cpp's text-to-token map does.
            vocab.entry(text.clone()).or_insert(i as u32);
        }
        // Every way to write a normal token as two vocabulary pieces is a merge; its rank is
        // the merged token's score (higher first), equal scores sharing a rank so that the
        // leftmost pair wins, as in llama.cpp's queue.
        let mut merges: Vec<(f32, usize, String, String)> = Vec::new();
        for (id, text) in texts.iter().enumerate() {
            if types[id] != TOKEN_TYPE_NORMAL || vocab.get(text) != Some(&(id as u32)) {
                continue;
            }
            for (cut, _) in text.char_indices().skip(1) {
                let (left, right) = text.split_at(cut);
                if vocab.contains_key(left) && vocab.contains_key(right) {
                    merges.push((scores[id], id, left.to_string(), right.to_string()));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let merges: Vec<(String, String)> = merges.into_iter().map(|(_, _, l, r)| (l, r)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .build()
            .map_err(|source| TokenizerError::Build { source })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let space_prefix = meta_bool(meta, KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
        let mut normalizers = Vec::new();
        if space_prefix {
            normalizers.push(Prepend::new("▁".into()).into());
        }
        normalizers.push(
            Replace::new(" ", "▁")
                .map_err(|source| TokenizerError::Build { source })?
                .into(),
        );
        inner
            .with_normalizer(Some(NormalizerSequence::new(normalizers)))
            .map_err(|source| TokenizerError::Build { source })?;
        let mut decoders: Vec<DecoderWrapper> = vec![
            tokenizers::decoders::DecoderWrapper::Replace(
                tokenizers::normalizers::Replace::new("▁", " ")
                    .map_err(|source| TokenizerError::Build { source })?,
            ),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        if space_prefix {
            decoders.push(tokenizers::decoders::strip::Strip::new(' ', 1, 0).into());
        }
        inner.with_decoder(Some(DecoderSequence::new(decoders)));

        let (special, user_defined) = split_out_tokens(&texts, &types);
        inner
            .add_special_tokens(special)
            .map_err(|source| TokenizerError::Build { source })?;
        inner
            .add_tokens(user_defined)
            .map_err(|source| TokenizerError::Build { source })?;
        let bos_id = meta_token_id(meta, KEY_BOS_ID, n_tokens)?;
        let eos_id = meta_token_id(meta, KEY_EOS_ID, n_tokens)?;
        // SentencePiece models add BOS unless the file says not to (llama.cpp's default).
        let add_bos = meta_bool(meta, KEY_ADD_BOS)?.unwrap_or(true);
        let add_eos = meta_bool(meta, KEY_ADD_EOS)?.unwrap_or(false);
        let bos = if add_bos { bos_id } else { None };
        let eos = if add_eos { eos_id } else { None };
        if let Some(processor) = boundary_processor(bos, eos, &texts) {
            inner.with_post_processor(Some(processor));
        }
        tracing::debug!(
            tokens = n_tokens,
            add_bos,
            space_prefix,
            "built SentencePiece tokenizer from GGUF metadata"
        );
        Ok(Tokenizer {
            inner,
            bos_id,
            eos_id,
        })
    }

    /// Encodes text in which special tokens (e.g. `<|im_start|>`) written literally are read as
    /// those tokens. `add_special_tokens` = the post-processor's BOS etc.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|source| TokenizerError::Encode { source })?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|source| TokenizerError::Decode { source })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped tokenizer, for `DecodeStream` in the generation loop.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// BOS as the source declares it (GGUF: `tokenizer.ggml.bos_token_id`; tokenizer.json: `None`).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// EOS as the source declares it (GGUF: `tokenizer.ggml.eos_token_id`; tokenizer.json: `None`).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The special (control) tokens' texts with their ids, e.g. `<|im_end|>`.
    pub fn special_tokens(&self) -> Vec<(u32, String)> {
        let mut special: Vec<(u32, String)> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, token)| (id, token.content))
            .collect();
        special.sort_unstable();
        special
    }
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";

// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_NORMAL: i64 = 1;
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Token texts llama.cpp turns into control tokens whatever type the file gives them (its
/// EOT/EOM/FIM/EOG detection in `llama_vocab::load`). Being control, they are split out of the
/// text before BPE, so they must be special here too or the ids would differ.
const PROMOTED_TO_CONTROL: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Tokens llama.cpp always treats as user-defined (gpt-oss's harmony markers), so they are
/// split out and still printed when decoding.
const FORCED_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// The token texts split out of the text before BPE: (special, user-defined).
///
/// llama.cpp splits out control, unknown and user-defined tokens (`cache_special_tokens`);
/// control and unknown ones are special (dropped when decoding with `skip_special_tokens`).
fn split_out_tokens(texts: &[String], types: &[i64]) -> (Vec<AddedToken>, Vec<AddedToken>) {
    let promoted: HashSet<&str> = PROMOTED_TO_CONTROL.iter().copied().collect();
    let forced_user: HashSet<&str> = FORCED_USER_DEFINED.iter().copied().collect();
    let mut special = Vec::new();
    let mut user_defined = Vec::new();
    for (text, &kind) in texts.iter().zip(types) {
        // Added tokens match the raw text, as llama.cpp's partitioning does; no stripping.
        let added = |is_special: bool| {
            AddedToken::from(text.clone(), is_special)
                .normalized(false)
                .lstrip(false)
                .rstrip(false)
                .single_word(false)
        };
        if forced_user.contains(text.as_str()) {
            user_defined.push(added(false));
        } else if kind == TOKEN_TYPE_CONTROL
            || kind == TOKEN_TYPE_UNKNOWN
            || promoted.contains(text.as_str())
        {
            special.push(added(true));
        } else if kind == TOKEN_TYPE_USER_DEFINED {
            user_defined.push(added(false));
        }
    }
    (special, user_defined)
}

/// How llama.cpp pre-tokenizes one `tokenizer.ggml.pre` family.
struct PreTokenizer {
    /// Applied in order, each to the pieces the previous one left (llama.cpp's
    /// `unicode_regex_split`), keeping both matches and the text between them.
    regexes: &'static [&'static str],
    /// Whole pieces found in the vocabulary are taken as they are, without merging.
    ignore_merges: bool,
    /// Whether BOS is added when the file has no `tokenizer.ggml.add_bos_token`.
    add_bos_default: bool,
}

// The regexes are llama.cpp's own (its "adapted" forms where it rewrote the tokenizer.json
// pattern), since matching llama.cpp on the same file is the point.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// llama.cpp's pre-tokenizer for a `tokenizer.ggml.pre` value.
fn pre_tokenizer_for(pre: &str) -> PreTokenizer {
    let plain = |regexes| PreTokenizer {
        regexes,
        ignore_merges: false,
        add_bos_default: false,
    };
    match pre {
        // llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT (what it also uses when `pre` is missing).
        "" | "default" => plain(&[
            r"[\p{P}\$\+<=>\^~\|]+",
            GPT2,
            r"\p{N}+",
            "[0-9][0-9][0-9]",
        ]),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => PreTokenizer {
            regexes: &[LLAMA3],
            ignore_merges: true,
            add_bos_default: true,
        },
        "dbrx" | "smaug-bpe" | "chatglm-bpe" => plain(&[LLAMA3]),
        "glm4" | "glm5" => PreTokenizer {
            regexes: &[LLAMA3],
            ignore_merges: true,
            add_bos_default: false,
        },
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "stablelm2" | "megrez" | "hunyuan"
        | "solar-open" | "grok-2" => plain(&[QWEN2]),
        "qwen35" => plain(&[QWEN35]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b"
        | "mellum2" => plain(&[r"\p{N}", GPT2]),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
        | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" | "exaone4" => plain(&[GPT2]),
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => plain(&[GPT4O]),
        "tekken" => PreTokenizer {
            regexes: &[TEKKEN],
            ignore_merges: true,
            add_bos_default: true,
        },
        "falcon" => plain(&[
            r"[\p{P}\$\+<=>\^~\|`]+",
            GPT2,
            "[0-9][0-9][0-9]",
        ]),
        "deepseek-llm" => plain(&[
            "[\r\n]",
            "\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+",
            "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
            "\\s+$",
            "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
            "\\p{N}+",
        ]),
        "deepseek-coder" => plain(&[
            "[\r\n]",
            "\\s?\\p{L}+",
            "\\s?\\p{P}+",
            "[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
            "\\p{N}",
        ]),
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => plain(&[
            "\\p{N}{1,3}",
            "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ]),
        "seed-coder" => plain(&[SEED_CODER]),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => plain(&[BAILINGMOE]),
        "chameleon" => PreTokenizer {
            regexes: &[
                "<sentinel:[0-9]+>",
                "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                "([\\t\\n]|    |  )",
                r"\p{N}",
                r"[\p{P}!-/:-@\[-`{-~]",
                GPT2,
            ],
            ignore_merges: false,
            add_bos_default: true,
        },
        other => {
            tracing::warn!(
                pre = other,
                "unknown GGUF pre-tokenizer `{other}`; splitting text with the GPT-2 pattern, so \
                 tokens may differ from the model's own tokenizer"
            );
            plain(&[GPT2])
        }
    }
}

/// Parses GGUF merges ("a b") as llama.cpp does, splitting at the first space after the first
/// byte. Merges naming tokens outside the vocabulary are dropped: `tokenizers` refuses them and
/// llama.cpp can only fall back to single bytes for them anyway. Repeated pairs keep their first
/// (best) rank, as llama.cpp's `bpe_ranks.emplace` does.
fn parse_merges(merges: &[&str], vocab: &Vocab) -> Vec<(String, String)> {
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(merges.len());
    let mut parsed = Vec::with_capacity(merges.len());
    let mut dropped = 0usize;
    for merge in merges {
        // A byte search: the first character may be several bytes long, and the space is ASCII,
        // so the index found is always a character boundary.
        let Some(split) = merge.bytes().skip(1).position(|b| b == b' ').map(|i| i + 1) else {
            dropped += 1;
            continue;
        };
        let (left, right) = (&merge[..split], &merge[split + 1..]);
        let joined = format!("{left}{right}");
        if !vocab.contains_key(left) || !vocab.contains_key(right) || !vocab.contains_key(&joined) {
            dropped += 1;
            continue;
        }
        if seen.insert((left, right)) {
            parsed.push((left.to_string(), right.to_string()));
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "GGUF merges that name tokens outside the vocabulary were ignored"
        );
    }
    parsed
}

/// The post-processor adding BOS and/or EOS when encoding with special tokens.
fn boundary_processor(
    bos: Option<u32>,
    eos: Option<u32>,
    texts: &[String],
) -> Option<TemplateProcessing> {
    if bos.is_none() && eos.is_none() {
        return None;
    }
    // Template pieces are named "BOS"/"EOS" rather than by the token text, since a token text
    // may hold the template syntax's own `:` or spaces.
    let mut specials = Vec::new();
    for (name, id) in [("BOS", bos), ("EOS", eos)] {
        if let Some(id) = id {
            let text = usize::try_from(id)
                .ok()
                .and_then(|i| texts.get(i))
                .cloned()
                .unwrap_or_default();
            specials.push(SpecialToken::new(name.to_string(), vec![id], vec![text]));
        }
    }
    let specials: Result<Vec<SpecialToken>, String> = specials
        .into_iter()
        .map(|s| s.map_err(|e| e.to_string()))
        .collect();
    let (single, pair) = match (bos.is_some(), eos.is_some()) {
        (true, true) => ("BOS $A EOS", "BOS $A EOS $B:1 EOS:1"),
        (true, false) => ("BOS $A", "BOS $A $B:1"),
        _ => ("$A EOS", "$A EOS $B:1 EOS:1"),
    };
    let built = TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| e.to_string())
        .and_then(|b| Ok(b.special_tokens(specials?).build()))
        .and_then(|built| built.map_err(|e| e.to_string()));
    match built {
        Ok(processor) => Some(processor),
        Err(reason) => {
            // The templates are fixed above, so this cannot happen; say so rather than panic.
            tracing::error!(%reason, "could not build the BOS/EOS post-processor; encoding without it");
            None
        }
    }
}

fn meta_str<'a>(
    meta: &'a HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<&'a str>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(TokenizerError::BadMetadata {
            key,
            reason: format!("expected a string, found {:?}", other.value_type()),
        }),
    }
}

fn meta_str_array<'a>(
    meta: &'a HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<Vec<&'a str>>, TokenizerError> {
    let Some(value) = meta.get(key) else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(TokenizerError::BadMetadata {
            key,
            reason: format!(
                "expected an array of strings, found {:?}",
                value.value_type()
            ),
        });
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.as_str()),
            other => Err(TokenizerError::BadMetadata {
                key,
                reason: format!("expected strings, found {:?}", other.value_type()),
            }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn meta_bool(
    meta: &HashMap<String, Value>,
    key: &'static str,
) -> Result<Option<bool>, TokenizerError> {
    match meta.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            as_int(other)
                .map(|v| Some(v != 0))
                .ok_or_else(|| TokenizerError::BadMetadata {
                    key,
                    reason: format!("expected a boolean, found {:?}", other.value_type()),
                })
        }
    }
}

/// A token id key; an id outside the vocabulary is ignored with a warning, as llama.cpp does.
fn meta_token_id(
    meta: &HashMap<String, Value>,
    key: &'static str,
    n_tokens: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(value) = meta.get(key) else {
        return Ok(None);
    };
    let id = as_int(value).ok_or_else(|| TokenizerError::BadMetadata {
        key,
        reason: format!("expected an integer, found {:?}", value.value_type()),
    })?;
    match u32::try_from(id) {
        Ok(id) if usize::try_from(id).is_ok_and(|i| i < n_tokens) => Ok(Some(id)),
        _ => {
            tracing::warn!(
                key,
                id,
                n_tokens,
                "GGUF special token id is outside the vocabulary; ignoring it"
            );
            Ok(None)
        }
    }
}

fn int_array(value: &Value, key: &'static str) -> Result<Vec<i64>, TokenizerError> {
    let Value::Array(items) = value else {
        return Err(TokenizerError::BadMetadata {
            key,
            reason: format!(
                "expected an array of integers, found {:?}",
                value.value_type()
            ),
        });
    };
    items
        .iter()
        .map(|item| {
            as_int(item).ok_or_else(|| TokenizerError::BadMetadata {
                key,
                reason: format!("expected integers, found {:?}", item.value_type()),
            })
        })
        .collect()
}

/// Any GGUF integer as i64: converters differ in which width they write.
fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::U8(v) => Some(i64::from(*v)),
        Value::I8(v) => Some(i64::from(*v)),
        Value::U16(v) => Some(i64::from(*v)),
        Value::I16(v) => Some(i64::from(*v)),
        Value::U32(v) => Some(i64::from(*v)),
        Value::I32(v) => Some(i64::from(*v)),
        Value::U64(v) => i64::try_from(*v).ok(),
        Value::I64(v) => Some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::VersionedMagic;

    /// GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100...
    fn byte_chars() -> Vec<String> {
        let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
        printable.extend(0xA1..=0xAC);
        printable.extend(0xAE..=0xFF);
        let mut next = 256u32;
        (0u32..256)
            .map(|b| {
                let c = if printable.contains(&b) {
                    b
                } else {
                    next += 1;
                    next - 1
                };
                char::from_u32(c)
                    .expect("the table only holds valid chars")
                    .to_string()
            })
            .collect()
    }

    /// A tiny GGUF vocabulary: <|endoftext|>, <|im_start|>, <|im_end|>, a user-defined
    /// <tool>, the 256 byte tokens, then the words that `merges` builds.
    fn tiny_content(pre: &str, extra: &[(&str, Value)]) -> Content {
        let mut tokens: Vec<String> = vec![
            "<|endoftext|>".into(),
            "<|im_start|>".into(),
            "<|im_end|>".into(),
            "<tool>".into(),
        ];
        let mut types = vec![3i32, 3, 3, 4];
        for c in byte_chars() {
            tokens.push(c);
            types.push(1);
        }
        let merges = [
            "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
        ];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        let mut metadata: HashMap<String, Value> = HashMap::new();
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        metadata.insert(KEY_MODEL.into(), Value::String("gpt2".into()));
        metadata.insert(KEY_PRE.into(), Value::String(pre.into()));
        metadata.insert(KEY_TOKENS.into(), strings(tokens));
        metadata.insert(
            KEY_TOKEN_TYPE.into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        );
        metadata.insert(
            KEY_MERGES.into(),
            strings(merges.iter().map(|m| m.to_string()).collect()),
        );
        metadata.insert(KEY_BOS_ID.into(), Value::U32(1));
        metadata.insert(KEY_EOS_ID.into(), Value::U32(2));
        for (k, v) in extra {
            metadata.insert((*k).to_string(), v.clone());
        }
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    fn pieces(tok: &Tokenizer, text: &str, add_special: bool) -> Vec<String> {
        tok.encode(text, add_special)
            .unwrap()
            .into_iter()
            .map(|id| tok.id_to_token(id).unwrap())
            .collect()
    }

    #[test]
    fn gguf_tokenizer_merges_and_splits_out_special_tokens() {
        let tok = Tokenizer::from_gguf(&tiny_content("gpt-2", &[])).unwrap();
        assert_eq!(tok.vocab_size(), 4 + 256 + 9);
        assert_eq!(pieces(&tok, "hello world", false), ["hello", "Ġworld"]);
        assert_eq!(
            pieces(&tok, "<|im_start|>hello<|im_end|><tool>", false),
            ["<|im_start|>", "hello", "<|im_end|>", "<tool>"]
        );
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.eos_id(), Some(2));
        // No add_bos_token key and a GPT-2 pre-tokenizer: llama.cpp adds no BOS.
        assert_eq!(pieces(&tok, "hello", true), ["hello"]);
    }

    #[test]
    fn gguf_decode_skips_only_special_tokens() {
        let tok = Tokenizer::from_gguf(&tiny_content("gpt-2", &[])).unwrap();
        let ids = tok
            .encode("<|im_start|>hello world<tool>\n", false)
            .unwrap();
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            "<|im_start|>hello world<tool>\n"
        );
        assert_eq!(tok.decode(&ids, true).unwrap(), "hello world<tool>\n");
        let specials: Vec<String> = tok.special_tokens().into_iter().map(|(_, t)| t).collect();
        assert_eq!(specials, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    }

    #[test]
    fn gguf_add_bos_token_prepends_bos() {
        let content = tiny_content("gpt-2", &[(KEY_ADD_BOS, Value::Bool(true))]);
        let tok = Tokenizer::from_gguf(&content).unwrap();
        assert_eq!(pieces(&tok, "hello", true), ["<|im_start|>", "hello"]);
        assert_eq!(pieces(&tok, "hello", false), ["hello"]);
    }

    #[test]
    fn llama3_pre_tokenizer_adds_bos_by_default() {
        let tok = Tokenizer::from_gguf(&tiny_content("llama-bpe", &[])).unwrap();
        assert_eq!(pieces(&tok, "hello", true), ["<|im_start|>", "hello"]);
        let content = tiny_content("llama-bpe", &[(KEY_ADD_BOS, Value::Bool(false))]);
        let tok = Tokenizer::from_gguf(&content).unwrap();
        assert_eq!(pieces(&tok, "hello", true), ["hello"]);
    }

    #[test]
    fn smollm_splits_digits_one_by_one_and_gpt2_does_not() {
        let smollm = Tokenizer::from_gguf(&tiny_content("smollm", &[])).unwrap();
        let gpt2 = Tokenizer::from_gguf(&tiny_content("gpt-2", &[])).unwrap();
        // No merges join digits, so count the pre-tokenizer's pieces through the offsets.
        let words = |tok: &Tokenizer, text: &str| {
            tok.inner()
                .encode(text, false)
                .unwrap()
                .get_word_ids()
                .iter()
                .flatten()
                .collect::<HashSet<_>>()
                .len()
        };
        assert_eq!(words(&smollm, "123"), 3);
        assert_eq!(words(&gpt2, "123"), 1);
    }

    #[test]
    fn every_known_pre_tokenizer_regex_compiles() {
        for pre in [
            "",
            "default",
            "llama3",
            "dbrx",
            "glm4",
            "qwen2",
            "qwen35",
            "smollm",
            "gpt-2",
            "gpt-4o",
            "tekken",
            "falcon",
            "deepseek-llm",
            "deepseek-coder",
            "deepseek-v3",
            "seed-coder",
            "bailingmoe",
            "chameleon",
            "some-new-model",
        ] {
            let tok = Tokenizer::from_gguf(&tiny_content(pre, &[]))
                .unwrap_or_else(|e| panic!("pre {pre:?}: {e}"));
            let ids = tok.encode("hello world 123 <|im_end|>", false).unwrap();
            assert_eq!(
                tok.decode(&ids, false).unwrap(),
                "hello world 123 <|im_end|>",
                "pre {pre:?}"
            );
        }
    }

    #[test]
    fn unsupported_model_is_named() {
        let content = tiny_content("gpt-2", &[(KEY_MODEL, Value::String("bert".into()))]);
        let err = Tokenizer::from_gguf(&content).unwrap_err();
        assert!(matches!(&err, TokenizerError::Unsupported { model } if model == "bert"));
        assert!(err.to_string().contains("`bert`"), "{err}");
        // SentencePiece is read, and needs its scores.
        let content = tiny_content("gpt-2", &[(KEY_MODEL, Value::String("llama".into()))]);
        let err = Tokenizer::from_gguf(&content).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::MissingKey { key } if *key == KEY_SCORES),
            "{err}"
        );
    }

    #[test]
    fn missing_tokens_and_bad_types_are_errors() {
        let mut content = tiny_content("gpt-2", &[]);
        content.metadata.remove(KEY_TOKENS);
        let err = Tokenizer::from_gguf(&content).unwrap_err();
        assert!(err.to_string().contains(KEY_TOKENS), "{err}");

        let content = tiny_content("gpt-2", &[(KEY_MERGES, Value::U32(3))]);
        let err = Tokenizer::from_gguf(&content).unwrap_err();
        assert!(
            matches!(
                err,
                TokenizerError::BadMetadata {
                    key: KEY_MERGES,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn normal_typed_end_of_turn_token_is_still_special() {
        let mut content = tiny_content("gpt-2", &[]);
        if let Some(Value::Array(types)) = content.metadata.get_mut(KEY_TOKEN_TYPE) {
            types[2] = Value::I32(1);
        }
        let tok = Tokenizer::from_gguf(&content).unwrap();
        assert_eq!(
            pieces(&tok, "hello<|im_end|>", false),
            ["hello", "<|im_end|>"]
        );
    }

    #[test]
    fn merges_outside_the_vocabulary_are_dropped() {
        let mut vocab = Vocab::default();
        for (i, t) in ["a", "b", "ab", "Ġ"].iter().enumerate() {
            vocab.insert((*t).to_string(), i as u32);
        }
        let merges = parse_merges(&["a b", "a b", "b a", "nonsense", "a  b"], &vocab);
        assert_eq!(merges, [("a".to_string(), "b".to_string())]);
    }

    #[test]
    fn tokenizer_can_move_to_the_engine_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Tokenizer>();
    }

    proptest::proptest! {
        #[test]
        fn gguf_decode_inverts_encode(text in "\\PC{0,40}") {
            let tok = Tokenizer::from_gguf(&tiny_content("smollm", &[])).unwrap();
            let ids = tok.encode(&text, false).unwrap();
            proptest::prop_assert_eq!(tok.decode(&ids, false).unwrap(), text);
        }
    }

    #[test]
    fn from_file_error_names_the_path() {
        let err = Tokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tokenizer.json"),
            "{err}"
        );
    }
}
