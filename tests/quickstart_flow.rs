//! The quickstart's flow (README command one, `scripts/quickstart`) as a test, with every
//! peer real: a CNCF Distribution registry whose push notification reaches the daemon,
//! a Gitea holding the manifests (Git over HTTP, a signed push webhook back to the daemon,
//! commit statuses), and the local control plane with kwok nodes.
//!
//! tag pushed → capstan commits the bump to Gitea → Gitea's push webhook → capstan syncs
//! → the Deployment's Pods are Ready → Gitea shows `success` for capstan's commit.
//!
//! Both intervals are one hour, so each step can only be driven by the event before it;
//! the figures printed are wall times from the tag push (not asserted: benchmarks measure).

mod daemon_support;
mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use daemon_support::gitea_repo::{hook_to_daemon, seed, start_daemon};
use daemon_support::{notifying_registry, write};
use k8s_openapi::api::apps::v1::Deployment;
use registry_support::push::{Image, Pusher};
use registry_support::registry::free_port;
use reqwest::{Method, StatusCode};
use support::cluster::{TestNamespace, kubeconfig_path, wait_for};
use support::git_repo::{git, policy_yaml};
use support::gitea::{assert_git_ok, git_net, gitea};
const WAIT: Duration = Duration::from_secs(90);

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the quickstart's shape: one Deployment, two replicas
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image} # {{\"$imagepolicy\": \"web\"}}
"
    )
}

/// The Deployment's spec is what Git says and all its Pods are Ready for it.
async fn rolled_out(api: &kube::Api<Deployment>, image: &str) -> anyhow::Result<()> {
    let d = api.get("web").await.context("get deployment web")?;
    let spec = d.spec.as_ref().context("no spec")?;
    let live_image = spec
        .template
        .spec
        .as_ref()
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    ensure!(live_image == image, "image is {live_image}, want {image}");
    let status = d.status.clone().unwrap_or_default();
    let want = spec.replicas.unwrap_or(1);
    ensure!(
        status.observed_generation == d.metadata.generation
            && status.updated_replicas == Some(want)
            && status.ready_replicas == Some(want)
            && status.replicas == Some(want),
        "not rolled out: {status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tag_reaches_ready_pods_and_a_success_status_on_the_forge() {
    let ns = TestNamespace::new("quickstart").await;
    let deployments = ns.api::<Deployment>();
    let forge = gitea();
    let repo = forge.create_repo("quickstart").await;
    let port = free_port();

    // The registry notifies the daemon of every push.
    let registry = notifying_registry(port);
    let image = format!("{}/acme/web", registry.host);
    Pusher::new(&registry)
        .image("acme/web", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;

    // The manifests repository on Gitea, with a push webhook signed by a shared secret.
    let work = tempfile::tempdir().expect("tempdir");
    let seed_dir = work.path().join("seed");
    let seeded = seed(
        &repo,
        &seed_dir,
        &[(
            "app/deployment.yaml",
            &deployment(&format!("{image}:1.0.0")),
        )],
        "web manifests",
    );
    hook_to_daemon(&repo, port, &["push"]).await;

    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "policies/web.yaml",
        &policy_yaml("web", &image, ">=1.0.0"),
    );
    let targets = format!(
        "targets:
  - name: web
    path: app
    kubeconfig: {kc}
    namespace: {ns}
    prune: true
    interval: 1h
    healthTimeout: 60s
",
        kc = kubeconfig_path(),
        ns = ns.name,
    );
    let mut d = start_daemon(dir.path(), &repo, &registry.host, "push", &targets, port).await;

    // The pass at start applies what is in Git: 1.0.0, rolled out.
    let first = format!("{image}:1.0.0");
    wait_for("the first rollout (1.0.0)", WAIT, || {
        rolled_out(&deployments, &first)
    })
    .await;

    // A new tag. Nothing polls for an hour: each step is driven by the one before.
    let start = Instant::now();
    Pusher::new(&registry)
        .image("acme/web", &Image::new("2024-02-01T00:00:00Z"), &["1.1.0"])
        .await;
    let branch = repo.path("/branches/main");
    let commit: String = wait_for("capstan's commit on Gitea", WAIT, || async {
        let (status, body) = forge.api(Method::GET, &branch, None).await;
        let id = body["commit"]["id"].as_str().unwrap_or_default().to_owned();
        ensure!(
            status == StatusCode::OK && !id.is_empty() && id != seeded,
            "{status} {body}"
        );
        Ok(id)
    })
    .await;
    let committed = start.elapsed();
    let wanted = format!("{image}:1.1.0");
    wait_for("the rollout of 1.1.0", WAIT, || {
        rolled_out(&deployments, &wanted)
    })
    .await;
    let ready = start.elapsed();
    let statuses = repo.path(&format!("/commits/{commit}/status"));
    let status = wait_for("a success status on capstan's commit", WAIT, || async {
        let (code, body) = forge.api(Method::GET, &statuses, None).await;
        ensure!(
            code == StatusCode::OK && body["state"] == "success",
            "{code} {body}"
        );
        Ok(body)
    })
    .await;
    let reported = start.elapsed();
    eprintln!(
        "quickstart flow: commit pushed {:.2} s, Pods Ready {:.2} s, status success {:.2} s after the tag push",
        committed.as_secs_f64(),
        ready.as_secs_f64(),
        reported.as_secs_f64()
    );

    // What landed: one capstan commit on top of the seed, changing only the tag.
    let clone = work.path().join("check");
    let cloned = git_net(
        work.path(),
        &[
            "-c",
            &repo.git_auth(),
            "clone",
            "-q",
            &repo.clone_url,
            "check",
        ],
    );
    assert_git_ok(&cloned, "cloning the result");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]).trim(), commit);
    assert_eq!(git(&clone, &["rev-parse", "HEAD~1"]).trim(), seeded);
    assert_eq!(
        std::fs::read_to_string(clone.join("app/deployment.yaml")).expect("read"),
        deployment(&wanted)
    );
    let contexts: Vec<&str> = status["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["context"].as_str())
        .collect();
    assert_eq!(contexts, ["capstan/web"], "{status}");
    // The sync was driven by Gitea's webhook (the interval is an hour), for this commit.
    d.wait_event(
        "synced",
        &[("target", "web"), ("commit", &commit[..12])],
        WAIT,
    )
    .await;
    // One `target` key per JSON line: the sync target, not also tracing's module path.
    let log = d.log();
    let doubled: Vec<&str> = log
        .lines()
        // The event's own keys come before its spans (which repeat span fields, nested).
        .filter(|l| {
            l.split(",\"span\":")
                .next()
                .unwrap_or(l)
                .matches("\"target\":")
                .count()
                > 1
        })
        .collect();
    assert!(doubled.is_empty(), "duplicate `target` keys: {doubled:?}");
    let exit = d.terminate(Duration::from_secs(10)).await;
    assert!(exit.success(), "capstan run exited with {exit}");
    repo.delete().await;
}
