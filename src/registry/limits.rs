//! Being a polite client: a request budget and a concurrency cap per registry,
//! retries with exponential backoff and jitter, `Retry-After`, and caps on the
//! size of every response body.
//!
//! The budget is a sliding window: at most `max` requests start in any `window`
//! (one minute in production; tests and benchmarks shrink the window to keep the
//! same rate in less time). Every request counts, retries and token requests too,
//! so the configured `requestsPerMinute` is a promise, not an average.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// At most `max` requests start within any `window`.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    window: Duration,
    started: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub fn new(max: u32, window: Duration) -> Budget {
        let max = max.max(1) as usize;
        Budget {
            max,
            window,
            started: Mutex::new(VecDeque::with_capacity(max.min(4096))),
        }
    }

    /// Waits until one more request fits in the window, and records it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                // A poisoned lock only means another task panicked mid-update of
                // a queue of instants; the data is still usable.
                let mut started = self
                    .started
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                let now = Instant::now();
                while started
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    started.pop_front();
                }
                if started.len() < self.max {
                    started.push_back(now);
                    return;
                }
                match started.front() {
                    Some(oldest) => (*oldest + self.window).saturating_duration_since(now),
                    None => Duration::ZERO,
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Concurrency cap plus budget: what a request must hold while it runs.
#[derive(Debug)]
pub struct Limiter {
    budget: Budget,
    slots: Semaphore,
}

impl Limiter {
    pub fn new(requests: u32, window: Duration, concurrency: u32) -> Limiter {
        Limiter {
            budget: Budget::new(requests, window),
            slots: Semaphore::new(concurrency.max(1) as usize),
        }
    }

    /// A slot for one request: first a concurrency permit, then a place in the
    /// budget. Hold the permit until the response body has been read. (The
    /// semaphore is never closed, so the permit is always there; `None` would
    /// only mean running without the concurrency cap.)
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.slots.acquire().await.ok();
        self.budget.acquire().await;
        permit
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

/// When and how often to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles each time, with full jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the request fails as
    /// rate limited and the scan reports the image stale instead of stalling.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` (attempt counts from 1): a random
    /// duration in `[d/2, d]` where `d = base * 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

/// Caps on response bodies, in bytes.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub tags_page: usize,
    pub manifest: usize,
    pub config_blob: usize,
    pub token: usize,
    /// Error bodies are read only for their message.
    pub error: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            tags_page: 16 << 20,
            // Distribution itself refuses manifests over 4 MiB.
            manifest: 4 << 20,
            config_blob: 8 << 20,
            token: 1 << 20,
            error: 64 << 10,
        }
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::now();
    let secs = when.as_second().saturating_sub(now.as_second());
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_never_exceeds_max_in_any_window() {
        let budget = Budget::new(5, Duration::from_millis(300));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            budget.acquire().await;
            times.push(start.elapsed());
        }
        // 12 requests at 5 per 300 ms: the 6th waits one window, the 11th two.
        assert!(times[5] >= Duration::from_millis(300), "{times:?}");
        assert!(times[10] >= Duration::from_millis(600), "{times:?}");
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_millis(300))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} requests within one window at {t:?}"
            );
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.backoff(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d10 = p.backoff(10);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
        let header = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&future)
            .expect("format");
        let d = parse_retry_after(&header).expect("parses");
        assert!(
            d >= Duration::from_secs(28) && d <= Duration::from_secs(31),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }
}
