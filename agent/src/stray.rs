//! Busy pod cgroups: a stray process of terminus's (the `__stray` daemon) moved into a
//! child cgroup `terminus-<run>` of the pod's cgroup — in every hierarchy the pod's
//! cgroup is in — and frozen there by cgroup v1's freezer (on v2 a fatal signal ends a
//! frozen process, so the fault is refused there; `thaw-cgroup` handles both). When
//! the pod is deleted, kubelet finds it, sends SIGKILL (which a frozen process only
//! receives once thawed) and fails to remove the pod's cgroup for real: the
//! cgroup-busy fault's node half. `thaw-cgroup DIR` is the remedy's act.
//!
//! Architecture invariant: the entry (child dirs and freeze file) is in the ledger
//! before any directory is made or process started; gc thaws before it kills, and
//! removes only directories named `terminus-<run>` (rmdir, never recursive).
//! Architecture invariant: `thaw-cgroup` only writes the freezer file of a directory
//! under /sys/fs/cgroup; it never kills or moves anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use terminus_core::evidence::pod_cgroup_dir;
use terminus_core::ledger::Entry;

use crate::daemon;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::procfs;
use crate::timefmt::now_epoch;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The child cgroup's name: leftovers and gc know it by this prefix.
pub const CHILD_PREFIX: &str = "terminus-";

/// How deep below the root a pod's cgroup may lie (kind's systemd driver nests it
/// `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/…`).
const MAX_DEPTH: usize = 8;

/// The directories under `root` (at most `max_depth` levels down) that `wanted(parent,
/// name)` picks; a picked directory is not searched further. Only real directories: a
/// cgroup tree has no symlinks worth following (`cpu` -> `cpu,cpuacct` would list a
/// hierarchy twice).
fn find_dirs(root: &Path, max_depth: usize, wanted: impl Fn(&Path, &str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if wanted(&dir, &e.file_name().to_string_lossy()) {
                out.push(e.path());
            } else if depth + 1 < max_depth {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out.sort();
    out
}

/// The pod cgroup directories of `uid` under `root`, one per hierarchy: the outermost
/// directory that is the pod's (its containers' cgroups lie inside it).
pub fn pod_dirs(root: &Path, uid: &str) -> Vec<PathBuf> {
    find_dirs(root, MAX_DEPTH, |_, name| {
        pod_cgroup_dir(&format!("/{name}"), uid)
    })
}

/// The freezer control file of a cgroup directory: v1's `freezer.state` (in the freezer
/// hierarchy) or v2's `cgroup.freeze`; with neither, None.
fn freeze_file(dir: &Path) -> Option<PathBuf> {
    ["freezer.state", "cgroup.freeze"]
        .iter()
        .map(|f| dir.join(f))
        .find(|f| f.exists())
}

fn freeze_values(file: &Path) -> (&'static str, &'static str) {
    if file.ends_with("freezer.state") {
        ("FROZEN", "THAWED")
    } else {
        ("1", "0")
    }
}

/// True once the cgroup of `file` reports itself frozen.
fn is_frozen(file: &Path) -> bool {
    if file.ends_with("freezer.state") {
        return std::fs::read_to_string(file).is_ok_and(|s| s.trim() == "FROZEN");
    }
    let events = file.with_file_name("cgroup.events");
    std::fs::read_to_string(events).is_ok_and(|s| s.lines().any(|l| l.trim() == "frozen 1"))
}

/// Starts a stray in the pod `uid`'s cgroup and freezes it (see the module doc).
pub fn busy_cgroup(
    store: &Store,
    run: &str,
    uid: &str,
    deadline: Duration,
) -> Result<serde_json::Value> {
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(AgentError::Usage(format!(
            "--pod-uid {uid:?} is not a pod uid"
        )));
    }
    let pods = pod_dirs(Path::new(CGROUP_ROOT), uid);
    if pods.is_empty() {
        return Err(AgentError::Usage(format!(
            "no cgroup of pod {uid} under {CGROUP_ROOT} (is the pod running on this node?)"
        )));
    }
    let child = format!("{CHILD_PREFIX}{run}");
    // cpuset needs its cpus and mems set before a process may join: the stray stays in
    // the parent's there, which holds nothing of the pod's.
    let dirs: Vec<PathBuf> = pods
        .iter()
        .filter(|p| !p.to_string_lossy().contains("/cpuset"))
        .map(|p| p.join(&child))
        .collect();
    // cgroup v1's freezer only: on v2 a fatal signal ends a frozen process, so kubelet's
    // SIGKILL would clear the cgroup and the fault would hold nothing.
    let freeze = dirs
        .iter()
        .find(|d| d.parent().is_some_and(|p| p.join("freezer.state").exists()))
        .map(|d| d.join("freezer.state"))
        .ok_or_else(|| {
            AgentError::Failed(format!(
                "pod {uid}'s cgroup is in no cgroup v1 freezer hierarchy; on cgroup v2 SIGKILL ends a frozen process, so a frozen stray cannot hold the pod there"
            ))
        })?;
    let mut l = store.open(run)?;
    if l.ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::Stray { .. }))
    {
        return Err(AgentError::Usage(format!(
            "run {run} already has a stray; gc it first"
        )));
    }
    l.record(Entry::Stray {
        dirs: dirs.clone(),
        freeze: freeze.clone(),
        pid: None,
        start_ticks: None,
        at: now_epoch(),
    })?;
    drop(l);
    match place(store, run, &dirs, &freeze, deadline) {
        Ok(started) => {
            let mut l = store.open(run)?;
            if let Some(Entry::Stray {
                pid, start_ticks, ..
            }) = l
                .ledger
                .entries
                .iter_mut()
                .find(|e| matches!(e, Entry::Stray { .. }))
            {
                *pid = Some(started.pid);
                *start_ticks = Some(started.start_ticks);
            }
            l.save()?;
            Ok(json!({
                "run": run,
                "pid": started.pid,
                "pod_cgroups": pods,
                "dirs": dirs,
                "frozen": freeze.parent(),
            }))
        }
        Err(e) => {
            // Nothing of ours stays: the started stray (if any) and the directories.
            let undone = undo(&dirs, &freeze, None);
            let mut l = store.open(run)?;
            if undone.is_ok() {
                l.ledger
                    .entries
                    .retain(|e| !matches!(e, Entry::Stray { .. }));
            }
            l.save()?;
            Err(e)
        }
    }
}

/// Starts the stray, moves it into `dirs` and freezes `freeze`'s cgroup.
fn place(
    store: &Store,
    run: &str,
    dirs: &[PathBuf],
    freeze: &Path,
    deadline: Duration,
) -> Result<daemon::Started> {
    let started = daemon::spawn(store, run, &["__stray".into()], deadline)?;
    let pid = started.pid.to_string();
    for d in dirs {
        std::fs::create_dir_all(d)
            .map_err(|e| AgentError::io(format!("creating cgroup {}", d.display()), e))?;
        std::fs::write(d.join("cgroup.procs"), &pid)
            .map_err(|e| AgentError::io(format!("moving pid {pid} into {}", d.display()), e))?;
    }
    let (frozen, _) = freeze_values(freeze);
    std::fs::write(freeze, frozen)
        .map_err(|e| AgentError::io(format!("writing {frozen} to {}", freeze.display()), e))?;
    let until = Instant::now() + deadline;
    while !is_frozen(freeze) {
        if Instant::now() > until {
            return Err(AgentError::Failed(format!(
                "{} not frozen within {}s",
                freeze.display(),
                deadline.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(started)
}

/// The `__stray` daemon: nothing to do but exist.
pub fn daemon_main() -> ! {
    if let Err(msg) = daemon::detach(c"terminus-stray") {
        daemon::report_err(&msg);
        std::process::exit(1);
    }
    daemon::report_ok(&json!({}));
    loop {
        nix::unistd::pause();
    }
}

/// Writes the thawed value into the freezer file of `dir` (the remedy's act).
pub fn thaw_cgroup(dir: &Path) -> Result<String> {
    let plain = dir.is_absolute()
        && dir.starts_with(CGROUP_ROOT)
        && dir.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
    if !plain {
        return Err(AgentError::Usage(format!(
            "{} is not a cgroup directory under {CGROUP_ROOT}",
            dir.display()
        )));
    }
    let file = freeze_file(dir).ok_or_else(|| {
        AgentError::Usage(format!(
            "{} has no freezer.state or cgroup.freeze",
            dir.display()
        ))
    })?;
    let (_, thawed) = freeze_values(&file);
    std::fs::write(&file, thawed)
        .map_err(|e| AgentError::io(format!("writing {thawed} to {}", file.display()), e))?;
    Ok(format!("wrote {thawed} to {}", file.display()))
}

/// Thaws the `terminus-*` freezer cgroups a live process is in (gc, before it kills a
/// stray found in /proc whose ledger entry may lack its pid).
pub fn thaw_own_cgroups(pid: i32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut done = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let ours = Path::new(path)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(CHILD_PREFIX));
        if !ours {
            continue;
        }
        let roots: &[&str] = match controllers {
            "freezer" => &["freezer"],
            "" => &["unified", ""],
            _ => continue,
        };
        for r in roots {
            let dir = Path::new(CGROUP_ROOT)
                .join(r)
                .join(path.trim_start_matches('/'));
            if dir.is_dir() {
                if let Ok(m) = thaw_cgroup(&dir) {
                    done.push(m);
                }
            }
        }
    }
    done
}

/// Undoes a stray entry: thaw (so the process can die), kill it if it is still the
/// recorded process, remove the child directories. Ok(message) when nothing is left.
pub fn undo(
    dirs: &[PathBuf],
    freeze: &Path,
    process: Option<(i32, u64)>,
) -> std::result::Result<String, String> {
    let mut msg = Vec::new();
    if freeze.exists() {
        let (_, thawed) = freeze_values(freeze);
        std::fs::write(freeze, thawed).map_err(|e| format!("thawing {}: {e}", freeze.display()))?;
        msg.push(format!(
            "thawed {}",
            freeze.parent().unwrap_or(freeze).display()
        ));
    }
    if let Some((pid, t)) = process {
        if procfs::same_process(pid, t) {
            if !daemon::kill_and_wait(pid) {
                return Err(format!("stray pid {pid} did not exit"));
            }
            msg.push(format!("killed stray pid {pid}"));
        }
    }
    // A stray that started but is not in the ledger yet (the agent died meanwhile) is
    // in the directories: whoever is left there is ours.
    for d in dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            if procfs::cmdline(pid).get(1).map(String::as_str) == Some("__stray") {
                daemon::kill_and_wait(pid);
            }
        }
    }
    for d in dirs {
        let named_ours = d
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(CHILD_PREFIX));
        if !named_ours {
            return Err(format!(
                "refusing to remove {}: not a {CHILD_PREFIX}* cgroup",
                d.display()
            ));
        }
        match std::fs::remove_dir(d) {
            Ok(()) => msg.push(format!("removed {}", d.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", d.display())),
        }
    }
    Ok(if msg.is_empty() {
        "stray cgroup already gone".into()
    } else {
        msg.join(", ")
    })
}

/// The bundle's `pod-cgroups.txt`: for every directory in pod `uid`'s cgroups, its
/// `cgroup.procs` (a line per pid) and its freezer file, as `grep -H .` prints them.
/// Bounded: at most `MAX_LINES` lines, four levels below the pod's directory.
pub fn pod_cgroup_lines(root: &Path, uid: &str) -> String {
    const MAX_LINES: usize = 10_000;
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> =
        pod_dirs(root, uid).into_iter().map(|d| (d, 0)).collect();
    stack.reverse();
    while let Some((dir, depth)) = stack.pop() {
        for file in ["cgroup.procs", "freezer.state", "cgroup.freeze"] {
            let path = dir.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("{}:{}", path.display(), l.trim())),
            );
        }
        if out.len() >= MAX_LINES {
            out.truncate(MAX_LINES);
            break;
        }
        if depth < 4 {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
        }
    }
    out.iter().map(|l| format!("{l}\n")).collect()
}

/// A pod's cgroup directory by its name alone: `pod<uid>` (cgroupfs driver) or
/// `…-pod<uid with _>.slice` (systemd driver).
fn is_pod_cgroup_name(dir: &Path) -> bool {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let uid_like = |s: &str| {
        s.len() == 36
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
    };
    name.strip_prefix("pod").is_some_and(uid_like)
        || name
            .strip_suffix(".slice")
            .and_then(|n| n.rsplit_once("-pod"))
            .is_some_and(|(_, uid)| uid_like(uid))
}

/// `terminus-*` cgroup directories in pod cgroups under the root (leftovers): one level
/// below a pod's directory. Only in a pod's cgroup: the node's own units may be named
/// `terminus-*` too (the offline image's `terminus-cni.service`).
pub fn leftover_dirs(root: &Path) -> Vec<PathBuf> {
    find_dirs(root, MAX_DEPTH + 1, |parent, name| {
        name.starts_with(CHILD_PREFIX) && is_pod_cgroup_name(parent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pods_cgroup_in_each_hierarchy_and_not_its_containers() {
        let root = tempfile::tempdir().unwrap();
        let uid = "22241d77-3d04-4630-b433-31e2c9fb8cc3";
        let pod = "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod22241d77_3d04_4630_b433_31e2c9fb8cc3.slice";
        for h in ["freezer", "pids"] {
            std::fs::create_dir_all(
                root.path()
                    .join(h)
                    .join(pod)
                    .join("cri-containerd-abc.scope"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(
            root.path()
                .join("pids/kubepods/besteffort/pod99999999-3d04-4630-b433-31e2c9fb8cc3"),
        )
        .unwrap();
        let found = pod_dirs(root.path(), uid);
        assert_eq!(
            found,
            vec![
                root.path().join("freezer").join(pod),
                root.path().join("pids").join(pod)
            ]
        );
        std::fs::create_dir_all(root.path().join("freezer").join(pod).join("terminus-r1")).unwrap();
        // The node's own unit of the same prefix is not a stray's.
        std::fs::create_dir_all(root.path().join("pids/system.slice/terminus-cni.service"))
            .unwrap();
        assert_eq!(
            leftover_dirs(root.path()),
            vec![root.path().join("freezer").join(pod).join("terminus-r1")]
        );
    }

    #[test]
    fn the_pods_cgroup_lines_read_like_grep_h() {
        let root = tempfile::tempdir().unwrap();
        let uid = "22241d77-3d04-4630-b433-31e2c9fb8cc3";
        let pod = root
            .path()
            .join("freezer/kubepods/besteffort/pod22241d77-3d04-4630-b433-31e2c9fb8cc3");
        std::fs::create_dir_all(pod.join("terminus-r1")).unwrap();
        std::fs::write(pod.join("freezer.state"), "THAWED\n").unwrap();
        std::fs::write(pod.join("cgroup.procs"), "").unwrap();
        std::fs::write(pod.join("terminus-r1/freezer.state"), "FROZEN\n").unwrap();
        std::fs::write(pod.join("terminus-r1/cgroup.procs"), "1547\n1548\n").unwrap();
        let text = pod_cgroup_lines(root.path(), uid);
        let p = pod.display();
        assert_eq!(
            text,
            format!("{p}/freezer.state:THAWED\n{p}/terminus-r1/cgroup.procs:1547\n{p}/terminus-r1/cgroup.procs:1548\n{p}/terminus-r1/freezer.state:FROZEN\n")
        );
        let lines = terminus_core::evidence::pod_cgroups(&text).unwrap();
        assert!(lines.iter().any(|l| l.frozen() && l.of_pod(uid)));
    }

    #[test]
    fn thaw_refuses_what_is_not_a_plain_cgroup_directory() {
        for dir in ["/etc", "/sys/fs/cgroup/../../etc", "relative"] {
            assert!(thaw_cgroup(Path::new(dir)).is_err(), "{dir}");
        }
    }

    #[test]
    fn undo_refuses_to_remove_a_directory_not_named_ours() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("kubepods");
        std::fs::create_dir(&d).unwrap();
        let r = undo(std::slice::from_ref(&d), &root.path().join("none"), None);
        assert!(r.is_err(), "{r:?}");
        assert!(d.exists());
    }
}
