//! Applying the remedy. terminus runs the commands its own diagnosis printed — the
//! real `chattr -i PATH`, `kill -CONT PID`, `kubectl patch ...` — so a trial proves the
//! remedy text an on-call engineer would copy is right. Diagnostic steps (du, ps, grep,
//! watches) are skipped. Three remedies have no single command the diagnosis can fill in and are
//! carried out by the harness: freeing the disk (removing the filler), rewriting a
//! DaemonSet from nodeAffinity to nodeSelector, and reinstalling a CNI plugin (putting
//! back the binary the fault moved aside). A lost node's remedy is the diagnosis' own
//! out-of-service taint; once the pod is gone the harness brings the node back (the
//! partition's undo), as an SRE would after replacing or repairing it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::kill::{self, KillPoint};
use super::run::Timeline;
use crate::detect::Diagnosis;
use crate::node::Node;
use crate::probe::Target;
use crate::scenario::{Remedy, Scenario};

/// What a trial's remedy needs besides the diagnosis: where kubectl runs and the ledger
/// the trial's fault was recorded under (the filler of disk-full is removed by it).
pub struct RemedyPlaces<'a> {
    pub client: &'a Client,
    /// The control-plane node: kubectl with admin credentials runs there.
    pub control_plane: &'a str,
    pub ledger: &'a str,
}

pub async fn apply(
    places: &RemedyPlaces<'_>,
    s: &Scenario,
    diagnosis: &Diagnosis,
    evidence: &crate::evidence::Evidence,
    node: &Node,
    target: &Target,
    timeline: &Timeline,
) -> Result<(), String> {
    match s.remedy {
        Remedy::FreeDisk => {
            let args = ["unfill", "--run", places.ledger];
            agent_remedy(
                node,
                &args,
                ("freeing the disk", "removed the filler"),
                s,
                timeline,
            )
            .await?;
            return Ok(());
        }
        Remedy::RestoreCniPlugin => {
            // What an SRE does is reinstall the plugin; the harness puts its own copy
            // back (the ledger's undo), and kubelet's retry must then clear the pod.
            let args = ["gc", "--run", places.ledger];
            let what = ("restoring the CNI plugin", "put the CNI plugin back");
            agent_remedy(node, &args, what, s, timeline).await?;
            return Ok(());
        }
        Remedy::UseNodeSelector => {
            use_node_selector(places.client, &target.namespace, s, timeline).await?;
            kill::reached(KillPoint::DuringRemedy, &s.id, timeline);
            return Ok(());
        }
        _ => {}
    }
    let control_plane = Node::connect(places.control_plane)
        .await
        .map_err(|e| e.to_string())?;
    crate::remedy::run_act_steps(diagnosis, evidence, node, &control_plane, &|line| {
        timeline.note("remedy", line);
        // After the first step's line: the remedy is under way, not finished.
        kill::reached(KillPoint::DuringRemedy, &s.id, timeline);
    })
    .await?;
    if s.remedy == Remedy::MarkOutOfService {
        // The taint lets Kubernetes force-delete the lost node's pod; only once it has
        // may the node come back, so what cleared the pod is the taint, not the node.
        crate::wait::pod_deleted(
            places.client,
            &target.namespace,
            &target.pod,
            s.deadlines.clear,
        )
        .await
        .map_err(|e| format!("after the out-of-service taint: {e}"))?;
        timeline.note(
            "remedy",
            format!("pod {} force-deleted by the taint", target.pod),
        );
        let args = ["gc", "--run", places.ledger];
        let what = (
            "bringing the node back",
            "the node reaches the API server again",
        );
        agent_remedy(node, &args, what, s, timeline).await?;
    }
    Ok(())
}

/// A remedy the harness carries out with one agent command on the node; `what` is
/// (the error's context, the timeline's words for what was done).
async fn agent_remedy(
    node: &Node,
    args: &[&str],
    what: (&str, &str),
    s: &Scenario,
    timeline: &Timeline,
) -> Result<(), String> {
    let out = node
        .agent(args, Duration::from_secs(60))
        .await
        .map_err(|e| format!("{}: {e}", what.0))?;
    timeline.note("remedy", format!("{}: {}", what.1, out.trim()));
    kill::reached(KillPoint::DuringRemedy, &s.id, timeline);
    Ok(())
}

/// The handbook's work-around: nodeSelector instead of nodeAffinity.
async fn use_node_selector(
    client: &Client,
    ns: &str,
    s: &Scenario,
    timeline: &Timeline,
) -> Result<(), String> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let list = daemonsets
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    for ds in list.items {
        let name = ds.metadata.name.clone().unwrap_or_default();
        let node = ds
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| {
                n.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .and_then(|r| r.node_selector_terms.first())
            .and_then(|t| t.match_expressions.as_ref())
            .and_then(|m| m.iter().find(|e| e.key == "kubernetes.io/hostname"))
            .and_then(|e| e.values.as_ref()?.first().cloned())
            .ok_or_else(|| {
                format!("daemonset {name} has no hostname affinity to turn into a nodeSelector")
            })?;
        let patch = json!({ "spec": { "template": { "spec": {
            "affinity": null,
            "nodeSelector": { "kubernetes.io/hostname": node }
        } } } });
        daemonsets
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| e.to_string())?;
        timeline.note("remedy", format!("daemonset {name}: nodeAffinity replaced by nodeSelector kubernetes.io/hostname={node} ({})", s.id));
    }
    Ok(())
}

/// After the nodeSelector remedy the DaemonSet must settle: one Running pod, none
/// Terminating, and no new revision for a few writer intervals.
pub async fn wait_churn_stopped(
    client: &Client,
    ns: &str,
    ds: &str,
    s: &Scenario,
    timeline: &Timeline,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    use crate::wait::{Check, WaitError};
    let quiet_for = Duration::from_secs(10);
    // (generation last seen, since when it has not changed), across polls.
    let quiet = std::sync::Mutex::new((None, tokio::time::Instant::now()));
    let what = format!("daemonset {ds} to settle after the remedy");
    let settled_generation = crate::wait::until(&what, s.deadlines.clear, || async {
        let generation = daemonsets
            .get(ds)
            .await
            .map_err(|e| e.to_string())?
            .metadata
            .generation;
        let quiet_since = {
            let mut q = quiet.lock().map_err(|e| e.to_string())?;
            if generation != q.0 {
                *q = (generation, tokio::time::Instant::now());
            }
            q.1
        };
        let list = pods
            .list(&ListParams::default().labels(&format!("terminus.dev/ds={ds}")))
            .await
            .map_err(|e| e.to_string())?;
        let settled = list.items.len() == 1
            && list.items.iter().all(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
        Ok::<_, String>(if settled && quiet_since.elapsed() >= quiet_for {
            Check::Done(generation)
        } else {
            Check::Pending(format!(
                "generation {generation:?}, {} pod(s)",
                list.items.len()
            ))
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => t.to_string(),
        WaitError::Check(e) => e,
    })?;
    timeline.note(
        "cleared",
        format!(
            "daemonset {ds} settled: generation {settled_generation:?} unchanged for {quiet_for:?}, one pod Running"
        ),
    );
    Ok(())
}
