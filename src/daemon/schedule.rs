//! When a task runs its next step: every interval (with jitter, so a fleet of
//! tasks does not fire in step), at once when triggered, and after a failure
//! with exponential backoff (capped) instead of the interval.
//!
//! [`drive`] is the loop every daemon task runs. Each step runs in its own
//! tokio task and is awaited through its `JoinHandle`, so a panicking step is
//! caught, counted and retried with backoff like any failure: one task can
//! neither crash the daemon nor stop its siblings. A step that has started is
//! never cancelled (a push or an apply finishes); the stop token is looked at
//! between steps. Steps that write (Git or the cluster) also wait until this
//! replica is the leader.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// A step that did not succeed: the kind (a metrics label) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(kind: &'static str, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            message: message.to_string(),
        }
    }
}

/// Exponential backoff: `base`, `2·base`, `4·base`, … up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            failures: 0,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.failures = self.failures.saturating_add(1);
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// How a task is scheduled.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    /// Fraction of the interval added or removed at random (0.1 = ±10%).
    pub jitter: f64,
    /// Backoff after failures; capped at the interval when that is longer
    /// than `backoff.max` is not wanted — see [`Schedule::new`].
    pub backoff: Backoff,
    /// Run the first step at once (else after the first interval or trigger).
    pub run_at_start: bool,
}

impl Schedule {
    /// Interval with ±10% jitter; backoff from 1 s, capped at 5 minutes or
    /// the interval, whichever is shorter.
    pub fn new(interval: Duration) -> Schedule {
        let max = Duration::from_secs(300)
            .min(interval)
            .max(Duration::from_secs(1));
        Schedule {
            interval,
            jitter: 0.1,
            backoff: Backoff::new(Duration::from_secs(1), max),
            run_at_start: true,
        }
    }

    /// The interval with jitter applied.
    pub fn next_interval(&self) -> Duration {
        let spread = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
        self.interval.mul_f64(factor.max(0.0))
    }
}

/// What a task needs from its surroundings.
#[derive(Clone)]
pub struct Context {
    pub metrics: Arc<Metrics>,
    /// Bounded concurrency: one permit per running step.
    pub permits: Arc<Semaphore>,
    pub stop: CancellationToken,
    /// `true` while this replica may write (Git, cluster).
    pub leader: watch::Receiver<bool>,
}

/// Identifies a task in logs.
#[derive(Debug, Clone, Copy)]
pub enum TaskName<'a> {
    Scan { policy: &'a str },
    Write,
    Sync { target: &'a str },
}

impl std::fmt::Display for TaskName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskName::Scan { policy } => write!(f, "scan {policy}"),
            TaskName::Write => f.write_str("write"),
            TaskName::Sync { target } => write!(f, "sync {target}"),
        }
    }
}

/// Runs `step` on `schedule` and on every `trigger`, until `ctx.stop`.
/// `writes`: wait for leadership before each step.
pub async fn drive<F, Fut>(
    name: TaskName<'_>,
    mut schedule: Schedule,
    trigger: Arc<Notify>,
    ctx: Context,
    writes: bool,
    mut step: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>> + Send + 'static,
{
    let mut leader = ctx.leader.clone();
    let mut delay = if schedule.run_at_start {
        Duration::ZERO
    } else {
        schedule.next_interval()
    };
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return,
            _ = trigger.notified() => tracing::debug!(task = %name, "triggered"),
            _ = tokio::time::sleep(delay) => {}
        }
        if writes && !*leader.borrow() {
            tracing::info!(task = %name, "not the leader; waiting before writing");
            tokio::select! {
                _ = ctx.stop.cancelled() => return,
                r = leader.wait_for(|is| *is) => if r.is_err() { return },
            }
        }
        let permit = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            p = ctx.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        // The step runs in its own task: a panic ends that task, not this loop.
        let handle = tokio::spawn(step());
        let result = handle.await;
        drop(permit);
        delay = match result {
            Ok(Ok(())) => {
                schedule.backoff.reset();
                schedule.next_interval()
            }
            Ok(Err(failure)) => {
                ctx.metrics.error(failure.kind);
                let wait = schedule.backoff.next_delay();
                tracing::warn!(task = %name, kind = failure.kind, error = %failure.message, failures = schedule.backoff.failures(), retry_in = ?wait, "step failed");
                wait
            }
            Err(join) => {
                ctx.metrics.error("panic");
                let wait = schedule.backoff.next_delay();
                tracing::error!(task = %name, error = %join, failures = schedule.backoff.failures(), retry_in = ?wait, "step panicked; restarting after backoff");
                wait
            }
        };
        if ctx.stop.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let s = Schedule::new(Duration::from_secs(100));
        for _ in 0..1000 {
            let d = s.next_interval().as_secs_f64();
            assert!((90.0..=110.0).contains(&d), "{d}");
        }
        assert_eq!(s.backoff.max, Duration::from_secs(100));
        assert_eq!(
            Schedule::new(Duration::from_secs(3600)).backoff.max,
            Duration::from_secs(300)
        );
    }

    fn ctx() -> (Context, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(true);
        (
            Context {
                metrics: Arc::new(Metrics::new()),
                permits: Arc::new(Semaphore::new(2)),
                stop: CancellationToken::new(),
                leader: rx,
            },
            tx,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_step_is_retried_with_backoff() {
        let (ctx, _leader) = ctx();
        let runs = Arc::new(AtomicU32::new(0));
        let trigger = Arc::new(Notify::new());
        let task = tokio::spawn({
            let ctx = ctx.clone();
            let runs = runs.clone();
            async move {
                drive(
                    TaskName::Write,
                    Schedule::new(Duration::from_secs(3600)),
                    trigger,
                    ctx,
                    false,
                    move || {
                        let n = runs.fetch_add(1, Ordering::SeqCst);
                        async move {
                            if n < 2 {
                                panic!("step {n} panics");
                            }
                            Ok(())
                        }
                    },
                )
                .await
            }
        });
        // 0 s: panic, +1 s: panic, +2 s: success; then the 1 h interval.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(ctx.metrics.encode().contains("kind=\"panic\"} 2"));
        ctx.stop.cancel();
        task.await.expect("the driver ends on stop");
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_run_at_once_and_writes_wait_for_leadership() {
        let (ctx, leader) = ctx();
        leader.send_replace(false);
        let runs = Arc::new(AtomicU32::new(0));
        let trigger = Arc::new(Notify::new());
        let mut schedule = Schedule::new(Duration::from_secs(3600));
        schedule.run_at_start = false;
        let task = tokio::spawn({
            let ctx = ctx.clone();
            let runs = runs.clone();
            let trigger = trigger.clone();
            async move {
                drive(TaskName::Write, schedule, trigger, ctx, true, move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                })
                .await
            }
        });
        trigger.notify_one();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0, "not the leader yet");
        leader.send_replace(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        trigger.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        ctx.stop.cancel();
        task.await.expect("the driver ends on stop");
    }
}
