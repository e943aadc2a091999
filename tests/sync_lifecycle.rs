//! The sync loop against the real control plane: first sync of `manifests-example/`,
//! a no-op resync with zero writes, a replica change, a pruned file, and an object
//! with the same label that is not in the inventory (left alone).

mod support;
mod sync_support;

use std::time::Duration;

use anyhow::ensure;
use capstan::sync::plan::Action;
use capstan::sync::{TARGET_LABEL, sync_target};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use support::cluster::{TestNamespace, wait_for};
use sync_support::{folder, inventory_of, options, write};

const HEALTH: Duration = Duration::from_secs(60);

/// `manifests-example/` with its namespace replaced by the test's.
fn example_in(ns: &str) -> tempfile::TempDir {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests-example");
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("manifests-example") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read example");
        let text = text.replace("namespace: podinfo", &format!("namespace: {ns}"));
        let text = if path.file_name().is_some_and(|n| n == "namespace.yaml") {
            text.replace("name: podinfo", &format!("name: {ns}"))
        } else {
            text
        };
        write(
            dir.path(),
            &path.file_name().expect("name").to_string_lossy(),
            &text,
        );
    }
    dir
}

#[tokio::test]
async fn first_sync_resync_update_prune_and_foreign_objects() {
    let ns = TestNamespace::new("sync-life").await;
    let client = ns.client.clone();
    let dir = example_in(&ns.name);
    let opts = options(&ns.name, dir.path(), HEALTH);

    // First sync: kustomize build, every object applied, labelled and healthy.
    let t0 = std::time::Instant::now();
    let report = sync_target(&client, &opts).await.expect("first sync");
    eprintln!(
        "first sync of manifests-example: {:?}, {} writes",
        t0.elapsed(),
        report.writes
    );
    let mut created: Vec<_> = report.created.iter().map(|id| id.to_string()).collect();
    created.sort();
    assert_eq!(
        created,
        [
            format!("Deployment.apps {}/podinfo", ns.name),
            format!("Service {}/podinfo", ns.name)
        ],
        "the Namespace exists already (the test made it), so it is updated, not created"
    );
    assert_eq!(
        report.updated.len(),
        1,
        "the Namespace gains the target label"
    );
    let deploy: Api<Deployment> = ns.api();
    let d = deploy.get("podinfo").await.unwrap();
    assert_eq!(d.metadata.labels.as_ref().unwrap()[TARGET_LABEL], ns.name);
    let ready = d.status.unwrap().ready_replicas;
    assert_eq!(ready, Some(2), "sync returns only once healthy");
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=podinfo"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    for p in &pods.items {
        let conds = p
            .status
            .as_ref()
            .unwrap()
            .conditions
            .clone()
            .unwrap_or_default();
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "kwok pod not Ready"
        );
    }
    let inv = inventory_of(&client, &ns.name).await;
    assert_eq!(inv.len(), 3, "{inv:?}");

    // No change in Git: nothing written.
    let t0 = std::time::Instant::now();
    let again = sync_target(&client, &opts).await.expect("resync");
    eprintln!("no-op resync: {:?}", t0.elapsed());
    assert_eq!(again.writes, 0, "a no-change resync must not write");
    assert_eq!(again.unchanged, 3);

    // An object made by hand with the same label, not in the inventory.
    let foreign: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "hand-made", "labels": { TARGET_LABEL: ns.name } },
        "data": { "who": "a person" }
    }))
    .unwrap();
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();

    // A commit changing replicas.
    let file = dir.path().join("deployment.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&file, text).unwrap();
    let report = sync_target(&client, &opts)
        .await
        .expect("sync of the replica change");
    assert_eq!(report.updated.len(), 1);
    let changes = &report.updated[0].1;
    assert!(
        changes.iter().any(|c| c.path == "spec.replicas"),
        "{changes:?}"
    );
    let d = deploy.get("podinfo").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    assert_eq!(d.status.unwrap().ready_replicas, Some(3));

    // A commit deleting a file: the Service is pruned, nothing else.
    std::fs::remove_file(dir.path().join("service.yaml")).unwrap();
    let k = dir.path().join("kustomization.yaml");
    std::fs::write(
        &k,
        std::fs::read_to_string(&k)
            .unwrap()
            .replace("  - service.yaml\n", ""),
    )
    .unwrap();
    let report = sync_target(&client, &opts)
        .await
        .expect("sync of the deletion");
    let pruned: Vec<_> = report
        .pruned
        .deleted
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(pruned, [format!("Service {}/podinfo", ns.name)]);
    wait_for(
        "the Service to be gone",
        Duration::from_secs(30),
        || async {
            ensure!(
                ns.api::<Service>().get_opt("podinfo").await?.is_none(),
                "still there"
            );
            Ok(())
        },
    )
    .await;
    assert!(
        ns.api::<ConfigMap>()
            .get_opt("hand-made")
            .await
            .unwrap()
            .is_some(),
        "the hand-made object was touched"
    );
    assert_eq!(inventory_of(&client, &ns.name).await.len(), 2);
}

#[tokio::test]
async fn plan_reports_create_update_unchanged_and_prune_without_writing() {
    let ns = TestNamespace::new("sync-plan").await;
    let client = ns.client.clone();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: {k: VALUE}\n";
    let dir = folder(
        &ns.name,
        &[
            ("a.yaml", &cm.replace("NAME", "a").replace("VALUE", "one")),
            ("b.yaml", &cm.replace("NAME", "b").replace("VALUE", "one")),
        ],
    );
    let opts = options(&ns.name, dir.path(), HEALTH);
    sync_target(&client, &opts).await.expect("sync");
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    write(
        dir.path(),
        "a.yaml",
        &cm.replace("NAME", "a").replace("VALUE", "two"),
    );
    write(
        dir.path(),
        "c.yaml",
        &cm.replace("NAME", "c").replace("VALUE", "new"),
    );
    let entries = capstan::sync::engine::plan_target(&client, &opts)
        .await
        .expect("plan");
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.object.clone(), e.action.clone()))
        .collect();
    let a = format!("ConfigMap {}/a", ns.name);
    let update = got
        .iter()
        .find(|(o, _)| *o == a)
        .map(|(_, act)| act.clone());
    match update {
        Some(Action::Update { changes }) => {
            assert!(
                changes.iter().any(|c| c.path == "data.k"
                    && c.before == Some("one".into())
                    && c.after == Some("two".into())),
                "{changes:?}"
            );
        }
        other => panic!("a: {other:?}"),
    }
    assert!(
        got.contains(&(format!("ConfigMap {}/c", ns.name), Action::Create)),
        "{got:?}"
    );
    assert!(
        got.contains(&(format!("ConfigMap {}/b", ns.name), Action::Prune)),
        "{got:?}"
    );
    // Nothing was written.
    let cms = ns.api::<ConfigMap>();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "one");
    assert!(cms.get_opt("c").await.unwrap().is_none());
    assert!(cms.get_opt("b").await.unwrap().is_some());
}
