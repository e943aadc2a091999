//! Sync at scale against a real control plane: N ConfigMaps across 10 namespaces.
//!
//! For each size it measures the first sync (everything created), a no-op resync
//! (nothing changed: must send zero writes), the write requests counted by capstan
//! and by the API server's own `apiserver_request_total` (non-dry-run
//! POST/PUT/PATCH/DELETE on configmaps and namespaces), and the process's peak RSS.
//!
//! It also prints the CPU time each process spent during the first sync and during the
//! resyncs: this process (capstan) and, when the control plane is the one
//! `scripts/k8s-env` started (its pid files under `CAPSTAN_K8S_STATE`, default
//! `target/k8s-env`), kube-apiserver, etcd and kube-controller-manager. On 2 cores the
//! first sync is bound by their sum, not by capstan alone.
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
    let mut cpu_rows = Vec::new();
    for n in sizes {
        cpu_rows.push(bench(&client, n).await?);
    }
    let names: Vec<&str> = CONTROL_PLANE
        .iter()
        .copied()
        .filter(|c| control_plane_pid(c).is_some())
        .collect();
    println!(
        "\nCPU seconds spent (capstan{}):\n",
        names.iter().map(|n| format!(" / {n}")).collect::<String>()
    );
    println!("| objects | first sync | 3 no-op resyncs |");
    println!("|---|---|---|");
    for (n, first, resyncs) in cpu_rows {
        println!("| {n} | {} | {} |", cpu_cells(&first), cpu_cells(&resyncs));
    }
    Ok(())
}

/// The control-plane processes whose CPU is reported, as `scripts/k8s-env` names them.
const CONTROL_PLANE: [&str; 3] = ["kube-apiserver", "etcd", "kube-controller-manager"];

/// CPU seconds of capstan (this process), then of each control-plane process found.
type CpuSample = Vec<f64>;

fn control_plane_pid(component: &str) -> Option<u32> {
    let state = std::env::var("CAPSTAN_K8S_STATE")
        .unwrap_or_else(|_| format!("{}/target/k8s-env", env!("CARGO_MANIFEST_DIR")));
    std::fs::read_to_string(format!("{state}/pids/{component}.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// user + system CPU seconds of a process, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

fn cpu_sample() -> CpuSample {
    let mut sample = vec![cpu_seconds("self").unwrap_or(0.0)];
    for component in CONTROL_PLANE {
        if let Some(pid) = control_plane_pid(component) {
            sample.push(cpu_seconds(&pid.to_string()).unwrap_or(0.0));
        }
    }
    sample
}

fn cpu_spent(before: &CpuSample, after: &CpuSample) -> CpuSample {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

fn cpu_cells(spent: &CpuSample) -> String {
    spent
        .iter()
        .map(|s| format!("{s:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

async fn bench(client: &Client, n: usize) -> anyhow::Result<(usize, CpuSample, CpuSample)> {
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
    let cpu0 = cpu_sample();
    let t0 = Instant::now();
    let first = sync_target(client, &opts).await?;
    let first_time = t0.elapsed();
    let cpu1 = cpu_sample();
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
    let cpu2 = cpu_sample();
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
    Ok((n, cpu_spent(&cpu0, &cpu1), cpu_spent(&cpu1, &cpu2)))
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
