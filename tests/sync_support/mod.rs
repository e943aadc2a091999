//! Helpers for the sync tests: a folder of manifests and the options of a target
//! bound to one test namespace.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use capstan::sync::SyncOptions;
use capstan::sync::inventory;
use kube::Client;
use tempfile::TempDir;

/// Writes `files` (relative path, content; `{ns}` replaced by `ns`) into a new folder.
pub fn folder(ns: &str, files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, content) in files {
        write(dir.path(), name, &content.replace("{ns}", ns));
    }
    dir
}

pub fn write(dir: &Path, name: &str, content: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::write(path, content).expect("write manifest");
}

/// A target named after the namespace, pruning and self-healing, with a short timeout.
pub fn options(ns: &str, path: &Path, health_timeout: Duration) -> SyncOptions {
    SyncOptions {
        target: ns.to_string(),
        path: path.to_path_buf(),
        namespace: ns.to_string(),
        prune: true,
        self_heal: true,
        force: false,
        health_timeout,
        commit: None,
    }
}

/// The inventory as `Kind ns/name` strings.
pub async fn inventory_of(client: &Client, ns: &str) -> Vec<String> {
    inventory::load(client, ns, ns)
        .await
        .expect("inventory")
        .iter()
        .map(|id| id.to_string())
        .collect()
}
