//! Capstan's SSH transport against a real OpenSSH server (tests/support/ssh_server.rs):
//! clone, fetch, commit and push with `repository.auth.sshKeyFile` through
//! libgit2 and its bundled libssh2, the update pass and `capstan update --once`
//! end to end, key formats, refused keys, and host key verification against a
//! known_hosts file.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use capstan::git::{self, Auth, Checkout, HostKeyCheck, PushOutcome, RetryPolicy};
use capstan::manifests::{ChosenImage, Options, Wanted};
use capstan::update::{self, Choices, Outcome, Settings};
use support::git_repo::{BareRepo, policy_yaml};
use support::ssh_server::{KeyPair, SshServer, keygen};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  template:
    spec:
      containers:
        - name: podinfo
          image: ghcr.io/stefanprodan/podinfo:6.5.0 # {\"$imagepolicy\": \"podinfo\"}
";

struct Env {
    dir: tempfile::TempDir,
    repo: BareRepo,
    key: KeyPair,
    server: SshServer,
    known_hosts: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = BareRepo::create(
        &dir.path().join("srv"),
        "fleet.git",
        &[("deploy/podinfo.yaml", DEPLOYMENT)],
    );
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let key = keygen(&keys, "id_ed25519", &["-t", "ed25519"]);
    let server = SshServer::start(&[&key]);
    let known_hosts = dir.path().join("known_hosts");
    server.write_known_hosts(&known_hosts);
    Env {
        dir,
        repo,
        key,
        server,
        known_hosts,
    }
}

impl Env {
    fn url(&self) -> String {
        self.server.url(&self.repo.path())
    }

    fn auth(&self) -> Auth {
        Auth::SshKey {
            path: self.key.private.clone(),
            host_keys: HostKeyCheck::File(self.known_hosts.clone()),
        }
    }

    fn checkout(&self, name: &str, auth: Auth) -> Checkout {
        Checkout::open_or_init(&self.url(), "main", &self.dir.path().join(name), auth)
            .expect("checkout opens")
    }

    /// The error of a fetch that must fail, with sshd's log for the failure message.
    fn fetch_error(&self, auth: Auth, name: &str) -> String {
        let checkout = self.checkout(name, auth);
        match checkout.fetch() {
            Ok(oid) => panic!("fetch succeeded ({oid}); sshd log:\n{}", self.server.log()),
            Err(e) => {
                eprintln!("{name}: {e}");
                e.to_string()
            }
        }
    }
}

fn author() -> git2::Signature<'static> {
    git2::Signature::now("capstan", "capstan@noreply.invalid").expect("signature")
}

#[test]
fn clone_fetch_commit_push_over_ssh() {
    let env = env();
    let checkout = env.checkout("co", env.auth());
    let head = checkout
        .fetch()
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", env.server.log()));
    assert_eq!(head.to_string(), env.repo.head());
    checkout.reset_to(head).expect("reset");
    assert_eq!(
        std::fs::read_to_string(checkout.workdir().join("deploy/podinfo.yaml")).expect("read"),
        DEPLOYMENT
    );

    std::fs::write(checkout.workdir().join("NOTES.md"), "pushed over ssh\n").expect("write");
    let commit = checkout
        .commit(&["NOTES.md".into()], "notes over ssh", &author())
        .expect("commit")
        .expect("a change");
    assert_eq!(checkout.push().expect("push"), PushOutcome::Pushed);
    assert_eq!(env.repo.head(), commit.to_string());
    assert_eq!(env.repo.show("NOTES.md"), "pushed over ssh\n");

    // A person pushes; the next fetch over SSH sees it.
    let theirs = env.repo.human_commit("docs", &[("README.md", "# fleet\n")]);
    assert_eq!(checkout.fetch().expect("fetch").to_string(), theirs);

    let log = env.server.log();
    assert!(
        log.contains(&format!("Accepted publickey for {}", env.server.user))
            && log.contains(&env.key.fingerprint),
        "sshd accepted the test key:\n{log}"
    );
}

#[test]
fn write_back_and_update_pass_over_ssh() {
    let env = env();
    // The write-back loop directly.
    let checkout = env.checkout("wb", env.auth());
    let outcome = git::write_back(
        &checkout,
        &author(),
        &RetryPolicy::default(),
        |dir: &Path, _attempt| -> Result<Option<git::Proposal>, std::io::Error> {
            std::fs::write(dir.join("CHANGELOG.md"), "one\n")?;
            Ok(Some(git::Proposal {
                message: "changelog".into(),
                paths: vec!["CHANGELOG.md".into()],
            }))
        },
    )
    .expect("write-back");
    let git::Outcome::Pushed { commit, attempts } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(attempts, 1);
    assert_eq!(env.repo.head(), commit.to_string());

    // The update pass (manifests edit, commit, push).
    let policy_file = env.dir.path().join("podinfo.yaml");
    std::fs::write(
        &policy_file,
        policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
    )
    .expect("policy");
    let policies = capstan::policy::load_file(&policy_file).expect("policy loads");
    let wanted: Vec<Wanted> = policies
        .iter()
        .map(|p| Wanted {
            policy: p.clone(),
            chosen: Ok(ChosenImage {
                tag: "6.5.1".into(),
                digest: None,
            }),
        })
        .collect();
    let choices: Choices = wanted.into();
    let settings = Settings {
        url: env.url(),
        branch: "main".into(),
        checkout_dir: env.dir.path().join("update"),
        path: ".".into(),
        auth: env.auth(),
        author_name: "capstan".into(),
        author_email: "capstan@noreply.invalid".into(),
        message_template: "chore(images): {summary}\n\n{changes}\n".into(),
        options: Options::default(),
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
        dry_run: false,
    };
    let report = update::run_once(&settings, &choices).expect("update pass");
    assert!(
        matches!(report.outcome, Outcome::Pushed { .. }),
        "{:?}",
        report.outcome
    );
    assert_eq!(
        env.repo.show("deploy/podinfo.yaml"),
        DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.1")
    );
    assert_eq!(
        env.repo.log()[0],
        "capstan\tchore(images): podinfo 6.5.0 → 6.5.1"
    );
}

/// Which private key files the bundled libssh2 (OpenSSL backend) reads with
/// `Cred::ssh_key` and no separate public key file.
#[test]
fn key_formats_accepted_by_libssh2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = BareRepo::create(&dir.path().join("srv"), "fleet.git", &[("a", "a\n")]);
    let formats: &[(&str, &[&str])] = &[
        ("ed25519_openssh", &["-t", "ed25519"]),
        ("ecdsa_openssh", &["-t", "ecdsa", "-b", "256"]),
        ("rsa_openssh", &["-t", "rsa", "-b", "3072"]),
        ("rsa_pem", &["-t", "rsa", "-b", "3072", "-m", "PEM"]),
        ("ecdsa_pem", &["-t", "ecdsa", "-b", "384", "-m", "PEM"]),
        ("rsa_pkcs8", &["-t", "rsa", "-b", "3072", "-m", "PKCS8"]),
    ];
    let keys: Vec<KeyPair> = formats
        .iter()
        .map(|(name, args)| keygen(dir.path(), name, args))
        .collect();
    let server = SshServer::start(&keys.iter().collect::<Vec<_>>());
    let known_hosts = dir.path().join("known_hosts");
    server.write_known_hosts(&known_hosts);
    for ((name, _), key) in formats.iter().zip(&keys) {
        let checkout = Checkout::open_or_init(
            &server.url(&repo.path()),
            "main",
            &dir.path().join(format!("co-{name}")),
            Auth::SshKey {
                path: key.private.clone(),
                host_keys: HostKeyCheck::File(known_hosts.clone()),
            },
        )
        .expect("checkout");
        let head = checkout
            .fetch()
            .unwrap_or_else(|e| panic!("{name}: {e}\nsshd log:\n{}", server.log()));
        assert_eq!(head.to_string(), repo.head(), "{name}");
        assert!(
            server.log().contains(&key.fingerprint),
            "{name}: sshd saw the key {}",
            key.fingerprint
        );
    }
}

#[test]
fn wrong_key_is_refused_without_looping() {
    let env = env();
    let stranger = keygen(env.dir.path(), "stranger", &["-t", "ed25519"]);
    let before = env.repo.head();
    let err = env.fetch_error(
        Auth::SshKey {
            path: stranger.private.clone(),
            host_keys: HostKeyCheck::File(env.known_hosts.clone()),
        },
        "co",
    );
    assert!(
        err.contains("SSH server refused the key"),
        "{err}\nsshd log:\n{}",
        env.server.log()
    );
    assert!(err.contains("fetch main from ssh://"), "{err}");
    let connections = env.server.connections();
    assert!(
        (1..=3).contains(&connections),
        "bounded attempts, got {connections} connections:\n{}",
        env.server.log()
    );
    assert!(!env.server.log().contains("Accepted publickey"));
    assert_eq!(env.repo.head(), before);

    // A key file that does not exist: an error, not a hang.
    let err = env.fetch_error(
        Auth::SshKey {
            path: env.dir.path().join("no-such-key"),
            host_keys: HostKeyCheck::File(env.known_hosts.clone()),
        },
        "co2",
    );
    assert!(err.contains("fetch main from ssh://"), "{err}");
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let env = env();
    let other = keygen(env.dir.path(), "other_host", &["-t", "ed25519"]);
    let known_hosts = env.dir.path().join("known_hosts_other");
    std::fs::write(
        &known_hosts,
        format!("git.example.com {}\n", other.public_line),
    )
    .expect("write");
    let err = env.fetch_error(
        Auth::SshKey {
            path: env.key.private.clone(),
            host_keys: HostKeyCheck::File(known_hosts.clone()),
        },
        "co",
    );
    let name = format!("[127.0.0.1]:{}", env.server.port);
    assert!(
        err.contains(&format!("SSH host key of {name} is unknown")),
        "{err}"
    );
    assert!(err.contains(&env.server.host_key.fingerprint), "{err}");
    assert!(err.contains("ssh-ed25519"), "{err}");
    assert!(err.contains(&known_hosts.display().to_string()), "{err}");
    assert!(
        err.contains(&format!(
            "ssh-keyscan -t ssh-ed25519 -p {} 127.0.0.1",
            env.server.port
        )),
        "{err}"
    );
    // Refused before authenticating.
    assert!(!env.server.log().contains("Accepted publickey"));
}

#[test]
fn changed_host_key_is_refused_naming_both_fingerprints() {
    let env = env();
    let impostor = keygen(env.dir.path(), "impostor", &["-t", "ed25519"]);
    let known_hosts = env.dir.path().join("known_hosts_changed");
    std::fs::write(
        &known_hosts,
        format!(
            "# the key we trusted before\n[127.0.0.1]:{} {}\n",
            env.server.port, impostor.public_line
        ),
    )
    .expect("write");
    let err = env.fetch_error(
        Auth::SshKey {
            path: env.key.private.clone(),
            host_keys: HostKeyCheck::File(known_hosts.clone()),
        },
        "co",
    );
    assert!(err.contains("does NOT match"), "{err}");
    assert!(err.contains(&env.server.host_key.fingerprint), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2 lists {}",
            known_hosts.display(),
            impostor.fingerprint
        )),
        "{err}"
    );
    assert!(!env.server.log().contains("Accepted publickey"));
}

#[test]
fn hashed_known_hosts_and_insecure_skip() {
    let env = env();
    // `ssh-keygen -H` hashes the host names in place.
    let hashed = env.dir.path().join("known_hosts_hashed");
    env.server.write_known_hosts(&hashed);
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .expect("ssh-keygen -H");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&hashed).expect("read");
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    let checkout = env.checkout(
        "hashed",
        Auth::SshKey {
            path: env.key.private.clone(),
            host_keys: HostKeyCheck::File(hashed),
        },
    );
    assert_eq!(
        checkout
            .fetch()
            .expect("fetch with hashed entry")
            .to_string(),
        env.repo.head()
    );

    // insecureSkipHostKeyCheck: no known_hosts at all, any key accepted.
    let checkout = env.checkout(
        "insecure",
        Auth::SshKey {
            path: env.key.private.clone(),
            host_keys: HostKeyCheck::InsecureSkip,
        },
    );
    assert_eq!(
        checkout
            .fetch()
            .expect("fetch, host key unchecked")
            .to_string(),
        env.repo.head()
    );
}

// ---- `capstan update --once` end to end --------------------------------

fn cli_setup(env: &Env, auth_yaml: &str) {
    let root = env.dir.path();
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).expect("mkdir");
    std::fs::write(
        policies.join("podinfo.yaml"),
        policy_yaml("podinfo", "ghcr.io/stefanprodan/podinfo", ">=6.0.0 <7.0.0"),
    )
    .expect("policy");
    std::fs::create_dir_all(root.join("tags")).expect("mkdir");
    std::fs::write(
        root.join("tags/podinfo.txt"),
        "6.4.0\n6.5.0\n6.5.2\n7.0.0\n",
    )
    .expect("tags");
    std::fs::write(
        root.join("capstan.yaml"),
        format!("repository:\n  url: {}\n  auth:\n{auth_yaml}", env.url()),
    )
    .expect("config");
}

fn capstan(env: &Env, home: &Path) -> std::process::Output {
    Command::cargo_bin("capstan")
        .expect("binary")
        .current_dir(env.dir.path())
        .args([
            "update",
            "--once",
            "-c",
            "capstan.yaml",
            "--tags-dir",
            "tags",
        ])
        .env_remove("CAPSTAN_LOG")
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", home)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_update_once_pushes_over_ssh() {
    let env = env();
    cli_setup(
        &env,
        &format!(
            "    sshKeyFile: {}\n    knownHostsFile: known_hosts\n",
            env.key.private.display()
        ),
    );
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let out = capstan(&env, &home);
    assert!(
        out.status.success(),
        "{}\nsshd log:\n{}",
        text(&out.stderr),
        env.server.log()
    );
    assert_eq!(
        env.repo.show("deploy/podinfo.yaml"),
        DEPLOYMENT.replace("podinfo:6.5.0", "podinfo:6.5.2")
    );
    assert_eq!(
        env.repo.log()[0],
        "capstan\tchore(images): podinfo 6.5.0 → 6.5.2"
    );
}

#[test]
fn cli_refuses_a_host_missing_from_the_users_known_hosts() {
    let env = env();
    // No knownHostsFile: the user's ~/.ssh/known_hosts, which does not exist.
    cli_setup(
        &env,
        &format!("    sshKeyFile: {}\n", env.key.private.display()),
    );
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let before = env.repo.head();
    let out = capstan(&env, &home);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&env.server.host_key.fingerprint), "{err}");
    assert!(
        err.contains(&home.join(".ssh/known_hosts").display().to_string()),
        "{err}"
    );
    assert_eq!(env.repo.head(), before);

    // Once the key is in ~/.ssh/known_hosts, the same configuration pushes.
    std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
    env.server.write_known_hosts(&home.join(".ssh/known_hosts"));
    let out = capstan(&env, &home);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_ne!(env.repo.head(), before);
}

#[test]
fn cli_names_a_missing_known_hosts_file_or_key_file() {
    let env = env();
    cli_setup(
        &env,
        &format!(
            "    sshKeyFile: {}\n    knownHostsFile: nowhere/known_hosts\n",
            env.key.private.display()
        ),
    );
    let out = capstan(&env, env.dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("repository.auth.knownHostsFile") && err.contains("nowhere/known_hosts"),
        "{err}"
    );
    assert_eq!(env.server.connections(), 0, "failed before connecting");

    // The same for a key file that does not exist.
    cli_setup(
        &env,
        "    sshKeyFile: keys/missing_key\n    knownHostsFile: known_hosts\n",
    );
    let out = capstan(&env, env.dir.path());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("repository.auth.sshKeyFile") && err.contains("keys/missing_key"),
        "{err}"
    );
    assert_eq!(env.server.connections(), 0, "failed before connecting");
}
