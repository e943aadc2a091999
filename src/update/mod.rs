//! One pass of the image-update loop: chosen images in, a commit out.
//!
//! The caller brings what each policy chose ([`Choices`], from the registry:
//! [`from_registry`], or from tags files: [`tags_dir`]); this module brings
//! the manifests repository up to date with it: fetch the branch, plan byte-minimal edits
//! ([`crate::manifests`]), commit them with the configured author and message
//! template, and push ([`crate::git`]), recomputing on the new head when the
//! push races someone else. It is the glue between the two modules, which do
//! not know each other.

pub mod from_registry;
pub mod message;
pub mod pr_body;
pub mod pr_branch;
pub mod pr_events;
pub mod pull_request;
pub mod tags_dir;

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, UpdateMode};
use crate::git::{self, Auth, Checkout, RetryPolicy, WriteBackError};
use crate::manifests::{self, Plan, Wanted};

/// What the policies chose, from whichever tag source.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    /// One per policy; `Err(reason)` when it chose nothing (its references
    /// are skipped with that reason).
    pub wanted: Vec<Wanted>,
    /// Policies whose tag source failed (registry down, unreadable tags
    /// file), with the error: their references are skipped and the pass
    /// counts as failed.
    pub errors: Vec<(String, String)>,
}

impl From<Vec<Wanted>> for Choices {
    fn from(wanted: Vec<Wanted>) -> Choices {
        Choices {
            wanted,
            errors: Vec::new(),
        }
    }
}

/// Everything a pass needs, resolved from `capstan.yaml`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    /// The branch written to (`update.branch`, else `repository.branch`);
    /// in `pull-request` mode the base branch (`repository.branch`).
    pub branch: String,
    pub checkout_dir: PathBuf,
    /// Folder of the repository searched for references (`update.path`).
    pub path: String,
    pub auth: Auth,
    pub author_name: String,
    pub author_email: String,
    pub message_template: String,
    pub options: manifests::Options,
    pub retry: RetryPolicy,
    pub dry_run: bool,
}

/// A pass could not run (as opposed to: it ran and reported problems).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Git(#[from] git::Error),
    #[error("{0}")]
    Settings(String),
    #[error("push to `{branch}` was rejected {attempts} times in a row; last reason: {reason}")]
    Exhausted {
        branch: String,
        attempts: u32,
        reason: String,
    },
    #[error("the update task stopped: {0}")]
    Task(String),
    #[error("push of `{branch}` was refused: {reason}")]
    Rejected { branch: String, reason: String },
}

impl Settings {
    /// Capstan's clone of the repository, on the configured branch.
    pub fn checkout(&self) -> Result<Checkout, Error> {
        Ok(Checkout::open_or_init(
            &self.url,
            &self.branch,
            &self.checkout_dir,
            self.auth.clone(),
        )?)
    }

    /// From a loaded configuration; `config_dir` anchors the default
    /// checkout folder (`.capstan/repo` beside the configuration file).
    pub fn from_config(
        config: &Config,
        config_dir: &Path,
        dry_run: bool,
    ) -> Result<Settings, Error> {
        let path = config.update.path.trim().to_string();
        let p = Path::new(&path);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::Settings(format!(
                "update.path `{path}` must be a folder inside the repository (relative, no `..`)"
            )));
        }
        let auth = Auth::from_config(config.repository.auth.as_ref().map(|a| &a.value))?;
        Ok(Settings {
            url: config.repository.url.value.clone(),
            // `pull-request` mode: the base; the head branches come from the template.
            branch: match config.update.mode.value {
                UpdateMode::Push => config.push_branch().to_string(),
                UpdateMode::PullRequest => config.base_branch().to_string(),
            },
            checkout_dir: config.update_checkout_dir(config_dir),
            path,
            auth,
            author_name: config.update.author.name.clone(),
            author_email: config.update.author.email.clone(),
            message_template: config.update.message_template.value.clone(),
            options: manifests::Options {
                match_image_fields: config.update.match_image_fields,
            },
            retry: RetryPolicy::default(),
            dry_run,
        })
    }
}

/// How the pass ended for the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// `--dry-run`: planned on `head`, nothing written.
    DryRun {
        head: String,
    },
    Pushed {
        commit: String,
        attempts: u32,
    },
    /// Nothing to commit on `head`.
    Unchanged {
        head: String,
        attempts: u32,
    },
}

/// What a pass did, for people and scripts.
#[derive(Debug, Serialize)]
pub struct Report {
    pub branch: String,
    pub outcome: Outcome,
    /// The plan of the last attempt (the one that was pushed, if any).
    pub plan: Plan,
    /// Policies with no chosen image, and why.
    pub not_chosen: Vec<(String, String)>,
    /// Policies whose tag source failed, and the error.
    pub source_errors: Vec<(String, String)>,
    /// Policies that chose an image but are referenced nowhere under
    /// `update.path` (nothing to update for them).
    pub unreferenced: Vec<String>,
}

impl Report {
    /// Something needs a person: bad files, unknown policies, unwritable
    /// files, a registry that could not be scanned.
    pub fn failed(&self) -> bool {
        !self.plan.problems.is_empty() || !self.source_errors.is_empty()
    }
}

/// Runs one pass (blocking: Git and file I/O).
pub fn run_once(settings: &Settings, choices: &Choices) -> Result<Report, Error> {
    let wanted = choices.wanted.as_slice();
    let checkout = settings.checkout()?;
    let not_chosen = wanted
        .iter()
        .filter_map(|w| {
            w.chosen
                .as_ref()
                .err()
                .map(|e| (w.policy.name.clone(), e.clone()))
        })
        .collect();
    let scan = |workdir: &Path| {
        let dir = workdir.join(&settings.path);
        manifests::plan_dir(workdir, &dir, wanted, settings.options)
    };

    if settings.dry_run {
        let head = checkout.fetch()?;
        checkout.reset_to(head)?;
        let plan = scan(checkout.workdir());
        return Ok(Report {
            branch: settings.branch.clone(),
            outcome: Outcome::DryRun {
                head: head.to_string(),
            },
            not_chosen,
            source_errors: choices.errors.clone(),
            unreferenced: unreferenced(choices, &plan),
            plan,
        });
    }

    let author = git2::Signature::now(&settings.author_name, &settings.author_email)
        .map_err(|e| Error::Settings(format!("update.author: {}", e.message())))?;
    let mut last_plan = Plan::default();
    let result = git::write_back(&checkout, &author, &settings.retry, |workdir, attempt| {
        let mut plan = scan(workdir);
        plan.write();
        tracing::debug!(
            attempt,
            files = plan.files.len(),
            problems = plan.problems.len(),
            "planned"
        );
        let proposal = (!plan.files.is_empty()).then(|| git::Proposal {
            message: message::render(&settings.message_template, &plan),
            paths: plan.files.iter().map(|f| f.path.clone()).collect(),
        });
        last_plan = plan;
        Ok::<_, Infallible>(proposal)
    });
    let outcome = match result {
        Ok(git::Outcome::Pushed { commit, attempts }) => Outcome::Pushed {
            commit: commit.to_string(),
            attempts,
        },
        Ok(git::Outcome::Unchanged { head, attempts }) => {
            // Nothing was committed, so nothing of the last plan landed.
            last_plan.files.clear();
            Outcome::Unchanged {
                head: head.to_string(),
                attempts,
            }
        }
        Err(WriteBackError::Git(e)) => return Err(Error::Git(e)),
        Err(WriteBackError::Change(never)) => match never {},
        Err(WriteBackError::Exhausted {
            branch,
            attempts,
            reason,
        }) => {
            return Err(Error::Exhausted {
                branch,
                attempts,
                reason,
            });
        }
    };
    Ok(Report {
        branch: settings.branch.clone(),
        outcome,
        not_chosen,
        source_errors: choices.errors.clone(),
        unreferenced: unreferenced(choices, &last_plan),
        plan: last_plan,
    })
}

fn unreferenced(choices: &Choices, plan: &Plan) -> Vec<String> {
    choices
        .wanted
        .iter()
        .filter(|w| w.chosen.is_ok() && !plan.referenced.contains(&w.policy.name))
        .map(|w| w.policy.name.clone())
        .collect()
}

/// [`run_once`] for async callers: runs on the blocking pool.
pub async fn run_once_async(settings: Settings, choices: Choices) -> Result<Report, Error> {
    tokio::task::spawn_blocking(move || run_once(&settings, &choices))
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}
