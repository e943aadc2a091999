//! `deploy/` against the real API server: `kustomize build deploy/` is accepted object by
//! object by a server-side apply dry-run, the example `capstan.yaml` is a valid
//! configuration, and the RBAC it grants is checked by the API server's own
//! authorizer (SubjectAccessReview) after creating it for real.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::ensure;
use capstan::sync::apply::api_for;
use capstan::sync::render::{self, Manifest};
use capstan::sync::resolve::Catalog;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use support::cluster::{TestNamespace, wait_for};

const DEPLOY_NAMESPACE: &str = "capstan-system";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// `kustomize build deploy/`, moved from `capstan-system` into `ns` (the Namespace
/// object is renamed, namespaced objects and RBAC subjects follow it).
async fn rendered_in(ns: &str) -> Vec<Manifest> {
    assert!(
        render::kustomize_binary().is_some(),
        "kustomize is needed: set CAPSTAN_KUSTOMIZE or run scripts/k8s-env build"
    );
    let mut manifests = render::render(&deploy_dir())
        .await
        .unwrap_or_else(|e| panic!("kustomize build deploy/: {e}"));
    for m in &mut manifests {
        let o = &mut m.object;
        if o["kind"] == "Namespace" && o["metadata"]["name"] == DEPLOY_NAMESPACE {
            o["metadata"]["name"] = ns.into();
        }
        if o["metadata"]["namespace"] == DEPLOY_NAMESPACE {
            o["metadata"]["namespace"] = ns.into();
        }
        if let Some(subjects) = o.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                if s["namespace"] == DEPLOY_NAMESPACE {
                    s["namespace"] = ns.into();
                }
            }
        }
    }
    manifests
}

fn kinds(manifests: &[Manifest]) -> Vec<String> {
    let mut kinds: Vec<String> = manifests.iter().map(|m| m.kind().to_string()).collect();
    kinds.sort();
    kinds
}

async fn apply(client: &Client, catalog: &Catalog, m: &Manifest, dry_run: bool) -> Value {
    let (resource, namespaced) = catalog
        .get(m.api_version(), m.kind())
        .unwrap_or_else(|| panic!("the API server does not serve {}", m.api_version()))
        .clone();
    let ns = if namespaced {
        m.namespace().unwrap_or_default()
    } else {
        ""
    };
    let mut params = PatchParams::apply("capstan-deploy-test");
    if dry_run {
        params = params.dry_run();
    }
    let applied = api_for(client, &resource, ns)
        .patch(m.name(), &params, &Patch::Apply(&m.object))
        .await
        .unwrap_or_else(|e| panic!("{} {} rejected: {e}", m.kind(), m.name()));
    serde_json::to_value(applied).expect("object as JSON")
}

#[tokio::test]
async fn kustomize_build_is_accepted_by_the_api_server() {
    let ns = TestNamespace::new("deploy-dry").await;
    let manifests = rendered_in(&ns.name).await;
    assert_eq!(
        kinds(&manifests),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    let catalog = Catalog::discover(&ns.client).await.expect("discovery");
    // kustomize prints the Namespace first; a dry-run of a namespaced object needs
    // its namespace to exist, which the test's does.
    for m in &manifests {
        let applied = apply(&ns.client, &catalog, m, true).await;
        assert_eq!(applied["kind"], m.object["kind"], "{}", m.name());
    }

    // What the Deployment promises, as the API server defaulted it.
    let deployment = manifests
        .iter()
        .find(|m| m.kind() == "Deployment")
        .expect("a Deployment");
    let applied = apply(&ns.client, &catalog, deployment, true).await;
    let pod = &applied["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(pod["serviceAccountName"], "capstan");
    // Tokens reach the container from a Secret, never from the ConfigMap.
    let token = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "GITHUB_TOKEN")
        .expect("GITHUB_TOKEN in env");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"]["name"],
        "capstan-credentials"
    );
    // The config ConfigMap the Deployment mounts is the generated one.
    let config_map = manifests
        .iter()
        .find(|m| m.kind() == "ConfigMap" && m.name().starts_with("capstan-config-"))
        .expect("the generated capstan-config ConfigMap");
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == config_map.name()),
        "{volumes:?}"
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "work" && v["emptyDir"].is_object()),
        "the checkout folder is an emptyDir"
    );
}

#[test]
fn example_configuration_and_policy_are_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies dir");
    std::fs::copy(
        deploy_dir().join("policies/podinfo.yaml"),
        policies.join("podinfo.yaml"),
    )
    .expect("copy policy");
    // The policies folder is an absolute in-cluster path: point it at the copy.
    let text = std::fs::read_to_string(deploy_dir().join("capstan.yaml")).expect("capstan.yaml");
    assert!(text.contains("policies: /etc/capstan-policies\n"));
    let text = text.replace(
        "policies: /etc/capstan-policies\n",
        &format!("policies: {}\n", policies.display()),
    );
    let file = dir.path().join("capstan.yaml");
    std::fs::write(&file, text).expect("write");
    let config = capstan::config::Config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.targets.len(), 1);
    assert_eq!(config.leader_election.lease_name.value, "capstan-leader");
    assert_eq!(
        config.server.address.value, "0.0.0.0:8080",
        "the probes reach the Pod's address"
    );
    let policies = capstan::policy::load_dir(config.policies_dir())
        .unwrap_or_else(|e| panic!("{:?}", e.errors()));
    assert_eq!(policies.len(), 1);
}

/// The service account's user and groups, as the API server authenticates its token.
fn review(ns: &str, attributes: Result<ResourceAttributes, &str>) -> SubjectAccessReview {
    let (resource_attributes, non_resource_attributes) = match attributes {
        Ok(r) => (Some(r), None),
        Err(path) => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.into()),
                verb: Some("get".into()),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:capstan")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes,
            non_resource_attributes,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn can(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(group.into()),
        resource: Some(resource.into()),
        namespace: (!namespace.is_empty()).then(|| namespace.into()),
        name: (!name.is_empty()).then(|| name.into()),
        ..Default::default()
    }
}

async fn allowed(client: &Client, ns: &str, attributes: Result<ResourceAttributes, &str>) -> bool {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review(ns, attributes))
        .await
        .expect("SubjectAccessReview");
    answer.status.expect("a review has a status").allowed
}

/// Deletes the cluster-scoped RBAC objects the test created (the namespace's own
/// objects go with the namespace).
struct ClusterRbac {
    name: String,
}

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let client = support::cluster::client().await;
                let dp = DeleteParams::default();
                let _ = Api::<ClusterRoleBinding>::all(client.clone())
                    .delete(&name, &dp)
                    .await;
                let _ = Api::<ClusterRole>::all(client).delete(&name, &dp).await;
            });
        })
        .join();
    }
}

#[tokio::test]
async fn rbac_grants_what_capstan_needs_and_no_more() {
    let ns = TestNamespace::new("deploy-rbac").await;
    let client = ns.client.clone();
    let cluster_name = format!("capstan-{}", ns.name);
    let _cleanup = ClusterRbac {
        name: cluster_name.clone(),
    };
    let catalog = Catalog::discover(&client).await.expect("discovery");
    let mut manifests = rendered_in(&ns.name).await;
    // The ClusterRole and its binding get names of this test's own.
    for m in &mut manifests {
        let o = &mut m.object;
        if o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding" {
            o["metadata"]["name"] = cluster_name.clone().into();
        }
        if o["kind"] == "ClusterRoleBinding" {
            o["roleRef"]["name"] = cluster_name.clone().into();
        }
    }
    for m in manifests.iter().filter(|m| {
        matches!(
            m.kind(),
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
        )
    }) {
        apply(&client, &catalog, m, false).await;
    }

    let me = ns.name.as_str();
    // RBAC decisions follow the objects through an informer: wait for the first grant.
    wait_for(
        "the new RBAC to be in effect",
        Duration::from_secs(30),
        || async {
            ensure!(
                allowed(
                    &client,
                    me,
                    Ok(can("patch", "apps", "deployments", "web", "app"))
                )
                .await,
                "patch deployments not allowed yet"
            );
            Ok(())
        },
    )
    .await;

    let may = [
        // Apply, prune and watch the synced kinds, in any namespace.
        can("patch", "apps", "deployments", "web", "app"),
        can("create", "apps", "deployments", "web", ""),
        can("delete", "apps", "deployments", "web", "app"),
        can("watch", "apps", "deployments", "", ""),
        can("patch", "", "configmaps", "web", "settings"),
        can("delete", "", "configmaps", "web", "settings"),
        can("patch", "", "services", "other", "svc"),
        can("patch", "", "namespaces", "", "web"),
        // Its inventories: ConfigMaps in the targets' namespaces.
        can("get", "", "configmaps", "web", "capstan-inventory-web"),
        can("patch", "", "configmaps", "web", "capstan-inventory-web"),
        // Health.
        can("list", "", "pods", "web", ""),
        // Events.
        can("create", "", "events", "web", ""),
        // Its Lease, in its namespace.
        can("create", "coordination.k8s.io", "leases", me, ""),
        can("get", "coordination.k8s.io", "leases", me, "capstan-leader"),
        can(
            "update",
            "coordination.k8s.io",
            "leases",
            me,
            "capstan-leader",
        ),
    ];
    for attributes in may {
        let what = format!("{attributes:?}");
        assert!(
            allowed(&client, me, Ok(attributes)).await,
            "capstan should be allowed: {what}"
        );
    }
    assert!(allowed(&client, me, Err("/apis")).await, "discovery");

    let may_not = [
        // Secrets: not cluster-wide, not in its own namespace.
        can("get", "", "secrets", "", ""),
        can("list", "", "secrets", "", ""),
        can("get", "", "secrets", "web", "db-password"),
        can("list", "", "secrets", me, ""),
        // Other Leases, and Leases elsewhere.
        can(
            "update",
            "coordination.k8s.io",
            "leases",
            me,
            "someone-else",
        ),
        can(
            "get",
            "coordination.k8s.io",
            "leases",
            "kube-system",
            "kube-scheduler",
        ),
        can(
            "delete",
            "coordination.k8s.io",
            "leases",
            me,
            "capstan-leader",
        ),
        // Privilege: RBAC, admission, CRDs, nodes, exec.
        can(
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
            "",
        ),
        can(
            "patch",
            "rbac.authorization.k8s.io",
            "roles",
            "web",
            "admin",
        ),
        can(
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "",
        ),
        can(
            "create",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "",
            "",
        ),
        can(
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "x",
        ),
        can("delete", "", "nodes", "", "kwok-node-0"),
        can("create", "", "pods", "web", ""),
        ResourceAttributes {
            subresource: Some("exec".into()),
            ..can("create", "", "pods", "web", "app-0")
        },
    ];
    for attributes in may_not {
        let what = format!("{attributes:?}");
        assert!(
            !allowed(&client, me, Ok(attributes)).await,
            "capstan should NOT be allowed: {what}"
        );
    }
}
