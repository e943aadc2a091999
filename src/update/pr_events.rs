//! Reactions to GitHub webhook events in `pull-request` mode, as pure
//! functions; the daemon's HTTP server verifies the signature, then calls
//! [`parse`] and [`react`], and carries out the [`Reaction`].
//!
//! - `pull_request_review` *approved* on one of Capstan's pull requests, with
//!   `update.pullRequest.autoMerge` on → merge the approved commit, if its
//!   combined status and check runs are green ([`should_merge_checks`]).
//! - `status` *success* (or `check_suite` *completed* with conclusion
//!   *success*) for a commit that is the head of a Capstan branch, with
//!   `update.pullRequest.autoMerge` on → find the open pull request of that
//!   branch; when its head is still that commit and it is approved at that
//!   commit ([`approved_at`]), merge it there if it is green ([`should_merge_checks`]).
//! - `pull_request` *closed* and merged into the base branch → sync now.
//! - `push` to the base branch → sync now.
//!
//! Everything else is ignored with a reason. A payload that lacks a field
//! these rules read is an error naming the field (`pull_request.base.ref`),
//! never a panic.

use serde_json::Value;

use crate::forge::{CheckRun, CombinedStatus, Forge, ForgeError, MergeMethod};

/// A webhook payload that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("`{event}` payload is not JSON: {reason}")]
    NotJson { event: String, reason: String },
    #[error("`{event}` payload: field `{field}` is missing")]
    Missing { event: String, field: String },
    #[error("`{event}` payload: field `{field}` must be {expected}")]
    WrongType {
        event: String,
        field: String,
        expected: &'static str,
    },
}

/// The events this module understands, with the fields it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Review(Review),
    PullRequestClosed(Closed),
    Push(Push),
    Status(Status),
    CheckSuite(CheckSuite),
    /// Another event or action; the reason says which.
    Other(String),
}

/// `pull_request_review` with action `submitted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub repository: String,
    /// Lowercase: `approved`, `commented`, `changes_requested`.
    pub state: String,
    pub reviewer: String,
    /// The commit the review is about.
    pub commit: String,
    pub number: u64,
    pub head_branch: String,
    pub base_branch: String,
    pub open: bool,
}

/// `pull_request` with action `closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub repository: String,
    pub number: u64,
    pub merged: bool,
    pub base_branch: String,
    pub head_branch: String,
    pub merge_commit: Option<String>,
}

/// `push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub repository: String,
    /// `refs/heads/main`, `refs/tags/v1`.
    pub git_ref: String,
    pub after: String,
    pub deleted: bool,
}

/// `status`: a commit status changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub repository: String,
    pub sha: String,
    /// `pending`, `success`, `failure`, `error`.
    pub state: String,
    pub context: String,
    /// Branches that contain `sha` (at most 10), each with its head commit.
    pub branches: Vec<BranchHead>,
}

/// A branch and its head commit, as listed in a `status` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchHead {
    pub name: String,
    pub head: String,
}

/// `check_suite` with action `completed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSuite {
    pub repository: String,
    pub sha: String,
    /// `null` when the suite ran on a commit no branch points to (e.g. a fork).
    pub head_branch: Option<String>,
    /// `success`, `failure`, `neutral`, … (`null` while running).
    pub conclusion: Option<String>,
}

/// What the configuration says about the repository.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// `owner/repo` of the manifests repository.
    pub repository: &'a str,
    pub base_branch: &'a str,
    /// `update.branch` (with `{policy}`): Capstan's head branches.
    pub branch_template: &'a str,
    pub auto_merge: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Merge pull request `number` at `sha` if it is green (statuses and check runs).
    MergeIfGreen {
        number: u64,
        sha: String,
        policy: String,
    },
    /// `sha` finished green: for each branch (Capstan's, with `sha` at its
    /// head), merge its open pull request at `sha` when it is approved there
    /// and it is green (statuses and check runs).
    MergeIfApproved {
        sha: String,
        /// `(policy, branch)`.
        branches: Vec<(String, String)>,
    },
    /// Run the sync loop now (the base branch moved).
    TriggerSync {
        commit: String,
        reason: String,
    },
    Nothing(String),
}

/// Parses a payload by its `X-GitHub-Event` name.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, PayloadError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| PayloadError::NotJson {
        event: event.into(),
        reason: e.to_string(),
    })?;
    let p = Payload {
        event,
        value: &value,
    };
    match event {
        "pull_request_review" => {
            let action = p.str("action")?;
            if action != "submitted" {
                return Ok(Event::Other(format!("pull_request_review `{action}`")));
            }
            Ok(Event::Review(Review {
                repository: p.str("repository.full_name")?.into(),
                state: p.str("review.state")?.to_ascii_lowercase(),
                reviewer: p.str("review.user.login")?.into(),
                commit: p.str("review.commit_id")?.into(),
                number: p.u64("pull_request.number")?,
                head_branch: p.str("pull_request.head.ref")?.into(),
                base_branch: p.str("pull_request.base.ref")?.into(),
                open: p.str("pull_request.state")? == "open",
            }))
        }
        "pull_request" => {
            let action = p.str("action")?;
            if action != "closed" {
                return Ok(Event::Other(format!("pull_request `{action}`")));
            }
            Ok(Event::PullRequestClosed(Closed {
                repository: p.str("repository.full_name")?.into(),
                number: p.u64("pull_request.number")?,
                merged: p.bool("pull_request.merged")?,
                base_branch: p.str("pull_request.base.ref")?.into(),
                head_branch: p.str("pull_request.head.ref")?.into(),
                merge_commit: p
                    .opt_str("pull_request.merge_commit_sha")?
                    .map(str::to_string),
            }))
        }
        "push" => Ok(Event::Push(Push {
            repository: p.str("repository.full_name")?.into(),
            git_ref: p.str("ref")?.into(),
            after: p.str("after")?.into(),
            // Gitea's push payload has no `deleted`; a deleted branch's `after`
            // is all zeros there (and on GitHub).
            deleted: match p.opt_bool("deleted")? {
                Some(deleted) => deleted,
                None => p.str("after")?.bytes().all(|b| b == b'0'),
            },
        })),
        "status" => {
            // Gitea's `status` payload has no `branches`: then no branch head
            // is known and nothing is merged.
            let empty = Vec::new();
            let list = match p.get("branches") {
                Ok(Value::Null) | Err(PayloadError::Missing { .. }) => &empty,
                Ok(v) => v
                    .as_array()
                    .ok_or_else(|| p.wrong("branches", "an array"))?,
                Err(e) => return Err(e),
            };
            let mut branches = Vec::with_capacity(list.len());
            for (i, branch) in list.iter().enumerate() {
                let b = Payload {
                    event,
                    value: branch,
                };
                let at = |field: &str| -> Result<String, PayloadError> {
                    b.str(field).map(str::to_string).map_err(|e| match e {
                        PayloadError::Missing { .. } => PayloadError::Missing {
                            event: event.into(),
                            field: format!("branches.{i}.{field}"),
                        },
                        _ => p.wrong(&format!("branches.{i}.{field}"), "a string"),
                    })
                };
                branches.push(BranchHead {
                    name: at("name")?,
                    head: at("commit.sha")?,
                });
            }
            Ok(Event::Status(Status {
                repository: p.str("repository.full_name")?.into(),
                sha: p.str("sha")?.into(),
                state: p.str("state")?.to_ascii_lowercase(),
                context: p.opt_str("context")?.unwrap_or_default().into(),
                branches,
            }))
        }
        "check_suite" => {
            let action = p.str("action")?;
            if action != "completed" {
                return Ok(Event::Other(format!("check_suite `{action}`")));
            }
            Ok(Event::CheckSuite(CheckSuite {
                repository: p.str("repository.full_name")?.into(),
                sha: p.str("check_suite.head_sha")?.into(),
                head_branch: p.opt_str("check_suite.head_branch")?.map(str::to_string),
                conclusion: p
                    .opt_str("check_suite.conclusion")?
                    .map(str::to_ascii_lowercase),
            }))
        }
        other => Ok(Event::Other(format!("event `{other}`"))),
    }
}

/// The reaction to an event under the rules.
pub fn react(event: &Event, rules: &Rules<'_>) -> Reaction {
    let other_repo = |repo: &str| {
        (!repo.eq_ignore_ascii_case(rules.repository))
            .then(|| Reaction::Nothing(format!("event from `{repo}`, not `{}`", rules.repository)))
    };
    match event {
        Event::Other(what) => Reaction::Nothing(format!("{what} is not handled")),
        Event::Review(r) => {
            if let Some(n) = other_repo(&r.repository) {
                return n;
            }
            if r.state != "approved" {
                return Reaction::Nothing(format!("review state `{}`", r.state));
            }
            let Some(policy) = policy_of(rules.branch_template, &r.head_branch) else {
                return Reaction::Nothing(format!(
                    "`{}` is not a capstan branch (`{}`)",
                    r.head_branch, rules.branch_template
                ));
            };
            if r.base_branch != rules.base_branch {
                return Reaction::Nothing(format!(
                    "pull request into `{}`, not `{}`",
                    r.base_branch, rules.base_branch
                ));
            }
            if !r.open {
                return Reaction::Nothing(format!("pull request #{} is not open", r.number));
            }
            if !rules.auto_merge {
                return Reaction::Nothing("update.pullRequest.autoMerge is off".into());
            }
            Reaction::MergeIfGreen {
                number: r.number,
                sha: r.commit.clone(),
                policy: policy.to_string(),
            }
        }
        Event::Status(st) => {
            if let Some(n) = other_repo(&st.repository) {
                return n;
            }
            if st.state != "success" {
                return Reaction::Nothing(format!(
                    "status `{}` is {} on {}",
                    st.context, st.state, st.sha
                ));
            }
            if !rules.auto_merge {
                return Reaction::Nothing("update.pullRequest.autoMerge is off".into());
            }
            // `branches` lists branches that *contain* the commit; only those
            // whose head it is can be merged at it.
            let branches: Vec<(String, String)> = st
                .branches
                .iter()
                .filter(|b| b.head == st.sha)
                .filter_map(|b| {
                    policy_of(rules.branch_template, &b.name)
                        .map(|policy| (policy.to_string(), b.name.clone()))
                })
                .collect();
            if branches.is_empty() {
                return Reaction::Nothing(format!(
                    "{} is not the head of a capstan branch (`{}`)",
                    st.sha, rules.branch_template
                ));
            }
            Reaction::MergeIfApproved {
                sha: st.sha.clone(),
                branches,
            }
        }
        Event::CheckSuite(cs) => {
            if let Some(n) = other_repo(&cs.repository) {
                return n;
            }
            let conclusion = cs.conclusion.as_deref().unwrap_or("none");
            if conclusion != "success" {
                return Reaction::Nothing(format!(
                    "check suite on {} concluded {conclusion}",
                    cs.sha
                ));
            }
            if !rules.auto_merge {
                return Reaction::Nothing("update.pullRequest.autoMerge is off".into());
            }
            let Some(branch) = cs.head_branch.as_deref() else {
                return Reaction::Nothing(format!("check suite on {} has no branch", cs.sha));
            };
            let Some(policy) = policy_of(rules.branch_template, branch) else {
                return Reaction::Nothing(format!(
                    "`{branch}` is not a capstan branch (`{}`)",
                    rules.branch_template
                ));
            };
            Reaction::MergeIfApproved {
                sha: cs.sha.clone(),
                branches: vec![(policy.to_string(), branch.to_string())],
            }
        }
        Event::PullRequestClosed(c) => {
            if let Some(n) = other_repo(&c.repository) {
                return n;
            }
            if !c.merged {
                return Reaction::Nothing(format!(
                    "pull request #{} closed without merge",
                    c.number
                ));
            }
            if c.base_branch != rules.base_branch {
                return Reaction::Nothing(format!(
                    "pull request #{} merged into `{}`, not `{}`",
                    c.number, c.base_branch, rules.base_branch
                ));
            }
            Reaction::TriggerSync {
                commit: c.merge_commit.clone().unwrap_or_default(),
                reason: format!("pull request #{} merged into `{}`", c.number, c.base_branch),
            }
        }
        Event::Push(p) => {
            if let Some(n) = other_repo(&p.repository) {
                return n;
            }
            if p.git_ref != format!("refs/heads/{}", rules.base_branch) {
                return Reaction::Nothing(format!("push to `{}`", p.git_ref));
            }
            if p.deleted {
                return Reaction::Nothing(format!("`{}` was deleted", p.git_ref));
            }
            Reaction::TriggerSync {
                commit: p.after.clone(),
                reason: format!("push to `{}`", rules.base_branch),
            }
        }
    }
}

/// The second half of `MergeIfGreen`, for commit statuses alone (a forge
/// without check runs): see [`should_merge_checks`].
pub fn should_merge(status: &CombinedStatus) -> Result<(), String> {
    should_merge_checks(status, &[])
}

/// Merge only when the commit is green: at least one commit status or check
/// run, every commit status successful, and every check run `completed` with
/// conclusion `success`, `neutral` or `skipped`. `Err` says why not, naming
/// each status or run that is still running or failed.
pub fn should_merge_checks(status: &CombinedStatus, runs: &[CheckRun]) -> Result<(), String> {
    if status.statuses.is_empty() && runs.is_empty() {
        return Err("no commit status or check run yet".into());
    }
    let mut not_green: Vec<String> = status
        .statuses
        .iter()
        .filter(|s| s.state != crate::forge::CommitState::Success)
        .map(|s| format!("{} is {}", s.context, s.state.as_str()))
        .collect();
    for run in runs {
        if run.status != "completed" {
            not_green.push(format!("check run {} is {}", run.name, run.status));
            continue;
        }
        match run.conclusion.as_deref() {
            Some("success" | "neutral" | "skipped") => {}
            Some(conclusion) => {
                not_green.push(format!("check run {} concluded {conclusion}", run.name))
            }
            None => not_green.push(format!("check run {} has no conclusion", run.name)),
        }
    }
    if not_green.is_empty() {
        Ok(())
    } else {
        Err(not_green.join(", "))
    }
}

/// Whether pull request `pr` may be merged at `sha` because of its reviews:
/// it is open, into `base`, its head is still `sha` (a head that moved is
/// never merged), someone approved exactly `sha`, and no reviewer's latest
/// review asks for changes. `Err` says why not.
pub fn approved_at(
    pr: &crate::forge::PullRequest,
    reviews: &[crate::forge::PullReview],
    sha: &str,
    base: &str,
) -> Result<(), String> {
    if !pr.open || pr.merged {
        return Err(format!("pull request #{} is not open", pr.number));
    }
    if pr.base_branch != base {
        return Err(format!(
            "pull request #{} is into `{}`, not `{base}`",
            pr.number, pr.base_branch
        ));
    }
    if pr.head_sha != sha {
        return Err(format!(
            "pull request #{} head moved to {}",
            pr.number, pr.head_sha
        ));
    }
    // The latest deciding review of each reviewer (comments do not change it).
    let mut latest: Vec<(&str, &crate::forge::PullReview)> = Vec::new();
    for review in reviews {
        let state = review.state.as_str();
        if !matches!(
            state,
            "APPROVED" | "CHANGES_REQUESTED" | "REQUEST_CHANGES" | "DISMISSED"
        ) {
            continue;
        }
        match latest.iter_mut().find(|(who, _)| *who == review.reviewer) {
            Some(entry) => entry.1 = review,
            None => latest.push((review.reviewer.as_str(), review)),
        }
    }
    if let Some((who, _)) = latest
        .iter()
        .find(|(_, r)| matches!(r.state.as_str(), "CHANGES_REQUESTED" | "REQUEST_CHANGES"))
    {
        return Err(format!("{who} requested changes"));
    }
    if latest
        .iter()
        .any(|(_, r)| r.state == "APPROVED" && r.commit == sha)
    {
        return Ok(());
    }
    Err(format!(
        "pull request #{} is not approved at {sha}",
        pr.number
    ))
}

/// Carries out [`Reaction::MergeIfApproved`] for one branch: the open pull
/// request of `branch` into `base`, merged at `sha` only when
/// [`approved_at`] and [`should_merge`] both agree.
pub async fn merge_if_approved(
    forge: &dyn Forge,
    branch: &str,
    base: &str,
    sha: &str,
) -> Result<Merge, ForgeError> {
    let Some(pr) = forge.find_open_pull_request(branch, base).await? else {
        return Ok(Merge::Waiting(format!(
            "no open pull request from `{branch}`"
        )));
    };
    let reviews = forge.pull_request_reviews(pr.number).await?;
    if let Err(why) = approved_at(&pr, &reviews, sha, base) {
        tracing::info!(pull_request = pr.number, commit = sha, reason = %why, "green, not merged");
        return Ok(Merge::Waiting(why));
    }
    merge_if_green(forge, pr.number, sha).await
}

/// How carrying out `MergeIfGreen` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Merged; the merge commit.
    Merged(String),
    /// Not merged (yet): why. A later status or review event tries again.
    Waiting(String),
}

/// Carries out [`Reaction::MergeIfGreen`]: reads the combined status and
/// the check runs of `sha` ([`should_merge_checks`] decides), and merges pull request `number` only at that commit (the forge
/// refuses when the head moved after the review).
pub async fn merge_if_green(
    forge: &dyn Forge,
    number: u64,
    sha: &str,
) -> Result<Merge, ForgeError> {
    let status = forge.combined_status(sha).await?;
    let runs = forge.check_runs(sha).await?;
    if let Err(why) = should_merge_checks(&status, &runs) {
        tracing::info!(pull_request = number, commit = sha, reason = %why, "approved, not merged yet");
        return Ok(Merge::Waiting(why));
    }
    let commit = forge
        .merge_pull_request(number, sha, MergeMethod::default())
        .await?;
    Ok(Merge::Merged(commit))
}

/// The policy a head branch was made for, when it matches the template.
pub fn policy_of<'b>(template: &str, branch: &'b str) -> Option<&'b str> {
    let (prefix, suffix) = template.split_once("{policy}")?;
    let policy = branch.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!policy.is_empty()).then_some(policy)
}

struct Payload<'a> {
    event: &'a str,
    value: &'a Value,
}

impl Payload<'_> {
    fn get(&self, field: &str) -> Result<&Value, PayloadError> {
        let mut v = self.value;
        for key in field.split('.') {
            v = v.get(key).ok_or_else(|| PayloadError::Missing {
                event: self.event.into(),
                field: field.into(),
            })?;
        }
        Ok(v)
    }

    fn wrong(&self, field: &str, expected: &'static str) -> PayloadError {
        PayloadError::WrongType {
            event: self.event.into(),
            field: field.into(),
            expected,
        }
    }

    fn str(&self, field: &str) -> Result<&str, PayloadError> {
        self.get(field)?
            .as_str()
            .ok_or_else(|| self.wrong(field, "a string"))
    }

    fn opt_str(&self, field: &str) -> Result<Option<&str>, PayloadError> {
        match self.get(field) {
            Ok(Value::Null) | Err(PayloadError::Missing { .. }) => Ok(None),
            Ok(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "a string")),
            Err(e) => Err(e),
        }
    }

    fn u64(&self, field: &str) -> Result<u64, PayloadError> {
        self.get(field)?
            .as_u64()
            .ok_or_else(|| self.wrong(field, "a positive integer"))
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, PayloadError> {
        match self.get(field) {
            Ok(Value::Null) | Err(PayloadError::Missing { .. }) => Ok(None),
            Ok(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(field, "true or false")),
            Err(e) => Err(e),
        }
    }

    fn bool(&self, field: &str) -> Result<bool, PayloadError> {
        self.get(field)?
            .as_bool()
            .ok_or_else(|| self.wrong(field, "true or false"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::{CommitState, ContextState};

    fn run(name: &str, status: &str, conclusion: Option<&str>) -> CheckRun {
        CheckRun {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_string),
        }
    }

    fn statuses(states: &[(&str, CommitState)]) -> CombinedStatus {
        CombinedStatus {
            // GitHub answers `pending` for a commit without statuses.
            state: if states.iter().all(|(_, s)| *s == CommitState::Success) && !states.is_empty() {
                CommitState::Success
            } else {
                CommitState::Pending
            },
            statuses: states
                .iter()
                .map(|(c, s)| ContextState {
                    context: (*c).into(),
                    state: *s,
                    description: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn check_runs_alone_can_be_green() {
        let none = statuses(&[]);
        assert_eq!(
            should_merge_checks(&none, &[]),
            Err("no commit status or check run yet".into())
        );
        let ok = [
            run("build", "completed", Some("success")),
            run("lint", "completed", Some("neutral")),
            run("deploy-preview", "completed", Some("skipped")),
        ];
        assert_eq!(should_merge_checks(&none, &ok), Ok(()));
        let both = statuses(&[("ci/test", CommitState::Success)]);
        assert_eq!(should_merge_checks(&both, &ok), Ok(()));
        assert_eq!(should_merge(&both), Ok(()));
    }

    #[test]
    fn running_or_failed_check_runs_are_named() {
        let none = statuses(&[]);
        assert_eq!(
            should_merge_checks(
                &none,
                &[
                    run("build", "completed", Some("success")),
                    run("test", "in_progress", None),
                    run("e2e", "queued", None),
                ]
            ),
            Err("check run test is in_progress, check run e2e is queued".into())
        );
        for bad in [
            "failure",
            "cancelled",
            "timed_out",
            "action_required",
            "stale",
        ] {
            assert_eq!(
                should_merge_checks(&none, &[run("build", "completed", Some(bad))]),
                Err(format!("check run build concluded {bad}"))
            );
        }
        assert_eq!(
            should_merge_checks(&none, &[run("build", "completed", None)]),
            Err("check run build has no conclusion".into())
        );
        // A failing commit status is not outvoted by successful runs.
        let pending = statuses(&[
            ("ci/test", CommitState::Success),
            ("capstan/prod", CommitState::Pending),
        ]);
        assert_eq!(
            should_merge_checks(&pending, &[run("build", "completed", Some("success"))]),
            Err("capstan/prod is pending".into())
        );
    }

    #[test]
    fn policies_from_branch_names() {
        assert_eq!(
            policy_of("capstan/{policy}", "capstan/podinfo"),
            Some("podinfo")
        );
        assert_eq!(
            policy_of("bots/{policy}-bump", "bots/api-bump"),
            Some("api")
        );
        assert_eq!(policy_of("capstan/{policy}", "feature/x"), None);
        assert_eq!(policy_of("capstan/{policy}", "capstan/"), None);
    }

    #[test]
    fn a_missing_nested_field_is_named() {
        let err = parse(
            "push",
            br#"{"ref": "refs/heads/main", "after": "abc", "deleted": false}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`push` payload: field `repository.full_name` is missing"
        );
        // Gitea's push payload: no `deleted` field.
        let gitea = parse(
            "push",
            br#"{"ref": "refs/heads/main", "after": "abc", "repository": {"full_name": "o/r"}}"#,
        )
        .expect("a push without `deleted`");
        assert!(
            matches!(gitea, Event::Push(Push { deleted: false, .. })),
            "{gitea:?}"
        );
        let gone = parse(
            "push",
            br#"{"ref": "refs/heads/x", "after": "0000000000000000000000000000000000000000", "repository": {"full_name": "o/r"}}"#,
        )
        .expect("a deleted branch");
        assert!(
            matches!(gone, Event::Push(Push { deleted: true, .. })),
            "{gone:?}"
        );
        let err = parse("pull_request", b"[1, 2").unwrap_err();
        assert!(matches!(err, PayloadError::NotJson { .. }), "{err}");
        let err = parse("pull_request", br#"{"action": 7}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`pull_request` payload: field `action` must be a string"
        );
    }
}
