//! Apply: the requests that read and write objects — live lookups, server-side apply
//! (dry-run or for real) with field manager `capstan`, and the per-object decision
//! "skip, or dry-run then apply" that keeps a no-change resync free of writes.
//!
//! Ordering (phases, waves) is the engine's job; this module handles one group of
//! objects at a time, concurrently, and counts every write it sends.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Client, Resource};
use serde_json::Value;
use tracing::{debug, info};

use super::plan::{Action, FieldChange, field_diff, unchanged_locally};
use super::{DesiredObject, FIELD_MANAGER, ObjectId, SyncError};

/// How many requests run at once.
pub const CONCURRENCY: usize = 32;
/// Above this many objects of one kind in one namespace, one LIST replaces GETs.
const LIST_THRESHOLD: usize = 4;

/// Counts write requests (applies, deletes, inventory updates), dry-runs apart.
#[derive(Debug, Default)]
pub struct WriteCounter(AtomicU64);

impl WriteCounter {
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The request builder for `resource` in `namespace` (cluster-wide when empty).
fn request_for(resource: &ApiResource, namespace: &str) -> kube::core::Request {
    let namespace = (!namespace.is_empty()).then_some(namespace);
    kube::core::Request::new(DynamicObject::url_path(resource, namespace))
}

pub fn api_for(client: &Client, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
    if namespace.is_empty() {
        Api::all_with(client.clone(), resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, resource)
    }
}

/// The live objects for `objects`, keyed by id; missing ones are absent.
pub async fn fetch_live(
    client: &Client,
    objects: &[&DesiredObject],
) -> Result<HashMap<ObjectId, Value>, SyncError> {
    let mut groups: BTreeMap<(String, String, String), Vec<&DesiredObject>> = BTreeMap::new();
    for o in objects {
        groups
            .entry((
                o.resource.api_version.clone(),
                o.resource.kind.clone(),
                o.id.namespace.clone(),
            ))
            .or_default()
            .push(o);
    }
    // Collected first: a stream over a lazy `map` closure is not `Send` for every
    // lifetime, which `tokio::spawn` needs.
    let lookups: Vec<_> = groups
        .into_values()
        .map(|group| async move {
            let first = group[0];
            let api = api_for(client, &first.resource, &first.id.namespace);
            let mut found = Vec::new();
            if group.len() > LIST_THRESHOLD {
                let wanted: std::collections::HashSet<&str> =
                    group.iter().map(|o| o.id.name.as_str()).collect();
                let list = match list_values(client, &first.resource, &first.id.namespace).await {
                    Ok(items) => items,
                    Err(e) if is_not_found(&e) => Vec::new(),
                    Err(e) => {
                        return Err(SyncError::kube(
                            format!("list {}", first.resource.plural),
                            e,
                        ));
                    }
                };
                for item in list {
                    let Some(name) = item["metadata"]["name"].as_str() else {
                        continue;
                    };
                    if wanted.contains(name) {
                        let id = ObjectId {
                            name: name.to_string(),
                            ..first.id.clone()
                        };
                        found.push((id, item));
                    }
                }
            } else {
                for o in &group {
                    match api.get_opt(&o.id.name).await {
                        Ok(Some(item)) => found.push((o.id.clone(), to_value(item, &o.resource))),
                        Ok(None) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(SyncError::kube(format!("get {}", o.id), e)),
                    }
                }
            }
            Ok(found)
        })
        .collect();
    let results: Vec<Vec<(ObjectId, Value)>> = stream::iter(lookups)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(results.into_iter().flatten().collect())
}

/// Every object of `resource` in `namespace`, as JSON with apiVersion and kind filled
/// in. Read as plain JSON values: going through `DynamicObject` would parse and then
/// serialize every object again (10,000 objects on a resync).
async fn list_values(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
) -> Result<Vec<Value>, kube::Error> {
    let request = request_for(resource, namespace)
        .list(&ListParams::default())
        .map_err(kube::Error::BuildRequest)?;
    let mut list: Value = client.request(request).await?;
    let items = match list.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    Ok(items
        .into_iter()
        .map(|item| with_type(item, resource))
        .collect())
}

/// `object` with apiVersion and kind set to `resource`'s (list items omit them).
fn with_type(mut object: Value, resource: &ApiResource) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    object
}

/// A dynamic object as JSON, with apiVersion and kind filled in (lists omit them).
pub fn to_value(object: DynamicObject, resource: &ApiResource) -> Value {
    with_type(
        serde_json::to_value(object).unwrap_or(Value::Null),
        resource,
    )
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Server-side apply of one object; `dry_run` sends `dryRun=All`.
pub async fn server_side_apply(
    client: &Client,
    object: &DesiredObject,
    force: bool,
    dry_run: bool,
) -> Result<Value, kube::Error> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    if force {
        params = params.force();
    }
    if dry_run {
        params = params.dry_run();
    }
    // The answer is read as plain JSON: one parse instead of a parse into
    // `DynamicObject` and a serialization back (once per object on a first sync).
    let mut request = request_for(&object.resource, &object.id.namespace)
        .patch(&object.id.name, &params, &Patch::Apply(&object.object))
        .map_err(kube::Error::BuildRequest)?;
    request.extensions_mut().insert("patch");
    let applied: Value = client.request(request).await?;
    Ok(with_type(applied, &object.resource))
}

/// What happened to one object in a pass.
#[derive(Debug, Clone)]
pub struct Applied {
    pub id: ObjectId,
    pub action: Action,
    /// The object as stored after the pass (live, or returned by the apply).
    pub live: Value,
}

/// Decides and does what one object needs. With `write == false` only dry-runs are sent
/// (for `plan`). Returns the action taken (or that would be taken).
pub async fn sync_object(
    client: &Client,
    object: &DesiredObject,
    live: Option<&Value>,
    force: bool,
    write: bool,
    writes: &WriteCounter,
) -> Result<Applied, SyncError> {
    let rejected = |e: kube::Error| SyncError::Rejected {
        origin: object.source.to_string(),
        object: object.id.to_string(),
        message: match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        },
    };
    let Some(live) = live else {
        if !write {
            // A dry-run create validates the object; a namespace that this plan creates
            // does not exist yet, so NotFound is expected then.
            return match server_side_apply(client, object, force, true).await {
                Ok(v) => Ok(Applied {
                    id: object.id.clone(),
                    action: Action::Create,
                    live: v,
                }),
                Err(e) if is_not_found(&e) => Ok(Applied {
                    id: object.id.clone(),
                    action: Action::Create,
                    live: Value::Null,
                }),
                Err(e) => Err(rejected(e)),
            };
        }
        let applied = server_side_apply(client, object, force, false)
            .await
            .map_err(rejected)?;
        writes.add();
        info!(object = %object.id, "created");
        return Ok(Applied {
            id: object.id.clone(),
            action: Action::Create,
            live: applied,
        });
    };
    if unchanged_locally(&object.object, live) {
        return Ok(Applied {
            id: object.id.clone(),
            action: Action::Unchanged,
            live: live.clone(),
        });
    }
    let dry = server_side_apply(client, object, force, true)
        .await
        .map_err(rejected)?;
    let changes: Vec<FieldChange> = field_diff(live, &dry);
    if changes.is_empty() {
        debug!(object = %object.id, "dry-run shows no change");
        return Ok(Applied {
            id: object.id.clone(),
            action: Action::Unchanged,
            live: live.clone(),
        });
    }
    if !write {
        return Ok(Applied {
            id: object.id.clone(),
            action: Action::Update { changes },
            live: dry,
        });
    }
    let applied = server_side_apply(client, object, force, false)
        .await
        .map_err(rejected)?;
    writes.add();
    info!(object = %object.id, fields = changes.len(), "updated");
    Ok(Applied {
        id: object.id.clone(),
        action: Action::Update { changes },
        live: applied,
    })
}

/// Syncs a group of objects concurrently. Every started request is waited for, so
/// that what was applied is known even when another object failed; the first error
/// is returned beside the successes.
pub async fn sync_group(
    client: &Client,
    objects: &[&DesiredObject],
    live: &HashMap<ObjectId, Value>,
    force_for: &(dyn Fn(&DesiredObject) -> bool + Sync),
    write: bool,
    writes: &WriteCounter,
) -> (Vec<Applied>, Option<SyncError>) {
    let mut done = Vec::with_capacity(objects.len());
    let futures: Vec<_> = objects
        .iter()
        .map(|o| sync_object(client, o, live.get(&o.id), force_for(o), write, writes))
        .collect();
    let mut results = stream::iter(futures).buffer_unordered(CONCURRENCY);
    let mut error = None;
    while let Some(r) = results.next().await {
        match r {
            Ok(a) => done.push(a),
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    (done, error)
}
