//! GitHub commit statuses through octocrab (`POST /repos/{owner}/{repo}/statuses/{sha}`).
//!
//! The API base URL is configurable (GitHub Enterprise, and the HTTP mock in tests).
//! Requests carry a token when one is given; octocrab retries transient failures and
//! applies connect/read timeouts so a slow forge cannot stall a sync loop.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::StatusState;
use tracing::info;

use super::{CommitState, CommitStatus, Forge, ForgeError};

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// One repository on GitHub (or a server speaking its API).
#[derive(Debug, Clone)]
pub struct GitHub {
    client: Octocrab,
    owner: String,
    repo: String,
}

impl GitHub {
    pub fn new(
        api_url: Option<&str>,
        token: Option<String>,
        owner: &str,
        repo: &str,
    ) -> Result<GitHub, ForgeError> {
        let url = api_url.unwrap_or(DEFAULT_API_URL);
        let mut builder = Octocrab::builder()
            .base_uri(url)
            .map_err(|e| ForgeError::Config(format!("API URL {url:?}: {e}")))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)));
        if let Some(token) = token {
            builder = builder.personal_token(token);
        }
        let client = builder
            .build()
            .map_err(|e| ForgeError::Config(format!("GitHub client: {e}")))?;
        Ok(GitHub {
            client,
            owner: owner.to_string(),
            repo: repo.to_string(),
        })
    }
}

impl Forge for GitHub {
    async fn set_commit_status(&self, status: &CommitStatus) -> Result<(), ForgeError> {
        let state = match status.state {
            CommitState::Pending => StatusState::Pending,
            CommitState::Success => StatusState::Success,
            CommitState::Failure => StatusState::Failure,
            CommitState::Error => StatusState::Error,
        };
        let repos = self.client.repos(&self.owner, &self.repo);
        let mut request = repos
            .create_status(status.sha.clone(), state)
            .context(status.context.clone())
            .description(status.description.clone());
        if let Some(url) = &status.target_url {
            request = request.target(url.clone());
        }
        request.send().await.map_err(|e| ForgeError::Api {
            operation: format!(
                "set status {:?} on {}/{}@{}",
                status.context, self.owner, self.repo, status.sha
            ),
            message: describe(&e),
        })?;
        info!(commit = %status.sha, context = %status.context, state = ?status.state, "commit status sent");
        Ok(())
    }
}

fn describe(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let details: Vec<String> = source
                .errors
                .iter()
                .flatten()
                .filter_map(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .collect();
            if details.is_empty() {
                format!("{} ({})", source.message, source.status_code)
            } else {
                format!(
                    "{} ({}): {}",
                    source.message,
                    source.status_code,
                    details.join("; ")
                )
            }
        }
        other => other.to_string(),
    }
}
