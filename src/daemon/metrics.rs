//! The daemon's Prometheus metrics: one explicit registry, encoded as text by
//! `GET /metrics`.
//!
//! Series (counters carry the `_total` suffix in the exposition):
//!
//! | name | labels | what |
//! |---|---|---|
//! | `capstan_sync_duration_seconds` | `target` | histogram of sync pass durations |
//! | `capstan_sync_last_success_timestamp_seconds` | `target` | Unix time of the last successful pass |
//! | `capstan_sync_runs_total` | `target`, `result` | passes, `success` or `failure` |
//! | `capstan_sync_objects_applied_total` | `target` | objects created or updated |
//! | `capstan_sync_objects_pruned_total` | `target` | objects deleted by prune |
//! | `capstan_update_scans_total` | `policy`, `result` | registry scans |
//! | `capstan_update_tags_seen` | `policy` | tags the last successful scan listed |
//! | `capstan_update_decisions_total` | `policy`, `decision` | `chosen` or `none` |
//! | `capstan_git_pushes_total` | | commits pushed by the image-update loop (pull-request mode: head branches) |
//! | `capstan_git_push_retries_total` | | pushes rejected and recomputed |
//! | `capstan_update_pull_requests_total` | `action` | pull requests `opened`, `updated` (new commit, title or body) or `closed` (superseded) by the image-update loop |
//! | `capstan_forge_calls_total` | `operation`, `result` | forge API calls |
//! | `capstan_errors_total` | `kind` | errors by kind |
//! | `capstan_triggers_total` | `loop`, `source` | immediate runs requested |
//! | `capstan_webhooks_total` | `endpoint`, `result` | webhook requests |
//! | `capstan_config_reloads_total` | `result` | live reloads |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetResult {
    pub target: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyResult {
    pub policy: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyDecision {
    pub policy: String,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullRequestAction {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeCall {
    pub operation: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorKind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub r#loop: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub endpoint: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every series the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub sync_duration: Family<TargetLabel, Histogram>,
    pub sync_last_success: Family<TargetLabel, Gauge<f64, AtomicU64>>,
    pub sync_runs: Family<TargetResult, Counter>,
    pub objects_applied: Family<TargetLabel, Counter>,
    pub objects_pruned: Family<TargetLabel, Counter>,
    pub scans: Family<PolicyResult, Counter>,
    pub tags_seen: Family<PolicyLabel, Gauge>,
    pub decisions: Family<PolicyDecision, Counter>,
    pub git_pushes: Counter,
    pub git_push_retries: Counter,
    pub pull_requests: Family<PullRequestAction, Counter>,
    pub forge_calls: Family<ForgeCall, Counter>,
    pub errors: Family<ErrorKind, Counter>,
    pub triggers: Family<TriggerLabel, Counter>,
    pub webhooks: Family<WebhookLabel, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("capstan");
        let sync_duration = Family::<TargetLabel, Histogram>::new_with_constructor(|| {
            // 50 ms .. ~7 min
            Histogram::new(exponential_buckets(0.05, 2.0, 14))
        });
        let m = Metrics {
            sync_duration,
            sync_last_success: Family::default(),
            sync_runs: Family::default(),
            objects_applied: Family::default(),
            objects_pruned: Family::default(),
            scans: Family::default(),
            tags_seen: Family::default(),
            decisions: Family::default(),
            git_pushes: Counter::default(),
            git_push_retries: Counter::default(),
            pull_requests: Family::default(),
            forge_calls: Family::default(),
            errors: Family::default(),
            triggers: Family::default(),
            webhooks: Family::default(),
            reloads: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sync_duration_seconds",
            "Duration of sync passes",
            m.sync_duration.clone(),
        );
        registry.register(
            "sync_last_success_timestamp_seconds",
            "Unix time of the last successful sync pass",
            m.sync_last_success.clone(),
        );
        registry.register("sync_runs", "Sync passes by result", m.sync_runs.clone());
        registry.register(
            "sync_objects_applied",
            "Objects created or updated by sync passes",
            m.objects_applied.clone(),
        );
        registry.register(
            "sync_objects_pruned",
            "Objects deleted by prune",
            m.objects_pruned.clone(),
        );
        registry.register(
            "update_scans",
            "Registry scans by policy and result",
            m.scans.clone(),
        );
        registry.register(
            "update_tags_seen",
            "Tags listed by the last successful scan of a policy's image",
            m.tags_seen.clone(),
        );
        registry.register(
            "update_decisions",
            "Policy decisions: a tag chosen, or none",
            m.decisions.clone(),
        );
        registry.register(
            "git_pushes",
            "Commits pushed by the image-update loop",
            m.git_pushes.clone(),
        );
        registry.register(
            "git_push_retries",
            "Pushes rejected by the server and recomputed",
            m.git_push_retries.clone(),
        );
        registry.register(
            "update_pull_requests",
            "Pull requests opened, updated or closed by the image-update loop",
            m.pull_requests.clone(),
        );
        registry.register(
            "forge_calls",
            "Forge API calls by operation and result",
            m.forge_calls.clone(),
        );
        registry.register("errors", "Errors by kind", m.errors.clone());
        registry.register(
            "triggers",
            "Immediate runs requested, by loop and source",
            m.triggers.clone(),
        );
        registry.register(
            "webhooks",
            "Webhook requests by endpoint and result",
            m.webhooks.clone(),
        );
        registry.register(
            "config_reloads",
            "Live reloads of the configuration",
            m.reloads.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorKind { kind }).inc();
    }

    /// One forge API call; a failed one also counts as a `forge` error.
    pub fn forge_call(&self, operation: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.forge_calls
            .get_or_create(&ForgeCall { operation, result })
            .inc();
        if !ok {
            self.error("forge");
        }
    }

    /// One pull request `opened`, `updated` or `closed` by the image-update loop.
    pub fn pull_request(&self, action: &'static str) {
        self.pull_requests
            .get_or_create(&PullRequestAction { action })
            .inc();
    }

    /// The exposition text (OpenMetrics text format, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Drops the series of a target or policy that left the configuration.
    pub fn forget_target(&self, target: &str) {
        let label = TargetLabel {
            target: target.to_string(),
        };
        self.sync_duration.remove(&label);
        self.sync_last_success.remove(&label);
        self.objects_applied.remove(&label);
        self.objects_pruned.remove(&label);
        for result in ["success", "failure"] {
            self.sync_runs.remove(&TargetResult {
                target: target.to_string(),
                result,
            });
        }
    }

    pub fn forget_policy(&self, policy: &str) {
        self.tags_seen.remove(&PolicyLabel {
            policy: policy.to_string(),
        });
        for result in ["success", "failure"] {
            self.scans.remove(&PolicyResult {
                policy: policy.to_string(),
                result,
            });
        }
        for decision in ["chosen", "none"] {
            self.decisions.remove(&PolicyDecision {
                policy: policy.to_string(),
                decision,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_named_and_labelled() {
        let m = Metrics::new();
        m.sync_duration
            .get_or_create(&TargetLabel {
                target: "dev".into(),
            })
            .observe(0.2);
        m.git_pushes.inc();
        m.pull_request("opened");
        m.error("git");
        m.triggers
            .get_or_create(&TriggerLabel {
                r#loop: "sync",
                source: "webhook",
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("capstan_sync_duration_seconds_bucket{le=\"0.2\",target=\"dev\"} 1"),
            "{text}"
        );
        assert!(text.contains("capstan_git_pushes_total 1"), "{text}");
        assert!(
            text.contains("capstan_update_pull_requests_total{action=\"opened\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("capstan_errors_total{kind=\"git\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("capstan_triggers_total{loop=\"sync\",source=\"webhook\"} 1"),
            "{text}"
        );
        m.forget_target("dev");
        assert!(!m.encode().contains("target=\"dev\""));
    }
}
