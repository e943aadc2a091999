//! Commit messages from `update.messageTemplate`.
//!
//! `{summary}` is one line (`podinfo 6.5.0 → 6.5.1`, or a count when several
//! images move); `{changes}` is one line per policy and version step, with the
//! files it touched. `{{` and `}}` are literal braces (as validated by
//! `config`).

use std::collections::BTreeMap;

use crate::manifests::Plan;

/// One line per (policy, from, to), files listed once each, in plan order.
pub fn change_lines(plan: &Plan) -> Vec<String> {
    let mut groups: Vec<((String, String, String), Vec<String>)> = Vec::new();
    for (file, change) in plan.changes() {
        let key = (
            change.policy.clone(),
            change.from.clone(),
            change.to.clone(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, files)) => {
                if !files.contains(&file.path) {
                    files.push(file.path.clone());
                }
            }
            None => groups.push((key, vec![file.path.clone()])),
        }
    }
    groups
        .into_iter()
        .map(|((policy, from, to), files)| {
            format!("- {policy}: {from} → {to} ({})", files.join(", "))
        })
        .collect()
}

/// One line for the subject.
pub fn summary(plan: &Plan) -> String {
    let mut by_policy: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (_, c) in plan.changes() {
        by_policy
            .entry(c.policy.as_str())
            .or_insert((&c.from, &c.to));
    }
    match by_policy.len() {
        0 => "no changes".to_string(),
        1 => {
            let (policy, (from, to)) = by_policy
                .iter()
                .next()
                .map(|(p, v)| (*p, *v))
                .unwrap_or_default();
            let distinct_steps = plan
                .changes()
                .filter(|(_, c)| c.policy == policy)
                .map(|(_, c)| (&c.from, &c.to))
                .collect::<std::collections::HashSet<_>>()
                .len();
            if distinct_steps == 1 {
                format!("{policy} {from} → {to}")
            } else {
                format!("update {policy} to {to}")
            }
        }
        n => {
            let names: Vec<&str> = by_policy.keys().copied().collect();
            if n <= 3 {
                format!("update {}", names.join(", "))
            } else {
                format!("update {} images ({}, ...)", n, names[..3].join(", "))
            }
        }
    }
}

/// Fills the commit message template.
pub fn render(template: &str, plan: &Plan) -> String {
    let summary = summary(plan);
    let changes = change_lines(plan).join("\n");
    fill(template, &[("summary", &summary), ("changes", &changes)])
}

/// Replaces each `{name}` of `values` in `template`; `{{` and `}}` are
/// literal braces, unknown `{...}` stay as written (config validation
/// rejects them before a template gets here).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let extra: usize = values.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len() + extra);
    let mut rest = template;
    'scan: while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
            continue;
        }
        for (name, value) in values {
            if let Some(after) = tail
                .strip_prefix('{')
                .and_then(|t| t.strip_prefix(name))
                .and_then(|t| t.strip_prefix('}'))
            {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        out.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifests::{Change, FilePlan, edit::Edit};

    pub(crate) fn change(policy: &str, from: &str, to: &str) -> Change {
        Change {
            policy: policy.into(),
            line: 1,
            kind: "marker".into(),
            document: 0,
            pointer: "/image".into(),
            from: from.into(),
            to: to.into(),
            edit: Edit {
                range: 0..0,
                old: String::new(),
                new: String::new(),
            },
        }
    }

    pub(crate) fn file(path: &str, changes: Vec<Change>) -> FilePlan {
        FilePlan {
            path: path.into(),
            absolute: path.into(),
            original: String::new(),
            updated: String::new(),
            changes,
            patch: json_patch::Patch(vec![]),
        }
    }

    #[test]
    fn renders_summary_and_changes() {
        let plan = Plan {
            files: vec![
                file("a.yaml", vec![change("app", "1.0", "1.1")]),
                file("b.yaml", vec![change("app", "1.0", "1.1")]),
            ],
            ..Plan::default()
        };
        assert_eq!(
            render("chore(images): {summary}\n\n{changes}\n{{literal}}", &plan),
            "chore(images): app 1.0 → 1.1\n\n- app: 1.0 → 1.1 (a.yaml, b.yaml)\n{literal}"
        );
    }

    #[test]
    fn several_policies() {
        let plan = Plan {
            files: vec![file(
                "a.yaml",
                vec![change("b", "1", "2"), change("a", "3", "4")],
            )],
            ..Plan::default()
        };
        assert_eq!(summary(&plan), "update a, b");
        assert_eq!(change_lines(&plan).len(), 2);
    }
}
