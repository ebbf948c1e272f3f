//! Rendering a [`Report`]: short human text for 3 a.m., and a stable JSON document
//! (schema `terminus/diagnosis/v1`, documented in docs/diagnose.md).

use std::fmt::Write;

use serde::Serialize;

use crate::detect::{Report, Verdict};
use crate::evidence::Evidence;

pub const JSON_SCHEMA: &str = "terminus/diagnosis/v1";

#[derive(Serialize)]
struct PodRef<'a> {
    namespace: &'a str,
    name: &'a str,
    node: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    bundle: Option<String>,
    pod: Option<PodRef<'a>>,
    #[serde(flatten)]
    report: &'a Report,
}

pub fn to_json(evidence: &Evidence, report: &Report) -> String {
    let doc = JsonReport {
        schema: JSON_SCHEMA,
        bundle: evidence.bundle.as_ref().map(|p| p.display().to_string()),
        pod: evidence.pod.as_ref().map(|p| PodRef {
            namespace: &p.namespace,
            name: &p.name,
            node: p.node.as_deref(),
        }),
        report,
    };
    serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize report: {e}\"}}"))
}

pub fn to_text(evidence: &Evidence, report: &Report) -> String {
    let mut out = body_text(evidence, report);
    if !report.problems.is_empty() {
        let _ = writeln!(out, "\ninput not read or not understood:");
        for p in &report.problems {
            let _ = writeln!(out, "  - {p}");
        }
    }
    out
}

fn body_text(evidence: &Evidence, report: &Report) -> String {
    let mut out = String::new();
    if let Some(p) = &evidence.pod {
        let _ = writeln!(
            out,
            "pod {}/{} on {}",
            p.namespace,
            p.name,
            p.node.as_deref().unwrap_or("an unknown node")
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "  {note}");
    }
    let _ = writeln!(out);
    let Some((first, rest)) = report.diagnoses.split_first() else {
        let _ = writeln!(
            out,
            "{}",
            match report.verdict {
                Verdict::NotTerminating => "NOT STUCK  the pod is not Terminating.",
                Verdict::TooEarly => "TOO EARLY  the pod is still within its grace period or just past it; look again shortly.",
                _ => "NO KNOWN CAUSE  the evidence supports none of the documented causes.",
            }
        );
        if !report.missing.is_empty() && report.verdict == Verdict::NoKnownCause {
            let _ = writeln!(out, "\nevidence that was not available:");
            for m in &report.missing {
                let _ = writeln!(out, "  - {m}");
            }
        }
        return out;
    };
    let _ = writeln!(
        out,
        "CAUSE  {} ({:.0}%): {}",
        first.cause,
        first.confidence * 100.0,
        first.title
    );
    let _ = writeln!(out, "       {}", first.summary);
    let _ = writeln!(out);
    proofs(&mut out, "PROOF", &first.evidence);
    let co = crate::detect::plan::co_causes(&report.diagnoses);
    for d in &co {
        let _ = writeln!(
            out,
            "\nALSO   {} ({:.0}%) holds the pod too: {}",
            d.cause,
            d.confidence * 100.0,
            d.summary
        );
        proofs(&mut out, "     ", &d.evidence);
    }
    let _ = writeln!(out);
    for (i, step) in report.plan.iter().enumerate() {
        let label = if i == 0 { "FIX  " } else { "     " };
        let _ = writeln!(out, "{label}  {}. {}", i + 1, step.description);
        if let Some(cmd) = &step.command {
            let _ = writeln!(out, "          $ {cmd}");
        }
    }
    let rest: Vec<_> = rest
        .iter()
        .filter(|d| !co.iter().any(|c| c.cause == d.cause))
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "also supported by evidence of its own:");
        for d in rest {
            let _ = writeln!(
                out,
                "  {} ({:.0}%): {}",
                d.cause,
                d.confidence * 100.0,
                d.summary
            );
        }
    }
    out
}

/// Quoted lines, each with what ties it to the pod on the line below; `label` heads
/// the first.
fn proofs(out: &mut String, label: &str, evidence: &[crate::detect::Proof]) {
    for (i, q) in evidence.iter().enumerate() {
        let label = if i == 0 { label } else { "     " };
        let _ = writeln!(out, "{label}  {}:{}  {}", q.source, q.line, q.text.trim());
        let _ = writeln!(out, "         ({})", q.tie);
    }
}
