//! The `terminus` command. Exit codes are part of the interface (docs/diagnose.md):
//! 0 a cause was found / the command succeeded, 1 no known cause, 2 bad input,
//! 3 an internal or infrastructure error.

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

#[derive(Parser)]
#[command(name = "terminus", version, about = "Reproduce, detect and remedy Kubernetes pods stuck in Terminating")]
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
        Command::Scenarios { command: ScenariosCommand::List { dir } } => list(&dir),
        Command::Scenarios { command: ScenariosCommand::Check { files } } => check(&files),
        Command::Diagnose { bundle, json } => diagnose(&bundle, json),
    })
}

fn list(dir: &Path) -> u8 {
    match scenario::load_dir(dir) {
        Ok(scenarios) => {
            println!("{:<34} {:<22} {:<19} {}", "SCENARIO", "CAUSE", "FIDELITY", "TITLE");
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
            eprintln!("hint: run from the repository root, or pass --dir DIR (or set TERMINUS_SCENARIOS)");
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
        eprintln!("{bad} of {} scenario file(s) invalid; docs/scenarios.md describes every field", files.len());
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
