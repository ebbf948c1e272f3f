//! `gc`: undo everything a run's ledger records (thawing processes, starting stopped
//! units, killing holders and fillers, restoring a tmpfs'd directory, clearing flags,
//! putting files moved aside back, thawing and killing strays in pod cgroups, deleting
//! the iptables rule of a partition),
//! plus any resident daemon of the run found in /proc. Idempotent: what is already undone is skipped; what fails stays in
//! the ledger for the next attempt.
//!
//! Architecture invariant: gc undoes only what the ledger names, plus the agent's own
//! daemons of the run (found by `TERMINUS_RUN` in their environment) and the run's own
//! bind target; it never guesses a process, file or flag from elsewhere.
//!
//! Architecture invariant: a process is signalled only if its pid *and* start time
//! match the entry (`procfs::same_process`), so a recycled pid is never touched.

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use terminus_core::ledger::{Entry, GcReport, RunGc};

use crate::aside;
use crate::attrs;
use crate::block;
use crate::daemon;
use crate::error::Result;
use crate::fill;
use crate::hold;
use crate::ledger::Store;
use crate::procfs;
use crate::stray;
use crate::tmpfs;
use crate::unit;

/// Undoes one entry. Ok(message) when the entry can be dropped from the ledger.
fn undo(run: &str, e: &Entry) -> std::result::Result<String, String> {
    match e {
        Entry::Freeze {
            pid,
            start_ticks,
            comm,
            ..
        } => thaw(*pid, *start_ticks, comm),
        Entry::Immutable { path, .. } => clear_immutable(path),
        Entry::Fill {
            files_dir,
            pid,
            start_ticks,
            ..
        } => stop_filler(run, files_dir, pid.zip(*start_ticks)),
        Entry::Hold {
            path,
            pid,
            start_ticks,
            bind_target,
            ..
        } => stop_holder(path, pid.zip(*start_ticks), bind_target.as_deref()),
        Entry::Stopped { unit, .. } => unit::start(unit),
        Entry::Tmpfs { dir, source, .. } => tmpfs::restore_entry(run, dir, source),
        Entry::Aside { path, aside, .. } => aside::put_back(path, aside),
        Entry::Stray {
            dirs,
            freeze,
            pid,
            start_ticks,
            ..
        } => stray::undo(dirs, freeze, pid.zip(*start_ticks)),
        Entry::Blocked {
            dest,
            port,
            comment,
            ..
        } => block::unblock(dest, *port, comment),
    }
}

fn thaw(pid: i32, start_ticks: u64, comm: &str) -> std::result::Result<String, String> {
    if !procfs::same_process(pid, start_ticks) {
        return Ok(format!("pid {pid} ({comm}) is gone; nothing to thaw"));
    }
    kill(Pid::from_raw(pid), Signal::SIGCONT)
        .map_err(|err| format!("SIGCONT {pid} ({comm}): {err}"))?;
    Ok(format!("thawed pid {pid} ({comm})"))
}

fn clear_immutable(path: &Path) -> std::result::Result<String, String> {
    match attrs::set_immutable(path, false) {
        Ok((b, _)) if b & attrs::IMMUTABLE != 0 => {
            Ok(format!("cleared immutable flag on {}", path.display()))
        }
        Ok(_) => Ok(format!("{} was not immutable", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} is gone", path.display()))
        }
        Err(err) => Err(format!(
            "clearing immutable flag on {}: {err}",
            path.display()
        )),
    }
}

/// Kills a recorded daemon if it is still the same process. Ok(true) when it was
/// running and is now gone; Err when it would not exit.
fn kill_recorded(what: &str, process: Option<(i32, u64)>) -> std::result::Result<bool, String> {
    match process {
        Some((pid, t)) if procfs::same_process(pid, t) => {
            if daemon::kill_and_wait(pid) {
                Ok(true)
            } else {
                Err(format!("{what} pid {pid} did not exit"))
            }
        }
        _ => Ok(false),
    }
}

fn stop_filler(
    run: &str,
    files_dir: &Path,
    process: Option<(i32, u64)>,
) -> std::result::Result<String, String> {
    let mut msg = Vec::new();
    if kill_recorded("filler", process)? {
        msg.extend(process.map(|(pid, _)| format!("stopped filler pid {pid}")));
    }
    match fill::remove_files_dir(files_dir, run) {
        Ok(true) => msg.push(format!("removed {}", files_dir.display())),
        Ok(false) => {}
        Err(err) => return Err(format!("removing {}: {err}", files_dir.display())),
    }
    Ok(if msg.is_empty() {
        format!("filler of {} already gone", files_dir.display())
    } else {
        msg.join(", ")
    })
}

fn stop_holder(
    path: &Path,
    process: Option<(i32, u64)>,
    bind_target: Option<&Path>,
) -> std::result::Result<String, String> {
    let mut msg = Vec::new();
    if kill_recorded("holder", process)? {
        msg.extend(
            process.map(|(pid, _)| format!("killed holder pid {pid} of {}", path.display())),
        );
    }
    if let Some(t) = bind_target {
        if t.exists() {
            hold::remove_bind_target(t)
                .map_err(|err| format!("removing {}: {err}", t.display()))?;
            msg.push(format!("removed {}", t.display()));
        }
    }
    Ok(if msg.is_empty() {
        format!("holder of {} already gone", path.display())
    } else {
        msg.join(", ")
    })
}

/// Thaw first (a frozen runtime blocks everything else), then start stopped units,
/// then holders, fillers, the tmpfs they filled (only once they stopped writing), flags.
fn priority(e: &Entry) -> u8 {
    match e {
        // The node cut off from the API server: first, so everything after it can report.
        Entry::Freeze { .. } | Entry::Blocked { .. } => 0,
        Entry::Stopped { .. } => 1,
        Entry::Hold { .. } | Entry::Stray { .. } => 2,
        Entry::Fill { .. } => 3,
        Entry::Tmpfs { .. } => 4,
        Entry::Immutable { .. } => 5,
        Entry::Aside { .. } => 6,
    }
}

fn gc_run(store: &Store, run: &str) -> Result<RunGc> {
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    let mut l = store.open(run)?;
    // Daemons first (ledger entries may lack their pid if the agent died mid-spawn).
    for (pid, _, argv) in daemon::find(store, Some(run)) {
        // A frozen stray receives SIGKILL only once thawed.
        if argv.get(1).map(String::as_str) == Some("__stray") {
            actions.extend(stray::thaw_own_cgroups(pid));
        }
        if daemon::kill_and_wait(pid) {
            actions.push(format!("killed daemon pid {pid} ({})", argv.join(" ")));
            if argv.get(1).map(String::as_str) == Some("__fill") {
                if let Some(fd) = daemon::arg_value(&argv, "--files-dir") {
                    if let Ok(true) = fill::remove_files_dir(&PathBuf::from(&fd), run) {
                        actions.push(format!("removed {fd}"));
                    }
                }
            }
        } else {
            errors.push(format!("daemon pid {pid} did not exit"));
        }
    }
    let mut order: Vec<usize> = (0..l.ledger.entries.len()).collect();
    order.sort_by_key(|&i| (priority(&l.ledger.entries[i]), std::cmp::Reverse(i)));
    let mut keep = vec![false; l.ledger.entries.len()];
    for i in order {
        match undo(run, &l.ledger.entries[i]) {
            Ok(m) => actions.push(m),
            Err(m) => {
                errors.push(m);
                keep[i] = true;
            }
        }
    }
    let mut k = keep.into_iter();
    l.ledger.entries.retain(|_| k.next().unwrap_or(true));
    l.save()?;
    // A bind target left by a holder that died without a ledger entry (all holders of
    // this run are dead by now, so the directory is nobody's mount point).
    if !l
        .ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::Hold { .. }))
    {
        let t = hold::bind_target(run);
        if t.exists() {
            match hold::remove_bind_target(&t) {
                Ok(()) => actions.push(format!("removed {}", t.display())),
                Err(err) => errors.push(format!("removing {}: {err}", t.display())),
            }
        }
    }
    let ledger_removed = l.ledger.entries.is_empty();
    actions.extend(daemon::remove_cgroup_if_empty());
    Ok(RunGc {
        run: run.to_owned(),
        actions,
        errors,
        ledger_removed,
    })
}

/// Runs gc for one run, or for every run with a ledger or a live daemon.
pub fn gc(store: &Store, run: Option<&str>) -> Result<GcReport> {
    let runs: Vec<String> = match run {
        Some(r) => vec![r.to_string()],
        None => {
            let mut v = store.runs();
            for (_, r, _) in daemon::find(store, None) {
                if !v.contains(&r) && crate::ledger::validate_run(&r).is_ok() {
                    v.push(r);
                }
            }
            v
        }
    };
    let runs = runs
        .iter()
        .map(|r| gc_run(store, r))
        .collect::<Result<Vec<_>>>()?;
    let ok = runs.iter().all(|r| r.errors.is_empty());
    Ok(GcReport { ok, runs })
}
