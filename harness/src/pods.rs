//! Facts about a pod object that several modules need.
//!
//! Architecture invariant: one definition of a pod's container ids and of its DaemonSet
//! owner, used by trials, probes, live diagnosis and drills alike.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The DaemonSet that owns the pod, if one does: its pods are replaced by design, so
/// probes gather the owner's revisions and look for a replacement when the pod is gone.
pub fn daemonset_owner(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "DaemonSet")
}

/// The ids of a pod's containers (init, regular and ephemeral), without the runtime
/// prefix (`containerd://`), as the node's runtime and its logs name them.
///
/// Only ids of lowercase hex digits are kept (what containerd and docker issue): the
/// probes put them into node-side commands, so a forged status cannot put anything
/// else there.
pub fn container_ids(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .chain(status.ephemeral_container_statuses.iter().flatten())
        .filter_map(|c| c.container_id.as_deref())
        .map(|id| id.rsplit("://").next().unwrap_or(id))
        .filter(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runtime_ids_are_kept() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "status": { "containerStatuses": [
                { "name": "a", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                  "containerID": "containerd://0123abcd" },
                { "name": "b", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                  "containerID": "containerd://x; touch /tmp/p" }
            ] }
        }))
        .expect("a pod");
        assert_eq!(container_ids(&pod), vec!["0123abcd".to_owned()]);
    }
}
