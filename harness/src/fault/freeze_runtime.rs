//! The freeze-runtime fault: SIGSTOP the container's shim or containerd itself, so
//! kubelet's kill never gets an answer.
//!
//! Architecture invariant: the agent ledgers the frozen process before it stops it;
//! recover (the ledger's, [`super::node_ledger::recover`]) sends it SIGCONT.

use crate::scenario::FreezeTarget;

use super::node_ledger::{self, AGENT_STEP};
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(
    cx: &FaultContext<'_>,
    target: FreezeTarget,
) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let out = match target {
        FreezeTarget::Shim => {
            let id = cx.container_id("no container id to find the shim of")?;
            node_ledger::agent_ledgered(cx, &["freeze", "--shim-of", id], AGENT_STEP).await?
        }
        FreezeTarget::Containerd => {
            node_ledger::agent_ledgered(cx, &["freeze", "--name", "containerd"], AGENT_STEP).await?
        }
    };
    Ok(node_ledger::applied(
        cx,
        format!("SIGSTOP {target:?}: {}", out.trim()),
    ))
}
