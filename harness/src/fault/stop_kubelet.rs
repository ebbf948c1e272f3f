//! The stop-kubelet fault: kubelet frozen (SIGSTOP) or stopped with systemd, so it
//! misses the pod's deletion. Both through the agent, which ledgers either before it
//! acts: its gc thaws or starts kubelet again, after a kill too.
//!
//! Architecture invariant: kubelet is never stopped except by the agent's `stop-unit`
//! (so never without its ledger entry).

use crate::scenario::KubeletStop;

use super::node_ledger::{self, AGENT_STEP};
use super::{Applied, FaultContext, FaultError};

/// `systemctl stop kubelet` waits for kubelet to exit: give it more than a freeze.
const STOP_STEP: std::time::Duration = std::time::Duration::from_secs(100);

pub(super) async fn apply(cx: &FaultContext<'_>, how: KubeletStop) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let (args, step, what): (&[&str], _, _) = match how {
        KubeletStop::Freeze => (
            &["freeze", "--name", "kubelet"],
            AGENT_STEP,
            "SIGSTOP kubelet",
        ),
        KubeletStop::Stop => (
            &["stop-unit", "--unit", "kubelet"],
            STOP_STEP,
            "systemctl stop kubelet",
        ),
    };
    let out = node_ledger::agent_ledgered(cx, args, step).await?;
    Ok(node_ledger::applied(cx, format!("{what}: {}", out.trim())))
}
