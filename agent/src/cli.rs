//! The command line: one clap struct per subcommand, so `main` dispatches each to one
//! function. Flags, defaults and help texts are the documented interface
//! (agent/README.md) the harness calls.
//!
//! Architecture invariant: parsing only; nothing here touches the node.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use terminus_core::ledger::{FillMode, Via};

use crate::{freeze, hold};

#[derive(Parser, Debug)]
#[command(
    name = "terminus-agent",
    version,
    about = "terminus node agent: node faults, recovery and evidence"
)]
pub struct Cli {
    /// Where fault ledgers live.
    #[arg(
        long,
        global = true,
        env = "TERMINUS_AGENT_STATE_DIR",
        default_value = "/var/lib/terminus-agent"
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Set or clear FS_IMMUTABLE_FL on a file or directory.
    Immutable {
        #[command(subcommand)]
        op: ImmutableOp,
    },
    /// Print inode flags in lsattr's format.
    Lsattr(LsattrArgs),
    /// Fill the filesystem holding DIR until ENOSPC and keep it full (resident daemon).
    Fill(FillArgs),
    /// Stop the fillers of a run and remove their files.
    Unfill(UnfillArgs),
    /// SIGSTOP a process (by pid, name, or as the shim of a container).
    Freeze(FreezeArgs),
    /// SIGCONT a process; with only --run, every process that run froze.
    Thaw(ThawArgs),
    /// Start a resident process that keeps PATH busy from its own mount namespace.
    HoldMount(HoldMountArgs),
    /// Kill the mount holders of a run.
    Release(ReleaseArgs),
    /// Rename a file aside in its own directory (recorded first; gc puts it back), so
    /// whatever looks it up by name fails: a CNI plugin in /opt/cni/bin.
    MoveAside {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Start a stray process in a child cgroup of pod UID's cgroup and freeze it there
    /// (recorded first; gc thaws, kills and removes it), so kubelet cannot remove the
    /// pod's cgroup.
    BusyCgroup {
        #[arg(long)]
        pod_uid: String,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Drop the node's TCP packets to the API server (every address its name in kubelet's
    /// kubeconfig resolves to: iptables/ip6tables OUTPUT rules with the comment
    /// `terminus-RUN`, recorded first; gc deletes them).
    BlockApi {
        /// The kubeconfig whose `server:` names the API server.
        #[arg(long, default_value = "/etc/kubernetes/kubelet.conf")]
        kubeconfig: PathBuf,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Thaw a frozen cgroup: write THAWED to DIR/freezer.state (v1) or 0 to
    /// DIR/cgroup.freeze (v2). DIR must lie under /sys/fs/cgroup.
    ThawCgroup { dir: PathBuf },
    /// Stop kubelet or containerd with systemd (recorded first; gc starts it again).
    StopUnit {
        #[arg(long, value_parser = ["kubelet", "containerd"])]
        unit: String,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Put a directory on a size-limited tmpfs (content copied in), or restore it.
    Tmpfs {
        #[command(subcommand)]
        op: TmpfsOp,
    },
    /// What of terminus is left on this node, as JSON; exit 1 when anything is.
    Leftovers,
    /// `grep -H ID /proc/*/mountinfo`.
    Mountinfo { id: String },
    /// Container layers still mounted in a mount namespace other than the runtime's
    /// after the runtime let go of them (`grep -H` lines; `--json` for details).
    LeakedMounts {
        #[arg(long)]
        json: bool,
    },
    /// Processes whose cwd/root/fd/mounts point inside PATH, as JSON.
    Holders {
        path: PathBuf,
        /// The runtime process whose mount namespace is the reference (default: containerd).
        #[arg(long)]
        runtime_pid: Option<i32>,
    },
    /// `ps -eo pid,ppid,stat,lstart,args` from /proc.
    Ps,
    /// `df -P` (or `df -P -i` with --inodes).
    Df {
        #[arg(long, short = 'i')]
        inodes: bool,
    },
    /// Write the node half of an evidence bundle into DIR.
    Collect(CollectArgs),
    /// Print the ledger(s) as JSON.
    Ledger {
        #[arg(long)]
        run: Option<String>,
    },
    /// Undo everything recorded for a run (or all runs), kill its daemons, drop its ledger.
    Gc {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        run: Option<String>,
        #[arg(long)]
        all: bool,
    },
    #[command(name = "__fill", hide = true)]
    FillDaemon(FillDaemonArgs),
    #[command(name = "__hold", hide = true)]
    HoldDaemon(HoldDaemonArgs),
    #[command(name = "__stray", hide = true)]
    StrayDaemon,
}

#[derive(Subcommand, Debug)]
pub enum TmpfsOp {
    /// Record, then mount a tmpfs (source `terminus-tmpfs-RUN`) over DIR with DIR's content.
    Mount {
        #[arg(long)]
        dir: PathBuf,
        /// Size in bytes (suffixes K, M, G allowed).
        #[arg(long, value_parser = size_arg)]
        size: u64,
        #[arg(long)]
        inodes: u64,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Copy the run's tmpfs content back onto the directory underneath and unmount it.
    Restore {
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImmutableOp {
    /// Set the flag (recorded in the run's ledger first).
    Set {
        path: PathBuf,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// Clear the flag (and drop it from the ledger of --run, or of every run).
    Clear {
        path: PathBuf,
        #[arg(long, env = "TERMINUS_RUN")]
        run: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct LsattrArgs {
    pub paths: Vec<PathBuf>,
    /// List everything below DIR (without crossing filesystems).
    #[arg(long, short = 'R', value_name = "DIR")]
    pub recursive: Vec<PathBuf>,
    /// Only entries with the i or a flag.
    #[arg(long)]
    pub only_flagged: bool,
    #[arg(long, default_value_t = 200_000)]
    pub max_lines: usize,
}

#[derive(Args, Debug)]
pub struct FillArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub mode: FillMode,
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: String,
    /// Refuse filesystems larger than this many bytes (suffixes K, M, G allowed).
    #[arg(long, default_value = "2G", value_parser = size_arg)]
    pub max_size: u64,
    /// Refuse filesystems with more inodes than this.
    #[arg(long, default_value_t = 4_000_000)]
    pub max_inodes: u64,
    /// Seconds to wait for the initial fill.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct UnfillArgs {
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: String,
}

#[derive(Args, Debug)]
pub struct FreezeArgs {
    #[command(flatten)]
    pub sel: SelectArgs,
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: String,
}

#[derive(Args, Debug)]
pub struct ThawArgs {
    #[command(flatten)]
    pub sel: SelectArgs,
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: Option<String>,
}

#[derive(Args, Debug)]
pub struct HoldMountArgs {
    #[arg(long)]
    pub path: PathBuf,
    #[arg(long, value_enum)]
    pub via: Via,
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: String,
    #[arg(long, value_enum, default_value = "new")]
    pub ns: hold::Ns,
    /// Enter this process's mount namespace first (e.g. containerd's, from a pod).
    #[arg(long, value_name = "PID")]
    pub mount_ns_of: Option<i32>,
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[arg(long, env = "TERMINUS_RUN")]
    pub run: String,
    #[arg(long)]
    pub path: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CollectArgs {
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long = "container-id")]
    pub container_ids: Vec<String>,
    #[arg(long)]
    pub pod_uid: Option<String>,
    /// journalctl --since value.
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    pub since: String,
    /// Deadline for each external command, seconds.
    #[arg(long, default_value_t = 10)]
    pub cmd_timeout: u64,
    /// Skip the flagged-only lsattr scan of every containerd snapshot.
    #[arg(long)]
    pub no_snapshot_scan: bool,
}

#[derive(Args, Debug)]
pub struct FillDaemonArgs {
    /// Only for `ps` readers: the run is also in the environment.
    #[arg(long)]
    pub run: String,
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub files_dir: PathBuf,
    #[arg(long, value_enum)]
    pub mode: FillMode,
    #[arg(long)]
    pub max_size: u64,
    #[arg(long)]
    pub max_inodes: u64,
}

#[derive(Args, Debug)]
pub struct HoldDaemonArgs {
    /// Only for `ps` readers: the run is also in the environment.
    #[arg(long)]
    pub run: String,
    #[arg(long)]
    pub path: PathBuf,
    #[arg(long, value_enum)]
    pub via: Via,
    #[arg(long, value_enum)]
    pub ns: hold::Ns,
    #[arg(long)]
    pub target: PathBuf,
    #[arg(long)]
    pub mount_ns_of: Option<i32>,
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    pid: Option<i32>,
    /// Program name (comm or argv[0] basename), e.g. containerd, kubelet.
    #[arg(long)]
    name: Option<String>,
    /// Substring the argument list must contain (with --name).
    #[arg(long = "match", requires = "name")]
    matching: Option<String>,
    /// The containerd shim serving this container id.
    #[arg(long, value_name = "CONTAINER_ID")]
    shim_of: Option<String>,
    /// containerd's task directory (for --shim-of).
    #[arg(long, default_value = freeze::DEFAULT_TASK_ROOT)]
    task_root: String,
    /// Allow several matches.
    #[arg(long)]
    all: bool,
}

impl SelectArgs {
    pub fn select(&self) -> freeze::Select {
        freeze::Select {
            pid: self.pid,
            name: self.name.clone(),
            matching: self.matching.clone(),
            shim_of: self.shim_of.clone(),
            task_root: Some(self.task_root.clone()),
            all: self.all,
        }
    }
}

/// `--max-size` is not a size in the syntax of `terminus_core::units`.
#[derive(Debug, thiserror::Error)]
#[error("invalid size {0:?} (examples: 16777216, 512M, 2G)")]
pub struct BadSize(String);

fn size_arg(text: &str) -> Result<u64, BadSize> {
    terminus_core::units::parse_size(text).ok_or_else(|| BadSize(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_arg("2G").ok(), Some(2 << 30));
        assert_eq!(size_arg("16M").ok(), Some(16 << 20));
        assert_eq!(size_arg("4096").ok(), Some(4096));
        assert!(size_arg("lots").is_err());
        assert!(size_arg("99999999999999G").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
