//! The Kubernetes objects a scenario's workload becomes. Every object carries the run
//! labels, so `terminus gc` finds what a killed run left behind.
//!
//! Architecture invariant: every object built here carries [`labels`] (the run id and
//! `app.kubernetes.io/managed-by=terminus`); there is no constructor without them.
//! Architecture invariant: pure: objects are built, never sent; callers create them.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::{json, Value};

use crate::scenario::{Scenario, Volume, WorkloadKind};

/// Label keys put on everything terminus creates.
pub const RUN_LABEL: &str = "terminus.dev/run";
pub const SCENARIO_LABEL: &str = "terminus.dev/scenario";
pub const MANAGED_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_VALUE: &str = "terminus";

/// Where host-path volumes live on the node: one directory per namespace, removed by
/// the node-clean check's owner.
pub const HOST_PATH_ROOT: &str = "/var/lib/terminus-hostpath";

/// The name of a scenario's volume in the pod spec (faults find its directory by it).
pub const VOLUME_NAME: &str = "data";

/// Where kubelet puts the scenario's emptyDir volume (memory-backed or not) of pod `uid`.
pub fn empty_dir_on_node(uid: &str) -> String {
    format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/{VOLUME_NAME}")
}

pub fn labels(run_id: &str, scenario: &str) -> Value {
    json!({ RUN_LABEL: run_id, SCENARIO_LABEL: scenario, MANAGED_LABEL: MANAGED_VALUE })
}

pub fn namespace(name: &str, run_id: &str, scenario: &str) -> Namespace {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": labels(run_id, scenario) }
    }))
    .expect("a literal Namespace is valid")
}

fn pod_spec(s: &Scenario, ns: &str, node: Option<&str>) -> Value {
    let w = &s.workload;
    let mut container = json!({
        "name": "main",
        "image": w.image,
        // No registry is reachable: the image is preloaded into every node.
        "imagePullPolicy": "Never",
        "command": w.command,
    });
    let mut spec = json!({
        "terminationGracePeriodSeconds": w.grace_period.as_secs(),
        "containers": [],
        "tolerations": [{ "operator": "Exists" }],
    });
    if let Some((kind, mount_path)) = &w.volume {
        container["volumeMounts"] = json!([{ "name": VOLUME_NAME, "mountPath": mount_path }]);
        spec["volumes"] = match kind {
            Volume::EmptyDir => json!([{ "name": VOLUME_NAME, "emptyDir": {} }]),
            // A tmpfs kubelet mounts and must unmount: the volume-teardown fault's target.
            Volume::Memory => json!([{
                "name": VOLUME_NAME,
                "emptyDir": { "medium": "Memory", "sizeLimit": "16Mi" }
            }]),
            Volume::HostPath => json!([{
                "name": VOLUME_NAME,
                "hostPath": { "path": format!("{HOST_PATH_ROOT}/{ns}"), "type": "DirectoryOrCreate" }
            }]),
        };
    }
    spec["containers"] = json!([container]);
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    spec
}

pub fn pod(s: &Scenario, name: &str, ns: &str, node: &str, run_id: &str) -> Pod {
    let mut metadata = json!({ "name": name, "namespace": ns, "labels": labels(run_id, &s.id) });
    if !s.workload.finalizers.is_empty() {
        metadata["finalizers"] = json!(s.workload.finalizers);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": pod_spec(s, ns, Some(node)),
    }))
    .expect("a Pod built from a validated scenario is valid")
}

/// A Job of one pod on `node` that is never retried (`backoffLimit: 0`): its controller
/// tracks the pod with the `batch.kubernetes.io/job-tracking` finalizer.
pub fn job(s: &Scenario, name: &str, ns: &str, node: &str, run_id: &str) -> Job {
    debug_assert_eq!(s.workload.kind, WorkloadKind::Job);
    let mut spec = pod_spec(s, ns, Some(node));
    spec["restartPolicy"] = json!("Never");
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name, "namespace": ns, "labels": labels(run_id, &s.id) },
        "spec": {
            "backoffLimit": 0,
            "template": { "metadata": { "labels": labels(run_id, &s.id) }, "spec": spec }
        }
    }))
    .expect("a Job built from a validated scenario is valid")
}

/// A RollingUpdate DaemonSet pinned to `node` by two nodeAffinity terms that both
/// select it: the affinity-churn fault re-sorts them, as the 1.10/1.11 controller did.
pub fn daemonset(s: &Scenario, name: &str, ns: &str, node: &str, run_id: &str) -> DaemonSet {
    debug_assert_eq!(s.workload.kind, WorkloadKind::DaemonSet);
    let mut spec = pod_spec(s, ns, None);
    spec["affinity"] = json!({
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    { "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": [node] }] },
                    { "matchExpressions": [
                        { "key": "kubernetes.io/hostname", "operator": "In", "values": [node] },
                        { "key": "kubernetes.io/os", "operator": "In", "values": ["linux"] }
                    ] }
                ]
            }
        }
    });
    let pod_labels = json!({ RUN_LABEL: run_id, SCENARIO_LABEL: s.id, "terminus.dev/ds": name });
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": name, "namespace": ns, "labels": labels(run_id, &s.id) },
        "spec": {
            "selector": { "matchLabels": { "terminus.dev/ds": name } },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
            "template": { "metadata": { "labels": pod_labels }, "spec": spec }
        }
    }))
    .expect("a DaemonSet built from a validated scenario is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;

    fn load(name: &str) -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(name);
        scenario::load_file(&path).expect("repository scenario is valid")
    }

    #[test]
    fn pod_carries_labels_finalizers_volume_and_grace() {
        let s = load("finalizer.yaml");
        let pod = pod(&s, "victim", "ns1", "node-a", "run-1");
        let meta = &pod.metadata;
        assert_eq!(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(RUN_LABEL))
                .map(String::as_str),
            Some("run-1")
        );
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&["terminus.dev/hold".to_owned()][..])
        );
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.termination_grace_period_seconds, Some(2));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );

        let s = load("immutable-file-volume.yaml");
        let spec = super::pod(&s, "victim", "ns1", "node-a", "run-1")
            .spec
            .expect("spec");
        assert!(spec.volumes.expect("volumes")[0].empty_dir.is_some());
    }

    #[test]
    fn daemonset_has_two_affinity_terms_for_the_churn_fault() {
        let s = load("daemonset-hash-churn.yaml");
        let ds = daemonset(&s, "churn", "ns1", "node-a", "run-1");
        let terms = ds
            .spec
            .template
            .spec
            .expect("pod spec")
            .affinity
            .expect("affinity")
            .node_affinity
            .expect("node affinity")
            .required_during_scheduling_ignored_during_execution
            .expect("required")
            .node_selector_terms;
        assert_eq!(terms.len(), 2);
    }
}
