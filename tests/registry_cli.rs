//! `capstan registry tags` and `capstan policy eval --live` against a real
//! registry: output contract, exit codes, and credentials from a docker config
//! with a credential helper.

#[path = "registry_support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use support::push::{Image, Pusher};
use support::registry::{Auth, Options, Registry, free_port};

fn capstan() -> Command {
    Command::cargo_bin("capstan").expect("binary built")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A capstan.yaml whose only registry is `host`, over plain HTTP.
fn config(dir: &Path, host: &str, extra: &str) -> PathBuf {
    write(
        dir,
        "capstan.yaml",
        &format!(
            "repository:\n  url: ./fleet.git\nregistries:\n  - host: {host}\n    insecure: true\n{extra}"
        ),
    )
}

fn policy(dir: &Path, image: &str, range: &str, pin: bool) -> PathBuf {
    let digest = if pin { "  digest: pin\n" } else { "" };
    write(
        dir,
        "policy.yaml",
        &format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '{range}'\n{digest}"
        ),
    )
}

async fn registry_order(registry: &Registry, repo: &str) -> Vec<String> {
    let body = support::push::client(None)
        .get(format!("{}/v2/{repo}/tags/list", registry.url))
        .send()
        .await
        .expect("tags/list")
        .bytes()
        .await
        .expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    serde_json::from_value(v["tags"].clone()).expect("tags")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_tags_prints_one_tag_per_line_in_registry_order() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    let pushed = pusher
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["seed"])
        .await;
    let tags: Vec<String> = ["1.0.0", "1.10.0", "1.2.0", "latest", "0.9.1", "2.0.0-rc.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    pusher.retag("acme/app", &pushed, &tags, 4).await;
    let expected = registry_order(&registry, "acme/app").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &registry.host, "");
    let image = format!("{}/acme/app", registry.host);

    let out = capstan()
        .args(["registry", "tags", &image, "-c"])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);

    let out = capstan()
        .args([
            "registry",
            "tags",
            &format!("{image}:ignored"),
            "-o",
            "json",
            "-c",
        ])
        .arg(&cfg)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["registry"], registry.host);
    assert_eq!(v["repository"], "acme/app");
    assert_eq!(v["tags"], serde_json::json!(expected));
    assert_eq!(v["requests"], 1);
}

#[test]
fn registry_tags_errors_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = capstan()
        .args(["registry", "tags", "Not A/Ref"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid image reference"));

    let out = capstan()
        .args(["registry", "tags", "nginx", "-c"])
        .arg(dir.path().join("missing.yaml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));

    let dead = format!("127.0.0.1:{}", free_port());
    let cfg = config(dir.path(), &dead, "");
    let out = capstan()
        .args(["registry", "tags", &format!("{dead}/acme/app"), "-c"])
        .arg(&cfg)
        .env("CAPSTAN_LOG", "off")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("registry `{dead}`")) && stderr.contains("image `acme/app`"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_eval_live_prints_the_chosen_tag_and_digest_last() {
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);
    pusher
        .image(
            "acme/app",
            &Image::new("2024-01-01T00:00:00Z"),
            &["1.2.0", "2.0.0", "latest"],
        )
        .await;
    let chosen = pusher
        .image("acme/app", &Image::new("2024-02-01T00:00:00Z"), &["1.4.1"])
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &registry.host, "");
    let image = format!("{}/acme/app", registry.host);

    let pinned = policy(dir.path(), &image, ">=1.0.0 <2.0.0", true);
    let out = capstan()
        .args(["policy", "eval", "--live", "-c"])
        .arg(&cfg)
        .arg(&pinned)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("1.4.1@{}\n", chosen.digest)
    );

    let out = capstan()
        .args(["policy", "eval", "--live", "--explain", "-c"])
        .arg(&cfg)
        .arg(&pinned)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "four tags explained, then the choice: {stdout}"
    );
    assert_eq!(
        lines.last().copied(),
        Some(format!("1.4.1@{}", chosen.digest).as_str())
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = capstan()
        .args(["policy", "eval", "--live", "-o", "json", "-c"])
        .arg(&cfg)
        .arg(&pinned)
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["chosen"], "1.4.1");
    assert_eq!(v["digest"], chosen.digest);

    let unpinned = policy(dir.path(), &image, ">=1.0.0", false);
    let out = capstan()
        .args(["policy", "eval", "--live", "-c"])
        .arg(&cfg)
        .arg(&unpinned)
        .output()
        .expect("runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2.0.0\n");

    let none = policy(dir.path(), &image, ">=3.0.0", true);
    let out = capstan()
        .args(["policy", "eval", "--live", "-c"])
        .arg(&cfg)
        .arg(&none)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no tag qualifies"), "{stderr}");
}

#[test]
fn live_and_tags_file_are_exclusive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = policy(dir.path(), "ghcr.io/acme/app", ">=1.0.0", false);
    let tags = write(dir.path(), "tags.txt", "1.0.0\n");
    let out = capstan()
        .args(["policy", "eval", "--live", "--tags-file"])
        .arg(&tags)
        .arg(&p)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    let out = capstan()
        .args(["policy", "eval"])
        .arg(&p)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "one of them is required");

    let out = capstan()
        .args(["policy", "eval", "-c", "x.yaml", "--tags-file"])
        .arg(&tags)
        .arg(&p)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "-c only goes with --live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_config_credential_helper() {
    let registry = Registry::start(Options {
        auth: Auth::Basic(vec![("alice".into(), "s3cret".into())]),
        ..Options::default()
    });
    Pusher::new(&registry)
        .image("acme/app", &Image::new("2024-01-01T00:00:00Z"), &["1.0.0"])
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    // The helper protocol: `get`, server URL on stdin, JSON on stdout.
    let helper = bin.join("docker-credential-capstantest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server || true\n[ \"$server\" = \"{host}\" ] || {{ echo \"credentials not found in native keychain\"; exit 1; }}\necho '{{\"ServerURL\":\"{host}\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}}'\n",
            host = registry.host
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let failing = bin.join("docker-credential-broken");
    std::fs::write(&failing, "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n").expect("write");
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let image = format!("{}/acme/app", registry.host);

    write(
        dir.path(),
        "docker.json",
        &format!(
            r#"{{"credHelpers": {{"{}": "capstantest"}}}}"#,
            registry.host
        ),
    );
    let cfg = config(
        dir.path(),
        &registry.host,
        "    credentials:\n      dockerConfig: docker.json\n",
    );
    let out = capstan()
        .args(["registry", "tags", &image, "-c"])
        .arg(&cfg)
        .env("PATH", &path)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.0.0\n");

    write(
        dir.path(),
        "docker.json",
        &format!(r#"{{"credHelpers": {{"{}": "broken"}}}}"#, registry.host),
    );
    let out = capstan()
        .args(["registry", "tags", &image, "-c"])
        .arg(&cfg)
        .env("PATH", &path)
        .env("CAPSTAN_LOG", "off")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker-credential-broken") && stderr.contains("keychain locked"),
        "{stderr}"
    );
    assert!(stderr.contains("image `acme/app`"), "{stderr}");
}
