//! Running a node tool (`systemctl`, `cp`) as argv with a deadline: no shell, stdin
//! closed, the whole process group killed when the deadline passes.
//!
//! Architecture invariant: every external command the agent runs outside `collect`
//! goes through [`run`], so none can hang the agent.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// At most this much of a command's stderr is kept for its error message.
const STDERR_KEPT: usize = 2000;

/// A command that ran to its end.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `argv`; Ok(stdout) when it exits 0, Err naming the command, its status and the
/// start of its stderr otherwise (or that it was killed at the deadline).
pub fn run(argv: &[&str], deadline: Duration) -> Result<String, String> {
    let done = execute(argv, deadline)?;
    if done.status.success() {
        Ok(done.stdout)
    } else {
        Err(format!(
            "`{}` exited with {}: {}",
            argv.join(" "),
            done.status,
            done.stderr
                .trim()
                .chars()
                .take(STDERR_KEPT)
                .collect::<String>()
        ))
    }
}

/// Runs `argv` to its end, whatever its exit status; Err only when it could not be
/// started or was killed at the deadline.
pub fn execute(argv: &[&str], deadline: Duration) -> Result<Finished, String> {
    let shown = argv.join(" ");
    let (prog, rest) = argv.split_first().ok_or("empty command")?;
    let mut child = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    // Readers on threads: a chatty child must not block on a full pipe while we wait.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() >= deadline => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for `{shown}`: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Finished {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "`{shown}` did not finish within {}s (killed)",
            deadline.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_status_and_deadline() {
        assert_eq!(
            run(&["echo", "hi"], Duration::from_secs(5)),
            Ok("hi\n".into())
        );
        let e = run(
            &["sh", "-c", "echo nope >&2; exit 3"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        let started = Instant::now();
        let e = run(&["sleep", "30"], Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(run(&["/nonexistent/tool"], Duration::from_secs(1))
            .unwrap_err()
            .contains("cannot run"));
    }
}
