//! Running a diagnosis' remedy: its act steps, as argv, where they belong. Shared by
//! trials, `terminus remedy --apply` and drills, so all three run exactly what the
//! diagnosis printed.
//!
//! Architecture invariant: no remedy step goes through a shell. An act's argv is
//! executed as it is (docker exec on the node, or `env KUBECONFIG=… kubectl …` on the
//! control plane); a value taken from evidence stays one argument.
//! Architecture invariant: look steps and advice are never run.
//! Architecture invariant: every act is vetted against the evidence
//! ([`crate::detect::guard::vet`]) before any of them runs, and a pid is signalled only
//! after its start time on the node matches the one the evidence recorded; one refusal
//! and nothing runs.

use std::time::Duration;

use crate::detect::guard::{self, Precondition};
use crate::detect::{Diagnosis, StepPlace};
use crate::evidence::Evidence;
use crate::node::Node;

/// The act steps of a diagnosis' remedy, in order (look steps and advice are for the
/// reader and never run).
pub fn actions(diagnosis: &Diagnosis) -> Vec<(StepPlace, &[String])> {
    diagnosis.remedy.iter().filter_map(|s| s.action()).collect()
}

/// Runs the action commands of `diagnosis`' remedy (diagnostic steps are skipped):
/// kubectl in `control_plane` with its admin credentials, everything else in `node`.
/// Shared by trials, `terminus remedy --apply` and `terminus drill answer`.
pub async fn run_act_steps(
    diagnosis: &Diagnosis,
    evidence: &Evidence,
    node: &Node,
    control_plane: &Node,
    note: &(dyn Fn(String) + Sync),
) -> Result<(), String> {
    let actions = actions(diagnosis);
    if actions.is_empty() {
        return Err(format!(
            "the diagnosis ({}) has no command to run as its remedy",
            diagnosis.cause
        ));
    }
    let preconditions = vet_all(&actions, evidence)?;
    for ((place, argv), precondition) in actions.into_iter().zip(preconditions) {
        confirm(&precondition, node).await?;
        // kubectl runs where admin credentials are; everything else on the pod's node.
        // `env` sets the credentials without a shell: every argument stays one argument.
        let (on, exec): (&Node, Vec<&str>) = match place {
            StepPlace::Cluster => (
                control_plane,
                ["env", "KUBECONFIG=/etc/kubernetes/admin.conf"]
                    .into_iter()
                    .chain(argv.iter().map(String::as_str))
                    .collect(),
            ),
            StepPlace::Node => (node, argv.iter().map(String::as_str).collect()),
        };
        let shown = shell_words(argv);
        let out = on
            .exec_raw(&exec, Duration::from_secs(60))
            .await
            .map_err(|e| e.to_string())?;
        note(format!(
            "$ {shown} (on {}) -> exit {} {}",
            on.name,
            out.code,
            out.stderr.trim()
        ));
        if out.code != 0 {
            return Err(format!(
                "remedy command failed on {}: `{shown}` exited {}: {}",
                on.name,
                out.code,
                out.stderr.trim()
            ));
        }
    }
    Ok(())
}

/// Vets every act before any runs: one refusal and nothing runs.
pub fn vet_all(
    actions: &[(StepPlace, &[String])],
    evidence: &Evidence,
) -> Result<Vec<Precondition>, String> {
    actions
        .iter()
        .map(|(place, argv)| {
            guard::vet(*place, argv, evidence).map_err(|refusal| {
                format!(
                    "refused to run the remedy: `{}`: {refusal}; nothing was run",
                    shell_words(argv)
                )
            })
        })
        .collect()
}

/// Checks on the node what core could not: the process is still the one the evidence saw.
async fn confirm(precondition: &Precondition, node: &Node) -> Result<(), String> {
    let Precondition::ProcessStartedAt { pid, started } = precondition else {
        return Ok(());
    };
    let pid_arg = pid.to_string();
    let out = node
        .exec_raw(
            &["ps", "-o", "lstart=", "-p", &pid_arg],
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    let now = guard::normalise(&out.stdout);
    if out.code != 0 || now != *started {
        return Err(format!(
            "refused to signal pid {pid} on {}: the evidence saw it start at {started}, the node now shows {}",
            node.name,
            if now.is_empty() { "no such process".to_owned() } else { now }
        ));
    }
    Ok(())
}

/// `argv` quoted for a shell, for logs (what runs is the argv itself).
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shlex::try_quote(a).map_or_else(|_| format!("{a:?}"), |q| q.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}
