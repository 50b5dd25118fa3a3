//! Judges behind OpenAI-compatible HTTP endpoints (vLLM, SGLang, llama.cpp's server, hosted
//! APIs): one streamed `/chat/completions` request per judgment, read as server-sent events
//! and fed to the same `CritiqueParser` the local engine feeds, retried with backoff when the
//! server or the network fails. Blocking calls, meant for worker threads: a front end talks
//! to them through `batch`'s channels and never waits on the network itself.

mod client;
mod constraint;
mod error;
mod retry;
mod sse;
mod stream;

pub use client::{ApiKey, ChatRequest, Completion, Endpoint, EndpointSettings};
pub use constraint::RemoteConstraint;
pub use error::{ErrorScope, RemoteError};
pub use retry::{jitter, parse_retry_after, RetryPolicy};
pub use sse::{SseDecoder, SseEvent};
pub use stream::{ChunkReader, Usage};
