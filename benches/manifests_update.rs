//! The image-update pass at fleet scale.
//! Run: `cargo bench --bench manifests_update`.
//!
//! - `scan_plan/1000_files`: walk, parse, find markers, plan and verify edits
//!   for 1,000 manifest files (~5 MB), every one of which changes. Goal: ≤ 200 ms.
//! - `scan_plan_write/1000_files`: the same plus writing every file.
//! - `commit_push/one_change`: fetch, reset, edit one file, commit and push it
//!   to a local bare repository.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capstan::git::{self, Auth, Checkout, Proposal, RetryPolicy};
use capstan::manifests::{self, ChosenImage, Options, Plan, Wanted};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const FILES: usize = 1000;

fn wanted(dir: &Path) -> Vec<Wanted> {
    let images = [
        ("web", "ghcr.io/acme/web"),
        ("worker", "ghcr.io/acme/worker"),
        ("proxy", "nginx"),
    ];
    images
        .iter()
        .map(|(name, image)| {
            let p = dir.join(format!("{name}.yaml"));
            std::fs::write(
                &p,
                format!("apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '*'\n"),
            )
            .expect("write policy");
            let mut loaded = capstan::policy::load_file(&p).expect("policy");
            Wanted {
                policy: loaded.remove(0),
                chosen: Ok(ChosenImage {
                    tag: "2.0.1".into(),
                    digest: None,
                }),
            }
        })
        .collect()
}

/// A ~5 KB multi-document manifest with three markers.
fn manifest(i: usize) -> String {
    let mut s = format!(
        "# service {i}: generated for the benchmark\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: svc-{i}\n  namespace: team-{t}\n  labels:\n    app.kubernetes.io/name: svc-{i}\n    app.kubernetes.io/part-of: fleet\nspec:\n  replicas: {r}\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: svc-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: svc-{i}\n    spec:\n      initContainers:\n        - name: migrate\n          image: \"ghcr.io/acme/worker:1.{m}.0\" # {{\"$imagepolicy\": \"worker\"}}\n          args: [\"migrate\", \"--to\", \"latest\"]\n      containers:\n        - name: web\n          image: ghcr.io/acme/web:1.{m}.3 # {{\"$imagepolicy\": \"web\"}}\n          ports:\n            - {{name: http, containerPort: 8080}}\n          env:\n",
        t = i % 17,
        r = 1 + i % 3,
        m = i % 9,
    );
    for e in 0..12 {
        s.push_str(&format!(
            "            - name: SETTING_{e}\n              value: \"value-{e}-for-service-{i}\" # explained\n"
        ));
    }
    s.push_str(&format!(
        "          resources:\n            requests: {{cpu: 100m, memory: 128Mi}}\n            limits: {{memory: 256Mi}}\n        - name: proxy\n          image: 'nginx:1.25.{m}' # {{\"$imagepolicy\": \"proxy\"}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\nspec:\n  selector:\n    app.kubernetes.io/name: svc-{i}\n  ports:\n    - name: http\n      port: 80\n      targetPort: http\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: svc-{i}-config\ndata:\n",
        m = i % 9
    ));
    let mut k = 0;
    while s.len() < 5000 {
        s.push_str(&format!(
            "  key-{k}: \"a configuration value that pads the file to a realistic size {k}\"\n"
        ));
        k += 1;
    }
    s
}

fn write_fleet(root: &Path) -> Vec<(PathBuf, String)> {
    (0..FILES)
        .map(|i| {
            let dir = root.join(format!("apps/team-{}", i % 17));
            std::fs::create_dir_all(&dir).expect("mkdir");
            let path = dir.join(format!("svc-{i}.yaml"));
            let text = manifest(i);
            std::fs::write(&path, &text).expect("write");
            (path, text)
        })
        .collect()
}

fn scan(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("repo");
    let files = write_fleet(&root);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    eprintln!("fleet: {FILES} files, {:.1} MB", bytes as f64 / 1e6);
    let wanted = wanted(tmp.path());
    let check = manifests::plan_dir(&root, &root, &wanted, Options::default());
    assert_eq!(check.files.len(), FILES, "{:?}", check.problems.first());
    assert_eq!(check.changes().count(), FILES * 3);

    let mut group = c.benchmark_group("scan_plan");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("1000_files", |b| {
        b.iter(|| {
            black_box(manifests::plan_dir(
                &root,
                &root,
                &wanted,
                Options::default(),
            ))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("scan_plan_write");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("1000_files", |b| {
        b.iter_batched(
            || {
                for (p, t) in &files {
                    std::fs::write(p, t).expect("restore");
                }
            },
            |()| {
                let mut plan: Plan = manifests::plan_dir(&root, &root, &wanted, Options::default());
                plan.write();
                assert!(plan.problems.is_empty());
                black_box(plan)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn git_cli(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@b")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@b")
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn commit_push(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let seed = tmp.path().join("seed");
    std::fs::create_dir_all(seed.join("apps")).expect("mkdir");
    std::fs::write(seed.join("apps/web.yaml"), manifest(1)).expect("write");
    git_cli(&seed, &["init", "-q", "-b", "main"]);
    git_cli(&seed, &["add", "-A"]);
    git_cli(&seed, &["commit", "-qm", "seed"]);
    git_cli(tmp.path(), &["clone", "-q", "--bare", "seed", "fleet.git"]);
    let checkout = Checkout::open_or_init(
        &tmp.path().join("fleet.git").to_string_lossy(),
        "main",
        &tmp.path().join("checkout"),
        Auth::None,
    )
    .expect("checkout");
    let author = git2::Signature::now("capstan", "capstan@noreply.invalid").expect("sig");
    let wanted_dir = tmp.path().join("policies");
    std::fs::create_dir_all(&wanted_dir).expect("mkdir");
    let mut wanted = wanted(&wanted_dir);
    let retry = RetryPolicy::default();
    let mut n = 0u64;

    let mut group = c.benchmark_group("commit_push");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("one_change", |b| {
        b.iter(|| {
            n += 1;
            // A different tag every time, so there is always one change to push.
            for w in &mut wanted {
                w.chosen = Ok(ChosenImage {
                    tag: format!("3.0.{n}"),
                    digest: None,
                });
            }
            let outcome = git::write_back(&checkout, &author, &retry, |workdir, _| {
                let mut plan = manifests::plan_dir(workdir, workdir, &wanted, Options::default());
                plan.write();
                Ok::<_, std::convert::Infallible>(Some(Proposal {
                    message: format!("bump {n}"),
                    paths: plan.files.iter().map(|f| f.path.clone()).collect(),
                }))
            })
            .expect("pushed");
            black_box(outcome)
        })
    });
    group.finish();
}

criterion_group!(benches, scan, commit_push);
criterion_main!(benches);
