//! The GitHub forge against an HTTP mock replaying GitHub's documented
//! responses (tests/fixtures/github, see its README): for each call the exact
//! method, path, query and JSON body capstan sends, and how the answer is read.

mod forge_support;

use capstan::forge::{
    CommitState, CommitStatus, DeploymentState, DeploymentStatus, Forge, ForgeError, GitHub,
    MergeMethod, NewDeployment, NewPullRequest, Opened,
};
use forge_support::{github, github_fixture as fixture, quick_retry};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

fn new_pr() -> NewPullRequest {
    NewPullRequest {
        title: "chore(images): app 1.2.3 -> 1.3.0".into(),
        body: "Updates `ghcr.io/acme/app`.".into(),
        head: "new-topic".into(),
        base: "master".into(),
        draft: false,
    }
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording on")
}

#[tokio::test]
async fn statuses_are_posted_to_the_commit_with_context_and_one_line_description() {
    let server = MockServer::start().await;
    for (state, description) in [
        ("pending", "syncing 6dcb09b"),
        (
            "failure",
            "Deployment.apps web/api: in progress: ready replicas: 0/2",
        ),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("/repos/acme/fleet/statuses/{SHA}")))
            .and(header("authorization", "Bearer t0ken"))
            .and(body_json(
                json!({ "state": state, "context": "capstan/dev", "description": description }),
            ))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(fixture("create-commit-status.json")),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let github = GitHub::new(Some(&server.uri()), Some("t0ken".into()), "acme", "fleet").unwrap();
    github
        .set_commit_status(&CommitStatus::new(
            SHA,
            CommitState::Pending,
            "capstan/dev",
            "syncing 6dcb09b",
        ))
        .await
        .unwrap();
    github
        .set_commit_status(&CommitStatus::new(
            SHA,
            CommitState::Failure,
            "capstan/dev",
            "Deployment.apps web/api:\n in progress: ready replicas: 0/2",
        ))
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn long_descriptions_are_cut_to_140_characters() {
    let server = MockServer::start().await;
    let long = "x".repeat(200);
    let want = format!("{}…", "x".repeat(139));
    Mock::given(method("POST"))
        .and(path(format!("/repos/acme/fleet/statuses/{SHA}")))
        .and(body_json(
            json!({ "state": "error", "context": "ops/prod", "description": want }),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("create-commit-status.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let github = GitHub::new(Some(&server.uri()), None, "acme", "fleet").unwrap();
    github
        .set_commit_status(&CommitStatus::new(
            SHA,
            CommitState::Error,
            "ops/prod",
            &long,
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn api_errors_name_the_commit_and_githubs_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/acme/fleet/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(422).set_body_json(fixture("validation-failed.json")))
        .mount(&server)
        .await;
    let github = GitHub::new(Some(&server.uri()), Some("t".into()), "acme", "fleet").unwrap();
    let err = github
        .set_commit_status(&CommitStatus::new(
            SHA,
            CommitState::Success,
            "capstan/dev",
            "ok",
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("acme/fleet@{SHA}")), "{err}");
    assert!(err.contains("Validation Failed"), "{err}");
    assert!(err.contains("state is not included in the list"), "{err}");
}

#[tokio::test]
async fn the_open_pull_request_is_found_by_owner_and_head_branch() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(header("authorization", "Bearer t0ken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pulls-list-open.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = github(&server.uri());
    let pr = forge
        .find_open_pull_request("new-topic", "master")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(pr.number, 1347);
    assert_eq!(pr.node_id, "MDExOlB1bGxSZXF1ZXN0MQ==");
    assert_eq!(pr.head_sha, SHA);
    assert_eq!(
        pr.html_url,
        "https://github.com/octocat/Hello-World/pull/1347"
    );
    assert_eq!(pr.author.as_deref(), Some("octocat"));
    assert!(pr.open && !pr.merged && !pr.draft);
    let got = &requests(&server).await[0];
    assert_eq!(
        got.url.query(),
        Some("state=open&head=octocat:new-topic&base=master&per_page=100")
    );
}

#[tokio::test]
async fn no_open_pull_request_for_another_head_is_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(query_param("head", "octocat:capstan/app"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let found = github(&server.uri())
        .find_open_pull_request("capstan/app", "master")
        .await
        .unwrap();
    assert_eq!(found, None);
}

#[tokio::test]
async fn opening_a_pull_request_posts_title_body_head_base_and_draft() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(header("authorization", "Bearer t0ken"))
        .and(body_json(json!({
            "title": "chore(images): app 1.2.3 -> 1.3.0",
            "body": "Updates `ghcr.io/acme/app`.",
            "head": "new-topic",
            "base": "master",
            "draft": false,
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    let opened = github(&server.uri())
        .create_pull_request(&new_pr())
        .await
        .unwrap();
    let Opened::Created(pr) = opened else {
        panic!("expected a new PR, got {opened:?}")
    };
    assert_eq!((pr.number, pr.head_branch.as_str()), (1347, "new-topic"));
}

#[tokio::test]
async fn a_second_open_after_a_restart_finds_the_existing_pull_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(fixture("pull-request-already-exists.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .and(query_param("head", "octocat:new-topic"))
        .and(query_param("base", "master"))
        .and(query_param("state", "open"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pulls-list-open.json")))
        .expect(1)
        .mount(&server)
        .await;
    let opened = github(&server.uri())
        .create_pull_request(&new_pr())
        .await
        .unwrap();
    assert!(
        matches!(&opened, Opened::AlreadyOpen(pr) if pr.number == 1347),
        "{opened:?}"
    );
}

#[tokio::test]
async fn updating_a_pull_request_patches_title_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octocat/Hello-World/pulls/1347"))
        .and(body_json(
            json!({ "title": "app 1.4.0", "body": "new body" }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    let pr = github(&server.uri())
        .update_pull_request(1347, "app 1.4.0", "new body")
        .await
        .unwrap();
    assert_eq!(pr.number, 1347);
}

#[tokio::test]
async fn closing_comments_first_then_closes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/issues/1347/comments"))
        .and(body_json(
            json!({ "body": "Superseded: `master` already has app 1.4.0." }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("issue-comment.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octocat/Hello-World/pulls/1347"))
        .and(body_json(json!({ "state": "closed" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request-closed.json")))
        .expect(1)
        .mount(&server)
        .await;
    github(&server.uri())
        .close_pull_request(1347, "Superseded: `master` already has app 1.4.0.")
        .await
        .unwrap();
    let order: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(order, ["POST", "PATCH"]);
}

#[tokio::test]
async fn reviewers_are_requested_without_the_bot_itself() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("user.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/repos/octocat/Hello-World/pulls/1347/requested_reviewers",
        ))
        .and(body_json(json!({
            "reviewers": ["hubot", "other_user"],
            "team_reviewers": ["justice-league"],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = github(&server.uri());
    let users = ["octocat", "hubot", "other_user", "Hubot"].map(String::from);
    forge
        .request_reviewers(1347, &users, &["justice-league".to_string()])
        .await
        .unwrap();
    // Only the bot left: nothing to ask (and the login is cached).
    forge
        .request_reviewers(1347, &["OctoCat".to_string()], &[])
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn labels_are_added_to_the_pull_requests_issue() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/issues/1347/labels"))
        .and(body_json(json!({ "labels": ["bug", "enhancement"] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("labels-added.json")))
        .expect(1)
        .mount(&server)
        .await;
    github(&server.uri())
        .add_labels(1347, &["bug".to_string(), "enhancement".to_string()])
        .await
        .unwrap();
}

#[tokio::test]
async fn compare_lists_commits_with_their_authors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/compare/master...topic"))
        .and(query_param("per_page", "250"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("compare-commits.json")))
        .expect(1)
        .mount(&server)
        .await;
    // The source repository of an image can differ from the manifests repository.
    let forge = GitHub::new(Some(&server.uri()), None, "acme", "fleet").unwrap();
    let cmp = forge
        .compare("octocat", "Hello-World", "master", "topic")
        .await
        .unwrap();
    assert_eq!(
        cmp.html_url,
        "https://github.com/octocat/Hello-World/compare/master...topic"
    );
    assert_eq!(cmp.total_commits, 2);
    let first = &cmp.commits[0];
    assert_eq!(first.sha, SHA);
    assert_eq!(first.summary, "Fix all the bugs");
    assert_eq!(first.author_login.as_deref(), Some("octocat"));
    assert_eq!(
        (first.author_name.as_str(), first.author_email.as_str()),
        ("Monalisa Octocat", "support@github.com")
    );
    let second = &cmp.commits[1];
    assert_eq!(second.author_login, None);
    assert_eq!(second.author_email, "jane@example.com");
}

#[tokio::test]
async fn a_deployment_and_its_statuses() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/deployments"))
        .and(body_json(json!({
            "ref": SHA,
            "environment": "production",
            "description": "capstan sync of production",
            "auto_merge": false,
            "required_contexts": [],
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployment.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/deployments/1/statuses"))
        .and(body_json(
            json!({ "state": "in_progress", "description": "applying 12 objects" }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployment-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octocat/Hello-World/deployments/1/statuses"))
        .and(body_json(json!({
            "state": "success",
            "description": "12 applied, 0 pruned",
            "log_url": "https://capstan.example.com/targets/production",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("deployment-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = github(&server.uri());
    let id = forge
        .create_deployment(&NewDeployment {
            sha: SHA.into(),
            environment: "production".into(),
            description: "capstan sync of production".into(),
        })
        .await
        .unwrap();
    assert_eq!(id, 1);
    forge
        .create_deployment_status(
            id,
            &DeploymentStatus {
                state: DeploymentState::InProgress,
                description: "applying 12 objects".into(),
                log_url: None,
            },
        )
        .await
        .unwrap();
    forge
        .create_deployment_status(
            id,
            &DeploymentStatus {
                state: DeploymentState::Success,
                description: "12 applied, 0 pruned".into(),
                log_url: Some("https://capstan.example.com/targets/production".into()),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_combined_status_of_a_commit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/repos/octocat/Hello-World/commits/{SHA}/status"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("combined-status.json")))
        .expect(1)
        .mount(&server)
        .await;
    let combined = github(&server.uri()).combined_status(SHA).await.unwrap();
    assert!(combined.is_green(), "{combined:?}");
    let contexts: Vec<&str> = combined
        .statuses
        .iter()
        .map(|s| s.context.as_str())
        .collect();
    assert_eq!(
        contexts,
        ["continuous-integration/jenkins", "security/brakeman"]
    );
}

#[tokio::test]
async fn merging_is_guarded_by_the_head_sha() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/repos/octocat/Hello-World/pulls/1347/merge"))
        .and(body_json(json!({ "sha": SHA, "merge_method": "squash" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("merge-pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/repos/octocat/Hello-World/pulls/1347/merge"))
        .and(body_json(
            json!({ "sha": "0000000", "merge_method": "merge" }),
        ))
        .respond_with(ResponseTemplate::new(409).set_body_json(fixture("merge-head-modified.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge = github(&server.uri());
    let merged = forge
        .merge_pull_request(1347, SHA, MergeMethod::Squash)
        .await
        .unwrap();
    assert_eq!(merged, SHA);
    let err = forge
        .merge_pull_request(1347, "0000000", MergeMethod::Merge)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Head branch was modified"),
        "{err}"
    );
}

#[tokio::test]
async fn auto_merge_is_enabled_through_graphql_with_the_node_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/pulls"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pulls-list-open.json")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .and(header("authorization", "Bearer t0ken"))
        .and(body_json(json!({
            "query": "mutation($id: ID!, $method: PullRequestMergeMethod!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) { pullRequest { number } } }",
            "variables": { "id": "MDExOlB1bGxSZXF1ZXN0MQ==", "method": "SQUASH" },
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("graphql-enable-auto-merge.json")),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("graphql-auto-merge-not-allowed.json")),
        )
        .mount(&server)
        .await;
    let forge = github(&server.uri());
    let pr = forge
        .find_open_pull_request("new-topic", "master")
        .await
        .unwrap()
        .expect("open");
    forge
        .enable_auto_merge(&pr, MergeMethod::Squash)
        .await
        .unwrap();
    // GraphQL reports refusals in `errors` with a 200.
    let err = forge
        .enable_auto_merge(&pr, MergeMethod::Squash)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Auto merge is not allowed for this repository"),
        "{err}"
    );
}

#[tokio::test]
async fn github_enterprise_paths_keep_the_api_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path("/api/v3/repos/octocat/Hello-World/pulls/1347"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/graphql"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("graphql-enable-auto-merge.json")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let forge = GitHub::new(
        Some(&format!("{}/api/v3", server.uri())),
        Some("t0ken".into()),
        "octocat",
        "Hello-World",
    )
    .unwrap()
    .with_retry(quick_retry());
    let pr = forge.update_pull_request(1347, "t", "b").await.unwrap();
    forge
        .enable_auto_merge(&pr, MergeMethod::Merge)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_forge_works_behind_an_arc_dyn() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("user.json")))
        .expect(1)
        .mount(&server)
        .await;
    let forge: std::sync::Arc<dyn Forge> = std::sync::Arc::new(github(&server.uri()));
    let handle = tokio::spawn({
        let forge = forge.clone();
        async move { forge.bot_login().await }
    });
    assert_eq!(handle.await.unwrap().unwrap(), "octocat");
    assert_eq!(forge.kind(), "github");
}
