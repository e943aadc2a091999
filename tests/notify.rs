//! Notifications against real loopback HTTP receivers: Slack through wiremock
//! (Slack is SaaS), the generic webhook through a small TCP receiver that
//! answers with a scripted list of statuses. Bodies are compared exactly; the
//! tracing output is captured to check retries, give-ups and that the webhook
//! URL never appears in a log line.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan::notify::{Event, EventKind, Notifier, Options, RetryOptions, Sink, SinkKind};
use capstan::registry::limits::RetryPolicy;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET_PATH: &str = "/services/T0001/B0001/s3cr3tT0k3n";

fn ts() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_767_225_600).expect("timestamp") // 2026-01-01T00:00:00Z
}

fn pushed_event() -> Event {
    Event::new(EventKind::CommitPushed, "podinfo 6.5.0 → 6.5.1")
        .policy("podinfo")
        .image("ghcr.io/stefanprodan/podinfo", "6.5.0", "6.5.1")
        .commit("6dcb09b5b57875f334f61aebed695e2e4193db5e")
        .at(ts())
}

fn fast_retry(attempts: u32) -> Options {
    Options {
        queue_capacity: 16,
        retry: RetryOptions {
            policy: RetryPolicy {
                max_attempts: attempts,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                max_retry_after: Duration::from_secs(2),
            },
            timeout: Duration::from_secs(5),
        },
    }
}

fn all_events() -> BTreeSet<EventKind> {
    EventKind::ALL.into_iter().collect()
}

/// Tracing output captured for the current thread (tests run on a
/// current-thread runtime, so the delivery task logs here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A loopback HTTP/1.1 receiver: answers request N with `script[N]` (the last
/// entry repeats) and records every request body.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start(script: Vec<(u16, Vec<(&'static str, &'static str)>)>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let recorded = bodies.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (status, headers) = script[n.min(script.len() - 1)].clone();
                n += 1;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let read = conn.read(&mut chunk).await.expect("read");
                    assert!(read > 0, "connection closed before the request ended");
                    buf.extend_from_slice(&chunk[..read]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().expect("length"))
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        assert!(head.starts_with("post /hooks/"), "{head}");
                        break buf[end + 4..end + 4 + len].to_vec();
                    }
                };
                recorded
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).expect("JSON body"));
                let mut response =
                    format!("HTTP/1.1 {status} X\r\nconnection: close\r\ncontent-length: 0\r\n");
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                conn.write_all(response.as_bytes()).await.expect("write");
                let _ = conn.shutdown().await;
            }
        });
        Receiver {
            url: format!("http://{addr}/hooks/xyzzy-secret-hook"),
            bodies,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

fn expected_webhook_body() -> Value {
    json!({
        "schemaVersion": 1,
        "event": "commit-pushed",
        "policy": "podinfo",
        "target": null,
        "image": "ghcr.io/stefanprodan/podinfo",
        "oldTag": "6.5.0",
        "newTag": "6.5.1",
        "commit": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "pullRequestUrl": null,
        "message": "podinfo 6.5.0 → 6.5.1",
        "timestamp": "2026-01-01T00:00:00Z",
    })
}

#[tokio::test]
async fn slack_gets_text_and_blocks_exactly() {
    let logs = Logs::default();
    let _guard = logs.install();
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SECRET_PATH))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "text": ":arrow_up: podinfo 6.5.0 → 6.5.1",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": ":arrow_up: podinfo 6.5.0 → 6.5.1"}},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*Policy:* podinfo\n*Image:* ghcr.io/stefanprodan/podinfo\n*Tag:* `6.5.0` → `6.5.1`\n*Commit:* 6dcb09b5b57875f334f61aebed695e2e4193db5e"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "capstan · commit-pushed · 2026-01-01T00:00:00Z"}]},
            ],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&slack)
        .await;
    let sink = Sink::new(
        "team",
        SinkKind::Slack,
        &format!("{}{SECRET_PATH}", slack.uri()),
        [EventKind::CommitPushed].into_iter().collect(),
    )
    .unwrap();
    let notifier = Notifier::start(vec![sink], fast_retry(3)).unwrap();
    // Not subscribed: never sent.
    notifier.notify(Event::new(EventKind::SyncStarted, "syncing").at(ts()));
    notifier.notify(pushed_event());
    notifier.shutdown(Duration::from_secs(30)).await;
    slack.verify().await;
    let log = logs.text();
    assert!(log.contains("notification delivered"), "{log}");
    assert!(!log.contains("s3cr3tT0k3n"), "{log}");
}

#[tokio::test]
async fn webhook_is_retried_after_500_and_429_then_delivered_with_the_same_body() {
    let logs = Logs::default();
    let _guard = logs.install();
    let receiver = Receiver::start(vec![
        (500, vec![]),
        (429, vec![("retry-after", "0")]),
        (204, vec![]),
    ])
    .await;
    let sink = Sink::new("audit", SinkKind::Webhook, &receiver.url, all_events()).unwrap();
    let notifier = Notifier::start(vec![sink], fast_retry(5)).unwrap();
    notifier.notify(pushed_event());
    notifier.shutdown(Duration::from_secs(30)).await;
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        assert_eq!(*body, expected_webhook_body());
    }
    let log = logs.text();
    assert_eq!(log.matches("retrying").count(), 2, "{log}");
    assert!(log.contains("attempts=3"), "{log}");
    assert!(log.contains("notification delivered"), "{log}");
    assert!(!log.contains("xyzzy-secret-hook"), "{log}");
}

#[tokio::test]
async fn webhook_gives_up_after_the_attempts_with_an_error_log_and_no_url() {
    let logs = Logs::default();
    let _guard = logs.install();
    let receiver = Receiver::start(vec![(503, vec![])]).await;
    let sink = Sink::new("audit", SinkKind::Webhook, &receiver.url, all_events()).unwrap();
    let notifier = Notifier::start(vec![sink], fast_retry(3)).unwrap();
    notifier.notify(pushed_event());
    notifier.shutdown(Duration::from_secs(30)).await;
    assert_eq!(receiver.bodies().len(), 3);
    let log = logs.text();
    let gave_up: Vec<&str> = log.lines().filter(|l| l.contains("gave up")).collect();
    assert_eq!(gave_up.len(), 1, "{log}");
    assert!(gave_up[0].contains("ERROR"), "{log}");
    assert!(gave_up[0].contains("attempts=3"), "{log}");
    assert!(gave_up[0].contains("HTTP 503"), "{log}");
    assert!(gave_up[0].contains("sink=audit"), "{log}");
    assert!(!log.contains("xyzzy-secret-hook"), "{log}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_its_error_carries_no_url() {
    let logs = Logs::default();
    let _guard = logs.install();
    // A port that was just free: connecting is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hooks/xyzzy-secret-hook");
    let sink = Sink::new("audit", SinkKind::Webhook, &url, all_events()).unwrap();
    let notifier = Notifier::start(vec![sink], fast_retry(2)).unwrap();
    notifier.notify(pushed_event());
    notifier.shutdown(Duration::from_secs(30)).await;
    let log = logs.text();
    assert_eq!(log.matches("retrying").count(), 1, "{log}");
    assert!(log.contains("gave up"), "{log}");
    assert!(!log.contains("xyzzy-secret-hook"), "{log}");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let logs = Logs::default();
    let _guard = logs.install();
    let receiver = Receiver::start(vec![(404, vec![])]).await;
    let sink = Sink::new("audit", SinkKind::Webhook, &receiver.url, all_events()).unwrap();
    let notifier = Notifier::start(vec![sink], fast_retry(5)).unwrap();
    notifier.notify(pushed_event());
    notifier.shutdown(Duration::from_secs(30)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert!(logs.text().contains("attempts=1"), "{}", logs.text());
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_with_a_warning() {
    let logs = Logs::default();
    let _guard = logs.install();
    let receiver = Receiver::start(vec![(200, vec![])]).await;
    let sink = Sink::new("audit", SinkKind::Webhook, &receiver.url, all_events()).unwrap();
    let mut options = fast_retry(1);
    options.queue_capacity = 2;
    let notifier = Notifier::start(vec![sink], options).unwrap();
    // The delivery task cannot run before this test yields: all five are
    // queued at once, so three are dropped.
    for i in 0..5 {
        notifier.notify(Event::new(EventKind::TagChosen, format!("event {i}")).at(ts()));
    }
    assert_eq!(notifier.pending(), 2);
    notifier.shutdown(Duration::from_secs(30)).await;
    let messages: Vec<Value> = receiver
        .bodies()
        .into_iter()
        .map(|b| b["message"].clone())
        .collect();
    assert_eq!(messages, vec![json!("event 3"), json!("event 4")]);
    let log = logs.text();
    assert_eq!(
        log.matches("dropped the oldest notification").count(),
        3,
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
}

#[test]
fn a_missing_url_variable_is_named_and_a_bad_url_is_not_echoed() {
    let config = |env: &str| capstan::config::Notification {
        name: capstan::yaml_file::unspanned("team".to_string()),
        kind: SinkKind::Slack,
        url_env: capstan::yaml_file::unspanned(env.to_string()),
        events: None,
    };
    let err = capstan::notify::sinks_from_config(&[config("CAPSTAN_TEST_NO_SUCH_VAR_7")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CAPSTAN_TEST_NO_SUCH_VAR_7"), "{err}");
    // SAFETY: this test binary sets no other variable of this name and reads it only here.
    unsafe { std::env::set_var("CAPSTAN_TEST_BAD_URL_7", "ftp://hooks.example/s3cr3t") };
    let err = capstan::notify::sinks_from_config(&[config("CAPSTAN_TEST_BAD_URL_7")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("CAPSTAN_TEST_BAD_URL_7"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

/// `capstan update --once` (push mode, tags from files, a real bare
/// repository): the generic webhook gets `tag-chosen` then `commit-pushed`,
/// and the URL (from the environment) is nowhere in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_once_notifies_tag_chosen_and_commit_pushed() {
    use support::git_repo::{BareRepo, policy_yaml};
    let deployment = "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}\n";
    let dir = tempfile::tempdir().unwrap();
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("deploy/podinfo.yaml", deployment)],
    );
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("tags")).unwrap();
    std::fs::write(
        dir.path().join("policies/podinfo.yaml"),
        policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
    )
    .unwrap();
    std::fs::write(dir.path().join("tags/podinfo.txt"), "6.5.0\n6.5.1\n").unwrap();
    std::fs::write(
        dir.path().join("capstan.yaml"),
        format!(
            "repository:\n  url: {}\nnotifications:\n  - name: audit\n    kind: webhook\n    urlEnv: CAPSTAN_TEST_AUDIT_URL\n    events: [tag-chosen, commit-pushed]\n",
            repo.path().display()
        ),
    )
    .unwrap();
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/xyzzy-secret-hook"))
        .respond_with(ResponseTemplate::new(204))
        .expect(2)
        .mount(&hook)
        .await;
    let url = format!("{}/hooks/xyzzy-secret-hook", hook.uri());
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            assert_cmd::Command::cargo_bin("capstan")
                .unwrap()
                .current_dir(&dir)
                .args([
                    "update",
                    "--once",
                    "-c",
                    "capstan.yaml",
                    "--tags-dir",
                    "tags",
                ])
                .env("CAPSTAN_TEST_AUDIT_URL", url)
                .env("CAPSTAN_LOG", "debug")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("notification delivered"), "{stderr}");
    assert!(!stderr.contains("xyzzy-secret-hook"), "{stderr}");
    hook.verify().await;
    let commit = repo.head();
    let mut bodies: Vec<Value> = hook
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    for body in &mut bodies {
        let ts = body["timestamp"].as_str().unwrap().to_string();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        body["timestamp"] = json!("<now>");
    }
    let expected = |event: &str, commit: Value| {
        json!({
            "schemaVersion": 1,
            "event": event,
            "policy": "podinfo",
            "target": null,
            "image": "ghcr.io/stefanprodan/podinfo",
            "oldTag": "6.5.0",
            "newTag": "6.5.1",
            "commit": commit,
            "pullRequestUrl": null,
            "message": "podinfo 6.5.0 → 6.5.1",
            "timestamp": "<now>",
        })
    };
    assert_eq!(
        bodies,
        vec![
            expected("tag-chosen", Value::Null),
            expected("commit-pushed", json!(commit)),
        ]
    );
}
