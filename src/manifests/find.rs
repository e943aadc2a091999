//! Which scalars of a file hold an image a policy governs, and which part.
//!
//! Three sources, in priority order for a given scalar:
//! 1. setter markers (`# {"$imagepolicy": ...}`) on the scalar's line;
//! 2. `images:` entries of a kustomization, matched by image name;
//! 3. with `update.matchImageFields`, `image:` fields of Pod templates whose
//!    repository equals a policy's image.

use super::marker::{self, Field};
use super::reference;
use super::yaml_index::YamlIndex;
use crate::policy::ImagePolicy;

/// What a found scalar holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Marker(Field),
    /// `images[].newTag` of a kustomization.
    KustomizeTag,
    /// `images[].digest` of a kustomization.
    KustomizeDigest,
    /// An `image:` field of a Pod template (auto mode).
    ImageField,
}

impl RefKind {
    pub fn describe(self) -> String {
        match self {
            RefKind::Marker(f) => format!("marker{}", f.suffix()),
            RefKind::KustomizeTag => "kustomization newTag".into(),
            RefKind::KustomizeDigest => "kustomization digest".into(),
            RefKind::ImageField => "image field".into(),
        }
    }
}

/// A scalar governed by a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// Index into [`YamlIndex::scalars`].
    pub scalar: usize,
    /// Index into the policies passed in.
    pub policy: usize,
    pub kind: RefKind,
}

/// Something found that cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub message: String,
    /// `false`: a note (skipped on purpose), `true`: an error in the file.
    pub is_error: bool,
}

/// Everything governed in one file.
#[derive(Debug, Default)]
pub struct Found {
    pub occurrences: Vec<Occurrence>,
    pub findings: Vec<Finding>,
}

/// Finds governed scalars. `is_kustomization`: the file's name says it is one
/// (`kustomization.yaml`, `kustomization.yml`, `Kustomization`).
pub fn find(
    index: &YamlIndex,
    policies: &[&ImagePolicy],
    is_kustomization: bool,
    match_image_fields: bool,
) -> Found {
    let mut found = Found::default();
    let mut marked = vec![false; index.scalars.len()];

    for m in &index.markers {
        let parsed = match marker::parse(&m.text) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(message) => {
                found.findings.push(error(m.line, message));
                continue;
            }
        };
        let Some(scalar) = m.scalar else {
            found.findings.push(error(
                m.line,
                "marker on a line without a scalar value (put it after the value it sets)".into(),
            ));
            continue;
        };
        match marker::resolve(&parsed, policies) {
            Ok(policy) => {
                marked[scalar] = true;
                found.occurrences.push(Occurrence {
                    scalar,
                    policy,
                    kind: RefKind::Marker(parsed.field),
                });
            }
            Err(message) => found.findings.push(error(m.line, message)),
        }
    }

    if is_kustomization {
        kustomize_images(index, policies, &marked, &mut found);
    }
    if match_image_fields {
        image_fields(index, policies, &marked, &mut found);
    }
    found
}

fn error(line: usize, message: String) -> Finding {
    Finding {
        line,
        message,
        is_error: true,
    }
}

fn note(line: usize, message: String) -> Finding {
    Finding {
        line,
        message,
        is_error: false,
    }
}

/// The one policy whose image is `name`; several is ambiguous (a note).
fn policy_for_image(
    name: &str,
    policies: &[&ImagePolicy],
    line: usize,
    found: &mut Found,
) -> Option<usize> {
    let matching: Vec<usize> = (0..policies.len())
        .filter(|&i| reference::same_repository(name, &policies[i].image))
        .collect();
    match matching.as_slice() {
        [one] => Some(*one),
        [] => None,
        many => {
            let names: Vec<&str> = many.iter().map(|&i| policies[i].name.as_str()).collect();
            found.findings.push(note(
                line,
                format!(
                    "image `{name}` matches several policies ({}); add a marker to choose one",
                    names.join(", ")
                ),
            ));
            None
        }
    }
}

/// `images: [{name, newName, newTag, digest}]` of a kustomization document.
fn kustomize_images(
    index: &YamlIndex,
    policies: &[&ImagePolicy],
    marked: &[bool],
    found: &mut Found,
) {
    #[derive(Default)]
    struct Entry {
        name: Option<usize>,
        new_name: Option<usize>,
        new_tag: Option<usize>,
        digest: Option<usize>,
        any_marked: bool,
        line: usize,
    }
    // (doc, item index) -> entry, in source order.
    let mut entries: Vec<((usize, usize), Entry)> = Vec::new();
    for (i, s) in index.scalars.iter().enumerate() {
        if s.is_key {
            continue;
        }
        let Some(rest) = s.pointer.strip_prefix("/images/") else {
            continue;
        };
        let Some((item, field)) = rest.split_once('/') else {
            continue;
        };
        let Ok(item) = item.parse::<usize>() else {
            continue;
        };
        let is_kustomize_doc = index.documents.get(s.doc).is_some_and(|d| {
            d.kind.as_deref().is_none_or(|k| k == "Kustomization")
                && d.api_version
                    .as_deref()
                    .is_none_or(|v| v.starts_with("kustomize.config.k8s.io/"))
        });
        if !is_kustomize_doc {
            continue;
        }
        let key = (s.doc, item);
        let pos = match entries.iter().position(|(k, _)| *k == key) {
            Some(p) => p,
            None => {
                entries.push((
                    key,
                    Entry {
                        line: s.line,
                        ..Entry::default()
                    },
                ));
                entries.len() - 1
            }
        };
        let entry = &mut entries[pos].1;
        entry.any_marked |= marked[i];
        match field {
            "name" => entry.name = Some(i),
            "newName" => entry.new_name = Some(i),
            "newTag" => entry.new_tag = Some(i),
            "digest" => entry.digest = Some(i),
            _ => {}
        }
    }
    for (_, e) in entries {
        if e.any_marked {
            continue; // markers decide for this entry
        }
        // The image that ends up running is newName when set, else name.
        let Some(image) = e
            .new_name
            .or(e.name)
            .map(|i| index.scalars[i].value.as_str())
        else {
            continue;
        };
        let Some(policy) = policy_for_image(image, policies, e.line, found) else {
            continue;
        };
        let pins = policies[policy].digest == crate::policy::DigestMode::Pin;
        match (e.new_tag, e.digest, pins) {
            (_, Some(_), false) => found.findings.push(note(
                e.line,
                format!(
                    "kustomization image `{image}` pins a digest, which overrides newTag, but policy `{}` does not pin digests; entry left alone",
                    policies[policy].name
                ),
            )),
            (None, None, _) => found.findings.push(note(
                e.line,
                format!("kustomization image `{image}` has no `newTag:`; add one for capstan to update"),
            )),
            (tag, digest, _) => {
                if let Some(scalar) = tag {
                    found.occurrences.push(Occurrence {
                        scalar,
                        policy,
                        kind: RefKind::KustomizeTag,
                    });
                }
                if let Some(scalar) = digest {
                    found.occurrences.push(Occurrence {
                        scalar,
                        policy,
                        kind: RefKind::KustomizeDigest,
                    });
                } else if pins {
                    found.findings.push(note(
                        e.line,
                        format!("kustomization image `{image}` has no `digest:`; only newTag is updated"),
                    ));
                }
            }
        }
    }
}

/// Pointers of `image:` fields in Pod templates, by kind.
fn is_pod_image_field(kind: &str, pointer: &str) -> bool {
    let prefix = match kind {
        "Pod" => "/spec/",
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => "/spec/template/spec/",
        "CronJob" => "/spec/jobTemplate/spec/template/spec/",
        _ => return false,
    };
    let Some(rest) = pointer.strip_prefix(prefix) else {
        return false;
    };
    let mut parts = rest.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("containers" | "initContainers"), Some(n), Some("image"), None)
            if n.parse::<usize>().is_ok()
    )
}

fn image_fields(index: &YamlIndex, policies: &[&ImagePolicy], marked: &[bool], found: &mut Found) {
    for (i, s) in index.scalars.iter().enumerate() {
        if s.is_key || marked[i] {
            continue;
        }
        let Some(kind) = index.documents.get(s.doc).and_then(|d| d.kind.as_deref()) else {
            continue;
        };
        if !is_pod_image_field(kind, &s.pointer) {
            continue;
        }
        let name = reference::split(&s.value).name;
        if let Some(policy) = policy_for_image(name, policies, s.line, found) {
            found.occurrences.push(Occurrence {
                scalar: i,
                policy,
                kind: RefKind::ImageField,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::yaml_index::index;

    #[test]
    fn pod_template_pointers() {
        assert!(is_pod_image_field(
            "Deployment",
            "/spec/template/spec/containers/0/image"
        ));
        assert!(is_pod_image_field(
            "CronJob",
            "/spec/jobTemplate/spec/template/spec/initContainers/2/image"
        ));
        assert!(is_pod_image_field("Pod", "/spec/containers/1/image"));
        assert!(!is_pod_image_field(
            "Service",
            "/spec/template/spec/containers/0/image"
        ));
        assert!(!is_pod_image_field(
            "Deployment",
            "/spec/template/spec/containers/0/env/0/image"
        ));
    }

    #[test]
    fn marker_on_key_only_line_is_an_error() {
        let ix = index("a: # {\"$imagepolicy\": \"p\"}\n  b: 1\n").expect("parses");
        let found = find(&ix, &[], false, false);
        assert_eq!(found.findings.len(), 1);
        assert!(found.findings[0].is_error);
        assert_eq!(found.findings[0].line, 1);
    }
}
