//! Chat templates: the model's own Jinja template (from `chat_template.jinja`,
//! `tokenizer_config.json` or a GGUF file's `tokenizer.chat_template`) rendered with minijinja
//! the way Hugging Face transformers renders it, so a judge reads exactly the prompt format it
//! was trained on. Nothing here assumes ChatML.
//!
//! Also finds the tokens a template closes a turn with, which the engine stops generation on.

use super::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One turn of a conversation, as templates see it (`message['role']`, `message['content']`).
pub use crate::dataset::Message as ChatMessage;

/// Why a chat template could not be found, compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the chat template does not compile: {detail}{}", at_line(*line))]
    Syntax { detail: String, line: Option<usize> },
    /// The template's own `raise_exception(...)`: it refuses this conversation.
    #[error("the chat template refused the conversation: {message}")]
    Raised { message: String },
    #[error("the chat template failed to render: {detail}{}", at_line(*line))]
    Render { detail: String, line: Option<usize> },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error(
        "the GGUF metadata `tokenizer.chat_template` is not a string; the file may be corrupt"
    )]
    BadGguf,
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (template line {l})"))
        .unwrap_or_default()
}

/// A compiled chat template with the BOS/EOS strings it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    env: Environment<'static>,
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; the error names the syntax problem and its line.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        // transformers compiles with trim_blocks and lstrip_blocks on and jinja2's default
        // keep_trailing_newline (off); templates are written for exactly that whitespace.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|err| ChatError::Syntax {
                detail: describe(&err),
                line: None,
            })?;
        env.set_syntax(syntax);
        // Real templates call Python string/dict methods: .strip(), .startswith(), .items().
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        // transformers replaces jinja's tojson (which HTML-escapes) with plain json.dumps.
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|err| ChatError::Syntax {
                detail: describe(&err),
                line: err.line(),
            })?;
        Ok(ChatTemplate {
            source,
            bos_token,
            eos_token,
            env,
        })
    }

    /// From a hub model's tokenizer_config.json: `chat_template` as a string, or as a list of
    /// {name, template} (take "default"); bos_token / eos_token as strings or AddedToken objects
    /// {"content": ...}. Ok(None) when the file has no template.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<ChatTemplate>, ChatError> {
        let config = read_json(path)?;
        let Some(source) = template_in_config(&config, path)? else {
            return Ok(None);
        };
        let (bos, eos) = special_tokens_in_config(&config);
        ChatTemplate::new(source, bos, eos).map(Some)
    }

    /// The template of a hub model folder, looked for where transformers looks: a
    /// `chat_template.jinja` file (newer repos) wins over `tokenizer_config.json`'s
    /// `chat_template`, then the older `chat_template.json`. BOS/EOS always come from
    /// `tokenizer_config.json` when it exists. Ok(None) when the folder has no template.
    pub fn from_model_dir(dir: &Path) -> Result<Option<ChatTemplate>, ChatError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            Some(read_json(&config_path)?)
        } else {
            None
        };
        let (bos, eos) = config
            .as_ref()
            .map(special_tokens_in_config)
            .unwrap_or_default();

        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            let source = std::fs::read_to_string(&jinja_path).map_err(|source| ChatError::Io {
                path: jinja_path.clone(),
                source,
            })?;
            return ChatTemplate::new(source, bos, eos).map(Some);
        }
        if let Some(config) = &config {
            if let Some(source) = template_in_config(config, &config_path)? {
                return ChatTemplate::new(source, bos, eos).map(Some);
            }
        }
        let json_path = dir.join("chat_template.json");
        if json_path.is_file() {
            let json = read_json(&json_path)?;
            if let Some(source) = template_in_config(&json, &json_path)? {
                return ChatTemplate::new(source, bos, eos).map(Some);
            }
        }
        Ok(None)
    }

    /// From GGUF metadata `tokenizer.chat_template`; the BOS/EOS strings are the texts of the
    /// tokenizer's BOS/EOS ids. Ok(None) when the file has no template.
    pub fn from_gguf(
        content: &gguf_file::Content,
        tokenizer: &Tokenizer,
    ) -> Result<Option<ChatTemplate>, ChatError> {
        let source = match content.metadata.get("tokenizer.chat_template") {
            None => return Ok(None),
            Some(gguf_file::Value::String(s)) => s.clone(),
            Some(_) => return Err(ChatError::BadGguf),
        };
        // Decoding (not the raw vocabulary entry) gives the real text: byte-level vocabularies
        // store ordinary tokens in an escaped alphabet.
        let text = |id: Option<u32>| id.and_then(|id| tokenizer.decode(&[id], false).ok());
        ChatTemplate::new(source, text(tokenizer.bos_id()), text(tokenizer.eos_id())).map(Some)
    }

    /// Renders the conversation; `add_generation_prompt` opens the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| render_error(&err))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| minijinja::context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let mut ctx: BTreeMap<&str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        // transformers passes tools=None and documents=None when there are none.
        ctx.insert("tools", Value::from(()));
        ctx.insert("documents", Value::from(()));
        // Special tokens the tokenizer does not define are left undefined, as transformers
        // leaves them out of its special_tokens_map; `bos_token is defined` must see that.
        if let Some(bos) = &self.bos_token {
            ctx.insert("bos_token", Value::from(bos.as_str()));
        }
        if let Some(eos) = &self.eos_token {
            ctx.insert("eos_token", Value::from(eos.as_str()));
        }
        template
            .render(Value::from(ctx))
            .map_err(|err| render_error(&err))
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The BOS string templates see as `bos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS string templates see as `eos_token`.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Token strings the template closes a turn with, found in the template source among the
    /// vocabulary's special tokens: e.g. `<|im_end|>`, `<|eot_id|>`, `<|end|>`,
    /// `<end_of_turn>`; the engine stops generation on these and on EOS.
    ///
    /// Two ways, joined: the special token the template writes right after an assistant
    /// message (found by rendering a probe conversation, so `<|end_header_id|>`-like tokens
    /// that merely follow a role are not taken), and well-known end-of-turn tokens that appear
    /// in the source (for templates the probe cannot render).
    pub fn end_of_turn_tokens(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        let specials = tokenizer.special_tokens();
        let mut ids: Vec<u32> = Vec::new();

        if let Some(rendered) = self.render_probe() {
            for (at, _) in rendered.match_indices(PROBE_ASSISTANT) {
                let after = rendered[at + PROBE_ASSISTANT.len()..].trim_start();
                let closing = specials
                    .iter()
                    .filter(|(_, text)| !text.is_empty() && after.starts_with(text.as_str()))
                    .max_by_key(|(_, text)| text.len());
                if let Some((id, _)) = closing {
                    ids.push(*id);
                }
            }
        }
        for (id, text) in &specials {
            if KNOWN_END_OF_TURN.contains(&text.as_str()) && self.source.contains(text.as_str()) {
                ids.push(*id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The template rendered over a user/assistant/user exchange with marker contents, or
    /// `None` when the template refuses every probe shape.
    fn render_probe(&self) -> Option<String> {
        let shapes: [&[(&str, &str)]; 3] = [
            &[
                ("user", "probe-user"),
                ("assistant", PROBE_ASSISTANT),
                ("user", "probe-user"),
            ],
            &[("user", "probe-user"), ("assistant", PROBE_ASSISTANT)],
            &[
                ("system", "probe-system"),
                ("user", "probe-user"),
                ("assistant", PROBE_ASSISTANT),
                ("user", "probe-user"),
            ],
        ];
        for shape in shapes {
            let messages: Vec<ChatMessage> = shape
                .iter()
                .map(|(role, content)| ChatMessage::new(*role, *content))
                .collect();
            match self.render(&messages, false) {
                Ok(text) if text.contains(PROBE_ASSISTANT) => return Some(text),
                Ok(_) => {}
                Err(err) => tracing::debug!(%err, "end-of-turn probe render failed"),
            }
        }
        None
    }
}

/// Contents no real conversation has, so the rendered probe can be searched for them.
const PROBE_ASSISTANT: &str = "probe-assistant-reply-7f3a";

/// End-of-turn tokens of well-known model families (llama.cpp's end-of-generation list).
const KNOWN_END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|END_OF_TURN_TOKEN|>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "<turn|>",
    "<|return|>",
    "<|call|>",
];

fn read_json(path: &Path) -> Result<serde_json::Value, ChatError> {
    let text = std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ChatError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// `chat_template` of a tokenizer_config.json (or chat_template.json): a string, or a list of
/// named templates of which transformers uses "default".
fn template_in_config(
    config: &serde_json::Value,
    path: &Path,
) -> Result<Option<String>, ChatError> {
    let bad = |reason: String| ChatError::BadConfig {
        path: path.to_path_buf(),
        reason,
    };
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(named)) => {
            let mut names = Vec::new();
            for entry in named {
                let name = entry.get("name").and_then(|n| n.as_str());
                let template = entry.get("template").and_then(|t| t.as_str());
                match (name, template) {
                    (Some("default"), Some(template)) => return Ok(Some(template.to_string())),
                    (Some(name), Some(_)) => names.push(name.to_string()),
                    _ => {
                        return Err(bad(
                            "a `chat_template` list entry lacks a string `name` or `template`"
                                .to_string(),
                        ))
                    }
                }
            }
            Err(bad(format!(
                "`chat_template` lists templates {names:?} but none named \"default\"; \
                 add a chat_template.jinja next to it to choose one"
            )))
        }
        Some(other) => Err(bad(format!(
            "`chat_template` is {}; expected a string or a list of {{name, template}}",
            json_kind(other)
        ))),
    }
}

/// `bos_token` / `eos_token` of a tokenizer_config.json, written as strings or as AddedToken
/// objects `{"content": ...}`.
fn special_tokens_in_config(config: &serde_json::Value) -> (Option<String>, Option<String>) {
    let token = |key: &str| match config.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(added)) => added
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    };
    (token("bos_token"), token("eos_token"))
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn describe(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// A render failure, telling the template's own `raise_exception` apart from engine errors.
fn render_error(err: &Error) -> ChatError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<TemplateRaised>() {
            return ChatError::Raised {
                message: raised.0.clone(),
            };
        }
        source = e.source();
    }
    ChatError::Render {
        detail: describe(err),
        line: err.line(),
    }
}

/// Carried as the source of the minijinja error so `render` can recognise it.
#[derive(Debug)]
struct TemplateRaised(String);

impl std::fmt::Display for TemplateRaised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateRaised {}

/// transformers' `raise_exception(message)`: templates call it to refuse a conversation.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone())
        .with_source(TemplateRaised(message)))
}

/// transformers' `strftime_now(format)`: the current date for templates that print it
/// (Llama 3.1's "Today Date"). In UTC: the crate's `time` build cannot read the local offset.
fn strftime_now(format: String) -> String {
    strftime(time::OffsetDateTime::now_utc(), &format)
}

/// Python's `strftime` for the directives date-printing templates use; others are kept as
/// written, as glibc does.
fn strftime(now: time::OffsetDateTime, format: &str) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(directive) = chars.next() else {
            out.push('%');
            break;
        };
        let month = now.month();
        let weekday = now.weekday();
        let hour12 = match now.hour() % 12 {
            0 => 12,
            h => h,
        };
        match directive {
            'Y' => out.push_str(&now.year().to_string()),
            'y' => out.push_str(&format!("{:02}", now.year().rem_euclid(100))),
            'm' => out.push_str(&format!("{:02}", u8::from(month))),
            'd' => out.push_str(&format!("{:02}", now.day())),
            'e' => out.push_str(&format!("{:>2}", now.day())),
            'j' => out.push_str(&format!("{:03}", now.ordinal())),
            'H' => out.push_str(&format!("{:02}", now.hour())),
            'I' => out.push_str(&format!("{hour12:02}")),
            'M' => out.push_str(&format!("{:02}", now.minute())),
            'S' => out.push_str(&format!("{:02}", now.second())),
            'p' => out.push_str(if now.hour() < 12 { "AM" } else { "PM" }),
            'B' => out.push_str(&month.to_string()),
            'b' | 'h' => out.extend(month.to_string().chars().take(3)),
            'A' => out.push_str(&weekday.to_string()),
            'a' => out.extend(weekday.to_string().chars().take(3)),
            'Z' => out.push_str("UTC"),
            'z' => out.push_str("+0000"),
            '%' => out.push('%'),
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

/// transformers' `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, not jinja's HTML-safe variant.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.is_integer() => {
            let n = v.as_i64().unwrap_or(0).max(0);
            Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
        }
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    // Python's defaults: ", " between items unless indenting, ": " after keys.
    let (item_sep, key_sep) = match separators {
        Some(seps) if !seps.is_none() => {
            let parts: Vec<Value> = seps.try_iter()?.collect();
            match (
                parts.first().and_then(Value::as_str),
                parts.get(1).and_then(Value::as_str),
            ) {
                (Some(item), Some(key)) if parts.len() == 2 => (item.to_string(), key.to_string()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
        _ => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                out.push_str(&value.to_string());
            } else {
                let f = f64::try_from(value.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String | ValueKind::Plain => write_json_str(out, &value.to_string(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(out, depth + 1);
                write_json(out, item, style, depth + 1)?;
            }
            style.newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = match key.kind() {
                    ValueKind::String => key.to_string(),
                    ValueKind::None => "null".to_string(),
                    ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
                    _ => {
                        let mut text = String::new();
                        write_json(&mut text, &key, style, depth)?;
                        text
                    }
                };
                entries.push((key, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(out, depth + 1);
                write_json_str(out, key, style);
                out.push_str(&style.key_sep);
                write_json(out, item, style, depth + 1)?;
            }
            style.newline(out, depth);
            out.push('}');
        }
        ValueKind::Bytes | ValueKind::Invalid => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {} value is not JSON serializable", value.kind()),
            ))
        }
        // ValueKind is non-exhaustive; a future kind is written as its string form.
        _ => write_json_str(out, &value.to_string(), style),
    }
    Ok(())
}

/// A string escaped as Python's json module escapes it.
fn write_json_str(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c if style.ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it: `1.0`, `0.5`, `1e-05`, `1e+16`, `Infinity`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust's `{:e}` is the shortest round-trip digits too; Python signs and pads the exponent.
        let sci = format!("{f:e}");
        if let Some((mantissa, exp)) = sci.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mantissa}e{sign}{digits:0>2}");
        }
        return sci;
    }
    let plain = format!("{f:?}");
    if plain.contains('.') || plain.contains('e') {
        plain
    } else {
        format!("{plain}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(turns: &[(&str, &str)]) -> Vec<ChatMessage> {
        turns
            .iter()
            .map(|(role, content)| ChatMessage::new(*role, *content))
            .collect()
    }

    /// The structure of Qwen2.5-Instruct's `chat_template` (tokenizer_config.json): ChatML with
    /// a default system message when the conversation has none, and a tools branch.
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    /// SmolLM2-Instruct's template (as its GGUF `tokenizer.chat_template` carries it).
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// Meta-Llama-3-Instruct's template: BOS from `bos_token`, content trimmed, `<|eot_id|>`.
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// Mistral-Instruct-v0.1's template: strict user/assistant alternation via raise_exception.
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    #[test]
    fn template_can_move_to_the_engine_thread() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ChatTemplate>();
    }

    proptest::proptest! {
        /// Whatever the messages hold, rendering ChatML gives them back verbatim.
        #[test]
        fn any_content_renders_verbatim(role in "[a-z]{1,8}", content in "\\PC{0,40}") {
            let t = ChatTemplate::new(SMOLLM2.to_string(), None, None).unwrap();
            let out = t.render(&[ChatMessage::new("system", "s"), ChatMessage::new(role.as_str(), content.as_str())], false).unwrap();
            proptest::prop_assert_eq!(out, format!("<|im_start|>system\ns<|im_end|>\n<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
    }

    #[test]
    fn qwen25_inserts_its_default_system_message() {
        let t = ChatTemplate::new(QWEN25.to_string(), None, Some("<|im_end|>".into())).unwrap();
        let out = t.render(&msgs(&[("user", "Hi")]), true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(
                &msgs(&[("system", "Judge."), ("user", "Hi"), ("assistant", "A")]),
                false,
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nJudge.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nA<|im_end|>\n"
        );
    }

    #[test]
    fn smollm2_template_renders_its_system_prompt() {
        let t = ChatTemplate::new(SMOLLM2.to_string(), None, None).unwrap();
        let out = t.render(&msgs(&[("user", "What is 2+2?")]), true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(&msgs(&[("system", "S"), ("user", "U")]), false)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
    }

    #[test]
    fn llama3_template_uses_bos_token_and_trims() {
        let t = ChatTemplate::new(
            LLAMA3.to_string(),
            Some("<|begin_of_text|>".into()),
            Some("<|eot_id|>".into()),
        )
        .unwrap();
        let out = t
            .render(&msgs(&[("system", "Be fair."), ("user", "  Hi \n")]), true)
            .unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe fair.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn raise_exception_becomes_a_raised_error_with_its_message() {
        let t = ChatTemplate::new(MISTRAL.to_string(), Some("<s>".into()), Some("</s>".into()))
            .unwrap();
        let ok = t.render(
            &msgs(&[("user", "Hi"), ("assistant", "Yo"), ("user", "?")]),
            true,
        );
        assert_eq!(ok.unwrap(), "<s>[INST] Hi [/INST]Yo</s> [INST] ? [/INST]");
        let err = t
            .render(&msgs(&[("user", "Hi"), ("user", "again")]), true)
            .unwrap_err();
        match &err {
            ChatError::Raised { message } => {
                assert_eq!(
                    message,
                    "Conversation roles must alternate user/assistant/user/assistant/..."
                )
            }
            other => panic!("expected Raised, got {other:?}"),
        }
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn syntax_error_names_the_problem_and_line() {
        let err = ChatTemplate::new(
            "line one\n{% for m in messages %}\n{{ m.content }\n".into(),
            None,
            None,
        )
        .unwrap_err();
        let ChatError::Syntax { line, .. } = &err else {
            panic!("expected Syntax, got {err:?}");
        };
        assert_eq!(*line, Some(3));
        let text = err.to_string();
        assert!(
            text.contains("syntax error") && text.contains("line 3"),
            "{text}"
        );
    }

    #[test]
    fn render_error_is_not_mistaken_for_raise_exception() {
        let t = ChatTemplate::new("{{ messages[5].content.nope() }}".into(), None, None).unwrap();
        let err = t.render(&msgs(&[("user", "x")]), false).unwrap_err();
        assert!(matches!(err, ChatError::Render { .. }), "{err:?}");
    }

    #[test]
    fn whitespace_control_matches_transformers() {
        // trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before
        // it, and the template's final newline is dropped.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n";
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        let out = t.render(
            &msgs(&[("user", "a"), ("assistant", "b"), ("user", "c")]),
            false,
        );
        assert_eq!(out.unwrap(), "[a]\n[c]\n");
    }

    #[test]
    fn python_string_methods_work() {
        let src = "{% for m in messages %}{% if m.content.startswith('  ') %}{{ m.content.strip() | upper }}{% endif %}{{ m.content.split(',') | length }}{% endfor %}";
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        assert_eq!(
            t.render(&msgs(&[("user", "  a,b ")]), false).unwrap(),
            "A,B2"
        );
    }

    #[test]
    fn undefined_special_tokens_stay_undefined() {
        let src = "{% if bos_token is defined %}[{{ bos_token }}]{% else %}none{% endif %}{{ tools is none }}";
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "noneTrue");
        let t = ChatTemplate::new(src.into(), Some("<s>".into()), None).unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "[<s>]True");
    }

    #[test]
    fn tojson_writes_like_python_json_dumps() {
        let src = "{{ messages[0] | tojson }}|{{ messages | tojson(indent=2) }}|{{ {'b': 1.5, 'a': [1, 2.0, none, true]} | tojson(sort_keys=true) }}|{{ '<é>\"\n' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}";
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        let out = t.render(&msgs(&[("user", "hi")]), false).unwrap();
        assert_eq!(
            out,
            "{\"role\": \"user\", \"content\": \"hi\"}|[\n  {\n    \"role\": \"user\",\n    \"content\": \"hi\"\n  }\n]|\
             {\"a\": [1, 2.0, null, true], \"b\": 1.5}|\"<é>\\\"\\n\"|\"\\u00e9\""
        );
    }

    #[test]
    fn python_floats() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(-2.5), "-2.5");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1.5e300), "1.5e+300");
        assert_eq!(python_float(123456.0), "123456.0");
    }

    #[test]
    fn strftime_formats_like_python() {
        let at = time::macros::datetime!(2024-07-26 15:04:05 UTC);
        assert_eq!(strftime(at, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            strftime(at, "%A %B %e, %y %I:%M:%S %p %j %%"),
            "Friday July 26, 24 03:04:05 PM 208 %"
        );
        assert_eq!(strftime(at, "%Q"), "%Q");
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}".into(), None, None).unwrap();
        let year = t.render(&[], false).unwrap();
        assert!(year.len() == 4 && year.starts_with('2'), "{year}");
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn tokenizer_config_with_added_token_objects() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": false},
            "eos_token": "<|eot_id|>",
            "chat_template": LLAMA3,
        });
        write(dir.path(), "tokenizer_config.json", &config.to_string());
        let t = ChatTemplate::from_tokenizer_config(&dir.path().join("tokenizer_config.json"))
            .unwrap()
            .unwrap();
        assert_eq!(t.bos_token(), Some("<|begin_of_text|>"));
        assert_eq!(t.eos_token(), Some("<|eot_id|>"));
        assert_eq!(t.source(), LLAMA3);
        assert!(t
            .render(&msgs(&[("user", "x")]), false)
            .unwrap()
            .starts_with("<|begin_of_text|>"));
    }

    #[test]
    fn tokenizer_config_named_templates_take_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "bos_token": null,
            "chat_template": [
                {"name": "tool_use", "template": "TOOLS"},
                {"name": "default", "template": "DEFAULT"},
            ],
        });
        let path = dir.path().join("tokenizer_config.json");
        write(dir.path(), "tokenizer_config.json", &config.to_string());
        let t = ChatTemplate::from_tokenizer_config(&path).unwrap().unwrap();
        assert_eq!(t.source(), "DEFAULT");
        assert_eq!(t.bos_token(), None);

        let config = serde_json::json!({"chat_template": [{"name": "rag", "template": "R"}]});
        write(dir.path(), "tokenizer_config.json", &config.to_string());
        let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err();
        assert!(err.to_string().contains("\"rag\""), "{err}");

        write(
            dir.path(),
            "tokenizer_config.json",
            r#"{"eos_token": "</s>"}"#,
        );
        assert!(ChatTemplate::from_tokenizer_config(&path)
            .unwrap()
            .is_none());

        write(
            dir.path(),
            "tokenizer_config.json",
            r#"{"chat_template": 3}"#,
        );
        let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err();
        assert!(err.to_string().contains("a number"), "{err}");
    }

    #[test]
    fn model_dir_prefers_chat_template_jinja() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ChatTemplate::from_model_dir(dir.path()).unwrap().is_none());
        let config = serde_json::json!({"eos_token": "<|im_end|>", "chat_template": "FROM CONFIG"});
        write(dir.path(), "tokenizer_config.json", &config.to_string());
        let t = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
        assert_eq!(t.source(), "FROM CONFIG");
        write(dir.path(), "chat_template.jinja", SMOLLM2);
        let t = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
        assert_eq!(t.source(), SMOLLM2);
        assert_eq!(t.eos_token(), Some("<|im_end|>"));
    }

    #[test]
    fn model_dir_reads_chat_template_json() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "chat_template.json",
            r#"{"chat_template": "OLD"}"#,
        );
        let t = ChatTemplate::from_model_dir(dir.path()).unwrap().unwrap();
        assert_eq!(t.source(), "OLD");
    }

    /// A tokenizer.json whose added tokens are the given special tokens.
    fn tokenizer_with(specials: &[&str]) -> Tokenizer {
        let dir = tempfile::tempdir().unwrap();
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (i, s) in specials.iter().enumerate() {
            vocab.insert((*s).to_string(), serde_json::json!(i));
            added.push(serde_json::json!({
                "id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true,
            }));
        }
        for (i, c) in ('a'..='z').enumerate() {
            vocab.insert(c.to_string(), serde_json::json!(specials.len() + i));
        }
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "vocab": vocab, "merges": []},
        });
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        Tokenizer::from_file(&path).unwrap()
    }

    #[test]
    fn end_of_turn_tokens_of_chatml_and_llama3() {
        let chatml = tokenizer_with(&["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
        let t = ChatTemplate::new(QWEN25.to_string(), None, None).unwrap();
        assert_eq!(t.end_of_turn_tokens(&chatml), vec![2]);

        let llama = tokenizer_with(&[
            "<|begin_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ]);
        let t =
            ChatTemplate::new(LLAMA3.to_string(), Some("<|begin_of_text|>".into()), None).unwrap();
        assert_eq!(t.end_of_turn_tokens(&llama), vec![3]);
    }

    #[test]
    fn end_of_turn_tokens_follow_eos_token_in_the_template() {
        let tok = tokenizer_with(&["<unk>", "<s>", "</s>"]);
        let t = ChatTemplate::new(MISTRAL.to_string(), Some("<s>".into()), Some("</s>".into()))
            .unwrap();
        assert_eq!(t.end_of_turn_tokens(&tok), vec![2]);
    }

    #[test]
    fn end_of_turn_tokens_of_gemma_when_the_probe_is_refused() {
        // Refuses the system role and any assistant turn, so only the source is searched.
        let src = "{% for m in messages %}{% if m.role != 'user' %}{{ raise_exception('no') }}{% endif %}<start_of_turn>user\n{{ m.content }}<end_of_turn>\n{% endfor %}";
        let tok = tokenizer_with(&["<bos>", "<start_of_turn>", "<end_of_turn>"]);
        let t = ChatTemplate::new(src.into(), None, None).unwrap();
        assert_eq!(t.end_of_turn_tokens(&tok), vec![2]);
    }
}
