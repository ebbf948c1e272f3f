//! The fault ledger: one JSON file per run in the state directory
//! (`/var/lib/terminus-agent/<run>.json`). A fault is written here *before* it is applied
//! (and completed with pids once they exist), so `gc` can undo exactly what was done,
//! even after the harness that asked for it was killed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FillMode {
    Bytes,
    Inodes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    Cwd,
    Fd,
    Bind,
}

/// One applied (or being applied) fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Entry {
    /// FS_IMMUTABLE_FL set on `path`.
    Immutable { path: PathBuf, at: i64 },
    /// SIGSTOP sent to `pid` (identified by its start time).
    Freeze {
        pid: i32,
        start_ticks: u64,
        comm: String,
        at: i64,
    },
    /// A filler daemon keeps the filesystem of `dir` full with files under `files_dir`.
    Fill {
        dir: PathBuf,
        files_dir: PathBuf,
        mode: FillMode,
        pid: Option<i32>,
        start_ticks: Option<u64>,
        at: i64,
    },
    /// A holder process (in its own mount namespace) keeps `path` busy.
    Hold {
        path: PathBuf,
        via: Via,
        pid: Option<i32>,
        start_ticks: Option<u64>,
        bind_target: Option<PathBuf>,
        at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub version: u32,
    pub run: String,
    pub entries: Vec<Entry>,
}

impl Ledger {
    pub fn new(run: &str) -> Self {
        Ledger {
            version: VERSION,
            run: run.to_string(),
            entries: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Run ids become file and directory names: keep them to a safe alphabet.
pub fn validate_run(run: &str) -> Result<(), AgentError> {
    let ok = !run.is_empty()
        && run.len() <= 64
        && !run.starts_with('.')
        && !run.starts_with('-')
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AgentError::Usage(format!(
            "invalid run id {run:?}: use 1-64 characters from [A-Za-z0-9._-], not starting with '.' or '-'"
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

    fn sample() -> Ledger {
        Ledger {
            version: VERSION,
            run: "r-1".into(),
            entries: vec![
                Entry::Immutable {
                    path: "/var/lib/x/f".into(),
                    at: 1,
                },
                Entry::Freeze {
                    pid: 42,
                    start_ticks: 999,
                    comm: "containerd".into(),
                    at: 2,
                },
                Entry::Fill {
                    dir: "/mnt/small".into(),
                    files_dir: "/mnt/small/.terminus-fill-r-1".into(),
                    mode: FillMode::Inodes,
                    pid: None,
                    start_ticks: None,
                    at: 3,
                },
                Entry::Hold {
                    path: "/run/x/rootfs".into(),
                    via: Via::Bind,
                    pid: Some(7),
                    start_ticks: Some(8),
                    bind_target: Some("/run/terminus-hold-r-1".into()),
                    at: 4,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let l = sample();
        let back = Ledger::from_json(&l.to_json()).expect("parses");
        assert_eq!(back, l);
    }

    #[test]
    fn wire_shape() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        assert_eq!(v["entries"][0]["kind"], "immutable");
        assert_eq!(v["entries"][1]["kind"], "freeze");
        assert_eq!(v["entries"][2]["mode"], "inodes");
        assert_eq!(v["entries"][3]["via"], "bind");
        assert_eq!(v["entries"][2]["pid"], serde_json::Value::Null);
    }

    #[test]
    fn rejects_unknown_kind_and_fields() {
        assert!(
            Ledger::from_json(r#"{"version":1,"run":"a","entries":[{"kind":"nope"}]}"#).is_err()
        );
        assert!(Ledger::from_json(r#"{"version":1,"run":"a","entries":[],"x":1}"#).is_err());
    }

    #[test]
    fn run_ids() {
        assert!(validate_run("abc-123_x.y").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_run(bad).is_err(), "{bad:?} accepted");
        }
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
