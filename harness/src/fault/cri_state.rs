//! containerd's CRI state dir on a size-limited tmpfs made inside the node: the shared
//! apply steps and recover of the fill-disk and desync-runtime faults.
//!
//! Architecture invariant: the tmpfs is named by its mount source
//! (`terminus-cri-<ledger>`), and restore only ever unmounts the one its ledger made.
//! Architecture invariant: containerd never sees the state dir empty: apply fills the
//! tmpfs in a staging dir before binding it over, restore copies its content back onto
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

/// The prefix of every CRI tmpfs's mount source; the ledger follows it.
const TMPFS_SOURCE_PREFIX: &str = "terminus-cri-";

/// The mount source naming the tmpfs a ledger put over [`CRI_STATE_DIR`], so recover
/// only ever unmounts its own (`findmnt` shows it).
fn tmpfs_source(ledger: &str) -> String {
    format!("{TMPFS_SOURCE_PREFIX}{ledger}")
}

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
/// directory's current content copied in. A kind node's /var is the host's disk, so
/// the runtime's data is never filled where it lives. The tmpfs is filled in a staging
/// directory and bind-mounted over the real one in one step (`mount --move` is refused
/// under kind's shared mounts).
pub(super) async fn mount_tmpfs(
    node: &Node,
    ledger: &str,
    size_bytes: u64,
) -> Result<String, FaultError> {
    let out = node
        .sh(&mount_script(ledger, size_bytes), Duration::from_secs(60))
        .await?;
    Ok(format!(
        "tmpfs {} over {CRI_STATE_DIR} ({})",
        tmpfs_source(ledger),
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

fn mount_script(ledger: &str, size_bytes: u64) -> String {
    format!(
        r#"set -eu
D={dir}; SRC={src}; S=/run/terminus-stage-{ledger}
if findmnt -n --mountpoint "$D" >/dev/null; then
  echo "$D is already a mount point ($(findmnt -n -o SOURCE,FSTYPE --mountpoint "$D")): a run's fault was not recovered" >&2; exit 3
fi
mkdir -p "$S"
trap 'umount "$S" 2>/dev/null; rmdir "$S" 2>/dev/null || true' EXIT
mount -t tmpfs -o size={size_bytes},nr_inodes={inodes},mode=0755 "$SRC" "$S"
cp -a "$D/." "$S/"
mount --bind "$S" "$D"
df -P "$D" | tail -1"#,
        dir = CRI_STATE_DIR,
        src = tmpfs_source(ledger),
        inodes = tmpfs_inodes(size_bytes),
    )
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
/// unmounts it. The directory underneath is reached through a non-recursive bind of the
/// filesystem holding it. A no-op when this ledger's tmpfs is not mounted.
pub(super) async fn restore(node: &Node, ledger: &str) -> Result<String, FaultError> {
    Ok(node
        .sh(&restore_script(ledger), Duration::from_secs(60))
        .await?
        .trim()
        .to_owned())
}

fn restore_script(ledger: &str) -> String {
    format!(
        r#"set -eu
D={dir}; SRC={src}; U=/run/terminus-under-{ledger}
if [ "$(findmnt -n -o SOURCE --mountpoint "$D" || true)" != "$SRC" ]; then echo "no tmpfs $SRC on $D"; exit 0; fi
M=$(findmnt -n -o TARGET -T "$(dirname "$D")")
case "$M" in /) rel=$D;; *) rel=${{D#"$M"}};; esac
mkdir -p "$U"
mount --bind "$M" "$U"
trap 'umount "$U" 2>/dev/null; rmdir "$U" 2>/dev/null || true' EXIT
find "$U$rel" -mindepth 1 -delete
(cd "$D" && tar -c --exclude='./.terminus-fill-*' .) | tar -C "$U$rel" -x
umount "$D"
echo "unmounted $SRC from $D, its content copied back onto the directory underneath""#,
        dir = CRI_STATE_DIR,
        src = tmpfs_source(ledger),
    )
}

/// For `terminus gc` and Ctrl-C: restores a CRI state dir still on a terminus tmpfs (its
/// run was killed before recover) made by a ledger starting with `prefix` (any ledger
/// when None). None when there is none.
pub async fn restore_leftover_cri_tmpfs(
    node: &Node,
    prefix: Option<&str>,
) -> Result<Option<String>, FaultError> {
    let source = node
        .sh(
            &format!("findmnt -n -o SOURCE --mountpoint {CRI_STATE_DIR} || true"),
            Duration::from_secs(20),
        )
        .await?;
    match leftover_ledger(&source, prefix) {
        Some(ledger) => Ok(Some(restore(node, ledger).await?)),
        None => Ok(None),
    }
}

/// The ledger whose tmpfs `mount_source` is, if it is a terminus CRI tmpfs of a ledger
/// starting with `prefix` (any ledger when None).
fn leftover_ledger<'s>(mount_source: &'s str, prefix: Option<&str>) -> Option<&'s str> {
    mount_source
        .trim()
        .strip_prefix(TMPFS_SOURCE_PREFIX)
        .filter(|ledger| !ledger.is_empty() && prefix.is_none_or(|p| ledger.starts_with(p)))
}

/// Stops the ledger's fillers, then restores the CRI state dir; both always attempted.
pub(super) async fn recover(node: &Node, ledger: &str) -> Result<String, FaultError> {
    let gc = node
        .agent(&["gc", "--run", ledger], Duration::from_secs(120))
        .await;
    let restored = restore(node, ledger).await;
    match (gc, restored) {
        (Ok(gc), Ok(restored)) => Ok(format!(
            "agent gc --run {ledger}: {}; {restored}",
            gc.trim()
        )),
        (Err(error), Ok(restored)) => Err(FaultError::FillersNotStopped {
            ledger: ledger.to_owned(),
            error,
            restored,
        }),
        (_, Err(e)) => Err(e),
    }
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
    fn the_tmpfs_is_named_after_its_ledger() {
        assert_eq!(tmpfs_source("run1-disk"), "terminus-cri-run1-disk");
        assert!(mount_script("run1-disk", 1 << 20).contains("SRC=terminus-cri-run1-disk;"));
        assert!(restore_script("run1-disk").contains("SRC=terminus-cri-run1-disk;"));
    }

    #[test]
    fn finds_a_leftover_tmpfs_of_the_asked_ledgers_only() {
        assert_eq!(leftover_ledger("terminus-cri-r1-a\n", None), Some("r1-a"));
        assert_eq!(
            leftover_ledger("terminus-cri-r1-a", Some("r1")),
            Some("r1-a")
        );
        assert_eq!(leftover_ledger("terminus-cri-r2-a", Some("r1")), None);
        assert_eq!(leftover_ledger("terminus-cri-", None), None);
        assert_eq!(leftover_ledger("overlay", None), None);
        assert_eq!(leftover_ledger("", None), None);
    }

    #[test]
    fn inodes_scale_with_size_within_bounds() {
        assert_eq!(tmpfs_inodes(0), 256);
        assert_eq!(tmpfs_inodes(16 << 20), 4096);
        assert_eq!(tmpfs_inodes(1 << 40), 65536);
        assert!(mount_script("l", 16 << 20).contains("size=16777216,nr_inodes=4096,"));
    }

    #[test]
    fn restore_keeps_the_fillers_out_and_braces_single() {
        let script = restore_script("l");
        assert!(script.contains("--exclude='./.terminus-fill-*'"));
        assert!(script.contains(r#"rel=${D#"$M"}"#));
    }

    #[test]
    fn fill_modes_by_the_agents_names() {
        assert_eq!(FillMode::Bytes.as_str(), "bytes");
        assert_eq!(FillMode::Inodes.as_str(), "inodes");
    }
}
