//! One trial, as a sequence of phases with deadlines:
//!
//! namespace → workload Running → fault applied → pod deleted → pod still Terminating
//! after `observe.for` → evidence bundle → every detector asked → remedy → pod gone and
//! node clean → fault recovered → namespace deleted.
//!
//! Each phase is a function over one [`TrialCx`]: deploy, induce, observe, detect,
//! remedy, verify; then recover. A phase stops the trial with a typed [`Stop`]: a verdict
//! ([`Outcome`]) or a harness error. Before any phase, the scenario's `requires` is
//! checked against the facts of the node the trial would use ([`TrialEnv::unmet`]); a
//! trial whose node does not meet them is skipped, with that reason, and touches nothing.
//!
//! Architecture invariant: recover runs whatever happens after the fault was applied: a
//! failed assertion, a timeout, or a panic (caught here). Ctrl-C is handled by the caller
//! (the suite), which owns the process and runs the agent's gc for the run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::FutureExt;
use kube::Client;
use serde::Serialize;

use super::clean;
use super::crowd::{self, Gate, Member, Neighbour};
use super::kill::{self, KillPoint};
use super::outcome::{HarnessError, Outcome, Stop, TrialResult};
use super::pool::WorkerPool;
use super::remedy;
use super::run::{Run, Timeline};
use super::stage::{self, Stage, StagePlace};
use crate::cause::CauseId;
use crate::detectors::{Detector, DetectorContext};
use crate::fault::{self, Applied};
use crate::probe::{self, Target};
use crate::scenario::{NodeFacts, NodeUse, PodOutcome, Scenario, Unmet, WorkloadKind};
use crate::wait::wait_for;

/// What every trial of a run shares.
pub struct TrialEnv {
    pub run: Arc<Run>,
    pub client: Client,
    pub kubeconfig: PathBuf,
    /// Worker for trials that share a node.
    pub shared_node: String,
    /// Workers for trials that disrupt a whole node: each such trial leases one of its
    /// own.
    pub dedicated: WorkerPool,
    /// The control-plane node: kubectl with admin credentials runs there.
    pub control_plane: String,
    pub detectors: Vec<Detector>,
    pub echo: bool,
    /// What each node reports (`status.nodeInfo`), by node name: what `requires` is
    /// checked against.
    pub facts: BTreeMap<String, NodeFacts>,
}

impl TrialEnv {
    /// The node whose facts a trial of this scenario is checked against: the shared
    /// worker, or the dedicated pool's first (its workers share one image).
    pub fn node_for(&self, s: &Scenario) -> &str {
        match s.requires.node {
            NodeUse::Dedicated => self.dedicated.first().unwrap_or(&self.shared_node),
            NodeUse::Shared => &self.shared_node,
        }
    }

    /// The scenario's first requirement its node does not meet; None when it may run. A
    /// node without facts reports nothing, so a requirement on it is unmet.
    pub fn unmet(&self, s: &Scenario) -> Option<Unmet> {
        let facts = self
            .facts
            .get(self.node_for(s))
            .cloned()
            .unwrap_or_default();
        s.requires.check(&facts).err()
    }
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
    /// The built-in report's diagnoses (above its threshold), ranked: the crowd's
    /// confusion shows in the runner-ups.
    pub diagnoses: Vec<(CauseId, f64)>,
    /// In a crowded run, the other members stuck beside this one; None in a quiet run.
    pub neighbours: Option<Vec<Neighbour>>,
    pub time_to_stuck: Option<f64>,
    pub time_to_detect: Option<f64>,
    pub time_to_clear: Option<f64>,
    pub total: f64,
    /// How the trial ended: a verdict, or a harness error.
    pub result: TrialResult,
    pub artefacts: PathBuf,
}

impl TrialRecord {
    /// None when the trial passed (or was skipped); otherwise why not, for the console.
    pub fn failure(&self) -> Option<String> {
        self.result.failure()
    }

    /// A trial that was not run: its node does not meet the scenario's `requires`.
    pub fn skipped(s: &Scenario, unmet: Unmet, artefacts: PathBuf) -> TrialRecord {
        TrialRecord {
            result: TrialResult::Outcome(Outcome::Skipped(unmet)),
            ..TrialRecord::new(s, artefacts)
        }
    }

    fn new(s: &Scenario, artefacts: PathBuf) -> TrialRecord {
        TrialRecord {
            scenario: s.id.clone(),
            expected: s.cause,
            reported: Vec::new(),
            outcomes: Vec::new(),
            diagnoses: Vec::new(),
            neighbours: None,
            time_to_stuck: None,
            time_to_detect: None,
            time_to_clear: None,
            total: 0.0,
            result: TrialResult::Outcome(Outcome::Passed),
            artefacts,
        }
    }
}

/// The applied fault, shared with the recover that runs after the phases whatever
/// happened in them (including a panic).
type AppliedSlot = Arc<tokio::sync::Mutex<Option<Applied>>>;

/// Everything the phases of one trial share: the stage (workload, node, fault) and the
/// trial's own record and recover slot.
struct TrialCx<'a> {
    env: &'a TrialEnv,
    /// This trial's place in a crowd; None in a quiet run.
    member: Option<&'a Member>,
    stage: Stage<'a>,
    record: &'a mut TrialRecord,
    applied: AppliedSlot,
}

/// A quiet trial: the scenario alone on its node (beside other quiet trials).
pub async fn run_trial(env: &TrialEnv, s: &Scenario) -> TrialRecord {
    run(env, s, None).await
}

/// A crowd member's trial: it waits at the crowd's gates and its built-in diagnosis
/// must not name its neighbours' causes. `member` is dropped when the trial ends, which
/// releases the gates whatever happened.
pub async fn run_crowd_trial(env: &TrialEnv, s: &Scenario, member: Member) -> TrialRecord {
    run(env, s, Some(&member)).await
}

async fn run(env: &TrialEnv, s: &Scenario, member: Option<&Member>) -> TrialRecord {
    let timeline = Timeline::labelled(env.echo, &s.id);
    let dir = env.run.dir.join(&s.id);
    if let Some(unmet) = env.unmet(s) {
        timeline.note("skipped", format!("on node {}: {unmet}", env.node_for(s)));
        let record = TrialRecord::skipped(s, unmet, dir.clone());
        let _ = timeline.write(&dir);
        let _ = std::fs::write(
            dir.join("record.json"),
            serde_json::to_string_pretty(&record).unwrap_or_default(),
        );
        return record;
    }
    let mut record = TrialRecord::new(s, dir.clone());
    record.neighbours = member.map(Member::neighbours);
    let lease = match s.requires.node {
        NodeUse::Dedicated => env.dedicated.lease().await,
        NodeUse::Shared => None,
    };
    let node_name = match &lease {
        Some(lease) => lease.node().to_owned(),
        None => env.shared_node.clone(),
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
        StagePlace {
            ns: ns.clone(),
            node_name,
            ledger,
            run_label: env.run.id.clone(),
            workload: "victim".to_owned(),
        },
        &timeline,
        &mut record,
        applied.clone(),
        member,
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
        timeline.note("failed", stop.to_string());
    }
    if let Some(member) = member {
        // Whatever stopped this trial, its fault stays until every neighbour has its
        // bundle: the neighbours' bundles are meant to hold it. A member that stopped
        // early passes both gates here, so no one waits for it.
        match member.arrive(Gate::Collected).await {
            Ok(_) => {}
            Err(e) => timeline.note("crowd", format!("recovering anyway: {e}")),
        }
    }
    let leftovers = recover(env, s, &ns, &applied, &timeline).await;
    record.result = result_of(stopped, &leftovers);
    record.total = timeline.elapsed().as_secs_f64();
    timeline.note(
        "end",
        if record.failure().is_none() {
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
            let why = format!("{stop}; also left behind: {left}");
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
        // A skip touches nothing, so nothing of it is left; were something left, that
        // is what the trial's verdict must say.
        Outcome::Skipped(_) => Outcome::LeftUnclean(why),
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
    place: StagePlace,
    timeline: &Timeline,
    record: &mut TrialRecord,
    applied: AppliedSlot,
    member: Option<&Member>,
) -> Result<(), Stop> {
    let stage = Stage::connect(&env.client, s, timeline, place).await?;
    let mut cx = TrialCx {
        env,
        member,
        stage,
        record,
        applied,
    };
    let running = stage::deploy(&cx.stage).await?;
    kill::reached(KillPoint::AfterWorkload, &s.id, timeline);
    let fault = stage::induce(&cx.stage, &running).await?;
    let debris = fault.debris();
    // Recorded at once: recover finds it whatever happens next.
    *cx.applied.lock().await = Some(fault);
    kill::reached(KillPoint::AfterFault, &s.id, timeline);
    let observed = stage::observe(&cx.stage, running, &debris).await?;
    cx.record.time_to_stuck = Some(observed.time_to_stuck.as_secs_f64());
    pass_gate(&cx, Gate::Stuck).await?;
    let target = observed.target;
    let (diagnosis, evidence) = detect(&mut cx, &target, &observed.since).await?;
    let remedy_started = cx.stage.timeline.elapsed();
    remedy(&cx, &diagnosis, &evidence, &target).await?;
    verify(&cx, &target, &debris).await?;
    cx.record.time_to_clear = Some((cx.stage.timeline.elapsed() - remedy_started).as_secs_f64());
    Ok(())
}

/// Detect: gather the bundle, ask every detector, write the built-in report. A wrong or
/// failed detector is a misdiagnosis.
async fn detect(
    cx: &mut TrialCx<'_>,
    target: &Target,
    since: &str,
) -> Result<(crate::detect::Report, crate::evidence::Evidence), Stop> {
    let s = cx.stage.s;
    let detect_started = cx.stage.timeline.elapsed();
    let bundle = cx.record.artefacts.join("bundle");
    let progress = probe::Progress::default();
    tokio::time::timeout(
        s.deadlines.detect,
        probe::collect(
            &cx.env.client,
            Some(&cx.stage.node),
            target,
            &bundle,
            since,
            &progress,
        ),
    )
    .await
    .map_err(|_| {
        format!(
            "gathering evidence did not finish within {:?} (deadlines.detect); it was at: {}",
            s.deadlines.detect,
            progress.describe()
        )
    })?
    .map_err(|e| format!("gathering evidence: {e}"))?;
    std::fs::write(bundle.join("expected-cause"), format!("{}\n", s.cause))
        .map_err(|e| e.to_string())?;
    kill::reached(KillPoint::DuringDetect, &s.id, cx.stage.timeline);
    pass_gate(cx, Gate::Collected).await?;
    let mut wrong = ask_detectors(cx, target, &bundle).await?;
    cx.record.time_to_detect = Some((cx.stage.timeline.elapsed() - detect_started).as_secs_f64());
    let evidence = crate::evidence::Evidence::load(&bundle);
    let diagnosis = crate::detect::diagnose(&evidence);
    std::fs::write(
        cx.record.artefacts.join("report.txt"),
        crate::report::to_text(&evidence, &diagnosis),
    )
    .map_err(|e| e.to_string())?;
    cx.record.diagnoses = diagnosis
        .diagnoses
        .iter()
        .map(|d| (d.cause, d.confidence))
        .collect();
    if let Some(member) = cx.member {
        let builtin_asked = cx.env.detectors.contains(&Detector::Builtin);
        let pod_tied = !(evidence.pod.is_none() && s.observe.pod == PodOutcome::GoesAway);
        for confusion in crowd::confusions(s.cause, &cx.record.diagnoses, &member.neighbours()) {
            // The built-in detector's own answer already said it ranked another first.
            if builtin_asked && matches!(confusion, crowd::Confusion::NotFirst { .. }) {
                continue;
            }
            if !confusion.fails(pod_tied) {
                cx.stage.timeline.note(
                    "crowd",
                    format!("pod gone, node-wide diagnosis: {confusion}"),
                );
                continue;
            }
            wrong.push(confusion.to_string());
        }
    }
    if !wrong.is_empty() {
        return Err(Stop::misdiagnosed(format!(
            "{} (bundle: {})",
            wrong.join("; "),
            bundle.display()
        )));
    }
    Ok((diagnosis, evidence))
}

/// In a crowd, waits at `gate` for the other members; a quiet trial passes at once.
async fn pass_gate(cx: &TrialCx<'_>, gate: Gate) -> Result<(), Stop> {
    let Some(member) = cx.member else {
        return Ok(());
    };
    let waited = member.arrive(gate).await.map_err(|e| e.to_string())?;
    cx.stage.timeline.note(
        "crowd",
        format!(
            "waited {:.1}s for {}",
            waited.as_secs_f64(),
            match gate {
                Gate::Stuck => "every neighbour to be stuck",
                Gate::Collected => "every neighbour's bundle",
            }
        ),
    );
    Ok(())
}

/// Runs every detector on the bundle; returns what each got wrong.
async fn ask_detectors(
    cx: &mut TrialCx<'_>,
    target: &Target,
    bundle: &std::path::Path,
) -> Result<Vec<String>, String> {
    let s = cx.stage.s;
    let context = DetectorContext {
        timeout: s.deadlines.detect,
        ..DetectorContext::default()
    }
    .with_cluster(
        cx.env.kubeconfig.display().to_string(),
        &cx.stage.ns,
        &target.pod,
        Some(&cx.stage.node_name),
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
                cx.stage.timeline.note("detect", format!("{name}: {got}"));
                if a.cause != Some(s.cause) {
                    wrong.push(format!(
                        "detector {name}: expected {}, reported {got}",
                        s.cause
                    ));
                }
                cx.record.reported.push((name, got));
            }
            Err(failure) => {
                cx.stage
                    .timeline
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
    evidence: &crate::evidence::Evidence,
    target: &Target,
) -> Result<(), Stop> {
    let s = cx.stage.s;
    let first = diagnosis
        .diagnoses
        .first()
        .ok_or_else(|| Stop::misdiagnosed("the built-in detector found nothing to remedy"))?;
    remedy::apply(
        &remedy::RemedyPlaces {
            client: &cx.env.client,
            control_plane: &cx.env.control_plane,
            ledger: &cx.stage.ledger,
        },
        s,
        first,
        evidence,
        &cx.stage.node,
        target,
        cx.stage.timeline,
    )
    .await
    .map_err(Stop::remedy_failed)?;
    match s.workload.kind {
        WorkloadKind::Pod | WorkloadKind::Job => {
            let pod_name = target.pod.clone();
            crate::wait::pod_deleted(&cx.env.client, &cx.stage.ns, &pod_name, s.deadlines.clear)
                .await
                .map_err(|e| Stop::after_deletion(e, Stop::remedy_failed))?;
            cx.stage
                .timeline
                .note("cleared", format!("pod {pod_name} is gone"));
        }
        WorkloadKind::DaemonSet => {
            remedy::wait_churn_stopped(
                &cx.env.client,
                &cx.stage.ns,
                &cx.stage.workload,
                s,
                cx.stage.timeline,
            )
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
    let leftovers = wait_for("the node to be clean", cx.stage.s.deadlines.clear, || {
        let (node, target, debris, last_left) = (
            cx.stage.node.clone(),
            target.clone(),
            debris.to_vec(),
            &last_left,
        );
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
    cx.stage.timeline.note(
        "clean",
        format!("node {} has nothing left of the pod", cx.stage.node_name),
    );
    Ok(())
}
