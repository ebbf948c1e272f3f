//! A private container runtime for one trial: a dockerd and a containerd of our own on a
//! size-limited loop-mounted ext4, with private sockets, exec-root, state, pidfiles and
//! cgroup parent. Nothing here touches the machine's shared dockerd, its containerd, its
//! networks or `/run/containerd/containerd.sock`.
//!
//! Every resource is recorded in the runtime's directory (`/var/tmp/terminus-rt-*`):
//! pidfiles, the loop device, helper pids and `owner.pid`. [`teardown_dir`] works from
//! that directory alone, so the same code serves the normal path, `Drop` (failure and
//! panic), the Ctrl-C watchdog and the reaping of leftovers from a killed run.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bollard::Docker;

use crate::wait::wait_for;

/// Size of the loop filesystem holding docker's data-root and containerd's root.
const DISK_MB: u64 = 256;
/// Directories of the runtimes alive in this process, for the Ctrl-C watchdog.
pub static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
pub use terminus::sandbox::{reap_leftovers, running, shims_of, teardown_dir, DIR_PREFIX};

pub fn docker_cli() -> &'static str {
    // Debian's 20.10 client; /usr/local/bin may hold a newer one that prints differently.
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

pub struct PrivateRuntime {
    pub dir: PathBuf,
    pub cgroup: String,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    helpers: Vec<Child>,
    torn_down: bool,
}

impl PrivateRuntime {
    /// Starts the private runtime. Whatever was set up is torn down if a step fails.
    pub fn start(tag: &str) -> Result<PrivateRuntime> {
        let dir = PathBuf::from(format!("{DIR_PREFIX}{}-{tag}", std::process::id()));
        if dir.exists() {
            teardown_dir(&dir);
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
        live(&dir, true);
        let cgroup = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("terminus-rt")
            .to_owned();
        let mut rt = PrivateRuntime {
            dir,
            cgroup,
            containerd: None,
            dockerd: None,
            helpers: Vec::new(),
            torn_down: false,
        };
        rt.setup()?;
        Ok(rt)
    }

    fn setup(&mut self) -> Result<()> {
        let d = self.dir.clone();
        let img = d.join("disk.img");
        fs::File::create(&img)?.set_len(DISK_MB << 20)?;
        // -m 0: no blocks reserved for root, so "full" is full for dockerd too.
        run_ok(
            Command::new("mkfs.ext4")
                .args(["-q", "-m", "0", "-N", "16384"])
                .arg(&img),
        )?;
        let out = run_ok(Command::new("losetup").args(["--find", "--show"]).arg(&img))?;
        let loopdev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        fs::write(d.join("loop"), &loopdev)?;
        for sub in ["mnt", "x", "run", "opt"] {
            fs::create_dir_all(d.join(sub))?;
        }
        run_ok(Command::new("mount").arg(&loopdev).arg(d.join("mnt")))?;
        fs::create_dir_all(d.join("mnt/docker"))?;
        fs::create_dir_all(d.join("mnt/containerd"))?;
        fs::write(d.join("daemon.json"), "{}\n")?;
        let p = d.display();
        fs::write(
            d.join("containerd.toml"),
            format!(
                "version = 2\nroot = \"{p}/mnt/containerd\"\nstate = \"{p}/run/containerd\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{p}/containerd.sock\"\n\
                 [ttrpc]\n  address = \"{p}/containerd.sock.ttrpc\"\n\
                 [debug]\n  address = \"{p}/containerd-debug.sock\"\n\
                 [metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{p}/opt\"\n"
            ),
        )?;
        self.start_containerd()?;
        let log = append(&d.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("mnt/docker"))
            .arg("--exec-root")
            .arg(d.join("x"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{p}/docker.sock"))
            .arg("--containerd")
            .arg(d.join("containerd.sock"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip6tables=false",
            ])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup))
            .args(["--storage-driver", "overlay2"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn dockerd")?;
        self.dockerd = Some(child);
        let sock = d.join("docker.sock");
        let cli = docker_cli();
        wait_for(
            Duration::from_secs(30),
            "dockerd to answer on its private socket",
            || {
                // Bounded: the docker CLI itself has no deadline.
                Command::new("timeout")
                    .arg("5")
                    .arg(cli)
                    .arg("-H")
                    .arg(format!("unix://{}", sock.display()))
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        )?;
        Ok(())
    }

    fn start_containerd(&mut self) -> Result<()> {
        let log = append(&self.dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.join("containerd.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        fs::write(self.dir.join("containerd.pid"), child.id().to_string())?;
        self.containerd = Some(child);
        wait_for(
            Duration::from_secs(20),
            "containerd to answer on its private socket",
            || self.ctr(&["version"]).status.success(),
        )
    }

    /// SIGKILL containerd (if a fault has not already) and reap it.
    pub fn kill_containerd(&mut self) -> Result<()> {
        if let Some(mut c) = self.containerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// Start containerd again on the same root and state (after [`Self::kill_containerd`]).
    pub fn restart_containerd(&mut self) -> Result<()> {
        self.kill_containerd()?;
        self.start_containerd()
    }

    pub fn docker_socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// A bollard client for the private dockerd, at the API version it speaks.
    pub async fn docker(&self) -> Result<Docker> {
        let sock = self.docker_socket();
        let docker =
            Docker::connect_with_unix(&sock.to_string_lossy(), 30, bollard::API_DEFAULT_VERSION)?;
        Ok(docker.negotiate_version().await?)
    }

    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(Child::id)
    }

    pub fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// The shim serving container `id` of our containerd.
    pub fn shim_pid(&self, id: &str) -> Option<u32> {
        let sock = self.containerd_socket();
        let needle = sock.to_string_lossy().into_owned();
        shims_of(&needle)
            .into_iter()
            .find(|(_, args)| args.split(' ').any(|a| a == id))
            .map(|(pid, _)| pid)
    }

    /// `ctr` against our containerd, bounded by `timeout(1)` so a frozen daemon cannot
    /// hang the trial.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command(args)
            .output()
            .unwrap_or_else(|e| failed_output(&format!("ctr: {e}")))
    }

    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        // A frozen containerd makes ctr wait 10 s for the handshake by default.
        c.arg("20")
            .arg("ctr")
            .arg("--connect-timeout")
            .arg("3s")
            .arg("--address")
            .arg(self.containerd_socket())
            .args(args);
        c
    }

    /// A host-side helper (e.g. a mount holder): killed on teardown, recorded on disk.
    pub fn add_helper(&mut self, child: Child) -> u32 {
        let pid = child.id();
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("helpers.pid"))
        {
            let _ = writeln!(f, "{pid}");
        }
        self.helpers.push(child);
        pid
    }

    pub fn kill_helper(&mut self, pid: u32) {
        if let Some(pos) = self.helpers.iter().position(|c| c.id() == pid) {
            let mut c = self.helpers.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn helper_pids(&self) -> Vec<u32> {
        self.helpers.iter().map(Child::id).collect()
    }

    /// Byte offsets of the two daemon logs, to slice what a case produced.
    pub fn log_marks(&self) -> (u64, u64) {
        let len = |n: &str| fs::metadata(self.dir.join(n)).map(|m| m.len()).unwrap_or(0);
        (len("dockerd.log"), len("containerd.log"))
    }

    /// Normal-path teardown; `Drop` calls it too when a trial fails or panics.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        teardown_dir(&self.dir);
        // Reap our children so no zombie outlives the trial.
        for mut c in self
            .helpers
            .drain(..)
            .chain(self.dockerd.take())
            .chain(self.containerd.take())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        live(&self.dir, false);
    }
}

impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn live(dir: &Path, add: bool) {
    if let Ok(mut v) = LIVE.lock() {
        if add {
            v.push(dir.to_path_buf());
        } else {
            v.retain(|d| d != dir);
        }
    }
}

fn append(path: &Path) -> Result<fs::File> {
    Ok(fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?)
}

fn failed_output(msg: &str) -> Output {
    use std::os::unix::process::ExitStatusExt as _;
    Output {
        status: std::process::ExitStatus::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: msg.as_bytes().to_vec(),
    }
}

pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}
