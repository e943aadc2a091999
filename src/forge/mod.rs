//! Forges: where pull requests are opened and where the result of a sync goes
//! back to the commit it applied.
//!
//! The `Forge` trait is what the loops use. It is object safe: every method
//! returns a boxed `Send` future (`ForgeFuture`), so the daemon holds one
//! `Arc<dyn Forge>` and hands it to both loops; calling code just writes
//! `forge.create_pull_request(&new).await`. Implementations:
//! - `github`: GitHub and GitHub Enterprise (base URL) through octocrab, with a
//!   personal token or a GitHub App installation token (`github_app`);
//! - `gitea`: Gitea's REST API v1 (pull requests, statuses, reviewers, labels;
//!   no deployments, no compare authors' logins beyond what Gitea reports).
//!
//! `from_config` builds the configured one. Errors are classified once for both
//! (`error`): bad credentials, missing permission, not found (naming what),
//! validation messages, rate limits with the wait the forge asked for; transient
//! ones are retried inside the implementation with a bounded wait.
//!
//! A status carries a one-line description of at most 140 characters, the limit
//! GitHub enforces.

pub mod clock;
pub mod error;
pub mod gitea;
pub mod github;
pub mod github_app;
pub mod sync_report;
pub mod token_secret;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ForgeError, RetryPolicy};
pub use gitea::Gitea;
pub use github::GitHub;
pub use github_app::{AppTokenProvider, InstallationEvent};
pub use sync_report::SyncReporter;

use crate::config::{Config, ForgeKind};

/// GitHub's limit on a status description.
pub const DESCRIPTION_LIMIT: usize = 140;

/// What every forge method returns: a boxed future, so `dyn Forge` works.
pub type ForgeFuture<'a, T> = BoxFuture<'a, Result<T, ForgeError>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

impl CommitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        }
    }

    /// From the forge's spelling; Gitea adds `warning`, read as failure.
    pub fn parse(s: &str) -> Option<CommitState> {
        Some(match s {
            "pending" => CommitState::Pending,
            "success" => CommitState::Success,
            "failure" | "warning" => CommitState::Failure,
            "error" => CommitState::Error,
            _ => return None,
        })
    }
}

/// A status for one commit under one context (e.g. `capstan/dev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub sha: String,
    pub state: CommitState,
    pub context: String,
    /// One line, at most 140 characters (see `one_line`).
    pub description: String,
    pub target_url: Option<String>,
}

impl CommitStatus {
    pub fn new(sha: &str, state: CommitState, context: &str, description: &str) -> Self {
        CommitStatus {
            sha: sha.to_string(),
            state,
            context: context.to_string(),
            description: one_line(description),
            target_url: None,
        }
    }
}

/// The combined state of all statuses of a commit (GitHub's `commits/{ref}/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CombinedStatus {
    /// `Success` only when every context is successful; `Pending` when there is none.
    pub state: CommitState,
    pub statuses: Vec<ContextState>,
}

impl CombinedStatus {
    /// Green: at least one status and all of them successful.
    pub fn is_green(&self) -> bool {
        self.state == CommitState::Success && !self.statuses.is_empty()
    }
}

/// One check run of a commit (GitHub Actions and other Checks API apps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub name: String,
    /// `queued`, `in_progress`, `completed` (also `waiting`, `requested`, `pending`).
    pub status: String,
    /// Set once `completed`: `success`, `neutral`, `skipped`, `failure`,
    /// `cancelled`, `timed_out`, `action_required`, `stale`.
    pub conclusion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextState {
    pub context: String,
    pub state: CommitState,
    pub description: String,
}

/// One submitted review of a pull request (GitHub and Gitea `pulls/{n}/reviews`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReview {
    pub reviewer: String,
    /// Uppercase as the forge sends it: `APPROVED`, `CHANGES_REQUESTED`
    /// (Gitea: `REQUEST_CHANGES`), `COMMENTED`, `DISMISSED`, `PENDING`.
    pub state: String,
    /// The commit the review was made on.
    pub commit: String,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    /// GraphQL id (GitHub), needed to enable auto-merge; empty on Gitea.
    pub node_id: String,
    pub html_url: String,
    pub title: String,
    pub body: String,
    pub head_branch: String,
    pub head_sha: String,
    pub base_branch: String,
    pub open: bool,
    pub merged: bool,
    pub draft: bool,
    /// Login of the author (the bot for PRs capstan opened).
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    pub body: String,
    /// Branch in the same repository.
    pub head: String,
    pub base: String,
    pub draft: bool,
}

/// The result of asking for a pull request: new, or the one already open for the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Created(PullRequest),
    /// The forge refused a duplicate (GitHub 422 "A pull request already exists",
    /// Gitea 409); this is the open one for the same head and base.
    AlreadyOpen(PullRequest),
}

impl Opened {
    pub fn pull_request(&self) -> &PullRequest {
        match self {
            Opened::Created(pr) | Opened::AlreadyOpen(pr) => pr,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// Commits between two revisions of a (source) repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The compare view, for a link in a PR body.
    pub html_url: String,
    /// As the forge counts them; `commits` may hold fewer (GitHub lists at most 250).
    pub total_commits: u64,
    pub commits: Vec<CompareCommit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareCommit {
    pub sha: String,
    /// First line of the message.
    pub summary: String,
    /// Forge account of the author, when the e-mail maps to one.
    pub author_login: Option<String>,
    pub author_name: String,
    pub author_email: String,
}

/// A deployment of one commit to one environment (sync target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    pub sha: String,
    /// The sync target's name.
    pub environment: String,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    InProgress,
    Success,
    Failure,
    Error,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus {
    pub state: DeploymentState,
    /// One line, at most 140 characters.
    pub description: String,
    pub log_url: Option<String>,
}

/// A Git hosting service, bound to the manifests repository.
pub trait Forge: Send + Sync + std::fmt::Debug {
    /// `github` or `gitea`, for logs and errors.
    fn kind(&self) -> &'static str;

    /// Deployments and deployment statuses exist on this forge (not on Gitea,
    /// whose calls answer `ForgeError::Unsupported`).
    fn supports_deployments(&self) -> bool {
        true
    }

    /// Creates a status on a commit (the forge keeps the latest per context).
    fn set_commit_status<'a>(&'a self, status: &'a CommitStatus) -> ForgeFuture<'a, ()>;

    /// All statuses of a commit and their combined state.
    fn combined_status<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, CombinedStatus>;

    /// The check runs of a commit (the latest run of each check). Forges
    /// without check runs (Gitea) answer none.
    fn check_runs<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, Vec<CheckRun>> {
        let _ = sha;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The open pull request from `head` (a branch of this repository) into `base`.
    fn find_open_pull_request<'a>(
        &'a self,
        head: &'a str,
        base: &'a str,
    ) -> ForgeFuture<'a, Option<PullRequest>>;

    /// The reviews of a pull request, oldest first.
    fn pull_request_reviews<'a>(&'a self, number: u64) -> ForgeFuture<'a, Vec<PullReview>>;

    /// Opens a pull request; a duplicate answers with the one already open.
    fn create_pull_request<'a>(&'a self, new: &'a NewPullRequest) -> ForgeFuture<'a, Opened>;

    fn update_pull_request<'a>(
        &'a self,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> ForgeFuture<'a, PullRequest>;

    /// Comments (when `comment` is not empty), then closes without merging.
    fn close_pull_request<'a>(&'a self, number: u64, comment: &'a str) -> ForgeFuture<'a, ()>;

    /// Requests reviews; the bot itself is dropped from `users` (a forge refuses
    /// a review request to the author). Nothing is sent when nobody is left.
    fn request_reviewers<'a>(
        &'a self,
        number: u64,
        users: &'a [String],
        teams: &'a [String],
    ) -> ForgeFuture<'a, ()>;

    /// Adds labels by name (Gitea: looked up to ids; unknown names are an error).
    fn add_labels<'a>(&'a self, number: u64, labels: &'a [String]) -> ForgeFuture<'a, ()>;

    /// Asks the forge to merge when its own rules pass (GitHub: GraphQL
    /// `enablePullRequestAutoMerge`; the repository must allow auto-merge).
    fn enable_auto_merge<'a>(
        &'a self,
        pr: &'a PullRequest,
        method: MergeMethod,
    ) -> ForgeFuture<'a, ()>;

    /// Merges now, only if the head is still `sha`; returns the merge commit.
    fn merge_pull_request<'a>(
        &'a self,
        number: u64,
        sha: &'a str,
        method: MergeMethod,
    ) -> ForgeFuture<'a, String>;

    /// Commits between `base` and `head` in `owner/repo` (any repository on this forge).
    fn compare<'a>(
        &'a self,
        owner: &'a str,
        repo: &'a str,
        base: &'a str,
        head: &'a str,
    ) -> ForgeFuture<'a, Comparison>;

    /// Creates a deployment for a commit; returns its id.
    fn create_deployment<'a>(&'a self, new: &'a NewDeployment) -> ForgeFuture<'a, u64>;

    fn create_deployment_status<'a>(
        &'a self,
        deployment: u64,
        status: &'a DeploymentStatus,
    ) -> ForgeFuture<'a, ()>;

    /// The login the forge shows for capstan's own actions (`name[bot]` for an App).
    fn bot_login(&self) -> ForgeFuture<'_, String>;
}

/// A GitHub App installation: the token provider and the installation the
/// repository belongs to. The daemon builds it once (`installation_from_config`)
/// and shares it: the forge client, Git over HTTPS (`token()` before a fetch or
/// push, user name `x-access-token`) and the `installation` webhook handler.
#[derive(Debug, Clone)]
pub struct Installation {
    pub provider: Arc<AppTokenProvider>,
    pub id: u64,
}

impl Installation {
    /// A valid token, refreshed when due.
    pub async fn token(&self) -> Result<String, ForgeError> {
        self.provider.installation_token(self.id).await
    }

    /// The current token without I/O (for code that cannot await), if valid.
    pub fn cached_token(&self) -> Option<String> {
        self.provider.cached_token(self.id)
    }
}

/// The GitHub App of `forge.githubApp`, if configured (reads the key file).
pub fn installation_from_config(config: &Config) -> Result<Option<Installation>, ForgeError> {
    build_installation(config, None)
}

/// As `installation_from_config`, and when `forge.githubApp.tokenSecret` is set,
/// tokens are also published in Secrets through the default Kubernetes client
/// (in-cluster, or `KUBECONFIG`).
pub async fn installation_from_config_with_secret(
    config: &Config,
) -> Result<Option<Installation>, ForgeError> {
    let target = config
        .forge
        .github_app
        .as_ref()
        .and_then(|app| app.value.token_secret.as_ref());
    let Some(target) = target else {
        return installation_from_config(config);
    };
    let client = kube::Client::try_default().await.map_err(|e| {
        ForgeError::Config(format!(
            "forge.githubApp.tokenSecret: no Kubernetes client: {}",
            crate::registry::transport::error_chain(&e)
        ))
    })?;
    let sink = token_secret::SecretSink::new(client, &target.namespace, &target.name);
    build_installation(config, Some(Arc::new(sink)))
}

fn build_installation(
    config: &Config,
    sink: Option<Arc<dyn github_app::TokenSink>>,
) -> Result<Option<Installation>, ForgeError> {
    let Some(app) = &config.forge.github_app else {
        return Ok(None);
    };
    let app = &app.value;
    let mut provider = AppTokenProvider::from_key_file(
        app.app_id,
        &app.private_key_file,
        config.forge.api_url.as_deref(),
        Arc::new(SystemClock),
    )?;
    if let Some(sink) = sink {
        provider = provider.with_sink(sink);
    }
    provider.add_installation(app.installation_id);
    Ok(Some(Installation {
        provider: Arc::new(provider),
        id: app.installation_id,
    }))
}

/// Builds the configured forge; `None` when `forge.kind` is unset. Call it
/// inside a Tokio runtime: octocrab's client starts a task when it is built.
///
/// The token comes from `forge.tokenEnv`, else `repository.auth.tokenEnv`, else
/// `GITHUB_TOKEN` / `GITEA_TOKEN`; a GitHub App (`forge.githubApp`) replaces it.
pub fn from_config(config: &Config) -> Result<Option<Arc<dyn Forge>>, ForgeError> {
    from_config_with(config, installation_from_config(config)?)
}

/// As `from_config`, with an App installation built (and shared) by the caller.
pub fn from_config_with(
    config: &Config,
    installation: Option<Installation>,
) -> Result<Option<Arc<dyn Forge>>, ForgeError> {
    let kind = config.forge.kind;
    if kind == ForgeKind::None {
        return Ok(None);
    }
    let (owner, repo) = config.forge_repository().ok_or_else(|| {
        ForgeError::Config("cannot derive owner/repo: set `forge.owner` and `forge.repo`".into())
    })?;
    let api_url = config.forge.api_url.as_deref();
    if kind == ForgeKind::Github
        && let Some(app) = installation
    {
        let github = GitHub::with_app(api_url, app.provider, app.id, &owner, &repo)?;
        return Ok(Some(Arc::new(github)));
    }
    let default_env = if kind == ForgeKind::Gitea {
        "GITEA_TOKEN"
    } else {
        "GITHUB_TOKEN"
    };
    let token_env = config
        .forge
        .token_env
        .clone()
        .or_else(|| {
            config
                .repository
                .auth
                .as_ref()
                .and_then(|a| a.value.token_env.clone())
        })
        .unwrap_or_else(|| default_env.to_string());
    let token = std::env::var(&token_env)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if token.is_none() {
        tracing::warn!(env = %token_env, forge = ?kind, "no forge token in the environment; API calls are anonymous");
    }
    match kind {
        ForgeKind::Github => Ok(Some(Arc::new(GitHub::new(api_url, token, &owner, &repo)?))),
        ForgeKind::Gitea => {
            let url =
                api_url.ok_or_else(|| ForgeError::Config("Gitea needs `forge.apiUrl`".into()))?;
            Ok(Some(Arc::new(Gitea::new(url, token, &owner, &repo)?)))
        }
        ForgeKind::None => Ok(None),
    }
}

/// Reads a PEM file for a key, naming the file on failure.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, ForgeError> {
    std::fs::read(path).map_err(|e| {
        ForgeError::Config(format!(
            "cannot read the GitHub App private key {}: {e}",
            path.display()
        ))
    })
}

/// Collapses whitespace to single spaces and cuts to 140 characters (with `…`).
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= DESCRIPTION_LIMIT {
        return joined;
    }
    let mut cut: String = joined.chars().take(DESCRIPTION_LIMIT - 1).collect();
    cut.push('…');
    cut
}

/// The first line of a commit message.
pub(crate) fn summary_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_line_and_at_most_140_chars() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
        let long = "é".repeat(300);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(&"x".repeat(140)), "x".repeat(140));
    }

    fn _forge_is_object_safe(f: Arc<dyn Forge>) -> Arc<dyn Forge> {
        f
    }
}
