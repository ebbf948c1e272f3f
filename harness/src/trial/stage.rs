//! The phases a trial and a drill share: deploy the workload, induce the fault, delete
//! the pod and observe that it stays (or leaves debris, or churns).
//!
//! Architecture invariant: these phases create nothing that is not labelled with the
//! run (namespace and workload) and return the fault's [`Applied`] record to the caller
//! instead of keeping it: the caller owns the record and undoes it on every path.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;

use super::kill::{self, KillPoint};
use super::outcome::Stop;
use super::run::Timeline;
use crate::fault::{self, Applied, FaultContext};
use crate::node::Node;
use crate::probe::Target;
use crate::scenario::{FaultSpec, HoldVia, PodOutcome, Scenario, WorkloadKind};
use crate::wait::wait_for;
use crate::workload;

/// One workload on one node, from its deployment until it is observed stuck.
pub struct Stage<'a> {
    pub client: &'a Client,
    pub s: &'a Scenario,
    pub ns: String,
    pub node_name: String,
    pub node: Node,
    /// The agent ledger key of the node faults.
    pub ledger: String,
    /// The value of the `terminus.dev/run` label on everything created.
    pub run_label: String,
    pub timeline: &'a Timeline,
    pub pods: Api<Pod>,
    /// The pod's (or the DaemonSet's) name.
    pub workload: String,
}

impl<'a> Stage<'a> {
    /// Connects to the node; nothing is created yet.
    pub async fn connect(
        client: &'a Client,
        s: &'a Scenario,
        timeline: &'a Timeline,
        place: StagePlace,
    ) -> Result<Stage<'a>, Stop> {
        let node = Node::connect(&place.node_name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Stage {
            client,
            s,
            pods: Api::namespaced(client.clone(), &place.ns),
            ns: place.ns,
            node_name: place.node_name,
            node,
            ledger: place.ledger,
            run_label: place.run_label,
            timeline,
            workload: place.workload,
        })
    }
}

/// Where a stage runs and the names it uses.
pub struct StagePlace {
    pub ns: String,
    pub node_name: String,
    pub ledger: String,
    pub run_label: String,
    pub workload: String,
}

/// What observing the deletion found.
pub struct Observed {
    /// The pod to gather evidence on (for churn, the newest replacement).
    pub target: Target,
    /// Journal start time: journals from the stage's start only, since a shared node's
    /// log holds other trials' errors.
    pub since: String,
    pub time_to_stuck: Duration,
}

fn kube_err(what: &str) -> impl Fn(kube::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Deploy: the namespace and the workload, until the pod is Running on its node.
pub async fn deploy(st: &Stage<'_>) -> Result<Target, Stop> {
    let (client, s, ns, node_name) = (st.client, st.s, st.ns.as_str(), st.node_name.as_str());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &create_params(),
            &workload::namespace(ns, &st.run_label, &s.id),
        )
        .await
        .map_err(kube_err("creating the namespace"))?;
    // A busy control plane (a crowd makes six namespaces at once) may not have made the
    // service account yet, and a refused pod is no verdict on the scenario.
    crate::namespace::wait_service_account(client, ns, s.deadlines.ready).await?;
    let name = &st.workload;
    match s.workload.kind {
        WorkloadKind::Pod => {
            st.pods
                .create(
                    &create_params(),
                    &workload::pod(s, name, ns, node_name, &st.run_label),
                )
                .await
                .map_err(kube_err("creating the pod"))?;
        }
        WorkloadKind::Job => {
            let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
            jobs.create(
                &create_params(),
                &workload::job(s, name, ns, node_name, &st.run_label),
            )
            .await
            .map_err(kube_err("creating the job"))?;
        }
        WorkloadKind::DaemonSet => {
            let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            daemonsets
                .create(
                    &create_params(),
                    &workload::daemonset(s, name, ns, node_name, &st.run_label),
                )
                .await
                .map_err(kube_err("creating the daemonset"))?;
        }
    }
    let running = wait_running(st).await?;
    let target = Target {
        node: Some(node_name.to_owned()),
        ..Target::of(&running, ns)
    };
    st.timeline.note(
        "ready",
        format!(
            "pod {} Running (uid {})",
            target.pod,
            target.uid.as_deref().unwrap_or("?")
        ),
    );
    Ok(target)
}

/// Waits until the workload's pod runs every container; a timeout quotes the pod's last
/// phase and waiting reasons.
async fn wait_running(st: &Stage<'_>) -> Result<Pod, String> {
    let last_seen = std::sync::Mutex::new(String::from("no pod yet"));
    wait_for(
        &format!(
            "the {:?} workload to be Running on {}",
            st.s.workload.kind, st.node_name
        ),
        st.s.deadlines.ready,
        || {
            let pods = st.pods.clone();
            let last_seen = &last_seen;
            async move {
                let list = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(kube_err("listing pods"))?;
                if let Some(p) = list.items.first() {
                    if let Ok(mut seen) = last_seen.lock() {
                        *seen = describe_pod_state(p);
                    }
                }
                Ok(list.items.into_iter().find(all_running))
            }
        },
    )
    .await
    .map_err(|why| {
        format!(
            "{why}; last seen: {}",
            last_seen.lock().map(|s| s.clone()).unwrap_or_default()
        )
    })
}

fn all_running(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|st| st.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
            })
}

/// Induce: apply the fault. The caller records the returned [`Applied`] at once (the
/// trial in its recover slot, a drill in its state file), so whatever happens next
/// undoes exactly it.
pub async fn induce(st: &Stage<'_>, running: &Target) -> Result<Applied, Stop> {
    let s = st.s;
    let fault_target = Target {
        pod: if s.workload.kind == WorkloadKind::DaemonSet {
            st.workload.clone()
        } else {
            running.pod.clone()
        },
        ..running.clone()
    };
    let fault_cx = FaultContext {
        client: st.client,
        node: &st.node,
        ledger: &st.ledger,
        target: &fault_target,
        deadline: s.deadlines.fault,
    };
    let applied = tokio::time::timeout(s.deadlines.fault, fault::apply(&s.fault, &fault_cx))
        .await
        .map_err(|_| {
            format!(
                "applying the {} fault did not finish within {:?}",
                s.fault.kind(),
                s.deadlines.fault
            )
        })?
        .map_err(|e| format!("applying the {} fault: {e}", s.fault.kind()))?;
    st.timeline.note("fault", applied.describe());
    Ok(applied)
}

/// Observe: delete the pod and see the scenario's outcome (stays Terminating, goes away
/// leaving debris, or DaemonSet churn).
pub async fn observe(st: &Stage<'_>, running: Target, debris: &[String]) -> Result<Observed, Stop> {
    let s = st.s;
    let deleted_at = st.timeline.elapsed();
    let target = match s.workload.kind {
        // A Job's pod is deleted like a bare pod: the Job is what keeps its finalizer.
        WorkloadKind::Pod | WorkloadKind::Job => {
            st.pods
                .delete(&running.pod, &DeleteParams::default())
                .await
                .map_err(kube_err("deleting the pod"))?;
            st.timeline.note(
                "delete",
                format!(
                    "kubectl delete pod {} (grace {:?})",
                    running.pod, s.workload.grace_period
                ),
            );
            kill::reached(KillPoint::AfterDelete, &s.id, st.timeline);
            observe_pod(st, &running.pod).await?;
            running
        }
        WorkloadKind::DaemonSet => {
            let churning = observe_churn(st).await?;
            // A DaemonSet is never deleted: its pods being replaced is the deletion.
            kill::reached(KillPoint::AfterDelete, &s.id, st.timeline);
            churning
        }
    };
    // Journals from the trial's start only: a shared node's log holds other trials' errors.
    let since = (chrono::Utc::now()
        - chrono::Duration::from_std(st.timeline.elapsed()).unwrap_or_default()
        - chrono::Duration::seconds(2))
    .format("%Y-%m-%d %H:%M:%S UTC")
    .to_string();
    if s.observe.pod == PodOutcome::GoesAway && s.observe.node_left_unclean {
        let seen = match s.fault {
            // containerd's unmount succeeded: the leak is only in the holder's namespace.
            FaultSpec::HoldMount { via: HoldVia::Bind } => wait_leak_seen(st, debris).await,
            _ => wait_debris_reported(st, &since).await,
        };
        let line = seen.map_err(Stop::not_reproduced)?;
        st.timeline.note("unclean", line);
    }
    Ok(Observed {
        target,
        since,
        time_to_stuck: st.timeline.elapsed() - deleted_at,
    })
}

/// The pod is gone; the debris shows when containerd's garbage collector fails to
/// remove what the fault pinned.
async fn wait_debris_reported(st: &Stage<'_>, since: &str) -> Result<String, String> {
    let script = format!("journalctl -u containerd --since '{since}' --no-pager | grep -m1 'failed to remove directory' || true");
    wait_for(
        "containerd to report a directory it cannot remove",
        st.s.deadlines.stuck,
        || {
            let (node, script) = (st.node.clone(), script.clone());
            async move {
                let out = node
                    .exec(&["sh", "-c", &script], Duration::from_secs(20))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((!out.trim().is_empty()).then(|| out.trim().to_owned()))
            }
        },
    )
    .await
}

/// The pod is gone; its layer (the fault's debris) is still mounted in the bind
/// holder's mount namespace, and only there.
async fn wait_leak_seen(st: &Stage<'_>, debris: &[String]) -> Result<String, String> {
    let Some(layer) = debris.first() else {
        return Err("the bind holder's fault recorded no layer to look for".into());
    };
    let needle = format!("{layer}/");
    wait_for(
        &format!("{layer} to stay mounted in another mount namespace after the pod went away"),
        st.s.deadlines.stuck,
        || {
            let (node, needle) = (st.node.clone(), needle.clone());
            async move {
                let out = node
                    .agent(&["mountinfo", &needle], Duration::from_secs(20))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(out.lines().next().map(str::to_owned))
            }
        },
    )
    .await
}

/// A pod's phase and its containers' waiting reasons, for timeout messages.
fn describe_pod_state(p: &Pod) -> String {
    let status = p.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "no phase".into());
    let waiting: Vec<String> = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some(format!(
                "{}: {} {}",
                c.name,
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default()
            ))
        })
        .collect();
    format!(
        "pod {} {phase} {}",
        p.metadata.name.clone().unwrap_or_default(),
        waiting.join("; ")
    )
}

/// The pod must still be there, Terminating, after the scenario's hold time (or, for
/// `goes-away` scenarios, must go away).
async fn observe_pod(st: &Stage<'_>, name: &str) -> Result<(), Stop> {
    let (s, pods, timeline) = (st.s, &st.pods, st.timeline);
    match s.observe.pod {
        PodOutcome::GoesAway => {
            crate::wait::pod_deleted(st.client, &st.ns, name, s.deadlines.stuck)
                .await
                .map_err(|e| Stop::after_deletion(e, Stop::not_reproduced))?;
            timeline.note(
                "observe",
                format!("pod {name} went away, as expected; the node must show the debris"),
            );
            Ok(())
        }
        PodOutcome::StaysTerminating => {
            // Not a wait for a condition but a watch over a fixed span: the pod must be
            // there at every look until the hold ends (its end is the deadline).
            let until = tokio::time::Instant::now() + s.observe.hold;
            loop {
                match pods.get_opt(name).await.map_err(kube_err("reading the pod"))? {
                    None => return Err(Stop::not_reproduced(format!("the fault did not reproduce: pod {name} went away within {:?} of its deletion", s.observe.hold))),
                    Some(p) if p.metadata.deletion_timestamp.is_none() => return Err(Stop::not_reproduced(format!("pod {name} has no deletionTimestamp after the delete"))),
                    Some(_) => {}
                }
                if tokio::time::Instant::now() >= until {
                    timeline.note(
                        "stuck",
                        format!("pod {name} still Terminating after {:?}", s.observe.hold),
                    );
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// For DaemonSet churn: over the hold time, the DaemonSet must keep replacing its pod.
/// Returns the target to gather evidence on.
async fn observe_churn(st: &Stage<'_>) -> Result<Target, Stop> {
    let (s, pods, ds, timeline) = (st.s, &st.pods, st.workload.as_str(), st.timeline);
    let mut seen = std::collections::BTreeSet::new();
    let until = tokio::time::Instant::now() + s.observe.hold;
    while tokio::time::Instant::now() < until {
        for p in pods
            .list(&ListParams::default().labels(&format!("terminus.dev/ds={ds}")))
            .await
            .map_err(kube_err("listing pods"))?
            .items
        {
            seen.insert(p.metadata.name.clone().unwrap_or_default());
        }
        tokio::time::sleep(crate::wait::POLL).await;
    }
    if seen.len() < 3 {
        return Err(Stop::not_reproduced(format!("the fault did not reproduce: daemonset {ds} ran only {} pod(s) in {:?}, not an endless replacement", seen.len(), s.observe.hold)));
    }
    timeline.note(
        "stuck",
        format!(
            "daemonset {ds} replaced its pod {} times in {:?}",
            seen.len() - 1,
            s.observe.hold
        ),
    );
    // Evidence is taken on the newest pod: a replaced one is usually gone before the
    // probe reads it, and the churn shows in the owner's revisions either way.
    let mut current = pods
        .list(&ListParams::default().labels(&format!("terminus.dev/ds={ds}")))
        .await
        .map_err(kube_err("listing pods"))?
        .items;
    current.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let pod = current
        .pop()
        .ok_or_else(|| Stop::not_reproduced("no daemonset pod to gather evidence on"))?;
    Ok(Target::of(&pod, &st.ns))
}

/// Objects the harness creates carry its name as field manager, so an object's
/// managedFields say which writes were terminus's own.
fn create_params() -> PostParams {
    PostParams {
        field_manager: Some("terminus".into()),
        ..PostParams::default()
    }
}
