//! The version matrix's table: scenario × cell → pass / fail / skipped, from each cell's
//! JUnit file (what `ci/matrix` collected under `target/terminus/matrix/<cell>/`).
//!
//! Architecture invariant: pure after reading — [`Matrix::from_junit`] parses text,
//! [`Matrix::render`] formats it; a cell whose JUnit cannot be read is a column of
//! errors naming the file, not a panic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{Report, TestCaseStatus};

/// One cell of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skipped(String),
}

/// One column: a cell's run.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub cell: String,
    /// Scenario name → verdict and the trial's time.
    pub trials: BTreeMap<String, (Verdict, Option<Duration>)>,
    /// The cell's suite wall time, when `ci/matrix` measured it.
    pub wall: Option<Duration>,
    /// Why the column is empty (no JUnit, unreadable JUnit).
    pub broken: Option<String>,
}

impl Column {
    /// A column from a cell's JUnit text; `source` names the file in errors.
    pub fn from_junit(cell: &str, source: &str, xml: &str, wall: Option<Duration>) -> Column {
        let mut column = Column {
            cell: cell.to_owned(),
            trials: BTreeMap::new(),
            wall,
            broken: None,
        };
        let report = match Report::deserialize_from_str(xml) {
            Ok(r) => r,
            Err(e) => {
                column.broken = Some(format!("{source}: {e}"));
                return column;
            }
        };
        for suite in &report.test_suites {
            for case in &suite.test_cases {
                let verdict = match &case.status {
                    TestCaseStatus::Success { .. } => Verdict::Pass,
                    TestCaseStatus::Skipped { message, .. } => {
                        Verdict::Skipped(message.as_deref().unwrap_or("skipped").to_owned())
                    }
                    TestCaseStatus::NonSuccess { message, .. } => {
                        Verdict::Fail(message.as_deref().unwrap_or("failed").to_owned())
                    }
                };
                column
                    .trials
                    .insert(case.name.as_str().to_owned(), (verdict, case.time));
            }
        }
        column
    }

    /// A column for a cell whose run left no JUnit file.
    pub fn missing(cell: &str, why: String, wall: Option<Duration>) -> Column {
        Column {
            cell: cell.to_owned(),
            trials: BTreeMap::new(),
            wall,
            broken: Some(why),
        }
    }
}

/// The whole table.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub columns: Vec<Column>,
}

impl Matrix {
    /// True when no trial failed and no column is broken (skips are fine).
    pub fn passed(&self) -> bool {
        self.columns.iter().all(|c| {
            c.broken.is_none()
                && c.trials
                    .values()
                    .all(|(v, _)| !matches!(v, Verdict::Fail(_)))
        })
    }

    /// The table, then one numbered note per skip reason and failure message.
    pub fn render(&self) -> String {
        let mut rows: Vec<&str> = self
            .columns
            .iter()
            .flat_map(|c| c.trials.keys().map(String::as_str))
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let mut notes: Vec<String> = Vec::new();
        let mut note = |text: &str| -> usize {
            match notes.iter().position(|n| n == text) {
                Some(i) => i + 1,
                None => {
                    notes.push(text.to_owned());
                    notes.len()
                }
            }
        };
        let secs =
            |d: &Option<Duration>| d.map_or(String::new(), |d| format!(" {:.0}s", d.as_secs_f64()));
        let mut grid: Vec<Vec<String>> = Vec::new();
        let mut header = vec!["scenario".to_owned()];
        header.extend(self.columns.iter().map(|c| c.cell.clone()));
        grid.push(header);
        for row in &rows {
            let mut line = vec![(*row).to_owned()];
            for c in &self.columns {
                line.push(match (&c.broken, c.trials.get(*row)) {
                    (Some(why), _) => format!("error [{}]", note(why)),
                    (None, None) => "-".to_owned(),
                    (None, Some((Verdict::Pass, t))) => format!("pass{}", secs(t)),
                    (None, Some((Verdict::Fail(m), t))) => format!("FAIL{} [{}]", secs(t), note(m)),
                    (None, Some((Verdict::Skipped(m), _))) => format!("skipped [{}]", note(m)),
                });
            }
            grid.push(line);
        }
        if self.columns.iter().any(|c| c.broken.is_some()) && rows.is_empty() {
            let mut line = vec!["(no trials)".to_owned()];
            for c in &self.columns {
                line.push(match &c.broken {
                    Some(why) => format!("error [{}]", note(why)),
                    None => "-".to_owned(),
                });
            }
            grid.push(line);
        }
        let mut wall = vec!["suite wall time".to_owned()];
        wall.extend(self.columns.iter().map(|c| secs(&c.wall).trim().to_owned()));
        grid.push(wall);
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for r in &grid {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {}", i + 1, n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="terminus r1" tests="3" failures="1" errors="0">
  <testsuite name="scenarios" tests="3" disabled="0" errors="0" failures="1">
    <testcase name="scenarios/disk-full.yaml" time="41.5"/>
    <testcase name="scenarios/runtime-desync.yaml" time="12">
      <skipped message="requires.containerd &quot;&lt;2&quot; but the node runs containerd 2.1.9"/>
    </testcase>
    <testcase name="scenarios/mount-held.yaml" time="60">
      <failure message="wrong verdict: expected mount-held"/>
    </testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn table_from_junit() {
        let a = Column::from_junit(
            "k1.37-cd2.1",
            "a/junit.xml",
            JUNIT,
            Some(Duration::from_secs(300)),
        );
        let b = Column::missing(
            "k1.30-cd1.6",
            "no junit.xml in b (the run did not finish)".into(),
            None,
        );
        let m = Matrix {
            columns: vec![a.clone(), b],
        };
        let text = m.render();
        assert!(!m.passed());
        assert!(text.contains("scenarios/disk-full.yaml"), "{text}");
        assert!(
            text.contains("pass 42s") || text.contains("pass 41s"),
            "{text}"
        );
        assert!(text.contains("skipped [3]"), "{text}");
        assert!(
            text.contains(r#"[3] requires.containerd "<2" but the node runs containerd 2.1.9"#),
            "{text}"
        );
        assert!(text.contains("FAIL 60s [2]"), "{text}");
        assert!(
            text.contains("error [1]") && text.contains("[1] no junit.xml in b"),
            "{text}"
        );
        assert!(text.contains("suite wall time"), "{text}");
        let only_a = Matrix {
            columns: vec![Column {
                trials: a
                    .trials
                    .into_iter()
                    .filter(|(k, _)| !k.contains("mount"))
                    .collect(),
                ..a
            }],
        };
        assert!(only_a.passed(), "skips do not fail the matrix");
    }

    #[test]
    fn unreadable_junit_names_the_file() {
        let c = Column::from_junit("x", "m/x/junit.xml", "<testsuites", None);
        assert!(c
            .broken
            .as_deref()
            .is_some_and(|b| b.starts_with("m/x/junit.xml: ")));
        assert!(!Matrix { columns: vec![c] }.passed());
    }
}
