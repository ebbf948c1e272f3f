//! Crowded trials: the shared-node scenarios of a run stuck on one worker at the same
//! time, so that every member's bundle holds its neighbours' faults and the detector must
//! name its own cause among them.
//!
//! A [`Crowd`] is the gate the members pass twice: [`Gate::Stuck`] after the member's pod
//! is observed stuck and before it collects evidence, and [`Gate::Collected`] after it
//! collected its bundle and before it runs its remedy (or, on any other path, before its
//! fault is recovered). A gate opens when every member has reached it or dropped out; a
//! member drops out by reaching a later gate or when its [`Member`] guard is dropped (its
//! trial ended, failed or panicked), so a stopped member never holds the others.
//!
//! Architecture invariant: a member never collects before every live neighbour is stuck;
//! never remedies before every neighbour has collected.
//! Architecture invariant: every gate wait has a deadline, counted from the crowd's start,
//! and its timeout names the members it waited for and where each one was.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cause::CauseId;
use crate::scenario::Scenario;
use crate::wait::{self, Check};

/// The points where every member waits for the others, in the order they are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gate {
    /// Before collecting evidence: every live member's pod is stuck.
    Stuck,
    /// Before any remedy or recover: every member has its bundle.
    Collected,
}

impl Gate {
    fn awaited(self) -> &'static str {
        match self {
            Gate::Stuck => "every crowd member's pod to be stuck",
            Gate::Collected => "every crowd member to have collected its bundle",
        }
    }
}

/// Slack on top of the members' own deadlines before a gate gives up: the members'
/// phases also spend time on API calls and node execs between their deadlines.
const SLACK: Duration = Duration::from_secs(60);

/// A member as its neighbours see it (and as `crowd.json` lists it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub scenario: String,
    pub cause: CauseId,
}

/// Where a member is: the last gate it reached, and whether it has stopped.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    reached: Option<Gate>,
    left: bool,
}

impl Progress {
    fn passed(self, gate: Gate) -> bool {
        self.left || self.reached.is_some_and(|r| r >= gate)
    }

    fn describe(self) -> &'static str {
        match (self.left, self.reached) {
            (true, _) => "stopped",
            (false, None) => "not stuck yet",
            (false, Some(Gate::Stuck)) => "stuck, collecting",
            (false, Some(Gate::Collected)) => "collected",
        }
    }
}

/// The gate shared by the members of one crowd.
#[derive(Debug)]
pub struct Crowd {
    members: Vec<Neighbour>,
    progress: Mutex<BTreeMap<String, Progress>>,
    started: Instant,
    /// How long after the start each gate may stay closed.
    stuck_by: Duration,
    collected_by: Duration,
}

impl Crowd {
    /// A crowd of `members`, its gates' deadlines from their own phase deadlines: a gate
    /// gives up only once the slowest member would have failed on its own.
    pub fn new(members: &[Scenario]) -> Arc<Crowd> {
        let longest =
            |f: fn(&Scenario) -> Duration| members.iter().map(f).max().unwrap_or_default();
        // Ready, fault applied, deletion watched for the hold (or gone and its debris
        // reported: twice `stuck`).
        let stuck_by = longest(|s| {
            s.deadlines.ready + s.deadlines.fault + s.observe.hold + s.deadlines.stuck * 2
        }) + SLACK;
        let collected_by = stuck_by + longest(|s| s.deadlines.detect) + SLACK;
        Crowd::with_deadlines(members, stuck_by, collected_by)
    }

    fn with_deadlines(
        members: &[Scenario],
        stuck_by: Duration,
        collected_by: Duration,
    ) -> Arc<Crowd> {
        let members: Vec<Neighbour> = members
            .iter()
            .map(|s| Neighbour {
                scenario: s.id.clone(),
                cause: s.cause,
            })
            .collect();
        Arc::new(Crowd {
            progress: Mutex::new(
                members
                    .iter()
                    .map(|m| (m.scenario.clone(), Progress::default()))
                    .collect(),
            ),
            members,
            started: Instant::now(),
            stuck_by,
            collected_by,
        })
    }

    pub fn members(&self) -> &[Neighbour] {
        &self.members
    }

    /// How long after its start the crowd may still be waiting at its last gate.
    pub fn collected_by(&self) -> Duration {
        self.collected_by
    }

    /// The guard of member `id`; None if `id` is not in the crowd.
    pub fn join(self: &Arc<Self>, id: &str) -> Option<Member> {
        self.members
            .iter()
            .any(|m| m.scenario == id)
            .then(|| Member {
                crowd: Arc::clone(self),
                id: id.to_owned(),
            })
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Progress)) {
        // A poisoned lock only means another member panicked while holding it; the map
        // itself is always consistent (each update is one field write).
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = progress.get_mut(id) {
            f(p);
        }
    }

    /// The members `gate` still waits for, with where each one is; empty when it is open.
    fn waiting_for(&self, gate: Gate) -> Vec<String> {
        let progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress
            .iter()
            .filter(|(_, p)| !p.passed(gate))
            .map(|(id, p)| format!("{id} ({})", p.describe()))
            .collect()
    }

    fn deadline(&self, gate: Gate) -> Duration {
        match gate {
            Gate::Stuck => self.stuck_by,
            Gate::Collected => self.collected_by,
        }
    }
}

/// One member's place in the crowd. Dropping it (the trial ended, or its task panicked
/// or was cancelled) lets every gate open without it.
#[derive(Debug)]
pub struct Member {
    crowd: Arc<Crowd>,
    id: String,
}

/// A gate that stayed closed past its deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("crowd gate: {0}")]
pub struct GateTimeout(pub wait::Timeout);

impl Member {
    /// Every other member of the crowd.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        self.crowd
            .members
            .iter()
            .filter(|m| m.scenario != self.id)
            .cloned()
            .collect()
    }

    /// Marks this member at `gate` (and so past every earlier one) and waits until every
    /// other member is there too or has stopped. Returns how long it waited.
    pub async fn arrive(&self, gate: Gate) -> Result<Duration, GateTimeout> {
        self.crowd.update(&self.id, |p| {
            p.reached = Some(p.reached.map_or(gate, |r| r.max(gate)));
        });
        let started = Instant::now();
        let left = self
            .crowd
            .deadline(gate)
            .saturating_sub(self.crowd.started.elapsed());
        wait::until(gate.awaited(), left, || async {
            let missing = self.crowd.waiting_for(gate);
            Ok::<_, std::convert::Infallible>(if missing.is_empty() {
                Check::Done(())
            } else {
                Check::Pending(format!("{} waits for {}", self.id, missing.join(", ")))
            })
        })
        .await
        .map_err(|e| match e {
            wait::WaitError::Timeout(t) => GateTimeout(t),
            wait::WaitError::Check(never) => match never {},
        })?;
        Ok(started.elapsed())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.crowd.update(&self.id, |p| p.left = true);
    }
}

/// Why a crowded trial's built-in diagnosis fails the crowd's assertion.
#[derive(Debug, Clone, PartialEq)]
pub enum Confusion {
    /// Its own cause is not ranked first (what is, if anything).
    NotFirst { first: Option<(CauseId, f64)> },
    /// A neighbour's cause (not its own) is among the reported diagnoses.
    Neighbour {
        cause: CauseId,
        confidence: f64,
        from: Vec<String>,
    },
}

impl Confusion {
    /// Whether it fails the member's trial. A member whose pod is gone by design (the
    /// immutable-rootfs variant, `observe.pod: goes-away`) leaves no pod.yaml to tie
    /// evidence to: its diagnosis is the node's, and the node does hold its neighbours'
    /// causes, so only "own cause first" holds it.
    pub fn fails(&self, pod_tied: bool) -> bool {
        match self {
            Confusion::NotFirst { .. } => true,
            Confusion::Neighbour { .. } => pod_tied,
        }
    }
}

impl std::fmt::Display for Confusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Confusion::NotFirst { first: None } => {
                write!(f, "crowded: the built-in diagnosis reports nothing")
            }
            Confusion::NotFirst {
                first: Some((cause, confidence)),
            } => write!(
                f,
                "crowded: the built-in diagnosis ranks {cause} ({confidence:.2}) first"
            ),
            Confusion::Neighbour {
                cause,
                confidence,
                from,
            } => write!(
                f,
                "crowded: the built-in diagnosis also reports the neighbours' cause {cause} \
                 (confidence {confidence:.2}; neighbour {})",
                from.join(", ")
            ),
        }
    }
}

/// The crowd's assertion on a member's built-in diagnoses (`reported`, ranked, already
/// above the report threshold): its own cause first, and none of its neighbours' causes
/// other than its own among them.
pub fn confusions(
    own: CauseId,
    reported: &[(CauseId, f64)],
    neighbours: &[Neighbour],
) -> Vec<Confusion> {
    let mut found = Vec::new();
    if reported.first().map(|(c, _)| *c) != Some(own) {
        found.push(Confusion::NotFirst {
            first: reported.first().copied(),
        });
    }
    for &(cause, confidence) in reported {
        if cause == own {
            continue;
        }
        let from: Vec<String> = neighbours
            .iter()
            .filter(|n| n.cause == cause)
            .map(|n| n.scenario.clone())
            .collect();
        if !from.is_empty() {
            found.push(Confusion::Neighbour {
                cause,
                confidence,
                from,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(id: &str, cause: &str) -> Scenario {
        let yaml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/finalizer.yaml"),
        )
        .expect("the finalizer scenario");
        let mut s =
            crate::scenario::parse(std::path::Path::new("finalizer.yaml"), &yaml).expect("parses");
        s.id = id.to_owned();
        s.cause = cause.parse().expect("a cause");
        s
    }

    fn crowd(ids: &[&str], gate_secs: u64) -> Arc<Crowd> {
        let members: Vec<Scenario> = ids.iter().map(|id| scenario(id, "finalizer")).collect();
        let d = Duration::from_secs(gate_secs);
        Crowd::with_deadlines(&members, d, d * 2)
    }

    #[tokio::test]
    async fn a_gate_opens_when_every_member_has_arrived() {
        let crowd = crowd(&["a", "b"], 20);
        let (a, b) = (crowd.join("a").expect("a"), crowd.join("b").expect("b"));
        let (ra, rb) = tokio::join!(a.arrive(Gate::Stuck), async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            b.arrive(Gate::Stuck).await
        });
        assert!(ra.expect("a passes") >= Duration::from_millis(500));
        rb.expect("b passes");
    }

    #[tokio::test]
    async fn a_member_that_stops_releases_the_gate_also_on_panic() {
        let crowd = crowd(&["a", "b"], 20);
        let a = crowd.join("a").expect("a");
        let b = crowd.join("b").expect("b");
        let task = tokio::spawn(async move {
            let _b = b;
            panic!("the trial blew up");
        });
        assert!(task.await.is_err());
        a.arrive(Gate::Stuck).await.expect("b dropped out");
        a.arrive(Gate::Collected)
            .await
            .expect("and past the second gate");
    }

    #[tokio::test]
    async fn arriving_at_the_second_gate_passes_the_first() {
        let crowd = crowd(&["a", "b"], 20);
        let (a, b) = (crowd.join("a").expect("a"), crowd.join("b").expect("b"));
        // b failed before it was stuck and waits to recover; a may collect and go on.
        let (ra, rb) = tokio::join!(
            async {
                a.arrive(Gate::Stuck).await?;
                a.arrive(Gate::Collected).await
            },
            b.arrive(Gate::Collected)
        );
        ra.expect("a passes both");
        rb.expect("b passes");
    }

    #[tokio::test]
    async fn a_closed_gate_times_out_naming_who_it_waited_for() {
        let crowd = crowd(&["a", "b", "c"], 1);
        let (a, _b) = (crowd.join("a").expect("a"), crowd.join("b").expect("b"));
        drop(crowd.join("c"));
        let e = a.arrive(Gate::Stuck).await.expect_err("b never arrives");
        let text = e.to_string();
        assert!(
            text.contains("every crowd member's pod to be stuck"),
            "{text}"
        );
        assert!(text.contains("a waits for b (not stuck yet)"), "{text}");
        assert!(!text.contains("c ("), "{text}");
    }

    #[test]
    fn only_members_join() {
        assert!(crowd(&["a"], 1).join("z").is_none());
    }

    fn n(scenario: &str, cause: &str) -> Neighbour {
        Neighbour {
            scenario: scenario.into(),
            cause: cause.parse().expect("a cause"),
        }
    }

    #[test]
    fn a_neighbours_cause_among_the_diagnoses_is_a_confusion() {
        let own: CauseId = "finalizer".parse().expect("cause");
        let imm: CauseId = "immutable-file".parse().expect("cause");
        let neighbours = [
            n("immutable-file-volume", "immutable-file"),
            n("f2", "finalizer"),
        ];
        assert!(confusions(own, &[(own, 0.9)], &neighbours).is_empty());
        let found = confusions(own, &[(own, 0.9), (imm, 0.5)], &neighbours);
        assert_eq!(found.len(), 1);
        let text = found[0].to_string();
        assert!(text.contains("immutable-file (confidence 0.50"), "{text}");
        assert!(text.contains("immutable-file-volume"), "{text}");
        // A cause no neighbour has is not the crowd's business.
        let other: CauseId = "disk-full".parse().expect("cause");
        assert!(confusions(own, &[(own, 0.9), (other, 0.4)], &neighbours).is_empty());
    }

    #[test]
    fn a_gone_pod_is_held_to_its_own_cause_first_only() {
        let own: CauseId = "immutable-file".parse().expect("cause");
        let held: CauseId = "mount-held".parse().expect("cause");
        let neighbours = [n("mount-held", "mount-held")];
        let found = confusions(own, &[(own, 0.97), (held, 0.85)], &neighbours);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].fails(true));
        assert!(!found[0].fails(false));
        let wrong_first = confusions(own, &[(held, 0.97), (own, 0.85)], &neighbours);
        assert!(wrong_first
            .iter()
            .any(|c| matches!(c, Confusion::NotFirst { .. }) && c.fails(false)));
    }

    #[test]
    fn its_own_cause_must_be_first() {
        let own: CauseId = "immutable-file".parse().expect("cause");
        let fin: CauseId = "finalizer".parse().expect("cause");
        let neighbours = [n("finalizer", "finalizer")];
        let found = confusions(own, &[(fin, 0.9), (own, 0.8)], &neighbours);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0]
            .to_string()
            .contains("ranks finalizer (0.90) first"));
        assert_eq!(
            confusions(own, &[], &neighbours),
            vec![Confusion::NotFirst { first: None }]
        );
    }
}
