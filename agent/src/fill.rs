//! Disk-full faults: fill a (small, harness-made) filesystem until ENOSPC and keep it full.
//!
//! Architecture invariant: a filesystem over `--max-size` bytes or `--max-inodes`
//! inodes is refused (exit 3) before anything is written, by the command and again by
//! the daemon, so the host's disk is never filled.
//!
//! Architecture invariant: recursive deletion happens only inside a directory named
//! `.terminus-fill-<run>` (`remove_files_dir` checks the name).

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use terminus_core::ledger::{Entry, FillMode};

use crate::daemon;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::procfs;
use crate::timefmt::now_epoch;

const CHUNKS: [usize; 5] = [1 << 20, 64 << 10, 4096, 512, 1];
const MAX_FILE: u64 = 256 << 20;
const PER_DIR: u64 = 10_000;
const TOP_UP_EVERY: Duration = Duration::from_millis(200);

pub fn files_dir_name(run: &str) -> String {
    format!(".terminus-fill-{run}")
}

/// Size checks that keep the filler away from real disks.
pub fn check_limits(dir: &Path, max_size: u64, max_inodes: u64) -> Result<(u64, u64)> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| AgentError::Usage(format!("--dir {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(AgentError::Usage(format!(
            "--dir {} is not a directory",
            dir.display()
        )));
    }
    let s = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| AgentError::io(format!("statvfs {}", dir.display()), e.into()))?;
    let size = (s.blocks() as u64).saturating_mul(s.fragment_size() as u64);
    let files = s.files() as u64;
    if size > max_size {
        return Err(AgentError::Refused(format!(
            "the filesystem holding {} is {} bytes, above --max-size {} bytes; fill only small filesystems made for the test",
            dir.display(),
            size,
            max_size
        )));
    }
    if files > max_inodes {
        return Err(AgentError::Refused(format!(
            "the filesystem holding {} has {} inodes, above --max-inodes {}",
            dir.display(),
            files,
            max_inodes
        )));
    }
    Ok((size, files))
}

fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// State of a running filler.
struct Filler {
    files_dir: PathBuf,
    mode: FillMode,
    next: u64,
    current: Option<(File, u64)>,
    bytes: u64,
    files: u64,
}

impl Filler {
    fn new(files_dir: PathBuf, mode: FillMode) -> Self {
        Filler {
            files_dir,
            mode,
            next: 0,
            current: None,
            bytes: 0,
            files: 0,
        }
    }

    fn next_path(&mut self) -> std::io::Result<PathBuf> {
        let n = self.next;
        self.next += 1;
        match self.mode {
            FillMode::Bytes => Ok(self.files_dir.join(format!("fill-{n:05}"))),
            FillMode::Inodes => {
                let sub = self.files_dir.join(format!("d{:04}", n / PER_DIR));
                if n.is_multiple_of(PER_DIR) || !sub.exists() {
                    match std::fs::create_dir(&sub) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => {
                            self.next -= 1;
                            return Err(e);
                        }
                    }
                }
                Ok(sub.join(format!("{n:06}")))
            }
        }
    }

    /// Takes whatever is free. Returns how much it took; Err only for errors other than
    /// "full".
    fn take(&mut self) -> std::io::Result<u64> {
        match self.mode {
            FillMode::Bytes => self.take_bytes(),
            FillMode::Inodes => self.take_inodes(),
        }
    }

    fn take_inodes(&mut self) -> std::io::Result<u64> {
        let mut made = 0;
        loop {
            let p = match self.next_path() {
                Ok(p) => p,
                Err(e) if is_full(&e) => return Ok(made),
                Err(e) => return Err(e),
            };
            match OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(_) => {
                    made += 1;
                    self.files += 1;
                }
                Err(e) if is_full(&e) => {
                    self.next -= 1;
                    return Ok(made);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take_bytes(&mut self) -> std::io::Result<u64> {
        let buf = vec![0xA5u8; CHUNKS[0]];
        let mut took = 0;
        let mut ci = 0;
        loop {
            if self
                .current
                .as_ref()
                .is_none_or(|(_, len)| *len >= MAX_FILE)
            {
                let p = self.next_path()?;
                match OpenOptions::new().append(true).create(true).open(&p) {
                    Ok(f) => {
                        self.files += 1;
                        self.current = Some((f, 0));
                    }
                    Err(e) if is_full(&e) => {
                        self.next -= 1;
                        return Ok(took);
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some((f, len)) = self.current.as_mut() else {
                return Ok(took);
            };
            match f.write(&buf[..CHUNKS[ci]]) {
                Ok(0) => return Ok(took),
                Ok(n) => {
                    *len += n as u64;
                    took += n as u64;
                    self.bytes += n as u64;
                }
                Err(e) if is_full(&e) => {
                    if ci + 1 == CHUNKS.len() {
                        // Make delayed allocation real so the next round sees true
                        // free space; ENOSPC here is expected and harmless.
                        let _ = f.sync_data();
                        return Ok(took);
                    }
                    ci += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Body of the hidden `__fill` subcommand: fill, report, then keep full forever.
pub fn daemon_main(
    dir: &Path,
    files_dir: &Path,
    mode: FillMode,
    max_size: u64,
    max_inodes: u64,
) -> ! {
    if let Err(msg) = daemon::detach(c"terminus-fill") {
        daemon::report_err(&msg);
        std::process::exit(1);
    }
    if let Err(e) = check_limits(dir, max_size, max_inodes) {
        daemon::report_err(&e.to_string());
        std::process::exit(e.exit_code());
    }
    if let Err(e) = std::fs::create_dir(files_dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            daemon::report_err(&format!("creating {}: {e}", files_dir.display()));
            std::process::exit(1);
        }
    }
    let mut f = Filler::new(files_dir.to_path_buf(), mode);
    // Two rounds: the second picks up blocks released by the first round's sync.
    for _ in 0..2 {
        if let Err(e) = f.take() {
            daemon::report_err(&format!("filling {}: {e}", files_dir.display()));
            std::process::exit(1);
        }
    }
    let (avail, ffree) = nix::sys::statvfs::statvfs(dir)
        .map(|s| {
            (
                s.blocks_available() * s.fragment_size(),
                s.files_available(),
            )
        })
        .unwrap_or((0, 0));
    daemon::report_ok(&json!({
        "bytes_written": f.bytes,
        "files_created": f.files,
        "avail_bytes_after": avail,
        "free_inodes_after": ffree,
    }));
    loop {
        std::thread::sleep(TOP_UP_EVERY);
        match f.take() {
            Ok(0) => {}
            Ok(n) => eprintln!("terminus-agent fill: re-took {n} {mode}"),
            Err(e) => eprintln!("terminus-agent fill: {e}"),
        }
    }
}

pub struct FillArgs<'a> {
    pub dir: &'a Path,
    pub mode: FillMode,
    pub run: &'a str,
    pub max_size: u64,
    pub max_inodes: u64,
    pub timeout: Duration,
}

/// Starts a filler daemon for the filesystem of `a.dir`, recorded in the run's ledger
/// before it starts; returns once the filesystem is full.
pub fn fill(store: &Store, a: &FillArgs) -> Result<serde_json::Value> {
    let (size, files) = check_limits(a.dir, a.max_size, a.max_inodes)?;
    let dir = std::fs::canonicalize(a.dir)
        .map_err(|e| AgentError::Usage(format!("--dir {}: {e}", a.dir.display())))?;
    let files_dir = dir.join(files_dir_name(a.run));
    record_pending_fill(store, a, &dir, &files_dir)?;
    let is_this = |e: &Entry| matches!(e, Entry::Fill { files_dir: fd, .. } if *fd == files_dir);
    let args = fill_daemon_args(a, &dir, &files_dir);
    match daemon::spawn(store, a.run, &args, a.timeout) {
        Ok(st) => {
            let mut l = store.open(a.run)?;
            for e in l.ledger.entries.iter_mut().filter(|e| is_this(e)) {
                if let Entry::Fill {
                    pid, start_ticks, ..
                } = e
                {
                    *pid = Some(st.pid);
                    *start_ticks = Some(st.start_ticks);
                }
            }
            l.save()?;
            Ok(json!({
                "run": a.run,
                "dir": dir,
                "mode": a.mode,
                "pid": st.pid,
                "files_dir": files_dir,
                "fs_size_bytes": size,
                "fs_inodes": files,
                "bytes_written": st.report["bytes_written"],
                "files_created": st.report["files_created"],
                "avail_bytes_after": st.report["avail_bytes_after"],
                "free_inodes_after": st.report["free_inodes_after"],
            }))
        }
        Err(e) => {
            // Recover on the failure path too: the daemon is already killed by spawn.
            let _ = remove_files_dir(&files_dir, a.run);
            let mut l = store.open(a.run)?;
            l.ledger.entries.retain(|en| !is_this(en));
            l.save()?;
            Err(e)
        }
    }
}

/// The write-ahead step: the filler is in the ledger (without a pid) before it starts.
/// One filler per (run, dir), because its files directory is named after the run.
fn record_pending_fill(store: &Store, a: &FillArgs, dir: &Path, files_dir: &Path) -> Result<()> {
    let mut l = store.open(a.run)?;
    if l.ledger
        .entries
        .iter()
        .any(|e| matches!(e, Entry::Fill { files_dir: fd, .. } if *fd == files_dir))
    {
        return Err(AgentError::Usage(format!(
            "run {} already fills {}; unfill it first",
            a.run,
            dir.display()
        )));
    }
    l.record(Entry::Fill {
        dir: dir.to_path_buf(),
        files_dir: files_dir.to_path_buf(),
        mode: a.mode,
        pid: None,
        start_ticks: None,
        at: now_epoch(),
    })?;
    Ok(())
}

/// The hidden `__fill` command line the daemon is re-executed with.
fn fill_daemon_args(a: &FillArgs, dir: &Path, files_dir: &Path) -> Vec<OsString> {
    vec![
        "__fill".into(),
        "--run".into(),
        a.run.into(),
        "--dir".into(),
        dir.into(),
        "--files-dir".into(),
        files_dir.into(),
        "--mode".into(),
        a.mode.as_str().into(),
        "--max-size".into(),
        a.max_size.to_string().into(),
        "--max-inodes".into(),
        a.max_inodes.to_string().into(),
    ]
}

/// Removes a filler directory, after checking it is one of ours.
pub fn remove_files_dir(files_dir: &Path, run: &str) -> std::io::Result<bool> {
    let name_ok = files_dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == files_dir_name(run));
    if !name_ok {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a filler directory of run {run}",
                files_dir.display()
            ),
        ));
    }
    match std::fs::remove_dir_all(files_dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A filler to stop: its pid and start time if known, and its files directory.
type Target = (Option<(i32, Option<u64>)>, PathBuf);

/// Stops the fillers of `run` (all of them, or those filling `dir`) and removes their files.
pub fn unfill(store: &Store, run: &str, dir: Option<&Path>) -> Result<serde_json::Value> {
    let dir = match dir {
        Some(d) => Some(
            std::fs::canonicalize(d)
                .map_err(|e| AgentError::Usage(format!("--dir {}: {e}", d.display())))?,
        ),
        None => None,
    };
    let wanted = |d: &Path| dir.as_deref().is_none_or(|want| want == d);
    let mut l = store.open(run)?;
    let targets = unfill_targets(store, run, &l.ledger.entries, &wanted);
    let mut errors = Vec::new();
    let stopped = stop_fillers(&targets, &mut errors);
    let mut removed: Vec<PathBuf> = Vec::new();
    for (_, files_dir) in &targets {
        if removed.contains(files_dir) {
            continue;
        }
        match remove_files_dir(files_dir, run) {
            Ok(true) => removed.push(files_dir.clone()),
            Ok(false) => {}
            Err(e) => errors.push(format!("removing {}: {e}", files_dir.display())),
        }
    }
    if !errors.is_empty() {
        return Err(AgentError::Failed(format!(
            "unfill incomplete: {}",
            errors.join("; ")
        )));
    }
    l.ledger
        .entries
        .retain(|e| !matches!(e, Entry::Fill { dir: d, .. } if wanted(d)));
    l.save()?;
    Ok(json!({"run": run, "stopped_pids": stopped, "removed_dirs": removed, "errors": errors}))
}

/// Ledger entries, plus any live `__fill` daemon of this run (its argv names its files
/// dir), in case the ledger update after the spawn never happened.
fn unfill_targets(
    store: &Store,
    run: &str,
    entries: &[Entry],
    wanted: &dyn Fn(&Path) -> bool,
) -> Vec<Target> {
    let mut targets: Vec<Target> = Vec::new();
    for e in entries {
        if let Entry::Fill {
            dir: d,
            files_dir,
            pid,
            start_ticks,
            ..
        } = e
        {
            if wanted(d) {
                targets.push((pid.map(|p| (p, *start_ticks)), files_dir.clone()));
            }
        }
    }
    for (pid, _, argv) in daemon::find(store, Some(run)) {
        if argv.get(1).map(String::as_str) != Some("__fill") {
            continue;
        }
        let d = daemon::arg_value(&argv, "--dir").map(PathBuf::from);
        let fd = daemon::arg_value(&argv, "--files-dir").map(PathBuf::from);
        if let (Some(d), Some(fd)) = (d, fd) {
            if wanted(&d) {
                targets.push((Some((pid, None)), fd));
            }
        }
    }
    targets
}

/// Kills each target that is still our filler; returns the pids stopped.
fn stop_fillers(targets: &[Target], errors: &mut Vec<String>) -> Vec<i32> {
    let mut stopped = Vec::new();
    for (pid, st) in targets.iter().filter_map(|(p, _)| *p) {
        let ours = match st {
            Some(t) => procfs::same_process(pid, t),
            None => procfs::alive(pid),
        };
        if ours && !stopped.contains(&pid) {
            if daemon::kill_and_wait(pid) {
                stopped.push(pid);
            } else {
                errors.push(format!("filler pid {pid} did not exit"));
            }
        }
    }
    stopped
}
