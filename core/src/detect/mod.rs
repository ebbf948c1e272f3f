//! The detector: evidence in, ranked diagnoses out. Pure — no IO, no clock (the
//! capture time comes with the evidence) — so it is tested on fixtures alone.

mod gate;
pub mod guard;
pub mod link;
pub mod plan;
mod rules;

use std::time::Duration;

use serde::Serialize;

use crate::cause::CauseId;
use crate::evidence::Evidence;
pub use link::{Proof, Tie};

/// What a remedy step asks of the reader, typed so nothing is guessed from a command's
/// first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Advice in words; no command.
    Advice,
    /// A command that only shows something (it may use shell syntax: it is printed for a
    /// person and never run by terminus).
    Look,
    /// A command that changes something. It is a program and its arguments
    /// ([`Step::argv`]), run without a shell; `command` is the same argv shell-quoted.
    Act,
}

/// Where an [`StepKind::Act`] step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepPlace {
    /// On the pod's node, as root.
    Node,
    /// Against the API server, with cluster-admin credentials (kubectl).
    Cluster,
}

/// One concrete step of a remedy, filled in with the real path, pid, container id or
/// finalizer name taken from the evidence.
///
/// Architecture invariant: an act step's `argv` is never joined into shell code; the
/// values taken from evidence stay single arguments whatever characters they hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub description: String,
    pub kind: StepKind,
    /// For the reader: what to type (for acts, `argv` quoted for a POSIX shell).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Act steps only: the program and its arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Act steps only: where it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place: Option<StepPlace>,
}

impl Step {
    /// Advice without a command.
    pub fn say(description: impl Into<String>) -> Step {
        Step {
            description: description.into(),
            kind: StepKind::Advice,
            command: None,
            argv: None,
            place: None,
        }
    }
    /// A command that only shows something; printed, never run by terminus.
    pub fn look(description: impl Into<String>, command: impl Into<String>) -> Step {
        Step {
            description: description.into(),
            kind: StepKind::Look,
            command: Some(command.into()),
            argv: None,
            place: None,
        }
    }
    /// A command that changes something on the pod's node.
    pub fn act_on_node<S: Into<String>>(
        description: impl Into<String>,
        argv: impl IntoIterator<Item = S>,
    ) -> Step {
        Step::act(description, StepPlace::Node, argv)
    }
    /// A kubectl command against the API server.
    pub fn act_on_cluster<S: Into<String>>(
        description: impl Into<String>,
        argv: impl IntoIterator<Item = S>,
    ) -> Step {
        Step::act(description, StepPlace::Cluster, argv)
    }
    fn act<S: Into<String>>(
        description: impl Into<String>,
        place: StepPlace,
        argv: impl IntoIterator<Item = S>,
    ) -> Step {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        Step {
            description: description.into(),
            kind: StepKind::Act,
            command: Some(shell_quoted(&argv)),
            argv: Some(argv),
            place: Some(place),
        }
    }
    /// The act's program and arguments, if this step is an act.
    pub fn action(&self) -> Option<(StepPlace, &[String])> {
        match (self.kind, &self.argv, self.place) {
            (StepKind::Act, Some(argv), Some(place)) if !argv.is_empty() => {
                Some((place, argv.as_slice()))
            }
            _ => None,
        }
    }
}

/// `argv` as a person would type it in a POSIX shell. An argument shlex cannot quote (a
/// NUL byte) is shown escaped; the argv itself is what runs.
fn shell_quoted(argv: &[String]) -> String {
    argv.iter()
        .map(|a| match shlex::try_quote(a) {
            Ok(q) => q.into_owned(),
            Err(_) => format!("{a:?}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnosis {
    pub cause: CauseId,
    pub title: &'static str,
    /// 0.0–1.0: how strongly the evidence supports this cause.
    pub confidence: f64,
    /// One sentence: what the evidence shows, with the names filled in.
    pub summary: String,
    /// Lines quoted verbatim from the input, each with what ties it to the pod.
    pub evidence: Vec<Proof>,
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
    /// What to do, in order: the first diagnosis' remedy, and the remedies of causes of
    /// another kind that hold the pod at the same time (see [`plan`]).
    pub plan: Vec<Step>,
    /// Evidence that was missing or unusable and what it would have shown.
    pub missing: Vec<String>,
    /// Other observations worth a reader's time (why the verdict is what it is).
    pub notes: Vec<String>,
    /// Files of the input that were refused, not understood or read only in part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<crate::evidence::InputProblem>,
}

/// The default of [`Options::min_stuck`]; also how long past its grace period a kubelet
/// that got a deletion has surely acted on it.
pub const DEFAULT_MIN_STUCK: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Options {
    /// How long past its grace period a pod must be before terminus calls it stuck:
    /// finalizer controllers and a busy kubelet need a moment.
    pub min_stuck: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_stuck: DEFAULT_MIN_STUCK,
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
        plan: Vec::new(),
        missing: Vec::new(),
        notes: Vec::new(),
        problems: evidence.problems(),
    };
    if let Some(verdict) = gate::before_rules(evidence, options, &mut report.notes) {
        report.verdict = verdict;
        return report;
    }
    let (diagnoses, notes) = rules::all(evidence);
    report.notes.extend(notes);
    report.diagnoses = diagnoses
        .into_iter()
        .filter(|d| d.confidence >= rules::THRESHOLD)
        .collect();
    // Stable ranking: by confidence, then by the order of CauseId for equal confidence.
    report.diagnoses.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.cause.cmp(&b.cause))
    });
    report.plan = plan::of(&report.diagnoses);
    report.verdict = if report.diagnoses.is_empty() {
        Verdict::NoKnownCause
    } else {
        Verdict::CauseFound
    };
    report.missing = gate::missing(evidence);
    report
}
