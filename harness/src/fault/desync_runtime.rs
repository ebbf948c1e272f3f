//! The desync-runtime fault (cause 6 as the handbook saw it, after a disk-full episode):
//! the container exits while the CRI state dir is full, so containerd deletes the task
//! but the CRI cannot checkpoint the exit and keeps the container Running. The space is
//! freed and the tmpfs removed again before apply returns: the disk episode is over,
//! the split view remains until the CRI's next retry (or a containerd restart).
//!
//! Architecture invariant: apply leaves no tmpfs and no filler behind on success or
//! failure; the record names the container, and recover restarts containerd only when
//! the CRI and containerd still disagree about that container.

use std::time::Duration;

use crate::node::Node;
use crate::scenario::{DesyncHow, FillMode};

use super::cri_state;
use super::{Applied, FaultContext, FaultError};

/// containerd's CRI (1.6, 1.7 and 2.1 alike) retries a container exit it failed to
/// record on a doubling backoff (1 s, 2 s, ... at most 5 min): the n-th retry comes
/// 2^n - 1 s after the exit. After 6 failed retries (63 s) the next one is 64 s away:
/// that is how long the CRI keeps its stale view once the disk has space again, and it
/// must cover the trial's delete, its 20 s of observing the pod stuck, the bundle and
/// the remedy (about 20 s measured under a crowd; 7 retries would double the window and
/// add 64 s to the suite's longest trial).
const LOST_EXIT_FAILED_RETRIES: usize = 6;

/// The size of the tmpfs the exit is lost on: room for the state, none to spare once
/// filled.
const LOST_EXIT_TMPFS_BYTES: u64 = 16 << 20;

pub(super) async fn apply(cx: &FaultContext<'_>, how: DesyncHow) -> Result<Applied, FaultError> {
    match how {
        DesyncHow::DeleteTask => Err(FaultError::DeleteTaskStaysInSync),
        DesyncHow::LostExit => {
            cx.node.install_agent().await?;
            let id = cx.container_id("no container id whose exit to lose")?;
            let what = lose_exit(cx, id).await?;
            Ok(cri_state::applied(cx, what, Some(id.to_owned())))
        }
    }
}

async fn lose_exit(cx: &FaultContext<'_>, id: &str) -> Result<String, FaultError> {
    let (node, ledger) = (cx.node, cx.ledger);
    let since = node
        .exec(
            &["date", "-u", "+%Y-%m-%d %H:%M:%S"],
            Duration::from_secs(10),
        )
        .await?
        .trim()
        .to_owned();
    let mounted = cri_state::mount_tmpfs(node, ledger, LOST_EXIT_TMPFS_BYTES).await?;
    // Leave time to undo everything before the trial's fault deadline drops us.
    let budget = cx.deadline.saturating_sub(Duration::from_secs(30));
    let steps = async {
        cri_state::fill(node, ledger, FillMode::Bytes).await?;
        node.sh(
            &format!("kill -TERM $(cat /run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/init.pid)"),
            Duration::from_secs(10),
        )
        .await?;
        let failures = wait_exit_retries_failed(node, id, &since, budget).await?;
        node.agent(&["unfill", "--run", ledger], Duration::from_secs(60))
            .await?;
        let restored = cri_state::restore(node, ledger).await?;
        Ok::<_, FaultError>(format!(
            "{mounted} kept full while container {id} exited: {failures} retries of its exit failed \
             (no space left on device); then space freed and {restored}"
        ))
    };
    cri_state::undo_on_error(node, ledger, steps.await).await
}

/// Waits until containerd's journal shows `LOST_EXIT_FAILED_RETRIES` failed retries of
/// the container's exit; returns the count.
async fn wait_exit_retries_failed(
    node: &Node,
    id: &str,
    since: &str,
    deadline: Duration,
) -> Result<usize, FaultError> {
    use crate::wait::{Check, WaitError};
    let script = failed_retries_script(id, since);
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let what = format!("containerd to give up retrying the exit of {id}");
    crate::wait::until(&what, deadline, || async {
        let out = node.sh(&script, Duration::from_secs(20)).await?;
        if let Ok(count) = out.trim().parse::<usize>() {
            seen.store(count, std::sync::atomic::Ordering::Relaxed);
        }
        let count = seen.load(std::sync::atomic::Ordering::Relaxed);
        Ok::<_, FaultError>(if count >= LOST_EXIT_FAILED_RETRIES {
            Check::Done(count)
        } else {
            Check::Pending(format!("{count} failed retries"))
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(_) => FaultError::ExitRetriesNotSeen {
            container: id.to_owned(),
            waited: deadline,
            wanted: LOST_EXIT_FAILED_RETRIES,
            seen: seen.load(std::sync::atomic::Ordering::Relaxed),
        },
        WaitError::Check(e) => e,
    })
}

fn failed_retries_script(id: &str, since: &str) -> String {
    format!(
        "journalctl -u containerd --since '{since}' --no-pager | grep 'Failed to handle backOff event' | grep -c '{id}' || true"
    )
}

/// If the CRI still reports container `id` Running while containerd has no running task
/// for it (the remedy did not run or did not work), restarts containerd: its CRI plugin
/// then re-reads the task list and records the exit. Otherwise does nothing.
pub(super) async fn resync_cri(node: &Node, id: &str) -> Result<String, FaultError> {
    Ok(node
        .sh(&resync_script(id), Duration::from_secs(90))
        .await?
        .trim()
        .to_owned())
}

fn resync_script(id: &str) -> String {
    format!(
        r#"state=$(crictl inspect --output go-template --template '{{{{.status.state}}}}' {id} 2>/dev/null || true)
task=$(ctr -n k8s.io task ls 2>/dev/null | awk '$1 == "{id}" {{print $3}}')
if [ "$state" = CONTAINER_RUNNING ] && [ "$task" != RUNNING ]; then
  systemctl restart containerd && echo "the CRI still said container {id} was running (containerd: ${{task:-no task}}): restarted containerd"
else
  echo "the CRI and containerd agree on container {id} (${{state:-gone}})"
fi"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_asks_the_cri_and_containerd_about_the_one_container() {
        let script = resync_script("abc");
        assert!(script.contains("--template '{{.status.state}}' abc"));
        assert!(script.contains(r#"awk '$1 == "abc" {print $3}'"#));
        assert!(script.contains("${task:-no task}"));
    }

    #[test]
    fn counts_failed_retries_of_the_one_container_since_apply() {
        let script = failed_retries_script("abc", "2026-01-01 00:00:00");
        assert!(script.contains("--since '2026-01-01 00:00:00'"));
        assert!(script.ends_with("grep -c 'abc' || true"));
    }
}
