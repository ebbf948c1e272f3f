//! A kind node, reached through the Docker API (bollard): run commands inside the node
//! container and copy files into it. Probes and faults use this; nothing here knows
//! about scenarios.
//!
//! Architecture invariant: every command run in a node ([`Node::exec`], `sh`, `agent`)
//! has a deadline given by the caller; a command that outlives it is an error naming
//! the node and the command, never a hang. (File copies in and out are single Docker
//! API requests without a deadline of their own.)
//! Architecture invariant: nothing here knows about scenarios, causes or faults; it
//! runs what it is told in the node it was opened for.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot reach Docker at its default socket ({0}); start dockerd (ci/bootstrap does) or set DOCKER_HOST")]
    Docker(String),
    #[error("in node {node}: `{command}` did not finish within {timeout:?}")]
    Timeout {
        node: String,
        command: String,
        timeout: Duration,
    },
    #[error("in node {node}: `{command}` failed to run: {reason}")]
    Exec {
        node: String,
        command: String,
        reason: String,
    },
    #[error("in node {node}: `{command}` exited with {code}: {stderr}")]
    Failed {
        node: String,
        command: String,
        code: i64,
        stderr: String,
    },
    #[error("the node agent binary was not found (looked in {0}); build it with `cargo build -p terminus-agent` or set TERMINUS_AGENT")]
    AgentMissing(String),
    #[error("copying {what} into node {node}: {reason}")]
    Copy {
        node: String,
        what: String,
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Where the agent is installed inside a node. Not under /tmp: kind mounts a tmpfs
/// there and `docker cp` would write beneath it, invisible inside.
pub const AGENT_PATH: &str = "/usr/local/bin/terminus-agent";

#[derive(Clone)]
pub struct Node {
    docker: Docker,
    /// The node container's name, which is also the Kubernetes node name on kind.
    pub name: String,
}

pub async fn docker() -> Result<Docker, NodeError> {
    let docker =
        Docker::connect_with_local_defaults().map_err(|e| NodeError::Docker(e.to_string()))?;
    // Debian's dockerd 20.10 speaks API 1.41; bollard defaults to a newer version.
    docker
        .negotiate_version()
        .await
        .map_err(|e| NodeError::Docker(e.to_string()))
}

impl Node {
    pub async fn connect(name: &str) -> Result<Node, NodeError> {
        Ok(Node {
            docker: docker().await?,
            name: name.to_owned(),
        })
    }

    pub fn with_docker(docker: Docker, name: &str) -> Node {
        Node {
            docker,
            name: name.to_owned(),
        }
    }

    /// Runs `argv` in the node; returns its output whatever the exit code.
    pub async fn exec_raw(
        &self,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput, NodeError> {
        let command = argv.join(" ");
        let exec_err = |e: bollard::errors::Error| NodeError::Exec {
            node: self.name.clone(),
            command: command.clone(),
            reason: e.to_string(),
        };
        let run = async {
            let exec = self
                .docker
                .create_exec(
                    &self.name,
                    CreateExecOptions {
                        cmd: Some(argv.to_vec()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(exec_err)?;
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(exec_err)?
            {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(bollard::container::LogOutput::StdOut { message }) => {
                            stdout.extend_from_slice(&message)
                        }
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            stderr.extend_from_slice(&message)
                        }
                        Ok(_) => {}
                        Err(e) => return Err(exec_err(e)),
                    }
                }
            }
            let inspect = self.docker.inspect_exec(&exec.id).await.map_err(exec_err)?;
            Ok(ExecOutput {
                code: inspect.exit_code.unwrap_or(-1),
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| NodeError::Timeout {
                node: self.name.clone(),
                command: command.clone(),
                timeout,
            })?
    }

    /// Runs `argv` in the node and fails unless it exits 0.
    pub async fn exec(&self, argv: &[&str], timeout: Duration) -> Result<String, NodeError> {
        let out = self.exec_raw(argv, timeout).await?;
        if out.code != 0 {
            return Err(NodeError::Failed {
                node: self.name.clone(),
                command: argv.join(" "),
                code: out.code,
                stderr: tail(&format!("{}{}", out.stderr, out.stdout), 600),
            });
        }
        Ok(out.stdout)
    }

    /// `sh -c SCRIPT` in the node.
    pub async fn sh(&self, script: &str, timeout: Duration) -> Result<String, NodeError> {
        self.exec(&["sh", "-c", script], timeout).await
    }

    /// Copies one file into the node with the given mode.
    pub async fn copy_file(
        &self,
        dest: &str,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), NodeError> {
        let path = Path::new(dest);
        let dir = path.parent().and_then(Path::to_str).unwrap_or("/");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let copy_err = |reason: String| NodeError::Copy {
            node: self.name.clone(),
            what: dest.to_owned(),
            reason,
        };
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive
            .append_data(&mut header, name, contents.as_slice())
            .map_err(|e| copy_err(e.to_string()))?;
        let bytes = archive.into_inner().map_err(|e| copy_err(e.to_string()))?;
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(dir)
            .build();
        self.docker
            .upload_to_container(&self.name, Some(options), bollard::body_full(bytes.into()))
            .await
            .map_err(|e| copy_err(e.to_string()))
    }

    /// Installs the node agent (idempotent: copies only when the node's copy differs).
    pub async fn install_agent(&self) -> Result<(), NodeError> {
        let local = agent_binary()?;
        let bytes = std::fs::read(&local)
            .map_err(|e| NodeError::AgentMissing(format!("{}: {e}", local.display())))?;
        let want = format!("{}", bytes.len());
        let have = self
            // Generous: with a dozen trials starting at once on two cores, a docker
            // exec has been seen to take over 10 s.
            .exec_raw(&["stat", "-c", "%s", AGENT_PATH], Duration::from_secs(30))
            .await?;
        if have.code == 0 && have.stdout.trim() == want {
            return Ok(());
        }
        self.copy_file(AGENT_PATH, bytes, 0o755).await
    }

    /// Runs the agent with `args`; fails unless it exits 0.
    pub async fn agent(&self, args: &[&str], timeout: Duration) -> Result<String, NodeError> {
        let mut argv = vec![AGENT_PATH];
        argv.extend_from_slice(args);
        self.exec(&argv, timeout).await
    }
}

/// The agent binary built by cargo: `$TERMINUS_AGENT`, or next to the running
/// executable (target/<profile>/ for binaries, target/<profile>/deps/ for tests).
pub fn agent_binary() -> Result<PathBuf, NodeError> {
    if let Some(path) = std::env::var_os("TERMINUS_AGENT") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| NodeError::AgentMissing(e.to_string()))?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("terminus-agent");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    Err(NodeError::AgentMissing(looked.join(", ")))
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

impl Node {
    /// The regular files directly inside `dir` in the node, as (name, contents).
    pub async fn download_dir(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>, NodeError> {
        let err = |reason: String| NodeError::Copy {
            node: self.name.clone(),
            what: dir.to_owned(),
            reason,
        };
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(dir)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&self.name, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.map_err(|e| err(e.to_string()))?);
        }
        let mut files = Vec::new();
        let mut reader = tar::Archive::new(archive.as_slice());
        for entry in reader.entries().map_err(|e| err(e.to_string()))? {
            let mut entry = entry.map_err(|e| err(e.to_string()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(|e| err(e.to_string()))?.into_owned();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| err(e.to_string()))?;
            files.push((name, bytes));
        }
        Ok(files)
    }
}
