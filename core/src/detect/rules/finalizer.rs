//! The `finalizer` rule: what proves this cause, and the remedy filled in from the evidence.
//! It steps aside when the controller-manager's log shows admission denying an update
//! to this pod (admission-blocked: a controller is trying).

use super::*;

/// A JSON patch that removes finalizer `name` at `index` only if it is still there: the
/// `test` op makes the patch fail instead of removing the wrong entry if the list
/// changed meanwhile. serde_json escapes the name, so no name can change the patch.
fn remove_finalizer_patch(index: usize, name: &str) -> String {
    let path = format!("/metadata/finalizers/{index}");
    serde_json::json!([
        {"op": "test", "path": path, "value": name},
        {"op": "remove", "path": path},
    ])
    .to_string()
}

pub(super) fn finalizer(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let pod = ev.pod.as_ref()?;
    if !pod.is_deleted() {
        return None;
    }
    if pod.finalizers.is_empty() {
        return None;
    }
    // A controller is trying to remove it and admission says no: admission-blocked's.
    if !super::admission_blocked::denials(cx).is_empty() {
        return None;
    }
    let running = pod
        .containers
        .iter()
        .any(|c| c.state == ContainerState::Running);
    // With containers still running something on the node holds the pod first; the
    // finalizer holds it too, and matters once that is solved (the report's plan
    // covers both, node first).
    let confidence = if running { 0.6 } else { 0.92 };
    let mut evidence: Vec<Proof> = deletion_proof(pod);
    evidence.extend(
        pod.finalizers
            .iter()
            .filter_map(|(_, q)| q.as_ref())
            .map(|q| Proof::new(q, &Tie::PodObject)),
    );
    let mut remedy = vec![Step::say(format!(
        "find the controller that owns {} and why it has not finished; if it is gone for good, remove the finalizer",
        pod.finalizers.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
    ))];
    // Remove each finalizer by value: a JSON patch `test` makes the command fail instead
    // of removing the wrong entry if the list changed meanwhile.
    for (index, (name, _)) in pod.finalizers.iter().enumerate().rev() {
        remedy.push(Step::act_on_cluster(
            format!("remove finalizer {name}"),
            [
                "kubectl".to_owned(),
                "patch".to_owned(),
                "pod".to_owned(),
                pod.name.clone(),
                "-n".to_owned(),
                pod.namespace.clone(),
                "--type=json".to_owned(),
                "-p".to_owned(),
                remove_finalizer_patch(index, name),
            ],
        ));
    }
    remedy.extend(watch_step(ev));
    let summary = format!(
        "pod {}/{} is deleted but {} finalizer{} remain{}",
        pod.namespace,
        pod.name,
        pod.finalizers.len(),
        if pod.finalizers.len() == 1 { "" } else { "s" },
        if running {
            " (and containers are still running)"
        } else {
            "; its containers have stopped"
        }
    );
    diagnosis(CauseId::Finalizer, confidence, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{assert_silent, fixture, run};
    use super::*;

    #[test]
    fn removes_exactly_the_finalizer_on_the_pod() {
        let d = run(finalizer, &fixture("kind/finalizer")).expect("a diagnosis");
        assert_eq!(d.cause, CauseId::Finalizer);
        let (place, argv) = d.remedy.iter().find_map(|s| s.action()).expect("an act");
        assert_eq!(place, crate::detect::StepPlace::Cluster);
        assert_eq!(&argv[..4], ["kubectl", "patch", "pod", "victim"]);
        let patch: serde_json::Value =
            serde_json::from_str(argv.last().expect("a patch")).expect("JSON");
        assert_eq!(patch[0]["op"], "test");
        assert_eq!(patch[0]["value"], "terminus.dev/hold");
    }

    #[test]
    fn a_hostile_finalizer_name_stays_inside_the_patch() {
        let name = "evil.io/x'\"}]; rm -rf /";
        let patch: serde_json::Value =
            serde_json::from_str(&remove_finalizer_patch(0, name)).expect("still one JSON value");
        assert_eq!(patch[0]["value"], name);
        assert_eq!(patch.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(finalizer);
    }
}
