//! Failures between the watcher and a real registry, injected by a loopback
//! proxy: 429 with `Retry-After`, 5xx, timeouts, and bad answers (malformed
//! JSON, wrong content type, truncated or oversized bodies, invalid `Link`,
//! unknown manifest media type). Every failure is a clear error naming the
//! registry and the image; a broken image or a dead registry never stops the
//! others; the request budget and concurrency cap hold.

#[path = "registry_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use capstan::registry::limits::BodyLimits;
use capstan::registry::transport::{ClientOptions, RegistrySettings};
use capstan::registry::{Error, ErrorKind, Outcome, RegistryClient, ScanOptions, Scanner};
use support::proxy::{Fault, Proxy, max_in_window};
use support::push::{Image, Pusher};
use support::registry::{Registry, free_port};

const REPO: &str = "acme/app";

/// A registry with `acme/app` tagged 1.0.0 and 1.1.0, behind a fault proxy.
async fn setup() -> (Registry, Proxy) {
    let registry = Registry::plain();
    Pusher::new(&registry)
        .image(
            REPO,
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0", "1.1.0"],
        )
        .await;
    let proxy = Proxy::start(&registry).await;
    (registry, proxy)
}

fn client_with(host: &str, options: ClientOptions) -> RegistryClient {
    RegistryClient::new(support::plain(host), options).expect("client")
}

fn client(host: &str) -> RegistryClient {
    client_with(host, support::fast_options())
}

/// Every error must say which registry and which image.
fn assert_names(err: &Error, host: &str, image: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&format!("registry `{host}`")),
        "no registry in: {text}"
    );
    assert!(
        text.contains(&format!("image `{image}`")),
        "no image in: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_honour_retry_after() {
    let (_registry, proxy) = setup().await;
    let c = client(&proxy.host());

    proxy.inject(
        "/tags/list",
        None,
        Fault::TooManyRequests(Some("1".into())),
        Some(1),
    );
    let started = Instant::now();
    assert_eq!(
        c.list_tags(REPO).await.expect("lists after waiting").len(),
        2
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.count("GET", "/tags/list"), 2);

    // Without Retry-After: exponential backoff.
    proxy.clear_log();
    proxy.inject("/tags/list", None, Fault::TooManyRequests(None), Some(2));
    assert_eq!(c.list_tags(REPO).await.expect("lists").len(), 2);
    assert_eq!(proxy.count("GET", "/tags/list"), 3);

    // A Retry-After beyond what we wait for: fail now, say so.
    proxy.clear_log();
    proxy.inject(
        "/tags/list",
        None,
        Fault::TooManyRequests(Some("3600".into())),
        Some(1),
    );
    let started = Instant::now();
    let err = c.list_tags(REPO).await.expect_err("too long to wait");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(err.kind, ErrorKind::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3600),
        "{err}"
    );
    assert!(err.to_string().contains("retry after 3600s"), "{err}");
    assert_names(&err, &proxy.host(), REPO);
    assert_eq!(proxy.count("GET", "/tags/list"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_reported() {
    let (_registry, proxy) = setup().await;
    let c = client(&proxy.host());

    proxy.inject("/manifests/", Some("HEAD"), Fault::Status(503), Some(2));
    c.resolve(REPO, "1.0.0")
        .await
        .expect("third attempt succeeds");
    assert_eq!(proxy.count("HEAD", "/manifests/"), 3);

    proxy.clear_log();
    proxy.inject("/tags/list", None, Fault::Status(502), None);
    let err = c.list_tags(REPO).await.expect_err("always 502");
    assert!(
        matches!(err.kind, ErrorKind::Status { status: 502, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("injected HTTP 502"),
        "the registry's message is kept: {err}"
    );
    assert_names(&err, &proxy.host(), REPO);
    assert_eq!(proxy.count("GET", "/tags/list"), 3, "max_attempts");

    // 4xx other than 401/429 are not retried.
    proxy.clear_faults();
    proxy.clear_log();
    proxy.inject("/tags/list", None, Fault::Status(400), None);
    let err = c.list_tags(REPO).await.expect_err("400");
    assert!(
        matches!(err.kind, ErrorKind::Status { status: 400, .. }),
        "{err}"
    );
    assert_eq!(proxy.count("GET", "/tags/list"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_retried_then_reported() {
    let (_registry, proxy) = setup().await;
    let options = ClientOptions {
        timeout: Duration::from_millis(400),
        ..support::fast_options()
    };
    let c = client_with(&proxy.host(), options);

    proxy.inject(
        "/tags/list",
        None,
        Fault::Delay(Duration::from_secs(2)),
        Some(1),
    );
    assert_eq!(c.list_tags(REPO).await.expect("second attempt").len(), 2);

    proxy.inject(
        "/tags/list",
        None,
        Fault::Delay(Duration::from_secs(2)),
        None,
    );
    let started = Instant::now();
    let err = c.list_tags(REPO).await.expect_err("always slow");
    assert!(matches!(err.kind, ErrorKind::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "3 attempts of 400 ms plus backoff"
    );
    assert_names(&err, &proxy.host(), REPO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_clear_errors() {
    let (_registry, proxy) = setup().await;
    let host = proxy.host();
    let c = client(&host);
    type Check = fn(&ErrorKind) -> bool;
    let json = |body: &str| Fault::Replace {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    let cases: Vec<(&str, &str, Fault, Check, &str)> = vec![
        (
            "malformed JSON",
            "/tags/list",
            json(r#"{"name": "acme/app", "tags": ["1.0.0", "#),
            |k| matches!(k, ErrorKind::InvalidResponse { .. }),
            "malformed tags/list JSON",
        ),
        (
            "tags of the wrong type",
            "/tags/list",
            json(r#"{"name": "acme/app", "tags": [1, 2]}"#),
            |k| matches!(k, ErrorKind::InvalidResponse { .. }),
            "malformed tags/list JSON",
        ),
        (
            "wrong content type",
            "/tags/list",
            Fault::ContentType("text/html; charset=utf-8".into()),
            |k| matches!(k, ErrorKind::InvalidResponse { .. }),
            "expected JSON, got content type `text/html`",
        ),
        (
            "truncated body",
            "/tags/list",
            Fault::Truncate,
            |k| matches!(k, ErrorKind::InvalidResponse { .. }),
            "body truncated",
        ),
        (
            "invalid Link header",
            "/tags/list",
            Fault::Header(
                "link".into(),
                "/v2/acme/app/tags/list?last=1.0.0; rel=next".into(),
            ),
            |k| matches!(k, ErrorKind::InvalidLink { .. }),
            "invalid Link header",
        ),
        (
            "Link to another host",
            "/tags/list",
            Fault::Header(
                "link".into(),
                "<http://evil.example/v2/acme/app/tags/list?last=x>; rel=\"next\"".into(),
            ),
            |k| matches!(k, ErrorKind::InvalidLink { .. }),
            "another host",
        ),
        (
            "Link back to the same page",
            "/tags/list",
            Fault::Header(
                "link".into(),
                "</v2/acme/app/tags/list?n=1000>; rel=\"next\"".into(),
            ),
            |k| matches!(k, ErrorKind::InvalidLink { .. }),
            "loops",
        ),
    ];
    for (name, path, fault, check, text) in cases {
        proxy.clear_faults();
        proxy.inject(path, None, fault, None);
        let err = c.list_tags(REPO).await.expect_err(name);
        assert!(check(&err.kind), "{name}: {err:?}");
        assert!(err.to_string().contains(text), "{name}: {err}");
        assert_names(&err, &host, REPO);
    }

    let manifest_cases: Vec<(&str, &str, Option<&str>, Fault, &str)> = vec![
        (
            "unknown manifest media type (GET)",
            "/manifests/",
            Some("GET"),
            Fault::ContentType("application/vnd.example.thing.v1+json".into()),
            "unsupported manifest media type `application/vnd.example.thing.v1+json`",
        ),
        (
            "unknown manifest media type (HEAD)",
            "/manifests/",
            Some("HEAD"),
            Fault::ContentType("application/vnd.example.thing.v1+json".into()),
            "unsupported manifest media type",
        ),
        (
            "digest that does not match the body",
            "/manifests/",
            Some("GET"),
            Fault::Header(
                "docker-content-digest".into(),
                format!("sha256:{}", "0".repeat(64)),
            ),
            "expected sha256:0000",
        ),
        (
            "malformed manifest",
            "/manifests/",
            Some("GET"),
            Fault::Replace {
                status: 200,
                headers: vec![(
                    "content-type".into(),
                    capstan::registry::client::OCI_MANIFEST.into(),
                )],
                body: b"{\"schemaVersion\": 2, \"config\": ".to_vec(),
            },
            "malformed manifest JSON",
        ),
        (
            "config blob that is not what the manifest says",
            "/blobs/",
            Some("GET"),
            Fault::Replace {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: b"{\"created\": \"2024-01-01T00:00:00Z\"}".to_vec(),
            },
            "has digest sha256:",
        ),
    ];
    for (name, path, method, fault, text) in manifest_cases {
        proxy.clear_faults();
        proxy.inject(path, method, fault, None);
        let err = match method {
            Some("HEAD") => c.resolve(REPO, "1.0.0").await.expect_err(name),
            _ => c.image_info(REPO, "1.0.0").await.expect_err(name),
        };
        assert!(err.to_string().contains(text), "{name}: {err}");
        assert_names(&err, &host, REPO);
    }
    proxy.clear_faults();
    assert!(c.image_info(REPO, "1.0.0").await.is_ok(), "healthy again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let first = pusher
        .image(REPO, &Image::new("2024-01-01T00:00:00Z"), &["seed"])
        .await;
    let tags: Vec<String> = (0..200).map(|i| format!("build-{i:05}")).collect();
    pusher.retag(REPO, &first, &tags, 8).await;
    let proxy = Proxy::start(&registry).await;
    let small = ClientOptions {
        limits: BodyLimits {
            tags_page: 1024,
            manifest: 64,
            ..BodyLimits::default()
        },
        ..support::fast_options()
    };
    let c = client_with(&proxy.host(), small);
    let err = c.list_tags(REPO).await.expect_err("tags/list over 1 KiB");
    assert!(
        matches!(err.kind, ErrorKind::TooLarge { limit: 1024, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("larger than the 1024-byte limit"),
        "{err}"
    );
    assert_names(&err, &proxy.host(), REPO);
    assert_eq!(proxy.count("GET", "/tags/list"), 1, "not retried");

    let err = c
        .manifest(REPO, "seed")
        .await
        .expect_err("manifest over 64 bytes");
    assert!(
        matches!(err.kind, ErrorKind::TooLarge { limit: 64, .. }),
        "{err}"
    );

    // Without a Content-Length (chunked), the cap holds while reading.
    proxy.clear_log();
    proxy.inject("/tags/list", None, Fault::Chunked, None);
    let err = c
        .list_tags(REPO)
        .await
        .expect_err("chunked tags/list over 1 KiB");
    assert!(
        matches!(err.kind, ErrorKind::TooLarge { limit: 1024, .. }),
        "{err}"
    );
    let log = proxy.log();
    assert_eq!(log.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_image_or_dead_registry_never_stops_the_others() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    pusher
        .image(
            "acme/good",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0", "1.2.0"],
        )
        .await;
    pusher
        .image(
            "acme/broken",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0"],
        )
        .await;
    let proxy = Proxy::start(&registry).await;
    // Nothing listens on this port: connection refused.
    let dead = format!("127.0.0.1:{}", free_port());

    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for (name, image) in [
        ("good", format!("{}/acme/good", proxy.host())),
        ("broken", format!("{}/acme/broken", proxy.host())),
        ("dead-a", format!("{dead}/acme/a")),
        ("dead-b", format!("{dead}/acme/b")),
        ("missing", format!("{}/acme/missing", proxy.host())),
    ] {
        text.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '>=1.0.0'\n"
        ));
    }
    std::fs::write(dir.path().join("p.yaml"), text).expect("write");
    let policies = capstan::policy::load_file(&dir.path().join("p.yaml")).expect("policies");

    let options = ClientOptions {
        down_cooldown: Duration::from_secs(30),
        ..support::fast_options()
    };
    let scanner = Scanner::new(
        vec![
            (proxy.host(), Ok(support::plain(&proxy.host()))),
            (dead.clone(), Ok(support::plain(&dead))),
            // A registry whose credentials cannot be read: its images are stale.
            (
                "creds.example".into(),
                Err("environment variable `NOPE` is not set".into()),
            ),
        ],
        options,
        ScanOptions::default(),
    );

    let first = scanner.scan_all(&policies[..1]).await;
    assert!(first[0].fresh().is_some());

    proxy.inject(
        "/acme/broken/tags/list",
        None,
        Fault::ContentType("text/plain".into()),
        None,
    );
    proxy.inject("/acme/good/tags/list", None, Fault::Status(503), Some(1));
    let started = Instant::now();
    let results = scanner.scan_all(&policies).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "a dead registry must not hold the scan: {elapsed:?}"
    );

    let by_name = |n: &str| results.iter().find(|r| r.policy == n).expect("result");
    let good = by_name("good");
    let fresh = good
        .fresh()
        .unwrap_or_else(|| panic!("good stays fresh: {:?}", good.error()));
    assert_eq!(fresh.decision.chosen.as_deref(), Some("1.2.0"));

    let broken = by_name("broken");
    assert!(broken.is_stale());
    assert!(
        broken
            .error()
            .expect("error")
            .to_string()
            .contains("expected JSON")
    );
    let missing = by_name("missing");
    assert!(matches!(
        missing.error().map(|e| &e.kind),
        Some(ErrorKind::NotFound(_))
    ));

    for name in ["dead-a", "dead-b"] {
        let r = by_name(name);
        let err = r.error().unwrap_or_else(|| panic!("{name} is stale"));
        assert!(
            matches!(err.kind, ErrorKind::Connect { .. } | ErrorKind::Down(_)),
            "{name}: {err}"
        );
        assert_eq!(err.registry, dead);
        assert!(matches!(
            &r.outcome,
            Outcome::Stale {
                last_good: None,
                ..
            }
        ));
    }

    // The dead registry is now marked down: the next scan fails at once.
    let started = Instant::now();
    let again = scanner.scan(&policies[2]).await;
    assert!(
        matches!(again.error().map(|e| &e.kind), Some(ErrorKind::Down(_))),
        "{:?}",
        again.error()
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    // A stale result keeps the last good one.
    proxy.inject("/acme/good/tags/list", None, Fault::Status(500), None);
    let stale = scanner.scan(&policies[0]).await;
    match &stale.outcome {
        Outcome::Stale {
            last_good: Some(prev),
            error,
        } => {
            assert_eq!(prev.decision.chosen.as_deref(), Some("1.2.0"));
            assert!(error.to_string().contains("HTTP 500"), "{error}");
        }
        other => panic!("expected stale with the last good result, got {other:?}"),
    }

    let creds = scanner
        .client("creds.example")
        .expect_err("unusable settings");
    assert!(creds.to_string().contains("NOPE"), "{creds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_budget_and_concurrency_hold() {
    let (_registry, proxy) = setup().await;
    let options = ClientOptions {
        // 5 requests per second: requestsPerMinute scaled to a 1 s window.
        budget_window: Duration::from_secs(1),
        ..support::fast_options()
    };
    let c = RegistryClient::new(
        RegistrySettings {
            requests_per_minute: 5,
            concurrency: 16,
            ..support::plain(&proxy.host())
        },
        options,
    )
    .expect("client");
    let started = Instant::now();
    let all = futures::future::join_all((0..12).map(|_| c.resolve(REPO, "1.0.0"))).await;
    assert!(all.iter().all(Result::is_ok));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "12 requests at 5/s need two full windows: {elapsed:?}"
    );
    // Seen from the proxy: a request counts from when it is sent until one
    // window after its answer, so arrival jitter cannot crowd a window.
    let busiest = max_in_window(&proxy.log(), Duration::from_secs(1));
    assert!(busiest <= 5, "{busiest} requests within one window");

    // Concurrency 2 with answers that take 300 ms: 6 requests take 3 rounds.
    proxy.clear_log();
    proxy.inject(
        "/manifests/",
        Some("HEAD"),
        Fault::Delay(Duration::from_millis(300)),
        None,
    );
    let c = RegistryClient::new(
        RegistrySettings {
            concurrency: 2,
            ..support::plain(&proxy.host())
        },
        support::fast_options(),
    )
    .expect("client");
    let started = Instant::now();
    let all = futures::future::join_all((0..6).map(|_| c.resolve(REPO, "1.1.0"))).await;
    assert!(all.iter().all(Result::is_ok));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let log = proxy.log();
    let spread = log.last().expect("requests").at.duration_since(log[0].at);
    assert!(
        spread >= Duration::from_millis(550),
        "at most 2 in flight: {spread:?}"
    );
}
