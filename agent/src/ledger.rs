//! The fault ledger on disk: one JSON file per run in the state directory
//! (`/var/lib/terminus-agent/<run>.json`), read and written under an exclusive flock.
//! The entries themselves are `terminus_core::ledger`, the shape the harness reads.
//!
//! Architecture invariant: every fault is written to the ledger *before* it acts (and
//! completed with pids once they exist), so `gc` can undo exactly what was done, even
//! after the harness that asked for it was killed.
//!
//! Architecture invariant: a ledger is only read-modified-written while its run's lock
//! is held, and saved atomically (temp file + rename): a crash leaves the old or the new
//! ledger, never half of one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use terminus_core::ledger::{Entry, Ledger};

use crate::error::AgentError;

/// Run ids become file and directory names: keep them to a safe alphabet.
pub fn validate_run(run: &str) -> Result<(), AgentError> {
    if terminus_core::ledger::is_valid_run_id(run) {
        Ok(())
    } else {
        Err(AgentError::Usage(format!(
            "invalid run id {run:?}: use {}",
            terminus_core::ledger::RUN_ID_RULE
        )))
    }
}

/// The state directory and its locked ledgers.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

/// A ledger held under an exclusive lock until dropped or saved.
pub struct Locked {
    /// Held for its Drop, which releases the flock.
    _lock: Flock<File>,
    path: PathBuf,
    pub ledger: Ledger,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    pub fn path_of(&self, run: &str) -> PathBuf {
        self.dir.join(format!("{run}.json"))
    }

    pub fn log_path(&self, run: &str) -> PathBuf {
        self.dir.join(format!("{run}.log"))
    }

    /// Locks (creating if needed) the ledger of `run`.
    pub fn open(&self, run: &str) -> Result<Locked, AgentError> {
        validate_run(run)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| AgentError::io(format!("creating state dir {}", self.dir.display()), e))?;
        let lock_path = self.dir.join(format!(".{run}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AgentError::io(format!("opening {}", lock_path.display()), e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| {
            AgentError::io(format!("locking {}", lock_path.display()), e.into())
        })?;
        let path = self.path_of(run);
        let ledger = match File::open(&path) {
            Ok(mut f) => {
                let mut s = String::new();
                f.read_to_string(&mut s)
                    .map_err(|e| AgentError::io(format!("reading {}", path.display()), e))?;
                Ledger::from_json(&s).map_err(|e| {
                    AgentError::Failed(format!("ledger {} is not valid: {e}", path.display()))
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::new(run),
            Err(e) => return Err(AgentError::io(format!("reading {}", path.display()), e)),
        };
        Ok(Locked {
            _lock: lock,
            path,
            ledger,
        })
    }

    /// Run ids that have a ledger.
    pub fn runs(&self) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    let run = name.strip_suffix(".json")?.to_string();
                    validate_run(&run).ok()?;
                    Some(run)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }
}

impl Locked {
    /// Writes the ledger atomically (temp file + rename); an empty ledger is removed.
    pub fn save(&self) -> Result<(), AgentError> {
        if self.ledger.entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(AgentError::io(
                    format!("removing {}", self.path.display()),
                    e,
                )),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(self.ledger.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| AgentError::io(format!("writing {}", self.path.display()), e))
    }

    /// Appends an entry and saves at once (the write-ahead step of every fault).
    pub fn record(&mut self, e: Entry) -> Result<usize, AgentError> {
        self.ledger.entries.push(e);
        self.save()?;
        Ok(self.ledger.entries.len() - 1)
    }
}

impl Drop for Locked {
    /// A run with nothing left leaves nothing behind: no ledger, log or lock file.
    fn drop(&mut self) {
        if self.ledger.entries.is_empty() && !self.path.exists() {
            if let (Some(dir), Some(run)) = (self.path.parent(), Some(&self.ledger.run)) {
                let _ = std::fs::remove_file(dir.join(format!("{run}.log")));
                let _ = std::fs::remove_file(dir.join(format!(".{run}.lock")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_refused_as_usage_errors() {
        assert!(validate_run("abc-123_x.y").is_ok());
        let e = validate_run("a/b").expect_err("refused");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("[A-Za-z0-9._-]"), "{e}");
    }

    #[test]
    fn store_save_and_remove_when_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path());
        {
            let mut l = store.open("t1").expect("open");
            l.record(Entry::Immutable {
                path: "/a".into(),
                at: 0,
            })
            .expect("record");
        }
        assert_eq!(store.runs(), vec!["t1".to_string()]);
        let mut l = store.open("t1").expect("reopen");
        assert_eq!(l.ledger.entries.len(), 1);
        l.ledger.entries.clear();
        l.save().expect("save");
        assert!(store.runs().is_empty());
    }
}
