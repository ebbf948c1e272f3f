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
use crate::scenario::{
    DesyncHow, FaultSpec, FillMode, FreezeTarget, HoldVia, ImmutableLocation, KubeletStop,
};

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
    /// containerd's CRI state dir put on a size-limited tmpfs made inside the node
    /// (mount source `terminus-cri-<ledger>`), with the agent's filler recorded under
    /// `ledger`. Recover stops the filler, copies the tmpfs's content back onto the
    /// directory underneath and unmounts it (a no-op when apply already did).
    CriStateTmpfs {
        node: Node,
        ledger: String,
        what: String,
        /// A container whose exit the CRI failed to record (desync-runtime): if the CRI
        /// still says Running while containerd has no task, recover restarts containerd
        /// rather than leave the node split until the CRI's next retry.
        lost_exit_of: Option<String>,
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
            Applied::CriStateTmpfs { what, node, .. } => format!("{what} on node {}", node.name),
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
                ImmutableLocation::Rootfs => vec![file
                    .rsplit_once("/fs/")
                    .map(|(dir, _)| dir.to_owned())
                    .unwrap_or_else(|| file.clone())],
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
        FaultSpec::FillDisk { size_bytes, mode } => {
            cx.node.install_agent().await?;
            let what = cri_state_full(cx.node, ledger, *size_bytes, *mode).await?;
            Ok(Applied::CriStateTmpfs {
                node: cx.node.clone(),
                ledger: ledger.to_owned(),
                what,
                lost_exit_of: None,
            })
        }
        FaultSpec::DesyncRuntime { how } => match how {
            // Tried on containerd 1.6.20 in a kind node: `ctr task delete --force` (and
            // SIGKILL of containerd and the shim together) leave the CRI in sync — its
            // exit monitor, or its restore on restart, records the exit (crictl: Exited).
            DesyncHow::DeleteTask => Err(FaultError::Precondition(
                "`delete-task` does not desynchronise containerd's CRI plugin: it records the \
                 deleted task's exit (crictl shows Exited); use `how: lost-exit`"
                    .into(),
            )),
            DesyncHow::LostExit => {
                cx.node.install_agent().await?;
                let id = t.container_ids.first().ok_or_else(|| {
                    FaultError::Precondition("no container id whose exit to lose".into())
                })?;
                let what = lost_exit(cx.node, ledger, id, cx.deadline).await?;
                Ok(Applied::CriStateTmpfs {
                    node: cx.node.clone(),
                    ledger: ledger.to_owned(),
                    what,
                    lost_exit_of: Some(id.clone()),
                })
            }
        },
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
        Applied::CriStateTmpfs {
            node,
            ledger,
            lost_exit_of,
            ..
        } => {
            let mut done = recover_cri_state(&node, &ledger).await?;
            if let Some(id) = lost_exit_of {
                done.push_str(&format!("; {}", resync_cri(&node, &id).await?));
            }
            Ok(done)
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

// ------------------------------------------------- containerd's CRI state dir, full

/// Where containerd's CRI plugin checkpoints each container's status (`containers/<id>/
/// status`, rewritten on every state change) and keeps sandbox files.
const CRI_STATE_DIR: &str = "/var/lib/containerd/io.containerd.grpc.v1.cri";

/// The mount source naming the tmpfs a ledger put over [`CRI_STATE_DIR`], so recover
/// only ever unmounts its own (`findmnt` shows it).
fn cri_tmpfs_source(ledger: &str) -> String {
    format!("terminus-cri-{ledger}")
}

/// Puts [`CRI_STATE_DIR`] on a tmpfs of `size_bytes` made inside the node, with the
/// directory's current content copied in. A kind node's /var is the host's disk, so
/// the runtime's data is never filled where it lives. The tmpfs is filled in a staging
/// directory and bind-mounted over the real one in one step (`mount --move` is refused
/// under kind's shared mounts), so containerd never sees the directory empty.
async fn cri_state_on_tmpfs(
    node: &Node,
    ledger: &str,
    size_bytes: u64,
) -> Result<String, FaultError> {
    // Enough inodes for the copied state and an inode filler; few enough that the
    // agent's --max-inodes limit never refuses it.
    let inodes = (size_bytes / 4096).clamp(256, 65536);
    let script = format!(
        r#"set -eu
D={dir}; SRC={src}; S=/run/terminus-stage-{ledger}
if findmnt -n --mountpoint "$D" >/dev/null; then
  echo "$D is already a mount point ($(findmnt -n -o SOURCE,FSTYPE --mountpoint "$D")): a run's fault was not recovered" >&2; exit 3
fi
mkdir -p "$S"
trap 'umount "$S" 2>/dev/null; rmdir "$S" 2>/dev/null || true' EXIT
mount -t tmpfs -o size={size_bytes},nr_inodes={inodes},mode=0755 "$SRC" "$S"
cp -a "$D/." "$S/"
mount --bind "$S" "$D"
df -P "$D" | tail -1"#,
        dir = CRI_STATE_DIR,
        src = cri_tmpfs_source(ledger),
    );
    let out = node.sh(&script, Duration::from_secs(60)).await?;
    Ok(format!(
        "tmpfs {} over {CRI_STATE_DIR} ({})",
        cri_tmpfs_source(ledger),
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

/// Copies the tmpfs's content (without fillers) back onto the directory it covers, then
/// unmounts it. The directory underneath is reached through a non-recursive bind of the
/// filesystem holding it. A no-op when this ledger's tmpfs is not mounted.
async fn restore_cri_state(node: &Node, ledger: &str) -> Result<String, FaultError> {
    let script = format!(
        r#"set -eu
D={dir}; SRC={src}; U=/run/terminus-under-{ledger}
if [ "$(findmnt -n -o SOURCE --mountpoint "$D" || true)" != "$SRC" ]; then echo "no tmpfs $SRC on $D"; exit 0; fi
M=$(findmnt -n -o TARGET -T "$(dirname "$D")")
case "$M" in /) rel=$D;; *) rel=${{D#"$M"}};; esac
mkdir -p "$U"
mount --bind "$M" "$U"
trap 'umount "$U" 2>/dev/null; rmdir "$U" 2>/dev/null || true' EXIT
find "$U$rel" -mindepth 1 -delete
(cd "$D" && tar -c --exclude='./.terminus-fill-*' .) | tar -C "$U$rel" -x
umount "$D"
echo "unmounted $SRC from $D, its content copied back onto the directory underneath""#,
        dir = CRI_STATE_DIR,
        src = cri_tmpfs_source(ledger),
    );
    Ok(node
        .sh(&script, Duration::from_secs(60))
        .await?
        .trim()
        .to_owned())
}

/// For `terminus gc` and Ctrl-C: restores a CRI state dir still on a terminus tmpfs (its
/// run was killed before recover) made by a ledger starting with `prefix` (any ledger
/// when None). None when there is none.
pub async fn restore_leftover_cri_tmpfs(
    node: &Node,
    prefix: Option<&str>,
) -> Result<Option<String>, FaultError> {
    let source = node
        .sh(
            &format!("findmnt -n -o SOURCE --mountpoint {CRI_STATE_DIR} || true"),
            Duration::from_secs(20),
        )
        .await?;
    match source.trim().strip_prefix("terminus-cri-") {
        Some(ledger) if !ledger.is_empty() && prefix.is_none_or(|p| ledger.starts_with(p)) => {
            Ok(Some(restore_cri_state(node, ledger).await?))
        }
        _ => Ok(None),
    }
}

/// Stops the ledger's fillers, then restores the CRI state dir; both always attempted.
async fn recover_cri_state(node: &Node, ledger: &str) -> Result<String, FaultError> {
    let gc = node
        .agent(&["gc", "--run", ledger], Duration::from_secs(120))
        .await;
    let restored = restore_cri_state(node, ledger).await;
    match (gc, restored) {
        (Ok(gc), Ok(restored)) => Ok(format!(
            "agent gc --run {ledger}: {}; {restored}",
            gc.trim()
        )),
        (Err(e), Ok(restored)) => Err(FaultError::Precondition(format!(
            "agent gc --run {ledger}: {e}; {restored}"
        ))),
        (_, Err(e)) => Err(e),
    }
}

/// Runs `undo` after a failed step of an apply, so a half-applied fault never outlives
/// the error (the trial only recovers what apply returned).
async fn undo_on_error<T>(
    node: &Node,
    ledger: &str,
    result: Result<T, FaultError>,
) -> Result<T, FaultError> {
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(match recover_cri_state(node, ledger).await {
            Ok(undone) => FaultError::Precondition(format!("{e} (undone: {undone})")),
            Err(also) => FaultError::Precondition(format!("{e}; undoing it failed too: {also}")),
        }),
    }
}

/// Cause 1: the CRI state dir on a small tmpfs that the agent keeps full. Every status
/// checkpoint then fails with ENOSPC: the exit of a stopped container is never recorded
/// and kubelet's kill never completes.
async fn cri_state_full(
    node: &Node,
    ledger: &str,
    size_bytes: u64,
    mode: FillMode,
) -> Result<String, FaultError> {
    let mounted = cri_state_on_tmpfs(node, ledger, size_bytes).await?;
    let mode = match mode {
        FillMode::Bytes => "bytes",
        FillMode::Inodes => "inodes",
    };
    let filled = node
        .agent(
            &[
                "fill",
                "--dir",
                CRI_STATE_DIR,
                "--mode",
                mode,
                "--run",
                ledger,
            ],
            Duration::from_secs(60),
        )
        .await
        .map_err(FaultError::from);
    let filled = undo_on_error(node, ledger, filled).await?;
    Ok(format!(
        "{mounted}, kept full of {mode} by the agent ({})",
        filled.trim()
    ))
}

/// containerd 1.6's CRI retries a container exit it failed to record on a doubling
/// backoff (1 s, 2 s, ... at most 5 min). After this many failed retries the next one is
/// about two minutes away: that is how long the CRI keeps its stale view once the
/// disk has space again.
const LOST_EXIT_FAILED_RETRIES: usize = 7;

/// Cause 6 as the handbook saw it, after a disk-full episode: while the CRI state dir is
/// full, the container's main process exits (SIGTERM from the node; the workload exits
/// 0 on it). containerd deletes the task but the CRI cannot checkpoint the exit, so it
/// keeps the container Running. Once the exit has failed enough retries, the space is
/// freed and the tmpfs removed again: the disk episode is over, the split view remains
/// until the CRI's next retry (or a containerd restart).
async fn lost_exit(
    node: &Node,
    ledger: &str,
    id: &str,
    deadline: Duration,
) -> Result<String, FaultError> {
    let since = node
        .exec(
            &["date", "-u", "+%Y-%m-%d %H:%M:%S"],
            Duration::from_secs(10),
        )
        .await?
        .trim()
        .to_owned();
    let mounted = cri_state_on_tmpfs(node, ledger, 16 << 20).await?;
    // Leave time to undo everything before the trial's fault deadline drops us.
    let budget = deadline.saturating_sub(Duration::from_secs(30));
    let steps = async {
        node.agent(
            &[
                "fill",
                "--dir",
                CRI_STATE_DIR,
                "--mode",
                "bytes",
                "--run",
                ledger,
            ],
            Duration::from_secs(60),
        )
        .await?;
        node.sh(
            &format!("kill -TERM $(cat /run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/init.pid)"),
            Duration::from_secs(10),
        )
        .await?;
        let failures = wait_exit_retries_failed(node, id, &since, budget).await?;
        node.agent(&["unfill", "--run", ledger], Duration::from_secs(60))
            .await?;
        let restored = restore_cri_state(node, ledger).await?;
        Ok::<_, FaultError>(format!(
            "{mounted} kept full while container {id} exited: {failures} retries of its exit failed \
             (no space left on device); then space freed and {restored}"
        ))
    };
    undo_on_error(node, ledger, steps.await).await
}

/// If the CRI still reports container `id` Running while containerd has no running task
/// for it (the remedy did not run or did not work), restarts containerd: its CRI plugin
/// then re-reads the task list and records the exit. Otherwise does nothing.
async fn resync_cri(node: &Node, id: &str) -> Result<String, FaultError> {
    let script = format!(
        r#"state=$(crictl inspect --output go-template --template '{{{{.status.state}}}}' {id} 2>/dev/null || true)
task=$(ctr -n k8s.io task ls 2>/dev/null | awk '$1 == "{id}" {{print $3}}')
if [ "$state" = CONTAINER_RUNNING ] && [ "$task" != RUNNING ]; then
  systemctl restart containerd && echo "the CRI still said container {id} was running (containerd: ${{task:-no task}}): restarted containerd"
else
  echo "the CRI and containerd agree on container {id} (${{state:-gone}})"
fi"#
    );
    Ok(node
        .sh(&script, Duration::from_secs(90))
        .await?
        .trim()
        .to_owned())
}

/// Waits until containerd's journal shows `LOST_EXIT_FAILED_RETRIES` failed retries of
/// the container's exit; returns the count.
async fn wait_exit_retries_failed(
    node: &Node,
    id: &str,
    since: &str,
    deadline: Duration,
) -> Result<usize, FaultError> {
    let script = format!(
        "journalctl -u containerd --since '{since}' --no-pager | grep 'Failed to handle backOff event' | grep -c '{id}' || true"
    );
    let until = tokio::time::Instant::now() + deadline;
    let mut seen = 0;
    loop {
        seen = node
            .sh(&script, Duration::from_secs(20))
            .await?
            .trim()
            .parse()
            .unwrap_or(seen);
        if seen >= LOST_EXIT_FAILED_RETRIES {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= until {
            return Err(FaultError::Precondition(format!(
                "waited {deadline:?} for {LOST_EXIT_FAILED_RETRIES} failed retries of container {id}'s exit in containerd's journal; saw {seen}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
