//! A closed stdout ends the agent's text and JSON commands quietly: exit 141
//! (agent/README.md), no panic, nothing on stderr. Needs no root.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_terminus-agent");

#[test]
fn a_closed_stdout_ends_the_agent_quietly() {
    let state = tempfile::tempdir().expect("tempdir");
    let state = state.path().to_str().expect("utf-8").to_owned();
    let tmp = std::env::temp_dir().display().to_string();
    let commands: [&[&str]; 4] = [
        &["ps"],
        &["df"],
        &["lsattr", "--recursive", &tmp],
        &["ledger"],
    ];
    for args in commands {
        // The read end is dropped before the agent starts: every write hits a closed pipe.
        let (read_end, write_end) = std::io::pipe().expect("pipe");
        drop(read_end);
        let out = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(write_end)
            .stderr(Stdio::piped())
            .output()
            .expect("run terminus-agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: stderr:\n{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}
