//! `capstan run` with `update.mode: pull-request` against real peers: a CNCF Distribution
//! registry whose push notifications reach the daemon, and a real Gitea (started by
//! `scripts/gitea-env up`) holding the manifests, with a signed webhook back to the daemon
//! for pushes and pull requests. The poll interval is one hour: every step is driven by an
//! event.
//!
//! tag 1.1.0 → a pull request from `capstan/app`, the base untouched; tag 1.2.0 → the same
//! pull request, its branch rewritten to one commit on the base head; merged through
//! Gitea's API → nothing reopened for 1.2.0; tag 1.3.0 → a fresh pull request on the merged
//! base; a person's commit on the base → the head branch rebuilt on it, same pull request;
//! the person makes the same bump on the base → that pull request closed as superseded.

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use daemon_support::{Daemon, server_yaml, write};
use registry_support::push::{Image, Pusher};
use registry_support::registry::{Options, Registry, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::wait_for;
use support::git_repo::{git, policy_yaml};
use support::gitea::{Gitea, RepoGuard, assert_git_ok, git_auth, git_net, gitea};

const REGISTRY_TOKEN: &str = "registry-token-for-tests";
const HOOK_SECRET: &str = "gitea-hook-secret-for-tests";
const WAIT: Duration = Duration::from_secs(60);
const HEAD: &str = "capstan/app";

fn deployment(image: &str) -> String {
    format!(
        "kind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {image} # {{\"$imagepolicy\": \"app\"}}\n"
    )
}

/// The open pull requests of the repository.
async fn open_pulls(forge: &Gitea, repo: &RepoGuard<'_>) -> Vec<Value> {
    let list = forge
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path("/pulls?state=open&limit=50"),
            None,
        )
        .await;
    list.as_array().cloned().unwrap_or_default()
}

/// The head commit of a branch, through the API.
async fn branch_head(forge: &Gitea, repo: &RepoGuard<'_>, branch: &str) -> String {
    let body = forge
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/branches/{branch}")),
            None,
        )
        .await;
    body["commit"]["id"]
        .as_str()
        .expect("branch commit id")
        .to_owned()
}

/// Fetches the base and the head branch into `clone`; returns (parents of the head
/// commit, commits on the head branch that the base lacks, the deployment on the head).
fn head_shape(clone: &Path, auth: &str, url: &str) -> (Vec<String>, usize, String) {
    let fetched = git_net(
        clone,
        &[
            "-c",
            auth,
            "fetch",
            "-q",
            "--force",
            url,
            "+refs/heads/main:refs/remotes/o/main",
            &format!("+refs/heads/{HEAD}:refs/remotes/o/{HEAD}"),
        ],
    );
    assert_git_ok(&fetched, "fetching the base and head branches");
    let parents = git(
        clone,
        &["rev-list", "--parents", "-n", "1", &format!("o/{HEAD}")],
    );
    let parents = parents
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let ahead = git(
        clone,
        &["rev-list", "--count", &format!("o/main..o/{HEAD}")],
    )
    .trim()
    .parse()
    .expect("count");
    let file = git(clone, &["show", &format!("o/{HEAD}:apps/deploy.yaml")]);
    (parents, ahead, file)
}

async fn series(d: &Daemon, name: &str) -> f64 {
    d.sample(name).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_become_one_pull_request_per_policy_on_a_real_gitea_and_a_merge_is_not_reopened() {
    let started = Instant::now();
    let forge = gitea();
    let repo = forge.create_repo("prmode").await;
    let port = free_port();
    let registry = Registry::start(Options {
        notify: Some(format!(
            "http://127.0.0.1:{port}/hooks/registry?token={REGISTRY_TOKEN}"
        )),
        ..Options::default()
    });
    let image = format!("{}/acme/app", registry.host);
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;

    // The manifests on Gitea's `main`, and a webhook for pushes and pull requests.
    let work = tempfile::tempdir().expect("tempdir");
    let seed = work.path().join("seed");
    std::fs::create_dir_all(seed.join("apps")).expect("mkdir");
    std::fs::write(
        seed.join("apps/deploy.yaml"),
        deployment(&format!("{image}:1.0.0")),
    )
    .expect("write");
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "app manifests"]);
    let seeded = git(&seed, &["rev-parse", "HEAD"]).trim().to_owned();
    let auth = git_auth(&repo.owner, &forge.token);
    let pushed = git_net(&seed, &["-c", &auth, "push", "-q", &repo.clone_url, "main"]);
    assert_git_ok(&pushed, "seeding the repository");
    forge.wait_for_branch(&repo, "main", &seeded).await;
    forge
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &repo.path("/hooks"),
            Some(json!({
                "type": "gitea",
                "active": true,
                "events": ["push", "pull_request"],
                "config": {
                    "url": format!("http://127.0.0.1:{port}/hooks/github"),
                    "content_type": "json",
                    "secret": HOOK_SECRET,
                },
            })),
        )
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "policies/app.yaml",
        &policy_yaml("app", &image, ">=1.0.0"),
    );
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:
  url: {url}
  branch: main
  auth:
    tokenEnv: GITEA_TOKEN
    username: {owner}
forge:
  kind: gitea
  apiUrl: {api}/api/v1
  owner: {owner}
  repo: {name}
  tokenEnv: GITEA_TOKEN
registries:
  - host: {host}
    insecure: true
policies: policies/
update:
  mode: pull-request
  interval: 1h
{server}",
            url = repo.clone_url,
            owner = repo.owner,
            api = forge.url,
            name = repo.name,
            host = registry.host,
            server = server_yaml(
                port,
                "  registryWebhookTokenEnv: REGISTRY_TOKEN\n  githubWebhookSecretEnv: HOOK_SECRET\n"
            ),
        ),
    );
    let mut d = Daemon::start(
        &dir.path().join("capstan.yaml"),
        port,
        &[
            ("GITEA_TOKEN", forge.token.as_str()),
            ("REGISTRY_TOKEN", REGISTRY_TOKEN),
            ("HOOK_SECRET", HOOK_SECRET),
        ],
        registry_support::push::client(None),
    );
    d.wait_up().await;
    // The first pass: the base holds 1.0.0 already, nothing is proposed.
    d.wait_event(
        "the base branch already holds the chosen image",
        &[("policy", "app"), ("base_head", &seeded)],
        WAIT,
    )
    .await;
    assert!(open_pulls(&forge, &repo).await.is_empty());

    let clone = work.path().join("check");
    git(work.path(), &["init", "-q", "check"]);

    // 1.1.0 → a pull request from capstan/app into main; main is not pushed.
    let t = Instant::now();
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["1.1.0"])
        .await;
    let first = wait_for("a pull request for 1.1.0", WAIT, || async {
        let open = open_pulls(&forge, &repo).await;
        ensure!(open.len() == 1, "open pull requests: {open:?}");
        Ok(open[0].clone())
    })
    .await;
    let opened_after = t.elapsed();
    let number = first["number"].as_u64().expect("number");
    assert_eq!(first["head"]["ref"], HEAD, "{first}");
    assert_eq!(first["base"]["ref"], "main", "{first}");
    let title = first["title"].as_str().unwrap_or_default();
    assert!(title.contains("1.1.0"), "title: {title}");
    assert!(
        first["body"].as_str().unwrap_or_default().contains("1.1.0"),
        "{first}"
    );
    assert_eq!(branch_head(&forge, &repo, "main").await, seeded);
    let (parents, ahead, file) = head_shape(&clone, &auth, &repo.clone_url);
    assert_eq!(parents, [seeded.as_str()], "one commit on the base head");
    assert_eq!(ahead, 1);
    assert_eq!(file, deployment(&format!("{image}:1.1.0")));

    // 1.2.0 → the same pull request: branch rewritten, title and body name 1.2.0.
    let t = Instant::now();
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-03-01T00:00:00Z"), &["1.2.0"])
        .await;
    let second = wait_for("the pull request updated to 1.2.0", WAIT, || async {
        let open = open_pulls(&forge, &repo).await;
        ensure!(open.len() == 1, "open pull requests: {open:?}");
        // Gitea's PATCH changes the title, then the body, in two steps: wait for both.
        let title = open[0]["title"].as_str().unwrap_or_default();
        let body = open[0]["body"].as_str().unwrap_or_default();
        ensure!(title.contains("1.2.0"), "title: {title}");
        ensure!(body.contains("1.2.0"), "body: {body}");
        Ok(open[0].clone())
    })
    .await;
    let updated_after = t.elapsed();
    assert_eq!(
        second["number"].as_u64(),
        Some(number),
        "the same pull request"
    );
    assert_eq!(branch_head(&forge, &repo, "main").await, seeded);
    let (parents, ahead, file) = head_shape(&clone, &auth, &repo.clone_url);
    assert_eq!(
        parents,
        [seeded.as_str()],
        "still one commit on the base head"
    );
    assert_eq!(ahead, 1);
    assert_eq!(file, deployment(&format!("{image}:1.2.0")));
    let head_sha = git(&clone, &["rev-parse", &format!("o/{HEAD}")])
        .trim()
        .to_owned();
    // Gitea updates the pull request's head asynchronously after the push.
    wait_for("Gitea's pull request at the new head", WAIT, || async {
        let pr = forge
            .expect(
                StatusCode::OK,
                Method::GET,
                &repo.path(&format!("/pulls/{number}")),
                None,
            )
            .await;
        ensure!(pr["head"]["sha"] == head_sha.as_str(), "{}", pr["head"]);
        ensure!(
            pr["mergeable"] == true,
            "not mergeable yet: {}",
            pr["mergeable"]
        );
        Ok(())
    })
    .await;

    // Merge through Gitea's API, as a person would.
    let merge = repo.path(&format!("/pulls/{number}/merge"));
    wait_for("the merge through Gitea's API", WAIT, || async {
        let (status, body) = forge
            .api(
                Method::POST,
                &merge,
                Some(json!({ "Do": "merge", "head_commit_id": head_sha })),
            )
            .await;
        ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(())
    })
    .await;
    let merged = forge
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/pulls/{number}")),
            None,
        )
        .await;
    assert_eq!(merged["merged"], true, "{merged}");
    let merge_commit = merged["merge_commit_sha"]
        .as_str()
        .context("merge_commit_sha")
        .expect("merged")
        .to_owned();
    assert_eq!(branch_head(&forge, &repo, "main").await, merge_commit);
    // Gitea's webhook wakes the writer: the base holds 1.2.0, nothing is reopened.
    d.wait_event(
        "the base branch already holds the chosen image",
        &[("policy", "app"), ("base_head", &merge_commit)],
        WAIT,
    )
    .await;
    // Gitea's `pull_request` payload (closed, merged) is read as GitHub's.
    d.wait_event(
        "GitHub event: syncing",
        &[(
            "reason",
            &format!("pull request #{number} merged into `main`"),
        )],
        WAIT,
    )
    .await;
    d.wait_event("pull requests triggered", &[("source", "webhook")], WAIT)
        .await;
    assert!(
        open_pulls(&forge, &repo).await.is_empty(),
        "no pull request reopened after the merge"
    );

    // 1.3.0 → a fresh pull request on the merged base.
    let t = Instant::now();
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-04-01T00:00:00Z"), &["1.3.0"])
        .await;
    let third = wait_for("a new pull request for 1.3.0", WAIT, || async {
        let open = open_pulls(&forge, &repo).await;
        ensure!(open.len() == 1, "open pull requests: {open:?}");
        Ok(open[0].clone())
    })
    .await;
    let reopened_after = t.elapsed();
    let third_number = third["number"].as_u64().expect("number");
    assert_ne!(third_number, number, "not the merged one: {third}");
    assert_eq!(third["head"]["ref"], HEAD);
    let title = third["title"].as_str().unwrap_or_default();
    assert!(title.contains("1.3.0"), "title: {title}");
    assert!(
        title.contains("1.2.0"),
        "from the merged tag, not 1.0.0: {title}"
    );
    assert_eq!(branch_head(&forge, &repo, "main").await, merge_commit);
    let (parents, ahead, file) = head_shape(&clone, &auth, &repo.clone_url);
    assert_eq!(
        parents,
        [merge_commit.as_str()],
        "one commit on the merged base"
    );
    assert_eq!(ahead, 1);
    assert_eq!(file, deployment(&format!("{image}:1.3.0")));
    let base_file = git(&clone, &["show", "o/main:apps/deploy.yaml"]);
    assert_eq!(
        base_file,
        deployment(&format!("{image}:1.2.0")),
        "the merged bump"
    );
    let old = forge
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/pulls/{number}")),
            None,
        )
        .await;
    assert_eq!(old["state"], "closed");
    assert_eq!(old["merged"], true);

    // A person's commit on the base: Gitea's push webhook wakes the writer, which
    // rebuilds the head branch on it; the same pull request, its title and body as
    // they were (Gitea keeps them byte for byte: no needless update).
    let fetched = git_net(
        &seed,
        &["-c", &auth, "fetch", "-q", &repo.clone_url, "main"],
    );
    assert_git_ok(&fetched, "fetching the merged base");
    git(&seed, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    std::fs::write(seed.join("NOTES.md"), "a person's note\n").expect("write");
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "a person's commit"]);
    let human = git(&seed, &["rev-parse", "HEAD"]).trim().to_owned();
    let pushed = git_net(&seed, &["-c", &auth, "push", "-q", &repo.clone_url, "main"]);
    assert_git_ok(&pushed, "a person's push to main");
    d.wait_event(
        "pull request branch pushed",
        &[("branch", HEAD), ("base_head", &human)],
        WAIT,
    )
    .await;
    d.wait_event(
        "pull request",
        &[("policy", "app"), ("action", "Unchanged")],
        WAIT,
    )
    .await;
    let open = open_pulls(&forge, &repo).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["number"].as_u64(), Some(third_number));
    let (parents, ahead, file) = head_shape(&clone, &auth, &repo.clone_url);
    assert_eq!(
        parents,
        [human.as_str()],
        "one commit on the person's commit"
    );
    assert_eq!(ahead, 1);
    assert_eq!(file, deployment(&format!("{image}:1.3.0")));

    // The person makes the same edit on the base: the pull request is superseded and
    // closed with a comment naming the base commit; nothing new is opened.
    std::fs::write(
        seed.join("apps/deploy.yaml"),
        deployment(&format!("{image}:1.3.0")),
    )
    .expect("write");
    git(
        &seed,
        &["commit", "-q", "-am", "a person bumps to 1.3.0 by hand"],
    );
    let by_hand = git(&seed, &["rev-parse", "HEAD"]).trim().to_owned();
    let pushed = git_net(&seed, &["-c", &auth, "push", "-q", &repo.clone_url, "main"]);
    assert_git_ok(&pushed, "a person's bump on main");
    let closed = wait_for("the superseded pull request closed", WAIT, || async {
        let pr = forge
            .expect(
                StatusCode::OK,
                Method::GET,
                &repo.path(&format!("/pulls/{third_number}")),
                None,
            )
            .await;
        ensure!(pr["state"] == "closed", "state {}", pr["state"]);
        Ok(pr)
    })
    .await;
    assert_eq!(closed["merged"], false, "{closed}");
    let comments = forge
        .expect(
            StatusCode::OK,
            Method::GET,
            &repo.path(&format!("/issues/{third_number}/comments")),
            None,
        )
        .await;
    let said = comments[0]["body"].as_str().unwrap_or_default();
    assert!(said.contains(&by_hand), "comment: {comments}");
    assert!(open_pulls(&forge, &repo).await.is_empty());
    assert_eq!(branch_head(&forge, &repo, "main").await, by_hand);

    // What the metrics say.
    let opened = series(&d, "capstan_update_pull_requests_total{action=\"opened\"}").await;
    let updated = series(&d, "capstan_update_pull_requests_total{action=\"updated\"}").await;
    let closes = series(&d, "capstan_update_pull_requests_total{action=\"closed\"}").await;
    assert_eq!(closes, 1.0, "{}", d.metrics().await);
    assert_eq!(opened, 2.0, "{}", d.metrics().await);
    // 1.2.0, and the rebuild on the person's commit.
    assert!(updated >= 2.0, "{}", d.metrics().await);
    for op in [
        "find_pull_request",
        "open_pull_request",
        "update_pull_request",
    ] {
        let ok = series(
            &d,
            &format!("capstan_forge_calls_total{{operation=\"{op}\",result=\"success\"}}"),
        )
        .await;
        assert!(ok >= 1.0, "{op}: {}", d.metrics().await);
    }
    assert!(series(&d, "capstan_git_pushes_total").await >= 4.0);
    eprintln!(
        "pull-request mode on Gitea: opened {:.2} s, updated {:.2} s, reopened after merge {:.2} s after the tag push; whole test {:.1} s",
        opened_after.as_secs_f64(),
        updated_after.as_secs_f64(),
        reopened_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for line in d
        .log()
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
    {
        eprintln!("daemon: {line}");
    }
    let exit = d.terminate(Duration::from_secs(10)).await;
    assert!(exit.success(), "capstan run exited with {exit}");
    repo.delete().await;
}
