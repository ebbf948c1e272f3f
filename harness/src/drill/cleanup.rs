//! Cleanup of a drill from its state file: the fault's own record when it was saved,
//! else gc's sweep of the drill's run (its ledgers and labelled namespace), which the
//! fault wrote before it acted.
//!
//! Architecture invariant: cleanup is idempotent: what is already gone (a pod, its
//! finalizer, a namespace, the state file) counts as cleaned up.

use std::time::Duration;

use kube::Client;

use super::state::{state_path, DrillState};
use crate::fault::{self, Applied};

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

/// Undo a fault whose record never reached the state file (apply was interrupted):
/// through what was recorded before it acted, as `terminus gc` does after a kill: the
/// agent ledgers named after the drill, the finalizers of the pods in its namespace
/// (labelled with the drill's id).
async fn recover_from_names(client: &Client, state: &DrillState, errors: &mut Vec<String>) {
    use crate::gc::{self, GcReport, Scope};
    let mut report = GcReport::default();
    gc::sweep(
        &state.cluster,
        Some(client),
        Scope::Run(&state.namespace),
        &mut report,
    )
    .await;
    for done in &report.actions {
        tracing::info!("{done}");
    }
    errors.extend(report.errors);
}
