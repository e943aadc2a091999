//! A real Kubernetes control plane for tests, shared by every test of a process, and a
//! fresh namespace per test.
//!
//! Which cluster, decided once per test process:
//! - `CAPSTAN_TEST_CLUSTER=external` with `KUBECONFIG` set: that cluster;
//! - else `CAPSTAN_TEST_KUBECONFIG=<file>`: the cluster of that kubeconfig;
//! - else the local control plane of `scripts/k8s-env` (etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler, kwok with two fake nodes): `up` is idempotent,
//!   so the first test process starts it and later ones reuse it; `scripts/k8s-env down`
//!   stops it. On a machine without the binaries, `up` builds them first (10-20 min once).
//!
//! A cluster that cannot be reached fails the test loudly; tests are never skipped.

use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The kubeconfig of the test cluster, or why there is none (kept so that every test
/// reports the same reason instead of retrying a slow start).
static KUBECONFIG: OnceLock<Result<Kubeconfig, String>> = OnceLock::new();

fn kubeconfig() -> Kubeconfig {
    KUBECONFIG
        .get_or_init(locate_cluster)
        .clone()
        .unwrap_or_else(|why| panic!("no Kubernetes cluster for the tests: {why}"))
}

fn locate_cluster() -> Result<Kubeconfig, String> {
    if std::env::var("CAPSTAN_TEST_CLUSTER").as_deref() == Ok("external") {
        return match Kubeconfig::from_env() {
            Ok(Some(kc)) => Ok(kc),
            Ok(None) => Err("CAPSTAN_TEST_CLUSTER=external but KUBECONFIG is not set".into()),
            Err(e) => Err(format!("cannot read $KUBECONFIG: {e}")),
        };
    }
    let path = match std::env::var("CAPSTAN_TEST_KUBECONFIG") {
        Ok(path) => path,
        Err(_) => {
            k8s_env("up")?;
            k8s_env("kubeconfig")?
        }
    };
    Kubeconfig::read_from(&path).map_err(|e| format!("cannot read kubeconfig {path}: {e}"))
}

/// Runs `scripts/k8s-env <action>`; its progress and errors go straight to stderr.
fn k8s_env(action: &str) -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-env");
    let out = Command::new(&script)
        .arg(action)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} {action}` failed ({}); its log is above",
            script.display(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The kubeconfig file of the test cluster, for commands run as subprocesses.
pub fn kubeconfig_path() -> String {
    if let Ok(p) = std::env::var("CAPSTAN_TEST_KUBECONFIG") {
        return p;
    }
    k8s_env("kubeconfig").unwrap_or_else(|why| panic!("no kubeconfig for the tests: {why}"))
}

/// A client for the test cluster, checked to reach the API server. Build one per test:
/// a `Client` belongs to the tokio runtime that made it.
pub async fn client() -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig(), &KubeConfigOptions::default())
        .await
        .expect("the test cluster's kubeconfig should be usable");
    let server = config.cluster_url.clone();
    let client = Client::try_from(config).expect("a kube::Client should build from the kubeconfig");
    if let Err(e) = client.apiserver_version().await {
        panic!("the test cluster at {server} cannot be reached: {e}");
    }
    client
}

/// A namespace of its own for one test, with a client. Deleted when dropped, also when
/// the test panics (the namespace controller then removes everything in it).
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates `capstan-<label>-<pid>-<n>`: unique within and across test processes.
    pub async fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        label.truncate(30);
        let name = format!("capstan-{label}-{}-{n}", std::process::id());

        let client = client().await;
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { "capstan.test/owner": "test-fixture" } }
        }))
        .expect("a Namespace from JSON");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        TestNamespace { client, name }
    }

    /// An API for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be gone or panicking: delete from
        // a thread with its own runtime and client.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for namespace cleanup");
            rt.block_on(async {
                let api = Api::<Namespace>::all(client().await);
                api.delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ())
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot delete test namespace {}: {e}", self.name),
            Err(_) => eprintln!("warning: cleanup of test namespace {} panicked", self.name),
        }
    }
}

/// Polls `check` every 250 ms until it returns `Ok`, and returns that value. An `Err`
/// means "not yet" and says why; after `timeout` the test panics with the last reason.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let why = match tokio::time::timeout(left, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(why)) => format!("{why:#}"),
            Err(_) => "the last check did not finish in time".to_owned(),
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}: {why}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
