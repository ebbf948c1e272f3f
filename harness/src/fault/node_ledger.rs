//! The record and recover shared by the faults the node agent keeps in its ledger
//! (immutable-file, freeze-runtime, stop-kubelet, hold-mount): the agent's gc of the
//! record's ledger undoes all of them, a stopped kubelet included.
//!
//! Architecture invariant: recover runs `agent gc --run <ledger>` for exactly the
//! record's ledger, so it never touches another trial's faults on the same node.

use std::time::Duration;

use crate::node::Node;

use super::{Applied, FaultContext, FaultError};

/// How long one agent step of an apply may take.
pub(super) const AGENT_STEP: Duration = Duration::from_secs(30);

/// The record of a ledgered fault on the context's node.
pub(super) fn applied(cx: &FaultContext<'_>, what: String) -> Applied {
    record(cx, what, Vec::new())
}

/// The record of a ledgered fault that leaves debris.
pub(super) fn record(cx: &FaultContext<'_>, what: String, debris: Vec<String>) -> Applied {
    Applied::NodeLedger {
        node: cx.node.name.clone(),
        ledger: cx.ledger.to_owned(),
        what,
        debris,
    }
}

/// Runs the agent `args` with `--run <ledger>` appended, so it ledgers what it does.
pub(super) async fn agent_ledgered(
    cx: &FaultContext<'_>,
    args: &[&str],
    timeout: Duration,
) -> Result<String, FaultError> {
    let mut argv = args.to_vec();
    argv.extend(["--run", cx.ledger]);
    Ok(cx.node.agent(&argv, timeout).await?)
}

/// Undoes everything the agent ledgered under `ledger`.
pub(super) async fn recover(node: &Node, ledger: &str) -> Result<String, FaultError> {
    let out = node
        .agent(&["gc", "--run", ledger], Duration::from_secs(120))
        .await?;
    Ok(format!("agent gc --run {ledger}: {}", out.trim()))
}
