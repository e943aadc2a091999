//! The image-update loop of the daemon: one scan task per policy, one writer.
//!
//! A policy's task scans its image in its registry (on its interval, or at
//! once when a registry webhook names the image) and records what the policy
//! chose. When a choice changes it wakes the writer. The writer is the only
//! task that touches the Git checkout all policies share: it runs one update
//! pass ([`crate::update::run_once`]) with every policy's latest choice, so
//! writes are serialized by construction and choices that arrive together
//! land in one commit. A scan that fails keeps the policy's previous choice
//! (its task backs off); the other policies are not held up.
//!
//! With `update.mode: pull-request` the writer runs the pull-request pass
//! ([`crate::update::pull_request::run_once`]) instead: one head branch and
//! one pull request per policy, opened or updated through the forge, the base
//! branch never pushed. That pass is stateless (the pull request is found by
//! its head branch), so after a merge the base holds the tag and the next pass
//! proposes nothing for it; a newer tag opens a fresh pull request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::metrics::{PolicyDecision, PolicyLabel, PolicyResult};
use super::schedule::{Context, Failure};
use crate::forge::Forge;
use crate::manifests::Wanted;
use crate::notify::Notifier;
use crate::policy::ImagePolicy;
use crate::registry::Scanner;
use crate::update::pr_branch::BranchState;
use crate::update::pull_request::{self, Action, PrSettings};
use crate::update::{self, Choices, Outcome, Settings, from_registry};

/// What the writer does with the choices.
pub enum Writer {
    /// Commit and push to the branch (`update.mode: push`).
    Push,
    /// One pull request per policy (`update.mode: pull-request`).
    PullRequests {
        settings: Box<PrSettings>,
        /// Counts its calls ([`super::forge_calls::CountedForge`]).
        forge: Arc<dyn Forge>,
        notifier: Notifier,
    },
}

/// What the scan tasks and the writer share.
pub struct UpdateState {
    pub scanner: Arc<Scanner>,
    pub settings: Settings,
    pub writer: Writer,
    /// The latest choice of each policy, by name.
    choices: Mutex<HashMap<String, Wanted>>,
    /// Wakes the writer.
    pub write: Arc<Notify>,
    /// Held by a running pass; shared across reloads so an old writer that is
    /// finishing its push and a new one never overlap.
    pub checkout: Arc<tokio::sync::Mutex<()>>,
    /// Set after the first pass that reached the Git server.
    pub on_git_contact: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for UpdateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateState")
            .field("branch", &self.settings.branch)
            .finish()
    }
}

impl UpdateState {
    pub fn new(
        scanner: Arc<Scanner>,
        settings: Settings,
        writer: Writer,
        checkout: Arc<tokio::sync::Mutex<()>>,
        on_git_contact: Box<dyn Fn() + Send + Sync>,
    ) -> UpdateState {
        UpdateState {
            scanner,
            settings,
            writer,
            choices: Mutex::new(HashMap::new()),
            write: Arc::new(Notify::new()),
            checkout,
            on_git_contact,
        }
    }

    /// Keeps the choices of policies that are still configured (after a reload).
    pub fn carry_over(&self, previous: &UpdateState, policies: &[ImagePolicy]) {
        let old = lock(&previous.choices);
        let mut new = lock(&self.choices);
        for p in policies {
            if let Some(w) = old.get(&p.name)
                && format!("{:?}", w.policy) == format!("{p:?}")
            {
                new.insert(p.name.clone(), w.clone());
            }
        }
    }

    fn snapshot(&self, policies: &[ImagePolicy]) -> Choices {
        let stored = lock(&self.choices);
        let wanted = policies
            .iter()
            .map(|p| match stored.get(&p.name) {
                Some(w) => Wanted {
                    policy: p.clone(),
                    chosen: w.chosen.clone(),
                },
                None => Wanted {
                    policy: p.clone(),
                    chosen: Err("not scanned yet".into()),
                },
            })
            .collect();
        Choices {
            wanted,
            errors: Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// One scan of one policy's image.
pub async fn scan_step(
    state: Arc<UpdateState>,
    ctx: Context,
    policy: ImagePolicy,
) -> Result<(), Failure> {
    let result = state.scanner.scan(&policy).await;
    let name = policy.name.clone();
    let outcome = if result.is_stale() {
        "failure"
    } else {
        "success"
    };
    ctx.metrics
        .scans
        .get_or_create(&PolicyResult {
            policy: name.clone(),
            result: outcome,
        })
        .inc();
    if let Some(scanned) = result.fresh() {
        ctx.metrics
            .tags_seen
            .get_or_create(&PolicyLabel {
                policy: name.clone(),
            })
            .set(i64::try_from(scanned.tags.len()).unwrap_or(i64::MAX));
        ctx.metrics
            .decisions
            .get_or_create(&PolicyDecision {
                policy: name.clone(),
                decision: if scanned.chosen.is_some() {
                    "chosen"
                } else {
                    "none"
                },
            })
            .inc();
    }
    let (wanted, error) = from_registry::wanted(&policy, result);
    if let Some(error) = error {
        // Keep the previous choice: a registry outage must not undo anything.
        return Err(Failure::new("registry", format!("policy {name}: {error}")));
    }
    let changed = {
        let mut choices = lock(&state.choices);
        let before = choices.get(&name).map(|w| w.chosen.clone());
        let changed = before.as_ref() != Some(&wanted.chosen);
        choices.insert(name.clone(), wanted.clone());
        changed
    };
    if changed {
        match &wanted.chosen {
            Ok(c) => {
                tracing::info!(policy = %name, tag = %c.tag, digest = c.digest.as_deref().unwrap_or(""), "policy chose a new image; writing")
            }
            Err(why) => tracing::info!(policy = %name, reason = %why, "policy chose nothing"),
        }
        state.write.notify_one();
    }
    Ok(())
}

/// One update pass with every policy's latest choice.
pub async fn write_step(
    state: Arc<UpdateState>,
    ctx: Context,
    policies: Arc<Vec<ImagePolicy>>,
) -> Result<(), Failure> {
    let choices = state.snapshot(&policies);
    if choices.wanted.iter().all(|w| w.chosen.is_err()) {
        tracing::debug!("no policy has chosen an image yet; nothing to write");
        return Ok(());
    }
    let _checkout = state.checkout.lock().await;
    if let Writer::PullRequests {
        settings,
        forge,
        notifier,
    } = &state.writer
    {
        return pull_requests_step(&state, &ctx, settings, forge.as_ref(), notifier, &choices)
            .await;
    }
    let report = update::run_once_async(state.settings.clone(), choices)
        .await
        .map_err(|e| Failure::new("git", e))?;
    (state.on_git_contact)();
    match &report.outcome {
        Outcome::Pushed { commit, attempts } => {
            ctx.metrics.git_pushes.inc();
            ctx.metrics
                .git_push_retries
                .inc_by(u64::from(attempts.saturating_sub(1)));
            for (file, change) in report.plan.changes() {
                tracing::info!(policy = %change.policy, commit = %commit, file = %file.path, line = change.line, from = %change.from, to = %change.to, "image updated");
            }
        }
        Outcome::Unchanged { head, attempts } => {
            ctx.metrics
                .git_push_retries
                .inc_by(u64::from(attempts.saturating_sub(1)));
            tracing::debug!(commit = %head, branch = %report.branch, "manifests are up to date");
        }
        Outcome::DryRun { .. } => {}
    }
    for problem in &report.plan.problems {
        tracing::warn!(problem = %problem, "update problem");
    }
    if report.failed() {
        let first = report
            .plan
            .problems
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        return Err(Failure::new(
            "update",
            format!(
                "{} problem(s) in the manifests; first: {first}",
                report.plan.problems.len()
            ),
        ));
    }
    Ok(())
}

/// The pull-request pass: head branches pushed, pull requests opened,
/// updated or closed; the base branch is never pushed.
async fn pull_requests_step(
    state: &UpdateState,
    ctx: &Context,
    settings: &PrSettings,
    forge: &dyn Forge,
    notifier: &Notifier,
    choices: &Choices,
) -> Result<(), Failure> {
    let report = pull_request::run_once(settings, choices, forge, state.scanner.as_ref(), notifier)
        .await
        .map_err(|e| Failure::new("git", e))?;
    (state.on_git_contact)();
    for r in &report.results {
        let pushed = matches!(r.state, BranchState::Proposed { pushed: true, .. });
        if pushed {
            ctx.metrics.git_pushes.inc();
        }
        match r.action {
            Action::Opened => ctx.metrics.pull_request("opened"),
            Action::Updated => ctx.metrics.pull_request("updated"),
            // A new commit under the same title and body is an update too.
            Action::Unchanged if pushed => ctx.metrics.pull_request("updated"),
            Action::Closed => ctx.metrics.pull_request("closed"),
            Action::Unchanged | Action::None => {}
        }
        for problem in &r.problems {
            tracing::warn!(policy = %r.policy, problem = %problem, "update problem");
        }
    }
    if let Some(r) = report.results.iter().find(|r| r.error.is_some()) {
        let failed = report.results.iter().filter(|r| r.error.is_some()).count();
        // A failed forge call was counted as a `forge` error already.
        let kind = match (&r.state, r.problems.is_empty()) {
            (_, false) => "update",
            (BranchState::Failed { .. }, true) => "git",
            _ => "pull_request",
        };
        return Err(Failure::new(
            kind,
            format!(
                "{failed} pull request(s) not handled; first: policy {} ({}): {}",
                r.policy,
                r.branch,
                r.error.as_deref().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}
