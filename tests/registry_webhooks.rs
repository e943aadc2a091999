//! A real push notification: the registry is configured with a notification
//! endpoint, a test receiver gets the envelope, the parser turns it into "this
//! repository has a new tag", and the affected policy is rescanned.

#[path = "registry_support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan::registry::webhook::{self, PushEvent, Sender};
use capstan::registry::{ScanOptions, Scanner};
use support::http;
use support::push::{Image, Pusher};
use support::registry::{Options, Registry};

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Collects every POST body with its content type.
async fn receiver() -> (http::Server, Received) {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let server = http::serve(Arc::new(move |req| {
        let sink = sink.clone();
        Box::pin(async move {
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            sink.lock()
                .expect("lock")
                .push((content_type, req.body().to_vec()));
            http::response(200, "text/plain", "ok")
        })
    }))
    .await;
    (server, received)
}

/// Waits until the envelopes received so far contain an event matching `want`.
async fn wait_for(received: &Received, want: impl Fn(&PushEvent) -> bool) -> (String, PushEvent) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bodies = received.lock().expect("lock").clone();
        for (content_type, body) in &bodies {
            let events = webhook::parse(None, body).expect("the registry's envelope parses");
            if let Some(e) = events.into_iter().find(|e| want(e)) {
                return (content_type.clone(), e);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no matching notification; received {} envelopes",
            bodies.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_notification_triggers_a_rescan() {
    let (server, received) = receiver().await;
    let registry = Registry::start(Options {
        notify: Some(format!("{}/events", server.url())),
        ..Options::default()
    });
    let pusher = Pusher::new(&registry);
    pusher
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for (name, repo) in [("app", "acme/app"), ("other", "acme/other")] {
        text.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {}/{repo}\n  policy:\n    semver:\n      range: '>=1.0.0'\n",
            registry.host
        ));
    }
    std::fs::write(dir.path().join("p.yaml"), text).expect("write");
    let policies = capstan::policy::load_file(&dir.path().join("p.yaml")).expect("policies");
    let scanner = Scanner::new(
        vec![(registry.host.clone(), Ok(support::plain(&registry.host)))],
        support::fast_options(),
        ScanOptions::default(),
    );
    let before = scanner.scan(&policies[0]).await;
    assert_eq!(
        before.fresh().and_then(|s| s.decision.chosen.as_deref()),
        Some("1.0.0")
    );

    let pushed = pusher
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["2.0.0"])
        .await;
    let (content_type, event) = wait_for(&received, |e| e.tag.as_deref() == Some("2.0.0")).await;
    assert!(
        content_type.starts_with("application/vnd.docker.distribution.events."),
        "{content_type}"
    );
    assert_eq!(
        event,
        PushEvent {
            sender: Sender::Distribution,
            registry: Some(registry.host.clone()),
            repository: "acme/app".into(),
            tag: Some("2.0.0".into()),
            digest: Some(pushed.digest.clone()),
        }
    );
    assert_eq!(
        event.to_string(),
        format!("{}/acme/app has new tag 2.0.0", registry.host)
    );

    let affected: Vec<&str> = webhook::affected(&event, &policies)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(affected, ["app"]);
    let results = scanner.scan_event(&event, &policies).await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]
            .fresh()
            .and_then(|s| s.decision.chosen.as_deref()),
        Some("2.0.0")
    );

    // A push by digest (no tag) still says which repository changed.
    let untagged = pusher
        .image("acme/app", &Image::new("2024-03-01T00:00:00Z"), &[])
        .await;
    let (_, event) = wait_for(&received, |e| {
        e.digest.as_deref() == Some(untagged.digest.as_str())
    })
    .await;
    assert_eq!(event.tag, None);
    assert_eq!(webhook::affected(&event, &policies).len(), 1);
}
