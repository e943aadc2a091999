//! The race-safe write path: fetch → reset → change → commit → push, again.
//!
//! Each attempt starts from the remote branch as it is at that moment and
//! asks the caller to compute its change on that tree. A push that is not a
//! fast-forward any more (someone pushed in between) is never forced: after a
//! short, growing, jittered pause the whole attempt starts over, so the
//! caller's edits are recomputed on the new head. If the recomputed change is
//! empty — the other push already contains it — nothing is committed.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use git2::{Oid, Signature};

use super::{Checkout, Error, PushOutcome};

/// How often and how patiently to retry rejected pushes.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A change the caller made in the work tree and wants committed.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub message: String,
    /// Changed files, relative to the work tree, `/`-separated.
    pub paths: Vec<String>,
}

/// How a write-back ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `commit` is now the remote branch's head.
    Pushed { commit: Oid, attempts: u32 },
    /// Nothing to commit on top of `head` (already up to date).
    Unchanged { head: Oid, attempts: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum WriteBackError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Git(#[from] Error),
    #[error("computing the change failed: {0}")]
    Change(#[source] E),
    #[error("push to `{branch}` rejected {attempts} times; last reason: {reason}")]
    Exhausted {
        branch: String,
        attempts: u32,
        reason: String,
    },
}

/// Runs the loop. `change(workdir, attempt)` edits files in the work tree
/// (which holds the remote head) and returns what to commit, or `None` when
/// there is nothing to change.
pub fn write_back<E, F>(
    checkout: &Checkout,
    author: &Signature<'_>,
    retry: &RetryPolicy,
    mut change: F,
) -> Result<Outcome, WriteBackError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Path, u32) -> Result<Option<Proposal>, E>,
{
    let attempts = retry.attempts.max(1);
    let mut last_reason = String::new();
    for attempt in 1..=attempts {
        let head = checkout.fetch()?;
        checkout.reset_to(head)?;
        let Some(proposal) = change(checkout.workdir(), attempt).map_err(WriteBackError::Change)?
        else {
            tracing::info!(branch = checkout.branch(), head = %head, attempt, "nothing to change");
            return Ok(Outcome::Unchanged {
                head,
                attempts: attempt,
            });
        };
        let Some(commit) = checkout.commit(&proposal.paths, &proposal.message, author)? else {
            tracing::info!(branch = checkout.branch(), head = %head, attempt, "edits equal the head; nothing to commit");
            return Ok(Outcome::Unchanged {
                head,
                attempts: attempt,
            });
        };
        match checkout.push()? {
            PushOutcome::Pushed => {
                tracing::info!(branch = checkout.branch(), commit = %commit, parent = %head, attempt, "pushed");
                return Ok(Outcome::Pushed {
                    commit,
                    attempts: attempt,
                });
            }
            PushOutcome::Rejected(reason) => {
                tracing::warn!(branch = checkout.branch(), commit = %commit, attempt, %reason,
                    "push rejected; fetching and recomputing");
                last_reason = reason;
                if attempt < attempts {
                    std::thread::sleep(backoff(retry, attempt));
                }
            }
        }
    }
    // Leave the clone at the remote head rather than at an unpushed commit.
    if let Ok(head) = checkout.fetch() {
        let _ = checkout.reset_to(head);
    }
    Err(WriteBackError::Exhausted {
        branch: checkout.branch().to_string(),
        attempts,
        reason: last_reason,
    })
}

/// `initial * 2^(attempt-1)`, capped, times a jitter factor in [0.5, 1.5) so
/// that two writers that collided do not collide again in lock step.
fn backoff(retry: &RetryPolicy, attempt: u32) -> Duration {
    let exp = retry
        .initial_backoff
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(retry.max_backoff);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let jitter = 0.5 + f64::from(nanos % 1000) / 1000.0;
    exp.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryPolicy {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        let b1 = backoff(&r, 1);
        assert!(
            b1 >= Duration::from_millis(50) && b1 < Duration::from_millis(150),
            "{b1:?}"
        );
        let b3 = backoff(&r, 3);
        assert!(
            b3 >= Duration::from_millis(200) && b3 < Duration::from_millis(600),
            "{b3:?}"
        );
        assert!(backoff(&r, 10) < Duration::from_millis(1500));
    }
}
