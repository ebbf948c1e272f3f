//! Errors and the exit codes they map to (documented in README.md).
//!
//! Architecture invariant: an exit code means one thing (0 done, 1 failed, 2 bad input,
//! 3 refused by a safety limit); the harness tells a refusal from a failure by it.

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad input: a missing path, a malformed id. Exit code 2.
    #[error("{0}")]
    Usage(String),
    /// A safety limit refused the request (e.g. filling a filesystem that is too big).
    /// Exit code 3.
    #[error("refused: {0}")]
    Refused(String),
    /// The operation was attempted and failed. Exit code 1.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        AgentError::Io {
            what: what.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage(_) => 2,
            AgentError::Refused(_) => 3,
            AgentError::Failed(_) | AgentError::Io { .. } => 1,
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
