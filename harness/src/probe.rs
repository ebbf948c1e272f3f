//! Probes: gather an evidence bundle (docs/bundles.md) for one pod — API objects through
//! kube, node files through the node agent — and write it to a directory. The bundle is
//! the same artefact whether it comes from a scenario, a drill or a real cluster, so the
//! detector never knows which.
//!
//! Architecture invariant: a probe failure for one file is recorded in the bundle and
//! does not stop the others; the detector sees what was missing, it does not guess.
//! Architecture invariant: probes only read; nothing here changes the cluster or a node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Event, Node as KubeNode, Pod};
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::json;

use crate::node::{Node, NodeError};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("writing the bundle at {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// What to gather: the pod (by namespace and name, since it may be gone) and what is
/// known of it from before (its uid, node and container ids).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub node: Option<String>,
    pub container_ids: Vec<String>,
    /// The pod object as last read while it existed: written as pod-last-seen.yaml when
    /// the pod is gone by the time the probe runs, so its node's leftovers can still be
    /// tied to it (a crowded node holds other pods' leftovers too).
    pub last_seen: Option<Box<Pod>>,
}

impl Target {
    /// The probes' target for `pod` as read now: its identity (uid, node, container ids),
    /// and the object itself for when it is gone by the time the probe runs.
    pub fn of(pod: &Pod, namespace: &str) -> Target {
        Target {
            namespace: namespace.to_owned(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            container_ids: crate::pods::container_ids(pod),
            last_seen: Some(Box::new(pod.clone())),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), ProbeError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| ProbeError::Write { path, source })
}

fn yaml<T: serde::Serialize>(value: &T) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// Writes the API half: pod.yaml, events.yaml, node.yaml, and owner.yaml +
/// revisions.yaml for DaemonSet pods. A failed read leaves the file out (unknown), with
/// the reason in `probe-errors.txt`, so a half-broken cluster still gives a bundle.
pub async fn api_evidence(client: &Client, target: &Target, dir: &Path) -> Result<(), ProbeError> {
    let mut errors = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let pod = match pods.get_opt(&target.pod).await {
        Ok(Some(pod)) => {
            write(dir, "pod.yaml", &yaml(&pod))?;
            Some(pod)
        }
        Ok(None) => match successor(&pods, target).await {
            Some(next) => {
                errors.push(format!(
                    "pod.yaml: pod {}/{} no longer exists; pod.yaml is {}, the pod its DaemonSet made in its place on the same node",
                    target.namespace,
                    target.pod,
                    next.metadata.name.as_deref().unwrap_or("?")
                ));
                write(dir, "pod.yaml", &yaml(&next))?;
                Some(next)
            }
            None => {
                errors.push(format!(
                    "pod.yaml: pod {}/{} no longer exists{}",
                    target.namespace,
                    target.pod,
                    if target.last_seen.is_some() {
                        "; pod-last-seen.yaml is the pod as it was read before it went away"
                    } else {
                        ""
                    }
                ));
                if let Some(seen) = &target.last_seen {
                    write(dir, "pod-last-seen.yaml", &yaml(seen))?;
                }
                None
            }
        },
        Err(e) => {
            errors.push(format!("pod.yaml: {e}"));
            None
        }
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &target.namespace);
    match events
        .list(&ListParams::default().fields(&format!("involvedObject.name={}", target.pod)))
        .await
    {
        Ok(list) => {
            let doc = json!({ "apiVersion": "v1", "kind": "List", "items": list.items, "metadata": { "resourceVersion": "" } });
            write(dir, "events.yaml", &yaml(&doc))?;
        }
        Err(e) => errors.push(format!("events.yaml: {e}")),
    }
    let node_name = target.node.clone().or_else(|| {
        pod.as_ref()
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
    });
    if let Some(node_name) = node_name {
        match Api::<KubeNode>::all(client.clone()).get(&node_name).await {
            Ok(node) => write(dir, "node.yaml", &yaml(&node))?,
            Err(e) => errors.push(format!("node.yaml: {e}")),
        }
    }
    let owner = pod.as_ref().and_then(crate::pods::daemonset_owner).cloned();
    if let Some(owner) = owner {
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &target.namespace);
        match daemonsets.get(&owner.name).await {
            Ok(ds) => write(dir, "owner.yaml", &yaml(&ds))?,
            Err(e) => errors.push(format!("owner.yaml: {e}")),
        }
        let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &target.namespace);
        match revisions.list(&ListParams::default()).await {
            Ok(list) => {
                let doc = json!({ "apiVersion": "v1", "kind": "List", "items": list.items, "metadata": { "resourceVersion": "" } });
                write(dir, "revisions.yaml", &yaml(&doc))?;
            }
            Err(e) => errors.push(format!("revisions.yaml: {e}")),
        }
    }
    // A finalizer on a deleted pod: is a controller trying to remove it and refused?
    let held = pod.as_ref().is_some_and(|p| {
        p.metadata.deletion_timestamp.is_some()
            && p.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
    });
    if held {
        match controller_manager_log(client).await {
            Ok(Some(text)) => write(dir, "controller-manager.log", &text)?,
            Ok(None) => {}
            Err(e) => errors.push(format!("controller-manager.log: {e}")),
        }
    }
    if !errors.is_empty() {
        write(dir, "probe-errors.txt", &(errors.join("\n") + "\n"))?;
    }
    Ok(())
}

/// The last ten minutes of kube-controller-manager's log (at most 8 MiB), from its
/// static pod in kube-system; None where it runs as no pod (a managed control plane).
async fn controller_manager_log(client: &Client) -> Result<Option<String>, kube::Error> {
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let list = system
        .list(&ListParams::default().labels("component=kube-controller-manager"))
        .await?;
    let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) else {
        return Ok(None);
    };
    let params = kube::api::LogParams {
        since_seconds: Some(600),
        limit_bytes: Some(8 << 20),
        ..kube::api::LogParams::default()
    };
    system.logs(&name, &params).await.map(Some)
}

/// The pod a DaemonSet made in place of `target` on the same node (a churning DaemonSet
/// replaces its pod every few seconds, so the pod observed stuck may be gone by the time
/// evidence is gathered): same name stem (`<daemonset>-<suffix>`), owned by a DaemonSet,
/// the newest. None for any other vanished pod.
async fn successor(pods: &Api<Pod>, target: &Target) -> Option<Pod> {
    let (stem, _) = target.pod.rsplit_once('-')?;
    let list = pods.list(&ListParams::default()).await.ok()?;
    list.items
        .into_iter()
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
            crate::pods::daemonset_owner(p).is_some()
                && name.rsplit_once('-').is_some_and(|(s, _)| s == stem)
                && target.node.as_deref().is_none_or(|n| node == Some(n))
        })
        .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
}

/// What a bundle's gathering is doing now: a caller whose deadline runs out says which
/// step it was waiting for, and for how long (a timeout names what it waited for).
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Option<(&'static str, Instant)>>>);

impl Progress {
    fn step(&self, what: &'static str) {
        if let Ok(mut p) = self.0.lock() {
            *p = Some((what, Instant::now()));
        }
    }

    /// E.g. "the agent's collect on the node (for 21.4s)"; "not started" before any step.
    pub fn describe(&self) -> String {
        match self.0.lock().ok().and_then(|p| *p) {
            Some((what, since)) => format!("{what} (for {:.1}s)", since.elapsed().as_secs_f64()),
            None => "not started".to_owned(),
        }
    }
}

/// Where the agent writes a bundle inside the node before it is copied out.
const NODE_BUNDLE_DIR: &str = "/var/lib/terminus-agent/bundle";

/// Writes the node half (kubelet.log, runtime.log, df, lsattr, mountinfo, ps, crictl,
/// ctr) by running the agent's `collect` in the node and copying the files out.
pub async fn node_evidence(
    node: &Node,
    target: &Target,
    dir: &Path,
    since: &str,
    progress: &Progress,
) -> Result<(), ProbeError> {
    progress.step("installing the agent on the node");
    node.install_agent().await?;
    let out = format!("{NODE_BUNDLE_DIR}/{}-{}", target.namespace, target.pod);
    let mut args = vec![
        "collect".to_owned(),
        "--out".into(),
        out.clone(),
        "--since".into(),
        since.to_owned(),
    ];
    for id in &target.container_ids {
        args.push("--container-id".into());
        args.push(id.clone());
    }
    if let Some(uid) = &target.uid {
        args.push("--pod-uid".into());
        args.push(uid.clone());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    progress.step("the agent's collect on the node (journals, crictl, ctr, lsattr, mounts)");
    node.agent(&argv, Duration::from_secs(120)).await?;
    progress.step("copying the node half out of the node");
    for (name, bytes) in node.download_dir(&out).await? {
        let path = dir.join(&name);
        std::fs::write(&path, bytes).map_err(|source| ProbeError::Write { path, source })?;
    }
    node.exec(&["rm", "-rf", &out], Duration::from_secs(30))
        .await?;
    // Holders in the runtime's own mount namespace show in no mount table: only their
    // working directory, root or open files point into the container (its id) or into
    // the pod's volumes (its uid).
    let patterns = proc_ref_patterns(target);
    if !patterns.is_empty() {
        let script = format!("ls -l /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/* 2>/dev/null | grep -F{patterns} || true");
        progress.step("looking in /proc for processes holding the container or its volumes");
        let refs = node
            .exec(&["sh", "-c", &script], Duration::from_secs(60))
            .await?;
        write(dir, "proc-refs.txt", &refs)?;
    }
    Ok(())
}

/// ` -e ID` for each container id and the pod uid, for `grep -F` in a shell script: only
/// values of ids' and uids' alphabet (hex digits, `-`) go in, whatever the API said.
fn proc_ref_patterns(target: &Target) -> String {
    target
        .container_ids
        .iter()
        .chain(target.uid.iter())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .map(|id| format!(" -e {id}"))
        .collect()
}

/// Writes a whole bundle: `captured-at` first (the detector's clock), then both halves;
/// `progress` names the step under way.
pub async fn collect(
    client: &Client,
    node: Option<&Node>,
    target: &Target,
    dir: &Path,
    since: &str,
    progress: &Progress,
) -> Result<(), ProbeError> {
    std::fs::create_dir_all(dir).map_err(|source| ProbeError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write(
        dir,
        "captured-at",
        &format!(
            "{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )?;
    progress.step("the API half (pod, node, events, owners)");
    api_evidence(client, target, dir).await?;
    if let Some(node) = node {
        node_evidence(node, target, dir, since, progress).await?;
    }
    progress.step("done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{proc_ref_patterns, Progress, Target};

    #[test]
    fn proc_ref_patterns_take_only_id_shaped_values() {
        let target = Target {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: Some("0a1b-2c".into()),
            node: None,
            container_ids: vec!["abc123".into(), "x; rm -rf /".into()],
            last_seen: None,
        };
        assert_eq!(proc_ref_patterns(&target), " -e abc123 -e 0a1b-2c");
    }

    #[test]
    fn progress_names_the_step_under_way() {
        let p = Progress::default();
        assert_eq!(p.describe(), "not started");
        let shared = p.clone();
        shared.step("the agent's collect on the node");
        let d = p.describe();
        assert!(
            d.starts_with("the agent's collect on the node (for "),
            "{d}"
        );
        assert!(d.ends_with("s)"), "{d}");
    }
}
