//! How a trial ended, typed: a verdict on the scenario ([`Outcome`]) or a harness that
//! could not run it ([`HarnessError`]). JUnit, the summary and the test runner read these
//! instead of parsing a message.
//!
//! Architecture invariant: a trial outcome is never an infrastructure error and vice
//! versa. "The fault did not reproduce" is an [`Outcome`]; "docker does not answer" is a
//! [`HarnessError`]. JUnit shows the first kind as `<failure>`, the second as `<error>`.
//! A skip keeps its reason typed ([`Unmet`]: the field, the range, what the node runs),
//! so no reader matches a message to tell a skip from a failure.

use serde::{Serialize, Serializer};

use crate::scenario::Unmet;

/// A verdict on the scenario: what the cluster, the detector and the remedy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "why", rename_all = "kebab-case")]
pub enum Outcome {
    /// Stuck as the scenario says, named by every detector, cleared by the remedy, node
    /// clean, fault recovered.
    Passed,
    /// The fault was applied but the pod did not behave as the scenario says.
    NotReproduced(String),
    /// A detector named another cause, none, or failed to answer.
    Misdiagnosed(String),
    /// The remedy failed, or the pod stayed after it.
    RemedyFailed(String),
    /// Something of the trial was left on the node or in the cluster.
    LeftUnclean(String),
    /// The trial was not run: the node it would use does not meet the scenario's
    /// `requires` (serialised as the reason's text).
    Skipped(#[serde(serialize_with = "as_text")] Unmet),
}

fn as_text<S: Serializer>(unmet: &Unmet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(unmet)
}

/// The harness could not run the trial: cluster, Docker, API or file errors, a panic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{0}")]
pub struct HarnessError(pub String);

/// A trial's result: an outcome, or a harness error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrialResult {
    Outcome(Outcome),
    HarnessError(HarnessError),
}

impl Outcome {
    /// The reason of anything but a pass.
    pub fn why(&self) -> Option<String> {
        match self {
            Outcome::Passed => None,
            Outcome::NotReproduced(w)
            | Outcome::Misdiagnosed(w)
            | Outcome::RemedyFailed(w)
            | Outcome::LeftUnclean(w) => Some(w.clone()),
            Outcome::Skipped(unmet) => Some(unmet.to_string()),
        }
    }

    /// A short stable name (summary, JSON).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::NotReproduced(_) => "not-reproduced",
            Outcome::Misdiagnosed(_) => "misdiagnosed",
            Outcome::RemedyFailed(_) => "remedy-failed",
            Outcome::LeftUnclean(_) => "left-unclean",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

impl TrialResult {
    /// What the console and the test runner print on anything but a pass or a skip.
    pub fn failure(&self) -> Option<String> {
        match self {
            TrialResult::Outcome(Outcome::Passed | Outcome::Skipped(_)) => None,
            TrialResult::Outcome(o) => o.why(),
            TrialResult::HarnessError(e) => Some(format!("harness error: {e}")),
        }
    }

    /// Why the trial was not run, when it was skipped.
    pub fn skipped(&self) -> Option<&Unmet> {
        match self {
            TrialResult::Outcome(Outcome::Skipped(unmet)) => Some(unmet),
            _ => None,
        }
    }

    /// The JUnit status: success, `<skipped message=REASON>`, `<failure>` for a verdict,
    /// `<error>` for the harness.
    pub fn junit_status(&self) -> quick_junit::TestCaseStatus {
        use quick_junit::{NonSuccessKind, TestCaseStatus};
        let (kind, message) = match self {
            TrialResult::Outcome(Outcome::Passed) => return TestCaseStatus::success(),
            TrialResult::Outcome(Outcome::Skipped(unmet)) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(unmet.to_string());
                return s;
            }
            TrialResult::Outcome(o) => (
                NonSuccessKind::Failure,
                format!("{}: {}", o.name(), o.why().unwrap_or_default()),
            ),
            TrialResult::HarnessError(e) => (NonSuccessKind::Error, e.0.clone()),
        };
        let mut s = TestCaseStatus::non_success(kind);
        s.set_message(message);
        s
    }
}

/// Why the phases stopped early: a verdict, or the harness.
#[derive(Debug)]
pub enum Stop {
    Outcome(Outcome),
    Harness(HarnessError),
}

/// Errors of the harness's own calls (kube, docker exec, files) are harness errors unless
/// a phase says otherwise.
impl From<String> for Stop {
    fn from(why: String) -> Stop {
        Stop::Harness(HarnessError(why))
    }
}

impl From<&str> for Stop {
    fn from(why: &str) -> Stop {
        Stop::Harness(HarnessError(why.to_owned()))
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Outcome(o) => f.write_str(&o.why().unwrap_or_default()),
            Stop::Harness(e) => f.write_str(&e.0),
        }
    }
}

impl Stop {
    /// A deletion that did not happen in time is the trial's verdict (`on_timeout`); a
    /// failing API or watch is the harness's.
    pub fn after_deletion(e: crate::wait::DeletedError, on_timeout: fn(String) -> Stop) -> Stop {
        match e {
            crate::wait::DeletedError::Timeout(t) => on_timeout(t.to_string()),
            other => Stop::Harness(HarnessError(other.to_string())),
        }
    }
    pub fn not_reproduced(why: impl Into<String>) -> Stop {
        Stop::Outcome(Outcome::NotReproduced(why.into()))
    }
    pub fn misdiagnosed(why: impl Into<String>) -> Stop {
        Stop::Outcome(Outcome::Misdiagnosed(why.into()))
    }
    pub fn remedy_failed(why: impl Into<String>) -> Stop {
        Stop::Outcome(Outcome::RemedyFailed(why.into()))
    }
    pub fn left_unclean(why: impl Into<String>) -> Stop {
        Stop::Outcome(Outcome::LeftUnclean(why.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn junit_xml(result: &TrialResult) -> String {
        let mut report = quick_junit::Report::new("t");
        let mut suite = quick_junit::TestSuite::new("s");
        suite.add_test_case(quick_junit::TestCase::new("c", result.junit_status()));
        report.add_test_suite(suite);
        report.to_string().expect("renders")
    }

    #[test]
    fn a_verdict_is_a_junit_failure_and_the_harness_an_error() {
        let misdiagnosed = TrialResult::Outcome(Outcome::Misdiagnosed(
            "detector x: expected a, got b".into(),
        ));
        let xml = junit_xml(&misdiagnosed);
        assert!(xml.contains("<failure") && !xml.contains("<error"), "{xml}");
        assert!(xml.contains("misdiagnosed: detector x"), "{xml}");

        let broken = TrialResult::HarnessError(HarnessError("docker is not running".into()));
        let xml = junit_xml(&broken);
        assert!(xml.contains("<error") && !xml.contains("<failure"), "{xml}");
    }

    pub(crate) fn containerd_below_2() -> Unmet {
        use crate::scenario::{Found, Requirement};
        Unmet {
            requirement: Requirement::Containerd,
            required: "<2".into(),
            found: Found::Runs("containerd 2.1.9".into()),
        }
    }

    #[test]
    fn skips_and_passes_are_not_failures() {
        let skipped = TrialResult::Outcome(Outcome::Skipped(containerd_below_2()));
        assert_eq!(skipped.failure(), None);
        assert_eq!(skipped.skipped(), Some(&containerd_below_2()));
        let xml = junit_xml(&skipped);
        assert!(
            xml.contains(r#"<skipped message="requires.containerd &quot;&lt;2&quot; but the node runs containerd 2.1.9"/>"#),
            "{xml}"
        );
        assert!(
            !xml.contains("<failure") && !xml.contains("<error"),
            "{xml}"
        );
        assert_eq!(TrialResult::Outcome(Outcome::Passed).failure(), None);
        assert_eq!(TrialResult::Outcome(Outcome::Passed).skipped(), None);
        // record.json keeps the reason as text, like every other outcome's.
        let json = serde_json::to_value(&skipped).expect("serialises");
        assert_eq!(json["outcome"]["outcome"], "skipped");
        assert_eq!(
            json["outcome"]["why"],
            r#"requires.containerd "<2" but the node runs containerd 2.1.9"#
        );
    }

    #[test]
    fn the_console_text_keeps_the_reason() {
        let r = TrialResult::Outcome(Outcome::NotReproduced("pod went away".into()));
        assert_eq!(r.failure().as_deref(), Some("pod went away"));
        let e = TrialResult::HarnessError(HarnessError("kube: 500".into()));
        assert_eq!(e.failure().as_deref(), Some("harness error: kube: 500"));
    }

    #[test]
    fn plain_errors_are_harness_errors() {
        assert!(matches!(Stop::from("x".to_owned()), Stop::Harness(_)));
        assert!(matches!(
            Stop::not_reproduced("y"),
            Stop::Outcome(Outcome::NotReproduced(_))
        ));
    }
}
