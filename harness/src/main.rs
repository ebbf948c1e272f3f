//! The `terminus` command. Exit codes are part of the interface (docs/diagnose.md):
//! 0 a cause was found / the command succeeded, 1 no known cause, 2 bad input,
//! 3 an internal or infrastructure error. `terminus score` (docs/detectors.md): 0 every
//! trial passed, 1 some trial failed (a wrong cause or a detector failure), 2 bad input.

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

#[derive(Parser)]
#[command(
    name = "terminus",
    version,
    about = "Reproduce, detect and remedy Kubernetes pods stuck in Terminating"
)]
struct Cli {
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
    /// Diagnose a stuck pod from an evidence bundle (a directory of tool output).
    Diagnose {
        /// The bundle directory: pod.yaml, events.yaml, kubelet.log, runtime.log, df.txt, ... (docs/bundles.md)
        #[arg(long, value_name = "DIR")]
        bundle: PathBuf,
        /// Print one JSON object (schema terminus/diagnosis/v1) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// kind clusters for trials: up (create or reuse), down, status, list (harness/src/cluster.rs).
    Cluster {
        #[command(subcommand)]
        command: terminus::cluster::ClusterCommand,
    },
    /// Remove what killed runs left behind: node faults (immutable flags, frozen
    /// processes, fillers, mount holders) in every cluster terminus created, then the
    /// clusters themselves (or only terminus's namespaces with --keep-clusters).
    Gc {
        #[arg(long)]
        keep_clusters: bool,
    },
    /// Score detectors over bundles whose cause is known, and print the scorecard.
    Score {
        /// Searched recursively: every directory holding an `expected-cause` file is a bundle.
        #[arg(long, value_name = "DIR")]
        bundles: PathBuf,
        /// `builtin`, or the path of an external detector (docs/detectors.md); repeat to compare.
        #[arg(long = "detector", value_name = "DETECTOR", default_value = "builtin", value_parser = terminus::detectors::Detector::parse)]
        detectors: Vec<terminus::detectors::Detector>,
        /// How long an external detector may take on one bundle before it is killed.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
        timeout: std::time::Duration,
        /// Print one JSON object (schema terminus/scorecard/v1) instead of text.
        #[arg(long)]
        json: bool,
    },
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
    let cli = Cli::parse();
    ExitCode::from(match cli.command {
        Command::Scenarios {
            command: ScenariosCommand::List { dir },
        } => list(&dir),
        Command::Scenarios {
            command: ScenariosCommand::Check { files },
        } => check(&files),
        Command::Diagnose { bundle, json } => diagnose(&bundle, json),
        Command::Cluster { command } => terminus::cluster::run_cli(command),
        Command::Gc { keep_clusters } => gc(keep_clusters),
        Command::Score {
            bundles,
            detectors,
            timeout,
            json,
        } => score(&bundles, &detectors, timeout, json),
    })
}

fn gc(keep_clusters: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_INFRA;
        }
    };
    let report = runtime.block_on(terminus::gc::gc_all(keep_clusters));
    for action in &report.actions {
        println!("{action}");
    }
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    if report.actions.is_empty() && report.errors.is_empty() {
        println!("nothing to collect: no cluster terminus created is left");
    }
    if report.errors.is_empty() {
        EXIT_FOUND
    } else {
        EXIT_INFRA
    }
}

fn list(dir: &Path) -> u8 {
    match scenario::load_dir(dir) {
        Ok(scenarios) => {
            println!(
                "{:<34} {:<22} {:<19} {}",
                "SCENARIO", "CAUSE", "FIDELITY", "TITLE"
            );
            for s in scenarios {
                let fidelity = match s.fidelity.level {
                    scenario::FidelityLevel::Original => "original",
                    scenario::FidelityLevel::NearestEquivalent => "nearest-equivalent",
                };
                println!("{:<34} {:<22} {:<19} {}", s.id, s.cause, fidelity, s.title);
            }
            EXIT_FOUND
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "hint: run from the repository root, or pass --dir DIR (or set TERMINUS_SCENARIOS)"
            );
            EXIT_BAD_INPUT
        }
    }
}

fn check(files: &[PathBuf]) -> u8 {
    let mut bad = 0;
    for file in files {
        match scenario::load_file(file) {
            Ok(s) => println!("ok     {} ({}, cause {})", file.display(), s.id, s.cause),
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
        EXIT_BAD_INPUT
    } else {
        EXIT_FOUND
    }
}

fn diagnose(bundle: &Path, json: bool) -> u8 {
    if !bundle.is_dir() {
        eprintln!(
            "error: {} is not a directory; --bundle takes a directory of tool output (docs/bundles.md lists the file names)",
            bundle.display()
        );
        return EXIT_BAD_INPUT;
    }
    let evidence = Evidence::load(bundle);
    let result = detect::diagnose(&evidence);
    if json {
        println!("{}", report::to_json(&evidence, &result));
    } else {
        print!("{}", report::to_text(&evidence, &result));
    }
    if result.diagnoses.is_empty() {
        EXIT_NOTHING
    } else {
        EXIT_FOUND
    }
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("a timeout must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write e.g. 30s, 2m, 500ms)")),
    }
}

fn score(
    dir: &Path,
    detectors: &[terminus::detectors::Detector],
    timeout: std::time::Duration,
    json: bool,
) -> u8 {
    for (i, d) in detectors.iter().enumerate() {
        if detectors[..i].contains(d) {
            eprintln!("error: detector {d} is given twice");
            return EXIT_BAD_INPUT;
        }
    }
    let bundles = match terminus::corpus::find_bundles(dir) {
        Ok(bundles) => bundles,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return EXIT_BAD_INPUT;
        }
    };
    let context = terminus::detectors::DetectorContext {
        timeout,
        ..Default::default()
    };
    let card = terminus::corpus::score(&bundles, detectors, &context);
    if json {
        println!("{}", card.to_json());
    } else {
        print!("{}", card.render_text());
    }
    if card.all_passed() {
        EXIT_FOUND
    } else {
        EXIT_TRIAL_FAILED
    }
}
