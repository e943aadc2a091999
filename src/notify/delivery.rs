//! One POST to one sink, retried with exponential backoff.
//!
//! Retried: connection errors and timeouts, `429` and `5xx` (honouring
//! `Retry-After` up to a cap); anything else (`400`, `403`, `404`: a wrong or
//! revoked webhook) fails at once, since repeating it cannot help.
//!
//! A webhook URL is a secret (Slack's carries the token in its path), so it
//! never appears in an error or a log line: sinks are named by their
//! configured `name` and a redacted URL (scheme and host only), and HTTP
//! client errors are stripped of the URL they carry.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::event::EventKind;
use crate::registry::limits::{RetryPolicy, parse_retry_after};

/// Where a sink's body is shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Slack incoming webhook.
    Slack,
    /// Generic JSON webhook (the documented event schema).
    Webhook,
}

/// A configured destination. `Debug` never shows the URL.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    url: reqwest::Url,
    pub events: BTreeSet<EventKind>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.redacted_url())
            .field("events", &self.events)
            .finish()
    }
}

/// A sink could not be set up (nothing here contains the URL itself).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("notification `{name}`: environment variable `{env}` (urlEnv) is not set or empty")]
    MissingUrl { name: String, env: String },
    #[error("notification `{name}`: the URL in `{env}` is not an http(s) URL: {reason}")]
    BadUrl {
        name: String,
        env: String,
        reason: String,
    },
}

impl Sink {
    /// A sink whose URL is read from the environment variable `url_env` now.
    pub fn from_env(
        name: &str,
        kind: SinkKind,
        url_env: &str,
        events: BTreeSet<EventKind>,
    ) -> Result<Sink, SinkError> {
        let value = std::env::var(url_env).unwrap_or_default();
        if value.trim().is_empty() {
            return Err(SinkError::MissingUrl {
                name: name.into(),
                env: url_env.into(),
            });
        }
        Sink::new(name, kind, value.trim(), events).map_err(|reason| SinkError::BadUrl {
            name: name.into(),
            env: url_env.into(),
            reason,
        })
    }

    /// `Err` is a reason that does not repeat the URL.
    pub fn new(
        name: &str,
        kind: SinkKind,
        url: &str,
        events: BTreeSet<EventKind>,
    ) -> Result<Sink, String> {
        let url = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme `{}`, not http or https", url.scheme()));
        }
        if url.host_str().is_none() {
            return Err("no host".into());
        }
        Ok(Sink {
            name: name.into(),
            kind,
            url,
            events,
        })
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }

    /// `https://hooks.slack.com/…`: enough to tell sinks apart, no secret.
    pub fn redacted_url(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}/…", self.url.scheme()),
            None => format!("{}://{host}/…", self.url.scheme()),
        }
    }
}

/// Attempts and delays (the registry client's retry rule, with the
/// notification defaults) and the per-request timeout.
#[derive(Debug, Clone)]
pub struct RetryOptions {
    /// `max_attempts` (at least 1), exponential `base_delay`..`max_delay`
    /// with jitter, `Retry-After` honoured up to `max_retry_after`.
    pub policy: RetryPolicy,
    /// Per request, connect included.
    pub timeout: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            policy: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(30),
                max_retry_after: Duration::from_secs(60),
            },
            timeout: Duration::from_secs(10),
        }
    }
}

/// A delivery that gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification `{sink}` ({url}): gave up after {attempts} attempt(s): {reason}")]
pub struct DeliveryError {
    pub sink: String,
    /// Redacted.
    pub url: String,
    pub attempts: u32,
    pub reason: String,
}

/// What one attempt ended with.
enum Attempt {
    Delivered,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// POSTs `body` to the sink until it is accepted (2xx) or the attempts run
/// out; returns the attempts used.
pub async fn deliver(
    http: &reqwest::Client,
    sink: &Sink,
    body: &serde_json::Value,
    retry: &RetryOptions,
) -> Result<u32, DeliveryError> {
    let attempts = retry.policy.max_attempts.max(1);
    let give_up = |attempt: u32, reason: String| DeliveryError {
        sink: sink.name.clone(),
        url: sink.redacted_url(),
        attempts: attempt,
        reason: scrub(&reason, sink.url.as_str()),
    };
    for attempt in 1..=attempts {
        match attempt_once(http, sink, body, retry.timeout).await {
            Attempt::Delivered => return Ok(attempt),
            Attempt::Fatal(reason) => return Err(give_up(attempt, reason)),
            Attempt::Retry { reason, after } => {
                if attempt == attempts {
                    return Err(give_up(attempt, reason));
                }
                let backoff = retry.policy.backoff(attempt);
                let delay = match after {
                    Some(after) if after > retry.policy.max_retry_after => {
                        return Err(give_up(
                            attempt,
                            format!(
                                "{reason}; asked to retry after {}s, longer than the {}s allowed",
                                after.as_secs(),
                                retry.policy.max_retry_after.as_secs()
                            ),
                        ));
                    }
                    Some(after) => after.max(backoff),
                    None => backoff,
                };
                tracing::warn!(sink = %sink.name, url = %sink.redacted_url(), attempt,
                    delay_ms = delay.as_millis() as u64, reason = %scrub(&reason, sink.url.as_str()),
                    "notification not delivered; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
    Err(give_up(attempts, "no attempt made".into()))
}

async fn attempt_once(
    http: &reqwest::Client,
    sink: &Sink,
    body: &serde_json::Value,
    timeout: Duration,
) -> Attempt {
    let response = http
        .post(sink.url.clone())
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let transient = e.is_connect() || e.is_timeout() || e.is_request();
            let reason = error_chain(e.without_url());
            return if transient {
                Attempt::Retry {
                    reason,
                    after: None,
                }
            } else {
                Attempt::Fatal(reason)
            };
        }
    };
    let status = response.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let reason = format!("HTTP {status}");
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Attempt::Retry { reason, after }
    } else {
        Attempt::Fatal(reason)
    }
}

fn error_chain(e: reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Belt and braces: whatever a library put in a message, the URL goes.
fn scrub(text: &str, url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.len() > 8 {
        text.replace(trimmed, "<redacted URL>")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_redaction_hide_the_path() {
        let sink = Sink::new(
            "team",
            SinkKind::Slack,
            "https://hooks.slack.com/services/T000/B000/XXXSECRET",
            BTreeSet::new(),
        )
        .expect("valid");
        assert_eq!(sink.redacted_url(), "https://hooks.slack.com/…");
        assert!(!format!("{sink:?}").contains("XXXSECRET"));
        assert_eq!(
            scrub(
                "failed for https://hooks.slack.com/services/T000/B000/XXXSECRET: boom",
                sink.url.as_str()
            ),
            "failed for <redacted URL>: boom"
        );
    }

    #[test]
    fn only_http_urls() {
        let err = Sink::new(
            "x",
            SinkKind::Webhook,
            "file:///etc/passwd",
            BTreeSet::new(),
        )
        .expect_err("refused");
        assert!(err.contains("file"), "{err}");
    }
}
