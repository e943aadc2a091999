//! Prune: delete the objects that left Git — only those in the target's previous
//! inventory, still labelled for this target, and not opted out with
//! `capstan.dev/prune: disabled`. Deletion uses background propagation, in the
//! reverse of the apply order (namespaced objects first, CRDs last).

use kube::Client;
use kube::api::DeleteParams;
use tracing::{info, warn};

use super::apply::{WriteCounter, api_for, is_not_found, to_value};
use super::inventory::Inventory;
use super::object::Phase;
use super::resolve::Catalog;
use super::{ObjectId, PRUNE_ANNOTATION, SyncError, TARGET_LABEL};

/// What prune did with each candidate.
#[derive(Debug, Default, Clone)]
pub struct PruneResult {
    pub deleted: Vec<ObjectId>,
    /// Left alone: opted out, relabelled for another target, or already gone.
    pub skipped: Vec<(ObjectId, String)>,
}

/// Objects of `previous` that are not in `desired`, in deletion order.
pub fn candidates(previous: &Inventory, desired: &Inventory, catalog: &Catalog) -> Vec<ObjectId> {
    let mut out: Vec<ObjectId> = previous.difference(desired).cloned().collect();
    out.sort_by_key(|id| {
        let namespaced = !id.namespace.is_empty()
            || catalog
                .find_kind(&id.group, &id.kind)
                .is_some_and(|(_, n)| *n);
        std::cmp::Reverse(Phase::of(&id.group, &id.kind, namespaced))
    });
    out
}

/// Deletes the candidates; stops at the first error.
pub async fn prune(
    client: &Client,
    target: &str,
    candidates: &[ObjectId],
    catalog: &Catalog,
    writes: &WriteCounter,
) -> Result<PruneResult, SyncError> {
    let mut result = PruneResult::default();
    for id in candidates {
        let Some((resource, _)) = catalog.find_kind(&id.group, &id.kind) else {
            result
                .skipped
                .push((id.clone(), "its kind is no longer served".into()));
            continue;
        };
        let api = api_for(client, resource, &id.namespace);
        let live = match api.get_opt(&id.name).await {
            Ok(Some(o)) => to_value(o, resource),
            Ok(None) => {
                result.skipped.push((id.clone(), "already gone".into()));
                continue;
            }
            Err(e) if is_not_found(&e) => {
                result.skipped.push((id.clone(), "already gone".into()));
                continue;
            }
            Err(e) => {
                return Err(SyncError::Prune {
                    object: id.to_string(),
                    message: e.to_string(),
                });
            }
        };
        let meta = &live["metadata"];
        if meta["annotations"][PRUNE_ANNOTATION] == "disabled" {
            info!(object = %id, "prune disabled by annotation; kept");
            result
                .skipped
                .push((id.clone(), format!("{PRUNE_ANNOTATION}: disabled")));
            continue;
        }
        if meta["labels"][TARGET_LABEL] != target {
            warn!(object = %id, "not labelled for this target any more; kept");
            result.skipped.push((
                id.clone(),
                format!("label {TARGET_LABEL} is not {target:?}"),
            ));
            continue;
        }
        match api.delete(&id.name, &DeleteParams::background()).await {
            Ok(_) => {
                writes.add();
                info!(object = %id, "pruned");
                result.deleted.push(id.clone());
            }
            Err(e) if is_not_found(&e) => result.skipped.push((id.clone(), "already gone".into())),
            Err(e) => {
                return Err(SyncError::Prune {
                    object: id.to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(result)
}
