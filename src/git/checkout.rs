//! Capstan's working clone of the manifests repository.
//!
//! The clone belongs to Capstan: every attempt resets it hard to the remote
//! branch, so nothing a previous (perhaps killed) run left behind survives.
//! Because that would destroy a person's work, a folder is only used when it
//! is empty or carries the `capstan.managed` flag Capstan set when it created
//! the clone.

use std::path::Path;

use git2::build::CheckoutBuilder;
use git2::{
    ErrorCode, FetchOptions, FetchPrune, Oid, PushOptions, Repository, ResetType, Signature,
};

use super::lock::{self, FolderLock};
use super::{Auth, Error};

const MANAGED_KEY: &str = "capstan.managed";
const REMOTE: &str = "origin";

/// What the server said to a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Pushed,
    /// Not a fast-forward any more, or refused by the server (reason).
    Rejected(String),
}

/// A working clone of one branch of one remote.
pub struct Checkout {
    repo: Repository,
    url: String,
    branch: String,
    auth: Auth,
    /// Held as long as this clone is open (see [`super::lock`]).
    _lock: FolderLock,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("dir", &self.workdir())
            .field("url", &self.url)
            .field("branch", &self.branch)
            .finish()
    }
}

impl Checkout {
    /// Opens the clone in `dir`, or creates it (an empty or missing folder).
    /// Nothing is fetched yet.
    pub fn open_or_init(
        url: &str,
        branch: &str,
        dir: &Path,
        auth: Auth,
    ) -> Result<Checkout, Error> {
        let io = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        let repo = if dir.join(".git").exists() {
            let repo =
                Repository::open(dir).map_err(Error::git(format!("open {}", dir.display())))?;
            let managed = repo
                .config()
                .and_then(|c| c.get_bool(MANAGED_KEY))
                .unwrap_or(false);
            if !managed {
                return Err(Error::NotOurs(dir.to_path_buf()));
            }
            repo
        } else {
            std::fs::create_dir_all(dir).map_err(io)?;
            if std::fs::read_dir(dir).map_err(io)?.next().is_some() {
                return Err(Error::NotEmpty(dir.to_path_buf()));
            }
            let repo =
                Repository::init(dir).map_err(Error::git(format!("init {}", dir.display())))?;
            repo.config()
                .and_then(|mut c| c.set_bool(MANAGED_KEY, true))
                .map_err(Error::git("mark the checkout as capstan's"))?;
            repo
        };
        let lock = FolderLock::acquire(repo.path(), lock::WAIT)?;
        match repo.find_remote(REMOTE) {
            Ok(remote) if remote.url().ok() == Some(url) => {}
            Ok(_) => repo
                .remote_set_url(REMOTE, url)
                .map_err(Error::git("set the remote URL"))?,
            Err(_) => {
                repo.remote(REMOTE, url)
                    .map_err(Error::git(format!("add remote {url}")))?;
            }
        }
        Ok(Checkout {
            repo,
            url: url.to_string(),
            branch: branch.to_string(),
            auth,
            _lock: lock,
        })
    }

    pub fn workdir(&self) -> &Path {
        self.repo.workdir().unwrap_or_else(|| self.repo.path())
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/{REMOTE}/{}", self.branch)
    }

    /// Fetches the branch; returns the remote's head commit.
    pub fn fetch(&self) -> Result<Oid, Error> {
        let mut remote = self
            .repo
            .find_remote(REMOTE)
            .map_err(Error::git("find remote"))?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.auth.callbacks(&self.url));
        options.prune(FetchPrune::On);
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking_ref());
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(Error::git(format!(
                "fetch {} from {}",
                self.branch, self.url
            )))?;
        match self.repo.refname_to_id(&self.tracking_ref()) {
            Ok(oid) => Ok(oid),
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::NoSuchBranch {
                url: self.url.clone(),
                branch: self.branch.clone(),
            }),
            Err(e) => Err(Error::git("read the fetched branch")(e)),
        }
    }

    /// Points the local branch at `oid` and makes the work tree match it
    /// exactly (local changes and untracked files are removed).
    pub fn reset_to(&self, oid: Oid) -> Result<(), Error> {
        let local = format!("refs/heads/{}", self.branch);
        self.repo
            .set_head(&local)
            .map_err(Error::git("switch HEAD to the branch"))?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(Error::git(format!("find commit {oid}")))?;
        self.repo
            .reset(commit.as_object(), ResetType::Hard, None)
            .map_err(Error::git(format!("reset to {oid}")))?;
        // `reset` leaves untracked files; the scan must see exactly the tree.
        let mut clean = CheckoutBuilder::new();
        clean.force().remove_untracked(true).remove_ignored(true);
        self.repo
            .checkout_head(Some(&mut clean))
            .map_err(Error::git("remove untracked files"))?;
        Ok(())
    }

    /// The commit the local branch points at.
    pub fn head(&self) -> Result<Oid, Error> {
        self.repo
            .refname_to_id(&format!("refs/heads/{}", self.branch))
            .map_err(Error::git("read HEAD"))
    }

    /// Commits the given work-tree paths (relative, `/`-separated) on top of
    /// HEAD. `None` when they do not differ from HEAD.
    pub fn commit(
        &self,
        paths: &[String],
        message: &str,
        author: &Signature<'_>,
    ) -> Result<Option<Oid>, Error> {
        self.commit_to(paths, message, author, Some("HEAD"))
    }

    /// Like [`commit`](Self::commit), but no ref moves: the commit (child of
    /// HEAD) is only in the object database, for [`push_head_branch`](Self::push_head_branch).
    pub fn commit_detached(
        &self,
        paths: &[String],
        message: &str,
        author: &Signature<'_>,
    ) -> Result<Option<Oid>, Error> {
        self.commit_to(paths, message, author, None)
    }

    fn commit_to(
        &self,
        paths: &[String],
        message: &str,
        author: &Signature<'_>,
        update_ref: Option<&str>,
    ) -> Result<Option<Oid>, Error> {
        let mut index = self.repo.index().map_err(Error::git("open the index"))?;
        for p in paths {
            index
                .add_path(Path::new(p))
                .map_err(Error::git(format!("stage {p}")))?;
        }
        index.write().map_err(Error::git("write the index"))?;
        let tree_id = index.write_tree().map_err(Error::git("write the tree"))?;
        let parent = self
            .repo
            .find_commit(self.head()?)
            .map_err(Error::git("find HEAD commit"))?;
        if parent.tree_id() == tree_id {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(Error::git("find tree"))?;
        let oid = self
            .repo
            .commit(update_ref, author, author, message, &tree, &[&parent])
            .map_err(Error::git("commit"))?;
        Ok(Some(oid))
    }

    /// Pushes the local branch to the remote branch, never forced.
    pub fn push(&self) -> Result<PushOutcome, Error> {
        let refspec = format!("refs/heads/{0}:refs/heads/{0}", self.branch);
        self.push_refspec(&refspec, &self.branch)
    }

    /// Fetches another branch of the remote (a pull request's head branch);
    /// `None` when the remote has no such branch.
    pub fn fetch_other(&self, branch: &str) -> Result<Option<Oid>, Error> {
        let mut remote = self
            .repo
            .find_remote(REMOTE)
            .map_err(Error::git("find remote"))?;
        let tracking = format!("refs/remotes/{REMOTE}/{branch}");
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.auth.callbacks(&self.url));
        remote
            .connect_auth(
                git2::Direction::Fetch,
                Some(self.auth.callbacks(&self.url)),
                None,
            )
            .map_err(Error::git(format!("connect to {}", self.url)))?;
        let wanted = format!("refs/heads/{branch}");
        let exists = remote
            .list()
            .map_err(Error::git(format!("list the branches of {}", self.url)))?
            .iter()
            .any(|head| head.name() == wanted);
        remote
            .disconnect()
            .map_err(Error::git(format!("disconnect from {}", self.url)))?;
        if !exists {
            if let Ok(mut stale) = self.repo.find_reference(&tracking) {
                stale
                    .delete()
                    .map_err(Error::git(format!("delete stale {tracking}")))?;
            }
            return Ok(None);
        }
        let refspec = format!("+{wanted}:{tracking}");
        remote
            .fetch(&[refspec.as_str()], Some(&mut options), None)
            .map_err(Error::git(format!("fetch {branch} from {}", self.url)))?;
        match self.repo.refname_to_id(&tracking) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(Error::git(format!("read the fetched {branch}"))(e)),
        }
    }

    /// Points the remote branch `head_branch` at `commit`, replacing whatever
    /// it held (a pull request's head branch is Capstan's and recomputed from
    /// the base every time). Refused for the checkout's own (base) branch:
    /// the base is never force-pushed.
    pub fn push_head_branch(&self, commit: Oid, head_branch: &str) -> Result<PushOutcome, Error> {
        if head_branch == self.branch {
            return Err(Error::Unsupported(format!(
                "refusing to force-push `{head_branch}`: it is the base branch; a pull request's head branch must differ from its base"
            )));
        }
        let local = format!("refs/heads/{head_branch}");
        if !git2::Reference::is_valid_name(&local) {
            return Err(Error::Unsupported(format!(
                "`{head_branch}` is not a valid branch name"
            )));
        }
        self.repo
            .reference(&local, commit, true, "capstan: pull request head")
            .map_err(Error::git(format!("point {local} at {commit}")))?;
        let refspec = format!("+{local}:{local}");
        self.push_refspec(&refspec, head_branch)
    }

    /// The tree and parents of a commit.
    pub fn commit_shape(&self, oid: Oid) -> Result<(Oid, Vec<Oid>), Error> {
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(Error::git(format!("find commit {oid}")))?;
        Ok((commit.tree_id(), commit.parent_ids().collect()))
    }

    fn push_refspec(&self, refspec: &str, branch: &str) -> Result<PushOutcome, Error> {
        let mut remote = self
            .repo
            .find_remote(REMOTE)
            .map_err(Error::git("find remote"))?;
        let mut rejected: Option<String> = None;
        let result = {
            let mut callbacks = self.auth.callbacks(&self.url);
            callbacks.push_update_reference(|refname, status| {
                if let Some(message) = status {
                    rejected = Some(format!("{refname}: {message}"));
                }
                Ok(())
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            remote.push(&[refspec], Some(&mut options))
        };
        match result {
            Ok(()) => Ok(match rejected {
                Some(reason) => PushOutcome::Rejected(reason),
                None => PushOutcome::Pushed,
            }),
            Err(e) if e.code() == ErrorCode::NotFastForward => Ok(PushOutcome::Rejected(format!(
                "not a fast-forward: {}",
                e.message()
            ))),
            Err(e) => Err(Error::git(format!("push {branch} to {}", self.url))(e)),
        }
    }
}
