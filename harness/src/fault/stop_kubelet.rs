//! The stop-kubelet fault: kubelet frozen (SIGSTOP, ledgered by the agent) or stopped
//! with systemd, so it misses the pod's deletion.
//!
//! Architecture invariant: a stopped kubelet is named in the record
//! (`kubelet_stopped`), and only such a record makes recover start kubelet again.

use std::time::Duration;

use crate::node::Node;
use crate::scenario::KubeletStop;

use super::node_ledger::{self, AGENT_STEP};
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(cx: &FaultContext<'_>, how: KubeletStop) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    match how {
        KubeletStop::Freeze => {
            let out = node_ledger::agent_ledgered(cx, &["freeze", "--name", "kubelet"], AGENT_STEP)
                .await?;
            Ok(node_ledger::applied(
                cx,
                format!("SIGSTOP kubelet: {}", out.trim()),
            ))
        }
        KubeletStop::Stop => {
            cx.node
                .exec(&["systemctl", "stop", "kubelet"], Duration::from_secs(60))
                .await?;
            Ok(node_ledger::record(
                cx,
                "systemctl stop kubelet".into(),
                true,
                Vec::new(),
            ))
        }
    }
}

/// Starts kubelet again (a no-op for systemd when it runs already).
pub(super) async fn recover(node: &Node) -> Result<(), FaultError> {
    node.exec(&["systemctl", "start", "kubelet"], Duration::from_secs(60))
        .await?;
    Ok(())
}
