//! A closed stdout ends every command quietly (docs/diagnose.md, exit 141), as Unix tools
//! end in a pipe: no panic (exit 101, "failed printing to stdout"), nothing on stderr.
//! Each command that needs no cluster is run twice: with a reader that takes 1 byte and
//! closes (`| head -c1`), and with stdout closed before the command writes at all, the
//! case that is certain to hit a closed pipe whatever the timing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// 128 + SIGPIPE, documented in docs/diagnose.md.
const EXIT_STDOUT_CLOSED: i32 = 141;
/// No run here may take longer; a hang fails the test instead of stalling the suite.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    repo().join("core/tests/fixtures")
}

/// Every command of `terminus --help` that runs without a cluster, with its arguments.
fn commands() -> Vec<Vec<String>> {
    let bundle = fixtures()
        .join("bundles/containerd-disk-full")
        .display()
        .to_string();
    let corpus = fixtures().display().to_string();
    let scenarios = repo().join("scenarios");
    let mut files: Vec<String> = std::fs::read_dir(&scenarios)
        .expect("scenarios/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in {scenarios:?}");
    let mut check = vec!["scenarios".to_owned(), "check".to_owned()];
    check.extend(files);
    let s = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    vec![
        s(&["diagnose", "--bundle", &bundle]),
        s(&["diagnose", "--bundle", &bundle, "--json"]),
        s(&["score", "--bundles", &corpus]),
        s(&["score", "--bundles", &corpus, "--json"]),
        s(&[
            "scenarios",
            "list",
            "--dir",
            &scenarios.display().to_string(),
        ]),
        check,
        s(&["--help"]),
        s(&["--version"]),
        s(&["score", "--help"]),
    ]
}

struct Run {
    code: Option<i32>,
    stderr: String,
}

/// How the reader treats stdout.
#[derive(Debug, Clone, Copy)]
enum Reader {
    /// Reads one byte, then closes (`| head -c1`).
    OneByte,
    /// Closed before terminus starts.
    Closed,
}

fn run(args: &[String], reader: Reader) -> Run {
    let (read_end, write_end) = std::io::pipe().expect("pipe");
    let mut read_end = Some(read_end);
    if let Reader::Closed = reader {
        read_end = None;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_terminus"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(write_end)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start terminus");
    if let Some(mut r) = read_end {
        let mut byte = [0u8; 1];
        let _ = r.read(&mut byte);
        drop(r);
    }
    let mut err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let Ok(stderr) = rx.recv_timeout(RUN_DEADLINE) else {
        let _ = child.kill();
        panic!("terminus {args:?} still running after {RUN_DEADLINE:?}");
    };
    let status = child.wait().expect("wait for terminus");
    Run {
        code: status.code(),
        stderr,
    }
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let mut bad = Vec::new();
    for args in commands() {
        for reader in [Reader::OneByte, Reader::Closed] {
            let run = run(&args, reader);
            // The reader may close only after everything was written (any exit code of
            // the command then), but never with a panic or a signal.
            let quiet_end = run.code.is_some_and(|code| code != 101);
            let loud = run.stderr.contains("panicked")
                || run.stderr.contains("Broken pipe")
                || run.stderr.contains("failed printing");
            if !quiet_end || loud {
                bad.push(format!(
                    "terminus {args:?} ({reader:?}): exit {:?}, stderr:\n{}",
                    run.code, run.stderr
                ));
            }
            if let Reader::Closed = reader {
                // Nothing could be written: every command must report the closed pipe.
                if run.code != Some(EXIT_STDOUT_CLOSED) {
                    bad.push(format!(
                        "terminus {args:?} with stdout closed: exit {:?}, not {EXIT_STDOUT_CLOSED}; stderr:\n{}",
                        run.code, run.stderr
                    ));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}
