//! GitHub App authentication against an HTTP mock: the JWT the mock receives is
//! checked (header, claims, RS256 signature with the public key of a key pair
//! generated for the test), the installation token is used for API calls, and
//! refreshed once a controlled clock passes 30 minutes (or 5 minutes before an
//! early expiry). `installation` webhook payloads add and remove installations.

mod forge_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capstan::forge::github_app::{InstallationChange, apply_installation_event};
use capstan::forge::{AppTokenProvider, Forge, ForgeError, GitHub, InstallationEvent, ManualClock};
use forge_support::{github_fixture as fixture, keys, quick_retry};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const APP_ID: u64 = 12345;
const INSTALLATION: u64 = 39593433;
/// One hour before the `expires_at` of GitHub's documented token answer.
const ISSUED: &str = "2016-07-11T21:14:10Z";
const FIRST_TOKEN: &str = "ghs_16C7e42F292c6912E7710c838347Ae178B4a";
const SECOND_TOKEN: &str = "ghs_2ndtokenAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn at(ts: &str) -> SystemTime {
    SystemTime::from(ts.parse::<jiff::Timestamp>().expect("timestamp"))
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

fn provider(server: &MockServer, clock: Arc<ManualClock>) -> Arc<AppTokenProvider> {
    let p = AppTokenProvider::new(
        APP_ID,
        keys().private_pem.as_bytes(),
        Some(&server.uri()),
        clock,
    )
    .expect("provider")
    .with_retry(quick_retry());
    p.add_installation(INSTALLATION);
    Arc::new(p)
}

fn token_answer(token: &str, expires_at: &str) -> ResponseTemplate {
    let mut body = fixture("installation-access-token.json");
    body["token"] = json!(token);
    body["expires_at"] = json!(expires_at);
    ResponseTemplate::new(201).set_body_json(body)
}

async fn mount_exchange(server: &MockServer, token: &str, expires_at: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!(
            "/app/installations/{INSTALLATION}/access_tokens"
        )))
        .respond_with(token_answer(token, expires_at))
        .up_to_n_times(times)
        .mount(server)
        .await;
}

/// Any API call whose `Authorization` we can read back.
async fn mount_user(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/repos/octocat/Hello-World/commits/abc/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("combined-status.json")))
        .mount(server)
        .await;
}

async fn exchanges(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/access_tokens"))
        .collect()
}

async fn api_authorizations(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/repos/"))
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect()
}

#[derive(serde::Deserialize, Debug)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[tokio::test]
async fn the_jwt_is_rs256_signed_with_github_claims_and_buys_an_installation_token() {
    let server = MockServer::start().await;
    mount_exchange(&server, FIRST_TOKEN, "2016-07-11T22:14:10Z", 1).await;
    mount_user(&server).await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let github = GitHub::with_app(
        Some(&server.uri()),
        provider(&server, clock),
        INSTALLATION,
        "octocat",
        "Hello-World",
    )
    .unwrap();
    github.combined_status("abc").await.unwrap();

    let sent = exchanges(&server).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method.as_str(), "POST");
    let auth = sent[0].headers["authorization"].to_str().unwrap();
    let jwt = auth.strip_prefix("Bearer ").expect("bearer");
    let head = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(head.alg, Algorithm::RS256);
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false; // the test clock is in 2016
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_pem(keys().public_pem.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation)
        .expect("signature verifies with the App's public key")
        .claims;
    let now = epoch(at(ISSUED));
    assert_eq!(claims.iss, APP_ID.to_string());
    assert_eq!(claims.iat, now - 60);
    assert_eq!(claims.exp, now + 9 * 60);

    assert_eq!(
        api_authorizations(&server).await,
        [format!("Bearer {FIRST_TOKEN}")]
    );
}

#[tokio::test]
async fn the_token_is_refreshed_30_minutes_after_it_was_issued() {
    let server = MockServer::start().await;
    mount_exchange(&server, FIRST_TOKEN, "2016-07-11T22:14:10Z", 1).await;
    mount_exchange(&server, SECOND_TOKEN, "2016-07-11T22:45:10Z", 1).await;
    mount_user(&server).await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let github = GitHub::with_app(
        Some(&server.uri()),
        provider(&server, clock.clone()),
        INSTALLATION,
        "octocat",
        "Hello-World",
    )
    .unwrap();
    github.combined_status("abc").await.unwrap();
    clock.advance(Duration::from_secs(29 * 60));
    github.combined_status("abc").await.unwrap();
    assert_eq!(
        exchanges(&server).await.len(),
        1,
        "cached before 30 minutes"
    );
    clock.advance(Duration::from_secs(60));
    github.combined_status("abc").await.unwrap();
    assert_eq!(exchanges(&server).await.len(), 2, "refreshed at 30 minutes");
    assert_eq!(
        api_authorizations(&server).await,
        [
            format!("Bearer {FIRST_TOKEN}"),
            format!("Bearer {FIRST_TOKEN}"),
            format!("Bearer {SECOND_TOKEN}"),
        ]
    );
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_5_minutes_before_it_expires() {
    let server = MockServer::start().await;
    // Expires 20 minutes after issue: refresh is due at 15 minutes.
    mount_exchange(&server, FIRST_TOKEN, "2016-07-11T21:34:10Z", 1).await;
    mount_exchange(&server, SECOND_TOKEN, "2016-07-11T22:34:10Z", 1).await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let p = provider(&server, clock.clone());
    assert_eq!(
        p.installation_token(INSTALLATION).await.unwrap(),
        FIRST_TOKEN
    );
    clock.advance(Duration::from_secs(14 * 60 + 59));
    assert_eq!(
        p.installation_token(INSTALLATION).await.unwrap(),
        FIRST_TOKEN
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        p.installation_token(INSTALLATION).await.unwrap(),
        SECOND_TOKEN
    );
    assert_eq!(exchanges(&server).await.len(), 2);
}

#[tokio::test]
async fn the_cached_token_is_there_for_git_until_it_expires() {
    let server = MockServer::start().await;
    mount_exchange(&server, FIRST_TOKEN, "2016-07-11T22:14:10Z", 1).await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let p = provider(&server, clock.clone());
    assert_eq!(p.cached_token(INSTALLATION), None);
    p.installation_token(INSTALLATION).await.unwrap();
    clock.advance(Duration::from_secs(59 * 60));
    assert_eq!(p.cached_token(INSTALLATION).as_deref(), Some(FIRST_TOKEN));
    clock.advance(Duration::from_secs(60));
    assert_eq!(p.cached_token(INSTALLATION), None);
}

#[tokio::test]
async fn installation_events_add_and_remove_installations() {
    let server = MockServer::start().await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let p = provider(&server, clock);
    let created = serde_json::to_vec(&fixture("installation-created.json")).unwrap();
    let deleted = serde_json::to_vec(&fixture("installation-deleted.json")).unwrap();

    // The configured installation is the one in the documented payloads.
    assert_eq!(p.installations(), [INSTALLATION]);
    let event = InstallationEvent::parse(&deleted).unwrap();
    assert_eq!(
        apply_installation_event(&p, &event),
        InstallationChange::Removed(INSTALLATION)
    );
    assert!(p.installations().is_empty());
    let err = p.installation_token(INSTALLATION).await.unwrap_err();
    assert!(matches!(err, ForgeError::Config(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("installation 39593433 is not known"),
        "{err}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());

    let event = InstallationEvent::parse(&created).unwrap();
    assert_eq!(event.installation.account.as_ref().unwrap().login, "gagbo");
    assert_eq!(
        apply_installation_event(&p, &event),
        InstallationChange::Added(INSTALLATION)
    );
    assert_eq!(
        apply_installation_event(&p, &event),
        InstallationChange::Unchanged
    );
    assert_eq!(p.installations(), [INSTALLATION]);

    let err =
        InstallationEvent::parse(br#"{"action":"created","installation":{"id":"x"}}"#).unwrap_err();
    assert!(err.to_string().contains("malformed payload"), "{err}");
}

#[tokio::test]
async fn the_bot_login_of_an_app_is_its_slug_with_bot() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/app"))
        .and(header("accept", "application/vnd.github+json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("app.json")))
        .expect(1)
        .mount(&server)
        .await;
    let clock = Arc::new(ManualClock::new(at(ISSUED)));
    let github = GitHub::with_app(
        Some(&server.uri()),
        provider(&server, clock),
        INSTALLATION,
        "octocat",
        "Hello-World",
    )
    .unwrap();
    assert_eq!(github.bot_login().await.unwrap(), "octoapp[bot]");
    assert_eq!(github.bot_login().await.unwrap(), "octoapp[bot]");
    let sent = server.received_requests().await.unwrap();
    assert!(
        sent[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ey"),
        "GET /app is authenticated with the App's JWT"
    );
}

#[tokio::test]
async fn a_key_that_is_not_rsa_pem_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.pem");
    std::fs::write(&file, "not a key").unwrap();
    let err = AppTokenProvider::from_key_file(
        APP_ID,
        &file,
        None,
        Arc::new(ManualClock::new(at(ISSUED))),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("app.pem"), "{err}");
    assert!(err.contains("not an RSA PEM key"), "{err}");
    let missing = AppTokenProvider::from_key_file(
        APP_ID,
        &dir.path().join("missing.pem"),
        None,
        Arc::new(ManualClock::new(at(ISSUED))),
    )
    .unwrap_err()
    .to_string();
    assert!(missing.contains("missing.pem"), "{missing}");
}
