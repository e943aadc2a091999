//! What a sync pass tells the forge about the commit it applied: a commit status
//! (`pending` when the pass starts, then `success`, `failure` or `error`) and, where
//! the forge has them (GitHub), a Deployment for the commit with environment = the
//! target, and its statuses `in_progress` → `success`/`failure`/`error`. The same
//! moments go to the notification sinks (`sync-started`, `sync-succeeded`,
//! `sync-failed`).
//!
//! `capstan sync --once` and the daemon's sync loop both report through this, so a
//! commit gets the same statuses whichever ran the pass. Nothing here can fail a
//! sync: a forge that refuses is logged (with the commit and target) and the pass
//! goes on. Passes over a folder without Git (no commit) report nothing.

use std::path::Path;
use std::sync::Arc;

use super::{
    CommitState, CommitStatus, DeploymentState, DeploymentStatus, Forge, NewDeployment, one_line,
};
use crate::config::Target;
use crate::notify::{Event, EventKind, Notifier};
use crate::sync::{SyncError, SyncReport};

/// Told of every forge call a reporter makes: operation and whether it worked
/// (the daemon counts them in its metrics).
pub type CallObserver = Arc<dyn Fn(&'static str, bool) + Send + Sync>;

/// Reports the passes of one target.
#[derive(Clone)]
pub struct SyncReporter {
    forge: Option<Arc<dyn Forge>>,
    notifier: Notifier,
    observer: Option<CallObserver>,
    target: String,
    context: String,
}

impl std::fmt::Debug for SyncReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncReporter")
            .field("forge", &self.forge)
            .field("target", &self.target)
            .field("context", &self.context)
            .finish()
    }
}

/// A pass that has been announced; hand it back to [`SyncReporter::finished`].
#[derive(Debug, Clone)]
pub struct Announced {
    commit: Option<String>,
    deployment: Option<u64>,
}

impl SyncReporter {
    pub fn new(forge: Option<Arc<dyn Forge>>, target: &Target) -> SyncReporter {
        SyncReporter {
            forge,
            notifier: Notifier::disabled(),
            observer: None,
            target: target.name.value.clone(),
            context: target.status_context(),
        }
    }

    /// Also tells these notification sinks.
    pub fn with_notifier(mut self, notifier: Notifier) -> SyncReporter {
        self.notifier = notifier;
        self
    }

    /// Also tells `observer` of every forge call.
    pub fn with_observer(mut self, observer: CallObserver) -> SyncReporter {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, operation: &'static str, ok: bool) {
        if let Some(observer) = &self.observer {
            observer(operation, ok);
        }
    }

    /// `pending` on the commit; a Deployment `in_progress` where supported.
    pub async fn started(&self, commit: Option<&str>) -> Announced {
        let announced = Announced {
            commit: commit.map(str::to_string),
            deployment: None,
        };
        let short = commit.map_or("the working tree", |c| c.get(..12).unwrap_or(c));
        self.notifier.notify(self.event(
            EventKind::SyncStarted,
            format!("sync of {} started at {short}", self.target),
            commit,
        ));
        let (Some(forge), Some(sha)) = (&self.forge, commit) else {
            return announced;
        };
        self.status(
            forge.as_ref(),
            sha,
            CommitState::Pending,
            &format!("syncing {short}"),
        )
        .await;
        let deployment = if forge.supports_deployments() {
            self.deployment(forge.as_ref(), sha).await
        } else {
            None
        };
        Announced {
            deployment,
            ..announced
        }
    }

    /// The result on the same commit. `root` is cut from file names in error
    /// messages so they read as repository paths (and fit 140 characters).
    pub async fn finished(
        &self,
        announced: &Announced,
        result: Result<&SyncReport, &SyncError>,
        root: &Path,
    ) {
        let commit = announced.commit.as_deref();
        self.notifier.notify(match result {
            Ok(report) => self.event(
                EventKind::SyncSucceeded,
                format!("{} synced: {}", self.target, report.summary()),
                commit,
            ),
            Err(e) => self.event(
                EventKind::SyncFailed,
                format!(
                    "{} failed: {}",
                    self.target,
                    relative_to(root, &e.to_string())
                ),
                commit,
            ),
        });
        let (Some(forge), Some(sha)) = (&self.forge, commit) else {
            return;
        };
        let (state, deployment_state, text) = match result {
            Ok(report) => (
                CommitState::Success,
                DeploymentState::Success,
                report.summary(),
            ),
            Err(e) => {
                let text = relative_to(root, &e.to_string());
                if e.is_bad_input() {
                    (CommitState::Error, DeploymentState::Error, text)
                } else {
                    (CommitState::Failure, DeploymentState::Failure, text)
                }
            }
        };
        self.status(forge.as_ref(), sha, state, &text).await;
        if let Some(id) = announced.deployment {
            self.deployment_status(forge.as_ref(), sha, id, deployment_state, &text)
                .await;
        }
    }

    fn event(&self, kind: EventKind, message: String, commit: Option<&str>) -> Event {
        let event = Event::new(kind, message).target(&self.target);
        match commit {
            Some(c) => event.commit(c),
            None => event,
        }
    }

    async fn status(&self, forge: &dyn Forge, sha: &str, state: CommitState, text: &str) {
        let status = CommitStatus::new(sha, state, &self.context, text);
        let result = forge.set_commit_status(&status).await;
        self.observe("commit_status", result.is_ok());
        if let Err(e) = result {
            tracing::warn!(target = %self.target, commit = sha, state = state.as_str(), error = %e, "cannot send the commit status");
        }
    }

    async fn deployment(&self, forge: &dyn Forge, sha: &str) -> Option<u64> {
        let new = NewDeployment {
            sha: sha.to_string(),
            environment: self.target.clone(),
            description: one_line(&format!("capstan sync of target {}", self.target)),
        };
        let created = forge.create_deployment(&new).await;
        self.observe("deployment", created.is_ok());
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(target = %self.target, commit = sha, error = %e, "cannot create the deployment");
                return None;
            }
        };
        self.deployment_status(forge, sha, id, DeploymentState::InProgress, "syncing")
            .await;
        Some(id)
    }

    async fn deployment_status(
        &self,
        forge: &dyn Forge,
        sha: &str,
        id: u64,
        state: DeploymentState,
        text: &str,
    ) {
        let status = DeploymentStatus {
            state,
            description: one_line(text),
            log_url: None,
        };
        let result = forge.create_deployment_status(id, &status).await;
        self.observe("deployment_status", result.is_ok());
        if let Err(e) = result {
            tracing::warn!(target = %self.target, commit = sha, deployment = id, state = state.as_str(), error = %e, "cannot send the deployment status");
        }
    }
}

/// `text` with the clone's path taken out of file names.
pub fn relative_to(root: &Path, text: &str) -> String {
    let prefix = format!("{}/", root.to_string_lossy().trim_end_matches('/'));
    text.replace(&prefix, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_paths_become_repository_paths() {
        let root = Path::new("/var/lib/capstan/repo-sync/");
        assert_eq!(
            relative_to(root, "/var/lib/capstan/repo-sync/app/a.yaml:1:2: kind: bad"),
            "app/a.yaml:1:2: kind: bad"
        );
    }
}
