//! Every evidence bundle under `fixtures/` is diagnosed and must name the cause in its
//! `expected-cause` file (`none` for bundles where nothing is wrong). The rendered
//! report is snapshotted, so a change in wording or ranking shows up in review.
//! `fixtures/cells/<cell>/` holds the bundles of each version cell's cluster-tier run
//! (`ci/matrix --capture`): the same rules on every cell's kubelet and containerd text.

use std::path::{Path, PathBuf};

use terminus_core::detect::diagnose;
use terminus_core::evidence::Evidence;
use terminus_core::report;

fn bundles() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for group in ["seed", "bundles", "negative", "kind", "crowded"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("expected-cause").is_file() {
                out.push(e.path());
            }
        }
    }
    for cell in std::fs::read_dir(root.join("cells"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(cell.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().join("expected-cause").is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The version cell of a bundle under `fixtures/cells/<cell>/`, if it is one.
fn cell_of(dir: &Path) -> Option<String> {
    let parent = dir.parent()?;
    let grand = parent.parent()?;
    (grand.file_name()? == "cells").then(|| parent.file_name()?.to_str().map(str::to_owned))?
}

/// The causes of the other members of a crowded capture's crowd.
fn crowd_causes(dir: &Path) -> Vec<String> {
    let Some(group) = dir.parent() else {
        return Vec::new();
    };
    std::fs::read_dir(group)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path() != dir)
        .filter_map(|e| std::fs::read_to_string(e.path().join("expected-cause")).ok())
        .map(|c| c.trim().to_owned())
        .collect()
}

#[test]
fn every_bundle_is_diagnosed_as_expected() {
    let bundles = bundles();
    assert!(
        bundles.len() >= 18,
        "expected the fixture bundles, found {}",
        bundles.len()
    );
    let mut failures = Vec::new();
    for dir in &bundles {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        let expected = std::fs::read_to_string(dir.join("expected-cause"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let evidence = Evidence::load(dir);
        let result = diagnose(&evidence);
        let got = result
            .diagnoses
            .first()
            .map(|d| d.cause.as_str())
            .unwrap_or("none");
        if got != expected {
            failures.push(format!(
                "{name}: expected {expected}, diagnosed {got}\n{}",
                report::to_text(&evidence, &result)
            ));
            continue;
        }
        // A crowded capture with its pod: no neighbour's cause may be reported beside
        // its own (a gone pod's diagnosis is the node's, which holds them honestly).
        let group = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|g| g.to_str());
        if group == Some("crowded") && evidence.pod.is_some() {
            let neighbours = crowd_causes(dir);
            for d in &result.diagnoses {
                let c = d.cause.as_str();
                if c != expected && neighbours.iter().any(|n| n == c) {
                    failures.push(format!(
                        "{name}: reports its neighbour's cause {c} ({:.2})",
                        d.confidence
                    ));
                }
            }
        }
        if let Some(first) = result.diagnoses.first() {
            // The proof is verbatim input and the remedy runnable: no placeholders left.
            for q in &first.evidence {
                let source = std::fs::read_to_string(dir.join(&q.source)).unwrap_or_default();
                if !source.lines().any(|l| l.trim_end() == q.text) {
                    failures.push(format!(
                        "{name}: quoted line is not in {}: {}",
                        q.source, q.text
                    ));
                }
            }
            for step in &first.remedy {
                if let Some(cmd) = &step.command {
                    if cmd.contains('<') && cmd.contains('>') && !cmd.contains("2>/dev/null") {
                        failures.push(format!("{name}: remedy still has a placeholder: {cmd}"));
                    }
                }
            }
        }
        let mut settings = insta::Settings::clone_current();
        // Crowded captures share their scenario names with the quiet kind captures.
        let in_crowd = dir
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|g| g == "crowded");
        settings.set_snapshot_suffix(if let Some(cell) = cell_of(dir) {
            format!("cell-{cell}-{name}")
        } else if in_crowd {
            format!("crowded-{name}")
        } else {
            name.clone()
        });
        settings.set_prepend_module_to_snapshot(false);
        // Ids and times differ between captures of the same fault; the snapshot is about
        // what the report says, so they are redacted (the assertions above check them).
        settings.add_filter(r"\b[0-9a-f]{64}\b", "[ID]");
        settings.add_filter(
            r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
            "[UID]",
        );
        settings.add_filter(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?",
            "[TIME]",
        );
        settings.add_filter(
            r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d+ \d{2}:\d{2}:\d{2}( \d{4})?",
            "[TIME]",
        );
        settings.add_filter(r"r\d{10}-[0-9a-f]{4}", "[RUN]");
        settings.bind(|| insta::assert_snapshot!("report", report::to_text(&evidence, &result)));
    }
    assert!(
        failures.is_empty(),
        "{} bundle(s) misdiagnosed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
