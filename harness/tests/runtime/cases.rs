//! The reproductions. Each case applies a real fault on its own private runtime,
//! captures the evidence bundle, checks the detector ranks the expected cause first,
//! then applies the recovery and checks it clears the stuck container.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::TryStreamExt as _;

use crate::bundle::Bundle;
use crate::private::{run_ok, running, PrivateRuntime};
use crate::wait::wait_for;

pub const IMAGE: &str = "terminus/busybox:1";
const CTR_IMAGE: &str = "docker.io/terminus/busybox:1";
/// containerd namespace of the plain-containerd cases.
const NS: &str = "terminus";
const CMDS: &str = "commands.txt";
const RECOVERY: &str = "recovery.txt";

/// One case's world: its private runtime, its bundle, an async runtime for bollard.
pub struct Case {
    pub bundle: Bundle,
    docker: Docker,
    tokio: tokio::runtime::Runtime,
    // Last: dropped after everything that might still talk to it.
    pub rt: PrivateRuntime,
}

impl Case {
    pub fn start(root: &Path, name: &str, tag: &str) -> Result<Case> {
        let rt = PrivateRuntime::start(tag)?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let docker = tokio.block_on(rt.docker())?;
        let bundle = Bundle::new(root, name, &rt)?;
        let case = Case {
            bundle,
            docker,
            tokio,
            rt,
        };
        case.import_image()?;
        Ok(case)
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.tokio.block_on(f)
    }

    /// Debian's busybox-static as a one-layer image (`docker import` through the API).
    fn import_image(&self) -> Result<()> {
        let root = self.rt.dir.join("rootfs");
        for sub in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| anyhow!("busybox is not installed (apt-get install busybox-static)"))?;
        std::fs::copy(busybox, root.join("bin/busybox"))?;
        // Ask the original: executing the fresh copy races with other threads' forks that
        // still hold its write descriptor (ETXTBSY, "Text file busy").
        let list = run_ok(Command::new(busybox).arg("--list"))?;
        for applet in String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|a| *a != "busybox" && !a.is_empty())
        {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        let tar = run_ok(Command::new("tar").arg("-C").arg(&root).args(["-c", "."]))?.stdout;
        let (repo, tag) = IMAGE.split_once(':').unwrap_or((IMAGE, "latest"));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        self.block(
            self.docker
                .create_image(Some(options), Some(bollard::body_full(tar.into())), None)
                .try_collect::<Vec<_>>(),
        )
        .context("docker import of the busybox rootfs")?;
        Ok(())
    }

    /// The same image in containerd's `terminus` namespace (`docker save | ctr image import`).
    fn import_image_into_containerd(&self) -> Result<()> {
        let chunks: Vec<_> = self.block(self.docker.export_image(IMAGE).try_collect::<Vec<_>>())?;
        let path = self.rt.dir.join("image.tar");
        std::fs::write(&path, chunks.concat())?;
        let out = self
            .rt
            .ctr(&["-n", NS, "image", "import", &path.to_string_lossy()]);
        ensure!(
            out.status.success(),
            "ctr image import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn run_container(&self, name: &str, cmd: &[&str]) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self.block(self.docker.create_container(Some(options), body))?;
        self.block(
            self.docker
                .start_container(&created.id, None::<StartContainerOptions>),
        )?;
        Ok(created.id)
    }

    fn inspect(&self, name: &str) -> Result<ContainerInspectResponse, bollard::errors::Error> {
        self.block(
            self.docker
                .inspect_container(name, None::<InspectContainerOptions>),
        )
    }

    fn running(&self, name: &str) -> Option<bool> {
        self.inspect(name).ok()?.state?.running
    }

    fn gone(&self, name: &str) -> bool {
        matches!(
            self.inspect(name),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }

    fn remove(&self, file: &str, name: &str) -> Result<(), bollard::errors::Error> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let r = self.block(self.docker.remove_container(name, Some(options)));
        self.bundle
            .api(file, &format!("DELETE /containers/{name}?force=true"), &r);
        r
    }

    /// Container id and overlay layer id: what identifies it in mountinfo.
    fn mount_ids(&self, name: &str) -> Result<Vec<String>> {
        let inspect = self.inspect(name)?;
        let mut ids = vec![inspect.id.clone().unwrap_or_default()];
        if let Some(merged) = inspect
            .graph_driver
            .as_ref()
            .and_then(|g| g.data.get("MergedDir"))
        {
            if let Some(layer) = Path::new(merged).parent().and_then(Path::file_name) {
                ids.push(layer.to_string_lossy().into_owned());
            }
        }
        Ok(ids)
    }

    fn upper_dir(&self, name: &str) -> Result<PathBuf> {
        let inspect = self.inspect(name)?;
        let upper = inspect
            .graph_driver
            .as_ref()
            .and_then(|g| g.data.get("UpperDir"))
            .cloned();
        upper
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("{name} has no overlay2 UpperDir"))
    }

    fn ctr_tasks(&self, ns: &str) -> String {
        String::from_utf8_lossy(&self.rt.ctr(&["-n", ns, "task", "ls"]).stdout).into_owned()
    }

    fn ctr_status(&self, ns: &str, id: &str) -> Option<String> {
        self.ctr_tasks(ns).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id))
                .then(|| f.get(2).map(|s| (*s).to_owned()))
                .flatten()
        })
    }

    fn record(&self, file: &str, cmd: &mut Command) -> std::process::Output {
        self.bundle.run(file, cmd)
    }

    fn ctr_recorded(&self, file: &str, args: &[&str]) -> std::process::Output {
        self.bundle.run(file, &mut self.rt.ctr_command(args))
    }

    fn kill(&self, file: &str, signal: &str, pids: &[u32]) -> Result<()> {
        let out = self.record(
            file,
            Command::new("kill")
                .arg(format!("-{signal}"))
                .args(pids.iter().map(u32::to_string)),
        );
        ensure!(out.status.success(), "kill -{signal} {pids:?} failed");
        Ok(())
    }

    /// Capture the bundle, diagnose it, and require `expected` ranked first.
    fn diagnose(&self, ns: &str, ids: &[String], lsattr: &[PathBuf], expected: &str) -> Result<()> {
        self.bundle.capture(&self.rt, ns, ids, lsattr)?;
        let evidence = terminus::evidence::Evidence::load(&self.bundle.dir);
        let report = terminus::detect::diagnose(&evidence);
        let text = terminus::report::to_text(&evidence, &report);
        let report_path = self.bundle.dir.with_extension("report.txt");
        std::fs::write(&report_path, &text)?;
        let got = report
            .diagnoses
            .first()
            .map_or("none", |d| d.cause.as_str());
        ensure!(
            got == expected,
            "bundle {} diagnosed as {got}, expected {expected}; report:\n{text}",
            self.bundle.dir.display()
        );
        Ok(())
    }
}

fn wait_case(case: &Case, what: &str, mut f: impl FnMut(&Case) -> bool) -> Result<()> {
    wait_for(Duration::from_secs(20), what, || f(case))
}

// --- negative --------------------------------------------------------------------------

pub fn docker_normal_removal(case: &mut Case) -> Result<()> {
    case.run_container("bystander", &["sleep", "3600"])?;
    case.run_container("normal", &["sleep", "3600"])?;
    let ids = case.mount_ids("normal")?;
    let stop = StopContainerOptionsBuilder::default().t(1).build();
    let r = case.block(case.docker.stop_container("normal", Some(stop)));
    case.bundle
        .api(CMDS, "POST /containers/normal/stop?t=1", &r);
    r?;
    case.remove(CMDS, "normal")?;
    ensure!(case.gone("normal"), "normal was not removed");
    case.diagnose("moby", &ids, &[], "none")
}

// --- cause 2: immutable file -------------------------------------------------------------

pub fn docker_immutable_file(case: &mut Case) -> Result<()> {
    case.run_container(
        "immutable",
        &["sh", "-c", "echo data > /keep.txt; exec sleep 3600"],
    )?;
    let ids = case.mount_ids("immutable")?;
    let upper = case.upper_dir("immutable")?;
    let file = upper.join("keep.txt");
    wait_for(
        Duration::from_secs(10),
        "the container to write /keep.txt into its upper dir",
        || file.exists(),
    )?;
    ensure!(
        case.record(CMDS, Command::new("chattr").arg("+i").arg(&file))
            .status
            .success(),
        "chattr +i failed"
    );

    let r = case.remove(CMDS, "immutable");
    let Err(bollard::errors::Error::DockerResponseServerError { message, .. }) = r else {
        bail!("removal with an immutable file did not fail: {r:?}");
    };
    ensure!(
        message.contains("operation not permitted"),
        "unexpected removal error: {message}"
    );
    let state = case
        .inspect("immutable")?
        .state
        .and_then(|s| s.status)
        .map(|s| s.to_string());
    ensure!(
        state.as_deref() == Some("dead"),
        "container state after failed removal: {state:?}, expected dead"
    );
    let layer_dir = upper
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(upper.clone());
    case.diagnose("moby", &ids, &[layer_dir], "immutable-file")?;

    // Recovery: clear the attribute on the path from the error; removal then succeeds.
    ensure!(
        case.record(RECOVERY, Command::new("chattr").arg("-i").arg(&file))
            .status
            .success(),
        "chattr -i failed"
    );
    case.remove(RECOVERY, "immutable")
        .context("removal after chattr -i")?;
    ensure!(
        case.gone("immutable"),
        "immutable still exists after recovery"
    );
    Ok(())
}

// --- cause 1: disk full ------------------------------------------------------------------

/// What the filler exhausts on the runtime's filesystem.
#[derive(Clone, Copy, PartialEq)]
enum Fill {
    /// Data blocks: large appends, then 1 KiB appends for the last blocks.
    Blocks,
    /// Inodes: empty files until none is left; blocks stay free.
    Inodes,
}

impl Fill {
    fn path(self, mnt: &Path) -> PathBuf {
        match self {
            Fill::Blocks => mnt.join("filler"),
            Fill::Inodes => mnt.join("inodes"),
        }
    }

    fn exhausted(self, mnt: &Path) -> bool {
        nix::sys::statvfs::statvfs(mnt).is_ok_and(|s| match self {
            Fill::Blocks => s.blocks_available() == 0,
            Fill::Inodes => s.files_available() == 0,
        })
    }
}

/// Keeps the filesystem full, taking back whatever gets freed, until `stop` is set.
fn filler(mnt: PathBuf, fill: Fill, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write as _;
        let path = fill.path(&mnt);
        let big = vec![0u8; 1 << 20];
        let small = [0u8; 1024];
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match fill {
                Fill::Blocks => {
                    if let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                    {
                        while !stop.load(Ordering::Relaxed) && f.write_all(&big).is_ok() {}
                        while !stop.load(Ordering::Relaxed) && f.write_all(&small).is_ok() {}
                    }
                }
                Fill::Inodes => {
                    let _ = std::fs::create_dir_all(&path);
                    while !stop.load(Ordering::Relaxed)
                        && std::fs::File::create(path.join(n.to_string())).is_ok()
                    {
                        n += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

pub fn docker_disk_full(case: &mut Case) -> Result<()> {
    disk_full(case, Fill::Blocks)
}

pub fn docker_disk_full_inodes(case: &mut Case) -> Result<()> {
    disk_full(case, Fill::Inodes)
}

fn disk_full(case: &mut Case, fill: Fill) -> Result<()> {
    let id = case.run_container(
        "chatty",
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo \"line $i\"; usleep 100000; done",
        ],
    )?;
    let ids = case.mount_ids("chatty")?;
    let mnt = case.rt.dir.join("mnt");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = filler(mnt.clone(), fill, stop.clone());
    let result = (|| -> Result<()> {
        let what = match fill {
            Fill::Blocks => "the runtime filesystem to have 0 blocks available",
            Fill::Inodes => "the runtime filesystem to have 0 inodes available",
        };
        wait_for(Duration::from_secs(60), what, || fill.exhausted(&mnt))?;
        if fill == Fill::Blocks {
            // The container's log lines are the first writes to fail.
            let log = case.rt.dir.join("dockerd.log");
            wait_for(
                Duration::from_secs(10),
                "dockerd to log a write failing with no space left on device",
                || {
                    std::fs::read_to_string(&log)
                        .is_ok_and(|l| l.contains("no space left on device"))
                },
            )?;
        }
        let stop_opts = StopContainerOptionsBuilder::default().t(2).build();
        let r = case.block(case.docker.stop_container("chatty", Some(stop_opts)));
        case.bundle
            .api(CMDS, "POST /containers/chatty/stop?t=2", &r);
        ensure!(
            case.ctr_status("moby", &id).is_none(),
            "containerd still has a task for chatty after the stop"
        );
        case.ctr_recorded(CMDS, &["-n", "moby", "task", "ls"]);
        let body = ContainerCreateBody {
            image: Some(IMAGE.to_owned()),
            cmd: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let r = case.block(
            case.docker.create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name("newcomer")
                        .build(),
                ),
                body,
            ),
        );
        case.bundle
            .api(CMDS, "POST /containers/create?name=newcomer", &r);
        ensure!(r.is_err(), "a container could be created on the full disk");
        case.diagnose("moby", &ids, &[], "disk-full")
    })();
    // Recovery: free the disk; then the stuck container can be removed.
    stop.store(true, Ordering::Relaxed);
    let _ = handle.join();
    case.record(RECOVERY, Command::new("rm").arg("-rf").arg(fill.path(&mnt)));
    result?;
    case.record(RECOVERY, Command::new("df").arg("-P").arg("-i").arg(&mnt));
    case.record(RECOVERY, Command::new("df").arg("-P").arg(&mnt));
    ensure!(
        !Fill::Blocks.exhausted(&mnt) && !Fill::Inodes.exhausted(&mnt),
        "the disk is still full after removing the filler"
    );
    case.remove(RECOVERY, "chatty")
        .context("removal after freeing the disk")?;
    ensure!(case.gone("chatty"), "chatty still exists after recovery");
    Ok(())
}

// --- cause 3: runtime hang: dockerd stopped (the handbook's form) ---------------------------

pub fn docker_runtime_hang_dockerd(case: &mut Case) -> Result<()> {
    let id = case.run_container("dhang", &["sleep", "3600"])?;
    let ids = case.mount_ids("dhang")?;
    let pid = case
        .rt
        .dockerd_pid()
        .ok_or_else(|| anyhow!("dockerd is not running"))?;
    case.kill(CMDS, "STOP", &[pid])?;
    let result = (|| -> Result<()> {
        let waited = Duration::from_secs(3);
        let stop_opts = StopContainerOptionsBuilder::default().t(1).build();
        let r = case.block(async {
            tokio::time::timeout(waited, case.docker.stop_container("dhang", Some(stop_opts))).await
        });
        match r {
            Err(_) => case
                .bundle
                .api_no_answer(CMDS, "POST /containers/dhang/stop?t=1", waited),
            Ok(answer) => {
                case.bundle
                    .api(CMDS, "POST /containers/dhang/stop?t=1", &answer);
                bail!("docker stop answered while dockerd was stopped: {answer:?}");
            }
        }
        // containerd below it is fine and still runs the task.
        ensure!(
            case.ctr_status("moby", &id).as_deref() == Some("RUNNING"),
            "containerd no longer runs the task while dockerd is stopped"
        );
        case.ctr_recorded(CMDS, &["-n", "moby", "task", "ls"]);
        case.diagnose("moby", &ids, &[], "runtime-hang")
    })();
    // Recovery: let dockerd run again; the container can then be removed.
    case.kill(RECOVERY, "CONT", &[pid])?;
    result?;
    wait_for(
        Duration::from_secs(20),
        "dockerd to answer again after SIGCONT",
        || case.block(case.docker.ping()).is_ok(),
    )?;
    case.remove(RECOVERY, "dhang")
        .context("removal after SIGCONT")?;
    ensure!(case.gone("dhang"), "dhang still exists after recovery");
    Ok(())
}

// --- cause 3: runtime hang ---------------------------------------------------------------

pub fn docker_runtime_hang(case: &mut Case) -> Result<()> {
    case.run_container("hang", &["sleep", "3600"])?;
    let ids = case.mount_ids("hang")?;
    let pid = case
        .rt
        .containerd_pid()
        .ok_or_else(|| anyhow!("containerd is not running"))?;
    case.kill(CMDS, "STOP", &[pid])?;
    let result = (|| -> Result<()> {
        let waited = Duration::from_secs(3);
        let stop_opts = StopContainerOptionsBuilder::default().t(1).build();
        let r = case.block(async {
            tokio::time::timeout(waited, case.docker.stop_container("hang", Some(stop_opts))).await
        });
        match r {
            Err(_) => case
                .bundle
                .api_no_answer(CMDS, "POST /containers/hang/stop?t=1", waited),
            Ok(answer) => {
                case.bundle
                    .api(CMDS, "POST /containers/hang/stop?t=1", &answer);
                bail!("docker stop answered while containerd was stopped: {answer:?}");
            }
        }
        case.ctr_recorded(CMDS, &["-n", "moby", "task", "ls"]);
        case.diagnose("moby", &ids, &[], "runtime-hang")
    })();
    // Recovery: let containerd run again; the stop queued meanwhile then completes.
    case.kill(RECOVERY, "CONT", &[pid])?;
    result?;
    wait_case(
        case,
        "the stop queued while containerd was frozen to complete",
        |c| c.running("hang") == Some(false),
    )?;
    case.remove(RECOVERY, "hang")
        .context("removal after SIGCONT")?;
    ensure!(case.gone("hang"), "hang still exists after recovery");
    Ok(())
}

// --- cause 6: dockerd / containerd desync --------------------------------------------------

pub fn docker_desync(case: &mut Case) -> Result<()> {
    let id = case.run_container("desync", &["sleep", "3600"])?;
    let ids = case.mount_ids("desync")?;
    let task_pid = case
        .inspect("desync")?
        .state
        .and_then(|s| s.pid)
        .unwrap_or(0);
    let shim = case
        .rt
        .shim_pid(&id)
        .ok_or_else(|| anyhow!("no shim found for {id}"))?;
    let dockerd = case
        .rt
        .dockerd_pid()
        .ok_or_else(|| anyhow!("dockerd is not running"))?;
    let containerd = case
        .rt
        .containerd_pid()
        .ok_or_else(|| anyhow!("containerd is not running"))?;
    case.kill(CMDS, "STOP", &[dockerd])?;
    let result = (|| -> Result<()> {
        case.kill(CMDS, "KILL", &[containerd, shim])?;
        case.rt.restart_containerd()?;
        wait_for(
            Duration::from_secs(20),
            "the restarted containerd to reap the dead shim and drop the task",
            || {
                let tasks = case.rt.ctr(&["-n", "moby", "task", "ls", "-q"]);
                tasks.status.success() && !String::from_utf8_lossy(&tasks.stdout).contains(&id)
            },
        )?;
        Ok(())
    })();
    case.kill(CMDS, "CONT", &[dockerd])?;
    result?;
    wait_for(
        Duration::from_secs(20),
        "dockerd to answer again after SIGCONT",
        || case.block(case.docker.ping()).is_ok(),
    )?;
    ensure!(
        case.running("desync") == Some(true),
        "docker no longer says desync is running: no desync"
    );
    let task_pid = i32::try_from(task_pid)?;
    wait_for(
        Duration::from_secs(10),
        "the task's process to be dead (absent or a zombie)",
        || !running(task_pid),
    )?;
    ensure!(
        case.ctr_status("moby", &id).is_none(),
        "containerd still has the task"
    );
    case.record(
        CMDS,
        Command::new("ps").args(["-o", "pid,stat,args", "-p", &task_pid.to_string()]),
    );
    case.ctr_recorded(CMDS, &["-n", "moby", "task", "ls"]);
    case.diagnose("moby", &ids, &[], "runtime-desync")?;
    // Recovery: a forced removal clears it.
    case.remove(RECOVERY, "desync")
        .context("removal of the desynced container")?;
    ensure!(case.gone("desync"), "desync still exists after recovery");
    Ok(())
}

// --- cause 8: mount held --------------------------------------------------------------------

pub fn containerd_mount_held(case: &mut Case) -> Result<()> {
    case.import_image_into_containerd()?;
    let id = "held";
    let cgroup = format!("/{}/{id}", case.rt.cgroup);
    let out = case.rt.ctr(&[
        "-n", NS, "run", "-d", "--cgroup", &cgroup, CTR_IMAGE, id, "sleep", "3600",
    ]);
    ensure!(
        out.status.success(),
        "ctr run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = case.rt.dir.join(format!(
        "run/containerd/io.containerd.runtime.v2.task/{NS}/{id}/rootfs"
    ));
    wait_for(
        Duration::from_secs(10),
        "the task's rootfs to be mounted",
        || rootfs.join("bin/busybox").exists(),
    )?;
    // The holder: a host process whose working directory is inside the task's rootfs.
    let holder = Command::new("sleep")
        .arg("3600")
        .current_dir(rootfs.join("tmp"))
        .spawn()?;
    let holder = case.rt.add_helper(holder);
    case.ctr_recorded(CMDS, &["-n", NS, "task", "kill", "-s", "KILL", id]);
    wait_for(Duration::from_secs(10), "task held to be STOPPED", || {
        case.ctr_status(NS, id).as_deref() == Some("STOPPED")
    })?;
    let out = case.ctr_recorded(CMDS, &["-n", NS, "task", "rm", id]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        !out.status.success(),
        "task removal succeeded although a process holds its rootfs"
    );
    ensure!(
        err.contains("device or resource busy"),
        "unexpected task removal error: {err}"
    );
    ensure!(
        case.ctr_status(NS, id).as_deref() == Some("STOPPED"),
        "the task did not stay STOPPED"
    );
    case.diagnose(
        NS,
        &[rootfs.to_string_lossy().into_owned()],
        &[],
        "mount-held",
    )?;
    // Recovery: stop the holder; task and container removal then succeed.
    case.record(
        RECOVERY,
        Command::new("kill").arg("-KILL").arg(holder.to_string()),
    );
    case.rt.kill_helper(holder);
    let out = case.ctr_recorded(RECOVERY, &["-n", NS, "task", "rm", id]);
    ensure!(
        out.status.success(),
        "task removal after killing the holder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = case.ctr_recorded(RECOVERY, &["-n", NS, "container", "rm", id]);
    ensure!(
        out.status.success(),
        "container removal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        case.ctr_status(NS, id).is_none(),
        "task held still listed after recovery"
    );
    Ok(())
}

// --- plain containerd (as in kind): shim stopped, immutable snapshot --------------------------

fn ctr_run(case: &Case, id: &str, cmd: &[&str]) -> Result<()> {
    let cgroup = format!("/{}/{id}", case.rt.cgroup);
    let mut args = vec!["-n", NS, "run", "-d", "--cgroup", &cgroup, CTR_IMAGE, id];
    args.extend_from_slice(cmd);
    let out = case.rt.ctr(&args);
    ensure!(
        out.status.success(),
        "ctr run {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn task_rootfs(case: &Case, id: &str) -> PathBuf {
    case.rt.dir.join(format!(
        "run/containerd/io.containerd.runtime.v2.task/{NS}/{id}/rootfs"
    ))
}

/// The overlay upper dir of a task's rootfs mount, from /proc/self/mountinfo.
fn task_upper(case: &Case, id: &str) -> Result<PathBuf> {
    let rootfs = task_rootfs(case, id);
    let target = rootfs.to_string_lossy().into_owned();
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(target.as_str()))
        .flat_map(|l| l.rsplit(' ').next().unwrap_or_default().split(','))
        .find_map(|o| o.strip_prefix("upperdir=").map(PathBuf::from))
        .ok_or_else(|| anyhow!("no overlay mount with an upperdir at {target}"))
}

pub fn containerd_shim_stopped(case: &mut Case) -> Result<()> {
    case.import_image_into_containerd()?;
    let id = "shimhang";
    ctr_run(case, id, &["sleep", "3600"])?;
    let shim = case
        .rt
        .shim_pid(id)
        .ok_or_else(|| anyhow!("no shim found for {id}"))?;
    case.kill(CMDS, "STOP", &[shim])?;
    let result = (|| -> Result<()> {
        wait_for(
            Duration::from_secs(20),
            "containerd to report task shimhang UNKNOWN",
            || case.ctr_status(NS, id).as_deref() == Some("UNKNOWN"),
        )?;
        case.ctr_recorded(CMDS, &["-n", NS, "task", "ls"]);
        let mut kill = Command::new("timeout");
        kill.arg("3")
            .arg("ctr")
            .arg("--address")
            .arg(case.rt.containerd_socket());
        kill.args(["-n", NS, "task", "kill", "-s", "KILL", id]);
        let out = case.record(CMDS, &mut kill);
        ensure!(
            out.status.code() == Some(124),
            "ctr task kill did not hang on a stopped shim: {:?}",
            out.status
        );
        case.diagnose(
            NS,
            &[task_rootfs(case, id).to_string_lossy().into_owned()],
            &[],
            "runtime-hang",
        )
    })();
    // Recovery: SIGCONT the shim; the task can then be killed and removed.
    case.kill(RECOVERY, "CONT", &[shim])?;
    result?;
    case.ctr_recorded(RECOVERY, &["-n", NS, "task", "kill", "-s", "KILL", id]);
    wait_for(
        Duration::from_secs(10),
        "task shimhang to be STOPPED after SIGCONT",
        || case.ctr_status(NS, id).as_deref() == Some("STOPPED"),
    )?;
    let out = case.ctr_recorded(RECOVERY, &["-n", NS, "task", "rm", id]);
    ensure!(
        out.status.success(),
        "task removal after SIGCONT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = case.ctr_recorded(RECOVERY, &["-n", NS, "container", "rm", id]);
    ensure!(
        out.status.success(),
        "container removal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        case.ctr_status(NS, id).is_none(),
        "task shimhang still listed after recovery"
    );
    Ok(())
}

pub fn containerd_immutable_snapshot_leak(case: &mut Case) -> Result<()> {
    case.import_image_into_containerd()?;
    let id = "immutable";
    ctr_run(
        case,
        id,
        &["sh", "-c", "echo data > /keep.txt; exec sleep 3600"],
    )?;
    let upper = task_upper(case, id)?;
    let snapshot = upper
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("upper dir has no parent"))?;
    let file = upper.join("keep.txt");
    wait_for(
        Duration::from_secs(10),
        "the task to write /keep.txt into its snapshot",
        || file.exists(),
    )?;
    ensure!(
        case.record(CMDS, Command::new("chattr").arg("+i").arg(&file))
            .status
            .success(),
        "chattr +i failed"
    );
    case.ctr_recorded(CMDS, &["-n", NS, "task", "kill", "-s", "KILL", id]);
    wait_for(
        Duration::from_secs(10),
        "task immutable to be STOPPED",
        || case.ctr_status(NS, id).as_deref() == Some("STOPPED"),
    )?;
    // With containerd, removal succeeds: the snapshot leaks instead of blocking.
    ensure!(
        case.ctr_recorded(CMDS, &["-n", NS, "task", "rm", id])
            .status
            .success(),
        "ctr task rm failed"
    );
    ensure!(
        case.ctr_recorded(CMDS, &["-n", NS, "container", "rm", id])
            .status
            .success(),
        "ctr container rm failed"
    );
    let log = case.rt.dir.join("containerd.log");
    wait_for(
        Duration::from_secs(20),
        "containerd's garbage collector to fail removing the snapshot",
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("failed to remove directory")),
    )?;
    ensure!(
        snapshot.exists(),
        "the snapshot directory {} did not leak",
        snapshot.display()
    );
    case.record(CMDS, Command::new("ls").arg("-ld").arg(&snapshot));
    case.diagnose(
        NS,
        &[snapshot.to_string_lossy().into_owned()],
        std::slice::from_ref(&snapshot),
        "immutable-file",
    )?;
    // Recovery: clear the attribute; the next garbage collection (kicked here by
    // removing a scratch snapshot) removes the leaked directory.
    ensure!(
        case.record(RECOVERY, Command::new("chattr").arg("-i").arg(&file))
            .status
            .success(),
        "chattr -i failed"
    );
    case.ctr_recorded(
        RECOVERY,
        &["-n", NS, "snapshots", "prepare", "terminus-gc-kick"],
    );
    case.ctr_recorded(RECOVERY, &["-n", NS, "snapshots", "rm", "terminus-gc-kick"]);
    wait_for(
        Duration::from_secs(20),
        "garbage collection to remove the leaked snapshot directory",
        || !snapshot.exists(),
    )?;
    case.record(RECOVERY, Command::new("ls").arg("-ld").arg(&snapshot));
    Ok(())
}
