//! The client's error type. Messages name the URL and what was expected; never a key.

use std::time::Duration;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Establishing the connection.
    Connect,
    /// Waiting for the first token (streaming) or the response headers.
    FirstToken,
    /// The whole request.
    Total,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstToken => "first-token",
            TimeoutPhase::Total => "total",
        })
    }
}

/// Everything that can go wrong talking to a model server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The API key variable named in the config is not set.
    #[error("environment variable `{var}` (the API key) is not set")]
    MissingApiKey {
        /// The variable name.
        var: String,
    },
    /// The base URL is not an absolute http(s) URL.
    #[error(
        "invalid base URL {url:?}: expected an absolute http:// or https:// URL such as http://127.0.0.1:8000/v1"
    )]
    InvalidUrl {
        /// The URL as given.
        url: String,
    },
    /// The server could not be reached.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The request URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A timeout fired.
    #[error("{phase} timeout after {after:?} waiting for {url}")]
    Timeout {
        /// The request URL.
        url: String,
        /// Which timeout.
        phase: TimeoutPhase,
        /// The configured limit.
        after: Duration,
    },
    /// The response body is larger than the client reads.
    #[error("{url} sent a response larger than {} MiB; it was not read", limit >> 20)]
    TooLarge {
        /// The request URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The error message from the body, or the body itself.
        message: String,
        /// The error type or code from the body.
        code: Option<String>,
    },
    /// The body was not the JSON expected.
    #[error(
        "{url} returned a body that is not a valid {expected}: {reason} (body starts: {snippet:?})"
    )]
    InvalidBody {
        /// The request URL.
        url: String,
        /// What was expected.
        expected: &'static str,
        /// The parse error.
        reason: String,
        /// The first bytes of the body.
        snippet: String,
    },
    /// The stream carried an in-band error event.
    #[error("{url} sent an error in the stream: {message}")]
    StreamError {
        /// The request URL.
        url: String,
        /// The error message.
        message: String,
    },
    /// The stream ended before `data: [DONE]`.
    #[error(
        "stream from {url} ended without `data: [DONE]` after {received_chunks} chunks (truncated)"
    )]
    Truncated {
        /// The request URL.
        url: String,
        /// Chunks received before the end.
        received_chunks: usize,
    },
    /// Reading the body failed mid-way.
    #[error("reading the response from {url} failed: {reason}")]
    Body {
        /// The request URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl LlmError {
    /// Whether this error is a server or transport failure (as opposed to bad configuration).
    pub fn http_status(&self) -> Option<u16> {
        match self {
            LlmError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short machine-readable class, for metrics and reports.
    pub fn class(&self) -> &'static str {
        match self {
            LlmError::MissingApiKey { .. } | LlmError::InvalidUrl { .. } => "config",
            LlmError::Connect { .. } => "connect",
            LlmError::Timeout { .. } => "timeout",
            LlmError::Status { status, .. } if *status == 429 => "rate_limited",
            LlmError::Status { status, .. } if *status >= 500 => "server_error",
            LlmError::Status { .. } => "client_error",
            LlmError::InvalidBody { .. } => "invalid_body",
            LlmError::StreamError { .. } => "stream_error",
            LlmError::Truncated { .. } => "truncated",
            LlmError::Body { .. } => "body",
            LlmError::TooLarge { .. } => "too_large",
        }
    }
}
