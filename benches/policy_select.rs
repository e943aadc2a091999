//! `select` over 10,000 tags for each kind of policy.
//! Run: `cargo bench --bench policy_select`.

use std::hint::black_box;
use std::path::Path;

use capstan::policy::{self, ImagePolicy};
use criterion::{Criterion, criterion_group, criterion_main};

const N: usize = 10_000;

fn policy(yaml_spec: &str) -> ImagePolicy {
    let dir = std::env::temp_dir().join(format!("capstan-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("p.yaml");
    let text = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: bench\nspec:\n  image: ghcr.io/acme/app\n{yaml_spec}"
    );
    std::fs::write(&file, text).expect("write policy");
    let mut loaded = policy::load_file(Path::new(&file)).expect("valid policy");
    loaded.remove(0)
}

/// A realistic mix: releases, prereleases, `v` prefixes, CI builds and junk.
fn tags() -> Vec<String> {
    (0..N)
        .map(|i| match i % 5 {
            0 => format!("{}.{}.{}", i % 7, i % 31, i % 97),
            1 => format!("v{}.{}.{}", i % 5, i % 17, i % 13),
            2 => format!("{}.{}.0-rc.{}", i % 4, i % 9, i % 5),
            3 => format!("main-{:07x}-{}", i * 7919, 1_700_000_000 + i),
            _ => format!(
                "RELEASE.2024-{:02}-{:02}T00-00-{:02}Z",
                i % 12 + 1,
                i % 28 + 1,
                i % 60
            ),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tags = tags();
    let cases = [
        (
            "semver",
            "  policy:\n    semver:\n      range: '>=1.0.0 <4.0.0 || ^5.2'\n",
        ),
        (
            "numerical_extract",
            "  filterTags:\n    pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)$'\n    extract: '$ts'\n  policy:\n    numerical:\n      order: asc\n",
        ),
        (
            "alphabetical_filter",
            "  filterTags:\n    pattern: '^RELEASE\\.'\n  exclude: ['-rc']\n  policy:\n    alphabetical:\n      order: asc\n",
        ),
    ];
    for (name, spec) in cases {
        let p = policy(spec);
        c.bench_function(&format!("select_10k/{name}"), |b| {
            b.iter(|| black_box(policy::select(&p, black_box(&tags))))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
