//! `capstan sync --once` and `capstan plan` end to end: a Git checkout on disk, the
//! real control plane, and GitHub commit statuses replayed by an HTTP mock. The
//! statuses go to the commit that was applied: pending first, then success — or
//! error naming the file when the input is bad.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::cluster::{TestNamespace, kubeconfig_path};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn capstan(args: Vec<String>) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("capstan");
    tokio::task::spawn_blocking(move || Command::new(bin).args(args).output().expect("run capstan"))
        .await
        .unwrap()
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// GitHub's documented answers to creating a deployment (id 1) and its statuses.
async fn mock_deployments(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex("^/repos/acme/fleet/deployments$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployment.json")))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/repos/acme/fleet/deployments/1/statuses$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployment-status.json")))
        .mount(server)
        .await;
}

/// Every request the forge received: path and JSON body.
async fn statuses(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sync_once_applies_the_commit_and_reports_statuses_on_it() {
    let ns = TestNamespace::new("sync-cli").await;
    let server = MockServer::start().await;
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/github/create-commit-status.json"
        ))
        .unwrap(),
    )
    .unwrap();
    Mock::given(method("POST"))
        .and(path_regex("^/repos/acme/fleet/statuses/[0-9a-f]{40}$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .mount(&server)
        .await;
    mock_deployments(&server).await;

    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("app")).unwrap();
    std::fs::write(
        repo.path().join("app/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);
    let sha = git(repo.path(), &["rev-parse", "HEAD"]);

    let config = repo.path().join("capstan.yaml");
    std::fs::write(
        &config,
        format!(
            "repository: {{url: {repo}}}\nforge: {{kind: github, apiUrl: '{api}', owner: acme, repo: fleet}}\ntargets:\n  - name: {ns}\n    path: app\n    kubeconfig: {kc}\n    namespace: {ns}\n    healthTimeout: 30s\n",
            repo = repo.path().display(),
            api = server.uri(),
            ns = ns.name,
            kc = kubeconfig_path(),
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();

    // plan: one object to create, nothing written.
    let out = capstan(vec![
        "plan".into(),
        "-c".into(),
        cfg.clone(),
        "--target".into(),
        ns.name.clone(),
        "-o".into(),
        "json".into(),
    ])
    .await;
    assert!(
        out.status.success(),
        "plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan[0]["action"], "create", "{plan}");
    assert_eq!(plan[0]["object"], format!("ConfigMap {}/settings", ns.name));

    let out = capstan(vec![
        "sync".into(),
        "--once".into(),
        "-c".into(),
        cfg.clone(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sync: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 created"), "{stdout}");
    let sent = statuses(&server).await;
    let path = format!("/repos/acme/fleet/statuses/{sha}");
    let calls: Vec<(&str, &str)> = sent
        .iter()
        .map(|(p, b)| (p.as_str(), b["state"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        calls,
        vec![
            (path.as_str(), "pending"),
            ("/repos/acme/fleet/deployments", "-"),
            ("/repos/acme/fleet/deployments/1/statuses", "in_progress"),
            (path.as_str(), "success"),
            ("/repos/acme/fleet/deployments/1/statuses", "success"),
        ]
    );
    assert_eq!(sent[0].1["context"], format!("capstan/{}", ns.name));
    assert_eq!(
        sent[1].1["ref"],
        sha.as_str(),
        "the deployment is of the applied commit"
    );
    assert_eq!(sent[1].1["environment"], ns.name.as_str());
    assert_eq!(
        sent[3].1["description"],
        "1 created, 0 updated, 0 unchanged, 0 pruned; healthy"
    );
    assert_eq!(sent[4].1["description"], sent[3].1["description"]);

    // A bad commit: exit 2, status `error` on that commit naming the file.
    std::fs::write(repo.path().join("app/broken.yaml"), "kind: [\n").unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "broken"]);
    let bad = git(repo.path(), &["rev-parse", "HEAD"]);
    let out = capstan(vec!["sync".into(), "--once".into(), "-c".into(), cfg]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = statuses(&server).await;
    assert_eq!(sent.len(), 10, "{sent:?}");
    assert_eq!(sent[8].0, format!("/repos/acme/fleet/statuses/{bad}"));
    assert_eq!(sent[8].1["state"], "error");
    assert_eq!(sent[9].1["state"], "error", "the deployment status too");
    let description = sent[8].1["description"].as_str().unwrap();
    assert!(
        description.starts_with("app/broken.yaml"),
        "repository-relative: {description}"
    );
    assert!(description.chars().count() <= 140);
}

/// The repository is fetched over smart HTTP into the sync loop's own clone; each
/// pass applies the branch head as it is then, and reports on that commit.
#[tokio::test]
async fn sync_once_fetches_the_branch_over_http_and_follows_new_commits() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use support::git_http::GitHttpServer;
    use support::git_repo::BareRepo;

    let ns = TestNamespace::new("sync-fetch").await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/repos/acme/fleet/statuses/[0-9a-f]{40}$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"id": 1})))
        .mount(&server)
        .await;
    mock_deployments(&server).await;
    let root = tempfile::tempdir().unwrap();
    let repo = BareRepo::create(
        root.path(),
        "fleet",
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n",
        )],
    );
    let http = GitHttpServer::start(root.path(), None);
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("capstan.yaml");
    std::fs::write(
        &config,
        format!(
            "repository: {{url: '{url}'}}\nforge: {{kind: github, apiUrl: '{api}', owner: acme, repo: fleet}}\ntargets:\n  - name: {ns}\n    path: app\n    kubeconfig: {kc}\n    namespace: {ns}\n    healthTimeout: 30s\n",
            url = http.url("fleet"),
            api = server.uri(),
            ns = ns.name,
            kc = kubeconfig_path(),
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let sync = || {
        capstan(vec![
            "sync".into(),
            "--once".into(),
            "-c".into(),
            cfg.clone(),
        ])
    };

    let first = repo.head();
    let out = sync().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cms = ns.api::<ConfigMap>();
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(cm.data.unwrap()["a"], "b");

    // Someone leaves an edit in the clone: the next pass must not apply it.
    let clone = work.path().join(".capstan/repo-sync");
    std::fs::write(
        clone.join("app/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: local}\n",
    )
    .unwrap();
    let second = repo.human_commit(
        "bump settings",
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: c}\n",
        )],
    );
    assert_ne!(first, second);
    let out = sync().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = cms.get("settings").await.unwrap();
    assert_eq!(
        cm.data.unwrap()["a"],
        "c",
        "the fetched commit, not the local edit"
    );

    let sent: Vec<(String, String)> = statuses(&server)
        .await
        .into_iter()
        .filter(|(path, _)| path.contains("/statuses/"))
        .map(|(path, body)| (path, body["state"].as_str().unwrap_or("").to_string()))
        .collect();
    let on = |sha: &str| format!("/repos/acme/fleet/statuses/{sha}");
    assert_eq!(
        sent,
        vec![
            (on(&first), "pending".to_string()),
            (on(&first), "success".to_string()),
            (on(&second), "pending".to_string()),
            (on(&second), "success".to_string()),
        ]
    );
}
