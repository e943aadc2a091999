//! `capstan explain` end to end: a real repository where `capstan update --once`
//! commits an image bump, `capstan sync --once` applies it to the real control plane,
//! and a person then commits a change that is not synced yet. Explain must name the
//! target, the inventory, the file, the commit, the policy decision, and whether the
//! change is applied — from Git and the cluster alone.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::cluster::{TestNamespace, kubeconfig_path};
use support::git_repo::{BareRepo, git, policy_yaml};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: NS
spec:
  replicas: 1
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
";

const SETTINGS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: NS
data:
  level: info
";

async fn capstan(dir: &Path, args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("capstan");
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .current_dir(dir)
            .args(args)
            .env_remove("CAPSTAN_LOG")
            .output()
            .expect("run capstan")
    })
    .await
    .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A GitHub response body documented by GitHub (tests/fixtures/github/).
fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON fixture")
}

/// The context of GitHub's documented combined-status example; the target reports
/// under it, so the documented answer is the one explain must find.
const CONTEXT: &str = "continuous-integration/jenkins";

#[tokio::test]
async fn explain_names_target_inventory_file_commit_and_policy() {
    let ns = TestNamespace::new("explain").await;
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/repos/acme/fleet/statuses/[0-9a-f]{40}$"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("create-commit-status.json")),
        )
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(
            "^/repos/acme/fleet/commits/[0-9a-f]{40}/status$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("combined-status.json")))
        .mount(&github)
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let repo = BareRepo::create(
        &d.join("srv"),
        "fleet.git",
        &[
            ("apps/podinfo.yaml", &DEPLOYMENT.replace("NS", &ns.name)),
            ("apps/settings.yaml", &SETTINGS.replace("NS", &ns.name)),
        ],
    );
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/podinfo.yaml"),
        policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
    )
    .unwrap();
    std::fs::create_dir_all(d.join("tags")).unwrap();
    std::fs::write(d.join("tags/podinfo.txt"), "6.4.0\n6.5.0\n6.5.2\n7.0.0\n").unwrap();

    // The image-update loop commits the bump to the shared repository.
    std::fs::write(
        d.join("update.yaml"),
        format!("repository:\n  url: {}\n", repo.path().display()),
    )
    .unwrap();
    ok(
        &capstan(
            d,
            &[
                "update",
                "--once",
                "-c",
                "update.yaml",
                "--tags-dir",
                "tags",
            ],
        )
        .await,
        "capstan update --once",
    );
    let bump = repo.head();
    assert!(
        repo.log()[0].contains("podinfo 6.5.0 → 6.5.2"),
        "{:?}",
        repo.log()
    );

    // The sync loop applies that commit from a clone.
    git(d, &["clone", "-q", repo.path().to_str().unwrap(), "work"]);
    let work = d.join("work");
    std::fs::write(
        d.join("capstan.yaml"),
        format!(
            "repository:\n  url: {}\nforge: {{kind: github, apiUrl: '{api}', owner: acme, repo: fleet}}\ntargets:\n  - name: {ns}\n    path: apps\n    namespace: {ns}\n    kubeconfig: {kc}\n    healthTimeout: 60s\n    statusContext: {CONTEXT}\n",
            work.display(),
            api = github.uri(),
            ns = ns.name,
            kc = kubeconfig_path()
        ),
    )
    .unwrap();
    ok(
        &capstan(d, &["sync", "--once", "-c", "capstan.yaml"]).await,
        "capstan sync --once",
    );

    // A person changes the settings afterwards; the clone has it, the cluster not yet.
    let human = repo.human_commit(
        "settings: debug logging",
        &[(
            "apps/settings.yaml",
            &SETTINGS.replace("NS", &ns.name).replace("info", "debug"),
        )],
    );
    git(&work, &["pull", "-q", "--ff-only"]);

    let text = ok(
        &capstan(
            d,
            &[
                "explain",
                "deployment/podinfo",
                "-n",
                &ns.name,
                "-c",
                "capstan.yaml",
            ],
        )
        .await,
        "capstan explain deployment/podinfo",
    );
    eprintln!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    let line = |label: &str| -> String {
        lines
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
            .to_string()
    };
    assert_eq!(lines[0], format!("Deployment.apps {}/podinfo", ns.name));
    assert!(
        line("images").contains("ghcr.io/stefanprodan/podinfo:6.5.2"),
        "{text}"
    );
    assert!(
        line("label").contains(&format!("capstan.dev/target={}", ns.name)),
        "{text}"
    );
    assert!(line("target").ends_with(&ns.name), "{text}");
    assert!(
        line("inventory").contains(&format!("{0}/capstan-inventory-{0}: listed", ns.name)),
        "{text}"
    );
    assert!(
        line("last applied").contains(&format!("commit {bump}")),
        "{text}"
    );
    assert!(
        line("file").contains("apps/podinfo.yaml (document 1)"),
        "{text}"
    );
    assert!(
        line("changed in").contains(&format!("commit {bump}")),
        "{text}"
    );
    assert!(
        line("changed in").contains("podinfo 6.5.0 → 6.5.2"),
        "{text}"
    );
    assert!(
        line("image update").contains("policy podinfo: 6.5.0 → 6.5.2 (apps/podinfo.yaml)"),
        "{text}"
    );
    assert!(line("sync").contains("contains this change"), "{text}");
    assert!(line("checkout").contains(&human[..12]), "{text}");
    // The status the sync reported on the applied commit, read back from the forge.
    assert_eq!(
        line("status").trim(),
        format!(
            "status        {CONTEXT} on commit {}: success (Build has completed successfully)",
            &bump[..12]
        ),
        "{text}"
    );
    let asked: Vec<String> = github
        .received_requests()
        .await
        .expect("requests")
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(
        asked.contains(&format!("/repos/acme/fleet/commits/{bump}/status")),
        "explain asks for the status of the applied commit: {asked:?}"
    );

    // The human change: no policy behind it, and not applied yet.
    let text = ok(
        &capstan(
            d,
            &[
                "explain",
                "cm/settings",
                "-n",
                &ns.name,
                "-c",
                "capstan.yaml",
            ],
        )
        .await,
        "capstan explain cm/settings",
    );
    eprintln!("{text}");
    assert!(
        text.contains(&format!("commit {human} \"settings: debug logging\"")),
        "{text}"
    );
    assert!(!text.contains("image update"), "{text}");
    assert!(text.contains("NOT applied yet"), "{text}");

    // JSON for scripts.
    let json = ok(
        &capstan(
            d,
            &[
                "explain",
                "Deployment.apps/podinfo",
                "-n",
                &ns.name,
                "-c",
                "capstan.yaml",
                "-o",
                "json",
            ],
        )
        .await,
        "capstan explain -o json",
    );
    let v: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["target"], ns.name.as_str());
    assert_eq!(v["last_change"]["id"], bump.as_str());
    assert_eq!(v["image_updates"][0]["policy"], "podinfo");
    assert_eq!(v["image_updates"][0]["to"], "6.5.2");
    assert_eq!(v["inventory"]["listed"], true);
    assert_eq!(v["change_applied"], true);
    assert_eq!(v["commit_status"]["state"], "success");
    assert_eq!(v["commit_status"]["commit"], bump.as_str());

    // Nothing by that name anywhere: said so, exit code 1.
    let out = capstan(
        d,
        &[
            "explain",
            "deployment/nope",
            "-n",
            &ns.name,
            "-c",
            "capstan.yaml",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("live          not found"), "{text}");
    assert!(text.contains("does not exist in the cluster"), "{text}");
}
