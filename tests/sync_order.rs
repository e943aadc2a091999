//! Ordering against the real control plane: a CRD and a custom resource of it in the
//! same folder (the CRD first, Established before its resources), and waves (a later
//! wave is not applied while an earlier one is unhealthy).

mod support;
mod sync_support;

use std::time::Duration;

use capstan::sync::sync_target;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use support::cluster::TestNamespace;
use sync_support::{folder, options};

#[tokio::test]
async fn crds_are_established_before_their_resources_are_applied() {
    let ns = TestNamespace::new("sync-crd").await;
    let group = format!("{}.capstan.test", ns.name);
    // The custom resource sorts first by file name: ordering must not depend on it.
    let dir = folder(
        &ns.name,
        &[
            (
                "a-widget.yaml",
                "apiVersion: {ns}.capstan.test/v1\nkind: Widget\nmetadata: {name: blue}\nspec: {size: 3}\n",
            ),
            (
                "z-crd.yaml",
                "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.{ns}.capstan.test}
spec:
  group: {ns}.capstan.test
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
",
            ),
        ],
    );
    let result = sync_target(
        &ns.client,
        &options(&ns.name, dir.path(), Duration::from_secs(60)),
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    let crd_name = format!("widgets.{group}");
    let widget = async {
        let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
        let api: Api<DynamicObject> = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
        );
        api.get("blue").await
    }
    .await;
    let _ = crds.delete(&crd_name, &DeleteParams::background()).await;
    let report = result.expect("sync of a CRD and its resource");
    assert_eq!(report.created.len(), 2);
    assert_eq!(widget.expect("the Widget exists").data["spec"]["size"], 3);
}

#[tokio::test]
async fn a_later_wave_waits_for_the_earlier_one_to_be_healthy() {
    let ns = TestNamespace::new("sync-waves").await;
    let dir = folder(
        &ns.name,
        &[
            (
                "first.yaml",
                "apiVersion: apps/v1
kind: Deployment
metadata: {name: first}
spec:
  replicas: 1
  selector: {matchLabels: {app: first}}
  template:
    metadata: {labels: {app: first}}
    spec:
      nodeSelector: {capstan.test/no-such-node: \"true\"}
      containers: [{name: app, image: registry.test/first:1}]
",
            ),
            (
                "second.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second, annotations: {capstan.dev/wave: \"1\"}}\ndata: {k: v}\n",
            ),
        ],
    );
    let err = sync_target(
        &ns.client,
        &options(&ns.name, dir.path(), Duration::from_secs(5)),
    )
    .await
    .expect_err("wave 0 never becomes healthy")
    .to_string();
    assert!(
        err.contains(&format!("Deployment.apps {}/first", ns.name)),
        "{err}"
    );
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("second")
            .await
            .unwrap()
            .is_none(),
        "wave 1 was applied too early"
    );

    // Once wave 0 can become healthy, wave 1 follows.
    let fixed = std::fs::read_to_string(dir.path().join("first.yaml"))
        .unwrap()
        .replace(
            "      nodeSelector: {capstan.test/no-such-node: \"true\"}\n",
            "",
        );
    std::fs::write(dir.path().join("first.yaml"), fixed).unwrap();
    sync_target(
        &ns.client,
        &options(&ns.name, dir.path(), Duration::from_secs(60)),
    )
    .await
    .expect("second sync");
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("second")
            .await
            .unwrap()
            .is_some()
    );
}
