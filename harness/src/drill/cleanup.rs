//! Cleanup of a drill from its state file: the fault's own record when it was saved,
//! else the ledger and finalizer names saved before the fault acted.
//!
//! Architecture invariant: cleanup is idempotent: what is already gone (a pod, its
//! finalizer, a namespace, the state file) counts as cleaned up.

use std::time::Duration;

use kube::Client;

use super::state::{state_path, DrillState};
use crate::fault::{self, Applied};
use crate::node::{Node, AGENT_PATH};

/// Recover the fault, delete the namespace, remove the state file. Idempotent.
pub(super) async fn cleanup(client: &Client, mut state: DrillState) -> Result<(), String> {
    let mut errors = Vec::new();
    match state.applied.take() {
        Some(applied) => recover_record(client, applied, &mut errors).await,
        None => recover_from_names(client, &state, &mut errors).await,
    }
    match crate::namespace::delete(client, &state.namespace, Duration::from_secs(120)).await {
        Ok(()) => tracing::info!("namespace {} deleted", state.namespace),
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        match std::fs::remove_file(state_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("removing {}: {e}", state_path().display())),
        }
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Undo the fault's own record.
async fn recover_record(client: &Client, applied: Applied, errors: &mut Vec<String>) {
    let what = applied.describe();
    match fault::recover(client, applied).await {
        Ok(msg) => tracing::info!("{msg}"),
        // The pod (and its finalizer) is already gone.
        Err(fault::FaultError::Kube(kube::Error::Api(e))) if e.code == 404 => {}
        Err(e) => errors.push(format!("recovering {what}: {e}")),
    }
}

/// Undo a fault whose record never reached the state file (apply was interrupted): by
/// the ledger and finalizer names saved before it acted.
async fn recover_from_names(client: &Client, state: &DrillState, errors: &mut Vec<String>) {
    if let Some(name) = &state.finalizer {
        let applied = Applied::Finalizer {
            namespace: state.namespace.clone(),
            pod: state.pod.clone(),
            name: name.clone(),
        };
        match fault::recover(client, applied).await {
            Ok(msg) => tracing::info!("{msg}"),
            Err(fault::FaultError::Kube(kube::Error::Api(e))) if e.code == 404 => {}
            Err(e) => errors.push(format!("removing finalizer {name}: {e}")),
        }
    }
    if let Some(ledger) = &state.ledger {
        match Node::connect(&state.node).await {
            Err(e) => errors.push(e.to_string()),
            Ok(node) => {
                let installed = node
                    .exec_raw(&["test", "-x", AGENT_PATH], Duration::from_secs(10))
                    .await
                    .is_ok_and(|o| o.code == 0);
                if installed || state.kubelet_stopped {
                    let applied = Applied::NodeLedger {
                        node: node.name.clone(),
                        ledger: ledger.clone(),
                        what: state.scenario.clone(),
                        kubelet_stopped: state.kubelet_stopped,
                        debris: Vec::new(),
                    };
                    match fault::recover(client, applied).await {
                        Ok(msg) => tracing::info!("{msg}"),
                        Err(e) => errors.push(format!("recovering ledger {ledger}: {e}")),
                    }
                }
            }
        }
    }
}
