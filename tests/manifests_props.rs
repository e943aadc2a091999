//! Property tests over generated YAML with setter markers: an edit followed
//! by its inverse gives back the original bytes; only the edit ranges change;
//! planning again on the result finds nothing to do.

use capstan::manifests::{self, ChosenImage, Options, Wanted, edit};
use proptest::prelude::*;

const IMAGES: [&str; 3] = ["ghcr.io/acme/app", "registry.local:5000/team/api", "nginx"];

fn wanted(tags: &[String; 3]) -> Vec<Wanted> {
    let dir = tempfile::tempdir().expect("tempdir");
    IMAGES
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let path = dir.path().join(format!("p{i}.yaml"));
            std::fs::write(
                &path,
                format!(
                    "apiVersion: capstan.dev/v1alpha1\nkind: ImagePolicy\nmetadata:\n  name: p{i}\nspec:\n  image: {image}\n  policy:\n    semver:\n      range: '*'\n"
                ),
            )
            .expect("write policy");
            let mut policies = capstan::policy::load_file(&path).expect("loads");
            Wanted {
                policy: policies.remove(0),
                chosen: Ok(ChosenImage {
                    tag: tags[i].clone(),
                    digest: None,
                }),
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Value {
    /// A plain word or number that no marker governs.
    Plain(String),
    /// A whole reference or a bare tag with a marker; style 0 plain, 1 single, 2 double.
    Image {
        policy: usize,
        tag: String,
        style: u8,
        tag_only: bool,
    },
    Map(Vec<(String, Value)>),
    Seq(Vec<Value>),
    /// `{name: x, image: ref} # marker`
    Flow {
        policy: usize,
        tag: String,
    },
}

fn tag() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,8}"
}

fn key() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9_-]{0,7}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z][a-z0-9 ]{0,10}[a-z0-9]".prop_map(Value::Plain),
        (0usize..3, tag(), 0u8..3, any::<bool>()).prop_map(|(policy, tag, style, tag_only)| {
            Value::Image {
                policy,
                tag,
                style,
                tag_only,
            }
        }),
        (0usize..3, tag()).prop_map(|(policy, tag)| Value::Flow { policy, tag }),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec((key(), inner.clone()), 1..4).prop_map(Value::Map),
            prop::collection::vec(inner, 1..4).prop_map(Value::Seq),
        ]
    })
}

fn quote(s: &str, style: u8) -> String {
    match style {
        1 => format!("'{s}'"),
        2 => format!("\"{s}\""),
        _ => s.to_string(),
    }
}

/// Renders `key: value` at `indent`, pushing lines (without line endings).
fn render_entry(key: &str, v: &Value, indent: usize, out: &mut Vec<String>, comments: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Map(entries) => {
            out.push(format!(
                "{pad}{key}:{}",
                if comments { " # a map" } else { "" }
            ));
            for (k, v) in dedup(entries) {
                render_entry(&k, v, indent + 2, out, comments);
            }
        }
        Value::Seq(items) => {
            out.push(format!("{pad}{key}:"));
            for item in items {
                render_item(item, indent + 2, out, comments);
            }
        }
        other => out.push(format!("{pad}{key}: {}", inline(other))),
    }
}

fn render_item(v: &Value, indent: usize, out: &mut Vec<String>, comments: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Map(entries) => {
            let entries = dedup(entries);
            let mut first = true;
            for (k, v) in entries {
                let mut lines = Vec::new();
                render_entry(&k, v, indent + 2, &mut lines, comments);
                for line in lines {
                    if first {
                        out.push(format!("{pad}- {}", &line[indent + 2..]));
                        first = false;
                    } else {
                        out.push(line);
                    }
                }
            }
        }
        Value::Seq(items) => {
            out.push(format!("{pad}-"));
            for item in items {
                render_item(item, indent + 2, out, comments);
            }
        }
        other => out.push(format!("{pad}- {}", inline(other))),
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Plain(s) => s.clone(),
        Value::Image {
            policy,
            tag,
            style,
            tag_only,
        } => {
            if *tag_only {
                format!(
                    "{} # {{\"$imagepolicy\": \"p{policy}:tag\"}}",
                    quote(tag, *style)
                )
            } else {
                format!(
                    "{} # {{\"$imagepolicy\": \"p{policy}\"}}",
                    quote(&format!("{}:{tag}", IMAGES[*policy]), *style)
                )
            }
        }
        Value::Flow { policy, tag } => format!(
            "{{name: c, image: {}:{tag}}} # {{\"$imagepolicy\": \"p{policy}\"}}",
            IMAGES[*policy]
        ),
        Value::Map(_) | Value::Seq(_) => unreachable!("collections are rendered as blocks"),
    }
}

/// Mapping keys must be unique.
fn dedup(entries: &[(String, Value)]) -> Vec<(String, &Value)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .map(|(k, v)| (k.clone(), v))
        .collect()
}

fn document() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec((key(), value()), 1..6)
}

fn render(docs: &[Vec<(String, Value)>], crlf: bool, bom: bool, comments: bool) -> String {
    let mut lines = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            lines.push("---".to_string());
        }
        if comments {
            lines.push(format!("# document {i}"));
        }
        for (k, v) in dedup(doc) {
            render_entry(&k, v, 0, &mut lines, comments);
        }
    }
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = lines.join(eol);
    text.push_str(eol);
    if bom {
        text.insert(0, '\u{feff}');
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn edit_then_inverse_restores_the_bytes(
        docs in prop::collection::vec(document(), 1..4),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        comments in any::<bool>(),
        tags in [tag(), tag(), tag()],
    ) {
        let text = render(&docs, crlf, bom, comments);
        if std::env::var_os("CAPSTAN_PROP_SHOW").is_some() {
            eprintln!("----\n{text}");
        }
        let wanted = wanted(&tags);
        let dir = std::path::Path::new("/nonexistent");
        let outcome = manifests::plan_text("gen.yaml", dir, &text, &wanted, Options::default());
        prop_assert!(outcome.problems.is_empty(), "{:?}\n{}", outcome.problems, text);
        let Some(plan) = outcome.plan else {
            // Nothing to change: every reference already had its tag.
            prop_assert_eq!(outcome.up_to_date, outcome.references);
            return Ok(());
        };
        let edits: Vec<edit::Edit> = plan.changes.iter().map(|c| c.edit.clone()).collect();
        prop_assert_eq!(
            edit::apply(&text, &edits).map_err(TestCaseError::fail)?,
            plan.updated.clone()
        );
        let restored = edit::apply(&plan.updated, &edit::inverse(&edits)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&restored, &text);
        // Unchanged outside the edits: the prefix before the first edit and
        // the suffix after the last are byte-identical.
        let first = edits.iter().map(|e| e.range.start).min().unwrap_or(0);
        let last = edits.iter().map(|e| e.range.end).max().unwrap_or(0);
        prop_assert_eq!(&plan.updated.as_bytes()[..first], &text.as_bytes()[..first]);
        let tail = text.len() - last;
        prop_assert_eq!(&plan.updated.as_bytes()[plan.updated.len() - tail..], &text.as_bytes()[last..]);
        // Planning again on the result: nothing left to do.
        let again = manifests::plan_text("gen.yaml", dir, &plan.updated, &wanted, Options::default());
        prop_assert!(again.plan.is_none(), "not idempotent:\n{}", plan.updated);
        prop_assert!(again.problems.is_empty());
    }
}
