//! The sync loop's library: make a cluster equal to a folder of the manifests repo.
//!
//! A pass reads one commit of the repository, fetched into the sync loop's own clone
//! (`source`). One pass, top to bottom (`engine::sync_target`): **render** the folder into objects
//! (`render`), **resolve** their kinds and default namespaces through discovery
//! (`resolve`), **plan** against the live state with server-side apply dry-runs
//! (`plan`), **apply** in order — CRDs, Namespaces, other cluster-scoped, namespaced,
//! then by wave — with field manager `capstan` (`apply`), record what was applied in
//! the target's **inventory** and **prune** what left Git (`inventory`, `prune`), and
//! wait for **health** (`health`, kstatus rules). `drift` watches the applied objects
//! and triggers a pass when someone else changes them. This module is the only place
//! in Capstan that writes to a cluster.

pub mod apply;
pub mod client;
pub mod drift;
pub mod engine;
pub mod explain;
pub mod health;
pub mod inventory;
pub mod object;
pub mod plan;
pub mod prune;
pub mod render;
pub mod resolve;
pub mod source;

use std::path::PathBuf;

pub use engine::{SyncOptions, SyncReport, sync_target};
pub use object::{DesiredObject, ObjectId};
pub use source::{Revision, Source};

/// The field manager of every write Capstan makes.
pub const FIELD_MANAGER: &str = "capstan";
/// Label carried by every applied object: the name of the target that applied it.
pub const TARGET_LABEL: &str = "capstan.dev/target";
/// Annotation ordering groups of objects (lower first); Argo CD's is read too.
pub const WAVE_ANNOTATION: &str = "capstan.dev/wave";
pub const ARGO_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// `capstan.dev/prune: disabled` keeps an object when it leaves Git.
pub const PRUNE_ANNOTATION: &str = "capstan.dev/prune";

/// Everything that can go wrong in a sync pass; each variant names what to look at.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{}: {message}", file.display())]
    Render { file: PathBuf, message: String },
    /// A manifest that does not parse: file, line, column.
    #[error("{0}")]
    Source(#[from] crate::yaml_file::SourceError),
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{origin}: {object}: {message}")]
    Object {
        origin: String,
        object: String,
        message: String,
    },
    #[error("{object} is defined twice: {first} and {second}")]
    Duplicate {
        object: String,
        first: String,
        second: String,
    },
    #[error("{origin}: {object}: rejected by the API server: {message}")]
    Rejected {
        origin: String,
        object: String,
        message: String,
    },
    #[error("inventory {name}: {message}")]
    Inventory { name: String, message: String },
    #[error("prune {object}: {message}")]
    Prune { object: String, message: String },
    #[error("{0}")]
    Unhealthy(String),
    #[error("fetch the repository: {0}")]
    Fetch(#[from] crate::git::Error),
    #[error("kubernetes client: {0}")]
    Client(String),
    #[error("kubernetes: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
}

impl SyncError {
    /// True when the input (files, manifests) is at fault rather than the cluster.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SyncError::Render { .. }
                | SyncError::Source(_)
                | SyncError::Invalid { .. }
                | SyncError::Object { .. }
                | SyncError::Duplicate { .. }
        )
    }

    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        SyncError::Kube {
            context: context.into(),
            source,
        }
    }
}
