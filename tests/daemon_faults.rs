//! The daemon's fault matrix (issue 8), end to end: the real `capstan run`
//! against real processes (CNCF Distribution registries, `git http-backend`,
//! kube-apiserver on the shared control plane's etcd), each fault injected by
//! killing or holding a real process.
//!
//! - a registry down for 30 s: its images go stale, the other registry's image
//!   is still written, and the first one recovers by its push notification
//!   after its restart (which ends the client's cool-down);
//! - an API server killed in the middle of a sync and started again: the pass
//!   is retried (backoff) to success with an exact inventory;
//! - a person's commit landing while capstan's push is held: the push is refused,
//!   capstan redoes its edit on the new head; both commits survive.
//!
//! (kill -9 of capstan mid-sync is in `daemon_sync.rs`; forged and oversized
//! webhooks in `daemon_sync.rs` and `daemon_update.rs`.)

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use daemon_support::sync_target::{
    applied, assert_inventory_is_configmaps, configmaps, sync_config,
};
use daemon_support::{Daemon, REGISTRY_TOKEN, notifying_registry, server_yaml, write};
use k8s_openapi::api::core::v1::ConfigMap;
use registry_support::push::{Image, Pusher};
use registry_support::registry::{Registry, free_port};
use support::cluster::TestNamespace;
use support::extra_apiserver::ExtraApiserver;
use support::git_http::{GitHttpServer, Trigger};
use support::git_repo::{BareRepo, git, policy_yaml};

const TRIGGER_TOKEN: &str = "trigger-token-for-tests";
const WAIT: Duration = Duration::from_secs(90);

async fn push(registry: &Registry, repo: &str, tag: &str) {
    Pusher::new(registry)
        .image(repo, &Image::new("2024-01-01T00:00:00Z"), &[tag])
        .await;
}

/// A container line with a setter marker for `policy`.
fn container(policy: &str, image: &str) -> String {
    format!(
        "        - name: {policy}\n          image: {image} # {{\"$imagepolicy\": \"{policy}\"}}\n"
    )
}

fn deployment(containers: &str) -> String {
    format!("kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n{containers}")
}

/// `capstan.yaml` for the image-update loop: `registries` (all plain HTTP),
/// the repository at `url`, the update interval, the server on `port`.
fn update_config(dir: &Path, url: &str, registries: &[&Registry], interval: &str, port: u16) {
    let registries: String = registries
        .iter()
        .map(|r| format!("  - host: {}\n    insecure: true\n", r.host))
        .collect();
    write(
        dir,
        "capstan.yaml",
        &format!(
            "repository:\n  url: {url}\nregistries:\n{registries}update:\n  interval: {interval}\n{}",
            server_yaml(
                port,
                "  registryWebhookTokenEnv: REGISTRY_TOKEN\n  triggerTokenEnv: TRIGGER_TOKEN\n"
            )
        ),
    );
}

async fn start_daemon(dir: &Path, port: u16) -> Daemon {
    Daemon::up(
        &dir.join("capstan.yaml"),
        port,
        &[
            ("REGISTRY_TOKEN", REGISTRY_TOKEN),
            ("TRIGGER_TOKEN", TRIGGER_TOKEN),
        ],
    )
    .await
}

/// Two registries, two policies, the recommended 1 h scan interval. Registry A
/// is killed (port and storage kept) and stays down for over 30 s; meanwhile a
/// tag pushed to B is committed, A's line is left alone and A's failing scans
/// show in the metrics and logs. A starts again on the same port with the same
/// storage and a tag is pushed to it: its push notification commits it at once.
///
/// Why only the notification can explain the commit: every scan of A that
/// reaches the network while A is down marks A down for the 30 s cool-down
/// (`registry marked down`), during which A's scans fail without a request.
/// A is restarted just after such a mark, so when its notification arrives the
/// cool-down has most of its 30 s left, and the backoff retry of A's task is
/// ~32 s after the mark. The notification ends the cool-down (`registry marked
/// up`) before it triggers the scan, and the bump is committed well within the
/// 30 s of the last mark, as the daemon's own log timestamps show. Without that,
/// the notification's scan fails at once and the commit waits for a retry after
/// the cool-down (30 s or more after the mark). Without a retry after failures
/// (or with a failed scan dropping A's last choice), A's line changes while A
/// is down or never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_for_30_s_recovers_by_its_notification_and_other_images_are_unaffected() {
    let port = free_port();
    let mut reg_a = notifying_registry(port);
    let reg_b = notifying_registry(port);
    push(&reg_a, "acme/a", "1.0.0").await;
    push(&reg_b, "acme/b", "1.0.0").await;
    let (a, b) = (
        format!("{}/acme/a", reg_a.host),
        format!("{}/acme/b", reg_b.host),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = dir.path().join("srv");
    let manifest = deployment(&format!(
        "{}{}",
        container("a", &format!("{a}:1.0.0")),
        container("b", &format!("{b}:1.0.0"))
    ));
    let repo = BareRepo::create(&srv, "fleet.git", &[("apps/deploy.yaml", &manifest)]);
    let git_server = GitHttpServer::start(&srv, None);
    write(
        dir.path(),
        "policies/a.yaml",
        &policy_yaml("a", &a, ">=1.0.0"),
    );
    write(
        dir.path(),
        "policies/b.yaml",
        &policy_yaml("b", &b, ">=1.0.0"),
    );
    update_config(
        dir.path(),
        &git_server.url("fleet.git"),
        &[&reg_a, &reg_b],
        "1h",
        port,
    );
    let d = start_daemon(dir.path(), port).await;
    d.wait_until("the first scans of `a` and `b`", WAIT, || async {
        d.update_scans("a", "success").await >= 1.0 && d.update_scans("b", "success").await >= 1.0
    })
    .await;
    assert_eq!(repo.log().len(), 1, "nothing to commit for 1.0.0");

    // A goes down. With the 1 h interval nothing scans `a` for an hour: a
    // manual trigger does, and meets the outage.
    reg_a.stop();
    let down_at = Instant::now();
    trigger_update(&d, "a").await;
    d.wait_until("a failed scan of `a`", WAIT, || async {
        d.update_scans("a", "failure").await >= 1.0
    })
    .await;
    let marked = d
        .wait_event("registry marked down", &[("registry", &reg_a.host)], WAIT)
        .await;
    assert_eq!(marked["level"], "WARN", "{marked}");

    // B is unaffected: its new tag is committed, A's line stays.
    push(&reg_b, "acme/b", "1.1.0").await;
    d.wait_until("the commit of b 1.1.0", WAIT, || async {
        repo.log().len() == 2
    })
    .await;
    assert_eq!(
        repo.show("apps/deploy.yaml"),
        manifest.replace(&format!("{b}:1.0.0"), &format!("{b}:1.1.0")),
        "only b's line changed"
    );
    assert!(
        down_at.elapsed() < Duration::from_secs(30),
        "b's commit came while A was down ({:?})",
        down_at.elapsed()
    );

    // A stays down for at least 30 s; its task's backoff retries (1, 2, 4,
    // 8, 16 s) keep failing, nothing is written.
    tokio::time::sleep(Duration::from_secs(31).saturating_sub(down_at.elapsed())).await;
    let failures_while_down = d.update_scans("a", "failure").await;
    assert!(
        failures_while_down >= 3.0,
        "a's scans kept failing while A was down: {failures_while_down}"
    );
    assert_eq!(repo.log().len(), 2, "no Git write while A was down");
    let text = d.metrics().await;
    assert!(
        text.contains("capstan_errors_total{kind=\"registry\"}"),
        "{text}"
    );
    assert!(text.contains("capstan_git_pushes_total 1\n"), "{text}");

    // The retry after the first cool-down reached the network and marked A
    // down again (the next retry is ~32 s later). A comes back right after
    // that mark, with its storage, and a new tag is pushed to it.
    d.wait_until("A marked down a second time", WAIT, || async {
        marks_down(&d, &reg_a.host).len() >= 2
    })
    .await;
    reg_a.restart();
    let restarted = Instant::now();
    let failures_at_restart = d.update_scans("a", "failure").await;
    push(&reg_a, "acme/a", "1.1.0").await;
    let pushed = Instant::now();
    // Well within the cool-down of A's last mark: only the notification can
    // have ended it (without it, the next retry is ~32 s after the mark and
    // every scan before then fails without a request).
    d.wait_until(
        "the commit of a 1.1.0 by A's notification, within 20 s (A's cool-down is 30 s)",
        Duration::from_secs(20),
        || async { repo.log().len() == 3 },
    )
    .await;
    let recovery = pushed.elapsed();

    // Every timestamp below is the daemon's own (its JSON log).
    let last_mark = *marks_down(&d, &reg_a.host)
        .last()
        .expect("A was marked down");
    let committed = d
        .wait_event("image updated", &[("policy", "a"), ("to", "1.1.0")], WAIT)
        .await;
    let committed_at = timestamp(&committed);
    let since_mark = committed_at.duration_since(last_mark);
    let failures_after = d.update_scans("a", "failure").await - failures_at_restart;
    assert!(
        since_mark < jiff::SignedDuration::from_secs(20),
        "the commit came {since_mark:#} after A's last mark, not well within its 30 s cool-down: the notification did not end it"
    );
    let up = d
        .events()
        .into_iter()
        .find(|e| {
            e["message"] == "registry marked up"
                && e["registry"] == reg_a.host.as_str()
                && e["reason"] == "distribution push notification"
        })
        .unwrap_or_else(|| panic!("no `registry marked up` for A; log:\n{}", d.log()));
    eprintln!(
        "A down for {:?}; a 1.1.0 committed {recovery:?} after the push to A ({:?} after A's restart), {since_mark:#} after A's last `registry marked down` (cool-down 30 s), with {} ms of it left when A's notification ended it; {failures_after} failed scans of `a` after the restart",
        restarted - down_at,
        restarted.elapsed(),
        up["cooldown_left_ms"],
    );
    let up_at = timestamp(&up);
    assert!(
        up_at >= last_mark && up_at <= committed_at,
        "the notification ended the cool-down of the last mark, before the commit: {up}"
    );
    assert_eq!(
        failures_after, 0.0,
        "the notification's scan reached A (no scan of `a` failed after the restart)"
    );
    let both = manifest
        .replace(&format!("{a}:1.0.0"), &format!("{a}:1.1.0"))
        .replace(&format!("{b}:1.0.0"), &format!("{b}:1.1.0"));
    assert_eq!(repo.show("apps/deploy.yaml"), both);

    // One more scan of each and a write later: still exactly one commit per tag.
    let successes = (
        d.update_scans("a", "success").await,
        d.update_scans("b", "success").await,
    );
    trigger_update(&d, "a").await;
    trigger_update(&d, "b").await;
    d.wait_until("one more scan of `a` and `b`", WAIT, || async {
        d.update_scans("a", "success").await > successes.0
            && d.update_scans("b", "success").await > successes.1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        repo.log(),
        [
            "capstan\tchore(images): a 1.0.0 → 1.1.0",
            "capstan\tchore(images): b 1.0.0 → 1.1.0",
            "A Human\tinitial manifests",
        ],
        "no duplicate commit"
    );
    let text = d.metrics().await;
    assert!(text.contains("capstan_git_pushes_total 2\n"), "{text}");
}

/// `POST /trigger/update/{policy}` with the trigger token.
async fn trigger_update(d: &Daemon, policy: &str) {
    let auth = format!("Bearer {TRIGGER_TOKEN}");
    let (status, body) = d
        .post(
            &format!("/trigger/update/{policy}"),
            &[("authorization", &auth)],
            vec![],
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// When the daemon logged an event.
fn timestamp(event: &serde_json::Value) -> jiff::Timestamp {
    event["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {event}"))
}

/// When `registry` was marked down, in log order.
fn marks_down(d: &Daemon, registry: &str) -> Vec<jiff::Timestamp> {
    d.events()
        .iter()
        .filter(|e| e["message"] == "registry marked down" && e["registry"] == registry)
        .map(timestamp)
        .collect()
}

/// capstan syncs 500 ConfigMaps through an API server of the test's own (on the
/// shared etcd); that API server is killed (SIGKILL) when some but not all
/// objects exist (seen through the shared API server) and started again on the
/// same port a few seconds later. The failed pass is retried by the task's
/// backoff (the interval is 1 h, so nothing else would run it) and ends with
/// every object applied, the inventory exact, a `synced` event and a success in
/// the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restarted_during_sync_is_retried_to_success() {
    const OBJECTS: usize = 500;
    let mut apiserver = ExtraApiserver::start();
    let ns = TestNamespace::new("daemon-apiserver").await;
    let api = ns.api::<ConfigMap>();
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = dir.path().join("srv");
    let repo = BareRepo::create(
        &srv,
        "fleet.git",
        &[("app/many.yaml", &configmaps(OBJECTS))],
    );
    let git_server = GitHttpServer::start(&srv, None);
    let port = free_port();
    write(
        dir.path(),
        "capstan.yaml",
        &sync_config(
            &git_server.url("fleet.git"),
            &ns.name,
            &apiserver.kubeconfig.display().to_string(),
            port,
        ),
    );
    let d = start_daemon(dir.path(), port).await;
    d.wait_until("the first objects of the pass", WAIT, || async {
        applied(&api, &ns.name).await > 0
    })
    .await;
    apiserver.kill();
    let at_kill = applied(&api, &ns.name).await;
    assert!(
        at_kill < OBJECTS,
        "the kill must land mid-pass ({at_kill} of {OBJECTS} applied already)"
    );
    let failed = d
        .wait_event(
            "step failed",
            &[("task", &format!("sync {}", ns.name))],
            WAIT,
        )
        .await;
    eprintln!("apiserver killed with {at_kill} of {OBJECTS} objects applied; {failed}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart = Instant::now();
    apiserver.start_again();
    eprintln!("extra apiserver ready again after {:?}", restart.elapsed());

    d.wait_event("synced", &[("target", &ns.name)], Duration::from_secs(180))
        .await;
    eprintln!("synced {:?} after the restart began", restart.elapsed());
    assert_eq!(
        applied(&api, &ns.name).await,
        OBJECTS,
        "every object applied"
    );
    assert_inventory_is_configmaps(&ns.client, &ns.name, &ns.name, OBJECTS).await;
    let text = d.metrics().await;
    let target = format!("target=\"{}\"", ns.name);
    assert!(
        text.contains(&format!(
            "capstan_sync_runs_total{{{target},result=\"success\"}} 1\n"
        )),
        "{text}"
    );
    let failures = d
        .sample(&format!(
            "capstan_sync_runs_total{{{target},result=\"failure\"}}"
        ))
        .await
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "the interrupted pass failed:\n{text}");
    assert!(
        text.contains(&format!(
            "capstan_sync_last_success_timestamp_seconds{{{target}}}"
        )),
        "{text}"
    );
    assert_eq!(repo.log().len(), 1, "the sync loop never writes Git");
}

/// A registry notification makes capstan write a tag bump; its push is held by
/// the Git server (before `git-receive-pack` runs on the push's POST) until a
/// person's commit to another file, pushed with plain `git push` from another
/// clone, has landed on the branch. The held push is then refused (its old head
/// is stale); capstan fetches, redoes its edit on the new head and pushes again.
/// Both commits survive: the person's first, capstan's on top of it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_commit_racing_the_daemons_push_both_survive() {
    let port = free_port();
    let registry = notifying_registry(port);
    push(&registry, "acme/app", "1.0.0").await;
    let image = format!("{}/acme/app", registry.host);
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = dir.path().join("srv");
    let manifest = deployment(&container("app", &format!("{image}:1.0.0")));
    let other = "kind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  replicas: \"3\"\n";
    let repo = BareRepo::create(
        &srv,
        "fleet.git",
        &[
            ("apps/deploy.yaml", &manifest),
            ("apps/settings.yaml", other),
        ],
    );
    let git_server = GitHttpServer::start(&srv, None);
    write(
        dir.path(),
        "policies/app.yaml",
        &policy_yaml("app", &image, ">=1.0.0"),
    );
    update_config(
        dir.path(),
        &git_server.url("fleet.git"),
        &[&registry],
        "1h",
        port,
    );
    let d = start_daemon(dir.path(), port).await;
    d.wait_until("the first scan of `app`", WAIT, || async {
        d.update_scans("app", "success").await >= 1.0
    })
    .await;

    // The next push capstan makes is held until the person's commit has landed.
    let human_change = other.replace("\"3\"", "\"5\"");
    let landed = Arc::new(AtomicBool::new(false));
    git_server.on_next(Trigger::PushPost, {
        let repo = repo.clone();
        let landed = landed.clone();
        let human_change = human_change.clone();
        move || {
            repo.human_commit(
                "settings: 5 replicas",
                &[("apps/settings.yaml", &human_change)],
            );
            landed.store(true, Ordering::SeqCst);
        }
    });
    push(&registry, "acme/app", "1.1.0").await;
    d.wait_until("capstan's commit on top of the person's", WAIT, || async {
        repo.log().len() == 3
    })
    .await;
    assert!(landed.load(Ordering::SeqCst), "the push was held");

    let bare = repo.path();
    assert_eq!(
        git(&bare, &["log", "--format=%an\t%s", "main"])
            .lines()
            .collect::<Vec<_>>(),
        [
            "capstan\tchore(images): app 1.0.0 → 1.1.0",
            "A Human\tsettings: 5 replicas",
            "A Human\tinitial manifests",
        ]
    );
    let human = git(&bare, &["rev-parse", "main~1"]);
    assert_eq!(
        repo.head_parents(),
        [human.trim()],
        "capstan's commit is on top"
    );
    assert_eq!(
        repo.show("apps/settings.yaml"),
        human_change,
        "the person's change is intact"
    );
    assert_eq!(
        repo.show("apps/deploy.yaml"),
        manifest.replace(&format!("{image}:1.0.0"), &format!("{image}:1.1.0"))
    );
    // Exactly one commit touched the tag: capstan's, not a refused leftover.
    let bumps = git(
        &bare,
        &["log", "--format=%H", "-G", "acme/app:1.1.0", "main"],
    );
    assert_eq!(bumps.lines().count(), 1, "{bumps}");
    assert_eq!(
        git_server.pushes.load(Ordering::SeqCst),
        2,
        "refused, then accepted"
    );
    let text = d.metrics().await;
    for series in [
        "capstan_git_pushes_total 1\n",
        "capstan_git_push_retries_total 1\n",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}
