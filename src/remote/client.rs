//! The HTTP side of a remote judge: one `POST {base_url}/chat/completions` with
//! `stream: true` through reqwest on the remote runtime, its status and `Retry-After` read,
//! its body decoded as server-sent events and handed to `stream::read_sse`, and the whole
//! tried again under a `RetryPolicy`. Each request is a future: a task of its own on the
//! remote runtime (`batch` spawns one per request in flight), or waited for with `complete`
//! from a caller's own thread.

use super::error::RemoteError;
use super::retry::{jitter, parse_retry_after, RetryPolicy};
use super::runtime::{block_on, cancelled, sleep};
use super::stream::{read_sse, ChunkReader, Usage};
use crate::engine::{FinishReason, SamplingParams, Timing};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{json, Value};
use std::sync::atomic::AtomicBool;
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

/// A client for one endpoint; clones share one connection pool, so share it between the
/// requests of a judge.
#[derive(Debug, Clone)]
pub struct Endpoint {
    settings: EndpointSettings,
    key: Option<ApiKey>,
    url: String,
    /// The client, or why it could not be made (reported by each request).
    http: Result<reqwest::Client, String>,
}

/// The most of an error answer kept for its message.
const ERROR_BODY_LIMIT: usize = 4096;
/// The most of a whole (non-streamed) answer read.
const WHOLE_BODY_LIMIT: usize = 64 << 20;

impl Endpoint {
    pub fn new(settings: EndpointSettings, key: Option<ApiKey>) -> Endpoint {
        let base = settings.base_url.trim_end_matches('/');
        let url = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        // The timeouts that matter (for the answer's headers, then between pieces of the
        // stream) are applied per request, where they can be told apart from cancelling.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("arbiter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error_chain(&e));
        Endpoint {
            settings,
            key,
            url,
            http,
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

    fn timeout(&self) -> RemoteError {
        RemoteError::Timeout {
            url: self.url.clone(),
            seconds: self.settings.timeout.as_secs_f64(),
        }
    }

    /// One attempt, no retry. `on_text` gets each new piece of the answer.
    pub async fn complete_once_async(
        &self,
        request: &ChatRequest<'_>,
        cancel: &AtomicBool,
        on_text: &mut (impl FnMut(&str) + ?Sized),
    ) -> Result<Completion, RemoteError> {
        let started = Instant::now();
        let http = self.http.as_ref().map_err(|reason| RemoteError::Connect {
            url: self.url.clone(),
            reason: reason.clone(),
        })?;
        let mut call = http
            .post(&self.url)
            .header(ACCEPT, "text/event-stream")
            .json(&self.body(request));
        if let Some(key) = &self.key {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.0)).map_err(|_| {
                RemoteError::Connect {
                    url: self.url.clone(),
                    reason: "the API key holds characters an HTTP header cannot carry (check the variable that api_key_env names)".to_string(),
                }
            })?;
            value.set_sensitive(true);
            call = call.header(AUTHORIZATION, value);
        }
        let response = tokio::select! {
            biased;
            _ = cancelled(cancel) => return Err(RemoteError::Cancelled),
            sent = tokio::time::timeout(self.settings.timeout, call.send()) => match sent {
                Err(_) => return Err(self.timeout()),
                Ok(Err(e)) => return Err(self.send_error(&e)),
                Ok(Ok(response)) => response,
            },
        };
        let status = response.status().as_u16();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after =
            header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        if !(200..300).contains(&status) {
            let (bytes, _) = self.read_body(response, ERROR_BODY_LIMIT, cancel).await?;
            return Err(RemoteError::Status {
                url: self.url.clone(),
                status,
                body: self.error_text(&bytes),
                retry_after,
            });
        }
        let reader = if content_type.starts_with("application/json") {
            // A server that ignores `stream: true` answers in one piece.
            let (bytes, complete) = self.read_body(response, WHOLE_BODY_LIMIT, cancel).await?;
            if !complete {
                return Err(RemoteError::StreamCut {
                    url: self.url.clone(),
                    received: 0,
                });
            }
            self.read_whole(&bytes, on_text)?
        } else {
            let events = sse_stream::SseByteStream::new(response.bytes_stream());
            read_sse(events, &self.url, self.settings.timeout, cancel, on_text).await?
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

    /// `complete_once_async` until it succeeds, an error cannot be retried, `policy` runs out
    /// of retries or `cancel` is raised. `on_retry(retry, wait, error)` runs before each wait:
    /// the text streamed so far is void, the next attempt starts from nothing. The future is
    /// `Send` when the callbacks are, so it can be a task of its own.
    pub async fn complete_async(
        &self,
        request: &ChatRequest<'_>,
        policy: &RetryPolicy,
        cancel: &AtomicBool,
        on_text: &mut (impl FnMut(&str) + ?Sized),
        on_retry: &mut (impl FnMut(u32, Duration, &RemoteError) + ?Sized),
    ) -> Result<Completion, RemoteError> {
        let mut retry = 0;
        loop {
            match self.complete_once_async(request, cancel, on_text).await {
                Ok(mut c) => {
                    c.attempts = retry + 1;
                    return Ok(c);
                }
                Err(e) if e.is_retryable() && retry < policy.max_retries => {
                    let wait = policy.delay(retry, e.retry_after(), jitter());
                    tracing::debug!(url = %self.url, error = %e, ?wait, "retrying");
                    on_retry(retry + 1, wait, &e);
                    if !sleep(wait, cancel).await {
                        return Err(RemoteError::Cancelled);
                    }
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt, waited for on the calling thread (a thread of the caller's own, never the
    /// UI thread, and not inside a tokio runtime).
    pub fn complete_once(
        &self,
        request: &ChatRequest<'_>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Completion, RemoteError> {
        block_on(self.complete_once_async(request, cancel, on_text))?
    }

    /// `complete_async`, waited for on the calling thread (a thread of the caller's own, never
    /// the UI thread, and not inside a tokio runtime).
    pub fn complete(
        &self,
        request: &ChatRequest<'_>,
        policy: &RetryPolicy,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
        on_retry: &mut dyn FnMut(u32, Duration, &RemoteError),
    ) -> Result<Completion, RemoteError> {
        block_on(self.complete_async(request, policy, cancel, on_text, on_retry))?
    }

    /// Why a request got no answer: no answer in time, no connection, or bytes that are not
    /// HTTP.
    fn send_error(&self, e: &reqwest::Error) -> RemoteError {
        let url = self.url.clone();
        if e.is_timeout() {
            return self.timeout();
        }
        if !e.is_connect() && is_parse_error(e) {
            return RemoteError::Malformed {
                url,
                reason: format!("not a valid HTTP answer ({})", error_chain(e)),
            };
        }
        RemoteError::Connect {
            url,
            reason: self.scrub(&error_chain(e)),
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(k) => k.scrub(text),
            None => text.to_string(),
        }
    }

    /// Up to `limit` bytes of the body, and whether that was all of it. A body that breaks
    /// off is kept as far as it came (for an error message that is enough); one that goes
    /// silent for the timeout is a timeout.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        limit: usize,
        cancel: &AtomicBool,
    ) -> Result<(Vec<u8>, bool), RemoteError> {
        let mut bytes = Vec::new();
        loop {
            let next = tokio::select! {
                biased;
                _ = cancelled(cancel) => return Err(RemoteError::Cancelled),
                next = tokio::time::timeout(self.settings.timeout, response.chunk()) => next,
            };
            match next {
                Err(_) => return Err(self.timeout()),
                Ok(Ok(Some(chunk))) => {
                    bytes.extend_from_slice(&chunk[..chunk.len().min(limit - bytes.len())]);
                    if bytes.len() >= limit {
                        return Ok((bytes, false));
                    }
                }
                Ok(Ok(None)) => return Ok((bytes, true)),
                Ok(Err(e)) => {
                    tracing::debug!(url = %self.url, error = %error_chain(&e), "body read failed");
                    return Ok((bytes, false));
                }
            }
        }
    }

    /// The start of an error answer: its `error.message` when it is JSON, else its text.
    fn error_text(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
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
        bytes: &[u8],
        on_text: &mut (impl FnMut(&str) + ?Sized),
    ) -> Result<ChunkReader, RemoteError> {
        let text = std::str::from_utf8(bytes).map_err(|_| RemoteError::Malformed {
            url: self.url.clone(),
            reason: "the answer is not UTF-8".to_string(),
        })?;
        let mut reader = ChunkReader::default();
        match reader.chunk(text) {
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

/// An error and its causes, `: `-separated: reqwest's own message only names the URL, the
/// cause (refused, reset, bad certificate) is further down.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Whether the server answered with something that is not HTTP.
fn is_parse_error(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_parse() || h.is_parse_status();
        }
        source = s.source();
    }
    false
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
