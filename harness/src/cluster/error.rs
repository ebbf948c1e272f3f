//! What cluster operations can fail with, worded for the person at the terminal.
//!
//! Architecture invariant: every failure of a `kind`/`docker` command carries the
//! command and the tail of its output, so the error alone says what to run by hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "kind not found: {detail}. Install it with `GOBIN=/usr/local/bin go install sigs.k8s.io/kind@{version}` \
         (or run ci/bootstrap), or set KIND=/path/to/kind"
    )]
    KindMissing { detail: String, version: String },
    #[error("{0}")]
    Cell(#[from] crate::cell::CellError),
    #[error(
        "node image {image} of cell {cell} is not in the local docker image store; build it with \
         `images/kind-node/build --cell {cell}` (or `ci/matrix --cell {cell}`), or set TERMINUS_NODE_IMAGE"
    )]
    CellImageMissing { cell: String, image: String },
    #[error("docker not found on PATH (or not answering): {0}. Run ci/bootstrap to install and start it")]
    DockerMissing(String),
    #[error("invalid cluster name {name:?}: {why}")]
    BadName { name: String, why: String },
    #[error(
        "cluster {name:?} exists but terminus did not create it ({why}); it is left alone. \
         Use another --name"
    )]
    NotOurs { name: String, why: String },
    #[error("no cluster named {0:?}")]
    NoSuchCluster(String),
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("kubeconfig of cluster {name:?}: {detail}")]
    Kubeconfig { name: String, detail: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ClusterError {
    /// The process exit code for `terminus cluster`: 2 for bad input or a cluster that
    /// is not ours, 3 for an infrastructure failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClusterError::BadName { .. }
            | ClusterError::NotOurs { .. }
            | ClusterError::NoSuchCluster(_) => 2,
            _ => 3,
        }
    }
}

impl From<crate::wait::Timeout> for ClusterError {
    fn from(t: crate::wait::Timeout) -> Self {
        ClusterError::Timeout {
            what: t.what,
            waited: t.waited,
            last: t.last,
        }
    }
}
