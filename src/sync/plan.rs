//! Plan: what a sync would do to each object, and the field-level differences.
//!
//! The truth is the API server's: a server-side apply dry-run (`dryRun=All`) returns
//! the object as it would be stored, defaults and admission included, and comparing
//! it with the live object gives the change. To keep a resync of thousands of
//! unchanged objects cheap (no request per object), an object is first checked
//! locally: when it carries the digest of the desired manifest that was last applied
//! (`capstan.dev/digest`) and every desired field still has its desired value live,
//! nothing can differ and the dry-run is skipped. Anything else goes to the dry-run.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::ObjectId;

/// Annotation holding the digest of the desired manifest last applied.
pub const DIGEST_ANNOTATION: &str = "capstan.dev/digest";

/// What a sync does to one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Create,
    Update { changes: Vec<FieldChange> },
    Unchanged,
    Prune,
}

/// One field that differs: its dotted path, and the values before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// A planned action for an object, with where it comes from in Git.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    pub object: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub action: Action,
    #[serde(skip)]
    pub id: Option<ObjectId>,
}

/// Adds the digest annotation of `object` (computed without the annotation itself).
pub fn stamp_digest(object: &mut Value) {
    // `get_mut`, not indexing: `IndexMut` would insert `annotations: null`.
    if let Some(ann) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        ann.remove(DIGEST_ANNOTATION);
    }
    // An empty `annotations` map hashes like an absent one, so stamping is stable.
    let empty = object["metadata"]
        .get("annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.is_empty());
    if empty && let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("annotations");
    }
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut hex = String::with_capacity(32);
    for b in &digest[..16] {
        let _ = write!(hex, "{b:02x}");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(DIGEST_ANNOTATION.into(), Value::String(hex));
        }
    }
}

/// True when `live` certainly matches `desired` (stamped with its digest): same digest
/// and every desired field present with the desired value.
pub fn unchanged_locally(desired: &Value, live: &Value) -> bool {
    let want = &desired["metadata"]["annotations"][DIGEST_ANNOTATION];
    !want.is_null()
        && *want == live["metadata"]["annotations"][DIGEST_ANNOTATION]
        && is_subset(desired, live)
}

/// `small` ⊆ `big`: maps by key, lists element-wise with equal length, scalars equal.
fn is_subset(small: &Value, big: &Value) -> bool {
    match (small, big) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| is_subset(v, w)) || (v.is_null() && !b.contains_key(k))
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| is_subset(v, w))
        }
        (a, b) => a == b,
    }
}

/// Strips what changes on every write or is not ours to compare.
fn comparable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o["metadata"].as_object_mut() {
        for key in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            meta.remove(key);
        }
    }
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
    }
    o
}

/// Field-level differences between the live object and the dry-run result.
pub fn field_diff(live: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into(
        &comparable(live),
        &comparable(after),
        String::new(),
        &mut out,
    );
    out
}

fn diff_into(a: &Value, b: &Value, path: String, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff_into(v, w, p, out),
                    (v, w) => out.push(FieldChange {
                        path: p,
                        before: v.cloned(),
                        after: w.cloned(),
                    }),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff_into(v, w, format!("{path}[{i}]"), out);
            }
        }
        (v, w) if v != w => out.push(FieldChange {
            path,
            before: Some(v.clone()),
            after: Some(w.clone()),
        }),
        _ => {}
    }
}

/// Text rendering of a plan, one object per line, changes indented under it.
pub fn render_text(entries: &[PlanEntry]) -> String {
    let mut s = String::new();
    for e in entries {
        let (mark, word) = match &e.action {
            Action::Create => ("+", "create"),
            Action::Update { .. } => ("~", "update"),
            Action::Unchanged => ("=", "unchanged"),
            Action::Prune => ("-", "prune"),
        };
        let _ = write!(s, "{mark} {word:<9} {}", e.object);
        if let Some(src) = &e.source {
            let _ = write!(s, "  ({src})");
        }
        s.push('\n');
        if let Action::Update { changes } = &e.action {
            for c in changes {
                let show = |v: &Option<Value>| {
                    v.as_ref().map_or("(absent)".to_string(), |v| v.to_string())
                };
                let _ = writeln!(
                    s,
                    "      {}: {} -> {}",
                    c.path,
                    show(&c.before),
                    show(&c.after)
                );
            }
        }
    }
    let count = |f: fn(&Action) -> bool| entries.iter().filter(|e| f(&e.action)).count();
    let _ = writeln!(
        s,
        "{} to create, {} to update, {} unchanged, {} to prune",
        count(|a| matches!(a, Action::Create)),
        count(|a| matches!(a, Action::Update { .. })),
        count(|a| matches!(a, Action::Unchanged)),
        count(|a| matches!(a, Action::Prune)),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_names_changed_added_and_removed_fields_and_ignores_bookkeeping() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "1", "generation": 1,
                          "managedFields": [{}], "labels": {"x": "1", "gone": "y"}},
                          "spec": {"replicas": 2, "list": [1, 2]}, "status": {"ready": 1}});
        let after = json!({"metadata": {"name": "a", "resourceVersion": "2", "generation": 2,
                           "labels": {"x": "2", "new": "z"}},
                           "spec": {"replicas": 3, "list": [1, 2]}, "status": {"ready": 0}});
        let d = field_diff(&live, &after);
        let paths: Vec<_> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.labels.gone",
                "metadata.labels.new",
                "metadata.labels.x",
                "spec.replicas"
            ]
        );
        assert_eq!(d[3].before, Some(json!(2)));
        assert_eq!(d[3].after, Some(json!(3)));
        assert!(field_diff(&live, &live).is_empty());
    }

    #[test]
    fn local_check_needs_the_digest_and_every_desired_value() {
        let mut desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        stamp_digest(&mut desired);
        let digest = desired["metadata"]["annotations"][DIGEST_ANNOTATION].clone();
        assert_eq!(digest.as_str().map(str::len), Some(32));
        let mut live = desired.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["annotations"]["other"] = json!("kept");
        assert!(unchanged_locally(&desired, &live));
        live["data"]["k"] = json!("drifted");
        assert!(
            !unchanged_locally(&desired, &live),
            "drift in a desired field"
        );
        let mut old = desired.clone();
        old["metadata"]["annotations"][DIGEST_ANNOTATION] = json!("0000");
        assert!(
            !unchanged_locally(&desired, &old),
            "another digest: a field may have been removed"
        );
        // Stamping is stable, and independent of an old digest.
        let mut again = desired.clone();
        stamp_digest(&mut again);
        assert_eq!(again, desired);
    }

    #[test]
    fn lists_must_have_the_same_length_but_elements_may_gain_defaults() {
        let desired = json!({"c": [{"name": "a"}]});
        assert!(is_subset(
            &desired,
            &json!({"c": [{"name": "a", "policy": "Always"}]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"c": [{"name": "a"}, {"name": "b"}]})
        ));
    }

    #[test]
    fn text_rendering() {
        let entries = vec![
            PlanEntry {
                object: "ConfigMap ns/a".into(),
                source: Some("a.yaml (document 1)".into()),
                action: Action::Create,
                id: None,
            },
            PlanEntry {
                object: "Deployment.apps ns/web".into(),
                source: None,
                action: Action::Update {
                    changes: vec![FieldChange {
                        path: "spec.replicas".into(),
                        before: Some(json!(2)),
                        after: Some(json!(3)),
                    }],
                },
                id: None,
            },
            PlanEntry {
                object: "ConfigMap ns/old".into(),
                source: None,
                action: Action::Prune,
                id: None,
            },
        ];
        let text = render_text(&entries);
        assert!(
            text.contains("+ create    ConfigMap ns/a  (a.yaml (document 1))\n"),
            "{text}"
        );
        assert!(text.contains("      spec.replicas: 2 -> 3\n"), "{text}");
        assert!(
            text.ends_with("1 to create, 1 to update, 0 unchanged, 1 to prune\n"),
            "{text}"
        );
    }
}
