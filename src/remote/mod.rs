//! Judges behind OpenAI-compatible HTTP endpoints (vLLM, SGLang, llama.cpp's server, hosted
//! APIs): one streamed `/chat/completions` request per judgment over reqwest, read as
//! server-sent events (`sse-stream`) and fed to the same `CritiqueParser` the local engine
//! feeds, retried with backoff when the server or the network fails. Requests are futures on
//! the remote runtime, a tokio runtime of a few threads owned by this module: `batch` runs each
//! request in flight as a task of its own there, and a front end talks to it through `batch`'s
//! channels and never waits on the network itself.

mod client;
mod constraint;
mod error;
mod retry;
mod runtime;
mod stream;

pub use client::{ApiKey, ChatRequest, Completion, Endpoint, EndpointSettings};
pub use constraint::RemoteConstraint;
pub use error::{ErrorScope, RemoteError};
pub use retry::{jitter, parse_retry_after, RetryPolicy};
pub use runtime::{block_on, runtime};
pub use stream::{ChunkReader, Usage};
