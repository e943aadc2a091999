//! A real CNCF Distribution registry (`docker-registry serve`, Debian's v2.8)
//! on a free loopback port, with a generated configuration and temporary
//! storage; killed when dropped. Variants: plain, htpasswd basic auth, token
//! auth, TLS, and notifications to an endpoint.
//!
//! If the binary is missing the fixture installs the Debian package (as root)
//! and panics with instructions when it cannot: these tests never skip.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::pki::{Ca, Leaf};
use super::token::{ISSUER, SERVICE};

const BINARY: &str = "docker-registry";

/// How the registry authenticates clients.
#[derive(Clone)]
pub enum Auth {
    None,
    /// `auth: htpasswd` with these users (bcrypt-hashed into a file).
    Basic(Vec<(String, String)>),
    /// `auth: token` trusting tokens from `realm` signed under `root_pem`.
    Token {
        realm: String,
        root_pem: String,
    },
}

#[derive(Clone)]
pub struct Options {
    pub auth: Auth,
    /// Serve HTTPS with a certificate from this CA.
    pub tls: bool,
    /// Send notifications to this URL.
    pub notify: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: Auth::None,
            tls: false,
            notify: None,
        }
    }
}

pub struct Registry {
    /// `127.0.0.1:port`
    pub host: String,
    /// `http(s)://127.0.0.1:port`
    pub url: String,
    /// PEM of the CA that signed the server certificate (TLS variant).
    pub ca_pem: Option<String>,
    /// Path of `ca_pem` on disk.
    pub ca_file: Option<PathBuf>,
    pub auth: Auth,
    child: Child,
    dir: tempfile::TempDir,
    /// The generated configuration (port, storage), reused by [`Registry::restart`].
    config: PathBuf,
}

impl Registry {
    pub fn plain() -> Registry {
        Registry::start(Options::default())
    }

    pub fn start(options: Options) -> Registry {
        ensure_installed();
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let (tls, ca) = if options.tls {
            let ca = Ca::new("capstan test CA");
            let leaf = ca.issue(&["127.0.0.1", "localhost"]);
            (Some(leaf), Some(ca))
        } else {
            (None, None)
        };
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = write_config(dir.path(), port, &options, tls.as_ref());
            let log_path = dir.path().join("registry.log");
            let _ = std::fs::remove_file(&log_path);
            let mut child = spawn(&config, &log_path);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            if wait_listening(&mut child, addr) {
                let scheme = if options.tls { "https" } else { "http" };
                let ca_pem = ca.map(|c| c.cert_pem);
                let ca_file = ca_pem.as_ref().map(|pem| {
                    let p = dir.path().join("ca.pem");
                    std::fs::write(&p, pem).expect("write CA file");
                    p
                });
                return Registry {
                    host: addr.to_string(),
                    url: format!("{scheme}://{addr}"),
                    ca_pem,
                    ca_file,
                    auth: options.auth.clone(),
                    child,
                    dir,
                    config,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("the registry did not start; its last log:\n{last_log}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the registry process (SIGKILL, as a crash); its port, storage
    /// and configuration are kept for [`Registry::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again with the same configuration: same port, same
    /// storage (the images pushed before are still there), same notifications.
    /// Panics when it does not listen again within 15 s (e.g. the port was taken).
    pub fn restart(&mut self) {
        self.stop();
        let addr: SocketAddr = self.host.parse().expect("registry addr");
        let log_path = self.dir.path().join("registry.log");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut child = spawn(&self.config, &log_path);
            if wait_listening(&mut child, addr) {
                self.child = child;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "the registry did not start again on {addr}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `docker-registry serve <config>`, appending to `log_path`.
fn spawn(config: &Path, log_path: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("registry log file");
    Command::new(BINARY)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{BINARY} serve`: {e}"))
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Debian's `docker-registry` when it is missing, once per process.
pub fn ensure_installed() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if which(BINARY) {
            return;
        }
        eprintln!("`{BINARY}` not found; installing the Debian package `docker-registry`");
        let status = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "--no-install-recommends",
                "docker-registry",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        if !which(BINARY) {
            panic!(
                "the registry tests need CNCF Distribution: `{BINARY}` is not installed and \
                 `apt-get install docker-registry` failed ({status:?}). Install it with \
                 `sudo apt-get install -y docker-registry` (Debian/Ubuntu) and run the tests again."
            );
        }
    });
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_listening(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn write_config(dir: &Path, port: u16, options: &Options, tls: Option<&Leaf>) -> PathBuf {
    let mut yaml = format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: capstan-test-secret
",
        data = dir.join("data").display()
    );
    if let Some(leaf) = tls {
        let cert = dir.join("server.pem");
        let key = dir.join("server-key.pem");
        std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
        std::fs::write(&key, &leaf.key_pem).expect("write key");
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    yaml.push_str("health:\n  storagedriver:\n    enabled: false\n");
    match &options.auth {
        Auth::None => {}
        Auth::Basic(users) => {
            let path = dir.join("htpasswd");
            let mut file = std::fs::File::create(&path).expect("htpasswd file");
            for (user, password) in users {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                writeln!(file, "{user}:{hash}").expect("write htpasswd");
            }
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: capstan-test\n    path: {}\n",
                path.display()
            ));
        }
        Auth::Token { realm, root_pem } => {
            let bundle = dir.join("token-root.pem");
            std::fs::write(&bundle, root_pem).expect("write root bundle");
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
    }
    if let Some(url) = &options.notify {
        yaml.push_str(&format!(
            "notifications:
  endpoints:
    - name: capstan-test
      url: {url}
      timeout: 2s
      threshold: 5
      backoff: 200ms
      ignoredmediatypes:
        - application/octet-stream
"
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("write registry config");
    path
}
