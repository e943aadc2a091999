//! Gitea through its REST API v1 (`/api/v1`), which mirrors GitHub's closely.
//!
//! Supported: commit statuses (set, combined), pull requests (find by head,
//! open, update, close with a comment, reviewers, labels, merge, auto-merge via
//! `merge_when_checks_succeed`), compare (Gitea 1.22+, `compare/{base}...{head}`)
//! and the token's login. Differences handled here: a duplicate pull request is
//! a 409, labels are added by id (looked up by name first), the token is sent as
//! `Authorization: token …`, and Gitea has no filter by head, so open pull
//! requests are listed page by page. Gitea has no deployments API:
//! `supports_deployments` is false and the deployment calls return
//! `ForgeError::Unsupported` without any request.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::info;

use super::clock::{Clock, SystemClock};
use super::error::{ForgeError, RetryPolicy, classify, retry};
use super::github::{
    WireCompareCommit, WirePull, WireReview, WireStatus, WireUser, decode, query_value, without_bot,
};
use super::{
    CombinedStatus, CommitState, CommitStatus, Comparison, ContextState, DeploymentStatus, Forge,
    ForgeFuture, MergeMethod, NewDeployment, NewPullRequest, Opened, PullRequest, PullReview,
    one_line,
};
use crate::registry::transport::{error_chain, tls_config};

/// Pages of open pull requests read while looking for a head branch.
const MAX_PAGES: u32 = 20;
const PAGE_SIZE: u32 = 50;

/// One repository on a Gitea server.
#[derive(Clone)]
pub struct Gitea {
    http: reqwest::Client,
    /// `https://gitea.example.com/api/v1`, no trailing slash.
    api: String,
    token: Option<String>,
    owner: String,
    repo: String,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    login: Arc<OnceCell<String>>,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitea")
            .field("api", &self.api)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

struct Call<'a> {
    operation: &'a str,
    not_found: &'a str,
    method: Method,
    path: &'a str,
    body: Option<&'a Value>,
}

impl Gitea {
    /// `api_url`: the API base, e.g. `https://gitea.example.com/api/v1`.
    pub fn new(
        api_url: &str,
        token: Option<String>,
        owner: &str,
        repo: &str,
    ) -> Result<Gitea, ForgeError> {
        let api = api_url.trim_end_matches('/').to_string();
        if !(api.starts_with("http://") || api.starts_with("https://")) {
            return Err(ForgeError::Config(format!(
                "Gitea API URL {api_url:?} must start with http:// or https://"
            )));
        }
        let tls = tls_config(None).map_err(ForgeError::Config)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("capstan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::Config(format!("Gitea client: {}", error_chain(&e))))?;
        Ok(Gitea {
            http,
            api,
            token,
            owner: owner.to_string(),
            repo: repo.to_string(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            login: Arc::new(OnceCell::new()),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Gitea {
        self.retry = retry;
        self
    }

    fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.repo)
    }

    fn pr_not_found(&self, number: u64) -> String {
        format!("pull request #{number} (or repository {})", self.slug())
    }

    async fn send(&self, call: &Call<'_>) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        retry(&self.retry, || self.send_once(call)).await
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<(StatusCode, Vec<u8>), ForgeError> {
        let transport = |e: &dyn std::error::Error| ForgeError::Transport {
            operation: call.operation.to_string(),
            message: error_chain(e),
        };
        let mut request = self
            .http
            .request(call.method.clone(), format!("{}{}", self.api, call.path))
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("token {token}"));
        }
        if let Some(body) = call.body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport(&e))?;
        if status.is_success() {
            return Ok((status, body.to_vec()));
        }
        let error = classify(
            call.operation,
            call.not_found,
            status,
            &headers,
            &body,
            self.clock.now(),
        );
        // Gitea answers a merge while it is still checking the pull request (or
        // merging another one) with 405 "Please try again later": transient.
        if status == StatusCode::METHOD_NOT_ALLOWED
            && String::from_utf8_lossy(&body).contains("try again later")
        {
            return Err(ForgeError::Server {
                operation: call.operation.to_string(),
                status: status.as_u16(),
                message: "Please try again later".into(),
            });
        }
        Err(error)
    }

    async fn send_json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, ForgeError> {
        let (_, body) = self.send(call).await?;
        decode(call.operation, &body)
    }

    async fn find_open(&self, head: &str, base: &str) -> Result<Option<PullRequest>, ForgeError> {
        let operation = format!("find open pull request {head} -> {base} in {}", self.slug());
        for page in 1..=MAX_PAGES {
            let path = self.repo_path(&format!("/pulls?state=open&page={page}&limit={PAGE_SIZE}"));
            let pulls: Vec<WirePull> = self
                .send_json(&Call {
                    operation: &operation,
                    not_found: &format!("repository {}", self.slug()),
                    method: Method::GET,
                    path: &path,
                    body: None,
                })
                .await?;
            let count = pulls.len();
            if let Some(pr) = pulls
                .into_iter()
                .map(WirePull::into_pull_request)
                .find(|pr| pr.open && pr.head_branch == head && pr.base_branch == base)
            {
                return Ok(Some(pr));
            }
            if count < PAGE_SIZE as usize {
                return Ok(None);
            }
        }
        Err(ForgeError::api(
            &operation,
            format!(
                "more than {} open pull requests; gave up looking",
                MAX_PAGES * PAGE_SIZE
            ),
        ))
    }

    async fn login(&self) -> Result<String, ForgeError> {
        let login = self
            .login
            .get_or_try_init(|| async {
                let user: WireUser = self
                    .send_json(&Call {
                        operation: "read the token's user (GET /user)",
                        not_found: "the authenticated user",
                        method: Method::GET,
                        path: "/user",
                        body: None,
                    })
                    .await?;
                Ok::<_, ForgeError>(user.login)
            })
            .await?;
        Ok(login.clone())
    }

    /// Label ids by name, all names required.
    async fn label_ids(&self, names: &[String], operation: &str) -> Result<Vec<u64>, ForgeError> {
        let mut known: Vec<WireLabel> = Vec::new();
        for page in 1..=MAX_PAGES {
            let batch: Vec<WireLabel> = self
                .send_json(&Call {
                    operation,
                    not_found: &format!("repository {}", self.slug()),
                    method: Method::GET,
                    path: &self.repo_path(&format!("/labels?page={page}&limit={PAGE_SIZE}")),
                    body: None,
                })
                .await?;
            let count = batch.len();
            known.extend(batch);
            if count < PAGE_SIZE as usize {
                break;
            }
        }
        names
            .iter()
            .map(|name| {
                known
                    .iter()
                    .find(|l| l.name == *name)
                    .map(|l| l.id)
                    .ok_or_else(|| {
                        ForgeError::api(
                            operation,
                            format!(
                                "label {name:?} does not exist in {} (Gitea adds labels by id; create it first)",
                                self.slug()
                            ),
                        )
                    })
            })
            .collect()
    }

    async fn merge(
        &self,
        number: u64,
        sha: &str,
        method: MergeMethod,
        when_checks_succeed: bool,
        operation: &str,
    ) -> Result<(), ForgeError> {
        self.send(&Call {
            operation,
            not_found: &self.pr_not_found(number),
            method: Method::POST,
            path: &self.repo_path(&format!("/pulls/{number}/merge")),
            body: Some(&json!({
                "Do": method.as_str(),
                "head_commit_id": sha,
                "merge_when_checks_succeed": when_checks_succeed,
            })),
        })
        .await?;
        Ok(())
    }

    /// `https://gitea.example.com` from `https://gitea.example.com/api/v1`.
    fn web_base(&self) -> &str {
        self.api.strip_suffix("/api/v1").unwrap_or(&self.api)
    }
}

#[derive(Debug, Deserialize)]
struct WireLabel {
    id: u64,
    name: String,
}

#[derive(Debug, Deserialize)]
struct WireCombined {
    #[serde(default)]
    state: String,
    #[serde(default)]
    statuses: Option<Vec<WireStatus>>,
}

#[derive(Debug, Deserialize)]
struct WireCompare {
    #[serde(default)]
    total_commits: u64,
    #[serde(default)]
    commits: Vec<WireCompareCommit>,
}

impl Forge for Gitea {
    fn kind(&self) -> &'static str {
        "gitea"
    }

    fn supports_deployments(&self) -> bool {
        false
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
            self.send(&Call {
                operation: &operation,
                not_found: &format!("commit {} (or repository {})", status.sha, self.slug()),
                method: Method::POST,
                path: &self.repo_path(&format!("/statuses/{}", status.sha)),
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
                .send_json(&Call {
                    operation: &operation,
                    not_found: &format!("commit {sha} (or repository {})", self.slug()),
                    method: Method::GET,
                    path: &self.repo_path(&format!("/commits/{sha}/status")),
                    body: None,
                })
                .await?;
            let statuses: Vec<ContextState> = wire
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(|s| ContextState {
                    state: CommitState::parse(&s.state).unwrap_or(CommitState::Error),
                    context: s.context,
                    description: s.description.unwrap_or_default(),
                })
                .collect();
            // Gitea reports "" (or "pending") when no status exists.
            let state = CommitState::parse(&wire.state).unwrap_or(CommitState::Pending);
            Ok(CombinedStatus { state, statuses })
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
                .send_json(&Call {
                    operation: &operation,
                    not_found: &format!("pull request #{number} in {}", self.slug()),
                    method: Method::GET,
                    path: &self.repo_path(&format!("/pulls/{number}/reviews?limit=50")),
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
            // Gitea marks drafts by a `WIP:` title prefix.
            let title = if new.draft {
                format!("WIP: {}", new.title)
            } else {
                new.title.clone()
            };
            let result = self
                .send_json::<WirePull>(&Call {
                    operation: &operation,
                    not_found: &format!("repository {}", self.slug()),
                    method: Method::POST,
                    path: &self.repo_path("/pulls"),
                    body: Some(&json!({
                        "title": title,
                        "body": new.body,
                        "head": new.head,
                        "base": new.base,
                    })),
                })
                .await;
            match result {
                Ok(pr) => {
                    let pr = pr.into_pull_request();
                    info!(pull_request = pr.number, head = %new.head, base = %new.base, "pull request opened");
                    Ok(Opened::Created(pr))
                }
                Err(ForgeError::Conflict { .. }) => {
                    match self.find_open(&new.head, &new.base).await? {
                        Some(pr) => Ok(Opened::AlreadyOpen(pr)),
                        None => Err(ForgeError::api(
                            &operation,
                            "Gitea says the pull request exists, but none is open for this head and base",
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
                .send_json(&Call {
                    operation: &operation,
                    not_found: &self.pr_not_found(number),
                    method: Method::PATCH,
                    path: &self.repo_path(&format!("/pulls/{number}")),
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
                self.send(&Call {
                    operation: &operation,
                    not_found: &self.pr_not_found(number),
                    method: Method::POST,
                    path: &self.repo_path(&format!("/issues/{number}/comments")),
                    body: Some(&json!({ "body": comment })),
                })
                .await?;
            }
            self.send(&Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::PATCH,
                path: &self.repo_path(&format!("/pulls/{number}")),
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
            self.send(&Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::POST,
                path: &self.repo_path(&format!("/pulls/{number}/requested_reviewers")),
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
            let ids = self.label_ids(labels, &operation).await?;
            self.send(&Call {
                operation: &operation,
                not_found: &self.pr_not_found(number),
                method: Method::POST,
                path: &self.repo_path(&format!("/issues/{number}/labels")),
                body: Some(&json!({ "labels": ids })),
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
            self.merge(pr.number, &pr.head_sha, method, true, &operation)
                .await?;
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
            self.merge(number, sha, method, false, &operation).await?;
            let merged: WireMerged = {
                let (_, body) = self
                    .send(&Call {
                        operation: &operation,
                        not_found: &self.pr_not_found(number),
                        method: Method::GET,
                        path: &self.repo_path(&format!("/pulls/{number}")),
                        body: None,
                    })
                    .await?;
                decode(&operation, &body)?
            };
            let sha = merged.merge_commit_sha.unwrap_or_default();
            info!(pull_request = number, commit = %sha, "pull request merged");
            Ok(sha)
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
            let wire: WireCompare = self
                .send_json(&Call {
                    operation: &operation,
                    not_found: &format!(
                        "repository {owner}/{repo} or one of the revisions {base}, {head} (compare needs Gitea 1.22+)"
                    ),
                    method: Method::GET,
                    path: &format!(
                        "/repos/{owner}/{repo}/compare/{}...{}",
                        query_value(base),
                        query_value(head)
                    ),
                    body: None,
                })
                .await?;
            Ok(Comparison {
                html_url: format!("{}/{owner}/{repo}/compare/{base}...{head}", self.web_base()),
                total_commits: wire.total_commits,
                commits: wire
                    .commits
                    .into_iter()
                    .map(WireCompareCommit::into_commit)
                    .collect(),
            })
        })
    }

    fn create_deployment<'a>(&'a self, new: &'a NewDeployment) -> ForgeFuture<'a, u64> {
        Box::pin(async move {
            Err(ForgeError::Unsupported {
                operation: format!("create deployment of {} to {}", new.sha, new.environment),
                forge: "Gitea (no deployments API)".into(),
            })
        })
    }

    fn create_deployment_status<'a>(
        &'a self,
        deployment: u64,
        _status: &'a DeploymentStatus,
    ) -> ForgeFuture<'a, ()> {
        Box::pin(async move {
            Err(ForgeError::Unsupported {
                operation: format!("set deployment {deployment} status"),
                forge: "Gitea (no deployments API)".into(),
            })
        })
    }

    fn bot_login(&self) -> ForgeFuture<'_, String> {
        Box::pin(self.login())
    }
}

#[derive(Debug, Deserialize)]
struct WireMerged {
    #[serde(default)]
    merge_commit_sha: Option<String>,
}
