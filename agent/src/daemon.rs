//! Resident helper processes (fillers, mount holders, strays in a pod's cgroup).
//!
//! The agent re-executes itself (`/proc/self/exe`) with a hidden `__fill`/`__hold`
//! subcommand (`__stray` too), argv[0] `terminus-agent` and env `TERMINUS_RUN=<run>`, so leftovers of a
//! killed run can always be found in /proc by `gc`. The child calls setsid() and, once
//! its fault is in place, prints one readiness line on stdout (`ok {json}` or
//! `err message`); the parent waits for that line under a deadline and then exits, so
//! the child is re-parented to init: the classic double fork, with the agent's own
//! process as the middle generation.
//!
//! Architecture invariant: every daemon carries its run in its environment and keeps
//! no inherited fd, so it can be found (and killed) by run alone and holds nothing of
//! the `docker exec` that started it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::procfs;

pub const ARGV0: &str = "terminus-agent";
pub const RUN_ENV: &str = "TERMINUS_RUN";
pub const STATE_ENV: &str = "TERMINUS_AGENT_STATE_DIR";
pub const CGROUP_ENV: &str = "TERMINUS_AGENT_DAEMON_CGROUP";
pub const DAEMON_SUBCOMMANDS: [&str; 3] = ["__fill", "__hold", "__stray"];

/// A started daemon: its pid, start time and the JSON it reported.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub start_ticks: u64,
    pub report: serde_json::Value,
}

/// Starts `args` as a daemon of `run` and waits (up to `deadline`) for its readiness
/// line; a daemon that is not ready in time is killed, so a failed start leaves no process.
pub fn spawn(store: &Store, run: &str, args: &[OsString], deadline: Duration) -> Result<Started> {
    std::fs::create_dir_all(&store.dir)
        .map_err(|e| AgentError::io(format!("creating {}", store.dir.display()), e))?;
    let log_path = store.log_path(run);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| AgentError::io(format!("opening {}", log_path.display()), e))?;
    let mut child = Command::new("/proc/self/exe")
        .arg0(ARGV0)
        .args(args)
        .env(RUN_ENV, run)
        .env(STATE_ENV, &store.dir)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| AgentError::io("starting the daemon process", e))?;
    let pid = child.id() as i32;
    let Some(stdout) = child.stdout.take() else {
        return Err(AgentError::Failed("daemon stdout missing".into()));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let fail = |child: &mut std::process::Child, msg: String| -> AgentError {
        let _ = child.kill();
        let _ = child.wait();
        failed_with_log(msg, &log_path)
    };
    match rx.recv_timeout(deadline) {
        Ok(Ok(line)) => {
            let line = line.trim_end();
            if let Some(json) = line.strip_prefix("ok ") {
                let report = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
                let start_ticks = procfs::stat(pid).map(|s| s.start_ticks).unwrap_or(0);
                // Not waited for: it outlives us and is adopted by init.
                drop(child);
                Ok(Started {
                    pid,
                    start_ticks,
                    report,
                })
            } else if let Some(msg) = line.strip_prefix("err ") {
                let _ = child.wait();
                Err(AgentError::Failed(msg.to_string()))
            } else {
                Err(fail(&mut child, "daemon exited before it was ready".into()))
            }
        }
        Ok(Err(e)) => Err(fail(&mut child, format!("reading daemon readiness: {e}"))),
        Err(_) => Err(fail(
            &mut child,
            format!("daemon not ready within {}s; killed it", deadline.as_secs()),
        )),
    }
}

/// A failure to start a daemon, with the last lines of its log (its stderr) if any.
fn failed_with_log(msg: String, log_path: &Path) -> AgentError {
    let text = std::fs::read_to_string(log_path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("\n");
    if tail.is_empty() {
        AgentError::Failed(msg)
    } else {
        AgentError::Failed(format!(
            "{msg}\ndaemon log ({}):\n{tail}",
            log_path.display()
        ))
    }
}

/// Daemon side: detach from the caller's session, take a readable name (comm would
/// otherwise be `exe`, from /proc/self/exe), and move to the cgroup named by
/// `TERMINUS_AGENT_DAEMON_CGROUP` if set. The last step matters when the agent runs as a
/// pod: the runtime kills every process in the pod's cgroup when the pod goes away.
pub fn detach(comm: &std::ffi::CStr) -> std::result::Result<(), String> {
    crate::sys::close_inherited_fds();
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_name(comm);
    if let Some(dir) = std::env::var_os(CGROUP_ENV).filter(|d| !d.is_empty()) {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating cgroup {}: {e}", dir.display()))?;
        std::fs::write(dir.join("cgroup.procs"), b"0")
            .map_err(|e| format!("joining cgroup {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Removes the daemon cgroup if it is set and empty (rmdir fails harmlessly otherwise).
pub fn remove_cgroup_if_empty() -> Option<String> {
    let dir = std::env::var_os(CGROUP_ENV).filter(|d| !d.is_empty())?;
    std::fs::remove_dir(&dir).ok()?;
    Some(format!(
        "removed cgroup {}",
        std::path::Path::new(&dir).display()
    ))
}

/// Daemon side: report readiness (or failure) to the waiting parent.
pub fn report_ok(v: &serde_json::Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "ok {v}");
    let _ = o.flush();
}

pub fn report_err(msg: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "err {}", msg.replace('\n', " "));
    let _ = o.flush();
}

/// Daemon processes in /proc (argv[0] `terminus-agent`, argv[1] `__fill`/`__hold`) with
/// `TERMINUS_RUN` equal to `run` (any run when `None`), started with the same state
/// directory as `store`. Returns (pid, run, argv).
pub fn find(store: &Store, run: Option<&str>) -> Vec<(i32, String, Vec<String>)> {
    let state_kv = format!("{STATE_ENV}={}", store.dir.display());
    let me = std::process::id() as i32;
    procfs::pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(|pid| {
            let argv = procfs::cmdline(pid);
            if argv.first().map(String::as_str) != Some(ARGV0)
                || !argv
                    .get(1)
                    .is_some_and(|a| DAEMON_SUBCOMMANDS.contains(&a.as_str()))
            {
                return None;
            }
            let env = procfs::environ(pid);
            if !env.contains(&state_kv) {
                return None;
            }
            let r = env
                .into_iter()
                .find_map(|kv| kv.strip_prefix(&format!("{RUN_ENV}=")).map(str::to_string))?;
            if run.is_some_and(|want| want != r) || !procfs::alive(pid) {
                return None;
            }
            Some((pid, r, argv))
        })
        .collect()
}

/// The value after `--flag` in an argv.
pub fn arg_value(argv: &[String], flag: &str) -> Option<String> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1).cloned())
}

/// SIGKILLs a process and waits (up to 5 s) until it is gone or a zombie.
pub fn kill_and_wait(pid: i32) -> bool {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for _ in 0..100 {
        if !procfs::alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !procfs::alive(pid)
}
