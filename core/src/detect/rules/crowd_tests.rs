//! Every rule on the same captured text, made about another pod, older than the
//! deletion, or from the other runtime: none of it may count for this pod.
//!
//! The bundles are the kind captures of `core/tests/fixtures/kind` (real kubelet,
//! containerd and API output); only the identities, dates or runtime scheme are rewritten.

use std::collections::BTreeMap;

use super::*;
use crate::evidence::BUNDLE_FILES;

/// The kind captures with a pod.yaml, and the cause each proves.
const CAPTURES: [(&str, CauseId); 11] = [
    ("kind/finalizer", CauseId::Finalizer),
    ("kind/immutable-file-volume", CauseId::ImmutableFile),
    ("kind/kubelet-missed-delete", CauseId::KubeletMissedDelete),
    ("kind/mount-held", CauseId::MountHeld),
    ("kind/runtime-hang", CauseId::RuntimeHang),
    ("kind/daemonset-hash-churn", CauseId::DaemonsetHashChurn),
    ("cells/k1.37-cd2.1/volume-teardown", CauseId::VolumeTeardown),
    (
        "cells/k1.37-cd2.1/network-teardown",
        CauseId::NetworkTeardown,
    ),
    ("cells/k1.37-cd2.1/cgroup-busy", CauseId::CgroupBusy),
    (
        "cells/k1.37-cd2.1/admission-blocked",
        CauseId::AdmissionBlocked,
    ),
    ("cells/k1.37-cd2.1/node-lost", CauseId::NodeLost),
];

/// Files about the pod object and its controller, not about the node.
const POD_FILES: [&str; 5] = [
    "pod.yaml",
    "owner.yaml",
    "revisions.yaml",
    "node.yaml",
    "captured-at",
];

fn files(relative: &str) -> BTreeMap<&'static str, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    BUNDLE_FILES
        .iter()
        .filter_map(|(name, _)| Some((*name, std::fs::read_to_string(dir.join(name)).ok()?)))
        .collect()
}

fn load(files: &BTreeMap<&'static str, String>) -> Evidence {
    let mut ev = Evidence::default();
    // pod.yaml first: the logs are read with the pod's identity.
    for (name, _) in BUNDLE_FILES {
        if let Some(text) = files.get(name) {
            ev.ingest(name, text);
        }
    }
    ev
}

fn rule_of(cause: CauseId) -> fn(&Cx) -> Option<Diagnosis> {
    match cause {
        CauseId::DiskFull => disk_full,
        CauseId::ImmutableFile => immutable_file,
        CauseId::RuntimeHang => runtime_hang,
        CauseId::Finalizer => finalizer,
        CauseId::KubeletMissedDelete => kubelet_missed_delete,
        CauseId::RuntimeDesync => runtime_desync,
        CauseId::DaemonsetHashChurn => daemonset_hash_churn,
        CauseId::MountHeld => mount_held,
        CauseId::VolumeTeardown => volume_teardown,
        CauseId::NetworkTeardown => network_teardown,
        CauseId::CgroupBusy => cgroup_busy,
        CauseId::AdmissionBlocked => admission_blocked,
        CauseId::NodeLost => node_lost,
    }
}

/// Every hex id of 64 digits and every uid in the node's files, mapped to another.
fn other_ids(text: &str) -> String {
    static HEX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9a-f]{64}").expect("regex"));
    static UID: LazyLock<Regex> = LazyLock::new(|| {
        // Also as the systemd cgroup driver writes it in slice names, with `_`.
        Regex::new(r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}")
            .expect("regex")
    });
    let flip = |s: &str| -> String {
        s.chars()
            .map(|c| match c.to_digit(16) {
                Some(d) => std::char::from_digit(15 - d, 16).unwrap_or(c),
                None => c,
            })
            .collect()
    };
    let text = HEX.replace_all(text, |c: &regex::Captures| flip(&c[0]));
    let text = UID.replace_all(&text, |c: &regex::Captures| flip(&c[0]));
    // crictl's and docker's short ids (12–13 digits) in their tables.
    static SHORT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b[0-9a-f]{12,13}\b").expect("regex"));
    let text = SHORT.replace_all(&text, |c: &regex::Captures| flip(&c[0]));
    // A Job's pod (`victim-<suffix>`): the controller-manager names it by name only.
    text.replace("victim-", "neighbour-")
        .replace("/victim\"", "/neighbour\"")
        .replace(" victim ", " neighbour ")
        .replace("name: victim", "name: neighbour")
}

/// The bundle with every node file (and the events) about another pod.
fn about_another_pod(relative: &str) -> Evidence {
    let mut f = files(relative);
    for (name, text) in f.iter_mut() {
        if !POD_FILES.contains(name) {
            *text = other_ids(text);
        }
    }
    load(&f)
}

/// The bundle with every log line and event a day older.
fn a_day_older(relative: &str) -> Evidence {
    let f = files(relative);
    let captured = load(&f).captured_at.expect("captured-at");
    let day = captured.date_naive();
    let before = day - chrono::Duration::days(1);
    let mut f = f;
    for name in ["kubelet.log", "runtime.log", "events.yaml"] {
        if let Some(text) = f.get_mut(name) {
            *text = text
                .replace(
                    &day.format("%Y-%m-%d").to_string(),
                    &before.format("%Y-%m-%d").to_string(),
                )
                .replace(
                    &day.format("%b %d ").to_string(),
                    &before.format("%b %d ").to_string(),
                );
            let klog = Regex::new(&format!(r"\b([IWEF]){} ", day.format("%m%d"))).expect("regex");
            *text = klog
                .replace_all(text, format!("${{1}}{} ", before.format("%m%d")))
                .into_owned();
        }
    }
    load(&f)
}

/// The bundle with the pod's containers on the other runtime (docker for containerd).
fn other_runtime(relative: &str) -> Evidence {
    let mut f = files(relative);
    if let Some(pod) = f.get_mut("pod.yaml") {
        *pod = pod.replace("containerd://", "docker://");
    }
    load(&f)
}

/// Every rule's quoted lines that `forbidden` picks, as `cause: source:line text`.
fn quoted_by_any_rule(ev: &Evidence, forbidden: impl Fn(&Proof) -> bool) -> Vec<String> {
    let cx = Cx::new(ev);
    CauseId::ALL
        .into_iter()
        .filter_map(|cause| Some((cause, rule_of(cause)(&cx)?)))
        .flat_map(|(cause, d)| {
            d.evidence
                .into_iter()
                .filter(|p| forbidden(p))
                .map(move |p| format!("{cause}: {}:{} {}", p.source, p.line, p.text))
        })
        .collect()
}

/// A line from the node (not the pod object, its controller or its node's own state).
fn from_the_node(p: &Proof) -> bool {
    !POD_FILES.contains(&p.source.as_str())
        // The pod's node's own state (a stopped kubelet) is about every pod on it.
        && !p.tie.starts_with("the pod's node")
}

#[test]
fn each_capture_is_still_diagnosed_by_its_rule() {
    for (bundle, cause) in CAPTURES {
        let ev = load(&files(bundle));
        let d = rule_of(cause)(&Cx::new(&ev)).unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
        assert!(d.confidence >= THRESHOLD, "{bundle}: {}", d.confidence);
    }
}

#[test]
fn the_same_text_about_another_pod_is_no_evidence() {
    for (bundle, _) in CAPTURES {
        let ev = about_another_pod(bundle);
        let quoted = quoted_by_any_rule(&ev, from_the_node);
        assert!(
            quoted.is_empty(),
            "{bundle}: rules quote another pod's lines: {quoted:#?}"
        );
        let cx = Cx::new(&ev);
        // Only what pod.yaml says about the pod itself may remain: its finalizer, its
        // churning owner, its running containers nobody killed.
        for cause in [
            CauseId::ImmutableFile,
            CauseId::MountHeld,
            CauseId::VolumeTeardown,
            CauseId::NetworkTeardown,
            CauseId::CgroupBusy,
            CauseId::AdmissionBlocked,
            CauseId::RuntimeHang,
            CauseId::DiskFull,
            CauseId::RuntimeDesync,
        ] {
            assert_eq!(rule_of(cause)(&cx), None, "{bundle}: {cause}");
        }
    }
}

#[test]
fn kill_lines_about_another_pod_do_not_prove_kubelet_acted() {
    // mount-held's kubelet tried to kill the container: about another pod, that attempt
    // says nothing about this one, whose container pod.yaml shows still running.
    let ev = about_another_pod("kind/mount-held");
    let d = kubelet_missed_delete(&Cx::new(&ev));
    assert_eq!(d.map(|d| d.cause), Some(CauseId::KubeletMissedDelete));
    let original = load(&files("kind/mount-held"));
    assert_eq!(kubelet_missed_delete(&Cx::new(&original)), None);
}

#[test]
fn the_same_text_from_before_the_deletion_is_no_evidence() {
    for (bundle, _) in CAPTURES {
        let stale = quoted_by_any_rule(&a_day_older(bundle), |p| {
            matches!(
                p.source.as_str(),
                "kubelet.log" | "runtime.log" | "events.yaml"
            )
        });
        assert!(
            stale.is_empty(),
            "{bundle}: rules quote stale lines: {stale:#?}"
        );
    }
}

#[test]
fn the_same_text_from_the_other_runtime_is_no_evidence() {
    for (bundle, _) in CAPTURES {
        let crossed = quoted_by_any_rule(&other_runtime(bundle), |p| {
            p.source == "crictl-ps.txt" || p.text.contains("containerd://")
        });
        assert!(
            crossed.is_empty(),
            "{bundle}: rules quote containerd's CRI for a docker pod: {crossed:#?}"
        );
    }
}
