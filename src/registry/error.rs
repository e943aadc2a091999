//! One error type for everything the registry client can run into. Every error
//! names the registry and the image, so a line in a log or on stderr is enough
//! to act on.

use std::time::Duration;

/// A failure talking to one registry about one image.
#[derive(Debug, thiserror::Error)]
#[error("registry `{registry}`, image `{image}`: {kind}")]
pub struct Error {
    pub registry: String,
    /// Repository path (`acme/app`), or `-` when the request concerned no image.
    pub image: String,
    pub kind: ErrorKind,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered HTTP {status}{}", detail(.message))]
    Status {
        url: String,
        status: u16,
        message: Option<String>,
    },
    #[error("authentication failed: {0}")]
    Unauthorized(String),
    #[error("access denied (HTTP 403){}", detail(.0))]
    Forbidden(Option<String>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rate limited (HTTP 429) by {url}{}", retry_hint(.retry_after))]
    RateLimited {
        url: String,
        retry_after: Option<Duration>,
    },
    #[error("invalid response from {url}: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("response from {url} is larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: usize },
    #[error("unsupported manifest media type `{0}`")]
    UnsupportedMediaType(String),
    #[error("invalid Link header `{header}`: {reason}")]
    InvalidLink { header: String, reason: String },
    #[error("content from {url} has digest {actual}, expected {expected}")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("client setup: {0}")]
    Setup(String),
    #[error("registry marked down after repeated failures; next attempt in {0:?}")]
    Down(Duration),
    #[error("scan did not finish within {0:?}")]
    Deadline(Duration),
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

fn retry_hint(after: &Option<Duration>) -> String {
    after
        .map(|d| format!("; retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl ErrorKind {
    /// Worth another attempt after a pause: the server or the network may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            ErrorKind::Connect { .. } | ErrorKind::Timeout { .. } => true,
            ErrorKind::Status { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            ErrorKind::RateLimited { .. } => true,
            // A body cut short is a network failure.
            ErrorKind::InvalidResponse { reason, .. } => reason.starts_with("body truncated"),
            _ => false,
        }
    }

    /// A failure that says the registry itself is unreachable or broken (as
    /// opposed to a problem with one image).
    pub fn is_outage(&self) -> bool {
        match self {
            ErrorKind::Connect { .. } | ErrorKind::Timeout { .. } => true,
            ErrorKind::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}
