//! Being a polite client: a request budget and a concurrency cap per registry,
//! retries with exponential backoff and jitter, `Retry-After`, and caps on the
//! size of every response body.
//!
//! The budget is a sliding window: at most `max` requests in any `window` (one
//! minute in production; tests and benchmarks shrink the window to keep the same
//! rate in less time). Every request counts, retries and token requests too, so
//! the configured `requestsPerMinute` is a promise, not an average. A request
//! occupies its place from the moment it is sent until `window` after its
//! response has been read. A server sees each request at some moment between
//! those two, so however the network delays requests, no window of the server's
//! can contain more than `max` of them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// At most `max` requests within any `window`.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    window: Duration,
    places: Mutex<Places>,
    finished: Notify,
}

#[derive(Debug, Default)]
struct Places {
    in_flight: usize,
    /// When finished requests ended, oldest first.
    ended: VecDeque<Instant>,
}

/// A place in the budget, held while a request is in flight.
#[derive(Debug)]
pub struct BudgetPlace<'a> {
    budget: &'a Budget,
}

impl Drop for BudgetPlace<'_> {
    fn drop(&mut self) {
        let mut places = self.budget.lock();
        places.in_flight = places.in_flight.saturating_sub(1);
        places.ended.push_back(Instant::now());
        drop(places);
        self.budget.finished.notify_waiters();
    }
}

impl Budget {
    pub fn new(max: u32, window: Duration) -> Budget {
        Budget {
            max: max.max(1) as usize,
            window,
            places: Mutex::new(Places::default()),
            finished: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Places> {
        // A poisoned lock only means a task panicked while updating counters
        // and instants; they are still usable.
        self.places
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Waits until one more request fits, and takes its place. Drop the place
    /// when the response has been read.
    pub async fn acquire(&self) -> BudgetPlace<'_> {
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let wait = {
                let mut places = self.lock();
                let now = Instant::now();
                while places
                    .ended
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    places.ended.pop_front();
                }
                if places.in_flight + places.ended.len() < self.max {
                    places.in_flight += 1;
                    return BudgetPlace { budget: self };
                }
                places
                    .ended
                    .front()
                    .map(|oldest| (*oldest + self.window).saturating_duration_since(now))
            };
            match wait {
                // Wait for the oldest place to leave the window, or for a
                // request in flight to end (its place then starts ageing).
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d.max(Duration::from_millis(1))) => {}
                        _ = &mut finished => {}
                    }
                }
                None => finished.await,
            }
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

/// What one request holds until its response has been read.
#[derive(Debug)]
pub struct Slot<'a> {
    /// `None` only if the semaphore were closed, which never happens: the
    /// request then runs without the concurrency cap rather than not at all.
    _permit: Option<SemaphorePermit<'a>>,
    _place: BudgetPlace<'a>,
}

impl Limiter {
    pub fn new(requests: u32, window: Duration, concurrency: u32) -> Limiter {
        Limiter {
            budget: Budget::new(requests, window),
            slots: Semaphore::new(concurrency.max(1) as usize),
        }
    }

    /// A slot for one request: first a concurrency permit, then a place in the
    /// budget.
    pub async fn acquire(&self) -> Slot<'_> {
        let permit = self.slots.acquire().await.ok();
        let place = self.budget.acquire().await;
        Slot {
            _permit: permit,
            _place: place,
        }
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
            let place = budget.acquire().await;
            times.push(start.elapsed());
            drop(place);
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

    #[tokio::test]
    async fn a_place_ages_only_once_its_request_has_ended() {
        let budget = Budget::new(1, Duration::from_millis(100));
        let start = Instant::now();
        let first = budget.acquire().await;
        let waiter = async {
            let _second = budget.acquire().await;
            start.elapsed()
        };
        let release = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(first);
        };
        let (second_at, ()) = tokio::join!(waiter, release);
        // In flight for 200 ms, then one window.
        assert!(second_at >= Duration::from_millis(300), "{second_at:?}");
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
