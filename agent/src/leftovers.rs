//! `leftovers`: what of terminus (or of a fault it applied) is still on this node. The
//! check `terminus gc` ends with and the kill tier asserts on: a node is clean when its
//! kubelet and containerd are active, no process is stopped, and no ledger, daemon,
//! mount (in any mount namespace: a container layer leaked by a bind holder counts),
//! immutable flag or directory of terminus's remains.
//!
//! Architecture invariant: read-only; it looks at the whole node, not one run's ledger,
//! because a leftover is exactly what a lost ledger would not name.

use std::path::{Path, PathBuf};

use terminus_core::ledger::{Leftover, LeftoverKind, Leftovers};

use crate::attrs;
use crate::daemon;
use crate::ledger::Store;
use crate::mounts::{self, Mount};
use crate::procfs;
use crate::tmpfs::FILL_DIR_PREFIX;
use crate::unit;

/// Where pods' volumes and container layers live: an immutable flag there keeps a pod
/// from being cleaned up. Scanned without crossing filesystems.
const FLAG_ROOTS: [&str; 2] = ["/var/lib/kubelet", "/var/lib/containerd"];
/// Bounds the flag scan; a kind node with the images of a cluster run holds ~100k
/// entries there.
const MAX_SCANNED: usize = 2_000_000;
/// The directory the CRI-state faults fill.
const CRI_STATE_DIR: &str = "/var/lib/containerd/io.containerd.grpc.v1.cri";
/// Where CNI plugins live: the network-teardown fault moves one aside there.
const CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// terminus's run directories (staging and underneath mounts, bind targets) start so.
const RUN_DIR_PREFIX: &str = "terminus-";

fn item(kind: LeftoverKind, what: String) -> Leftover {
    Leftover { kind, what }
}

pub fn check(store: &Store) -> Leftovers {
    let mut items = Vec::new();
    items.extend(store.runs().into_iter().map(|r| {
        item(
            LeftoverKind::Ledger,
            store.path_of(&r).display().to_string(),
        )
    }));
    items.extend(
        daemon::find(store, None)
            .into_iter()
            .map(|(pid, run, argv)| {
                item(
                    LeftoverKind::Daemon,
                    format!("pid {pid} of run {run}: {}", argv.join(" ")),
                )
            }),
    );
    items.extend(stopped_processes());
    for u in unit::UNITS {
        let state = unit::state(u);
        if state != "active" {
            items.push(item(LeftoverKind::InactiveUnit, format!("{u} ({state})")));
        }
    }
    items.extend(terminus_mounts(&mounts::read_own()));
    // A bind holder's layer outlives the holder's ledger only in another namespace.
    items.extend(crate::leaks::find().into_iter().map(|l| {
        item(
            LeftoverKind::Mount,
            format!(
                "container layer {} still mounted at {} in the mount namespace of pid {} ({})",
                l.upperdir, l.mount_point, l.pid, l.comm
            ),
        )
    }));
    items.extend(run_dirs(Path::new("/run")));
    items.extend(fill_dirs(Path::new(CRI_STATE_DIR)));
    for dir in CNI_BIN_DIRS {
        items.extend(aside_files(Path::new(dir)));
    }
    for root in FLAG_ROOTS {
        items.extend(flagged(Path::new(root)));
    }
    items.extend(
        crate::stray::leftover_dirs(Path::new(crate::stray::CGROUP_ROOT))
            .into_iter()
            .map(|d| {
                item(
                    LeftoverKind::Path,
                    format!("{} (a stray's cgroup)", d.display()),
                )
            }),
    );
    items.extend(
        crate::block::leftover_rules()
            .into_iter()
            .map(|r| item(LeftoverKind::NetworkRule, r)),
    );
    Leftovers::new(items)
}

fn stopped_processes() -> Vec<Leftover> {
    procfs::pids()
        .into_iter()
        .filter_map(procfs::stat)
        .filter(|st| is_stopped(st.state))
        .map(|st| {
            item(
                LeftoverKind::StoppedProcess,
                format!(
                    "pid {} ({}): {}",
                    st.pid,
                    st.comm,
                    procfs::cmdline(st.pid).join(" ")
                ),
            )
        })
        .collect()
}

/// State `T`: stopped by a signal (SIGSTOP). `t` (stopped by a tracer) is a debugger's.
fn is_stopped(state: char) -> bool {
    state == 'T'
}

fn terminus_mounts(table: &[Mount]) -> Vec<Leftover> {
    table
        .iter()
        .filter(|m| {
            m.source.starts_with(RUN_DIR_PREFIX)
                || m.mount_point
                    .strip_prefix("/run")
                    .ok()
                    .and_then(|rest| rest.components().next())
                    .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(RUN_DIR_PREFIX))
        })
        .map(|m| {
            item(
                LeftoverKind::Mount,
                format!("{} ({} {})", m.mount_point.display(), m.fstype, m.source),
            )
        })
        .collect()
}

/// Entries of `dir` whose name starts with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn run_dirs(run: &Path) -> Vec<Leftover> {
    named(run, RUN_DIR_PREFIX)
        .into_iter()
        .map(|p| item(LeftoverKind::Path, p.display().to_string()))
        .collect()
}

fn fill_dirs(dir: &Path) -> Vec<Leftover> {
    named(dir, FILL_DIR_PREFIX)
        .into_iter()
        .map(|p| item(LeftoverKind::Path, p.display().to_string()))
        .collect()
}

/// Files a run moved aside and nobody put back: their users still cannot find them.
fn aside_files(dir: &Path) -> Vec<Leftover> {
    named(dir, crate::aside::ASIDE_PREFIX)
        .into_iter()
        .map(|p| item(LeftoverKind::Path, format!("{} (moved aside)", p.display())))
        .collect()
}

/// Files under `root` with the immutable or append-only flag (lsattr lines).
fn flagged(root: &Path) -> Vec<Leftover> {
    if !root.exists() {
        return Vec::new();
    }
    let opts = attrs::ListOpts {
        recursive: true,
        only_flagged: true,
        max_lines: 1000,
        max_visited: MAX_SCANNED,
    };
    let mut out = Vec::new();
    let stats = match attrs::list(root, opts, &mut out) {
        Ok(s) => s,
        Err(e) => {
            return vec![item(
                LeftoverKind::Immutable,
                format!("cannot scan {}: {e}", root.display()),
            )]
        }
    };
    let mut found = flagged_lines(&String::from_utf8_lossy(&out));
    if stats.truncated {
        found.push(item(
            LeftoverKind::Immutable,
            format!(
                "scan of {} stopped after {} entries: the rest is unchecked",
                root.display(),
                stats.visited
            ),
        ));
    }
    found
}

/// The flagged entries of lsattr output (`----i---------e------- /path`); error lines
/// (`lsattr: ...`: a file vanished mid-scan) are not leftovers.
fn flagged_lines(text: &str) -> Vec<Leftover> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(flags, _)| flags.len() == 22 && (flags.contains('i') || flags.contains('a')))
        .map(|(flags, path)| item(LeftoverKind::Immutable, format!("{flags} {path}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signal_stops_count() {
        assert!(is_stopped('T'));
        for s in ['R', 'S', 'D', 'Z', 't', 'I'] {
            assert!(!is_stopped(s), "{s}");
        }
    }

    #[test]
    fn terminus_mounts_by_source_or_run_dir() {
        let table = mounts::parse(
            "1 0 0:1 / /var/lib/containerd/io.containerd.grpc.v1.cri rw - tmpfs terminus-tmpfs-r1 rw\n\
             2 0 0:2 / /run/terminus-hold-r1 rw - ext4 /dev/vda1 rw\n\
             3 0 0:3 / /run/containerd rw - tmpfs tmpfs rw\n\
             4 0 0:4 / /run/not-terminus-x rw - tmpfs tmpfs rw\n",
        );
        let found = terminus_mounts(&table);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].what.contains("terminus-tmpfs-r1"));
        assert!(found[1].what.starts_with("/run/terminus-hold-r1"));
    }

    #[test]
    fn flagged_lines_of_the_agents_lsattr() {
        let text = "----i---------e------- /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/data/locked\n\
                    -----a--------e------- /var/lib/kubelet/x.log\n\
                    lsattr: No such file or directory while trying to stat /var/lib/kubelet/gone\n";
        let found = flagged_lines(text);
        assert_eq!(found.len(), 2);
        assert!(found[0].what.ends_with("/data/locked"));
        assert_eq!(found[1].kind, LeftoverKind::Immutable);
    }

    #[test]
    fn run_and_fill_dirs_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["terminus-stage-r1", ".terminus-fill-r1", "containerd"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        assert_eq!(run_dirs(dir.path()).len(), 1);
        assert_eq!(fill_dirs(dir.path()).len(), 1);
    }
}
