//! How forge refusals read and which are retried: 401, 403 (permission vs. rate
//! limit, primary with `x-ratelimit-*` and secondary with `retry-after`), 404,
//! 422 and 5xx, against GitHub's documented error bodies. Waits are capped by
//! the retry policy so the tests stay short.

mod forge_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capstan::forge::{Forge, ForgeError, ManualClock};
use forge_support::{github, github_fixture as fixture};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PULL: &str = "/repos/octocat/Hello-World/pulls/1347";

async fn patch_answers(server: &MockServer, answers: Vec<ResponseTemplate>) {
    for answer in answers {
        Mock::given(method("PATCH"))
            .and(path(PULL))
            .respond_with(answer)
            .up_to_n_times(1)
            .mount(server)
            .await;
    }
}

async fn update(server: &MockServer) -> Result<u64, ForgeError> {
    github(&server.uri())
        .update_pull_request(1347, "t", "b")
        .await
        .map(|pr| pr.number)
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn bad_credentials_name_the_operation() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![ResponseTemplate::new(401).set_body_json(fixture("bad-credentials.json"))],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    assert!(matches!(err, ForgeError::Unauthorized { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "update pull request #1347 in octocat/Hello-World: bad credentials (401): Bad credentials"
    );
    assert_eq!(count(&server).await, 1, "not retried");
}

#[tokio::test]
async fn forbidden_names_the_missing_permission() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![
            ResponseTemplate::new(403)
                .insert_header("x-accepted-github-permissions", "pull_requests=write")
                .insert_header("x-ratelimit-remaining", "4999")
                .set_body_json(fixture("resource-not-accessible.json")),
        ],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "update pull request #1347 in octocat/Hello-World: forbidden (403): Resource not accessible by integration (the token needs `pull_requests=write`)"
    );
    assert_eq!(count(&server).await, 1, "not retried");
}

#[tokio::test]
async fn not_found_says_which_object() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![ResponseTemplate::new(404).set_body_json(fixture("not-found.json"))],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "update pull request #1347 in octocat/Hello-World: pull request #1347 (or repository octocat/Hello-World) not found (404)"
    );
}

#[tokio::test]
async fn validation_failures_carry_githubs_messages() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![ResponseTemplate::new(422).set_body_json(fixture("validation-failed.json"))],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    let ForgeError::Validation { errors, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors, &["state is not included in the list"]);
    assert!(
        err.to_string()
            .contains("rejected (422): Validation Failed: state is not included in the list"),
        "{err}"
    );
}

#[tokio::test]
async fn an_exhausted_rate_limit_waits_until_the_reset_then_retries() {
    let server = MockServer::start().await;
    let now = SystemTime::now();
    let reset = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    patch_answers(
        &server,
        vec![
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-used", "5000")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(fixture("rate-limit-exceeded.json")),
            ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")),
        ],
    )
    .await;
    let forge = github(&server.uri()).with_clock(Arc::new(ManualClock::new(now)));
    let pr = forge.update_pull_request(1347, "t", "b").await.unwrap();
    assert_eq!(pr.number, 1347);
    assert_eq!(count(&server).await, 2);
}

#[tokio::test]
async fn a_secondary_rate_limit_honours_retry_after() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .set_body_json(fixture("secondary-rate-limit.json")),
            ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")),
        ],
    )
    .await;
    assert_eq!(update(&server).await.unwrap(), 1347);
    assert_eq!(count(&server).await, 2);
}

#[tokio::test]
async fn a_wait_longer_than_the_cap_is_returned_not_slept() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![
            ResponseTemplate::new(403)
                .insert_header("retry-after", "3600")
                .set_body_json(fixture("secondary-rate-limit.json")),
        ],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(3600)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("rate limited, the forge asks to wait 3600s"),
        "{err}"
    );
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn a_secondary_limit_without_headers_waits_a_minute() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![ResponseTemplate::new(403).set_body_json(fixture("secondary-rate-limit.json"))],
    )
    .await;
    let err = update(&server).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let server = MockServer::start().await;
    patch_answers(
        &server,
        vec![
            ResponseTemplate::new(502),
            ResponseTemplate::new(200).set_body_json(fixture("pull-request.json")),
        ],
    )
    .await;
    assert_eq!(update(&server).await.unwrap(), 1347);
    assert_eq!(count(&server).await, 2);

    let server = MockServer::start().await;
    Mock::given(method("PATCH"))
        .and(path(PULL))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .mount(&server)
        .await;
    let err = update(&server).await.unwrap_err();
    assert!(
        matches!(err, ForgeError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("upstream unavailable"), "{err}");
    assert_eq!(
        count(&server).await,
        3,
        "attempts of the quick retry policy"
    );
}

#[tokio::test]
async fn an_unreachable_forge_is_a_transport_error() {
    // A port nobody listens on (wiremock keeps dropped servers in a pool).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = github(&format!("http://127.0.0.1:{port}"))
        .update_pull_request(1347, "t", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Transport { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("update pull request #1347 in octocat/Hello-World: "),
        "{err}"
    );
}
