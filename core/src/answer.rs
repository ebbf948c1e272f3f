//! What a detector says about one bundle (docs/detectors.md): an [`Answer`], or a
//! [`DetectorFailure`] when it did not speak the protocol. Pure types and the parser of
//! an answer's JSON; running detectors (processes, timeouts) is the harness's
//! `detectors` module.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::cause::CauseId;

/// A detector's verdict on one bundle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// `None`: the detector found no known cause.
    pub cause: Option<CauseId>,
    /// 0.0–1.0.
    pub confidence: f64,
    /// The lines the detector quotes as proof, as it gave them.
    pub evidence: Vec<String>,
}

/// A detector that did not answer per the protocol. A scored result, not an error of
/// the harness.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{kind}")]
pub struct DetectorFailure {
    #[serde(flatten)]
    pub kind: FailureKind,
    /// The end of what the detector wrote on stderr (empty when it wrote nothing).
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "failure", rename_all = "kebab-case")]
pub enum FailureKind {
    /// The command could not be started (not executable, bad interpreter line, ...).
    Spawn { reason: String },
    /// Still running when the timeout passed; its process group was killed.
    TimedOut { timeout_ms: u64 },
    /// Exited with a non-zero status. Its stdout is ignored.
    Exited { code: i32 },
    /// Killed by a signal it did not get from the harness.
    Signalled { signal: i32 },
    /// Exited 0 but stdout is not one JSON object of the protocol's shape.
    InvalidJson { reason: String },
    /// A well-formed answer naming a cause id that does not exist.
    UnknownCause { cause: String },
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Spawn { reason } => write!(f, "could not start: {reason}"),
            FailureKind::TimedOut { timeout_ms } => write!(
                f,
                "timed out after {} (killed)",
                humantime::format_duration(Duration::from_millis(*timeout_ms))
            ),
            FailureKind::Exited { code } => write!(f, "exited with status {code}"),
            FailureKind::Signalled { signal } => write!(f, "killed by signal {signal}"),
            FailureKind::InvalidJson { reason } => write!(f, "invalid answer: {reason}"),
            FailureKind::UnknownCause { cause } => write!(f, "unknown cause id `{cause}`"),
        }
    }
}

impl FailureKind {
    /// A short stable name: `spawn`, `timed-out`, `exited`, `signalled`, `invalid-json`,
    /// `unknown-cause` (the `failure` field of the JSON scorecard).
    pub fn name(&self) -> &'static str {
        match self {
            FailureKind::Spawn { .. } => "spawn",
            FailureKind::TimedOut { .. } => "timed-out",
            FailureKind::Exited { .. } => "exited",
            FailureKind::Signalled { .. } => "signalled",
            FailureKind::InvalidJson { .. } => "invalid-json",
            FailureKind::UnknownCause { .. } => "unknown-cause",
        }
    }
}

/// Parses a detector's stdout per the protocol: exactly one JSON object with `cause`
/// (a cause id or null), `confidence` (0–1; may be omitted when `cause` is null) and
/// optionally `evidence` (strings). Other fields are ignored, so the protocol can grow.
pub fn parse_answer(stdout: &[u8]) -> Result<Answer, FailureKind> {
    let invalid = |reason: String| FailureKind::InvalidJson { reason };
    let text =
        std::str::from_utf8(stdout).map_err(|e| invalid(format!("stdout is not UTF-8 ({e})")))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(
            "nothing on stdout; expected one JSON object".into(),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "stdout is not one JSON object ({e}); it begins `{}`",
            head(text, 80)
        ))
    })?;
    let Value::Object(fields) = value else {
        return Err(invalid(format!(
            "stdout is JSON but not an object: `{}`",
            head(text, 80)
        )));
    };
    let cause = match fields.get("cause") {
        None => {
            return Err(invalid(
                "no `cause` field (use null for \"no known cause\")".into(),
            ))
        }
        Some(Value::Null) => None,
        Some(Value::String(id)) => Some(
            id.parse::<CauseId>()
                .map_err(|_| FailureKind::UnknownCause { cause: id.clone() })?,
        ),
        Some(other) => {
            return Err(invalid(format!(
                "`cause` must be a cause id string or null, not {other}"
            )))
        }
    };
    let confidence = match fields.get("confidence") {
        None | Some(Value::Null) if cause.is_none() => 0.0,
        None => {
            return Err(invalid(
                "no `confidence` field (a number from 0 to 1)".into(),
            ))
        }
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if (0.0..=1.0).contains(&c) => c,
            _ => {
                return Err(invalid(format!(
                    "`confidence` must be from 0 to 1, not {n}"
                )))
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "`confidence` must be a number from 0 to 1, not {other}"
            )))
        }
    };
    let evidence = match fields.get("evidence") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(line) => Ok(line.clone()),
                other => Err(invalid(format!(
                    "`evidence` must hold strings, not {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(format!(
                "`evidence` must be an array of strings, not {other}"
            )))
        }
    };
    Ok(Answer {
        cause,
        confidence,
        evidence,
    })
}

fn head(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out.replace('\n', "\\n")
}
