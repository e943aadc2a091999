//! The daemon, `capstan run`: both loops live, the HTTP server, live reload,
//! graceful shutdown. Wiring only, top to bottom; each part has its module:
//!
//! - [`schedule`]: interval with jitter, triggers, backoff; the step driver
//!   that catches panics so no task can crash or starve the others.
//! - [`update_loop`]: one scan task per policy and the one Git writer (pushes,
//!   or pull requests through the forge: [`forge_calls`] counts its calls).
//! - [`sync_loop`]: one sync task per target, with drift watches.
//! - [`tasks`]: the running set of tasks and how a new configuration changes it.
//! - [`server`]: webhooks, manual triggers, probes, metrics ([`webhook_auth`]
//!   checks signatures and tokens).
//! - [`reload`]: watches the configuration and policies.
//! - [`metrics`], [`state`]: what the server and the tasks share.
//! - [`leader`]: leader election through a Kubernetes Lease.
//!
//! Leadership: writes (the Git writer, sync passes) wait while the
//! "am I the leader" receiver says `false`. With leader election on
//! (`--leader-elect`, or `leaderElection` in the config) it comes from a
//! [`leader::LeaderElector`] campaigning for a Lease (through `KUBECONFIG` or
//! the in-cluster service account), which releases the Lease after the
//! writers stopped; otherwise from [`Options::leader`] (always the leader
//! with [`Options::new`]).

pub mod forge_calls;
pub mod leader;
pub mod metrics;
pub mod reload;
pub mod schedule;
pub mod server;
pub mod state;
pub mod sync_loop;
pub mod tasks;
pub mod update_loop;
pub mod webhook_auth;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use metrics::{Metrics, ResultLabel};
use schedule::Context;
use state::Shared;
use tasks::{Loaded, TaskSet};

/// Steps (scans, writes, sync passes) running at once, across all tasks.
pub const MAX_CONCURRENT_STEPS: usize = 8;

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// `true` while this replica may write when leader election is off; see
    /// the module documentation.
    pub leader: watch::Receiver<bool>,
    /// `--leader-elect[=true|false]`; `None`: as the configuration says.
    pub leader_elect: Option<bool>,
}

impl Options {
    /// A daemon that is always the leader.
    pub fn new(config_path: PathBuf) -> Options {
        let (_, leader) = watch::channel(true);
        Options {
            config_path,
            leader,
            leader_elect: None,
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration or a policy is invalid: one message per problem.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Watch(#[from] reload::WatchError),
    #[error("cannot install the signal handlers: {0}")]
    Signal(#[source] std::io::Error),
    #[error("leader election: {0}")]
    Leader(String),
}

/// Loads the configuration and its policies; every problem, located.
pub fn load(config_path: &Path) -> Result<Loaded, Vec<String>> {
    let config = crate::config::Config::load(config_path).map_err(|e| vec![e.to_string()])?;
    // A daemon that only syncs needs no policies folder.
    let policies = if config.policies_dir().exists() {
        crate::policy::load_dir(config.policies_dir()).map_err(|e| {
            e.errors()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?
    } else {
        tracing::warn!(folder = %config.policies_dir().display(), "no policies folder: the image-update loop is idle");
        Vec::new()
    };
    let config_dir = crate::config::folder_of(config_path).to_path_buf();
    Ok(Loaded {
        config,
        policies,
        config_dir,
    })
}

/// Runs until SIGTERM or SIGINT, then stops within `server.shutdownTimeout`.
pub async fn run(options: Options) -> Result<(), DaemonError> {
    let loaded = load(&options.config_path).map_err(DaemonError::Config)?;
    let server_config = loaded.config.server.clone();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let shared = Arc::new(Shared::new(metrics.clone(), stop.clone()));
    let election = start_election(&options, &loaded.config.leader_election).await?;
    let ctx = Context {
        metrics: metrics.clone(),
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_STEPS)),
        stop: stop.clone(),
        leader: election
            .as_ref()
            .map_or_else(|| options.leader.clone(), |e| e.leader.clone()),
    };

    let mut tasks = TaskSet::new(shared.clone(), ctx);
    let changes = tasks
        .apply(&loaded)
        .map_err(|e| DaemonError::Config(vec![e]))?;
    let address = server_config.address.value.clone();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| DaemonError::Listen {
            address: address.clone(),
            source,
        })?;
    let mut watch = reload::ConfigWatch::start(&options.config_path, loaded.config.policies_dir())?;
    let mut signals = Signals::install().map_err(DaemonError::Signal)?;
    tracing::info!(
        address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(address),
        config = %options.config_path.display(),
        policies = loaded.policies.len(),
        targets = loaded.config.targets.len(),
        tasks = changes.started.len(),
        "capstan is running"
    );
    let server = tokio::spawn(server::serve(listener, shared.clone()));

    let mut current = loaded;
    loop {
        tokio::select! {
            signal = signals.next() => {
                tracing::info!(signal, "stopping: finishing the steps in progress");
                break;
            }
            () = watch.changed() => {
                if let Some(next) = reload(&options.config_path, &current, &mut tasks, &metrics) {
                    if next.config.policies_dir() != watch.policies_dir.as_path() {
                        match reload::ConfigWatch::start(&options.config_path, next.config.policies_dir()) {
                            Ok(w) => watch = w,
                            Err(e) => tracing::error!(error = %e, "live reload of the new policies folder is off"),
                        }
                    }
                    current = next;
                }
            }
        }
    }

    stop.cancel();
    let timeout = server_config.shutdown_timeout.value.0;
    let finished = tokio::time::timeout(timeout, async {
        tasks.join().await;
        let _ = server.await;
        // Only now that nothing writes may another replica take over.
        if let Some(e) = election {
            e.stop.cancel();
            match e.handle.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "leader election"),
                Err(err) => tracing::error!(error = %err, "leader election task"),
            }
        }
    })
    .await;
    match finished {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => {
            tracing::warn!(timeout = ?timeout, "steps still running after server.shutdownTimeout; exiting anyway")
        }
    }
    Ok(())
}

/// A running leader election.
struct Election {
    leader: watch::Receiver<bool>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), leader::LeaderError>>,
}

async fn start_election(
    options: &Options,
    config: &crate::config::LeaderElection,
) -> Result<Option<Election>, DaemonError> {
    if !leader::enabled(options.leader_elect, config) {
        return Ok(None);
    }
    let lease = leader::LeaseConfig::from_config(config);
    lease
        .validate()
        .map_err(|e| DaemonError::Leader(e.to_string()))?;
    let client = kube::Client::try_default().await.map_err(|e| {
        DaemonError::Leader(format!(
            "no Kubernetes client (KUBECONFIG or in-cluster): {e}"
        ))
    })?;
    tracing::info!(namespace = %lease.namespace, lease = %lease.name, "leader election on; writes wait for the Lease");
    let elector = leader::LeaderElector::new(client, lease);
    let rx = elector.subscribe();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(elector.run(stop.clone().cancelled_owned()));
    Ok(Some(Election {
        leader: rx,
        stop,
        handle,
    }))
}

/// Loads the changed configuration and applies it; `None` keeps the old one.
fn reload(path: &Path, current: &Loaded, tasks: &mut TaskSet, metrics: &Metrics) -> Option<Loaded> {
    let count = |result| metrics.reloads.get_or_create(&ResultLabel { result }).inc();
    let next = match load(path) {
        Ok(next) => next,
        Err(errors) => {
            for error in &errors {
                tracing::error!(error = %error, "configuration change rejected; the running configuration stays");
            }
            metrics.error("config");
            count("invalid");
            return None;
        }
    };
    if next.config.server.address.value != current.config.server.address.value {
        tracing::warn!("server.address changed; the new address takes effect after a restart");
    }
    match tasks.apply(&next) {
        Ok(changes) => {
            if !changes.is_empty() {
                tracing::info!(started = ?changes.started, restarted = ?changes.restarted, stopped = ?changes.stopped, "configuration reloaded");
            }
            count("applied");
            Some(next)
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration change rejected; the running configuration stays");
            metrics.error("config");
            count("invalid");
            None
        }
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
