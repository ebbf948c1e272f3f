//! The hold-mount fault: a process inside the node holds the container's rootfs mount
//! (its cwd, an open fd, or a bind mount), so the runtime cannot unmount it — or, for a
//! bind on Linux >= 3.18, unmounts it in its own namespace and leaks the layer in the
//! holder's.
//!
//! Architecture invariant: the agent ledgers the holder before it starts it; recover
//! (the ledger's, [`super::node_ledger::recover`]) ends it.

use std::time::Duration;

use crate::scenario::HoldVia;

use super::node_ledger;
use super::{layer, Applied, FaultContext, FaultError};

pub(super) async fn apply(cx: &FaultContext<'_>, via: HoldVia) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let id = cx.container_id("no container id to hold the rootfs of")?;
    let rootfs = rootfs_of(id);
    // A bind outlives the runtime's unmount (the leak): its layer is the debris the
    // node-clean check looks for in every mount namespace.
    let debris = match via {
        HoldVia::Bind => vec![layer::snapshot_dir(&layer::upper_dir(cx).await?)],
        HoldVia::Cwd | HoldVia::Fd => Vec::new(),
    };
    let via = via.as_str();
    let out = node_ledger::agent_ledgered(
        cx,
        &["hold-mount", "--path", &rootfs, "--via", via],
        Duration::from_secs(60),
    )
    .await?;
    Ok(node_ledger::record(
        cx,
        format!("mount holder ({via}) of {rootfs}: {}", out.trim()),
        debris,
    ))
}

/// Where containerd mounts container `id`'s rootfs.
fn rootfs_of(id: &str) -> String {
    format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_containers_rootfs_by_the_agents_names() {
        assert_eq!(
            rootfs_of("abc"),
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"
        );
        let args: Vec<_> = [HoldVia::Cwd, HoldVia::Fd, HoldVia::Bind]
            .into_iter()
            .map(|v| v.as_str())
            .collect();
        assert_eq!(args, ["cwd", "fd", "bind"]);
    }
}
