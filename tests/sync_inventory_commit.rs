//! The inventory records the last successfully applied commit and when: written once
//! per new commit, not on a resync of the same commit, and kept as it was when a
//! pass fails half-way.

mod support;
mod sync_support;

use std::time::Duration;

use capstan::sync::inventory::{self, LAST_APPLIED_COMMIT};
use capstan::sync::sync_target;
use k8s_openapi::api::core::v1::ConfigMap;
use support::cluster::TestNamespace;
use sync_support::{folder, options, write};

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: NAME}\ndata: {k: v}\n";

fn commit(c: char) -> Option<String> {
    Some(std::iter::repeat_n(c, 40).collect())
}

#[tokio::test]
async fn last_applied_commit_is_recorded_once_per_commit_and_kept_on_failure() {
    let ns = TestNamespace::new("inv-commit").await;
    let client = ns.client.clone();
    let dir = folder(&ns.name, &[("a.yaml", &CM.replace("NAME", "a"))]);
    let mut opts = options(&ns.name, dir.path(), Duration::from_secs(60));
    let load = || inventory::load_record(&client, &ns.name, &ns.name);

    opts.commit = commit('1');
    sync_target(&client, &opts).await.expect("first sync");
    let first = load().await.expect("inventory");
    let last = first.last_applied.clone().expect("a last applied commit");
    assert_eq!(Some(last.commit.clone()), commit('1'));
    last.time
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("time {:?} is RFC 3339: {e}", last.time));
    let cm = ns
        .api::<ConfigMap>()
        .get(&inventory::configmap_name(&ns.name))
        .await
        .expect("inventory ConfigMap");
    assert_eq!(
        cm.metadata.annotations.expect("annotations")[LAST_APPLIED_COMMIT],
        "1".repeat(40)
    );

    // The same commit again: nothing to write.
    let again = sync_target(&client, &opts).await.expect("resync");
    assert_eq!(again.writes, 0);
    assert_eq!(load().await.expect("inventory"), first);

    // A new commit with the same objects: one write, the inventory's.
    opts.commit = commit('2');
    let report = sync_target(&client, &opts).await.expect("new commit");
    assert_eq!(report.writes, 1, "only the inventory is written");
    let second = load().await.expect("inventory");
    assert_eq!(second.objects, first.objects);
    assert_eq!(
        second.last_applied.as_ref().map(|l| l.commit.clone()),
        commit('2')
    );

    // A pass that fails after applying wave 0: the new object is tracked, but the
    // last applied commit stays the last one that went through.
    opts.commit = commit('3');
    write(dir.path(), "c.yaml", &CM.replace("NAME", "c"));
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\n  annotations: {capstan.dev/wave: '1'}\n",
    );
    let err = sync_target(&client, &opts)
        .await
        .expect_err("wave 1 is rejected");
    assert!(err.to_string().contains("Not_A_Valid_Name"), "{err}");
    let third = load().await.expect("inventory");
    assert!(
        third.objects.iter().any(|id| id.name == "c"),
        "{:?}",
        third.objects
    );
    assert_eq!(third.last_applied, second.last_applied);

    // Not a Git checkout (no commit): the record is kept.
    std::fs::remove_file(dir.path().join("bad.yaml")).expect("rm");
    opts.commit = None;
    sync_target(&client, &opts)
        .await
        .expect("sync without a commit");
    assert_eq!(
        load().await.expect("inventory").last_applied,
        second.last_applied
    );
}
