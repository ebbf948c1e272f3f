//! The FIX a report prints: the top diagnosis' remedy, and when a cause of another kind
//! holds the pod at the same time (a finalizer beside an immutable file), that cause's
//! remedy too, in the order they must be cleared: what holds the pod on its node first,
//! then what holds the API object.
//!
//! Architecture invariant: the plan promises the pod goes away ("watch the pod go
//! away") once, at its end, after every independent hold is cleared.

use super::{Diagnosis, Step};
use crate::cause::CauseId;

/// Where a cause holds the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hold {
    /// On the node: kubelet cannot finish tearing the pod down.
    Node,
    /// On the API object: the pod is torn down, a finalizer keeps the object.
    Api,
    /// Not a stuck pod: a controller replaces pods over and over.
    Controller,
}

pub fn hold(cause: CauseId) -> Hold {
    match cause {
        CauseId::Finalizer | CauseId::AdmissionBlocked => Hold::Api,
        CauseId::DaemonsetHashChurn => Hold::Controller,
        CauseId::DiskFull
        | CauseId::ImmutableFile
        | CauseId::RuntimeHang
        | CauseId::KubeletMissedDelete
        | CauseId::RuntimeDesync
        | CauseId::MountHeld
        | CauseId::VolumeTeardown
        | CauseId::NetworkTeardown
        | CauseId::CgroupBusy
        | CauseId::NodeLost => Hold::Node,
    }
}

const WATCH: &str = "watch the pod go away";

/// The diagnoses (ranked) that hold the pod beside the first, each the strongest of its
/// kind: alternatives of the same kind explain the same symptoms and are not stacked.
pub fn co_causes(diagnoses: &[Diagnosis]) -> Vec<&Diagnosis> {
    let Some(first) = diagnoses.first() else {
        return Vec::new();
    };
    let mut seen = vec![hold(first.cause)];
    let mut out = Vec::new();
    for d in &diagnoses[1..] {
        let h = hold(d.cause);
        if h != Hold::Controller && !seen.contains(&h) {
            seen.push(h);
            out.push(d);
        }
    }
    out
}

/// The steps to clear every independent hold, in order.
pub fn of(diagnoses: &[Diagnosis]) -> Vec<Step> {
    let Some(first) = diagnoses.first() else {
        return Vec::new();
    };
    let co = co_causes(diagnoses);
    if co.is_empty() {
        return first.remedy.clone();
    }
    let mut holds: Vec<&Diagnosis> = std::iter::once(first).chain(co).collect();
    holds.sort_by_key(|d| hold(d.cause));
    let mut plan = Vec::new();
    let mut watch = None;
    let count = holds.len();
    for (i, d) in holds.into_iter().enumerate() {
        plan.push(Step::say(format!(
            "{} of {count}: {} — {}",
            i + 1,
            d.cause,
            d.summary
        )));
        for step in &d.remedy {
            if step.description == WATCH {
                watch.get_or_insert_with(|| step.clone());
            } else {
                plan.push(step.clone());
            }
        }
    }
    plan.push(Step::say(format!(
        "the pod goes away only when all {count} are cleared"
    )));
    plan.extend(watch);
    plan
}

#[cfg(test)]
mod tests {
    use crate::cause::CauseId;
    use crate::detect::{diagnose, StepKind};
    use crate::evidence::{Evidence, BUNDLE_FILES};

    /// The immutable-file-volume capture, its pod also holding a finalizer: two
    /// independent holds, both reported, the plan clearing the node first.
    #[test]
    fn an_immutable_file_and_a_finalizer_are_both_cleared_node_first() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kind/immutable-file-volume");
        let mut ev = Evidence::default();
        for (name, _) in BUNDLE_FILES {
            let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
                continue;
            };
            let text = if name == "pod.yaml" {
                assert!(text.contains("  deletionTimestamp:"), "pod.yaml shape");
                text.replacen(
                    "  deletionTimestamp:",
                    "  finalizers:\n  - example.com/backup\n  deletionTimestamp:",
                    1,
                )
            } else {
                text
            };
            ev.ingest(name, &text);
        }
        let report = diagnose(&ev);
        let causes: Vec<CauseId> = report.diagnoses.iter().map(|d| d.cause).collect();
        assert_eq!(causes.first(), Some(&CauseId::ImmutableFile), "{causes:?}");
        assert!(causes.contains(&CauseId::Finalizer), "{causes:?}");
        let acts: Vec<&str> = report
            .plan
            .iter()
            .filter(|s| s.kind == StepKind::Act)
            .filter_map(|s| s.argv.as_ref().and_then(|a| a.first()).map(String::as_str))
            .collect();
        assert_eq!(acts, ["chattr", "kubectl"], "{:#?}", report.plan);
        let last = report.plan.last().expect("a plan");
        assert_eq!(last.description, "watch the pod go away");
        let watches = report
            .plan
            .iter()
            .filter(|s| s.description == "watch the pod go away")
            .count();
        assert_eq!(watches, 1);
        let text = crate::report::to_text(&ev, &report);
        assert!(text.contains("ALSO   finalizer"), "{text}");
        assert!(text.contains("only when all 2 are cleared"), "{text}");
    }
}
