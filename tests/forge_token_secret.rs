//! GitHub App installation tokens published in a Kubernetes Secret per
//! installation, against a real API server (tests/support/cluster.rs) and the
//! GitHub mock: written on the first token, rewritten when the controlled clock
//! passes the 30-minute refresh, deleted when the installation goes away.

mod forge_support;
mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use capstan::forge::github_app::{InstallationChange, apply_installation_event};
use capstan::forge::token_secret::{APP_LABEL, SecretSink};
use capstan::forge::{AppTokenProvider, InstallationEvent, ManualClock};
use forge_support::{github_fixture as fixture, keys, quick_retry};
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use support::cluster::TestNamespace;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const INSTALLATION: u64 = 39593433;

fn token_answer(token: &str, expires_at: &str) -> ResponseTemplate {
    let mut body = fixture("installation-access-token.json");
    body["token"] = json!(token);
    body["expires_at"] = json!(expires_at);
    ResponseTemplate::new(201).set_body_json(body)
}

fn data(secret: &Secret, key: &str) -> String {
    let bytes = &secret.data.as_ref().expect("data")[key].0;
    String::from_utf8(bytes.clone()).expect("utf-8")
}

#[tokio::test]
async fn installation_tokens_are_published_refreshed_and_withdrawn() {
    let ns = TestNamespace::new("forge-token-secret").await;
    let server = MockServer::start().await;
    for (token, expires) in [
        ("ghs_first", "2016-07-11T22:14:10Z"),
        ("ghs_second", "2016-07-11T22:45:10Z"),
    ] {
        Mock::given(method("POST"))
            .and(path(format!(
                "/app/installations/{INSTALLATION}/access_tokens"
            )))
            .respond_with(token_answer(token, expires))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    let clock = Arc::new(ManualClock::new(SystemTime::from(
        "2016-07-11T21:14:10Z".parse::<jiff::Timestamp>().unwrap(),
    )));
    let sink = SecretSink::new(ns.client.clone(), &ns.name, "github-token");
    let provider = AppTokenProvider::new(
        12345,
        keys().private_pem.as_bytes(),
        Some(&server.uri()),
        clock.clone(),
    )
    .unwrap()
    .with_retry(quick_retry())
    .with_sink(Arc::new(sink));
    provider.add_installation(INSTALLATION);
    let secrets = ns.api::<Secret>();
    let name = format!("github-token-{INSTALLATION}");

    assert!(provider.refresh_due().await.is_empty());
    let secret = secrets.get(&name).await.expect("secret written");
    assert_eq!(data(&secret, "token"), "ghs_first");
    assert_eq!(data(&secret, "expiresAt"), "2016-07-11T22:14:10Z");
    assert_eq!(data(&secret, "installationId"), INSTALLATION.to_string());
    let labels = secret.metadata.labels.expect("labels");
    assert_eq!(labels[APP_LABEL], INSTALLATION.to_string());
    assert_eq!(labels["app.kubernetes.io/managed-by"], "capstan");

    // Not due yet: nothing new.
    clock.advance(Duration::from_secs(29 * 60));
    assert!(provider.refresh_due().await.is_empty());
    assert_eq!(
        data(&secrets.get(&name).await.unwrap(), "token"),
        "ghs_first"
    );
    // Due at 30 minutes: a new token, published.
    clock.advance(Duration::from_secs(60));
    assert!(provider.refresh_due().await.is_empty());
    let secret = secrets.get(&name).await.unwrap();
    assert_eq!(data(&secret, "token"), "ghs_second");
    assert_eq!(data(&secret, "expiresAt"), "2016-07-11T22:45:10Z");

    // The App is uninstalled: the installation and its Secret go.
    let deleted = serde_json::to_vec(&fixture("installation-deleted.json")).unwrap();
    let change = apply_installation_event(&provider, &InstallationEvent::parse(&deleted).unwrap());
    assert_eq!(change, InstallationChange::Removed(INSTALLATION));
    provider.unpublish(INSTALLATION).await.unwrap();
    let gone = secrets.get_opt(&name).await.unwrap();
    assert!(gone.is_none(), "{gone:?}");
    provider.unpublish(INSTALLATION).await.unwrap();
}
