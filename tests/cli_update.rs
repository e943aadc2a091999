//! `capstan update --once` as people and scripts run it, against real Git
//! repositories (on disk and over smart HTTP).

mod support;

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use support::git_http::GitHttpServer;
use support::git_repo::{self, BareRepo, policy_yaml};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  template:
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
";

struct Setup {
    dir: tempfile::TempDir,
    repo: BareRepo,
}

impl Setup {
    fn new(extra_files: &[(&str, &str)]) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = vec![("deploy/podinfo.yaml", DEPLOYMENT)];
        files.extend_from_slice(extra_files);
        let repo = BareRepo::create(&dir.path().join("srv"), "fleet.git", &files);
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("mkdir");
        std::fs::write(
            policies.join("podinfo.yaml"),
            policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
        )
        .expect("policy");
        std::fs::create_dir_all(dir.path().join("tags")).expect("mkdir");
        let setup = Setup { dir, repo };
        setup.tags("podinfo", "6.4.0\n6.5.0\n6.5.2\n7.0.0\n");
        setup.config(&format!(
            "repository:\n  url: {}\n",
            setup.repo.path().display()
        ));
        setup
    }

    fn config(&self, text: &str) -> PathBuf {
        let p = self.dir.path().join("capstan.yaml");
        std::fs::write(&p, text).expect("config");
        p
    }

    fn tags(&self, policy: &str, tags: &str) {
        std::fs::write(
            self.dir.path().join("tags").join(format!("{policy}.txt")),
            tags,
        )
        .expect("tags");
    }

    fn capstan(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("capstan").expect("binary");
        cmd.current_dir(self.dir.path())
            .args([
                "update",
                "--once",
                "-c",
                "capstan.yaml",
                "--tags-dir",
                "tags",
            ])
            .args(extra)
            .env_remove("CAPSTAN_LOG");
        cmd
    }

    fn run(&self, extra: &[&str]) -> Output {
        self.capstan(extra).output().expect("runs")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn dry_run_prints_a_diff_and_changes_nothing() {
    let s = Setup::new(&[]);
    let before = s.repo.head();
    let out = s.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "diff --git a/deploy/podinfo.yaml b/deploy/podinfo.yaml
--- a/deploy/podinfo.yaml
+++ b/deploy/podinfo.yaml
@@ -7,4 +7,4 @@
     spec:
       containers:
         - name: podinfo
-          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
+          image: ghcr.io/stefanprodan/podinfo:6.5.2 # {\"$imagepolicy\": \"podinfo\"}
"
    );
    let err = text(&out.stderr);
    assert!(err.contains("dry run on main"), "{err}");
    assert!(
        err.contains("1 change(s) in 1 file(s) would be committed"),
        "{err}"
    );
    assert_eq!(s.repo.head(), before);

    // The diff applies with `git apply` to a fresh clone.
    let clone = s.dir.path().join("clone");
    git_repo::git(
        s.dir.path(),
        &[
            "clone",
            "-q",
            s.repo.path().to_str().expect("utf8"),
            "clone",
        ],
    );
    std::fs::write(s.dir.path().join("change.patch"), &out.stdout).expect("patch");
    git_repo::git(&clone, &["apply", "--check", "../change.patch"]);
}

#[test]
fn pushes_then_has_nothing_left_to_do() {
    let s = Setup::new(&[]);
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("pushed ") && err.contains(" to main: 1 change(s) in 1 file(s)"),
        "{err}"
    );
    assert!(
        s.repo
            .show("deploy/podinfo.yaml")
            .contains("podinfo:6.5.2 #")
    );
    assert_eq!(
        s.repo.log()[0],
        "capstan\tchore(images): podinfo 6.5.0 → 6.5.2"
    );

    let again = s.run(&[]);
    assert!(again.status.success());
    assert_eq!(text(&again.stdout), "");
    assert!(
        text(&again.stderr).contains("nothing to commit: main at"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(s.repo.log().len(), 2);
}

#[test]
fn author_and_message_template_come_from_the_config() {
    let s = Setup::new(&[]);
    s.config(&format!(
        "repository:\n  url: {}\nupdate:\n  author: {{name: fleet-bot, email: bot@example.com}}\n  messageTemplate: \"deps({{{{images}}}}): {{summary}}\\n\\n{{changes}}\\n\"\n",
        s.repo.path().display()
    ));
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let msg = git_repo::git(
        &s.repo.path(),
        &["log", "-1", "--format=%an <%ae>%n%B", "main"],
    );
    assert_eq!(
        msg.trim_end(),
        "fleet-bot <bot@example.com>\ndeps({images}): podinfo 6.5.0 → 6.5.2\n\n- podinfo: 6.5.0 → 6.5.2 (deploy/podinfo.yaml)"
    );
}

#[test]
fn bad_files_fail_the_run_but_good_ones_are_committed() {
    let s = Setup::new(&[
        (
            "deploy/broken.yaml",
            "image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}\na: [1, 2\nb: c\n",
        ),
        (
            "deploy/typo.yaml",
            "image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinf\"}\n",
        ),
    ]);
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: deploy/broken.yaml:3: does not parse as YAML"),
        "{err}"
    );
    assert!(
        err.contains("error: deploy/typo.yaml:1: marker names unknown policy `podinf` (did you mean `podinfo`?)"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(s.repo.show("deploy/podinfo.yaml").contains("podinfo:6.5.2"));
    assert_eq!(s.repo.log().len(), 2);
}

#[test]
fn skipped_policies_are_reported_and_do_not_fail_the_run() {
    let s = Setup::new(&[]);
    s.tags("podinfo", "7.0.0\nlatest\n");
    std::fs::write(
        s.dir.path().join("policies/orphan.yaml"),
        policy_yaml("orphan", "ghcr.io/acme/orphan", ">=1.0.0"),
    )
    .expect("policy");
    s.tags("orphan", "1.0.0\n");
    let out = s.run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("skipped: policy `podinfo`: policy `podinfo`"),
        "{err}"
    );
    assert!(err.contains("no tag qualifies"), "{err}");
    assert!(
        err.contains("deploy/podinfo.yaml:10: policy `podinfo`"),
        "{err}"
    );
    assert!(err.contains("nothing to commit"), "{err}");
    assert!(
        err.contains("skipped: policy `orphan`: no reference to it under update.path"),
        "{err}"
    );
}

#[test]
fn json_report_for_scripts() {
    let s = Setup::new(&[]);
    let out = s.run(&["--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["outcome"]["result"], "dry-run");
    let file = &report["plan"]["files"][0];
    assert_eq!(file["path"], "deploy/podinfo.yaml");
    assert_eq!(file["changes"][0]["from"], "6.5.0");
    assert_eq!(file["changes"][0]["to"], "6.5.2");
    assert_eq!(
        file["patch"],
        serde_json::json!([{"op": "replace", "path": "/0/spec/template/spec/containers/0/image", "value": "ghcr.io/stefanprodan/podinfo:6.5.2"}])
    );
}

#[test]
fn usage_and_configuration_errors_exit_2() {
    let s = Setup::new(&[]);
    let mut cmd = Command::cargo_bin("capstan").expect("binary");
    let out = cmd
        .current_dir(s.dir.path())
        .args([
            "update",
            "--once",
            "-c",
            "capstan.yaml",
            "--tags-dir",
            "no-such-dir",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tags-dir no-such-dir: not a folder"),
        "{}",
        text(&out.stderr)
    );

    let mut cmd = Command::cargo_bin("capstan").expect("binary");
    let out = cmd
        .current_dir(s.dir.path())
        .args(["update"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "--once is required");

    s.config(&format!(
        "repository:\n  url: {}\nupdate:\n  path: ../outside\n",
        s.repo.path().display()
    ));
    let out = s.run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("update.path `../outside`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn https_token_from_the_environment() {
    let s = Setup::new(&[]);
    let server = GitHttpServer::start(&s.dir.path().join("srv"), Some(("bot", "t0ken")));
    s.config(&format!(
        "repository:\n  url: {}\n  auth:\n    tokenEnv: FLEET_TOKEN\n    username: bot\n",
        server.url("fleet.git")
    ));
    let out = s
        .capstan(&[])
        .env_remove("FLEET_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`FLEET_TOKEN`"),
        "{}",
        text(&out.stderr)
    );

    let out = s
        .capstan(&[])
        .env("FLEET_TOKEN", "t0ken")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("t0ken"),
        "the token is never printed"
    );
    assert!(s.repo.show("deploy/podinfo.yaml").contains("podinfo:6.5.2"));
}

#[test]
fn race_b_two_processes_at_once_make_one_commit_per_change() {
    let s = Setup::new(&[]);
    let server = GitHttpServer::start(&s.dir.path().join("srv"), None);
    let url = server.url("fleet.git");
    let configs: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|n| {
            let p = s.dir.path().join(format!("capstan-{n}.yaml"));
            std::fs::write(
                &p,
                format!("repository:\n  url: {url}\n  checkoutDir: checkout-{n}\n"),
            )
            .expect("config");
            p
        })
        .collect();
    for (round, tag) in ["6.5.1", "6.5.2", "6.6.0"].iter().enumerate() {
        s.tags("podinfo", tag);
        let children: Vec<std::process::Child> = configs
            .iter()
            .map(|c| {
                std::process::Command::new(assert_cmd::cargo::cargo_bin("capstan"))
                    .current_dir(s.dir.path())
                    .args(["update", "--once", "--tags-dir", "tags", "-c"])
                    .arg(c)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let capstan_commits = s
            .repo
            .log()
            .iter()
            .filter(|l| l.starts_with("capstan\t"))
            .count();
        assert_eq!(capstan_commits, round + 1, "{:?}", s.repo.log());
        assert!(
            s.repo
                .show("deploy/podinfo.yaml")
                .contains(&format!("podinfo:{tag} #"))
        );
    }
}
