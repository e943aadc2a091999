//! Failures a sync must report clearly, against the real control plane: a Deployment
//! that never becomes ready (named after healthTimeout), bad input (invalid YAML,
//! unknown kind, duplicates) rejected before any write, and a manifest the API
//! server rejects — objects applied before it stay, and the inventory keeps them.

mod support;
mod sync_support;

use std::time::{Duration, Instant};

use capstan::sync::sync_target;
use k8s_openapi::api::core::v1::ConfigMap;
use support::cluster::TestNamespace;
use sync_support::{folder, inventory_of, options, write};

/// What is wrong, the files, and what the error must mention.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n";

/// kwok makes every scheduled pod Ready, so a pod that can never be scheduled (a node
/// selector no kwok node carries) keeps its Deployment unavailable.
const STUCK: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {capstan.test/no-such-node: \"true\"}
      containers: [{name: app, image: registry.test/stuck:1.0.0}]
";

#[tokio::test]
async fn a_deployment_that_never_becomes_ready_fails_naming_it_after_the_timeout() {
    let ns = TestNamespace::new("sync-unready").await;
    let dir = folder(&ns.name, &[("ok.yaml", CM_A), ("stuck.yaml", STUCK)]);
    let timeout = Duration::from_secs(6);
    let t0 = Instant::now();
    let err = sync_target(&ns.client, &options(&ns.name, dir.path(), timeout))
        .await
        .expect_err("the sync must fail")
        .to_string();
    let took = t0.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(
        err.contains(&format!("Deployment.apps {}/stuck", ns.name)),
        "{err}"
    );
    assert!(err.contains("replicas"), "the reason is given: {err}");
    assert!(
        !err.contains("ConfigMap"),
        "healthy objects are not listed: {err}"
    );
    // The objects were applied and are in the inventory: health is reported, not undone.
    assert_eq!(inventory_of(&ns.client, &ns.name).await.len(), 2);
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_write_naming_file_and_object() {
    let ns = TestNamespace::new("sync-bad").await;
    let cms = ns.api::<ConfigMap>();
    let cases: [Case; 3] = [
        (
            "invalid YAML",
            &[
                ("a.yaml", CM_A),
                ("broken.yaml", "apiVersion: v1\nkind: [unclosed\n"),
            ],
            &["broken.yaml"],
        ),
        (
            "unknown kind",
            &[
                ("a.yaml", CM_A),
                (
                    "w.yaml",
                    "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
                ),
            ],
            &["w.yaml (document 1)", "Widget w", "unknown kind"],
        ),
        (
            "duplicate",
            &[
                ("a.yaml", CM_A),
                (
                    "again.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: {ns}}\n",
                ),
            ],
            &[
                "is defined twice",
                "a.yaml (document 1)",
                "again.yaml (document 1)",
            ],
        ),
    ];
    for (what, files, needles) in cases {
        let dir = folder(&ns.name, files);
        let err = sync_target(
            &ns.client,
            &options(&ns.name, dir.path(), Duration::from_secs(10)),
        )
        .await
        .expect_err(what);
        assert!(err.is_bad_input(), "{what}: {err}");
        let text = err.to_string();
        for n in needles {
            assert!(text.contains(n), "{what}: {text:?} should contain {n:?}");
        }
        assert!(
            cms.get_opt("a").await.unwrap().is_none(),
            "{what}: nothing may be applied"
        );
    }
}

#[tokio::test]
async fn a_manifest_the_api_server_rejects_keeps_earlier_objects_and_the_inventory() {
    let ns = TestNamespace::new("sync-reject").await;
    let dir = folder(&ns.name, &[("a.yaml", CM_A)]);
    let opts = options(&ns.name, dir.path(), Duration::from_secs(30));
    sync_target(&ns.client, &opts).await.expect("first sync");

    // Wave 0: a new ConfigMap; wave 1: a Deployment whose selector does not match its
    // template (valid YAML, known kind, rejected by validation).
    write(
        dir.path(),
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {k: v}\n",
    );
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, annotations: {capstan.dev/wave: \"1\"}}
spec:
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: other}}
    spec: {containers: [{name: c, image: registry.test/x:1}]}
",
    );
    let err = sync_target(&ns.client, &opts)
        .await
        .expect_err("rejected")
        .to_string();
    assert!(err.contains("bad.yaml (document 1)"), "{err}");
    assert!(
        err.contains(&format!("Deployment.apps {}/bad", ns.name)),
        "{err}"
    );
    assert!(err.contains("rejected by the API server"), "{err}");
    assert!(err.contains("selector"), "the API server's reason: {err}");
    let cms = ns.api::<ConfigMap>();
    assert!(cms.get_opt("a").await.unwrap().is_some());
    assert!(
        cms.get_opt("b").await.unwrap().is_some(),
        "wave 0 was applied before wave 1 failed"
    );
    let inv = inventory_of(&ns.client, &ns.name).await;
    assert_eq!(
        inv,
        [
            format!("ConfigMap {}/a", ns.name),
            format!("ConfigMap {}/b", ns.name)
        ]
    );
}
