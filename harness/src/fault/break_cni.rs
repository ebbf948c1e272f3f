//! The break-cni fault: the node's CNI plugin binary is moved aside in `/opt/cni/bin`
//! (the agent renames it in place, ledgered first), so when kubelet stops the pod's
//! sandbox the runtime's CNI DEL fails for real — libcni cannot find the plugin — and
//! kubelet retries the teardown forever. Users hit the same with a plugin removed by an
//! upgrade, or one whose credentials expired (calico's `Unauthorized`).
//!
//! Architecture invariant: the agent ledgers the move before the rename; recover (the
//! ledger's, [`super::node_ledger::recover`]) puts the binary back.

use std::time::Duration;

use super::node_ledger;
use super::{Applied, FaultContext, FaultError};

/// Where CNI plugin binaries live: stock kind images use /opt/cni/bin, the offline
/// node image Debian's containernetworking-plugins in /usr/lib/cni (containerd's
/// `bin_dir`). The first that holds the plugin is the one the runtime uses.
pub const CNI_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];

pub(super) async fn apply(cx: &FaultContext<'_>, plugin: &str) -> Result<Applied, FaultError> {
    cx.node.install_agent().await?;
    let mut path = None;
    for dir in CNI_BIN_DIRS {
        let candidate = format!("{dir}/{plugin}");
        if cx
            .node
            .exec(&["test", "-f", &candidate], Duration::from_secs(10))
            .await
            .is_ok()
        {
            path = Some(candidate);
            break;
        }
    }
    let path = path.ok_or(FaultError::TargetIncomplete(
        "the CNI plugin is in none of /opt/cni/bin, /usr/lib/cni",
    ))?;
    let out = node_ledger::agent_ledgered(
        cx,
        &["move-aside", "--path", &path],
        Duration::from_secs(30),
    )
    .await?;
    Ok(node_ledger::applied(
        cx,
        format!("CNI plugin {path} moved aside: {}", out.trim()),
    ))
}
