//! Runtime test tier: reproduces causes 1 (disk-full), 2 (immutable-file), 3
//! (runtime-hang), 6 (runtime-desync) and 8 (mount-held) for real, with docker and with
//! plain containerd (as in kind), plus a normal removal that must diagnose as nothing; on
//! a private dockerd 20.10 + containerd 1.6 per trial (never the machine's shared dockerd), captures each
//! evidence bundle under `target/terminus/runtime/<run-id>/<case>/`, requires the detector
//! to rank the expected cause first, then applies the recovery and requires it to clear
//! the stuck container.
//!
//! Needs root and dockerd (Debian's docker.io), containerd, ctr, busybox-static,
//! mkfs.ext4, losetup, chattr. Without root or without dockerd every trial is reported
//! *ignored* with a loud message; any other missing piece fails the trial.
//!
//! Teardown runs on success, failure and panic (`Drop`), and best-effort on Ctrl-C /
//! SIGTERM (a watchdog thread). Leftovers of a killed run are reaped at the next start.

#[path = "runtime/bundle.rs"]
mod bundle;
#[path = "runtime/cases.rs"]
mod cases;
#[path = "runtime/private.rs"]
mod private;
#[path = "runtime/wait.rs"]
mod wait;

use std::path::{Path, PathBuf};
use std::time::Instant;

use libtest_mimic::{Arguments, Failed, Trial};

type CaseFn = fn(&mut cases::Case) -> anyhow::Result<()>;

/// (trial name, short tag for the runtime directory, case).
const CASES: &[(&str, &str, CaseFn)] = &[
    (
        "docker-normal-removal",
        "normal",
        cases::docker_normal_removal,
    ),
    (
        "docker-immutable-file",
        "immutable",
        cases::docker_immutable_file,
    ),
    ("docker-disk-full", "diskfull", cases::docker_disk_full),
    (
        "docker-disk-full-inodes",
        "inodes",
        cases::docker_disk_full_inodes,
    ),
    (
        "docker-runtime-hang-dockerd-stopped",
        "dhang",
        cases::docker_runtime_hang_dockerd,
    ),
    (
        "docker-runtime-hang-containerd-stopped",
        "hang",
        cases::docker_runtime_hang,
    ),
    ("docker-desync", "desync", cases::docker_desync),
    (
        "containerd-mount-held",
        "held",
        cases::containerd_mount_held,
    ),
    (
        "containerd-shim-stopped",
        "shim",
        cases::containerd_shim_stopped,
    ),
    (
        "containerd-immutable-snapshot-leak",
        "snapleak",
        cases::containerd_immutable_snapshot_leak,
    ),
];

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".to_owned());
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("dockerd").is_file()))
        .unwrap_or(false);
    if !found {
        return Some("no dockerd binary on PATH (apt-get install docker.io)".to_owned());
    }
    None
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// On Ctrl-C or SIGTERM: tear down every live private runtime, then exit.
fn watchdog() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("runtime tier: interrupted, tearing down the private runtimes");
        let dirs = private::LIVE.lock().map(|v| v.clone()).unwrap_or_default();
        for dir in dirs {
            private::teardown_dir(&dir);
        }
        std::process::exit(130);
    });
}

/// dockerd, mkfs.ext4, losetup live in sbin directories that a CI PATH may lack.
fn with_sbin_path() {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    if let Ok(joined) = std::env::join_paths(dirs) {
        // Before any thread starts.
        std::env::set_var("PATH", joined);
    }
}

fn main() {
    with_sbin_path();
    let args = Arguments::from_args();
    let skip = skip_reason();
    if let Some(reason) = &skip {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! RUNTIME TIER SKIPPED: {reason}.");
        eprintln!(
            "!! Its {} trials are reported as ignored; none of them ran.",
            CASES.len()
        );
        eprintln!("!! Run as root on a machine with docker.io installed to run them.");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!();
    } else {
        watchdog();
        for dir in private::reap_leftovers() {
            eprintln!(
                "runtime tier: reaped the leftovers of a killed run in {}",
                dir.display()
            );
        }
    }
    let run_id = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    );
    let root = target_dir().join("terminus/runtime").join(&run_id);
    let trials = CASES
        .iter()
        .map(|&(name, tag, case)| {
            let root = root.clone();
            let skipped = skip.clone();
            Trial::test(name, move || {
                if let Some(reason) = skipped {
                    return Err(Failed::from(format!("cannot run: {reason}")));
                }
                run_case(&root, name, tag, case).map_err(|e| Failed::from(format!("{e:#}")))
            })
            .with_ignored_flag(skip.is_some())
        })
        .collect();
    let started = Instant::now();
    let conclusion = libtest_mimic::run(&args, trials);
    if skip.is_none() && conclusion.num_passed + conclusion.num_failed > 0 {
        eprintln!(
            "runtime tier: {} trial(s) in {:.1?}; bundles in {}",
            conclusion.num_passed + conclusion.num_failed,
            started.elapsed(),
            root.display()
        );
    }
    conclusion.exit();
}

fn run_case(root: &Path, name: &str, tag: &str, case: CaseFn) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut c = cases::Case::start(root, name, tag)?;
    let t1 = Instant::now();
    let result = case(&mut c);
    let t2 = Instant::now();
    // The normal path tears down explicitly; Drop covers failure and panic.
    c.rt.teardown();
    eprintln!(
        "runtime tier: {name}: start {:.1?}, case {:.1?}, teardown {:.1?}",
        t1 - t0,
        t2 - t1,
        t1.elapsed() - (t2 - t1)
    );
    result
}
