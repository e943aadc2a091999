//! The Gitea forge against an HTTP mock replaying responses shaped like Gitea's
//! API v1 schemas (tests/fixtures/gitea, see its README): exact requests for pull
//! requests and statuses, and what Gitea does differently from GitHub.

mod forge_support;

use capstan::forge::{
    CommitState, CommitStatus, DeploymentState, DeploymentStatus, Forge, ForgeError, MergeMethod,
    NewDeployment, NewPullRequest, Opened,
};
use forge_support::{gitea, gitea_fixture as fixture};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HEAD: &str = "4a357436d925b5c974181ff12a994538ddc5a269";
const REPO: &str = "/api/v1/repos/octocat/Hello-World";

fn new_pr() -> NewPullRequest {
    NewPullRequest {
        title: "chore(images): app 1.2.3 -> 1.3.0".into(),
        body: "Updates `ghcr.io/acme/app`.".into(),
        head: "capstan/app".into(),
        base: "main".into(),
        draft: false,
    }
}

#[tokio::test]
async fn a_status_is_posted_with_the_token_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{HEAD}")))
        .and(header("authorization", "token g1tea"))
        .and(body_json(json!({
            "state": "pending",
            "context": "capstan/dev",
            "description": "syncing 4a35743",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("commit-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    gitea(&server.uri())
        .set_commit_status(&CommitStatus::new(
            HEAD,
            CommitState::Pending,
            "capstan/dev",
            "syncing 4a35743",
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_combined_status_reads_giteas_status_field() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{HEAD}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("combined-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let combined = gitea(&server.uri()).combined_status(HEAD).await.unwrap();
    assert!(!combined.is_green());
    // Gitea has no check runs: none, without a request (the mock expects one).
    let runs = gitea(&server.uri()).check_runs(HEAD).await.unwrap();
    assert!(runs.is_empty());
    assert_eq!(combined.state, CommitState::Failure);
    let states: Vec<(&str, CommitState)> = combined
        .statuses
        .iter()
        .map(|s| (s.context.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("capstan/dev", CommitState::Success),
            ("ci/build", CommitState::Failure)
        ]
    );
}

#[tokio::test]
async fn open_pull_requests_are_searched_by_head_and_base() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .and(query_param("state", "open"))
        .and(query_param("page", "1"))
        .and(query_param("limit", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pulls-list-open.json")))
        .expect(2)
        .mount(&server)
        .await;
    let forge = gitea(&server.uri());
    let pr = forge
        .find_open_pull_request("capstan/app", "main")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(pr.number, 7);
    assert_eq!(pr.head_sha, HEAD);
    assert_eq!(pr.author.as_deref(), Some("capstan-bot"));
    assert_eq!(
        forge
            .find_open_pull_request("capstan/other", "main")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn opening_a_pull_request_and_finding_it_on_conflict() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .and(body_json(json!({
            "title": "chore(images): app 1.2.3 -> 1.3.0",
            "body": "Updates `ghcr.io/acme/app`.",
            "head": "capstan/app",
            "base": "main",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(409).set_body_json(fixture("pull-request-exists.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pulls-list-open.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = gitea(&server.uri());
    let first = forge.create_pull_request(&new_pr()).await.unwrap();
    assert!(
        matches!(&first, Opened::Created(pr) if pr.number == 7),
        "{first:?}"
    );
    let again = forge.create_pull_request(&new_pr()).await.unwrap();
    assert!(
        matches!(&again, Opened::AlreadyOpen(pr) if pr.number == 7),
        "{again:?}"
    );
}

#[tokio::test]
async fn update_close_reviewers_and_labels() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .and(body_json(json!({ "title": "app 1.4.0", "body": "b" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/7/comments")))
        .and(body_json(json!({ "body": "Superseded." })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("comment.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/7")))
        .and(body_json(json!({ "state": "closed" })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("user.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls/7/requested_reviewers")))
        .and(body_json(
            json!({ "reviewers": ["octocat"], "team_reviewers": [] }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/labels")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("labels.json")))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/7/labels")))
        .and(body_json(json!({ "labels": [3, 1] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("issue-labels.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = gitea(&server.uri());
    forge
        .update_pull_request(7, "app 1.4.0", "b")
        .await
        .unwrap();
    forge.close_pull_request(7, "Superseded.").await.unwrap();
    forge
        .request_reviewers(7, &["capstan-bot".into(), "octocat".into()], &[])
        .await
        .unwrap();
    forge
        .add_labels(7, &["automerge".into(), "dependencies".into()])
        .await
        .unwrap();
    let err = forge
        .add_labels(7, &["no-such-label".into()])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("label \"no-such-label\" does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn merge_and_auto_merge_use_the_merge_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls/7/merge")))
        .and(body_json(json!({
            "Do": "squash",
            "head_commit_id": HEAD,
            "merge_when_checks_succeed": true,
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls/7/merge")))
        .and(body_json(json!({
            "Do": "merge",
            "head_commit_id": HEAD,
            "merge_when_checks_succeed": false,
        })))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/7")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request-merged.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = gitea(&server.uri());
    let pr = capstan::forge::PullRequest {
        number: 7,
        node_id: String::new(),
        html_url: String::new(),
        title: String::new(),
        body: String::new(),
        head_branch: "capstan/app".into(),
        head_sha: HEAD.into(),
        base_branch: "main".into(),
        open: true,
        merged: false,
        draft: false,
        author: None,
    };
    forge
        .enable_auto_merge(&pr, MergeMethod::Squash)
        .await
        .unwrap();
    let sha = forge
        .merge_pull_request(7, HEAD, MergeMethod::Merge)
        .await
        .unwrap();
    assert_eq!(sha, "8b2dfa0f3e54d2e4dc2b9ad6c4bfb2b5e22e5ac1");
}

#[tokio::test]
async fn deployments_are_unsupported_without_a_request() {
    let server = MockServer::start().await;
    let forge = gitea(&server.uri());
    assert!(!forge.supports_deployments());
    let err = forge
        .create_deployment(&NewDeployment {
            sha: HEAD.into(),
            environment: "dev".into(),
            description: "d".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Unsupported { .. }), "{err:?}");
    let err = forge
        .create_deployment_status(
            1,
            &DeploymentStatus {
                state: DeploymentState::Success,
                description: "ok".into(),
                log_url: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not supported by Gitea"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_404_names_the_pull_request_and_repository() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/pulls/99")))
        .respond_with(ResponseTemplate::new(404).set_body_json(fixture("not-found.json")))
        .mount(&server)
        .await;
    let err = gitea(&server.uri())
        .update_pull_request(99, "t", "b")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "update pull request #99 in octocat/Hello-World: pull request #99 (or repository octocat/Hello-World) not found (404)"
    );
}
