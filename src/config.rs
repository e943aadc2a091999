//! The daemon's configuration file, `capstan.yaml`.
//!
//! Keys are camelCase, Kubernetes style. Unknown keys are errors (with a
//! did-you-mean), and every error names file, line, column and field. Relative
//! paths resolve against the folder of the configuration file, so a config can be
//! moved together with its policies. Loading reads files only; nothing here talks
//! to a network.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::HumanDuration;
use crate::yaml_file::{self, SourceError, unspanned};

pub const DEFAULT_FILE: &str = "capstan.yaml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub repository: Repository,
    #[serde(default)]
    pub forge: Forge,
    #[serde(default)]
    pub registries: Vec<Registry>,
    /// Folder holding `ImagePolicy` files.
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    #[serde(default)]
    pub update: Update,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Slack and webhook notifications.
    #[serde(default)]
    pub notifications: Vec<Notification>,
    /// Which replica of `capstan run` may write (a Kubernetes Lease).
    #[serde(default)]
    pub leader_election: LeaderElection,
    /// The daemon's HTTP server (`capstan run`).
    #[serde(default)]
    pub server: Server,
}

/// Leader election through a `coordination.k8s.io/v1` Lease: of several replicas of
/// `capstan run`, only the holder of the Lease writes Git or the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElection {
    /// Absent: on when running in a cluster (`KUBERNETES_SERVICE_HOST` is set).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Namespace of the Lease; absent: the Pod's own namespace (from its service
    /// account), else `capstan-system`.
    #[serde(default)]
    pub namespace: Option<Spanned<String>>,
    #[serde(default = "default_lease_name")]
    pub lease_name: Spanned<String>,
    #[serde(default = "default_lease_duration")]
    pub lease_duration: Spanned<HumanDuration>,
    #[serde(default = "default_renew_deadline")]
    pub renew_deadline: Spanned<HumanDuration>,
    #[serde(default = "default_retry_period")]
    pub retry_period: Spanned<HumanDuration>,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            enabled: None,
            namespace: None,
            lease_name: default_lease_name(),
            lease_duration: default_lease_duration(),
            renew_deadline: default_renew_deadline(),
            retry_period: default_retry_period(),
        }
    }
}

impl LeaderElection {
    /// `enabled`, or its default: on in a cluster, off elsewhere.
    pub fn is_enabled(&self) -> bool {
        self.enabled
            .unwrap_or_else(|| std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
    }
}

fn default_lease_name() -> Spanned<String> {
    unspanned("capstan-leader".to_string())
}
fn default_lease_duration() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(15))
}
fn default_renew_deadline() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(10))
}
fn default_retry_period() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(2))
}

/// One notification sink (`notifications[]`). The URL is a secret and is
/// read from the environment variable `urlEnv` at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notification {
    pub name: Spanned<String>,
    pub kind: crate::notify::SinkKind,
    pub url_env: Spanned<String>,
    /// Subscribed events; absent: all of them.
    #[serde(default)]
    pub events: Option<Vec<crate::notify::EventKind>>,
}

/// The HTTP server of `capstan run`: webhooks, manual triggers, probes, metrics.
/// Secrets are never written here, only the names of environment variables
/// holding them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Server {
    /// `host:port` to listen on; loopback by default (in a Pod, set `0.0.0.0:8080`).
    #[serde(default = "default_server_address")]
    pub address: Spanned<String>,
    /// Environment variable holding the GitHub webhook secret; without it
    /// `POST /hooks/github` refuses every request.
    #[serde(default)]
    pub github_webhook_secret_env: Option<Spanned<String>>,
    /// Environment variable holding the shared token of `POST /hooks/registry`.
    #[serde(default)]
    pub registry_webhook_token_env: Option<Spanned<String>>,
    /// Environment variable holding the bearer token of `POST /trigger/...`.
    #[serde(default)]
    pub trigger_token_env: Option<Spanned<String>>,
    /// Larger request bodies are answered with 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: Spanned<u64>,
    /// How long a stop (SIGTERM/SIGINT) waits for running steps to finish.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: Spanned<HumanDuration>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            address: default_server_address(),
            github_webhook_secret_env: None,
            registry_webhook_token_env: None,
            trigger_token_env: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

/// Default `server.address`.
pub const DEFAULT_SERVER_ADDRESS: &str = "127.0.0.1:8080";

fn default_server_address() -> Spanned<String> {
    unspanned(DEFAULT_SERVER_ADDRESS.to_string())
}
fn default_max_body_bytes() -> Spanned<u64> {
    unspanned(1024 * 1024)
}
fn default_shutdown_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(30))
}

/// The manifests repository: both loops meet here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Repository {
    /// `https://…`, `ssh://…`, `git@host:path`, `file://…` or a local path.
    pub url: Spanned<String>,
    #[serde(default = "default_branch")]
    pub branch: Spanned<String>,
    #[serde(default)]
    pub auth: Option<Spanned<GitAuth>>,
    /// Where the working clone lives; default `.capstan/repo` beside the config.
    #[serde(default)]
    pub checkout_dir: Option<PathBuf>,
}

/// Exactly one way to authenticate to the Git server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitAuth {
    /// Name of an environment variable holding an HTTPS token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// HTTPS user name sent with the token (`x-access-token` for GitHub by default).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub ssh_key_file: Option<PathBuf>,
    #[serde(default)]
    pub github_app: Option<GitHubApp>,
    /// OpenSSH known_hosts file the SSH server's host key must be listed in
    /// (default: `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// Accept any SSH host key (logged as a warning). Off by default.
    #[serde(default)]
    pub insecure_skip_host_key_check: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitHubApp {
    pub app_id: u64,
    pub installation_id: u64,
    pub private_key_file: PathBuf,
    /// `forge.githubApp` only: also publish each installation token in a Secret.
    #[serde(default)]
    pub token_secret: Option<TokenSecret>,
}

/// A Kubernetes Secret `<name>-<installationId>` holding the installation token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenSecret {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitea,
    #[default]
    None,
}

/// The Git hosting service used for pull requests and commit statuses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Forge {
    #[serde(default)]
    pub kind: ForgeKind,
    /// API base URL; default `https://api.github.com` for GitHub. Required for Gitea.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Owner and repository name on the forge; derived from `repository.url` when omitted.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
    /// Environment variable holding the API token; default `GITHUB_TOKEN` or
    /// `GITEA_TOKEN` (after `repository.auth.tokenEnv`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Authenticate as a GitHub App installation instead of with a token.
    #[serde(default)]
    pub github_app: Option<Spanned<GitHubApp>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Registry {
    /// `ghcr.io`, `registry.example.com:5000`, `docker.io`.
    pub host: Spanned<String>,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// Extra CA bundle (PEM) trusted for this registry.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub credentials: Option<Spanned<RegistryCredentials>>,
    /// Request budget; the watcher never sends more than this.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Requests in flight at once to this registry.
    #[serde(default = "default_registry_concurrency")]
    pub concurrency: u32,
}

/// Exactly one source of registry credentials; none means anonymous.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryCredentials {
    /// A docker `config.json` (`auths`, `credHelpers`).
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    #[serde(default)]
    pub basic: Option<BasicAuthEnv>,
    #[serde(default)]
    pub anonymous: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthEnv {
    pub username_env: String,
    pub password_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateMode {
    /// Commit and push to the branch (continuous deployment).
    #[default]
    Push,
    /// Open or update one pull request per policy (continuous delivery).
    PullRequest,
}

/// How the image-update loop writes Git.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Update {
    #[serde(default = "default_mode")]
    pub mode: Spanned<UpdateMode>,
    /// `push`: the branch to push to (default `repository.branch`).
    /// `pull-request`: the head branch template (default `capstan/{policy}`).
    #[serde(default)]
    pub branch: Option<String>,
    /// Folder in the repository searched for image references.
    #[serde(default = "default_update_path")]
    pub path: String,
    #[serde(default = "default_update_interval")]
    pub interval: HumanDuration,
    #[serde(default)]
    pub author: Author,
    /// Placeholders: `{summary}` (one line), `{changes}` (one line per change).
    #[serde(default = "default_message_template")]
    pub message_template: Spanned<String>,
    /// Also update plain `image:` fields of Pod templates whose repository equals
    /// a policy's image, without a marker comment.
    #[serde(default)]
    pub match_image_fields: bool,
    /// `pull-request` mode: what the pull requests look like.
    #[serde(default)]
    pub pull_request: PullRequest,
}

/// `update.pullRequest`: templates and people of the pull requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullRequest {
    /// Placeholders: see [`PULL_REQUEST_PLACEHOLDERS`].
    #[serde(default = "default_pr_title")]
    pub title: Spanned<String>,
    #[serde(default = "default_pr_body")]
    pub body: Spanned<String>,
    /// Forge logins asked for a review, besides the authors of the changelog.
    #[serde(default)]
    pub reviewers: Vec<String>,
    /// Team slugs asked for a review.
    #[serde(default)]
    pub team_reviewers: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Merge when approved and the combined status is green.
    #[serde(default)]
    pub auto_merge: bool,
}

impl Default for PullRequest {
    fn default() -> Self {
        PullRequest {
            title: default_pr_title(),
            body: default_pr_body(),
            reviewers: Vec::new(),
            team_reviewers: Vec::new(),
            labels: Vec::new(),
            auto_merge: false,
        }
    }
}

/// Placeholders of `update.pullRequest.title` and `.body`.
pub const PULL_REQUEST_PLACEHOLDERS: [&str; 12] = [
    "summary",
    "changes",
    "policy",
    "image",
    "oldTag",
    "newTag",
    "digest",
    "branch",
    "base",
    "files",
    "changelog",
    "patch",
];

/// The default branch template of `pull-request` mode.
pub const DEFAULT_PR_BRANCH: &str = "capstan/{policy}";

fn default_pr_title() -> Spanned<String> {
    unspanned("chore(images): {summary}".to_string())
}

fn default_pr_body() -> Spanned<String> {
    unspanned(
        "Capstan updates `{image}` from `{oldTag}` to `{newTag}` (policy `{policy}`).\n\n\
         Digest: {digest}\n\n\
         ### Files changed\n\n{files}\n\n\
         ### Changelog\n\n{changelog}\n\n\
         <details><summary>JSON patch</summary>\n\n```json\n{patch}\n```\n\n</details>\n"
            .to_string(),
    )
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Author {
    #[serde(default = "default_author_name")]
    pub name: String,
    #[serde(default = "default_author_email")]
    pub email: String,
}

/// A cluster (or part of one) that the sync loop keeps equal to a path of the repo.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Target {
    pub name: Spanned<String>,
    /// Folder in the repository; a `kustomization.yaml` there is built with kustomize.
    pub path: Spanned<String>,
    /// Absent: `KUBECONFIG`, `~/.kube/config`, then in-cluster, as kubectl does.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    #[serde(default)]
    pub context: Option<String>,
    /// Namespace for namespaced objects that name none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default = "default_sync_interval")]
    pub interval: HumanDuration,
    /// Delete objects that left Git (only those this target applied).
    #[serde(default)]
    pub prune: bool,
    /// Re-apply when someone changes a field capstan owns.
    #[serde(default = "default_true")]
    pub self_heal: bool,
    /// Take over fields owned by other field managers.
    #[serde(default)]
    pub force: bool,
    #[serde(default = "default_health_timeout")]
    pub health_timeout: HumanDuration,
    /// Commit status context; default `capstan/<name>`.
    #[serde(default)]
    pub status_context: Option<String>,
}

impl Target {
    pub fn status_context(&self) -> String {
        self.status_context
            .clone()
            .unwrap_or_else(|| format!("capstan/{}", self.name.value))
    }
}

impl Default for Update {
    fn default() -> Self {
        Update {
            mode: default_mode(),
            branch: None,
            path: default_update_path(),
            interval: default_update_interval(),
            author: Author::default(),
            message_template: default_message_template(),
            match_image_fields: false,
            pull_request: PullRequest::default(),
        }
    }
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: default_author_name(),
            email: default_author_email(),
        }
    }
}

fn default_policies() -> PathBuf {
    PathBuf::from("policies")
}
fn default_branch() -> Spanned<String> {
    unspanned("main".to_string())
}
fn default_mode() -> Spanned<UpdateMode> {
    unspanned(UpdateMode::Push)
}
fn default_requests_per_minute() -> u32 {
    300
}
fn default_registry_concurrency() -> u32 {
    8
}
fn default_update_path() -> String {
    ".".into()
}
fn default_update_interval() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_message_template() -> Spanned<String> {
    unspanned("chore(images): {summary}\n\n{changes}\n".to_string())
}
fn default_author_name() -> String {
    "capstan".into()
}
fn default_author_email() -> String {
    "capstan@noreply.invalid".into()
}
fn default_namespace() -> String {
    "default".into()
}
fn default_sync_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_health_timeout() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_true() -> bool {
    true
}

const MESSAGE_PLACEHOLDERS: [&str; 2] = ["summary", "changes"];

/// The folder a configuration file is in (`.` for a bare file name): relative
/// paths and the default `.capstan/` folders are anchored there.
pub fn folder_of(config_file: &Path) -> &Path {
    config_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, SourceError> {
        let text = yaml_file::read_text(path)?;
        let mut config: Config = yaml_file::parse(path, &text)?;
        config.validate(path, &text)?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// The folder of policies, resolved.
    pub fn policies_dir(&self) -> &Path {
        &self.policies
    }

    /// The base branch of `pull-request` mode: always `repository.branch`.
    pub fn base_branch(&self) -> &str {
        &self.repository.branch.value
    }

    /// The head branch template of `pull-request` mode.
    pub fn pull_request_branch_template(&self) -> &str {
        self.update.branch.as_deref().unwrap_or(DEFAULT_PR_BRANCH)
    }

    /// The update loop's clone: `repository.checkoutDir`, else `.capstan/repo`
    /// beside the configuration file (`config_dir`).
    pub fn update_checkout_dir(&self, config_dir: &Path) -> PathBuf {
        self.repository
            .checkout_dir
            .clone()
            .unwrap_or_else(|| config_dir.join(".capstan").join("repo"))
    }

    /// The sync loop's clone, a sibling of the update loop's (`<dir>-sync`), so
    /// neither loop resets the other's work tree.
    pub fn sync_checkout_dir(&self, config_dir: &Path) -> PathBuf {
        let update = self.update_checkout_dir(config_dir);
        let name = update
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        update.with_file_name(format!("{name}-sync"))
    }

    /// The branch the update loop pushes to in `push` mode.
    pub fn push_branch(&self) -> &str {
        self.update
            .branch
            .as_deref()
            .unwrap_or(&self.repository.branch.value)
    }

    /// Owner and repository on the forge: explicit, or derived from the clone URL.
    pub fn forge_repository(&self) -> Option<(String, String)> {
        match (&self.forge.owner, &self.forge.repo) {
            (Some(o), Some(r)) => Some((o.clone(), r.clone())),
            _ => owner_repo_from_url(&self.repository.url.value),
        }
    }

    fn validate(&self, file: &Path, text: &str) -> Result<(), SourceError> {
        let err =
            |loc, field: &str, msg: String| SourceError::at(file, text, loc, Some(field), msg);
        let repo = &self.repository;
        if repo.url.value.trim().is_empty() {
            return Err(err(
                repo.url.referenced,
                "repository.url",
                "must not be empty".into(),
            ));
        }
        if let Err(why) = check_branch_name(&repo.branch.value) {
            return Err(err(repo.branch.referenced, "repository.branch", why));
        }
        if let Some(auth) = &repo.auth {
            let set = [
                auth.value.token_env.is_some(),
                auth.value.ssh_key_file.is_some(),
                auth.value.github_app.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            let host_keys =
                auth.value.known_hosts_file.is_some() || auth.value.insecure_skip_host_key_check;
            // Without a kind, host key settings alone mean SSH through ssh-agent.
            if set > 1 || (set == 0 && !host_keys) {
                return Err(err(
                    auth.referenced,
                    "repository.auth",
                    "set exactly one of `tokenEnv`, `sshKeyFile`, `githubApp`".into(),
                ));
            }
            if auth
                .value
                .github_app
                .as_ref()
                .is_some_and(|app| app.token_secret.is_some())
            {
                return Err(err(
                    auth.referenced,
                    "repository.auth.githubApp.tokenSecret",
                    "`tokenSecret` belongs under `forge.githubApp`".into(),
                ));
            }
            if auth.value.known_hosts_file.is_some() && auth.value.insecure_skip_host_key_check {
                return Err(err(
                    auth.referenced,
                    "repository.auth.insecureSkipHostKeyCheck",
                    "`knownHostsFile` and `insecureSkipHostKeyCheck: true` contradict each other; set one".into(),
                ));
            }
            if host_keys && (auth.value.token_env.is_some() || auth.value.github_app.is_some()) {
                return Err(err(
                    auth.referenced,
                    "repository.auth",
                    "`knownHostsFile` and `insecureSkipHostKeyCheck` apply to SSH (`sshKeyFile` or ssh-agent), not to HTTPS `tokenEnv`/`githubApp`".into(),
                ));
            }
        }

        let mut hosts = HashSet::new();
        for (i, reg) in self.registries.iter().enumerate() {
            let host = reg.host.value.trim();
            if host.is_empty() || host.contains('/') || host.contains("://") {
                return Err(err(
                    reg.host.referenced,
                    &format!("registries[{i}].host"),
                    format!(
                        "`{host}` is not a registry host (write e.g. `ghcr.io` or `localhost:5000`)"
                    ),
                ));
            }
            if !hosts.insert(host.to_ascii_lowercase()) {
                return Err(err(
                    reg.host.referenced,
                    &format!("registries[{i}].host"),
                    format!("registry `{host}` is listed twice"),
                ));
            }
            if reg.requests_per_minute == 0 {
                return Err(err(
                    reg.host.referenced,
                    &format!("registries[{i}].requestsPerMinute"),
                    "must be at least 1".into(),
                ));
            }
            if reg.concurrency == 0 {
                return Err(err(
                    reg.host.referenced,
                    &format!("registries[{i}].concurrency"),
                    "must be at least 1".into(),
                ));
            }
            if let Some(creds) = &reg.credentials {
                let c = &creds.value;
                let set = [
                    c.docker_config.is_some(),
                    c.basic.is_some(),
                    c.anonymous == Some(true),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if set != 1 {
                    return Err(err(
                        creds.referenced,
                        &format!("registries[{i}].credentials"),
                        "set exactly one of `dockerConfig`, `basic`, `anonymous: true`".into(),
                    ));
                }
            }
        }

        let template = &self.update.message_template;
        if let Err(why) = check_template(&template.value, &MESSAGE_PLACEHOLDERS) {
            return Err(err(template.referenced, "update.messageTemplate", why));
        }
        let pr = &self.update.pull_request;
        for (template, field) in [
            (&pr.title, "update.pullRequest.title"),
            (&pr.body, "update.pullRequest.body"),
        ] {
            if let Err(why) = check_template(&template.value, &PULL_REQUEST_PLACEHOLDERS) {
                return Err(err(template.referenced, field, why));
            }
        }
        if self.update.mode.value == UpdateMode::PullRequest {
            if let Some(branch) = &self.update.branch
                && let Err(why) = check_branch_name(&branch.replace("{policy}", "p"))
            {
                return Err(err(self.update.mode.referenced, "update.branch", why));
            }
            if self.pull_request_branch_template().replace("{policy}", "") == repo.branch.value {
                return Err(err(
                    self.update.mode.referenced,
                    "update.branch",
                    "the pull request branch must differ from the base branch".into(),
                ));
            }
            if self.forge.kind == ForgeKind::None {
                return Err(err(
                    self.update.mode.referenced,
                    "update.mode",
                    "`pull-request` needs a forge: set `forge.kind` to `github` or `gitea`".into(),
                ));
            }
            if let Some(branch) = &self.update.branch
                && !branch.contains("{policy}")
            {
                return Err(err(
                    self.update.mode.referenced,
                    "update.branch",
                    "in `pull-request` mode the branch is a template and must contain `{policy}`"
                        .into(),
                ));
            }
        } else if let Some(branch) = &self.update.branch
            && let Err(why) = check_branch_name(branch)
        {
            return Err(err(self.update.mode.referenced, "update.branch", why));
        }
        if self.forge.kind != ForgeKind::None && self.forge_repository().is_none() {
            return Err(err(
                repo.url.referenced,
                "forge",
                "cannot derive owner/repo from `repository.url`: set `forge.owner` and `forge.repo`".into(),
            ));
        }
        if let Some(app) = &self.forge.github_app {
            if self.forge.kind != ForgeKind::Github {
                return Err(err(
                    app.referenced,
                    "forge.githubApp",
                    "a GitHub App needs `forge.kind: github`".into(),
                ));
            }
            if app.value.app_id == 0 || app.value.installation_id == 0 {
                return Err(err(
                    app.referenced,
                    "forge.githubApp",
                    "`appId` and `installationId` must be the App's numbers (see the App's settings page and its installation URL)".into(),
                ));
            }
            if let Some(ts) = &app.value.token_secret
                && (!is_dns_label(&ts.namespace) || !is_dns_label(&ts.name) || ts.name.len() > 40)
            {
                return Err(err(
                    app.referenced,
                    "forge.githubApp.tokenSecret",
                    "`namespace` and `name` must be DNS labels (lowercase letters, digits, `-`; `name` at most 40 characters, the installation id is appended)".into(),
                ));
            }
            if self.forge.token_env.is_some() {
                return Err(err(
                    app.referenced,
                    "forge.githubApp",
                    "set either `tokenEnv` or `githubApp`, not both".into(),
                ));
            }
        }
        if let Some(url) = &self.forge.api_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(err(
                repo.url.referenced,
                "forge.apiUrl",
                format!("`{url}` must start with https:// (or http://)"),
            ));
        }
        if self.forge.kind == ForgeKind::Gitea && self.forge.api_url.is_none() {
            return Err(err(
                repo.url.referenced,
                "forge.apiUrl",
                "a Gitea forge needs `apiUrl` (e.g. `https://gitea.example.com/api/v1`)".into(),
            ));
        }

        let mut sinks = HashSet::new();
        for (i, n) in self.notifications.iter().enumerate() {
            let name = &n.name.value;
            if name.trim().is_empty() {
                return Err(err(
                    n.name.referenced,
                    &format!("notifications[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if !sinks.insert(name.clone()) {
                return Err(err(
                    n.name.referenced,
                    &format!("notifications[{i}].name"),
                    format!("notification `{name}` is defined twice"),
                ));
            }
            if !is_env_name(&n.url_env.value) {
                return Err(err(
                    n.url_env.referenced,
                    &format!("notifications[{i}].urlEnv"),
                    // The value is not echoed: it may be the secret URL itself.
                    "must name an environment variable (letters, digits, `_`) that holds the URL; the URL itself does not belong in this file".into(),
                ));
            }
            if n.events.as_ref().is_some_and(Vec::is_empty) {
                return Err(err(
                    n.name.referenced,
                    &format!("notifications[{i}].events"),
                    "must name at least one event (omit the key for all events)".into(),
                ));
            }
        }

        self.validate_server(file, text)?;

        let mut names = HashSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let name = &target.name.value;
            if !is_dns_label(name) {
                return Err(err(
                    target.name.referenced,
                    &format!("targets[{i}].name"),
                    format!(
                        "`{name}` is not a valid name (lowercase letters, digits and `-`, at most 63 characters)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(err(
                    target.name.referenced,
                    &format!("targets[{i}].name"),
                    format!("target `{name}` is defined twice"),
                ));
            }
            if let Err(why) = check_repo_path(&target.path.value) {
                return Err(err(
                    target.path.referenced,
                    &format!("targets[{i}].path"),
                    why,
                ));
            }
            if target.health_timeout.0.is_zero() || target.interval.0.is_zero() {
                return Err(err(
                    target.name.referenced,
                    &format!("targets[{i}]"),
                    "`interval` and `healthTimeout` must be greater than zero".into(),
                ));
            }
        }
        self.validate_leader_election(file, text)?;
        Ok(())
    }

    fn validate_leader_election(&self, file: &Path, text: &str) -> Result<(), SourceError> {
        let err =
            |loc, field: &str, msg: String| SourceError::at(file, text, loc, Some(field), msg);
        let le = &self.leader_election;
        if let Some(ns) = &le.namespace
            && !is_dns_label(&ns.value)
        {
            return Err(err(
                ns.referenced,
                "leaderElection.namespace",
                format!("`{}` is not a valid namespace name", ns.value),
            ));
        }
        if !is_dns_subdomain(&le.lease_name.value) {
            return Err(err(
                le.lease_name.referenced,
                "leaderElection.leaseName",
                format!(
                    "`{}` is not a valid object name (lowercase letters, digits, `-` and `.`)",
                    le.lease_name.value
                ),
            ));
        }
        if let Err(why) = crate::daemon::leader::check_timings(
            le.lease_duration.value.0,
            le.renew_deadline.value.0,
            le.retry_period.value.0,
        ) {
            // Point at the first field the broken rule names that is written in the file.
            let fields = [
                ("leaseDuration", le.lease_duration.referenced),
                ("renewDeadline", le.renew_deadline.referenced),
                ("retryPeriod", le.retry_period.referenced),
            ];
            let mut named: Vec<_> = fields
                .iter()
                .filter_map(|(name, loc)| why.find(name).map(|at| (at, *name, *loc)))
                .collect();
            named.sort_by_key(|(at, _, _)| *at);
            let (_, name, loc) = named
                .iter()
                .find(|(_, _, loc)| loc.line() > 0)
                .or(named.first())
                .copied()
                .unwrap_or((0, "leaseDuration", le.lease_duration.referenced));
            let field = format!("leaderElection.{name}");
            let field = field.as_str();
            return Err(err(loc, field, why));
        }
        Ok(())
    }

    fn validate_server(&self, file: &Path, text: &str) -> Result<(), SourceError> {
        let err =
            |loc, field: &str, msg: String| SourceError::at(file, text, loc, Some(field), msg);
        let server = &self.server;
        if server
            .address
            .value
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(err(
                server.address.referenced,
                "server.address",
                format!(
                    "`{}` is not an address to listen on (write `host:port` with an IP, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`)",
                    server.address.value
                ),
            ));
        }
        for (field, env) in [
            (
                "server.githubWebhookSecretEnv",
                &server.github_webhook_secret_env,
            ),
            (
                "server.registryWebhookTokenEnv",
                &server.registry_webhook_token_env,
            ),
            ("server.triggerTokenEnv", &server.trigger_token_env),
        ] {
            if let Some(env) = env
                && !is_env_name(&env.value)
            {
                return Err(err(
                    env.referenced,
                    field,
                    format!(
                        "`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                        env.value
                    ),
                ));
            }
        }
        if server.max_body_bytes.value == 0 {
            return Err(err(
                server.max_body_bytes.referenced,
                "server.maxBodyBytes",
                "must be at least 1".into(),
            ));
        }
        if server.shutdown_timeout.value.0.is_zero() {
            return Err(err(
                server.shutdown_timeout.referenced,
                "server.shutdownTimeout",
                "must be greater than zero".into(),
            ));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            let expanded = expand_home(p);
            *p = if expanded.is_absolute() {
                expanded
            } else {
                base.join(expanded)
            };
        };
        resolve(&mut self.policies);
        if let Some(dir) = &mut self.repository.checkout_dir {
            resolve(dir);
        }
        if let Some(auth) = &mut self.repository.auth {
            if let Some(key) = &mut auth.value.ssh_key_file {
                resolve(key);
            }
            if let Some(file) = &mut auth.value.known_hosts_file {
                resolve(file);
            }
            if let Some(app) = &mut auth.value.github_app {
                resolve(&mut app.private_key_file);
            }
        }
        if let Some(app) = &mut self.forge.github_app {
            resolve(&mut app.value.private_key_file);
        }
        if is_local_path(&self.repository.url.value) {
            let mut p = PathBuf::from(&self.repository.url.value);
            resolve(&mut p);
            self.repository.url.value = p.to_string_lossy().into_owned();
        }
        for reg in &mut self.registries {
            if let Some(ca) = &mut reg.ca_file {
                resolve(ca);
            }
            if let Some(creds) = &mut reg.credentials
                && let Some(cfg) = &mut creds.value.docker_config
            {
                resolve(cfg);
            }
        }
        for target in &mut self.targets {
            if let Some(kc) = &mut target.kubeconfig {
                resolve(kc);
            }
        }
    }
}

fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    p.to_path_buf()
}

/// A repository URL that is a plain path (not `scheme://` nor `user@host:path`).
fn is_local_path(url: &str) -> bool {
    if url.contains("://") {
        return false;
    }
    // scp-like syntax: `host:path` with no slash before the colon.
    match url.find(':') {
        Some(colon) => url[..colon].contains('/'),
        None => true,
    }
}

/// `github.com/acme/fleet(.git)` from https, ssh or scp-like URLs (also
/// used for an image's `org.opencontainers.image.source`).
pub fn owner_repo_from_url(url: &str) -> Option<(String, String)> {
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?.1
    } else {
        url.split_once(':')?.1
    };
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let mut parts = path.rsplit('/');
    let repo = parts.next().filter(|s| !s.is_empty())?;
    let owner = parts.next().filter(|s| !s.is_empty())?;
    Some((owner.to_string(), repo.to_string()))
}

/// The subset of `git check-ref-format` rules that users actually trip over.
fn check_branch_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with(['-', '/'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{name}` is not a valid Git branch name"))
    } else {
        Ok(())
    }
}

/// Paths in the repository are relative and stay inside it.
fn check_repo_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err("must not be empty (use `.` for the repository root)".into());
    }
    if p.is_absolute() {
        return Err(format!("`{path}` must be relative to the repository root"));
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("`{path}` must not leave the repository (`..`)"));
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label)
}

/// Only `{known}` placeholders; `{{` and `}}` are literal braces.
fn check_template(template: &str, known: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            rest = &rest[open + 2..];
            continue;
        }
        let Some(close) = rest[open..].find('}') else {
            return Err("unclosed `{` in template".into());
        };
        let name = &rest[open + 1..open + close];
        if !known.contains(&name) {
            let hint = yaml_file::did_you_mean(name, known)
                .map(|s| format!(" (did you mean `{{{s}}}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "unknown placeholder `{{{name}}}`{hint}; known: {}",
                known
                    .iter()
                    .map(|k| format!("{{{k}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, SourceError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capstan.yaml");
        std::fs::write(&path, text).expect("write");
        Config::load(&path)
    }

    const MINIMAL: &str = "repository:\n  url: https://github.com/acme/fleet.git\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(MINIMAL).expect("valid");
        assert_eq!(c.repository.branch.value, "main");
        assert_eq!(c.update.mode.value, UpdateMode::Push);
        assert!(c.policies.ends_with("policies") && c.policies.is_absolute());
        assert_eq!(c.push_branch(), "main");
        assert_eq!(
            c.forge_repository(),
            Some(("acme".to_string(), "fleet".to_string()))
        );
    }

    #[test]
    fn full_config_parses() {
        let text = r#"
repository:
  url: git@github.com:acme/fleet.git
  branch: main
  auth:
    sshKeyFile: ~/.ssh/id_ed25519
forge:
  kind: github
registries:
  - host: ghcr.io
    credentials:
      dockerConfig: docker/config.json
    requestsPerMinute: 100
  - host: localhost:5000
    insecure: true
policies: policies/
update:
  mode: pull-request
  branch: capstan/{policy}
  interval: 2m
  author: { name: bot, email: bot@example.com }
  messageTemplate: "deps: {summary}"
targets:
  - name: prod
    path: clusters/prod
    kubeconfig: kube/prod.yaml
    prune: true
    healthTimeout: 90s
"#;
        let c = load(text).expect("valid");
        assert_eq!(c.update.mode.value, UpdateMode::PullRequest);
        assert_eq!(c.targets[0].health_timeout.0.as_secs(), 90);
        assert_eq!(c.targets[0].status_context(), "capstan/prod");
        assert!(
            c.targets[0]
                .kubeconfig
                .as_ref()
                .is_some_and(|p| p.is_absolute())
        );
        assert!(c.registries[1].insecure);
    }

    #[test]
    fn ssh_host_key_settings() {
        let c = load(
            "repository:\n  url: ssh://git@example.com/fleet.git\n  auth:\n    sshKeyFile: id\n    knownHostsFile: ssh/known_hosts\n",
        )
        .expect("valid");
        let auth = &c.repository.auth.as_ref().expect("auth").value;
        let file = auth.known_hosts_file.as_ref().expect("known hosts");
        assert!(file.is_absolute() && file.ends_with("ssh/known_hosts"));
        // Host key settings alone: ssh-agent.
        let c = load("repository:\n  url: x\n  auth:\n    insecureSkipHostKeyCheck: true\n")
            .expect("valid");
        assert!(
            c.repository
                .auth
                .expect("auth")
                .value
                .insecure_skip_host_key_check
        );
        let err = load("repository:\n  url: x\n  auth:\n    sshKeyFile: id\n    knownHostsFile: k\n    insecureSkipHostKeyCheck: true\n")
            .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("repository.auth.insecureSkipHostKeyCheck"),
            "{err}"
        );
        let err = load("repository:\n  url: x\n  auth:\n    tokenEnv: T\n    knownHostsFile: k\n")
            .unwrap_err();
        assert!(err.message.contains("apply to SSH"), "{err}");
        let err = load("repository:\n  url: x\n  auth:\n    insecureSkipHostKeyCheck: false\n")
            .unwrap_err();
        assert!(err.message.contains("exactly one"), "{err}");
    }

    #[test]
    fn registry_concurrency_defaults_and_must_be_positive() {
        let c = load(&format!("{MINIMAL}registries:\n  - host: ghcr.io\n")).expect("valid");
        assert_eq!(c.registries[0].concurrency, 8);
        assert_eq!(c.registries[0].requests_per_minute, 300);
        let c = load(&format!(
            "{MINIMAL}registries:\n  - host: ghcr.io\n    concurrency: 2\n"
        ))
        .expect("valid");
        assert_eq!(c.registries[0].concurrency, 2);
        let err = load(&format!(
            "{MINIMAL}registries:\n  - host: ghcr.io\n    concurrency: 0\n"
        ))
        .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("registries[0].concurrency"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_names_line_field_and_suggestion() {
        let err =
            load("repository:\n  url: x\ntargets:\n  - name: a\n    path: p\n    prnue: true\n")
                .unwrap_err();
        assert_eq!((err.line, err.column), (6, 5));
        assert_eq!(err.field.as_deref(), Some("targets[0].prnue"));
        assert!(err.message.contains("did you mean `prune`"), "{err}");
    }

    #[test]
    fn bad_duration_is_located() {
        let err = load("repository:\n  url: x\ntargets:\n  - name: a\n    path: p\n    healthTimeout: 5 minutes\n")
            .unwrap_err();
        assert_eq!(err.line, 6);
        assert_eq!(err.field.as_deref(), Some("targets[0].healthTimeout"));
        assert!(err.message.contains("invalid duration"), "{err}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let cases = [
            (
                "repository:\n  url: x\ntargets:\n  - name: A_b\n    path: p\n",
                4,
                "targets[0].name",
            ),
            (
                "repository:\n  url: x\ntargets:\n  - name: a\n    path: ../up\n",
                5,
                "targets[0].path",
            ),
            (
                "repository:\n  url: x\ntargets:\n  - name: a\n    path: p\n  - name: a\n    path: q\n",
                6,
                "targets[1].name",
            ),
            (
                "repository:\n  url: x\nupdate:\n  mode: pull-request\n",
                4,
                "update.mode",
            ),
            (
                "repository:\n  url: x\nupdate:\n  messageTemplate: '{sumary}'\n",
                4,
                "update.messageTemplate",
            ),
            (
                "repository:\n  url: x\n  branch: 'a..b'\n",
                3,
                "repository.branch",
            ),
            (
                "repository:\n  url: x\nregistries:\n  - host: https://ghcr.io\n",
                4,
                "registries[0].host",
            ),
        ];
        for (text, line, field) in cases {
            let err = load(text).expect_err(text);
            assert_eq!(err.line, line, "{err}");
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
    }

    #[test]
    fn notifications_parse_and_are_validated() {
        let c = load(&format!(
            "{MINIMAL}notifications:\n  - name: team\n    kind: slack\n    urlEnv: SLACK_URL\n    events: [tag-chosen, sync-failed]\n  - name: hook\n    kind: webhook\n    urlEnv: HOOK_URL\n"
        ))
        .expect("valid");
        assert_eq!(c.notifications.len(), 2);
        assert_eq!(c.notifications[0].kind, crate::notify::SinkKind::Slack);
        assert_eq!(
            c.notifications[0].events.as_deref(),
            Some(
                &[
                    crate::notify::EventKind::TagChosen,
                    crate::notify::EventKind::SyncFailed
                ][..]
            )
        );
        assert!(c.notifications[1].events.is_none());
        let cases = [
            (
                "notifications:\n  - name: a\n    kind: slack\n    urlEnv: https://hooks.slack.com/x\n",
                6,
                "notifications[0].urlEnv",
            ),
            (
                "notifications:\n  - name: a\n    kind: slack\n    urlEnv: A\n  - name: a\n    kind: webhook\n    urlEnv: B\n",
                7,
                "notifications[1].name",
            ),
            (
                "notifications:\n  - name: a\n    kind: slack\n    urlEnv: A\n    events: [tag-chosen, tag-choosen]\n",
                7,
                "notifications[0].events",
            ),
            (
                "notifications:\n  - name: a\n    kind: teams\n    urlEnv: A\n",
                5,
                "notifications[0].kind",
            ),
            (
                "notifications:\n  - name: a\n    kind: slack\n    url: A\n",
                6,
                "notifications[0].url",
            ),
        ];
        for (tail, line, field) in cases {
            let text = format!("{MINIMAL}{tail}");
            let err = load(&text).expect_err(&text);
            assert_eq!(err.line, line, "{err}");
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
            assert!(!err.to_string().contains("hooks.slack.com"), "{err}");
        }
    }

    #[test]
    fn forge_github_app_parses_resolves_and_is_checked() {
        let c = load(&format!(
            "{MINIMAL}forge:\n  kind: github\n  githubApp:\n    appId: 12\n    installationId: 34\n    privateKeyFile: keys/app.pem\n"
        ))
        .expect("valid");
        let app = &c.forge.github_app.as_ref().expect("app").value;
        assert_eq!((app.app_id, app.installation_id), (12, 34));
        assert!(app.private_key_file.is_absolute());
        assert!(app.token_secret.is_none());
        let cases = [
            (
                "forge:\n  kind: gitea\n  apiUrl: https://g/api/v1\n  githubApp:\n    appId: 1\n    installationId: 2\n    privateKeyFile: k\n",
                7,
                "forge.githubApp",
            ),
            (
                "forge:\n  kind: github\n  tokenEnv: T\n  githubApp:\n    appId: 1\n    installationId: 2\n    privateKeyFile: k\n",
                7,
                "forge.githubApp",
            ),
            (
                "forge:\n  kind: github\n  githubApp:\n    appId: 1\n    installationId: 2\n    privateKey: k\n",
                8,
                "forge.githubApp.privateKey",
            ),
            (
                "forge:\n  kind: github\n  apiUrl: ghe.example.com\n",
                2,
                "forge.apiUrl",
            ),
            (
                "forge:\n  kind: github\n  githubApp:\n    appId: 1\n    installationId: 2\n    privateKeyFile: k\n    tokenSecret: { namespace: Ci, name: gh }\n",
                6,
                "forge.githubApp.tokenSecret",
            ),
            (
                "  auth:\n    githubApp:\n      appId: 1\n      installationId: 2\n      privateKeyFile: k\n      tokenSecret: { namespace: ci, name: gh }\n",
                4,
                "repository.auth.githubApp.tokenSecret",
            ),
        ];
        for (forge, line, field) in cases {
            let text = format!("{MINIMAL}{forge}");
            let err = load(&text).expect_err(&text);
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
            assert_eq!(err.line, line, "{err}");
        }
    }

    #[test]
    fn server_defaults_and_errors() {
        let c = load(MINIMAL).expect("valid");
        assert_eq!(c.server.address.value, DEFAULT_SERVER_ADDRESS);
        assert_eq!(c.server.max_body_bytes.value, 1024 * 1024);
        assert_eq!(c.server.shutdown_timeout.value.0.as_secs(), 30);
        assert!(c.server.github_webhook_secret_env.is_none());
        let c = load(&format!(
            "{MINIMAL}server:\n  address: 0.0.0.0:9000\n  githubWebhookSecretEnv: GH_SECRET\n  maxBodyBytes: 2048\n  shutdownTimeout: 5s\n"
        ))
        .expect("valid");
        assert_eq!(c.server.address.value, "0.0.0.0:9000");
        assert_eq!(c.server.max_body_bytes.value, 2048);
        assert_eq!(
            c.server
                .github_webhook_secret_env
                .map(|e| e.value)
                .as_deref(),
            Some("GH_SECRET")
        );
        let cases = [
            ("server:\n  address: localhost\n", 4, "server.address"),
            (
                "server:\n  triggerTokenEnv: 'my token'\n",
                4,
                "server.triggerTokenEnv",
            ),
            ("server:\n  maxBodyBytes: 0\n", 4, "server.maxBodyBytes"),
            (
                "server:\n  shutdownTimeout: 0s\n",
                4,
                "server.shutdownTimeout",
            ),
            ("server:\n  adress: x\n", 4, "server.adress"),
        ];
        for (extra, line, field) in cases {
            let text = format!("{MINIMAL}{extra}");
            let err = load(&text).expect_err(&text);
            assert_eq!(err.line, line, "{err}");
            assert_eq!(err.field.as_deref(), Some(field), "{err}");
        }
    }

    #[test]
    fn bad_mode_value_is_an_error() {
        let err = load("repository:\n  url: x\nupdate:\n  mode: yolo\n").unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(err.field.as_deref(), Some("update.mode"));
    }

    #[test]
    fn leader_election_defaults_and_errors() {
        let c = load(MINIMAL).expect("valid");
        let le = &c.leader_election;
        assert_eq!(le.lease_name.value, "capstan-leader");
        assert_eq!(le.lease_duration.value.0.as_secs(), 15);
        assert_eq!(le.renew_deadline.value.0.as_secs(), 10);
        assert_eq!(le.retry_period.value.0.as_secs(), 2);
        assert_eq!(le.enabled, None);
        let c = load(&format!(
            "{MINIMAL}leaderElection:\n  enabled: true\n  namespace: ops\n  leaseName: my.lease\n  leaseDuration: 4s\n  renewDeadline: 3s\n  retryPeriod: 500ms\n"
        ))
        .expect("valid");
        assert!(c.leader_election.is_enabled());
        assert_eq!(c.leader_election.retry_period.value.0.as_millis(), 500);
        let cases = [
            ("  namespace: Ops_1\n", 4, "leaderElection.namespace"),
            ("  leaseName: 'a b'\n", 4, "leaderElection.leaseName"),
            // leaseDuration is a default here: the error points at renewDeadline.
            ("  renewDeadline: 20s\n", 4, "leaderElection.renewDeadline"),
            (
                "  leaseDuration: 10s\n  renewDeadline: 12s\n",
                4,
                "leaderElection.leaseDuration",
            ),
            ("  retryPeriod: 9s\n", 4, "leaderElection.retryPeriod"),
            ("  retryPeriod: 0s\n", 4, "leaderElection.retryPeriod"),
            (
                "  leaseDurations: 10s\n",
                4,
                "leaderElection.leaseDurations",
            ),
        ];
        for (body, line, field) in cases {
            let text = format!("{MINIMAL}leaderElection:\n{body}");
            let err = load(&text).expect_err(&text);
            assert_eq!(
                (err.line, err.field.as_deref()),
                (line, Some(field)),
                "{err}"
            );
        }
    }

    #[test]
    fn url_forms() {
        assert!(is_local_path("./fleet.git"));
        assert!(is_local_path("/srv/git/fleet.git"));
        assert!(!is_local_path("git@github.com:acme/fleet.git"));
        assert!(!is_local_path("https://github.com/acme/fleet"));
        assert_eq!(
            owner_repo_from_url("https://github.com/acme/fleet"),
            Some(("acme".into(), "fleet".into()))
        );
    }
}
