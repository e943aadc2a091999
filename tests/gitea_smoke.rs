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
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::git_repo::git;
use support::gitea::{RepoGuard, assert_git_ok, basic_auth, git_auth, git_net, gitea};

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
    let meta = repo.get("").await;
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
    let statuses = repo.get(&format!("/commits/{base}/statuses")).await;
    let list = statuses.as_array().expect("statuses list");
    assert_eq!(list.len(), 1, "{statuses}");
    assert_eq!(list[0]["context"], "capstan/sync");
    assert_eq!(list[0]["status"], "success");
    assert_eq!(list[0]["description"], "applied 3 objects");
    let combined = repo.get(&format!("/commits/{base}/status")).await;
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

    let open = repo.get("/pulls?state=open").await;
    let open = open.as_array().expect("pull list");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["number"].as_u64(), Some(number));
    assert_eq!(open[0]["head"]["ref"], "capstan/app");
    assert_eq!(open[0]["title"], "app: 1.0.0 -> 1.1.0");
    assert_eq!(open[0]["user"]["login"], login.as_str());

    // The PR's files are exactly the tag bump.
    let files = repo.get(&format!("/pulls/{number}/files")).await;
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
    repo.add_webhook(
        &format!("http://127.0.0.1:{port}/hooks/gitea"),
        secret,
        &["push"],
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
