//! The detector: evidence in, ranked diagnoses out. Pure — no IO, no clock (the
//! capture time comes with the evidence) — so it is tested on fixtures alone.

mod gate;
mod rules;

use std::time::Duration;

use serde::Serialize;

use crate::cause::CauseId;
use crate::evidence::{Evidence, Quote};

/// One concrete step of a remedy. `command` is filled in with the real path, pid,
/// container id or finalizer name taken from the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl Step {
    pub fn say(description: impl Into<String>) -> Step {
        Step {
            description: description.into(),
            command: None,
        }
    }
    pub fn run(description: impl Into<String>, command: impl Into<String>) -> Step {
        Step {
            description: description.into(),
            command: Some(command.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub cause: CauseId,
    pub title: &'static str,
    /// 0.0–1.0: how strongly the evidence supports this cause.
    pub confidence: f64,
    /// One sentence: what the evidence shows, with the names filled in.
    pub summary: String,
    /// Lines quoted verbatim from the input.
    pub evidence: Vec<Quote>,
    pub remedy: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// At least one cause is supported by the evidence.
    CauseFound,
    /// The pod is stuck (or there is no pod evidence) but nothing known fits.
    NoKnownCause,
    /// The pod has no deletionTimestamp: it is not Terminating.
    NotTerminating,
    /// The pod is Terminating but still inside its grace period (or finalizers are
    /// being worked on): waiting is the remedy.
    TooEarly,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// Ranked, most likely first.
    pub diagnoses: Vec<Diagnosis>,
    /// Evidence that was missing or unusable and what it would have shown.
    pub missing: Vec<String>,
    /// Other observations worth a reader's time (why the verdict is what it is).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// How long past its grace period a pod must be before terminus calls it stuck:
    /// finalizer controllers and a busy kubelet need a moment.
    pub min_stuck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_stuck: Duration::from_secs(15),
        }
    }
}

/// Diagnoses with the default options.
pub fn diagnose(evidence: &Evidence) -> Report {
    diagnose_with(evidence, &Options::default())
}

pub fn diagnose_with(evidence: &Evidence, options: &Options) -> Report {
    let mut report = Report {
        verdict: Verdict::NoKnownCause,
        diagnoses: Vec::new(),
        missing: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(verdict) = gate::before_rules(evidence, options, &mut report.notes) {
        report.verdict = verdict;
        return report;
    }
    report.diagnoses = rules::all(evidence)
        .into_iter()
        .filter(|d| d.confidence >= rules::THRESHOLD)
        .collect();
    // Stable ranking: by confidence, then by the order of CauseId for equal confidence.
    report.diagnoses.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.cause.cmp(&b.cause))
    });
    report.verdict = if report.diagnoses.is_empty() {
        Verdict::NoKnownCause
    } else {
        Verdict::CauseFound
    };
    report.missing = gate::missing(evidence);
    report
}
