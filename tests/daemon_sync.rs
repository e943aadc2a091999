//! `capstan run` with the sync loop against real peers: a bare Git repository
//! served over smart HTTP and the real control plane (CAPSTAN_TEST_KUBECONFIG,
//! or the local one of scripts/k8s-env; the test fails when there is none).
//! A signed GitHub `push` webhook makes the daemon sync at once (the interval
//! is one hour); a forged one is refused and triggers nothing. The daemon runs
//! with `--leader-elect`: it writes only once it holds the Lease.

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::time::Duration;

use capstan::daemon::webhook_auth::github_signature;
use daemon_support::sync_target::{
    applied, assert_inventory_is_configmaps, configmap, configmaps, sync_config,
};
use daemon_support::{Daemon, server_yaml, write};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use registry_support::registry::free_port;
use support::cluster::{TestNamespace, kubeconfig_path};
use support::git_http::GitHttpServer;
use support::git_repo::BareRepo;

const SECRET: &str = "github-webhook-secret-for-tests";
const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_github_push_syncs_at_once_and_a_forged_one_is_refused() {
    let ns = TestNamespace::new("daemon-sync").await;
    let api = ns.api::<ConfigMap>();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("app/first.yaml", &configmap("first"))],
    );
    let git = GitHttpServer::start(&dir.path().join("srv"), None);
    let port = free_port();
    // The forge: GitHub's documented answer to a commit status; events are
    // judged against `acme/fleet`.
    let github = wiremock::MockServer::start().await;
    let created: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/github/create-commit-status.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture JSON");
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path_regex(
            "^/repos/acme/fleet/statuses/[0-9a-f]{40}$",
        ))
        .respond_with(wiremock::ResponseTemplate::new(201).set_body_json(created))
        .mount(&github)
        .await;
    for (path, fixture) in [
        ("^/repos/acme/fleet/deployments$", "deployment.json"),
        (
            "^/repos/acme/fleet/deployments/1/statuses$",
            "deployment-status.json",
        ),
    ] {
        let body: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/github/{fixture}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("fixture"),
        )
        .expect("fixture JSON");
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path_regex(path))
            .respond_with(wiremock::ResponseTemplate::new(201).set_body_json(body))
            .mount(&github)
            .await;
    }
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:\n  url: {url}\nforge: {{kind: github, apiUrl: '{api}', owner: acme, repo: fleet}}\nleaderElection:\n  namespace: {ns}\n  leaseDuration: 3s\n  renewDeadline: 2s\n  retryPeriod: 500ms\ntargets:\n  - name: {ns}\n    path: app\n    kubeconfig: {kc}\n    namespace: {ns}\n    interval: 1h\n    healthTimeout: 30s\n{server}",
            url = git.url("fleet.git"),
            api = github.uri(),
            ns = ns.name,
            kc = kubeconfig_path(),
            server = server_yaml(
                port,
                "  githubWebhookSecretEnv: GH_SECRET\n  maxBodyBytes: 4096\n"
            ),
        ),
    );
    let kubeconfig = kubeconfig_path();
    let mut d = Daemon::up_with(
        &dir.path().join("capstan.yaml"),
        port,
        &[
            ("GH_SECRET", SECRET),
            ("KUBECONFIG", &kubeconfig),
            ("GITHUB_TOKEN", "test-token"),
        ],
        &["--leader-elect"],
    )
    .await;

    // The first pass at start applies what is in Git.
    d.wait_until("ConfigMap `first`", WAIT, || async {
        api.get_opt("first").await.ok().flatten().is_some()
    })
    .await;
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 200);
    let synced = d.wait_event("synced", &[("target", &ns.name)], WAIT).await;
    assert!(
        synced["commit"].as_str().is_some_and(|c| c.len() == 12),
        "{synced}"
    );

    // A human commit; nothing polls for an hour.
    let commit = repo.human_commit("add second", &[("app/second.yaml", &configmap("second"))]);
    let push = serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": commit.trim(),
        "deleted": false,
        "repository": { "full_name": "acme/fleet" },
    })
    .to_string()
    .into_bytes();

    // Forged: 401, and nothing triggered.
    let (status, _) = d
        .post(
            "/hooks/github",
            &[
                ("x-github-event", "push"),
                (
                    "x-hub-signature-256",
                    &github_signature(b"wrong secret", &push),
                ),
            ],
            push.clone(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = d
        .post("/hooks/github", &[("x-github-event", "push")], push.clone())
        .await;
    assert_eq!(status, 401, "an unsigned request");
    // Oversized (maxBodyBytes 4096): 413.
    let big = vec![b' '; 5000];
    let (status, _) = d
        .post(
            "/hooks/github",
            &[
                ("x-github-event", "push"),
                // The server answers before reading the body and closes the connection.
                ("connection", "close"),
                (
                    "x-hub-signature-256",
                    &github_signature(SECRET.as_bytes(), &big),
                ),
            ],
            big,
        )
        .await;
    assert_eq!(status, 413);
    let text = d.metrics().await;
    assert!(
        !text.contains("capstan_triggers_total{loop=\"sync\""),
        "a refused webhook triggered a sync:\n{text}"
    );
    assert!(
        text.contains("capstan_webhooks_total{endpoint=\"github\",result=\"bad_signature\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("capstan_errors_total{kind=\"webhook_signature\"} 2"),
        "{text}"
    );
    assert!(api.get_opt("second").await.expect("get").is_none());

    // Signed, but not about the base branch of acme/fleet: 200, nothing to do.
    let signed = |body: &[u8]| github_signature(SECRET.as_bytes(), body);
    for (event, body, why) in [
        (
            "push",
            serde_json::json!({"ref": "refs/heads/main", "after": "a", "deleted": false, "repository": {"full_name": "other/repo"}}),
            "event from `other/repo`",
        ),
        (
            "pull_request",
            serde_json::json!({"action": "closed", "repository": {"full_name": "acme/fleet"}, "pull_request": {"number": 7, "merged": false, "base": {"ref": "main"}, "head": {"ref": "capstan/app"}}}),
            "closed without merge",
        ),
    ] {
        let body = body.to_string().into_bytes();
        let (status, text) = d
            .post(
                "/hooks/github",
                &[
                    ("x-github-event", event),
                    ("x-hub-signature-256", &signed(&body)),
                ],
                body.clone(),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(why), "{text}");
    }
    let calls = github.received_requests().await.unwrap_or_default();
    assert!(
        calls
            .iter()
            .all(|r| r.url.path().contains("/statuses") || r.url.path().ends_with("/deployments")),
        "only the first pass's statuses and deployment so far: {calls:?}"
    );

    // Signed: 202, and the new commit is applied.
    let (status, body) = d
        .post(
            "/hooks/github",
            &[
                ("x-github-event", "push"),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                (
                    "x-hub-signature-256",
                    &github_signature(SECRET.as_bytes(), &push),
                ),
            ],
            push,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(&ns.name), "{body}");
    d.wait_until("ConfigMap `second`", WAIT, || async {
        api.get_opt("second").await.ok().flatten().is_some()
    })
    .await;
    let short = &commit.trim()[..12];
    d.wait_event(
        "synced",
        &[("target", ns.name.as_str()), ("commit", short)],
        WAIT,
    )
    .await;

    // Statuses on the applied commit: pending, then success, under capstan/<target>.
    let context = format!("capstan/{}", ns.name);
    let statuses: Vec<(String, String)> = github
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path().ends_with(commit.trim()))
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            assert_eq!(body["context"], context.as_str(), "{body}");
            (
                body["state"].as_str().unwrap_or_default().to_string(),
                body["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    assert_eq!(statuses[0].0, "pending");
    assert_eq!(statuses[1].0, "success");
    assert!(statuses[1].1.contains("1 created"), "{statuses:?}");
    // And a GitHub Deployment of that commit, environment = the target.
    let deployments: Vec<serde_json::Value> = github
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/repos/acme/fleet/deployments")
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    assert!(
        deployments
            .iter()
            .any(|d| d["ref"] == commit.trim() && d["environment"] == ns.name.as_str()),
        "{deployments:?}"
    );

    // (c) the sync series.
    let text = d.metrics().await;
    let target = format!("target=\"{}\"", ns.name);
    for series in [
        format!("capstan_sync_duration_seconds_count{{{target}}} 2"),
        format!("capstan_sync_runs_total{{{target},result=\"success\"}} 2"),
        format!("capstan_sync_objects_applied_total{{{target}}} 2"),
        format!("capstan_sync_last_success_timestamp_seconds{{{target}}}"),
        "capstan_triggers_total{loop=\"sync\",source=\"webhook\"} 1".to_string(),
        "capstan_forge_calls_total{operation=\"commit_status\",result=\"success\"} 4".to_string(),
    ] {
        assert!(text.contains(&series), "missing {series} in\n{text}");
    }

    // The Lease was held while writing, and is released on SIGTERM.
    let leases: kube::Api<Lease> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let lease = leases
        .get("capstan-leader")
        .await
        .expect("the Lease exists");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.ends_with(&format!("_{}", d.pid())),
        "holder {holder:?}"
    );
    d.wait_event(
        "leader election on; writes wait for the Lease",
        &[("lease", "capstan-leader")],
        WAIT,
    )
    .await;

    let status = d.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; log:\n{}", d.log());
    let lease = leases
        .get("capstan-leader")
        .await
        .expect("the Lease exists");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.is_empty(),
        "the Lease is released on stop: {holder:?}"
    );
}

/// Fault matrix: `kill -9` in the middle of a first sync of 500 objects, then a
/// restart. The new process converges: every object applied, the inventory holds
/// exactly what is in Git, and nothing was written to Git by the sync loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_then_restarted_converges_with_an_intact_inventory() {
    const OBJECTS: usize = 500;
    let ns = TestNamespace::new("daemon-kill").await;
    let api = ns.api::<ConfigMap>();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("app/many.yaml", &configmaps(OBJECTS))],
    );
    let git = GitHttpServer::start(&dir.path().join("srv"), None);
    let kubeconfig = kubeconfig_path();
    let config = |port: u16| {
        write(
            dir.path(),
            "capstan.yaml",
            &sync_config(&git.url("fleet.git"), &ns.name, &kubeconfig, port),
        )
    };

    let port = free_port();
    config(port);
    let mut first = Daemon::up(
        &dir.path().join("capstan.yaml"),
        port,
        &[("KUBECONFIG", &kubeconfig)],
    )
    .await;
    first
        .wait_until("the first objects of the pass", WAIT, || async {
            applied(&api, &ns.name).await > 0
        })
        .await;
    first.kill_hard();
    let at_kill = applied(&api, &ns.name).await;
    eprintln!("killed with {at_kill} of {OBJECTS} objects applied");
    assert!(
        at_kill < OBJECTS,
        "the kill must land mid-pass ({at_kill} of {OBJECTS} applied already)"
    );

    let port = free_port();
    config(port);
    let mut second = Daemon::up(
        &dir.path().join("capstan.yaml"),
        port,
        &[("KUBECONFIG", &kubeconfig)],
    )
    .await;
    second
        .wait_event("synced", &[("target", &ns.name)], WAIT)
        .await;
    assert_eq!(
        applied(&api, &ns.name).await,
        OBJECTS,
        "every object applied after the restart"
    );
    assert_inventory_is_configmaps(&ns.client, &ns.name, &ns.name, OBJECTS).await;
    assert_eq!(repo.log().len(), 1, "the sync loop never writes Git");
    let status = second.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}");
}
