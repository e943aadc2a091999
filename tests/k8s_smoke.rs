//! Smoke tests of the test control plane itself (tests/support/cluster.rs): server-side
//! apply, the controllers' work (Deployment -> ReplicaSet -> Pods, rollout, garbage
//! collection), scheduling onto the kwok nodes, and CRDs with dynamic objects.

mod support;

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::cluster::{TestNamespace, wait_for};

const TIMEOUT: Duration = Duration::from_secs(60);
const MANAGER: &str = "capstan-test";

fn deployment(image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "web",
                    "image": image,
                    "ports": [{ "containerPort": 8080 }]
                }] }
            }
        }
    })
}

/// Pods matching `app=web` with `image`: exactly `want` of them, each on a kwok node,
/// Running and Ready, and no other `app=web` pod left.
async fn pods_ready(pods: &Api<Pod>, image: &str, want: usize) -> anyhow::Result<Vec<Pod>> {
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    ensure!(list.len() == want, "{} pods, want {want}", list.len());
    for pod in &list {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let spec = pod.spec.as_ref().context("pod without spec")?;
        let status = pod.status.clone().unwrap_or_default();
        ensure!(
            spec.containers.first().and_then(|c| c.image.as_deref()) == Some(image),
            "{name} runs an old image"
        );
        let node = spec.node_name.as_deref().unwrap_or("");
        ensure!(node.starts_with("kwok-node-"), "{name} is on node {node:?}");
        ensure!(
            status.phase.as_deref() == Some("Running"),
            "{name} phase {:?}",
            status.phase
        );
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ensure!(ready, "{name} is not Ready");
    }
    Ok(list)
}

/// The Deployment finished its rollout: the controller saw the latest spec, every replica
/// is updated and ready, and it reports Available=True.
async fn rolled_out(deploys: &Api<Deployment>) -> anyhow::Result<Deployment> {
    let d = deploys.get("web").await?;
    let status = d.status.clone().unwrap_or_default();
    ensure!(
        status.observed_generation == d.metadata.generation,
        "generation not observed yet"
    );
    ensure!(
        status.updated_replicas == Some(2),
        "updatedReplicas {:?}",
        status.updated_replicas
    );
    ensure!(
        status.replicas == Some(2),
        "replicas {:?} (old pods remain)",
        status.replicas
    );
    ensure!(
        status.ready_replicas == Some(2),
        "readyReplicas {:?}",
        status.ready_replicas
    );
    let available = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True");
    ensure!(available, "not Available");
    Ok(d)
}

/// ReplicaSets owned by the Deployment `uid`, with their image and ready replicas.
async fn owned_replicasets(
    rs: &Api<ReplicaSet>,
    uid: &str,
) -> anyhow::Result<Vec<(String, i32, i32)>> {
    let list = rs
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    Ok(list
        .into_iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .map(|r| {
            let spec = r.spec.unwrap_or_default();
            let image = spec
                .template
                .and_then(|t| t.spec)
                .and_then(|s| s.containers.first()?.image.clone());
            let ready = r.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            (image.unwrap_or_default(), spec.replicas.unwrap_or(0), ready)
        })
        .collect())
}

#[tokio::test]
async fn deployment_rolls_out_on_kwok_nodes_and_is_garbage_collected() {
    let ns = TestNamespace::new("smoke-deploy").await;
    let deploys: Api<Deployment> = ns.api();
    let replicasets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let ssa = PatchParams::apply(MANAGER);

    // Server-side apply of a Deployment and a Service.
    let d = deploys
        .patch(
            "web",
            &ssa,
            &Patch::Apply(deployment("registry.test/web:1.0.0")),
        )
        .await
        .expect("apply Deployment");
    let uid = d.metadata.uid.expect("the API server sets a uid");
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80, "targetPort": 8080 }] }
    });
    let svc = ns
        .api::<Service>()
        .patch("web", &ssa, &Patch::Apply(service))
        .await
        .expect("apply Service");
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
    assert!(
        cluster_ip.starts_with("10.0.0."),
        "service clusterIP {cluster_ip:?} not from 10.0.0.0/24"
    );

    // The controller-manager creates a ReplicaSet, the scheduler places its pods on the kwok
    // nodes, kwok makes them Running and Ready, and the Deployment becomes Available.
    wait_for("a ReplicaSet owned by the Deployment", TIMEOUT, || async {
        let owned = owned_replicasets(&replicasets, &uid).await?;
        ensure!(owned.len() == 1, "{} owned ReplicaSets", owned.len());
        Ok(())
    })
    .await;
    let first = wait_for("2 pods Running and Ready on kwok nodes", TIMEOUT, || {
        pods_ready(&pods, "registry.test/web:1.0.0", 2)
    })
    .await;
    wait_for(
        "the Deployment to be Available and updated",
        TIMEOUT,
        || rolled_out(&deploys),
    )
    .await;
    wait_for(
        "the Service's EndpointSlice to list both pods",
        TIMEOUT,
        || async {
            let slices = ns
                .api::<EndpointSlice>()
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await?
                .items;
            let ready = slices
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            ensure!(ready == 2, "{ready} ready endpoints");
            Ok(())
        },
    )
    .await;

    // A new image rolls out through a second ReplicaSet; the first one scales to zero.
    deploys
        .patch(
            "web",
            &ssa,
            &Patch::Apply(deployment("registry.test/web:1.1.0")),
        )
        .await
        .expect("apply new image");
    wait_for("the rollout of the new image", TIMEOUT, || async {
        rolled_out(&deploys).await?;
        let mut owned = owned_replicasets(&replicasets, &uid).await?;
        owned.sort();
        let want = vec![
            ("registry.test/web:1.0.0".to_owned(), 0, 0),
            ("registry.test/web:1.1.0".to_owned(), 2, 2),
        ];
        ensure!(
            owned == want,
            "ReplicaSets (image, replicas, ready): {owned:?}"
        );
        Ok(())
    })
    .await;
    let second = wait_for("2 new pods Running and Ready", TIMEOUT, || {
        pods_ready(&pods, "registry.test/web:1.1.0", 2)
    })
    .await;
    let first_names: Vec<_> = first.iter().map(|p| p.metadata.name.clone()).collect();
    assert!(
        second
            .iter()
            .all(|p| !first_names.contains(&p.metadata.name)),
        "the rollout reused old pods"
    );

    // Deleting the Deployment (background propagation) garbage-collects ReplicaSets and Pods.
    deploys
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete Deployment");
    wait_for(
        "the garbage collector to remove ReplicaSets and Pods",
        TIMEOUT,
        || async {
            ensure!(
                deploys.get_opt("web").await?.is_none(),
                "the Deployment still exists"
            );
            let rs = replicasets.list(&ListParams::default()).await?.items.len();
            let p = pods.list(&ListParams::default()).await?.items.len();
            ensure!(rs == 0 && p == 0, "{rs} ReplicaSets and {p} Pods left");
            Ok(())
        },
    )
    .await;
}

#[tokio::test]
async fn crd_becomes_established_and_serves_custom_resources() {
    let ns = TestNamespace::new("smoke-crd").await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    let ssa = PatchParams::apply(MANAGER);
    // A group of this test's own, so that concurrent test processes never share the CRD.
    let group = format!("{}.capstan.test", ns.name);
    let crd_name = format!("widgets.{group}");

    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": group,
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer" }, "color": { "type": "string" } }
                    } }
                } }
            }]
        }
    });
    crds.patch(&crd_name, &ssa, &Patch::Apply(crd))
        .await
        .expect("apply CRD");
    wait_for("the CRD to be Established", TIMEOUT, || async {
        let status = crds.get(&crd_name).await?.status.unwrap_or_default();
        let established = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        ensure!(established, "not Established");
        Ok(())
    })
    .await;

    let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    );
    let widget = json!({
        "apiVersion": format!("{group}/v1"),
        "kind": "Widget",
        "metadata": { "name": "blue" },
        "spec": { "size": 3, "color": "blue" }
    });
    widgets
        .patch("blue", &ssa, &Patch::Apply(widget))
        .await
        .expect("apply Widget");

    let back = widgets.get("blue").await.expect("read Widget back");
    assert_eq!(
        back.data["spec"],
        json!({ "size": 3, "color": "blue" }),
        "spec as stored"
    );
    let managers: Vec<_> = back
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.as_deref(), m.operation.as_deref()))
        .collect();
    assert!(
        managers.contains(&(Some(MANAGER), Some("Apply"))),
        "managedFields: {managers:?}"
    );

    crds.delete(&crd_name, &DeleteParams::background())
        .await
        .expect("delete CRD");
    wait_for("the CRD to be gone", TIMEOUT, || async {
        match crds.get_opt(&crd_name).await? {
            None => Ok(()),
            Some(_) => bail!("still there"),
        }
    })
    .await;
}
