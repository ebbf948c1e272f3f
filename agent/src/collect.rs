//! `collect`: the node half of an evidence bundle, written as files into a directory.
//! External tools run with a deadline, in parallel; their failure text is kept in the
//! file, so a hung or missing runtime shows up as evidence instead of a crash.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use serde_json::json;

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

pub fn collect(a: &CollectArgs) -> Result<serde_json::Value> {
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
    std::fs::create_dir_all(a.out)
        .map_err(|e| AgentError::io(format!("creating {}", a.out.display()), e))?;
    let t0 = Instant::now();
    let mut reports: Vec<FileReport> = Vec::new();

    // External tools, in parallel, each under its own deadline.
    let since = a.since.to_string();
    let jobs: Vec<(&str, Vec<String>)> = vec![
        (
            "kubelet.log",
            vec![
                "journalctl".into(),
                "-u".into(),
                "kubelet".into(),
                "--no-pager".into(),
                "--since".into(),
                since.clone(),
            ],
        ),
        (
            "runtime.log",
            vec![
                "journalctl".into(),
                "-u".into(),
                "containerd".into(),
                "--no-pager".into(),
                "--since".into(),
                since,
            ],
        ),
        (
            "crictl-ps.txt",
            vec!["crictl".into(), "ps".into(), "-a".into()],
        ),
        (
            "ctr-tasks.txt",
            vec![
                "ctr".into(),
                "-n".into(),
                "k8s.io".into(),
                "task".into(),
                "ls".into(),
            ],
        ),
    ];
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(name, argv)| {
            let path = a.out.join(name);
            let deadline = a.timeout;
            std::thread::spawn(move || {
                let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
                (name, run_to_file(&refs, deadline, &path).err())
            })
        })
        .collect();

    let mut write = |name: &str, content: std::result::Result<String, String>| {
        let p = a.out.join(name);
        let (text, err) = match content {
            Ok(t) => (t, None),
            Err(e) => (format!("terminus-agent: {e}\n"), Some(e)),
        };
        let r = std::fs::write(&p, &text);
        reports.push(FileReport {
            name: name.into(),
            bytes: text.len() as u64,
            ok: err.is_none() && r.is_ok(),
            error: err.or(r.err().map(|e| e.to_string())),
        });
    };
    write("df.txt", Ok(df::render(false)));
    write("df-inodes.txt", Ok(df::render(true)));
    write("ps.txt", Ok(ps::render()));
    let mut mi = String::new();
    for id in a.container_ids {
        for l in hold::grep_mountinfo(id) {
            mi.push_str(&l);
            mi.push('\n');
        }
    }
    write("mountinfo.txt", Ok(mi));

    // lsattr: pod dir, each container's writable snapshot, and (flagged entries only)
    // every snapshot, which finds an immutable file in a snapshot containerd already
    // forgot (the leak described in docs/reproductions.md).
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
    let mut uppers = Vec::new();
    for id in a.container_ids {
        match snapshot_upper(id, a.timeout) {
            Some(u) => {
                let _ = attrs::list(&u, full, &mut buf);
                uppers.push(json!({"container_id": id, "upperdir": u}));
            }
            None => notes.push(format!("no snapshot directory found for container {id}")),
        }
    }
    if a.scan_snapshots && Path::new(SNAPSHOTS_DIR).exists() {
        let flagged = ListOpts {
            recursive: true,
            only_flagged: true,
            max_lines: 10_000,
            max_visited: 2_000_000,
        };
        let mut extra = Vec::new();
        let _ = attrs::list(Path::new(SNAPSHOTS_DIR), flagged, &mut extra);
        // Skip lines already listed above.
        let seen: std::collections::HashSet<&[u8]> = buf.split(|&b| b == b'\n').collect();
        let extra: Vec<&[u8]> = extra
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty() && !seen.contains(l))
            .collect();
        let mut more = Vec::new();
        for l in extra {
            more.extend_from_slice(l);
            more.push(b'\n');
        }
        buf.extend(more);
    }
    for n in &notes {
        eprintln!("collect: {n}");
    }
    write("lsattr.txt", Ok(String::from_utf8_lossy(&buf).into_owned()));

    for h in handles {
        match h.join() {
            Ok((name, err)) => {
                let bytes = std::fs::metadata(a.out.join(name))
                    .map(|m| m.len())
                    .unwrap_or(0);
                reports.push(FileReport {
                    name: name.into(),
                    bytes,
                    ok: err.is_none(),
                    error: err,
                });
            }
            Err(_) => reports.push(FileReport {
                name: "?".into(),
                bytes: 0,
                ok: false,
                error: Some("collector thread panicked".into()),
            }),
        }
    }
    for r in &reports {
        match &r.error {
            None => eprintln!("collect: {} ({} bytes)", r.name, r.bytes),
            Some(e) => eprintln!("collect: {} ({} bytes, failed: {e})", r.name, r.bytes),
        }
    }
    Ok(json!({
        "out": a.out,
        "files": reports,
        "snapshots": uppers,
        "notes": notes,
        "seconds": t0.elapsed().as_secs_f64(),
    }))
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
