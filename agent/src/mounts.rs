//! The mount table as `/proc/<pid>/mountinfo` shows it: which mount is at a path, which
//! one holds a path, and by what source.
//!
//! Architecture invariant: parsing only, from the kernel's text; a malformed line is
//! skipped, never a panic.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`:
/// the mount point is field 5, fstype and source follow the `-` separator.
pub fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let mount_point = crate::df::unescape(fields.get(4)?);
    let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    Some(Mount {
        mount_point: PathBuf::from(mount_point),
        fstype: (*fields.get(dash + 1)?).to_owned(),
        source: crate::df::unescape(fields.get(dash + 2)?),
    })
}

pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// This process's mount table (the node's, for the agent run by docker exec).
pub fn read_own() -> Vec<Mount> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The topmost mount whose mount point is exactly `path` (the last one listed: a mount
/// over a mount point comes after it).
pub fn at<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The mount `path` lives on: the topmost one with the longest mount point above it.
pub fn holding<'m>(mounts: &'m [Mount], path: &Path) -> Option<&'m Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From a kind node during the disk-full fault (fields as the kernel writes them).
    const KIND_NODE: &str = "\
1580 1213 0:389 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/x/diff
1612 1580 254:1 /var/lib/docker/volumes/abc/_data /var rw,relatime master:1 - ext4 /dev/vda1 rw
1700 1612 0:512 / /var/lib/containerd/io.containerd.grpc.v1.cri rw,relatime shared:600 - tmpfs terminus-cri-r1-disk rw,size=16384k,nr_inodes=4096,mode=755
1701 1580 0:40 / /run/my\\040dir rw - tmpfs tmpfs rw
broken line";

    #[test]
    fn parses_mount_point_fstype_and_source() {
        let mounts = parse(KIND_NODE);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[2].source, "terminus-cri-r1-disk");
        assert_eq!(mounts[2].fstype, "tmpfs");
        assert_eq!(mounts[3].mount_point, PathBuf::from("/run/my dir"));
    }

    #[test]
    fn finds_the_mount_at_and_holding_a_path() {
        let mounts = parse(KIND_NODE);
        let cri = Path::new("/var/lib/containerd/io.containerd.grpc.v1.cri");
        assert_eq!(
            at(&mounts, cri).map(|m| m.source.as_str()),
            Some("terminus-cri-r1-disk")
        );
        assert_eq!(at(&mounts, Path::new("/var/lib")), None);
        let under = holding(&mounts, Path::new("/var/lib/containerd")).expect("held");
        assert_eq!(under.mount_point, PathBuf::from("/var"));
        assert_eq!(
            holding(&mounts, Path::new("/etc")).map(|m| m.fstype.as_str()),
            Some("overlay")
        );
    }
}
