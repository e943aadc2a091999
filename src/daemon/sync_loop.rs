//! The sync loop of the daemon: one task per target.
//!
//! Each pass fetches the branch into the target's own clone (so targets never
//! reset each other's tree, nor the update loop's), runs one sync pass
//! ([`crate::sync::sync_target`]) on that commit and records the result in the
//! metrics. With `selfHeal`, the objects the target applied are watched
//! ([`crate::sync::drift`]); a burst of outside changes triggers the target's
//! task, so drift correction and scheduled passes never run at once.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube::Client;
use tokio::sync::{Notify, OnceCell};
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::metrics::{TargetLabel, TargetResult, TriggerLabel};
use super::schedule::{Context, Failure};
use crate::config::Target;
use crate::forge::SyncReporter;
use crate::sync::drift::{DEBOUNCE, kinds_of, watch_changes};
use crate::sync::engine::desired_objects;
use crate::sync::{Source, SyncOptions, client::client_for, sync_target};

/// One target's task state.
pub struct SyncState {
    pub target: Target,
    /// Commit statuses, deployments and notifications about each pass.
    pub reporter: SyncReporter,
    /// The repository, fetched into the target's own clone.
    pub source: Source,
    /// Wakes this target's task (webhooks, manual triggers, drift).
    pub trigger: Arc<Notify>,
    client: OnceCell<Client>,
    /// The drift watch and the commit it was set up for.
    drift: Mutex<Option<(String, AbortHandle)>>,
    pub on_git_contact: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncState")
            .field("target", &self.target.name.value)
            .finish()
    }
}

impl Drop for SyncState {
    fn drop(&mut self) {
        self.stop_drift_watch();
    }
}

impl SyncState {
    pub fn new(
        target: Target,
        source: Source,
        reporter: SyncReporter,
        trigger: Arc<Notify>,
        on_git_contact: Box<dyn Fn() + Send + Sync>,
    ) -> SyncState {
        SyncState {
            target,
            reporter,
            source,
            trigger,
            client: OnceCell::new(),
            drift: Mutex::new(None),
            on_git_contact,
        }
    }

    pub fn stop_drift_watch(&self) {
        if let Some((_, handle)) = lock(&self.drift).take() {
            handle.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// One pass: fetch, sync, record; (re)start the drift watch on a new commit.
pub async fn sync_step(state: Arc<SyncState>, ctx: Context) -> Result<(), Failure> {
    let name = state.target.name.value.clone();
    let revision = state
        .source
        .fetch_async()
        .await
        .map_err(|e| Failure::new("git", e))?;
    (state.on_git_contact)();
    let short = revision.short().to_string();
    let commit = revision.commit.clone().unwrap_or_default();
    let client = state
        .client
        .get_or_try_init(|| client_for(&state.target))
        .await
        .map_err(|e| Failure::new("kubernetes", e))?
        .clone();
    let opts = SyncOptions::from_target(&state.target, &revision.root);
    let span = tracing::info_span!("sync_pass", target = %name, commit = %short);
    let started = Instant::now();
    let announced = state.reporter.started(revision.commit.as_deref()).await;
    let result = sync_target(&client, &opts).instrument(span).await;
    state
        .reporter
        .finished(&announced, result.as_ref(), &revision.root)
        .await;
    let label = TargetLabel {
        target: name.clone(),
    };
    ctx.metrics
        .sync_duration
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(report) => {
            ctx.metrics
                .sync_runs
                .get_or_create(&TargetResult {
                    target: name.clone(),
                    result: "success",
                })
                .inc();
            let applied = report.created.len() + report.updated.len();
            ctx.metrics
                .objects_applied
                .get_or_create(&label)
                .inc_by(applied as u64);
            ctx.metrics
                .objects_pruned
                .get_or_create(&label)
                .inc_by(report.pruned.deleted.len() as u64);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            ctx.metrics.sync_last_success.get_or_create(&label).set(now);
            tracing::info!(target = %name, commit = %short, writes = report.writes, elapsed_ms = report.elapsed.as_millis() as u64, summary = %report.summary(), "synced");
            if state.target.self_heal {
                watch_drift(&state, &ctx, &client, &opts, &commit).await;
            }
            Ok(())
        }
        Err(e) => {
            ctx.metrics
                .sync_runs
                .get_or_create(&TargetResult {
                    target: name.clone(),
                    result: "failure",
                })
                .inc();
            Err(Failure::new(
                if e.is_bad_input() {
                    "manifests"
                } else {
                    "sync"
                },
                format!("target {name} at {short}: {e}"),
            ))
        }
    }
}

/// Watches the kinds the target applied at `commit` (unless already watching
/// them); every burst of outside changes triggers the target's task.
async fn watch_drift(
    state: &Arc<SyncState>,
    ctx: &Context,
    client: &Client,
    opts: &SyncOptions,
    commit: &str,
) {
    if lock(&state.drift)
        .as_ref()
        .is_some_and(|(c, _)| c == commit)
    {
        return;
    }
    let name = state.target.name.value.clone();
    let kinds = match desired_objects(client, opts).await {
        Ok((desired, _)) => kinds_of(&desired),
        Err(e) => {
            tracing::warn!(target = %name, error = %e, "cannot set up the drift watch");
            return;
        }
    };
    let mut changes = Box::pin(watch_changes(client, &name, &kinds));
    let trigger = state.trigger.clone();
    let metrics = ctx.metrics.clone();
    let task = tokio::spawn(async move {
        while let Some(first) = changes.next().await {
            let mut burst = 1usize;
            while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, changes.next()).await {
                burst += 1;
            }
            tracing::info!(target = %name, changes = burst, object = %first, "drift: triggering a pass");
            metrics
                .triggers
                .get_or_create(&TriggerLabel {
                    r#loop: "sync",
                    source: "drift",
                })
                .inc();
            trigger.notify_one();
        }
    });
    if let Some((_, old)) = lock(&state.drift).replace((commit.to_string(), task.abort_handle())) {
        old.abort();
    }
}
