//! Why applying or recovering a fault failed.
//!
//! Architecture invariant: an error of a half-applied fault says whether apply undid its
//! own steps ([`FaultError::Undone`]) or could not ([`FaultError::UndoFailed`]).

use std::time::Duration;

use crate::node::NodeError;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The target lacks what the fault acts on (a uid, a container id).
    #[error("{0}")]
    TargetIncomplete(&'static str),
    #[error("no overlay upperdir found for container {container} in the node's mountinfo")]
    NoUpperDir { container: String },
    #[error("waited {waited:?} for the workload to write {path}")]
    WorkloadFileMissing { path: String, waited: Duration },
    #[error(
        "waited {waited:?} for {wanted} failed retries of container {container}'s exit in \
         containerd's journal; saw {seen}"
    )]
    ExitRetriesNotSeen {
        container: String,
        waited: Duration,
        wanted: usize,
        seen: usize,
    },
    // Tried on containerd 1.6.20 in a kind node: `ctr task delete --force` (and SIGKILL
    // of containerd and the shim together) leave the CRI in sync — its exit monitor, or
    // its restore on restart, records the exit (crictl: Exited).
    #[error(
        "`delete-task` does not desynchronise containerd's CRI plugin: it records the \
         deleted task's exit (crictl shows Exited); use `how: lost-exit`"
    )]
    DeleteTaskStaysInSync,
    /// Apply acted, but the cluster did not reach the state the fault is for in time.
    #[error("{0}")]
    NotReached(String),
    /// A step of apply failed and apply undid what it had done.
    #[error("{error} (undone: {undone})")]
    Undone {
        error: Box<FaultError>,
        undone: String,
    },
    /// A step of apply failed and undoing it failed too.
    #[error("{error}; undoing it failed too: {also}")]
    UndoFailed {
        error: Box<FaultError>,
        also: Box<FaultError>,
    },
}

impl From<FaultError> for String {
    fn from(e: FaultError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_errors_say_what_failed_and_what_was_undone() {
        let undone = FaultError::Undone {
            error: Box::new(FaultError::TargetIncomplete("no container id")),
            undone: "unmounted".into(),
        };
        assert_eq!(undone.to_string(), "no container id (undone: unmounted)");
        let failed = FaultError::UndoFailed {
            error: Box::new(FaultError::TargetIncomplete("a")),
            also: Box::new(FaultError::TargetIncomplete("b")),
        };
        assert_eq!(failed.to_string(), "a; undoing it failed too: b");
    }
}
