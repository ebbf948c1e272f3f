//! The scorecard: how each detector did on each trial. Pure — it records values and
//! renders them — so it is tested without running anything.
//!
//! A trial is one [`Case`] (a bundle or a scenario run, with the cause it is known to
//! show) put to one detector. Its grade is PASS when the detector reported the expected
//! cause (`none` included), FAIL when it reported another, ERROR when the detector did
//! not answer at all (a [`DetectorFailure`]); FAIL and ERROR both count against it.
//! A trial that was not run (a scenario whose `requires` the cluster does not meet) is
//! recorded with [`Scorecard::skip`] and its reason: listed and counted as skipped, put
//! to no detector, neither a pass nor a failure.
//!
//! ```
//! use terminus_core::answer::Answer;
//! use terminus_core::scorecard::{Case, Scorecard};
//! use terminus_core::CauseId;
//!
//! let mut card = Scorecard::new();
//! let case = Case::new("corpus/disk-full/run-1", Some(CauseId::DiskFull)).with_label("k8s v1.31.0 / containerd 1.7.18");
//! card.record("builtin", &case, Ok(Answer { cause: Some(CauseId::DiskFull), confidence: 0.9, evidence: vec![] }));
//! assert!(card.all_passed());
//! print!("{}", card.render_text()); // or card.to_json()
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::answer::{Answer, DetectorFailure};
use crate::cause::CauseId;

/// The `schema` field of [`Scorecard::to_json`]; documented in docs/detectors.md.
pub const JSON_SCHEMA: &str = "terminus/scorecard/v1";

/// What a trial is and what it should be diagnosed as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    /// Names the trial: a bundle's path relative to the corpus root, or a scenario id.
    pub id: String,
    /// The Kubernetes / runtime versions the trial ran on, when known.
    pub label: Option<String>,
    /// The cause the trial shows; `None` where nothing is wrong (`none` in files).
    #[serde(serialize_with = "serialize_expected")]
    pub expected: Option<CauseId>,
}

impl Case {
    pub fn new(id: impl Into<String>, expected: Option<CauseId>) -> Case {
        Case {
            id: id.into(),
            label: None,
            expected,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Case {
        self.label = Some(label.into());
        self
    }
}

/// What the detector said, or why it said nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered(Answer),
    Failed(DetectorFailure),
}

impl From<Result<Answer, DetectorFailure>> for Outcome {
    fn from(result: Result<Answer, DetectorFailure>) -> Outcome {
        match result {
            Ok(answer) => Outcome::Answered(answer),
            Err(failure) => Outcome::Failed(failure),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Grade {
    /// The expected cause was reported.
    Pass,
    /// Another cause (or none) was reported.
    Fail,
    /// The detector failed to answer.
    Error,
}

impl Grade {
    fn as_str(self) -> &'static str {
        match self {
            Grade::Pass => "PASS",
            Grade::Fail => "FAIL",
            Grade::Error => "ERROR",
        }
    }
}

/// A column of the confusion matrix: what was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Cause(CauseId),
    Nothing,
    Error,
}

impl Reported {
    pub fn label(self) -> &'static str {
        match self {
            Reported::Cause(cause) => cause.as_str(),
            Reported::Nothing => "none",
            Reported::Error => "error",
        }
    }
}

/// One case put to one detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub case: Case,
    pub outcome: Outcome,
}

impl Trial {
    pub fn reported(&self) -> Reported {
        match &self.outcome {
            Outcome::Answered(Answer {
                cause: Some(cause), ..
            }) => Reported::Cause(*cause),
            Outcome::Answered(Answer { cause: None, .. }) => Reported::Nothing,
            Outcome::Failed(_) => Reported::Error,
        }
    }

    pub fn grade(&self) -> Grade {
        match &self.outcome {
            Outcome::Failed(_) => Grade::Error,
            Outcome::Answered(answer) if answer.cause == self.case.expected => Grade::Pass,
            Outcome::Answered(_) => Grade::Fail,
        }
    }
}

/// Counts of (expected, reported) over a detector's trials. Rows: the 8 cause ids in
/// [`CauseId::ALL`] order, then `none`. Columns: the same, then `error`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Confusion {
    counts: [[usize; Confusion::COLUMNS]; Confusion::ROWS],
}

impl Confusion {
    pub const ROWS: usize = CauseId::ALL.len() + 1;
    pub const COLUMNS: usize = CauseId::ALL.len() + 2;

    pub fn count(&self, expected: Option<CauseId>, reported: Reported) -> usize {
        self.counts[row_index(expected)][column_index(reported)]
    }

    fn row_labels() -> impl Iterator<Item = &'static str> {
        CauseId::ALL.iter().map(|c| c.as_str()).chain(["none"])
    }

    fn column_labels() -> impl Iterator<Item = &'static str> {
        Confusion::row_labels().chain(["error"])
    }
}

fn row_index(expected: Option<CauseId>) -> usize {
    match expected {
        Some(cause) => cause_index(cause),
        None => CauseId::ALL.len(),
    }
}

fn column_index(reported: Reported) -> usize {
    match reported {
        Reported::Cause(cause) => cause_index(cause),
        Reported::Nothing => CauseId::ALL.len(),
        Reported::Error => CauseId::ALL.len() + 1,
    }
}

fn cause_index(cause: CauseId) -> usize {
    // ALL lists every variant, so the search always succeeds; 0 keeps this total.
    CauseId::ALL.iter().position(|c| *c == cause).unwrap_or(0)
}

/// Every trial of one detector, in the order recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorScore {
    pub detector: String,
    pub trials: Vec<Trial>,
}

impl DetectorScore {
    pub fn count(&self, grade: Grade) -> usize {
        self.trials.iter().filter(|t| t.grade() == grade).count()
    }

    /// Passed trials over all trials; 0 with no trials.
    pub fn accuracy(&self) -> f64 {
        if self.trials.is_empty() {
            0.0
        } else {
            self.count(Grade::Pass) as f64 / self.trials.len() as f64
        }
    }

    pub fn confusion(&self) -> Confusion {
        let mut confusion = Confusion::default();
        for trial in &self.trials {
            confusion.counts[row_index(trial.case.expected)][column_index(trial.reported())] += 1;
        }
        confusion
    }
}

/// A trial that was not run, and why (`requires.containerd "<2" but the node runs
/// containerd 2.1.9`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    #[serde(flatten)]
    pub case: Case,
    pub reason: String,
}

/// Per detector, for each trial, expected vs reported; and the trials not run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scorecard {
    detectors: Vec<DetectorScore>,
    skipped: Vec<Skipped>,
}

impl Scorecard {
    pub fn new() -> Scorecard {
        Scorecard::default()
    }

    /// Records one trial. Detectors appear in the order they were first recorded.
    pub fn record(&mut self, detector: &str, case: &Case, outcome: impl Into<Outcome>) {
        let trial = Trial {
            case: case.clone(),
            outcome: outcome.into(),
        };
        match self.detectors.iter_mut().find(|d| d.detector == detector) {
            Some(score) => score.trials.push(trial),
            None => self.detectors.push(DetectorScore {
                detector: detector.to_owned(),
                trials: vec![trial],
            }),
        }
    }

    /// Records a trial that was not run: no detector was asked, so it is neither a pass
    /// nor a failure.
    pub fn skip(&mut self, case: &Case, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            case: case.clone(),
            reason: reason.into(),
        });
    }

    pub fn detectors(&self) -> &[DetectorScore] {
        &self.detectors
    }

    /// The trials not run, in the order recorded.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    pub fn trial_count(&self) -> usize {
        self.detectors.iter().map(|d| d.trials.len()).sum()
    }

    /// Trials graded FAIL or ERROR.
    pub fn failures(&self) -> usize {
        self.detectors
            .iter()
            .map(|d| d.count(Grade::Fail) + d.count(Grade::Error))
            .sum()
    }

    /// Every trial passed. False for an empty scorecard: a run that tried nothing
    /// proves nothing (skipped trials were not tried).
    pub fn all_passed(&self) -> bool {
        self.trial_count() > 0 && self.failures() == 0
    }

    /// A table per detector (PASS/FAIL/ERROR, expected vs reported), its confusion
    /// matrix and accuracy, the skipped trials with their reasons, and a closing summary
    /// line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for score in &self.detectors {
            render_detector(&mut out, score);
            out.push('\n');
        }
        render_skipped(&mut out, &self.skipped);
        let total = self.trial_count();
        let failures = self.failures();
        let errors: usize = self.detectors.iter().map(|d| d.count(Grade::Error)).sum();
        let detectors = plural(self.detectors.len(), "detector");
        let skipped = match self.skipped.len() {
            0 => String::new(),
            n => format!("; {n} skipped"),
        };
        if total == 0 {
            let _ = writeln!(out, "NO TRIALS  nothing was scored{skipped}");
        } else if failures == 0 {
            let _ = writeln!(
                out,
                "ALL PASSED  {total} of {total} trials ({detectors}){skipped}"
            );
        } else {
            let _ = writeln!(
                out,
                "FAILED  {failures} of {total} trials did not pass ({detectors}): {} wrong cause, {}{skipped}",
                failures - errors,
                plural(errors, "detector failure"),
            );
        }
        out
    }

    /// One JSON object, schema [`JSON_SCHEMA`].
    pub fn to_json(&self) -> String {
        let doc = JsonScorecard {
            schema: JSON_SCHEMA,
            all_passed: self.all_passed(),
            trials: self.trial_count(),
            failures: self.failures(),
            detectors: self.detectors.iter().map(JsonDetector::from).collect(),
            skipped: self.skipped.clone(),
        };
        serde_json::to_string_pretty(&doc)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize the scorecard: {e}\"}}"))
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn expected_label(expected: Option<CauseId>) -> &'static str {
    expected.map_or("none", CauseId::as_str)
}

fn reported_text(trial: &Trial) -> String {
    match &trial.outcome {
        Outcome::Answered(Answer {
            cause: Some(cause),
            confidence,
            ..
        }) => format!("{cause} ({:.0}%)", confidence * 100.0),
        Outcome::Answered(Answer { cause: None, .. }) => "none".into(),
        Outcome::Failed(failure) => format!("error: {failure}"),
    }
}

/// How many of the detector's last stderr lines an ERROR row shows; JSON has them all.
const STDERR_LINES_SHOWN: usize = 3;
const STDERR_LINE_CHARS: usize = 160;

/// `text` with what could forge or hide a row shown visibly: control characters (a
/// newline, a carriage return, an ANSI escape) and invisible format characters (bidi
/// overrides, zero-width spaces) become Rust escapes (`\n`, `\u{1b}`), and a backslash
/// is doubled so an escape is never ambiguous. Names come from directory names and
/// command lines, so no input can add a line to the text scorecard or recolour it.
pub fn visible(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        let invisible = matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        );
        if c == '\\' || c.is_control() || invisible {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// `skipped N trials (not run: ...)`, then one row per trial with its reason.
fn render_skipped(out: &mut String, skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "skipped {} (not run: the cluster does not meet its requirements)",
        plural(skipped.len(), "trial")
    );
    let _ = writeln!(out);
    let rows: Vec<(String, String)> = skipped
        .iter()
        .map(|s| (visible(&s.case.id), visible(&s.reason)))
        .collect();
    let width = rows
        .iter()
        .map(|(id, _)| id.chars().count())
        .chain(["TRIAL".len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "  {:<width$}  REASON", "TRIAL");
    for (id, reason) in &rows {
        let _ = writeln!(out, "  {id:<width$}  {reason}");
    }
    let _ = writeln!(out);
}

fn render_detector(out: &mut String, score: &DetectorScore) {
    let _ = writeln!(
        out,
        "detector {}: {} of {} passed, accuracy {:.1}%",
        visible(&score.detector),
        score.count(Grade::Pass),
        plural(score.trials.len(), "trial"),
        score.accuracy() * 100.0
    );
    let _ = writeln!(out);
    let with_label = score.trials.iter().any(|t| t.case.label.is_some());
    let header = ["RESULT", "TRIAL", "LABEL", "EXPECTED", "REPORTED"];
    let rows: Vec<[String; 5]> = score
        .trials
        .iter()
        .map(|t| {
            [
                t.grade().as_str().to_owned(),
                visible(&t.case.id),
                t.case.label.as_deref().map_or_else(|| "-".into(), visible),
                expected_label(t.case.expected).to_owned(),
                visible(&reported_text(t)),
            ]
        })
        .collect();
    let shown: Vec<usize> = if with_label {
        vec![0, 1, 2, 3, 4]
    } else {
        vec![0, 1, 3, 4]
    };
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain([header[col].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: [&str; 5]| {
        let mut text = String::from(" ");
        for (i, &col) in shown.iter().enumerate() {
            if i + 1 == shown.len() {
                let _ = write!(text, " {}", cells[col]);
            } else {
                let _ = write!(text, " {:<w$} ", cells[col], w = widths[col]);
            }
        }
        text
    };
    let _ = writeln!(out, "{}", line(header));
    for (trial, row) in score.trials.iter().zip(&rows) {
        let _ = writeln!(
            out,
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]])
        );
        if let Outcome::Failed(failure) = &trial.outcome {
            let lines: Vec<&str> = failure
                .stderr_tail
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            for l in &lines[lines.len().saturating_sub(STDERR_LINES_SHOWN)..] {
                let mut shown: String =
                    visible(&l.chars().take(STDERR_LINE_CHARS).collect::<String>());
                if l.chars().count() > STDERR_LINE_CHARS {
                    shown.push('…');
                }
                let _ = writeln!(out, "  {:w$}  stderr| {shown}", "", w = widths[0]);
            }
        }
    }
    let _ = writeln!(out);
    render_confusion(out, &score.confusion());
}

fn render_confusion(out: &mut String, confusion: &Confusion) {
    let _ = writeln!(
        out,
        "  confusion (rows: expected, columns: reported, numbered as the rows; . is 0)"
    );
    let row_labels: Vec<String> = Confusion::row_labels()
        .enumerate()
        .map(|(i, label)| {
            if i < CauseId::ALL.len() {
                format!("{} {label}", i + 1)
            } else {
                format!("  {label}")
            }
        })
        .collect();
    let column_heads: Vec<String> = Confusion::column_labels()
        .enumerate()
        .map(|(i, label)| {
            if i < CauseId::ALL.len() {
                (i + 1).to_string()
            } else {
                label.to_owned()
            }
        })
        .collect();
    let label_width = row_labels.iter().map(String::len).max().unwrap_or(0);
    let mut head = format!("  {:label_width$}", "");
    for h in &column_heads {
        let _ = write!(head, " {h:>w$}", w = h.len().max(3));
    }
    let _ = writeln!(out, "{head}");
    for (r, label) in row_labels.iter().enumerate() {
        let mut line = format!("  {label:label_width$}");
        for (c, h) in column_heads.iter().enumerate() {
            let n = confusion.counts[r][c];
            let cell = if n == 0 {
                ".".to_owned()
            } else {
                n.to_string()
            };
            let _ = write!(line, " {cell:>w$}", w = h.len().max(3));
        }
        let _ = writeln!(out, "{line}");
    }
}

fn serialize_expected<S: serde::Serializer>(
    expected: &Option<CauseId>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(expected_label(*expected))
}

#[derive(Serialize)]
struct JsonScorecard {
    schema: &'static str,
    all_passed: bool,
    trials: usize,
    failures: usize,
    detectors: Vec<JsonDetector>,
    /// Left out when nothing was skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<Skipped>,
}

#[derive(Serialize)]
struct JsonDetector {
    detector: String,
    trials: usize,
    passed: usize,
    failed: usize,
    errors: usize,
    accuracy: f64,
    results: Vec<JsonTrial>,
    confusion: JsonConfusion,
}

#[derive(Serialize)]
struct JsonTrial {
    #[serde(flatten)]
    case: Case,
    grade: Grade,
    /// A cause id, `none` or `error`.
    reported: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<JsonFailure>,
}

#[derive(Serialize)]
struct JsonFailure {
    #[serde(flatten)]
    failure: DetectorFailure,
    /// The whole failure in one sentence, as the text rendering says it.
    message: String,
}

/// Expected cause → reported cause (or `none`, `error`) → count; zero counts left out.
type JsonConfusion = BTreeMap<&'static str, BTreeMap<&'static str, usize>>;

impl From<&DetectorScore> for JsonDetector {
    fn from(score: &DetectorScore) -> JsonDetector {
        let confusion = score.confusion();
        JsonDetector {
            detector: score.detector.clone(),
            trials: score.trials.len(),
            passed: score.count(Grade::Pass),
            failed: score.count(Grade::Fail),
            errors: score.count(Grade::Error),
            accuracy: score.accuracy(),
            results: score
                .trials
                .iter()
                .map(|t| {
                    let (confidence, evidence, failure) = match &t.outcome {
                        Outcome::Answered(a) => {
                            (a.cause.map(|_| a.confidence), a.evidence.clone(), None)
                        }
                        Outcome::Failed(f) => (
                            None,
                            Vec::new(),
                            Some(JsonFailure {
                                failure: f.clone(),
                                message: f.to_string(),
                            }),
                        ),
                    };
                    JsonTrial {
                        case: t.case.clone(),
                        grade: t.grade(),
                        reported: t.reported().label(),
                        confidence,
                        evidence,
                        failure,
                    }
                })
                .collect(),
            confusion: Confusion::row_labels()
                .zip(&confusion.counts)
                .filter(|(_, counts)| counts.iter().any(|&n| n > 0))
                .map(|(expected, counts)| {
                    let reported = Confusion::column_labels()
                        .zip(counts)
                        .filter(|(_, &n)| n > 0)
                        .map(|(l, &n)| (l, n));
                    (expected, reported.collect())
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::FailureKind;

    fn said(cause: Option<CauseId>, confidence: f64) -> Result<Answer, DetectorFailure> {
        let evidence = cause
            .map(|c| format!("runtime.log:1: proof of {c}"))
            .into_iter()
            .collect();
        Ok(Answer {
            cause,
            confidence,
            evidence,
        })
    }

    #[test]
    fn names_and_stderr_cannot_forge_rows_or_escape_the_terminal() {
        let forged = "evil\n  PASS    forged  disk-full  disk-full (100%)";
        let render = |id: &str, detector: &str, stderr: &str| {
            let mut card = Scorecard::new();
            card.record(
                detector,
                &Case::new(id, Some(CauseId::DiskFull)).with_label("k8s\r\x1b[31mred"),
                said(Some(CauseId::DiskFull), 0.9),
            );
            card.record(
                detector,
                &Case::new("b", None),
                Err(DetectorFailure {
                    kind: FailureKind::InvalidJson {
                        reason: "line one\nPASS line two".into(),
                    },
                    stderr_tail: stderr.into(),
                }),
            );
            card.render_text()
        };
        let plain = render("a", "builtin", "boom");
        let evil = render(forged, "./det\n\x1b[2Kdetector x", "\x1b[31mboom\r  PASS");
        assert_eq!(evil.lines().count(), plain.lines().count(), "{evil}");
        assert!(!evil.contains('\x1b') && !evil.contains('\r'), "{evil}");
        assert!(
            evil.contains(r"evil\n  PASS    forged  disk-full  disk-full (100%)"),
            "{evil}"
        );
        assert!(
            evil.contains(r"detector ./det\n\u{1b}[2Kdetector x: "),
            "{evil}"
        );
        assert!(evil.contains(r"k8s\r\u{1b}[31mred"), "{evil}");
        assert!(evil.contains(r"line one\nPASS line two"), "{evil}");
        assert!(evil.contains(r"stderr| \u{1b}[31mboom\r  PASS"), "{evil}");
        assert_eq!(visible(r"a\b"), r"a\\b");
        assert_eq!(visible("bidi\u{202e}"), r"bidi\u{202e}");
        assert_eq!(visible("café ✓"), "café ✓");
    }

    fn timed_out() -> Result<Answer, DetectorFailure> {
        Err(DetectorFailure {
            kind: FailureKind::TimedOut { timeout_ms: 2000 },
            stderr_tail: "loading model\nstill thinking".into(),
        })
    }

    /// Two detectors over four cases: one perfect, one with a wrong cause, a wrong
    /// `none` and a timeout.
    fn mixed() -> Scorecard {
        let cases = [
            Case::new("seed/handbook-disk-full", Some(CauseId::DiskFull)),
            Case::new("seed/handbook-mount-held", Some(CauseId::MountHeld))
                .with_label("docker 20.10"),
            Case::new("negative/host-at-rest", None),
            Case::new("corpus/runtime-hang/1", Some(CauseId::RuntimeHang))
                .with_label("k8s v1.31.0 / containerd 1.7.18"),
        ];
        let mut card = Scorecard::new();
        let right = [
            said(Some(CauseId::DiskFull), 0.95),
            said(Some(CauseId::MountHeld), 0.9),
            said(None, 0.0),
            said(Some(CauseId::RuntimeHang), 0.8),
        ];
        let wrong = [
            said(Some(CauseId::Finalizer), 1.0),
            said(None, 0.0),
            said(Some(CauseId::Finalizer), 1.0),
            timed_out(),
        ];
        for ((case, r), w) in cases.iter().zip(right).zip(wrong) {
            card.record("builtin", case, r);
            card.record("./guess", case, w);
        }
        card
    }

    #[test]
    fn grades_compare_expected_with_reported() {
        let card = mixed();
        let [builtin, guess] = card.detectors() else {
            panic!("two detectors, in recording order")
        };
        assert_eq!(builtin.detector, "builtin");
        assert_eq!((builtin.count(Grade::Pass), builtin.accuracy()), (4, 1.0));
        let grades: Vec<Grade> = guess.trials.iter().map(Trial::grade).collect();
        assert_eq!(
            grades,
            [Grade::Fail, Grade::Fail, Grade::Fail, Grade::Error]
        );
        assert_eq!(
            (card.trial_count(), card.failures(), card.all_passed()),
            (8, 4, false)
        );
        let confusion = guess.confusion();
        assert_eq!(
            confusion.count(Some(CauseId::DiskFull), Reported::Cause(CauseId::Finalizer)),
            1
        );
        assert_eq!(
            confusion.count(None, Reported::Cause(CauseId::Finalizer)),
            1
        );
        assert_eq!(
            confusion.count(Some(CauseId::MountHeld), Reported::Nothing),
            1
        );
        assert_eq!(
            confusion.count(Some(CauseId::RuntimeHang), Reported::Error),
            1
        );
        assert_eq!(
            confusion.count(Some(CauseId::DiskFull), Reported::Cause(CauseId::DiskFull)),
            0
        );
    }

    #[test]
    fn an_empty_scorecard_is_not_a_pass() {
        let card = Scorecard::new();
        assert!(!card.all_passed());
        assert!(card.render_text().contains("NO TRIALS"));
        let mut card = Scorecard::new();
        card.record("builtin", &Case::new("x", None), said(None, 0.0));
        assert!(card.all_passed());
    }

    #[test]
    fn skipped_trials_are_listed_with_their_reason_and_neither_pass_nor_fail() {
        let reason = r#"requires.containerd "<2" but the node runs containerd 2.1.9"#;
        let mut card = mixed();
        let before = (card.trial_count(), card.failures());
        card.skip(
            &Case::new("runtime-desync", Some(CauseId::RuntimeDesync)),
            reason,
        );
        assert_eq!((card.trial_count(), card.failures()), before);
        let text = card.render_text();
        assert!(text.contains("skipped 1 trial (not run:"), "{text}");
        assert!(
            text.contains(&format!("  runtime-desync  {reason}")),
            "{text}"
        );
        assert!(text.trim_end().ends_with("; 1 skipped"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&card.to_json()).expect("JSON");
        assert_eq!(json["skipped"][0]["id"], "runtime-desync");
        assert_eq!(json["skipped"][0]["expected"], "runtime-desync");
        assert_eq!(json["skipped"][0]["reason"], reason);

        // Only skips: nothing was tried, so nothing passed.
        let mut only = Scorecard::new();
        only.skip(&Case::new("a\nPASS forged", None), "needs\x1b[2K docker");
        assert!(!only.all_passed());
        let text = only.render_text();
        assert!(
            text.contains("NO TRIALS  nothing was scored; 1 skipped"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b') && text.contains(r"a\nPASS forged"),
            "{text}"
        );
        // Without skips the JSON has no `skipped` key (schema v1 unchanged).
        assert!(!mixed().to_json().contains("\"skipped\""));
    }

    #[test]
    fn text_rendering() {
        insta::assert_snapshot!(mixed().render_text());
    }

    #[test]
    fn json_rendering() {
        let json = mixed().to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["schema"], JSON_SCHEMA);
        assert_eq!(
            value["detectors"][1]["results"][3]["failure"]["failure"],
            "timed-out"
        );
        assert_eq!(value["detectors"][1]["confusion"]["none"]["finalizer"], 1);
        insta::assert_snapshot!(json);
    }
}
