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
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(
    cx: &FaultContext<'_>,
    location: ImmutableLocation,
    path: &str,
) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let file = match location {
        ImmutableLocation::Volume => {
            let uid = cx
                .target
                .uid
                .as_deref()
                .ok_or(FaultError::TargetIncomplete("the pod has no uid yet"))?;
            volume_file(uid, path)
        }
        ImmutableLocation::Rootfs => format!("{}/{path}", upper_dir(cx).await?),
    };
    wait_for_file(cx.node, &file, cx.deadline).await?;
    node_ledger::agent_ledgered(cx, &["immutable", "set", &file], AGENT_STEP).await?;
    Ok(node_ledger::record(
        cx,
        format!("immutable flag on {file}"),
        debris_of(location, &file),
    ))
}

/// Where a file at `path` in the pod's `data` emptyDir volume lives on the node.
fn volume_file(uid: &str, path: &str) -> String {
    format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/data/{path}")
}

/// The flagged file must go; in the rootfs case, with the whole snapshot directory
/// containerd leaks around it.
fn debris_of(location: ImmutableLocation, file: &str) -> Vec<String> {
    match location {
        ImmutableLocation::Volume => vec![file.to_owned()],
        ImmutableLocation::Rootfs => vec![file
            .rsplit_once("/fs/")
            .map(|(dir, _)| dir.to_owned())
            .unwrap_or_else(|| file.to_owned())],
    }
}

/// The overlay upper dir of the pod's container, from the node's mount table.
async fn upper_dir(cx: &FaultContext<'_>) -> Result<String, FaultError> {
    let id = cx.container_id("no container id")?;
    let mountinfo = cx.node.agent(&["mountinfo", id], AGENT_STEP).await?;
    upperdir_in(&mountinfo, id).ok_or_else(|| FaultError::NoUpperDir {
        container: id.to_owned(),
    })
}

/// The `upperdir=` option of container `id`'s rootfs mount in a mountinfo listing.
fn upperdir_in(mountinfo: &str, id: &str) -> Option<String> {
    let rootfs = format!("{id}/rootfs");
    mountinfo
        .lines()
        .filter(|l| l.contains(&rootfs))
        .find_map(|l| {
            l.split(',')
                .find_map(|opt| opt.strip_prefix("upperdir="))
                .map(str::to_owned)
        })
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

    #[test]
    fn finds_the_upperdir_of_the_containers_rootfs_only() {
        let mountinfo = "\
1 0 0:1 / /run/other/rootfs rw - overlay overlay rw,lowerdir=/l,upperdir=/wrong,workdir=/w
2 0 0:2 / /run/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/l,upperdir=/snap/7/fs,workdir=/w";
        assert_eq!(upperdir_in(mountinfo, "abc"), Some("/snap/7/fs".to_owned()));
        assert_eq!(upperdir_in(mountinfo, "zzz"), None);
    }
}
