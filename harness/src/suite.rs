//! A scenario suite run: one cluster for the whole run, one trial per scenario, and the
//! run's artefacts at the end (summary table, JUnit XML, scorecard; `crowd.json` in a
//! crowded run). The cluster test (`cargo test --test scenarios`) is a thin libtest-mimic
//! shell around this.
//!
//! A run is crowded (the default) or quiet ([`Mode`]): crowded, the shared-node
//! scenarios run together as one crowd ([`Suite::spawn_crowd`], `trial::crowd`).
//!
//! Once the cluster is up, setup reads every node's facts (`status.nodeInfo`: kubelet,
//! container runtime and kernel versions). A trial whose node does not meet its
//! scenario's `requires` is skipped with the reason ([`crate::scenario::Unmet`]): a
//! `skipped` row in the summary, `<skipped message=...>` in JUnit, a skipped line in the
//! scorecard; it joins no crowd.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams};

use crate::cluster::{self, Cluster, UpOptions};
use crate::detectors::Detector;
use crate::scenario::{NodeFacts, Scenario};
use crate::scorecard::{Case, Scorecard};
use crate::trial::{run_crowd_trial, run_trial, Crowd, Run, TrialEnv, TrialRecord, WorkerPool};

/// Environment variables a suite run reads.
pub const CLUSTER_ENV: &str = "TERMINUS_CLUSTER";
pub const KEEP_ENV: &str = "TERMINUS_KEEP_CLUSTER";
pub const DETECTORS_ENV: &str = "TERMINUS_DETECTORS";
/// `1`: every trial gets a cluster of its own, made and deleted around it (slow; for
/// measuring what sharing one cluster saves).
pub const PER_TRIAL_ENV: &str = "TERMINUS_CLUSTER_PER_TRIAL";
/// `1`: a quiet run: every shared-node trial on its own, as before crowding.
pub const QUIET_ENV: &str = "TERMINUS_QUIET";
/// At most this many dedicated workers (default [`MAX_DEDICATED_WORKERS`]): on a small
/// machine, fewer node-disrupting trials at once.
pub const DEDICATED_WORKERS_ENV: &str = "TERMINUS_DEDICATED_WORKERS";
/// The default cap on dedicated workers: a kind node costs about 300 MiB here, and the
/// suite's eight node-disrupting scenarios then run at once.
pub const MAX_DEDICATED_WORKERS: usize = 8;

/// How many dedicated workers a run of `wanted` node-disrupting trials gets: one each,
/// at least one, at most `TERMINUS_DEDICATED_WORKERS` (else [`MAX_DEDICATED_WORKERS`]).
pub fn dedicated_workers(wanted: usize) -> usize {
    let cap = std::env::var(DEDICATED_WORKERS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(MAX_DEDICATED_WORKERS);
    wanted.clamp(1, cap)
}

/// How the shared-node trials of a run meet each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// All shared-node scenarios stuck on the shared worker at once; each bundle holds
    /// its neighbours' faults and the diagnosis must not name them.
    Crowded,
    /// Each trial on a node with nothing else stuck on it (`TERMINUS_QUIET=1`).
    Quiet,
}

impl Mode {
    pub fn from_env() -> Mode {
        if std::env::var(QUIET_ENV).is_ok_and(|v| v == "1") {
            Mode::Quiet
        } else {
            Mode::Crowded
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Crowded => "crowded",
            Mode::Quiet => "quiet",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{0}")]
    Cluster(#[from] cluster::ClusterError),
    #[error("detector: {0}")]
    Detector(String),
    #[error("artefacts: {0}")]
    Io(#[from] std::io::Error),
    #[error("the cluster has {0} worker node(s); terminus needs 2 (one shared, one for node-disrupting trials)")]
    Workers(usize),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub struct Suite {
    pub env: Arc<TrialEnv>,
    pub cluster: Cluster,
    pub started: Instant,
    pub cluster_time: Duration,
    pub mode: Mode,
}

/// Where run artefacts go: `<workspace>/target/terminus/` (or `$CARGO_TARGET_DIR/terminus`).
pub fn artefacts_root() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("terminus"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/terminus"),
    }
}

/// The suite's cluster: `$TERMINUS_CLUSTER`, else `terminus-scenarios`.
pub fn cluster_name() -> String {
    std::env::var(CLUSTER_ENV).unwrap_or_else(|_| "terminus-scenarios".into())
}

impl Suite {
    /// Brings the cluster up (or reuses it) with one shared worker and `dedicated`
    /// workers for node-disrupting trials, picks the nodes, parses the detectors.
    pub async fn setup(echo: bool, dedicated: usize) -> Result<Suite, SuiteError> {
        Suite::setup_on(&cluster_name(), echo, dedicated).await
    }

    /// Like [`Suite::setup`], on the cluster `name`. A reused cluster keeps the workers
    /// it has (at least two): its dedicated pool is every worker but the shared one.
    pub async fn setup_on(name: &str, echo: bool, dedicated: usize) -> Result<Suite, SuiteError> {
        let started = Instant::now();
        let detectors = std::env::var(DETECTORS_ENV)
            .unwrap_or_else(|_| "builtin".into())
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|spec| {
                Detector::parse(spec.trim()).map_err(|e| SuiteError::Detector(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let opts = UpOptions {
            name: name.to_owned(),
            workers: 1 + dedicated.max(1) as u32,
            ..UpOptions::default()
        };
        let cluster = cluster::up(&opts).await?;
        // No registry: the workload image goes from the host's docker into every node.
        cluster::load_image(&cluster.name, crate::DEFAULT_WORKLOAD_IMAGE)?;
        let cluster_time = started.elapsed();
        let client = cluster.client().await?;
        let nodes: Api<KubeNode> = Api::all(client.clone());
        let listed = nodes.list(&ListParams::default()).await?.items;
        let facts: BTreeMap<String, NodeFacts> = listed
            .iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_facts(n)))
            .collect();
        let mut names: Vec<(bool, String)> = listed
            .into_iter()
            .map(|n| {
                let cp = n
                    .metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"));
                (cp, n.metadata.name.unwrap_or_default())
            })
            .collect();
        names.sort();
        let control_plane = names
            .iter()
            .find(|(cp, _)| *cp)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let workers: Vec<String> = names
            .into_iter()
            .filter(|(cp, _)| !cp)
            .map(|(_, n)| n)
            .collect();
        if workers.len() < 2 {
            return Err(SuiteError::Workers(workers.len()));
        }
        // The agent goes into every worker before any trial starts: otherwise every
        // trial of a crowd installs it on the shared worker at the same moment.
        let installs = workers.iter().map(|worker| async move {
            let installed = match crate::node::Node::connect(worker).await {
                Ok(node) => node.install_agent().await,
                Err(e) => Err(e),
            };
            if let Err(e) = installed {
                tracing::warn!("installing the node agent on {worker}: {e} (trials retry)");
            }
        });
        futures::future::join_all(installs).await;
        let run = Arc::new(Run::new(&artefacts_root())?);
        tracing::info!(
            "run {} on cluster {} (shared {}, dedicated {}), artefacts in {}",
            run.id,
            cluster.name,
            workers[0],
            workers[1..].join(" "),
            run.dir.display()
        );
        for worker in &workers[..2] {
            if let Some(f) = facts.get(worker) {
                tracing::info!(
                    "node {worker}: Kubernetes {}, {}, kernel {}",
                    f.kubelet,
                    f.runtime,
                    f.kernel
                );
            }
        }
        let env = TrialEnv {
            run,
            client,
            kubeconfig: cluster.kubeconfig.clone(),
            shared_node: workers[0].clone(),
            dedicated: WorkerPool::new(workers[1..].to_vec()),
            control_plane,
            detectors,
            echo,
            facts,
        };
        Ok(Suite {
            env: Arc::new(env),
            cluster,
            started,
            cluster_time,
            mode: Mode::from_env(),
        })
    }

    pub async fn trial(&self, scenario: &Scenario) -> TrialRecord {
        run_trial(&self.env, scenario).await
    }

    /// Starts every member of the crowd at once on the runtime (call inside it); each
    /// member's record is then awaited with [`CrowdRun::record`]. A member whose node
    /// does not meet its `requires` is not started: its record is a skip, and the others
    /// neither wait for it nor count it as a neighbour.
    pub fn spawn_crowd(&self, members: Vec<Scenario>) -> CrowdRun {
        let mut skipped = HashMap::new();
        let members: Vec<Scenario> = members
            .into_iter()
            .filter(|s| match self.env.unmet(s) {
                None => true,
                Some(unmet) => {
                    tracing::info!("{}: skipped: {unmet}", s.id);
                    let dir = self.env.run.dir.join(&s.id);
                    skipped.insert(s.id.clone(), TrialRecord::skipped(s, unmet, dir));
                    false
                }
            })
            .collect();
        let crowd = Crowd::new(&members);
        tracing::info!(
            "crowd of {} on {}: {}",
            members.len(),
            self.env.shared_node,
            crowd
                .members()
                .iter()
                .map(|m| m.scenario.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // After the last gate a member remedies, verifies and recovers: at most its
        // clear and recover deadlines twice each (remedy + verify, fault + namespace).
        let after_gates = members
            .iter()
            .map(|s| s.deadlines.clear * 2 + s.deadlines.recover * 2)
            .max()
            .unwrap_or_default();
        let deadline = crowd.collected_by() + after_gates + Duration::from_secs(60);
        let mut handles = HashMap::new();
        for s in members {
            let Some(member) = crowd.join(&s.id) else {
                continue;
            };
            let env = Arc::clone(&self.env);
            let id = s.id.clone();
            handles.insert(
                id,
                tokio::spawn(async move { run_crowd_trial(&env, &s, member).await }),
            );
        }
        CrowdRun {
            handles: Mutex::new(handles),
            skipped: Mutex::new(skipped),
            started: Instant::now(),
            deadline,
        }
    }

    /// Writes the summary table, JUnit XML and scorecard (and `crowd.json` in a crowded
    /// run); returns the summary text.
    pub fn finish(&self, records: &[TrialRecord]) -> std::io::Result<String> {
        let dir = &self.env.run.dir;
        let mut summary = format!("{}\n", self.mode_line(records));
        summary.push_str(&summary_table(
            records,
            self.started.elapsed(),
            self.cluster_time,
        ));
        let members: Vec<&TrialRecord> =
            records.iter().filter(|r| r.neighbours.is_some()).collect();
        if !members.is_empty() {
            summary.push_str(&crowd_table(&members));
            std::fs::write(dir.join("crowd.json"), crowd_json(&self.env, &members))?;
        }
        std::fs::write(dir.join("summary.txt"), &summary)?;
        std::fs::write(
            dir.join("summary.json"),
            summary_json(
                &self.env.run.id,
                self.mode,
                records,
                self.started.elapsed(),
                self.cluster_time,
            ),
        )?;
        std::fs::write(dir.join("junit.xml"), junit(&self.env.run.id, records))?;
        let mut card = Scorecard::new();
        for r in records {
            let case = Case::new(&r.scenario, Some(r.expected));
            if let Some(unmet) = r.result.skipped() {
                card.skip(&case, unmet.to_string());
            }
            for (detector, outcome) in &r.outcomes {
                card.record(detector, &case, outcome.clone());
            }
        }
        std::fs::write(dir.join("scorecard.txt"), card.render_text())?;
        Ok(format!("{summary}\n{}", card.render_text()))
    }

    fn mode_line(&self, records: &[TrialRecord]) -> String {
        let crowd = records.iter().filter(|r| r.neighbours.is_some()).count();
        match self.mode {
            Mode::Crowded => format!(
                "mode: crowded: {crowd} shared-node trial(s) stuck together on {} ({QUIET_ENV}=1 for quiet)",
                self.env.shared_node
            ),
            Mode::Quiet => format!("mode: quiet: each trial alone on its node ({QUIET_ENV}=1)"),
        }
    }

    /// Deletes the cluster unless it is kept for the next run (`TERMINUS_KEEP_CLUSTER=1`).
    pub fn teardown(&self) -> Result<(), SuiteError> {
        if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1") {
            tracing::info!("keeping cluster {} ({KEEP_ENV}=1)", self.cluster.name);
            return Ok(());
        }
        cluster::down(&self.cluster.name)?;
        Ok(())
    }
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into())
}

pub fn summary_table(records: &[TrialRecord], total: Duration, cluster: Duration) -> String {
    let mut out = format!(
        "{:<26} {:<22} {:<22} {:>9} {:>9} {:>9} {:>8}  {}\n",
        "SCENARIO", "EXPECTED", "DETECTED", "STUCK", "DETECT", "CLEAR", "TOTAL", "RESULT"
    );
    for r in records {
        let detected = r.reported.first().map(|(_, c)| c.as_str()).unwrap_or("-");
        out.push_str(&format!(
            "{:<26} {:<22} {:<22} {:>9} {:>9} {:>9} {:>7.1}s  {}\n",
            r.scenario,
            r.expected,
            detected,
            secs(r.time_to_stuck),
            secs(r.time_to_detect),
            secs(r.time_to_clear),
            r.total,
            match (r.result.skipped(), r.failure()) {
                (Some(unmet), _) => format!("skipped: {unmet}"),
                (None, None) => "pass".to_owned(),
                (None, Some(why)) => format!("FAIL: {why}"),
            }
        ));
    }
    out.push_str(&format!(
        "cluster ready in {:.1}s; run took {:.1}s\n",
        cluster.as_secs_f64(),
        total.as_secs_f64()
    ));
    out
}

/// The run's figures for tools (`ci/bench`): schema `terminus/run-summary/v1`, times in
/// seconds; a phase a trial did not reach is null.
pub fn summary_json(
    run: &str,
    mode: Mode,
    records: &[TrialRecord],
    total: Duration,
    cluster: Duration,
) -> String {
    let trials: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario,
                "expected": r.expected,
                "detected": r.reported.first().map(|(_, c)| c.as_str()),
                "result": match (r.result.skipped(), r.failure()) {
                    (Some(_), _) => "skipped",
                    (None, None) => "pass",
                    (None, Some(_)) => "fail",
                },
                "stuck": r.time_to_stuck,
                "detect": r.time_to_detect,
                "clear": r.time_to_clear,
                "total": r.total,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "schema": "terminus/run-summary/v1",
        "run": run,
        "mode": mode.name(),
        "cluster_ready": cluster.as_secs_f64(),
        "wall": total.as_secs_f64(),
        "trials": trials,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The crowd members' built-in diagnoses: precision is the share of the reported causes
/// that are the trial's own; runner-ups a neighbour caused are marked.
pub fn crowd_table(members: &[&TrialRecord]) -> String {
    let mut out = format!(
        "\n{:<28} {:<22} {:>9}  {}\n",
        "CROWD MEMBER", "EXPECTED", "PRECISION", "REPORTED (built-in, above threshold)"
    );
    for r in members {
        let neighbours = r.neighbours.as_deref().unwrap_or_default();
        let reported: Vec<String> = r
            .diagnoses
            .iter()
            .map(|(cause, confidence)| {
                let mark = if *cause == r.expected {
                    ""
                } else if neighbours.iter().any(|n| n.cause == *cause) {
                    " (neighbour)"
                } else {
                    " (other)"
                };
                format!("{cause} {confidence:.2}{mark}")
            })
            .collect();
        out.push_str(&format!(
            "{:<28} {:<22} {:>9}  {}\n",
            r.scenario,
            r.expected,
            precision(r).map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
            if reported.is_empty() {
                "none".to_owned()
            } else {
                reported.join(", ")
            }
        ));
    }
    out
}

/// The share of the reported causes that are the trial's own; None when nothing was.
fn precision(r: &TrialRecord) -> Option<f64> {
    let own = r.diagnoses.iter().filter(|(c, _)| *c == r.expected).count();
    (!r.diagnoses.is_empty()).then(|| own as f64 / r.diagnoses.len() as f64)
}

/// `crowd.json`: per member, what it expected, what the built-in detector reported and
/// who was stuck beside it: the input of a confusion matrix.
fn crowd_json(env: &TrialEnv, members: &[&TrialRecord]) -> String {
    let rows: Vec<serde_json::Value> = members
        .iter()
        .map(|r| {
            serde_json::json!({
                "scenario": r.scenario,
                "expected": r.expected,
                "reported": r.diagnoses.iter().map(|(cause, confidence)| {
                    serde_json::json!({ "cause": cause, "confidence": confidence })
                }).collect::<Vec<_>>(),
                "neighbours": r.neighbours,
                "result": match &r.result {
                    crate::trial::TrialResult::Outcome(o) => o.name(),
                    crate::trial::TrialResult::HarnessError(_) => "harness-error",
                },
            })
        })
        .collect();
    let doc = serde_json::json!({
        "run": env.run.id,
        "node": env.shared_node,
        "members": rows,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The records of a crowd's members, as the libtest trials ask for them.
pub struct CrowdRun {
    handles: Mutex<HashMap<String, tokio::task::JoinHandle<TrialRecord>>>,
    /// The records of the members not started (their `requires` is not met).
    skipped: Mutex<HashMap<String, TrialRecord>>,
    started: Instant,
    /// How long after the start the last member may still be running.
    deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CrowdError {
    #[error("{0} is not a member of the crowd (or its record was already taken)")]
    NotAMember(String),
    #[error("the crowd trial {0} ended without a record: {1}")]
    Task(String, String),
    #[error("timed out after {waited:?} waiting for the crowd trial {id} to end")]
    Timeout { id: String, waited: Duration },
}

impl CrowdRun {
    /// Waits for member `id`'s record (each is taken once).
    pub async fn record(&self, id: &str) -> Result<TrialRecord, CrowdError> {
        if let Some(record) = self.skipped.lock().ok().and_then(|mut s| s.remove(id)) {
            return Ok(record);
        }
        let handle = self
            .handles
            .lock()
            .ok()
            .and_then(|mut h| h.remove(id))
            .ok_or_else(|| CrowdError::NotAMember(id.to_owned()))?;
        let left = self.deadline.saturating_sub(self.started.elapsed());
        match tokio::time::timeout(left, handle).await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => Err(CrowdError::Task(id.to_owned(), e.to_string())),
            Err(_) => Err(CrowdError::Timeout {
                id: id.to_owned(),
                waited: self.started.elapsed(),
            }),
        }
    }
}

/// What a node reports about itself; empty strings where it reports nothing (a
/// requirement on those is then unmet, never met by default).
fn node_facts(node: &KubeNode) -> NodeFacts {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    NodeFacts {
        kubelet: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        runtime: info
            .map(|i| i.container_runtime_version.clone())
            .unwrap_or_default(),
        kernel: info.map(|i| i.kernel_version.clone()).unwrap_or_default(),
    }
}

fn junit(run_id: &str, records: &[TrialRecord]) -> String {
    use quick_junit::{Report, TestCase, TestSuite};
    let mut report = Report::new(format!("terminus {run_id}"));
    let mut suite = TestSuite::new("scenarios");
    for r in records {
        // A wrong verdict is a <failure>, a broken harness an <error>, a skip <skipped>.
        let mut case = TestCase::new(
            format!("scenarios/{}.yaml", r.scenario),
            r.result.junit_status(),
        );
        case.set_time(Duration::from_secs_f64(r.total));
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot render JUnit: {e} -->"))
}

impl Suite {
    /// The smoke trial: a pod is created, runs, is deleted and goes away. Proves the
    /// cluster, the offline images and the delete path work before any fault is blamed.
    pub async fn smoke(&self) -> Result<Duration, String> {
        use k8s_openapi::api::core::v1::{Namespace, Pod};
        use kube::api::{DeleteParams, PostParams};
        let started = Instant::now();
        let env = &self.env;
        let ns = format!("smoke-{}", env.run.id);
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &crate::workload::namespace(&ns, &env.run.id, "smoke"),
            )
            .await
            .map_err(|e| format!("creating namespace {ns}: {e}"))?;
        let result = async {
            crate::namespace::wait_service_account(&env.client, &ns, Duration::from_secs(60))
                .await?;
            let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "smoke", "labels": crate::workload::labels(&env.run.id, "smoke") },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{ "name": "main", "image": crate::DEFAULT_WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"] }]
                }
            }))
            .map_err(|e| e.to_string())?;
            pods.create(&PostParams::default(), &pod).await.map_err(|e| format!("creating pod smoke: {e}"))?;
            crate::wait::until("pod smoke to be Running", Duration::from_secs(90), || async {
                let p = pods.get("smoke").await.map_err(|e| e.to_string())?;
                let phase = p.status.and_then(|s| s.phase);
                Ok::<_, String>(if phase.as_deref() == Some("Running") {
                    crate::wait::Check::Done(())
                } else {
                    crate::wait::Check::Pending(format!("phase {phase:?}"))
                })
            })
            .await
            .map_err(|e| e.to_string())?;
            pods.delete("smoke", &DeleteParams::default()).await.map_err(|e| e.to_string())?;
            crate::wait::pod_deleted(&env.client, &ns, "smoke", Duration::from_secs(60))
                .await
                .map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        }
        .await;
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, NodeFacts};

    fn scenario_requiring(containerd: &str) -> Scenario {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/runtime-desync.yaml");
        let source = std::fs::read_to_string(&path).expect("a shipped scenario");
        let source = source.replace(
            "  kubernetes: \">=1.30\"\n",
            &format!("  kubernetes: \">=1.30\"\n  containerd: \"{containerd}\"\n"),
        );
        scenario::parse(&path, &source).expect("valid")
    }

    /// A worker of the default cell (k1.37-cd2.1) as the API shows it: the kernel is
    /// this machine's; the ids `status.nodeInfo` requires are left empty.
    const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: terminus-scenarios-worker2
status:
  nodeInfo:
    architecture: amd64
    bootID: ""
    containerRuntimeVersion: containerd://2.1.9
    kernelVersion: 6.18.44-fc-v669
    kubeProxyVersion: ""
    kubeletVersion: v1.37.2
    machineID: ""
    operatingSystem: linux
    osImage: Debian GNU/Linux forky/sid
    systemUUID: ""
"#;

    fn skipped_record() -> TrialRecord {
        let node: KubeNode = serde_yaml_ng::from_str(NODE).expect("a node");
        let facts = node_facts(&node);
        assert_eq!(
            facts,
            NodeFacts {
                kubelet: "v1.37.2".into(),
                runtime: "containerd://2.1.9".into(),
                kernel: "6.18.44-fc-v669".into(),
            }
        );
        let s = scenario_requiring("<2");
        let unmet = s
            .requires
            .check(&facts)
            .expect_err("containerd 2.1.9 is not <2");
        TrialRecord::skipped(&s, unmet, PathBuf::from("/nonexistent"))
    }

    #[test]
    fn junit_says_skipped_with_the_reason_escaped() {
        let xml = junit("r1", &[skipped_record()]);
        assert!(
            xml.contains(
                r#"<skipped message="requires.containerd &quot;&lt;2&quot; but the node runs containerd 2.1.9"/>"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"name="scenarios/runtime-desync.yaml""#),
            "{xml}"
        );
        assert!(
            !xml.contains("<failure") && !xml.contains("<error"),
            "{xml}"
        );
        // And it reads back as a skip with the same reason (what `terminus matrix` does).
        let report = quick_junit::Report::deserialize_from_str(&xml).expect("valid JUnit");
        let case = &report.test_suites[0].test_cases[0];
        match &case.status {
            quick_junit::TestCaseStatus::Skipped { message, .. } => assert_eq!(
                message.as_deref(),
                Some(r#"requires.containerd "<2" but the node runs containerd 2.1.9"#)
            ),
            other => panic!("not a skip: {other:?}"),
        }
    }

    #[test]
    fn the_summary_row_says_skipped_and_why() {
        let table = summary_table(&[skipped_record()], Duration::ZERO, Duration::ZERO);
        let row = table
            .lines()
            .find(|l| l.starts_with("runtime-desync"))
            .expect("a row");
        assert!(
            row.ends_with(
                r#"skipped: requires.containerd "<2" but the node runs containerd 2.1.9"#
            ),
            "{table}"
        );
        assert!(!row.contains("pass") && !row.contains("FAIL"), "{row}");
    }

    #[test]
    fn a_node_that_reports_nothing_meets_no_version_range() {
        let node: KubeNode =
            serde_yaml_ng::from_str("apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n")
                .expect("a node");
        let facts = node_facts(&node);
        assert_eq!(facts, NodeFacts::default());
        let unmet = scenario_requiring(">=1")
            .requires
            .check(&facts)
            .expect_err("unmet");
        assert_eq!(unmet.requirement, scenario::Requirement::Runtime);
        // The same range is met by the node that reports containerd 2.1.9.
        let node: KubeNode = serde_yaml_ng::from_str(NODE).expect("a node");
        assert_eq!(
            scenario_requiring(">=2").requires.check(&node_facts(&node)),
            Ok(())
        );
    }
}
