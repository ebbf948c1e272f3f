//! On-call drills: `terminus drill` induces one cause on a kind cluster, deletes the
//! pod, waits until it is stuck and returns only what a page would say. The trainee
//! investigates with whatever they like, then `terminus drill answer CAUSE` says right
//! or wrong, shows the proof and the remedy, clears the pod and cleans up; `terminus
//! drill stop` cleans up at any time.
//!
//! A drill outlives the process that started it, so only faults whose state can be
//! persisted are drilled: node faults in the agent's ledger (undone by `terminus-agent
//! gc --run LEDGER`) and a finalizer (removed by a patch). The state file
//! ([`state`]) records what cleanup needs and is written before anything is created.
//!
//! Architecture invariant: a drill deploys, induces and observes through the trial's
//! own phases ([`crate::trial::stage`]); only what a drill adds (the state file, the
//! page, the answer) lives here. This module prints nothing: each command returns a
//! typed result that the binary prints.

mod cleanup;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
use kube::api::{Api, ListParams};
use kube::Client;

use crate::cause::CauseId;
use crate::cluster::{self, Cluster, UpOptions};
use crate::scenario::{self, FaultSpec, NodeUse, PodOutcome, Scenario, WorkloadKind};
use crate::trial::stage::{self, Stage, StagePlace};
use crate::trial::Timeline;
use cleanup::cleanup;
use state::{load, save};
pub use state::{page, state_path, DrillState};

/// Why a drill command failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// Bad arguments or state: no drill, a drill already running, no such cause.
    #[error("{0}")]
    BadInput(String),
    /// The cluster, the node or the API failed.
    #[error("{0}")]
    Infra(String),
    /// Ctrl-C during setup; the drill was cleaned up.
    #[error("interrupted; the drill was cleaned up")]
    Interrupted,
}

impl DrillError {
    /// 2 bad input, 3 infrastructure, 130 interrupted.
    pub fn exit_code(&self) -> u8 {
        match self {
            DrillError::BadInput(_) => 2,
            DrillError::Infra(_) => 3,
            DrillError::Interrupted => 130,
        }
    }
}

fn bad_input(e: impl std::fmt::Display) -> DrillError {
    DrillError::BadInput(e.to_string())
}

fn infra(e: impl std::fmt::Display) -> DrillError {
    DrillError::Infra(e.to_string())
}

/// A drill that is set up: the page and how to reach the cluster.
#[derive(Debug)]
pub struct Started {
    pub page: String,
    pub cluster: String,
    pub kubeconfig: PathBuf,
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.page)?;
        write!(
            f,
            "(cluster {}: KUBECONFIG={}; when you know the cause: terminus drill answer CAUSE; to give up: terminus drill stop)",
            self.cluster,
            self.kubeconfig.display()
        )
    }
}

/// A drill abandoned by `drill stop`, with the cause it hid.
#[derive(Debug)]
pub struct Stopped {
    pub cause: CauseId,
    pub scenario: String,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "drill stopped: the cause was {} (scenario {}); everything it made is removed",
            self.cause, self.scenario
        )
    }
}

/// What `drill answer` found after the verdict.
#[derive(Debug)]
pub enum Proof {
    /// The trainee's own remedy already cleared the pod.
    AlreadyGone,
    /// The evidence report and the remedy's steps, after which the pod went away.
    Remedied {
        report: String,
        steps: Vec<String>,
        pod: String,
    },
}

/// The answer to `drill answer CAUSE`: the verdict, the proof and the cleanup.
#[derive(Debug)]
pub struct Answered {
    pub given: CauseId,
    pub cause: CauseId,
    /// The proof, or why it could not be given (the fault is recovered either way).
    pub proof: Result<Proof, String>,
    /// The namespace deleted, or why cleanup failed.
    pub cleanup: Result<String, String>,
}

impl Answered {
    pub fn right(&self) -> bool {
        self.given == self.cause
    }

    /// 0 right, 1 wrong, 3 when the proof or the cleanup failed.
    pub fn exit_code(&self) -> u8 {
        match (&self.proof, &self.cleanup) {
            (Err(_), _) | (_, Err(_)) => 3,
            _ if self.right() => 0,
            _ => 1,
        }
    }

    /// What went wrong after the verdict, for stderr.
    pub fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = &self.cleanup {
            errors.push(format!("cleanup: {e}; run `terminus drill stop` to retry"));
        }
        if let Err(e) = &self.proof {
            errors.push(e.clone());
        }
        errors
    }
}

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.right() {
            writeln!(f, "RIGHT: the pod was held by {}", self.cause)?;
        } else {
            writeln!(
                f,
                "WRONG: you said {}; the pod was held by {}",
                self.given, self.cause
            )?;
        }
        match &self.proof {
            Ok(Proof::AlreadyGone) => {
                writeln!(f, "\nThe pod is already gone: your remedy cleared it.")?
            }
            Ok(Proof::Remedied { report, steps, pod }) => {
                write!(f, "\nThe evidence:\n\n{report}")?;
                writeln!(f, "\nApplying the remedy:")?;
                for step in steps {
                    writeln!(f, "  {step}")?;
                }
                writeln!(f, "pod {pod} is gone")?;
            }
            Err(_) => {}
        }
        if let Ok(namespace) = &self.cleanup {
            write!(
                f,
                "cleaned up: fault recovered, namespace {namespace} deleted"
            )?;
        }
        Ok(())
    }
}

/// Whether a scenario can be drilled: one pod (a plain pod, or a Job's) that stays
/// Terminating, and a fault whose state survives the CLI process (an agent ledger, a
/// finalizer, a labelled cluster object or node), so any later process can clean up.
pub fn drillable(s: &Scenario) -> bool {
    matches!(s.workload.kind, WorkloadKind::Pod | WorkloadKind::Job)
        && s.observe.pod == PodOutcome::StaysTerminating
        && matches!(
            s.fault,
            FaultSpec::Finalizer { .. }
                | FaultSpec::ImmutableFile { .. }
                | FaultSpec::FreezeRuntime { .. }
                | FaultSpec::HoldMount { .. }
                | FaultSpec::HoldVolume { .. }
                | FaultSpec::BreakCni { .. }
                | FaultSpec::BusyCgroup { .. }
                | FaultSpec::StopKubelet { .. }
                | FaultSpec::DenyFinalizerRemoval { .. }
                | FaultSpec::PartitionNode { .. }
        )
}

/// Picks the scenario: the first drillable one for `cause`, or one at random.
pub fn pick(
    scenarios: &[Scenario],
    cause: Option<CauseId>,
    seed: u64,
) -> Result<&Scenario, String> {
    let pool: Vec<&Scenario> = scenarios.iter().filter(|s| drillable(s)).collect();
    let causes = || {
        let mut c: Vec<String> = pool.iter().map(|s| s.cause.to_string()).collect();
        c.dedup();
        c.join(", ")
    };
    match cause {
        Some(c) => pool.iter().copied().find(|s| s.cause == c).ok_or_else(|| {
            format!(
                "no drillable scenario reproduces {c}; drillable causes: {}",
                causes()
            )
        }),
        None if pool.is_empty() => Err("no drillable scenario in the scenario directory".into()),
        None => Ok(pool[(seed % pool.len() as u64) as usize]),
    }
}

async fn open_client(name: &str) -> Result<Client, DrillError> {
    let c = Cluster::open(name).map_err(|e| infra(format!("cluster {name}: {e}")))?;
    c.client()
        .await
        .map_err(|e| infra(format!("cluster {name}: {e}")))
}

/// A drill about to be induced: its cluster, scenario and saved state.
struct Prepared {
    cluster: cluster::Cluster,
    client: Client,
    scenario: Scenario,
    state: DrillState,
}

/// `terminus drill`: sets up a stuck pod and returns its page.
pub async fn start(
    cluster_name: &str,
    cause: Option<CauseId>,
    scenarios_dir: &Path,
) -> Result<Started, DrillError> {
    // Ctrl-C while the cluster is made: kind, in the same process group, dies of it and
    // `cluster::up` removes what it left; nothing of the drill exists yet.
    let prepared = tokio::select! {
        r = prepare(cluster_name, cause, scenarios_dir) => r?,
        _ = tokio::signal::ctrl_c() => return Err(DrillError::Interrupted),
    };
    let Prepared {
        cluster,
        client,
        scenario: s,
        state,
    } = prepared;
    tracing::info!(
        "setting up the drill on cluster {} (this takes up to a minute or two)…",
        state.cluster
    );
    let outcome = tokio::select! {
        r = induce(&client, &s, state.without_record()) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    match outcome {
        Some(Ok(state)) => Ok(Started {
            page: page(&state, chrono::Utc::now()),
            cluster: state.cluster,
            kubeconfig: cluster.kubeconfig,
        }),
        Some(Err(e)) => {
            tracing::error!("{e}; cleaning up");
            if let Err(left) = cleanup(&client, saved_or(state)).await {
                return Err(infra(format!(
                    "{e}; cleaning up failed too: {left}; run `terminus drill stop` to retry"
                )));
            }
            Err(infra(e))
        }
        None => {
            tracing::warn!("interrupted; cleaning up the drill");
            match cleanup(&client, saved_or(state)).await {
                Ok(()) => Err(DrillError::Interrupted),
                Err(e) => Err(infra(format!("{e}; run `terminus drill stop` to retry"))),
            }
        }
    }
}

/// Everything before the fault: no drill running, a scenario, the cluster, the node, the
/// state saved (before anything is created, so any process can clean up).
async fn prepare(
    cluster_name: &str,
    cause: Option<CauseId>,
    scenarios_dir: &Path,
) -> Result<Prepared, DrillError> {
    if let Some(s) = load().map_err(bad_input)? {
        return Err(bad_input(format!(
            "a drill is already running (pod {}/{} on cluster {}); `terminus drill answer CAUSE` or `terminus drill stop` first",
            s.namespace, s.pod, s.cluster
        )));
    }
    let scenarios = scenario::load_dir(scenarios_dir).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bad_input(format!(
            "{}\nhint: run from the repository root, or pass --scenarios DIR",
            text.join("\nerror: ")
        ))
    })?;
    let seed = chrono::Utc::now().timestamp_subsec_nanos() as u64 ^ std::process::id() as u64;
    let s = pick(&scenarios, cause, seed).map_err(bad_input)?.clone();
    let cluster = cluster::up(&UpOptions {
        name: cluster_name.to_owned(),
        workers: 2,
        ..UpOptions::default()
    })
    .await
    .map_err(infra)?;
    cluster::load_image(&cluster.name, crate::DEFAULT_WORKLOAD_IMAGE).map_err(|e| {
        infra(format!(
            "loading {} into {}: {e}",
            crate::DEFAULT_WORKLOAD_IMAGE,
            cluster.name
        ))
    })?;
    let client = cluster.client().await.map_err(infra)?;
    let node = pick_node(&client, s.requires.node).await.map_err(infra)?;
    let state = new_state(&cluster.name, &s, node);
    save(&state).map_err(infra)?;
    Ok(Prepared {
        cluster,
        client,
        scenario: s,
        state,
    })
}

/// The state of a new drill of `s` on `node`.
fn new_state(cluster: &str, s: &Scenario, node: String) -> DrillState {
    let id = format!("drill-{}", chrono::Utc::now().format("%m%d%H%M%S"));
    DrillState {
        cluster: cluster.to_owned(),
        scenario: s.id.clone(),
        cause: s.cause,
        namespace: id.clone(),
        pod: format!("web-{}", &id[id.len() - 4..]),
        node,
        ledger: (!matches!(s.fault, FaultSpec::Finalizer { .. })).then(|| id.clone()),
        finalizer: match &s.fault {
            FaultSpec::Finalizer { name } => Some(name.clone()),
            _ => None,
        },
        started_at: chrono::Utc::now(),
        deleted_at: None,
        applied: None,
    }
}

/// The workers sorted by name: the first for shared-node scenarios, the second for
/// node-disrupting ones (as the suite does).
async fn pick_node(client: &Client, usage: NodeUse) -> Result<String, String> {
    let nodes: Api<KubeNode> = Api::all(client.clone());
    let mut workers: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing nodes: {e}"))?
        .items
        .into_iter()
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"))
        })
        .filter_map(|n| n.metadata.name)
        .collect();
    workers.sort();
    let index = usize::from(usage == NodeUse::Dedicated);
    workers.get(index).cloned().ok_or_else(|| {
        format!(
            "the cluster has {} worker(s); a drill needs 2",
            workers.len()
        )
    })
}

/// Deploy, induce and observe: the trial's phases, with the fault's record and the
/// deletion time saved to the state file as soon as each exists. The timeline is not
/// echoed: it names the fault, which the trainee must find.
async fn induce(
    client: &Client,
    s: &Scenario,
    mut state: DrillState,
) -> Result<DrillState, String> {
    let timeline = Timeline::new(false);
    let place = StagePlace {
        ns: state.namespace.clone(),
        node_name: state.node.clone(),
        ledger: state
            .ledger
            .clone()
            .unwrap_or_else(|| state.namespace.clone()),
        run_label: state.namespace.clone(),
        workload: state.pod.clone(),
    };
    let stage = Stage::connect(client, s, &timeline, place)
        .await
        .map_err(|e| e.to_string())?;
    let running = stage::deploy(&stage).await.map_err(|e| e.to_string())?;
    // A Job names its pod after itself: the page and the answer are about that pod.
    if running.pod != state.pod {
        state.pod = running.pod.clone();
        save(&state)?;
    }
    let applied = stage::induce(&stage, &running)
        .await
        .map_err(|e| e.to_string())?;
    let debris = applied.debris();
    // The record goes to the state file at once: any later process undoes exactly it.
    state.applied = Some(applied);
    save(&state)?;
    state.deleted_at = Some(chrono::Utc::now());
    save(&state)?;
    let state = state.without_record();
    stage::observe(&stage, running, &debris)
        .await
        .map_err(|e| e.to_string())?;
    Ok(state)
}

/// The state as last saved (with the fault record once apply returned it), else `state`.
fn saved_or(state: DrillState) -> DrillState {
    load().ok().flatten().unwrap_or(state)
}

fn current() -> Result<DrillState, DrillError> {
    match load().map_err(bad_input)? {
        Some(s) => Ok(s),
        None => Err(bad_input(format!(
            "no drill is running ({} does not exist); start one with `terminus drill`",
            state_path().display()
        ))),
    }
}

/// `terminus drill status`: the page again.
pub fn status() -> Result<String, DrillError> {
    current().map(|state| page(&state, chrono::Utc::now()))
}

/// `terminus drill stop`.
pub async fn stop() -> Result<Stopped, DrillError> {
    let state = current()?;
    let client = open_client(&state.cluster).await?;
    let stopped = Stopped {
        cause: state.cause,
        scenario: state.scenario.clone(),
    };
    cleanup(&client, state).await.map_err(|e| {
        infra(format!(
            "{e}; run `terminus drill stop` again, or `terminus gc`"
        ))
    })?;
    Ok(stopped)
}

/// `terminus drill answer CAUSE`.
pub async fn answer(given: &str) -> Result<Answered, DrillError> {
    let given = given.parse::<CauseId>().map_err(|_| {
        bad_input(format!(
            "`{given}` is not a cause id; one of: {}",
            CauseId::ALL
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let state = current()?;
    let client = open_client(&state.cluster).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &state.namespace);
    let proof = match pods.get_opt(&state.pod).await {
        Ok(None) => Ok(Proof::AlreadyGone),
        Err(e) => Err(format!("reading the pod: {e}")),
        Ok(Some(_)) => prove_and_remedy(&client, &state).await,
    };
    let (cause, namespace) = (state.cause, state.namespace.clone());
    let cleanup = cleanup(&client, state).await.map(|()| namespace);
    Ok(Answered {
        given,
        cause,
        proof,
        cleanup,
    })
}

/// Collects the evidence as `terminus diagnose` would and applies the built-in remedy for
/// the drill's cause.
async fn prove_and_remedy(client: &Client, state: &DrillState) -> Result<Proof, String> {
    let dir = std::env::temp_dir().join(format!("terminus-drill-{}", state.namespace));
    let _ = std::fs::remove_dir_all(&dir);
    let result = collect_and_remedy(client, state, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn collect_and_remedy(
    client: &Client,
    state: &DrillState,
    dir: &Path,
) -> Result<Proof, String> {
    let collected = crate::live::collect(
        client,
        &state.namespace,
        &state.pod,
        dir,
        &crate::live::NodeAccess::Auto,
        &crate::live::AgentPodOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let evidence = crate::evidence::Evidence::load(dir);
    let report = crate::detect::diagnose(&evidence);
    let text = crate::report::to_text(&evidence, &report);
    let diagnosis = report
        .diagnoses
        .iter()
        .find(|d| d.cause == state.cause)
        .ok_or_else(|| {
            format!(
                "terminus's own detector did not name {} from this evidence; the fault is recovered instead\n\nThe evidence:\n\n{text}",
                state.cause
            )
        })?;
    let steps = crate::live::apply_remedy(None, &collected, &evidence, diagnosis)
        .await
        .map_err(|e| e.to_string())?;
    crate::live::wait_gone(client, &collected.target, Duration::from_secs(120))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Proof::Remedied {
        report: text,
        steps,
        pod: format!("{}/{}", state.namespace, state.pod),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Applied;

    fn state() -> DrillState {
        DrillState {
            cluster: "terminus-drill".into(),
            scenario: "finalizer".into(),
            cause: CauseId::Finalizer,
            namespace: "drill-1".into(),
            pod: "web-0001".into(),
            node: "terminus-drill-worker".into(),
            ledger: None,
            finalizer: Some("terminus.dev/hold".into()),
            started_at: chrono::DateTime::from_timestamp(1_000_000, 0).unwrap(),
            deleted_at: Some(chrono::DateTime::from_timestamp(1_000_060, 0).unwrap()),
            applied: None,
        }
    }

    #[test]
    fn the_page_says_only_the_symptom() {
        let s = state();
        let now = chrono::DateTime::from_timestamp(1_000_060 + 45, 0).unwrap();
        assert_eq!(
            page(&s, now),
            "PAGE: pod web-0001 in namespace drill-1 has been Terminating for 45 seconds"
        );
        let later = chrono::DateTime::from_timestamp(1_000_060 + 7 * 60 + 5, 0).unwrap();
        assert!(page(&s, later).ends_with("for 7 minutes"));
        assert!(!page(&s, later).contains("finalizer"));
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = state();
        let text = serde_json::to_string(&s).unwrap();
        let back = serde_json::from_str::<DrillState>(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        // With the fault's record: it comes back as the same record.
        let mut with = state();
        with.applied = Some(Applied::Finalizer {
            namespace: "drill-1".into(),
            pod: "web-0001".into(),
            name: "terminus.dev/hold".into(),
        });
        let text = serde_json::to_string(&with).unwrap();
        let back = serde_json::from_str::<DrillState>(&text).unwrap();
        assert!(
            matches!(back.applied, Some(Applied::Finalizer { ref name, .. }) if name == "terminus.dev/hold")
        );
    }

    #[test]
    fn every_cause_whose_fault_persists_can_be_drilled() {
        let scenarios = scenario::load_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios"
        )))
        .unwrap();
        // A filled disk (a loop device the trial's process fills), a desync (the CRI's
        // retries, waited for in the process) and the churn writer (a task of the process)
        // live only as long as the process that made them.
        let process_bound = [
            CauseId::DiskFull,
            CauseId::RuntimeDesync,
            CauseId::DaemonsetHashChurn,
        ];
        for cause in CauseId::ALL {
            let drilled = pick(&scenarios, Some(cause), 0);
            if process_bound.contains(&cause) {
                let err = drilled.unwrap_err();
                assert!(err.contains("drillable causes"), "{err}");
            } else {
                assert_eq!(drilled.map(|s| s.cause), Ok(cause), "{cause}");
            }
        }
        for seed in 0..20 {
            assert!(drillable(pick(&scenarios, None, seed).unwrap()));
        }
    }
}
