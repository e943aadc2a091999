//! Smoke tests of the test forge itself: a real Gitea, built from its Go module and
//! started by `scripts/gitea-env up`. They exercise what Capstan's Gitea forge relies on,
//! through Gitea's REST API and the `git` command line, independently of src/forge:
//! create a repository, push over Git smart HTTP with the API token, set and read a commit
//! status, open and list a pull request; that bad credentials are refused; and that push
//! webhooks reach a receiver on loopback, signed like GitHub's.
//!
//! The forge comes from `CAPSTAN_TEST_GITEA_URL` and `CAPSTAN_TEST_GITEA_TOKEN`
//! (scripts/test exports both). Without them the tests fail; they are never skipped.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::ensure;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::wait_for;
use support::git_repo::git;

/// The Gitea under test and an HTTP client for its API.
struct Gitea {
    url: String,
    token: String,
    http: reqwest::Client,
}

fn gitea() -> Gitea {
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
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.api_as(&self.token, method, path, body).await
    }

    async fn api_as(
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
    async fn expect(
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
    async fn login(&self) -> String {
        let me = self
            .expect(StatusCode::OK, Method::GET, "/user", None)
            .await;
        me["login"].as_str().expect("login in /user").to_owned()
    }

    /// A fresh, empty repository of the token's user; deleted again by `RepoGuard`.
    async fn create_repo(&self, prefix: &str) -> RepoGuard<'_> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        let owner = self.login().await;
        let repo = self
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/user/repos",
                Some(json!({ "name": name, "auto_init": false, "default_branch": "main", "private": true })),
            )
            .await;
        assert_eq!(repo["full_name"], format!("{owner}/{name}"));
        assert_eq!(
            repo["empty"], true,
            "a new repo without auto_init is empty: {repo}"
        );
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
    async fn wait_for_branch(&self, repo: &RepoGuard<'_>, branch: &str, sha: &str) {
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
fn basic_auth(login: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {pair}")
}

/// `-c http.extraHeader=...` for git: credentials without putting them in a URL or a file.
fn git_auth(login: &str, password: &str) -> String {
    format!(
        "http.extraHeader=Authorization: {}",
        basic_auth(login, password)
    )
}

struct RepoGuard<'a> {
    gitea: &'a Gitea,
    owner: String,
    name: String,
    clone_url: String,
}

impl RepoGuard<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    async fn delete(self) {
        let path = self.path("");
        self.gitea
            .expect(StatusCode::NO_CONTENT, Method::DELETE, &path, None)
            .await;
    }
}

/// Runs `git` with a bound on stalls and without prompts; the caller checks the outcome.
fn git_net(dir: &Path, args: &[&str]) -> Output {
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

fn assert_git_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: git failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn commit_file(dir: &Path, file: &str, text: &str, message: &str) -> String {
    std::fs::write(dir.join(file), text).expect("write file");
    git(dir, &["add", file]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// A local repository with one commit of `file`, whose `origin` is `repo`; returns it and
/// the commit id.
fn local_repo(repo: &RepoGuard<'_>, file: &str, text: &str) -> (tempfile::TempDir, String) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    git(dir, &["init", "-q", "-b", "main"]);
    let sha = commit_file(dir, file, text, "initial manifests");
    git(dir, &["remote", "add", "origin", &repo.clone_url]);
    (work, sha)
}

#[tokio::test]
async fn repo_push_status_and_pull_request() {
    let gitea = gitea();
    let repo = gitea.create_repo("smoke").await;
    let login = repo.owner.clone();
    let auth = git_auth(&login, &gitea.token);

    // Push main over smart HTTP with the token.
    let (work, base) = local_repo(&repo, "app.yaml", "image: ghcr.io/acme/app:1.0.0\n");
    let dir = work.path();
    assert_git_ok(
        &git_net(dir, &["-c", &auth, "push", "-q", "origin", "main"]),
        "push main",
    );

    // The forge sees exactly that commit on main.
    gitea.wait_for_branch(&repo, "main", &base).await;
    let meta = gitea
        .expect(StatusCode::OK, Method::GET, &repo.path(""), None)
        .await;
    assert_eq!(meta["empty"], false, "{meta}");
    assert_eq!(meta["default_branch"], "main", "{meta}");

    // A commit status, then read back: the list and the combined state.
    let status_body = json!({
        "state": "success",
        "context": "capstan/sync",
        "description": "applied 3 objects",
        "target_url": "http://127.0.0.1:1/runs/1",
    });
    let created = gitea
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &repo.path(&format!("/statuses/{base}")),
            Some(status_body),
        )
        .await;
    assert_eq!(created["status"], "success", "{created}");
    assert_eq!(created["context"], "capstan/sync", "{created}");
    let statuses = gitea
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/commits/{base}/statuses")),
            None,
        )
        .await;
    let list = statuses.as_array().expect("statuses list");
    assert_eq!(list.len(), 1, "{statuses}");
    assert_eq!(list[0]["context"], "capstan/sync");
    assert_eq!(list[0]["status"], "success");
    assert_eq!(list[0]["description"], "applied 3 objects");
    let combined = gitea
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/commits/{base}/status")),
            None,
        )
        .await;
    assert_eq!(combined["state"], "success", "{combined}");
    assert_eq!(combined["sha"], base.as_str(), "{combined}");

    // A branch with one commit on top of main, and a pull request from it.
    git(dir, &["checkout", "-q", "-b", "capstan/app"]);
    let head = commit_file(
        dir,
        "app.yaml",
        "image: ghcr.io/acme/app:1.1.0\n",
        "app: 1.0.0 -> 1.1.0",
    );
    assert_git_ok(
        &git_net(dir, &["-c", &auth, "push", "-q", "origin", "capstan/app"]),
        "push branch",
    );
    gitea.wait_for_branch(&repo, "capstan/app", &head).await;
    let pr = gitea
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &repo.path("/pulls"),
            Some(json!({
                "head": "capstan/app",
                "base": "main",
                "title": "app: 1.0.0 -> 1.1.0",
                "body": "Bumps ghcr.io/acme/app.",
            })),
        )
        .await;
    let number = pr["number"].as_u64().expect("PR number");
    assert_eq!(pr["head"]["sha"], head.as_str(), "{pr}");
    assert_eq!(pr["base"]["ref"], "main", "{pr}");
    assert_eq!(pr["mergeable"], true, "{pr}");

    let open = gitea
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path("/pulls?state=open"),
            None,
        )
        .await;
    let open = open.as_array().expect("pull list");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["number"].as_u64(), Some(number));
    assert_eq!(open[0]["head"]["ref"], "capstan/app");
    assert_eq!(open[0]["title"], "app: 1.0.0 -> 1.1.0");
    assert_eq!(open[0]["user"]["login"], login.as_str());

    // The PR's files are exactly the tag bump.
    let files = gitea
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/pulls/{number}/files")),
            None,
        )
        .await;
    let files = files.as_array().expect("file list");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["filename"], "app.yaml");
    assert_eq!(
        (
            files[0]["additions"].as_u64(),
            files[0]["deletions"].as_u64()
        ),
        (Some(1), Some(1))
    );

    repo.delete().await;
}

#[tokio::test]
async fn bad_credentials_are_refused() {
    let gitea = gitea();
    let repo = gitea.create_repo("smoke-auth").await;

    let (status, body) = gitea
        .api_as(
            "0000000000000000000000000000000000000000",
            Method::GET,
            "/user",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A push without credentials, and one with a wrong token, are refused by the Git side.
    let (work, _) = local_repo(&repo, "a.txt", "a\n");
    let dir = work.path();
    let anonymous = git_net(dir, &["push", "-q", "origin", "main"]);
    assert!(!anonymous.status.success(), "anonymous push was accepted");
    let wrong = git_auth(&repo.owner, "wrong");
    let refused = git_net(dir, &["-c", &wrong, "push", "-q", "origin", "main"]);
    assert!(
        !refused.status.success(),
        "push with a wrong token was accepted"
    );
    // git hides the 401 behind a credential prompt; ask the smart HTTP endpoint directly.
    let info_refs = format!("{}/info/refs?service=git-receive-pack", repo.clone_url);
    for (password, want) in [
        ("wrong", StatusCode::UNAUTHORIZED),
        (gitea.token.as_str(), StatusCode::OK),
    ] {
        let resp = gitea
            .http
            .get(&info_refs)
            .header("Authorization", basic_auth(&repo.owner, password))
            .send()
            .await
            .expect("GET info/refs");
        assert_eq!(resp.status(), want, "GET {info_refs}");
    }

    // Nothing arrived.
    let (status, body) = gitea
        .api(Method::GET, &repo.path("/branches/main"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    repo.delete().await;
}

/// One HTTP request as a webhook receiver sees it.
struct Delivery {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Delivery {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Accepts one connection on `listener`, reads one request (Content-Length body) and
/// answers 200.
async fn receive_one(listener: &tokio::net::TcpListener) -> Delivery {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut conn, _) = listener.accept().await.expect("accept");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.expect("read request");
        assert!(n > 0, "connection closed before the end of the headers");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().expect("Content-Length"))
        .expect("webhook without Content-Length");
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed before the end of the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .expect("answer");
    Delivery {
        headers,
        body: buf[head_end..head_end + len].to_vec(),
    }
}

/// Gitea delivers push webhooks to a receiver on loopback (`ALLOWED_HOST_LIST = loopback`
/// in scripts/gitea-env), signed the way GitHub signs them (`X-Hub-Signature-256`).
#[tokio::test]
async fn push_webhook_reaches_loopback() {
    let gitea = gitea();
    let repo = gitea.create_repo("smoke-hook").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let port = listener.local_addr().expect("local addr").port();
    let secret = "hook-secret";
    gitea
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &repo.path("/hooks"),
            Some(json!({
                "type": "gitea",
                "active": true,
                "events": ["push"],
                "config": {
                    "url": format!("http://127.0.0.1:{port}/hooks/gitea"),
                    "content_type": "json",
                    "secret": secret,
                },
            })),
        )
        .await;

    let (work, sha) = local_repo(&repo, "app.yaml", "image: ghcr.io/acme/app:2.0.0\n");
    let dir = work.path();
    let auth = git_auth(&repo.owner, &gitea.token);
    assert_git_ok(
        &git_net(dir, &["-c", &auth, "push", "-q", "origin", "main"]),
        "push main",
    );

    let delivery = tokio::time::timeout(Duration::from_secs(60), receive_one(&listener))
        .await
        .expect("no webhook delivery within 60 s");
    assert_eq!(delivery.header("X-Gitea-Event"), Some("push"));
    assert_eq!(delivery.header("X-GitHub-Event"), Some("push"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let want: String = ring::hmac::sign(&key, &delivery.body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        delivery.header("X-Hub-Signature-256"),
        Some(format!("sha256={want}").as_str())
    );
    let payload: Value = serde_json::from_slice(&delivery.body).expect("JSON payload");
    assert_eq!(payload["ref"], "refs/heads/main", "{payload}");
    assert_eq!(payload["after"], sha.as_str(), "{payload}");
    assert_eq!(
        payload["repository"]["full_name"],
        format!("{}/{}", repo.owner, repo.name)
    );

    repo.delete().await;
}
