//! Commit statuses against an HTTP mock replaying GitHub's documented responses:
//! the exact path, headers and JSON body capstan sends, and how errors read.

use capstan::forge::{CommitState, CommitStatus, Forge, GitHub};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

fn fixture(name: &str) -> serde_json::Value {
    let p = format!(
        "{}/tests/fixtures/github/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
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
    // `expect(1)` on each mock is verified when the server drops; check explicitly too.
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
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
