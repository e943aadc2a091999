//! Tags from the registries: each policy's image is scanned (tags, and the
//! chosen tag's digest for `digest: pin`) by [`crate::registry::Scanner`].
//!
//! A registry that cannot be scanned is an error for the policies on it;
//! the other policies go ahead.

use super::Choices;
use crate::manifests::{ChosenImage, Wanted};
use crate::policy::{DigestMode, ImagePolicy};
use crate::registry::{Outcome, ScanResult, Scanner};

/// Scans every policy (concurrently) and turns the results into choices.
pub async fn choose(scanner: &Scanner, policies: &[ImagePolicy]) -> Choices {
    let results = scanner.scan_all(policies).await;
    let mut choices = Choices::default();
    for (policy, result) in policies.iter().zip(results) {
        let (wanted, error) = wanted(policy, result);
        if let Some(error) = error {
            choices.errors.push((policy.name.clone(), error));
        }
        choices.wanted.push(wanted);
    }
    choices
}

/// What one policy wants after its scan, and the error when the scan (or the
/// digest it needed) failed.
pub fn wanted(policy: &ImagePolicy, result: ScanResult) -> (Wanted, Option<String>) {
    let mut error = None;
    let chosen = match result.outcome {
        Outcome::Fresh(scanned) => match scanned.chosen {
            Some(c) if policy.digest == DigestMode::Pin && c.digest.is_none() => {
                let why = format!("the registry gave no digest for `{}`", c.tag);
                error = Some(why.clone());
                Err(why)
            }
            Some(c) => Ok(ChosenImage {
                tag: c.tag,
                digest: c.digest,
            }),
            None => Err(scanned.decision.no_choice_summary()),
        },
        Outcome::Stale { error: e, .. } => {
            let why = format!("registry scan failed: {e}");
            error = Some(why.clone());
            Err(why)
        }
    };
    (
        Wanted {
            policy: policy.clone(),
            chosen,
        },
        error,
    )
}
