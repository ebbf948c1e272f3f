//! A run: its id (the label on everything it creates) and its artefact directory
//! `target/terminus/<run-id>/`, with per-trial bundles and timelines, a JUnit report and
//! a summary table.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

pub struct Run {
    pub id: String,
    pub dir: PathBuf,
}

impl Run {
    /// `r<UTC time>-<4 hex>`: sortable, unique enough per machine, short enough for
    /// namespace names.
    pub fn new(artefacts_root: &Path) -> std::io::Result<Run> {
        let id = format!(
            "r{}-{:04x}",
            chrono::Utc::now().format("%m%d%H%M%S"),
            rand::random::<u16>()
        );
        let dir = artefacts_root.join(&id);
        std::fs::create_dir_all(&dir)?;
        Ok(Run { id, dir })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Seconds since the trial started.
    pub at: f64,
    pub phase: String,
    pub seen: String,
}

/// What happened when, for the trial's artefacts and for failure messages.
pub struct Timeline {
    start: Instant,
    entries: Mutex<Vec<TimelineEntry>>,
    echo: bool,
    /// Printed before each echoed line: trials running at once (a crowd) interleave.
    label: String,
}

impl Timeline {
    pub fn new(echo: bool) -> Timeline {
        Timeline::labelled(echo, "")
    }

    /// A timeline whose echoed lines begin with `label` (the scenario id).
    pub fn labelled(echo: bool, label: &str) -> Timeline {
        Timeline {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
            echo,
            label: label.to_owned(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn note(&self, phase: &str, seen: impl Into<String>) {
        let entry = TimelineEntry {
            at: self.start.elapsed().as_secs_f64(),
            phase: phase.to_owned(),
            seen: seen.into(),
        };
        if self.echo {
            tracing::info!(
                "  {}[{:>6.1}s] {:<8} {}",
                if self.label.is_empty() {
                    String::new()
                } else {
                    format!("{} ", self.label)
                },
                entry.at,
                entry.phase,
                entry.seen
            );
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(entry);
        }
    }

    pub fn entries(&self) -> Vec<TimelineEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }

    pub fn render(&self) -> String {
        self.entries()
            .iter()
            .map(|e| format!("{:>7.1}s  {:<8} {}\n", e.at, e.phase, e.seen))
            .collect()
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("timeline.txt"), self.render())?;
        std::fs::write(
            dir.join("timeline.json"),
            serde_json::to_string_pretty(&self.entries()).unwrap_or_default(),
        )
    }
}
