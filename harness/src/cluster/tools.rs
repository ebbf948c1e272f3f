//! The `kind` and `docker` command-line tools: finding them and running them.
//!
//! Architecture invariant: every external command runs with stdin closed and its
//! failure becomes [`ClusterError::CommandFailed`] with the command and its output tail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{io_err, ClusterError, Result};
use super::KIND_ENV;

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The kind binary: `$KIND` when set, else the cell's `kind-vX.Y.Z` on `PATH` (what
/// ci/bootstrap installs for every cell of ci/cells), else `kind` on `PATH`.
pub fn kind_binary() -> Result<PathBuf> {
    let (cell, _) = crate::cell::selected()?;
    match std::env::var_os(KIND_ENV) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(&v);
            if is_executable(&p) {
                Ok(p)
            } else if let Some(found) = (!p.to_string_lossy().contains('/'))
                .then(|| search_path(&p.to_string_lossy()))
                .flatten()
            {
                Ok(found)
            } else {
                Err(ClusterError::KindMissing {
                    detail: format!("KIND={} is not an executable file", p.display()),
                    version: cell.kind,
                })
            }
        }
        _ => search_path(&cell.kind_binary_name())
            .or_else(|| search_path("kind"))
            .ok_or_else(|| ClusterError::KindMissing {
                detail: format!("neither `{}` nor `kind` on PATH", cell.kind_binary_name()),
                version: cell.kind,
            }),
    }
}

pub(super) fn docker_binary() -> Result<PathBuf> {
    search_path("docker").ok_or_else(|| ClusterError::DockerMissing("no `docker` on PATH".into()))
}

/// Runs a command, returning stdout; a non-zero exit becomes [`ClusterError::CommandFailed`]
/// carrying the tail of its output.
pub(super) fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::CommandFailed {
            command: shown.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(ClusterError::CommandFailed {
            command: shown,
            status: out.status.to_string(),
            output: tail(&text, 30),
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Names of the kind clusters on this machine.
pub fn kind_clusters() -> Result<Vec<String>> {
    let kind = kind_binary()?;
    let out = run(Command::new(kind).args(["get", "clusters"]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No kind clusters"))
        .map(String::from)
        .collect())
}

/// Writes kind's kubeconfig for cluster `name` into its record directory.
pub(super) fn write_kubeconfig(kind: &Path, name: &str, record: &Path) -> Result<PathBuf> {
    let text = run(Command::new(kind).args(["get", "kubeconfig", "--name", name]))?;
    let path = record.join("kubeconfig");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    Ok(path)
}

/// `kind delete cluster --name NAME`.
pub(super) fn delete_cluster(kind: &Path, name: &str) -> Result<()> {
    run(Command::new(kind).args(["delete", "cluster", "--name", name]))?;
    Ok(())
}

/// Loads a local docker image into every node of cluster `name` (`kind load docker-image`).
pub fn load_image(name: &str, image: &str) -> Result<()> {
    let kind = kind_binary()?;
    run(Command::new(kind).args(["load", "docker-image", "--name", name, image]))?;
    Ok(())
}
