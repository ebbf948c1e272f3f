//! One trial, as a sequence of phases with deadlines:
//!
//! namespace → workload Running → fault applied → pod deleted → pod still Terminating
//! after `observe.for` → evidence bundle → every detector asked → remedy → pod gone and
//! node clean → fault recovered → namespace deleted.
//!
//! Each phase is a function over one [`TrialCx`]: deploy, induce, observe, detect,
//! remedy, verify; then recover. A phase stops the trial with a typed [`Stop`]: a verdict
//! ([`Outcome`]) or a harness error.
//!
//! Architecture invariant: recover runs whatever happens after the fault was applied: a
//! failed assertion, a timeout, or a panic (caught here). Ctrl-C is handled by the caller
//! (the suite), which owns the process and runs the agent's gc for the run.

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
use super::outcome::{HarnessError, Outcome, Stop, TrialResult};
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
    /// How the trial ended: a verdict, or a harness error.
    pub result: TrialResult,
    /// None when the trial passed (or was skipped); otherwise why not, for the console.
    pub failure: Option<String>,
    pub artefacts: PathBuf,
}

impl TrialRecord {
    fn new(s: &Scenario, artefacts: PathBuf) -> TrialRecord {
        TrialRecord {
            scenario: s.id.clone(),
            expected: s.cause,
            reported: Vec::new(),
            outcomes: Vec::new(),
            time_to_stuck: None,
            time_to_detect: None,
            time_to_clear: None,
            total: 0.0,
            result: TrialResult::Outcome(Outcome::Passed),
            failure: None,
            artefacts,
        }
    }
}

fn kube_err(what: &str) -> impl Fn(kube::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The applied fault, shared with the recover that runs after the phases whatever
/// happened in them (including a panic).
type AppliedSlot = Arc<tokio::sync::Mutex<Option<Applied>>>;

/// Everything the phases of one trial share.
struct TrialCx<'a> {
    env: &'a TrialEnv,
    s: &'a Scenario,
    ns: String,
    node_name: String,
    /// The agent ledger key of this trial's node faults.
    ledger: String,
    timeline: &'a Timeline,
    record: &'a mut TrialRecord,
    applied: AppliedSlot,
    node: Node,
    pods: Api<Pod>,
    /// The pod's (or the DaemonSet's) name.
    workload: String,
}

pub async fn run_trial(env: &TrialEnv, s: &Scenario) -> TrialRecord {
    let timeline = Timeline::new(env.echo);
    let dir = env.run.dir.join(&s.id);
    let mut record = TrialRecord::new(s, dir.clone());
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

    let applied: AppliedSlot = Arc::new(tokio::sync::Mutex::new(None));
    let phases = std::panic::AssertUnwindSafe(phases(
        env,
        s,
        (ns.clone(), node_name, ledger),
        &timeline,
        &mut record,
        applied.clone(),
    ))
    .catch_unwind()
    .await;
    let stopped = match phases {
        Ok(Ok(())) => None,
        Ok(Err(stop)) => Some(stop),
        Err(panic) => Some(Stop::Harness(HarnessError(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )))),
    };
    if let Some(stop) = &stopped {
        timeline.note("failed", stop_text(stop));
    }
    let leftovers = recover(env, s, &ns, &applied, &timeline).await;
    record.result = result_of(stopped, &leftovers);
    record.failure = record.result.failure();
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

fn stop_text(stop: &Stop) -> String {
    match stop {
        Stop::Outcome(o) => o.why().unwrap_or_default().to_owned(),
        Stop::Harness(e) => e.0.clone(),
    }
}

/// The trial's result from how its phases stopped and what recover left behind.
fn result_of(stopped: Option<Stop>, leftovers: &[String]) -> TrialResult {
    let left = (!leftovers.is_empty()).then(|| leftovers.join("; "));
    match (stopped, left) {
        (None, None) => TrialResult::Outcome(Outcome::Passed),
        (None, Some(left)) => {
            TrialResult::Outcome(Outcome::LeftUnclean(format!("left behind: {left}")))
        }
        (Some(Stop::Outcome(o)), None) => TrialResult::Outcome(o),
        (Some(Stop::Harness(e)), None) => TrialResult::HarnessError(e),
        (Some(stop), Some(left)) => {
            let why = format!("{}; also left behind: {left}", stop_text(&stop));
            match stop {
                Stop::Outcome(o) => TrialResult::Outcome(with_reason(o, why)),
                Stop::Harness(_) => TrialResult::HarnessError(HarnessError(why)),
            }
        }
    }
}

fn with_reason(o: Outcome, why: String) -> Outcome {
    match o {
        Outcome::Passed => Outcome::LeftUnclean(why),
        Outcome::NotReproduced(_) => Outcome::NotReproduced(why),
        Outcome::Misdiagnosed(_) => Outcome::Misdiagnosed(why),
        Outcome::RemedyFailed(_) => Outcome::RemedyFailed(why),
        Outcome::LeftUnclean(_) => Outcome::LeftUnclean(why),
        Outcome::Skipped(_) => Outcome::Skipped(why),
    }
}

/// The recover phase: undo the applied fault and delete the namespace, on every path.
/// Returns what could not be undone.
async fn recover(
    env: &TrialEnv,
    s: &Scenario,
    ns: &str,
    applied: &AppliedSlot,
    timeline: &Timeline,
) -> Vec<String> {
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
    if let Err(e) = crate::namespace::delete(&env.client, ns, s.deadlines.recover).await {
        leftovers.push(e);
    } else {
        timeline.note("cleanup", format!("namespace {ns} deleted"));
    }
    leftovers
}

/// The phases in order; the first that stops ends the trial (recover runs after).
async fn phases(
    env: &TrialEnv,
    s: &Scenario,
    (ns, node_name, ledger): (String, String, String),
    timeline: &Timeline,
    record: &mut TrialRecord,
    applied: AppliedSlot,
) -> Result<(), Stop> {
    let node = Node::connect(&node_name).await.map_err(|e| e.to_string())?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let mut cx = TrialCx {
        env,
        s,
        ns,
        node_name,
        ledger,
        timeline,
        record,
        applied,
        node,
        pods,
        workload: "victim".to_owned(),
    };
    let running = deploy(&cx).await?;
    let debris = induce(&cx, &running).await?;
    let (target, since) = observe(&mut cx, running).await?;
    let diagnosis = detect(&mut cx, &target, &since).await?;
    let remedy_started = cx.timeline.elapsed();
    remedy(&cx, &diagnosis, &target).await?;
    verify(&cx, &target, &debris).await?;
    cx.record.time_to_clear = Some((cx.timeline.elapsed() - remedy_started).as_secs_f64());
    Ok(())
}

/// Deploy: the namespace and the workload, until the pod is Running on its node.
async fn deploy(cx: &TrialCx<'_>) -> Result<Target, Stop> {
    let (client, s, ns, node_name) = (&cx.env.client, cx.s, cx.ns.as_str(), cx.node_name.as_str());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &create_params(),
            &workload::namespace(ns, &cx.env.run.id, &s.id),
        )
        .await
        .map_err(kube_err("creating the namespace"))?;
    let name = &cx.workload;
    match s.workload.kind {
        WorkloadKind::Pod => {
            cx.pods
                .create(
                    &create_params(),
                    &workload::pod(s, name, ns, node_name, &cx.env.run.id),
                )
                .await
                .map_err(kube_err("creating the pod"))?;
        }
        WorkloadKind::DaemonSet => {
            let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
            daemonsets
                .create(
                    &create_params(),
                    &workload::daemonset(s, name, ns, node_name, &cx.env.run.id),
                )
                .await
                .map_err(kube_err("creating the daemonset"))?;
        }
    }
    let running = wait_running(cx).await?;
    let target = Target {
        namespace: ns.to_owned(),
        pod: running.metadata.name.clone().unwrap_or_default(),
        uid: running.metadata.uid.clone(),
        node: Some(node_name.to_owned()),
        container_ids: crate::pods::container_ids(&running),
    };
    cx.timeline.note(
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
async fn wait_running(cx: &TrialCx<'_>) -> Result<Pod, String> {
    let last_seen = std::sync::Mutex::new(String::from("no pod yet"));
    wait_for(
        &format!(
            "the {:?} workload to be Running on {}",
            cx.s.workload.kind, cx.node_name
        ),
        cx.s.deadlines.ready,
        || {
            let pods = cx.pods.clone();
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

/// Induce: apply the fault (recorded in the slot at once, so recover finds it whatever
/// happens next). Returns what the fault may leave on the node.
async fn induce(cx: &TrialCx<'_>, running: &Target) -> Result<Vec<String>, Stop> {
    let s = cx.s;
    let fault_target = Target {
        pod: if s.workload.kind == WorkloadKind::DaemonSet {
            cx.workload.clone()
        } else {
            running.pod.clone()
        },
        ..running.clone()
    };
    let fault_cx = FaultContext {
        client: &cx.env.client,
        node: &cx.node,
        ledger: &cx.ledger,
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
    cx.timeline.note("fault", applied.describe());
    let debris = applied.debris();
    *cx.applied.lock().await = Some(applied);
    Ok(debris)
}

/// Observe: delete the pod and see the scenario's outcome (stays Terminating, goes away
/// leaving debris, or DaemonSet churn). Returns the target to gather evidence on and the
/// journal start time.
async fn observe(cx: &mut TrialCx<'_>, running: Target) -> Result<(Target, String), Stop> {
    let s = cx.s;
    let deleted_at = cx.timeline.elapsed();
    let target = match s.workload.kind {
        WorkloadKind::Pod => {
            cx.pods
                .delete(&running.pod, &DeleteParams::default())
                .await
                .map_err(kube_err("deleting the pod"))?;
            cx.timeline.note(
                "delete",
                format!(
                    "kubectl delete pod {} (grace {:?})",
                    running.pod, s.workload.grace_period
                ),
            );
            observe_pod(cx, &running.pod).await?;
            running
        }
        WorkloadKind::DaemonSet => {
            observe_churn(s, &cx.env.client, &cx.ns, &cx.workload, cx.timeline).await?
        }
    };
    // Journals from the trial's start only: a shared node's log holds other trials' errors.
    let since = (chrono::Utc::now()
        - chrono::Duration::from_std(cx.timeline.elapsed()).unwrap_or_default()
        - chrono::Duration::seconds(2))
    .format("%Y-%m-%d %H:%M:%S UTC")
    .to_string();
    if s.observe.pod == PodOutcome::GoesAway && s.observe.node_left_unclean {
        let line = wait_debris_reported(cx, &since)
            .await
            .map_err(Stop::not_reproduced)?;
        cx.timeline.note("unclean", line);
    }
    cx.record.time_to_stuck = Some((cx.timeline.elapsed() - deleted_at).as_secs_f64());
    Ok((target, since))
}

/// The pod is gone; the debris shows when containerd's garbage collector fails to
/// remove what the fault pinned.
async fn wait_debris_reported(cx: &TrialCx<'_>, since: &str) -> Result<String, String> {
    let script = format!("journalctl -u containerd --since '{since}' --no-pager | grep -m1 'failed to remove directory' || true");
    wait_for(
        "containerd to report a directory it cannot remove",
        cx.s.deadlines.stuck,
        || {
            let (node, script) = (cx.node.clone(), script.clone());
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

/// Detect: gather the bundle, ask every detector, write the built-in report. A wrong or
/// failed detector is a misdiagnosis.
async fn detect(
    cx: &mut TrialCx<'_>,
    target: &Target,
    since: &str,
) -> Result<crate::detect::Report, Stop> {
    let s = cx.s;
    let detect_started = cx.timeline.elapsed();
    let bundle = cx.record.artefacts.join("bundle");
    tokio::time::timeout(
        s.deadlines.detect,
        probe::collect(&cx.env.client, Some(&cx.node), target, &bundle, since),
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
    let wrong = ask_detectors(cx, target, &bundle).await?;
    cx.record.time_to_detect = Some((cx.timeline.elapsed() - detect_started).as_secs_f64());
    let evidence = crate::evidence::Evidence::load(&bundle);
    let diagnosis = crate::detect::diagnose(&evidence);
    std::fs::write(
        cx.record.artefacts.join("report.txt"),
        crate::report::to_text(&evidence, &diagnosis),
    )
    .map_err(|e| e.to_string())?;
    if !wrong.is_empty() {
        return Err(Stop::misdiagnosed(format!(
            "{} (bundle: {})",
            wrong.join("; "),
            bundle.display()
        )));
    }
    Ok(diagnosis)
}

/// Runs every detector on the bundle; returns what each got wrong.
async fn ask_detectors(
    cx: &mut TrialCx<'_>,
    target: &Target,
    bundle: &std::path::Path,
) -> Result<Vec<String>, String> {
    let s = cx.s;
    let context = DetectorContext {
        timeout: s.deadlines.detect,
        ..DetectorContext::default()
    }
    .with_cluster(
        &cx.env.kubeconfig.display().to_string(),
        &cx.ns,
        &target.pod,
        Some(&cx.node_name),
    );
    let mut wrong = Vec::new();
    for detector in &cx.env.detectors {
        let detector = detector.clone();
        let (b, c) = (bundle.to_owned(), context.clone());
        let (name, answer) =
            tokio::task::spawn_blocking(move || (detector.name().to_owned(), detector.run(&b, &c)))
                .await
                .map_err(|e| format!("detector task: {e}"))?;
        cx.record
            .outcomes
            .push((name.clone(), answer.clone().into()));
        match answer {
            Ok(a) => {
                let got = a
                    .cause
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into());
                cx.timeline.note("detect", format!("{name}: {got}"));
                if a.cause != Some(s.cause) {
                    wrong.push(format!(
                        "detector {name}: expected {}, reported {got}",
                        s.cause
                    ));
                }
                cx.record.reported.push((name, got));
            }
            Err(failure) => {
                cx.timeline
                    .note("detect", format!("{name} failed: {failure}"));
                wrong.push(format!("detector {name} failed: {failure}"));
                cx.record.reported.push((name, format!("error: {failure}")));
            }
        }
    }
    Ok(wrong)
}

/// Remedy: run the built-in diagnosis' remedy; the pod must then go (or the churn stop).
async fn remedy(
    cx: &TrialCx<'_>,
    diagnosis: &crate::detect::Report,
    target: &Target,
) -> Result<(), Stop> {
    let s = cx.s;
    let first = diagnosis
        .diagnoses
        .first()
        .ok_or_else(|| Stop::misdiagnosed("the built-in detector found nothing to remedy"))?;
    remedy::apply(
        &remedy::RemedyPlaces {
            client: &cx.env.client,
            control_plane: &cx.env.control_plane,
            ledger: &cx.ledger,
        },
        s,
        first,
        &cx.node,
        target,
        cx.timeline,
    )
    .await
    .map_err(Stop::remedy_failed)?;
    match s.workload.kind {
        WorkloadKind::Pod => {
            let pod_name = target.pod.clone();
            crate::wait::pod_deleted(&cx.env.client, &cx.ns, &pod_name, s.deadlines.clear)
                .await
                .map_err(|e| deletion_stop(e, Stop::remedy_failed))?;
            cx.timeline
                .note("cleared", format!("pod {pod_name} is gone"));
        }
        WorkloadKind::DaemonSet => {
            remedy::wait_churn_stopped(&cx.env.client, &cx.ns, &cx.workload, s, cx.timeline)
                .await
                .map_err(Stop::remedy_failed)?;
        }
    }
    Ok(())
}

/// Verify: nothing of the pod is left on the node.
async fn verify(cx: &TrialCx<'_>, target: &Target, debris: &[String]) -> Result<(), Stop> {
    // The last leftovers seen, for the timeout message: a fresh check after the
    // deadline could pass and hide what was there.
    let last_left = std::sync::Mutex::new(Vec::new());
    let leftovers = wait_for("the node to be clean", cx.s.deadlines.clear, || {
        let (node, target, debris, last_left) =
            (cx.node.clone(), target.clone(), debris.to_vec(), &last_left);
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
        return Err(Stop::left_unclean(format!("{why}; still there: {left}")));
    }
    cx.timeline.note(
        "clean",
        format!("node {} has nothing left of the pod", cx.node_name),
    );
    Ok(())
}

/// A deletion that did not happen in time is the trial's verdict (`on_timeout`); a
/// failing API or watch is the harness's.
fn deletion_stop(e: crate::wait::DeletedError, on_timeout: fn(String) -> Stop) -> Stop {
    match e {
        crate::wait::DeletedError::Timeout(t) => on_timeout(t.to_string()),
        other => Stop::Harness(HarnessError(other.to_string())),
    }
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
async fn observe_pod(cx: &TrialCx<'_>, name: &str) -> Result<(), Stop> {
    let (s, pods, timeline) = (cx.s, &cx.pods, cx.timeline);
    match s.observe.pod {
        PodOutcome::GoesAway => {
            crate::wait::pod_deleted(&cx.env.client, &cx.ns, name, s.deadlines.stuck)
                .await
                .map_err(|e| deletion_stop(e, Stop::not_reproduced))?;
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
async fn observe_churn(
    s: &Scenario,
    client: &Client,
    ns: &str,
    ds: &str,
    timeline: &Timeline,
) -> Result<Target, Stop> {
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
