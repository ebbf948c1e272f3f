//! Faults as apply/recover pairs (Chaos Mesh's shape), one module per fault kind of the
//! scenario schema. `apply` returns an [`Applied`] record of exactly what it did;
//! `recover` undoes that record and nothing else, and is called on every path out of a
//! trial. Records are plain data (serde), so drills and `terminus gc` can store one and
//! recover it later instead of rebuilding it.
//!
//! Kinds that leave the same kind of trace share its recover: the agent-ledger faults
//! (immutable-file, freeze-runtime, stop-kubelet, hold-mount, hold-volume, break-cni,
//! busy-cgroup)
//! recover through
//! [`node_ledger`], the CRI-state faults (fill-disk, desync-runtime) through
//! [`cri_state`]; what a kind adds on top (resyncing the CRI) lives in the kind's own
//! module.
//!
//! Architecture invariant: `recover` touches only what its record names, and is
//! idempotent: safe after a remedy already cleared the fault, safe twice, safe on a
//! record read back from disk.
//! Architecture invariant: every node fault goes through the node agent, which writes it
//! to its ledger inside the node before it acts, so `terminus gc` can undo it after the
//! harness was killed: immutable flags, frozen processes, a stopped kubelet, fillers,
//! mount holders, strays in a pod's cgroup and the CRI state dir's tmpfs alike. API faults live in terminus's
//! labelled namespaces, where gc frees every pod of its finalizers, or are cluster-scoped
//! objects carrying the run's labels (an admission policy), which gc deletes by label.
//! Architecture invariant: ledger keys are per trial: recovering one trial never touches
//! another trial's faults on a shared node.
//! Architecture invariant: faults never touch the host: they act through the API or
//! inside kind nodes, on tmpfs made there.
//! Architecture invariant: an [`Applied`] record holds no handles (nodes by name), except
//! the churn writer's task, which lives and dies with the process that started it and is
//! not serialised.

mod affinity_churn;
mod break_cni;
mod busy_cgroup;
mod cri_state;
mod deny_finalizer_removal;
mod desync_runtime;
mod error;
mod fill_disk;
mod finalizer;
mod freeze_runtime;
mod hold_mount;
mod hold_volume;
mod immutable_file;
mod layer;
mod node_ledger;
mod partition_node;
mod stop_kubelet;

use std::time::Duration;

use kube::Client;
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::probe::Target;
use crate::scenario::FaultSpec;

pub use affinity_churn::ChurnWriter;
pub use error::FaultError;
pub use partition_node::{lift_node_marks, OUT_OF_SERVICE, PARTITION_LABEL};

/// Everything a fault needs to know about where it acts.
pub struct FaultContext<'a> {
    pub client: &'a Client,
    /// The node the workload runs on.
    pub node: &'a Node,
    /// The agent ledger key: one per trial, so recovering one trial never touches
    /// another trial's faults on a shared node.
    pub ledger: &'a str,
    pub target: &'a Target,
    pub deadline: Duration,
}

impl FaultContext<'_> {
    /// The target's first container id; `missing` says what it was wanted for.
    fn container_id(&self, missing: &'static str) -> Result<&str, FaultError> {
        self.target
            .container_ids
            .first()
            .map(String::as_str)
            .ok_or(FaultError::TargetIncomplete(missing))
    }

    /// The target pod's uid; `missing` says what it was wanted for.
    fn pod_uid(&self, missing: &'static str) -> Result<&str, FaultError> {
        self.target
            .uid
            .as_deref()
            .ok_or(FaultError::TargetIncomplete(missing))
    }
}

/// What `apply` did; `recover` undoes exactly this.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Applied {
    /// A finalizer on the pod that no controller owns.
    Finalizer {
        namespace: String,
        pod: String,
        name: String,
    },
    /// Node faults recorded in the agent's ledger under `ledger` on node `node`
    /// (immutable flags, frozen processes, fillers, mount holders). `what` is for the
    /// timeline.
    NodeLedger {
        node: String,
        ledger: String,
        what: String,
        /// Paths the fault made debris of: the node is clean only once they are gone.
        debris: Vec<String>,
    },
    /// containerd's CRI state dir put on a size-limited tmpfs made inside node `node`
    /// (mount source `terminus-cri-<ledger>`), with the agent's filler recorded under
    /// `ledger`. Recover stops the filler, copies the tmpfs's content back onto the
    /// directory underneath and unmounts it (a no-op when apply already did).
    CriStateTmpfs {
        node: String,
        ledger: String,
        what: String,
        /// A container whose exit the CRI failed to record (desync-runtime): if the CRI
        /// still says Running while containerd has no task, recover restarts containerd
        /// rather than leave the node split until the CRI's next retry.
        lost_exit_of: Option<String>,
    },
    /// A cluster-scoped ValidatingAdmissionPolicy and its binding (labelled with the run)
    /// that deny the removal of a controller's finalizer in the trial's namespace.
    AdmissionPolicy { policy: String, binding: String },
    /// Node `node` cut off from the API server by a rule the agent ledgered under
    /// `ledger`, and labelled for gc; a remedy may have tainted it out of service.
    Partition {
        node: String,
        ledger: String,
        what: String,
    },
    /// A writer task that keeps re-sorting a DaemonSet's affinity terms.
    Churn {
        namespace: String,
        daemonset: String,
        /// The running writer; absent in a record read back in another process, where
        /// the writer already ended with the process that started it.
        #[serde(skip)]
        writer: Option<ChurnWriter>,
    },
}

impl Applied {
    /// Paths that must be gone before the node counts as clean.
    pub fn debris(&self) -> Vec<String> {
        match self {
            Applied::NodeLedger { debris, .. } => debris.clone(),
            _ => Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Applied::Finalizer { name, pod, .. } => format!("finalizer {name} on pod {pod}"),
            Applied::NodeLedger { what, node, .. } => format!("{what} on node {node}"),
            Applied::CriStateTmpfs { what, node, .. } => format!("{what} on node {node}"),
            Applied::Churn { daemonset, .. } => {
                format!("affinity re-sorting writer on daemonset {daemonset}")
            }
            Applied::AdmissionPolicy { policy, binding } => {
                format!("ValidatingAdmissionPolicy {policy} with binding {binding}")
            }
            Applied::Partition { what, node, .. } => format!("{what} on node {node}"),
        }
    }
}

pub async fn apply(spec: &FaultSpec, cx: &FaultContext<'_>) -> Result<Applied, FaultError> {
    tracing::debug!(kind = spec.kind(), node = %cx.node.name, ledger = cx.ledger, "applying fault");
    match spec {
        FaultSpec::Finalizer { name } => finalizer::apply(cx, name).await,
        FaultSpec::ImmutableFile { location, path } => {
            immutable_file::apply(cx, *location, path).await
        }
        FaultSpec::FreezeRuntime { target } => freeze_runtime::apply(cx, *target).await,
        FaultSpec::StopKubelet { how } => stop_kubelet::apply(cx, *how).await,
        FaultSpec::HoldMount { via } => hold_mount::apply(cx, *via).await,
        FaultSpec::HoldVolume { via } => hold_volume::apply(cx, *via).await,
        FaultSpec::BreakCni { plugin } => break_cni::apply(cx, plugin).await,
        FaultSpec::BusyCgroup { how } => busy_cgroup::apply(cx, *how).await,
        FaultSpec::DenyFinalizerRemoval { finalizer } => {
            deny_finalizer_removal::apply(cx, finalizer).await
        }
        FaultSpec::PartitionNode { from: _ } => partition_node::apply(cx).await,
        FaultSpec::AffinityChurn { interval } => Ok(affinity_churn::apply(cx, *interval)),
        FaultSpec::FillDisk { size_bytes, mode } => fill_disk::apply(cx, *size_bytes, *mode).await,
        FaultSpec::DesyncRuntime { how } => desync_runtime::apply(cx, *how).await,
    }
}

/// Undoes exactly what `applied` records. Idempotent: safe after a remedy already
/// cleared the fault, and safe to call twice.
pub async fn recover(client: &Client, applied: Applied) -> Result<String, FaultError> {
    tracing::debug!(fault = %applied.describe(), "recovering fault");
    match applied {
        Applied::Finalizer {
            namespace,
            pod,
            name,
        } => finalizer::recover(client, &namespace, &pod, &name).await,
        Applied::NodeLedger { node, ledger, .. } => {
            let node = Node::connect(&node).await?;
            node_ledger::recover(&node, &ledger).await
        }
        Applied::CriStateTmpfs {
            node,
            ledger,
            lost_exit_of,
            ..
        } => {
            let node = Node::connect(&node).await?;
            let mut done = cri_state::recover(&node, &ledger).await?;
            if let Some(id) = lost_exit_of {
                done.push_str(&format!(
                    "; {}",
                    desync_runtime::resync_cri(&node, &id).await?
                ));
            }
            Ok(done)
        }
        Applied::Churn {
            daemonset, writer, ..
        } => Ok(affinity_churn::recover(&daemonset, writer).await),
        Applied::AdmissionPolicy { policy, binding } => {
            deny_finalizer_removal::recover(client, &policy, &binding).await
        }
        Applied::Partition { node, ledger, .. } => {
            partition_node::recover(client, &node, &ledger).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_record() -> Vec<Applied> {
        vec![
            Applied::Finalizer {
                namespace: "ns".into(),
                pod: "victim".into(),
                name: "example.com/hold".into(),
            },
            Applied::NodeLedger {
                node: "terminus-worker".into(),
                ledger: "run1-immutable".into(),
                what: "immutable flag on /x".into(),
                debris: vec!["/x".into()],
            },
            Applied::CriStateTmpfs {
                node: "terminus-worker".into(),
                ledger: "run1-desync".into(),
                what: "tmpfs".into(),
                lost_exit_of: Some("abc123".into()),
            },
            Applied::Churn {
                namespace: "ns".into(),
                daemonset: "victim".into(),
                writer: None,
            },
            Applied::AdmissionPolicy {
                policy: "terminus-run1-admission".into(),
                binding: "terminus-run1-admission".into(),
            },
        ]
    }

    #[test]
    fn every_record_round_trips_through_json() {
        for applied in every_record() {
            let json = serde_json::to_string(&applied).unwrap();
            let back: Applied = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            assert_eq!(back.describe(), applied.describe());
            assert_eq!(back.debris(), applied.debris());
        }
    }

    #[test]
    fn records_are_tagged_by_their_kind() {
        let json = serde_json::to_value(&every_record()[1]).unwrap();
        assert_eq!(json["record"], "node-ledger");
        assert_eq!(json["node"], "terminus-worker");
    }

    #[tokio::test]
    async fn a_churn_record_read_back_elsewhere_has_no_writer_to_stop() {
        let json = serde_json::to_string(&every_record()[3]).unwrap();
        assert!(!json.contains("writer"), "{json}");
        let back: Applied = serde_json::from_str(&json).unwrap();
        let Applied::Churn {
            daemonset, writer, ..
        } = back
        else {
            panic!("not a churn record: {json}");
        };
        assert!(writer.is_none());
        assert_eq!(
            affinity_churn::recover(&daemonset, writer).await,
            "the affinity writer on victim ended with the process that started it"
        );
    }

    #[test]
    fn only_ledger_records_carry_debris() {
        let debris: Vec<_> = every_record().iter().map(Applied::debris).collect();
        assert_eq!(
            debris,
            vec![vec![], vec!["/x".to_owned()], vec![], vec![], vec![]]
        );
    }
}
