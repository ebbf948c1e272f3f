//! Immutable-attribute faults (`chattr +i` without chattr), recorded in the ledger.
//!
//! Architecture invariant: the canonical path is written to the ledger before the flag
//! is set; symlinks are refused, so the flag lands on the file that was named.

use std::path::{Path, PathBuf};

use serde_json::json;
use terminus_core::ledger::Entry;

use crate::attrs;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::timefmt::now_epoch;

fn canonical(path: &Path) -> Result<PathBuf> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))?;
    if meta.file_type().is_symlink() {
        return Err(AgentError::Usage(format!(
            "{} is a symlink; name the file itself",
            path.display()
        )));
    }
    std::fs::canonicalize(path).map_err(|e| AgentError::Usage(format!("{}: {e}", path.display())))
}

fn report(op: &str, path: &Path, before: u32, after: u32) -> serde_json::Value {
    json!({
        "op": op,
        "path": path,
        "flags_before": attrs::format_flags(before),
        "flags_after": attrs::format_flags(after),
        "immutable": after & attrs::IMMUTABLE != 0,
    })
}

pub fn set(store: &Store, run: &str, path: &Path) -> Result<serde_json::Value> {
    let path = canonical(path)?;
    let mut l = store.open(run)?;
    let already = l
        .ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::Immutable { path: p, .. } if *p == path));
    if !already {
        l.record(Entry::Immutable {
            path: path.clone(),
            at: now_epoch(),
        })?;
    }
    match attrs::set_immutable(&path, true) {
        Ok((b, a)) => Ok(report("set", &path, b, a)),
        Err(e) => {
            if !already {
                l.ledger
                    .entries
                    .retain(|en| !matches!(en, Entry::Immutable { path: p, .. } if *p == path));
                l.save()?;
            }
            Err(AgentError::io(
                format!("setting the immutable flag on {}", path.display()),
                e,
            ))
        }
    }
}

/// Clears the flag, and drops the path from the ledger of `run` (or of every run).
pub fn clear(store: &Store, run: Option<&str>, path: &Path) -> Result<serde_json::Value> {
    let path = canonical(path)?;
    let (b, a) = attrs::set_immutable(&path, false).map_err(|e| {
        AgentError::io(
            format!("clearing the immutable flag on {}", path.display()),
            e,
        )
    })?;
    let runs = match run {
        Some(r) => vec![r.to_string()],
        None => store.runs(),
    };
    for r in runs {
        let mut l = store.open(&r)?;
        let n = l.ledger.entries.len();
        l.ledger
            .entries
            .retain(|e| !matches!(e, Entry::Immutable { path: p, .. } if *p == path));
        if l.ledger.entries.len() != n {
            l.save()?;
        }
    }
    Ok(report("clear", &path, b, a))
}
