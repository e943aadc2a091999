//! Registry scanning at scale, against a real registry (Debian's
//! `docker-registry`, CNCF Distribution 2.8) on loopback:
//!
//! 1. one repository with 10,000 tags, listed directly (Distribution 2.8
//!    answers with every tag at once) and through a paging proxy that pages the
//!    way Docker Hub does (100 tags per page, `Link: rel="next"`);
//! 2. 200 repositories scanned at once under a budget of 600 requests per
//!    minute, with digest pinning and config blobs (4 requests per image).
//!
//! Each measured scan runs in a child process (this binary again), so its peak
//! RSS is the scanner's alone, not the registry helpers'. Figures: HTTP
//! requests sent, wall time, peak RSS (VmHWM), and for the budget run the
//! busiest window seen by the proxy.
//!
//! `scripts/bench-registry` runs it; `--quick` scales the budget window from
//! 60 s to 6 s (same rate: 60 requests per 6 s) to finish in seconds.

#[path = "../tests/registry_support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan::registry::transport::{ClientOptions, RegistrySettings};
use capstan::registry::{ScanOptions, Scanner};
use support::proxy::{Proxy, max_in_window};
use support::push::{Image, Pusher};
use support::registry::Registry;

const CHILD: &str = "CAPSTAN_BENCH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(quick));
}

async fn run(quick: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::plain();
    let pusher = Pusher::new(&registry);

    println!("== 1. one repository, 10,000 tags");
    let started = Instant::now();
    let seed = pusher
        .image("bench/big", &Image::new("2024-01-01T00:00:00Z"), &["0.0.0"])
        .await;
    let tags: Vec<String> = (1..10_000)
        .map(|i| format!("{}.{}.{}", i / 1000, (i / 10) % 100, i % 10))
        .collect();
    pusher.retag("bench/big", &seed, &tags, 32).await;
    println!(
        "   setup: pushed 10,000 tags through the HTTP API in {:.1?}",
        started.elapsed()
    );
    let policy = dir.path().join("big.yaml");
    let pages = Proxy::paging(&registry, 100).await;
    let baseline = measure(&format!("baseline {}", registry.host), 60, &policy);
    println!(
        "   child process baseline (runtime, no scan): peak RSS {} KiB",
        baseline.vmhwm_kb
    );
    for (label, host) in [
        (
            "direct (Distribution 2.8: one answer)",
            registry.host.clone(),
        ),
        ("paged, 100 per page (Docker Hub style)", pages.host()),
    ] {
        write_policies(&policy, &[("big".to_string(), format!("{host}/bench/big"))]);
        let m = measure(&format!("scan {host}"), 600, &policy);
        println!(
            "   {label}: {} tags, {} requests, {:.0} ms, peak RSS {} KiB (+{} KiB over baseline)",
            m.tags,
            m.requests,
            m.wall_ms,
            m.vmhwm_kb,
            m.vmhwm_kb.saturating_sub(baseline.vmhwm_kb)
        );
    }

    println!("== 2. 200 repositories at once, budget 600 requests/minute");
    let started = Instant::now();
    let repos: Vec<String> = (0..200).map(|i| format!("bench/app-{i:03}")).collect();
    futures::future::join_all(repos.iter().map(|repo| {
        let pusher = &pusher;
        async move {
            let p = pusher
                .image(
                    repo,
                    &Image::new("2024-01-01T00:00:00Z")
                        .label("org.opencontainers.image.revision", "abc"),
                    &["1.0.0"],
                )
                .await;
            let tags: Vec<String> = (1..20).map(|i| format!("1.{i}.0")).collect();
            pusher.retag(repo, &p, &tags, 4).await;
        }
    }))
    .await;
    println!(
        "   setup: 200 repositories x 20 tags in {:.1?}",
        started.elapsed()
    );
    let proxy = Proxy::start(&registry).await;
    let many = dir.path().join("many.yaml");
    write_policies(
        &many,
        &repos
            .iter()
            .map(|r| (r.replace("bench/", ""), format!("{}/{r}", proxy.host())))
            .collect::<Vec<_>>(),
    );
    let window = if quick { 6 } else { 60 };
    let budget = if quick { 60 } else { 600 };
    let m = measure(&format!("budget {} {window}", proxy.host()), budget, &many);
    let busiest = max_in_window(&proxy.log(), Duration::from_secs(window));
    println!(
        "   {} fresh, {} stale; {} requests in {:.1} s; peak RSS {} KiB; busiest {window} s window: {busiest} requests (budget {budget}){}",
        m.fresh,
        m.stale,
        m.requests,
        m.wall_ms / 1000.0,
        m.vmhwm_kb,
        if quick {
            " [--quick: 600/min scaled to 60 per 6 s]"
        } else {
            ""
        }
    );
    drop(pages);
}

fn write_policies(path: &Path, entries: &[(String, String)]) {
    let mut text = String::new();
    for (name, image) in entries {
        text.push_str(&format!(
            "---\napiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '>=1.0.0 <9.0.0'\n  digest: pin\n"
        ));
    }
    std::fs::write(path, text).expect("write policies");
}

#[derive(Debug, Default)]
struct Measured {
    tags: usize,
    requests: u64,
    wall_ms: f64,
    vmhwm_kb: u64,
    fresh: usize,
    stale: usize,
}

/// Runs one scan in a child process: `spec` is `<kind> <host> [window]`; the
/// child gets `<spec> <budget> <policies file>`.
fn measure(spec: &str, budget: u32, policies: &Path) -> Measured {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .env(CHILD, format!("{spec} {budget} {}", policies.display()))
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("child JSON");
    Measured {
        tags: v["tags"].as_u64().unwrap_or(0) as usize,
        requests: v["requests"].as_u64().unwrap_or(0),
        wall_ms: v["wall_ms"].as_f64().unwrap_or(0.0),
        vmhwm_kb: v["vmhwm_kb"].as_u64().unwrap_or(0),
        fresh: v["fresh"].as_u64().unwrap_or(0) as usize,
        stale: v["stale"].as_u64().unwrap_or(0) as usize,
    }
}

/// The measured side: scan the policies, print one JSON line.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let (kind, host) = (parts[0], parts[1]);
    let (window, budget, policies) = match kind {
        "budget" => (parts[2].parse::<u64>().expect("window"), parts[3], parts[4]),
        _ => (60, parts[2], parts[3]),
    };
    let budget: u32 = budget.parse().expect("budget");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        if kind == "baseline" {
            return serde_json::json!({"vmhwm_kb": vmhwm_kb()});
        }
        let policies = capstan::policy::load_file(Path::new(policies)).expect("policies");
        let scanner = Scanner::new(
            vec![(
                host.to_string(),
                Ok(RegistrySettings {
                    insecure: true,
                    requests_per_minute: budget,
                    concurrency: 8,
                    ..RegistrySettings::anonymous(host)
                }),
            )],
            ClientOptions {
                budget_window: Duration::from_secs(window),
                ..ClientOptions::default()
            },
            ScanOptions {
                fetch_info: kind == "budget",
                ..ScanOptions::default()
            },
        );
        let started = Instant::now();
        let results = scanner.scan_all(&policies).await;
        let wall = started.elapsed();
        let requests = scanner
            .client(host)
            .map(|c| {
                c.stats()
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap_or(0);
        let tags: usize = results
            .iter()
            .filter_map(|r| r.fresh())
            .map(|s| s.tags.len())
            .sum();
        let fresh = results.iter().filter(|r| r.fresh().is_some()).count();
        for r in results.iter().filter(|r| r.is_stale()) {
            eprintln!("stale: {}: {:?}", r.policy, r.error());
        }
        serde_json::json!({
            "tags": tags,
            "requests": requests,
            "wall_ms": wall.as_secs_f64() * 1000.0,
            "vmhwm_kb": vmhwm_kb(),
            "fresh": fresh,
            "stale": results.len() - fresh,
        })
    });
    println!("{result}");
}

/// Peak resident set size of this process, from /proc.
fn vmhwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}
