//! The `Gitea` forge client against a real Gitea (built from its Go module and
//! started by `scripts/gitea-env up`): statuses, pull requests (open, duplicate,
//! find, update, labels, compare, merge guarded by the head SHA, close with a
//! comment) on a fresh repository. Setup goes through Gitea's REST API directly.
//!
//! The forge comes from `CAPSTAN_TEST_GITEA_URL` and `CAPSTAN_TEST_GITEA_TOKEN`
//! (scripts/test exports both). Without them the test fails; it is never skipped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use capstan::forge::{
    CommitState, CommitStatus, Forge, ForgeError, Gitea, MergeMethod, NewPullRequest, Opened,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start a Gitea with `scripts/gitea-env up`, then \
             `export CAPSTAN_TEST_GITEA_URL=$(scripts/gitea-env url) \
             CAPSTAN_TEST_GITEA_TOKEN=$(scripts/gitea-env token)` (scripts/test does this)"
        )
    })
}

fn api() -> Api {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    Api {
        url: env("CAPSTAN_TEST_GITEA_URL")
            .trim_end_matches('/')
            .to_string(),
        token: env("CAPSTAN_TEST_GITEA_TOKEN"),
        http: reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client"),
    }
}

impl Api {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e} (is `scripts/gitea-env up` running?)"));
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, json)
    }

    async fn expect(&self, want: u16, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.call(method.clone(), path, body).await;
        assert_eq!(status.as_u16(), want, "{method} {path}: {json}");
        json
    }

    /// A commit adding `file` on a new branch made from `main`; returns its SHA.
    async fn commit_on_branch(
        &self,
        repo: &str,
        branch: &str,
        file: &str,
        message: &str,
    ) -> String {
        let content = base64::engine::general_purpose::STANDARD.encode(format!("{file}\n"));
        let answer = self
            .expect(
                201,
                Method::POST,
                &format!("/repos/{repo}/contents/{file}"),
                Some(json!({
                    "content": content,
                    "message": message,
                    "branch": "main",
                    "new_branch": branch,
                })),
            )
            .await;
        answer["commit"]["sha"]
            .as_str()
            .expect("commit sha")
            .to_string()
    }

    /// Polls (bounded) until Gitea has finished its mergeability check of a PR.
    async fn wait_mergeable(&self, repo: &str, number: u64) {
        for _ in 0..100 {
            let pr = self
                .expect(
                    200,
                    Method::GET,
                    &format!("/repos/{repo}/pulls/{number}"),
                    None,
                )
                .await;
            if pr["mergeable"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pull request #{number} never became mergeable");
    }
}

#[tokio::test]
async fn pull_requests_and_statuses_against_a_real_gitea() {
    let api = api();
    let owner = api.expect(200, Method::GET, "/user", None).await["login"]
        .as_str()
        .expect("login")
        .to_string();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("forge-live-{}-{nanos}", std::process::id());
    let repo = format!("{owner}/{name}");
    api.expect(
        201,
        Method::POST,
        "/user/repos",
        Some(json!({ "name": name, "auto_init": true, "readme": "Default", "default_branch": "main", "private": true })),
    )
    .await;
    let base_sha = api
        .expect(
            200,
            Method::GET,
            &format!("/repos/{repo}/branches/main"),
            None,
        )
        .await["commit"]["id"]
        .as_str()
        .expect("main sha")
        .to_string();
    let head_sha = api
        .commit_on_branch(
            &repo,
            "capstan/app",
            "app.yaml",
            "chore(images): app 1.3.0\n\nbody",
        )
        .await;
    api.expect(
        201,
        Method::POST,
        &format!("/repos/{repo}/labels"),
        Some(json!({ "name": "dependencies", "color": "#0075ca" })),
    )
    .await;

    let forge = Gitea::new(
        &format!("{}/api/v1", api.url),
        Some(api.token.clone()),
        &owner,
        &name,
    )
    .unwrap();
    assert_eq!(forge.bot_login().await.unwrap(), owner);

    // Statuses.
    forge
        .set_commit_status(&CommitStatus::new(
            &head_sha,
            CommitState::Success,
            "capstan/dev",
            "12 applied",
        ))
        .await
        .unwrap();
    let combined = forge.combined_status(&head_sha).await.unwrap();
    assert!(combined.is_green(), "{combined:?}");
    assert_eq!(combined.statuses[0].context, "capstan/dev");

    // Open, then a duplicate answers with the open one (Gitea's 409).
    assert_eq!(
        forge
            .find_open_pull_request("capstan/app", "main")
            .await
            .unwrap(),
        None
    );
    let new = NewPullRequest {
        title: "chore(images): app 1.3.0".into(),
        body: "first".into(),
        head: "capstan/app".into(),
        base: "main".into(),
        draft: false,
    };
    let Opened::Created(pr) = forge.create_pull_request(&new).await.unwrap() else {
        panic!("expected a new pull request")
    };
    assert_eq!(pr.head_sha, head_sha);
    assert_eq!(pr.author.as_deref(), Some(owner.as_str()));
    let again = forge.create_pull_request(&new).await.unwrap();
    assert!(
        matches!(&again, Opened::AlreadyOpen(p) if p.number == pr.number),
        "{again:?}"
    );
    let found = forge
        .find_open_pull_request("capstan/app", "main")
        .await
        .unwrap()
        .expect("open");
    assert_eq!(found.number, pr.number);

    // Update, labels, reviewers (only the bot: nothing to ask), compare.
    let updated = forge
        .update_pull_request(pr.number, "chore(images): app 1.4.0", "second")
        .await
        .unwrap();
    assert_eq!(
        (updated.title.as_str(), updated.body.as_str()),
        ("chore(images): app 1.4.0", "second")
    );
    forge
        .add_labels(pr.number, &["dependencies".to_string()])
        .await
        .unwrap();
    let labels = api
        .expect(
            200,
            Method::GET,
            &format!("/repos/{repo}/issues/{}/labels", pr.number),
            None,
        )
        .await;
    assert_eq!(labels[0]["name"], "dependencies", "{labels}");
    let err = forge
        .add_labels(pr.number, &["nope".to_string()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("label \"nope\" does not exist"),
        "{err}"
    );
    forge
        .request_reviewers(pr.number, std::slice::from_ref(&owner), &[])
        .await
        .unwrap();
    let cmp = forge
        .compare(&owner, &name, &base_sha, &head_sha)
        .await
        .unwrap();
    assert_eq!(cmp.total_commits, 1, "{cmp:?}");
    assert_eq!(cmp.commits[0].sha, head_sha);
    assert_eq!(cmp.commits[0].summary, "chore(images): app 1.3.0");
    assert!(
        cmp.html_url
            .ends_with(&format!("/{repo}/compare/{base_sha}...{head_sha}"))
    );

    // Merge guarded by the head SHA.
    api.wait_mergeable(&repo, pr.number).await;
    let stale = forge
        .merge_pull_request(pr.number, &base_sha, MergeMethod::Merge)
        .await;
    assert!(
        matches!(&stale, Err(ForgeError::Conflict { message, .. }) if message == "head out of date"),
        "a stale head SHA must not merge: {stale:?}"
    );
    let merge_sha = forge
        .merge_pull_request(pr.number, &head_sha, MergeMethod::Merge)
        .await
        .unwrap();
    assert_eq!(merge_sha.len(), 40, "{merge_sha}");
    let merged = api
        .expect(
            200,
            Method::GET,
            &format!("/repos/{repo}/pulls/{}", pr.number),
            None,
        )
        .await;
    assert_eq!(merged["merged"], true);

    // Close another one with a comment.
    api.commit_on_branch(&repo, "capstan/web", "web.yaml", "chore(images): web 2.0.0")
        .await;
    let Opened::Created(web) = forge
        .create_pull_request(&NewPullRequest {
            title: "web".into(),
            body: String::new(),
            head: "capstan/web".into(),
            base: "main".into(),
            draft: false,
        })
        .await
        .unwrap()
    else {
        panic!("expected a new pull request")
    };
    forge
        .close_pull_request(web.number, "Superseded: `main` already has web 2.0.0.")
        .await
        .unwrap();
    let closed = api
        .expect(
            200,
            Method::GET,
            &format!("/repos/{repo}/pulls/{}", web.number),
            None,
        )
        .await;
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["merged"], false);
    let comments = api
        .expect(
            200,
            Method::GET,
            &format!("/repos/{repo}/issues/{}/comments", web.number),
            None,
        )
        .await;
    assert_eq!(
        comments[0]["body"],
        "Superseded: `main` already has web 2.0.0."
    );

    api.expect(204, Method::DELETE, &format!("/repos/{repo}"), None)
        .await;
}
