//! `capstan run` in pull-request mode reacting to GitHub's `status` webhook:
//! a commit status that turns green on the head of an approved capstan pull
//! request merges it at exactly that commit. GitHub's API is wiremock replaying
//! the documented responses (tests/fixtures/github/); the webhooks are signed
//! with the configured secret; the manifests repository is a bare repository
//! served over smart HTTP.

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::time::Duration;

use capstan::daemon::webhook_auth::github_signature;
use daemon_support::{Daemon, server_yaml, write};
use registry_support::registry::free_port;
use serde_json::{Value, json};
use support::git_http::GitHttpServer;
use support::git_repo::BareRepo;
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "status-webhook-secret";
const WAIT: Duration = Duration::from_secs(30);
/// The head of `capstan/app` (the documented pull request's head).
const HEAD: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
/// The status of `capstan/moved`: its pull request's head has moved on to HEAD.
const STALE: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

/// The documented open pull request #1347, from `branch` (head `HEAD`) into `main`.
fn pulls(branch: &str) -> Value {
    let mut list = fixture("pulls-list-open.json");
    list[0]["head"]["ref"] = json!(branch);
    list[0]["base"]["ref"] = json!("main");
    list
}

/// The documented `status` payload for `sha` with `state`, listing `branch`
/// with `head` as its head commit.
fn status(state: &str, sha: &str, branch: &str, head: &str) -> Vec<u8> {
    let mut p = fixture("webhooks/status-success.json");
    p["repository"]["full_name"] = json!("acme/fleet");
    p["state"] = json!(state);
    p["sha"] = json!(sha);
    p["commit"]["sha"] = json!(sha);
    p["branches"] = json!([
        {"name": "main", "commit": {"sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"}, "protected": true},
        {"name": branch, "commit": {"sha": head}, "protected": false},
    ]);
    serde_json::to_vec(&p).expect("encodes")
}

async fn send(d: &Daemon, body: Vec<u8>) -> (u16, String) {
    let signature = github_signature(SECRET.as_bytes(), &body);
    d.post(
        "/hooks/github",
        &[
            ("x-github-event", "status"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await
}

async fn merges(github: &MockServer) -> Vec<wiremock::Request> {
    github
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_green_status_on_an_approved_capstan_pull_request_merges_it_at_that_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("apps/deploy.yaml", "kind: ConfigMap\n")],
    );
    let git = GitHttpServer::start(&dir.path().join("srv"), None);
    let github = MockServer::start().await;
    for branch in ["capstan/app", "capstan/moved"] {
        Mock::given(method("GET"))
            .and(path("/repos/acme/fleet/pulls"))
            .and(query_param("head", format!("acme:{branch}")))
            .and(query_param("base", "main"))
            .and(query_param("state", "open"))
            .respond_with(ResponseTemplate::new(200).set_body_json(pulls(branch)))
            .mount(&github)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/repos/acme/fleet/pulls/1347/reviews"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("pull-request-reviews.json")),
        )
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{HEAD}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("combined-status.json")))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/fleet/commits/{HEAD}/check-runs")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("check-runs.json")))
        .mount(&github)
        .await;
    Mock::given(method("PUT"))
        .and(path("/repos/acme/fleet/pulls/1347/merge"))
        .and(body_json(json!({ "sha": HEAD, "merge_method": "merge" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("merge-pull-request.json")))
        .mount(&github)
        .await;

    let port = free_port();
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:\n  url: {url}\nforge: {{kind: github, apiUrl: '{api}', owner: acme, repo: fleet}}\nupdate:\n  interval: 1h\n  mode: pull-request\n  pullRequest:\n    autoMerge: true\n{server}",
            url = git.url("fleet.git"),
            api = github.uri(),
            server = server_yaml(port, "  githubWebhookSecretEnv: GH_SECRET\n"),
        ),
    );
    let mut d = Daemon::up(
        &dir.path().join("capstan.yaml"),
        port,
        &[("GH_SECRET", SECRET), ("GITHUB_TOKEN", "test-token")],
    )
    .await;

    // Unsigned: refused.
    let (code, _) = d
        .post(
            "/hooks/github",
            &[("x-github-event", "status")],
            status("success", HEAD, "capstan/app", HEAD),
        )
        .await;
    assert_eq!(code, 401);
    // Pending, failed: nothing asked of GitHub.
    for state in ["pending", "failure", "error"] {
        let (code, body) = send(&d, status(state, HEAD, "capstan/app", HEAD)).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&format!("is {state} on {HEAD}")), "{body}");
    }
    // Green, but on a branch that is not capstan's, or a capstan branch whose
    // head is another commit: ignored.
    for (branch, head) in [("feature/app", HEAD), ("capstan/app", STALE)] {
        let (code, body) = send(&d, status("success", HEAD, branch, head)).await;
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("is not the head of a capstan branch"),
            "{body}"
        );
    }
    let calls = github.received_requests().await.unwrap_or_default();
    assert!(calls.is_empty(), "no forge call yet: {calls:?}");

    // Green on `capstan/moved` at STALE, but its pull request's head is now
    // HEAD: looked up, never merged.
    let (code, body) = send(&d, status("success", STALE, "capstan/moved", STALE)).await;
    assert_eq!(code, 202, "{body}");
    d.wait_event(
        "not merged yet",
        &[("branch", "capstan/moved"), ("reason", "head moved")],
        WAIT,
    )
    .await;
    assert!(merges(&github).await.is_empty());

    // Green on the head of `capstan/app`, approved there: merged at HEAD.
    let (code, body) = send(&d, status("success", HEAD, "capstan/app", HEAD)).await;
    assert_eq!(code, 202, "{body}");
    let reply: Value = serde_json::from_str(&body).expect("JSON reply");
    assert_eq!(
        reply,
        json!({ "mergeIfApproved": ["capstan/app"], "commit": HEAD })
    );
    d.wait_event("merged", &[("branch", "capstan/app")], WAIT)
        .await;
    let put = merges(&github).await;
    assert_eq!(put.len(), 1, "exactly one merge: {put:?}");
    assert_eq!(put[0].url.path(), "/repos/acme/fleet/pulls/1347/merge");
    let sent: Value = serde_json::from_slice(&put[0].body).expect("merge body");
    assert_eq!(sent, json!({ "sha": HEAD, "merge_method": "merge" }));
    assert_eq!(
        put[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer test-token")
    );
    // Counted: the two lookups (moved, merged), both answered.
    assert_eq!(
        d.sample("capstan_forge_calls_total{operation=\"merge_if_approved\",result=\"success\"}")
            .await,
        Some(2.0)
    );
    let status = d.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{status}; log:\n{}", d.log());
}
