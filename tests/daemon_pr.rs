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
use daemon_support::gitea_repo::{hook_to_daemon, seed, start_daemon};
use daemon_support::{Daemon, notifying_registry, write};
use registry_support::push::{Image, Pusher};
use registry_support::registry::{Registry, free_port};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::cluster::wait_for;
use support::git_repo::{commit_all, git, policy_yaml};
use support::gitea::{RepoGuard, assert_git_ok, git_net, gitea};

const WAIT: Duration = Duration::from_secs(60);
const HEAD: &str = "capstan/app";

fn deployment(image: &str) -> String {
    format!(
        "kind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {image} # {{\"$imagepolicy\": \"app\"}}\n"
    )
}

/// Pushes `acme/app:{tag}`, an image created at `created`.
async fn push_tag(registry: &Registry, created: &str, tag: &str) {
    Pusher::new(registry)
        .image("acme/app", &Image::new(created), &[tag])
        .await;
}

/// Waits until exactly one pull request is open and `ready` accepts it; returns it.
async fn one_open_pull<F>(repo: &RepoGuard<'_>, what: &str, ready: F) -> Value
where
    F: Fn(&Value) -> anyhow::Result<()>,
{
    wait_for(what, WAIT, || async {
        let open = repo.open_pulls().await;
        ensure!(open.len() == 1, "open pull requests: {open:?}");
        ready(&open[0])?;
        Ok(open[0].clone())
    })
    .await
}

/// Asserts (after fetching the base and the head branch into `clone`) that the head
/// branch is one commit on `base` whose deployment uses `image`; `why` names the case.
fn assert_head_is_one_commit_on(
    clone: &Path,
    repo: &RepoGuard<'_>,
    base: &str,
    image: &str,
    why: &str,
) {
    let fetched = git_net(
        clone,
        &[
            "-c",
            &repo.git_auth(),
            "fetch",
            "-q",
            "--force",
            &repo.clone_url,
            "+refs/heads/main:refs/remotes/o/main",
            &format!("+refs/heads/{HEAD}:refs/remotes/o/{HEAD}"),
        ],
    );
    assert_git_ok(&fetched, "fetching the base and head branches");
    let parents = git(
        clone,
        &["rev-list", "--parents", "-n", "1", &format!("o/{HEAD}")],
    );
    let parents: Vec<&str> = parents.split_whitespace().skip(1).collect();
    assert_eq!(parents, [base], "{why}");
    let ahead: usize = git(
        clone,
        &["rev-list", "--count", &format!("o/main..o/{HEAD}")],
    )
    .trim()
    .parse()
    .expect("count");
    assert_eq!(ahead, 1);
    let file = git(clone, &["show", &format!("o/{HEAD}:apps/deploy.yaml")]);
    assert_eq!(file, deployment(image));
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
    let registry = notifying_registry(port);
    let image = format!("{}/acme/app", registry.host);
    push_tag(&registry, "2024-01-01T00:00:00Z", "1.0.0").await;

    // The manifests on Gitea's `main`, and a webhook for pushes and pull requests.
    let work = tempfile::tempdir().expect("tempdir");
    let seed_dir = work.path().join("seed");
    let seeded = seed(
        &repo,
        &seed_dir,
        &[("apps/deploy.yaml", &deployment(&format!("{image}:1.0.0")))],
        "app manifests",
    );
    forge.wait_for_branch(&repo, "main", &seeded).await;
    hook_to_daemon(&repo, port, &["push", "pull_request"]).await;

    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "policies/app.yaml",
        &policy_yaml("app", &image, ">=1.0.0"),
    );
    let mut d = start_daemon(dir.path(), &repo, &registry.host, "pull-request", "", port).await;
    // The first pass: the base holds 1.0.0 already, nothing is proposed.
    d.wait_event(
        "the base branch already holds the chosen image",
        &[("policy", "app"), ("base_head", &seeded)],
        WAIT,
    )
    .await;
    assert!(repo.open_pulls().await.is_empty());

    let clone = work.path().join("check");
    git(work.path(), &["init", "-q", "check"]);

    // 1.1.0 → a pull request from capstan/app into main; main is not pushed.
    let t = Instant::now();
    push_tag(&registry, "2024-02-01T00:00:00Z", "1.1.0").await;
    let first = one_open_pull(&repo, "a pull request for 1.1.0", |_| Ok(())).await;
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
    assert_eq!(repo.branch_head("main").await, seeded);
    assert_head_is_one_commit_on(
        &clone,
        &repo,
        &seeded,
        &format!("{image}:1.1.0"),
        "one commit on the base head",
    );

    // 1.2.0 → the same pull request: branch rewritten, title and body name 1.2.0.
    let t = Instant::now();
    push_tag(&registry, "2024-03-01T00:00:00Z", "1.2.0").await;
    let second = one_open_pull(&repo, "the pull request updated to 1.2.0", |pr| {
        // Gitea's PATCH changes the title, then the body, in two steps: wait for both.
        let title = pr["title"].as_str().unwrap_or_default();
        let body = pr["body"].as_str().unwrap_or_default();
        ensure!(title.contains("1.2.0"), "title: {title}");
        ensure!(body.contains("1.2.0"), "body: {body}");
        Ok(())
    })
    .await;
    let updated_after = t.elapsed();
    assert_eq!(
        second["number"].as_u64(),
        Some(number),
        "the same pull request"
    );
    assert_eq!(repo.branch_head("main").await, seeded);
    assert_head_is_one_commit_on(
        &clone,
        &repo,
        &seeded,
        &format!("{image}:1.2.0"),
        "still one commit on the base head",
    );
    let head_sha = git(&clone, &["rev-parse", &format!("o/{HEAD}")])
        .trim()
        .to_owned();
    // Gitea updates the pull request's head asynchronously after the push.
    repo.wait_pull("Gitea's pull request at the new head", number, |pr| {
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
    let merged = repo.pull(number).await;
    assert_eq!(merged["merged"], true, "{merged}");
    let merge_commit = merged["merge_commit_sha"]
        .as_str()
        .context("merge_commit_sha")
        .expect("merged")
        .to_owned();
    assert_eq!(repo.branch_head("main").await, merge_commit);
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
        repo.open_pulls().await.is_empty(),
        "no pull request reopened after the merge"
    );

    // 1.3.0 → a fresh pull request on the merged base.
    let t = Instant::now();
    push_tag(&registry, "2024-04-01T00:00:00Z", "1.3.0").await;
    let third = one_open_pull(&repo, "a new pull request for 1.3.0", |_| Ok(())).await;
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
    assert_eq!(repo.branch_head("main").await, merge_commit);
    assert_head_is_one_commit_on(
        &clone,
        &repo,
        &merge_commit,
        &format!("{image}:1.3.0"),
        "one commit on the merged base",
    );
    let base_file = git(&clone, &["show", "o/main:apps/deploy.yaml"]);
    assert_eq!(
        base_file,
        deployment(&format!("{image}:1.2.0")),
        "the merged bump"
    );
    let old = repo.pull(number).await;
    assert_eq!(old["state"], "closed");
    assert_eq!(old["merged"], true);

    // A person's commit on the base: Gitea's push webhook wakes the writer, which
    // rebuilds the head branch on it; the same pull request, its title and body as
    // they were (Gitea keeps them byte for byte: no needless update).
    let fetched = git_net(
        &seed_dir,
        &[
            "-c",
            &repo.git_auth(),
            "fetch",
            "-q",
            &repo.clone_url,
            "main",
        ],
    );
    assert_git_ok(&fetched, "fetching the merged base");
    git(&seed_dir, &["reset", "-q", "--hard", "FETCH_HEAD"]);
    std::fs::write(seed_dir.join("NOTES.md"), "a person's note\n").expect("write");
    let human = commit_all(&seed_dir, "a person's commit");
    repo.push(&seed_dir, "main", "a person's push to main");
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
    let open = repo.open_pulls().await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["number"].as_u64(), Some(third_number));
    assert_head_is_one_commit_on(
        &clone,
        &repo,
        &human,
        &format!("{image}:1.3.0"),
        "one commit on the person's commit",
    );

    // The person makes the same edit on the base: the pull request is superseded and
    // closed with a comment naming the base commit; nothing new is opened.
    std::fs::write(
        seed_dir.join("apps/deploy.yaml"),
        deployment(&format!("{image}:1.3.0")),
    )
    .expect("write");
    let by_hand = commit_all(&seed_dir, "a person bumps to 1.3.0 by hand");
    repo.push(&seed_dir, "main", "a person's bump on main");
    let closed = repo
        .wait_pull("the superseded pull request closed", third_number, |pr| {
            ensure!(pr["state"] == "closed", "state {}", pr["state"]);
            Ok(())
        })
        .await;
    assert_eq!(closed["merged"], false, "{closed}");
    let comments = repo.comments(third_number).await;
    let said = comments[0]["body"].as_str().unwrap_or_default();
    assert!(said.contains(&by_hand), "comment: {comments}");
    assert!(repo.open_pulls().await.is_empty());
    assert_eq!(repo.branch_head("main").await, by_hand);

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
