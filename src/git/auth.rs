//! Credentials for the manifests repository, as libgit2 asks for them.
//!
//! One kind per repository (`repository.auth` in `capstan.yaml`): an HTTPS
//! token read from an environment variable (sent as the password, with a user
//! name), an SSH private key file, or nothing (local paths, anonymous HTTPS,
//! SSH through a running agent). libgit2 asks again when the server refuses;
//! after a few refusals we stop instead of looping.

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;

use git2::{Cred, CredentialType, RemoteCallbacks};

use super::Error;
use crate::config::GitAuth;

/// How to authenticate to the Git server.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTPS: `username` + token as the password.
    Token { username: String, token: String },
    /// SSH private key file (no passphrase).
    SshKey { path: PathBuf },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token { username, .. } => {
                write!(f, "Token {{ username: {username:?}, token: <redacted> }}")
            }
            Auth::SshKey { path } => write!(f, "SshKey {{ path: {path:?} }}"),
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
        if let Some(path) = &auth.ssh_key_file {
            return Ok(Auth::SshKey { path: path.clone() });
        }
        if auth.github_app.is_some() {
            return Err(Error::Unsupported(
                "repository.auth.githubApp is not supported for Git yet (planned with pull-request mode); use tokenEnv"
                    .into(),
            ));
        }
        Ok(Auth::None)
    }

    /// Callbacks that answer libgit2's credential requests.
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
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
            Auth::SshKey { path } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key(ssh_user, None, path, None)
            }
            Auth::None if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key_from_agent(ssh_user)
            }
            _ => Err(git2::Error::from_str(&format!(
                "{url} asks for credentials ({allowed:?}) that are not configured (repository.auth)"
            ))),
        }
    }
}
