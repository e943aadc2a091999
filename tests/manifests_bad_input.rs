//! Bad input is reported with file:line, the other files are still updated,
//! and nothing is half-written.

use std::path::Path;

use capstan::manifests::{self, ChosenImage, Options, Wanted};

const POLICY: &str = "apiVersion: capstan.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: app
spec:
  image: ghcr.io/acme/app
  policy:
    semver:
      range: '>=1.0.0'
";

fn wanted(dir: &Path, tag: &str) -> Vec<Wanted> {
    let file = dir.join("policy.yaml");
    std::fs::write(&file, POLICY).expect("write policy");
    capstan::policy::load_file(&file)
        .expect("policy loads")
        .into_iter()
        .map(|policy| Wanted {
            policy,
            chosen: Ok(ChosenImage {
                tag: tag.into(),
                digest: None,
            }),
        })
        .collect()
}

const GOOD: &str = "kind: Pod\nspec:\n  containers:\n    - image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"app\"}\n";

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

#[test]
fn every_bad_file_is_reported_and_the_good_ones_are_written() {
    use std::os::unix::fs::PermissionsExt;
    let policies = tempfile::tempdir().expect("tempdir");
    let repo = tempfile::tempdir().expect("tempdir");
    let root = repo.path();
    write(root, "apps/good.yaml", GOOD);
    write(root, "apps/also-good.yml", &GOOD.replace("1.0.0", "0.9.0"));
    // Does not parse: line 4 is indented like no key before it.
    write(
        root,
        "apps/broken.yaml",
        "kind: Pod\nspec:\n  containers: [ {image: ghcr.io/acme/app:1.0.0}] # {\"$imagepolicy\": \"app\"}\n   x: y\n",
    );
    // Broken too, but with nothing for capstan in it: not parsed, not reported.
    write(root, "apps/unrelated.yaml", "a: [1, 2\nb: c\n");
    // A marker naming a policy that does not exist (line 2), next to a good one (line 3).
    write(
        root,
        "apps/unknown.yaml",
        "a: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ap\"}\nb: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"app\"}\n",
    );
    // A marker on a line that holds no scalar value (line 2).
    write(
        root,
        "apps/no-scalar.yaml",
        "spec:\n  containers: # {\"$imagepolicy\": \"app\"}\n    - image: ghcr.io/acme/app:1.0.0\n",
    );
    // A read-only file that would change (line 4).
    write(root, "apps/read-only.yaml", GOOD);
    let ro = root.join("apps/read-only.yaml");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    // A Helm template is not YAML: skipped with a note, not an error.
    write(
        root,
        "chart/templates/deploy.yaml",
        "spec:\n  replicas: {{ .Values.replicas }}\n  {{- if .Values.x }}\n  image: {{ .Values.image }} # {\"$imagepolicy\": \"app\"}\n",
    );

    let mut plan = manifests::plan_dir(
        root,
        root,
        &wanted(policies.path(), "1.2.0"),
        Options::default(),
    );
    plan.write();

    let problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
    let find = |prefix: &str| {
        problems
            .iter()
            .find(|p| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("no problem starting with {prefix}: {problems:#?}"))
            .clone()
    };
    assert_eq!(
        find("apps/broken.yaml:"),
        "apps/broken.yaml:4: does not parse as YAML: while parsing a block mapping, did not find expected key"
    );
    assert_eq!(
        find("apps/unknown.yaml:"),
        "apps/unknown.yaml:1: marker names unknown policy `ap` (did you mean `app`?)"
    );
    assert!(find("apps/no-scalar.yaml:2:").contains("without a scalar value"));
    assert!(
        find("apps/read-only.yaml:4:").contains("read-only"),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");

    let skipped: Vec<String> = plan.skipped.iter().map(ToString::to_string).collect();
    assert!(
        skipped
            .iter()
            .any(|s| s.starts_with("chart/templates/deploy.yaml:") && s.contains("template")),
        "{skipped:#?}"
    );

    // Good files, and the good marker of a file with a bad one, are written.
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read");
    assert_eq!(read("apps/good.yaml"), GOOD.replace("1.0.0", "1.2.0"));
    assert_eq!(read("apps/also-good.yml"), GOOD.replace("1.0.0", "1.2.0"));
    assert_eq!(
        read("apps/unknown.yaml"),
        "a: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"ap\"}\nb: ghcr.io/acme/app:1.2.0 # {\"$imagepolicy\": \"app\"}\n"
    );
    // Nothing half-written: the read-only file is intact and no temp files remain.
    assert_eq!(read("apps/read-only.yaml"), GOOD);
    let leftovers: Vec<_> = std::fs::read_dir(root.join("apps"))
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let written: Vec<&str> = plan.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        written,
        vec!["apps/also-good.yml", "apps/good.yaml", "apps/unknown.yaml"]
    );
}

#[test]
fn an_edit_that_would_change_more_than_the_tag_is_refused() {
    // A plain multi-line scalar cannot be spliced safely.
    let text = "a: ghcr.io/acme/app:1.0.0\n  continued # {\"$imagepolicy\": \"app\"}\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = manifests::plan_text(
        "x.yaml",
        &dir.path().join("x.yaml"),
        text,
        &wanted(dir.path(), "1.2.0"),
        Options::default(),
    );
    assert!(outcome.plan.is_none());
    assert_eq!(outcome.problems.len(), 1, "{:?}", outcome.problems);
    assert!(
        outcome.problems[0].to_string().starts_with("x.yaml:1: "),
        "{}",
        outcome.problems[0]
    );
}

#[test]
fn block_scalars_and_escapes_are_not_edited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = wanted(dir.path(), "1.2.0");
    for (text, line) in [
        (
            "a: |- # {\"$imagepolicy\": \"app\"}\n  ghcr.io/acme/app:1.0.0\n",
            1,
        ),
        (
            "a: \"ghcr.io/acme/app:1.0.\\x30\" # {\"$imagepolicy\": \"app\"}\n",
            1,
        ),
    ] {
        let outcome = manifests::plan_text(
            "x.yaml",
            &dir.path().join("x.yaml"),
            text,
            &w,
            Options::default(),
        );
        assert!(outcome.plan.is_none(), "{text}");
        assert_eq!(outcome.problems.len(), 1, "{text}: {:?}", outcome.problems);
        assert_eq!(outcome.problems[0].line, line, "{text}");
    }
}

#[test]
fn invalid_chosen_tags_are_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), GOOD).expect("write");
    let plan = manifests::plan_dir(
        dir.path(),
        dir.path(),
        &wanted(dir.path(), "1.0: {evil}"),
        Options::default(),
    );
    assert!(plan.files.is_empty());
    assert!(
        plan.problems
            .iter()
            .any(|p| p.message.contains("not a valid image tag")),
        "{:?}",
        plan.problems
    );
    assert!(
        plan.skipped.iter().any(|s| s.message.contains("invalid")),
        "{:?}",
        plan.skipped
    );
}
