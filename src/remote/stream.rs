//! Reading a streamed chat completion: each SSE event's JSON chunk adds its `delta.content` to
//! the answer, and the stream's end is checked. An answer counts only when the server said why
//! it ended (a `finish_reason`): a body that simply stops is a cut stream, and so is `[DONE]`
//! alone, which is how llama-cpp-python ends a request it interrupts for another.

//!
//! The framing (`data:` lines grouped into events by blank lines, comments, an event cut off
//! by the end of the body never dispatched) is `sse-stream`'s: a decoder over any byte stream,
//! kept up to date (it is what the MCP Rust SDK streams with), that follows the WHATWG rules
//! without asking for an HTTP client of its own. `eventsource-stream` does the same job but
//! has had no release since 2022.

use super::error::RemoteError;
use super::runtime::cancelled;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sse_stream::Sse;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Token counts as the server reports them (`stream_options.include_usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What the chunks of one response said so far.
#[derive(Debug, Default)]
pub struct ChunkReader {
    pub text: String,
    /// The first choice's `finish_reason` (`stop`, `length`, ...), once sent.
    pub finish: Option<String>,
    pub usage: Option<Usage>,
    /// The model id the server says answered.
    pub model: Option<String>,
    /// `[DONE]` was received.
    pub done: bool,
    /// When the first piece of text arrived.
    pub first_text: Option<Instant>,
    /// Content pieces received: the completion-token count when the server reports no usage
    /// (servers send about one token per chunk).
    pub pieces: usize,
}

/// Why one chunk could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkError {
    Malformed(String),
    /// The server streamed an `error` object instead of a chunk.
    Server(String),
}

impl ChunkReader {
    /// Reads one event's JSON; returns the text it adds.
    pub fn chunk(&mut self, data: &str) -> Result<Option<String>, ChunkError> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ChunkError::Malformed(format!("a chunk is not JSON ({e}): {}", preview(data)))
        })?;
        let Some(obj) = value.as_object() else {
            return Err(ChunkError::Malformed(format!(
                "a chunk is not a JSON object: {}",
                preview(data)
            )));
        };
        if let Some(err) = obj.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(ChunkError::Server(message));
        }
        if let Some(m) = obj.get("model").and_then(Value::as_str) {
            if !m.is_empty() {
                self.model = Some(m.to_string());
            }
        }
        if let Some(u) = obj.get("usage").filter(|u| !u.is_null()) {
            let count = |k: &str| u.get(k).and_then(Value::as_u64).map(|n| n as usize);
            self.usage = Some(Usage {
                prompt_tokens: count("prompt_tokens").unwrap_or(0),
                completion_tokens: count("completion_tokens").unwrap_or(0),
            });
        }
        let choice = match obj.get("choices") {
            Some(Value::Array(choices)) => choices.first(),
            None | Some(Value::Null) => None,
            Some(_) => {
                return Err(ChunkError::Malformed(format!(
                    "`choices` is not a list: {}",
                    preview(data)
                )))
            }
        };
        let Some(choice) = choice else {
            return Ok(None);
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        // A non-streaming server answers with `message` instead of `delta`.
        let content = choice
            .get("delta")
            .or_else(|| choice.get("message"))
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        Ok(content.map(|c| {
            self.text.push_str(c);
            self.pieces += 1;
            if self.first_text.is_none() {
                self.first_text = Some(Instant::now());
            }
            c.to_string()
        }))
    }

    /// True when the server said the answer is complete.
    pub fn is_complete(&self) -> bool {
        self.finish.is_some()
    }
}

fn preview(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Reads an SSE body to its end, passing each new piece of text to `on_text`. Errors: the
/// body stops before the answer is complete (`StreamCut`), a chunk is unreadable
/// (`Malformed`), the server streams an error (`Server`), nothing arrives for `stall`
/// (`Timeout`), or `cancel` is raised (checked before every event and while waiting).
pub async fn read_sse<S>(
    events: S,
    url: &str,
    stall: Duration,
    cancel: &AtomicBool,
    on_text: &mut (impl FnMut(&str) + ?Sized),
) -> Result<ChunkReader, RemoteError>
where
    S: Stream<Item = Result<Sse, sse_stream::Error>>,
{
    let mut events = std::pin::pin!(events);
    let mut reader = ChunkReader::default();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(RemoteError::Cancelled);
        }
        let next = tokio::select! {
            biased;
            _ = cancelled(cancel) => return Err(RemoteError::Cancelled),
            next = tokio::time::timeout(stall, events.next()) => next,
        };
        let event = match next {
            Err(_) => {
                return Err(RemoteError::Timeout {
                    url: url.to_string(),
                    seconds: stall.as_secs_f64(),
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(decode_error(e, url, &reader)),
            Ok(Some(Ok(event))) => event,
        };
        // A block of comments or metadata only (keep-alives) carries no chunk.
        let Some(data) = event.data else { continue };
        if data.trim() == "[DONE]" {
            reader.done = true;
            break;
        }
        match reader.chunk(&data) {
            Ok(Some(piece)) => on_text(&piece),
            Ok(None) => {}
            Err(ChunkError::Malformed(reason)) => {
                return Err(RemoteError::Malformed {
                    url: url.to_string(),
                    reason,
                })
            }
            Err(ChunkError::Server(message)) => {
                return Err(RemoteError::Server {
                    url: url.to_string(),
                    message,
                })
            }
        }
    }
    if !reader.is_complete() {
        return Err(RemoteError::StreamCut {
            url: url.to_string(),
            received: reader.text.chars().count(),
        });
    }
    Ok(reader)
}

/// The decoder gave up: the connection went away mid-body (with the answer unfinished, a cut
/// stream) or the bytes are not server-sent events.
fn decode_error(e: sse_stream::Error, url: &str, reader: &ChunkReader) -> RemoteError {
    match e {
        sse_stream::Error::Body(e) => {
            tracing::debug!(%url, error = %e, "stream read failed");
            RemoteError::StreamCut {
                url: url.to_string(),
                received: reader.text.chars().count(),
            }
        }
        sse_stream::Error::Utf8Parse(_) => RemoteError::Malformed {
            url: url.to_string(),
            reason: "a line of the stream is not UTF-8".to_string(),
        },
        other => RemoteError::Malformed {
            url: url.to_string(),
            reason: format!("not a server-sent event stream ({other})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` cut into pieces of `size` bytes, as a decoded event stream.
    fn events(body: &str, size: usize) -> impl Stream<Item = Result<Sse, sse_stream::Error>> {
        let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .as_bytes()
            .chunks(size.max(1))
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        sse_stream::SseByteStream::new(futures_util::stream::iter(pieces))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    fn read_with(
        body: &str,
        size: usize,
        cancel: bool,
    ) -> (Result<ChunkReader, RemoteError>, String) {
        let mut seen = String::new();
        let r = block_on(read_sse(
            events(body, size),
            "u",
            Duration::from_secs(5),
            &AtomicBool::new(cancel),
            &mut |t: &str| seen.push_str(t),
        ));
        (r, seen)
    }

    fn read(body: &str) -> Result<ChunkReader, RemoteError> {
        let (r, seen) = read_with(body, body.len(), false);
        // However the body is split into reads, the answer is the same.
        for size in [1, 7] {
            let (again, _) = read_with(body, size, false);
            assert_eq!(
                again.as_ref().map(|r| r.text.clone()),
                r.as_ref().map(|r| r.text.clone())
            );
        }
        if let Ok(r) = &r {
            assert_eq!(seen, r.text, "streamed pieces add up to the text");
        }
        r
    }

    fn delta(content: &str) -> String {
        format!(
            "data: {}\n\n",
            serde_json::json!({"model": "m1", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
        )
    }

    #[test]
    fn a_complete_stream_gives_text_finish_usage_and_model() {
        let body = format!(
            "{}{}data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
            delta("{\"Choice\": "),
            delta("\"Model A\"}"),
            serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            serde_json::json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}),
        );
        let r = read(&body).expect("complete");
        assert_eq!(r.text, "{\"Choice\": \"Model A\"}");
        assert_eq!(r.finish.as_deref(), Some("stop"));
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 5
            })
        );
        assert_eq!(r.model.as_deref(), Some("m1"));
        assert_eq!(r.pieces, 2);
    }

    #[test]
    fn a_stream_that_stops_early_is_cut_even_mid_json() {
        let body = format!(
            "{}data: {{\"choices\":[{{\"delta\":{{\"con",
            delta("half an ans")
        );
        match read(&body) {
            Err(RemoteError::StreamCut { received, .. }) => assert_eq!(received, 11),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(&delta("no finish")),
            Err(RemoteError::StreamCut { .. })
        ));
    }

    #[test]
    fn garbage_and_server_errors_are_reported() {
        assert!(matches!(
            read("data: {not json\n\n"),
            Err(RemoteError::Malformed { .. })
        ));
        assert!(matches!(
            read("data: [1, 2]\n\n"),
            Err(RemoteError::Malformed { .. })
        ));
        assert!(matches!(
            read("data: {\"choices\": 3}\n\n"),
            Err(RemoteError::Malformed { .. })
        ));
        match read("data: {\"error\": {\"message\": \"out of memory\"}}\n\n") {
            Err(RemoteError::Server { message, .. }) => assert_eq!(message, "out of memory"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_finish_reason_ends_an_answer_and_done_alone_does_not() {
        let finish = serde_json::json!({"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}]});
        let r = read(&format!("data: {finish}\n\n")).expect("finish ends it");
        assert_eq!(r.finish.as_deref(), Some("length"));
        assert!(matches!(
            read(&format!("{}data: [DONE]\n\n", delta("y"))),
            Err(RemoteError::StreamCut { received: 1, .. })
        ));
    }

    #[test]
    fn a_raised_cancel_stops_the_read() {
        let (r, _) = read_with(&delta("x"), 64, true);
        assert_eq!(r.err(), Some(RemoteError::Cancelled));
    }

    #[test]
    fn comments_other_fields_and_crlf_are_framing_only() {
        let finish =
            serde_json::json!({"choices": [{"delta": {"content": "b"}, "finish_reason": "stop"}]});
        let body = format!(
            ": keep-alive\r\n\r\nevent: chunk\r\nid: 1\r\n{}data: {finish}\r\n\r\ndata: [DONE]\n\n",
            delta("a").replace("\n\n", "\r\n\r\n")
        );
        let r = read(&body).expect("complete");
        assert_eq!(r.text, "ab");
        assert!(r.done);
    }

    #[test]
    fn a_body_that_goes_silent_times_out() {
        let stalled =
            futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(delta("x")))])
                .chain(futures_util::stream::pending());
        let r = block_on(read_sse(
            sse_stream::SseByteStream::new(stalled),
            "u",
            Duration::from_millis(100),
            &AtomicBool::new(false),
            &mut |_: &str| {},
        ));
        match r {
            Err(RemoteError::Timeout { seconds, .. }) => assert!((seconds - 0.1).abs() < 1e-9),
            other => panic!("{other:?}"),
        }
    }
}
