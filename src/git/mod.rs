//! The manifests repository through libgit2: a working clone that Capstan owns,
//! fetch, reset to the remote branch, commit, and push with retries.
//!
//! The write path is built for races. Every attempt starts from the remote
//! branch as it is now, lets the caller compute its edits on that tree, commits
//! and pushes without force. A rejected push (someone else pushed first) means:
//! fetch again and recompute — never rebase blindly, never force-push. When the
//! recomputed edits are empty (the other push already made them), nothing is
//! committed.
//!
//! - [`auth`]: credentials (HTTPS token from the environment, SSH key file,
//!   SSH agent, none for local paths) and SSH host key verification.
//! - [`known_hosts`]: OpenSSH known_hosts files (plain and hashed entries).
//! - [`checkout`]: the working clone and its primitive operations.
//! - [`writeback`]: the fetch → change → commit → push loop with backoff.
//!
//! git2 is blocking: async callers run these in `tokio::task::spawn_blocking`.
//! Nothing here knows about YAML.

pub mod auth;
pub mod checkout;
pub mod known_hosts;
pub mod lock;
pub mod writeback;

use std::path::PathBuf;

pub use auth::{Auth, HostKeyCheck};
pub use checkout::{Checkout, PushOutcome};
pub use writeback::{Outcome, Proposal, RetryPolicy, WriteBackError, write_back};

/// A Git operation that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Git {
        action: String,
        #[source]
        source: git2::Error,
    },
    #[error("environment variable `{0}` (repository.auth.tokenEnv) is not set or empty")]
    MissingToken(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("repository.auth.sshKeyFile {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("repository.auth.knownHostsFile {}: {source}", path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("branch `{branch}` does not exist in {url}")]
    NoSuchBranch { url: String, branch: String },
    #[error(
        "{0} is a Git repository that capstan did not create; capstan resets its checkout folder, so point `repository.checkoutDir` at a folder of its own"
    )]
    NotOurs(PathBuf),
    #[error(
        "{} is in use by {holder} (another capstan on the same checkout folder); waited {}s",
        path.display(),
        lock::WAIT.as_secs()
    )]
    Busy { path: PathBuf, holder: String },
    #[error("{0} exists and is not an empty folder or a capstan checkout")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn git(action: impl Into<String>) -> impl FnOnce(git2::Error) -> Error {
        let action = action.into();
        move |source| Error::Git {
            action,
            source: auth::explain(source),
        }
    }
}
