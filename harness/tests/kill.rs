//! The kill tier: a trial is killed with SIGKILL at a chosen phase, `terminus gc` runs,
//! and nothing may be left: no pod or namespace of terminus's, kubelet and containerd
//! active on every node, no stopped process, no ledger, filler, holder, tmpfs,
//! immutable flag or run directory (gc's own check, repeated here after gc exited), and
//! on the host no new loop device or mount.
//!
//! Each case runs `terminus trial FILE` with `TERMINUS_KILL_AT=<phase>` (the trial raises
//! SIGKILL on itself there: `harness/src/trial/kill.rs`), on a cluster of its own
//! (`terminus-kill`, deleted at the end unless TERMINUS_KEEP_CLUSTER=1). Cases run one
//! at a time: gc sweeps the whole cluster.
//!
//! Selection: by default one case per fault kind (stop-kubelet twice: `how: freeze` and
//! `how: stop` clean up differently; hold-mount twice: `via: bind` leaks), each at a
//! phase picked from `TERMINUS_KILL_SEED` (printed; default: the clock), so a failure
//! replays with the same seed. `TERMINUS_KILL_ALL=1`: every
//! scenario at every phase (docs/scenarios.md, "The kill tier").

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use terminus::scenario::{self, FaultSpec, HoldVia, KubeletStop, Scenario};
use terminus::trial::kill::{KillPoint, KILL_AT_ENV, KILL_SCENARIO_ENV};

const CLUSTER: &str = "terminus-kill";
const SEED_ENV: &str = "TERMINUS_KILL_SEED";
const ALL_ENV: &str = "TERMINUS_KILL_ALL";
/// A trial reaches its last kill point (during the remedy) within its deadlines; this
/// bounds a trial that hangs instead of dying.
const TRIAL_DEADLINE: Duration = Duration::from_secs(600);
/// gc's own wait for pods, namespaces and nodes, and then some for the command itself.
const GC_WAIT: &str = "180s";
const GC_DEADLINE: Duration = Duration::from_secs(300);

/// Cases run one at a time (gc sweeps the whole cluster); the cluster was used when set.
static SERIAL: Mutex<bool> = Mutex::new(false);

struct Case {
    file: PathBuf,
    scenario: String,
    point: KillPoint,
}

fn main() -> ExitCode {
    terminus::logging::init("terminus=info,warn");
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = match scenario::load_dir(&dir) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let all = std::env::var(ALL_ENV).is_ok_and(|v| v == "1");
    let cases = select(&scenarios, seed, all);
    eprintln!(
        "terminus kill tier: {} case(s), {SEED_ENV}={seed}{}",
        cases.len(),
        if all {
            format!(" {ALL_ENV}=1")
        } else {
            String::new()
        }
    );
    let trials = cases
        .into_iter()
        .map(|case| {
            let name = format!("kill/{}@{}", case.scenario, case.point);
            Trial::test(name, move || run_case(&case))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let used = SERIAL.lock().map(|u| *u).unwrap_or(true);
    if used && !std::env::var(terminus::suite::KEEP_ENV).is_ok_and(|v| v == "1") {
        if let Err(e) = terminus::cluster::down(CLUSTER) {
            eprintln!("terminus: deleting cluster {CLUSTER}: {e}");
        }
    }
    conclusion.exit_code()
}

/// Which cases the default selection keeps one of: a fault kind, split where its
/// cleanup differs (stop-kubelet's `how: stop` is a systemd unit to start again, not a
/// process to thaw; a bind holder leaves a bind target and, once the pod is gone, a
/// layer leaked into its namespace).
fn cleanup_class(s: &Scenario) -> String {
    match s.fault {
        FaultSpec::StopKubelet {
            how: KubeletStop::Stop,
        } => format!("{}/stop", s.fault.kind()),
        FaultSpec::HoldMount { via: HoldVia::Bind } => format!("{}/bind", s.fault.kind()),
        _ => s.fault.kind().to_owned(),
    }
}

/// Every scenario at every point, or one of each cleanup class at a point the seed
/// picks.
fn select(scenarios: &[Scenario], seed: u64, all: bool) -> Vec<Case> {
    let mut picked: Vec<(PathBuf, String)> = Vec::new();
    let mut classes = BTreeSet::new();
    for s in scenarios {
        if all || classes.insert(cleanup_class(s)) {
            picked.push((s.file.clone(), s.id.clone()));
        }
    }
    let mut cases = Vec::new();
    for (i, (file, scenario)) in picked.into_iter().enumerate() {
        let points: Vec<KillPoint> = if all {
            KillPoint::ALL.to_vec()
        } else {
            let n = KillPoint::ALL.len() as u64;
            vec![KillPoint::ALL[((seed.wrapping_add(i as u64 * 3)) % n) as usize]]
        };
        for point in points {
            cases.push(Case {
                file: file.clone(),
                scenario: scenario.clone(),
                point,
            });
        }
    }
    cases
}

fn terminus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_terminus"));
    c.env_remove(KILL_AT_ENV).env_remove(KILL_SCENARIO_ENV);
    c
}

fn run_case(case: &Case) -> Result<(), Failed> {
    let mut used = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    *used = true;
    let logs = terminus::suite::artefacts_root().join("kill");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let log = logs.join(format!("{}@{}.log", case.scenario, case.point));
    let host_before = host_state();
    let ended = kill_trial(case, &log)?;
    eprintln!("terminus: kill/{}@{}: {ended}", case.scenario, case.point);
    let gc_log = log.with_extension("gc.log");
    let mut gc = terminus();
    gc.args([
        "gc",
        "--keep-clusters",
        "--cluster",
        CLUSTER,
        "--wait",
        GC_WAIT,
    ]);
    let gc_status = run_logged(gc, &gc_log, GC_DEADLINE)
        .map_err(|e| format!("terminus gc: {e}; last lines:\n{}", tail(&gc_log)))?;
    let mut left = Vec::new();
    if !gc_status.success() {
        let gc_text = std::fs::read_to_string(&gc_log).unwrap_or_default();
        left.push(format!("terminus gc exited {gc_status}:\n{gc_text}"));
    }
    left.extend(check_after_gc());
    left.extend(host_changes(&host_before, &host_state()));
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{ended}; after gc, left behind:\n  {}\n(trial log: {})",
            left.join("\n  "),
            log.display()
        )
        .into())
    }
}

/// Runs `cmd` with stdout and stderr into `log`; kills it at `deadline`.
fn run_logged(mut cmd: Command, log: &Path, deadline: Duration) -> Result<ExitStatus, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not end within {deadline:?} (killed)"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the trial until it kills itself at the case's point (or ends without reaching
/// it); returns how it ended. Its output goes to `log`.
fn kill_trial(case: &Case, log: &Path) -> Result<String, Failed> {
    let mut trial = terminus();
    trial
        .arg("trial")
        .arg(&case.file)
        .args(["--cluster", CLUSTER])
        .env(KILL_AT_ENV, case.point.as_str())
        .env(KILL_SCENARIO_ENV, &case.scenario);
    let started = Instant::now();
    let status = run_logged(trial, log, TRIAL_DEADLINE).map_err(|e| {
        format!(
            "terminus trial did not reach {}: {e}; last lines:\n{}",
            case.point,
            tail(log)
        )
    })?;
    use std::os::unix::process::ExitStatusExt;
    let took = started.elapsed().as_secs_f64();
    Ok(match status.signal() {
        Some(9) => format!("killed at {} after {took:.1}s", case.point),
        _ => format!(
            "the trial ended ({status}) after {took:.1}s without reaching {}; last lines:\n{}",
            case.point,
            tail(log)
        ),
    })
}

/// gc's check once more, from this process, after gc exited: nothing may have come back.
fn check_after_gc() -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let client = match terminus::cluster::Cluster::open(CLUSTER) {
            Ok(c) => c.client().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => return vec![format!("cannot reach cluster {CLUSTER}: {e}")],
        };
        let mut report = terminus::gc::GcReport::default();
        let scope = terminus::gc::Scope::All;
        terminus::gc::verify(
            CLUSTER,
            Some(&client),
            scope,
            Duration::from_secs(5),
            &mut report,
        )
        .await;
        report.errors.into_iter().chain(report.left).collect()
    })
}

/// The host's loop devices and the mounts that name terminus.
fn host_state() -> BTreeSet<String> {
    let loops = Command::new("losetup")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    loops
        .lines()
        .map(|l| format!("loop device {l}"))
        .chain(
            mounts
                .lines()
                .filter(|l| l.contains("terminus"))
                .map(|l| format!("host mount {l}")),
        )
        .collect()
}

fn host_changes(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    after.difference(before).cloned().collect()
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
