//! The daemon's HTTP endpoints (axum).
//!
//! | endpoint | who may call | does |
//! |---|---|---|
//! | `POST /hooks/github` | GitHub (or Gitea), signed with the webhook secret | `push` to the branch or a merged `pull_request` into it → sync every target (and, in `pull-request` mode, rebuild the pull requests on the new base); `package`/`registry_package` → scan the policies of that image |
//! | `POST /hooks/registry` | a registry, with the shared token | a tag pushed → scan the policies watching that image |
//! | `POST /trigger/sync/{target}` | bearer trigger token | sync one target now |
//! | `POST /trigger/update/{policy}` | bearer trigger token | scan one policy now |
//! | `GET /healthz` | anyone | the process answers |
//! | `GET /readyz` | anyone | config loaded and Git reached once |
//! | `GET /metrics` | anyone | Prometheus text |
//!
//! Every authenticated endpoint refuses (403) when its secret is not
//! configured, rather than accepting unauthenticated requests. The body is
//! read under `server.maxBodyBytes` (413 beyond) and signatures are checked
//! on the raw bytes before anything parses them. Once the daemon stops, the
//! endpoints that trigger work answer 503.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::metrics::WebhookLabel;
use super::state::Shared;
use super::webhook_auth::{bearer, github_signature_ok, token_ok};
use crate::registry::webhook;
use crate::update::pr_events::{self, Reaction};

/// Serves until `shared.stop` is cancelled; requests in flight then finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    let stop = shared.stop.clone();
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/hooks/github", post(github_hook))
        .route("/hooks/registry", post(registry_hook))
        .route("/trigger/sync/{target}", post(trigger_sync))
        .route("/trigger/update/{policy}", post(trigger_update))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn message(status: StatusCode, text: &str) -> Response {
    reply(status, json!({ "message": text }))
}

fn count(shared: &Shared, endpoint: &'static str, result: &'static str) {
    shared
        .metrics
        .webhooks
        .get_or_create(&WebhookLabel { endpoint, result })
        .inc();
}

/// Reads the body under the cap: `Content-Length` first, then while reading.
async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Response> {
    let too_large = || {
        message(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {limit} bytes (server.maxBodyBytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn stopping() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "capstan is shutting down; no new work is taken",
    )
}

async fn github_hook(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const EP: &str = "github";
    let routes = shared.routes();
    let Some(secret) = routes.secrets.github_webhook.as_deref() else {
        count(&shared, EP, "refused");
        return message(
            StatusCode::FORBIDDEN,
            "no GitHub webhook secret is configured (server.githubWebhookSecretEnv); unsigned webhooks are refused",
        );
    };
    let body = match read_body(&headers, body, routes.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => {
            count(&shared, EP, "too_large");
            shared.metrics.error("webhook_too_large");
            return r;
        }
    };
    let delivery = header_str(&headers, "x-github-delivery").unwrap_or("-");
    if !github_signature_ok(secret, &body, header_str(&headers, "x-hub-signature-256")) {
        count(&shared, EP, "bad_signature");
        shared.metrics.error("webhook_signature");
        tracing::warn!(
            delivery,
            "GitHub webhook rejected: missing or wrong X-Hub-Signature-256"
        );
        return message(
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256",
        );
    }
    if shared.stop.is_cancelled() {
        return stopping();
    }
    let event = header_str(&headers, "x-github-event").unwrap_or("");
    let payload: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            count(&shared, EP, "bad_payload");
            shared.metrics.error("webhook_payload");
            return message(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}"));
        }
    };
    if let Some(rules) = &routes.github
        && matches!(
            event,
            "push" | "pull_request" | "pull_request_review" | "status" | "check_suite"
        )
    {
        let response = pr_reaction(&shared, &routes, rules, event, delivery, &body);
        count(&shared, EP, "accepted");
        return response;
    }
    let branch_ref = format!("refs/heads/{}", routes.branch);
    let str_at = |ptr: &str| payload.pointer(ptr).and_then(Value::as_str);
    let response = match event {
        "ping" => reply(StatusCode::OK, json!({ "message": "pong" })),
        "push" => {
            if str_at("/ref") == Some(branch_ref.as_str()) {
                let head = str_at("/after").unwrap_or("-");
                tracing::info!(delivery, commit = %head, branch = %routes.branch, "GitHub push to the branch");
                let targets = shared.trigger_all_syncs("webhook");
                reply(StatusCode::ACCEPTED, json!({ "sync": targets }))
            } else {
                ignored(&format!(
                    "push to {} (not {branch_ref})",
                    str_at("/ref").unwrap_or("?")
                ))
            }
        }
        "pull_request" => {
            let merged = str_at("/action") == Some("closed")
                && payload
                    .pointer("/pull_request/merged")
                    .and_then(Value::as_bool)
                    == Some(true);
            let into_branch = str_at("/pull_request/base/ref") == Some(routes.branch.as_str());
            if merged && into_branch {
                let commit = str_at("/pull_request/merge_commit_sha").unwrap_or("-");
                tracing::info!(delivery, commit = %commit, branch = %routes.branch, "pull request merged into the branch");
                let targets = shared.trigger_all_syncs("webhook");
                reply(StatusCode::ACCEPTED, json!({ "sync": targets }))
            } else {
                ignored("pull_request event that is not a merge into the branch")
            }
        }
        "package" | "registry_package" => match webhook::parse_github(event, &body) {
            Ok(events) => registry_events(&shared, &events),
            Err(e) => {
                count(&shared, EP, "bad_payload");
                shared.metrics.error("webhook_payload");
                return message(StatusCode::BAD_REQUEST, &e.to_string());
            }
        },
        "pull_request_review" | "installation" | "installation_repositories" => {
            tracing::info!(
                delivery,
                event,
                "GitHub event accepted; nothing to do for it yet"
            );
            ignored(&format!("{event}: nothing to do"))
        }
        "" => {
            count(&shared, EP, "bad_payload");
            return message(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header");
        }
        other => ignored(&format!("event {other} is not used")),
    };
    count(&shared, EP, "accepted");
    response
}

/// `push`, `pull_request`, `pull_request_review`, `status` and `check_suite`
/// judged by [`pr_events`]: sync when the base branch moved, merge an approved
/// capstan pull request when its status is green.
fn pr_reaction(
    shared: &Arc<Shared>,
    routes: &super::state::Routes,
    rules: &super::state::GitHubRules,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Response {
    let parsed = match pr_events::parse(event, body) {
        Ok(e) => e,
        Err(e) => {
            shared.metrics.error("webhook_payload");
            tracing::warn!(delivery, event, error = %e, "GitHub webhook payload refused");
            return message(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let reaction = pr_events::react(
        &parsed,
        &pr_events::Rules {
            repository: &rules.repository,
            base_branch: &rules.base_branch,
            branch_template: &rules.branch_template,
            auto_merge: rules.auto_merge,
        },
    );
    match reaction {
        Reaction::TriggerSync { commit, reason } => {
            tracing::info!(delivery, commit = %commit, reason = %reason, "GitHub event: syncing");
            let targets = shared.trigger_all_syncs("webhook");
            // Pull-request mode: the pull requests follow the new base.
            if shared.trigger_write("webhook") {
                reply(
                    StatusCode::ACCEPTED,
                    json!({ "sync": targets, "pullRequests": true }),
                )
            } else {
                reply(StatusCode::ACCEPTED, json!({ "sync": targets }))
            }
        }
        Reaction::MergeIfGreen {
            number,
            sha,
            policy,
        } => {
            let Some(forge) = routes.forge.clone() else {
                return ignored("approved, but no forge is configured to merge with");
            };
            let metrics = shared.metrics.clone();
            tracing::info!(delivery, policy = %policy, pull_request = number, commit = %sha, "approved capstan pull request: merging when green");
            let reply_body = json!({ "merge": number, "policy": policy });
            tokio::spawn(async move {
                let result = pr_events::merge_if_green(forge.0.as_ref(), number, &sha).await;
                metrics.forge_call("merge_if_green", result.is_ok());
                match result {
                    Ok(pr_events::Merge::Merged(commit)) => {
                        tracing::info!(policy = %policy, pull_request = number, commit = %commit, "merged")
                    }
                    Ok(pr_events::Merge::Waiting(why)) => {
                        tracing::info!(policy = %policy, pull_request = number, reason = %why, "not merged yet")
                    }
                    Err(e) => {
                        metrics.error("forge");
                        tracing::warn!(policy = %policy, pull_request = number, error = %e, "merge failed")
                    }
                }
            });
            reply(StatusCode::ACCEPTED, reply_body)
        }
        Reaction::MergeIfApproved { sha, branches } => {
            let Some(forge) = routes.forge.clone() else {
                return ignored("green, but no forge is configured to merge with");
            };
            let metrics = shared.metrics.clone();
            let base = rules.base_branch.clone();
            let names: Vec<&str> = branches.iter().map(|(_, b)| b.as_str()).collect();
            tracing::info!(delivery, commit = %sha, branches = ?names, "green capstan branch head: merging when approved");
            let reply_body = json!({ "mergeIfApproved": names, "commit": sha });
            tokio::spawn(async move {
                for (policy, branch) in branches {
                    let result =
                        pr_events::merge_if_approved(forge.0.as_ref(), &branch, &base, &sha).await;
                    metrics.forge_call("merge_if_approved", result.is_ok());
                    match result {
                        Ok(pr_events::Merge::Merged(commit)) => {
                            tracing::info!(policy = %policy, branch = %branch, commit = %commit, "merged")
                        }
                        Ok(pr_events::Merge::Waiting(why)) => {
                            tracing::info!(policy = %policy, branch = %branch, reason = %why, "not merged yet")
                        }
                        Err(e) => {
                            metrics.error("forge");
                            tracing::warn!(policy = %policy, branch = %branch, error = %e, "merge failed")
                        }
                    }
                }
            });
            reply(StatusCode::ACCEPTED, reply_body)
        }
        Reaction::Nothing(why) => ignored(&why),
    }
}

fn ignored(why: &str) -> Response {
    reply(StatusCode::OK, json!({ "ignored": why }))
}

/// Distribution (v2.8) sends the manifest push event before it links the tag, so
/// a scan started at once can list the tags without the new one: the policies
/// are scanned once more this long after the event.
const RESCAN_AFTER_PUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Triggers the policies of every tag push among `events` (now, and once more
/// after [`RESCAN_AFTER_PUSH`]).
fn registry_events(shared: &Arc<Shared>, events: &[crate::registry::PushEvent]) -> Response {
    let mut policies: Vec<String> = Vec::new();
    for event in events.iter().filter(|e| e.tag.is_some()) {
        for name in shared.trigger_for_push(event, "webhook") {
            if !policies.contains(&name) {
                policies.push(name);
            }
        }
    }
    let status = if policies.is_empty() {
        StatusCode::OK
    } else {
        let shared = shared.clone();
        let again = policies.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESCAN_AFTER_PUSH).await;
            for policy in &again {
                shared.trigger_update(policy, "webhook-rescan");
            }
        });
        StatusCode::ACCEPTED
    };
    reply(
        status,
        json!({ "update": policies, "events": events.len() }),
    )
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// A registry's push notification. Besides triggering scans, it ends the
/// cool-down of the registry that sent it (Distribution, Docker Hub, Harbor:
/// it is up, whatever the last failed request said); a GitHub-shaped payload
/// does not, as github.com sent it, not the registry.
async fn registry_hook(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const EP: &str = "registry";
    let routes = shared.routes();
    let Some(expected) = routes.secrets.registry_token.as_deref() else {
        count(&shared, EP, "refused");
        return message(
            StatusCode::FORBIDDEN,
            "no registry webhook token is configured (server.registryWebhookTokenEnv); unauthenticated notifications are refused",
        );
    };
    let presented = bearer(header_str(&headers, "authorization")).or(query.token.as_deref());
    if !presented.is_some_and(|p| token_ok(expected, p)) {
        count(&shared, EP, "bad_token");
        shared.metrics.error("webhook_token");
        tracing::warn!("registry webhook rejected: missing or wrong token");
        return message(StatusCode::UNAUTHORIZED, "missing or wrong token");
    }
    let body = match read_body(&headers, body, routes.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => {
            count(&shared, EP, "too_large");
            shared.metrics.error("webhook_too_large");
            return r;
        }
    };
    if shared.stop.is_cancelled() {
        return stopping();
    }
    match webhook::parse(None, &body) {
        Ok(events) => {
            count(&shared, EP, "accepted");
            // The registry sent this, so it is up: the scans below must not
            // fail on a cool-down left from an outage.
            shared.registries_up(&events);
            registry_events(&shared, &events)
        }
        Err(e) => {
            count(&shared, EP, "bad_payload");
            shared.metrics.error("webhook_payload");
            message(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

/// Checks the trigger token; `Some(response)` when the request is refused.
fn trigger_refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let routes = shared.routes();
    let Some(expected) = routes.secrets.trigger_token.as_deref() else {
        return Some(message(
            StatusCode::FORBIDDEN,
            "no trigger token is configured (server.triggerTokenEnv); manual triggers are refused",
        ));
    };
    if !bearer(header_str(headers, "authorization")).is_some_and(|p| token_ok(expected, p)) {
        shared.metrics.error("trigger_token");
        return Some(message(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    shared.stop.is_cancelled().then(stopping)
}

async fn trigger_sync(
    State(shared): State<Arc<Shared>>,
    Path(target): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = trigger_refused(&shared, &headers) {
        return refused;
    }
    if shared.trigger_sync(&target, "manual") {
        reply(StatusCode::ACCEPTED, json!({ "sync": [target] }))
    } else {
        message(
            StatusCode::NOT_FOUND,
            &format!("no target named {target:?}"),
        )
    }
}

async fn trigger_update(
    State(shared): State<Arc<Shared>>,
    Path(policy): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = trigger_refused(&shared, &headers) {
        return refused;
    }
    if shared.trigger_update(&policy, "manual") {
        reply(StatusCode::ACCEPTED, json!({ "update": [policy] }))
    } else {
        message(
            StatusCode::NOT_FOUND,
            &format!("no policy named {policy:?}"),
        )
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Git repository has not been reached yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}
