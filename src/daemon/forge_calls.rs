//! A [`Forge`] that counts its calls in `capstan_forge_calls_total`: the
//! pull-request pass of the image-update loop goes through it, so every
//! call it makes (find, open, update, close, reviewers, labels, compare, the
//! bot's login) is counted by operation and result, like the sync loop's
//! statuses and deployments.

use std::sync::Arc;

use super::metrics::Metrics;
use crate::forge::{
    CheckRun, CombinedStatus, CommitStatus, Comparison, DeploymentStatus, Forge, ForgeFuture,
    MergeMethod, NewDeployment, NewPullRequest, Opened, PullRequest, PullReview,
};

/// Wraps a forge; each call is counted once (after the forge's own retries).
#[derive(Debug, Clone)]
pub struct CountedForge {
    inner: Arc<dyn Forge>,
    metrics: Arc<Metrics>,
}

impl CountedForge {
    pub fn new(inner: Arc<dyn Forge>, metrics: Arc<Metrics>) -> CountedForge {
        CountedForge { inner, metrics }
    }

    fn counted<'a, T: Send + 'a>(
        &'a self,
        operation: &'static str,
        call: ForgeFuture<'a, T>,
    ) -> ForgeFuture<'a, T> {
        Box::pin(async move {
            let result = call.await;
            self.metrics.forge_call(operation, result.is_ok());
            result
        })
    }
}

impl Forge for CountedForge {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn supports_deployments(&self) -> bool {
        self.inner.supports_deployments()
    }

    fn set_commit_status<'a>(&'a self, status: &'a CommitStatus) -> ForgeFuture<'a, ()> {
        self.counted("commit_status", self.inner.set_commit_status(status))
    }

    fn combined_status<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, CombinedStatus> {
        self.counted("combined_status", self.inner.combined_status(sha))
    }

    fn check_runs<'a>(&'a self, sha: &'a str) -> ForgeFuture<'a, Vec<CheckRun>> {
        self.counted("check_runs", self.inner.check_runs(sha))
    }

    fn find_open_pull_request<'a>(
        &'a self,
        head: &'a str,
        base: &'a str,
    ) -> ForgeFuture<'a, Option<PullRequest>> {
        self.counted(
            "find_pull_request",
            self.inner.find_open_pull_request(head, base),
        )
    }

    fn pull_request_reviews<'a>(&'a self, number: u64) -> ForgeFuture<'a, Vec<PullReview>> {
        self.counted(
            "pull_request_reviews",
            self.inner.pull_request_reviews(number),
        )
    }

    fn create_pull_request<'a>(&'a self, new: &'a NewPullRequest) -> ForgeFuture<'a, Opened> {
        self.counted("open_pull_request", self.inner.create_pull_request(new))
    }

    fn update_pull_request<'a>(
        &'a self,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> ForgeFuture<'a, PullRequest> {
        self.counted(
            "update_pull_request",
            self.inner.update_pull_request(number, title, body),
        )
    }

    fn close_pull_request<'a>(&'a self, number: u64, comment: &'a str) -> ForgeFuture<'a, ()> {
        self.counted(
            "close_pull_request",
            self.inner.close_pull_request(number, comment),
        )
    }

    fn request_reviewers<'a>(
        &'a self,
        number: u64,
        users: &'a [String],
        teams: &'a [String],
    ) -> ForgeFuture<'a, ()> {
        self.counted(
            "request_reviewers",
            self.inner.request_reviewers(number, users, teams),
        )
    }

    fn add_labels<'a>(&'a self, number: u64, labels: &'a [String]) -> ForgeFuture<'a, ()> {
        self.counted("add_labels", self.inner.add_labels(number, labels))
    }

    fn enable_auto_merge<'a>(
        &'a self,
        pr: &'a PullRequest,
        method: MergeMethod,
    ) -> ForgeFuture<'a, ()> {
        self.counted(
            "enable_auto_merge",
            self.inner.enable_auto_merge(pr, method),
        )
    }

    fn merge_pull_request<'a>(
        &'a self,
        number: u64,
        sha: &'a str,
        method: MergeMethod,
    ) -> ForgeFuture<'a, String> {
        self.counted(
            "merge_pull_request",
            self.inner.merge_pull_request(number, sha, method),
        )
    }

    fn compare<'a>(
        &'a self,
        owner: &'a str,
        repo: &'a str,
        base: &'a str,
        head: &'a str,
    ) -> ForgeFuture<'a, Comparison> {
        self.counted("compare", self.inner.compare(owner, repo, base, head))
    }

    fn create_deployment<'a>(&'a self, new: &'a NewDeployment) -> ForgeFuture<'a, u64> {
        self.counted("deployment", self.inner.create_deployment(new))
    }

    fn create_deployment_status<'a>(
        &'a self,
        deployment: u64,
        status: &'a DeploymentStatus,
    ) -> ForgeFuture<'a, ()> {
        self.counted(
            "deployment_status",
            self.inner.create_deployment_status(deployment, status),
        )
    }

    fn bot_login(&self) -> ForgeFuture<'_, String> {
        self.counted("bot_login", self.inner.bot_login())
    }
}
