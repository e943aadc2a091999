//! What a forge answered, as an error a person can act on, and the retry rule.
//!
//! GitHub and Gitea answer with the same status codes, so one classification
//! serves both: 401 is bad credentials, 403 is either a rate limit
//! (`x-ratelimit-remaining: 0`, `retry-after`, or a "secondary rate limit"
//! message) or a missing permission (GitHub names it in
//! `x-accepted-github-permissions`), 404 names the object that was looked for,
//! 422 carries the forge's validation messages, 5xx and transport failures are
//! transient. Every message starts with the operation, the repository and the
//! object, so a log line is enough to act on.
//!
//! `retry` runs one request again on transient errors and rate limits, waiting
//! what the forge asked for but never longer than `RetryPolicy::max_wait`: when
//! the forge asks for a longer pause the error is returned at once (the caller's
//! loop comes back later) instead of hammering or sleeping for an hour.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

/// GitHub's advice when a secondary rate limit names no time: wait a minute.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("forge configuration: {0}")]
    Config(String),
    #[error("{operation}: bad credentials (401){}", suffix(.message))]
    Unauthorized { operation: String, message: String },
    #[error(
        "{operation}: forbidden (403): {message}{}",
        permission_hint(.permission)
    )]
    Forbidden {
        operation: String,
        message: String,
        /// What the token lacks, when the forge says (GitHub: `x-accepted-github-permissions`).
        permission: Option<String>,
    },
    #[error("{operation}: {what} not found (404)")]
    NotFound { operation: String, what: String },
    #[error("{operation}: rejected (422): {}", details(.message, .errors))]
    Validation {
        operation: String,
        message: String,
        /// `errors[].message` from the answer.
        errors: Vec<String>,
    },
    #[error("{operation}: rate limited, the forge asks to wait {}s", .retry_after.as_secs())]
    RateLimited {
        operation: String,
        retry_after: Duration,
    },
    #[error("{operation}: forge error ({status}){}", suffix(.message))]
    Server {
        operation: String,
        status: u16,
        message: String,
    },
    #[error("{operation}: {message}")]
    Transport { operation: String, message: String },
    /// 409: the object changed meanwhile, or already exists (Gitea's duplicate PR).
    #[error("{operation}: conflict (409){}", suffix(.message))]
    Conflict { operation: String, message: String },
    /// Any other refusal (409 conflict, 405 not mergeable, an unexpected body …).
    #[error("{operation}: {message}")]
    Api { operation: String, message: String },
    #[error("{operation}: not supported by {forge}")]
    Unsupported { operation: String, forge: String },
}

impl ForgeError {
    /// Worth sending the same request again (after the wait, if any).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ForgeError::RateLimited { .. }
                | ForgeError::Server { .. }
                | ForgeError::Transport { .. }
        )
    }

    /// How long the forge asked to wait, for rate limits.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ForgeError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub(crate) fn api(operation: &str, message: impl Into<String>) -> ForgeError {
        ForgeError::Api {
            operation: operation.to_string(),
            message: message.into(),
        }
    }
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn permission_hint(permission: &Option<String>) -> String {
    match permission {
        Some(p) if !p.is_empty() => format!(" (the token needs `{p}`)"),
        _ => String::new(),
    }
}

fn details(message: &str, errors: &[String]) -> String {
    if errors.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", errors.join("; "))
    }
}

/// The JSON error body GitHub and Gitea send (`message`, `errors[]`).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Option<Vec<serde_json::Value>>,
}

fn error_messages(errors: &[serde_json::Value]) -> Vec<String> {
    errors
        .iter()
        .filter_map(|e| match e {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .or_else(|| {
                    // `{resource, field, code}` without a message, e.g. `missing_field`.
                    let get = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("");
                    Some(format!(
                        "{} {} {}",
                        get("resource"),
                        get("field"),
                        get("code")
                    ))
                    .filter(|s| !s.trim().is_empty())
                }),
            _ => None,
        })
        .collect()
}

/// Turns a non-success answer into an error. `not_found` says what was looked for
/// (e.g. "pull request #12 in acme/fleet"); `now` reads `x-ratelimit-reset`.
pub fn classify(
    operation: &str,
    not_found: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ForgeError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed
        .message
        .clone()
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
        .trim()
        .to_string();
    let errors = parsed
        .errors
        .as_deref()
        .map(error_messages)
        .unwrap_or_default();
    let operation = operation.to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let limit_exhausted = header("x-ratelimit-remaining") == Some("0");
    match status.as_u16() {
        401 => ForgeError::Unauthorized { operation, message },
        403 | 429 => {
            if let Some(secs) = retry_after {
                return ForgeError::RateLimited {
                    operation,
                    retry_after: Duration::from_secs(secs.max(1)),
                };
            }
            if limit_exhausted {
                let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok());
                let now_secs = now
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let wait = reset.map(|r| r.saturating_sub(now_secs)).unwrap_or(60);
                return ForgeError::RateLimited {
                    operation,
                    retry_after: Duration::from_secs(wait.max(1)),
                };
            }
            if status.as_u16() == 429 || message.to_lowercase().contains("rate limit") {
                return ForgeError::RateLimited {
                    operation,
                    retry_after: SECONDARY_LIMIT_WAIT,
                };
            }
            ForgeError::Forbidden {
                operation,
                message,
                permission: header("x-accepted-github-permissions").map(str::to_string),
            }
        }
        404 => ForgeError::NotFound {
            operation,
            what: not_found.to_string(),
        },
        409 => ForgeError::Conflict { operation, message },
        422 => ForgeError::Validation {
            operation,
            message,
            errors,
        },
        s if s >= 500 => ForgeError::Server {
            operation,
            status: s,
            message,
        },
        s => ForgeError::Api {
            operation,
            message: if errors.is_empty() {
                format!("{message} ({s})")
            } else {
                format!("{message} ({s}): {}", errors.join("; "))
            },
        },
    }
}

/// How often and how long to retry one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub attempts: u32,
    /// First pause after a 5xx or transport error; doubles each time.
    pub backoff: Duration,
    /// Longest pause; a forge asking for more gets the error back at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the attempts are spent.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut attempt: F) -> Result<T, ForgeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ForgeError>>,
{
    let mut backoff = policy.backoff;
    let mut tries = 0;
    loop {
        tries += 1;
        let err = match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.is_transient() || tries >= policy.attempts.max(1) {
            return Err(err);
        }
        let wait = match err.retry_after() {
            Some(asked) if asked > policy.max_wait => return Err(err),
            Some(asked) => asked,
            None => backoff.min(policy.max_wait),
        };
        backoff = backoff.saturating_mul(2);
        tracing::warn!(error = %err, attempt = tries, wait_ms = wait.as_millis() as u64, "forge request will be retried");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn rate_limit_reset_is_read_against_the_clock() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let e = classify(
            "op",
            "x",
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1042"),
            ]),
            br#"{"message":"API rate limit exceeded"}"#,
            now,
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(42)), "{e}");
    }

    #[test]
    fn plain_403_names_the_permission() {
        let e = classify(
            "create pull request in acme/fleet",
            "x",
            StatusCode::FORBIDDEN,
            &headers(&[("x-accepted-github-permissions", "pull_requests=write")]),
            br#"{"message":"Resource not accessible by integration"}"#,
            SystemTime::now(),
        );
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "create pull request in acme/fleet: forbidden (403): Resource not accessible by integration (the token needs `pull_requests=write`)"
        );
    }

    #[test]
    fn validation_errors_without_message_use_their_fields() {
        let e = classify(
            "op",
            "x",
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#,
            SystemTime::now(),
        );
        assert_eq!(
            e.to_string(),
            "op: rejected (422): Validation Failed: PullRequest head invalid"
        );
    }
}
