//! The HTTP side of a remote judge: one `POST {base_url}/chat/completions` with
//! `stream: true`, its status and `Retry-After` read, its body handed to `stream::read_sse`,
//! and the whole tried again under a `RetryPolicy`.

use super::error::RemoteError;
use super::retry::{jitter, parse_retry_after, RetryPolicy};
use super::stream::{read_sse, ChunkReader, Usage};
use crate::engine::{FinishReason, SamplingParams, Timing};
use serde_json::{json, Value};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// An API key read from the environment. It goes into the `Authorization` header and nowhere
/// else: its `Debug` is redacted, and server messages are scrubbed of it.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// The key in environment variable `var`; `None` when it is unset or blank.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(ApiKey)
    }

    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// `text` with every occurrence of the key replaced.
    fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "<redacted>")
    }
}

/// Where a remote judge lives.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSettings {
    /// The API root, e.g. `http://127.0.0.1:8000/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// The `model` field of every request.
    pub model: String,
    /// Longest wait for the next bytes (headers or stream) before the attempt counts as timed
    /// out.
    pub timeout: Duration,
}

/// One prompt to send.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    /// One user turn; the server applies the model's chat template.
    pub prompt: &'a str,
    pub sampling: &'a SamplingParams,
    /// The answer's shape, for the server to enforce.
    pub constraint: Option<&'a super::RemoteConstraint>,
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub finish: FinishReason,
    /// The server's own `finish_reason` (`stop`, `length`, `eos`...), when it sent one.
    pub finish_reason: Option<String>,
    /// The model id in the server's chunks (may differ from the requested one: an alias).
    pub served_model: Option<String>,
    pub usage: Option<Usage>,
    /// Over HTTP prefill cannot be told apart from queueing: `prefill_ms` is the time to the
    /// first token, and all times are from the successful attempt's request.
    pub timing: Timing,
    /// Attempts it took, 1 when the first succeeded.
    pub attempts: u32,
}

/// A client for one endpoint; share it between the worker threads of a judge.
#[derive(Debug, Clone)]
pub struct Endpoint {
    settings: EndpointSettings,
    key: Option<ApiKey>,
    url: String,
    agent: ureq::Agent,
}

impl Endpoint {
    pub fn new(settings: EndpointSettings, key: Option<ApiKey>) -> Endpoint {
        let base = settings.base_url.trim_end_matches('/');
        let url = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(settings.timeout.min(Duration::from_secs(30))))
            .timeout_recv_response(Some(settings.timeout))
            .timeout_per_read(Some(settings.timeout))
            .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Endpoint {
            settings,
            key,
            url,
            agent,
        }
    }

    /// The completions URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn settings(&self) -> &EndpointSettings {
        &self.settings
    }

    fn body(&self, request: &ChatRequest<'_>) -> Value {
        let s = request.sampling;
        let mut body = json!({
            "model": self.settings.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "seed": s.seed,
        });
        if let Some(p) = s.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(c) = request.constraint {
            c.apply(&mut body);
        }
        body
    }

    /// One attempt, no retry. `on_text` gets each new piece of the answer.
    pub fn complete_once(
        &self,
        request: &ChatRequest<'_>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, RemoteError> {
        let started = Instant::now();
        let mut call = self
            .agent
            .post(&self.url)
            .header("Accept", "text/event-stream");
        if let Some(key) = &self.key {
            call = call.header("Authorization", format!("Bearer {}", key.0));
        }
        let body = self.body(request).to_string();
        let response = call
            .content_type("application/json")
            .send(body.as_str())
            .map_err(|e| self.send_error(e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after =
            header("retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let content_type = header("content-type").unwrap_or_default();
        let body = response.into_body().into_reader();
        if !(200..300).contains(&status) {
            return Err(RemoteError::Status {
                url: self.url.clone(),
                status,
                body: self.error_text(body),
                retry_after,
            });
        }
        let reader = if content_type.starts_with("application/json") {
            // A server that ignores `stream: true` answers in one piece.
            self.read_whole(body, on_text)?
        } else {
            read_sse(BufReader::new(body), &self.url, cancel, on_text)
                .map_err(|e| self.with_timeout(e))?
        };
        // An empty answer judges nothing, and it is what an interrupted request looks like on
        // some servers: worth another attempt rather than a record.
        if reader.text.trim().is_empty() {
            return Err(RemoteError::Empty {
                url: self.url.clone(),
            });
        }
        Ok(finish(reader, started, 1))
    }

    /// `complete_once` until it succeeds, an error cannot be retried, `policy` runs out of
    /// retries or `cancel` is raised. `on_retry(retry, wait, error)` runs before each wait:
    /// the text streamed so far is void, the next attempt starts from nothing.
    pub fn complete(
        &self,
        request: &ChatRequest<'_>,
        policy: &RetryPolicy,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
        on_retry: &mut dyn FnMut(u32, Duration, &RemoteError),
    ) -> Result<Completion, RemoteError> {
        let mut retry = 0;
        loop {
            match self.complete_once(request, cancel, on_text) {
                Ok(mut c) => {
                    c.attempts = retry + 1;
                    return Ok(c);
                }
                Err(e) if e.is_retryable() && retry < policy.max_retries => {
                    let wait = policy.delay(retry, e.retry_after(), jitter());
                    tracing::debug!(url = %self.url, error = %e, ?wait, "retrying");
                    on_retry(retry + 1, wait, &e);
                    if !sleep(wait, cancel) {
                        return Err(RemoteError::Cancelled);
                    }
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send_error(&self, e: ureq::Error) -> RemoteError {
        let url = self.url.clone();
        match e {
            ureq::Error::Timeout(_) => RemoteError::Timeout {
                url,
                seconds: self.settings.timeout.as_secs_f64(),
            },
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                RemoteError::Timeout {
                    url,
                    seconds: self.settings.timeout.as_secs_f64(),
                }
            }
            ureq::Error::Protocol(p) => RemoteError::Malformed {
                url,
                reason: format!("not a valid HTTP answer ({p})"),
            },
            other => RemoteError::Connect {
                url,
                reason: self.scrub(&other.to_string()),
            },
        }
    }

    fn with_timeout(&self, e: RemoteError) -> RemoteError {
        match e {
            RemoteError::Timeout { url, .. } => RemoteError::Timeout {
                url,
                seconds: self.settings.timeout.as_secs_f64(),
            },
            e => e,
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(k) => k.scrub(text),
            None => text.to_string(),
        }
    }

    /// The start of an error answer: its `error.message` when it is JSON, else its text.
    fn error_text(&self, body: impl Read) -> String {
        let mut bytes = Vec::new();
        let _ = body.take(4096).read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| e.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| text.trim().to_string());
        let mut message = self.scrub(&message);
        if message.len() > 300 {
            let mut end = 300;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        message
    }

    fn read_whole(
        &self,
        body: impl Read,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ChunkReader, RemoteError> {
        let mut text = String::new();
        body.take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|_| RemoteError::StreamCut {
                url: self.url.clone(),
                received: 0,
            })?;
        let mut reader = ChunkReader::default();
        match reader.chunk(&text) {
            Ok(Some(piece)) => on_text(&piece),
            Ok(None) => {}
            Err(e) => {
                return Err(RemoteError::Malformed {
                    url: self.url.clone(),
                    reason: format!("{e:?}"),
                })
            }
        }
        // A whole answer in one piece is complete even when it names no finish reason.
        reader.done = true;
        reader.finish.get_or_insert_with(|| "stop".to_string());
        Ok(reader)
    }
}

/// Sleeps for `wait` unless `cancel` is raised first; false when cancelled.
fn sleep(wait: Duration, cancel: &AtomicBool) -> bool {
    let until = Instant::now() + wait;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

fn finish(reader: ChunkReader, started: Instant, attempts: u32) -> Completion {
    let total = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let first = reader.first_text.map(|t| t.duration_since(started));
    let generated = reader
        .usage
        .map(|u| u.completion_tokens)
        .filter(|&n| n > 0)
        .unwrap_or(reader.pieces);
    let decode_s = first.map_or(0.0, |f| (total - f).as_secs_f64());
    let timing = Timing {
        prompt_tokens: reader.usage.map_or(0, |u| u.prompt_tokens),
        generated_tokens: generated,
        prefill_ms: first.map_or(0.0, ms),
        time_to_first_token_ms: first.map_or(0.0, ms),
        decode_tokens_per_s: if decode_s > 0.0 && generated > 1 {
            (generated - 1) as f64 / decode_s
        } else {
            0.0
        },
        total_ms: ms(total),
    };
    let finish = match reader.finish.as_deref() {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    Completion {
        text: reader.text,
        finish,
        finish_reason: reader.finish,
        served_model: reader.model,
        usage: reader.usage,
        timing,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_redacted_in_debug_and_scrubbed_from_text() {
        let key = ApiKey::new("sk-secret-123456");
        assert!(!format!("{key:?}").contains("secret"));
        assert_eq!(
            key.scrub("Incorrect API key provided: sk-secret-123456."),
            "Incorrect API key provided: <redacted>."
        );
        let e = Endpoint::new(
            EndpointSettings {
                base_url: "http://h/v1/".into(),
                model: "m".into(),
                timeout: Duration::from_secs(5),
            },
            Some(key),
        );
        assert_eq!(e.url(), "http://h/v1/chat/completions");
        assert!(!format!("{e:?}").contains("secret"));
    }
}
