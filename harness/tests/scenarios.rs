//! The cluster tier: one trial per `scenarios/*.yaml` (named by its path) plus a smoke
//! trial, on one kind cluster shared by the run. Listing (`--list`) reads the scenario
//! files only and touches neither Docker nor kind. Zero scenarios is an error.
//!
//! Crowded by default: the selected `requires.node: shared` scenarios run as one crowd,
//! all stuck on the shared worker at the same time (docs/scenarios.md, "Crowded and
//! quiet runs"). The first crowd trial libtest invokes starts the whole crowd on the
//! runtime; every crowd trial then waits for its own record. Dedicated-node trials run
//! beside it, each on a worker of its own.
//!
//! A trial whose node does not meet its scenario's `requires` (checked once the cluster
//! is up, against the facts its nodes report) is reported by libtest as `ignored
//! (REASON)` (a runtime ignore, so `--list` still touches no cluster), by the run's
//! summary, JUnit (`<skipped message=...>`) and scorecard as skipped with the reason.
//!
//! Environment: TERMINUS_CLUSTER (cluster name, default terminus-scenarios),
//! TERMINUS_KEEP_CLUSTER=1 (keep it for the next run), TERMINUS_DETECTORS (comma-
//! separated, default `builtin`), TERMINUS_NODE_IMAGE (see cluster.rs),
//! TERMINUS_QUIET=1 (quiet run: no crowd, each trial alone on its node),
//! TERMINUS_CLUSTER_PER_TRIAL=1 (a cluster per trial; quiet),
//! TERMINUS_DEDICATED_WORKERS (at most this many dedicated workers; default 8).
//!
//! Overlap: the cluster gets one shared worker and a dedicated worker per selected
//! `requires.node: dedicated` scenario (capped), each trial leasing one of its own
//! (`terminus::trial::WorkerPool`), and libtest as many threads as that needs (one for
//! the crowd, one per dedicated worker; `--test-threads 1` keeps a serial run).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use terminus::scenario::{self, NodeUse, Scenario};
use terminus::suite::{CrowdRun, Mode, Suite};
use terminus::trial::TrialRecord;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static SUITE: OnceLock<Result<Suite, String>> = OnceLock::new();
static RECORDS: Mutex<Vec<TrialRecord>> = Mutex::new(Vec::new());
/// The crowd's members: the shared-node scenarios libtest's selection keeps.
static CROWD_MEMBERS: OnceLock<Vec<Scenario>> = OnceLock::new();
/// The running crowd, started by the first crowd trial libtest invokes.
static CROWD: OnceLock<CrowdRun> = OnceLock::new();
/// How many dedicated workers the suite's cluster gets: one per selected
/// node-disrupting scenario, capped (`terminus::suite::dedicated_workers`).
static DEDICATED: OnceLock<usize> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The shared suite, set up by whichever trial runs first.
fn suite() -> Result<&'static Suite, Failed> {
    let suite = SUITE.get_or_init(|| {
        // Before setup: Ctrl-C while the cluster is made still removes it.
        install_interrupt_handler();
        runtime()
            .block_on(Suite::setup(true, DEDICATED.get().copied().unwrap_or(1)))
            .map_err(|e| e.to_string())
    });
    suite
        .as_ref()
        .map_err(|e| Failed::from(format!("cannot set up the cluster: {e}")))
}

/// Ctrl-C: undo every node fault of this run, delete its namespaces and (unless kept)
/// the cluster, then exit. Trials in flight lose their own recover; this replaces it.
fn install_interrupt_handler() {
    runtime().spawn(async {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("\nterminus: interrupted; recovering faults and removing what this run made");
        if let Some(Ok(suite)) = SUITE.get() {
            use terminus::gc::{self, GcReport, Scope};
            let mut report = GcReport::default();
            let (name, client) = (&suite.cluster.name, Some(&suite.env.client));
            let scope = Scope::Run(&suite.env.run.id);
            gc::sweep(name, client, scope, &mut report).await;
            gc::verify(name, client, scope, gc::VERIFY_DEADLINE, &mut report).await;
            for line in &report.actions {
                eprintln!("  {line}");
            }
            for line in &report.errors {
                eprintln!("  error: {line}");
            }
            for line in &report.left {
                eprintln!("  left: {line}");
            }
            let _ = suite.teardown();
        } else if !std::env::var(terminus::suite::KEEP_ENV).is_ok_and(|v| v == "1") {
            // Interrupted while the cluster was being made: kind died of the same
            // Ctrl-C; remove what it left (only a cluster with terminus's record).
            let name = terminus::suite::cluster_name();
            if let Err(e) = terminus::cluster::down(&name) {
                eprintln!("  cluster {name}: {e}");
            }
        }
        std::process::exit(130);
    });
}

fn per_trial() -> bool {
    std::env::var(terminus::suite::PER_TRIAL_ENV).is_ok_and(|v| v == "1")
}

/// This crowd member's record; the first call starts the whole crowd.
fn crowd_record(suite: &'static Suite, scenario: &Scenario) -> Result<TrialRecord, Failed> {
    let crowd = CROWD.get_or_init(|| {
        let _inside = runtime().enter();
        suite.spawn_crowd(CROWD_MEMBERS.get().cloned().unwrap_or_default())
    });
    eprintln!("terminus: trial {} (in the crowd)", scenario.id);
    runtime()
        .block_on(crowd.record(&scenario.id))
        .map_err(|e| Failed::from(e.to_string()))
}

fn scenario_trial(path: PathBuf, scenario: Scenario, crowded: bool) -> Trial {
    let name = format!(
        "scenarios/{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("?")
    );
    let kind = scenario.cause.as_str();
    Trial::ignorable_test(name, move || {
        if per_trial() {
            return own_cluster_trial(&scenario);
        }
        let suite = suite()?;
        let record = if crowded {
            crowd_record(suite, &scenario)?
        } else {
            eprintln!("terminus: trial {}", scenario.id);
            runtime().block_on(suite.trial(&scenario))
        };
        let failure = record.failure();
        let skipped = skip_line(&record);
        let timeline =
            std::fs::read_to_string(record.artefacts.join("timeline.txt")).unwrap_or_default();
        RECORDS.lock().map(|mut r| r.push(record)).ok();
        match (skipped, failure) {
            (Some(reason), _) => Ok(Completion::ignored_with(reason)),
            (None, None) => Ok(Completion::Completed),
            (None, Some(why)) => Err(format!("{why}\n\ntimeline:\n{timeline}").into()),
        }
    })
    .with_kind(kind)
}

/// For a skipped trial: prints the console's line and returns the reason libtest shows.
fn skip_line(record: &TrialRecord) -> Option<String> {
    let unmet = record.result.skipped()?;
    eprintln!("terminus: trial {} skipped: {unmet}", record.scenario);
    Some(unmet.to_string())
}

/// A trial on a cluster of its own, created before and deleted after it.
fn own_cluster_trial(scenario: &Scenario) -> Result<Completion, Failed> {
    let name: String = format!("terminus-t-{}", scenario.id)
        .chars()
        .take(40)
        .collect();
    let mut suite = runtime()
        .block_on(Suite::setup_on(&name, true, 1))
        .map_err(|e| Failed::from(format!("cannot set up cluster {name}: {e}")))?;
    // Alone on its cluster: nothing to crowd it.
    suite.mode = Mode::Quiet;
    let record = runtime().block_on(suite.trial(scenario));
    let summary = suite.finish(std::slice::from_ref(&record));
    let down = terminus::cluster::down(&name);
    eprintln!(
        "terminus: {} on its own cluster took {:.1}s",
        scenario.id,
        suite.started.elapsed().as_secs_f64()
    );
    if let Ok(text) = summary {
        eprintln!("{text}");
    }
    down.map_err(|e| Failed::from(format!("deleting cluster {name}: {e}")))?;
    match (skip_line(&record), record.failure()) {
        (Some(reason), _) => Ok(Completion::ignored_with(reason)),
        (None, None) => Ok(Completion::Completed),
        (None, Some(why)) => Err(why.into()),
    }
}

fn main() -> ExitCode {
    // The harness reports progress (run, timelines) through tracing: show it on stderr
    // as the CLI does. RUST_LOG overrides.
    terminus::logging::init("terminus=info,warn");
    let mut args = Arguments::from_args();
    let dir = std::env::var_os("TERMINUS_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios"));
    let scenarios = match scenario::load_dir(&dir) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let mut trials = vec![Trial::test(
        "smoke: a pod runs, is deleted and goes away",
        || {
            let suite = suite()?;
            let took = runtime().block_on(suite.smoke())?;
            eprintln!("terminus: smoke passed in {:.1}s", took.as_secs_f64());
            Ok(())
        },
    )];
    let crowding = Mode::from_env() == Mode::Crowded && !per_trial();
    let (mut crowd, mut others) = (Vec::new(), Vec::new());
    let mut members = Vec::new();
    let mut dedicated = 0;
    for s in scenarios {
        let shared = crowding && s.requires.node == NodeUse::Shared;
        let trial = scenario_trial(s.file.clone(), s.clone(), shared);
        let selected = !args.is_filtered_out(&trial);
        if selected && s.requires.node == NodeUse::Dedicated {
            dedicated += 1;
        }
        if shared && selected {
            members.push(s);
            crowd.push(trial);
        } else {
            others.push(trial);
        }
    }
    let _ = CROWD_MEMBERS.set(members);
    // With a cluster per trial only the smoke trial uses the suite's cluster: one
    // dedicated worker is enough there.
    let pool = if per_trial() {
        1
    } else {
        terminus::suite::dedicated_workers(dedicated)
    };
    let _ = DEDICATED.set(pool);
    // Trials wait on the cluster, not the CPU: one thread for the crowd and one per
    // dedicated worker, so no node-disrupting trial waits for a thread either. An
    // explicit `--test-threads 1` still runs them one by one.
    // Not with a cluster per trial: there each thread makes a cluster of its own.
    if args.test_threads != Some(1) && !per_trial() {
        args.test_threads = Some(args.test_threads.unwrap_or(1).max(1 + pool));
    }
    // The first crowd trial starts the crowd and holds a test thread until its own
    // record; the dedicated-node trials come next so the other threads run them beside
    // the crowd, and the remaining crowd trials, whose records are ready by then, last.
    let mut crowd = crowd.into_iter();
    trials.extend(crowd.next());
    trials.extend(others);
    trials.extend(crowd);
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(Ok(suite)) = SUITE.get() {
        let records = RECORDS.lock().map(|r| r.clone()).unwrap_or_default();
        match suite.finish(&records) {
            Ok(summary) => eprintln!("\n{summary}\nartefacts: {}", suite.env.run.dir.display()),
            Err(e) => eprintln!("terminus: writing the run's artefacts: {e}"),
        }
        if let Err(e) = suite.teardown() {
            eprintln!("terminus: {e}");
        }
    }
    conclusion.exit_code()
}
