//! Faults as apply/recover pairs (Chaos Mesh's shape). `apply` returns an [`Applied`]
//! record of exactly what it did; `recover` undoes that record and nothing else, is
//! idempotent, and is called on every path out of a trial. Node faults go through the
//! node agent, which also writes them to a ledger inside the node before acting, so
//! `terminus gc` can undo them after the harness itself was killed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::{Node, NodeError};
use crate::probe::Target;
use crate::scenario::{FaultSpec, FreezeTarget, HoldVia, ImmutableLocation, KubeletStop};

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Precondition(String),
    #[error("fault `{0}` is not implemented on this runtime yet")]
    Unsupported(&'static str),
}

/// Everything a fault needs to know about where it acts.
pub struct FaultContext<'a> {
    pub client: &'a Client,
    /// The node the workload runs on.
    pub node: &'a Node,
    /// The agent ledger key: one per trial, so recovering one trial never touches
    /// another trial's faults on a shared node.
    pub ledger: &'a str,
    pub target: &'a Target,
    pub deadline: Duration,
}

/// What `apply` did; `recover` undoes exactly this.
pub enum Applied {
    /// A finalizer on the pod that no controller owns.
    Finalizer {
        namespace: String,
        pod: String,
        name: String,
    },
    /// Node faults recorded in the agent's ledger under `ledger` (immutable flags,
    /// frozen processes, fillers, mount holders). `what` is for the timeline.
    NodeLedger {
        node: Node,
        ledger: String,
        what: String,
        kubelet_stopped: bool,
        /// Paths the fault made debris of: the node is clean only once they are gone.
        debris: Vec<String>,
    },
    /// A writer task that keeps re-sorting a DaemonSet's affinity terms.
    Churn {
        stop: watch::Sender<bool>,
        writer: JoinHandle<u64>,
        daemonset: String,
    },
}

impl Applied {
    /// Paths that must be gone before the node counts as clean.
    pub fn debris(&self) -> Vec<String> {
        match self {
            Applied::NodeLedger { debris, .. } => debris.clone(),
            _ => Vec::new(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Applied::Finalizer { name, pod, .. } => format!("finalizer {name} on pod {pod}"),
            Applied::NodeLedger { what, node, .. } => format!("{what} on node {}", node.name),
            Applied::Churn { daemonset, .. } => {
                format!("affinity re-sorting writer on daemonset {daemonset}")
            }
        }
    }
}

pub async fn apply(spec: &FaultSpec, cx: &FaultContext<'_>) -> Result<Applied, FaultError> {
    let t = cx.target;
    let ledger = cx.ledger;
    let node_fault = |what: String| Applied::NodeLedger {
        node: cx.node.clone(),
        ledger: ledger.to_owned(),
        what,
        kubelet_stopped: false,
        debris: Vec::new(),
    };
    match spec {
        FaultSpec::Finalizer { name } => {
            let pods: Api<Pod> = Api::namespaced(cx.client.clone(), &t.namespace);
            let pod = pods.get(&t.pod).await?;
            let has = pod.metadata.finalizers.iter().flatten().any(|f| f == name);
            if !has {
                let mut finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
                finalizers.push(name.clone());
                pods.patch(
                    &t.pod,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })),
                )
                .await?;
            }
            Ok(Applied::Finalizer {
                namespace: t.namespace.clone(),
                pod: t.pod.clone(),
                name: name.clone(),
            })
        }
        FaultSpec::ImmutableFile { location, path } => {
            cx.node.install_agent().await?;
            let file = match location {
                ImmutableLocation::Volume => {
                    let uid = t
                        .uid
                        .as_deref()
                        .ok_or_else(|| FaultError::Precondition("the pod has no uid yet".into()))?;
                    format!(
                        "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/data/{path}"
                    )
                }
                ImmutableLocation::Rootfs => format!("{}/{path}", upper_dir(cx).await?),
            };
            wait_for_file(cx.node, &file, cx.deadline).await?;
            cx.node
                .agent(
                    &["immutable", "set", &file, "--run", ledger],
                    Duration::from_secs(30),
                )
                .await?;
            // The flagged file must go; in the rootfs case, with the whole snapshot
            // directory containerd leaks around it.
            let debris = match location {
                ImmutableLocation::Volume => vec![file.clone()],
                ImmutableLocation::Rootfs => vec![file.rsplit_once("/fs/").map(|(dir, _)| dir.to_owned()).unwrap_or_else(|| file.clone())],
            };
            Ok(Applied::NodeLedger {
                node: cx.node.clone(),
                ledger: ledger.to_owned(),
                what: format!("immutable flag on {file}"),
                kubelet_stopped: false,
                debris,
            })
        }
        FaultSpec::FreezeRuntime { target } => {
            cx.node.install_agent().await?;
            let out = match target {
                FreezeTarget::Shim => {
                    let id = t.container_ids.first().ok_or_else(|| {
                        FaultError::Precondition("no container id to find the shim of".into())
                    })?;
                    cx.node
                        .agent(
                            &["freeze", "--shim-of", id, "--run", ledger],
                            Duration::from_secs(30),
                        )
                        .await?
                }
                FreezeTarget::Containerd => {
                    cx.node
                        .agent(
                            &["freeze", "--name", "containerd", "--run", ledger],
                            Duration::from_secs(30),
                        )
                        .await?
                }
            };
            Ok(node_fault(format!("SIGSTOP {target:?}: {}", out.trim())))
        }
        FaultSpec::StopKubelet { how } => {
            cx.node.install_agent().await?;
            match how {
                KubeletStop::Freeze => {
                    let out = cx
                        .node
                        .agent(
                            &["freeze", "--name", "kubelet", "--run", ledger],
                            Duration::from_secs(30),
                        )
                        .await?;
                    Ok(node_fault(format!("SIGSTOP kubelet: {}", out.trim())))
                }
                KubeletStop::Stop => {
                    cx.node
                        .exec(&["systemctl", "stop", "kubelet"], Duration::from_secs(60))
                        .await?;
                    Ok(Applied::NodeLedger {
                        node: cx.node.clone(),
                        ledger: ledger.to_owned(),
                        what: "systemctl stop kubelet".into(),
                        kubelet_stopped: true,
                        debris: Vec::new(),
                    })
                }
            }
        }
        FaultSpec::HoldMount { via } => {
            cx.node.install_agent().await?;
            let id = t.container_ids.first().ok_or_else(|| {
                FaultError::Precondition("no container id to hold the rootfs of".into())
            })?;
            let rootfs =
                format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/rootfs");
            let via = match via {
                HoldVia::Cwd => "cwd",
                HoldVia::Fd => "fd",
                HoldVia::Bind => "bind",
            };
            let out = cx
                .node
                .agent(
                    &[
                        "hold-mount",
                        "--path",
                        &rootfs,
                        "--via",
                        via,
                        "--run",
                        ledger,
                    ],
                    Duration::from_secs(60),
                )
                .await?;
            Ok(node_fault(format!(
                "mount holder ({via}) of {rootfs}: {}",
                out.trim()
            )))
        }
        FaultSpec::AffinityChurn { interval } => {
            let (stop, mut stopped) = watch::channel(false);
            let daemonsets: Api<DaemonSet> = Api::namespaced(cx.client.clone(), &t.namespace);
            let name = t.pod.clone();
            let interval = *interval;
            let writer = tokio::spawn(async move {
                let mut writes = 0u64;
                loop {
                    if resort_affinity(&daemonsets, &name).await.unwrap_or(false) {
                        writes += 1;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stopped.changed() => return writes,
                    }
                }
            });
            Ok(Applied::Churn {
                stop,
                writer,
                daemonset: t.pod.clone(),
            })
        }
        FaultSpec::FillDisk { .. } => Err(FaultError::Unsupported("fill-disk")),
        FaultSpec::DesyncRuntime { .. } => Err(FaultError::Unsupported("desync-runtime")),
    }
}

/// Reverses the order of the DaemonSet's nodeSelectorTerms, as the old controller's
/// sort did; a no-op (false) once the affinity is gone (the nodeSelector remedy).
async fn resort_affinity(daemonsets: &Api<DaemonSet>, name: &str) -> Result<bool, kube::Error> {
    let ds = daemonsets.get(name).await?;
    let terms = ds
        .spec
        .template
        .spec
        .and_then(|s| s.affinity)
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
        .unwrap_or_default();
    if terms.len() < 2 {
        return Ok(false);
    }
    let reversed: Vec<_> = terms.into_iter().rev().collect();
    let patch = json!({ "spec": { "template": { "spec": { "affinity": { "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": reversed } } } } } } });
    daemonsets.patch(name, &PatchParams::apply("terminus-affinity-writer").force(), &Patch::Apply(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": name }, "spec": patch["spec"]
    })))
    .await?;
    Ok(true)
}

/// The overlay upper dir of the pod's container, from the node's mount table.
async fn upper_dir(cx: &FaultContext<'_>) -> Result<String, FaultError> {
    let id = cx
        .target
        .container_ids
        .first()
        .ok_or_else(|| FaultError::Precondition("no container id".into()))?;
    let lines = cx
        .node
        .agent(&["mountinfo", id], Duration::from_secs(30))
        .await?;
    lines
        .lines()
        .filter(|l| l.contains(&format!("{id}/rootfs")))
        .find_map(|l| {
            l.split(',')
                .find_map(|opt| opt.strip_prefix("upperdir="))
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            FaultError::Precondition(format!(
                "no overlay upperdir found for container {id} in the node's mountinfo"
            ))
        })
}

async fn wait_for_file(node: &Node, path: &str, deadline: Duration) -> Result<(), FaultError> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if node
            .exec_raw(&["test", "-e", path], Duration::from_secs(10))
            .await?
            .code
            == 0
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(FaultError::Precondition(format!(
                "waited {deadline:?} for the workload to write {path}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Undoes exactly what `applied` records. Idempotent: safe after a remedy already
/// cleared the fault, and safe to call twice.
pub async fn recover(client: &Client, applied: Applied) -> Result<String, FaultError> {
    match applied {
        Applied::Finalizer {
            namespace,
            pod,
            name,
        } => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            match pods.get_opt(&pod).await? {
                None => Ok(format!("pod {pod} is gone; finalizer {name} with it")),
                Some(p) => {
                    let rest: Vec<String> = p
                        .metadata
                        .finalizers
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|f| f != &name)
                        .collect();
                    pods.patch(
                        &pod,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "finalizers": rest } })),
                    )
                    .await?;
                    Ok(format!("removed finalizer {name} from pod {pod}"))
                }
            }
        }
        Applied::NodeLedger {
            node,
            ledger,
            kubelet_stopped,
            ..
        } => {
            let out = node
                .agent(&["gc", "--run", &ledger], Duration::from_secs(120))
                .await?;
            if kubelet_stopped {
                node.exec(&["systemctl", "start", "kubelet"], Duration::from_secs(60))
                    .await?;
            }
            Ok(format!("agent gc --run {ledger}: {}", out.trim()))
        }
        Applied::Churn {
            stop,
            writer,
            daemonset,
        } => {
            let _ = stop.send(true);
            let writes = writer.await.unwrap_or(0);
            Ok(format!(
                "stopped the affinity writer on {daemonset} after {writes} writes"
            ))
        }
    }
}
