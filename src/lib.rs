//! Capstan: a GitOps reconciler that closes the loop from a container registry
//! to a running Kubernetes cluster, with Git as the only source of truth.
//!
//! See DESIGN.md-style module table in the README; each module owns one concern.

pub mod config;
pub mod daemon;
pub mod duration;
pub mod forge;
pub mod git;
pub mod manifests;
pub mod notify;
pub mod policy;
pub mod registry;
pub mod sync;
pub mod update;
pub mod yaml_file;
