//! A sync-only daemon: one target applying ConfigMaps from a Git repository, and
//! what the tests read back (objects applied, the inventory).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;

use super::server_yaml;

/// One ConfigMap manifest named `name`.
pub fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: b\n")
}

/// `count` ConfigMaps `cm-000`, `cm-001`, … in one multi-document manifest.
pub fn configmaps(count: usize) -> String {
    (0..count)
        .map(|i| format!("---\n{}", configmap(&format!("cm-{i:03}"))))
        .collect()
}

/// `capstan.yaml` for one target named after namespace `ns` applying `app/` of the
/// repository at `url` with `kubeconfig` (intervals of one hour, 60 s health
/// timeout), the server on `port`.
pub fn sync_config(url: &str, ns: &str, kubeconfig: &str, port: u16) -> String {
    format!(
        "repository:\n  url: {url}\ntargets:\n  - name: {ns}\n    path: app\n    kubeconfig: {kubeconfig}\n    namespace: {ns}\n    interval: 1h\n    healthTimeout: 60s\n{server}",
        server = server_yaml(port, ""),
    )
}

/// How many ConfigMaps carry target `target`'s label (0 while the API cannot answer).
pub async fn applied(api: &kube::Api<ConfigMap>, target: &str) -> usize {
    let selector = format!("capstan.dev/target={target}");
    api.list(&kube::api::ListParams::default().labels(&selector))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

/// Asserts that target `target`'s inventory in `ns` names exactly the ConfigMaps of
/// [`configmaps`]`(count)`.
pub async fn assert_inventory_is_configmaps(
    client: &kube::Client,
    ns: &str,
    target: &str,
    count: usize,
) {
    let inventory = capstan::sync::inventory::load(client, ns, target)
        .await
        .expect("inventory");
    let names: BTreeSet<String> = inventory.iter().map(|id| id.name.clone()).collect();
    let wanted: BTreeSet<String> = (0..count).map(|i| format!("cm-{i:03}")).collect();
    assert_eq!(names, wanted, "the inventory is exactly what is in Git");
}
