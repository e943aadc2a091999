//! GitHub (and GitHub Enterprise, by base URL) through octocrab.
//!
//! Requests go through octocrab's client (base URL, timeouts, TLS) as raw REST
//! calls with capstan's own small serde types: the answers are classified by
//! `error::classify` with their headers (rate limits need them, octocrab's typed
//! errors drop them) and retried by `error::retry` with a bounded wait. The
//! `Authorization` header is added per request, so a GitHub App installation
//! token can be refreshed without rebuilding the client.
//!
//! Auto-merge: GitHub's REST API cannot enable it; `enable_auto_merge` sends the
//! GraphQL mutation `enablePullRequestAutoMerge` with the PR's node id (to
//! `/graphql`, or `/api/graphql` on GitHub Enterprise whose REST base ends in
//! `/api/v3`). `merge_pull_request` merges at once through REST, guarded by the
//! head SHA, for callers that check reviews and statuses themselves.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use octocrab::Octocrab;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::info;

use super::clock::{Clock, SystemClock};
use super::error::{ForgeError, RetryPolicy, classify, retry};
use super::github_app::AppTokenProvider;
use super::{
    CheckRun, CombinedStatus, CommitState, CommitStatus, CompareCommit, Comparison, ContextState,
    DeploymentStatus, Forge, ForgeFuture, MergeMethod, NewDeployment, NewPullRequest, Opened,
    PullRequest, PullReview, one_line, summary_line,
};
use crate::registry::transport::error_chain;

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// One HTTP endpoint speaking GitHub's REST API: client, retry rule, clock.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: Octocrab,
    /// GraphQL lives beside the REST base: `/graphql` on github.com,
    /// `/api/graphql` on GitHub Enterprise (REST under `/api/v3`).
    graphql: (Octocrab, &'static str),
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
}

/// A request: what it does (for errors) and what a 404 would mean.
pub(crate) struct Call<'a> {
    pub operation: &'a str,
    pub not_found: &'a str,
    pub method: Method,
    pub path: &'a str,
    pub body: Option<&'a Value>,
}

impl Api {
    pub(crate) fn new(api_url: Option<&str>) -> Result<Api, ForgeError> {
        let url = api_url.unwrap_or(DEFAULT_API_URL).trim_end_matches('/');
        let client = octocrab_for(url)?;
        let graphql = match url.strip_suffix("/api/v3") {
            Some(host) => (octocrab_for(host)?, "/api/graphql"),
            None => (client.clone(), "/graphql"),
        };
        Ok(Api {
            client,
            graphql,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
        })
    }

    /// Sends one call (retrying transient failures) and returns the success body.
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        retry(&self.retry, || {
            self.send_once(&self.client, call, authorization)
        })
        .await
    }

    /// POSTs a GraphQL document; `call.path` is ignored.
    async fn send_graphql(
        &self,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        let (client, path) = &self.graphql;
        let call = Call {
            path,
            method: Method::POST,
            ..*call
        };
        retry(&self.retry, || self.send_once(client, &call, authorization)).await
    }

    async fn send_once(
        &self,
        client: &Octocrab,
        call: &Call<'_>,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        let transport = |e: &dyn std::error::Error| ForgeError::Transport {
            operation: call.operation.to_string(),
            message: error_chain(e),
        };
        let builder = http::Request::builder()
            .method(call.method.clone())
            .uri(call.path)
            .header(http::header::ACCEPT, "application/vnd.github+json");
        let mut request = client
            .build_request(builder, call.body)
            .map_err(|e| transport(&e))?;
        if let Some(value) = authorization {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| ForgeError::Config("the token is not a valid header value".into()))?;
            value.set_sensitive(true);
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        let response = client.execute(request).await.map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = client
            .body_to_string(response)
            .await
            .map_err(|e| transport(&e))?;
        if status.is_success() {
            return Ok((status, body.into_bytes()));
        }
        Err(classify(
            call.operation,
            call.not_found,
            status,
            &headers,
            body.as_bytes(),
            self.clock.now(),
        ))
    }
}

fn octocrab_for(url: &str) -> Result<Octocrab, ForgeError> {
    Octocrab::builder()
        .base_uri(url)
        .map_err(|e| ForgeError::Config(format!("API URL {url:?}: {e}")))?
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| ForgeError::Config(format!("GitHub client: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T, ForgeError> {
    serde_json::from_slice(body)
        .map_err(|e| ForgeError::api(operation, format!("unexpected answer from the forge: {e}")))
}

/// Percent-encodes a query value (branch names may hold `+`, `#`, `&`).
pub(crate) fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    App {
        provider: Arc<AppTokenProvider>,
        installation: u64,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::App { installation, .. } => write!(f, "App {{ installation: {installation} }}"),
        }
    }
}

/// One repository on GitHub (or a server speaking its API).
#[derive(Debug, Clone)]
pub struct GitHub {
    api: Api,
    auth: Auth,
    owner: String,
    repo: String,
    login: Arc<OnceCell<String>>,
}

impl GitHub {
    /// With a personal (or fine-grained, or Actions) token, or anonymous.
    /// Inside a Tokio runtime only (octocrab's client starts a task).
    pub fn new(
        api_url: Option<&str>,
        token: Option<String>,
        owner: &str,
        repo: &str,
    ) -> Result<GitHub, ForgeError> {
        Ok(GitHub {
            api: Api::new(api_url)?,
            auth: token.map(Auth::Token).unwrap_or(Auth::None),
            owner: owner.to_string(),
            repo: repo.to_string(),
            login: Arc::new(OnceCell::new()),
        })
    }

    /// As a GitHub App installation; tokens come from `provider`.
    pub fn with_app(
        api_url: Option<&str>,
        provider: Arc<AppTokenProvider>,
        installation: u64,
        owner: &str,
        repo: &str,
    ) -> Result<GitHub, ForgeError> {
        let mut github = GitHub::new(api_url, None, owner, repo)?;
        github.auth = Auth::App {
            provider,
            installation,
        };
        Ok(github)
    }

    /// Replaces the retry rule (tests keep waits short).
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitHub {
        self.api.retry = retry;
        self
    }

    /// Replaces the clock used to read rate-limit reset times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> GitHub {
        self.api.clock = clock;
        self
    }

    fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    async fn authorization(&self) -> Result<Option<String>, ForgeError> {
        Ok(match &self.auth {
            Auth::None => None,
            Auth::Token(t) => Some(format!("Bearer {t}")),
            Auth::App {
                provider,
                installation,
            } => Some(format!(
                "Bearer {}",
                provider.installation_token(*installation).await?
            )),
        })
    }

    async fn call(&self, call: Call<'_>) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        let auth = self.authorization().await?;
        self.api.send(&call, auth.as_deref()).await
    }

    async fn call_json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ForgeError> {
        let operation = call.operation.to_string();
        let (_, body) = self.call(call).await?;
        decode(&operation, &body)
    }

    fn pr_not_found(&self, number: u64) -> String {
        format!("pull request #{number} (or repository {})", self.slug())
    }

    fn repo_not_found(&self) -> String {
        format!("repository {}", self.slug())
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, ForgeError> {
        let operation = format!("find open pull request {head} -> {base} in {}", self.slug());
        let path = format!(
            "/repos/{}/{}/pulls?state=open&head={}&base={}&per_page=100",
            self.owner,
            self.repo,
            query_value(&format!("{}:{head}", self.owner)),
            query_value(base)
        );
        let pulls: Vec<WirePull> = self
            .call_json(Call {
                operation: &operation,
                not_found: &self.repo_not_found(),
                method: Method::GET,
                path: &path,
                body: None,
            })
            .await?;
        Ok(pulls
            .into_iter()
            .map(WirePull::into_pull_request)
            .find(|pr| pr.open && pr.head_branch == head && pr.base_branch == base))
    }

    async fn login(&self) -> Result<String, ForgeError> {
        let login = self
            .login
            .get_or_try_init(|| async {
                match &self.auth {
                    Auth::App { provider, .. } => provider.bot_login().await,
                    _ => {
                        let user: WireUser = self
                            .call_json(Call {
                                operation: "read the token's user (GET /user)",
                                not_found: "the authenticated user",
                                method: Method::GET,
                                path: "/user",
                                body: None,
                            })
                            .await?;
                        Ok(user.login)
                    }
                }
            })
            .await?;
        Ok(login.clone())
    }
}

impl Forge for GitHub {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn set_commit_status<'a>(&'a self, status: &'a CommitStatus) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let operation = format!(
                "set status {:?} on {}@{}",
                status.context,
                self.slug(),
                status.sha
            );
            let mut body = json!({
                "state": status.state.as_str(),
                "context": status.context,
                "description": one_line(&status.description),
            });
            if let Some(url) = &status.target_url {
                body["target_url"] = json!(url);
            }
            self.call(Call {
                operation: &operation,
                not_found: &format!("commit {} (or repository {})", status.sha, self.slug()),
                method: Method::POST,
                path: &format!(
                    "/repos/{}/{}/statuses/{}",
                    self.owner, self.repo, status.sha
                ),
                body: Some(&body),
            })
            .await?;
            info!(commit = %status.sha, context = %status.context, state = ?status.state, "commit status sent");
            Ok(())
        })
    }

    fn combined_status<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, CombinedStatus> {
        Box::pin(async move {
            let operation = format!("read combined status of {}@{sha}", self.slug());
            let wire: WireCombined = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &format!("commit {sha} (or repository {})", self.slug()),
                    method: Method::GET,
                    path: &format!(
                        "/repos/{}/{}/commits/{sha}/status?per_page=100",
                        self.owner, self.repo
                    ),
                    body: None,
                })
                .await?;
            wire.into_combined(&operation)
        })
    }

    fn check_runs<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, Vec<CheckRun>> {
        Box::pin(async move {
            let operation = format!("read check runs of {}@{sha}", self.slug());
            let mut runs: Vec<CheckRun> = Vec::new();
            // Paginated: pages of 100 until `total_count` runs are read or a
            // page is empty; more than 1,000 runs is an error.
            for page in 1..=CHECK_RUN_PAGES {
                let wire: WireCheckRuns = self
                    .call_json(Call {
                        operation: &operation,
                        not_found: &format!("commit {sha} (or repository {})", self.slug()),
                        method: Method::GET,
                        path: &format!(
                            "/repos/{}/{}/commits/{sha}/check-runs?filter=latest&per_page=100&page={page}",
                            self.owner, self.repo
                        ),
                        body: None,
                    })
                    .await?;
                let empty = wire.check_runs.is_empty();
                runs.extend(wire.check_runs.into_iter().map(|r| CheckRun {
                    name: r.name,
                    status: r.status,
                    conclusion: r.conclusion,
                }));
                if empty || runs.len() as u64 >= wire.total_count {
                    return Ok(runs);
                }
            }
            // Runs left unread could be failures: never call that green.
            Err(ForgeError::api(
                &operation,
                format!("more than {} check runs", runs.len()),
            ))
        })
    }

    fn find_open_pull_request<'a>(
        &'a self,
        head: &'a str,
        base: &'a str,
    ) -> ForgeFuture<'a, Option<PullRequest>> {
        Box::pin(self.find_open(head, base))
    }

    fn pull_request_reviews<'a>(&'a self, number: u64) -> ForgeFuture<'a, Vec<PullReview>> {
        Box::pin(async move {
            let operation = format!(
                "read the reviews of pull request #{number} in {}",
                self.slug()
            );
            let reviews: Vec<WireReview> = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &self.repo_not_found(),
                    method: Method::GET,
                    path: &format!(
                        "/repos/{}/{}/pulls/{number}/reviews?per_page=100",
                        self.owner, self.repo
                    ),
                    body: None,
                })
                .await?;
            Ok(reviews.into_iter().map(WireReview::into_review).collect())
        })
    }

    fn create_pull_request<'a>(&'a self, new: &'a NewPullRequest) -> ForgeFuture<'a, Opened> {
        Box::pin(async move {
            let operation = format!(
                "open pull request {} -> {} in {}",
                new.head,
                new.base,
                self.slug()
            );
            let body = json!({
                "title": new.title,
                "body": new.body,
                "head": new.head,
                "base": new.base,
                "draft": new.draft,
            });
            let result = self
                .call_json::<WirePull>(Call {
                    operation: &operation,
                    not_found: &self.repo_not_found(),
                    method: Method::POST,
                    path: &format!("/repos/{}/{}/pulls", self.owner, self.repo),
                    body: Some(&body),
                })
                .await;
            match result {
                Ok(pr) => {
                    let pr = pr.into_pull_request();
                    info!(pull_request = pr.number, head = %new.head, base = %new.base, "pull request opened");
                    Ok(Opened::Created(pr))
                }
                Err(ForgeError::Validation { errors, .. })
                    if errors
                        .iter()
                        .any(|e| e.starts_with("A pull request already exists")) =>
                {
                    match self.find_open(&new.head, &new.base).await? {
                        Some(pr) => Ok(Opened::AlreadyOpen(pr)),
                        None => Err(ForgeError::api(
                            &operation,
                            "GitHub says a pull request already exists, but none is open for this head and base",
                        )),
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    fn update_pull_request<'a>(
        &'a self,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> ForgeFuture<'a, PullRequest> {
        Box::pin(async move {
            let operation = format!("update pull request #{number} in {}", self.slug());
            let pr: WirePull = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &self.pr_not_found(number),
                    method: Method::PATCH,
                    path: &format!("/repos/{}/{}/pulls/{number}", self.owner, self.repo),
                    body: Some(&json!({ "title": title, "body": body })),
                })
                .await?;
            Ok(pr.into_pull_request())
        })
    }

    fn close_pull_request<'a>(&'a self, number: u64, comment: &'a str) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let operation = format!("close pull request #{number} in {}", self.slug());
            if !comment.trim().is_empty() {
                self.call(Call {
                    operation: &operation,
                    not_found: &self.pr_not_found(number),
                    method: Method::POST,
                    path: &format!(
                        "/repos/{}/{}/issues/{number}/comments",
                        self.owner, self.repo
                    ),
                    body: Some(&json!({ "body": comment })),
                })
                .await?;
            }
            self.call(Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::PATCH,
                path: &format!("/repos/{}/{}/pulls/{number}", self.owner, self.repo),
                body: Some(&json!({ "state": "closed" })),
            })
            .await?;
            info!(pull_request = number, "pull request closed");
            Ok(())
        })
    }

    fn request_reviewers<'a>(
        &'a self,
        number: u64,
        users: &'a [String],
        teams: &'a [String],
    ) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let bot = if users.is_empty() {
                String::new()
            } else {
                self.login().await?
            };
            let users = without_bot(users, &bot);
            if users.is_empty() && teams.is_empty() {
                return Ok(());
            }
            let operation = format!(
                "request reviewers on pull request #{number} in {}",
                self.slug()
            );
            self.call(Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::POST,
                path: &format!(
                    "/repos/{}/{}/pulls/{number}/requested_reviewers",
                    self.owner, self.repo
                ),
                body: Some(&json!({ "reviewers": users, "team_reviewers": teams })),
            })
            .await?;
            Ok(())
        })
    }

    fn add_labels<'a>(&'a self, number: u64, labels: &'a [String]) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            if labels.is_empty() {
                return Ok(());
            }
            let operation = format!("add labels to pull request #{number} in {}", self.slug());
            self.call(Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::POST,
                path: &format!("/repos/{}/{}/issues/{number}/labels", self.owner, self.repo),
                body: Some(&json!({ "labels": labels })),
            })
            .await?;
            Ok(())
        })
    }

    fn enable_auto_merge<'a>(
        &'a self,
        pr: &'a PullRequest,
        method: MergeMethod,
    ) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let operation = format!(
                "enable auto-merge on pull request #{} in {}",
                pr.number,
                self.slug()
            );
            if pr.node_id.is_empty() {
                return Err(ForgeError::api(
                    &operation,
                    "the pull request has no node id",
                ));
            }
            let body = json!({
                "query": "mutation($id: ID!, $method: PullRequestMergeMethod!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) { pullRequest { number } } }",
                "variables": { "id": pr.node_id, "method": method.as_str().to_uppercase() },
            });
            let auth = self.authorization().await?;
            let (_, answer) = self
                .api
                .send_graphql(
                    &Call {
                        operation: &operation,
                        not_found: "the GraphQL endpoint",
                        method: Method::POST,
                        path: "",
                        body: Some(&body),
                    },
                    auth.as_deref(),
                )
                .await?;
            let answer: WireGraphql = decode(&operation, &answer)?;
            if !answer.errors.is_empty() {
                return Err(ForgeError::Validation {
                    operation,
                    message: "GraphQL enablePullRequestAutoMerge failed".into(),
                    errors: answer.errors.into_iter().map(|e| e.message).collect(),
                });
            }
            info!(pull_request = pr.number, "auto-merge enabled");
            Ok(())
        })
    }

    fn merge_pull_request<'a>(
        &'a self,
        number: u64,
        sha: &'a str,
        method: MergeMethod,
    ) -> ForgeFuture<'a, String> {
        Box::pin(async move {
            let operation = format!("merge pull request #{number} at {sha} in {}", self.slug());
            let merged: WireMerge = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &self.pr_not_found(number),
                    method: Method::PUT,
                    path: &format!("/repos/{}/{}/pulls/{number}/merge", self.owner, self.repo),
                    body: Some(&json!({ "sha": sha, "merge_method": method.as_str() })),
                })
                .await?;
            if !merged.merged {
                return Err(ForgeError::api(&operation, merged.message));
            }
            info!(pull_request = number, commit = %merged.sha, "pull request merged");
            Ok(merged.sha)
        })
    }

    fn compare<'a>(
        &'a self,
        owner: &'a str,
        repo: &'a str,
        base: &'a str,
        head: &'a str,
    ) -> ForgeFuture<'a, Comparison> {
        Box::pin(async move {
            let operation = format!("compare {owner}/{repo} {base}...{head}");
            let wire: WireComparison = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &format!(
                        "repository {owner}/{repo} or one of the revisions {base}, {head}"
                    ),
                    method: Method::GET,
                    path: &format!(
                        "/repos/{owner}/{repo}/compare/{}...{}?per_page=250",
                        query_value(base),
                        query_value(head)
                    ),
                    body: None,
                })
                .await?;
            Ok(wire.into_comparison())
        })
    }

    fn create_deployment<'a>(&'a self, new: &'a NewDeployment) -> ForgeFuture<'a, u64> {
        Box::pin(async move {
            let operation = format!(
                "create deployment of {}@{} to {}",
                self.slug(),
                new.sha,
                new.environment
            );
            let body = json!({
                "ref": new.sha,
                "environment": new.environment,
                "description": one_line(&new.description),
                "auto_merge": false,
                "required_contexts": [],
            });
            let deployment: WireId = self
                .call_json(Call {
                    operation: &operation,
                    not_found: &format!("commit {} (or repository {})", new.sha, self.slug()),
                    method: Method::POST,
                    path: &format!("/repos/{}/{}/deployments", self.owner, self.repo),
                    body: Some(&body),
                })
                .await?;
            info!(deployment = deployment.id, commit = %new.sha, target = %new.environment, "deployment created");
            Ok(deployment.id)
        })
    }

    fn create_deployment_status<'a>(
        &'a self,
        deployment: u64,
        status: &'a DeploymentStatus,
    ) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            let operation = format!(
                "set deployment {deployment} status {} in {}",
                status.state.as_str(),
                self.slug()
            );
            let mut body = json!({
                "state": status.state.as_str(),
                "description": one_line(&status.description),
            });
            if let Some(url) = &status.log_url {
                body["log_url"] = json!(url);
            }
            self.call(Call {
                operation: &operation,
                not_found: &format!("deployment {deployment} (or repository {})", self.slug()),
                method: Method::POST,
                path: &format!(
                    "/repos/{}/{}/deployments/{deployment}/statuses",
                    self.owner, self.repo
                ),
                body: Some(&body),
            })
            .await?;
            info!(
                deployment,
                state = status.state.as_str(),
                "deployment status sent"
            );
            Ok(())
        })
    }

    fn bot_login(&self) -> ForgeFuture<'_, String> {
        Box::pin(self.login())
    }
}

/// `users` without the bot (logins compare case-insensitively), in order, once each.
pub(crate) fn without_bot(users: &[String], bot: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in users {
        let u = u.trim();
        if u.is_empty() || u.eq_ignore_ascii_case(bot) {
            continue;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(u)) {
            out.push(u.to_string());
        }
    }
    out
}

/// A pull request review as GitHub and Gitea send it.
#[derive(Debug, Deserialize)]
pub(crate) struct WireReview {
    #[serde(default)]
    pub user: Option<WireUser>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub commit_id: Option<String>,
}

impl WireReview {
    pub(crate) fn into_review(self) -> super::PullReview {
        super::PullReview {
            reviewer: self.user.map(|u| u.login).unwrap_or_default(),
            state: self.state.unwrap_or_default().to_ascii_uppercase(),
            commit: self.commit_id.unwrap_or_default(),
        }
    }
}

/// A pull request as GitHub and Gitea send it (the fields capstan reads).
#[derive(Debug, Deserialize)]
pub(crate) struct WirePull {
    pub number: u64,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub merged: Option<bool>,
    #[serde(default)]
    pub merged_at: Option<String>,
    pub head: WireRef,
    pub base: WireRef,
    #[serde(default)]
    pub user: Option<WireUser>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireRef {
    #[serde(rename = "ref")]
    pub name: String,
    #[serde(default)]
    pub sha: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUser {
    pub login: String,
}

impl WirePull {
    pub(crate) fn into_pull_request(self) -> PullRequest {
        let open = self.state.as_deref() == Some("open");
        PullRequest {
            number: self.number,
            node_id: self.node_id.unwrap_or_default(),
            html_url: self.html_url.unwrap_or_default(),
            title: self.title.unwrap_or_default(),
            body: self.body.unwrap_or_default(),
            head_branch: self.head.name,
            head_sha: self.head.sha.unwrap_or_default(),
            base_branch: self.base.name,
            open,
            // List answers carry no `merged`; a closed PR with `merged_at` was merged.
            merged: self.merged.unwrap_or(!open && self.merged_at.is_some()),
            draft: self.draft.unwrap_or(false),
            author: self.user.map(|u| u.login),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireCombined {
    state: String,
    #[serde(default)]
    statuses: Vec<WireStatus>,
}

/// At most this many pages of 100 check runs are read for one commit.
const CHECK_RUN_PAGES: u32 = 10;

#[derive(Debug, Deserialize)]
struct WireCheckRuns {
    total_count: u64,
    #[serde(default)]
    check_runs: Vec<WireCheckRun>,
}

#[derive(Debug, Deserialize)]
struct WireCheckRun {
    name: String,
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireStatus {
    pub context: String,
    #[serde(alias = "status")]
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl WireCombined {
    fn into_combined(self, operation: &str) -> Result<CombinedStatus, ForgeError> {
        let state = CommitState::parse(&self.state).ok_or_else(|| {
            ForgeError::api(
                operation,
                format!("unknown combined state {:?}", self.state),
            )
        })?;
        Ok(CombinedStatus {
            state,
            statuses: self
                .statuses
                .into_iter()
                .map(|s| ContextState {
                    state: CommitState::parse(&s.state).unwrap_or(CommitState::Error),
                    context: s.context,
                    description: s.description.unwrap_or_default(),
                })
                .collect(),
        })
    }
}

#[derive(Debug, Deserialize)]
struct WireComparison {
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    total_commits: u64,
    #[serde(default)]
    commits: Vec<WireCompareCommit>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireCompareCommit {
    pub sha: String,
    pub commit: WireGitCommit,
    #[serde(default)]
    pub author: Option<WireUser>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireGitCommit {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub author: Option<WireSignature>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireSignature {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
}

impl WireCompareCommit {
    pub(crate) fn into_commit(self) -> CompareCommit {
        let signature = self.commit.author.unwrap_or(WireSignature {
            name: String::new(),
            email: String::new(),
        });
        CompareCommit {
            sha: self.sha,
            summary: summary_line(&self.commit.message),
            author_login: self.author.map(|a| a.login),
            author_name: signature.name,
            author_email: signature.email,
        }
    }
}

impl WireComparison {
    fn into_comparison(self) -> Comparison {
        Comparison {
            html_url: self.html_url,
            total_commits: self.total_commits,
            commits: self
                .commits
                .into_iter()
                .map(WireCompareCommit::into_commit)
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireId {
    id: u64,
}

#[derive(Debug, Deserialize)]
struct WireMerge {
    #[serde(default)]
    sha: String,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct WireGraphql {
    #[serde(default)]
    errors: Vec<WireGraphqlError>,
}

#[derive(Debug, Deserialize)]
struct WireGraphqlError {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bot_and_duplicates_are_dropped_from_reviewers() {
        let users = ["alice", "capstan[bot]", "Alice", "bob", " "].map(String::from);
        assert_eq!(without_bot(&users, "Capstan[bot]"), ["alice", "bob"]);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query_value("acme:capstan/a+b#c"), "acme:capstan/a%2Bb%23c");
    }
}
