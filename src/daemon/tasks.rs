//! The running set of tasks and how a configuration changes it.
//!
//! Tasks: one scan per policy and one writer (the image-update loop,
//! [`super::update_loop`]; with `update.mode: pull-request` the writer opens
//! pull requests through the configured forge), one sync per target
//! ([`super::sync_loop`]). Each task carries a fingerprint of the
//! configuration it was started with; on [`TaskSet::apply`] a task whose
//! fingerprint is unchanged keeps running, a changed one is stopped and
//! started again, a removed one is stopped and a new one is started.
//! Everything that can fail is checked before any task is touched, so a
//! configuration the daemon cannot run leaves the old set running. A stopped
//! task finishes the step it is in (a push, an apply).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::forge_calls::CountedForge;
use super::schedule::{self, Context, Schedule, TaskName};
use super::state::{ForgeHandle, GitHubRules, Routes, Secrets, Shared};
use super::sync_loop::{self, SyncState};
use super::update_loop::{self, UpdateState, Writer};
use crate::config::{Config, Target};
use crate::forge::SyncReporter;
use crate::policy::ImagePolicy;
use crate::registry::transport::ClientOptions;
use crate::registry::{ScanOptions, Scanner};
use crate::sync::Source;
use crate::update::Settings;
use crate::update::pull_request::PrSettings;

/// A configuration and its policies, as loaded from disk.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub policies: Vec<ImagePolicy>,
    /// Folder of the configuration file (anchors `.capstan/`).
    pub config_dir: PathBuf,
}

/// Where sync passes report: the forge and the notification sinks of one
/// configuration (a change of either restarts the sync tasks). Built once per
/// change of `forge:`/`notifications:`, not on every reload: the notifier owns a
/// delivery task.
struct Reporting {
    forge: Option<Arc<dyn crate::forge::Forge>>,
    notifier: crate::notify::Notifier,
    fingerprint: String,
}

/// What the writer of [`update_loop`] does, before it is built.
enum WriterConfig {
    Push,
    PullRequests {
        settings: Box<PrSettings>,
        forge: Arc<dyn crate::forge::Forge>,
        notifier: crate::notify::Notifier,
        /// Of the forge and notifier ([`Reporting::fingerprint`]).
        fingerprint: String,
    },
}

impl WriterConfig {
    /// What restarts the update tasks when it changes.
    fn fingerprint(&self) -> String {
        match self {
            WriterConfig::Push => "push".into(),
            WriterConfig::PullRequests {
                settings,
                fingerprint,
                ..
            } => format!("pull-request|{settings:?}|{fingerprint}"),
        }
    }

    fn into_writer(self, metrics: Arc<super::metrics::Metrics>) -> Writer {
        match self {
            WriterConfig::Push => Writer::Push,
            WriterConfig::PullRequests {
                settings,
                forge,
                notifier,
                ..
            } => Writer::PullRequests {
                settings,
                forge: Arc::new(CountedForge::new(forge, metrics)),
                notifier,
            },
        }
    }
}

/// How long queued notifications may take to go out when a notifier is replaced
/// or the daemon stops (the stop itself is bounded by `server.shutdownTimeout`).
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

struct Running {
    fingerprint: String,
    stop: CancellationToken,
    handle: JoinHandle<()>,
    trigger: Arc<Notify>,
}

/// What [`TaskSet::apply`] changed, by task name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.restarted.is_empty() && self.stopped.is_empty()
    }
}

pub struct TaskSet {
    shared: Arc<Shared>,
    ctx: Context,
    checkout_lock: Arc<tokio::sync::Mutex<()>>,
    update: Option<(String, Arc<UpdateState>)>,
    writer: Option<Running>,
    scans: BTreeMap<String, Running>,
    syncs: BTreeMap<String, Running>,
    /// Stopped tasks still finishing their step.
    retired: Vec<JoinHandle<()>>,
    reporting: Option<Arc<Reporting>>,
}

impl TaskSet {
    pub fn new(shared: Arc<Shared>, ctx: Context) -> TaskSet {
        TaskSet {
            shared,
            ctx,
            checkout_lock: Arc::new(tokio::sync::Mutex::new(())),
            update: None,
            writer: None,
            scans: BTreeMap::new(),
            syncs: BTreeMap::new(),
            retired: Vec::new(),
            reporting: None,
        }
    }

    /// Makes the running tasks match `loaded`; on error nothing changed.
    pub fn apply(&mut self, loaded: &Loaded) -> Result<Changes, String> {
        let config = &loaded.config;
        // Everything that can fail, first.
        let pull_requests = config.update.mode.value == crate::config::UpdateMode::PullRequest;
        let settings = if loaded.policies.is_empty() {
            None
        } else {
            Some(
                Settings::from_config(config, &loaded.config_dir, false)
                    .map_err(|e| e.to_string())?,
            )
        };
        let source = Source::from_config(config, &loaded.config_dir).map_err(|e| e.to_string())?;
        let reporting = self.reporting_for(config)?;
        let forge = reporting.forge.clone().map(ForgeHandle);
        // `pull-request` mode: the writer opens pull requests through the forge
        // the sync loop reports to; the base branch is never pushed.
        let writer = match settings {
            Some(_) if pull_requests => {
                let pr = PrSettings::from_config(config, &loaded.config_dir)
                    .map_err(|e| e.to_string())?;
                let Some(forge) = reporting.forge.clone() else {
                    return Err(
                        "update.mode `pull-request` needs a forge, and none could be built from `forge:` (see the warning above)"
                            .into(),
                    );
                };
                Some(WriterConfig::PullRequests {
                    settings: Box::new(pr),
                    forge,
                    notifier: reporting.notifier.clone(),
                    fingerprint: reporting.fingerprint.clone(),
                })
            }
            Some(_) => Some(WriterConfig::Push),
            None => None,
        };
        let mut changes = Changes::default();
        self.retired.retain(|h| !h.is_finished());
        self.apply_update(loaded, settings.zip(writer), &mut changes);
        self.apply_sync(loaded, &source, &reporting, &mut changes);

        if config.targets.is_empty() && loaded.policies.is_empty() {
            // Nothing will contact Git; there is nothing to wait for.
            self.shared.set_ready();
        }
        let github = config
            .forge_repository()
            .filter(|_| config.forge.kind != crate::config::ForgeKind::None)
            .map(|(owner, repo)| GitHubRules {
                repository: format!("{owner}/{repo}"),
                base_branch: config.base_branch().to_string(),
                branch_template: config.pull_request_branch_template().to_string(),
                auto_merge: config.update.pull_request.auto_merge,
            });
        self.shared.set_routes(Routes {
            sync: self
                .syncs
                .iter()
                .map(|(n, r)| (n.clone(), r.trigger.clone()))
                .collect(),
            update: self
                .scans
                .iter()
                .map(|(n, r)| (n.clone(), r.trigger.clone()))
                .collect(),
            policies: loaded.policies.clone(),
            write: match &self.update {
                Some((_, state)) if pull_requests => Some(state.write.clone()),
                _ => None,
            },
            branch: config.repository.branch.value.clone(),
            secrets: Secrets::from_env(&config.server),
            max_body_bytes: config.server.max_body_bytes.value,
            github,
            forge,
            scanner: self.update.as_ref().map(|(_, u)| u.scanner.clone()),
        });
        Ok(changes)
    }

    fn apply_update(
        &mut self,
        loaded: &Loaded,
        settings: Option<(Settings, WriterConfig)>,
        changes: &mut Changes,
    ) {
        let config = &loaded.config;
        let Some((settings, writer)) = settings else {
            if let Some(w) = self.writer.take() {
                changes.stopped.push("update writer".into());
                self.retire(w);
            }
            for (name, r) in std::mem::take(&mut self.scans) {
                changes.stopped.push(format!("policy {name}"));
                self.retire(r);
            }
            self.update = None;
            return;
        };
        let update_fp = format!(
            "{settings:?}|{:?}|{}",
            config.registries,
            writer.fingerprint()
        );
        let state = match &self.update {
            Some((fp, state)) if *fp == update_fp => state.clone(),
            previous => {
                let shared = self.shared.clone();
                let state = Arc::new(UpdateState::new(
                    Arc::new(Scanner::from_config(
                        &config.registries,
                        ClientOptions::default(),
                        ScanOptions::default(),
                    )),
                    settings,
                    writer.into_writer(self.ctx.metrics.clone()),
                    self.checkout_lock.clone(),
                    Box::new(move || shared.set_ready()),
                ));
                if let Some((_, old)) = previous {
                    state.carry_over(old, &loaded.policies);
                }
                self.update = Some((update_fp.clone(), state.clone()));
                state
            }
        };
        let interval = config.update.interval.0;

        // The writer: restarted when settings or the set of policies change.
        let writer_fp = format!("{update_fp}|{:?}|{interval:?}", loaded.policies);
        if self.writer.as_ref().map(|w| &w.fingerprint) != Some(&writer_fp) {
            let restarted = self.writer.take().map(|w| self.retire(w)).is_some();
            let policies = Arc::new(loaded.policies.clone());
            let mut schedule = Schedule::new(interval);
            schedule.run_at_start = false;
            let trigger = state.write.clone();
            let running = self.spawn(writer_fp, trigger.clone(), {
                let state = state.clone();
                move |ctx| async move {
                    schedule::drive(
                        TaskName::Write,
                        schedule,
                        trigger,
                        ctx.clone(),
                        true,
                        || update_loop::write_step(state.clone(), ctx.clone(), policies.clone()),
                    )
                    .await
                }
            });
            self.writer = Some(running);
            let name = "update writer".to_string();
            if restarted {
                changes.restarted.push(name);
            } else {
                changes.started.push(name);
            }
        }

        // One scan task per policy.
        let wanted: BTreeMap<&str, &ImagePolicy> = loaded
            .policies
            .iter()
            .map(|p| (p.name.as_str(), p))
            .collect();
        for name in self.scans.keys().cloned().collect::<Vec<_>>() {
            if !wanted.contains_key(name.as_str())
                && let Some(r) = self.scans.remove(&name)
            {
                self.ctx.metrics.forget_policy(&name);
                changes.stopped.push(format!("policy {name}"));
                self.retire(r);
            }
        }
        for (name, policy) in wanted {
            let fp = format!("{update_fp}|{policy:?}|{interval:?}");
            if self.scans.get(name).map(|r| &r.fingerprint) == Some(&fp) {
                continue;
            }
            let restarted = self.scans.remove(name).map(|r| self.retire(r)).is_some();
            let trigger = Arc::new(Notify::new());
            let state = state.clone();
            let policy = policy.clone();
            let running = self.spawn(fp, trigger.clone(), move |ctx| async move {
                let name = policy.name.clone();
                schedule::drive(
                    TaskName::Scan { policy: &name },
                    Schedule::new(interval),
                    trigger,
                    ctx.clone(),
                    false,
                    || update_loop::scan_step(state.clone(), ctx.clone(), policy.clone()),
                )
                .await
            });
            self.scans.insert(name.to_string(), running);
            let label = format!("policy {name}");
            if restarted {
                changes.restarted.push(label);
            } else {
                changes.started.push(label);
            }
        }
    }

    fn apply_sync(
        &mut self,
        loaded: &Loaded,
        source: &Source,
        reporting: &Reporting,
        changes: &mut Changes,
    ) {
        let config = &loaded.config;
        let wanted: BTreeMap<&str, &Target> = config
            .targets
            .iter()
            .map(|t| (t.name.value.as_str(), t))
            .collect();
        for name in self.syncs.keys().cloned().collect::<Vec<_>>() {
            if !wanted.contains_key(name.as_str())
                && let Some(r) = self.syncs.remove(&name)
            {
                self.ctx.metrics.forget_target(&name);
                changes.stopped.push(format!("target {name}"));
                self.retire(r);
            }
        }
        for (name, target) in wanted {
            // Targets sync in parallel: each has a clone of its own.
            let source = Source {
                checkout_dir: source.checkout_dir.join(name),
                ..source.clone()
            };
            let fp = format!("{target:?}|{source:?}|{}", reporting.fingerprint);
            if self.syncs.get(name).map(|r| &r.fingerprint) == Some(&fp) {
                continue;
            }
            let restarted = self.syncs.remove(name).map(|r| self.retire(r)).is_some();
            let trigger = Arc::new(Notify::new());
            let shared = self.shared.clone();
            let metrics = self.ctx.metrics.clone();
            let reporter = SyncReporter::new(reporting.forge.clone(), target)
                .with_notifier(reporting.notifier.clone())
                .with_observer(Arc::new(move |operation, ok| {
                    metrics.forge_call(operation, ok);
                }));
            let state = Arc::new(SyncState::new(
                target.clone(),
                source,
                reporter,
                trigger.clone(),
                Box::new(move || shared.set_ready()),
            ));
            let interval = target.interval.0;
            let running = self.spawn(fp, trigger.clone(), move |ctx| async move {
                let name = state.target.name.value.clone();
                schedule::drive(
                    TaskName::Sync { target: &name },
                    Schedule::new(interval),
                    trigger,
                    ctx.clone(),
                    true,
                    || sync_loop::sync_step(state.clone(), ctx.clone()),
                )
                .await;
                state.stop_drift_watch();
            });
            self.syncs.insert(name.to_string(), running);
            let label = format!("target {name}");
            if restarted {
                changes.restarted.push(label);
            } else {
                changes.started.push(label);
            }
        }
    }

    fn spawn<F, Fut>(&self, fingerprint: String, trigger: Arc<Notify>, body: F) -> Running
    where
        F: FnOnce(Context) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = self.ctx.stop.child_token();
        let ctx = Context {
            stop: stop.clone(),
            ..self.ctx.clone()
        };
        Running {
            fingerprint,
            stop,
            handle: tokio::spawn(body(ctx)),
            trigger,
        }
    }

    fn retire(&mut self, running: Running) {
        running.stop.cancel();
        self.retired.push(running.handle);
    }

    /// Waits for every task to end (the caller cancelled the stop token).
    /// The forge and notifier for `config`: the current ones when `forge:` and
    /// `notifications:` did not change; otherwise new ones, and the old notifier
    /// is drained in the background.
    fn reporting_for(&mut self, config: &Config) -> Result<Arc<Reporting>, String> {
        let fingerprint = format!("{:?}|{:?}", config.forge, config.notifications);
        if let Some(current) = &self.reporting
            && current.fingerprint == fingerprint
        {
            return Ok(current.clone());
        }
        let forge = match crate::forge::from_config(config) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "no forge: commit statuses and merges on approval are off");
                None
            }
        };
        let notifier = crate::notify::Notifier::from_config(&config.notifications)
            .map_err(|e| format!("notifications: {e}"))?;
        let next = Arc::new(Reporting {
            forge,
            notifier,
            fingerprint,
        });
        if let Some(old) = self.reporting.replace(next.clone()) {
            tokio::spawn(async move { old.notifier.shutdown(NOTIFY_GRACE).await });
        }
        Ok(next)
    }

    pub async fn join(self) {
        let handles = self
            .retired
            .into_iter()
            .chain(self.writer.map(|w| w.handle))
            .chain(self.scans.into_values().map(|r| r.handle))
            .chain(self.syncs.into_values().map(|r| r.handle));
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a task ended abnormally");
            }
        }
        // What the stopped tasks reported still goes out.
        if let Some(reporting) = self.reporting {
            reporting.notifier.shutdown(NOTIFY_GRACE).await;
        }
    }
}
