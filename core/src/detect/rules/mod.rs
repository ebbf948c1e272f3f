//! One function per cause. Each reads the evidence through the pod's [`Link`], quotes
//! what supports its cause with what ties each line to the pod, and fills the remedy in
//! with names from the evidence. A rule that finds nothing returns None; confidence says
//! how much of its own proof was present.
//!
//! Rules run in two tiers. The first holds the causes that hold a pod by themselves (a
//! full disk, an immutable file, a held mount, a finalizer, a missed delete, a churning
//! DaemonSet, a volume kubelet cannot tear down, a CNI that cannot delete the pod's
//! network, a pod cgroup kubelet cannot remove). A full disk, an immutable file and a held mount make the runtime's kill
//! and cleanup fail, so kubelet's calls time out and the CRI keeps a container "Running"
//! whose task has exited: those symptoms are [`Cx::explained`] when one of them is
//! found, and the second tier (runtime-hang, runtime-desync) then counts only evidence
//! of its own (a stopped runtime, an UNKNOWN task, docker and containerd disagreeing).

mod admission_blocked;
mod cgroup_busy;
mod daemonset_hash_churn;
mod disk_full;
mod finalizer;
mod immutable_file;
mod kubelet_missed_delete;
mod mount_held;
mod network_teardown;
mod node_lost;
mod runtime_desync;
mod runtime_hang;
mod volume_teardown;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::link::{Link, Proof, Tie};
use super::{Diagnosis, Step};
use crate::cause::CauseId;
use crate::evidence::{ContainerState, Evidence, PsEntry, Quote};

use admission_blocked::admission_blocked;
pub(super) use admission_blocked::names_forbidden_pod;
use cgroup_busy::cgroup_busy;
use daemonset_hash_churn::daemonset_hash_churn;
use disk_full::disk_full;
use finalizer::finalizer;
use immutable_file::immutable_file;
use kubelet_missed_delete::kubelet_missed_delete;
use mount_held::mount_held;
use network_teardown::network_teardown;
use node_lost::node_lost;
use runtime_desync::runtime_desync;
use runtime_hang::runtime_hang;
use volume_teardown::volume_teardown;

/// Below this a diagnosis is noise and is not reported.
pub const THRESHOLD: f64 = 0.3;

/// What every rule reads: the evidence, the pod's identity, and which causes the first
/// tier found that explain kill timeouts and stale CRI states.
pub(super) struct Cx<'e> {
    pub ev: &'e Evidence,
    pub link: Link,
    pub explained: Vec<CauseId>,
    /// The log lines and event messages tied to the pod, with their tie: worked out once
    /// (time parsing and id matching over every kept line), read by every rule.
    tied: Vec<(&'e Quote, Tie)>,
}

impl<'e> Cx<'e> {
    pub fn new(ev: &'e Evidence) -> Cx<'e> {
        let link = Link::new(ev);
        let tied = ev
            .kubelet_log
            .iter()
            .chain(ev.runtime_log.iter())
            .filter_map(|q| Some((q, link.line(q)?)))
            .chain(
                ev.events
                    .iter()
                    .filter_map(|e| Some((&e.quote, link.event(e)?))),
            )
            .collect();
        Cx {
            ev,
            link,
            explained: Vec::new(),
            tied,
        }
    }

    /// Log lines (kubelet's, the runtime's, event messages) tied to the pod, with their tie.
    pub fn lines(&self) -> impl Iterator<Item = (&'e Quote, Tie)> + '_ {
        self.tied.iter().map(|(q, t)| (*q, t.clone()))
    }

    /// The tied lines holding `needle`.
    pub fn lines_with<'a>(
        &'a self,
        needle: &'a str,
    ) -> impl Iterator<Item = (&'e Quote, Tie)> + 'a {
        self.lines().filter(move |(q, _)| q.text.contains(needle))
    }

    /// The tied lines holding any of `needles`.
    pub fn lines_with_any<'a>(
        &'a self,
        needles: &'a [&str],
    ) -> impl Iterator<Item = (&'e Quote, Tie)> + 'a {
        self.lines()
            .filter(move |(q, _)| needles.iter().any(|n| q.text.contains(n)))
    }
}

/// Causes that make the runtime's kill and cleanup fail: kubelet's kill calls time out
/// and the CRI's record of the container goes stale because of them.
const EXPLAINS_TIMEOUTS: [CauseId; 3] = [
    CauseId::DiskFull,
    CauseId::ImmutableFile,
    CauseId::MountHeld,
];

/// A cause explains others' symptoms only on strong proof of its own: a no-space episode
/// that is over (df shows room) explains nothing that holds the pod now.
const EXPLAIN_MIN: f64 = 0.6;

/// Every rule's diagnosis (unfiltered), and notes on symptoms one cause explained.
pub fn all(ev: &Evidence) -> (Vec<Diagnosis>, Vec<String>) {
    let mut cx = Cx::new(ev);
    let mut first_tier: Vec<Diagnosis> = [
        disk_full,
        immutable_file,
        finalizer,
        kubelet_missed_delete,
        daemonset_hash_churn,
        mount_held,
        volume_teardown,
        network_teardown,
        cgroup_busy,
        admission_blocked,
        node_lost,
    ]
    .iter()
    .filter_map(|rule| rule(&cx))
    .collect();
    cx.explained = first_tier
        .iter()
        .filter(|d| d.confidence >= EXPLAIN_MIN && EXPLAINS_TIMEOUTS.contains(&d.cause))
        .map(|d| d.cause)
        .collect();
    let mut notes = Vec::new();
    if let Some(cause) = cx.explained.first() {
        if cx.lines().any(|(q, _)| runtime_hang::is_timeout(&q.text)) {
            notes.push(format!(
                "the kill timeouts in the logs are what {cause} does to the runtime: they are not counted as a hung runtime"
            ));
        }
    }
    let second_tier = [runtime_hang, runtime_desync]
        .iter()
        .filter_map(|rule| rule(&cx))
        .collect::<Vec<_>>();
    // A hung runtime explains a running kubelet that logged no kill: its kill waits in a
    // CRI call that does not return. Only a stopped or absent kubelet is a hold of its own.
    let hung = second_tier
        .iter()
        .any(|d| d.cause == CauseId::RuntimeHang && d.confidence >= EXPLAIN_MIN);
    if hung
        && !node_lost::kubelet_down(ev)
        && first_tier
            .iter()
            .any(|d| d.cause == CauseId::KubeletMissedDelete)
    {
        first_tier.retain(|d| d.cause != CauseId::KubeletMissedDelete);
        notes.push(
            "kubelet logged no kill because its calls to the hung runtime do not return: that is not counted as a missed delete"
                .into(),
        );
    }
    (first_tier.into_iter().chain(second_tier).collect(), notes)
}

fn diagnosis(
    cause: CauseId,
    confidence: f64,
    summary: String,
    evidence: Vec<Proof>,
    remedy: Vec<Step>,
) -> Option<Diagnosis> {
    Some(Diagnosis {
        cause,
        title: cause.title(),
        confidence: confidence.min(0.99),
        summary,
        evidence,
        remedy,
    })
}

fn pod_ref(ev: &Evidence) -> Option<(String, String)> {
    ev.pod
        .as_ref()
        .map(|p| (p.name.clone(), p.namespace.clone()))
}

/// The pod object's deletion (its `deletionTimestamp` line), as proof: where every rule
/// about a deleted pod that nothing acts on starts.
fn deletion_proof(pod: &crate::evidence::PodFacts) -> Vec<Proof> {
    pod.deletion_quote
        .iter()
        .map(|q| Proof::new(q, &Tie::PodObject))
        .collect()
}

/// `kubectl get pod NAME -n NS -w`, to watch the pod go away after a remedy.
fn watch_step(ev: &Evidence) -> Option<Step> {
    pod_ref(ev).map(|(name, ns)| {
        Step::look(
            "watch the pod go away",
            format!("kubectl get pod {name} -n {ns} -w"),
        )
    })
}

fn node_name(ev: &Evidence) -> String {
    ev.pod
        .as_ref()
        .and_then(|p| p.node.clone())
        .or_else(|| ev.node.as_ref().map(|n| n.name.clone()))
        .unwrap_or_else(|| "the node".into())
}

const RUNTIME_PROGRAMS: [&str; 5] = [
    "containerd",
    "dockerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "docker-containerd",
];

fn is_runtime(p: &PsEntry) -> bool {
    RUNTIME_PROGRAMS.contains(&p.program()) || p.program().starts_with("containerd-shim")
}

/// The two steps for a process holding something of the pod: see what it is (`ps -f`),
/// then stop it (`kill PID`, an act the guard vets by the pid's start time). `holds`
/// finishes "pid N (prog) ..."; `stop` describes the act.
fn holder_steps(pid: u32, ps: Option<&PsEntry>, holds: &str, stop: &str) -> [Step; 2] {
    [
        Step::look(
            format!(
                "pid {pid}{} {holds}; see what it is",
                ps.map(|p| format!(" ({})", p.program()))
                    .unwrap_or_default()
            ),
            format!("ps -f {pid}"),
        ),
        Step::act_on_node(stop, ["kill".to_owned(), pid.to_string()]),
    ]
}

/// A fixture bundle of `core/tests/fixtures` (captured from real output), for the rules'
/// unit tests.
#[cfg(test)]
pub(super) fn fixture(relative: &str) -> Evidence {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    assert!(dir.is_dir(), "no fixture bundle {}", dir.display());
    Evidence::load(&dir)
}

/// The act steps of a diagnosis as shell-quoted lines, for assertions.
#[cfg(test)]
fn acts(d: &Diagnosis) -> Vec<String> {
    d.remedy
        .iter()
        .filter(|s| s.action().is_some())
        .filter_map(|s| s.command.clone())
        .collect()
}

/// A rule finds nothing on bundles where nothing is wrong (captured normal removals on
/// containerd and docker, and a host at rest).
#[cfg(test)]
fn assert_silent(rule: fn(&Cx) -> Option<Diagnosis>) {
    for bundle in [
        "bundles/containerd-normal-removal",
        "bundles/docker-normal-removal",
        "negative/host-at-rest",
    ] {
        assert_eq!(rule(&Cx::new(&fixture(bundle))), None, "{bundle}");
    }
}

/// A rule run alone on a bundle (no first-tier causes explaining anything).
#[cfg(test)]
fn run(rule: fn(&Cx) -> Option<Diagnosis>, ev: &Evidence) -> Option<Diagnosis> {
    rule(&Cx::new(ev))
}

#[cfg(test)]
mod crowd_tests;
