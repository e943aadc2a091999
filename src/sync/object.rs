//! Identities and the resolved form of desired objects, shared by every step.

use std::fmt;

use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::render::Source;

/// What makes an object unique in a cluster: group, kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectId {
    /// `Deployment.apps podinfo/web`, `Namespace podinfo`: kind, group, namespace/name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if self.namespace.is_empty() {
            write!(f, " {}", self.name)
        } else {
            write!(f, " {}/{}", self.namespace, self.name)
        }
    }
}

/// The order of apply phases: CRDs, then Namespaces, then other cluster-scoped
/// objects, then namespaced ones. Prune runs them in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Crd,
    Namespace,
    ClusterScoped,
    Namespaced,
}

impl Phase {
    pub fn of(group: &str, kind: &str, namespaced: bool) -> Phase {
        match (group, kind) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Phase::Crd,
            ("", "Namespace") => Phase::Namespace,
            _ if namespaced => Phase::Namespaced,
            _ => Phase::ClusterScoped,
        }
    }
}

/// A desired object ready to apply: resolved kind, final namespace, target label.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub id: ObjectId,
    pub resource: ApiResource,
    pub namespaced: bool,
    pub source: Source,
    /// The object as it will be applied (apiVersion, kind, metadata, spec, ...).
    pub object: Value,
    /// From `capstan.dev/wave` (or Argo CD's sync-wave); 0 by default.
    pub wave: i64,
}

impl DesiredObject {
    pub fn phase(&self) -> Phase {
        Phase::of(&self.id.group, &self.id.kind, self.namespaced)
    }
}

/// The group of an `apiVersion`: `apps/v1` → `apps`, `v1` → ``.
pub fn group_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default()
}
