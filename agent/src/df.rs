//! `df -P` / `df -P -i` from /proc/self/mounts and statvfs, for `df.txt` / `df-inodes.txt`.
//!
//! Architecture invariant: read-only; the table layout is coreutils' (the detector's
//! parser reads either).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some(Mount {
                source: unescape(it.next()?),
                target: unescape(it.next()?),
                fstype: it.next()?.to_string(),
            })
        })
        .collect()
}

/// coreutils' "dummy" file systems, hidden without `-a`.
fn dummy(fstype: &str) -> bool {
    matches!(
        fstype,
        "autofs"
            | "proc"
            | "subfs"
            | "debugfs"
            | "devpts"
            | "fusectl"
            | "fuse.portal"
            | "mqueue"
            | "rpc_pipefs"
            | "sysfs"
            | "devfs"
            | "kernfs"
            | "ignore"
            | "none"
            | "binfmt_misc"
            | "cgroup"
            | "cgroup2"
            | "nsfs"
            | "tracefs"
            | "securityfs"
            | "pstore"
            | "bpf"
            | "configfs"
            | "hugetlbfs"
    )
}

/// Sizes of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub blocks_1k: u64,
    pub used_1k: u64,
    pub avail_1k: u64,
    pub inodes: u64,
    pub iused: u64,
    pub ifree: u64,
}

/// Percentage as df rounds it: up, `-` when there is nothing to divide.
pub fn percent(used: u64, avail: u64) -> String {
    let total = used + avail;
    if total == 0 {
        return "-".into();
    }
    format!("{}%", (used * 100).div_ceil(total))
}

pub fn usage_of(path: &str) -> Option<Usage> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frs = s.fragment_size() as u64;
    let k = |n: u64| n.saturating_mul(frs) / 1024;
    let blocks = s.blocks() as u64;
    let bfree = s.blocks_free() as u64;
    Some(Usage {
        blocks_1k: k(blocks),
        used_1k: k(blocks.saturating_sub(bfree)),
        avail_1k: k(s.blocks_available() as u64),
        inodes: s.files() as u64,
        iused: (s.files() as u64).saturating_sub(s.files_free() as u64),
        ifree: s.files_free() as u64,
    })
}

/// Renders rows as df does: every column as wide as its widest cell but at least
/// coreutils' minimum (14 for the source, 5 for numbers, 4 for the percentage), the
/// first and last column left-aligned, the numbers right-aligned.
pub fn render_table(rows: &[Vec<String>]) -> String {
    const MIN: [usize; 6] = [14, 5, 5, 5, 4, 0];
    let ncol = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                .max(MIN.get(c).copied().unwrap_or(0))
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let w = widths[c];
                if c == 0 {
                    format!("{s:<w$}")
                } else if c + 1 == ncol {
                    s.clone()
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        out.push_str(&cells.join(" "));
        out.push('\n');
    }
    out
}

pub fn header(inodes: bool) -> Vec<String> {
    let h: &[&str] = if inodes {
        &[
            "Filesystem",
            "Inodes",
            "IUsed",
            "IFree",
            "IUse%",
            "Mounted on",
        ]
    } else {
        &[
            "Filesystem",
            "1024-blocks",
            "Used",
            "Available",
            "Capacity",
            "Mounted on",
        ]
    };
    h.iter().map(|s| s.to_string()).collect()
}

pub fn row(m: &Mount, u: &Usage, inodes: bool) -> Vec<String> {
    if inodes {
        vec![
            m.source.clone(),
            u.inodes.to_string(),
            u.iused.to_string(),
            u.ifree.to_string(),
            percent(u.iused, u.ifree),
            m.target.clone(),
        ]
    } else {
        vec![
            m.source.clone(),
            u.blocks_1k.to_string(),
            u.used_1k.to_string(),
            u.avail_1k.to_string(),
            percent(u.used_1k, u.avail_1k),
            m.target.clone(),
        ]
    }
}

/// The whole `df -P [-i]` output for this process's mount namespace.
pub fn render(inodes: bool) -> String {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounts = parse_mounts(&text);
    // One row per device: the mount with the shortest mount point wins (as df does for
    // bind mounts and repeated mounts).
    let mut best: HashMap<u64, (usize, Mount, Usage)> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for (i, m) in mounts.into_iter().enumerate() {
        if dummy(&m.fstype) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&m.target) else {
            continue;
        };
        let Some(u) = usage_of(&m.target) else {
            continue;
        };
        if u.blocks_1k == 0 {
            continue;
        }
        let dev = meta.dev();
        match best.get_mut(&dev) {
            Some(old) if old.1.target.len() <= m.target.len() => {}
            Some(old) => *old = (old.0, m, u),
            None => {
                order.push(dev);
                best.insert(dev, (i, m, u));
            }
        }
    }
    let mut rows = vec![header(inodes)];
    for dev in order {
        if let Some((_, m, u)) = best.get(&dev) {
            rows.push(row(m, u, inodes));
        }
    }
    render_table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/x\\y"), r"/x\\y");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
    }

    #[test]
    fn mounts_parse() {
        let m = parse_mounts(
            "overlay / overlay rw,relatime 0 0\n/dev/loop3 /var/lib/containerd ext4 rw 0 0\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].target, "/var/lib/containerd");
        assert_eq!(m[1].fstype, "ext4");
    }

    #[test]
    fn percent_rounds_up() {
        assert_eq!(percent(0, 10), "0%");
        assert_eq!(percent(1, 999), "1%");
        assert_eq!(percent(999, 1), "100%");
        assert_eq!(percent(10, 0), "100%");
        assert_eq!(percent(0, 0), "-");
    }

    #[test]
    fn table_like_df() {
        let u = Usage {
            blocks_1k: 16384,
            used_1k: 16384,
            avail_1k: 0,
            inodes: 4096,
            iused: 12,
            ifree: 4084,
        };
        let m = Mount {
            source: "/dev/loop0".into(),
            target: "/var/lib/containerd".into(),
            fstype: "ext4".into(),
        };
        let t = render_table(&[header(false), row(&m, &u, false)]);
        assert_eq!(
            t,
            "Filesystem     1024-blocks  Used Available Capacity Mounted on\n\
             /dev/loop0           16384 16384         0     100% /var/lib/containerd\n"
        );
        let t = render_table(&[header(true), row(&m, &u, true)]);
        assert_eq!(
            t,
            "Filesystem     Inodes IUsed IFree IUse% Mounted on\n\
             /dev/loop0       4096    12  4084    1% /var/lib/containerd\n"
        );
    }
}
