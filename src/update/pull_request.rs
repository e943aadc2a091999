//! `update.mode: pull-request`: one pull request per policy, opened or
//! updated through the [`Forge`], from the head branches [`pr_branch`]
//! prepares. Run by `capstan update --once` and by the writer of `capstan run`
//! (`crate::daemon::update_loop`).
//!
//! Stateless by design: the pull request of a policy is found on the forge
//! by its deterministic head branch, so a restart never opens a duplicate
//! (and a duplicate the forge refuses, GitHub's 422 "already exists", is
//! answered with the open one). The Git push happens before the forge
//! calls; if those fail, the next pass finds the branch up to date, pushes
//! nothing, and opens or updates the pull request then — no update is lost.
//!
//! Per policy:
//! - the base already holds the chosen image → close the open pull request
//!   (if any) with a comment naming the base commit;
//! - otherwise open the pull request, or update its title and body; ask for
//!   reviews (authors of the image's changelog, configured users and teams,
//!   never the bot) when it is opened or gets a new commit; add labels.

use std::path::Path;

use futures::future::BoxFuture;
use serde::Serialize;

use super::pr_body::{self, Changelog, Facts};
use super::pr_branch::{self, BranchState, PreparedBranch};
use super::{Choices, Error, Settings};
use crate::config::Config;
use crate::forge::{Forge, ForgeError, NewPullRequest, Opened, PullRequest};
use crate::manifests::Wanted;
use crate::notify::{Event, EventKind, Notifier};
use crate::registry::{ImageRef, Scanner};

/// `pull-request` mode settings, from `capstan.yaml`.
#[derive(Debug, Clone)]
pub struct PrSettings {
    /// Repository, base branch (`branch`), checkout, author, message.
    pub git: Settings,
    pub branch_template: String,
    pub title: String,
    pub body: String,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub labels: Vec<String>,
}

impl PrSettings {
    pub fn from_config(config: &Config, config_dir: &Path) -> Result<PrSettings, Error> {
        let git = Settings::from_config(config, config_dir, false)?;
        let pr = &config.update.pull_request;
        Ok(PrSettings {
            git,
            branch_template: config.pull_request_branch_template().to_string(),
            title: pr.title.value.clone(),
            body: pr.body.value.clone(),
            reviewers: pr.reviewers.clone(),
            team_reviewers: pr.team_reviewers.clone(),
            labels: pr.labels.clone(),
        })
    }
}

/// What the registry says about one image tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    pub digest: Option<String>,
    /// `org.opencontainers.image.source`
    pub source: Option<String>,
    /// `org.opencontainers.image.revision`
    pub revision: Option<String>,
}

/// Where image facts come from (the registry; tests may bring their own).
pub trait ImageSource: Send + Sync {
    fn facts<'a>(
        &'a self,
        image: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<ImageFacts, String>>;
}

impl ImageSource for Scanner {
    fn facts<'a>(
        &'a self,
        image: &'a str,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<ImageFacts, String>> {
        Box::pin(async move {
            let r = ImageRef::parse(image).map_err(|e| e.to_string())?;
            let client = self.client(&r.registry).map_err(|e| e.to_string())?;
            let info = client
                .image_info(&r.repository, tag)
                .await
                .map_err(|e| e.to_string())?;
            Ok(ImageFacts {
                digest: Some(info.digest.clone()),
                source: info.source().map(str::to_string),
                revision: info.revision().map(str::to_string),
            })
        })
    }
}

/// No registry at hand (`--tags-dir`): no digest, no changelog.
#[derive(Debug, Clone, Copy)]
pub struct NoImageSource;

impl ImageSource for NoImageSource {
    fn facts<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<ImageFacts, String>> {
        Box::pin(async { Err("tags come from files, not a registry".to_string()) })
    }
}

/// What happened to a policy's pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Opened,
    Updated,
    /// Open and already up to date.
    Unchanged,
    /// Closed: the base already holds the change.
    Closed,
    /// Nothing to do (base up to date, no pull request open), or failed.
    None,
}

/// One policy's result.
#[derive(Debug, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub branch: String,
    pub state: BranchState,
    pub action: Action,
    pub number: Option<u64>,
    pub url: Option<String>,
    pub reviewers: Vec<String>,
    /// What went wrong (a forge error, problems in files).
    pub error: Option<String>,
    pub changes: Vec<String>,
    pub problems: Vec<String>,
}

/// What a `pull-request` pass did.
#[derive(Debug, Serialize)]
pub struct PrReport {
    pub base: String,
    pub results: Vec<PolicyResult>,
    pub not_chosen: Vec<(String, String)>,
    pub source_errors: Vec<(String, String)>,
}

impl PrReport {
    pub fn failed(&self) -> bool {
        !self.source_errors.is_empty() || self.results.iter().any(|r| r.error.is_some())
    }

    /// URLs of the pull requests opened, updated or unchanged-open.
    pub fn urls(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| {
                matches!(
                    r.action,
                    Action::Opened | Action::Updated | Action::Unchanged
                )
            })
            .filter_map(|r| r.url.as_deref())
            .collect()
    }
}

/// One pass: Git first (on the blocking pool), then the forge per policy.
pub async fn run_once(
    settings: &PrSettings,
    choices: &Choices,
    forge: &dyn Forge,
    images: &dyn ImageSource,
    notifier: &Notifier,
) -> Result<PrReport, Error> {
    let prepared = {
        let git = settings.git.clone();
        let template = settings.branch_template.clone();
        let wanted = choices.wanted.clone();
        tokio::task::spawn_blocking(move || pr_branch::prepare_all(&git, &template, &wanted))
            .await
            .map_err(|e| Error::Task(e.to_string()))??
    };
    let mut bot: Option<Option<String>> = None;
    let mut results = Vec::new();
    for branch in prepared {
        let wanted = choices
            .wanted
            .iter()
            .find(|w| w.policy.name == branch.policy);
        let mut result = PolicyResult {
            policy: branch.policy.clone(),
            branch: branch.branch.clone(),
            state: branch.state.clone(),
            action: Action::None,
            number: None,
            url: None,
            reviewers: Vec::new(),
            error: None,
            changes: super::message::change_lines(&branch.plan),
            problems: branch.plan.problems.iter().map(|p| p.to_string()).collect(),
        };
        if let (BranchState::Proposed { pushed: true, .. }, Some(w), Some((_, c))) =
            (&branch.state, wanted, branch.plan.changes().next())
        {
            notifier.notify(
                Event::new(
                    EventKind::TagChosen,
                    format!("{} {} → {}", c.policy, c.from, c.to),
                )
                .policy(&branch.policy)
                .image(&w.policy.image, tag_part(&c.from), tag_part(&c.to)),
            );
        }
        let outcome = match (&branch.state, wanted) {
            (BranchState::Failed { reason, .. }, _) => Err(reason.clone()),
            (BranchState::OnBase { base_head }, _) => {
                close_superseded(settings, forge, &branch, base_head, &mut result).await
            }
            (BranchState::Proposed { pushed, .. }, Some(wanted)) => {
                let bot = match &bot {
                    Some(b) => b.clone(),
                    None => {
                        let b = match forge.bot_login().await {
                            Ok(login) => Some(login),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot tell the bot's login; relying on the forge to skip it");
                                None
                            }
                        };
                        bot = Some(b.clone());
                        b
                    }
                };
                open_or_update(
                    settings,
                    forge,
                    images,
                    notifier,
                    &branch,
                    wanted,
                    *pushed,
                    bot.as_deref(),
                    &mut result,
                )
                .await
            }
            (BranchState::Proposed { .. }, None) => Err("policy vanished".into()),
        };
        if let Err(e) = outcome {
            tracing::error!(policy = %result.policy, branch = %result.branch, error = %e, "pull request not handled");
            result.error = Some(e);
        }
        results.push(result);
    }
    Ok(PrReport {
        base: settings.git.branch.clone(),
        results,
        not_chosen: choices
            .wanted
            .iter()
            .filter_map(|w| {
                w.chosen
                    .as_ref()
                    .err()
                    .map(|e| (w.policy.name.clone(), e.clone()))
            })
            .collect(),
        source_errors: choices.errors.clone(),
    })
}

async fn close_superseded(
    settings: &PrSettings,
    forge: &dyn Forge,
    branch: &PreparedBranch,
    base_head: &str,
    result: &mut PolicyResult,
) -> Result<(), String> {
    let base = &settings.git.branch;
    let Some(pr) = forge
        .find_open_pull_request(&branch.branch, base)
        .await
        .map_err(err)?
    else {
        return Ok(());
    };
    let comment = format!(
        "The base branch `{base}` already contains this change (as of commit {base_head}), so this pull request is no longer needed. Closed by capstan."
    );
    forge
        .close_pull_request(pr.number, &comment)
        .await
        .map_err(err)?;
    tracing::info!(policy = %branch.policy, number = pr.number, base_head, "superseded pull request closed");
    result.action = Action::Closed;
    result.number = Some(pr.number);
    result.url = Some(pr.html_url);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn open_or_update(
    settings: &PrSettings,
    forge: &dyn Forge,
    images: &dyn ImageSource,
    notifier: &Notifier,
    branch: &PreparedBranch,
    wanted: &Wanted,
    pushed: bool,
    bot: Option<&str>,
    result: &mut PolicyResult,
) -> Result<(), String> {
    let base = settings.git.branch.as_str();
    let new_tag = wanted
        .chosen
        .as_ref()
        .map(|c| c.tag.clone())
        .map_err(Clone::clone)?;
    let old_tag = branch
        .plan
        .changes()
        .next()
        .map(|(_, c)| tag_part(&c.from).to_string())
        .unwrap_or_default();
    let image = wanted.policy.image.as_str();
    let (digest, changelog) = image_story(forge, images, image, &old_tag, &new_tag).await;
    let facts = Facts {
        policy: &branch.policy,
        image,
        old_tag: &old_tag,
        new_tag: &new_tag,
        digest: wanted
            .chosen
            .as_ref()
            .ok()
            .and_then(|c| c.digest.as_deref())
            .or(digest.as_deref()),
        branch: &branch.branch,
        base,
        plan: &branch.plan,
        changelog: &changelog,
    };
    let (title, body) = pr_body::render(&settings.title, &settings.body, &facts);

    let existing = forge
        .find_open_pull_request(&branch.branch, base)
        .await
        .map_err(err)?;
    let (pr, action) = match existing {
        Some(pr) => update_if_needed(forge, pr, &title, &body).await?,
        None => {
            let new = NewPullRequest {
                title: title.clone(),
                body: body.clone(),
                head: branch.branch.clone(),
                base: base.to_string(),
                draft: false,
            };
            match forge.create_pull_request(&new).await.map_err(err)? {
                Opened::Created(pr) => (pr, Action::Opened),
                Opened::AlreadyOpen(pr) => update_if_needed(forge, pr, &title, &body).await?,
            }
        }
    };
    result.number = Some(pr.number);
    result.url = Some(pr.html_url.clone());
    result.action = action;
    tracing::info!(policy = %branch.policy, number = pr.number, url = %pr.html_url, action = ?action,
        pushed, "pull request");

    if action == Action::Opened || pushed {
        let users = pr_body::reviewers(&changelog, &settings.reviewers, bot);
        if !users.is_empty() || !settings.team_reviewers.is_empty() {
            forge
                .request_reviewers(pr.number, &users, &settings.team_reviewers)
                .await
                .map_err(err)?;
        }
        result.reviewers = users;
    }
    if matches!(action, Action::Opened | Action::Updated) && !settings.labels.is_empty() {
        forge
            .add_labels(pr.number, &settings.labels)
            .await
            .map_err(err)?;
    }
    let kind = match action {
        Action::Opened => Some(EventKind::PullRequestOpened),
        Action::Updated => Some(EventKind::PullRequestUpdated),
        _ if pushed => Some(EventKind::PullRequestUpdated),
        _ => None,
    };
    if let Some(kind) = kind {
        let mut event = Event::new(kind, format!("#{} {title}", pr.number))
            .policy(&branch.policy)
            .image(image, &old_tag, &new_tag)
            .pull_request_url(&pr.html_url);
        if let BranchState::Proposed { commit, .. } = &branch.state {
            event = event.commit(commit);
        }
        notifier.notify(event);
    }
    Ok(())
}

async fn update_if_needed(
    forge: &dyn Forge,
    pr: PullRequest,
    title: &str,
    body: &str,
) -> Result<(PullRequest, Action), String> {
    if pr.title == title && pr.body == body {
        return Ok((pr, Action::Unchanged));
    }
    let updated = forge
        .update_pull_request(pr.number, title, body)
        .await
        .map_err(err)?;
    Ok((updated, Action::Updated))
}

/// The new image's digest and the changelog between the two revisions.
async fn image_story(
    forge: &dyn Forge,
    images: &dyn ImageSource,
    image: &str,
    old_tag: &str,
    new_tag: &str,
) -> (Option<String>, Changelog) {
    let new = images.facts(image, new_tag).await;
    let old = images.facts(image, old_tag).await;
    let digest = new.as_ref().ok().and_then(|f| f.digest.clone());
    let changelog = match (new, old) {
        (Err(e), _) | (_, Err(e)) => Changelog::Unavailable(format!("image labels not readable: {e}")),
        (Ok(new), Ok(old)) => match (&new.source, &old.revision, &new.revision) {
            (Some(source), Some(from), Some(to)) => match crate::config::owner_repo_from_url(source) {
                Some((owner, repo)) => match forge.compare(&owner, &repo, from, to).await {
                    Ok(c) => Changelog::Compared(c),
                    Err(e) => {
                        tracing::warn!(image, error = %e, "no changelog");
                        Changelog::Unavailable(format!("compare failed: {e}"))
                    }
                },
                None => Changelog::Unavailable(format!(
                    "`org.opencontainers.image.source` is `{source}`, not a repository URL"
                )),
            },
            _ => Changelog::Unavailable(
                "the images carry no `org.opencontainers.image.source` and `org.opencontainers.image.revision` labels".into(),
            ),
        },
    };
    (digest, changelog)
}

/// `1.2.3` of `1.2.3@sha256:…`.
fn tag_part(from: &str) -> &str {
    from.split('@').next().unwrap_or(from)
}

fn err(e: ForgeError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_without_digest() {
        assert_eq!(tag_part("1.0@sha256:abc"), "1.0");
        assert_eq!(tag_part("1.0"), "1.0");
    }
}
