//! What the HTTP server and the tasks share: the metrics, readiness, and the
//! current routing of triggers (which target and policy names exist, which
//! images the policies watch, the secrets of the endpoints). A reload swaps
//! the routing in one step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, TriggerLabel};
use crate::policy::ImagePolicy;
use crate::registry::{PushEvent, Scanner};

/// Secrets of the endpoints, read from the environment variables the
/// configuration names. Never logged: `Debug` shows only which are set.
#[derive(Clone, Default)]
pub struct Secrets {
    pub github_webhook: Option<Vec<u8>>,
    pub registry_token: Option<String>,
    pub trigger_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("github_webhook", &self.github_webhook.is_some())
            .field("registry_token", &self.registry_token.is_some())
            .field("trigger_token", &self.trigger_token.is_some())
            .finish()
    }
}

impl Secrets {
    /// Reads the variables named in `server:`; a named variable that is unset
    /// or empty counts as no secret (and is reported once here).
    pub fn from_env(server: &crate::config::Server) -> Secrets {
        let read = |field: &str, env: &Option<serde_saphyr::Spanned<String>>| {
            let name = &env.as_ref()?.value;
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    tracing::warn!(field, variable = %name, "the environment variable is not set or empty; its endpoint refuses every request");
                    None
                }
            }
        };
        Secrets {
            github_webhook: read(
                "server.githubWebhookSecretEnv",
                &server.github_webhook_secret_env,
            )
            .map(String::into_bytes),
            registry_token: read(
                "server.registryWebhookTokenEnv",
                &server.registry_webhook_token_env,
            ),
            trigger_token: read("server.triggerTokenEnv", &server.trigger_token_env),
        }
    }
}

/// How GitHub events about the manifests repository are judged
/// ([`crate::update::pr_events`]); known when a forge is configured.
#[derive(Debug, Clone)]
pub struct GitHubRules {
    /// `owner/repo`.
    pub repository: String,
    pub base_branch: String,
    pub branch_template: String,
    pub auto_merge: bool,
}

/// The forge, for reactions that call it (merge on approval).
#[derive(Clone)]
pub struct ForgeHandle(pub Arc<dyn crate::forge::Forge>);

impl std::fmt::Debug for ForgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forge")
    }
}

/// The names triggers can reach, and how requests are checked.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Target name → its task's trigger.
    pub sync: BTreeMap<String, Arc<Notify>>,
    /// Policy name → its scan task's trigger.
    pub update: BTreeMap<String, Arc<Notify>>,
    pub policies: Vec<ImagePolicy>,
    /// The writer of the image-update loop in `pull-request` mode: woken when
    /// the base branch moves (a merge, a push), so open pull requests are
    /// rebuilt on the new base and those the base now holds are closed.
    pub write: Option<Arc<Notify>>,
    /// The branch the sync loop reads (`repository.branch`).
    pub branch: String,
    pub secrets: Secrets,
    pub max_body_bytes: u64,
    pub github: Option<GitHubRules>,
    pub forge: Option<ForgeHandle>,
    /// The image-update loop's scanner, when it runs: a registry's own push
    /// notification ends that registry's cool-down after an outage.
    pub scanner: Option<Arc<Scanner>>,
}

/// Shared by the server and the tasks.
#[derive(Debug)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    routes: RwLock<Routes>,
    ready: AtomicBool,
    /// Cancelled when the daemon stops: no more triggers are taken.
    pub stop: CancellationToken,
}

impl Shared {
    pub fn new(metrics: Arc<Metrics>, stop: CancellationToken) -> Shared {
        Shared {
            metrics,
            routes: RwLock::new(Routes::default()),
            ready: AtomicBool::new(false),
            stop,
        }
    }

    pub fn routes(&self) -> Routes {
        self.routes
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub fn set_routes(&self, routes: Routes) {
        *self
            .routes
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = routes;
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self) {
        if !self.ready.swap(true, Ordering::SeqCst) {
            tracing::info!("ready");
        }
    }

    fn count(&self, r#loop: &'static str, source: &'static str) {
        self.metrics
            .triggers
            .get_or_create(&TriggerLabel { r#loop, source })
            .inc();
    }

    /// Triggers one target's sync; `false` when there is no such target.
    pub fn trigger_sync(&self, target: &str, source: &'static str) -> bool {
        let Some(t) = self.routes().sync.get(target).cloned() else {
            return false;
        };
        self.count("sync", source);
        tracing::info!(target = %target, source, "sync triggered");
        t.notify_one();
        true
    }

    /// Triggers every target's sync; the names triggered.
    pub fn trigger_all_syncs(&self, source: &'static str) -> Vec<String> {
        let routes = self.routes();
        for (name, t) in &routes.sync {
            self.count("sync", source);
            tracing::info!(target = %name, source, "sync triggered");
            t.notify_one();
        }
        routes.sync.keys().cloned().collect()
    }

    /// Wakes the pull-request writer (when `update.mode` is `pull-request`);
    /// `true` when there is one.
    pub fn trigger_write(&self, source: &'static str) -> bool {
        let Some(w) = self.routes().write else {
            return false;
        };
        self.count("update", source);
        tracing::info!(source, "pull requests triggered");
        w.notify_one();
        true
    }

    /// Triggers one policy's scan; `false` when there is no such policy.
    pub fn trigger_update(&self, policy: &str, source: &'static str) -> bool {
        let Some(t) = self.routes().update.get(policy).cloned() else {
            return false;
        };
        self.count("update", source);
        tracing::info!(policy = %policy, source, "update triggered");
        t.notify_one();
        true
    }

    /// The registries that sent `events` themselves are up
    /// ([`PushEvent::sent_by_registry`]): ends their cool-down after an
    /// outage, so the scans the events trigger reach them. Call it before
    /// triggering those scans.
    pub fn registries_up(&self, events: &[PushEvent]) {
        let Some(scanner) = self.routes().scanner else {
            return;
        };
        for event in events {
            if let Some(host) = event.sent_by_registry() {
                scanner.mark_up(&host, &format!("{} push notification", event.sender));
            }
        }
    }

    /// Triggers the scan of every policy watching the image of a tag push;
    /// the policies triggered.
    pub fn trigger_for_push(&self, event: &PushEvent, source: &'static str) -> Vec<String> {
        let routes = self.routes();
        let mut names = Vec::new();
        for policy in crate::registry::webhook::affected(event, &routes.policies) {
            if let Some(t) = routes.update.get(&policy.name) {
                self.count("update", source);
                tracing::info!(policy = %policy.name, image = %policy.image, event = %event, source, "update triggered");
                t.notify_one();
                names.push(policy.name.clone());
            }
        }
        names
    }
}
