//! One function per cause. Each reads the evidence, quotes what supports its cause
//! and fills the remedy in with names from the evidence. A rule that finds nothing
//! returns None; confidence says how much of its proof was present.

mod daemonset_hash_churn;
mod disk_full;
mod finalizer;
mod immutable_file;
mod kubelet_missed_delete;
mod mount_held;
mod runtime_desync;
mod runtime_hang;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::{Diagnosis, Step};
use crate::cause::CauseId;
use crate::evidence::{ContainerState, Evidence, PsEntry, Quote};

use daemonset_hash_churn::daemonset_hash_churn;
use disk_full::disk_full;
use finalizer::finalizer;
use immutable_file::immutable_file;
use kubelet_missed_delete::kubelet_missed_delete;
use mount_held::mount_held;
use runtime_desync::runtime_desync;
use runtime_hang::runtime_hang;

/// Below this a diagnosis is noise and is not reported.
pub const THRESHOLD: f64 = 0.3;

pub fn all(ev: &Evidence) -> Vec<Diagnosis> {
    [
        disk_full,
        immutable_file,
        runtime_hang,
        finalizer,
        kubelet_missed_delete,
        runtime_desync,
        daemonset_hash_churn,
        mount_held,
    ]
    .iter()
    .filter_map(|rule| rule(ev))
    .collect()
}

fn diagnosis(
    cause: CauseId,
    confidence: f64,
    summary: String,
    evidence: Vec<Quote>,
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
fn assert_silent(rule: fn(&Evidence) -> Option<Diagnosis>) {
    for bundle in [
        "bundles/containerd-normal-removal",
        "bundles/docker-normal-removal",
        "negative/host-at-rest",
    ] {
        assert_eq!(rule(&fixture(bundle)), None, "{bundle}");
    }
}
