//! A real Gitea for tests (started by `scripts/gitea-env up`; scripts/test exports
//! `CAPSTAN_TEST_GITEA_URL` and `CAPSTAN_TEST_GITEA_TOKEN`): its REST API with the token,
//! throwaway repositories, and `git` over smart HTTP with the token as password. Without
//! the variables a test fails with a hint; it is never skipped.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::cluster::wait_for;

/// The Gitea under test and an HTTP client for its API.
pub struct Gitea {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

pub fn gitea() -> Gitea {
    let hint = "start a Gitea with `scripts/gitea-env up`, then \
                `export CAPSTAN_TEST_GITEA_URL=$(scripts/gitea-env url) \
                CAPSTAN_TEST_GITEA_TOKEN=$(scripts/gitea-env token)` (scripts/test does this)";
    let url = std::env::var("CAPSTAN_TEST_GITEA_URL")
        .unwrap_or_else(|_| panic!("CAPSTAN_TEST_GITEA_URL is not set: {hint}"));
    let token = std::env::var("CAPSTAN_TEST_GITEA_TOKEN")
        .unwrap_or_else(|_| panic!("CAPSTAN_TEST_GITEA_TOKEN is not set: {hint}"));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    Gitea {
        url: url.trim_end_matches('/').to_owned(),
        token,
        http,
    }
}

impl Gitea {
    /// Calls the API with the token; returns the status and the JSON body (Null when empty).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.api_as(&self.token, method, path, body).await
    }

    pub async fn api_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("Authorization", format!("token {token}"))
            .header("Accept", "application/json");
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body).expect("JSON body"));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e} (is `scripts/gitea-env up` running?)"));
        let status = resp.status();
        let bytes = resp.bytes().await.expect("response body");
        let json = if bytes.is_empty() {
            Value::Null
        } else if status.is_server_error() {
            // Gitea's 500 page is not JSON; keep its text for the assertion message.
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {url}: {status}, body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, json)
    }

    /// Like `api`, and asserts the status.
    pub async fn expect(
        &self,
        want: StatusCode,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, json) = self.api(method.clone(), path, body).await;
        assert_eq!(status, want, "{method} {path}: {json}");
        json
    }

    /// The login the token belongs to.
    pub async fn login(&self) -> String {
        let me = self
            .expect(StatusCode::OK, Method::GET, "/user", None)
            .await;
        me["login"].as_str().expect("login in /user").to_owned()
    }

    /// A fresh, empty repository of the token's user; deleted again by `RepoGuard`.
    pub async fn create_repo(&self, prefix: &str) -> RepoGuard<'_> {
        self.new_repo(prefix, false).await
    }

    /// A fresh repository of the token's user whose `main` holds Gitea's README commit.
    pub async fn create_repo_with_readme(&self, prefix: &str) -> RepoGuard<'_> {
        self.new_repo(prefix, true).await
    }

    async fn new_repo(&self, prefix: &str, with_readme: bool) -> RepoGuard<'_> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        let owner = self.login().await;
        let mut body = json!({ "name": name, "auto_init": with_readme, "default_branch": "main", "private": true });
        if with_readme {
            body["readme"] = json!("Default");
        }
        let repo = self
            .expect(StatusCode::CREATED, Method::POST, "/user/repos", Some(body))
            .await;
        assert_eq!(repo["full_name"], format!("{owner}/{name}"));
        if !with_readme {
            assert_eq!(
                repo["empty"], true,
                "a new repo without auto_init is empty: {repo}"
            );
        }
        let clone_url = repo["clone_url"].as_str().expect("clone_url").to_owned();
        assert!(
            clone_url.starts_with(&self.url),
            "clone_url {clone_url} is not under {}",
            self.url
        );
        RepoGuard {
            gitea: self,
            owner,
            name,
            clone_url,
        }
    }

    /// Waits until the API shows `branch` at `sha`. Gitea records a push asynchronously (a
    /// queue after the post-receive hook): right after the first push into an empty repo,
    /// `GET .../branches/main` even answers 500 (a nil-pointer panic in Gitea 1.27.3), and
    /// a pull request from a just-pushed branch can be refused for a moment.
    pub async fn wait_for_branch(&self, repo: &RepoGuard<'_>, branch: &str, sha: &str) {
        let path = repo.path(&format!("/branches/{branch}"));
        let what = format!("branch {branch} at {sha} through the API");
        wait_for(&what, Duration::from_secs(60), || async {
            let (status, body) = self.api(Method::GET, &path, None).await;
            ensure!(
                status == StatusCode::OK && body["commit"]["id"] == sha,
                "{status} {body}"
            );
            Ok(())
        })
        .await;
    }
}

/// An `Authorization` value: Basic with the token as password is how Gitea takes tokens
/// for Git over HTTP.
pub fn basic_auth(login: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {pair}")
}

/// `-c http.extraHeader=...` for git: credentials without putting them in a URL or a file.
pub fn git_auth(login: &str, password: &str) -> String {
    format!(
        "http.extraHeader=Authorization: {}",
        basic_auth(login, password)
    )
}

pub struct RepoGuard<'a> {
    pub gitea: &'a Gitea,
    pub owner: String,
    pub name: String,
    pub clone_url: String,
}

impl RepoGuard<'_> {
    pub fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    /// `owner/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// `GET /repos/{owner}/{name}{rest}`, asserting 200; the JSON body.
    pub async fn get(&self, rest: &str) -> Value {
        self.gitea
            .expect(StatusCode::OK, Method::GET, &self.path(rest), None)
            .await
    }

    /// The head commit of `branch`, through the API.
    pub async fn branch_head(&self, branch: &str) -> String {
        let body = self.get(&format!("/branches/{branch}")).await;
        body["commit"]["id"]
            .as_str()
            .expect("branch commit id")
            .to_owned()
    }

    /// The open pull requests (up to 50).
    pub async fn open_pulls(&self) -> Vec<Value> {
        let list = self.get("/pulls?state=open&limit=50").await;
        list.as_array().cloned().unwrap_or_default()
    }

    /// Pull request `number` as the API shows it.
    pub async fn pull(&self, number: u64) -> Value {
        self.get(&format!("/pulls/{number}")).await
    }

    /// The comments on issue or pull request `number`.
    pub async fn comments(&self, number: u64) -> Value {
        self.get(&format!("/issues/{number}/comments")).await
    }

    /// Polls pull request `number` (60 s at most) until `ready` accepts it; returns it.
    /// An `Err` from `ready` means "not yet" and says why.
    pub async fn wait_pull<F>(&self, what: &str, number: u64, ready: F) -> Value
    where
        F: Fn(&Value) -> anyhow::Result<()>,
    {
        wait_for(what, Duration::from_secs(60), || async {
            let pr = self.pull(number).await;
            ready(&pr)?;
            Ok(pr)
        })
        .await
    }

    /// Adds an active Gitea webhook for `events` that posts JSON to `url`, signed with
    /// `secret` (Gitea also sends GitHub's `X-Hub-Signature-256`).
    pub async fn add_webhook(&self, url: &str, secret: &str, events: &[&str]) {
        let path = self.path("/hooks");
        self.gitea
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &path,
                Some(json!({
                    "type": "gitea",
                    "active": true,
                    "events": events,
                    "config": {
                        "url": url,
                        "content_type": "json",
                        "secret": secret,
                    },
                })),
            )
            .await;
    }

    /// A commit adding `file` (its text is its name and a newline) on a new branch made
    /// from `main`, through the contents API; returns its id.
    pub async fn commit_on_new_branch(&self, branch: &str, file: &str, message: &str) -> String {
        let content = base64::engine::general_purpose::STANDARD.encode(format!("{file}\n"));
        let path = self.path(&format!("/contents/{file}"));
        let answer = self
            .gitea
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &path,
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
            .to_owned()
    }

    /// `-c` value for git: the owner with the API token as password.
    pub fn git_auth(&self) -> String {
        git_auth(&self.owner, &self.gitea.token)
    }

    /// `git push` of `refspec` from the local repository `dir` to this repository, with
    /// the token; asserts that it succeeds (`what` names it in the failure).
    pub fn push(&self, dir: &Path, refspec: &str, what: &str) {
        let pushed = git_net(
            dir,
            &[
                "-c",
                &self.git_auth(),
                "push",
                "-q",
                &self.clone_url,
                refspec,
            ],
        );
        assert_git_ok(&pushed, what);
    }

    pub async fn delete(self) {
        let path = self.path("");
        self.gitea
            .expect(StatusCode::NO_CONTENT, Method::DELETE, &path, None)
            .await;
    }
}

/// Runs `git` with a bound on stalls and without prompts; the caller checks the outcome.
pub fn git_net(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=30"])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs")
}

pub fn assert_git_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: git failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
