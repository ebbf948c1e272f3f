//! terminus-agent: runs inside a Kubernetes node (a kind node container via `docker
//! exec`, or a privileged hostPID pod). It applies and recovers node-level faults that
//! keep pods in Terminating, and gathers the node half of an evidence bundle.
//!
//! Output contract: human lines on stderr; exactly one JSON object on stdout for
//! commands the harness parses (text commands such as `ps` print their text instead).
//! Exit codes: 0 ok, 1 failed, 2 bad input, 3 refused by a safety limit; 141 when the
//! command did its work but stdout was closed by its reader (`| head`), as a Unix tool
//! killed by SIGPIPE reports. A closed stdout is never a panic: output goes through
//! [`print_json`] / [`print_text`], which note the closed pipe and carry on, because a
//! fault already applied is in its ledger whether or not its JSON was read.
//!
//! Architecture invariant: stdout carries only a command's result; every diagnostic
//! goes to stderr, so the harness can parse stdout whatever went wrong.
//!
//! Architecture invariant: every fault-applying command validates its run id before it
//! touches anything; the run id names the ledger the fault is written to first.

mod aside;
mod attrs;
mod block;
mod cli;
mod collect;
mod command;
mod daemon;
mod df;
mod error;
mod fill;
mod freeze;
mod gc;
mod hold;
mod immutable;
mod leaks;
mod ledger;
mod leftovers;
mod mounts;
mod procfs;
mod ps;
mod stray;
mod sys;
mod timefmt;
mod tmpfs;
mod unit;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use cli::{Cli, Cmd, ImmutableOp, TmpfsOp};
use error::{AgentError, Result};
use ledger::{validate_run, Store};

/// Set when a write found stdout closed by its reader; `main` then exits 141.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The exit code when stdout was closed: 128 + SIGPIPE.
const EXIT_STDOUT_CLOSED: i32 = 141;

/// Notes a write error on stdout: a closed pipe is remembered (a quiet end), any other
/// error is reported on stderr. Neither stops the command: its work is done.
fn stdout_failed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    } else {
        eprintln!("terminus-agent: writing output: {e}");
    }
}

fn print_json(v: &impl Serialize) {
    let text = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    print_text(&format!("{text}\n"));
}

fn print_text(s: &str) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        stdout_failed(&e);
    }
}

/// Exit code 0: the command did what it was asked.
const DONE: i32 = 0;

fn run(cli: Cli) -> Result<i32> {
    // Absolute, because daemons are found again by the state dir in their environment.
    let state_dir = std::path::absolute(&cli.state_dir)
        .map_err(|e| AgentError::Usage(format!("--state-dir {}: {e}", cli.state_dir.display())))?;
    let store = Store::new(state_dir);
    match cli.cmd {
        Cmd::Immutable {
            op: ImmutableOp::Set { path, run },
        } => immutable_set(&store, &run, &path),
        Cmd::Immutable {
            op: ImmutableOp::Clear { path, run },
        } => immutable_clear(&store, run.as_deref(), &path),
        Cmd::Lsattr(a) => lsattr(&a),
        Cmd::Fill(a) => fill(&store, &a),
        Cmd::Unfill(a) => unfill(&store, &a),
        Cmd::Freeze(a) => freeze(&store, &a),
        Cmd::Thaw(a) => thaw(&store, &a),
        Cmd::HoldMount(a) => hold_mount(&store, &a),
        Cmd::Release(a) => release(&store, &a),
        Cmd::MoveAside { path, run } => {
            validate_run(&run)?;
            let v = aside::move_aside(&store, &run, &path)?;
            eprintln!("moved {} aside to {}", path.display(), v["aside"]);
            print_json(&v);
            Ok(DONE)
        }
        Cmd::BusyCgroup { pod_uid, run } => {
            validate_run(&run)?;
            let v = stray::busy_cgroup(&store, &run, &pod_uid, Duration::from_secs(20))?;
            eprintln!("stray pid {} frozen in {}", v["pid"], v["frozen"]);
            print_json(&v);
            Ok(DONE)
        }
        Cmd::BlockApi { kubeconfig, run } => {
            validate_run(&run)?;
            print_json(&block::block(&store, &run, &kubeconfig)?);
            Ok(DONE)
        }
        Cmd::ThawCgroup { dir } => {
            println!("{}", stray::thaw_cgroup(&dir)?);
            Ok(DONE)
        }
        Cmd::StopUnit { unit, run } => {
            validate_run(&run)?;
            print_json(&unit::stop(&store, &run, &unit)?);
            Ok(DONE)
        }
        Cmd::Tmpfs {
            op:
                TmpfsOp::Mount {
                    dir,
                    size,
                    inodes,
                    run,
                },
        } => {
            validate_run(&run)?;
            let args = tmpfs::MountArgs {
                run: &run,
                dir: &dir,
                size_bytes: size,
                inodes,
            };
            print_json(&tmpfs::mount_over(&store, &args)?);
            Ok(DONE)
        }
        Cmd::Tmpfs {
            op: TmpfsOp::Restore { run },
        } => {
            validate_run(&run)?;
            print_json(&tmpfs::restore(&store, &run)?);
            Ok(DONE)
        }
        Cmd::Leftovers => {
            let found = leftovers::check(&store);
            print_json(&found);
            Ok(if found.clean { DONE } else { 1 })
        }
        Cmd::Mountinfo { id } => mountinfo(&id),
        Cmd::LeakedMounts { json } => {
            let leaks = leaks::find();
            if json {
                print_json(&leaks);
            } else {
                print_text(
                    &leaks
                        .iter()
                        .map(|l| format!("{}\n", l.line))
                        .collect::<String>(),
                );
            }
            Ok(DONE)
        }
        Cmd::Holders { path, runtime_pid } => holders(&path, runtime_pid),
        Cmd::Ps => {
            print_text(&ps::render());
            Ok(DONE)
        }
        Cmd::Df { inodes } => {
            print_text(&df::render(inodes));
            Ok(DONE)
        }
        Cmd::Collect(a) => collect(&a),
        Cmd::Ledger { run } => ledgers(&store, run),
        Cmd::Gc { run, all } => gc(&store, if all { None } else { run.as_deref() }),
        Cmd::FillDaemon(a) => {
            fill::daemon_main(&a.dir, &a.files_dir, a.mode, a.max_size, a.max_inodes)
        }
        Cmd::HoldDaemon(a) => hold::daemon_main(&a.path, a.via, a.ns, a.mount_ns_of, &a.target),
        Cmd::StrayDaemon => stray::daemon_main(),
    }
}

fn validate_optional_run(run: Option<&str>) -> Result<()> {
    run.map_or(Ok(()), validate_run)
}

fn immutable_set(store: &Store, run: &str, path: &Path) -> Result<i32> {
    validate_run(run)?;
    let v = immutable::set(store, run, path)?;
    eprintln!("immutable flag set on {}", path.display());
    print_json(&v);
    Ok(DONE)
}

fn immutable_clear(store: &Store, run: Option<&str>, path: &Path) -> Result<i32> {
    validate_optional_run(run)?;
    let v = immutable::clear(store, run, path)?;
    eprintln!("immutable flag cleared on {}", path.display());
    print_json(&v);
    Ok(DONE)
}

/// Exit 1 when any entry could not be read, as lsattr does.
fn lsattr(a: &cli::LsattrArgs) -> Result<i32> {
    if a.paths.is_empty() && a.recursive.is_empty() {
        return Err(AgentError::Usage(
            "lsattr needs PATH... or --recursive DIR".into(),
        ));
    }
    let mut out = std::io::stdout().lock();
    let mut errors = 0;
    let plain = a.paths.iter().map(|p| (p, false));
    for (p, recursive) in plain.chain(a.recursive.iter().map(|p| (p, true))) {
        let opts = attrs::ListOpts {
            recursive,
            only_flagged: a.only_flagged,
            max_lines: a.max_lines,
            max_visited: usize::MAX,
        };
        let st = match attrs::list(p, opts, &mut out) {
            Ok(st) => st,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                stdout_failed(&e);
                return Ok(DONE);
            }
            Err(e) => return Err(AgentError::io("writing output", e)),
        };
        errors += st.errors;
    }
    Ok(if errors > 0 { 1 } else { DONE })
}

fn fill(store: &Store, a: &cli::FillArgs) -> Result<i32> {
    validate_run(&a.run)?;
    let v = fill::fill(
        store,
        &fill::FillArgs {
            dir: &a.dir,
            mode: a.mode,
            run: &a.run,
            max_size: a.max_size,
            max_inodes: a.max_inodes,
            timeout: Duration::from_secs(a.timeout),
        },
    )?;
    eprintln!("filler pid {} keeps {} full", v["pid"], a.dir.display());
    print_json(&v);
    Ok(DONE)
}

fn unfill(store: &Store, a: &cli::UnfillArgs) -> Result<i32> {
    validate_run(&a.run)?;
    let v = fill::unfill(store, &a.run, a.dir.as_deref())?;
    eprintln!("fillers of run {} stopped", a.run);
    print_json(&v);
    Ok(DONE)
}

fn freeze(store: &Store, a: &cli::FreezeArgs) -> Result<i32> {
    validate_run(&a.run)?;
    let v = freeze::freeze(store, &a.run, &a.sel.select())?;
    eprintln!("frozen: {}", v["frozen"]);
    print_json(&v);
    Ok(DONE)
}

fn thaw(store: &Store, a: &cli::ThawArgs) -> Result<i32> {
    validate_optional_run(a.run.as_deref())?;
    let v = freeze::thaw(store, a.run.as_deref(), &a.sel.select())?;
    eprintln!("thawed: {}", v["thawed"]);
    print_json(&v);
    Ok(DONE)
}

fn hold_mount(store: &Store, a: &cli::HoldMountArgs) -> Result<i32> {
    validate_run(&a.run)?;
    let v = hold::hold(
        store,
        &hold::HoldArgs {
            path: &a.path,
            via: a.via,
            ns: a.ns,
            ns_of: a.mount_ns_of,
            run: &a.run,
            timeout: Duration::from_secs(a.timeout),
        },
    )?;
    eprintln!("holder pid {} keeps {} busy", v["pid"], a.path.display());
    print_json(&v);
    Ok(DONE)
}

fn release(store: &Store, a: &cli::ReleaseArgs) -> Result<i32> {
    validate_run(&a.run)?;
    let v = hold::release(store, &a.run, a.path.as_deref())?;
    eprintln!("holders of run {} released", a.run);
    print_json(&v);
    Ok(DONE)
}

fn mountinfo(id: &str) -> Result<i32> {
    if id.is_empty() {
        return Err(AgentError::Usage("mountinfo needs a non-empty ID".into()));
    }
    let mut s = hold::grep_mountinfo(id).join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    print_text(&s);
    Ok(DONE)
}

fn holders(path: &Path, runtime_pid: Option<i32>) -> Result<i32> {
    if !path.is_absolute() {
        return Err(AgentError::Usage(format!(
            "{} must be absolute",
            path.display()
        )));
    }
    print_json(&hold::holders(path, runtime_pid));
    Ok(DONE)
}

/// `collect` exits 0 even when some files hold failure text: that text is evidence.
fn collect(a: &cli::CollectArgs) -> Result<i32> {
    let collected = collect::collect(&collect::CollectArgs {
        out: &a.out,
        container_ids: &a.container_ids,
        pod_uid: a.pod_uid.as_deref(),
        since: &a.since,
        timeout: Duration::from_secs(a.cmd_timeout),
        scan_snapshots: !a.no_snapshot_scan,
    })?;
    for n in &collected.notes {
        eprintln!("collect: {n}");
    }
    for r in &collected.files {
        match &r.error {
            None => eprintln!("collect: {} ({} bytes)", r.name, r.bytes),
            Some(e) => eprintln!("collect: {} ({} bytes, failed: {e})", r.name, r.bytes),
        }
    }
    print_json(&collected);
    Ok(DONE)
}

fn ledgers(store: &Store, run: Option<String>) -> Result<i32> {
    let runs = match run {
        Some(r) => {
            validate_run(&r)?;
            vec![r]
        }
        None => store.runs(),
    };
    let mut ledgers = Vec::new();
    for r in runs {
        if store.path_of(&r).exists() {
            ledgers.push(store.open(&r)?.ledger.clone());
        }
    }
    print_json(&terminus_core::ledger::Listing {
        state_dir: store.dir.clone(),
        ledgers,
    });
    Ok(DONE)
}

/// Exit 1 when some entry could not be undone (it stays in its ledger).
fn gc(store: &Store, run: Option<&str>) -> Result<i32> {
    validate_optional_run(run)?;
    let report = gc::gc(store, run)?;
    for r in &report.runs {
        for a in &r.actions {
            eprintln!("gc {}: {a}", r.run);
        }
        for e in &r.errors {
            eprintln!("gc {}: ERROR {e}", r.run);
        }
    }
    print_json(&report);
    Ok(if report.ok { DONE } else { 1 })
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(_) if STDOUT_CLOSED.load(Ordering::Relaxed) => EXIT_STDOUT_CLOSED,
        Ok(c) => c,
        Err(e) => {
            eprintln!("terminus-agent: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
