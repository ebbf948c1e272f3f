//! The unit tier's checks of what CI itself runs: the GitHub workflows pass actionlint
//! (installed by ci/bootstrap --tests), and the shell's reading of ci/cells (ci/lib/cells.sh,
//! used by ci/matrix, ci/bootstrap and images/kind-node/build) agrees with the harness's
//! (harness/src/cell.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn actionlint() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("actionlint"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/local/bin/actionlint")).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("actionlint is not installed: run ci/bootstrap --tests"))
}

#[test]
fn workflows_pass_actionlint() {
    let dir = repo().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {}", dir.display());
    let out = Command::new(actionlint())
        .arg("-no-color")
        .args(&files)
        .current_dir(repo())
        .output()
        .expect("actionlint runs");
    assert!(
        out.status.success(),
        "actionlint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout of `bash SCRIPT ARGS...` run from the repository; a failure shows its stderr.
fn bash_stdout(script: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bash {script}: {e}"));
    assert!(
        out.status.success(),
        "bash {script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shell_and_harness_read_the_same_cells() {
    let cells = terminus::cell::all().expect("ci/cells parses");
    let shell: Vec<String> = bash_stdout("ci/matrix", &["--list"])
        .lines()
        .map(str::to_owned)
        .collect();
    let harness: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
    assert_eq!(shell, harness);
    // The image tag the build script prints is the one the harness looks for.
    for cell in &cells {
        let tag = bash_stdout(
            "images/kind-node/build",
            &["--print-tag", "--cell", &cell.name],
        );
        assert_eq!(tag.trim(), cell.image());
    }
}
