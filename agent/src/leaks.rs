//! Container mounts leaked into other mount namespaces (`leaked-mounts`).
//!
//! Since Linux 3.18 a mount that is busy only in another mount namespace does not make
//! the runtime's unmount fail: the runtime's copy goes, the other namespace's copy stays.
//! The container is removed, its snapshot directory too, and nothing in the runtime's
//! view shows that the layer is still mounted (and its disk space still used) in the
//! namespace of whatever process held it. The only place the leak is visible is that
//! process's `/proc/<pid>/mountinfo`: an overlay mount whose writable layer is a
//! container snapshot and whose device the runtime's namespace no longer has.
//!
//! Architecture invariant: read-only; one mountinfo read per mount namespace; the lines
//! are printed as the kernel wrote them, `grep -H` style, so the bundle parser and the
//! detector read them like any other mountinfo line.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use crate::hold;
use crate::procfs;

/// Where the runtimes this tool knows keep container writable layers.
const SNAPSHOT_ROOTS: [&str; 2] = [
    "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/",
    "/var/lib/docker/overlay2/",
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeakedMount {
    /// One process of the namespace that has the mount (the lowest pid).
    pub pid: i32,
    pub comm: String,
    pub mnt_ns: u64,
    pub mount_point: String,
    /// The container layer still mounted there.
    pub upperdir: String,
    /// Whether that layer's directory still exists in the runtime's view: the runtime
    /// usually removed it already, and the data lives on only through the leaked mount.
    pub upperdir_exists: bool,
    /// `/proc/PID/mountinfo:LINE`, as `grep -H` prints it.
    pub line: String,
}

/// The fields of a mountinfo line this module needs: (device, fs type, upperdir).
fn overlay_upperdir(line: &str) -> Option<(&str, String)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let device = *fields.get(2)?;
    let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    if *fields.get(dash + 1)? != "overlay" {
        return None;
    }
    let upper = fields
        .get(dash + 3)?
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))?;
    Some((device, crate::df::unescape(upper)))
}

fn is_container_layer(upperdir: &str) -> bool {
    SNAPSHOT_ROOTS.iter().any(|root| upperdir.starts_with(root))
}

/// The devices of the overlay mounts in `mountinfo` text (the runtime's view).
fn overlay_devices(mountinfo: &str) -> BTreeSet<String> {
    mountinfo
        .lines()
        .filter_map(overlay_upperdir)
        .map(|(dev, _)| dev.to_owned())
        .collect()
}

/// The leaked container mounts in one namespace's mountinfo, given the devices the
/// runtime's namespace still has mounted.
pub fn leaks_in(
    pid: i32,
    comm: &str,
    mnt_ns: u64,
    mountinfo: &str,
    runtime_devices: &BTreeSet<String>,
) -> Vec<LeakedMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (dev, upper) = overlay_upperdir(line)?;
            if !is_container_layer(&upper) || runtime_devices.contains(dev) {
                return None;
            }
            Some(LeakedMount {
                pid,
                comm: comm.to_owned(),
                mnt_ns,
                mount_point: crate::df::unescape(line.split(' ').nth(4)?),
                upperdir_exists: std::path::Path::new(&upper).exists(),
                upperdir: upper,
                line: format!("/proc/{pid}/mountinfo:{line}"),
            })
        })
        .collect()
}

/// Every leaked container mount on the node. Without a runtime process there is no
/// reference view, and nothing is called a leak.
pub fn find() -> Vec<LeakedMount> {
    let Some(runtime) = hold::runtime_pid() else {
        return Vec::new();
    };
    let Some(runtime_ns) = procfs::ns_inode(runtime, "mnt") else {
        return Vec::new();
    };
    let Ok(reference) = std::fs::read_to_string(procfs::proc_dir(runtime).join("mountinfo")) else {
        return Vec::new();
    };
    let devices = overlay_devices(&reference);
    let mut seen: HashSet<u64> = HashSet::from([runtime_ns]);
    let mut found = Vec::new();
    for pid in procfs::pids() {
        let Some(ns) = procfs::ns_inode(pid, "mnt") else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(procfs::proc_dir(pid).join("mountinfo")) else {
            continue;
        };
        let comm = procfs::stat(pid).map(|s| s.comm).unwrap_or_default();
        found.extend(leaks_in(pid, &comm, ns, &text, &devices));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind node (containerd 2.1): the runtime's view of a running container's
    /// rootfs, and a holder's namespace with a bind of a removed container's layer.
    const RUNTIME_VIEW: &str = "\
1591 1580 0:412 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/aaa/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/21/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/21/work
1580 1213 0:389 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work";
    const HOLDER_VIEW: &str = "\
2001 2000 0:389 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
2002 2001 0:412 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/aaa/rootfs rw,relatime master:700 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/21/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/21/work
2003 2001 0:420 / /run/terminus-hold-r1 rw,relatime master:705 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/22/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/22/work
broken line";

    #[test]
    fn a_layer_the_runtime_no_longer_mounts_is_a_leak() {
        let devices = overlay_devices(RUNTIME_VIEW);
        let leaks = leaks_in(2000, "holder", 7, HOLDER_VIEW, &devices);
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        let leak = &leaks[0];
        assert_eq!(leak.mount_point, "/run/terminus-hold-r1");
        assert_eq!(
            leak.upperdir,
            "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/22/fs"
        );
        assert!(leak
            .line
            .starts_with("/proc/2000/mountinfo:2003 2001 0:420 "));
        assert!(!leak.upperdir_exists);
    }

    #[test]
    fn the_nodes_own_root_and_live_containers_are_not_leaks() {
        // The node's `/` is docker's overlay2 layer: a container layer by path, but the
        // runtime's namespace has it, so it is not a leak.
        let devices = overlay_devices(RUNTIME_VIEW);
        let leaks = leaks_in(2000, "holder", 7, RUNTIME_VIEW, &devices);
        assert!(leaks.is_empty(), "{leaks:?}");
    }
}
