//! Tags from files instead of a registry: `<dir>/<policy>.txt` per policy.
//!
//! Same format as `capstan policy eval --tags-file`: one tag per line (blank
//! lines and `#` lines ignored), or a registry `tags/list` JSON answer. Useful
//! where the registry is not reachable from where `capstan update --once`
//! runs, and for scripted tests. A tags file has no digests, so policies with
//! `digest: pin` are skipped with that reason.

use std::path::Path;

use super::Choices;
use crate::manifests::{ChosenImage, Wanted};
use crate::policy::{self, DigestMode, ImagePolicy};

/// Parses a tag list (lines, or `{"tags": [...]}`).
pub fn parse_tags(text: &str) -> Result<Vec<String>, String> {
    if text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let list: TagList =
            serde_json::from_str(text).map_err(|e| format!("invalid tags/list JSON: {e}"))?;
        return Ok(list.tags.unwrap_or_default());
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// What each policy chooses from its tags file. A missing file skips the
/// policy; an unreadable or malformed one is an error.
pub fn choose(dir: &Path, policies: &[ImagePolicy]) -> Choices {
    let mut choices = Choices::default();
    for policy in policies {
        let chosen = match choose_one(dir, policy) {
            Ok(chosen) => chosen,
            Err(error) => {
                choices.errors.push((policy.name.clone(), error.clone()));
                Err(error)
            }
        };
        choices.wanted.push(Wanted {
            policy: policy.clone(),
            chosen,
        });
    }
    choices
}

/// `Ok(Err(why))`: nothing to choose (a skip); `Err`: the source failed.
fn choose_one(dir: &Path, policy: &ImagePolicy) -> Result<Result<ChosenImage, String>, String> {
    if policy.digest == DigestMode::Pin {
        return Ok(Err(
            "pins digests, and a tags file has no digests (use the registry)".into(),
        ));
    }
    let path = dir.join(format!("{}.txt", policy.name));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(format!("no tags file {}", path.display())));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let tags = parse_tags(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let decision = policy::select(policy, &tags);
    tracing::debug!(policy = %policy.name, tags = tags.len(), chosen = ?decision.chosen, "policy evaluated");
    Ok(match decision.chosen {
        Some(tag) => Ok(ChosenImage { tag, digest: None }),
        None => Err(decision.no_choice_summary()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        assert_eq!(
            parse_tags("# c\n1.0\n\n 1.1 \n").expect("lines"),
            vec!["1.0", "1.1"]
        );
        assert_eq!(
            parse_tags("{\"name\":\"x\",\"tags\":[\"a\",\"b\"]}").expect("json"),
            vec!["a", "b"]
        );
        assert!(parse_tags("{nope").is_err());
    }
}
