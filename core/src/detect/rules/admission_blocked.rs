//! The `admission-blocked` rule: a live controller (the Job controller's
//! `batch.kubernetes.io/job-tracking`, say) tries to remove its finalizer from the
//! deleted pod, but admission — a ValidatingAdmissionPolicy or a webhook — rejects the
//! update, so the finalizer and the pod object stay. The controller-manager's log says
//! so: `pods "NAME" is forbidden: ValidatingAdmissionPolicy 'P' with binding 'B' denied
//! request: ...` or `admission webhook "W" denied the request: ...`.
//!
//! Told apart from `finalizer` (nobody tries to remove it): here a denial of an update
//! to this pod is on record, and the finalizer rule steps aside for it.
//!
//! The controller-manager's line names the pod by name only (`pods "NAME"`), not by
//! namespace: it counts when the pod object still carries a finalizer and is not older
//! than the deletion.

use super::*;

/// `ValidatingAdmissionPolicy 'P' with binding 'B' denied request: MESSAGE`.
static POLICY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"ValidatingAdmissionPolicy '([^']+)' with binding '([^']+)' denied request: (.*)")
        .expect("regex")
});

/// `admission webhook "W" denied the request: MESSAGE` (quotes may come escaped).
static WEBHOOK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"admission webhook \\*"([^"\\]+)\\*" denied the request: (.*)"#).expect("regex")
});

/// Who denied the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Denier {
    Policy { policy: String, binding: String },
    Webhook(String),
}

/// The message a denial ends with, up to the end of the quoted error.
fn message(rest: &str) -> String {
    let end = rest
        .find("\" logger=")
        .or_else(|| rest.rfind('"'))
        .unwrap_or(rest.len());
    rest[..end].trim().trim_end_matches('\\').to_owned()
}

/// `pods "NAME" is forbidden` for pod `name` (the quotes as written, or escaped inside a
/// klog `err="..."`); never for an empty name.
pub(in crate::detect) fn names_forbidden_pod(text: &str, name: &str) -> bool {
    !name.is_empty()
        && (text.contains(&format!("pods \\\"{name}\\\" is forbidden"))
            || text.contains(&format!("pods \"{name}\" is forbidden")))
}

/// The controller-manager's denials of updates to this pod, with who denied them.
pub(super) fn denials<'e>(cx: &Cx<'e>) -> Vec<(&'e Quote, Denier, String)> {
    let ev = cx.ev;
    let Some(pod) = ev.pod.as_ref() else {
        return Vec::new();
    };
    ev.controller_manager_log
        .iter()
        .filter(|q| names_forbidden_pod(&q.text, &pod.name))
        .filter(|q| !cx.link.stale_line(&q.text))
        .filter_map(|q| {
            if let Some(c) = POLICY.captures(&q.text) {
                let d = Denier::Policy {
                    policy: c[1].to_owned(),
                    binding: c[2].to_owned(),
                };
                return Some((q, d, message(&c[3])));
            }
            let c = WEBHOOK.captures(&q.text)?;
            Some((q, Denier::Webhook(c[1].to_owned()), message(&c[2])))
        })
        .collect()
}

pub(super) fn admission_blocked(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let pod = ev.pod.as_ref()?;
    if !pod.is_deleted() || pod.finalizers.is_empty() {
        return None;
    }
    let found = denials(cx);
    let (_, denier, msg) = found.last()?;
    let tie = Tie::PodName(pod.name.clone());
    let mut evidence: Vec<Proof> = found
        .iter()
        .rev()
        .take(2)
        .map(|(q, _, _)| Proof::new(q, &tie))
        .collect();
    evidence.extend(
        pod.finalizers
            .iter()
            .filter_map(|(_, q)| q.as_ref())
            .map(|q| Proof::new(q, &Tie::PodObject)),
    );
    let finalizers = pod
        .finalizers
        .iter()
        .map(|(f, _)| f.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut remedy = Vec::new();
    let summary = match denier {
        Denier::Policy { policy, binding } => {
            remedy.push(Step::say(format!(
                "ValidatingAdmissionPolicy {policy} (binding {binding}) rejects the controller's removal of {finalizers}: \"{msg}\"; exempt that update (a matchCondition or excludeResourceRules in the binding) or fix the policy"
            )));
            remedy.push(Step::look(
                "see the policy and what its binding matches",
                format!("kubectl get validatingadmissionpolicy {policy} -o yaml; kubectl get validatingadmissionpolicybinding {binding} -o yaml"),
            ));
            remedy.push(Step::act_on_cluster(
                format!("or, if the policy must not apply here, delete its binding {binding}"),
                [
                    "kubectl".to_owned(),
                    "delete".into(),
                    "validatingadmissionpolicybinding".into(),
                    binding.clone(),
                ],
            ));
            format!("ValidatingAdmissionPolicy {policy} (binding {binding}) denies the update that removes {finalizers}: {msg}")
        }
        Denier::Webhook(name) => {
            remedy.push(Step::say(format!(
                "admission webhook {name} rejects the controller's removal of {finalizers}: \"{msg}\"; exempt the update in the webhook's rules or namespaceSelector, or fix the webhook"
            )));
            remedy.push(Step::look(
                "find the webhook's configuration",
                format!("kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o yaml | grep -n -B5 -A20 'name: {name}'"),
            ));
            format!("admission webhook {name} denies the update that removes {finalizers}: {msg}")
        }
    };
    remedy.push(Step::say(
        "the controller retries by itself (with backoff, up to a minute) and removes its finalizer once the update is admitted; do not remove it by hand while the controller still counts the pod",
    ));
    remedy.extend(watch_step(ev));
    diagnosis(CauseId::AdmissionBlocked, 0.96, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, run};
    use super::*;

    const POD: &str = "metadata:\n  name: victim-8mnpq\n  namespace: ns\n  uid: 0a6f3f55-1d2e-4c2b-9d1e-6c7d8e9f0a1b\n  deletionTimestamp: \"2026-12-03T13:01:46Z\"\n  deletionGracePeriodSeconds: 0\n  finalizers:\n  - batch.kubernetes.io/job-tracking\nspec:\n  nodeName: w\n";
    const DENIED: &str = r#"E1203 13:01:51.650098       1 job_controller.go:1596] "Unhandled Error" err="removing tracking finalizer: pods \"victim-8mnpq\" is forbidden: ValidatingAdmissionPolicy 'keep' with binding 'keep-b' denied request: pods keep their finalizer" logger="UnhandledError""#;

    fn evidence(cm: &str) -> Evidence {
        let mut ev = Evidence::default();
        ev.ingest("pod.yaml", POD);
        ev.ingest("captured-at", "2026-12-03T13:02:10Z");
        ev.ingest("controller-manager.log", cm);
        ev
    }

    #[test]
    fn names_the_policy_and_binding_and_deletes_only_the_binding() {
        let d = run(admission_blocked, &evidence(DENIED)).expect("a diagnosis");
        assert!(
            d.summary
                .starts_with("ValidatingAdmissionPolicy keep (binding keep-b) denies"),
            "{}",
            d.summary
        );
        assert!(
            d.summary.ends_with(": pods keep their finalizer"),
            "{}",
            d.summary
        );
        assert_eq!(
            acts(&d),
            vec!["kubectl delete validatingadmissionpolicybinding keep-b".to_owned()]
        );
    }

    #[test]
    fn a_webhook_is_named_without_an_act() {
        let line = r#"E1203 13:01:51.650098       1 job_controller.go:1596] "Unhandled Error" err="removing tracking finalizer: pods \"victim-8mnpq\" is forbidden: admission webhook \"validate.kyverno.svc-fail\" denied the request: policy require-labels" logger="UnhandledError""#;
        let d = run(admission_blocked, &evidence(line)).expect("a diagnosis");
        assert!(
            d.summary.contains("validate.kyverno.svc-fail"),
            "{}",
            d.summary
        );
        assert!(acts(&d).is_empty());
    }

    #[test]
    fn another_pods_denial_is_no_evidence() {
        let other = DENIED.replace("victim-8mnpq", "victim-zzzzz");
        assert_eq!(run(admission_blocked, &evidence(&other)), None);
    }

    #[test]
    fn the_finalizer_rule_steps_aside_for_a_denial() {
        let ev = evidence(DENIED);
        assert_eq!(run(super::super::finalizer, &ev), None);
        let mut quiet = evidence("");
        quiet.ingest("controller-manager.log", "");
        assert!(run(super::super::finalizer, &quiet).is_some());
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(admission_blocked);
    }
}
