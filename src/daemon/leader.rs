//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several
//! replicas only one writes Git or the cluster at a time.
//!
//! kube-runtime has no leader election, so this is client-go's algorithm
//! (`k8s.io/client-go/tools/leaderelection`), written out:
//! - **Acquire**: read the Lease (create it when missing). Take it when it has no
//!   holder, is held by this identity, or has expired; write it back with
//!   `replace`, which carries the `resourceVersion` read, so of two candidates that
//!   read the same version only one write succeeds (the other gets 409 Conflict).
//! - **Expiry** is judged on this replica's own clock: a Lease is expired when its
//!   record has not changed for `leaseDurationSeconds` since this replica first saw
//!   the current record. Comparing `renewTime` with the local wall clock would make
//!   a replica with a fast clock steal a live Lease; client-go made the same choice.
//! - **Renew** every `retryPeriod`. A renewal that finds another holder (someone
//!   edited or took the Lease) steps down at once; transient failures are retried
//!   until `renewDeadline` has passed since the last successful renewal, then the
//!   replica steps down. Since `renewDeadline < leaseDuration`, it has stepped down
//!   before any other replica can consider the Lease expired.
//! - **Release** on shutdown: the holder is cleared, so another replica takes over
//!   at its next attempt instead of waiting for the Lease to expire.
//!
//! The result is published on a `tokio::sync::watch` channel of `bool` ("am I the
//! leader"); the daemon gates every write on it. After losing the Lease the
//! elector goes back to acquiring, so a replica can lead again later.

use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Defaults of client-go and kube-controller-manager.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
pub const DEFAULT_LEASE_NAME: &str = "capstan-leader";
/// Acquire attempts wait `retryPeriod` times a random factor in `[1, 1.2)`, so
/// candidates that started together do not keep colliding.
const JITTER: f64 = 0.2;

/// Where the Lease lives and how it is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica; default `<hostname>_<pid>` ([`default_identity`]).
    pub identity: String,
    /// How long a Lease stays valid without renewal (written as whole seconds).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A Lease `name` in `namespace`, this process's identity and the default timings.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: default_identity(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// The timing rules of client-go: `leaseDuration > renewDeadline >
    /// 1.2 × retryPeriod > 0`, a non-empty identity, names given.
    pub fn validate(&self) -> Result<(), LeaderError> {
        check_timings(self.lease_duration, self.renew_deadline, self.retry_period)
            .map_err(LeaderError::Config)?;
        if self.identity.trim().is_empty() {
            return Err(LeaderError::Config("identity must not be empty".into()));
        }
        if self.namespace.is_empty() || self.name.is_empty() {
            return Err(LeaderError::Config(
                "the Lease needs a namespace and a name".into(),
            ));
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written to the Lease (rounded up, at least 1).
    fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil();
        secs.clamp(1.0, f64::from(i32::MAX)) as i32
    }
}

/// Where the Lease lives when `leaderElection.namespace` is not set and the Pod's
/// namespace cannot be found.
pub const DEFAULT_NAMESPACE: &str = "capstan-system";
/// The namespace of the Pod's service account, as Kubernetes mounts it.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl LeaseConfig {
    /// From `leaderElection` in `capstan.yaml`. Namespace: the configured one, else
    /// `POD_NAMESPACE`, else the service account's namespace, else `capstan-system`.
    pub fn from_config(c: &crate::config::LeaderElection) -> LeaseConfig {
        let namespace = c
            .namespace
            .as_ref()
            .map(|n| n.value.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        LeaseConfig {
            lease_duration: c.lease_duration.value.0,
            renew_deadline: c.renew_deadline.value.0,
            retry_period: c.retry_period.value.0,
            ..LeaseConfig::new(namespace, c.lease_name.value.clone())
        }
    }
}

/// Whether to campaign: the `--leader-elect[=true|false]` flag when given, else
/// `leaderElection.enabled`, else on in a cluster. For clap:
/// `#[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
/// leader_elect: Option<bool>`.
pub fn enabled(flag: Option<bool>, c: &crate::config::LeaderElection) -> bool {
    flag.unwrap_or_else(|| c.is_enabled())
}

/// The timing rules shared by [`LeaseConfig::validate`] and the config file's
/// validation; the error says which rule is broken.
pub fn check_timings(
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
) -> Result<(), String> {
    if retry_period.is_zero() {
        return Err("retryPeriod must be greater than zero".into());
    }
    if lease_duration < Duration::from_secs(1) {
        return Err("leaseDuration must be at least 1s (a Lease counts whole seconds)".into());
    }
    if lease_duration <= renew_deadline {
        return Err(format!(
            "leaseDuration ({lease_duration:?}) must be greater than renewDeadline ({renew_deadline:?}), \
             so a leader steps down before others may take over"
        ));
    }
    if renew_deadline.as_secs_f64() <= retry_period.as_secs_f64() * (1.0 + JITTER) {
        return Err(format!(
            "renewDeadline ({renew_deadline:?}) must be greater than 1.2 × retryPeriod ({retry_period:?}), \
             so a renewal can be retried before the deadline"
        ));
    }
    Ok(())
}

/// `<hostname>_<pid>`: the Pod name in a cluster (Kubernetes sets `HOSTNAME`), and
/// distinct for two processes on one machine.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "capstan".into());
    format!("{}_{}", host.trim(), std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: {0}")]
    Config(String),
    #[error("leader election: Lease {lease}: {context}: {source}")]
    Kube {
        lease: String,
        context: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The outcome of one attempt to acquire or renew.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease now.
    Held,
    /// Another replica holds a Lease that has not expired.
    HeldBy(String),
    /// Someone wrote the Lease between our read and our write.
    Conflict,
}

/// The Lease record as last seen, and when this replica first saw it.
struct Observed {
    spec: LeaseSpec,
    since: Instant,
}

/// Campaigns for one Lease and publishes whether this replica leads.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    tx: watch::Sender<bool>,
    observed: Option<Observed>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> LeaderElector {
        let (tx, _) = watch::channel(false);
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            tx,
            observed: None,
        }
    }

    /// `true` while this replica leads. Subscribe before calling [`run`](Self::run).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Campaigns until `shutdown` completes, then steps down and releases the
    /// Lease if it holds it. Errors only on an invalid configuration; API errors
    /// are logged and retried (while leading, they count against `renewDeadline`).
    ///
    /// Call `shutdown` only once the writers gated by the receiver have stopped:
    /// after the release another replica may start writing at once.
    pub async fn run<F>(mut self, shutdown: F) -> Result<(), LeaderError>
    where
        F: Future<Output = ()>,
    {
        self.config.validate()?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.campaign() => {}
            }
        }
        self.publish(false);
        self.release().await;
        Ok(())
    }

    /// Acquire, then renew until the Lease is lost.
    async fn campaign(&mut self) {
        self.acquire().await;
        self.publish(true);
        info!(
            lease = %self.lease_ref(),
            identity = %self.config.identity,
            "became leader"
        );
        let why = self.renew().await;
        self.publish(false);
        warn!(
            lease = %self.lease_ref(),
            identity = %self.config.identity,
            reason = %why,
            "lost leadership"
        );
    }

    /// Tries every `retryPeriod` (with jitter) until this replica holds the Lease.
    async fn acquire(&mut self) {
        loop {
            match self.attempt_in_time(self.config.renew_deadline).await {
                Ok(Attempt::Held) => return,
                Ok(Attempt::HeldBy(holder)) => {
                    debug!(lease = %self.lease_ref(), holder = %holder, "lease held by another replica")
                }
                Ok(Attempt::Conflict) => {
                    debug!(lease = %self.lease_ref(), "lost a race for the lease")
                }
                Err(e) => warn!(lease = %self.lease_ref(), error = %e, "cannot acquire the lease"),
            }
            let factor = 1.0 + fastrand::f64() * JITTER;
            tokio::time::sleep(self.config.retry_period.mul_f64(factor)).await;
        }
    }

    /// Renews every `retryPeriod`; returns why leadership ended.
    async fn renew(&mut self) -> String {
        // A renewal counts from when its request left: the Lease was written after
        // that, so others judge expiry from a later point than we do.
        let mut last_renewal = Instant::now();
        loop {
            let deadline = last_renewal + self.config.renew_deadline;
            tokio::time::sleep_until((Instant::now() + self.config.retry_period).min(deadline))
                .await;
            let sent = Instant::now();
            if sent >= deadline {
                return format!(
                    "no successful renewal within renewDeadline ({:?})",
                    self.config.renew_deadline
                );
            }
            match self.attempt_in_time(deadline - sent).await {
                Ok(Attempt::Held) => last_renewal = sent,
                Ok(Attempt::HeldBy(holder)) => return format!("the lease is now held by {holder}"),
                Ok(Attempt::Conflict) => {
                    // Someone else wrote the Lease: the next read tells who holds it.
                    debug!(lease = %self.lease_ref(), "lease changed during renewal")
                }
                Err(e) => warn!(lease = %self.lease_ref(), error = %e, "cannot renew the lease"),
            }
        }
    }

    /// One attempt, abandoned after `limit` (a hung request must not keep a
    /// replica leading past its deadline).
    async fn attempt_in_time(&mut self, limit: Duration) -> Result<Attempt, String> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    /// client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaderError> {
        let now = MicroTime(Timestamp::now());
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.kube_error("read", e))?;
        let Some(mut lease) = current else {
            let spec = LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    labels: Some([("app.kubernetes.io/name".into(), "capstan".into())].into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(spec);
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(self.kube_error("create", e)),
            };
        };

        let old = lease.spec.clone().unwrap_or_default();
        self.observe(old.clone());
        let holder = old.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.config.identity;
        if !holder.is_empty() && !mine && !self.expired() {
            return Ok(Attempt::HeldBy(holder));
        }
        let spec = LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_seconds()),
            acquire_time: if mine {
                old.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: if mine {
                old.lease_transitions
            } else {
                Some(old.lease_transitions.unwrap_or(0).saturating_add(1))
            },
            ..old
        };
        lease.spec = Some(spec.clone());
        // `lease.metadata.resourceVersion` is the one read: a concurrent write makes
        // this replace fail with 409 instead of overwriting it.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !mine {
                    info!(
                        lease = %self.lease_ref(),
                        previous = %holder,
                        identity = %self.config.identity,
                        "lease acquired"
                    );
                }
                self.observe(spec);
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(self.kube_error("update", e)),
        }
    }

    /// Remembers the record and, when it changed, the local time it was first seen.
    fn observe(&mut self, spec: LeaseSpec) {
        if self.observed.as_ref().is_some_and(|o| o.spec == spec) {
            return;
        }
        self.observed = Some(Observed {
            spec,
            since: Instant::now(),
        });
    }

    /// Whether the observed record is older (on this replica's clock) than its
    /// own `leaseDurationSeconds` (ours when it states none).
    fn expired(&self) -> bool {
        let Some(o) = &self.observed else {
            return true;
        };
        let duration = o
            .spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s.unsigned_abs().into()))
            .unwrap_or(self.config.lease_duration);
        o.since.elapsed() >= duration
    }

    /// Clears the holder if it is still this replica (guarded by `resourceVersion`).
    async fn release(&mut self) {
        let lease = match self.api.get_opt(&self.config.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(e) => {
                warn!(lease = %self.lease_ref(), error = %e, "cannot read the lease to release it");
                return;
            }
        };
        let Some(spec) = &lease.spec else { return };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        let mut released = lease.clone();
        released.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..spec.clone()
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &released)
            .await
        {
            Ok(_) => {
                info!(lease = %self.lease_ref(), identity = %self.config.identity, "lease released")
            }
            Err(e) => warn!(lease = %self.lease_ref(), error = %e, "cannot release the lease"),
        }
    }

    fn publish(&self, leading: bool) {
        self.tx.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        });
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn kube_error(&self, context: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            lease: self.lease_ref(),
            context,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_timings_are_checked() {
        let c = LeaseConfig::new("ns", "lease");
        assert!(c.validate().is_ok());
        assert_eq!(c.lease_seconds(), 15);
        assert!(c.identity.ends_with(&format!("_{}", std::process::id())));
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(check_timings(s(15), s(10), s(2)).is_ok());
        assert!(check_timings(s(2), ms(1500), ms(250)).is_ok());
        assert!(
            check_timings(s(10), s(10), s(2))
                .unwrap_err()
                .contains("renewDeadline")
        );
        assert!(
            check_timings(s(15), s(2), s(2))
                .unwrap_err()
                .contains("1.2")
        );
        assert!(
            check_timings(s(15), s(10), s(0))
                .unwrap_err()
                .contains("retryPeriod")
        );
        assert!(
            check_timings(ms(900), ms(500), ms(100))
                .unwrap_err()
                .contains("at least 1s")
        );
    }

    #[test]
    fn from_config_and_flag() {
        let mut c = crate::config::LeaderElection {
            namespace: Some(crate::yaml_file::unspanned("ops".to_string())),
            ..Default::default()
        };
        let lc = LeaseConfig::from_config(&c);
        assert_eq!(
            (lc.namespace.as_str(), lc.name.as_str()),
            ("ops", "capstan-leader")
        );
        assert_eq!(lc.retry_period, DEFAULT_RETRY_PERIOD);
        c.enabled = Some(false);
        assert!(!enabled(None, &c));
        assert!(enabled(Some(true), &c));
        c.enabled = Some(true);
        assert!(!enabled(Some(false), &c));
    }

    #[test]
    fn lease_seconds_round_up() {
        let mut c = LeaseConfig::new("ns", "lease");
        c.lease_duration = Duration::from_millis(1500);
        assert_eq!(c.lease_seconds(), 2);
    }
}
