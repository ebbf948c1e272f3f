//! A directory put on a size-limited tmpfs made inside the node (the disk-full and
//! desync-runtime faults put containerd's CRI state dir there, so filling it never fills
//! the host's disk), and restored from it.
//!
//! Mount: the tmpfs (source `terminus-tmpfs-<run>`) is mounted on a staging directory,
//! the directory's content copied in, and the staging mount bound over the directory in
//! one step, so its users never see it empty (`mount --move` is refused under kind's
//! shared mounts). Restore: the tmpfs's content, without the fillers' directories, is
//! copied back onto the directory underneath (reached through a non-recursive bind of
//! the filesystem holding it), then the tmpfs is unmounted.
//!
//! Architecture invariant: the entry is written to the ledger before anything is
//! mounted, and a mount that fails part-way is undone here and its entry dropped.
//! Architecture invariant: restore only ever unmounts a tmpfs whose source is its own
//! entry's; copying is `cp -a` run as argv (owners, modes and times kept), never a shell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde_json::json;
use terminus_core::ledger::Entry;

use crate::command;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::mounts;
use crate::timefmt::now_epoch;

/// The prefix of every tmpfs's mount source; the run id follows it.
pub const SOURCE_PREFIX: &str = "terminus-tmpfs-";
/// The fillers' directories inside a filled tmpfs: never copied back.
pub const FILL_DIR_PREFIX: &str = ".terminus-fill-";
/// Copying a state directory of a few MiB takes well under a second.
const COPY_DEADLINE: Duration = Duration::from_secs(60);

pub fn source_of(run: &str) -> String {
    format!("{SOURCE_PREFIX}{run}")
}

fn staging_dir(run: &str) -> PathBuf {
    PathBuf::from(format!("/run/terminus-stage-{run}"))
}

fn underneath_dir(run: &str) -> PathBuf {
    PathBuf::from(format!("/run/terminus-under-{run}"))
}

/// What to put on a tmpfs.
pub struct MountArgs<'a> {
    pub run: &'a str,
    pub dir: &'a Path,
    pub size_bytes: u64,
    pub inodes: u64,
}

/// Records the tmpfs, then puts `dir` on it (content copied in).
pub fn mount_over(store: &Store, a: &MountArgs<'_>) -> Result<serde_json::Value> {
    if !a.dir.is_dir() {
        return Err(AgentError::Usage(format!(
            "{} is not a directory",
            a.dir.display()
        )));
    }
    if let Some(m) = mounts::at(&mounts::read_own(), a.dir) {
        return Err(AgentError::Refused(format!(
            "{} is already a mount point ({} {}): a run's fault was not recovered",
            a.dir.display(),
            m.source,
            m.fstype
        )));
    }
    let source = source_of(a.run);
    let mut l = store.open(a.run)?;
    l.record(Entry::Tmpfs {
        dir: a.dir.to_path_buf(),
        source: source.clone(),
        at: now_epoch(),
    })?;
    let stage = staging_dir(a.run);
    let mounted = mount_staged(a, &source, &stage);
    // The staging mount point is only a step: the bind over dir keeps the tmpfs.
    let _ = umount2(&stage, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&stage);
    if let Err(e) = mounted {
        let undone = restore_entry(a.run, a.dir, &source);
        l.ledger
            .entries
            .retain(|e| !matches!(e, Entry::Tmpfs { source: s, .. } if *s == source));
        l.save()?;
        return Err(AgentError::Failed(format!(
            "putting {} on a tmpfs: {e} (undone: {})",
            a.dir.display(),
            undone.unwrap_or_else(|also| format!("not quite: {also}"))
        )));
    }
    Ok(json!({
        "run": a.run, "dir": a.dir, "source": source,
        "size_bytes": a.size_bytes, "inodes": a.inodes,
    }))
}

fn mount_staged(a: &MountArgs<'_>, source: &str, stage: &Path) -> std::result::Result<(), String> {
    std::fs::create_dir_all(stage).map_err(|e| format!("creating {}: {e}", stage.display()))?;
    let options = format!("size={},nr_inodes={},mode=0755", a.size_bytes, a.inodes);
    mount(
        Some(source),
        stage,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mounting a tmpfs on {}: {e}", stage.display()))?;
    let from = format!("{}/.", a.dir.display());
    let to = format!("{}/", stage.display());
    command::run(&["cp", "-a", &from, &to], COPY_DEADLINE)?;
    mount(
        Some(stage),
        a.dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("binding {} over {}: {e}", stage.display(), a.dir.display()))
}

/// Undoes `run`'s tmpfs entries (restore, then drop them from the ledger).
pub fn restore(store: &Store, run: &str) -> Result<serde_json::Value> {
    let mut l = store.open(run)?;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    l.ledger.entries.retain(|e| match e {
        Entry::Tmpfs { dir, source, .. } => match restore_entry(run, dir, source) {
            Ok(m) => {
                done.push(m);
                false
            }
            Err(m) => {
                errors.push(m);
                true
            }
        },
        _ => true,
    });
    l.save()?;
    if errors.is_empty() {
        Ok(json!({"run": run, "restored": done}))
    } else {
        Err(AgentError::Failed(errors.join("; ")))
    }
}

/// Copies the tmpfs's content back onto the directory underneath and unmounts it; Ok
/// with a message (also when it is not mounted any more).
pub fn restore_entry(run: &str, dir: &Path, source: &str) -> std::result::Result<String, String> {
    let table = mounts::read_own();
    if mounts::at(&table, dir).is_none_or(|m| m.source != source) {
        return Ok(format!("no tmpfs {source} on {}", dir.display()));
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let holder = mounts::holding(&table, parent)
        .ok_or_else(|| format!("no mount holds {}", parent.display()))?;
    let rel = dir.strip_prefix(&holder.mount_point).map_err(|_| {
        format!(
            "{} is not under {}",
            dir.display(),
            holder.mount_point.display()
        )
    })?;
    let under = underneath_dir(run);
    std::fs::create_dir_all(&under).map_err(|e| format!("creating {}: {e}", under.display()))?;
    let copied = mount(
        Some(&holder.mount_point),
        &under,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "binding {} on {}: {e}",
            holder.mount_point.display(),
            under.display()
        )
    })
    .and_then(|()| copy_back(dir, &under.join(rel)));
    let _ = umount2(&under, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&under);
    copied?;
    unmount(dir)?;
    Ok(format!(
        "unmounted {source} from {}, its content copied back onto the directory underneath",
        dir.display()
    ))
}

/// Replaces the content of `target` (the directory under the tmpfs) with the tmpfs's,
/// fillers left out.
fn copy_back(tmpfs: &Path, target: &Path) -> std::result::Result<(), String> {
    let entries = |d: &Path| {
        std::fs::read_dir(d)
            .map_err(|e| format!("reading {}: {e}", d.display()))
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
    };
    for old in entries(target)? {
        let removed = if old.is_dir() && !old.is_symlink() {
            std::fs::remove_dir_all(&old)
        } else {
            std::fs::remove_file(&old)
        };
        removed.map_err(|e| format!("removing {}: {e}", old.display()))?;
    }
    for new in entries(tmpfs)? {
        let is_filler = new
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(FILL_DIR_PREFIX));
        if is_filler {
            continue;
        }
        let (from, to) = (new.display().to_string(), format!("{}/", target.display()));
        command::run(&["cp", "-a", &from, &to], COPY_DEADLINE)?;
    }
    Ok(())
}

/// Unmounts `dir`; detached when busy (open files keep the tmpfs alive until closed,
/// but the directory underneath is back in place at once).
fn unmount(dir: &Path) -> std::result::Result<(), String> {
    match umount2(dir, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => umount2(dir, MntFlags::MNT_DETACH)
            .map_err(|e| format!("unmounting {} (detached): {e}", dir.display())),
        Err(e) => Err(format!("unmounting {}: {e}", dir.display())),
    }
}
