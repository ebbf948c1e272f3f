//! Kill points: where the kill tier (`harness/tests/kill.rs`) has a trial SIGKILL its own
//! process, to prove that `terminus gc` undoes whatever a killed run left behind.
//!
//! A trial reaches each [`KillPoint`] in order; when `TERMINUS_KILL_AT` names the point
//! (and `TERMINUS_KILL_SCENARIO`, if set, names the trial's scenario), the process
//! raises SIGKILL on itself there. Raising it from inside makes the phase exact and a
//! failure replayable from the printed point; SIGKILL itself runs no handler, no Drop
//! and no recover, exactly as a kill from outside.
//!
//! Architecture invariant: without `TERMINUS_KILL_AT` a kill point does nothing; nothing
//! else in the harness reads these variables.

use std::fmt;
use std::str::FromStr;

use super::Timeline;

/// The environment variable naming the point to die at.
pub const KILL_AT_ENV: &str = "TERMINUS_KILL_AT";
/// Optionally restricts the kill to one scenario's trial (by scenario id).
pub const KILL_SCENARIO_ENV: &str = "TERMINUS_KILL_SCENARIO";

/// The phases a trial can be killed at, in the order a trial reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillPoint {
    /// The workload runs; no fault yet.
    AfterWorkload,
    /// The fault is applied and recorded; the pod is not deleted yet.
    AfterFault,
    /// The pod's deletion was requested.
    AfterDelete,
    /// The evidence bundle is gathered; the detectors have not answered yet.
    DuringDetect,
    /// The remedy's first step ran; the rest did not.
    DuringRemedy,
}

impl KillPoint {
    pub const ALL: [KillPoint; 5] = [
        KillPoint::AfterWorkload,
        KillPoint::AfterFault,
        KillPoint::AfterDelete,
        KillPoint::DuringDetect,
        KillPoint::DuringRemedy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KillPoint::AfterWorkload => "after-workload",
            KillPoint::AfterFault => "after-fault",
            KillPoint::AfterDelete => "after-delete",
            KillPoint::DuringDetect => "during-detect",
            KillPoint::DuringRemedy => "during-remedy",
        }
    }
}

impl fmt::Display for KillPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KillPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KillPoint::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = KillPoint::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown kill point {s:?}: use one of {}", names.join(", "))
            })
    }
}

/// Whether the environment asks this scenario's trial to die at `point`.
fn wanted(point: KillPoint, scenario: &str) -> bool {
    let at = std::env::var(KILL_AT_ENV).ok();
    let only = std::env::var(KILL_SCENARIO_ENV).ok();
    asks(at.as_deref(), only.as_deref(), point, scenario)
}

fn asks(at: Option<&str>, only: Option<&str>, point: KillPoint, scenario: &str) -> bool {
    at.is_some_and(|at| at == point.as_str())
        && only.is_none_or(|only| only.is_empty() || only == scenario)
}

/// The trial of `scenario` has reached `point`: dies here by SIGKILL when asked to.
pub fn reached(point: KillPoint, scenario: &str, timeline: &Timeline) {
    if !wanted(point, scenario) {
        return;
    }
    timeline.note("kill", format!("{KILL_AT_ENV}={point}: SIGKILL"));
    // The kill tier reads this line to know the point was reached (stderr is unbuffered).
    eprintln!("terminus: kill point {point} reached in {scenario}: raising SIGKILL");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught or ignored; should raise fail, do not carry on as if
    // nothing had been asked.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_by_their_names_in_order() {
        for p in KillPoint::ALL {
            assert_eq!(p.as_str().parse::<KillPoint>(), Ok(p));
        }
        let err = "after-lunch".parse::<KillPoint>().unwrap_err();
        assert!(err.contains("after-workload, after-fault"), "{err}");
    }

    #[test]
    fn only_the_named_point_of_the_named_scenario_dies() {
        let p = KillPoint::AfterFault;
        assert!(asks(Some("after-fault"), None, p, "finalizer"));
        assert!(asks(Some("after-fault"), Some(""), p, "finalizer"));
        assert!(asks(Some("after-fault"), Some("finalizer"), p, "finalizer"));
        assert!(!asks(
            Some("after-fault"),
            Some("disk-full"),
            p,
            "finalizer"
        ));
        assert!(!asks(Some("after-delete"), None, p, "finalizer"));
        assert!(!asks(None, None, p, "finalizer"));
    }
}
