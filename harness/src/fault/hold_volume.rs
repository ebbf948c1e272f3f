//! The hold-volume fault: a process in the node's own mount namespace — kubelet's —
//! keeps the pod's memory-backed emptyDir busy (its cwd or an open fd), so kubelet's
//! `umount` of the tmpfs fails for real with `target is busy` and the pod's volume
//! paths stay on disk.
//!
//! Architecture invariant: the agent ledgers the holder before it starts it; recover
//! (the ledger's, [`super::node_ledger::recover`]) ends it.

use std::time::Duration;

use crate::scenario::HoldVia;
use crate::workload::empty_dir_on_node;

use super::node_ledger;
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(cx: &FaultContext<'_>, via: HoldVia) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let uid = cx.pod_uid("no pod uid to find the volume by")?;
    let path = empty_dir_on_node(uid);
    let via = via.as_str();
    // `--ns current`: a holder in a namespace of its own would pin only its copy of the
    // mount, and kubelet's unmount in the node's namespace would succeed.
    let out = node_ledger::agent_ledgered(
        cx,
        &[
            "hold-mount",
            "--path",
            &path,
            "--via",
            via,
            "--ns",
            "current",
        ],
        Duration::from_secs(60),
    )
    .await?;
    Ok(node_ledger::applied(
        cx,
        format!("volume holder ({via}) of {path}: {}", out.trim()),
    ))
}
