//! The Git side of `pull-request` mode: one head branch per policy holding
//! exactly one tag-bump commit on top of the base branch's head.
//!
//! The head branch is recomputed from the base head on every pass — never
//! rebased — so a newer tag, or a person's commit on the base in between,
//! simply produces a new single commit on the new base head, and the head
//! branch is rewritten (forced; Capstan owns it). The base branch is never
//! pushed to in this mode ([`Checkout::push_head_branch`] refuses it). When
//! the head branch already holds exactly this change (same parent, same
//! tree), nothing is pushed, so restarts and repeated passes are quiet.

use std::path::Path;

use git2::{Oid, Signature};
use serde::Serialize;

use super::{Error, Settings, message};
use crate::git::{Checkout, PushOutcome};
use crate::manifests::{self, Plan, Wanted};

/// The reason given to the scan for the policies that are not the one of
/// the branch being prepared (their references are left alone).
const OTHER_POLICY: &str = "handled in its own pull request";

/// `update.branch` with `{policy}` filled in.
pub fn head_branch(template: &str, policy: &str) -> String {
    template.replace("{policy}", policy)
}

/// Where a policy's head branch stands after the Git step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum BranchState {
    /// The base head already holds the chosen image: nothing to propose.
    OnBase { base_head: String },
    /// The head branch holds `commit`, one commit on `base_head`.
    Proposed {
        commit: String,
        base_head: String,
        /// `false` when the branch already held exactly this change.
        pushed: bool,
        /// The head branch's commit before, when it existed and was replaced.
        replaced: Option<String>,
    },
    /// Nothing proposed: the scan found problems (listed in the plan), or
    /// Git failed for this branch (a refused push, a protected branch).
    Failed {
        base_head: Option<String>,
        reason: String,
    },
}

/// The Git step for one policy.
#[derive(Debug, Serialize)]
pub struct PreparedBranch {
    pub policy: String,
    pub branch: String,
    pub state: BranchState,
    /// The commit message (its first line is the default title's summary).
    pub message: String,
    pub plan: Plan,
}

/// Prepares the head branch of every policy that chose an image (blocking).
pub fn prepare_all(
    settings: &Settings,
    branch_template: &str,
    wanted: &[Wanted],
) -> Result<Vec<PreparedBranch>, Error> {
    let checkout = settings.checkout()?;
    let author = Signature::now(&settings.author_name, &settings.author_email)
        .map_err(|e| Error::Settings(format!("update.author: {}", e.message())))?;
    let mut out = Vec::new();
    for w in wanted.iter().filter(|w| w.chosen.is_ok()) {
        let branch = head_branch(branch_template, &w.policy.name);
        // One policy's failure (say, a push refused for its branch) does not
        // stop the others.
        let prepared = prepare(
            &checkout,
            settings,
            &author,
            wanted,
            &w.policy.name,
            &branch,
        )
        .unwrap_or_else(|e| {
            tracing::error!(policy = %w.policy.name, branch = %branch, error = %e, "pull request branch not prepared");
            PreparedBranch {
                policy: w.policy.name.clone(),
                branch: branch.clone(),
                state: BranchState::Failed {
                    base_head: None,
                    reason: e.to_string(),
                },
                message: String::new(),
                plan: Plan::default(),
            }
        });
        out.push(prepared);
    }
    Ok(out)
}

/// One policy: plan on the base head, commit (detached), compare with the
/// head branch, push when it differs.
pub fn prepare(
    checkout: &Checkout,
    settings: &Settings,
    author: &Signature<'_>,
    wanted: &[Wanted],
    policy: &str,
    branch: &str,
) -> Result<PreparedBranch, Error> {
    let base_head = checkout.fetch()?;
    checkout.reset_to(base_head)?;
    let only: Vec<Wanted> = wanted
        .iter()
        .map(|w| Wanted {
            policy: w.policy.clone(),
            chosen: if w.policy.name == policy {
                w.chosen.clone()
            } else {
                Err(OTHER_POLICY.to_string())
            },
        })
        .collect();
    let mut plan = scan(checkout.workdir(), settings, &only);
    plan.skipped.retain(|s| !s.message.ends_with(OTHER_POLICY));
    let done = |state, message: String, plan| PreparedBranch {
        policy: policy.to_string(),
        branch: branch.to_string(),
        state,
        message,
        plan,
    };
    if !plan.problems.is_empty() {
        let reason = format!(
            "{} problem(s) in the manifests; no pull request",
            plan.problems.len()
        );
        return Ok(done(
            BranchState::Failed {
                base_head: Some(base_head.to_string()),
                reason,
            },
            String::new(),
            plan,
        ));
    }
    plan.write();
    let message = message::render(&settings.message_template, &plan);
    let paths: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();
    let commit = if paths.is_empty() {
        None
    } else {
        checkout.commit_detached(&paths, &message, author)?
    };
    let Some(commit) = commit else {
        plan.files.clear();
        tracing::info!(policy, branch, base_head = %base_head, "the base branch already holds the chosen image");
        return Ok(done(
            BranchState::OnBase {
                base_head: base_head.to_string(),
            },
            message,
            plan,
        ));
    };
    let previous = checkout.fetch_other(branch)?;
    if let Some(previous) = previous
        && same_change(checkout, previous, commit, base_head)?
    {
        tracing::info!(policy, branch, commit = %previous, base_head = %base_head,
            "the head branch already holds this change; not pushed");
        return Ok(done(
            BranchState::Proposed {
                commit: previous.to_string(),
                base_head: base_head.to_string(),
                pushed: false,
                replaced: None,
            },
            message,
            plan,
        ));
    }
    match checkout.push_head_branch(commit, branch)? {
        PushOutcome::Pushed => {
            tracing::info!(policy, branch, commit = %commit, base_head = %base_head,
                replaced = previous.map(|p| p.to_string()), "pull request branch pushed");
            Ok(done(
                BranchState::Proposed {
                    commit: commit.to_string(),
                    base_head: base_head.to_string(),
                    pushed: true,
                    replaced: previous.map(|p| p.to_string()),
                },
                message,
                plan,
            ))
        }
        PushOutcome::Rejected(reason) => Err(Error::Rejected {
            branch: branch.to_string(),
            reason,
        }),
    }
}

fn scan(workdir: &Path, settings: &Settings, wanted: &[Wanted]) -> Plan {
    let dir = workdir.join(&settings.path);
    manifests::plan_dir(workdir, &dir, wanted, settings.options)
}

/// The existing head commit is one commit on the same base with the same tree.
fn same_change(checkout: &Checkout, existing: Oid, new: Oid, base: Oid) -> Result<bool, Error> {
    let (old_tree, old_parents) = checkout.commit_shape(existing)?;
    let (new_tree, _) = checkout.commit_shape(new)?;
    Ok(old_tree == new_tree && old_parents == [base])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_from_the_template() {
        assert_eq!(
            head_branch("capstan/{policy}", "podinfo"),
            "capstan/podinfo"
        );
        assert_eq!(head_branch("bots/{policy}-bump", "api"), "bots/api-bump");
    }
}
