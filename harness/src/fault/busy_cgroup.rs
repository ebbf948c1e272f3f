//! The busy-cgroup fault: a stray process (the agent's `__stray`) lives in a child
//! cgroup `terminus-<ledger>` of the pod's cgroup and is frozen there. When the pod is
//! deleted kubelet finds it, sends SIGKILL — which a frozen process receives only once
//! thawed — and its removal of the pod's cgroup fails for real (`failed to delete
//! cgroup paths for [... pod<uid>]`), so the pod's resources never count as reclaimed.
//! Users hit the same with a process an agent or debugger left in the pod's cgroup, or
//! a cgroup a backup tool froze.
//!
//! Architecture invariant: the agent ledgers the stray before it starts it; recover
//! (the ledger's, [`super::node_ledger::recover`]) thaws, kills and removes it.

use std::time::Duration;

use crate::scenario::CgroupHold;

use super::node_ledger;
use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(cx: &FaultContext<'_>, how: CgroupHold) -> Result<Applied, FaultError> {
    let CgroupHold::Frozen = how;
    cx.node.install_agent().await?;
    let uid = cx.pod_uid("no pod uid to find the pod's cgroup by")?;
    let out = node_ledger::agent_ledgered(
        cx,
        &["busy-cgroup", "--pod-uid", uid],
        Duration::from_secs(60),
    )
    .await?;
    Ok(node_ledger::applied(
        cx,
        format!("frozen stray in the cgroup of pod {uid}: {}", out.trim()),
    ))
}
