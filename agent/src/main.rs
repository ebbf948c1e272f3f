//! terminus-agent: runs inside a Kubernetes node (a kind node container via `docker
//! exec`, or a privileged hostPID pod). It applies and recovers node-level faults that
//! keep pods in Terminating, and gathers the node half of an evidence bundle.
//!
//! Output contract: human lines on stderr; exactly one JSON object on stdout for
//! commands the harness parses (text commands such as `ps` print their text instead).
//! Exit codes: 0 ok, 1 failed, 2 bad input, 3 refused by a safety limit.

mod attrs;
mod collect;
mod daemon;
mod df;
mod error;
mod fill;
mod freeze;
mod gc;
mod hold;
mod immutable;
mod ledger;
mod procfs;
mod ps;
mod sys;
mod timefmt;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use error::{AgentError, Result};
use ledger::{FillMode, Store, Via};

#[derive(Parser, Debug)]
#[command(
    name = "terminus-agent",
    version,
    about = "terminus node agent: node faults, recovery and evidence"
)]
struct Cli {
    /// Where fault ledgers live.
    #[arg(
        long,
        global = true,
        env = "TERMINUS_AGENT_STATE_DIR",
        default_value = "/var/lib/terminus-agent"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Set or clear FS_IMMUTABLE_FL on a file or directory.
    Immutable {
        #[command(subcommand)]
        op: ImmutableOp,
    },
    /// Print inode flags in lsattr's format.
    Lsattr {
        paths: Vec<PathBuf>,
        /// List everything below DIR (without crossing filesystems).
        #[arg(long, short = 'R', value_name = "DIR")]
        recursive: Vec<PathBuf>,
        /// Only entries with the i or a flag.
        #[arg(long)]
        only_flagged: bool,
        #[arg(long, default_value_t = 200_000)]
        max_lines: usize,
    },
    /// Fill the filesystem holding DIR until ENOSPC and keep it full (resident daemon).
    Fill {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_enum)]
        mode: FillMode,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
        /// Refuse filesystems larger than this many bytes (suffixes K, M, G allowed).
        #[arg(long, default_value = "2G", value_parser = parse_size)]
        max_size: u64,
        /// Refuse filesystems with more inodes than this.
        #[arg(long, default_value_t = 4_000_000)]
        max_inodes: u64,
        /// Seconds to wait for the initial fill.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Stop the fillers of a run and remove their files.
    Unfill {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// SIGSTOP a process (by pid, name, or as the shim of a container).
    Freeze {
        #[command(flatten)]
        sel: SelectArgs,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
    },
    /// SIGCONT a process; with only --run, every process that run froze.
    Thaw {
        #[command(flatten)]
        sel: SelectArgs,
        #[arg(long, env = "TERMINUS_RUN")]
        run: Option<String>,
    },
    /// Start a resident process that keeps PATH busy from its own mount namespace.
    HoldMount {
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_enum)]
        via: Via,
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
        #[arg(long, value_enum, default_value = "new")]
        ns: hold::Ns,
        /// Enter this process's mount namespace first (e.g. containerd's, from a pod).
        #[arg(long, value_name = "PID")]
        mount_ns_of: Option<i32>,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Kill the mount holders of a run.
    Release {
        #[arg(long, env = "TERMINUS_RUN")]
        run: String,
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// `grep -H ID /proc/*/mountinfo`.
    Mountinfo { id: String },
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
    Collect {
        #[arg(long)]
        out: PathBuf,
        #[arg(long = "container-id")]
        container_ids: Vec<String>,
        #[arg(long)]
        pod_uid: Option<String>,
        /// journalctl --since value.
        #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
        since: String,
        /// Deadline for each external command, seconds.
        #[arg(long, default_value_t = 10)]
        cmd_timeout: u64,
        /// Skip the flagged-only lsattr scan of every containerd snapshot.
        #[arg(long)]
        no_snapshot_scan: bool,
    },
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
    FillDaemon {
        /// Only for `ps` readers: the run is also in the environment.
        #[arg(long)]
        run: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        files_dir: PathBuf,
        #[arg(long, value_enum)]
        mode: FillMode,
        #[arg(long)]
        max_size: u64,
        #[arg(long)]
        max_inodes: u64,
    },
    #[command(name = "__hold", hide = true)]
    HoldDaemon {
        #[arg(long)]
        run: String,
        #[arg(long)]
        path: PathBuf,
        #[arg(long, value_enum)]
        via: Via,
        #[arg(long, value_enum)]
        ns: hold::Ns,
        #[arg(long)]
        target: PathBuf,
        #[arg(long)]
        mount_ns_of: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
enum ImmutableOp {
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

#[derive(clap::Args, Debug)]
struct SelectArgs {
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
    fn select(&self) -> freeze::Select {
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

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("invalid size {s:?} (examples: 16777216, 512M, 2G)"))
}

fn print_json(v: &serde_json::Value) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{v}");
}

fn print_text(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
}

fn check_run(run: &str) -> Result<()> {
    ledger::validate_run(run)
}

fn run(cli: Cli) -> Result<i32> {
    // Absolute, because daemons are found again by the state dir in their environment.
    let state_dir = std::path::absolute(&cli.state_dir)
        .map_err(|e| AgentError::Usage(format!("--state-dir {}: {e}", cli.state_dir.display())))?;
    let store = Store::new(state_dir);
    match cli.cmd {
        Cmd::Immutable {
            op: ImmutableOp::Set { path, run },
        } => {
            check_run(&run)?;
            let v = immutable::set(&store, &run, &path)?;
            eprintln!("immutable flag set on {}", path.display());
            print_json(&v);
        }
        Cmd::Immutable {
            op: ImmutableOp::Clear { path, run },
        } => {
            if let Some(r) = &run {
                check_run(r)?;
            }
            let v = immutable::clear(&store, run.as_deref(), &path)?;
            eprintln!("immutable flag cleared on {}", path.display());
            print_json(&v);
        }
        Cmd::Lsattr {
            paths,
            recursive,
            only_flagged,
            max_lines,
        } => {
            if paths.is_empty() && recursive.is_empty() {
                return Err(AgentError::Usage(
                    "lsattr needs PATH... or --recursive DIR".into(),
                ));
            }
            let mut out = std::io::stdout().lock();
            let mut errors = 0;
            for (p, rec) in paths
                .iter()
                .map(|p| (p, false))
                .chain(recursive.iter().map(|p| (p, true)))
            {
                let opts = attrs::ListOpts {
                    recursive: rec,
                    only_flagged,
                    max_lines,
                    max_visited: usize::MAX,
                };
                let st = attrs::list(p, opts, &mut out)
                    .map_err(|e| AgentError::io("writing output", e))?;
                errors += st.errors;
            }
            return Ok(if errors > 0 { 1 } else { 0 });
        }
        Cmd::Fill {
            dir,
            mode,
            run,
            max_size,
            max_inodes,
            timeout,
        } => {
            check_run(&run)?;
            let v = fill::fill(
                &store,
                &fill::FillArgs {
                    dir: &dir,
                    mode,
                    run: &run,
                    max_size,
                    max_inodes,
                    timeout: Duration::from_secs(timeout),
                },
            )?;
            eprintln!("filler pid {} keeps {} full", v["pid"], dir.display());
            print_json(&v);
        }
        Cmd::Unfill { dir, run } => {
            check_run(&run)?;
            let v = fill::unfill(&store, &run, dir.as_deref())?;
            eprintln!("fillers of run {run} stopped");
            print_json(&v);
        }
        Cmd::Freeze { sel, run } => {
            check_run(&run)?;
            let v = freeze::freeze(&store, &run, &sel.select())?;
            eprintln!("frozen: {}", v["frozen"]);
            print_json(&v);
        }
        Cmd::Thaw { sel, run } => {
            if let Some(r) = &run {
                check_run(r)?;
            }
            let v = freeze::thaw(&store, run.as_deref(), &sel.select())?;
            eprintln!("thawed: {}", v["thawed"]);
            print_json(&v);
        }
        Cmd::HoldMount {
            path,
            via,
            run,
            ns,
            mount_ns_of,
            timeout,
        } => {
            check_run(&run)?;
            let v = hold::hold(
                &store,
                &hold::HoldArgs {
                    path: &path,
                    via,
                    ns,
                    ns_of: mount_ns_of,
                    run: &run,
                    timeout: Duration::from_secs(timeout),
                },
            )?;
            eprintln!("holder pid {} keeps {} busy", v["pid"], path.display());
            print_json(&v);
        }
        Cmd::Release { run, path } => {
            check_run(&run)?;
            let v = hold::release(&store, &run, path.as_deref())?;
            eprintln!("holders of run {run} released");
            print_json(&v);
        }
        Cmd::Mountinfo { id } => {
            if id.is_empty() {
                return Err(AgentError::Usage("mountinfo needs a non-empty ID".into()));
            }
            let mut s = hold::grep_mountinfo(&id).join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            print_text(&s);
        }
        Cmd::Holders { path, runtime_pid } => {
            if !path.is_absolute() {
                return Err(AgentError::Usage(format!(
                    "{} must be absolute",
                    path.display()
                )));
            }
            print_json(&hold::holders(&path, runtime_pid));
        }
        Cmd::Ps => print_text(&ps::render()),
        Cmd::Df { inodes } => print_text(&df::render(inodes)),
        Cmd::Collect {
            out,
            container_ids,
            pod_uid,
            since,
            cmd_timeout,
            no_snapshot_scan,
        } => {
            let v = collect::collect(&collect::CollectArgs {
                out: &out,
                container_ids: &container_ids,
                pod_uid: pod_uid.as_deref(),
                since: &since,
                timeout: Duration::from_secs(cmd_timeout),
                scan_snapshots: !no_snapshot_scan,
            })?;
            print_json(&v);
        }
        Cmd::Ledger { run } => {
            let runs = match run {
                Some(r) => {
                    check_run(&r)?;
                    vec![r]
                }
                None => store.runs(),
            };
            let mut ls = Vec::new();
            for r in runs {
                if store.path_of(&r).exists() {
                    ls.push(store.open(&r)?.ledger.clone());
                }
            }
            print_json(&serde_json::json!({"state_dir": store.dir, "ledgers": ls}));
        }
        Cmd::Gc { run, all } => {
            if let Some(r) = &run {
                check_run(r)?;
            }
            let (ok, v) = gc::gc(&store, if all { None } else { run.as_deref() })?;
            for r in v["runs"].as_array().into_iter().flatten() {
                for a in r["actions"].as_array().into_iter().flatten() {
                    eprintln!(
                        "gc {}: {}",
                        r["run"].as_str().unwrap_or("?"),
                        a.as_str().unwrap_or_default()
                    );
                }
                for e in r["errors"].as_array().into_iter().flatten() {
                    eprintln!(
                        "gc {}: ERROR {}",
                        r["run"].as_str().unwrap_or("?"),
                        e.as_str().unwrap_or_default()
                    );
                }
            }
            print_json(&v);
            return Ok(if ok { 0 } else { 1 });
        }
        Cmd::FillDaemon {
            run: _,
            dir,
            files_dir,
            mode,
            max_size,
            max_inodes,
        } => fill::daemon_main(&dir, &files_dir, mode, max_size, max_inodes),
        Cmd::HoldDaemon {
            run: _,
            path,
            via,
            ns,
            target,
            mount_ns_of,
        } => hold::daemon_main(&path, via, ns, mount_ns_of, &target),
    }
    Ok(0)
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("terminus-agent: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
