//! `pull-request` mode end to end, library level: tags and OCI labels from a
//! real registry (CNCF Distribution), the manifests in a real bare repository
//! served by `git http-backend`, and GitHub's REST API through wiremock
//! replaying GitHub's documented responses (tests/fixtures/github/). Every
//! forge request is matched exactly (method, path, query, JSON body) and
//! counted.

mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use capstan::config::Config;
use capstan::forge::{GitHub, RetryPolicy};
use capstan::notify::Notifier;
use capstan::policy::ImagePolicy;
use capstan::registry::transport::ClientOptions;
use capstan::registry::{ScanOptions, Scanner};
use capstan::update::pull_request::{self, Action, PrReport, PrSettings};
use capstan::update::{self, Choices};
use registry_support::push::{Image, Pusher};
use registry_support::registry::Registry;
use serde_json::{Value, json};
use support::git_http::GitHttpServer;
use support::git_repo::{BareRepo, git};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SOURCE: &str = "https://github.com/acme/app";
const REV_1_0: &str = "1111111111111111111111111111111111111111";
const REV_1_1: &str = "2222222222222222222222222222222222222222";
const REV_1_2: &str = "3333333333333333333333333333333333333333";
const TITLE: &str = "chore(images): {summary}";
const BODY: &str = "{image}: {oldTag} → {newTag}\n{files}\n{changelog}";

fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

/// GitHub's documented pull request, as it would look for capstan's branch.
fn pull(title: &str, body: &str) -> Value {
    let mut pr = fixture("pull-request.json");
    pr["title"] = json!(title);
    pr["body"] = json!(body);
    pr["head"]["ref"] = json!("capstan/app");
    pr["base"]["ref"] = json!("main");
    pr
}

/// GitHub's documented compare answer; its second commit's author is given
/// a login (`hubot`) so both an author and the bot (`octocat`) appear.
fn comparison() -> Value {
    let mut c = fixture("compare-commits.json");
    let mut author = c["commits"][0]["author"].clone();
    author["login"] = json!("hubot");
    c["commits"][1]["author"] = author;
    c
}

struct Env {
    dir: tempfile::TempDir,
    registry: Registry,
    repo: BareRepo,
    git: GitHttpServer,
    github: MockServer,
    policies: Vec<ImagePolicy>,
    config: Config,
}

async fn push_app(registry: &Registry, tag: &str, revision: &str, created: &str) {
    Pusher::new(registry)
        .image(
            "acme/app",
            &Image::new(created)
                .label("org.opencontainers.image.source", SOURCE)
                .label("org.opencontainers.image.revision", revision),
            &[tag],
        )
        .await;
}

async fn env() -> Env {
    let registry = Registry::plain();
    push_app(&registry, "1.0.0", REV_1_0, "2026-01-01T00:00:00Z").await;
    push_app(&registry, "1.1.0", REV_1_1, "2026-02-01T00:00:00Z").await;
    let host = registry.host.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = format!(
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/acme/app:1.0.0 # {{\"$imagepolicy\": \"app\"}}\n"
    );
    let srv = dir.path().join("srv");
    let repo = BareRepo::create(&srv, "fleet.git", &[("apps/app.yaml", &deployment)]);
    let git = GitHttpServer::start(&srv, None);
    let github = MockServer::start().await;
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "policies/app.yaml",
        &format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: {host}/acme/app\n  policy:\n    semver:\n      range: '>=1.0.0'\n"
        ),
    );
    write(
        "capstan.yaml",
        &format!(
            "repository:\n  url: {}\nforge:\n  kind: github\n  apiUrl: {}\n  owner: acme\n  repo: fleet\nregistries:\n  - host: {host}\n    insecure: true\nupdate:\n  mode: pull-request\n  pullRequest:\n    title: '{TITLE}'\n    body: \"{}\"\n    reviewers: [carol, octocat]\n    teamReviewers: [platform]\n    labels: [dependencies]\n",
            git.url("fleet.git"),
            github.uri(),
            BODY.replace('\n', "\\n"),
        ),
    );
    let config = Config::load(&dir.path().join("capstan.yaml")).expect("config loads");
    let policies = capstan::policy::load_dir(config.policies_dir()).expect("policies load");
    Env {
        dir,
        registry,
        repo,
        git,
        github,
        policies,
        config,
    }
}

impl Env {
    fn settings(&self, checkout: &str) -> PrSettings {
        let mut s = PrSettings::from_config(&self.config, self.dir.path()).expect("settings");
        s.git.checkout_dir = self.dir.path().join(checkout);
        s
    }

    fn scanner(&self) -> Scanner {
        Scanner::from_config(
            &self.config.registries,
            ClientOptions::default(),
            ScanOptions::default(),
        )
    }

    /// A forge client as a fresh process would build it.
    fn forge(&self) -> GitHub {
        GitHub::new(
            Some(&self.github.uri()),
            Some("t0ken".into()),
            "acme",
            "fleet",
        )
        .expect("client")
        .with_retry(RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(2),
        })
    }

    /// One pass as `capstan update --once` runs it: scan, then PRs.
    async fn pass(&self, checkout: &str) -> PrReport {
        let scanner = self.scanner();
        let choices: Choices = update::from_registry::choose(&scanner, &self.policies).await;
        assert!(choices.errors.is_empty(), "{:?}", choices.errors);
        pull_request::run_once(
            &self.settings(checkout),
            &choices,
            &self.forge(),
            &scanner,
            &Notifier::disabled(),
        )
        .await
        .expect("pass runs")
    }

    fn host(&self) -> &str {
        &self.registry.host
    }

    fn title(&self, to: &str) -> String {
        format!("chore(images): app 1.0.0 → {to}")
    }

    fn body(&self, to: &str, compare: &Value) -> String {
        let mut changelog = format!(
            "[{} commit(s)]({})\n",
            compare["total_commits"],
            compare["html_url"].as_str().expect("url")
        );
        for c in compare["commits"].as_array().expect("commits") {
            let sha = c["sha"].as_str().expect("sha");
            let summary = c["commit"]["message"]
                .as_str()
                .expect("message")
                .lines()
                .next()
                .unwrap_or_default();
            changelog.push_str(&format!(
                "\n- {} {summary} (@{})",
                &sha[..7],
                c["author"]["login"].as_str().expect("login")
            ));
        }
        format!(
            "{}/acme/app: 1.0.0 → {to}\n- `apps/app.yaml`\n{changelog}",
            self.host()
        )
    }

    async fn mount_find(&self, answer: Value, times: Option<u64>) {
        let mock = Mock::given(method("GET"))
            .and(path("/repos/acme/fleet/pulls"))
            .and(query_param("state", "open"))
            .and(query_param("head", "acme:capstan/app"))
            .and(query_param("base", "main"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer));
        match times {
            Some(n) => {
                mock.up_to_n_times(n)
                    .with_priority(1)
                    .mount(&self.github)
                    .await
            }
            None => mock.with_priority(5).mount(&self.github).await,
        }
    }

    async fn mount_common(&self, from: &str, to: &str) {
        Mock::given(method("GET"))
            .and(path("/user"))
            .and(header("authorization", "Bearer t0ken"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture("user.json")))
            .mount(&self.github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/acme/app/compare/{from}...{to}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(comparison()))
            .expect(1..)
            .mount(&self.github)
            .await;
    }

    async fn expect_reviewers_and_labels(&self, times: u64) {
        Mock::given(method("POST"))
            .and(path("/repos/acme/fleet/pulls/1347/requested_reviewers"))
            .and(body_json(json!({
                "reviewers": ["hubot", "carol"],
                "team_reviewers": ["platform"],
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
            .expect(times)
            .mount(&self.github)
            .await;
        Mock::given(method("POST"))
            .and(path("/repos/acme/fleet/issues/1347/labels"))
            .and(body_json(json!({ "labels": ["dependencies"] })))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture("labels-added.json")))
            .expect(times)
            .mount(&self.github)
            .await;
    }

    fn branch_file(&self) -> String {
        git(&self.repo.path(), &["show", "capstan/app:apps/app.yaml"])
    }

    fn rev(&self, rev: &str) -> String {
        git(&self.repo.path(), &["rev-parse", rev])
            .trim()
            .to_string()
    }
}

fn only(report: &PrReport) -> &pull_request::PolicyResult {
    assert_eq!(report.results.len(), 1, "{report:?}");
    let r = &report.results[0];
    assert!(r.error.is_none(), "{r:?}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_update_restart_and_close_one_pull_request() {
    let env = env().await;
    let base = env.repo.head();
    let compare = comparison();

    // 1. Opened: searched by branch, created with the rendered title and body,
    //    reviewers = changelog authors + configured - the bot (octocat).
    env.mount_find(json!([]), None).await;
    env.mount_common(REV_1_0, REV_1_1).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .and(body_json(json!({
            "title": env.title("1.1.0"),
            "body": env.body("1.1.0", &compare),
            "head": "capstan/app",
            "base": "main",
            "draft": false,
        })))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(pull(&env.title("1.1.0"), &env.body("1.1.0", &compare))),
        )
        .expect(1)
        .mount(&env.github)
        .await;
    env.expect_reviewers_and_labels(1).await;
    let report = env.pass("co").await;
    let r = only(&report);
    assert_eq!(r.action, Action::Opened);
    assert_eq!(r.number, Some(1347));
    assert_eq!(r.reviewers, vec!["hubot", "carol"]);
    assert_eq!(
        report.urls(),
        vec!["https://github.com/octocat/Hello-World/pull/1347"]
    );
    assert_eq!(env.rev("capstan/app^"), base);
    assert!(env.branch_file().contains("acme/app:1.1.0"));
    env.github.verify().await;

    // 2. A newer tag: the branch is rewritten from the base head and the same
    //    pull request gets the new title and body.
    env.github.reset().await;
    push_app(&env.registry, "1.2.0", REV_1_2, "2026-03-01T00:00:00Z").await;
    env.mount_find(
        json!([pull(&env.title("1.1.0"), &env.body("1.1.0", &compare))]),
        None,
    )
    .await;
    env.mount_common(REV_1_0, REV_1_2).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/fleet/pulls/1347"))
        .and(body_json(json!({
            "title": env.title("1.2.0"),
            "body": env.body("1.2.0", &compare),
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pull(&env.title("1.2.0"), &env.body("1.2.0", &compare))),
        )
        .expect(1)
        .mount(&env.github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&env.github)
        .await;
    env.expect_reviewers_and_labels(1).await;
    let report = env.pass("co").await;
    assert_eq!(only(&report).action, Action::Updated);
    assert_eq!(
        env.rev("capstan/app^"),
        base,
        "rewritten on the base, not stacked"
    );
    assert_eq!(
        git(
            &env.repo.path(),
            &["rev-list", "--count", "main..capstan/app"]
        )
        .trim(),
        "1"
    );
    assert!(env.branch_file().contains("acme/app:1.2.0"));
    env.github.verify().await;

    // 3. A restart (new checkout, new client): the pull request is found by
    //    its branch; nothing is pushed, created or re-requested.
    env.github.reset().await;
    let pushes = env.git.pushes.load(Ordering::SeqCst);
    env.mount_find(
        json!([pull(&env.title("1.2.0"), &env.body("1.2.0", &compare))]),
        None,
    )
    .await;
    env.mount_common(REV_1_0, REV_1_2).await;
    for (m, p) in [
        ("POST", "/repos/acme/fleet/pulls"),
        ("PATCH", "/repos/acme/fleet/pulls/1347"),
        ("POST", "/repos/acme/fleet/pulls/1347/requested_reviewers"),
        ("POST", "/repos/acme/fleet/issues/1347/labels"),
    ] {
        Mock::given(method(m))
            .and(path(p))
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(&env.github)
            .await;
    }
    let report = env.pass("co-after-restart").await;
    assert_eq!(only(&report).action, Action::Unchanged);
    assert_eq!(env.git.pushes.load(Ordering::SeqCst), pushes);
    env.github.verify().await;

    // 4. Someone merges the same bump by hand: the pull request is closed with
    //    a comment naming the base commit.
    env.github.reset().await;
    let merged = env.repo.human_commit(
        "bump app by hand",
        &[(
            "apps/app.yaml",
            &git(&env.repo.path(), &["show", "capstan/app:apps/app.yaml"]),
        )],
    );
    env.mount_find(
        json!([pull(&env.title("1.2.0"), &env.body("1.2.0", &compare))]),
        None,
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/issues/1347/comments"))
        .and(body_json(json!({ "body": format!(
            "The base branch `main` already contains this change (as of commit {merged}), so this pull request is no longer needed. Closed by capstan."
        ) })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("issue-comment.json")))
        .expect(1)
        .mount(&env.github)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/fleet/pulls/1347"))
        .and(body_json(json!({ "state": "closed" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request-closed.json")))
        .expect(1)
        .mount(&env.github)
        .await;
    let report = env.pass("co").await;
    assert_eq!(only(&report).action, Action::Closed);
    assert_eq!(
        env.repo.head(),
        merged,
        "the base is never written by capstan"
    );
    env.github.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_duplicates_lose_no_update() {
    let env = env().await;
    let compare = comparison();
    env.mount_common(REV_1_0, REV_1_1).await;

    // First pass: the forge refuses the token; the branch is pushed anyway
    // and the pass reports the error.
    env.mount_find(json!([]), None).await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .respond_with(ResponseTemplate::new(401).set_body_json(fixture("bad-credentials.json")))
        .expect(1)
        .mount(&env.github)
        .await;
    let report = env.pass("co").await;
    assert!(report.failed());
    let error = report.results[0].error.clone().expect("an error");
    assert!(error.contains("401"), "{error}");
    assert_eq!(env.git.pushes.load(Ordering::SeqCst), 1);
    env.github.verify().await;

    // Second pass: GitHub first rate-limits the create (403, remaining 0,
    // retry-after), then answers 422 "already exists" (another process
    // opened it meanwhile): capstan takes the open one and updates it.
    env.github.reset().await;
    env.mount_common(REV_1_0, REV_1_1).await;
    env.mount_find(json!([]), Some(1)).await;
    env.mount_find(json!([pull("someone else's title", "old body")]), None)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("retry-after", "1")
                .set_body_json(fixture("rate-limit-exceeded.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&env.github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(fixture("pull-request-already-exists.json")),
        )
        .with_priority(5)
        .expect(1)
        .mount(&env.github)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/fleet/pulls/1347"))
        .and(body_json(json!({
            "title": env.title("1.1.0"),
            "body": env.body("1.1.0", &compare),
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pull(&env.title("1.1.0"), &env.body("1.1.0", &compare))),
        )
        .expect(1)
        .mount(&env.github)
        .await;
    // The branch did not change: no new commit, so no review requests; the
    // labels go with the update.
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls/1347/requested_reviewers"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&env.github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/issues/1347/labels"))
        .and(body_json(json!({ "labels": ["dependencies"] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("labels-added.json")))
        .expect(1)
        .mount(&env.github)
        .await;
    let report = env.pass("co").await;
    let r = only(&report);
    assert_eq!(r.action, Action::Updated);
    assert_eq!(
        r.url.as_deref(),
        Some("https://github.com/octocat/Hello-World/pull/1347")
    );
    assert_eq!(
        env.git.pushes.load(Ordering::SeqCst),
        1,
        "the branch was not pushed again"
    );
    env.github.verify().await;
}

#[test]
fn the_head_branch_template_must_differ_from_the_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("capstan.yaml");
    std::fs::write(
        &p,
        "repository:\n  url: https://github.com/acme/fleet.git\n  branch: main\nforge:\n  kind: github\nupdate:\n  mode: pull-request\n  branch: 'main{policy}'\n",
    )
    .expect("write");
    let err = Config::load(&p).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("update.branch"), "{err}");
    assert!(Path::new(&err.file).ends_with("capstan.yaml"));
}

/// `capstan update --once` in `pull-request` mode: tags from files, the
/// repository over smart HTTP, GitHub through wiremock; stdout names the pull
/// request and the webhook hears `tag-chosen` and `pull-request-opened`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_once_prints_the_pull_request_url_and_notifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"app\"}\n";
    let srv = dir.path().join("srv");
    let repo = BareRepo::create(&srv, "fleet.git", &[("apps/app.yaml", deployment)]);
    let git_server = GitHttpServer::start(&srv, None);
    let github = MockServer::start().await;
    for (name, text) in [
        (
            "policies/app.yaml",
            "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/acme/app\n  policy:\n    semver:\n      range: '>=1.0.0'\n".to_string(),
        ),
        ("tags/app.txt", "1.0.0\n1.1.0\n".to_string()),
        (
            "capstan.yaml",
            format!(
                "repository:\n  url: {}\nforge:\n  kind: github\n  apiUrl: {}\n  owner: acme\n  repo: fleet\nupdate:\n  mode: pull-request\n  pullRequest:\n    title: '{TITLE}'\n    body: '{{changelog}}'\nnotifications:\n  - name: audit\n    kind: webhook\n    urlEnv: CAPSTAN_TEST_HOOK\n    events: [tag-chosen, pull-request-opened]\n",
                git_server.url("fleet.git"),
                github.uri()
            ),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let title = "chore(images): app 1.0.0 → 1.1.0";
    let body = "_No changelog: image labels not readable: tags come from files, not a registry._";
    Mock::given(method("GET"))
        .and(path("/repos/acme/fleet/pulls"))
        .and(query_param("head", "acme:capstan/app"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header("authorization", "Bearer t0ken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("user.json")))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/fleet/pulls"))
        .and(body_json(json!({
            "title": title, "body": body, "head": "capstan/app", "base": "main", "draft": false,
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(pull(title, body)))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/s3cr3t"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&github)
        .await;
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let hook = format!("{}/hooks/s3cr3t", github.uri());
        move || {
            assert_cmd::Command::cargo_bin("capstan")
                .expect("binary")
                .current_dir(&dir)
                .args([
                    "update",
                    "--once",
                    "-c",
                    "capstan.yaml",
                    "--tags-dir",
                    "tags",
                ])
                .env("GITHUB_TOKEN", "t0ken")
                .env("CAPSTAN_TEST_HOOK", hook)
                .env_remove("CAPSTAN_LOG")
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joins");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "app opened https://github.com/octocat/Hello-World/pull/1347\n"
    );
    assert!(
        stderr.contains(
            "pull requests into main: 1 opened, 0 updated, 0 unchanged, 0 closed, 0 failed"
        ),
        "{stderr}"
    );
    github.verify().await;
    let events: Vec<Value> = github
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/hooks/s3cr3t")
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(kinds, vec!["tag-chosen", "pull-request-opened"]);
    assert_eq!(events[0]["newTag"], "1.1.0");
    assert_eq!(
        events[1]["pullRequestUrl"],
        "https://github.com/octocat/Hello-World/pull/1347"
    );
    assert_eq!(
        repo.head(),
        git(&repo.path(), &["rev-parse", "capstan/app^"]).trim()
    );
}
