//! The `capstan` command line as scripts use it: output contract and exit codes.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn capstan() -> Command {
    Command::cargo_bin("capstan").expect("binary built")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// `capstan policy eval <policy> --tags-file <tags> <extra…>`
fn eval(policy: &Path, tags: &Path, extra: &[&str]) -> std::process::Output {
    capstan()
        .args(["policy", "eval"])
        .args(extra)
        .arg(policy)
        .arg("--tags-file")
        .arg(tags)
        .output()
        .expect("runs")
}

const SEMVER_POLICY: &str = "apiVersion: capstan.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: podinfo
spec:
  image: ghcr.io/stefanprodan/podinfo
  policy:
    semver:
      range: '>=5.0.0 <6.0.0'
";

const TAGS: &str = "4.0.6\n5.0.0\nlatest\n5.2.1\n6.0.0\nv5.1.9\n5.3.0-rc.1\n";

#[test]
fn version_flag() {
    capstan()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("capstan "));
}

#[test]
fn eval_prints_chosen_tag_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write(dir.path(), "p.yaml", SEMVER_POLICY);
    let tags = write(dir.path(), "tags.txt", TAGS);
    let out = eval(&policy, &tags, &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5.2.1\n");
}

#[test]
fn eval_explain_accounts_for_every_tag_then_prints_the_tag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write(dir.path(), "p.yaml", SEMVER_POLICY);
    let tags = write(dir.path(), "tags.txt", TAGS);
    let out = eval(&policy, &tags, &["--explain"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert_eq!(lines.last().copied(), Some("5.2.1"));
    assert!(lines[0].starts_with("4.0.6") && lines[0].contains("outside range"));
    assert!(lines[2].starts_with("latest") && lines[2].contains("not semver"));
    assert!(lines[3].starts_with("5.2.1") && lines[3].contains("chosen"));
    assert!(lines[5].contains("ranked below 5.2.1"));
}

#[test]
fn eval_json_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write(dir.path(), "p.yaml", SEMVER_POLICY);
    let out = capstan()
        .args(["policy", "eval", "-o", "json", "--tags-file", "-"])
        .arg(&policy)
        .write_stdin(r#"{"name":"stefanprodan/podinfo","tags":["5.0.1","5.0.3"]}"#)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["chosen"], "5.0.3");
    assert_eq!(v["tags"][0]["verdict"], "outranked");
}

#[test]
fn no_qualifying_tag_exits_1_with_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write(dir.path(), "p.yaml", SEMVER_POLICY);
    let tags = write(dir.path(), "tags.txt", "latest\n7.0.0\n");
    let out = eval(&policy, &tags, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no tag qualifies"), "{stderr}");
}

/// Bad input: exit 2 and one line naming file:line:col and the field.
#[test]
fn bad_policies_exit_2_with_location() {
    let cases: [(&str, String, &str); 5] = [
        (
            "malformed",
            SEMVER_POLICY.replace("  image: ghcr.io/stefanprodan/podinfo", "  image: [ghcr.io"),
            ":6:",
        ),
        (
            "unknown-field",
            SEMVER_POLICY.replace("  image:", "  imagee:"),
            ":6:3: spec.imagee: unknown field `imagee` (did you mean `image`?)",
        ),
        (
            "bad-regex",
            SEMVER_POLICY.replace(
                "  policy:",
                "  filterTags:\n    pattern: '(unclosed'\n  policy:",
            ),
            ":8:14: spec.filterTags.pattern: invalid regular expression",
        ),
        (
            "empty-range",
            SEMVER_POLICY.replace("'>=5.0.0 <6.0.0'", "''"),
            ":9:14: spec.policy.semver.range:",
        ),
        (
            "bad-range",
            SEMVER_POLICY.replace("'>=5.0.0 <6.0.0'", "'>= five'"),
            ":9:14: spec.policy.semver.range:",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let tags = write(dir.path(), "tags.txt", TAGS);
    for (name, text, expected) in cases {
        let policy = write(dir.path(), &format!("{name}.yaml"), &text);
        let out = eval(&policy, &tags, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}.yaml")), "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn policy_file_that_is_a_directory_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tags = write(dir.path(), "tags.txt", TAGS);
    capstan()
        .args(["policy", "eval"])
        .arg(dir.path())
        .arg("--tags-file")
        .arg(&tags)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a directory"));
}

#[test]
fn check_accepts_the_shipped_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    capstan()
        .arg("check")
        .arg("-c")
        .arg(root.join("capstan.example.yaml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("3 policies"));
}

#[test]
fn check_reports_every_bad_policy_and_config_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    write(&dir.path().join("policies"), "ok.yaml", SEMVER_POLICY);
    write(
        &dir.path().join("policies"),
        "bad.yaml",
        &SEMVER_POLICY.replace("semver:", "semvar:"),
    );
    write(&dir.path().join("policies"), "dup.yaml", SEMVER_POLICY);
    let config = write(
        dir.path(),
        "capstan.yaml",
        "repository:\n  url: ./fleet.git\n",
    );
    let out = capstan()
        .arg("check")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(
        stderr.contains("bad.yaml:8:5: spec.policy.semvar: unknown field"),
        "{stderr}"
    );
    assert!(stderr.contains("also defined in"), "{stderr}");

    let bad_config = write(
        dir.path(),
        "bad.yaml",
        "repository:\n  url: x\nupdate:\n  interval: soon\n",
    );
    capstan()
        .arg("check")
        .arg("-c")
        .arg(&bad_config)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "bad.yaml:4:13: update.interval: invalid duration",
        ));
}
