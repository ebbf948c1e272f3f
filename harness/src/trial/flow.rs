//! One trial, as a sequence of phases with deadlines:
//!
//! namespace → workload Running → fault applied → pod deleted → pod still Terminating
//! after `observe.for` → evidence bundle → every detector asked → remedy → pod gone and
//! node clean → fault recovered → namespace deleted.
//!
//! The recover runs whatever happens after the fault was applied: a failed assertion,
//! a timeout, or a panic (caught here); Ctrl-C is handled by the caller, which owns the
//! process and calls [`recover_all`] on the faults still registered.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde::Serialize;

use super::clean;
use super::remedy;
use super::run::{Run, Timeline};
use crate::cause::CauseId;
use crate::detectors::{Detector, DetectorContext};
use crate::fault::{self, Applied, FaultContext};
use crate::node::Node;
use crate::probe::{self, Target};
use crate::scenario::{NodeUse, PodOutcome, Scenario, WorkloadKind};
use crate::wait::wait_for;
use crate::workload;

/// What every trial of a run shares.
pub struct TrialEnv {
    pub run: Arc<Run>,
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// Worker for trials that share a node.
    pub shared_node: String,
    /// Worker for trials that disrupt a whole node; they take `dedicated_lock` first.
    pub dedicated_node: String,
    pub dedicated_lock: tokio::sync::Mutex<()>,
    /// The control-plane node: kubectl with admin credentials runs there.
    pub control_plane: String,
    pub detectors: Vec<Detector>,
    pub echo: bool,
}

/// The result of one trial, for the summary table, JUnit and the scorecard.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRecord {
    pub scenario: String,
    pub expected: CauseId,
    /// (detector, reported cause or "none" or "error: ...").
    pub reported: Vec<(String, String)>,
    /// What each detector answered, for the scorecard.
    #[serde(skip)]
    pub outcomes: Vec<(String, crate::scorecard::Outcome)>,
    pub time_to_stuck: Option<f64>,
    pub time_to_detect: Option<f64>,
    pub time_to_clear: Option<f64>,
    pub total: f64,
    /// None when the trial passed; otherwise why it failed.
    pub failure: Option<String>,
    pub artefacts: PathBuf,
}

type Fail = String;

fn kube_err(what: &str) -> impl Fn(kube::Error) -> Fail + '_ {
    move |e| format!("{what}: {e}")
}

pub async fn run_trial(env: &TrialEnv, s: &Scenario) -> TrialRecord {
    let timeline = Timeline::new(env.echo);
    let dir = env.run.dir.join(&s.id);
    let mut record = TrialRecord {
        scenario: s.id.clone(),
        expected: s.cause,
        reported: Vec::new(),
        outcomes: Vec::new(),
        time_to_stuck: None,
        time_to_detect: None,
        time_to_clear: None,
        total: 0.0,
        failure: None,
        artefacts: dir.clone(),
    };
    let _dedicated = match s.requires.node {
        NodeUse::Dedicated => Some(env.dedicated_lock.lock().await),
        NodeUse::Shared => None,
    };
    let node_name = match s.requires.node {
        NodeUse::Dedicated => env.dedicated_node.clone(),
        NodeUse::Shared => env.shared_node.clone(),
    };
    // Namespaces are unique per run: a stuck namespace of a killed run never blocks a new one.
    let ns = format!("{}-{}", s.id, env.run.id);
    let ns = ns[..ns.len().min(63)].trim_end_matches('-').to_owned();
    let ledger = format!("{}-{}", env.run.id, s.id);
    timeline.note(
        "start",
        format!("scenario {} on node {node_name}, namespace {ns}", s.id),
    );

    let applied: Arc<tokio::sync::Mutex<Option<Applied>>> = Arc::new(tokio::sync::Mutex::new(None));
    let outcome = std::panic::AssertUnwindSafe(phases(
        env,
        s,
        &ns,
        &node_name,
        &ledger,
        &timeline,
        &mut record,
        applied.clone(),
    ))
    .catch_unwind()
    .await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(panic) => Some(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    if let Some(why) = &failure {
        timeline.note("failed", why.clone());
    }

    // Recover on every path, then prove the node is clean after it.
    let mut leftovers = Vec::new();
    if let Some(applied) = applied.lock().await.take() {
        let what = applied.describe();
        match tokio::time::timeout(s.deadlines.recover, fault::recover(&env.client, applied)).await
        {
            Ok(Ok(msg)) => timeline.note("recover", msg),
            Ok(Err(e)) => leftovers.push(format!("recovering {what} failed: {e}")),
            Err(_) => leftovers.push(format!(
                "recovering {what} did not finish within {:?}",
                s.deadlines.recover
            )),
        }
    }
    if let Err(e) = crate::namespace::delete(&env.client, &ns, s.deadlines.recover).await {
        leftovers.push(e);
    } else {
        timeline.note("cleanup", format!("namespace {ns} deleted"));
    }
    record.failure = match (failure, leftovers.is_empty()) {
        (None, true) => None,
        (None, false) => Some(format!("left behind: {}", leftovers.join("; "))),
        (Some(why), true) => Some(why),
        (Some(why), false) => Some(format!("{why}; also left behind: {}", leftovers.join("; "))),
    };
    record.total = timeline.elapsed().as_secs_f64();
    timeline.note(
        "end",
        if record.failure.is_none() {
            "passed".to_owned()
        } else {
            "failed".to_owned()
        },
    );
    let _ = timeline.write(&dir);
    let _ = std::fs::write(
        dir.join("record.json"),
        serde_json::to_string_pretty(&record).unwrap_or_default(),
    );
    record
}

#[allow(clippy::too_many_arguments)]
async fn phases(
    env: &TrialEnv,
    s: &Scenario,
    ns: &str,
    node_name: &str,
    ledger: &str,
    timeline: &Timeline,
    record: &mut TrialRecord,
    applied_slot: Arc<tokio::sync::Mutex<Option<Applied>>>,
) -> Result<(), Fail> {
    let client = &env.client;
    let node = Node::connect(node_name).await.map_err(|e| e.to_string())?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &create_params(),
            &workload::namespace(ns, &env.run.id, &s.id),
        )
        .await
        .map_err(kube_err("creating the namespace"))?;

    // --- workload
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let name = "victim".to_owned();
    match s.workload.kind {
        WorkloadKind::Pod => {
            pods.create(
                &create_params(),
                &workload::pod(s, &name, ns, node_name, &env.run.id),
            )
            .await
            .map_err(kube_err("creating the pod"))?;
        }
        WorkloadKind::DaemonSet => {
            let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            daemonsets
                .create(
                    &create_params(),
                    &workload::daemonset(s, &name, ns, node_name, &env.run.id),
                )
                .await
                .map_err(kube_err("creating the daemonset"))?;
        }
    }
    let last_seen = std::sync::Mutex::new(String::from("no pod yet"));
    let running = wait_for(
        &format!(
            "the {:?} workload to be Running on {node_name}",
            s.workload.kind
        ),
        s.deadlines.ready,
        || {
            let pods = pods.clone();
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
                Ok(list.items.into_iter().find(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|st| st.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().all(|c| {
                                    c.state.as_ref().is_some_and(|st| st.running.is_some())
                                })
                            })
                }))
            }
        },
    )
    .await
    .map_err(|why| {
        format!(
            "{why}; last seen: {}",
            last_seen.lock().map(|s| s.clone()).unwrap_or_default()
        )
    })?;
    let pod_name = running.metadata.name.clone().unwrap_or_default();
    let mut target = Target {
        namespace: ns.to_owned(),
        pod: pod_name.clone(),
        uid: running.metadata.uid.clone(),
        node: Some(node_name.to_owned()),
        container_ids: crate::pods::container_ids(&running),
    };
    timeline.note(
        "ready",
        format!(
            "pod {pod_name} Running (uid {})",
            target.uid.as_deref().unwrap_or("?")
        ),
    );

    // --- fault
    let fault_target = Target {
        pod: if s.workload.kind == WorkloadKind::DaemonSet {
            name.clone()
        } else {
            pod_name.clone()
        },
        ..target.clone()
    };
    let cx = FaultContext {
        client,
        node: &node,
        ledger,
        target: &fault_target,
        deadline: s.deadlines.fault,
    };
    let applied = tokio::time::timeout(s.deadlines.fault, fault::apply(&s.fault, &cx))
        .await
        .map_err(|_| {
            format!(
                "applying the {} fault did not finish within {:?}",
                s.fault.kind(),
                s.deadlines.fault
            )
        })?
        .map_err(|e| format!("applying the {} fault: {e}", s.fault.kind()))?;
    timeline.note("fault", applied.describe());
    let debris = applied.debris();
    *applied_slot.lock().await = Some(applied);

    // --- delete and observe
    let deleted_at = timeline.elapsed();
    match s.workload.kind {
        WorkloadKind::Pod => {
            pods.delete(&pod_name, &DeleteParams::default())
                .await
                .map_err(kube_err("deleting the pod"))?;
            timeline.note(
                "delete",
                format!(
                    "kubectl delete pod {pod_name} (grace {:?})",
                    s.workload.grace_period
                ),
            );
            observe_pod(s, &pods, &pod_name, timeline).await?;
        }
        WorkloadKind::DaemonSet => {
            target = observe_churn(s, client, ns, &name, timeline).await?;
        }
    }
    // Journals from the trial's start only: a shared node's log holds other trials' errors.
    let since = (chrono::Utc::now()
        - chrono::Duration::from_std(timeline.elapsed()).unwrap_or_default()
        - chrono::Duration::seconds(2))
    .format("%Y-%m-%d %H:%M:%S UTC")
    .to_string();
    if s.observe.pod == PodOutcome::GoesAway && s.observe.node_left_unclean {
        // The pod is gone; the debris shows when containerd's garbage collector fails
        // to remove what the fault pinned.
        let script = format!("journalctl -u containerd --since '{since}' --no-pager | grep -m1 'failed to remove directory' || true");
        let line = wait_for(
            "containerd to report a directory it cannot remove",
            s.deadlines.stuck,
            || {
                let (node, script) = (node.clone(), script.clone());
                async move {
                    let out = node
                        .exec(&["sh", "-c", &script], Duration::from_secs(20))
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok((!out.trim().is_empty()).then(|| out.trim().to_owned()))
                }
            },
        )
        .await?;
        timeline.note("unclean", line);
    }
    record.time_to_stuck = Some((timeline.elapsed() - deleted_at).as_secs_f64());

    // --- evidence and detection
    let detect_started = timeline.elapsed();
    let bundle = record.artefacts.join("bundle");

    tokio::time::timeout(
        s.deadlines.detect,
        probe::collect(client, Some(&node), &target, &bundle, &since),
    )
    .await
    .map_err(|_| {
        format!(
            "gathering evidence did not finish within {:?}",
            s.deadlines.detect
        )
    })?
    .map_err(|e| format!("gathering evidence: {e}"))?;
    std::fs::write(bundle.join("expected-cause"), format!("{}\n", s.cause))
        .map_err(|e| e.to_string())?;
    let context = DetectorContext {
        timeout: s.deadlines.detect,
        ..DetectorContext::default()
    }
    .with_cluster(
        &env.kubeconfig.display().to_string(),
        ns,
        &target.pod,
        Some(node_name),
    );
    let mut wrong = Vec::new();
    for detector in &env.detectors {
        let detector = detector.clone();
        let (b, c) = (bundle.clone(), context.clone());
        let (name, answer) =
            tokio::task::spawn_blocking(move || (detector.name().to_owned(), detector.run(&b, &c)))
                .await
                .map_err(|e| format!("detector task: {e}"))?;
        record.outcomes.push((name.clone(), answer.clone().into()));
        match answer {
            Ok(a) => {
                let got = a
                    .cause
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into());
                timeline.note("detect", format!("{name}: {got}"));
                if a.cause != Some(s.cause) {
                    wrong.push(format!(
                        "detector {name}: expected {}, reported {got}",
                        s.cause
                    ));
                }
                record.reported.push((name, got));
            }
            Err(failure) => {
                timeline.note("detect", format!("{name} failed: {failure}"));
                wrong.push(format!("detector {name} failed: {failure}"));
                record.reported.push((name, format!("error: {failure}")));
            }
        }
    }
    record.time_to_detect = Some((timeline.elapsed() - detect_started).as_secs_f64());
    let evidence = crate::evidence::Evidence::load(&bundle);
    let diagnosis = crate::detect::diagnose(&evidence);
    std::fs::write(
        record.artefacts.join("report.txt"),
        crate::report::to_text(&evidence, &diagnosis),
    )
    .map_err(|e| e.to_string())?;
    if !wrong.is_empty() {
        return Err(format!(
            "{} (bundle: {})",
            wrong.join("; "),
            bundle.display()
        ));
    }

    // --- remedy, then the pod must go and the node must be clean
    let first = diagnosis
        .diagnoses
        .first()
        .ok_or("the built-in detector found nothing to remedy")?;
    let remedy_started = timeline.elapsed();
    remedy::apply(
        &remedy::RemedyPlaces {
            client: &env.client,
            control_plane: &env.control_plane,
            ledger,
        },
        s,
        first,
        &node,
        &target,
        timeline,
    )
    .await?;
    match s.workload.kind {
        WorkloadKind::Pod => {
            wait_for(
                &format!("pod {pod_name} to be gone after the remedy"),
                s.deadlines.clear,
                || {
                    let pods = pods.clone();
                    let pod_name = pod_name.clone();
                    async move {
                        Ok(pods
                            .get_opt(&pod_name)
                            .await
                            .map_err(kube_err("reading the pod"))?
                            .is_none()
                            .then_some(()))
                    }
                },
            )
            .await?;
            timeline.note("cleared", format!("pod {pod_name} is gone"));
        }
        WorkloadKind::DaemonSet => {
            remedy::wait_churn_stopped(client, ns, &name, s, timeline).await?;
        }
    }
    // The last leftovers seen, for the timeout message: a fresh check after the
    // deadline could pass and hide what was there.
    let last_left = std::sync::Mutex::new(Vec::new());
    let leftovers = wait_for("the node to be clean", s.deadlines.clear, || {
        let (node, target, debris, last_left) =
            (node.clone(), target.clone(), debris.clone(), &last_left);
        async move {
            let left = clean::leftovers(&node, &target, &debris).await;
            let clean = left.is_empty();
            if let Ok(mut last) = last_left.lock() {
                *last = left;
            }
            Ok(clean.then_some(()))
        }
    })
    .await;
    if let Err(why) = leftovers {
        let left = last_left.lock().map(|l| l.join("; ")).unwrap_or_default();
        return Err(format!("{why}; still there: {left}"));
    }
    record.time_to_clear = Some((timeline.elapsed() - remedy_started).as_secs_f64());
    timeline.note(
        "clean",
        format!("node {node_name} has nothing left of the pod"),
    );
    Ok(())
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
async fn observe_pod(
    s: &Scenario,
    pods: &Api<Pod>,
    name: &str,
    timeline: &Timeline,
) -> Result<(), Fail> {
    match s.observe.pod {
        PodOutcome::GoesAway => {
            wait_for(
                &format!("pod {name} to go away (this scenario's pod is not held)"),
                s.deadlines.stuck,
                || {
                    let pods = pods.clone();
                    let name = name.to_owned();
                    async move {
                        Ok(pods
                            .get_opt(&name)
                            .await
                            .map_err(kube_err("reading the pod"))?
                            .is_none()
                            .then_some(()))
                    }
                },
            )
            .await?;
            timeline.note(
                "observe",
                format!("pod {name} went away, as expected; the node must show the debris"),
            );
            Ok(())
        }
        PodOutcome::StaysTerminating => {
            let until = tokio::time::Instant::now() + s.observe.hold;
            loop {
                match pods.get_opt(name).await.map_err(kube_err("reading the pod"))? {
                    None => return Err(format!("the fault did not reproduce: pod {name} went away within {:?} of its deletion", s.observe.hold)),
                    Some(p) if p.metadata.deletion_timestamp.is_none() => return Err(format!("pod {name} has no deletionTimestamp after the delete")),
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
async fn observe_churn(
    s: &Scenario,
    client: &Client,
    ns: &str,
    ds: &str,
    timeline: &Timeline,
) -> Result<Target, Fail> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
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
        return Err(format!("the fault did not reproduce: daemonset {ds} ran only {} pod(s) in {:?}, not an endless replacement", seen.len(), s.observe.hold));
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
        .ok_or("no daemonset pod to gather evidence on")?;
    Ok(Target {
        namespace: ns.to_owned(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        container_ids: crate::pods::container_ids(&pod),
    })
}

/// Objects the harness creates carry its name as field manager, so an object's
/// managedFields say which writes were terminus's own.
fn create_params() -> PostParams {
    PostParams {
        field_manager: Some("terminus".into()),
        ..PostParams::default()
    }
}
