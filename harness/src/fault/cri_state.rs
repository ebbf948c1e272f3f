//! containerd's CRI state dir on a size-limited tmpfs made inside the node: the shared
//! apply steps and recover of the fill-disk and desync-runtime faults.
//!
//! The mounting and restoring are the agent's (`tmpfs mount` / `tmpfs restore`, see
//! agent/src/tmpfs.rs): it records the tmpfs in the ledger before it mounts, so the
//! agent's gc restores the directory after a kill as after a trial.
//!
//! Architecture invariant: the tmpfs is named by its mount source
//! (`terminus-tmpfs-<ledger>`), and restore only ever unmounts the one its ledger made.
//! Architecture invariant: containerd never sees the state dir empty: the agent fills
//! the tmpfs in a staging dir before binding it over, and copies its content back onto
//! the directory underneath before unmounting.
//! Architecture invariant: a failed step after the mount is undone by apply itself
//! ([`undo_on_error`]): the trial only recovers what apply returned.

use std::time::Duration;

use crate::node::Node;
use crate::scenario::FillMode;

use super::{Applied, FaultContext, FaultError};

/// Where containerd's CRI plugin checkpoints each container's status (`containers/<id>/
/// status`, rewritten on every state change) and keeps sandbox files.
pub(super) const CRI_STATE_DIR: &str = "/var/lib/containerd/io.containerd.grpc.v1.cri";

/// The record of a CRI state tmpfs on the context's node.
pub(super) fn applied(
    cx: &FaultContext<'_>,
    what: String,
    lost_exit_of: Option<String>,
) -> Applied {
    Applied::CriStateTmpfs {
        node: cx.node.name.clone(),
        ledger: cx.ledger.to_owned(),
        what,
        lost_exit_of,
    }
}

/// Enough inodes for the copied state and an inode filler; few enough that the agent's
/// --max-inodes limit never refuses it.
fn tmpfs_inodes(size_bytes: u64) -> u64 {
    (size_bytes / 4096).clamp(256, 65536)
}

/// Puts [`CRI_STATE_DIR`] on a tmpfs of `size_bytes` made inside the node, with the
/// directory's current content copied in: the agent records the tmpfs in the ledger,
/// then mounts it (`tmpfs mount`). A kind node's /var is the host's disk, so the
/// runtime's data is never filled where it lives.
pub(super) async fn mount_tmpfs(
    node: &Node,
    ledger: &str,
    size_bytes: u64,
) -> Result<String, FaultError> {
    let (size, inodes) = (size_bytes.to_string(), tmpfs_inodes(size_bytes).to_string());
    let args = [
        "tmpfs",
        "mount",
        "--dir",
        CRI_STATE_DIR,
        "--size",
        &size,
        "--inodes",
        &inodes,
        "--run",
        ledger,
    ];
    node.agent(&args, Duration::from_secs(60)).await?;
    Ok(format!(
        "tmpfs of {size_bytes} bytes ({inodes} inodes) over {CRI_STATE_DIR}"
    ))
}

/// Has the agent keep [`CRI_STATE_DIR`] full (ledgered under `ledger`); returns the
/// agent's output and the mode's name.
pub(super) async fn fill(
    node: &Node,
    ledger: &str,
    mode: FillMode,
) -> Result<(String, &'static str), FaultError> {
    let mode = mode.as_str();
    let out = node
        .agent(
            &[
                "fill",
                "--dir",
                CRI_STATE_DIR,
                "--mode",
                mode,
                "--run",
                ledger,
            ],
            Duration::from_secs(60),
        )
        .await?;
    Ok((out, mode))
}

/// Copies the tmpfs's content (without fillers) back onto the directory it covers, then
/// unmounts it (the agent's `tmpfs restore`). A no-op when this ledger's tmpfs is not
/// mounted.
pub(super) async fn restore(node: &Node, ledger: &str) -> Result<String, FaultError> {
    Ok(node
        .agent(
            &["tmpfs", "restore", "--run", ledger],
            Duration::from_secs(60),
        )
        .await?
        .trim()
        .to_owned())
}

/// Stops the ledger's fillers, then restores the CRI state dir: the agent's gc of the
/// ledger does both, in that order.
pub(super) async fn recover(node: &Node, ledger: &str) -> Result<String, FaultError> {
    let gc = node
        .agent(&["gc", "--run", ledger], Duration::from_secs(120))
        .await?;
    Ok(format!("agent gc --run {ledger}: {}", gc.trim()))
}

/// Recovers the ledger's CRI state after a failed step of an apply, so a half-applied
/// fault never outlives the error.
pub(super) async fn undo_on_error<T>(
    node: &Node,
    ledger: &str,
    result: Result<T, FaultError>,
) -> Result<T, FaultError> {
    match result {
        Ok(v) => Ok(v),
        Err(error) => Err(match recover(node, ledger).await {
            Ok(undone) => FaultError::Undone {
                error: Box::new(error),
                undone,
            },
            Err(also) => FaultError::UndoFailed {
                error: Box::new(error),
                also: Box::new(also),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_scale_with_size_within_bounds() {
        assert_eq!(tmpfs_inodes(0), 256);
        assert_eq!(tmpfs_inodes(16 << 20), 4096);
        assert_eq!(tmpfs_inodes(1 << 40), 65536);
    }

    #[test]
    fn fill_modes_by_the_agents_names() {
        assert_eq!(FillMode::Bytes.as_str(), "bytes");
        assert_eq!(FillMode::Inodes.as_str(), "inodes");
    }
}
