//! The partition-node fault: the pod's node is cut off from the API server — iptables
//! and ip6tables rules inside the node (a kind node is a container: the host's network
//! is untouched) drop every TCP packet to each address the API server's name in
//! kubelet's kubeconfig resolves to (a kind network is dual-stack, and kubelet reaches
//! the control plane over IPv6) — so its kubelet stops posting status, the node controller marks the node `Unknown`
//! ("Kubelet stopped posting node status."), and a deletion of its pod is never acted
//! on. Apply returns once the node is marked, so what follows sees a lost node.
//!
//! Architecture invariant: the Node carries the label `terminus.dev/partitioned=<ledger>`
//! before the agent ledgers and inserts the rule, so `terminus gc` finds the node (to
//! lift the out-of-service taint a remedy put there) and the rule (the agent's ledger)
//! after SIGKILL. Recover deletes the rule, the out-of-service taint and the label.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use crate::node::Node;
use crate::wait::{Check, WaitError};

use super::node_ledger;
use super::{Applied, FaultContext, FaultError};

/// The label that marks a partitioned node (its value: the trial's ledger key).
pub const PARTITION_LABEL: &str = "terminus.dev/partitioned";

pub use terminus_core::OUT_OF_SERVICE_TAINT as OUT_OF_SERVICE;

/// The node's Ready condition status (`True`, `False`, `Unknown`).
async fn ready_status(nodes: &Api<KubeNode>, name: &str) -> Result<String, kube::Error> {
    let node = nodes.get(name).await?;
    Ok(node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status)
        .unwrap_or_else(|| "absent".into()))
}

pub(super) async fn apply(cx: &FaultContext<'_>) -> Result<Applied, FaultError> {
    let name = cx.node.name.clone();
    let nodes: Api<KubeNode> = Api::all(cx.client.clone());
    let this = nodes.get(&name).await?;
    let is_control_plane = this
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
    if is_control_plane {
        return Err(FaultError::TargetIncomplete(
            "the pod runs on the control plane, which cannot be cut off from itself",
        ));
    }
    nodes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { PARTITION_LABEL: cx.ledger } } })),
        )
        .await?;
    cx.node.install_agent().await?;
    let out = node_ledger::agent_ledgered(cx, &["block-api"], Duration::from_secs(30)).await?;
    let record = Applied::Partition {
        node: name.clone(),
        ledger: cx.ledger.to_owned(),
        what: format!("node cut off from the API server: {}", out.trim()),
    };
    let wait = cx.deadline.saturating_sub(Duration::from_secs(5));
    if let Err(error) = wait_ready(&nodes, &name, false, wait).await {
        // The node was never marked: undo the partition here, no record leaves apply.
        let error = Box::new(error);
        return Err(match recover(cx.client, &name, cx.ledger).await {
            Ok(undone) => FaultError::Undone { error, undone },
            Err(also) => FaultError::UndoFailed {
                error,
                also: Box::new(also),
            },
        });
    }
    Ok(record)
}

/// Waits until node `name` is Ready (`ready`) or not Ready (`!ready`); a timeout says
/// what the Ready condition last was.
async fn wait_ready(
    nodes: &Api<KubeNode>,
    name: &str,
    ready: bool,
    deadline: Duration,
) -> Result<(), FaultError> {
    let what = if ready {
        "the node to be Ready again"
    } else {
        "the node controller to mark the partitioned node not Ready"
    };
    crate::wait::until(what, deadline, || async {
        let status = ready_status(nodes, name).await?;
        Ok::<_, FaultError>(if (status == "True") == ready {
            Check::Done(())
        } else {
            Check::Pending(format!("Ready {status}"))
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => FaultError::NotReached(t.to_string()),
        WaitError::Check(e) => e,
    })
}

/// How long a node back on the network may take to be Ready again (kubelet's next
/// status update, every 10 s, and the node controller's next look).
const BACK_READY: Duration = Duration::from_secs(60);

/// Deletes the rule (the agent's ledger), then the out-of-service taint and the label,
/// and waits until the node is Ready again: the next trial on it needs a live node.
pub(super) async fn recover(
    client: &Client,
    node: &str,
    ledger: &str,
) -> Result<String, FaultError> {
    let mut done = vec![node_ledger::recover(&Node::connect(node).await?, ledger).await?];
    done.extend(lift_node_marks(client, node).await?);
    let nodes: Api<KubeNode> = Api::all(client.clone());
    wait_ready(&nodes, node, true, BACK_READY).await?;
    done.push(format!("{node} is Ready again"));
    Ok(done.join("; "))
}

/// Removes the out-of-service taint (whatever its value and effect) and the partition
/// label from `node`; used by recover and by `terminus gc`.
pub async fn lift_node_marks(client: &Client, node: &str) -> Result<Vec<String>, FaultError> {
    let nodes: Api<KubeNode> = Api::all(client.clone());
    let mut done = Vec::new();
    // The node controller rewrites taints too: the patch carries the resourceVersion it
    // was computed from, so a concurrent change makes it fail (409) and the loop reads
    // the node again instead of writing back a stale list.
    for _ in 0..5 {
        let current = nodes.get(node).await?;
        let version = current.metadata.resource_version.clone();
        let taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        if !taints.iter().any(|t| t.key == OUT_OF_SERVICE) {
            break;
        }
        let kept: Vec<_> = taints
            .into_iter()
            .filter(|t| t.key != OUT_OF_SERVICE)
            .collect();
        let patch =
            json!({ "metadata": { "resourceVersion": version }, "spec": { "taints": kept } });
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => done.push(format!("removed taint {OUT_OF_SERVICE} from {node}")),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    nodes
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { PARTITION_LABEL: null } } })),
        )
        .await?;
    Ok(done)
}
