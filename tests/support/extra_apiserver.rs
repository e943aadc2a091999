//! A second `kube-apiserver` of a test's own, on the etcd of the shared control
//! plane of `scripts/k8s-env` (same binary, PKI and static tokens), on a free
//! loopback port, with an admin kubeconfig pointing at it. The test can kill it
//! (SIGKILL, as a crash) and start it again on the same port, while the shared
//! API server, which other tests use, keeps running. Killed when dropped.
//!
//! The shared control plane must be up (its state dir is `CAPSTAN_K8S_STATE`,
//! default `/tmp/capstan-k8s`, as in `scripts/k8s-env`); a missing binary or
//! state fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a (re)start may take: a cold apiserver on a loaded 2-core machine
/// needs tens of seconds.
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct ExtraApiserver {
    /// The shared control plane's state dir (PKI, tokens, ports).
    state: PathBuf,
    binary: PathBuf,
    pub port: u16,
    /// Admin kubeconfig for this apiserver.
    pub kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ExtraApiserver {
    /// Starts it and waits for `/readyz`.
    pub fn start() -> ExtraApiserver {
        let state = PathBuf::from(
            std::env::var("CAPSTAN_K8S_STATE").unwrap_or_else(|_| "/tmp/capstan-k8s".into()),
        );
        for f in [
            "ports",
            "tokens.csv",
            "admin.token",
            "pki/ca.crt",
            "pki/sa.key",
        ] {
            assert!(
                state.join(f).is_file(),
                "the extra apiserver needs the shared control plane of scripts/k8s-env: {} is \
                 missing (is CAPSTAN_K8S_STATE right, and `scripts/k8s-env up` done?)",
                state.join(f).display()
            );
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-env");
        let out = Command::new(&script)
            .arg("bin")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} bin: {e}", script.display()));
        let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let binary = Path::new(&bin).join("kube-apiserver");
        assert!(
            out.status.success() && binary.is_file(),
            "kube-apiserver binary not found ({}; `scripts/k8s-env bin` said {:?}, {}): run \
             `scripts/k8s-env build`",
            binary.display(),
            bin,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let dir = tempfile::tempdir().expect("temp dir for the extra apiserver");
        let port = free_low_port();
        let kubeconfig = dir.path().join("kubeconfig");
        let ca = std::fs::read(state.join("pki/ca.crt")).expect("read CA");
        let token = std::fs::read_to_string(state.join("admin.token")).expect("read token");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: extra\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: extra\n  context: {{cluster: extra, user: admin, namespace: default}}\ncurrent-context: extra\n",
                base64(&ca),
                token.trim()
            ),
        )
        .expect("write kubeconfig");
        let mut api = ExtraApiserver {
            state,
            binary,
            port,
            kubeconfig,
            dir,
            child: None,
        };
        api.start_again();
        api
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash; returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process (again) on the same port and waits for `/readyz`.
    pub fn start_again(&mut self) {
        self.kill();
        let etcd = std::fs::read_to_string(self.state.join("ports"))
            .expect("read ports")
            .lines()
            .find_map(|l| l.strip_prefix("etcd=").map(str::to_string))
            .expect("etcd port in the ports file");
        let pki = self.state.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kube-apiserver.log"))
            .expect("log file");
        // The flags of `scripts/k8s-env up`, on another port.
        let child = Command::new(&self.binary)
            .args([
                format!("--etcd-servers=http://127.0.0.1:{}", etcd.trim()),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", self.port),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!(
                    "--token-auth-file={}",
                    self.state.join("tokens.csv").display()
                ),
                "--authorization-mode=Node,RBAC".into(),
                "--allow-privileged=true".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p("sa.key")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.ready() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the extra kube-apiserver exited ({status}); its log:\n{}",
                    tail(&self.log())
                );
            }
            assert!(
                Instant::now() < deadline,
                "the extra kube-apiserver on port {} was not ready within {START_TIMEOUT:?}; its log:\n{}",
                self.port,
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `/readyz` answers `ok` (checked with curl, as `scripts/k8s-env` does).
    pub fn ready(&self) -> bool {
        let token = std::fs::read_to_string(self.state.join("admin.token")).unwrap_or_default();
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "3", "--cacert"])
            .arg(self.state.join("pki/ca.crt"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!("{}/readyz", self.url()))
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout == b"ok")
    }
}

impl Drop for ExtraApiserver {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A free loopback port below Linux's ephemeral range (32768+), so that outgoing
/// connections do not take it while the apiserver is down (as `scripts/k8s-env`).
fn free_low_port() -> u16 {
    for _ in 0..1000 {
        let port = 20000 + fastrand::u16(..12000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}
