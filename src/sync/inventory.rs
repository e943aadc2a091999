//! Inventory: the list of objects a target applied, kept in the cluster so the daemon
//! stays stateless (like the inventory of Flux's kustomize-controller).
//!
//! One ConfigMap per target, `capstan-inventory-<target>` in the target's namespace,
//! holding a sorted JSON list of object ids under `data.objects`. It is what prune
//! reads: only objects listed here are ever deleted. It is written only when its
//! content changes, so a no-change resync sends no write.
//!
//! Annotations record the last successful apply: `capstan.dev/last-applied-commit`
//! (the repository commit the objects came from, when the folder is a Git checkout)
//! and `capstan.dev/last-applied-time` (RFC 3339). `capstan explain` reads them; a
//! new commit therefore costs one inventory write even when no object changed.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::apply::{WriteCounter, is_not_found};
use super::{FIELD_MANAGER, ObjectId, SyncError};

/// Label on inventory ConfigMaps: the target's name.
pub const INVENTORY_LABEL: &str = "capstan.dev/inventory";

/// Annotation: the commit of the last successful apply.
pub const LAST_APPLIED_COMMIT: &str = "capstan.dev/last-applied-commit";
/// Annotation: when that apply finished (RFC 3339).
pub const LAST_APPLIED_TIME: &str = "capstan.dev/last-applied-time";

pub type Inventory = BTreeSet<ObjectId>;

/// The last successful apply of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastApplied {
    pub commit: String,
    /// RFC 3339, as written.
    pub time: String,
}

/// Everything the inventory ConfigMap holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub objects: Inventory,
    pub last_applied: Option<LastApplied>,
}

impl Record {
    /// The same record with other objects (the last apply is kept).
    pub fn with_objects(&self, objects: Inventory) -> Record {
        Record {
            objects,
            last_applied: self.last_applied.clone(),
        }
    }
}

pub fn configmap_name(target: &str) -> String {
    format!("capstan-inventory-{target}")
}

/// Reads a target's inventory; none yet (or no namespace yet) is an empty inventory.
pub async fn load(client: &Client, namespace: &str, target: &str) -> Result<Inventory, SyncError> {
    Ok(load_record(client, namespace, target).await?.objects)
}

/// Reads a target's inventory and its last apply.
pub async fn load_record(
    client: &Client,
    namespace: &str,
    target: &str,
) -> Result<Record, SyncError> {
    let name = configmap_name(target);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = match api.get_opt(&name).await {
        Ok(cm) => cm,
        Err(e) if is_not_found(&e) => None,
        Err(e) => {
            return Err(SyncError::kube(
                format!("read inventory {namespace}/{name}"),
                e,
            ));
        }
    };
    let Some(cm) = cm else {
        return Ok(Record::default());
    };
    let annotations = cm.metadata.annotations.as_ref();
    let last_applied = annotations.and_then(|a| {
        Some(LastApplied {
            commit: a.get(LAST_APPLIED_COMMIT)?.clone(),
            time: a.get(LAST_APPLIED_TIME).cloned().unwrap_or_default(),
        })
    });
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("objects"))
        .map(String::as_str)
        .unwrap_or("[]");
    let objects = serde_json::from_str(text).map_err(|e| SyncError::Inventory {
        name: format!("{namespace}/{name}"),
        message: format!("`data.objects` is not a list of object ids ({e}); fix or delete it"),
    })?;
    Ok(Record {
        objects,
        last_applied,
    })
}

/// Writes the inventory when it differs from `previous`. Server-side apply drops
/// what `next` omits, so `next` carries everything to keep (e.g. the last apply).
pub async fn store(
    client: &Client,
    namespace: &str,
    target: &str,
    previous: &Record,
    next: &Record,
    writes: &WriteCounter,
) -> Result<(), SyncError> {
    if previous == next {
        return Ok(());
    }
    let name = configmap_name(target);
    let objects = serde_json::to_string(&next.objects).map_err(|e| SyncError::Inventory {
        name: name.clone(),
        message: e.to_string(),
    })?;
    let mut metadata =
        json!({ "name": name, "namespace": namespace, "labels": { INVENTORY_LABEL: target } });
    if let Some(last) = &next.last_applied {
        let mut annotations = Map::new();
        annotations.insert(LAST_APPLIED_COMMIT.into(), Value::from(last.commit.clone()));
        annotations.insert(LAST_APPLIED_TIME.into(), Value::from(last.time.clone()));
        metadata["annotations"] = Value::Object(annotations);
    }
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": { "objects": objects },
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .map_err(|e| SyncError::kube(format!("write inventory {namespace}/{name}"), e))?;
    writes.add();
    tracing::info!(
        target = target,
        objects = next.objects.len(),
        commit = next.last_applied.as_ref().map(|l| l.commit.as_str()),
        "inventory updated"
    );
    Ok(())
}
