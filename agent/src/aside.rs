//! Files moved aside: a program its users look up by name (a CNI plugin in
//! `/opt/cni/bin`) renamed within its own directory, so every lookup fails for real
//! until it is put back. The network-teardown fault's node half.
//!
//! Architecture invariant: the entry (path and aside name) is in the ledger before the
//! rename; the aside name is `.terminus-aside-<run>-<name>` in the same directory (a
//! rename never crosses filesystems and never loses the file); put back renames it to
//! its path only when nothing took that path meanwhile, else it removes its own copy.
//! Only regular files are moved: never a directory or a symlink.

use std::path::{Path, PathBuf};

use serde_json::json;
use terminus_core::ledger::Entry;

use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::timefmt::now_epoch;

/// What every aside name starts with (leftovers look for it).
pub const ASIDE_PREFIX: &str = ".terminus-aside-";

/// Where `path` goes while it is aside for `run`.
pub fn aside_of(path: &Path, run: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| AgentError::Usage(format!("{} has no file name", path.display())))?;
    let dir = path
        .parent()
        .ok_or_else(|| AgentError::Usage(format!("{} has no directory", path.display())))?;
    Ok(dir.join(format!("{ASIDE_PREFIX}{run}-{name}")))
}

pub fn move_aside(store: &Store, run: &str, path: &Path) -> Result<serde_json::Value> {
    if !path.is_absolute() {
        return Err(AgentError::Usage(format!(
            "{} must be absolute",
            path.display()
        )));
    }
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))?;
    if !meta.file_type().is_file() {
        return Err(AgentError::Usage(format!(
            "{} is not a regular file; only files are moved aside",
            path.display()
        )));
    }
    let aside = aside_of(path, run)?;
    let mut l = store.open(run)?;
    l.record(Entry::Aside {
        path: path.to_path_buf(),
        aside: aside.clone(),
        at: now_epoch(),
    })?;
    if let Err(e) = std::fs::rename(path, &aside) {
        l.ledger
            .entries
            .retain(|en| !matches!(en, Entry::Aside { aside: a, .. } if *a == aside));
        l.save()?;
        return Err(AgentError::io(
            format!("renaming {} to {}", path.display(), aside.display()),
            e,
        ));
    }
    Ok(json!({ "run": run, "path": path, "aside": aside }))
}

/// Undoes one aside entry (gc): Ok(message) when nothing of it is left.
pub fn put_back(path: &Path, aside: &Path) -> std::result::Result<String, String> {
    let aside_there = std::fs::symlink_metadata(aside).is_ok();
    let path_there = std::fs::symlink_metadata(path).is_ok();
    match (aside_there, path_there) {
        (false, _) => Ok(format!("{} already back", path.display())),
        (true, false) => std::fs::rename(aside, path)
            .map(|()| format!("put {} back", path.display()))
            .map_err(|e| format!("renaming {} to {}: {e}", aside.display(), path.display())),
        // Someone reinstalled it meanwhile: theirs stays, ours goes.
        (true, true) => std::fs::remove_file(aside)
            .map(|()| {
                format!(
                    "{} was reinstalled; removed {}",
                    path.display(),
                    aside.display()
                )
            })
            .map_err(|e| format!("removing {}: {e}", aside.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_aside_in_the_ledger_first_and_puts_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::new(tmp.path().join("state"));
        let bin = tmp.path().join("ptp");
        std::fs::write(&bin, b"#!/bin/sh\n").expect("write");
        let v = move_aside(&store, "r1", &bin).expect("moved");
        let aside = PathBuf::from(v["aside"].as_str().expect("aside"));
        assert!(!bin.exists() && aside.exists());
        assert!(aside
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == ".terminus-aside-r1-ptp"));
        let l = store.open("r1").expect("ledger");
        assert!(matches!(&l.ledger.entries[..], [Entry::Aside { path, .. }] if *path == bin));
        drop(l);
        put_back(&bin, &aside).expect("back");
        assert!(bin.exists() && !aside.exists());
        assert!(put_back(&bin, &aside)
            .expect("idempotent")
            .contains("already back"));
    }

    #[test]
    fn a_reinstalled_file_is_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let bin = tmp.path().join("ptp");
        let aside = tmp.path().join(".terminus-aside-r-ptp");
        std::fs::write(&bin, b"new").expect("write");
        std::fs::write(&aside, b"old").expect("write");
        put_back(&bin, &aside).expect("kept");
        assert_eq!(std::fs::read(&bin).expect("read"), b"new");
        assert!(!aside.exists());
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::new(tmp.path().join("state"));
        assert!(move_aside(&store, "r", tmp.path()).is_err());
        assert!(move_aside(&store, "r", Path::new("relative")).is_err());
        assert!(store.runs().is_empty());
    }
}
