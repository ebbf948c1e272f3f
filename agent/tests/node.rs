//! Node-level tier: the real binary against the real kernel, on small filesystems this
//! test makes itself (a 16 MiB loop ext4, size-limited tmpfs). Needs root; as non-root
//! each test says it is skipped and passes. Every test cleans up through a guard whose
//! Drop runs `gc --all` on its private state dir and unmounts what it mounted, so a
//! failing assertion (a panic) still leaves the host clean.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_terminus-agent");

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (mounts, loop devices, chattr)");
            return;
        }
    };
}

struct Scratch {
    dir: tempfile::TempDir,
    state: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("terminus-agent-test-")
            .tempdir()
            .expect("tempdir");
        let state = dir.path().join("state");
        Scratch {
            dir,
            state,
            mounts: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn agent(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("TERMINUS_AGENT_STATE_DIR", &self.state)
            .env_remove("TERMINUS_RUN")
            .stdin(Stdio::null())
            .output()
            .expect("run agent")
    }

    /// Runs the agent, asserts success, parses stdout as JSON.
    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.agent(args);
        assert!(
            o.status.success(),
            "agent {args:?} failed: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "agent {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        })
    }

    fn sh(&self, cmd: &str, args: &[&str]) {
        let o = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn tmpfs(&mut self, name: &str, opts: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        self.sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                opts,
                "terminus-test",
                p.to_str().expect("utf8"),
            ],
        );
        self.mounts.push(p.clone());
        p
    }

    fn loop_ext4(&mut self, name: &str, at: &Path) -> PathBuf {
        let img = self.path(&format!("{name}.img"));
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(16 << 20))
            .expect("image");
        self.sh("mkfs.ext4", &["-q", "-F", img.to_str().expect("utf8")]);
        std::fs::create_dir_all(at).expect("mkdir");
        self.sh(
            "mount",
            &[
                "-o",
                "loop",
                img.to_str().expect("utf8"),
                at.to_str().expect("utf8"),
            ],
        );
        self.mounts.push(at.to_path_buf());
        at.to_path_buf()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Recover first (thaw, kill holders/fillers, clear +i), then unmount.
        let _ = self.agent(&["gc", "--all"]);
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).output();
            if Command::new("mountpoint")
                .arg("-q")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success())
            {
                let _ = Command::new("umount").arg("-l").arg(m).output();
            }
        }
    }
}

fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

fn alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|c| c != 'Z')
}

fn avail_bytes(p: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(p).expect("statvfs");
    s.blocks_available() * s.fragment_size()
}

#[test]
fn immutable_set_clear_lsattr_and_gc_on_loop_ext4() {
    require_root!();
    let mut s = Scratch::new();
    let mnt = s.loop_ext4("imm", &s.path("imm"));
    let f = mnt.join("victim");
    std::fs::write(&f, b"x").expect("write");
    let fs = f.to_str().expect("utf8");

    let v = s.ok(&["immutable", "set", fs, "--run", "imm1"]);
    assert_eq!(v["immutable"], true);
    assert_eq!(v["flags_after"], "----i---------e-------");
    let e = std::fs::remove_file(&f).expect_err("immutable file must not be removable");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));

    // lsattr line format, against e2fsprogs when it is installed.
    let o = s.agent(&["lsattr", fs]);
    let ours = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(ours, format!("----i---------e------- {fs}\n"));
    if let Ok(real) = Command::new("lsattr").arg(fs).output() {
        assert_eq!(ours, String::from_utf8_lossy(&real.stdout));
    }
    let o = s.agent(&[
        "lsattr",
        "--recursive",
        mnt.to_str().expect("utf8"),
        "--only-flagged",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("----i---------e------- {fs}\n")
    );

    // The ledger names it; clear removes it from the ledger.
    let l = s.ok(&["ledger", "--run", "imm1"]);
    assert_eq!(l["ledgers"][0]["entries"][0]["kind"], "immutable");
    let v = s.ok(&["immutable", "clear", fs]);
    assert_eq!(v["immutable"], false);
    assert!(s.ok(&["ledger"])["ledgers"]
        .as_array()
        .expect("array")
        .is_empty());

    // gc undoes a set nobody cleared.
    s.ok(&["immutable", "set", fs, "--run", "imm2"]);
    let g = s.ok(&["gc", "--run", "imm2"]);
    assert_eq!(g["ok"], true);
    std::fs::remove_file(&f).expect("removable after gc");
    // Idempotent.
    let g = s.ok(&["gc", "--run", "imm2"]);
    assert!(g["runs"][0]["actions"]
        .as_array()
        .expect("array")
        .is_empty());

    // Bad input: clear messages and exit 2, no panic.
    let o = s.agent(&["immutable", "set", "/nonexistent/terminus", "--run", "imm3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such file"));
    let o = s.agent(&["immutable", "set", fs, "--run", "../x"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn fill_bytes_keeps_full_then_unfill() {
    require_root!();
    let mut s = Scratch::new();
    let t = s.tmpfs("fillb", "size=16m,nr_inodes=4000");
    let ts = t.to_str().expect("utf8");
    let spare = t.join("spare");
    std::fs::write(&spare, vec![1u8; 1 << 20]).expect("spare");

    let v = s.ok(&["fill", "--dir", ts, "--mode", "bytes", "--run", "fb1"]);
    let pid = v["pid"].as_i64().expect("pid") as i32;
    assert!(alive(pid));
    assert_eq!(avail_bytes(&t), 0);
    let e = std::fs::write(t.join("new"), vec![0u8; 8192]).expect_err("full");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    // Identifiable in /proc by argv and env.
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(argv.starts_with(b"terminus-agent\0__fill\0"));
    let env = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    assert!(env.split(|b| *b == 0).any(|kv| kv == b"TERMINUS_RUN=fb1"));

    // Freed space is re-taken.
    let _ = std::fs::remove_file(t.join("new"));
    std::fs::remove_file(&spare).expect("rm spare");
    wait_until(
        "the filler to re-take freed blocks",
        Duration::from_secs(5),
        || avail_bytes(&t) == 0,
    );

    let u = s.ok(&["unfill", "--dir", ts, "--run", "fb1"]);
    assert_eq!(u["stopped_pids"][0], pid);
    assert!(!alive(pid));
    assert!(avail_bytes(&t) > 15 << 20);
    assert!(!t.join(".terminus-fill-fb1").exists());
    assert!(s.ok(&["ledger"])["ledgers"]
        .as_array()
        .expect("array")
        .is_empty());
}

#[test]
fn fill_inodes_then_gc_and_size_limit() {
    require_root!();
    let mut s = Scratch::new();
    let t = s.tmpfs("filli", "size=16m,nr_inodes=2000");
    let ts = t.to_str().expect("utf8");
    let v = s.ok(&["fill", "--dir", ts, "--mode", "inodes", "--run", "fi1"]);
    let pid = v["pid"].as_i64().expect("pid") as i32;
    let e = std::fs::File::create(t.join("one-more")).expect_err("no inodes left");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    let g = s.ok(&["gc", "--all"]);
    assert_eq!(g["ok"], true);
    assert!(!alive(pid));
    std::fs::File::create(t.join("one-more")).expect("inodes back after gc");
    assert!(!t.join(".terminus-fill-fi1").exists());

    // Safety limit: a filesystem above --max-size is refused with exit code 3.
    let o = s.agent(&[
        "fill",
        "--dir",
        ts,
        "--mode",
        "bytes",
        "--run",
        "fi2",
        "--max-size",
        "1M",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused"));
    assert!(s.ok(&["ledger"])["ledgers"]
        .as_array()
        .expect("array")
        .is_empty());
}

#[test]
fn freeze_and_thaw_a_sleep_child() {
    require_root!();
    let s = Scratch::new();
    let mut child = Command::new("sleep")
        .arg("3127.125")
        .spawn()
        .expect("sleep");
    let pid = child.id() as i32;
    let ps = pid.to_string();

    let v = s.ok(&["freeze", &ps, "--run", "fz1"]);
    assert_eq!(v["frozen"][0]["state"], "T");
    assert_eq!(proc_state(pid), Some('T'));
    let v = s.ok(&["thaw", &ps]);
    assert_eq!(v["thawed"][0]["pid"], pid);
    assert_ne!(proc_state(pid), Some('T'));

    // By name and argument substring; gc thaws.
    s.ok(&[
        "freeze", "--name", "sleep", "--match", "3127.125", "--all", "--run", "fz2",
    ]);
    assert_eq!(proc_state(pid), Some('T'));
    s.ok(&["gc", "--run", "fz2"]);
    wait_until("thaw by gc", Duration::from_secs(2), || {
        proc_state(pid) != Some('T')
    });

    let o = s.agent(&["freeze", "999999999", "--run", "fz3"]);
    assert_eq!(o.status.code(), Some(2));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn hold_mount_blocks_umount_until_release() {
    require_root!();
    let mut s = Scratch::new();
    // A shared parent, as kind's rshared /: the holder's namespace gets a slave copy,
    // and a busy slave copy makes the umount in the parent namespace fail.
    let parent = s.tmpfs("shared", "size=1m");
    s.sh("mount", &["--make-shared", parent.to_str().expect("utf8")]);
    let mnt = s.loop_ext4("hold", &parent.join("rootfs"));
    std::fs::create_dir_all(mnt.join("bin")).expect("mkdir");
    let ms = mnt.to_str().expect("utf8");
    let inside = mnt.join("bin");
    let is = inside.to_str().expect("utf8");

    for via in ["cwd", "fd"] {
        let v = s.ok(&["hold-mount", "--path", is, "--via", via, "--run", "hm1"]);
        let pid = v["pid"].as_i64().expect("pid") as i32;
        assert_ne!(v["mnt_ns"], serde_json::Value::Null);
        let o = Command::new("umount").arg(ms).output().expect("umount");
        assert!(!o.status.success(), "umount must fail while held via {via}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("busy"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );

        // The views find it.
        let h = s.ok(&["holders", ms]);
        let hs = h["holders"].as_array().expect("array");
        assert!(hs.iter().any(|x| x["pid"] == pid && x["how"] == via), "{h}");
        let mi = String::from_utf8_lossy(&s.agent(&["mountinfo", ms]).stdout).to_string();
        assert!(mi.contains(&format!("/proc/{pid}/mountinfo:")), "{mi}");

        let r = s.ok(&["release", "--run", "hm1"]);
        assert_eq!(r["killed"][0], pid);
        assert!(!alive(pid));
    }

    // A bind copy in the holder's namespace: umount succeeds, the mount leaks there.
    let v = s.ok(&["hold-mount", "--path", ms, "--via", "bind", "--run", "hm2"]);
    let pid = v["pid"].as_i64().expect("pid") as i32;
    let target = PathBuf::from(v["bind_target"].as_str().expect("bind target"));
    assert!(target.exists());
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    assert!(mi.contains(&format!(" {} ", target.display())), "{mi}");
    let h = s.ok(&["holders", ms]);
    let copies = h["mount_copies"].as_array().expect("array");
    assert!(
        copies.iter().any(|c| c["pid"] == pid
            && c["at_path"] == false
            && c["mount_point"] == target.to_str().expect("utf8")),
        "{h}"
    );
    let g = s.ok(&["gc", "--run", "hm2"]);
    assert_eq!(g["ok"], true);
    assert!(!alive(pid));
    assert!(!target.exists());
    s.sh("umount", &[ms]);
    s.mounts.retain(|m| m != &mnt);
}

#[test]
fn gc_undoes_a_killed_run() {
    require_root!();
    let mut s = Scratch::new();
    let t = s.tmpfs("gc", "size=8m,nr_inodes=1000");
    let ts = t.to_str().expect("utf8");
    let mut child = Command::new("sleep").arg("131").spawn().expect("sleep");
    let pid = child.id() as i32;
    let fill = s.ok(&["fill", "--dir", ts, "--mode", "bytes", "--run", "dead"]);
    let hold = s.ok(&["hold-mount", "--path", ts, "--via", "cwd", "--run", "dead"]);
    s.ok(&["freeze", &pid.to_string(), "--run", "dead"]);
    let l = s.ok(&["ledger", "--run", "dead"]);
    assert_eq!(
        l["ledgers"][0]["entries"].as_array().expect("array").len(),
        3
    );

    // The harness "dies" here; a later gc finds everything from the ledger.
    let g = s.ok(&["gc", "--run", "dead"]);
    assert_eq!(g["ok"], true, "{g}");
    assert_ne!(proc_state(pid), Some('T'));
    assert!(!alive(fill["pid"].as_i64().expect("pid") as i32));
    assert!(!alive(hold["pid"].as_i64().expect("pid") as i32));
    assert!(avail_bytes(&t) > 7 << 20);
    assert!(
        std::fs::read_dir(&s.state).map(|d| d.count()).unwrap_or(0) == 0,
        "state dir not empty"
    );
    let g = s.ok(&["gc", "--all"]);
    assert_eq!(g["runs"].as_array().expect("array").len(), 0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn views_ps_df_collect() {
    require_root!();
    let mut s = Scratch::new();
    let t = s.tmpfs("views", "size=4m");
    let ps = String::from_utf8_lossy(&s.agent(&["ps"]).stdout).to_string();
    let first = ps.lines().next().expect("header");
    assert!(
        first.trim_start().starts_with("PID") && first.ends_with("STARTED COMMAND"),
        "{first}"
    );
    assert!(ps.lines().any(|l| l.contains("terminus-agent ps")));
    let df = String::from_utf8_lossy(&s.agent(&["df"]).stdout).to_string();
    assert!(df.starts_with("Filesystem"));
    assert!(
        df.lines().any(|l| l.ends_with(t.to_str().expect("utf8"))),
        "{df}"
    );
    let dfi = String::from_utf8_lossy(&s.agent(&["df", "--inodes"]).stdout).to_string();
    assert!(dfi.lines().next().expect("header").contains("IUse%"));

    let out = s.path("bundle");
    let v = s.ok(&[
        "collect",
        "--out",
        out.to_str().expect("utf8"),
        "--container-id",
        "deadbeef",
        "--cmd-timeout",
        "3",
    ]);
    for f in [
        "kubelet.log",
        "runtime.log",
        "df.txt",
        "df-inodes.txt",
        "lsattr.txt",
        "mountinfo.txt",
        "ps.txt",
        "crictl-ps.txt",
        "ctr-tasks.txt",
    ] {
        assert!(out.join(f).exists(), "{f} missing: {v}");
    }
    assert_eq!(v["files"].as_array().expect("array").len(), 9);
}
