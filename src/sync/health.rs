//! Health: is an applied object done, still progressing, or failed?
//!
//! A port of the rules of kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status`), the
//! library Flux and kubectl's `wait` logic build on: first the generic checks
//! (deletion, `status.observedGeneration` against `metadata.generation`, the
//! `Stalled`/`Reconciling`/`Ready` conditions), then per-kind rules for the built-in
//! workloads. Pure functions over the object's JSON so they are tested without a
//! cluster; `wait` in `engine` polls them until a deadline.

use std::fmt;

use serde_json::Value;

/// kstatus' result, with a reason a person can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Reconciled and ready.
    Current,
    /// Still converging; may become Current on its own.
    InProgress(String),
    /// Will not become Current without a change.
    Failed(String),
    /// Being deleted.
    Terminating,
}

impl Health {
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Current => f.write_str("current"),
            Health::InProgress(why) => write!(f, "in progress: {why}"),
            Health::Failed(why) => write!(f, "failed: {why}"),
            Health::Terminating => f.write_str("terminating"),
        }
    }
}

/// The health of one live object.
pub fn health(object: &Value) -> Health {
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return Health::Terminating;
    }
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map(|(g, _)| g)
        .unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    if let Some(h) = generation_not_observed(object) {
        return h;
    }
    let specific = match (group, kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => statefulset(object),
        ("apps", "DaemonSet") => daemonset(object),
        ("apps", "ReplicaSet") => replicaset(object),
        ("batch", "Job") => job(object),
        ("", "Pod") => pod(object),
        ("", "PersistentVolumeClaim") => pvc(object),
        ("", "Service") => service(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        _ => None,
    };
    specific.unwrap_or_else(|| generic_conditions(object))
}

fn generation_not_observed(object: &Value) -> Option<Health> {
    let observed = object["status"]["observedGeneration"].as_i64()?;
    let generation = object["metadata"]["generation"].as_i64()?;
    (observed != generation).then(|| {
        Health::InProgress(format!(
            "generation {generation} not observed yet (observed {observed})"
        ))
    })
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn condition_is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == status)
}

fn reason_of(c: &Value) -> String {
    let reason = c["reason"].as_str().unwrap_or_default();
    let message = c["message"].as_str().unwrap_or_default();
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (true, true) => format!("condition {}", c["type"].as_str().unwrap_or("?")),
    }
}

/// Standard conditions, as kstatus reads them for any kind (custom resources too).
fn generic_conditions(object: &Value) -> Health {
    if let Some(c) = condition(object, "Stalled").filter(|c| c["status"] == "True") {
        return Health::Failed(reason_of(c));
    }
    if let Some(c) = condition(object, "Reconciling").filter(|c| c["status"] == "True") {
        return Health::InProgress(reason_of(c));
    }
    if let Some(c) = condition(object, "Ready").filter(|c| c["status"] != "True") {
        return Health::InProgress(format!("not Ready: {}", reason_of(c)));
    }
    Health::Current
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn deployment(o: &Value) -> Option<Health> {
    let spec = &o["spec"];
    let status = &o["status"];
    let want = spec["replicas"].as_i64().unwrap_or(1);
    if let Some(c) = condition(o, "Progressing")
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return Some(Health::Failed(format!(
            "progress deadline exceeded: {}",
            reason_of(c)
        )));
    }
    if status["observedGeneration"].is_null() && o["metadata"]["generation"].is_i64() {
        return Some(Health::InProgress(
            "the controller has not seen it yet".into(),
        ));
    }
    let updated = int(&status["updatedReplicas"]);
    let replicas = int(&status["replicas"]);
    let ready = int(&status["readyReplicas"]);
    let available = int(&status["availableReplicas"]);
    let h = if updated < want {
        Health::InProgress(format!("updated replicas: {updated}/{want}"))
    } else if replicas > updated {
        Health::InProgress(format!(
            "pending termination: {} old replicas",
            replicas - updated
        ))
    } else if available < updated {
        Health::InProgress(format!("available replicas: {available}/{updated}"))
    } else if ready < want {
        Health::InProgress(format!("ready replicas: {ready}/{want}"))
    } else if !condition_is(o, "Available", "True") && want > 0 {
        Health::InProgress("Available condition is not True".into())
    } else {
        Health::Current
    };
    Some(h)
}

fn statefulset(o: &Value) -> Option<Health> {
    let spec = &o["spec"];
    let status = &o["status"];
    let want = spec["replicas"].as_i64().unwrap_or(1);
    if status["observedGeneration"].is_null() && o["metadata"]["generation"].is_i64() {
        return Some(Health::InProgress(
            "the controller has not seen it yet".into(),
        ));
    }
    if spec["updateStrategy"]["type"] == "OnDelete" {
        return Some(Health::Current);
    }
    let ready = int(&status["readyReplicas"]);
    let current = int(&status["currentReplicas"]);
    let updated = int(&status["updatedReplicas"]);
    let partition = spec["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0);
    let h = if int(&status["replicas"]) < want {
        Health::InProgress(format!("replicas: {}/{want}", int(&status["replicas"])))
    } else if ready < want {
        Health::InProgress(format!("ready replicas: {ready}/{want}"))
    } else if partition > 0 {
        if updated < want - partition {
            Health::InProgress(format!("updated replicas: {updated}/{}", want - partition))
        } else {
            Health::Current
        }
    } else if status["updateRevision"] != status["currentRevision"] {
        Health::InProgress(format!(
            "rolling update: {current}/{want} replicas at the new revision"
        ))
    } else {
        Health::Current
    };
    Some(h)
}

fn daemonset(o: &Value) -> Option<Health> {
    let status = &o["status"];
    if status["observedGeneration"].is_null() && o["metadata"]["generation"].is_i64() {
        return Some(Health::InProgress(
            "the controller has not seen it yet".into(),
        ));
    }
    let desired = int(&status["desiredNumberScheduled"]);
    let h = if int(&status["currentNumberScheduled"]) < desired {
        Health::InProgress(format!(
            "scheduled: {}/{desired}",
            int(&status["currentNumberScheduled"])
        ))
    } else if int(&status["updatedNumberScheduled"]) < desired {
        Health::InProgress(format!(
            "updated: {}/{desired}",
            int(&status["updatedNumberScheduled"])
        ))
    } else if int(&status["numberAvailable"]) < desired {
        Health::InProgress(format!(
            "available: {}/{desired}",
            int(&status["numberAvailable"])
        ))
    } else if int(&status["numberReady"]) < desired {
        Health::InProgress(format!("ready: {}/{desired}", int(&status["numberReady"])))
    } else {
        Health::Current
    };
    Some(h)
}

fn replicaset(o: &Value) -> Option<Health> {
    let status = &o["status"];
    let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
    if let Some(c) = condition(o, "ReplicaFailure").filter(|c| c["status"] == "True") {
        return Some(Health::InProgress(format!(
            "replica failure: {}",
            reason_of(c)
        )));
    }
    let h = if int(&status["fullyLabeledReplicas"]) < want {
        Health::InProgress(format!(
            "labelled replicas: {}/{want}",
            int(&status["fullyLabeledReplicas"])
        ))
    } else if int(&status["availableReplicas"]) < want {
        Health::InProgress(format!(
            "available replicas: {}/{want}",
            int(&status["availableReplicas"])
        ))
    } else if int(&status["readyReplicas"]) < want {
        Health::InProgress(format!(
            "ready replicas: {}/{want}",
            int(&status["readyReplicas"])
        ))
    } else if int(&status["replicas"]) > want {
        Health::InProgress(format!(
            "pending termination: {}",
            int(&status["replicas"]) - want
        ))
    } else {
        Health::Current
    };
    Some(h)
}

fn job(o: &Value) -> Option<Health> {
    if let Some(c) = condition(o, "Failed").filter(|c| c["status"] == "True") {
        return Some(Health::Failed(format!("job failed: {}", reason_of(c))));
    }
    if condition_is(o, "Complete", "True") {
        return Some(Health::Current);
    }
    let succeeded = int(&o["status"]["succeeded"]);
    let completions = o["spec"]["completions"].as_i64().unwrap_or(1);
    Some(Health::InProgress(format!(
        "job running: {succeeded}/{completions} completions"
    )))
}

fn pod(o: &Value) -> Option<Health> {
    let status = &o["status"];
    match status["phase"].as_str().unwrap_or("Pending") {
        "Succeeded" => return Some(Health::Current),
        "Failed" => {
            let why = status["reason"]
                .as_str()
                .or(status["message"].as_str())
                .unwrap_or("pod failed");
            return Some(Health::Failed(why.to_string()));
        }
        _ => {}
    }
    for cs in status["containerStatuses"].as_array().into_iter().flatten() {
        if cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            return Some(Health::Failed(format!(
                "container {} is in CrashLoopBackOff",
                cs["name"].as_str().unwrap_or("?")
            )));
        }
    }
    if let Some(c) = condition(o, "PodScheduled").filter(|c| c["status"] == "False") {
        return Some(Health::InProgress(format!(
            "not scheduled: {}",
            reason_of(c)
        )));
    }
    if condition_is(o, "Ready", "True") {
        Some(Health::Current)
    } else {
        Some(Health::InProgress(format!(
            "pod {} and not Ready",
            status["phase"].as_str().unwrap_or("Pending")
        )))
    }
}

fn pvc(o: &Value) -> Option<Health> {
    Some(match o["status"]["phase"].as_str() {
        Some("Bound") => Health::Current,
        Some("Lost") => Health::Failed("the claim lost its volume".into()),
        other => Health::InProgress(format!("claim {}", other.unwrap_or("Pending"))),
    })
}

fn service(o: &Value) -> Option<Health> {
    if o["spec"]["type"] == "LoadBalancer"
        && o["status"]["loadBalancer"]["ingress"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    {
        return Some(Health::InProgress("no load balancer address yet".into()));
    }
    Some(Health::Current)
}

fn crd(o: &Value) -> Option<Health> {
    if let Some(c) = condition(o, "NamesAccepted").filter(|c| c["status"] == "False") {
        return Some(Health::Failed(format!(
            "names not accepted: {}",
            reason_of(c)
        )));
    }
    Some(if condition_is(o, "Established", "True") {
        Health::Current
    } else {
        Health::InProgress("not Established yet".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn deployments() {
        let ok = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                        "availableReplicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
        assert_eq!(health(&deploy(ok.clone())), Health::Current);
        let mut old = ok.clone();
        old["observedGeneration"] = json!(1);
        assert!(
            matches!(health(&deploy(old)), Health::InProgress(w) if w.contains("generation 2 not observed"))
        );
        let mut rolling = ok.clone();
        rolling["updatedReplicas"] = json!(1);
        assert_eq!(
            health(&deploy(rolling)),
            Health::InProgress("updated replicas: 1/2".into())
        );
        let mut surplus = ok.clone();
        surplus["replicas"] = json!(3);
        assert!(
            matches!(health(&deploy(surplus)), Health::InProgress(w) if w.contains("pending termination"))
        );
        let mut unready = ok.clone();
        unready["readyReplicas"] = json!(0);
        unready["availableReplicas"] = json!(0);
        assert_eq!(
            health(&deploy(unready)),
            Health::InProgress("available replicas: 0/2".into())
        );
        let mut stuck = ok;
        stuck["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                      "message": "ReplicaSet \"web-1\" has timed out progressing."}]);
        stuck["availableReplicas"] = json!(0);
        assert!(
            matches!(health(&deploy(stuck)), Health::Failed(w) if w.contains("ProgressDeadlineExceeded"))
        );
        let unseen = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 1}, "spec": {}});
        assert!(matches!(health(&unseen), Health::InProgress(_)));
    }

    #[test]
    fn statefulsets_daemonsets_replicasets() {
        let sts = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"generation": 1},
                                         "spec": {"replicas": 3}, "status": status})
        };
        let done = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
                          "updatedReplicas": 3, "currentRevision": "a", "updateRevision": "a"});
        assert_eq!(health(&sts(done.clone())), Health::Current);
        let mut rolling = done;
        rolling["updateRevision"] = json!("b");
        assert!(
            matches!(health(&sts(rolling)), Health::InProgress(w) if w.contains("rolling update"))
        );

        let ds = |status: Value| json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1}, "status": status});
        let all = json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                         "updatedNumberScheduled": 2, "numberAvailable": 2, "numberReady": 2});
        assert_eq!(health(&ds(all.clone())), Health::Current);
        let mut one = all;
        one["numberAvailable"] = json!(1);
        assert_eq!(
            health(&ds(one)),
            Health::InProgress("available: 1/2".into())
        );

        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {}, "spec": {"replicas": 1},
                        "status": {"replicas": 1, "fullyLabeledReplicas": 1, "availableReplicas": 0, "readyReplicas": 0}});
        assert_eq!(
            health(&rs),
            Health::InProgress("available replicas: 0/1".into())
        );
    }

    #[test]
    fn jobs_pods_pvcs() {
        let job = |conds: Value| json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {}, "status": {"conditions": conds}});
        assert_eq!(
            health(&job(json!([{"type": "Complete", "status": "True"}]))),
            Health::Current
        );
        assert!(
            matches!(health(&job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]))),
                         Health::Failed(w) if w.contains("BackoffLimitExceeded"))
        );
        assert!(matches!(health(&job(json!([]))), Health::InProgress(_)));

        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "status": status});
        assert_eq!(
            health(&pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Health::Current
        );
        assert!(
            matches!(health(&pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}))),
                         Health::InProgress(w) if w.contains("Unschedulable"))
        );
        assert!(matches!(
            health(&pod(
                json!({"phase": "Running", "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})
            )),
            Health::Failed(_)
        ));
        assert_eq!(health(&pod(json!({"phase": "Succeeded"}))), Health::Current);

        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {}, "status": {"phase": phase}});
        assert_eq!(health(&pvc("Bound")), Health::Current);
        assert!(matches!(health(&pvc("Pending")), Health::InProgress(_)));
    }

    #[test]
    fn generic_conditions_and_deletion() {
        let cr = |status: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"generation": 3}, "status": status});
        assert_eq!(health(&cr(json!({}))), Health::Current);
        assert_eq!(
            health(&cr(
                json!({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Health::Current
        );
        assert!(matches!(
            health(&cr(
                json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Health::InProgress(_)
        ));
        assert!(
            matches!(health(&cr(json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]}))), Health::InProgress(w) if w.contains("Waiting"))
        );
        assert!(
            matches!(health(&cr(json!({"conditions": [{"type": "Stalled", "status": "True", "message": "bad spec"}]}))), Health::Failed(w) if w == "bad spec")
        );
        let deleting = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(health(&deleting), Health::Terminating);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}});
        assert_eq!(health(&cm), Health::Current);
    }

    #[test]
    fn crds() {
        let crd = |conds: Value| json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {}, "status": {"conditions": conds}});
        assert_eq!(
            health(&crd(json!([{"type": "Established", "status": "True"}]))),
            Health::Current
        );
        assert!(matches!(health(&crd(json!([]))), Health::InProgress(_)));
    }
}
