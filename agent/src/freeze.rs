//! Runtime-hang faults: SIGSTOP / SIGCONT of a process (containerd, a shim, kubelet).
//!
//! Architecture invariant: a process is recorded (pid and start time) before it is
//! stopped; an ambiguous target is refused unless `--all` says several are meant.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use terminus_core::ledger::Entry;

use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::procfs;
use crate::timefmt::now_epoch;

pub const DEFAULT_TASK_ROOT: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io";

/// How the target is named on the command line.
#[derive(Debug, Default, Clone)]
pub struct Select {
    pub pid: Option<i32>,
    pub name: Option<String>,
    pub matching: Option<String>,
    pub shim_of: Option<String>,
    pub task_root: Option<String>,
    pub all: bool,
}

/// Resolves a selection to pids, with a clear error for none or (without `--all`) many.
pub fn resolve(s: &Select) -> Result<Vec<i32>> {
    let given = [s.pid.is_some(), s.name.is_some(), s.shim_of.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        return Err(AgentError::Usage(
            "name exactly one target: PID, --name PROGRAM or --shim-of CONTAINER_ID".into(),
        ));
    }
    if let Some(pid) = s.pid {
        if pid <= 1 {
            return Err(AgentError::Usage(format!("refusing to signal pid {pid}")));
        }
        if !procfs::alive(pid) {
            return Err(AgentError::Usage(format!("no such process: {pid}")));
        }
        return Ok(vec![pid]);
    }
    if let Some(cid) = &s.shim_of {
        return shim_of(cid, s.task_root.as_deref().unwrap_or(DEFAULT_TASK_ROOT)).map(|p| vec![p]);
    }
    let name = s.name.as_deref().unwrap_or_default();
    let me = std::process::id() as i32;
    let pids: Vec<i32> = procfs::find_by_name(name)
        .into_iter()
        .filter(|&p| p != me && p > 1)
        .filter(|&p| {
            s.matching
                .as_ref()
                .is_none_or(|m| procfs::cmdline(p).join(" ").contains(m.as_str()))
        })
        .collect();
    match pids.len() {
        0 => Err(AgentError::Failed(format!(
            "no process named {name}{}",
            s.matching
                .as_ref()
                .map(|m| format!(" with {m:?} in its arguments"))
                .unwrap_or_default()
        ))),
        1 => Ok(pids),
        _ if s.all => Ok(pids),
        n => Err(AgentError::Usage(format!(
            "{n} processes match {name} (pids {:?}); narrow with --match or pass --all",
            pids
        ))),
    }
}

/// The shim serving a container: the parent of the container's init process, whose pid
/// containerd writes to `<task root>/<id>/init.pid`. Falls back to a shim whose
/// arguments name the id (a pod sandbox's own shim).
pub fn shim_of(cid: &str, task_root: &str) -> Result<i32> {
    if cid.is_empty() || cid.contains('/') {
        return Err(AgentError::Usage(format!("invalid container id {cid:?}")));
    }
    let pidfile = Path::new(task_root).join(cid).join("init.pid");
    if let Some(init) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        if let Some(st) = procfs::stat(init) {
            if st.ppid > 1 {
                return Ok(st.ppid);
            }
        }
    }
    procfs::pids()
        .into_iter()
        .find(|&p| {
            let argv = procfs::cmdline(p);
            argv.first().is_some_and(|a| a.contains("containerd-shim"))
                && argv.iter().any(|a| a == cid)
        })
        .ok_or_else(|| {
            AgentError::Failed(format!(
                "no shim found for container {cid} (no live init in {} and no shim naming it)",
                pidfile.display()
            ))
        })
}

fn wait_state(pid: i32, want_stopped: bool) -> Option<char> {
    for _ in 0..40 {
        let st = procfs::stat(pid)?.state;
        if (st == 'T' || st == 't') == want_stopped {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    procfs::stat(pid).map(|s| s.state)
}

fn describe(pid: i32) -> serde_json::Value {
    let st = procfs::stat(pid);
    json!({
        "pid": pid,
        "comm": st.as_ref().map(|s| s.comm.clone()),
        "args": procfs::cmdline(pid).join(" "),
        "state": st.map(|s| s.state.to_string()),
    })
}

pub fn freeze(store: &Store, run: &str, sel: &Select) -> Result<serde_json::Value> {
    let pids = resolve(sel)?;
    let mut l = store.open(run)?;
    let mut out = Vec::new();
    for pid in pids {
        let Some(st) = procfs::stat(pid) else {
            continue;
        };
        // Write-ahead: the ledger names the exact process before it is stopped.
        l.record(Entry::Freeze {
            pid,
            start_ticks: st.start_ticks,
            comm: st.comm.clone(),
            at: now_epoch(),
        })?;
        kill(Pid::from_raw(pid), Signal::SIGSTOP)
            .map_err(|e| AgentError::Failed(format!("SIGSTOP {pid}: {e}")))?;
        wait_state(pid, true);
        out.push(describe(pid));
    }
    Ok(json!({"run": run, "frozen": out}))
}

/// Thaws the given target, or every process frozen by `run` when no target is named.
/// Matching ledger entries (of any run) are removed.
pub fn thaw(store: &Store, run: Option<&str>, sel: &Select) -> Result<serde_json::Value> {
    let named = sel.pid.is_some() || sel.name.is_some() || sel.shim_of.is_some();
    let mut targets: Vec<(i32, Option<u64>)> = Vec::new();
    if named {
        targets.extend(resolve(sel)?.into_iter().map(|p| (p, None)));
    } else {
        let Some(run) = run else {
            return Err(AgentError::Usage(
                "thaw needs a target (PID/--name/--shim-of) or --run".into(),
            ));
        };
        let l = store.open(run)?;
        for e in &l.ledger.entries {
            if let Entry::Freeze {
                pid, start_ticks, ..
            } = e
            {
                targets.push((*pid, Some(*start_ticks)));
            }
        }
    }
    let mut thawed = Vec::new();
    let mut gone = Vec::new();
    for (pid, st) in &targets {
        let ours = st.is_none_or(|t| procfs::same_process(*pid, t));
        if ours && procfs::alive(*pid) {
            kill(Pid::from_raw(*pid), Signal::SIGCONT)
                .map_err(|e| AgentError::Failed(format!("SIGCONT {pid}: {e}")))?;
            wait_state(*pid, false);
            thawed.push(describe(*pid));
        } else {
            gone.push(*pid);
        }
    }
    let pids: Vec<i32> = targets.iter().map(|t| t.0).collect();
    let runs = match run {
        Some(r) => vec![r.to_string()],
        None => store.runs(),
    };
    for r in runs {
        let mut l = store.open(&r)?;
        let before = l.ledger.entries.len();
        l.ledger
            .entries
            .retain(|e| !matches!(e, Entry::Freeze { pid, .. } if pids.contains(pid)));
        if l.ledger.entries.len() != before {
            l.save()?;
        }
    }
    Ok(json!({"thawed": thawed, "gone": gone}))
}
