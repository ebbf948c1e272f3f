//! `collect`: the node half of an evidence bundle, written as files into a directory.
//! External tools run with a deadline, in parallel; their failure text is kept in the
//! file, so a hung or missing runtime shows up as evidence instead of a crash.
//!
//! Architecture invariant: collect only reads the node; it changes nothing but the
//! files in its `--out` directory.
//!
//! Architecture invariant: every external command has a deadline and is killed with its
//! whole process group at it, so a frozen containerd costs at most `--cmd-timeout`.
//!
//! Architecture invariant: a file's content is what its tool printed, verbatim; a
//! failure is appended as a last `terminus-agent: ...` line, never written instead.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::attrs::{self, ListOpts};
use crate::error::{AgentError, Result};
use crate::{df, hold, ps};

pub const SNAPSHOTS_DIR: &str =
    "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots";

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub name: String,
    pub bytes: u64,
    /// The content is what the tool printed on success (false: failure text included).
    pub ok: bool,
    pub error: Option<String>,
}

/// Runs `argv` with stdout into `out` and stderr appended after it; kills the whole
/// process group at the deadline. Returns Err(text) describing a failure (also written
/// into the file).
pub fn run_to_file(
    argv: &[&str],
    deadline: Duration,
    out: &Path,
) -> std::result::Result<(), String> {
    let shown = argv.join(" ");
    let mut f = File::create(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut errf = tempfile_in(out)?;
    let Some((prog, rest)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let spawned = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(errf.0.try_clone().map_err(|e| e.to_string())?))
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("terminus-agent: cannot run `{shown}`: {e}");
            let _ = writeln!(f, "{msg}");
            let _ = std::fs::remove_file(&errf.1);
            return Err(msg);
        }
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= deadline => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    let mut stderr_text = String::new();
    // The child wrote through a dup of this fd: rewind the shared offset first.
    let _ = errf.0.seek(SeekFrom::Start(0));
    let _ = errf.0.read_to_string(&mut stderr_text);
    let _ = std::fs::remove_file(&errf.1);
    if !stderr_text.is_empty() {
        let _ = f.write_all(stderr_text.as_bytes());
        if !stderr_text.ends_with('\n') {
            let _ = f.write_all(b"\n");
        }
    }
    let problem = match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("terminus-agent: `{shown}` exited with {s}")),
        None => Some(format!(
            "terminus-agent: `{shown}` timed out after {}s (killed)",
            deadline.as_secs()
        )),
    };
    match problem {
        None => Ok(()),
        Some(msg) => {
            let _ = writeln!(f, "{msg}");
            let first = stderr_text
                .lines()
                .next()
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            Err(format!("{msg}{first}"))
        }
    }
}

fn tempfile_in(near: &Path) -> std::result::Result<(File, PathBuf), String> {
    let dir = near.parent().unwrap_or(Path::new("/tmp"));
    let name = format!(
        ".{}.stderr",
        near.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cmd".into())
    );
    let p = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| format!("creating {}: {e}", p.display()))?;
    Ok((f, p))
}

/// Captures a command's stdout (for lookups, not for the bundle).
fn capture(argv: &[&str], deadline: Duration) -> Option<String> {
    let dir = std::env::temp_dir().join(format!("terminus-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let out = dir.join("capture");
    let r = run_to_file(argv, deadline, &out);
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_dir_all(&dir);
    r.ok().and(text)
}

/// `upperdir=` of an overlay mountinfo line.
pub fn upperdir_of(line: &str) -> Option<PathBuf> {
    let opts = line.split(" - ").nth(1)?.split(' ').nth(2)?;
    opts.split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(|s| PathBuf::from(crate::df::unescape(s)))
}

/// The writable snapshot directory of a container: from its rootfs mount if it is
/// mounted, else from `ctr snapshots mounts` (the snapshot key is the container id).
pub fn snapshot_upper(cid: &str, deadline: Duration) -> Option<PathBuf> {
    let mut views = vec![std::process::id() as i32];
    views.extend(hold::runtime_pid());
    for pid in views.into_iter().rev() {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) {
            if let Some(u) = text
                .lines()
                .filter(|l| l.contains(&format!("/{cid}/rootfs ")))
                .find_map(upperdir_of)
            {
                return Some(u);
            }
        }
    }
    let out = capture(
        &[
            "ctr",
            "-n",
            "k8s.io",
            "snapshots",
            "mounts",
            "/tmp/terminus-unused",
            cid,
        ],
        deadline,
    )?;
    out.split([',', ' '])
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(|s| PathBuf::from(s.trim()))
}

pub struct CollectArgs<'a> {
    pub out: &'a Path,
    pub container_ids: &'a [String],
    pub pod_uid: Option<&'a str>,
    pub since: &'a str,
    pub timeout: Duration,
    pub scan_snapshots: bool,
}

/// A container's writable snapshot directory, as found.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotDir {
    pub container_id: String,
    pub upperdir: PathBuf,
}

/// What `collect` prints: every file written, and what could not be looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Collected {
    pub out: PathBuf,
    pub files: Vec<FileReport>,
    pub snapshots: Vec<SnapshotDir>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// Writes the bundle's node files into `a.out`: the external tools' files in parallel
/// threads while the agent's own views are written, then lsattr, then the tools are
/// joined (each has its own deadline, so the join is bounded).
pub fn collect(a: &CollectArgs) -> Result<Collected> {
    check_ids(a)?;
    std::fs::create_dir_all(a.out)
        .map_err(|e| AgentError::io(format!("creating {}", a.out.display()), e))?;
    let t0 = Instant::now();
    let tools = start_tools(a);
    let mut files = vec![
        write_file(a.out, "df.txt", &df::render(false)),
        write_file(a.out, "df-inodes.txt", &df::render(true)),
        write_file(a.out, "ps.txt", &ps::render()),
        write_file(a.out, "mountinfo.txt", &mountinfo(a.container_ids)),
    ];
    if let Some(uid) = a.pod_uid {
        let cgroups = crate::stray::pod_cgroup_lines(Path::new(crate::stray::CGROUP_ROOT), uid);
        files.push(write_file(a.out, "pod-cgroups.txt", &cgroups));
    }
    let lsattr = lsattr(a);
    files.push(write_file(a.out, "lsattr.txt", &lsattr.text));
    files.extend(tools.into_iter().map(|t| t.join(a.out)));
    Ok(Collected {
        out: a.out.to_path_buf(),
        files,
        snapshots: lsattr.snapshots,
        notes: lsattr.notes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Ids become path components: refuse anything that could leave its directory.
fn check_ids(a: &CollectArgs) -> Result<()> {
    for id in a.container_ids {
        if id.is_empty() || id.contains('/') || id.contains(char::is_whitespace) {
            return Err(AgentError::Usage(format!("invalid container id {id:?}")));
        }
    }
    if let Some(uid) = a.pod_uid {
        if uid.is_empty() || uid.contains('/') || uid.contains("..") {
            return Err(AgentError::Usage(format!("invalid pod uid {uid:?}")));
        }
    }
    Ok(())
}

/// The bundle files that external tools write, and their command lines.
fn tool_commands(since: &str) -> [(&'static str, Vec<String>); 4] {
    let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    [
        (
            "kubelet.log",
            argv(&[
                "journalctl",
                "-u",
                "kubelet",
                "--no-pager",
                "--since",
                since,
            ]),
        ),
        (
            "runtime.log",
            argv(&[
                "journalctl",
                "-u",
                "containerd",
                "--no-pager",
                "--since",
                since,
            ]),
        ),
        ("crictl-ps.txt", argv(&["crictl", "ps", "-a"])),
        (
            "ctr-tasks.txt",
            argv(&["ctr", "-n", "k8s.io", "task", "ls"]),
        ),
    ]
}

/// One external tool writing its bundle file in a thread of its own.
struct Tool {
    name: &'static str,
    thread: std::thread::JoinHandle<Option<String>>,
}

fn start_tools(a: &CollectArgs) -> Vec<Tool> {
    tool_commands(a.since)
        .into_iter()
        .map(|(name, argv)| {
            let path = a.out.join(name);
            let deadline = a.timeout;
            let thread = std::thread::spawn(move || {
                let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                run_to_file(&refs, deadline, &path).err()
            });
            Tool { name, thread }
        })
        .collect()
}

impl Tool {
    fn join(self, out: &Path) -> FileReport {
        match self.thread.join() {
            Ok(err) => FileReport {
                name: self.name.into(),
                bytes: std::fs::metadata(out.join(self.name))
                    .map(|m| m.len())
                    .unwrap_or(0),
                ok: err.is_none(),
                error: err,
            },
            Err(_) => FileReport {
                name: "?".into(),
                bytes: 0,
                ok: false,
                error: Some("collector thread panicked".into()),
            },
        }
    }
}

/// Writes one file the agent rendered itself.
fn write_file(out: &Path, name: &str, text: &str) -> FileReport {
    let written = std::fs::write(out.join(name), text);
    FileReport {
        name: name.into(),
        bytes: text.len() as u64,
        ok: written.is_ok(),
        error: written.err().map(|e| e.to_string()),
    }
}

/// `mountinfo ID` for each container id, then the container layers leaked into other
/// mount namespaces (which name no container id: a departed pod's leak shows only so),
/// each line once.
fn mountinfo(container_ids: &[String]) -> String {
    let mut seen = std::collections::HashSet::new();
    let lines = container_ids
        .iter()
        .flat_map(|id| hold::grep_mountinfo(id))
        .chain(crate::leaks::find().into_iter().map(|l| l.line));
    let mut text = String::new();
    for l in lines {
        if seen.insert(l.clone()) {
            text.push_str(&l);
            text.push('\n');
        }
    }
    text
}

/// `lsattr.txt` and what was found (or not) on the way.
struct Lsattr {
    text: String,
    snapshots: Vec<SnapshotDir>,
    notes: Vec<String>,
}

/// lsattr of the pod dir, of each container's writable snapshot, and (flagged entries
/// only) of every snapshot, which finds an immutable file in a snapshot containerd
/// already forgot (the `containerd-immutable-snapshot-leak` bundle in
/// core/tests/fixtures/bundles/README.md; scenario `immutable-file-rootfs`).
fn lsattr(a: &CollectArgs) -> Lsattr {
    let mut buf: Vec<u8> = Vec::new();
    let mut notes = Vec::new();
    let full = ListOpts {
        recursive: true,
        only_flagged: false,
        max_lines: 200_000,
        max_visited: 1_000_000,
    };
    if let Some(uid) = a.pod_uid {
        let p = PathBuf::from("/var/lib/kubelet/pods").join(uid);
        if p.exists() {
            let _ = attrs::list(&p, full, &mut buf);
        } else {
            notes.push(format!("{} does not exist", p.display()));
        }
    }
    let mut snapshots = Vec::new();
    for id in a.container_ids {
        match snapshot_upper(id, a.timeout) {
            Some(u) => {
                let _ = attrs::list(&u, full, &mut buf);
                snapshots.push(SnapshotDir {
                    container_id: id.clone(),
                    upperdir: u,
                });
            }
            None => notes.push(format!("no snapshot directory found for container {id}")),
        }
    }
    if a.scan_snapshots && Path::new(SNAPSHOTS_DIR).exists() {
        let more = flagged_snapshot_lines(&buf);
        buf.extend(more);
    }
    Lsattr {
        text: String::from_utf8_lossy(&buf).into_owned(),
        snapshots,
        notes,
    }
}

/// The flagged entries under every snapshot that `listed` does not already hold.
fn flagged_snapshot_lines(listed: &[u8]) -> Vec<u8> {
    let flagged = ListOpts {
        recursive: true,
        only_flagged: true,
        max_lines: 10_000,
        max_visited: 2_000_000,
    };
    let mut extra = Vec::new();
    let _ = attrs::list(Path::new(SNAPSHOTS_DIR), flagged, &mut extra);
    let seen: std::collections::HashSet<&[u8]> = listed.split(|&b| b == b'\n').collect();
    let mut more = Vec::new();
    for l in extra
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !seen.contains(l))
    {
        more.extend_from_slice(l);
        more.push(b'\n');
    }
    more
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upperdir_from_mountinfo() {
        let l = "2051 1946 0:190 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/5/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/work";
        assert_eq!(
            upperdir_of(l),
            Some(PathBuf::from(
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs"
            ))
        );
        assert_eq!(upperdir_of("1 2 0:1 / / rw - ext4 /dev/x rw"), None);
    }

    #[test]
    fn command_failures_are_kept_as_text() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.txt");
        let e = run_to_file(&["/nonexistent-terminus-tool"], Duration::from_secs(1), &p)
            .expect_err("fails");
        assert!(e.contains("cannot run"));
        assert!(std::fs::read_to_string(&p)
            .expect("file")
            .contains("cannot run"));

        let e = run_to_file(
            &["sh", "-c", "echo out; echo bad >&2; exit 3"],
            Duration::from_secs(5),
            &p,
        )
        .expect_err("fails");
        assert!(e.contains("exited with"), "{e}");
        let text = std::fs::read_to_string(&p).expect("file");
        assert!(text.starts_with("out\nbad\n"), "{text}");

        let t = Instant::now();
        let e = run_to_file(&["sh", "-c", "sleep 30"], Duration::from_millis(300), &p)
            .expect_err("times out");
        assert!(e.contains("timed out"));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
