//! What must hold before any rule runs: the pod is Terminating, and has been for
//! long enough that "stuck" is a fair word.

use super::{Options, Verdict};
use crate::evidence::{Evidence, SourceStatus, BUNDLE_FILES};

pub fn before_rules(ev: &Evidence, options: &Options, notes: &mut Vec<String>) -> Option<Verdict> {
    let Some(pod) = &ev.pod else {
        if let Some(seen) = &ev.last_seen {
            notes.push(format!(
                "no pod.yaml: pod {}/{} is gone from the API; lines are tied to it by who it was (pod-last-seen.yaml: uid {}, {} container id(s)), not by its state",
                seen.namespace,
                seen.name,
                seen.uid.as_deref().unwrap_or("unknown"),
                seen.containers.iter().filter(|c| c.id.as_deref().is_some_and(|i| !i.is_empty())).count()
            ));
            return None;
        }
        notes.push(
            "no pod.yaml: diagnosing from node and runtime evidence alone (no line can be tied to a pod, so every line of the node counts)"
                .into(),
        );
        return None;
    };
    // A churning DaemonSet replaces its pods by design, on pods not (yet) deleted too:
    // whether or how long one pod has been Terminating says nothing, the owner's
    // revisions do.
    if pod
        .owner
        .as_ref()
        .is_some_and(|(kind, _)| kind == "DaemonSet")
        && !ev.revisions.is_empty()
    {
        return None;
    }
    if let (None, Some(raw)) = (pod.deletion_timestamp, &pod.deletion_timestamp_raw) {
        notes.push(format!(
            "pod {}/{} is Terminating, but its deletionTimestamp `{}` is not a time terminus can read: how long it has been stuck is unknown",
            pod.namespace,
            pod.name,
            crate::text::excerpt(raw)
        ));
        return None;
    }
    let Some(deleted) = pod.deletion_timestamp else {
        notes.push(format!(
            "pod {}/{} has no deletionTimestamp: it is not Terminating",
            pod.namespace, pod.name
        ));
        return Some(Verdict::NotTerminating);
    };
    let Some(now) = ev.captured_at else {
        notes.push("capture time unknown: cannot tell whether the grace period is over".into());
        return None;
    };
    // deletionTimestamp is the moment the grace period ends, not when delete was called.
    let past_grace = now.signed_duration_since(deleted);
    if past_grace < chrono::Duration::zero() {
        notes.push(format!(
            "pod {}/{} is still inside its grace period (it ends at {deleted}, {}s after capture): wait for it",
            pod.namespace,
            pod.name,
            -past_grace.num_seconds()
        ));
        return Some(Verdict::TooEarly);
    }
    let min = chrono::Duration::from_std(options.min_stuck).unwrap_or_default();
    if past_grace < min {
        notes.push(format!(
            "pod {}/{} left its grace period only {}s before capture; controllers and kubelet may still be finishing (finalizers: {}). Look again in {}s",
            pod.namespace,
            pod.name,
            past_grace.num_seconds(),
            if pod.finalizers.is_empty() { "none".to_owned() } else { pod.finalizers.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ") },
            (min - past_grace).num_seconds()
        ));
        return Some(Verdict::TooEarly);
    }
    notes.push(format!(
        "pod {}/{} has been Terminating for {}s past its grace period",
        pod.namespace,
        pod.name,
        past_grace.num_seconds()
    ));
    None
}

/// What each absent source would have shown, for "no known cause" answers and for
/// readers wondering how sure a diagnosis is.
pub fn missing(ev: &Evidence) -> Vec<String> {
    let why = |name: &str| match name {
        "pod.yaml" => "deletion time, finalizers, container states",
        "events.yaml" => "kill attempts and runtime errors kubelet reported",
        "kubelet.log" => "whether kubelet tried to kill the pod and what the runtime answered",
        "runtime.log" => "the runtime's own errors (no space, operation not permitted, busy)",
        "df.txt" | "df-inodes.txt" => "a full filesystem",
        "lsattr.txt" => "files with the immutable attribute",
        "mountinfo.txt" => "other mount namespaces holding the rootfs",
        "ps.txt" => "stopped runtime or kubelet processes, mount holders",
        "crictl-ps.txt" | "ctr-tasks.txt" | "docker-ps.txt" => "whether the runtime's layers agree",
        _ => "",
    };
    BUNDLE_FILES
        .iter()
        .filter_map(|(name, _)| {
            let reason = why(name);
            if reason.is_empty() {
                return None;
            }
            match ev.sources.get(*name) {
                Some(SourceStatus::Present) => None,
                Some(SourceStatus::Unreadable(e)) => {
                    Some(format!("{name}: unreadable ({e}); it would show {reason}"))
                }
                Some(SourceStatus::Unparseable(e)) => Some(format!(
                    "{name}: not understood ({e}); it would show {reason}"
                )),
                Some(SourceStatus::Missing) | None => {
                    Some(format!("{name}: missing; it would show {reason}"))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuck() -> Evidence {
        Evidence::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kind/finalizer"),
        )
    }

    #[test]
    fn a_pod_stuck_past_its_grace_period_goes_to_the_rules() {
        let mut notes = Vec::new();
        assert_eq!(
            before_rules(&stuck(), &Options::default(), &mut notes),
            None
        );
    }

    #[test]
    fn a_pod_without_deletion_timestamp_is_not_terminating() {
        let mut ev = stuck();
        let pod = ev.pod.as_mut().expect("pod.yaml");
        pod.deletion_timestamp = None;
        pod.deletion_timestamp_raw = None;
        let mut notes = Vec::new();
        assert_eq!(
            before_rules(&ev, &Options::default(), &mut notes),
            Some(Verdict::NotTerminating)
        );
        assert!(
            notes.iter().any(|n| n.contains("not Terminating")),
            "{notes:?}"
        );
    }

    #[test]
    fn an_unreadable_deletion_timestamp_is_terminating_and_reported() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kind/finalizer");
        let text = std::fs::read_to_string(dir.join("pod.yaml")).expect("pod.yaml");
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("deletionTimestamp:"))
            .expect("a deletionTimestamp line");
        let mut ev = Evidence::default();
        ev.ingest(
            "pod.yaml",
            &text.replace(line, "  deletionTimestamp: yesterday at noon"),
        );
        let mut notes = Vec::new();
        assert_eq!(before_rules(&ev, &Options::default(), &mut notes), None);
        assert!(notes.iter().any(|n| n.contains("not a time")), "{notes:?}");
        let problems = ev.problems();
        assert!(
            problems.iter().any(|p| p.file == "pod.yaml"
                && p.line.is_some()
                && p.problem.contains("yesterday at noon")),
            "{problems:?}"
        );
        let report = crate::detect::diagnose(&ev);
        assert_ne!(report.verdict, Verdict::NotTerminating);
        assert_eq!(
            report.diagnoses.first().map(|d| d.cause),
            Some(crate::cause::CauseId::Finalizer)
        );
    }

    #[test]
    fn a_pod_inside_its_grace_period_is_too_early() {
        let mut ev = stuck();
        let deleted = ev
            .pod
            .as_ref()
            .and_then(|p| p.deletion_timestamp)
            .expect("deleted");
        ev.captured_at = Some(deleted - chrono::Duration::seconds(5));
        let mut notes = Vec::new();
        assert_eq!(
            before_rules(&ev, &Options::default(), &mut notes),
            Some(Verdict::TooEarly)
        );
    }

    #[test]
    fn without_pod_yaml_the_rules_run_on_node_evidence() {
        let mut ev = stuck();
        ev.pod = None;
        let mut notes = Vec::new();
        assert_eq!(before_rules(&ev, &Options::default(), &mut notes), None);
        assert!(
            notes.iter().any(|n| n.starts_with("no pod.yaml")),
            "{notes:?}"
        );
    }
}
