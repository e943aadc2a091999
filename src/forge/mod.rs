//! Forges: where the result of a sync goes back to the commit it applied.
//!
//! The `Forge` trait is what the loops use; `github` implements it with octocrab.
//! Only commit statuses are here so far (pull requests and deployments belong to
//! other parts of the design). A status carries a one-line description of at most
//! 140 characters, the limit GitHub enforces.

pub mod github;

use std::future::Future;

pub use github::GitHub;

/// GitHub's limit on a status description.
pub const DESCRIPTION_LIMIT: usize = 140;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    Pending,
    Success,
    Failure,
    Error,
}

/// A status for one commit under one context (e.g. `capstan/dev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub sha: String,
    pub state: CommitState,
    pub context: String,
    /// One line, at most 140 characters (see `one_line`).
    pub description: String,
    pub target_url: Option<String>,
}

impl CommitStatus {
    pub fn new(sha: &str, state: CommitState, context: &str, description: &str) -> Self {
        CommitStatus {
            sha: sha.to_string(),
            state,
            context: context.to_string(),
            description: one_line(description),
            target_url: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("forge configuration: {0}")]
    Config(String),
    #[error("{operation}: {message}")]
    Api { operation: String, message: String },
}

/// A Git hosting service.
pub trait Forge {
    /// Creates a status on a commit (GitHub keeps the latest per context).
    fn set_commit_status(
        &self,
        status: &CommitStatus,
    ) -> impl Future<Output = Result<(), ForgeError>> + Send;
}

/// Collapses whitespace to single spaces and cuts to 140 characters (with `…`).
pub fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= DESCRIPTION_LIMIT {
        return joined;
    }
    let mut cut: String = joined.chars().take(DESCRIPTION_LIMIT - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_line_and_at_most_140_chars() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
        let long = "é".repeat(300);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(&"x".repeat(140)), "x".repeat(140));
    }
}
