//! Golden tests: real-world manifest shapes under `tests/fixtures/manifests/input`
//! are updated and compared byte for byte with `tests/fixtures/manifests/expected`.
//!
//! The expected files were written by substituting exactly the tag (or digest)
//! bytes in the inputs, independently of capstan's code; every other byte —
//! comments, quoting, CRLF, BOM, indentation, other documents — must survive.
//! Files named `auto-*` run with `update.matchImageFields` on.

use std::path::{Path, PathBuf};

use capstan::manifests::{self, ChosenImage, Options, Plan, Wanted};

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

/// What each fixture policy "chose".
fn wanted() -> Vec<Wanted> {
    let policies =
        capstan::policy::load_dir(&fixtures().join("policies")).expect("fixture policies load");
    policies
        .into_iter()
        .map(|policy| {
            let chosen = match (policy.namespace.as_deref(), policy.name.as_str()) {
                (_, "podinfo") => Ok("6.7.1"),
                (_, "nginx") => Ok("1.27.3"),
                (_, "redis") => Ok("7.4.2"),
                (Some("flux-system"), "app") => Ok("main-9f8e7d6-1733000000"),
                (Some("team-a"), "web") => Ok("1.4.0"),
                (Some("team-b"), "web") => Ok("2.1.0"),
                (_, "cert-manager") => Ok("v1.16.2"),
                (_, "pinned") => Ok("2.1.0"),
                (_, "backup") => Ok("2024.12.01"),
                (_, "shortcal") => Ok("2025.01"),
                (_, "numtag") => Ok("1.3"),
                (_, "busybox") => Ok("1.37.0"),
                (_, "sidecar") => Ok("0.9.0"),
                (_, "chart-app") => Ok("3.2.1"),
                (_, "frozen") => Err("no tag qualifies".to_string()),
                other => panic!("fixture policy without a choice: {other:?}"),
            };
            let digest = (policy.name == "pinned").then(|| DIGEST.to_string());
            Wanted {
                policy,
                chosen: chosen.map(|tag| ChosenImage {
                    tag: tag.to_string(),
                    digest,
                }),
            }
        })
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read fixtures") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn options_for(rel: &str) -> Options {
    Options {
        match_image_fields: rel
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with("auto-")),
    }
}

#[test]
fn every_fixture_matches_its_expected_bytes() {
    let input = fixtures().join("input");
    let expected_dir = fixtures().join("expected");
    let wanted = wanted();
    let mut files = Vec::new();
    files_under(&input, &mut files);
    files.sort();
    assert!(files.len() >= 30, "only {} fixtures", files.len());

    let work = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut changed_files = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&input)
            .expect("under input")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("fixture is UTF-8");
        let expected = std::fs::read(expected_dir.join(&rel)).expect("expected file exists");
        // Write through the real path: temp copy, plan, Plan::write.
        let target = work.path().join(&rel);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, &text).expect("copy");
        let outcome = manifests::plan_text(&rel, &target, &text, &wanted, options_for(&rel));
        if !outcome.problems.is_empty() {
            failures.push(format!("{rel}: problems: {:?}", outcome.problems));
            continue;
        }
        if let Some(plan) = &outcome.plan {
            changed_files += 1;
            // Each change touches only its own bytes, and they are few.
            for c in &plan.changes {
                assert!(
                    c.edit.old.len() <= 80 && c.edit.new.len() <= 90,
                    "{rel}: {:?}",
                    c.edit
                );
            }
        }
        let mut plan = Plan {
            files: outcome.plan.into_iter().collect(),
            ..Plan::default()
        };
        plan.write();
        assert!(plan.problems.is_empty(), "{rel}: {:?}", plan.problems);
        let got = std::fs::read(&target).expect("read back");
        if got != expected {
            failures.push(format!(
                "{rel}: output differs from expected\n--- expected\n{}\n--- got\n{}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(changed_files >= 30, "only {changed_files} files changed");
}

#[test]
fn skipped_references_say_why() {
    let rel = "frozen-policy-untouched.yaml";
    let path = fixtures().join("input").join(rel);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let outcome = manifests::plan_text(rel, &path, &text, &wanted(), Options::default());
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert_eq!(
        outcome.skipped[0].to_string(),
        "frozen-policy-untouched.yaml:8: policy `frozen`: no tag qualifies"
    );
}

#[test]
fn changes_describe_tag_steps_and_patch_paths() {
    let rel = "deployment-multi-container.yaml";
    let path = fixtures().join("input").join(rel);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let outcome = manifests::plan_text(rel, &path, &text, &wanted(), Options::default());
    let plan = outcome.plan.expect("changes");
    let steps: Vec<(String, String, String, usize)> = plan
        .changes
        .iter()
        .map(|c| (c.policy.clone(), c.from.clone(), c.to.clone(), c.line))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("chart-app".into(), "3.0.0".into(), "3.2.1".into(), 10),
            ("chart-app".into(), "3.0.0".into(), "3.2.1".into(), 14),
            ("nginx".into(), "1.25.3".into(), "1.27.3".into(), 16),
            ("sidecar".into(), "0.8.0".into(), "0.9.0".into(), 20),
        ]
    );
    let patch = serde_json::to_value(&plan.patch).expect("json");
    assert_eq!(
        patch[0],
        serde_json::json!({"op": "replace", "path": "/0/spec/template/spec/initContainers/0/image", "value": "ghcr.io/acme/chart-app:3.2.1"})
    );
    assert_eq!(outcome.up_to_date, 0);
    assert_eq!(outcome.references, 4);
}
