//! The fill-disk fault (cause 1): the CRI state dir on a small tmpfs that the agent
//! keeps full. Every status checkpoint then fails with ENOSPC: the exit of a stopped
//! container is never recorded and kubelet's kill never completes.
//!
//! Architecture invariant: the disk filled is a tmpfs made for the fault, never the
//! node's /var (the host's disk); recover is [`super::cri_state::recover`].

use crate::scenario::FillMode;

use super::cri_state;
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(
    cx: &FaultContext<'_>,
    size_bytes: u64,
    mode: FillMode,
) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let mounted = cri_state::mount_tmpfs(cx.node, cx.ledger, size_bytes).await?;
    let filled = cri_state::fill(cx.node, cx.ledger, mode).await;
    let (filled, mode) = cri_state::undo_on_error(cx.node, cx.ledger, filled).await?;
    let what = format!(
        "{mounted}, kept full of {mode} by the agent ({})",
        filled.trim()
    );
    Ok(cri_state::applied(cx, what, None))
}
