//! Diagnosis of a live cluster: the cluster the kubeconfig points at, not a trial's.
//!
//! The API half of a bundle comes through kube ([`probe::api_evidence`]); the node half
//! through the node agent — by `docker exec` when the node is a local kind node
//! container, otherwise through a short-lived privileged agent pod (hostPID, runtime
//! directories mounted read-only) whose image is `--agent-image`. Nothing here changes
//! the cluster except that agent pod, which is labelled and deleted on every path.
//! `diagnose --all` reads every Terminating pod from one paginated list and builds its
//! API-only bundles from that list, an all-namespace event list and a node list.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node as KubeNode, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use crate::detect::StepPlace;
use crate::detect::{self, Report, Verdict};
use crate::evidence::Evidence;
use crate::node::Node;
use crate::probe::{self, Target};
use crate::workload::{MANAGED_LABEL, MANAGED_VALUE, RUN_LABEL};

/// Label kind puts on its node containers.
pub const KIND_CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Bad input: exit 2.
    #[error("{0}")]
    BadInput(String),
    /// Infrastructure: exit 3.
    #[error("{0}")]
    Infra(String),
}

impl LiveError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LiveError::BadInput(_) => 2,
            LiveError::Infra(_) => 3,
        }
    }
}

fn infra(what: &str) -> impl Fn(kube::Error) -> LiveError + '_ {
    move |e| LiveError::Infra(format!("{what}: {e}"))
}

/// A client for `--kubeconfig PATH`, or kube's default inference (`KUBECONFIG`,
/// `~/.kube/config`, in-cluster). Checks that the API server answers, with a deadline.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, LiveError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                LiveError::BadInput(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| LiveError::BadInput(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => Config::infer().await.map_err(|e| {
            LiveError::BadInput(format!(
                "no cluster configured ({e}); set KUBECONFIG or pass --kubeconfig PATH"
            ))
        })?,
    };
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| LiveError::Infra(format!("cannot build a client for {server}: {e}")))?;
    match tokio::time::timeout(Duration::from_secs(15), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(LiveError::Infra(format!(
            "the API server at {server} did not answer: {e}"
        ))),
        Err(_) => Err(LiveError::Infra(format!(
            "the API server at {server} did not answer within 15s"
        ))),
    }
}

/// The node's kind container when `node_name` is a local docker container labelled by
/// kind; `None` when docker is absent or the node is not a local kind node.
pub async fn kind_node(node_name: &str) -> Option<Node> {
    let docker = crate::node::docker().await.ok()?;
    let inspect = docker
        .inspect_container(
            node_name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()?;
    let labelled = inspect
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|l| l.contains_key(KIND_CLUSTER_LABEL));
    let running = inspect
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false);
    (labelled && running).then(|| Node::with_docker(docker, node_name))
}

/// How the node half of a bundle is gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAccess {
    /// API evidence only.
    None,
    /// docker exec into the kind node if it is one, else the agent pod.
    Auto,
    /// Always through an agent pod (also on kind; for testing that path).
    Pod,
}

#[derive(Debug, Clone)]
pub struct AgentPodOptions {
    pub image: String,
    /// The namespace the agent pod is created in (RBAC: create/delete pods there).
    pub namespace: String,
    pub deadline: Duration,
}

impl Default for AgentPodOptions {
    fn default() -> Self {
        AgentPodOptions {
            image: DEFAULT_AGENT_IMAGE.into(),
            namespace: "default".into(),
            deadline: Duration::from_secs(90),
        }
    }
}

/// The agent image name `--agent-image` defaults to. No registry serves it: build it
/// (agent/README.md) and push it where the cluster can pull it.
pub const DEFAULT_AGENT_IMAGE: &str = "terminus/agent:latest";

/// What one live collection produced.
pub struct Collected {
    pub dir: PathBuf,
    pub target: Target,
    /// How the node half came (or why it did not).
    pub node_note: String,
    /// The kind node container, when the pod's node is one.
    pub kind_node: Option<Node>,
}

/// Gathers a bundle for `namespace/name` into `dir`: API half always, node half by
/// `access`. A pod that does not exist is bad input.
pub async fn collect(
    client: &Client,
    namespace: &str,
    name: &str,
    dir: &Path,
    access: &NodeAccess,
    agent: &AgentPodOptions,
) -> Result<Collected, LiveError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods
        .get_opt(name)
        .await
        .map_err(infra("reading the pod"))?
        .ok_or_else(|| {
            LiveError::BadInput(format!(
                "pod {namespace}/{name} not found (is it already gone? check the namespace with -n)"
            ))
        })?;
    let target = Target::of(&pod, namespace);
    std::fs::create_dir_all(dir)
        .map_err(|e| LiveError::Infra(format!("creating {}: {e}", dir.display())))?;
    // The journals since a little before the deletion (or an hour when there is none).
    let since = since_for(&pod);
    let kind = match &target.node {
        Some(n) if *access == NodeAccess::Auto => kind_node(n).await,
        _ => None,
    };
    probe::collect(
        client,
        None,
        &target,
        dir,
        &since,
        &probe::Progress::default(),
    )
    .await
    .map_err(|e| LiveError::Infra(format!("gathering API evidence: {e}")))?;
    let node_note = match (access, &target.node) {
        (NodeAccess::None, _) => {
            "API evidence only (node half skipped: --api-only, or --all without --node-evidence)"
                .to_owned()
        }
        (_, None) => "the pod was never scheduled: no node to gather from".to_owned(),
        (NodeAccess::Auto, Some(n)) if kind.is_some() => {
            let node = kind.as_ref().expect("checked");
            tokio::time::timeout(
                Duration::from_secs(150),
                probe::node_evidence(node, &target, dir, &since, &probe::Progress::default()),
            )
            .await
            .map_err(|_| {
                LiveError::Infra(format!(
                    "gathering node evidence from kind node {n} did not finish within 150s"
                ))
            })?
            .map_err(|e| {
                LiveError::Infra(format!("gathering node evidence from kind node {n}: {e}"))
            })?;
            format!("node evidence from kind node {n} (docker exec + terminus-agent)")
        }
        (_, Some(n)) => {
            agent_pod_evidence(client, n, &target, dir, &since, agent).await?;
            format!(
                "node evidence from agent pod on {n} (image {})",
                agent.image
            )
        }
    };
    Ok(Collected {
        dir: dir.to_owned(),
        target,
        node_note,
        kind_node: kind,
    })
}

fn since_for(pod: &Pod) -> String {
    let from = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| {
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
            let secs = t.0.as_second() - grace - 60;
            chrono::DateTime::from_timestamp(secs, 0).unwrap_or_else(chrono::Utc::now)
        })
        .unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::hours(1));
    from.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The kind cluster a node container belongs to (its `io.x-k8s.kind.cluster` label).
pub async fn kind_cluster_of(node: &str) -> Option<String> {
    let docker = crate::node::docker().await.ok()?;
    let inspect = docker
        .inspect_container(
            node,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()?;
    inspect.config?.labels?.get(KIND_CLUSTER_LABEL).cloned()
}

/// Runs the remedy of `diagnosis` for the pod of `collected`, with the mechanism the
/// trials use ([`crate::remedy::run_act_steps`]): on kind, kubectl in the
/// control-plane node with its admin credentials and node commands in the pod's node.
/// Elsewhere only kubectl commands can run (here, with the same kubeconfig); node
/// commands are refused with the list to run by hand. Every act is first vetted against
/// `evidence`, the bundle `diagnosis` came from. Returns what was run.
pub async fn apply_remedy(
    kubeconfig: Option<&Path>,
    collected: &Collected,
    evidence: &crate::evidence::Evidence,
    diagnosis: &crate::detect::Diagnosis,
) -> Result<Vec<String>, LiveError> {
    let log = std::sync::Mutex::new(Vec::new());
    let note = |line: String| {
        if let Ok(mut l) = log.lock() {
            l.push(line);
        }
    };
    if let Some(node) = &collected.kind_node {
        let cluster = kind_cluster_of(&node.name).await.ok_or_else(|| {
            LiveError::Infra(format!(
                "cannot tell which kind cluster node {} belongs to",
                node.name
            ))
        })?;
        let control_plane = Node::connect(&format!("{cluster}-control-plane"))
            .await
            .map_err(|e| LiveError::Infra(e.to_string()))?;
        crate::remedy::run_act_steps(diagnosis, evidence, node, &control_plane, &note)
            .await
            .map_err(LiveError::Infra)?;
        return Ok(log.into_inner().unwrap_or_default());
    }
    let actions = crate::remedy::actions(diagnosis);
    if actions.is_empty() {
        return Err(LiveError::Infra(format!(
            "the diagnosis ({}) has no command to run as its remedy; follow the steps above by hand",
            diagnosis.cause
        )));
    }
    if let Some((_, argv)) = actions
        .iter()
        .find(|(place, _)| *place != StepPlace::Cluster)
    {
        return Err(LiveError::Infra(format!(
            "`{}` must run on node {} and terminus reaches nodes' shells only on kind; run the FIX commands above on the node by hand",
            crate::remedy::shell_words(argv),
            collected.target.node.as_deref().unwrap_or("?")
        )));
    }
    crate::remedy::vet_all(&actions, evidence).map_err(LiveError::Infra)?;
    for (_, argv) in actions {
        let shown = crate::remedy::shell_words(argv);
        // No shell: the argv runs as it is, whatever the evidence put into it.
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let out = cmd.output().map_err(|e| {
            LiveError::Infra(format!("running `{shown}`: {e} (is kubectl installed?)"))
        })?;
        note(format!("$ {shown} (here) -> {}", out.status));
        if !out.status.success() {
            return Err(LiveError::Infra(format!(
                "`{shown}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(log.into_inner().unwrap_or_default())
}

/// Waits until the pod is gone (or replaced: another uid), up to `deadline`.
pub async fn wait_gone(
    client: &Client,
    target: &Target,
    deadline: Duration,
) -> Result<(), LiveError> {
    use crate::wait::{Check, WaitError};
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let what = format!(
        "pod {}/{} to be gone after the remedy",
        target.namespace, target.pod
    );
    crate::wait::until(&what, deadline, || async {
        let pod = pods
            .get_opt(&target.pod)
            .await
            .map_err(infra("reading the pod"))?;
        Ok(match pod {
            None => Check::Done(()),
            // Replaced by a pod of the same name: this one is gone.
            Some(p) if p.metadata.uid != target.uid => Check::Done(()),
            Some(p) => Check::Pending(crate::wait::describe_still_present(&p)),
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => LiveError::Infra(t.to_string()),
        WaitError::Check(e) => e,
    })
}

// ------------------------------------------------------------------- the agent pod

/// Marker lines around the base64 tar the agent pod prints.
const BEGIN: &str = "--- terminus bundle begin ---";
const END: &str = "--- terminus bundle end ---";

/// The privileged, hostPID pod that runs `terminus-agent collect` on `node` and prints
/// the bundle as base64 tar on stdout. Host paths are mounted read-only.
pub fn agent_pod(
    name: &str,
    node: &str,
    target: &Target,
    since: &str,
    opts: &AgentPodOptions,
) -> Pod {
    let mut collect = format!(
        "{} collect --out /tmp/b --since '{since}'",
        crate::node::AGENT_PATH
    );
    for id in &target.container_ids {
        collect.push_str(&format!(" --container-id {id}"));
    }
    if let Some(uid) = &target.uid {
        collect.push_str(&format!(" --pod-uid {uid}"));
    }
    let script =
        format!("set -e; {collect}; echo '{BEGIN}'; tar -C /tmp/b -cf - . | base64; echo '{END}'");
    let ro = |name: &str, path: &str| {
        (
            json!({ "name": name, "hostPath": { "path": path } }),
            json!({ "name": name, "mountPath": path, "readOnly": true }),
        )
    };
    let mounts = [
        ro("kubelet", "/var/lib/kubelet"),
        ro("containerd", "/var/lib/containerd"),
        ro("run-containerd", "/run/containerd"),
        ro("log", "/var/log"),
        ro("journal", "/run/log/journal"),
    ];
    let (volumes, volume_mounts): (Vec<_>, Vec<_>) = mounts.into_iter().unzip();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": opts.namespace,
            "labels": { MANAGED_LABEL: MANAGED_VALUE, RUN_LABEL: name, "terminus.dev/role": "agent" },
        },
        "spec": {
            "nodeName": node,
            "hostPID": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{ "operator": "Exists" }],
            "activeDeadlineSeconds": opts.deadline.as_secs().max(30),
            "containers": [{
                "name": "agent",
                "image": opts.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "securityContext": { "privileged": true },
                "volumeMounts": volume_mounts,
            }],
            "volumes": volumes,
        }
    }))
    .expect("a literal Pod is valid")
}

async fn agent_pod_evidence(
    client: &Client,
    node: &str,
    target: &Target,
    dir: &Path,
    since: &str,
    opts: &AgentPodOptions,
) -> Result<(), LiveError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let name = format!(
        "terminus-agent-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
    );
    let pod = agent_pod(&name, node, target, since, opts);
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| {
            LiveError::Infra(format!(
                "creating the agent pod {}/{name}: {e} (RBAC: docs/rbac.yaml; or pass --api-only)",
                opts.namespace
            ))
        })?;
    // Deleted on every path, Ctrl-C included.
    let result = tokio::select! {
        r = agent_pod_run(&pods, &name, node, opts) => r,
        _ = tokio::signal::ctrl_c() => Err(LiveError::Infra("interrupted".into())),
    };
    let deleted = pods
        .delete(
            &name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await;
    if let Err(e) = deleted {
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            tracing::warn!(
                "could not delete agent pod {}/{name}: {e}; delete it with `kubectl delete pod -n {} -l terminus.dev/role=agent`",
                opts.namespace, opts.namespace
            );
        }
    }
    let text = result?;
    unpack(&text, dir)
}

/// Waits for the agent pod to finish and returns its log; a pull failure is reported
/// with what to do about it.
async fn agent_pod_run(
    pods: &Api<Pod>,
    name: &str,
    node: &str,
    opts: &AgentPodOptions,
) -> Result<String, LiveError> {
    use crate::wait::{Check, WaitError};
    let what = format!("the agent pod on {node} to finish");
    crate::wait::until(&what, opts.deadline, || async {
        let pod = pods
            .get(name)
            .await
            .map_err(infra("reading the agent pod"))?;
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let waiting = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .map(|w| {
                (
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                )
            });
        if let Some((reason, message)) = &waiting {
            if matches!(
                reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName"
            ) {
                return Err(LiveError::Infra(format!(
                    "the agent image {} cannot be pulled on node {node} ({reason}: {message}). \
                     Build the agent image (agent/README.md), push it to a registry the cluster can pull from \
                     and pass --agent-image REF, or pass --api-only to diagnose from API evidence alone",
                    opts.image
                )));
            }
            return Ok(Check::Pending(format!(
                "phase {phase}, waiting: {reason} {message}"
            )));
        }
        if phase == "Succeeded" || phase == "Failed" {
            let log = pods
                .logs(name, &LogParams::default())
                .await
                .map_err(infra("reading the agent pod's output"))?;
            if phase == "Failed" {
                return Err(LiveError::Infra(format!(
                    "the agent pod on {node} failed: {}",
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                )));
            }
            return Ok(Check::Done(log));
        }
        Ok(Check::Pending(format!("phase {phase}")))
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => LiveError::Infra(t.to_string()),
        WaitError::Check(e) => e,
    })
}

/// Extracts the base64 tar between the markers into `dir`.
pub fn unpack(log: &str, dir: &Path) -> Result<(), LiveError> {
    let body: String = log
        .lines()
        .skip_while(|l| l.trim() != BEGIN)
        .skip(1)
        .take_while(|l| l.trim() != END)
        .collect();
    if body.is_empty() {
        return Err(LiveError::Infra("the agent pod printed no bundle".into()));
    }
    let bytes = base64_decode(&body)
        .ok_or_else(|| LiveError::Infra("the agent pod's bundle is not valid base64".into()))?;
    let mut archive = tar::Archive::new(bytes.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| LiveError::Infra(format!("the agent pod's bundle: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| LiveError::Infra(format!("the agent pod's bundle: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| LiveError::Infra(e.to_string()))?
            .into_owned();
        let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| LiveError::Infra(e.to_string()))?;
        std::fs::write(dir.join(&file), bytes)
            .map_err(|e| LiveError::Infra(format!("writing {file}: {e}")))?;
    }
    Ok(())
}

/// Standard base64, with or without padding, across line breaks (the agent pod's log
/// wraps it); `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.split_ascii_whitespace().collect();
    LENIENT.decode(compact).ok()
}

// ---------------------------------------------------------------- diagnose --all

/// One Terminating pod's line in `diagnose --all`.
pub struct PodLine {
    pub namespace: String,
    pub pod: String,
    pub node: Option<String>,
    /// Seconds since the deletionTimestamp (the end of the grace period).
    pub overdue_secs: i64,
    pub evidence: Evidence,
    pub report: Report,
}

async fn list_all<K>(api: Api<K>, what: &str) -> Result<Vec<K>, LiveError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| LiveError::Infra(format!("listing {what}: {e}")))?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(out)
}

/// Diagnoses every Terminating pod. API evidence comes from three paginated list calls
/// (events and nodes first, then pods page by page, so only one page of pods is held);
/// each pod's evidence is built in memory and written under `root` only when `write`
/// (`--keep-bundle`). DaemonSet-owned pods get their owner's objects (the only per-pod
/// calls); with `access` other than `None`, each pod's node half is gathered too.
pub async fn diagnose_all(
    client: &Client,
    root: &Path,
    write: bool,
    access: &NodeAccess,
    agent: &AgentPodOptions,
) -> Result<Vec<PodLine>, LiveError> {
    // Events by (namespace, involved pod name).
    let mut events: HashMap<(String, String), Vec<Event>> = HashMap::new();
    for e in list_all(Api::<Event>::all(client.clone()), "events").await? {
        if e.involved_object.kind.as_deref() == Some("Pod") {
            let key = (
                e.involved_object.namespace.clone().unwrap_or_default(),
                e.involved_object.name.clone().unwrap_or_default(),
            );
            events.entry(key).or_default().push(e);
        }
    }
    let nodes: BTreeMap<String, String> = list_all(Api::<KubeNode>::all(client.clone()), "nodes")
        .await?
        .into_iter()
        .map(|n| {
            let text = yaml(&n);
            (n.metadata.name.unwrap_or_default(), text)
        })
        .collect();
    let now = chrono::Utc::now();
    let captured = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let api: Api<Pod> = Api::all(client.clone());
    let mut params = ListParams::default().limit(500);
    let mut lines = Vec::new();
    loop {
        let page = api.list(&params).await.map_err(infra("listing pods"))?;
        for pod in page
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
        {
            let evs = events
                .remove(&(
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                ))
                .unwrap_or_default();
            lines.push(
                one_of_all(
                    client, &pod, evs, &nodes, &captured, now, root, write, access, agent,
                )
                .await?,
            );
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    lines.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(lines)
}

#[allow(clippy::too_many_arguments)]
async fn one_of_all(
    client: &Client,
    pod: &Pod,
    events: Vec<Event>,
    nodes: &BTreeMap<String, String>,
    captured: &str,
    now: chrono::DateTime<chrono::Utc>,
    root: &Path,
    write: bool,
    access: &NodeAccess,
    agent: &AgentPodOptions,
) -> Result<PodLine, LiveError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let target = Target::of(pod, &namespace);
    let mut files: Vec<(&str, String)> = vec![
        ("captured-at", format!("{captured}\n")),
        ("pod.yaml", yaml(pod)),
        (
            "events.yaml",
            yaml(
                &json!({ "apiVersion": "v1", "kind": "List", "items": events, "metadata": { "resourceVersion": "" } }),
            ),
        ),
    ];
    if let Some(node) = target.node.as_ref().and_then(|n| nodes.get(n)) {
        files.push(("node.yaml", node.clone()));
    }
    let ds_owned = crate::pods::daemonset_owner(pod).is_some();
    let dir = root.join(format!("{namespace}.{name}"));
    let evidence = if write || ds_owned || *access != NodeAccess::None {
        std::fs::create_dir_all(&dir)
            .map_err(|e| LiveError::Infra(format!("creating {}: {e}", dir.display())))?;
        for (file, text) in &files {
            std::fs::write(dir.join(file), text).map_err(|e| {
                LiveError::Infra(format!("writing {}: {e}", dir.join(file).display()))
            })?;
        }
        if ds_owned || *access != NodeAccess::None {
            // The full probe for what the lists do not hold (owner, revisions, node half).
            collect(client, &namespace, &name, &dir, access, agent).await?;
        }
        Evidence::load(&dir)
    } else {
        let mut evidence = Evidence::default();
        for (file, text) in &files {
            evidence.ingest(file, text);
        }
        for (file, _) in crate::evidence::BUNDLE_FILES {
            evidence
                .sources
                .entry(file.to_owned())
                .or_insert(crate::evidence::SourceStatus::Missing);
        }
        evidence
    };
    let report = detect::diagnose(&evidence);
    let overdue_secs = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| now.timestamp() - t.0.as_second())
        .unwrap_or(0);
    Ok(PodLine {
        namespace,
        pod: name,
        node: target.node,
        overdue_secs,
        evidence,
        report,
    })
}

fn yaml<T: serde::Serialize>(value: &T) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

/// "3m", "2h05m", "4d" — how long a pod has been stuck, for one line.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86400),
    }
}

/// The `diagnose --all` table: one line per pod, then an indented detail line (the
/// summary and the first command of the fix) for pods with a cause.
pub fn render_all(lines: &[PodLine]) -> String {
    let mut out = format!(
        "{:<24} {:<40} {:<8} {:<22} {}\n",
        "NAMESPACE", "POD", "STUCK", "CAUSE", "NODE"
    );
    for l in lines {
        let cause = match (l.report.verdict, l.report.diagnoses.first()) {
            (Verdict::CauseFound, Some(d)) => format!("{} ({:.0}%)", d.cause, d.confidence * 100.0),
            (Verdict::TooEarly, _) => "too-early".into(),
            (Verdict::NotTerminating, _) => "not-terminating".into(),
            _ => "unknown".into(),
        };
        out.push_str(&format!(
            "{:<24} {:<40} {:<8} {:<22} {}\n",
            l.namespace,
            l.pod,
            age(l.overdue_secs),
            cause,
            l.node.as_deref().unwrap_or("-")
        ));
        if let Some(d) = l.report.diagnoses.first() {
            out.push_str(&format!("    {}\n", d.summary));
            if let Some(cmd) = d.remedy.iter().find_map(|s| s.command.as_deref()) {
                out.push_str(&format!("    fix: {cmd}\n"));
            }
        }
    }
    let found = lines
        .iter()
        .filter(|l| !l.report.diagnoses.is_empty())
        .count();
    out.push_str(&format!(
        "{} Terminating pod(s), {found} with a known cause\n",
        lines.len()
    ));
    out
}

pub fn render_all_json(lines: &[PodLine]) -> String {
    let pods: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str(&crate::report::to_json(&l.evidence, &l.report))
                .unwrap_or(serde_json::Value::Null)
        })
        .collect();
    json!({ "schema": "terminus/diagnosis-all/v1", "count": lines.len(), "pods": pods }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_of_known_text() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64_decode("aGVs\nbG8=").unwrap(), b"hello");
        assert!(base64_decode("a$b").is_none());
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(7500), "2h05m");
        assert_eq!(age(3 * 86400), "3d");
        assert_eq!(age(-4), "0s");
    }

    #[test]
    fn container_ids_drop_the_runtime_prefix() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p" },
            "status": { "containerStatuses": [{ "name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "containerID": "containerd://abc123" }] }
        }))
        .unwrap();
        assert_eq!(crate::pods::container_ids(&pod), vec!["abc123".to_owned()]);
    }

    #[test]
    fn agent_pod_is_labelled_privileged_and_read_only() {
        let t = Target {
            namespace: "ns".into(),
            pod: "p".into(),
            uid: Some("u-1".into()),
            node: Some("n1".into()),
            container_ids: vec!["abc".into()],
            last_seen: None,
        };
        let pod = agent_pod(
            "terminus-agent-x",
            "n1",
            &t,
            "2026-01-01 00:00:00 UTC",
            &AgentPodOptions::default(),
        );
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["labels"][MANAGED_LABEL], MANAGED_VALUE);
        assert_eq!(v["spec"]["hostPID"], true);
        assert_eq!(v["spec"]["nodeName"], "n1");
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["privileged"], true);
        assert!(c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["readOnly"] == true));
        let script = c["command"][2].as_str().unwrap();
        assert!(
            script.contains("--container-id abc") && script.contains("--pod-uid u-1"),
            "{script}"
        );
    }

    #[test]
    fn unpack_reads_the_bundle_between_markers() {
        let mut archive = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, "./df.txt", &b"abc"[..])
            .unwrap();
        let bytes = archive.into_inner().unwrap();
        let encoded = encode(&bytes);
        let log = format!("noise\n{BEGIN}\n{encoded}\n{END}\n");
        let dir = tempfile::tempdir().unwrap();
        unpack(&log, dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("df.txt")).unwrap(), b"abc");
        assert!(unpack("nothing here", dir.path()).is_err());
    }

    fn encode(bytes: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;

    fn line(pod_yaml: &str) -> PodLine {
        let mut evidence = Evidence::default();
        evidence.ingest("captured-at", "2026-11-28T12:00:00Z\n");
        evidence.ingest("pod.yaml", pod_yaml);
        let report = detect::diagnose(&evidence);
        PodLine {
            namespace: "shop".into(),
            pod: "web-0".into(),
            node: None,
            overdue_secs: 600,
            evidence,
            report,
        }
    }

    const HELD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  uid: u-1\n  deletionTimestamp: \"2026-11-28T11:50:00Z\"\n  deletionGracePeriodSeconds: 0\n  finalizers:\n  - example.com/hold\nspec:\n  containers: []\nstatus:\n  phase: Pending\n";

    #[test]
    fn one_line_per_pod_with_the_fix_under_it() {
        let text = render_all(&[line(HELD)]);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("NAMESPACE"));
        assert!(
            rows[1].starts_with("shop")
                && rows[1].contains("web-0")
                && rows[1].contains("10m")
                && rows[1].contains("finalizer"),
            "{text}"
        );
        assert!(
            rows.iter().any(|r| r
                .trim_start()
                .starts_with("fix: kubectl patch pod web-0 -n shop")),
            "{text}"
        );
        assert_eq!(
            rows.last().copied(),
            Some("1 Terminating pod(s), 1 with a known cause")
        );
    }

    #[test]
    fn json_has_one_diagnosis_object_per_pod() {
        let v: serde_json::Value =
            serde_json::from_str(&render_all_json(&[line(HELD), line(HELD)])).unwrap();
        assert_eq!(v["schema"], "terminus/diagnosis-all/v1");
        assert_eq!(v["count"], 2);
        assert_eq!(v["pods"][0]["schema"], "terminus/diagnosis/v1");
        assert_eq!(v["pods"][1]["diagnoses"][0]["cause"], "finalizer");
    }
}

#[cfg(test)]
mod rbac_tests {
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
    use serde::Deserialize;

    /// docs/rbac.yaml is what users apply: every document parses as its kind, and the
    /// rights the probes use are there (the API half, and kube-controller-manager's log).
    #[test]
    fn the_documented_rbac_grants_what_the_probes_read() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rbac.yaml");
        let text = std::fs::read_to_string(path).expect("docs/rbac.yaml");
        let mut cluster_roles = Vec::new();
        let mut roles = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = serde_yaml_ng::Value::deserialize(doc).expect("a YAML document");
            match v["kind"].as_str() {
                Some("ClusterRole") => cluster_roles
                    .push(serde_yaml_ng::from_value::<ClusterRole>(v).expect("a ClusterRole")),
                Some("Role") => roles.push(serde_yaml_ng::from_value::<Role>(v).expect("a Role")),
                _ => {}
            }
        }
        let grants =
            |rules: &[k8s_openapi::api::rbac::v1::PolicyRule], resource: &str, verb: &str| {
                rules.iter().any(|r| {
                    r.resources
                        .as_ref()
                        .is_some_and(|rs| rs.iter().any(|x| x == resource))
                        && r.verbs.iter().any(|v| v == verb)
                })
            };
        let cluster = cluster_roles
            .first()
            .and_then(|r| r.rules.clone())
            .unwrap_or_default();
        for resource in ["pods", "events", "nodes"] {
            assert!(grants(&cluster, resource, "list"), "{resource}");
        }
        let system = roles
            .iter()
            .find(|r| r.metadata.namespace.as_deref() == Some("kube-system"))
            .and_then(|r| r.rules.clone())
            .unwrap_or_default();
        assert!(grants(&system, "pods/log", "get"), "kube-system pods/log");
    }
}
