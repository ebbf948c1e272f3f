//! The immutable-file fault: `chattr +i` on a file the workload wrote, in its volume or
//! in its container's rootfs, so kubelet's teardown cannot remove it.
//!
//! Architecture invariant: the flag is set by the agent, which ledgers it first; the
//! record's debris names the flagged file (rootfs: its whole snapshot directory), and
//! the node is clean only once that is gone.

use std::time::Duration;

use crate::node::Node;
use crate::scenario::ImmutableLocation;

use super::node_ledger::{self, AGENT_STEP};
use super::{layer, Applied, FaultContext, FaultError};

pub(super) async fn apply(
    cx: &FaultContext<'_>,
    location: ImmutableLocation,
    path: &str,
) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let file = match location {
        ImmutableLocation::Volume => volume_file(cx.pod_uid("the pod has no uid yet")?, path),
        ImmutableLocation::Rootfs => format!("{}/{path}", layer::upper_dir(cx).await?),
    };
    wait_for_file(cx.node, &file, cx.deadline).await?;
    node_ledger::agent_ledgered(cx, &["immutable", "set", &file], AGENT_STEP).await?;
    Ok(node_ledger::record(
        cx,
        format!("immutable flag on {file}"),
        debris_of(location, &file),
    ))
}

/// Where a file at `path` in the pod's emptyDir volume lives on the node.
fn volume_file(uid: &str, path: &str) -> String {
    format!("{}/{path}", crate::workload::empty_dir_on_node(uid))
}

/// The flagged file must go; in the rootfs case, with the whole snapshot directory
/// containerd leaks around it.
fn debris_of(location: ImmutableLocation, file: &str) -> Vec<String> {
    match location {
        ImmutableLocation::Volume => vec![file.to_owned()],
        ImmutableLocation::Rootfs => vec![layer::snapshot_dir(file)],
    }
}

async fn wait_for_file(node: &Node, path: &str, deadline: Duration) -> Result<(), FaultError> {
    use crate::wait::{Check, WaitError};
    let what = format!("the workload to create {path}");
    crate::wait::until(&what, deadline, || async {
        let probe = node
            .exec_raw(&["test", "-e", path], Duration::from_secs(10))
            .await?;
        Ok::<_, FaultError>(if probe.code == 0 {
            Check::Done(())
        } else {
            Check::Pending(String::new())
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(_) => FaultError::WorkloadFileMissing {
            path: path.to_owned(),
            waited: deadline,
        },
        WaitError::Check(e) => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_debris_is_the_whole_snapshot_directory() {
        let file = "/var/lib/containerd/snapshots/42/fs/data/x";
        assert_eq!(
            debris_of(ImmutableLocation::Rootfs, file),
            vec!["/var/lib/containerd/snapshots/42".to_owned()]
        );
        assert_eq!(
            debris_of(ImmutableLocation::Rootfs, "/odd/x"),
            vec!["/odd/x".to_owned()]
        );
        assert_eq!(
            debris_of(ImmutableLocation::Volume, "/v/x"),
            vec!["/v/x".to_owned()]
        );
    }

    #[test]
    fn volume_files_live_under_the_pods_empty_dir() {
        assert_eq!(
            volume_file("u-1", "a/b"),
            "/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~empty-dir/data/a/b"
        );
    }
}
