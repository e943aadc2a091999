//! Authentication against a real registry: htpasswd basic auth, the bearer
//! token flow with a token issuer (cache, expiry, scopes), docker config.json,
//! TLS with a custom CA, and clear errors for bad or missing credentials.

#[path = "registry_support/mod.rs"]
mod support;

use std::time::Duration;

use capstan::registry::auth::{BasicCredentials, CredentialSource, DockerConfig, Secret};
use capstan::registry::transport::RegistrySettings;
use capstan::registry::{ErrorKind, RegistryClient};
use support::proxy::Proxy;
use support::push::{Image, Pusher};
use support::registry::{Auth, Options, Registry};
use support::token::TokenIssuer;

fn basic(user: &str, password: &str) -> CredentialSource {
    CredentialSource::Basic(BasicCredentials {
        username: user.into(),
        password: Secret::new(password),
    })
}

fn client(host: &str, credentials: CredentialSource) -> RegistryClient {
    RegistryClient::new(
        RegistrySettings {
            credentials,
            ..support::plain(host)
        },
        support::fast_options(),
    )
    .expect("client")
}

fn basic_registry() -> Registry {
    Registry::start(Options {
        auth: Auth::Basic(vec![("alice".into(), "s3cret".into())]),
        ..Options::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_htpasswd() {
    let registry = basic_registry();
    let pusher = Pusher::new(&registry);
    let pushed = pusher
        .image(
            "acme/app",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0", "1.1.0"],
        )
        .await;
    let proxy = Proxy::start(&registry).await;

    let good = client(&proxy.host(), basic("alice", "s3cret"));
    let mut tags = good
        .list_tags("acme/app")
        .await
        .expect("lists with credentials");
    tags.sort();
    assert_eq!(tags, ["1.0.0", "1.1.0"]);
    assert_eq!(
        good.resolve("acme/app", "1.1.0")
            .await
            .expect("HEAD")
            .digest,
        pushed.digest
    );
    assert_eq!(
        good.image_info("acme/app", "1.0.0")
            .await
            .expect("config")
            .digest,
        pushed.digest
    );
    let unauthorized = proxy.log().iter().filter(|l| l.status == 401).count();
    assert_eq!(
        unauthorized, 1,
        "one challenge, then credentials are sent up front"
    );

    let wrong = client(&proxy.host(), basic("alice", "wrong"));
    let err = wrong
        .list_tags("acme/app")
        .await
        .expect_err("wrong password");
    assert!(matches!(err.kind, ErrorKind::Unauthorized(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        text.contains(&format!("registry `{}`", proxy.host())) && text.contains("image `acme/app`"),
        "{text}"
    );

    let anonymous = client(&proxy.host(), CredentialSource::Anonymous);
    let err = anonymous
        .list_tags("acme/app")
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("none are configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_json_auths() {
    let registry = basic_registry();
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    // `auth` is base64("alice:s3cret"), keyed the way `docker login` writes it.
    std::fs::write(
        &path,
        format!(
            r#"{{"auths": {{"http://{}/v2/": {{"auth": "YWxpY2U6czNjcmV0"}}}}}}"#,
            registry.host
        ),
    )
    .expect("write config");
    let config = DockerConfig::load(&path).expect("loads");
    let c = client(&registry.host, CredentialSource::DockerConfig(config));
    assert_eq!(c.list_tags("acme/app").await.expect("lists"), ["1.0.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_per_scope_cached_and_renewed() {
    let issuer = TokenIssuer::start(&[("bob", "hunter2")], 2).await;
    let registry = Registry::start(Options {
        auth: Auth::Token {
            realm: issuer.realm(),
            root_pem: issuer.root_pem.clone(),
        },
        ..Options::default()
    });
    let pusher = Pusher::with_issuer(&registry, &issuer);
    let app = pusher
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;
    pusher
        .image("acme/db", &Image::new("2024-01-01T00:00:00Z"), &["15"])
        .await;
    let proxy = Proxy::start(&registry).await;

    let c = client(&proxy.host(), basic("bob", "hunter2"));
    assert_eq!(c.list_tags("acme/app").await.expect("lists"), ["1.0.0"]);
    assert_eq!(
        c.resolve("acme/app", "1.0.0").await.expect("HEAD").digest,
        app.digest
    );
    assert_eq!(
        c.image_info("acme/app", "1.0.0")
            .await
            .expect("config")
            .digest,
        app.digest
    );
    assert_eq!(
        issuer.requests(),
        1,
        "one token for five requests on one repository"
    );
    assert_eq!(issuer.scopes(), ["repository:acme/app:pull"]);
    assert_eq!(proxy.log().iter().filter(|l| l.status == 401).count(), 1);

    // Another repository: another scope, fetched up front (no second 401).
    assert_eq!(c.list_tags("acme/db").await.expect("lists"), ["15"]);
    assert_eq!(issuer.requests(), 2);
    assert_eq!(proxy.log().iter().filter(|l| l.status == 401).count(), 1);

    // The tokens live 2 s: after that the next request gets a fresh one.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.list_tags("acme/app").await.expect("lists again");
    assert_eq!(issuer.requests(), 3, "expired token renewed");
    assert_eq!(proxy.log().iter().filter(|l| l.status == 401).count(), 1);

    let wrong = client(&proxy.host(), basic("bob", "nope"));
    let err = wrong
        .list_tags("acme/app")
        .await
        .expect_err("bad credentials");
    assert!(matches!(err.kind, ErrorKind::Unauthorized(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("token service") && text.contains("refused the credentials"),
        "{text}"
    );
    assert!(text.contains("image `acme/app`"), "{text}");

    let anonymous = client(&proxy.host(), CredentialSource::Anonymous);
    let err = anonymous
        .list_tags("acme/app")
        .await
        .expect_err("anonymous refused");
    assert!(
        err.to_string().contains("refused anonymous access"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_bearer_tokens_for_public_images() {
    let issuer = TokenIssuer::start(&[], 300).await;
    let registry = Registry::start(Options {
        auth: Auth::Token {
            realm: issuer.realm(),
            root_pem: issuer.root_pem.clone(),
        },
        ..Options::default()
    });
    Pusher::with_issuer(&registry, &issuer)
        .image(
            "library/nginx",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.27"],
        )
        .await;
    let c = client(&registry.host, CredentialSource::Anonymous);
    assert_eq!(c.list_tags("library/nginx").await.expect("lists"), ["1.27"]);
    assert_eq!(issuer.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_custom_ca() {
    let registry = Registry::start(Options {
        tls: true,
        ..Options::default()
    });
    assert!(registry.url.starts_with("https://"));
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;

    let trusted = RegistryClient::new(
        RegistrySettings {
            insecure: false,
            ca_file: registry.ca_file.clone(),
            ..support::plain(&registry.host)
        },
        support::fast_options(),
    )
    .expect("client");
    assert_eq!(
        trusted.list_tags("acme/app").await.expect("lists over TLS"),
        ["1.0.0"]
    );

    let untrusted = RegistryClient::new(
        RegistrySettings {
            insecure: false,
            ..support::plain(&registry.host)
        },
        support::fast_options(),
    )
    .expect("client");
    let err = untrusted
        .list_tags("acme/app")
        .await
        .expect_err("unknown CA");
    assert!(matches!(err.kind, ErrorKind::Connect { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    let err = RegistryClient::new(
        RegistrySettings {
            insecure: false,
            ca_file: Some(bad),
            ..support::plain(&registry.host)
        },
        support::fast_options(),
    )
    .expect_err("bad CA file");
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}
