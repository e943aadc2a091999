//! Resolve: give every rendered manifest its API resource, scope and final namespace,
//! and reject what cannot be applied before anything is written.
//!
//! Kinds and scopes come from the API server's discovery (never a hard-coded list) plus
//! the CustomResourceDefinitions in the same folder, whose kinds are not served until
//! they are applied. Namespaced objects without a namespace get the target's default;
//! every object gets the target label; duplicates and unknown kinds are errors naming
//! the files.

use std::collections::HashMap;

use kube::Client;
use kube::discovery::{ApiResource, Discovery, Scope};
use serde_json::Value;

use super::object::{DesiredObject, ObjectId, group_of};
use super::render::Manifest;
use super::{ARGO_WAVE_ANNOTATION, SyncError, TARGET_LABEL, WAVE_ANNOTATION};

/// Known kinds: (apiVersion, kind) → resource and whether it is namespaced.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    kinds: HashMap<(String, String), (ApiResource, bool)>,
}

impl Catalog {
    /// Every kind the API server serves (aggregated discovery: two requests).
    pub async fn discover(client: &Client) -> Result<Catalog, SyncError> {
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(|e| SyncError::kube("discovery", e))?;
        let mut catalog = Catalog::default();
        for group in discovery.groups() {
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    catalog.insert(ar, caps.scope == Scope::Namespaced);
                }
            }
        }
        Ok(catalog)
    }

    pub fn insert(&mut self, resource: ApiResource, namespaced: bool) {
        self.kinds.insert(
            (resource.api_version.clone(), resource.kind.clone()),
            (resource, namespaced),
        );
    }

    pub fn get(&self, api_version: &str, kind: &str) -> Option<&(ApiResource, bool)> {
        self.kinds.get(&(api_version.to_string(), kind.to_string()))
    }

    /// Any served version of `group`/`kind` (for objects known only by inventory).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<&(ApiResource, bool)> {
        self.kinds
            .values()
            .filter(|(ar, _)| ar.group == group && ar.kind == kind)
            .min_by(|a, b| a.0.version.cmp(&b.0.version))
    }

    /// Adds the kinds defined by CRD manifests that are about to be applied.
    pub fn add_crds(&mut self, manifests: &[Manifest]) {
        for m in manifests {
            if m.kind() != "CustomResourceDefinition"
                || group_of(m.api_version()) != "apiextensions.k8s.io"
            {
                continue;
            }
            let spec = &m.object["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for version in spec["versions"].as_array().into_iter().flatten() {
                if let Some(v) = version["name"].as_str() {
                    let api_version = format!("{group}/{v}");
                    let ar = ApiResource {
                        group: group.to_string(),
                        version: v.to_string(),
                        api_version,
                        kind: kind.to_string(),
                        plural: plural.to_string(),
                    };
                    self.kinds
                        .entry((ar.api_version.clone(), ar.kind.clone()))
                        .or_insert((ar, namespaced));
                }
            }
        }
    }
}

/// Resolves every manifest; the first problem found is returned.
pub fn resolve(
    manifests: Vec<Manifest>,
    catalog: &Catalog,
    target: &str,
    default_namespace: &str,
) -> Result<Vec<DesiredObject>, SyncError> {
    // Where each object was first seen, as an index into `out`: hashing, not ordering,
    // and no text is formatted unless there is an error (10,000 objects per pass).
    let mut seen: HashMap<ObjectId, usize> = HashMap::with_capacity(manifests.len());
    let mut out: Vec<DesiredObject> = Vec::with_capacity(manifests.len());
    for m in manifests {
        let Some((resource, namespaced)) = catalog.get(m.api_version(), m.kind()).cloned() else {
            return Err(SyncError::Object {
                origin: m.source.to_string(),
                object: format!("{} {}", m.kind(), m.name()),
                message: format!(
                    "unknown kind: the API server serves no `{}` in `{}` and no CustomResourceDefinition in this folder defines it",
                    m.kind(),
                    m.api_version()
                ),
            });
        };
        let namespace = if namespaced {
            m.namespace().unwrap_or(default_namespace).to_string()
        } else {
            String::new()
        };
        let id = ObjectId {
            group: resource.group.clone(),
            kind: resource.kind.clone(),
            namespace: namespace.clone(),
            name: m.name().to_string(),
        };
        if let Some(&first) = seen.get(&id) {
            return Err(SyncError::Duplicate {
                object: id.to_string(),
                first: out[first].source.to_string(),
                second: m.source.to_string(),
            });
        }
        let wave = wave_of(&m.object).map_err(|message| SyncError::Object {
            origin: m.source.to_string(),
            object: id.to_string(),
            message,
        })?;
        let mut object = m.object;
        let metadata = object["metadata"]
            .as_object_mut()
            .ok_or_else(|| SyncError::Object {
                origin: m.source.to_string(),
                object: id.to_string(),
                message: "`metadata` must be a mapping".into(),
            })?;
        if namespaced {
            metadata.insert("namespace".into(), Value::String(namespace));
        } else {
            metadata.remove("namespace");
        }
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        match labels.as_object_mut() {
            Some(labels) => {
                labels.insert(TARGET_LABEL.into(), Value::String(target.to_string()));
            }
            None => {
                return Err(SyncError::Object {
                    origin: m.source.to_string(),
                    object: id.to_string(),
                    message: "`metadata.labels` must be a mapping".into(),
                });
            }
        }
        seen.insert(id.clone(), out.len());
        out.push(DesiredObject {
            id,
            resource,
            namespaced,
            source: m.source,
            object,
            wave,
        });
    }
    Ok(out)
}

fn wave_of(object: &Value) -> Result<i64, String> {
    let annotations = &object["metadata"]["annotations"];
    for key in [WAVE_ANNOTATION, ARGO_WAVE_ANNOTATION] {
        if let Some(v) = annotations[key].as_str() {
            return v
                .trim()
                .parse()
                .map_err(|_| format!("annotation `{key}` must be an integer, found {v:?}"));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::render::parse_stream;
    use std::path::Path;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let ar = |g: &str, v: &str, k: &str, p: &str| ApiResource {
            group: g.into(),
            version: v.into(),
            api_version: if g.is_empty() {
                v.into()
            } else {
                format!("{g}/{v}")
            },
            kind: k.into(),
            plural: p.into(),
        };
        c.insert(ar("", "v1", "ConfigMap", "configmaps"), true);
        c.insert(ar("", "v1", "Namespace", "namespaces"), false);
        c.insert(ar("apps", "v1", "Deployment", "deployments"), true);
        c.insert(
            ar(
                "rbac.authorization.k8s.io",
                "v1",
                "ClusterRole",
                "clusterroles",
            ),
            false,
        );
        c.insert(
            ar(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
            ),
            false,
        );
        c
    }

    fn run(text: &str) -> Result<Vec<DesiredObject>, SyncError> {
        let manifests = parse_stream(Path::new("app.yaml"), text).unwrap();
        let mut c = catalog();
        c.add_crds(&manifests);
        resolve(manifests, &c, "dev", "team")
    }

    #[test]
    fn namespaced_objects_get_the_default_namespace_and_cluster_scoped_lose_theirs() {
        let got = run(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: ignored}\n",
        )
        .unwrap();
        let ids: Vec<_> = got.iter().map(|o| o.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "ConfigMap team/a",
                "ConfigMap other/b",
                "ClusterRole.rbac.authorization.k8s.io r"
            ]
        );
        assert_eq!(got[0].object["metadata"]["namespace"], "team");
        assert!(got[2].object["metadata"].get("namespace").is_none());
        assert_eq!(got[2].object["metadata"]["labels"][TARGET_LABEL], "dev");
    }

    #[test]
    fn duplicates_name_both_places() {
        let err = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: team}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "ConfigMap team/a is defined twice: app.yaml (document 1) and app.yaml (document 2)"
        );
    }

    #[test]
    fn unknown_kinds_are_errors_but_crds_in_the_folder_define_kinds() {
        let err = run("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("app.yaml (document 1): Widget w: unknown kind"),
            "{err}"
        );
        let got = run(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Cluster\n  names: {kind: Widget, plural: widgets}\n  versions: [{name: v1, served: true, storage: true}]\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
        )
        .unwrap();
        assert_eq!(got[1].id.to_string(), "Widget.example.com w");
        assert!(!got[1].namespaced);
        assert_eq!(got[1].resource.plural, "widgets");
    }

    #[test]
    fn waves_come_from_either_annotation() {
        let got = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, annotations: {capstan.dev/wave: '-1'}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, annotations: {argocd.argoproj.io/sync-wave: '5'}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
        assert_eq!(got.iter().map(|o| o.wave).collect::<Vec<_>>(), [-1, 5, 0]);
        let err = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, annotations: {capstan.dev/wave: soon}}\n").unwrap_err().to_string();
        assert!(err.contains("must be an integer"), "{err}");
    }
}
