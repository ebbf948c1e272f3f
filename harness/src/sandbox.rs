//! Teardown of the runtime tier's private runtimes (`/var/tmp/terminus-rt-*`: a private
//! dockerd and containerd on a loop-mounted filesystem). It works from the runtime's
//! directory alone, so the same code serves the tier's normal path, its `Drop` and
//! Ctrl-C watchdog, its reaping of killed runs, and `terminus gc`.
//!
//! Architecture invariant: teardown works from a runtime directory under
//! [`DIR_PREFIX`] alone and never touches processes or mounts outside it (pids come
//! from its pid files, cgroups and shims; mounts from below the directory).
//! Architecture invariant: teardown always ends: a process gets a grace period after
//! SIGTERM ([`crate::wait::until_blocking`]), then SIGKILL.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Prefix of every runtime directory; leftovers are found by it.
pub const DIR_PREFIX: &str = "/var/tmp/terminus-rt-";

pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// (pid, args) of every containerd shim whose command line names `address`.
pub fn shims_of(address: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args = String::from_utf8_lossy(&raw).replace('\0', " ");
        if args.contains("containerd-shim") && args.split(' ').any(|a| a == address) {
            out.push((pid, args.trim_end().to_owned()));
        }
    }
    out
}

/// Alive and not a zombie.
pub fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

fn stop_and_wait(pid: i32, grace: Duration) {
    use nix::sys::signal::Signal;
    signal(pid, Signal::SIGTERM);
    let exited = crate::wait::until_blocking(
        &format!("process {pid} to exit after SIGTERM"),
        grace,
        Duration::from_millis(100),
        || {
            if running(pid) {
                crate::wait::Check::Pending("still running".into())
            } else {
                crate::wait::Check::Done(())
            }
        },
    );
    // Past the grace period the process is killed, not waited for: teardown must end.
    if exited.is_err() {
        signal(pid, Signal::SIGKILL);
    }
}

/// Every pid in the cgroups under our cgroup parent, in every hierarchy.
fn cgroup_pids(cgroup: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for root in cgroup_dirs(cgroup) {
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            stack.extend(subdirs(&dir));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The directories directly below `dir` (none when it cannot be read).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        },
    )
}

fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Only a runtime directory's own cgroup: an empty or foreign name would select the
    // root cgroup, and teardown SIGKILLs every process it finds there.
    if !cgroup.starts_with("terminus-rt-") || cgroup.contains('/') || cgroup.contains("..") {
        return out;
    }
    let direct = Path::new("/sys/fs/cgroup").join(cgroup);
    if direct.is_dir() {
        out.push(direct);
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path().join(cgroup);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out
}

fn remove_cgroups(cgroup: &str) {
    for root in cgroup_dirs(cgroup) {
        let mut dirs = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            stack.extend(subdirs(&dir));
            dirs.push(dir);
        }
        // Children before parents.
        for d in dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut out: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.len()));
    out.dedup();
    out
}

/// Tear down everything recorded in a runtime directory, then remove it. Idempotent and
/// best-effort: each step runs whatever happened to the steps before it.
pub fn teardown_dir(dir: &Path) {
    use nix::sys::signal::Signal;
    let cgroup = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let dockerd = read_pid(&dir.join("dockerd.pid"));
    let containerd = read_pid(&dir.join("containerd.pid"));
    let shims: Vec<i32> = shims_of(&dir.join("containerd.sock").to_string_lossy())
        .into_iter()
        .filter_map(|(p, _)| i32::try_from(p).ok())
        .collect();
    let helpers: Vec<i32> = fs::read_to_string(dir.join("helpers.pid"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // Anything frozen by a fault must run again before it can be stopped.
    for pid in dockerd.iter().chain(containerd.iter()).chain(shims.iter()) {
        signal(*pid, Signal::SIGCONT);
    }
    for pid in &helpers {
        signal(*pid, Signal::SIGKILL);
    }
    let mnt = dir.join("mnt");
    if mounts_below(dir).iter().any(|m| Path::new(m) == mnt) {
        // Immutable files would make every removal below fail.
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&mnt)
            .stderr(Stdio::null())
            .status();
    }
    // The containers' processes first, so dockerd's shutdown has nothing to wait for.
    for pid in cgroup_pids(&cgroup) {
        signal(pid, Signal::SIGKILL);
    }
    if let Some(pid) = dockerd {
        stop_and_wait(pid, Duration::from_secs(10));
    }
    for pid in shims_of(&dir.join("containerd.sock").to_string_lossy())
        .into_iter()
        .map(|(p, _)| p)
    {
        if let Ok(pid) = i32::try_from(pid) {
            signal(pid, Signal::SIGKILL);
        }
    }
    if let Some(pid) = containerd {
        stop_and_wait(pid, Duration::from_secs(10));
    }
    // Not a poll: a moment for the killed processes' mounts to be released before
    // unmounting (umount -l below copes if they are not).
    std::thread::sleep(Duration::from_millis(200));
    for m in mounts_below(dir) {
        let ok = Command::new("umount")
            .arg(&m)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&m)
                .stderr(Stdio::null())
                .status();
        }
    }
    if let Ok(dev) = fs::read_to_string(dir.join("loop")) {
        let dev = dev.trim();
        if !dev.is_empty() {
            let _ = Command::new("losetup")
                .arg("-d")
                .arg(dev)
                .stderr(Stdio::null())
                .status();
        }
    }
    remove_cgroups(&cgroup);
    if mounts_below(dir).is_empty() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Leftovers of runs that were killed before their teardown: runtime directories whose
/// `owner.pid` is no longer running.
pub fn reap_leftovers() -> Vec<PathBuf> {
    let mut reaped = Vec::new();
    let Ok(entries) = fs::read_dir("/var/tmp") else {
        return reaped;
    };
    for e in entries.flatten() {
        let path = e.path();
        if !path.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        // Only directories made by this tier carry owner.pid (capture.sh's do not).
        let Some(owner) = read_pid(&path.join("owner.pid")) else {
            continue;
        };
        if !running(owner) {
            teardown_dir(&path);
            reaped.push(path);
        }
    }
    reaped
}
