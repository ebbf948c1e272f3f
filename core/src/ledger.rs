//! The node agent's ledger and the other values the agent and the harness exchange as
//! JSON: what a ledger records ([`Entry`]), fill modes ([`FillMode`]), how a holder
//! keeps a mount busy ([`Via`]), the `ledger` command's listing ([`Listing`]) and what
//! `gc` did ([`GcReport`]).
//!
//! The agent (`terminus-agent`) writes these values; the harness reads them and builds
//! the agent's command lines from the same enums ([`FillMode::as_str`], [`Via::as_str`]),
//! so neither side spells the wire format by hand. Locking and storing a ledger is the
//! agent's business (`agent/src/ledger.rs`); this module is the pure shape.
//!
//! Architecture invariant: these types are a wire format between two binaries that may
//! come from different builds (the agent copied into a node earlier): field names and
//! kebab-case tags are never renamed; a new field or kind bumps [`VERSION`].
//!
//! Architecture invariant: a ledger entry identifies a process by pid *and* start time
//! (`start_ticks`), so recovery never acts on a recycled pid.
//!
//! Architecture invariant: no IO here; the only fallible operations are parsing JSON
//! and checking a run id.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The ledger format version written into every ledger. 2 added [`Entry::Stopped`] and
/// [`Entry::Tmpfs`], 3 [`Entry::Aside`], 4 [`Entry::Stray`] and [`Entry::Blocked`]; older ledgers read
/// as they are.
pub const VERSION: u32 = 4;

/// What a filler takes until none is left: blocks or inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum FillMode {
    Bytes,
    Inodes,
}

/// How a holder process keeps a path busy from its own mount namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Its working directory is the path.
    Cwd,
    /// It holds an open file descriptor on the path.
    Fd,
    /// It bind-mounts the path elsewhere in its namespace.
    Bind,
}

impl FillMode {
    /// The spelling on the agent's command line and in its JSON (`--mode bytes`).
    pub fn as_str(self) -> &'static str {
        match self {
            FillMode::Bytes => "bytes",
            FillMode::Inodes => "inodes",
        }
    }
}

impl Via {
    /// The spelling on the agent's command line and in its JSON (`--via cwd`).
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cwd => "cwd",
            Via::Fd => "fd",
            Via::Bind => "bind",
        }
    }
}

impl fmt::Display for FillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// A systemd unit (kubelet, containerd) stopped with `systemctl stop`.
    Stopped { unit: String, at: i64 },
    /// A size-limited tmpfs, mount source `source`, bound over `dir` with dir's content
    /// copied in. Undone by copying its content (without fillers) back onto the directory
    /// underneath, then unmounting it.
    Tmpfs {
        dir: PathBuf,
        source: String,
        at: i64,
    },
    /// A file renamed to `aside` in its own directory (a CNI plugin its users can no
    /// longer find). Undone by renaming it back.
    Aside {
        path: PathBuf,
        aside: PathBuf,
        at: i64,
    },
    /// A stray process (pid and start time, once started) moved into the child cgroups
    /// `dirs` (`terminus-<run>` under the pod's cgroup, one per hierarchy) and frozen
    /// by writing its `freeze` control file. Undone by thawing, killing, removing `dirs`.
    Stray {
        dirs: Vec<PathBuf>,
        freeze: PathBuf,
        pid: Option<i32>,
        start_ticks: Option<u64>,
        at: i64,
    },
    /// An iptables rule in the node's OUTPUT chain dropping TCP to `dest:port`, marked
    /// with the comment `comment`. Undone by deleting that rule.
    Blocked {
        dest: String,
        port: u16,
        comment: String,
        at: i64,
    },
}

/// What `terminus-agent leftovers` found of terminus on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Nothing found.
    pub clean: bool,
    pub items: Vec<Leftover>,
}

/// One thing of terminus's (or one a fault caused) still on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    pub kind: LeftoverKind,
    /// The path, unit, pid or mount, as a person would look it up.
    pub what: String,
}

/// The kinds of leftover the agent checks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftoverKind {
    /// A run's ledger is still in the state directory.
    Ledger,
    /// One of the agent's daemons (filler, holder) is alive.
    Daemon,
    /// A process is stopped (state T: SIGSTOP).
    StoppedProcess,
    /// kubelet or containerd is not active.
    InactiveUnit,
    /// A mount terminus made (source `terminus-*`, or under `/run/terminus-*`).
    Mount,
    /// A file under the kubelet's or containerd's directories with the immutable or
    /// append-only flag.
    Immutable,
    /// A directory terminus made (`/run/terminus-*`, a filler's `.terminus-fill-*`).
    Path,
    /// An iptables rule of terminus's (comment `terminus-*`): a partition left in place.
    NetworkRule,
}

impl LeftoverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeftoverKind::Ledger => "ledger",
            LeftoverKind::Daemon => "daemon",
            LeftoverKind::StoppedProcess => "stopped-process",
            LeftoverKind::InactiveUnit => "inactive-unit",
            LeftoverKind::Mount => "mount",
            LeftoverKind::Immutable => "immutable",
            LeftoverKind::Path => "path",
            LeftoverKind::NetworkRule => "network-rule",
        }
    }
}

impl fmt::Display for LeftoverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Leftovers {
    pub fn new(items: Vec<Leftover>) -> Self {
        Leftovers {
            clean: items.is_empty(),
            items,
        }
    }
}

/// Every fault of one run, in the order they were recorded.
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

/// What `terminus-agent ledger [--run RUN]` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub state_dir: PathBuf,
    pub ledgers: Vec<Ledger>,
}

/// What `terminus-agent gc` did to one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunGc {
    pub run: String,
    /// What was undone (or found already undone), in order.
    pub actions: Vec<String>,
    /// What could not be undone; those entries stay in the ledger.
    pub errors: Vec<String>,
    /// Nothing is left of the run's ledger.
    pub ledger_removed: bool,
}

/// What `terminus-agent gc` prints: `ok` is false when some run kept an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub ok: bool,
    pub runs: Vec<RunGc>,
}

/// The alphabet of run ids, which become file and directory names in a node.
pub const RUN_ID_RULE: &str = "1-64 characters from [A-Za-z0-9._-], not starting with '.' or '-'";

/// Whether `run` follows [`RUN_ID_RULE`].
pub fn is_valid_run_id(run: &str) -> bool {
    !run.is_empty()
        && run.len() <= 64
        && !run.starts_with('.')
        && !run.starts_with('-')
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
                Entry::Stopped {
                    unit: "kubelet".into(),
                    at: 5,
                },
                Entry::Tmpfs {
                    dir: "/var/lib/containerd/io.containerd.grpc.v1.cri".into(),
                    source: "terminus-cri-r-1".into(),
                    at: 6,
                },
                Entry::Aside {
                    path: "/opt/cni/bin/ptp".into(),
                    aside: "/opt/cni/bin/.terminus-aside-r-1-ptp".into(),
                    at: 7,
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
        assert_eq!(v["entries"][4]["kind"], "stopped");
        assert_eq!(v["entries"][4]["unit"], "kubelet");
        assert_eq!(v["entries"][5]["kind"], "tmpfs");
        assert_eq!(v["entries"][5]["source"], "terminus-cri-r-1");
        assert_eq!(v["entries"][6]["kind"], "aside");
        assert_eq!(
            v["entries"][6]["aside"],
            "/opt/cni/bin/.terminus-aside-r-1-ptp"
        );
    }

    #[test]
    fn a_version_1_ledger_still_reads() {
        let text = r#"{"version":1,"run":"a","entries":[{"kind":"immutable","path":"/a","at":5}]}"#;
        assert_eq!(Ledger::from_json(text).expect("v1").entries.len(), 1);
    }

    #[test]
    fn leftovers_wire_shape() {
        let found = Leftovers::new(vec![Leftover {
            kind: LeftoverKind::InactiveUnit,
            what: "kubelet (inactive)".into(),
        }]);
        let v = serde_json::to_value(&found).expect("json");
        assert_eq!(v["clean"], false);
        assert_eq!(v["items"][0]["kind"], "inactive-unit");
        assert_eq!(
            serde_json::to_value(LeftoverKind::StoppedProcess).expect("json"),
            LeftoverKind::StoppedProcess.as_str()
        );
        assert!(Leftovers::new(Vec::new()).clean);
    }

    #[test]
    fn rejects_unknown_kind_and_fields() {
        assert!(
            Ledger::from_json(r#"{"version":1,"run":"a","entries":[{"kind":"nope"}]}"#).is_err()
        );
        assert!(Ledger::from_json(r#"{"version":1,"run":"a","entries":[],"x":1}"#).is_err());
    }

    #[test]
    fn spellings_match_serde() {
        for m in [FillMode::Bytes, FillMode::Inodes] {
            assert_eq!(serde_json::to_value(m).expect("json"), m.as_str());
        }
        for v in [Via::Cwd, Via::Fd, Via::Bind] {
            assert_eq!(serde_json::to_value(v).expect("json"), v.as_str());
        }
    }

    #[test]
    fn listing_from_the_agent() {
        let text = r#"{"state_dir":"/var/lib/terminus-agent","ledgers":[{"version":1,"run":"t-1","entries":[{"kind":"immutable","path":"/a","at":5}]}]}"#;
        let l: Listing = serde_json::from_str(text).expect("listing");
        assert_eq!(l.ledgers[0].run, "t-1");
    }

    #[test]
    fn run_ids() {
        assert!(is_valid_run_id("abc-123_x.y"));
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_valid_run_id(bad), "{bad:?} accepted");
        }
    }
}
