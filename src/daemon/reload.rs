//! Live reload: the configuration file and the policies folder are watched
//! (notify), bursts of changes are debounced, and the result is loaded again.
//!
//! The folders are watched rather than the files, because editors and
//! Kubernetes ConfigMap mounts replace a file (write elsewhere, rename over)
//! instead of writing it in place, which a watch on the file itself loses.
//! A valid change is handed to [`super::tasks::TaskSet::apply`]; an invalid
//! one is logged (file:line:column: field: message) and the running
//! configuration stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last change before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the configuration file and the policies folder; keep it alive.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
    pub policies_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path} for changes: {source}")]
pub struct WatchError {
    pub path: PathBuf,
    #[source]
    pub source: notify::Error,
}

impl ConfigWatch {
    pub fn start(config_file: &Path, policies_dir: &Path) -> Result<ConfigWatch, WatchError> {
        let (tx, changes) = mpsc::unbounded_channel();
        // Events name absolute paths.
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let config_dir = canonical(crate::config::folder_of(config_file));
        let policies_dir = &canonical(policies_dir);
        let config_name = config_file.file_name().map(|n| n.to_os_string());
        let policies = policies_dir.to_path_buf();
        let watched_dir = config_dir.clone();
        let relevant = move |path: &Path| {
            let name = path.file_name();
            let in_policies = path.parent() == Some(policies.as_path())
                && path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            // ConfigMap mounts swap a `..data` symlink.
            let in_config_dir = path.parent() == Some(watched_dir.as_path())
                && (name == config_name.as_deref()
                    || name.is_some_and(|n| n.to_string_lossy().starts_with("..")));
            in_policies || in_config_dir || path == policies.as_path()
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e) if e.kind.is_access() => {}
                Ok(e) => {
                    if e.paths.iter().any(|p| relevant(p)) {
                        let _ = tx.send(());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "file watch error"),
            })
            .map_err(|source| WatchError {
                path: config_file.to_path_buf(),
                source,
            })?;
        let mut watch = |path: &Path| {
            watcher
                .watch(path, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError {
                    path: path.to_path_buf(),
                    source,
                })
        };
        watch(&config_dir)?;
        if policies_dir.is_dir() && *policies_dir != config_dir {
            watch(policies_dir)?;
        }
        Ok(ConfigWatch {
            _watcher: watcher,
            changes,
            policies_dir: policies_dir.to_path_buf(),
        })
    }

    /// Resolves after a burst of changes has gone quiet.
    pub async fn changed(&mut self) {
        if self.changes.recv().await.is_none() {
            // The watcher is gone: never resolve again.
            std::future::pending::<()>().await;
        }
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, self.changes.recv()).await {}
    }
}
