//! Drift: notice when someone else changes an object a target applied, and correct it.
//!
//! A kube-runtime watcher per applied kind, filtered by the target label, reports
//! every change after its initial listing. With `selfHeal`, each burst of changes
//! (debounced) triggers a sync pass; the pass dry-runs before it writes, so changes
//! that do not touch what Git declares (status updates, fields owned by other
//! managers) cause no write at all.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use tracing::{info, warn};

use super::engine::{SyncOptions, SyncReport, desired_objects, sync_target};
use super::{ObjectId, SyncError, TARGET_LABEL};

/// How long to wait for more changes before acting on a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Changes (applies and deletions, not the initial listing) of objects of the given
/// kinds carrying `capstan.dev/target=<target>`.
pub fn watch_changes(
    client: &Client,
    target: &str,
    resources: &[ApiResource],
) -> impl Stream<Item = ObjectId> + Send + 'static {
    let selector = format!("{TARGET_LABEL}={target}");
    let streams = resources.iter().map(|ar| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        let group = ar.group.clone();
        let kind = ar.kind.clone();
        watcher::watcher(api, watcher::Config::default().labels(&selector))
            .filter_map(move |event| {
                let id = match event {
                    Ok(Event::Apply(o) | Event::Delete(o)) => Some(ObjectId {
                        group: group.clone(),
                        kind: kind.clone(),
                        namespace: o.metadata.namespace.clone().unwrap_or_default(),
                        name: o.metadata.name.clone().unwrap_or_default(),
                    }),
                    Ok(_) => None,
                    Err(e) => {
                        warn!(kind = %kind, error = %e, "watch error; the watcher retries");
                        None
                    }
                };
                futures::future::ready(id)
            })
            .boxed()
    });
    stream::select_all(streams)
}

/// The distinct kinds among the target's desired objects.
pub fn kinds_of(objects: &[super::DesiredObject]) -> Vec<ApiResource> {
    let mut seen = BTreeSet::new();
    objects
        .iter()
        .filter(|o| seen.insert((o.resource.api_version.clone(), o.resource.kind.clone())))
        .map(|o| o.resource.clone())
        .collect()
}

/// Keeps a target healed: watches its objects and runs a pass after each burst of
/// changes, until `stop` resolves. Each pass's result is handed to `on_pass`.
pub async fn self_heal(
    client: Client,
    opts: SyncOptions,
    stop: impl std::future::Future<Output = ()>,
    mut on_pass: impl FnMut(Result<SyncReport, SyncError>),
) -> Result<(), SyncError> {
    let (desired, _) = desired_objects(&client, &opts).await?;
    let mut changes = Box::pin(watch_changes(&client, &opts.target, &kinds_of(&desired)));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            Some(first) = changes.next() => {
                // Collect the rest of the burst.
                let mut burst = vec![first];
                while let Ok(Some(id)) = tokio::time::timeout(DEBOUNCE, changes.next()).await {
                    burst.push(id);
                }
                info!(target = %opts.target, changes = burst.len(), first = %burst[0], "drift: running a pass");
                on_pass(sync_target(&client, &opts).await);
            }
        }
    }
}
