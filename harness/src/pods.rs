//! Facts about a pod object that several modules need.
//!
//! Architecture invariant: one definition of a pod's container ids, used by trials,
//! live diagnosis and drills alike.

use k8s_openapi::api::core::v1::Pod;

/// The ids of a pod's containers (init, regular and ephemeral), without the runtime
/// prefix (`containerd://`), as the node's runtime and its logs name them.
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
        .map(|id| id.rsplit("://").next().unwrap_or(id).to_owned())
        .collect()
}
