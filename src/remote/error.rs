//! What can go wrong with a remote judge request, and whether trying again can help.

use std::time::Duration;

/// How far an error reaches once retries are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorScope {
    /// Only this item (a prompt the server rejects, a reply that cannot be read).
    Item,
    /// Every request to this endpoint would fail the same way (a refused key, a wrong URL or
    /// model, a server that cannot be reached): stop sending it work.
    Endpoint,
}

/// A failed request. Messages name the endpoint and say what to do; none of them carries the
/// API key (server text is scrubbed of it before it gets here).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot reach {url}: {reason} (is the server running, and is base_url right?)")]
    Connect { url: String, reason: String },
    #[error("{url} sent nothing for {seconds:.0} s (raise the judge's timeout_s if the server is just slow)")]
    Timeout { url: String, seconds: f64 },
    #[error("{url} answered HTTP {status}{}{}", hint_for(*.status), if .body.is_empty() { String::new() } else { format!(": {}", .body) })]
    Status {
        url: String,
        status: u16,
        /// The start of the server's message, scrubbed of the key.
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("the stream from {url} stopped before the answer ended ({received} characters in); the partial answer was dropped")]
    StreamCut { url: String, received: usize },
    #[error("{url} sent a reply that is not an OpenAI-compatible chat completion: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url} ended its answer without a word; a server that stops one request when another arrives does this (llama-cpp-python: start it with --interrupt_requests False)")]
    Empty { url: String },
    #[error("{url} reported an error in the stream: {message}")]
    Server { url: String, message: String },
    #[error("cannot start the network runtime for remote judges: {reason} (the system refused a thread; close other programs or raise the process limits)")]
    Runtime { reason: String },
    #[error("cancelled")]
    Cancelled,
}

fn hint_for(status: u16) -> &'static str {
    match status {
        401 | 403 => " (the API key was refused: check the variable that api_key_env names)",
        404 => " (no such route or model: check base_url and model)",
        429 => " (rate limited)",
        _ => "",
    }
}

impl RemoteError {
    /// Whether a later attempt may succeed: rate limits, server errors, timeouts, lost
    /// connections, cut or garbled streams.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::Connect { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::StreamCut { .. }
            | RemoteError::Malformed { .. }
            | RemoteError::Empty { .. }
            | RemoteError::Server { .. } => true,
            RemoteError::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429 | 500..=599)
            }
            RemoteError::Cancelled | RemoteError::Runtime { .. } => false,
        }
    }

    /// The wait the server asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RemoteError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What failing with this error says about the judge's other items.
    pub fn scope(&self) -> ErrorScope {
        match self {
            RemoteError::Connect { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::Runtime { .. } => ErrorScope::Endpoint,
            RemoteError::Status {
                status: 401 | 403 | 404,
                ..
            } => ErrorScope::Endpoint,
            _ => ErrorScope::Item,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> RemoteError {
        RemoteError::Status {
            url: "u".into(),
            status: s,
            body: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn retryable_and_scope_follow_the_status() {
        for s in [429, 500, 502, 503, 504, 408] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 422] {
            assert!(!status(s).is_retryable(), "{s}");
        }
        assert_eq!(status(401).scope(), ErrorScope::Endpoint);
        assert_eq!(status(400).scope(), ErrorScope::Item);
        assert!(status(401).to_string().contains("api_key_env"));
        assert!(!RemoteError::Cancelled.is_retryable());
    }
}
