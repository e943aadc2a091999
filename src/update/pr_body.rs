//! Title and body of a pull request, from `update.pullRequest.title`/`.body`
//! (pure).
//!
//! Placeholders: `{summary}` (`podinfo 6.5.0 → 6.5.1`), `{changes}` (one
//! line per change, as in commit messages), `{policy}`, `{image}`,
//! `{oldTag}`, `{newTag}`, `{digest}` (of the new image), `{branch}` (head),
//! `{base}`, `{files}` (a Markdown list), `{changelog}` (compare link and
//! commit list, or why there is none), `{patch}` (the RFC 6902 JSON patch of
//! each file, pretty JSON). `{{`/`}}` are literal braces.

use std::collections::BTreeMap;

use super::message;
use crate::forge::Comparison;
use crate::manifests::Plan;

/// GitHub refuses bodies over 65536 characters; the changelog and the patch
/// are the parts that grow, so they are cut first.
pub const BODY_LIMIT: usize = 65_000;
/// Commits listed in a changelog at most.
pub const CHANGELOG_COMMITS: usize = 50;

/// What the changelog section says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changelog {
    Compared(Comparison),
    /// Why there is no changelog (no labels, other forge, compare failed).
    Unavailable(String),
}

/// Everything a title or body can show.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub policy: &'a str,
    pub image: &'a str,
    pub old_tag: &'a str,
    pub new_tag: &'a str,
    pub digest: Option<&'a str>,
    pub branch: &'a str,
    pub base: &'a str,
    pub plan: &'a Plan,
    pub changelog: &'a Changelog,
}

/// `(title, body)`.
pub fn render(title_template: &str, body_template: &str, facts: &Facts<'_>) -> (String, String) {
    let summary = message::summary(facts.plan);
    let changes = message::change_lines(facts.plan).join("\n");
    let files = facts
        .plan
        .files
        .iter()
        .map(|f| format!("- `{}`", f.path))
        .collect::<Vec<_>>()
        .join("\n");
    let changelog = changelog_markdown(facts.changelog);
    let patch = patch_json(facts.plan);
    let digest = facts.digest.unwrap_or("(unknown)");
    let values = |changelog: &str, patch: &str| -> Vec<(&'static str, String)> {
        vec![
            ("summary", summary.clone()),
            ("changes", changes.clone()),
            ("policy", facts.policy.to_string()),
            ("image", facts.image.to_string()),
            ("oldTag", facts.old_tag.to_string()),
            ("newTag", facts.new_tag.to_string()),
            ("digest", digest.to_string()),
            ("branch", facts.branch.to_string()),
            ("base", facts.base.to_string()),
            ("files", files.clone()),
            ("changelog", changelog.to_string()),
            ("patch", patch.to_string()),
        ]
    };
    let fill = |template: &str, values: &[(&'static str, String)]| {
        let refs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        message::fill(template, &refs)
    };
    let title = fill(title_template, &values(&changelog, &patch))
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut body = fill(body_template, &values(&changelog, &patch));
    if body.len() > BODY_LIMIT {
        body = fill(body_template, &values(&changelog, "(too large to show)"));
    }
    if body.len() > BODY_LIMIT {
        let short = changelog_link_only(facts.changelog);
        body = fill(body_template, &values(&short, "(too large to show)"));
    }
    if body.len() > BODY_LIMIT {
        let mut cut = BODY_LIMIT;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push_str("\n\n…");
    }
    (title, body)
}

/// The compare link and the commit list (newest last, as GitHub lists them).
pub fn changelog_markdown(changelog: &Changelog) -> String {
    match changelog {
        Changelog::Unavailable(why) => format!("_No changelog: {why}._"),
        Changelog::Compared(c) => {
            let mut out = format!("[{} commit(s)]({})\n", c.total_commits, c.html_url);
            for commit in c.commits.iter().take(CHANGELOG_COMMITS) {
                let who = match &commit.author_login {
                    Some(login) => format!("@{login}"),
                    None => commit.author_name.clone(),
                };
                let short = commit.sha.get(..7).unwrap_or(&commit.sha);
                out.push_str(&format!("\n- {short} {} ({who})", commit.summary));
            }
            let listed = c.commits.len().min(CHANGELOG_COMMITS) as u64;
            if c.total_commits > listed {
                out.push_str(&format!(
                    "\n- … and {} more in the compare view",
                    c.total_commits - listed
                ));
            }
            out
        }
    }
}

fn changelog_link_only(changelog: &Changelog) -> String {
    match changelog {
        Changelog::Compared(c) => format!("[{} commit(s)]({})", c.total_commits, c.html_url),
        other => changelog_markdown(other),
    }
}

/// `{"path": [ops...]}` for every changed file, pretty.
pub fn patch_json(plan: &Plan) -> String {
    let map: BTreeMap<&str, &json_patch::Patch> = plan
        .files
        .iter()
        .map(|f| (f.path.as_str(), &f.patch))
        .collect();
    serde_json::to_string_pretty(&map).unwrap_or_default()
}

/// The review requests: changelog authors with a forge login, then the
/// configured users, without duplicates, without the bot itself.
pub fn reviewers(changelog: &Changelog, configured: &[String], bot: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let authors = match changelog {
        Changelog::Compared(c) => c
            .commits
            .iter()
            .filter_map(|c| c.author_login.clone())
            .collect(),
        Changelog::Unavailable(_) => Vec::new(),
    };
    for login in authors.into_iter().chain(configured.iter().cloned()) {
        let is_bot = bot.is_some_and(|b| b.eq_ignore_ascii_case(&login));
        if !is_bot && !out.iter().any(|o| o.eq_ignore_ascii_case(&login)) {
            out.push(login);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::CompareCommit;

    fn commit(sha: &str, login: Option<&str>, name: &str) -> CompareCommit {
        CompareCommit {
            sha: sha.into(),
            summary: format!("change {sha}"),
            author_login: login.map(str::to_string),
            author_name: name.into(),
            author_email: format!("{name}@example.com"),
        }
    }

    fn compared() -> Changelog {
        Changelog::Compared(Comparison {
            html_url: "https://github.com/acme/app/compare/a...b".into(),
            total_commits: 3,
            commits: vec![
                commit("1111111aaaa", Some("alice"), "Alice"),
                commit("2222222bbbb", None, "Bob"),
                commit("3333333cccc", Some("capstan-bot"), "bot"),
            ],
        })
    }

    #[test]
    fn reviewers_are_authors_then_configured_without_bot_or_duplicates() {
        let got = reviewers(
            &compared(),
            &["carol".into(), "Alice".into()],
            Some("capstan-bot"),
        );
        assert_eq!(got, vec!["alice", "carol"]);
    }

    #[test]
    fn the_default_templates_fill_every_placeholder() {
        use crate::manifests::{Change, FilePlan, edit::Edit};
        let defaults = crate::config::PullRequest::default();
        let plan = Plan {
            files: vec![FilePlan {
                path: "apps/app.yaml".into(),
                absolute: "apps/app.yaml".into(),
                original: String::new(),
                updated: String::new(),
                changes: vec![Change {
                    policy: "app".into(),
                    line: 3,
                    kind: "marker".into(),
                    document: 0,
                    pointer: "/image".into(),
                    from: "1.0".into(),
                    to: "1.1".into(),
                    edit: Edit {
                        range: 0..0,
                        old: String::new(),
                        new: String::new(),
                    },
                }],
                patch: serde_json::from_value(serde_json::json!([
                    {"op": "replace", "path": "/0/image", "value": "ghcr.io/acme/app:1.1"}
                ]))
                .expect("patch"),
            }],
            ..Plan::default()
        };
        let changelog = compared();
        let facts = Facts {
            policy: "app",
            image: "ghcr.io/acme/app",
            old_tag: "1.0",
            new_tag: "1.1",
            digest: Some("sha256:abc"),
            branch: "capstan/app",
            base: "main",
            plan: &plan,
            changelog: &changelog,
        };
        let (title, body) = render(&defaults.title.value, &defaults.body.value, &facts);
        assert_eq!(title, "chore(images): app 1.0 → 1.1");
        for part in [
            "Capstan updates `ghcr.io/acme/app` from `1.0` to `1.1` (policy `app`).",
            "Digest: sha256:abc",
            "- `apps/app.yaml`",
            "[3 commit(s)](https://github.com/acme/app/compare/a...b)",
            "\"path\": \"/0/image\"",
        ] {
            assert!(body.contains(part), "{part} missing in:\n{body}");
        }
        for name in crate::config::PULL_REQUEST_PLACEHOLDERS {
            assert!(!body.contains(&format!("{{{name}}}")), "{name}: {body}");
        }
    }

    #[test]
    fn changelog_lists_commits_with_logins_or_names() {
        assert_eq!(
            changelog_markdown(&compared()),
            "[3 commit(s)](https://github.com/acme/app/compare/a...b)\n\n- 1111111 change 1111111aaaa (@alice)\n- 2222222 change 2222222bbbb (Bob)\n- 3333333 change 3333333cccc (@capstan-bot)"
        );
        assert_eq!(
            changelog_markdown(&Changelog::Unavailable("no labels".into())),
            "_No changelog: no labels._"
        );
    }
}
