//! Credentials for the manifests repository, as libgit2 asks for them.
//!
//! One kind per repository (`repository.auth` in `capstan.yaml`): an HTTPS
//! token read from an environment variable (sent as the password, with a user
//! name), an SSH private key file, or nothing (local paths, anonymous HTTPS,
//! SSH through a running agent). libgit2 asks again when the server refuses;
//! after a few refusals we stop instead of looping.
//!
//! SSH host keys are verified here too ([`HostKeyCheck`]): against
//! `repository.auth.knownHostsFile`, else the user's `~/.ssh/known_hosts`;
//! a refusal names the host, the key's type and fingerprint, and the file.
//! Only `insecureSkipHostKeyCheck: true` accepts any key (with a warning).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::PathBuf;

use git2::{CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};

use super::Error;
use super::known_hosts::{self, KnownHosts, Verdict};
use crate::config::GitAuth;

/// How the SSH server's host key is verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// `~/.ssh/known_hosts` of the user running Capstan; a missing file
    /// trusts no host.
    #[default]
    UserKnownHosts,
    /// An OpenSSH known_hosts file (`repository.auth.knownHostsFile`).
    File(PathBuf),
    /// Any key is accepted (`insecureSkipHostKeyCheck: true`), with a warning.
    InsecureSkip,
}

/// How to authenticate to the Git server.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTPS: `username` + token as the password.
    Token { username: String, token: String },
    /// SSH private key file (no passphrase).
    SshKey {
        path: PathBuf,
        host_keys: HostKeyCheck,
    },
    /// SSH through a running ssh-agent, with a host key setting
    /// (`Auth::None` also uses the agent, with `~/.ssh/known_hosts`).
    SshAgent { host_keys: HostKeyCheck },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token { username, .. } => {
                write!(f, "Token {{ username: {username:?}, token: <redacted> }}")
            }
            Auth::SshKey { path, host_keys } => {
                write!(f, "SshKey {{ path: {path:?}, host_keys: {host_keys:?} }}")
            }
            Auth::SshAgent { host_keys } => write!(f, "SshAgent {{ host_keys: {host_keys:?} }}"),
        }
    }
}

/// Default HTTPS user name sent with a token (what GitHub expects).
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

impl Auth {
    /// From `repository.auth`; reads the token from the environment now.
    pub fn from_config(auth: Option<&GitAuth>) -> Result<Auth, Error> {
        let Some(auth) = auth else {
            return Ok(Auth::None);
        };
        if let Some(var) = &auth.token_env {
            let token = std::env::var(var).unwrap_or_default();
            if token.trim().is_empty() {
                return Err(Error::MissingToken(var.clone()));
            }
            return Ok(Auth::Token {
                username: auth
                    .username
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_USER.to_string()),
                token: token.trim().to_string(),
            });
        }
        if auth.github_app.is_some() {
            return Err(Error::Unsupported(
                "repository.auth.githubApp is not supported for Git yet (planned with pull-request mode); use tokenEnv"
                    .into(),
            ));
        }
        let host_keys = if auth.insecure_skip_host_key_check {
            HostKeyCheck::InsecureSkip
        } else if let Some(file) = &auth.known_hosts_file {
            // Read once now so that a wrong path fails at start, not at the first push.
            KnownHosts::load(file).map_err(|source| Error::KnownHosts {
                path: file.clone(),
                source,
            })?;
            HostKeyCheck::File(file.clone())
        } else {
            HostKeyCheck::UserKnownHosts
        };
        if let Some(path) = &auth.ssh_key_file {
            // libssh2 only says "Unable to open private key file" at connect time.
            std::fs::File::open(path).map_err(|source| Error::KeyFile {
                path: path.clone(),
                source,
            })?;
            return Ok(Auth::SshKey {
                path: path.clone(),
                host_keys,
            });
        }
        Ok(Auth::SshAgent { host_keys })
    }

    /// How SSH host keys are verified for this repository.
    pub fn host_keys(&self) -> HostKeyCheck {
        match self {
            Auth::SshKey { host_keys, .. } | Auth::SshAgent { host_keys } => host_keys.clone(),
            Auth::None | Auth::Token { .. } => HostKeyCheck::UserKnownHosts,
        }
    }

    /// Callbacks that answer libgit2's credential requests and verify the SSH
    /// host key of `url`'s server (TLS certificates are left to libgit2).
    pub fn callbacks(&self, url: &str) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        NOTE.with(|n| n.borrow_mut().take());
        let port = ssh_port(url);
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            match hostkey.hostkey() {
                Some(blob) => self.check_host_key(host, port, blob),
                None => Err(refuse(format!(
                    "the SSH server {host} sent no host key to verify"
                ))),
            }
        });
        let asked = Cell::new(0u32);
        callbacks.credentials(move |url, user_from_url, allowed| {
            asked.set(asked.get() + 1);
            if asked.get() > 3 {
                return Err(git2::Error::from_str(&format!(
                    "authentication to {url} failed (credentials refused)"
                )));
            }
            self.credential(url, user_from_url, allowed)
        });
        callbacks
    }

    fn credential(
        &self,
        url: &str,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let ssh_user = user_from_url.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(ssh_user);
        }
        match self {
            Auth::Token { username, token }
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, token)
            }
            Auth::SshKey { path, .. } if allowed.contains(CredentialType::SSH_KEY) => {
                note(
                    ErrorCode::Auth,
                    format!(
                        "the SSH server refused the key {} (repository.auth.sshKeyFile) for user `{ssh_user}`; \
                         is its public key authorized there, and is the file an unencrypted private key?",
                        path.display()
                    ),
                );
                Cred::ssh_key(ssh_user, None, path, None)
            }
            Auth::None | Auth::SshAgent { .. } if allowed.contains(CredentialType::SSH_KEY) => {
                note(
                    ErrorCode::Auth,
                    format!(
                        "the SSH server accepted none of ssh-agent's keys for user `{ssh_user}` \
                         (set repository.auth.sshKeyFile, or check SSH_AUTH_SOCK)"
                    ),
                );
                Cred::ssh_key_from_agent(ssh_user)
            }
            _ => Err(git2::Error::from_str(&format!(
                "{url} asks for credentials ({allowed:?}) that are not configured (repository.auth)"
            ))),
        }
    }
}

impl Auth {
    fn check_host_key(
        &self,
        host: &str,
        port: u16,
        blob: &[u8],
    ) -> Result<CertificateCheckStatus, git2::Error> {
        let key_type = known_hosts::key_type(blob).unwrap_or_else(|| "unknown-type".into());
        let fingerprint = known_hosts::fingerprint(blob);
        let name = known_hosts::host_name(host, port);
        let (path, configured) = match self.host_keys() {
            HostKeyCheck::InsecureSkip => {
                tracing::warn!(
                    host = %name,
                    key_type = %key_type,
                    fingerprint = %fingerprint,
                    "SSH host key NOT verified (repository.auth.insecureSkipHostKeyCheck: true)"
                );
                return Ok(CertificateCheckStatus::CertificateOk);
            }
            HostKeyCheck::File(path) => (path, true),
            HostKeyCheck::UserKnownHosts => match std::env::var_os("HOME") {
                Some(home) if !home.is_empty() => {
                    (PathBuf::from(home).join(".ssh").join("known_hosts"), false)
                }
                _ => {
                    return Err(refuse(format!(
                        "cannot verify the SSH host key of {name} ({key_type} {fingerprint}): \
                         HOME is not set, so there is no ~/.ssh/known_hosts; set repository.auth.knownHostsFile"
                    )));
                }
            },
        };
        let known = match KnownHosts::load(&path) {
            Ok(known) => known,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !configured => {
                KnownHosts::empty(&path)
            }
            Err(e) => {
                return Err(refuse(format!(
                    "cannot verify the SSH host key of {name} ({key_type} {fingerprint}): \
                     cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        for (line, why) in &known.skipped {
            tracing::warn!(file = %path.display(), line, "known_hosts line ignored: {why}");
        }
        let file = path.display();
        let add = if port == 22 {
            format!("ssh-keyscan -t {key_type} {host} >> {file}")
        } else {
            format!("ssh-keyscan -t {key_type} -p {port} {host} >> {file}")
        };
        let message = match known.check(host, port, blob) {
            Verdict::Trusted { line } => {
                tracing::debug!(host = %name, fingerprint = %fingerprint, file = %file, line, "SSH host key verified");
                return Ok(CertificateCheckStatus::CertificateOk);
            }
            Verdict::Revoked { line } => format!(
                "SSH host key of {name} ({key_type} {fingerprint}) is marked @revoked in {file}:{line}; refusing to connect"
            ),
            Verdict::Mismatch { expected } => {
                let listed: Vec<String> = expected
                    .iter()
                    .map(|(line, fp)| format!("{file}:{line} lists {fp}"))
                    .collect();
                format!(
                    "SSH host key of {name} does NOT match the known host key: the server offered {key_type} {fingerprint}, {}; \
                     refusing to connect (the server's key changed, or someone is intercepting the connection)",
                    listed.join(", ")
                )
            }
            Verdict::OtherTypes { types } => format!(
                "SSH host key of {name} is unknown: the server offered {key_type} {fingerprint}, \
                 but {file} lists only {} key(s) for this host; after checking the fingerprint, add the {key_type} key (`{add}`)",
                types.join(", ")
            ),
            Verdict::Unknown => format!(
                "SSH host key of {name} is unknown: the server offered {key_type} {fingerprint}, \
                 and {file} has no entry for {name}; after checking the fingerprint with the server's owner, add it (`{add}`)"
            ),
        };
        Err(refuse(message))
    }
}

thread_local! {
    /// What explains the last SSH failure on this thread: a host key refusal
    /// (libgit2 replaces the callback's message by "invalid or unknown remote
    /// ssh hostkey") or the key offered when the server refuses it. git2
    /// calls are blocking: callbacks run on the thread that started the
    /// operation, and [`explain`] reads the note back.
    static NOTE: RefCell<Option<(ErrorCode, String)>> = const { RefCell::new(None) };
}

fn note(code: ErrorCode, message: String) {
    NOTE.with(|n| *n.borrow_mut() = Some((code, message)));
}

fn refuse(message: String) -> git2::Error {
    let error = git2::Error::new(ErrorCode::Certificate, ErrorClass::Ssh, &message);
    note(ErrorCode::Certificate, message);
    error
}

/// Puts the explanation noted by the callbacks on a git2 SSH error that
/// libgit2 reported generically (host key refused, key refused).
pub(crate) fn explain(source: git2::Error) -> git2::Error {
    if source.class() != ErrorClass::Ssh
        || !matches!(source.code(), ErrorCode::Certificate | ErrorCode::Auth)
    {
        return source;
    }
    let noted = NOTE.with(|n| n.borrow_mut().take());
    match noted {
        Some((ErrorCode::Certificate, message)) if source.code() == ErrorCode::Certificate => {
            git2::Error::new(source.code(), source.class(), &message)
        }
        Some((ErrorCode::Auth, message)) if source.code() == ErrorCode::Auth => git2::Error::new(
            source.code(),
            source.class(),
            format!("{message} ({})", source.message()),
        ),
        _ => source,
    }
}

/// The SSH port of a Git URL: `ssh://[user@]host[:port]/path` or 22 (also
/// for the scp-like `user@host:path`).
fn ssh_port(url: &str) -> u16 {
    let Some(rest) = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("git+ssh://"))
        .or_else(|| url.strip_prefix("ssh+git://"))
    else {
        return 22;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

#[cfg(test)]
mod tests {
    use super::ssh_port;

    #[test]
    fn ssh_ports() {
        assert_eq!(ssh_port("ssh://git@example.com:2222/x/y.git"), 2222);
        assert_eq!(ssh_port("ssh://example.com/x/y.git"), 22);
        assert_eq!(ssh_port("ssh://git@[::1]:2200/srv/r.git"), 2200);
        assert_eq!(ssh_port("ssh://git@[::1]/srv/r.git"), 22);
        assert_eq!(ssh_port("git@github.com:org/repo.git"), 22);
        assert_eq!(ssh_port("https://example.com:8443/r.git"), 22);
    }
}
