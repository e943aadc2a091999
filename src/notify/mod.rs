//! Notifications: Slack incoming webhooks and a generic JSON webhook, told
//! about tags chosen, commits pushed, pull requests opened or updated, and
//! syncs started, succeeded or failed.
//!
//! Notifying must never slow the loops down. [`Notifier::notify`] only puts
//! the event in a bounded in-memory queue and returns; one background task
//! delivers (with retries, see [`delivery`]). When the queue is full the
//! oldest event is dropped with a warning — a notification is a courtesy,
//! the record of truth is Git, the cluster and the forge.
//!
//! - [`event`]: the event record and its kinds (the webhook schema).
//! - [`payload`]: Slack and webhook bodies (pure).
//! - [`delivery`]: sinks, the POST with retries, URL redaction.

pub mod delivery;
pub mod event;
pub mod payload;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use delivery::{DeliveryError, RetryOptions, Sink, SinkError, SinkKind};
pub use event::{Event, EventKind};

use crate::config::Notification;

/// Queue and delivery settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Events waiting at most; beyond, the oldest is dropped.
    pub queue_capacity: usize,
    pub retry: RetryOptions,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue_capacity: 256,
            retry: RetryOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("notifications: cannot build the HTTP client: {0}")]
    Client(String),
}

/// The sinks of `notifications:` in the configuration, URLs read from the
/// environment now.
pub fn sinks_from_config(config: &[Notification]) -> Result<Vec<Sink>, SinkError> {
    config
        .iter()
        .map(|n| {
            let events: BTreeSet<EventKind> = match &n.events {
                Some(list) => list.iter().copied().collect(),
                None => EventKind::ALL.into_iter().collect(),
            };
            Sink::from_env(&n.name.value, n.kind, &n.url_env.value, events)
        })
        .collect()
}

struct Shared {
    queue: Mutex<VecDeque<Event>>,
    wake: tokio::sync::Notify,
    closed: std::sync::atomic::AtomicBool,
    capacity: usize,
    sinks: Vec<Sink>,
}

/// The handle the loops notify through; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
    worker: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("sinks", &self.shared.sinks)
            .finish()
    }
}

impl Notifier {
    /// Starts the delivery task (call inside a Tokio runtime). With no sinks
    /// nothing is started and [`notify`](Self::notify) does nothing.
    pub fn start(sinks: Vec<Sink>, options: Options) -> Result<Notifier, Error> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            capacity: options.queue_capacity.max(1),
            sinks,
        });
        let worker = if shared.sinks.is_empty() {
            None
        } else {
            let tls = crate::registry::transport::tls_config(None).map_err(Error::Client)?;
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .connect_timeout(options.retry.timeout)
                .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Client(e.without_url().to_string()))?;
            Some(tokio::spawn(run(shared.clone(), http, options.retry)))
        };
        Ok(Notifier {
            shared,
            worker: Arc::new(Mutex::new(worker)),
        })
    }

    /// The sinks of `notifications:` (URLs read from the environment now), with
    /// the default delivery options; call inside a Tokio runtime.
    pub fn from_config(config: &[Notification]) -> Result<Notifier, Error> {
        Notifier::start(sinks_from_config(config)?, Options::default())
    }

    /// A notifier without sinks.
    pub fn disabled() -> Notifier {
        Notifier {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
                closed: std::sync::atomic::AtomicBool::new(true),
                capacity: 1,
                sinks: Vec::new(),
            }),
            worker: Arc::new(Mutex::new(None)),
        }
    }

    /// Queues the event for every sink subscribed to its kind; never waits.
    pub fn notify(&self, event: Event) {
        let shared = &self.shared;
        if !shared.sinks.iter().any(|s| s.wants(event.event)) {
            return;
        }
        {
            let mut queue = lock(&shared.queue);
            if queue.len() >= shared.capacity
                && let Some(dropped) = queue.pop_front()
            {
                tracing::warn!(event = %dropped.event, policy = dropped.policy.as_deref(),
                    target = dropped.target.as_deref(), capacity = shared.capacity,
                    "notification queue full; dropped the oldest notification");
            }
            queue.push_back(event);
        }
        shared.wake.notify_one();
    }

    /// Events waiting for delivery.
    pub fn pending(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Delivers what is queued, waiting at most `grace`; then stops. What is
    /// still undelivered is counted in a warning.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.wake.notify_one();
        let handle = lock(&self.worker).take();
        let Some(mut handle) = handle else { return };
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            handle.abort();
            tracing::warn!(
                undelivered = self.pending(),
                grace_ms = grace.as_millis() as u64,
                "notifications still undelivered at shutdown; dropped"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn run(shared: Arc<Shared>, http: reqwest::Client, retry: RetryOptions) {
    loop {
        let next = lock(&shared.queue).pop_front();
        let Some(event) = next else {
            if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        for sink in shared.sinks.iter().filter(|s| s.wants(event.event)) {
            let body = match sink.kind {
                SinkKind::Slack => payload::slack(&event),
                SinkKind::Webhook => payload::webhook(&event),
            };
            match delivery::deliver(&http, sink, &body, &retry).await {
                Ok(attempts) => tracing::info!(sink = %sink.name, event = %event.event,
                    policy = event.policy.as_deref(), target = event.target.as_deref(), attempts,
                    "notification delivered"),
                Err(e) => tracing::error!(sink = %e.sink, url = %e.url, event = %event.event,
                    policy = event.policy.as_deref(), target = event.target.as_deref(),
                    attempts = e.attempts, reason = %e.reason, "notification not delivered; gave up"),
            }
        }
    }
}
