//! The `Gitea` forge client against a real Gitea (built from its Go module and
//! started by `scripts/gitea-env up`): statuses, pull requests (open, duplicate,
//! find, update, labels, compare, merge guarded by the head SHA, close with a
//! comment) on a fresh repository. Setup goes through Gitea's REST API directly (tests/support/gitea.rs).
//!
//! The forge comes from `CAPSTAN_TEST_GITEA_URL` and `CAPSTAN_TEST_GITEA_TOKEN`
//! (scripts/test exports both). Without them the test fails; it is never skipped.

mod support;

use anyhow::ensure;
use capstan::forge::{
    CommitState, CommitStatus, Forge, ForgeError, Gitea, MergeMethod, NewPullRequest, Opened,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::gitea::gitea;

#[tokio::test]
async fn pull_requests_and_statuses_against_a_real_gitea() {
    let server = gitea();
    let repo = server.create_repo_with_readme("forge-live").await;
    let (owner, name) = (repo.owner.clone(), repo.name.clone());
    let base_sha = repo.branch_head("main").await;
    let head_sha = repo
        .commit_on_new_branch(
            "capstan/app",
            "app.yaml",
            "chore(images): app 1.3.0\n\nbody",
        )
        .await;
    server
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &repo.path("/labels"),
            Some(json!({ "name": "dependencies", "color": "#0075ca" })),
        )
        .await;

    let forge = Gitea::new(
        &format!("{}/api/v1", server.url),
        Some(server.token.clone()),
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
    let labels = repo.get(&format!("/issues/{}/labels", pr.number)).await;
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
    assert!(cmp.html_url.ends_with(&format!(
        "/{}/compare/{base_sha}...{head_sha}",
        repo.full_name()
    )));

    // Merge guarded by the head SHA.
    repo.wait_pull("Gitea's mergeability check", pr.number, |pr| {
        ensure!(pr["mergeable"] == true, "not mergeable yet");
        Ok(())
    })
    .await;
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
    let merged = repo.pull(pr.number).await;
    assert_eq!(merged["merged"], true);

    // Close another one with a comment.
    repo.commit_on_new_branch("capstan/web", "web.yaml", "chore(images): web 2.0.0")
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
    let closed = repo.pull(web.number).await;
    assert_eq!(closed["state"], "closed");
    assert_eq!(closed["merged"], false);
    let comments = repo.comments(web.number).await;
    assert_eq!(
        comments[0]["body"],
        "Superseded: `main` already has web 2.0.0."
    );

    repo.delete().await;
}

/// `pull_request_reviews` against a real Gitea: a review as Gitea stores it
/// (a comment review by the author; Gitea refuses an author's own approval)
/// reads back with its reviewer, uppercase state and commit, and
/// `approved_at` does not count it as an approval.
#[tokio::test]
async fn pull_request_reviews_read_from_a_real_gitea() {
    let server = gitea();
    let repo = server.create_repo_with_readme("forge-reviews").await;
    let (owner, name) = (repo.owner.clone(), repo.name.clone());
    let head_sha = repo
        .commit_on_new_branch("capstan/app", "app.yaml", "chore(images): app 1.3.0")
        .await;
    let forge = Gitea::new(
        &format!("{}/api/v1", server.url),
        Some(server.token.clone()),
        &owner,
        &name,
    )
    .unwrap();
    let opened = forge
        .create_pull_request(&NewPullRequest {
            title: "chore(images): app 1.3.0".into(),
            body: "body".into(),
            head: "capstan/app".into(),
            base: "main".into(),
            draft: false,
        })
        .await
        .unwrap();
    let number = opened.pull_request().number;
    assert_eq!(forge.pull_request_reviews(number).await.unwrap(), vec![]);
    server
        .expect(
            StatusCode::OK,
            Method::POST,
            &repo.path(&format!("/pulls/{number}/reviews")),
            Some(json!({ "event": "COMMENT", "body": "looks fine", "commit_id": head_sha })),
        )
        .await;
    let reviews = forge.pull_request_reviews(number).await.unwrap();
    assert_eq!(
        reviews,
        vec![capstan::forge::PullReview {
            reviewer: owner.clone(),
            state: "COMMENT".into(),
            commit: head_sha.clone(),
        }]
    );
    let pr = forge
        .find_open_pull_request("capstan/app", "main")
        .await
        .unwrap()
        .expect("open");
    assert_eq!(
        capstan::update::pr_events::approved_at(&pr, &reviews, &head_sha, "main"),
        Err(format!(
            "pull request #{number} is not approved at {head_sha}"
        ))
    );
    repo.delete().await;
}
