//! A container's writable layer (its overlay `upperdir`) as the node's mount table names
//! it: the immutable-rootfs fault flags a file in it, the bind holder leaks it.

use super::node_ledger::AGENT_STEP;
use super::{FaultContext, FaultError};

/// The overlay upper dir of the pod's container, from the node's mount table.
pub(super) async fn upper_dir(cx: &FaultContext<'_>) -> Result<String, FaultError> {
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

/// The snapshot directory around an upper dir or a file in it (`.../snapshots/7/fs/x`
/// → `.../snapshots/7`): what containerd removes with the snapshot.
pub(super) fn snapshot_dir(path: &str) -> String {
    path.strip_suffix("/fs")
        .or_else(|| path.rsplit_once("/fs/").map(|(dir, _)| dir))
        .unwrap_or(path)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_upperdir_of_the_containers_rootfs_only() {
        let mountinfo = "\
1 0 0:1 / /run/other/rootfs rw - overlay overlay rw,lowerdir=/l,upperdir=/wrong,workdir=/w
2 0 0:2 / /run/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/l,upperdir=/snap/7/fs,workdir=/w";
        assert_eq!(upperdir_in(mountinfo, "abc"), Some("/snap/7/fs".to_owned()));
        assert_eq!(upperdir_in(mountinfo, "zzz"), None);
    }

    #[test]
    fn the_snapshot_dir_of_an_upper_dir_or_a_file_in_it() {
        assert_eq!(snapshot_dir("/s/snapshots/7/fs"), "/s/snapshots/7");
        assert_eq!(snapshot_dir("/s/snapshots/7/fs/a/b"), "/s/snapshots/7");
        assert_eq!(snapshot_dir("/odd/x"), "/odd/x");
    }
}
