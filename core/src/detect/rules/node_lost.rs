//! The `node-lost` rule: the pod's node stopped posting status — it is down, partitioned,
//! or its kubelet cannot reach the API server — so the node controller marks it
//! `Unknown` ("Kubelet stopped posting node status.") and nobody on the node hears of the
//! deletion. The pod stays until the node returns or is declared gone.
//!
//! Told apart from kubelet-missed-delete: there the node is Ready (or its kubelet is
//! stopped on a node we can still read, which restarting kubelet fixes); here the node is
//! not Ready while its kubelet, where the node can be read at all, still runs and fails to
//! reach the API server.

use super::*;
use crate::OUT_OF_SERVICE_TAINT as OUT_OF_SERVICE;

/// kubelet's own account of losing the API server (kubelet_node_status.go).
const CUT_OFF: [&str; 2] = ["Error updating node status", "Unable to update node status"];

/// The node controller's message when a node's status stops coming.
pub(super) const STOPPED_POSTING: &str = "Kubelet stopped posting node status";

/// Whether node.yaml shows the pod's node lost: Ready `Unknown`, or not Ready with the
/// node controller's "stopped posting" message.
pub(super) fn node_unknown(ev: &Evidence) -> bool {
    ev.node
        .as_ref()
        .and_then(|n| n.ready.as_ref())
        .is_some_and(|(status, reason, message)| {
            status == "Unknown"
                || (status != "True"
                    && (reason == "NodeStatusUnknown" || message.contains(STOPPED_POSTING)))
        })
}

/// kubelet is stopped or absent on a node whose process table we have: a local kubelet
/// fault (kubelet-missed-delete's), not a lost node.
pub(super) fn kubelet_down(ev: &Evidence) -> bool {
    let kubelets: Vec<&PsEntry> = ev.ps.iter().filter(|p| p.program() == "kubelet").collect();
    !ev.ps.is_empty() && (kubelets.is_empty() || kubelets.iter().all(|p| p.stopped()))
}

pub(super) fn node_lost(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let pod = ev.pod.as_ref()?;
    if !pod.is_deleted() || !node_unknown(ev) || kubelet_down(ev) {
        return None;
    }
    let node = node_name(ev);
    let node_tie = Tie::Node(node.clone());
    let mut evidence: Vec<Proof> = deletion_proof(pod);
    evidence.extend(
        ev.node
            .as_ref()
            .and_then(|n| n.ready_quote.as_ref())
            .map(|q| Proof::new(q, &node_tie)),
    );
    let kubelet_tie = Tie::Node(format!("{node}'s kubelet"));
    let cut_off: Vec<&Quote> = ev
        .kubelet_log
        .iter()
        .filter(|q| CUT_OFF.iter().any(|p| q.text.contains(p)))
        .filter(|q| !cx.link.stale_line(&q.text))
        .collect();
    evidence.extend(
        cut_off
            .iter()
            .rev()
            .take(2)
            .map(|q| Proof::new(q, &kubelet_tie)),
    );
    let mut remedy = vec![Step::say(if cut_off.is_empty() {
        format!("bring {node} back: check that it is up and that its kubelet runs and reaches the API server; its pods are released once it reports again")
    } else {
        format!("{node} is up but its kubelet cannot reach the API server (its log says so): restore the network path (firewall, routes, the API server's address) and the node reports again")
    })];
    remedy.push(Step::look(
        "see the node's conditions and taints",
        format!("kubectl describe node {node}"),
    ));
    remedy.push(Step::act_on_cluster(
        format!("if {node} is gone for good (shut down, deleted in the cloud), mark it out of service: Kubernetes force-deletes its pods and detaches their volumes; remove the taint once the node is back or replaced"),
        [
            "kubectl".to_owned(),
            "taint".into(),
            "node".into(),
            node.clone(),
            format!("{OUT_OF_SERVICE}=nodeshutdown:NoExecute"),
        ],
    ));
    remedy.extend(watch_step(ev));
    let confidence = if cut_off.is_empty() { 0.9 } else { 0.95 };
    let summary = if cut_off.is_empty() {
        format!("node {node} stopped posting status, so nobody there acts on the deletion")
    } else {
        format!("node {node} is cut off from the API server (its kubelet cannot update the node's status), so it never hears of the deletion")
    };
    diagnosis(CauseId::NodeLost, confidence, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, run};
    use super::*;

    const POD: &str = "metadata:\n  name: victim\n  namespace: ns\n  uid: 0a6f3f55-1d2e-4c2b-9d1e-6c7d8e9f0a1b\n  deletionTimestamp: \"2026-12-03T13:01:46Z\"\n  deletionGracePeriodSeconds: 2\nspec:\n  nodeName: w2\nstatus:\n  containerStatuses:\n  - name: main\n    containerID: containerd://abc\n    state:\n      running: {}\n";
    const NODE: &str = "metadata:\n  name: w2\nstatus:\n  conditions:\n  - type: Ready\n    status: Unknown\n    reason: NodeStatusUnknown\n    message: Kubelet stopped posting node status.\n";
    const CUT: &str = r#"Dec 03 13:01:50 w2 kubelet[290]: E1203 13:01:50.101010     290 kubelet_node_status.go:548] "Error updating node status, will retry" err="error getting node \"w2\": Get \"https://c:6443/api/v1/nodes/w2?timeout=10s\": context deadline exceeded""#;
    const PS: &str = "    PID    PPID STAT                  STARTED COMMAND\n    290       1 Ssl  Thu Dec  3 12:50:00 2026 /usr/bin/kubelet --config=/var/lib/kubelet/config.yaml\n";

    fn evidence(node: &str, ps: &str) -> Evidence {
        let mut ev = Evidence::default();
        ev.ingest("pod.yaml", POD);
        ev.ingest("captured-at", "2026-12-03T13:02:40Z");
        ev.ingest("node.yaml", node);
        ev.ingest("kubelet.log", CUT);
        ev.ingest("ps.txt", ps);
        ev
    }

    #[test]
    fn a_node_cut_off_from_the_api_server_is_lost_and_marked_out_of_service() {
        let d = run(node_lost, &evidence(NODE, PS)).expect("a diagnosis");
        assert!(
            d.summary.contains("cut off from the API server"),
            "{}",
            d.summary
        );
        assert_eq!(
            acts(&d),
            vec![
                "kubectl taint node w2 'node.kubernetes.io/out-of-service=nodeshutdown:NoExecute'"
                    .to_owned()
            ]
        );
        assert_eq!(
            run(super::super::kubelet_missed_delete, &evidence(NODE, PS)),
            None
        );
    }

    #[test]
    fn a_ready_node_or_a_stopped_kubelet_is_not_a_lost_node() {
        let ready = NODE.replace("status: Unknown", "status: \"True\"");
        assert_eq!(run(node_lost, &evidence(&ready, PS)), None);
        let stopped = PS.replace("Ssl ", "Tsl ");
        assert_eq!(run(node_lost, &evidence(NODE, &stopped)), None);
        assert!(run(
            super::super::kubelet_missed_delete,
            &evidence(NODE, &stopped)
        )
        .is_some());
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(node_lost);
    }
}
