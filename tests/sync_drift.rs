//! Drift against the real control plane: a manual change of a field capstan owns is
//! corrected by self-heal; a field another manager owns is left alone; passes that
//! find nothing to correct write nothing.

mod support;
mod sync_support;

use std::time::Duration;

use anyhow::ensure;
use capstan::sync::drift::self_heal;
use capstan::sync::sync_target;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use support::cluster::{TestNamespace, wait_for};
use sync_support::{folder, options};

#[tokio::test]
async fn self_heal_corrects_owned_fields_and_leaves_others_alone() {
    let ns = TestNamespace::new("sync-drift").await;
    let dir = folder(
        &ns.name,
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: info, mode: fast}\n",
        )],
    );
    let opts = options(&ns.name, dir.path(), Duration::from_secs(30));
    sync_target(&ns.client, &opts).await.expect("first sync");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (pass_tx, mut pass_rx) = tokio::sync::mpsc::unbounded_channel();
    let healer = tokio::spawn(self_heal(
        ns.client.clone(),
        opts.clone(),
        async {
            let _ = stop_rx.await;
        },
        move |r| {
            let _ = pass_tx.send(r.map(|rep| rep.writes).map_err(|e| e.to_string()));
        },
    ));
    tokio::time::sleep(Duration::from_secs(1)).await; // let the watch start

    // `kubectl edit`-style change of a field capstan owns, plus a field only another
    // manager sets.
    let cms = ns.api::<ConfigMap>();
    let edit = serde_json::json!({"data": {"level": "debug", "extra": "theirs"}});
    cms.patch(
        "settings",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(&edit),
    )
    .await
    .expect("manual edit");

    wait_for(
        "self-heal to restore data.level",
        Duration::from_secs(30),
        || async {
            let data = cms.get("settings").await?.data.unwrap_or_default();
            ensure!(
                data.get("level").map(String::as_str) == Some("info"),
                "level is {:?}",
                data.get("level")
            );
            Ok(())
        },
    )
    .await;
    let data = cms.get("settings").await.unwrap().data.unwrap();
    assert_eq!(
        data.get("extra").map(String::as_str),
        Some("theirs"),
        "another manager's field was removed"
    );
    assert_eq!(data.get("mode").map(String::as_str), Some("fast"));

    // The correcting pass wrote once; then a pass triggered by capstan's own write
    // finds nothing to do and writes nothing.
    let first = tokio::time::timeout(Duration::from_secs(20), pass_rx.recv())
        .await
        .expect("a pass")
        .expect("open");
    assert_eq!(first, Ok(1), "the healing pass applies exactly one object");
    if let Ok(Some(next)) = tokio::time::timeout(Duration::from_secs(5), pass_rx.recv()).await {
        assert_eq!(next, Ok(0), "a pass after the correction must not write");
    }
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), healer)
        .await
        .expect("healer stops")
        .expect("join")
        .expect("healer ok");
}
