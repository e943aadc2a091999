//! Inventory: the list of objects a target applied, kept in the cluster so the daemon
//! stays stateless (like the inventory of Flux's kustomize-controller).
//!
//! One ConfigMap per target, `capstan-inventory-<target>` in the target's namespace,
//! holding a sorted JSON list of object ids under `data.objects`. It is what prune
//! reads: only objects listed here are ever deleted. It is written only when its
//! content changes, so a no-change resync sends no write.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::apply::{WriteCounter, is_not_found};
use super::{FIELD_MANAGER, ObjectId, SyncError};

/// Label on inventory ConfigMaps: the target's name.
pub const INVENTORY_LABEL: &str = "capstan.dev/inventory";

pub type Inventory = BTreeSet<ObjectId>;

pub fn configmap_name(target: &str) -> String {
    format!("capstan-inventory-{target}")
}

/// Reads a target's inventory; none yet (or no namespace yet) is an empty inventory.
pub async fn load(client: &Client, namespace: &str, target: &str) -> Result<Inventory, SyncError> {
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
        return Ok(Inventory::new());
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("objects"))
        .map(String::as_str)
        .unwrap_or("[]");
    serde_json::from_str(text).map_err(|e| SyncError::Inventory {
        name: format!("{namespace}/{name}"),
        message: format!("`data.objects` is not a list of object ids ({e}); fix or delete it"),
    })
}

/// Writes the inventory when it differs from `previous`.
pub async fn store(
    client: &Client,
    namespace: &str,
    target: &str,
    previous: &Inventory,
    next: &Inventory,
    writes: &WriteCounter,
) -> Result<(), SyncError> {
    if previous == next {
        return Ok(());
    }
    let name = configmap_name(target);
    let objects = serde_json::to_string(next).map_err(|e| SyncError::Inventory {
        name: name.clone(),
        message: e.to_string(),
    })?;
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": namespace, "labels": { INVENTORY_LABEL: target } },
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
    tracing::info!(target = target, objects = next.len(), "inventory updated");
    Ok(())
}
