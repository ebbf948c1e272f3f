//! On-call drills: `terminus drill` induces one cause on a kind cluster, deletes the
//! pod, waits until it is stuck and prints only what a page would say. The trainee
//! investigates with whatever they like, then `terminus drill answer CAUSE` says right
//! or wrong, shows the proof and the remedy, clears the pod and cleans up; `terminus
//! drill stop` cleans up at any time.
//!
//! A drill outlives the process that started it, so only faults whose state can be
//! persisted are drilled: node faults in the agent's ledger (undone by `terminus-agent
//! gc --run LEDGER`) and a finalizer (removed by a patch). The state file records what
//! cleanup needs and is written before anything is created.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::cause::CauseId;
use crate::cluster::{self, Cluster, UpOptions};
use crate::fault::{self, Applied, FaultContext};
use crate::node::{Node, AGENT_PATH};
use crate::probe::Target;
use crate::scenario::{self, FaultSpec, KubeletStop, NodeUse, PodOutcome, Scenario, WorkloadKind};
use crate::wait::wait_for;
use crate::workload;

const EXIT_OK: u8 = 0;
const EXIT_WRONG: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;
const EXIT_INFRA: u8 = 3;
/// `terminus drill` interrupted by Ctrl-C (after cleaning up).
const EXIT_INTERRUPTED: u8 = 130;

/// What cleanup and `answer` need, written before anything is created.
#[derive(Debug, Serialize, Deserialize)]
pub struct DrillState {
    pub cluster: String,
    pub scenario: String,
    pub cause: CauseId,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The agent ledger the node fault is recorded under (none for a finalizer).
    pub ledger: Option<String>,
    /// The finalizer that holds the pod (finalizer drills).
    pub finalizer: Option<String>,
    /// `systemctl stop kubelet` drills restart kubelet on recover.
    pub kubelet_stopped: bool,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The fault's own record, saved as soon as `apply` returns it: cleanup undoes
    /// exactly this. Absent while apply runs (or in a state file of an older terminus);
    /// then cleanup works from `ledger` / `finalizer`, which were saved before acting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
}

impl DrillState {
    /// A copy without the fault record (which owns no clonable handle): the page, the
    /// answer and the induce phase work on copies; the record lives in the state file.
    fn without_record(&self) -> DrillState {
        DrillState {
            cluster: self.cluster.clone(),
            scenario: self.scenario.clone(),
            cause: self.cause,
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            node: self.node.clone(),
            ledger: self.ledger.clone(),
            finalizer: self.finalizer.clone(),
            kubelet_stopped: self.kubelet_stopped,
            started_at: self.started_at,
            deleted_at: self.deleted_at,
            applied: None,
        }
    }
}

/// `$TERMINUS_DRILL_STATE`, else `<state dir>/drills/current.json`.
pub fn state_path() -> PathBuf {
    std::env::var_os("TERMINUS_DRILL_STATE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || cluster::state_dir().join("drills").join("current.json"),
            PathBuf::from,
        )
}

fn save(state: &DrillState) -> Result<(), String> {
    let path = state_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text + "\n").map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn load() -> Result<Option<DrillState>, String> {
    let path = state_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} is not a drill state file: {e}; remove it by hand",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Whether a scenario can be drilled: a plain pod and a fault whose state survives the
/// CLI process (agent ledger or finalizer).
pub fn drillable(s: &Scenario) -> bool {
    s.workload.kind == WorkloadKind::Pod
        && s.observe.pod == PodOutcome::StaysTerminating
        && matches!(
            s.fault,
            FaultSpec::Finalizer { .. }
                | FaultSpec::ImmutableFile { .. }
                | FaultSpec::FreezeRuntime { .. }
                | FaultSpec::HoldMount { .. }
                | FaultSpec::StopKubelet { .. }
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

/// The page: nothing but the symptom.
pub fn page(state: &DrillState, now: chrono::DateTime<chrono::Utc>) -> String {
    let since = state.deleted_at.unwrap_or(state.started_at);
    let secs = (now - since).num_seconds().max(0);
    let how_long = if secs < 120 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", secs / 60)
    };
    format!(
        "PAGE: pod {} in namespace {} has been Terminating for {how_long}",
        state.pod, state.namespace
    )
}

async fn open_client(name: &str) -> Result<Client, String> {
    let c = Cluster::open(name).map_err(|e| e.to_string())?;
    c.client().await.map_err(|e| e.to_string())
}

/// Why a drill could not start: the exit code and the message.
struct Refused(u8, String);

fn bad_input(e: impl std::fmt::Display) -> Refused {
    Refused(EXIT_BAD_INPUT, e.to_string())
}

fn infra(e: impl std::fmt::Display) -> Refused {
    Refused(EXIT_INFRA, e.to_string())
}

/// A drill about to be induced: its cluster, scenario and saved state.
struct Prepared {
    cluster: cluster::Cluster,
    client: Client,
    scenario: Scenario,
    state: DrillState,
}

/// `terminus drill`.
pub async fn start(cluster_name: &str, cause: Option<CauseId>, scenarios_dir: &Path) -> u8 {
    let Prepared {
        cluster,
        client,
        scenario: s,
        state,
    } = match prepare(cluster_name, cause, scenarios_dir).await {
        Ok(p) => p,
        Err(Refused(code, message)) => {
            eprintln!("error: {message}");
            return code;
        }
    };
    tracing::info!(
        "setting up the drill on cluster {} (this takes up to a minute or two)…",
        state.cluster
    );
    let outcome = tokio::select! {
        r = induce(&client, &s, state.without_record()) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    match outcome {
        Some(Ok(state)) => {
            println!("{}", page(&state, chrono::Utc::now()));
            println!(
                "(cluster {}: KUBECONFIG={}; when you know the cause: terminus drill answer CAUSE; to give up: terminus drill stop)",
                state.cluster,
                cluster.kubeconfig.display()
            );
            EXIT_OK
        }
        Some(Err(e)) => {
            eprintln!("error: {e}; cleaning up");
            let _ = cleanup(&client, saved_or(state)).await;
            EXIT_INFRA
        }
        None => {
            tracing::warn!("interrupted; cleaning up the drill");
            let code = match cleanup(&client, saved_or(state)).await {
                Ok(()) => EXIT_INTERRUPTED,
                Err(e) => {
                    eprintln!("error: {e}; run `terminus drill stop` to retry");
                    EXIT_INFRA
                }
            };
            code
        }
    }
}

/// Everything before the fault: no drill running, a scenario, the cluster, the node, the
/// state saved (before anything is created, so any process can clean up).
async fn prepare(
    cluster_name: &str,
    cause: Option<CauseId>,
    scenarios_dir: &Path,
) -> Result<Prepared, Refused> {
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
        kubelet_stopped: matches!(
            s.fault,
            FaultSpec::StopKubelet {
                how: KubeletStop::Stop
            }
        ),
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

/// Namespace, pod Running, fault, delete, stuck. Returns the state with the deletion time.
async fn induce(
    client: &Client,
    s: &Scenario,
    mut state: DrillState,
) -> Result<DrillState, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &workload::namespace(&state.namespace, &state.namespace, &s.id),
        )
        .await
        .map_err(|e| format!("creating namespace {}: {e}", state.namespace))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &state.namespace);
    pods.create(
        &PostParams::default(),
        &workload::pod(
            s,
            &state.pod,
            &state.namespace,
            &state.node,
            &state.namespace,
        ),
    )
    .await
    .map_err(|e| format!("creating pod {}: {e}", state.pod))?;
    let running = wait_running(&pods, &state.pod, s.deadlines.ready).await?;
    let target = Target {
        namespace: state.namespace.clone(),
        pod: state.pod.clone(),
        uid: running.metadata.uid.clone(),
        node: Some(state.node.clone()),
        container_ids: crate::pods::container_ids(&running),
    };
    let node = Node::connect(&state.node)
        .await
        .map_err(|e| e.to_string())?;
    let ledger = state
        .ledger
        .clone()
        .unwrap_or_else(|| state.namespace.clone());
    let cx = FaultContext {
        client,
        node: &node,
        ledger: &ledger,
        target: &target,
        deadline: s.deadlines.fault,
    };
    let applied = tokio::time::timeout(
        s.deadlines.fault + Duration::from_secs(10),
        fault::apply(&s.fault, &cx),
    )
    .await
    .map_err(|_| {
        format!(
            "applying the fault did not finish within {:?}",
            s.deadlines.fault
        )
    })?
    .map_err(|e| format!("applying the fault: {e}"))?;
    // The record goes to the state file at once: any later process undoes exactly it.
    state.applied = Some(applied);
    save(&state)?;
    pods.delete(&state.pod, &DeleteParams::default())
        .await
        .map_err(|e| format!("deleting pod {}: {e}", state.pod))?;
    state.deleted_at = Some(chrono::Utc::now());
    save(&state)?;
    let state = state.without_record();
    wait_stuck(&pods, &state.pod, s).await?;
    Ok(state)
}

/// The state as last saved (with the fault record once apply returned it), else `state`.
fn saved_or(state: DrillState) -> DrillState {
    load().ok().flatten().unwrap_or(state)
}

/// Waits until the drill's pod runs every container.
async fn wait_running(pods: &Api<Pod>, name: &str, deadline: Duration) -> Result<Pod, String> {
    wait_for(&format!("pod {} to be Running", name), deadline, || {
        let pods = pods.clone();
        let name = name.to_owned();
        async move {
            let p = pods.get(&name).await.map_err(|e| e.to_string())?;
            let up = p
                .status
                .as_ref()
                .and_then(|st| st.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .all(|c| c.state.as_ref().is_some_and(|x| x.running.is_some()))
                });
            Ok(up.then_some(p))
        }
    })
    .await
}

/// Stuck: the pod is still there `observe.for` after its grace period ended.
async fn wait_stuck(pods: &Api<Pod>, name: &str, s: &Scenario) -> Result<(), String> {
    let grace = s.workload.grace_period;
    let hold = grace + s.observe.hold;
    let deleted = tokio::time::Instant::now();
    wait_for(
        &format!("pod {} to stay Terminating for {:?}", name, hold),
        hold + s.deadlines.stuck,
        || {
            let pods = pods.clone();
            let name = name.to_owned();
            async move {
                match pods.get_opt(&name).await.map_err(|e| e.to_string())? {
                    None => Err(format!("pod {name} went away: the fault did not hold it")),
                    Some(_) if deleted.elapsed() >= hold => Ok(Some(())),
                    Some(_) => Ok(None),
                }
            }
        },
    )
    .await
}

/// Recover the fault, delete the namespace, remove the state file. Idempotent.
async fn cleanup(client: &Client, mut state: DrillState) -> Result<(), String> {
    let mut errors = Vec::new();
    match state.applied.take() {
        Some(applied) => recover_record(client, applied, &mut errors).await,
        None => recover_from_names(client, &state, &mut errors).await,
    }
    match crate::namespace::delete(client, &state.namespace, Duration::from_secs(120)).await {
        Ok(()) => tracing::info!("namespace {} deleted", state.namespace),
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        match std::fs::remove_file(state_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("removing {}: {e}", state_path().display())),
        }
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Undo the fault's own record.
async fn recover_record(client: &Client, applied: Applied, errors: &mut Vec<String>) {
    let what = applied.describe();
    match fault::recover(client, applied).await {
        Ok(msg) => tracing::info!("{msg}"),
        // The pod (and its finalizer) is already gone.
        Err(fault::FaultError::Kube(kube::Error::Api(e))) if e.code == 404 => {}
        Err(e) => errors.push(format!("recovering {what}: {e}")),
    }
}

/// Undo a fault whose record never reached the state file (apply was interrupted): by
/// the ledger and finalizer names saved before it acted.
async fn recover_from_names(client: &Client, state: &DrillState, errors: &mut Vec<String>) {
    if let Some(name) = &state.finalizer {
        let applied = Applied::Finalizer {
            namespace: state.namespace.clone(),
            pod: state.pod.clone(),
            name: name.clone(),
        };
        match fault::recover(client, applied).await {
            Ok(msg) => tracing::info!("{msg}"),
            Err(fault::FaultError::Kube(kube::Error::Api(e))) if e.code == 404 => {}
            Err(e) => errors.push(format!("removing finalizer {name}: {e}")),
        }
    }
    if let Some(ledger) = &state.ledger {
        match Node::connect(&state.node).await {
            Err(e) => errors.push(e.to_string()),
            Ok(node) => {
                let installed = node
                    .exec_raw(&["test", "-x", AGENT_PATH], Duration::from_secs(10))
                    .await
                    .is_ok_and(|o| o.code == 0);
                if installed || state.kubelet_stopped {
                    let applied = Applied::NodeLedger {
                        node: node.name.clone(),
                        ledger: ledger.clone(),
                        what: state.scenario.clone(),
                        kubelet_stopped: state.kubelet_stopped,
                        debris: Vec::new(),
                    };
                    match fault::recover(client, applied).await {
                        Ok(msg) => tracing::info!("{msg}"),
                        Err(e) => errors.push(format!("recovering ledger {ledger}: {e}")),
                    }
                }
            }
        }
    }
}

fn current() -> Result<DrillState, u8> {
    match load() {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            eprintln!(
                "error: no drill is running ({} does not exist); start one with `terminus drill`",
                state_path().display()
            );
            Err(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(EXIT_BAD_INPUT)
        }
    }
}

/// `terminus drill status`: the page again.
pub fn status() -> u8 {
    match current() {
        Ok(state) => {
            println!("{}", page(&state, chrono::Utc::now()));
            EXIT_OK
        }
        Err(code) => code,
    }
}

/// `terminus drill stop`.
pub async fn stop() -> u8 {
    let state = match current() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let client = match open_client(&state.cluster).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cluster {}: {e}", state.cluster);
            return EXIT_INFRA;
        }
    };
    let (cause, scenario) = (state.cause, state.scenario.clone());
    match cleanup(&client, state).await {
        Ok(()) => {
            println!(
                "drill stopped: the cause was {cause} (scenario {scenario}); everything it made is removed"
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}; run `terminus drill stop` again, or `terminus gc`");
            EXIT_INFRA
        }
    }
}

/// `terminus drill answer CAUSE`.
pub async fn answer(given: &str) -> u8 {
    let Ok(given) = given.parse::<CauseId>() else {
        eprintln!(
            "error: `{given}` is not a cause id; one of: {}",
            CauseId::ALL
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return EXIT_BAD_INPUT;
    };
    let state = match current() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let client = match open_client(&state.cluster).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cluster {}: {e}", state.cluster);
            return EXIT_INFRA;
        }
    };
    let right = given == state.cause;
    if right {
        println!("RIGHT: the pod was held by {}", state.cause);
    } else {
        println!(
            "WRONG: you said {given}; the pod was held by {}",
            state.cause
        );
    }
    let mut failure = None;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &state.namespace);
    match pods.get_opt(&state.pod).await {
        Ok(None) => println!("\nThe pod is already gone: your remedy cleared it."),
        Err(e) => failure = Some(format!("reading the pod: {e}")),
        Ok(Some(_)) => {
            if let Err(e) = prove_and_remedy(&client, &state).await {
                failure = Some(e);
            }
        }
    }
    let namespace = state.namespace.clone();
    match cleanup(&client, state).await {
        Ok(()) => println!("cleaned up: fault recovered, namespace {namespace} deleted"),
        Err(e) => {
            eprintln!("error: cleanup: {e}; run `terminus drill stop` to retry");
            return EXIT_INFRA;
        }
    }
    if let Some(e) = failure {
        eprintln!("error: {e}");
        return EXIT_INFRA;
    }
    if right {
        EXIT_OK
    } else {
        EXIT_WRONG
    }
}

async fn prove_and_remedy(client: &Client, state: &DrillState) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("terminus-drill-{}", state.namespace));
    let _ = std::fs::remove_dir_all(&dir);
    let collected = crate::live::collect(
        client,
        &state.namespace,
        &state.pod,
        &dir,
        &crate::live::NodeAccess::Auto,
        &crate::live::AgentPodOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let evidence = crate::evidence::Evidence::load(&dir);
    let report = crate::detect::diagnose(&evidence);
    println!("\nThe evidence:\n");
    print!("{}", crate::report::to_text(&evidence, &report));
    let result = match report.diagnoses.iter().find(|d| d.cause == state.cause) {
        None => Err(format!(
            "terminus's own detector did not name {} from this evidence; the fault is recovered instead",
            state.cause
        )),
        Some(d) => {
            println!("\nApplying the remedy:");
            match crate::live::apply_remedy(None, &collected, d).await {
                Ok(lines) => {
                    for l in lines {
                        println!("  {l}");
                    }
                    let gone = crate::live::wait_gone(client, &collected.target, Duration::from_secs(120)).await;
                    match gone {
                        Ok(()) => {
                            println!("pod {}/{} is gone", state.namespace, state.pod);
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
            kubelet_stopped: false,
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
    fn only_persistable_faults_are_drilled() {
        let scenarios = scenario::load_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios"
        )))
        .unwrap();
        for s in &scenarios {
            let persistable = matches!(
                s.fault,
                FaultSpec::Finalizer { .. }
                    | FaultSpec::ImmutableFile { .. }
                    | FaultSpec::FreezeRuntime { .. }
                    | FaultSpec::HoldMount { .. }
                    | FaultSpec::StopKubelet { .. }
            );
            assert_eq!(
                drillable(s),
                persistable
                    && s.workload.kind == WorkloadKind::Pod
                    && s.observe.pod == PodOutcome::StaysTerminating,
                "{}",
                s.id
            );
            assert!(!matches!(s.fault, FaultSpec::AffinityChurn { .. }) || !drillable(s));
        }
        assert_eq!(
            pick(&scenarios, Some(CauseId::Finalizer), 0).unwrap().cause,
            CauseId::Finalizer
        );
        let err = pick(&scenarios, Some(CauseId::DaemonsetHashChurn), 0).unwrap_err();
        assert!(err.contains("drillable causes"), "{err}");
        for seed in 0..20 {
            assert!(drillable(pick(&scenarios, None, seed).unwrap()));
        }
    }
}
