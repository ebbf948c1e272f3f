//! A scenario suite run: one cluster for the whole run, one trial per scenario, and the
//! run's artefacts at the end (summary table, JUnit XML, scorecard). The cluster test
//! (`cargo test --test scenarios`) is a thin libtest-mimic shell around this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::api::{Api, ListParams};

use crate::cluster::{self, Cluster, UpOptions};
use crate::detectors::Detector;
use crate::scenario::Scenario;
use crate::scorecard::{Case, Scorecard};
use crate::trial::{run_trial, Run, TrialEnv, TrialRecord};

/// Environment variables a suite run reads.
pub const CLUSTER_ENV: &str = "TERMINUS_CLUSTER";
pub const KEEP_ENV: &str = "TERMINUS_KEEP_CLUSTER";
pub const DETECTORS_ENV: &str = "TERMINUS_DETECTORS";
/// `1`: every trial gets a cluster of its own, made and deleted around it (slow; for
/// measuring what sharing one cluster saves).
pub const PER_TRIAL_ENV: &str = "TERMINUS_CLUSTER_PER_TRIAL";

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
}

/// Where run artefacts go: `<workspace>/target/terminus/` (or `$CARGO_TARGET_DIR/terminus`).
pub fn artefacts_root() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("terminus"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/terminus"),
    }
}

impl Suite {
    /// Brings the cluster up (or reuses it), picks the nodes, parses the detectors.
    pub async fn setup(echo: bool) -> Result<Suite, SuiteError> {
        let name = std::env::var(CLUSTER_ENV).unwrap_or_else(|_| "terminus-scenarios".into());
        Suite::setup_on(&name, echo).await
    }

    /// Like [`Suite::setup`], on the cluster `name`.
    pub async fn setup_on(name: &str, echo: bool) -> Result<Suite, SuiteError> {
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
            workers: 2,
            ..UpOptions::default()
        };
        let cluster = cluster::up(&opts).await?;
        // No registry: the workload image goes from the host's docker into every node.
        cluster::load_image(&cluster.name, crate::DEFAULT_WORKLOAD_IMAGE)?;
        let cluster_time = started.elapsed();
        let client = cluster.client().await?;
        let nodes: Api<KubeNode> = Api::all(client.clone());
        let mut names: Vec<(bool, String)> = nodes
            .list(&ListParams::default())
            .await?
            .items
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
        let run = Arc::new(Run::new(&artefacts_root())?);
        tracing::info!(
            "run {} on cluster {} ({} + {}), artefacts in {}",
            run.id,
            cluster.name,
            workers[0],
            workers[1],
            run.dir.display()
        );
        let env = TrialEnv {
            run,
            client,
            kubeconfig: cluster.kubeconfig.clone(),
            shared_node: workers[0].clone(),
            dedicated_node: workers[1].clone(),
            dedicated_lock: tokio::sync::Mutex::new(()),
            control_plane,
            detectors,
            echo,
        };
        Ok(Suite {
            env: Arc::new(env),
            cluster,
            started,
            cluster_time,
        })
    }

    pub async fn trial(&self, scenario: &Scenario) -> TrialRecord {
        run_trial(&self.env, scenario).await
    }

    /// Writes the summary table, JUnit XML and scorecard; returns the summary text.
    pub fn finish(&self, records: &[TrialRecord]) -> std::io::Result<String> {
        let dir = &self.env.run.dir;
        let summary = summary_table(records, self.started.elapsed(), self.cluster_time);
        std::fs::write(dir.join("summary.txt"), &summary)?;
        std::fs::write(dir.join("junit.xml"), junit(&self.env.run.id, records))?;
        let mut card = Scorecard::new();
        for r in records {
            let case = Case::new(&r.scenario, Some(r.expected));
            for (detector, outcome) in &r.outcomes {
                card.record(detector, &case, outcome.clone());
            }
        }
        std::fs::write(dir.join("scorecard.txt"), card.render_text())?;
        Ok(format!("{summary}\n{}", card.render_text()))
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
            match &r.failure() {
                None => "pass".to_owned(),
                Some(why) => format!("FAIL: {why}"),
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
