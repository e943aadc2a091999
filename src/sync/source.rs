//! Where a sync pass reads the repository from: a commit, never a moving tree.
//!
//! The sync loop keeps its own clone (apart from the update loop's, so the two
//! loops never reset each other's work tree). Every pass fetches the branch and
//! resets the clone to the fetched head, so what is applied is exactly one
//! commit, and that commit is what the statuses report on. A local folder that
//! is not a Git repository is read as it is (useful for `capstan plan` on a
//! work in progress); it has no commit, so no statuses are sent for it.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::git::{self, Auth, Checkout};

/// The tree a pass renders, and the commit it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub root: PathBuf,
    /// `None` for a plain folder.
    pub commit: Option<String>,
}

impl Revision {
    /// First 12 hex digits of the commit, or `working tree`.
    pub fn short(&self) -> &str {
        match &self.commit {
            Some(c) => c.get(..12).unwrap_or(c),
            None => "working tree",
        }
    }
}

/// The repository as the sync loop sees it.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    pub branch: String,
    /// The sync loop's clone (created on first use).
    pub checkout_dir: PathBuf,
    pub auth: Auth,
}

impl Source {
    /// From `repository:`; `config_dir` anchors the default clone folder.
    pub fn from_config(config: &Config, config_dir: &Path) -> Result<Source, git::Error> {
        Ok(Source {
            url: config.repository.url.value.clone(),
            branch: config.repository.branch.value.clone(),
            checkout_dir: config.sync_checkout_dir(config_dir),
            auth: Auth::from_config(config.repository.auth.as_ref().map(|a| &a.value))?,
        })
    }

    /// Fetches the branch and resets the clone to its head. Blocking (git2):
    /// async callers use [`Source::fetch_async`].
    pub fn fetch(&self) -> Result<Revision, git::Error> {
        if let Some(folder) = plain_folder(&self.url) {
            return Ok(Revision {
                root: folder,
                commit: None,
            });
        }
        let checkout = Checkout::open_or_init(
            &self.url,
            &self.branch,
            &self.checkout_dir,
            self.auth.clone(),
        )?;
        let head = checkout.fetch()?;
        checkout.reset_to(head)?;
        tracing::debug!(url = %self.url, branch = %self.branch, commit = %head, "fetched for sync");
        Ok(Revision {
            root: checkout.workdir().to_path_buf(),
            commit: Some(head.to_string()),
        })
    }

    pub async fn fetch_async(&self) -> Result<Revision, git::Error> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || source.fetch())
            .await
            .map_err(|e| git::Error::Unsupported(format!("the fetch task stopped: {e}")))?
    }
}

/// A local path that holds no Git repository (neither a work tree nor a bare one).
fn plain_folder(url: &str) -> Option<PathBuf> {
    if url.contains("://") && !url.starts_with("file://") {
        return None;
    }
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    if !path.is_dir() {
        return None;
    }
    let is_git = path.join(".git").exists() || git2::Repository::open_bare(path).is_ok();
    (!is_git).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_git_is_read_as_is_and_has_no_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = Source {
            url: dir.path().to_string_lossy().into_owned(),
            branch: "main".into(),
            checkout_dir: dir.path().join("never-created"),
            auth: Auth::None,
        };
        let rev = source.fetch().expect("fetch");
        assert_eq!(rev.root, dir.path());
        assert_eq!(rev.commit, None);
        assert_eq!(rev.short(), "working tree");
        assert!(!dir.path().join("never-created").exists());
    }

    #[test]
    fn remote_urls_are_never_plain_folders() {
        assert_eq!(plain_folder("https://example.com/repo.git"), None);
        assert_eq!(plain_folder("git@github.com:acme/fleet.git"), None);
    }
}
