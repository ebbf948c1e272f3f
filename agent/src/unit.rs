//! Stopping kubelet or containerd with systemd (the stop-kubelet fault's `how: stop`)
//! and starting it again (gc).
//!
//! Architecture invariant: a unit is written to the ledger before `systemctl stop`
//! runs, so gc starts it again even when the harness died right after asking; only the
//! units in [`UNITS`] are ever stopped.

use std::time::{Duration, Instant};

use serde_json::json;
use terminus_core::ledger::Entry;

use crate::command;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::timefmt::now_epoch;

/// The units a fault may stop: the two a pod's deletion depends on.
pub const UNITS: [&str; 2] = ["kubelet", "containerd"];

/// How long one `systemctl` call may take: stopping kubelet waits for its own exit.
const SYSTEMCTL_DEADLINE: Duration = Duration::from_secs(90);
/// How long a started unit has to report active before gc keeps its entry.
const ACTIVE_DEADLINE: Duration = Duration::from_secs(30);

fn check_unit(unit: &str) -> Result<()> {
    if UNITS.contains(&unit) {
        Ok(())
    } else {
        Err(AgentError::Usage(format!(
            "unit {unit:?} may not be stopped: use one of {}",
            UNITS.join(", ")
        )))
    }
}

/// Records the unit in `run`'s ledger, then stops it.
pub fn stop(store: &Store, run: &str, unit: &str) -> Result<serde_json::Value> {
    check_unit(unit)?;
    let mut l = store.open(run)?;
    let already = l
        .ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::Stopped { unit: u, .. } if u == unit));
    if !already {
        l.record(Entry::Stopped {
            unit: unit.to_owned(),
            at: now_epoch(),
        })?;
    }
    command::run(&["systemctl", "stop", unit], SYSTEMCTL_DEADLINE).map_err(AgentError::Failed)?;
    Ok(json!({"run": run, "stopped": unit, "state": state(unit)}))
}

/// `systemctl is-active UNIT`'s answer (`active`, `inactive`, `failed`, ...).
pub fn state(unit: &str) -> String {
    // is-active exits non-zero for anything but active: its stdout is the answer either way.
    match command::execute(&["systemctl", "is-active", unit], Duration::from_secs(20)) {
        Ok(done) if !done.stdout.trim().is_empty() => done.stdout.trim().to_owned(),
        Ok(done) => format!("unknown ({})", done.stderr.trim()),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Starts the unit and waits until it is active. Ok(message) when it is.
pub fn start(unit: &str) -> std::result::Result<String, String> {
    if state(unit) == "active" {
        return Ok(format!("{unit} is active"));
    }
    command::run(&["systemctl", "start", unit], SYSTEMCTL_DEADLINE)?;
    let started = Instant::now();
    loop {
        let now = state(unit);
        if now == "active" {
            return Ok(format!("started {unit}"));
        }
        if started.elapsed() >= ACTIVE_DEADLINE {
            return Err(format!(
                "started {unit}, but it is {now} after {}s",
                ACTIVE_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kubelet_and_containerd_may_be_stopped() {
        assert!(check_unit("kubelet").is_ok());
        assert!(check_unit("containerd").is_ok());
        let e = check_unit("sshd").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("kubelet, containerd"), "{e}");
    }
}
