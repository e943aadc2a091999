//! Sync at scale against a real control plane: N ConfigMaps across 10 namespaces.
//!
//! For each size it measures the first sync (everything created), a no-op resync
//! (nothing changed: must send zero writes), the write requests counted by capstan
//! and by the API server's own `apiserver_request_total` (non-dry-run
//! POST/PUT/PATCH/DELETE on configmaps and namespaces), and the process's peak RSS.
//!
//! Run with `scripts/bench-sync [SIZES...]`; the cluster comes from
//! `CAPSTAN_BENCH_KUBECONFIG` (default: `scripts/k8s-env kubeconfig`).

use std::path::Path;
use std::time::Instant;

use capstan::sync::{SyncOptions, sync_target};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

const NAMESPACES: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `CAPSTAN_LOG=capstan=debug` shows the phases of each pass.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let path = match std::env::var("CAPSTAN_BENCH_KUBECONFIG") {
        Ok(p) => p,
        Err(_) => {
            let out = std::process::Command::new(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-env"),
            )
            .arg("kubeconfig")
            .output()?;
            anyhow::ensure!(
                out.status.success(),
                "no control plane: run `scripts/k8s-env up` first"
            );
            String::from_utf8(out.stdout)?.trim().to_string()
        }
    };
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    println!(
        "| objects | first sync | writes (capstan / apiserver) | no-op resync (median of 3) | writes (capstan / apiserver, all 3) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        bench(&client, n).await?;
    }
    Ok(())
}

async fn bench(client: &Client, n: usize) -> anyhow::Result<()> {
    let run = format!("bench{}-{n}", std::process::id());
    let dir = tempfile::tempdir()?;
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("{run}-{i}")).collect();
    let mut text = String::new();
    for ns in &namespaces {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
        ));
    }
    std::fs::write(dir.path().join("namespaces.yaml"), text)?;
    for (f, ns) in namespaces.iter().enumerate() {
        let mut text = String::new();
        for i in 0..n / NAMESPACES {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: {ns}\n  labels:\n    app: bench\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                "x".repeat(64)
            ));
        }
        std::fs::write(dir.path().join(format!("cms-{f}.yaml")), text)?;
    }
    let opts = SyncOptions {
        target: run.clone(),
        path: dir.path().to_path_buf(),
        namespace: namespaces[0].clone(),
        prune: true,
        self_heal: true,
        force: false,
        health_timeout: std::time::Duration::from_secs(120),
        commit: None,
    };
    let before = server_writes(client).await?;
    let t0 = Instant::now();
    let first = sync_target(client, &opts).await?;
    let first_time = t0.elapsed();
    let mid = server_writes(client).await?;
    // The no-op resync three times: its median, and the writes of all three.
    let mut resyncs = Vec::new();
    let mut again = first.clone();
    for _ in 0..3 {
        let t1 = Instant::now();
        again = sync_target(client, &opts).await?;
        resyncs.push(t1.elapsed());
        anyhow::ensure!(again.writes == 0, "a no-op resync wrote {}", again.writes);
    }
    resyncs.sort();
    let resync_time = resyncs[1];
    let after = server_writes(client).await?;
    anyhow::ensure!(
        first.created.len() == n + NAMESPACES,
        "created {}",
        first.created.len()
    );
    println!(
        "| {n} | {:.2} s | {} / {} | {:.3} s | {} / {} | {} MiB |",
        first_time.as_secs_f64(),
        first.writes,
        mid - before,
        resync_time.as_secs_f64(),
        again.writes,
        after - mid,
        peak_rss_mib()
    );
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in &namespaces {
        let _ = api.delete(ns, &DeleteParams::background()).await;
    }
    // The namespace controller deletes every object in them; the next size is measured
    // on a quiet API server, not beside thousands of deletions.
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    for ns in &namespaces {
        while api.get_opt(ns).await?.is_some() {
            anyhow::ensure!(Instant::now() < deadline, "namespace {ns} is still there");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// Non-dry-run writes to configmaps and namespaces the API server has served so far.
async fn server_writes(client: &Client) -> anyhow::Result<u64> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut total = 0.0;
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let write = [
            "\"POST\"",
            "\"PUT\"",
            "\"PATCH\"",
            "\"DELETE\"",
            "\"APPLY\"",
        ]
        .iter()
        .any(|v| line.contains(&format!("verb={v}")));
        let ours =
            line.contains("resource=\"configmaps\"") || line.contains("resource=\"namespaces\"");
        let dry = line.contains("dry_run=\"All\"");
        if write && ours && !dry {
            total += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(total as u64)
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
