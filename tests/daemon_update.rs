//! `capstan run` with the image-update loop against real peers: a CNCF
//! Distribution registry (started per test) that sends its push notifications
//! to the daemon, and a bare Git repository served over smart HTTP. The poll
//! interval is one hour, so a commit can only come from a notification.
//! Also: the endpoints' authentication, metrics, SIGTERM, live reload, and a
//! dead registry for one policy not holding up the others.

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::time::Duration;

use daemon_support::{Daemon, REGISTRY_TOKEN, notifying_registry, server_yaml, write};
use registry_support::push::{Image, Pusher};
use registry_support::registry::{Registry, free_port};
use support::git_http::GitHttpServer;
use support::git_repo::{BareRepo, policy_yaml};

const TRIGGER: &str = "trigger-token-for-tests";
const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    registry: Registry,
    repo: BareRepo,
    _git: GitHttpServer,
    port: u16,
    deployment: String,
}

/// A registry notifying the daemon's port, `acme/app:1.0.0` pushed, a repo
/// whose deployment uses it, a policy `app` (`>=1.0.0`), and the config.
async fn setup(extra_policies: &[(&str, String)], extra_refs: &str) -> Setup {
    let port = free_port();
    let registry = notifying_registry(port);
    let host = registry.host.clone();
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = format!(
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/acme/app:1.0.0 # {{\"$imagepolicy\": \"app\"}}\n{extra_refs}"
    );
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("apps/deploy.yaml", &deployment)],
    );
    let git = GitHttpServer::start(&dir.path().join("srv"), None);
    write(
        dir.path(),
        "policies/app.yaml",
        &policy_yaml("app", &format!("{host}/acme/app"), ">=1.0.0"),
    );
    for (name, text) in extra_policies {
        write(dir.path(), &format!("policies/{name}.yaml"), text);
    }
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:\n  url: {}\nregistries:\n  - host: {host}\n    insecure: true\nupdate:\n  interval: 1h\n{}",
            git.url("fleet.git"),
            server_yaml(
                port,
                "  registryWebhookTokenEnv: REGISTRY_TOKEN\n  triggerTokenEnv: TRIGGER_TOKEN\n"
            )
        ),
    );
    Setup {
        dir,
        registry,
        repo,
        _git: git,
        port,
        deployment,
    }
}

async fn start(s: &Setup) -> Daemon {
    Daemon::up(
        &s.dir.path().join("capstan.yaml"),
        s.port,
        &[
            ("REGISTRY_TOKEN", REGISTRY_TOKEN),
            ("TRIGGER_TOKEN", TRIGGER),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_notification_becomes_a_commit_without_waiting_for_the_poll() {
    let s = setup(&[], "").await;
    let mut d = start(&s).await;
    // The first scan at start chooses 1.0.0: nothing to write.
    d.wait_until("the first scan of `app`", WAIT, || async {
        d.update_scans("app", "success").await >= 1.0
    })
    .await;
    assert_eq!(s.repo.log().len(), 1, "nothing to commit for 1.0.0");

    // A new tag: the registry notifies the daemon, which scans and commits.
    Pusher::new(&s.registry)
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["1.1.0"])
        .await;
    d.wait_until("the commit of 1.1.0", WAIT, || async {
        s.repo.log().len() == 2
    })
    .await;
    assert_eq!(
        s.repo.show("apps/deploy.yaml"),
        s.deployment.replace("acme/app:1.0.0", "acme/app:1.1.0")
    );
    assert_eq!(s.repo.log()[0], "capstan\tchore(images): app 1.0.0 → 1.1.0");
    let head = s.repo.head();
    let event = d
        .wait_event("image updated", &[("policy", "app"), ("to", "1.1.0")], WAIT)
        .await;
    assert_eq!(event["commit"], head.trim(), "{event}");
    let triggered = d
        .wait_event(
            "update triggered",
            &[("policy", "app"), ("source", "webhook")],
            WAIT,
        )
        .await;
    assert_eq!(triggered["level"], "INFO");

    // (c) the metrics name what happened.
    let text = d.metrics().await;
    for series in [
        "capstan_git_pushes_total 1",
        "capstan_update_tags_seen{policy=\"app\"} 2",
        "capstan_update_decisions_total{policy=\"app\",decision=\"chosen\"}",
        "capstan_webhooks_total{endpoint=\"registry\",result=\"accepted\"}",
        "capstan_triggers_total{loop=\"update\",source=\"webhook\"}",
        "capstan_git_push_retries_total 0",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }

    // (d) SIGTERM: exit 0 within the bound (shutdownTimeout 5s).
    let status = d.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; log:\n{}", d.log());
    d.wait_event("stopped", &[], Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_check_tokens_and_names() {
    let s = setup(&[], "").await;
    let d = start(&s).await;
    let envelope = br#"{"events":[]}"#.to_vec();

    let (status, _) = d.post("/hooks/registry", &[], envelope.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = d
        .post("/hooks/registry?token=wrong", &[], envelope.clone())
        .await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {REGISTRY_TOKEN}");
    let (status, body) = d
        .post(
            "/hooks/registry",
            &[("authorization", &bearer)],
            envelope.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = d
        .post(
            "/hooks/registry",
            &[("authorization", &bearer)],
            b"not json".to_vec(),
        )
        .await;
    assert_eq!(status, 400);

    // Manual triggers: bearer token, 404 for unknown names.
    let (status, _) = d.post("/trigger/update/app", &[], vec![]).await;
    assert_eq!(status, 401);
    let trigger = format!("Bearer {TRIGGER}");
    let auth = [("authorization", trigger.as_str())];
    let (status, body) = d.post("/trigger/update/app", &auth, vec![]).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = d.post("/trigger/update/nope", &auth, vec![]).await;
    assert_eq!(status, 404);
    let (status, _) = d.post("/trigger/sync/nope", &auth, vec![]).await;
    assert_eq!(status, 404);

    // No GitHub secret configured: refused, not accepted unsigned.
    let (status, body) = d
        .post(
            "/hooks/github",
            &[("x-github-event", "push")],
            br#"{"ref":"refs/heads/main"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("githubWebhookSecretEnv"), "{body}");

    // Oversized body: 413 (default cap 1 MiB).
    let big = vec![b' '; 1024 * 1024 + 1];
    let (status, _) = d
        .post(
            "/hooks/registry",
            // The server answers before reading the body and closes the connection.
            &[("authorization", &bearer), ("connection", "close")],
            big,
        )
        .await;
    assert_eq!(status, 413);

    // Ready once the writer reached the Git server (after the first scan).
    d.wait_until("/readyz", WAIT, || async {
        d.get("/readyz").await.0 == 200
    })
    .await;
    let text = d.metrics().await;
    assert!(
        text.contains("capstan_webhooks_total{endpoint=\"registry\",result=\"bad_token\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("capstan_triggers_total{loop=\"update\",source=\"manual\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_registry_for_one_policy_does_not_hold_up_the_others() {
    let dead = format!("127.0.0.1:{}", free_port());
    let s = setup(
        &[(
            "gone",
            policy_yaml("gone", &format!("{dead}/acme/gone"), ">=1.0.0"),
        )],
        &format!(
            "        - name: gone\n          image: {dead}/acme/gone:1.0.0 # {{\"$imagepolicy\": \"gone\"}}\n"
        ),
    )
    .await;
    // Listed as insecure so the failure is "connection refused", not TLS.
    let config = s.dir.path().join("capstan.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "registries:\n",
            &format!("registries:\n  - host: {dead}\n    insecure: true\n"),
        ),
    )
    .expect("config");
    let d = start(&s).await;
    d.wait_until("a failed scan of `gone`", WAIT, || async {
        d.update_scans("gone", "failure").await >= 1.0
    })
    .await;
    d.wait_until("the first scan of `app`", WAIT, || async {
        d.update_scans("app", "success").await >= 1.0
    })
    .await;
    Pusher::new(&s.registry)
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["1.1.0"])
        .await;
    d.wait_until("the commit of 1.1.0", WAIT, || async {
        s.repo.log().len() == 2
    })
    .await;
    let file = s.repo.show("apps/deploy.yaml");
    assert!(file.contains("acme/app:1.1.0"), "{file}");
    assert!(file.contains(&format!("{dead}/acme/gone:1.0.0")), "{file}");
    // The failing task backs off and keeps trying.
    d.wait_until("a second failed scan of `gone`", WAIT, || async {
        d.update_scans("gone", "failure").await >= 2.0
    })
    .await;
    let text = d.metrics().await;
    assert!(
        text.contains("capstan_errors_total{kind=\"registry\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reload_live_and_a_bad_change_keeps_the_running_config() {
    let s = setup(&[], "").await;
    let d = start(&s).await;
    let trigger = format!("Bearer {TRIGGER}");
    let auth = [("authorization", trigger.as_str())];
    let (status, _) = d.post("/trigger/update/other", &auth, vec![]).await;
    assert_eq!(status, 404);

    // A new policy file: its task starts.
    Pusher::new(&s.registry)
        .image(
            "acme/other",
            &Image::new("2024-01-01T00:00:00Z"),
            &["2.0.0"],
        )
        .await;
    write(
        s.dir.path(),
        "policies/other.yaml",
        &policy_yaml(
            "other",
            &format!("{}/acme/other", s.registry.host),
            ">=1.0.0",
        ),
    );
    d.wait_event(
        "configuration reloaded",
        &[("started", "policy other")],
        WAIT,
    )
    .await;
    d.wait_until("the first scan of `other`", WAIT, || async {
        d.update_scans("other", "success").await >= 1.0
    })
    .await;
    let (status, _) = d.post("/trigger/update/other", &auth, vec![]).await;
    assert_eq!(status, 202);

    // An invalid policy: logged with file and line; the old set keeps running.
    write(
        s.dir.path(),
        "policies/bad.yaml",
        "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: bad\nspec:\n  image: x/y\n  policy:\n    semvr:\n      range: '>=1'\n",
    );
    let rejected = d
        .wait_event(
            "configuration change rejected; the running configuration stays",
            &[("error", "bad.yaml:8:")],
            WAIT,
        )
        .await;
    assert_eq!(rejected["level"], "ERROR", "{rejected}");
    let (status, _) = d.post("/trigger/update/other", &auth, vec![]).await;
    assert_eq!(status, 202, "the running config stays");
    let (status, _) = d.post("/trigger/update/app", &auth, vec![]).await;
    assert_eq!(status, 202, "the running config stays");
    let text = d.metrics().await;
    assert!(
        text.contains("capstan_config_reloads_total{result=\"invalid\"} 1"),
        "{text}"
    );

    // Fixing it applies it; removing `other` stops that task.
    std::fs::remove_file(s.dir.path().join("policies/bad.yaml")).expect("rm");
    std::fs::remove_file(s.dir.path().join("policies/other.yaml")).expect("rm");
    d.wait_event(
        "configuration reloaded",
        &[("stopped", "policy other")],
        WAIT,
    )
    .await;
    let (status, _) = d.post("/trigger/update/other", &auth, vec![]).await;
    assert_eq!(status, 404);
}

/// In pull-request mode the daemon must never push a tag bump to the branch (the
/// base): the writer pushes only the policy's head branch, then calls the forge
/// (here nothing listens; tests/daemon_pr.rs has the whole flow on a real Gitea).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_mode_never_pushes_to_the_base_branch() {
    let s = setup(&[], "").await;
    let config = s.dir.path().join("capstan.yaml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "update:\n  interval: 1h\n",
            "forge: {kind: github, apiUrl: 'http://127.0.0.1:9', owner: acme, repo: fleet}\nupdate:\n  interval: 1h\n  mode: pull-request\n",
        ),
    )
    .expect("write config");
    let mut d = start(&s).await;
    let base = s.repo.head();
    Pusher::new(&s.registry)
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["1.1.0"])
        .await;
    // The writer pushes the policy's head branch, one commit on the base head ...
    d.wait_event(
        "pull request branch pushed",
        &[("policy", "app"), ("branch", "capstan/app")],
        WAIT,
    )
    .await;
    let parent =
        support::git_repo::git(&s.repo.path(), &["log", "-1", "--format=%P", "capstan/app"]);
    assert_eq!(parent.trim(), base, "one commit on the base head");
    // ... and asks the forge (nothing listens there): the failed call is counted.
    d.wait_until("the failed forge call", WAIT, || async {
        d.sample("capstan_forge_calls_total{operation=\"find_pull_request\",result=\"failure\"}")
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    assert!(d.update_scans("app", "success").await >= 1.0);
    assert_eq!(s.repo.head(), base, "the base branch is never pushed");
    assert_eq!(s.repo.log().len(), 1, "nothing pushed: {:?}", s.repo.log());
    let status = d.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; log:\n{}", d.log());
}
