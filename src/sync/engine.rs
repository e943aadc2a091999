//! One sync pass for one target, top to bottom: render, resolve, apply wave by wave
//! and phase by phase, record the inventory, prune, wait for health. Also the
//! read-only twin, `plan_target`, which sends only dry-runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::Client;
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};

use super::apply::{self, Applied, CONCURRENCY, WriteCounter};
use super::health::{Health, health};
use super::inventory::{self, Inventory};
use super::object::Phase;
use super::plan::{Action, FieldChange, PlanEntry, stamp_digest};
use super::prune::{self, PruneResult};
use super::render;
use super::resolve::{self, Catalog};
use super::{DesiredObject, ObjectId, SyncError};
use crate::config::Target;

/// What a pass needs to know about its target.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub target: String,
    /// The folder to render (already inside the checked-out repository).
    pub path: PathBuf,
    pub namespace: String,
    pub prune: bool,
    pub self_heal: bool,
    pub force: bool,
    pub health_timeout: Duration,
    /// The repository commit being synced (recorded in the inventory as the last
    /// applied commit); `None` when the folder is not a Git checkout.
    pub commit: Option<String>,
}

impl SyncOptions {
    /// Options for a configured target whose repository is checked out at `repo_root`.
    pub fn from_target(target: &Target, repo_root: &Path) -> SyncOptions {
        SyncOptions {
            target: target.name.value.clone(),
            path: repo_root.join(&target.path.value),
            namespace: target.namespace.clone(),
            prune: target.prune,
            self_heal: target.self_heal,
            force: target.force,
            health_timeout: target.health_timeout.0,
            commit: head_commit(repo_root),
        }
    }
}

/// The commit checked out at `repo_root`, when it is a Git work tree.
pub fn head_commit(repo_root: &Path) -> Option<String> {
    let repo = git2::Repository::open(repo_root).ok()?;
    let commit = repo.head().ok()?.peel_to_commit().ok()?;
    Some(commit.id().to_string())
}

/// The result of a successful pass.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub created: Vec<ObjectId>,
    pub updated: Vec<(ObjectId, Vec<FieldChange>)>,
    pub unchanged: usize,
    pub pruned: PruneResult,
    /// Write requests sent (applies, deletes, inventory); dry-runs are not writes.
    pub writes: u64,
    pub elapsed: Duration,
}

impl SyncReport {
    /// One line, for logs and commit statuses.
    pub fn summary(&self) -> String {
        format!(
            "{} created, {} updated, {} unchanged, {} pruned; healthy",
            self.created.len(),
            self.updated.len(),
            self.unchanged,
            self.pruned.deleted.len()
        )
    }
}

/// Renders and resolves the target's folder: the desired objects, stamped with
/// their digest, and the catalog of kinds used.
pub async fn desired_objects(
    client: &Client,
    opts: &SyncOptions,
) -> Result<(Vec<DesiredObject>, Catalog), SyncError> {
    // Discovery is a network round trip and rendering is local work: both at once.
    // A render error still wins over a discovery error: it is the user's to fix.
    let (manifests, catalog) = tokio::join!(render::render(&opts.path), Catalog::discover(client));
    let manifests = manifests?;
    let mut catalog = catalog?;
    catalog.add_crds(&manifests);
    let mut desired = resolve::resolve(manifests, &catalog, &opts.target, &opts.namespace)?;
    for o in &mut desired {
        stamp_digest(&mut o.object);
    }
    Ok((desired, catalog))
}

/// One full pass. On error, what was applied stays applied and is added to the
/// inventory, so nothing applied is ever forgotten.
pub async fn sync_target(client: &Client, opts: &SyncOptions) -> Result<SyncReport, SyncError> {
    let span = info_span!("sync", target = %opts.target);
    async {
        let start = Instant::now();
        let writes = WriteCounter::default();
        let (desired, previous_record) = tokio::join!(
            desired_objects(client, opts),
            inventory::load_record(client, &opts.namespace, &opts.target)
        );
        let (desired, catalog) = desired?;
        let previous_record = previous_record?;
        let previous = previous_record.objects.clone();
        debug!(
            objects = desired.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "rendered, resolved, inventory read"
        );
        let deadline = Instant::now() + opts.health_timeout;
        let mut report = SyncReport::default();
        let mut applied_ids = Inventory::new();
        let applied = apply_waves(
            client,
            opts,
            &desired,
            &previous,
            deadline,
            &writes,
            &mut report,
            &mut applied_ids,
        )
        .await;
        // The inventory is stored once, whatever happened: what was applied stays
        // tracked (also after a failure), and what could not be pruned stays too.
        let (next, outcome) = match applied {
            Err(e) => {
                let mut next = previous.clone();
                next.extend(applied_ids);
                (next, Err(e))
            }
            Ok(samples) => {
                let desired_ids: Inventory = desired.iter().map(|o| o.id.clone()).collect();
                let mut next = desired_ids.clone();
                let mut outcome = Ok(samples);
                if opts.prune {
                    let candidates = prune::candidates(&previous, &desired_ids, &catalog);
                    match prune::prune(client, &opts.target, &candidates, &catalog, &writes).await {
                        Ok(result) => report.pruned = result,
                        Err(e) => {
                            next.extend(candidates);
                            outcome = Err(e);
                        }
                    }
                }
                (next, outcome)
            }
        };
        // Everything applied (and pruned): this commit is the last applied one. A
        // resync of the same commit keeps the record as it is (and writes nothing);
        // a failed pass keeps the previous one.
        let last_applied = match (&opts.commit, &outcome) {
            (Some(commit), Ok(_)) => Some(
                previous_record
                    .last_applied
                    .clone()
                    .filter(|l| &l.commit == commit)
                    .unwrap_or_else(|| inventory::LastApplied {
                        commit: commit.clone(),
                        time: jiff::Timestamp::now()
                            .strftime("%Y-%m-%dT%H:%M:%SZ")
                            .to_string(),
                    }),
            ),
            _ => previous_record.last_applied.clone(),
        };
        let next_record = inventory::Record {
            objects: next,
            last_applied,
        };
        inventory::store(
            client,
            &opts.namespace,
            &opts.target,
            &previous_record,
            &next_record,
            &writes,
        )
        .await?;
        let samples = outcome?;
        debug!(
            elapsed_ms = start.elapsed().as_millis() as u64,
            "applied, pruned, inventory stored"
        );

        let by_id: HashMap<_, _> = desired.iter().map(|o| (o.id.clone(), o)).collect();
        wait_healthy(client, &by_id, samples, deadline).await?;
        report.writes = writes.get();
        report.elapsed = start.elapsed();
        info!(
            writes = report.writes,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "{}",
            report.summary()
        );
        Ok(report)
    }
    .instrument(span)
    .await
}

/// Applies wave after wave, phase after phase; waits for CRDs to be Established and
/// for every wave but the last to be healthy. Returns the last wave's objects as
/// health samples. `applied` collects every object applied, also on error.
#[allow(clippy::too_many_arguments)]
async fn apply_waves(
    client: &Client,
    opts: &SyncOptions,
    desired: &[DesiredObject],
    previous: &Inventory,
    deadline: Instant,
    writes: &WriteCounter,
    report: &mut SyncReport,
    applied: &mut Inventory,
) -> Result<Vec<(ObjectId, Value, bool)>, SyncError> {
    let force_for = |o: &DesiredObject| opts.force || (opts.self_heal && previous.contains(&o.id));
    let by_id: HashMap<_, _> = desired.iter().map(|o| (o.id.clone(), o)).collect();
    let waves = by_wave_and_phase(desired);
    let wave_count = waves.len();
    let mut samples = Vec::new();
    for (i, (wave, phases)) in waves.into_iter().enumerate() {
        let mut wave_samples = Vec::new();
        for (phase, objects) in phases {
            let live = apply::fetch_live(client, &objects).await?;
            let (done, error) =
                apply::sync_group(client, &objects, &live, &force_for, true, writes).await;
            applied.extend(done.iter().map(|a| a.id.clone()));
            record(report, &done);
            if let Some(e) = error {
                return Err(e);
            }
            let phase_samples: Vec<_> = done.into_iter().map(|a| (a.id, a.live, false)).collect();
            if phase == Phase::Crd {
                wait_healthy(client, &by_id, phase_samples.clone(), deadline).await?;
            }
            wave_samples.extend(phase_samples);
        }
        if i + 1 < wave_count {
            info!(wave, "waiting for the wave to be healthy");
            wait_healthy(client, &by_id, wave_samples, deadline).await?;
        } else {
            samples = wave_samples;
        }
    }
    Ok(samples)
}

fn record(report: &mut SyncReport, done: &[Applied]) {
    for a in done {
        match &a.action {
            Action::Create => report.created.push(a.id.clone()),
            Action::Update { changes } => report.updated.push((a.id.clone(), changes.clone())),
            Action::Unchanged => report.unchanged += 1,
            Action::Prune => {}
        }
    }
}

type Waves<'a> = BTreeMap<i64, BTreeMap<Phase, Vec<&'a DesiredObject>>>;

/// Groups objects by wave, then by phase; both in apply order.
pub fn by_wave_and_phase(desired: &[DesiredObject]) -> Waves<'_> {
    let mut waves: Waves<'_> = BTreeMap::new();
    for o in desired {
        waves
            .entry(o.wave)
            .or_default()
            .entry(o.phase())
            .or_default()
            .push(o);
    }
    waves
}

/// Polls the objects not yet Current until all are, or the deadline passes (or every
/// remaining one has Failed). The error names each unhealthy object and why.
async fn wait_healthy(
    client: &Client,
    desired: &HashMap<ObjectId, &DesiredObject>,
    samples: Vec<(ObjectId, Value, bool)>,
    deadline: Instant,
) -> Result<(), SyncError> {
    let mut pending: Vec<(ObjectId, Health)> = samples
        .into_iter()
        .map(|(id, live, _)| {
            let h = if live.is_null() {
                Health::InProgress("not read yet".into())
            } else {
                health(&live)
            };
            (id, h)
        })
        .filter(|(_, h)| !h.is_current())
        .collect();
    let mut pause = Duration::from_millis(250);
    loop {
        if pending.is_empty() {
            return Ok(());
        }
        let all_failed = pending.iter().all(|(_, h)| matches!(h, Health::Failed(_)));
        if Instant::now() >= deadline || all_failed {
            let list: Vec<String> = pending.iter().map(|(id, h)| format!("{id}: {h}")).collect();
            return Err(SyncError::Unhealthy(format!(
                "not healthy: {}",
                list.join("; ")
            )));
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        let reads: Vec<_> = pending
            .iter()
            .map(|(id, h)| {
                let obj = desired.get(id).copied();
                let h = h.clone();
                async move {
                    let Some(obj) = obj else {
                        return (id.clone(), h);
                    };
                    let api = apply::api_for(client, &obj.resource, &id.namespace);
                    match api.get_opt(&id.name).await {
                        Ok(Some(live)) => {
                            (id.clone(), health(&apply::to_value(live, &obj.resource)))
                        }
                        Ok(None) => (id.clone(), Health::InProgress("not found".into())),
                        Err(e) => {
                            warn!(object = %id, error = %e, "cannot read for health");
                            (id.clone(), h)
                        }
                    }
                }
            })
            .collect();
        pending = stream::iter(reads)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .filter(|(_, h)| !h.is_current())
            .collect();
    }
}

/// What a pass would do, without writing: dry-runs only.
pub async fn plan_target(client: &Client, opts: &SyncOptions) -> Result<Vec<PlanEntry>, SyncError> {
    let (desired, catalog) = desired_objects(client, opts).await?;
    let previous = inventory::load(client, &opts.namespace, &opts.target).await?;
    let refs: Vec<&DesiredObject> = desired.iter().collect();
    let live = apply::fetch_live(client, &refs).await?;
    let writes = WriteCounter::default();
    let force_for = |o: &DesiredObject| opts.force || (opts.self_heal && previous.contains(&o.id));
    let mut entries = Vec::new();
    for (_, phases) in by_wave_and_phase(&desired) {
        for (_, objects) in phases {
            let (done, error) =
                apply::sync_group(client, &objects, &live, &force_for, false, &writes).await;
            if let Some(e) = error {
                return Err(e);
            }
            let source: HashMap<&ObjectId, String> = objects
                .iter()
                .map(|o| (&o.id, o.source.to_string()))
                .collect();
            let mut done = done;
            done.sort_by(|a, b| a.id.cmp(&b.id));
            for a in done {
                entries.push(PlanEntry {
                    object: a.id.to_string(),
                    source: source.get(&a.id).cloned(),
                    action: a.action,
                    id: Some(a.id),
                });
            }
        }
    }
    if opts.prune {
        let desired_ids: Inventory = desired.iter().map(|o| o.id.clone()).collect();
        for id in prune::candidates(&previous, &desired_ids, &catalog) {
            entries.push(PlanEntry {
                object: id.to_string(),
                source: None,
                action: Action::Prune,
                id: Some(id),
            });
        }
    }
    Ok(entries)
}
