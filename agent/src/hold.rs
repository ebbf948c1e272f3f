//! Mount holders: a resident process in its own mount namespace that keeps a path busy
//! (cwd, open fd, or a bind mount), plus the read-only views used to find holders
//! (`mountinfo ID` and `holders PATH`).
//!
//! Architecture invariant: a holder is recorded before it starts; its bind target is
//! `/run/terminus-hold-<run>`, the only directory `release`/`gc` remove for it (rmdir,
//! never recursive).

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use serde::Serialize;
use serde_json::json;
use terminus_core::ledger::{Entry, Via};

use crate::daemon;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::procfs;
use crate::timefmt::now_epoch;

pub fn bind_target(run: &str) -> PathBuf {
    PathBuf::from(format!("/run/terminus-hold-{run}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ns {
    /// A new mount namespace, slave of the current one (the default).
    New,
    /// Stay in the current (or `--mount-ns-of`) namespace.
    Current,
}

/// Body of the hidden `__hold` subcommand.
pub fn daemon_main(path: &Path, via: Via, ns: Ns, ns_of: Option<i32>, target: &Path) -> ! {
    if let Err(msg) = daemon::detach(c"terminus-hold") {
        daemon::report_err(&msg);
        std::process::exit(1);
    }
    let r = (|| -> std::result::Result<Option<File>, String> {
        if let Some(p) = ns_of {
            let f = File::open(format!("/proc/{p}/ns/mnt"))
                .map_err(|e| format!("opening mount ns of pid {p}: {e}"))?;
            setns(&f, CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("entering mount ns of pid {p}: {e}"))?;
        }
        if ns == Ns::New {
            unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
            // Slave, not private: the holder keeps seeing mounts made later by the
            // runtime (so the path exists for it), while its own binds stay its own.
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .map_err(|e| format!("making / rslave: {e}"))?;
        }
        match via {
            Via::Cwd => {
                nix::unistd::chdir(path).map_err(|e| format!("chdir {}: {e}", path.display()))?;
                Ok(None)
            }
            Via::Fd => File::open(path)
                .map(Some)
                .map_err(|e| format!("open {}: {e}", path.display())),
            Via::Bind => {
                std::fs::create_dir_all(target)
                    .map_err(|e| format!("mkdir {}: {e}", target.display()))?;
                mount(
                    Some(path),
                    target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("bind {} to {}: {e}", path.display(), target.display()))?;
                Ok(None)
            }
        }
    })();
    match r {
        Ok(fd) => {
            daemon::report_ok(
                &json!({"mnt_ns": procfs::ns_inode(std::process::id() as i32, "mnt")}),
            );
            loop {
                // The open fd (if any) must stay alive: it is the hold.
                let _keep = &fd;
                nix::unistd::pause();
            }
        }
        Err(msg) => {
            daemon::report_err(&msg);
            std::process::exit(1);
        }
    }
}

pub struct HoldArgs<'a> {
    pub path: &'a Path,
    pub via: Via,
    pub ns: Ns,
    pub ns_of: Option<i32>,
    pub run: &'a str,
    pub timeout: Duration,
}

/// Starts a holder daemon for `a.path`, recorded in the run's ledger before it starts.
pub fn hold(store: &Store, a: &HoldArgs) -> Result<serde_json::Value> {
    check_hold_args(a)?;
    let target = bind_target(a.run);
    let bind = (a.via == Via::Bind).then(|| target.clone());
    record_pending_hold(store, a, bind.as_deref())?;
    let is_pending = |e: &Entry| matches!(e, Entry::Hold { path, via, pid: None, .. } if path == a.path && *via == a.via);
    match daemon::spawn(store, a.run, &hold_daemon_args(a, &target), a.timeout) {
        Ok(st) => {
            let mut l = store.open(a.run)?;
            if let Some(Entry::Hold {
                pid, start_ticks, ..
            }) = l.ledger.entries.iter_mut().rev().find(|e| is_pending(e))
            {
                *pid = Some(st.pid);
                *start_ticks = Some(st.start_ticks);
            }
            l.save()?;
            let runtime = runtime_pid();
            Ok(json!({
                "run": a.run,
                "pid": st.pid,
                "path": a.path,
                "via": a.via,
                "ns": a.ns,
                "mnt_ns": st.report["mnt_ns"],
                "runtime_pid": runtime,
                "runtime_mnt_ns": runtime.and_then(|p| procfs::ns_inode(p, "mnt")),
                "bind_target": bind,
            }))
        }
        Err(e) => {
            let mut l = store.open(a.run)?;
            if let Some(i) = l.ledger.entries.iter().rposition(is_pending) {
                l.ledger.entries.remove(i);
            }
            l.save()?;
            if let Some(t) = &bind {
                let _ = std::fs::remove_dir(t);
            }
            Err(e)
        }
    }
}

fn check_hold_args(a: &HoldArgs) -> Result<()> {
    if !a.path.is_absolute() {
        return Err(AgentError::Usage(format!(
            "--path {} must be absolute",
            a.path.display()
        )));
    }
    if let Some(p) = a.ns_of {
        if !procfs::alive(p) {
            return Err(AgentError::Usage(format!(
                "--mount-ns-of {p}: no such process"
            )));
        }
    } else if !a.path.exists() {
        return Err(AgentError::Usage(format!(
            "--path {} does not exist",
            a.path.display()
        )));
    }
    Ok(())
}

/// The write-ahead step: the holder is in the ledger (without a pid) before it starts.
/// One bind holder per run, because its bind target is named after the run.
fn record_pending_hold(store: &Store, a: &HoldArgs, bind: Option<&Path>) -> Result<()> {
    let mut l = store.open(a.run)?;
    if let Some(target) = bind {
        if l.ledger
            .entries
            .iter()
            .any(|e| matches!(e, Entry::Hold { via: Via::Bind, .. }))
        {
            return Err(AgentError::Usage(format!(
                "run {} already has a bind holder at {}; release it first",
                a.run,
                target.display()
            )));
        }
    }
    l.record(Entry::Hold {
        path: a.path.to_path_buf(),
        via: a.via,
        pid: None,
        start_ticks: None,
        bind_target: bind.map(Path::to_path_buf),
        at: now_epoch(),
    })?;
    Ok(())
}

/// The hidden `__hold` command line the daemon is re-executed with.
fn hold_daemon_args(a: &HoldArgs, target: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "__hold".into(),
        "--run".into(),
        a.run.into(),
        "--path".into(),
        a.path.into(),
        "--via".into(),
        a.via.as_str().into(),
        "--ns".into(),
        if a.ns == Ns::New { "new" } else { "current" }.into(),
        "--target".into(),
        target.into(),
    ];
    if let Some(p) = a.ns_of {
        args.push("--mount-ns-of".into());
        args.push(p.to_string().into());
    }
    args
}

/// Removes a bind target directory; if it is still a mount point in our namespace
/// (a `--ns current` bind holder), detaches it first.
pub fn remove_bind_target(t: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir(t) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            umount2(t, MntFlags::MNT_DETACH).map_err(std::io::Error::from)?;
            std::fs::remove_dir(t)
        }
        Err(e) => Err(e),
    }
}

/// Kills the holders of `run` (all, or those holding `path`).
pub fn release(store: &Store, run: &str, path: Option<&Path>) -> Result<serde_json::Value> {
    let mut l = store.open(run)?;
    let mut killed = Vec::new();
    let mut errors = Vec::new();
    let mut targets: Vec<PathBuf> = Vec::new();
    let wanted = |p: &Path| path.is_none_or(|want| want == p);
    for e in &l.ledger.entries {
        if let Entry::Hold {
            path: p,
            pid,
            start_ticks,
            bind_target,
            ..
        } = e
        {
            if !wanted(p) {
                continue;
            }
            if let (Some(pid), Some(t)) = (pid, start_ticks) {
                if procfs::same_process(*pid, *t) {
                    if daemon::kill_and_wait(*pid) {
                        killed.push(*pid);
                    } else {
                        errors.push(format!("holder pid {pid} did not exit"));
                    }
                }
            }
            targets.extend(bind_target.clone());
        }
    }
    for (pid, _, argv) in daemon::find(store, Some(run)) {
        if argv.get(1).map(String::as_str) != Some("__hold") {
            continue;
        }
        if daemon::arg_value(&argv, "--path").is_some_and(|p| wanted(Path::new(&p)))
            && !killed.contains(&pid)
        {
            if daemon::kill_and_wait(pid) {
                killed.push(pid);
            } else {
                errors.push(format!("holder pid {pid} did not exit"));
            }
            if daemon::arg_value(&argv, "--via").as_deref() == Some(Via::Bind.as_str()) {
                targets.extend(daemon::arg_value(&argv, "--target").map(PathBuf::from));
            }
        }
    }
    let mut removed = Vec::new();
    for t in targets {
        let existed = t.exists();
        match remove_bind_target(&t) {
            Ok(()) if existed => removed.push(t),
            Ok(()) => {}
            Err(e) => errors.push(format!("removing {}: {e}", t.display())),
        }
    }
    if errors.is_empty() {
        l.ledger
            .entries
            .retain(|e| !matches!(e, Entry::Hold { path: p, .. } if wanted(p)));
        l.save()?;
        Ok(json!({"run": run, "killed": killed, "removed": removed}))
    } else {
        Err(AgentError::Failed(format!(
            "release incomplete: {}",
            errors.join("; ")
        )))
    }
}

/// `grep -H ID /proc/*/mountinfo`: `/proc/PID/mountinfo:LINE` for every matching line.
pub fn grep_mountinfo(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pid in procfs::pids() {
        let p = format!("/proc/{pid}/mountinfo");
        if let Ok(text) = std::fs::read_to_string(&p) {
            out.extend(
                text.lines()
                    .filter(|l| l.contains(id))
                    .map(|l| format!("{p}:{l}")),
            );
        }
    }
    out
}

/// The runtime whose mount namespace counts as "the runtime's": containerd, else dockerd.
pub fn runtime_pid() -> Option<i32> {
    ["containerd", "dockerd"]
        .iter()
        .find_map(|n| procfs::find_by_name(n).into_iter().next())
}

/// A copy of the mount at PATH (same device) in a mount namespace other than the
/// runtime's: a slave copy at the same place, or a bind elsewhere. A copy alone does not
/// block an unmount; a copy some process has its cwd/fd in does (see `holders`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MountCopy {
    /// One process of that namespace (the lowest pid).
    pub pid: i32,
    pub comm: String,
    pub mnt_ns: u64,
    pub mount_point: String,
    /// Mounted at PATH itself (a propagated copy) rather than elsewhere (a bind).
    pub at_path: bool,
    pub line: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub comm: String,
    pub args: String,
    /// `cwd`, `root` or `fd`.
    pub how: String,
    /// The link target, or `N -> target` for an fd.
    pub detail: String,
    pub mnt_ns: Option<u64>,
    pub same_ns_as_runtime: Option<bool>,
}

/// Whether `p` is `root` or below it (component-wise, not string prefix).
pub fn is_under(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

/// Parsed mountinfo line: (major:minor, root, mount point).
pub fn parse_mountinfo_line(line: &str) -> Option<(String, String, String)> {
    let f: Vec<&str> = line.split(' ').collect();
    Some((
        f.get(2)?.to_string(),
        crate::df::unescape(f.get(3)?),
        crate::df::unescape(f.get(4)?),
    ))
}

/// The device (major:minor) of the mount at `path` as process `pid` sees it.
fn mount_device_seen_by(pid: i32, path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    text.lines()
        .filter_map(parse_mountinfo_line)
        .find(|(_, _, mp)| Path::new(mp) == path)
        .map(|(d, _, _)| d)
}

/// How process `pid` points inside `path`: (`cwd` | `root` | `fd`, detail).
fn links_into(pid: i32, path: &Path) -> Vec<(&'static str, String)> {
    let dir = procfs::proc_dir(pid);
    let mut links = Vec::new();
    for link in ["cwd", "root"] {
        if let Ok(t) = std::fs::read_link(dir.join(link)) {
            // Every process has root "/", which is "under" path only if path is "/".
            if is_under(&t, path)
                && !(link == "root" && t == Path::new("/") && path != Path::new("/"))
            {
                links.push((link, t.display().to_string()));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                if is_under(&t, path) {
                    let detail = format!("{} -> {}", e.file_name().to_string_lossy(), t.display());
                    links.push(("fd", detail));
                }
            }
        }
    }
    links
}

/// The mounts of device `dev` in the mount namespace `mnt_ns` of process `pid`.
fn copies_in(pid: i32, comm: &str, mnt_ns: u64, dev: &str, path: &Path) -> Vec<MountCopy> {
    let Ok(text) = std::fs::read_to_string(procfs::proc_dir(pid).join("mountinfo")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (d, _, mp) = parse_mountinfo_line(l)?;
            (d == dev).then(|| MountCopy {
                pid,
                comm: comm.to_owned(),
                mnt_ns,
                at_path: Path::new(&mp) == path,
                mount_point: mp,
                line: l.to_string(),
            })
        })
        .collect()
}

/// Who keeps `path` busy, and where its mount has copies (the `holders` command).
pub fn holders(path: &Path, runtime: Option<i32>) -> serde_json::Value {
    let me = std::process::id() as i32;
    let runtime = runtime.or_else(runtime_pid);
    let rt_ns = runtime.and_then(|p| procfs::ns_inode(p, "mnt"));
    // The device of the mount at `path`, to find copies mounted elsewhere in other
    // namespaces: the runtime's view first; our own when the runtime does not see PATH
    // mounted.
    let (dev, ref_ns) = match runtime.and_then(|p| mount_device_seen_by(p, path)) {
        Some(d) => (Some(d), rt_ns),
        None => (mount_device_seen_by(me, path), procfs::ns_inode(me, "mnt")),
    };
    let mut found: Vec<Holder> = Vec::new();
    let mut copies: Vec<MountCopy> = Vec::new();
    let mut seen_ns = std::collections::HashSet::new();
    for pid in procfs::pids() {
        if pid == me {
            continue;
        }
        let Some(st) = procfs::stat(pid) else {
            continue;
        };
        let ns = procfs::ns_inode(pid, "mnt");
        found.extend(
            links_into(pid, path)
                .into_iter()
                .map(|(how, detail)| Holder {
                    pid,
                    comm: st.comm.clone(),
                    args: procfs::cmdline(pid).join(" "),
                    how: how.into(),
                    detail,
                    mnt_ns: ns,
                    same_ns_as_runtime: rt_ns.zip(ns).map(|(a, b)| a == b),
                }),
        );
        // One scan of mountinfo per namespace other than the reference one.
        if let (Some(dev), Some(n)) = (&dev, ns) {
            if Some(n) != ref_ns && seen_ns.insert(n) {
                copies.extend(copies_in(pid, &st.comm, n, dev, path));
            }
        }
    }
    json!({
        "path": path,
        "runtime_pid": runtime,
        "runtime_mnt_ns": rt_ns,
        "mount_device": dev,
        "reference_mnt_ns": ref_ns,
        "holders": found,
        "mount_copies": copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under() {
        assert!(is_under(
            Path::new("/run/x/rootfs/bin"),
            Path::new("/run/x/rootfs")
        ));
        assert!(is_under(
            Path::new("/run/x/rootfs"),
            Path::new("/run/x/rootfs")
        ));
        assert!(!is_under(
            Path::new("/run/x/rootfs2"),
            Path::new("/run/x/rootfs")
        ));
    }

    #[test]
    fn mountinfo_line() {
        let l = "1234 567 0:88 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime shared:500 - overlay overlay rw,lowerdir=/x";
        let (dev, root, mp) = parse_mountinfo_line(l).expect("parses");
        assert_eq!(dev, "0:88");
        assert_eq!(root, "/");
        assert!(mp.ends_with("/abc/rootfs"));
    }
}
