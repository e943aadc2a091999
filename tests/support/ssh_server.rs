//! A real OpenSSH server (`/usr/sbin/sshd`, Debian's `openssh-server`) on a
//! free loopback port, so tests exercise libgit2's SSH transport (bundled
//! libssh2), key authentication and host key verification end to end. The
//! server runs in the foreground (`-D -e`) with its own configuration, host
//! key and authorized_keys in a temporary folder; the user logging in is the
//! current user, and `git-upload-pack`/`git-receive-pack` run from the
//! server's PATH on absolute repository paths. Killed when dropped.
//!
//! If sshd is missing the fixture installs `openssh-server` with apt (as root)
//! and otherwise panics with instructions: these tests never skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A key pair made by `ssh-keygen` at test time.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
    /// `ssh-ed25519 AAAA…` (type and base64, no comment).
    pub public_line: String,
    /// `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// `ssh-keygen -q -N '' -f <dir>/<name> <args>`, e.g. `["-t", "ed25519"]` or
/// `["-t", "rsa", "-b", "3072", "-m", "PEM"]`.
pub fn keygen(dir: &Path, name: &str, args: &[&str]) -> KeyPair {
    ensure_installed();
    let private = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.join(format!("{name}.pub"));
    let text = std::fs::read_to_string(&public).expect("public key");
    let public_line = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&public)
        .output()
        .expect("ssh-keygen -l runs");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let fingerprint = listing
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("ssh-keygen -l output: {listing}"))
        .to_string();
    KeyPair {
        private,
        public,
        public_line,
        fingerprint,
    }
}

/// The name of the user running the tests (the user sshd logs in).
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub struct SshServer {
    pub port: u16,
    pub user: String,
    /// The server's ed25519 host key.
    pub host_key: KeyPair,
    /// Client port of the readiness probe (not counted as a connection).
    probe_port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SshServer {
    /// Starts sshd accepting the public keys in `authorized` for the current user.
    pub fn start(authorized: &[&KeyPair]) -> SshServer {
        ensure_installed();
        if is_root() {
            // Privilege separation needs this folder (the Debian service creates it at boot).
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let dir = tempfile::tempdir().expect("temp dir for sshd");
        let host_key = keygen(dir.path(), "ssh_host_ed25519_key", &["-t", "ed25519"]);
        let authorized_keys = dir.path().join("authorized_keys");
        let lines: String = authorized
            .iter()
            .map(|k| format!("{}\n", k.public_line))
            .collect();
        std::fs::write(&authorized_keys, lines).expect("write authorized_keys");
        let log_path = dir.path().join("sshd.log");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile {pid}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
",
                    host_key = host_key.private.display(),
                    authorized_keys = authorized_keys.display(),
                    pid = dir.path().join("sshd.pid").display(),
                ),
            )
            .expect("write sshd_config");
            let log = std::fs::File::create(&log_path).expect("sshd log file");
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            if let Some(probe_port) = wait_listening(&mut child, addr) {
                return SshServer {
                    port,
                    user: current_user(),
                    host_key,
                    probe_port,
                    dir,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("sshd did not start; its last log:\n{last_log}");
    }

    /// `ssh://user@127.0.0.1:port/<absolute path>` for a repository on disk.
    pub fn url(&self, repo: &Path) -> String {
        assert!(repo.is_absolute(), "{} is not absolute", repo.display());
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The known_hosts line for this server (plain, not hashed).
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key.public_line)
    }

    /// Writes a known_hosts file listing this server.
    pub fn write_known_hosts(&self, path: &Path) {
        std::fs::write(path, format!("{}\n", self.known_hosts_line())).expect("write known_hosts");
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Client connections sshd accepted so far (the readiness probe excluded).
    pub fn connections(&self) -> usize {
        let probe = format!("Connection from 127.0.0.1 port {} ", self.probe_port);
        self.log()
            .lines()
            .filter(|l| l.starts_with("Connection from ") && !l.starts_with(&probe))
            .count()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Debian's `openssh-server` when sshd is missing, once per process.
pub fn ensure_installed() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        if Path::new(SSHD).is_file() {
            return;
        }
        let mut status = None;
        if is_root() {
            eprintln!("{SSHD} not found; installing the Debian package `openssh-server`");
            let install = || {
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "openssh-server"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
            };
            let mut result = install();
            if !Path::new(SSHD).is_file() {
                let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                result = install();
            }
            status = Some(result);
        }
        if !Path::new(SSHD).is_file() {
            panic!(
                "the SSH tests need OpenSSH's server: {SSHD} is not installed and could not be \
                 installed ({status:?}). Install it with `sudo apt-get install -y openssh-server` \
                 (Debian/Ubuntu) and run the tests again."
            );
        }
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until sshd accepts connections; returns the probe's client port.
fn wait_listening(child: &mut Child, addr: SocketAddr) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if let Ok(probe) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            return Some(probe.local_addr().expect("probe address").port());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
