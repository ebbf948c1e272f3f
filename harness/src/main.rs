//! The `terminus` command. Exit codes are part of the interface (docs/diagnose.md):
//! 0 a cause was found / the command succeeded, 1 no known cause, 2 bad input,
//! 3 an internal or infrastructure error. `terminus score` (docs/detectors.md): 0 every
//! trial passed, 1 some trial failed (a wrong cause or a detector failure), 2 bad input.
//! Every command: 141 when stdout was closed by its reader (`terminus score | head`).
//!
//! stdout is written only through [`write_stdout`] (the `out!` / `outln!` macros), which
//! returns the write error instead of panicking as `println!` does. A closed pipe
//! (`ErrorKind::BrokenPipe`) ends the command quietly, the way a Unix tool killed by
//! SIGPIPE ends: nothing more is printed or done (a remedy is not applied once its output
//! can no longer be read), cleanup still runs, and the exit status is 141 (128 + SIGPIPE),
//! so `set -o pipefail` still sees that the output was cut short.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use terminus::detect;
use terminus::evidence::Evidence;
use terminus::report;
use terminus::scenario;

const EXIT_FOUND: u8 = 0;
const EXIT_NOTHING: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_TRIAL_FAILED: u8 = 1;
const EXIT_INFRA: u8 = 3;
/// stdout was closed by its reader: 128 + SIGPIPE, what a shell reports for a tool
/// killed by SIGPIPE (docs/diagnose.md).
const EXIT_STDOUT_CLOSED: u8 = 141;

/// Why a result could not be printed.
#[derive(Debug)]
enum StdoutError {
    /// The reader went away (`| head`): a quiet end, not an error.
    Closed,
    /// Any other write error (a full disk behind `> file`): reported, exit 3.
    Failed(io::Error),
}

/// An exit code, or why stdout could not take the command's output.
type Printed = Result<u8, StdoutError>;

/// Writes to stdout and flushes, returning the error instead of panicking.
fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => StdoutError::Closed,
            _ => StdoutError::Failed(e),
        })
}

/// `print!` that returns from the enclosing function (through `?`) when stdout fails.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*))? };
}

/// `println!` that returns from the enclosing function (through `?`) when stdout fails.
macro_rules! outln {
    () => { write_stdout(format_args!("\n"))? };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*)))? };
}

/// The process exit status of a command's result.
fn exit_status(printed: Printed) -> u8 {
    match printed {
        Ok(code) => code,
        Err(StdoutError::Closed) => EXIT_STDOUT_CLOSED,
        Err(StdoutError::Failed(e)) => {
            eprintln!("error: cannot write to stdout: {e}");
            EXIT_INFRA
        }
    }
}

#[derive(Parser)]
#[command(
    name = "terminus",
    version,
    about = "Reproduce, detect and remedy Kubernetes pods stuck in Terminating"
)]
struct Cli {
    /// More progress and diagnostics on stderr (-v: debug, -vv: trace). RUST_LOG, when
    /// set, takes precedence (e.g. RUST_LOG=terminus=debug,kube=info).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scenario files: list them, or check that they are valid.
    Scenarios {
        #[command(subcommand)]
        command: ScenariosCommand,
    },
    /// Diagnose a stuck pod: from an evidence bundle (--bundle DIR), or live: one pod
    /// (POD -n NS) or every Terminating pod (--all) of the kubeconfig's cluster (docs/live.md).
    Diagnose {
        /// The pod to diagnose on the live cluster.
        #[arg(value_name = "POD", conflicts_with_all = ["bundle", "all"])]
        pod: Option<String>,
        /// The bundle directory: pod.yaml, events.yaml, kubelet.log, runtime.log, df.txt, ... (docs/bundles.md)
        #[arg(long, value_name = "DIR", conflicts_with = "all")]
        bundle: Option<PathBuf>,
        /// Every pod with a deletionTimestamp in all namespaces (API evidence only unless --node-evidence).
        #[arg(long)]
        all: bool,
        /// Print one JSON object (schema terminus/diagnosis/v1; terminus/diagnosis-all/v1 with --all) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Show the remedy for a stuck pod; with --apply, re-collect, re-diagnose and run it
    /// only if the same cause still holds (docs/live.md).
    Remedy {
        #[arg(value_name = "POD")]
        pod: String,
        /// Run the remedy's commands (otherwise only show them).
        #[arg(long)]
        apply: bool,
        /// How long to wait for the pod to be gone after --apply.
        #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_timeout)]
        wait: std::time::Duration,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Practice on-call: induce a stuck pod on a kind cluster, then `drill answer CAUSE`
    /// or `drill stop` (docs/live.md).
    Drill {
        #[command(subcommand)]
        command: Option<DrillCommand>,
        /// The cause to induce (a cause id; see `terminus scenarios list`).
        #[arg(long, value_name = "ID", conflicts_with = "random")]
        cause: Option<terminus::CauseId>,
        /// Pick a drillable cause at random (the default when --cause is absent).
        #[arg(long)]
        random: bool,
        /// The kind cluster to use (created with 2 workers, or reused).
        #[arg(long, default_value = "terminus-drill")]
        cluster: String,
        #[arg(long, default_value = "scenarios", env = "TERMINUS_SCENARIOS")]
        scenarios: PathBuf,
    },
    /// Run scenario trials on a kind cluster, one after another (each alone on its node,
    /// as a quiet cluster-tier run), and print the summary. The cluster is kept.
    Trial {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The kind cluster (created with 2 workers, or reused).
        #[arg(long, default_value = "terminus-scenarios", env = "TERMINUS_CLUSTER")]
        cluster: String,
    },
    /// kind clusters for trials: up (create or reuse), down, status, list (harness/src/cluster.rs).
    Cluster {
        #[command(subcommand)]
        command: terminus::cluster::ClusterCommand,
    },
    /// Remove what killed runs left behind: node faults (immutable flags, frozen
    /// processes, stopped units, fillers, mount holders, tmpfs) in every cluster terminus
    /// created, then the clusters themselves. With --keep-clusters: free terminus's pods
    /// of their finalizers, delete its namespaces, then check that nothing is left (exit
    /// 1 naming what is).
    Gc {
        #[arg(long)]
        keep_clusters: bool,
        /// Only this cluster (default: every cluster terminus created).
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
        /// With --keep-clusters: how long to wait for pods, namespaces and nodes to be clean.
        #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_timeout)]
        wait: std::time::Duration,
    },
    /// Print the version matrix (scenario × cell → pass / fail / skipped) from the cell
    /// directories ci/matrix fills (target/terminus/matrix/CELL/: junit.xml, wall-seconds).
    /// Exit 1 when a trial failed or a cell left no readable JUnit file.
    Matrix {
        #[arg(required = true, value_name = "CELL_DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Score detectors over bundles whose cause is known, and print the scorecard.
    Score {
        /// Searched recursively: every directory holding an `expected-cause` file is a bundle.
        #[arg(long, value_name = "DIR")]
        bundles: PathBuf,
        /// `builtin`, or the path of an external detector (docs/detectors.md); repeat to compare.
        #[arg(long = "detector", value_name = "DETECTOR", default_value = "builtin", value_parser = terminus::detectors::Detector::parse)]
        detectors: Vec<terminus::detectors::Detector>,
        /// How long a detector may take on one bundle: an external one is then killed, the builtin one abandoned.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
        timeout: std::time::Duration,
        /// Print one JSON object (schema terminus/scorecard/v1) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Clone)]
struct LiveArgs {
    /// Namespace of POD.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Keep the evidence bundle in DIR (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    keep_bundle: Option<PathBuf>,
    /// One pod: skip the node half of the bundle.
    #[arg(long, conflicts_with = "node_evidence")]
    api_only: bool,
    /// --all: gather the node half for every pod too (slow: one agent run per pod).
    #[arg(long)]
    node_evidence: bool,
    /// Gather node evidence through an agent pod even when the node is a local kind node.
    #[arg(long)]
    agent_pod: bool,
    /// Image of the agent pod used on non-kind clusters (agent/README.md: build and push it).
    #[arg(long, value_name = "REF", default_value = terminus::live::DEFAULT_AGENT_IMAGE, env = "TERMINUS_AGENT_IMAGE")]
    agent_image: String,
    /// Namespace the agent pod is created in (and deleted from).
    #[arg(long, value_name = "NS", default_value = "default")]
    agent_namespace: String,
}

#[derive(Subcommand)]
enum DrillCommand {
    /// Name the cause: right or wrong, the proof, the remedy; then clean up.
    Answer {
        #[arg(value_name = "CAUSE")]
        cause: String,
    },
    /// Abandon the drill: recover the fault, delete its namespace, forget it.
    Stop,
    /// Show the current drill's page again.
    Status,
}

#[derive(Subcommand)]
enum ScenariosCommand {
    /// List the scenarios in a directory with the cause each reproduces.
    List {
        #[arg(long, default_value = "scenarios", env = "TERMINUS_SCENARIOS")]
        dir: PathBuf,
    },
    /// Validate scenario files; errors name file:line:column and the field.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout, through the same quiet end.
        Err(e) if !e.use_stderr() => {
            let code = u8::try_from(e.exit_code()).unwrap_or(EXIT_BAD_INPUT);
            return ExitCode::from(exit_status(match e.print() {
                Ok(()) => Ok(code),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutError::Closed),
                Err(e) => Err(StdoutError::Failed(e)),
            }));
        }
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose);
    ExitCode::from(exit_status(match cli.command {
        Command::Scenarios {
            command: ScenariosCommand::List { dir },
        } => list(&dir),
        Command::Scenarios {
            command: ScenariosCommand::Check { files },
        } => check(&files),
        Command::Diagnose {
            pod,
            bundle,
            all,
            json,
            live,
        } => match (bundle, pod, all) {
            (Some(bundle), _, _) => diagnose(&bundle, json),
            (None, Some(pod), _) => run_async(live_diagnose(pod, live, json)),
            (None, None, true) => run_async(live_diagnose_all(live, json)),
            (None, None, false) => {
                eprintln!(
                    "error: name a pod (terminus diagnose POD -n NS), --all, or --bundle DIR"
                );
                Ok(EXIT_BAD_INPUT)
            }
        },
        Command::Remedy {
            pod,
            apply,
            wait,
            live,
        } => run_async(live_remedy(pod, live, apply, wait)),
        Command::Drill {
            command,
            cause,
            random: _,
            cluster,
            scenarios,
        } => run_async(async move {
            use terminus::drill;
            let printed = match command {
                None => drill::start(&cluster, cause, &scenarios)
                    .await
                    .map(|started| started.to_string()),
                Some(DrillCommand::Answer { cause }) => match drill::answer(&cause).await {
                    Ok(answered) => {
                        // The drill is over either way; its errors still go to stderr.
                        let printed = write_stdout(format_args!("{answered}\n"));
                        for e in answered.errors() {
                            eprintln!("error: {e}");
                        }
                        return printed.map(|()| answered.exit_code());
                    }
                    Err(e) => Err(e),
                },
                Some(DrillCommand::Stop) => drill::stop().await.map(|s| s.to_string()),
                Some(DrillCommand::Status) => drill::status(),
            };
            match printed {
                Ok(text) => {
                    outln!("{text}");
                    Ok(EXIT_FOUND)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(e.exit_code())
                }
            }
        }),
        Command::Cluster { command } => match terminus::cluster::run_cli(command) {
            Ok(text) => write_stdout(format_args!("{text}")).map(|()| EXIT_FOUND),
            Err(e) => {
                eprintln!("error: {e}");
                Ok(e.exit_code())
            }
        },
        Command::Trial { files, cluster } => run_async(trials(files, cluster)),
        Command::Gc {
            keep_clusters,
            cluster,
            wait,
        } => gc(keep_clusters, cluster.as_deref(), wait),
        Command::Matrix { dirs } => matrix(&dirs),
        Command::Score {
            bundles,
            detectors,
            timeout,
            json,
        } => score(&bundles, &detectors, timeout, json),
    }))
}

/// Progress and diagnostics go to stderr through tracing; stdout carries results only,
/// so `terminus ... --json | jq` and pipes stay clean whatever the verbosity.
fn init_logging(verbose: u8) {
    terminus::logging::init(match verbose {
        0 => "terminus=info,terminus_core=info,warn",
        1 => "terminus=debug,terminus_core=debug,info",
        _ => "trace",
    });
}

fn run_async(f: impl std::future::Future<Output = Printed>) -> Printed {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            Ok(EXIT_INFRA)
        }
    }
}

/// Where a live command's bundle goes: --keep-bundle DIR, or a fresh temp dir removed
/// afterwards (the bool).
fn bundle_dir(live: &LiveArgs, what: &str) -> (PathBuf, bool) {
    match &live.keep_bundle {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "terminus-{what}-{}-{}",
                std::process::id(),
                chrono::Utc::now().format("%H%M%S%3f")
            )),
            true,
        ),
    }
}

fn agent_options(live: &LiveArgs) -> terminus::live::AgentPodOptions {
    terminus::live::AgentPodOptions {
        image: live.agent_image.clone(),
        namespace: live.agent_namespace.clone(),
        ..Default::default()
    }
}

fn access(live: &LiveArgs, default_nodes: bool) -> terminus::live::NodeAccess {
    use terminus::live::NodeAccess;
    let nodes = if default_nodes {
        !live.api_only
    } else {
        live.node_evidence
    };
    match (nodes, live.agent_pod) {
        (false, _) => NodeAccess::None,
        (true, false) => NodeAccess::Auto,
        (true, true) => NodeAccess::Pod,
    }
}

fn live_fail(e: terminus::live::LiveError) -> u8 {
    eprintln!("error: {e}");
    e.exit_code()
}

async fn live_diagnose(pod: String, live: LiveArgs, json: bool) -> Printed {
    let client = match terminus::live::client(live.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return Ok(live_fail(e)),
    };
    let (dir, temporary) = bundle_dir(&live, "diagnose");
    let collected = terminus::live::collect(
        &client,
        &live.namespace,
        &pod,
        &dir,
        &access(&live, true),
        &agent_options(&live),
    )
    .await;
    let code = match collected {
        Err(e) => Ok(live_fail(e)),
        Ok(c) => {
            eprintln!("terminus: {}", c.node_note);
            print_diagnosis(&c.dir, json)
        }
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("terminus: bundle kept in {}", dir.display());
    }
    code
}

async fn live_diagnose_all(live: LiveArgs, json: bool) -> Printed {
    let client = match terminus::live::client(live.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return Ok(live_fail(e)),
    };
    let (dir, temporary) = bundle_dir(&live, "diagnose-all");
    let result = terminus::live::diagnose_all(
        &client,
        &dir,
        !temporary,
        &access(&live, false),
        &agent_options(&live),
    )
    .await;
    let code = match result {
        Err(e) => Ok(live_fail(e)),
        Ok(lines) => {
            let printed = if json {
                write_stdout(format_args!(
                    "{}\n",
                    terminus::live::render_all_json(&lines)
                ))
            } else {
                write_stdout(format_args!("{}", terminus::live::render_all(&lines)))
            };
            printed.map(|()| {
                if lines.iter().any(|l| !l.report.diagnoses.is_empty()) {
                    EXIT_FOUND
                } else {
                    EXIT_NOTHING
                }
            })
        }
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("terminus: bundles kept under {}", dir.display());
    }
    code
}

async fn live_remedy(
    pod: String,
    live: LiveArgs,
    apply: bool,
    wait: std::time::Duration,
) -> Printed {
    let client = match terminus::live::client(live.kubeconfig.as_deref()).await {
        Ok(c) => c,
        Err(e) => return Ok(live_fail(e)),
    };
    let (dir, temporary) = bundle_dir(&live, "remedy");
    let code = remedy_in(&client, &pod, &live, apply, wait, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("terminus: bundles kept in {}", dir.display());
    }
    code
}

async fn remedy_in(
    client: &kube::Client,
    pod: &str,
    live: &LiveArgs,
    apply: bool,
    wait: std::time::Duration,
    dir: &Path,
) -> Printed {
    let access = access(live, true);
    let agent = agent_options(live);
    let first = match terminus::live::collect(
        client,
        &live.namespace,
        pod,
        &dir.join("before"),
        &access,
        &agent,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Ok(live_fail(e)),
    };
    eprintln!("terminus: {}", first.node_note);
    let evidence = Evidence::load(&first.dir);
    let result = detect::diagnose(&evidence);
    out!("{}", report::to_text(&evidence, &result));
    let Some(shown) = result.diagnoses.first() else {
        outln!("no known cause: nothing to remedy");
        return Ok(EXIT_NOTHING);
    };
    if !apply {
        outln!("\nread-only: pass --apply to run the FIX of {} (after re-checking that it still holds)", shown.cause);
        return Ok(EXIT_FOUND);
    }
    // No action on a stale diagnosis: collect and diagnose again, act only if the same cause holds.
    let again = match terminus::live::collect(
        client,
        &live.namespace,
        pod,
        &dir.join("recheck"),
        &access,
        &agent,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Ok(live_fail(e)),
    };
    let evidence2 = Evidence::load(&again.dir);
    let result2 = detect::diagnose(&evidence2);
    let Some(current) = result2.diagnoses.first().filter(|d| d.cause == shown.cause) else {
        outln!(
            "\nnot applied: the cause no longer holds (re-diagnosis: {}); run `terminus diagnose {pod} -n {}` again",
            result2.diagnoses.first().map(|d| d.cause.to_string()).unwrap_or_else(|| format!("{:?}", result2.verdict)),
            live.namespace
        );
        return Ok(EXIT_NOTHING);
    };
    outln!("\nre-checked: {} still holds; applying", current.cause);
    // The remedy creates nothing to clean up (the agent pods are gone by now): Ctrl-C
    // only has to stop it and say where it stopped. Without this, tokio keeps SIGINT
    // from ending the process once a collect has listened for it.
    let applied = tokio::select! {
        r = terminus::live::apply_remedy(live.kubeconfig.as_deref(), &again, &evidence2, current) => r,
        _ = tokio::signal::ctrl_c() => return Ok(interrupted_remedy(pod, live)),
    };
    match applied {
        Ok(ran) => {
            for line in ran {
                outln!("  {line}");
            }
        }
        Err(e) => return Ok(live_fail(e)),
    }
    let gone = tokio::select! {
        r = terminus::live::wait_gone(client, &again.target, wait) => r,
        _ = tokio::signal::ctrl_c() => return Ok(interrupted_remedy(pod, live)),
    };
    match gone {
        Ok(()) => {
            outln!("pod {}/{pod} is gone", live.namespace);
            Ok(EXIT_FOUND)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(EXIT_NOTHING)
        }
    }
}

/// The exit code of a shell's Ctrl-C.
const EXIT_INTERRUPTED: u8 = 130;

fn interrupted_remedy(pod: &str, live: &LiveArgs) -> u8 {
    eprintln!(
        "interrupted: the remedy's steps that had started may have run, none after; see where the pod stands with `terminus diagnose {pod} -n {}`",
        live.namespace
    );
    EXIT_INTERRUPTED
}

/// `terminus trial`: exit 0 when every trial passed or was skipped (its node does not
/// meet its `requires`; printed with the reason), 1 when one failed, 3 when the harness
/// broke (a scenario file is checked first: 2 when one is invalid).
async fn trials(files: Vec<PathBuf>, cluster: String) -> Printed {
    let mut scenarios = Vec::new();
    for file in &files {
        match scenario::load_file(file) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(EXIT_BAD_INPUT);
            }
        }
    }
    let mut suite = match terminus::suite::Suite::setup_on(&cluster, true, 1).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot set up cluster {cluster}: {e}");
            return Ok(EXIT_INFRA);
        }
    };
    suite.mode = terminus::suite::Mode::Quiet;
    let mut records = Vec::new();
    for s in &scenarios {
        tracing::info!("trial {}", s.id);
        records.push(suite.trial(s).await);
    }
    match suite.finish(&records) {
        Ok(summary) => outln!("{summary}\nartefacts: {}", suite.env.run.dir.display()),
        Err(e) => eprintln!("error: writing the run's artefacts: {e}"),
    }
    let broken = records
        .iter()
        .any(|r| matches!(r.result, terminus::trial::TrialResult::HarnessError(_)));
    for r in &records {
        if let Some(unmet) = r.result.skipped() {
            eprintln!("skipped: {}: {unmet}", r.scenario);
        }
    }
    let failed: Vec<_> = records.iter().filter_map(|r| r.failure()).collect();
    for why in &failed {
        eprintln!("failed: {why}");
    }
    Ok(if broken {
        EXIT_INFRA
    } else if failed.is_empty() {
        EXIT_FOUND
    } else {
        EXIT_TRIAL_FAILED
    })
}

/// Exit 0: clean; 1: something is left (named on stderr); 3: something could not be
/// undone or checked.
fn gc(keep_clusters: bool, only: Option<&str>, wait: std::time::Duration) -> Printed {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Ok(EXIT_INFRA);
        }
    };
    let report = runtime.block_on(terminus::gc::gc_all(keep_clusters, only, wait));
    // Errors first: they must reach stderr even if stdout is closed part-way.
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    for left in &report.left {
        eprintln!("left: {left}");
    }
    for action in &report.actions {
        outln!("{action}");
    }
    if report.actions.is_empty() && report.clean() {
        outln!("nothing to collect: no cluster terminus created is left");
    }
    Ok(if !report.errors.is_empty() {
        EXIT_INFRA
    } else if !report.left.is_empty() {
        EXIT_NOTHING
    } else {
        EXIT_FOUND
    })
}

fn list(dir: &Path) -> Printed {
    match scenario::load_dir(dir) {
        Ok(scenarios) => {
            outln!(
                "{:<34} {:<22} {:<19} {}",
                "SCENARIO",
                "CAUSE",
                "FIDELITY",
                "TITLE"
            );
            for s in scenarios {
                let fidelity = match s.fidelity.level {
                    scenario::FidelityLevel::Original => "original",
                    scenario::FidelityLevel::NearestEquivalent => "nearest-equivalent",
                };
                outln!("{:<34} {:<22} {:<19} {}", s.id, s.cause, fidelity, s.title);
            }
            Ok(EXIT_FOUND)
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "hint: run from the repository root, or pass --dir DIR (or set TERMINUS_SCENARIOS)"
            );
            Ok(EXIT_BAD_INPUT)
        }
    }
}

fn check(files: &[PathBuf]) -> Printed {
    let mut bad = 0;
    for file in files {
        match scenario::check_file(file) {
            Ok((s, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                outln!("ok     {} ({}, cause {})", file.display(), s.id, s.cause)
            }
            Err(e) => {
                bad += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} of {} scenario file(s) invalid; docs/scenarios.md describes every field",
            files.len()
        );
        Ok(EXIT_BAD_INPUT)
    } else {
        Ok(EXIT_FOUND)
    }
}

fn diagnose(bundle: &Path, json: bool) -> Printed {
    if !bundle.is_dir() {
        eprintln!(
            "error: {} is not a directory; --bundle takes a directory of tool output (docs/bundles.md lists the file names)",
            bundle.display()
        );
        return Ok(EXIT_BAD_INPUT);
    }
    print_diagnosis(bundle, json)
}

/// Diagnoses a bundle and prints the report (text, or one JSON object).
fn print_diagnosis(bundle: &Path, json: bool) -> Printed {
    let evidence = Evidence::load(bundle);
    let result = detect::diagnose(&evidence);
    if json {
        outln!("{}", report::to_json(&evidence, &result));
    } else {
        out!("{}", report::to_text(&evidence, &result));
    }
    Ok(if result.diagnoses.is_empty() {
        EXIT_NOTHING
    } else {
        EXIT_FOUND
    })
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a timeout must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write e.g. 30s, 2m, 500ms)")),
    }
}

/// `terminus matrix`: one column per cell directory, named after the directory.
fn matrix(dirs: &[PathBuf]) -> Printed {
    use terminus::matrix::{Column, Matrix};
    let mut m = Matrix::default();
    for dir in dirs {
        let cell = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let wall = std::fs::read_to_string(dir.join("wall-seconds"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let junit = dir.join("junit.xml");
        m.columns.push(match std::fs::read_to_string(&junit) {
            Ok(xml) => Column::from_junit(&cell, &junit.display().to_string(), &xml, wall),
            Err(e) => Column::missing(&cell, format!("{}: {e}", junit.display()), wall),
        });
    }
    out!("{}", m.render());
    Ok(if m.passed() { 0 } else { EXIT_TRIAL_FAILED })
}

fn score(
    dir: &Path,
    detectors: &[terminus::detectors::Detector],
    timeout: std::time::Duration,
    json: bool,
) -> Printed {
    for (i, d) in detectors.iter().enumerate() {
        if detectors[..i].contains(d) {
            eprintln!("error: detector {d} is given twice");
            return Ok(EXIT_BAD_INPUT);
        }
    }
    let bundles = match terminus::corpus::find_bundles(dir) {
        Ok(bundles) => bundles,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let context = terminus::detectors::DetectorContext {
        timeout,
        ..Default::default()
    };
    let card = terminus::corpus::score(&bundles, detectors, &context);
    if json {
        outln!("{}", card.to_json());
    } else {
        out!("{}", card.render_text());
    }
    Ok(if card.all_passed() {
        EXIT_FOUND
    } else {
        EXIT_TRIAL_FAILED
    })
}
