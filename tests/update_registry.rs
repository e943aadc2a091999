//! `capstan update --once` with tags from a real registry (CNCF Distribution,
//! started per test): images pushed through the registry's HTTP API become a
//! commit on a real bare repository.

mod support;

#[path = "registry_support/mod.rs"]
mod registry_support;

use std::path::Path;

use assert_cmd::Command;
use registry_support::push::{Image, Pusher};
use registry_support::registry::{Registry, free_port};
use support::git_repo::BareRepo;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn policy(name: &str, image: &str, range: &str, pin: bool) -> String {
    format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '{range}'\n{}",
        if pin { "  digest: pin\n" } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_tags_become_one_commit() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    pusher
        .image(
            "acme/app",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0", "1.1.0", "1.2.0-rc.1", "2.0.0"],
        )
        .await;
    pusher
        .image(
            "acme/pinned",
            &Image::new("2024-01-01T00:00:00Z"),
            &["3.0.0"],
        )
        .await;
    let newest = pusher
        .image(
            "acme/pinned",
            &Image::new("2024-02-01T00:00:00Z"),
            &["3.1.0"],
        )
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = format!(
        "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/acme/app:1.0.0 # {{\"$imagepolicy\": \"app\"}}\n        - name: pinned\n          image: \"{host}/acme/pinned:3.0.0\" # {{\"$imagepolicy\": \"pinned\"}}\n"
    );
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("apps/deploy.yaml", &deployment)],
    );
    write(
        dir.path(),
        "policies/app.yaml",
        &policy("app", &format!("{host}/acme/app"), ">=1.0.0 <2.0.0", false),
    );
    write(
        dir.path(),
        "policies/pinned.yaml",
        &policy("pinned", &format!("{host}/acme/pinned"), ">=3.0.0", true),
    );
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:\n  url: {}\nregistries:\n  - host: {host}\n    insecure: true\n",
            repo.path().display()
        ),
    );

    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::cargo_bin("capstan")
                .expect("binary")
                .current_dir(&dir)
                .args(["update", "--once", "-c", "capstan.yaml"])
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joins");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        repo.show("apps/deploy.yaml"),
        deployment
            .replace("acme/app:1.0.0", "acme/app:1.1.0")
            .replace(
                "acme/pinned:3.0.0",
                &format!("acme/pinned:3.1.0@{}", newest.digest)
            )
    );
    let log = repo.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0], "capstan\tchore(images): update app, pinned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_cannot_be_reached_fails_the_run_but_not_the_other_images() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let host = registry.host.clone();
    pusher
        .image(
            "acme/app",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.0.0", "1.1.0"],
        )
        .await;
    let dead = format!("127.0.0.1:{}", free_port());

    let dir = tempfile::tempdir().expect("tempdir");
    let deployment = format!(
        "a: {host}/acme/app:1.0.0 # {{\"$imagepolicy\": \"app\"}}\nb: {dead}/acme/gone:1.0.0 # {{\"$imagepolicy\": \"gone\"}}\n"
    );
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("values.yaml", &deployment)],
    );
    write(
        dir.path(),
        "policies/app.yaml",
        &policy("app", &format!("{host}/acme/app"), ">=1.0.0", false),
    );
    write(
        dir.path(),
        "policies/gone.yaml",
        &policy("gone", &format!("{dead}/acme/gone"), ">=1.0.0", false),
    );
    write(
        dir.path(),
        "capstan.yaml",
        &format!(
            "repository:\n  url: {}\nregistries:\n  - host: {host}\n    insecure: true\n  - host: {dead}\n    insecure: true\n",
            repo.path().display()
        ),
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::cargo_bin("capstan")
                .expect("binary")
                .current_dir(&dir)
                .args(["update", "--once", "-c", "capstan.yaml"])
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joins");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: policy `gone`: registry scan failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("values.yaml:2: policy `gone`: registry scan failed"),
        "{stderr}"
    );
    assert_eq!(
        repo.show("values.yaml"),
        deployment.replace("acme/app:1.0.0", "acme/app:1.1.0"),
        "the reachable registry's image is still updated"
    );
}
