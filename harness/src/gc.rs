//! `terminus gc`: remove what killed runs left behind, then check that nothing is left.
//! Everything terminus makes is findable without the run that made it: kind clusters by
//! their ownership record (cluster.rs), node faults by the agent's ledger inside each
//! node, namespaces by the `app.kubernetes.io/managed-by=terminus` label, pods by the
//! namespaces they live in.
//!
//! A sweep ([`sweep`]) undoes: every node's ledgered faults (`agent gc`), a partitioned
//! node's out-of-service taint and label, cluster-scoped objects with terminus's label
//! (admission policies, webhooks: before the next step, which one of them may deny),
//! the finalizers of terminus's pods (a finalizer fault whose harness died holds its
//! pod, and with it the namespace, for ever), then terminus's namespaces. A check ([`verify`]) then waits,
//! with a deadline, until no pod or namespace of terminus's remains and every node's
//! agent reports nothing left (`agent leftovers`: kubelet and containerd active, no
//! stopped process, no ledger, filler, holder, tmpfs, immutable flag or run directory).
//!
//! Architecture invariant: gc deletes only what carries terminus's mark: clusters
//! whose ownership record and mount check out (`cluster::ownership`), ledger entries the
//! agent recorded, namespaces with the managed-by label and the pods inside them. It
//! never guesses by name alone.
//! Architecture invariant: gc keeps going past a failure; every failure is collected in
//! the [`GcReport`] for the caller to show, nothing is printed here. A report is clean
//! only when nothing failed *and* the check found nothing left.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use terminus_core::ledger::Listing;

use crate::cluster::{self, Ownership};
use crate::node::{Node, AGENT_PATH};
use crate::wait::{Check, WaitError};
use crate::workload::{MANAGED_LABEL, MANAGED_VALUE, RUN_LABEL};

/// How long [`verify`] waits by default for pods and namespaces to go and nodes to
/// settle: a pod's containers are killed once its node's faults are undone, within its
/// grace period; a namespace goes once its pods have.
pub const VERIFY_DEADLINE: Duration = Duration::from_secs(180);

#[derive(Debug, Default)]
pub struct GcReport {
    /// What was undone.
    pub actions: Vec<String>,
    /// What could not be undone (an error while undoing it).
    pub errors: Vec<String>,
    /// What the check still found when its deadline passed.
    pub left: Vec<String>,
}

impl GcReport {
    /// Nothing failed and nothing is left.
    pub fn clean(&self) -> bool {
        self.errors.is_empty() && self.left.is_empty()
    }
}

/// What a sweep covers: everything terminus made, or one run's share of it.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    /// One run: ledgers whose name starts with the run id, objects with its run label.
    Run(&'a str),
}

impl Scope<'_> {
    fn namespace_selector(self) -> String {
        match self {
            Scope::All => format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
            Scope::Run(r) => format!("{RUN_LABEL}={r}"),
        }
    }

    /// The prefix of the agent ledgers the scope covers (None: every ledger).
    fn ledger_prefix(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Run(r) => Some(r),
        }
    }
}

/// Undoes every node fault, frees terminus's pods from their finalizers and deletes
/// terminus's namespaces in cluster `cluster_name`.
pub async fn sweep(
    cluster_name: &str,
    client: Option<&kube::Client>,
    scope: Scope<'_>,
    report: &mut GcReport,
) {
    clean_nodes(cluster_name, scope, report).await;
    if let Some(client) = client {
        lift_partitions(client, scope, report).await;
        // Admission policies first: one of terminus's may deny the very update that
        // frees a pod of its finalizers (admission-blocked's does).
        clean_cluster_objects(client, scope, report).await;
        release_pods(client, scope, report).await;
        clean_namespaces(client, scope, report).await;
    }
}

/// Lifts what a node-lost trial left on its Node: the out-of-service taint its remedy
/// set and the partition label (the iptables rule is the agent's, undone by
/// [`clean_nodes`]). Nodes are found by the label, whose value is the trial's ledger key.
pub async fn lift_partitions(client: &kube::Client, scope: Scope<'_>, report: &mut GcReport) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let list = match nodes
        .list(&ListParams::default().labels(crate::fault::PARTITION_LABEL))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return report
                .errors
                .push(format!("listing partitioned nodes: {e}"))
        }
    };
    for node in list.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let ledger = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::fault::PARTITION_LABEL))
            .cloned()
            .unwrap_or_default();
        if scope
            .ledger_prefix()
            .is_some_and(|run| !ledger.starts_with(run))
        {
            continue;
        }
        match crate::fault::lift_node_marks(client, &name).await {
            Ok(done) => {
                report.actions.extend(done);
                report.actions.push(format!(
                    "removed label {} from node {name}",
                    crate::fault::PARTITION_LABEL
                ));
            }
            Err(e) => report.errors.push(format!("node {name}: {e}")),
        }
    }
}

/// Deletes the cluster-scoped objects a scenario made (admission policies and their
/// bindings, webhook configurations), found by terminus's label: one left behind would
/// keep judging every later trial's writes.
pub async fn clean_cluster_objects(client: &kube::Client, scope: Scope<'_>, report: &mut GcReport) {
    let selector = scope.namespace_selector();
    delete_labelled::<ValidatingAdmissionPolicyBinding>(client, &selector, report).await;
    delete_labelled::<ValidatingAdmissionPolicy>(client, &selector, report).await;
    delete_labelled::<ValidatingWebhookConfiguration>(client, &selector, report).await;
}

/// The names of the cluster-scoped `K` objects matching `selector`; a kind the API
/// server does not serve has none.
async fn labelled<K>(client: &kube::Client, selector: &str) -> Result<Vec<String>, String>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    match api.list(&ListParams::default().labels(selector)).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter_map(|o| o.meta().name.clone())
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
        Err(e) => Err(format!(
            "listing {}: {e}",
            K::kind(&K::DynamicType::default())
        )),
    }
}

async fn delete_labelled<K>(client: &kube::Client, selector: &str, report: &mut GcReport)
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let names = match labelled::<K>(client, selector).await {
        Ok(n) => n,
        Err(e) => return report.errors.push(e),
    };
    for name in names {
        match delete_named::<K>(client, &name).await {
            Ok(true) => report.actions.push(format!("deleted {kind} {name}")),
            Ok(false) => {}
            Err(e) => report.errors.push(format!("{kind} {name}: {e}")),
        }
    }
}

/// Deletes the cluster-scoped `K` named `name`: Ok(true) when it was there.
pub(crate) async fn delete_named<K>(client: &kube::Client, name: &str) -> Result<bool, kube::Error>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Undoes every fault recorded by the agent in the nodes of `cluster_name`'s containers
/// (all ledgers, or only those of one run).
pub async fn clean_nodes(cluster_name: &str, scope: Scope<'_>, report: &mut GcReport) {
    for node in connect_nodes(cluster_name, report).await {
        match node
            .exec_raw(&["test", "-x", AGENT_PATH], Duration::from_secs(10))
            .await
        {
            Ok(o) if o.code == 0 => {}
            _ => continue, // no agent was ever installed: no node fault either
        }
        let runs = match scope.ledger_prefix() {
            None => vec![vec!["gc".to_owned(), "--all".to_owned()]],
            Some(prefix) => ledgers_of(&node, prefix, report)
                .await
                .into_iter()
                .map(|run| vec!["gc".to_owned(), "--run".into(), run])
                .collect(),
        };
        for args in runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match node.agent(&args, Duration::from_secs(120)).await {
                Ok(out) => report.actions.push(format!(
                    "{}: agent {} -> {}",
                    node.name,
                    args.join(" "),
                    out.trim()
                )),
                Err(e) => report.errors.push(format!("{}: {e}", node.name)),
            }
        }
    }
}

/// The nodes of a cluster, connected; failures are noted in the report.
async fn connect_nodes(cluster_name: &str, report: &mut GcReport) -> Vec<Node> {
    let names = match cluster::cluster_nodes(cluster_name) {
        Ok(n) => n,
        Err(e) => {
            report.errors.push(e.to_string());
            return Vec::new();
        }
    };
    let mut nodes = Vec::new();
    for name in names {
        match Node::connect(&name).await {
            Ok(n) => nodes.push(n),
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    nodes
}

/// The agent ledgers on `node` whose run starts with `prefix`.
async fn ledgers_of(node: &Node, prefix: &str, report: &mut GcReport) -> Vec<String> {
    let listing = node
        .agent(&["ledger"], Duration::from_secs(30))
        .await
        .unwrap_or_default();
    match serde_json::from_str::<Listing>(&listing) {
        Ok(l) => l
            .ledgers
            .into_iter()
            .map(|l| l.run)
            .filter(|run| run.starts_with(prefix))
            .collect(),
        Err(e) => {
            report.errors.push(format!(
                "{}: reading the agent's ledger listing: {e}",
                node.name
            ));
            Vec::new()
        }
    }
}

/// The names of terminus's namespaces (of the scope).
async fn namespaces_of(client: &kube::Client, scope: Scope<'_>) -> Result<Vec<String>, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .list(&ListParams::default().labels(&scope.namespace_selector()))
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter_map(|ns| ns.metadata.name)
                .collect()
        })
        .map_err(|e| format!("listing namespaces: {e}"))
}

/// Removes every finalizer from the pods in terminus's namespaces. Everything in those
/// namespaces is terminus's: a finalizer there is a fault (or a controller's, whose
/// controller is a fault too), and no one else will ever remove it.
pub async fn release_pods(client: &kube::Client, scope: Scope<'_>, report: &mut GcReport) {
    let namespaces = match namespaces_of(client, scope).await {
        Ok(n) => n,
        Err(e) => return report.errors.push(e),
    };
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let list = match pods.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) => {
                report.errors.push(format!("listing pods in {ns}: {e}"));
                continue;
            }
        };
        for pod in list {
            let name = pod.metadata.name.unwrap_or_default();
            let finalizers = pod.metadata.finalizers.unwrap_or_default();
            if finalizers.is_empty() {
                continue;
            }
            let patch = Patch::Merge(json!({ "metadata": { "finalizers": null } }));
            match patch_past_deleted_policies(&pods, &name, &patch).await {
                Ok(_) => report.actions.push(format!(
                    "removed finalizer(s) {} from pod {ns}/{name}",
                    finalizers.join(", ")
                )),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => report
                    .errors
                    .push(format!("removing the finalizers of pod {ns}/{name}: {e}")),
            }
        }
    }
}

/// How long the API server may go on enforcing an admission policy gc just deleted (its
/// policy informer catches up within a second or two).
const POLICY_LINGER: Duration = Duration::from_secs(20);

/// Patches a pod; a denial by admission is retried until [`POLICY_LINGER`] has passed,
/// because the denying policy may be one of terminus's that was deleted a moment ago.
async fn patch_past_deleted_policies(
    pods: &Api<Pod>,
    name: &str,
    patch: &Patch<serde_json::Value>,
) -> Result<Pod, kube::Error> {
    let until = std::time::Instant::now() + POLICY_LINGER;
    loop {
        match pods.patch(name, &PatchParams::default(), patch).await {
            // A policy's denial comes as 422 (its default reason, Invalid) or 403.
            Err(kube::Error::Api(e))
                if e.message.contains("denied") && std::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// Deletes the namespaces terminus made (of one run, or all).
pub async fn clean_namespaces(client: &kube::Client, scope: Scope<'_>, report: &mut GcReport) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespaces = match namespaces_of(client, scope).await {
        Ok(n) => n,
        Err(e) => return report.errors.push(e),
    };
    for name in namespaces {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => report.actions.push(format!("deleted namespace {name}")),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => report.errors.push(format!("namespace {name}: {e}")),
        }
    }
}

/// Waits up to `deadline` until nothing of terminus's is left in the cluster: no
/// namespace or pod (pods found meanwhile are freed of their finalizers again), and on
/// every node nothing the agent's `leftovers` check names. What is still there at the
/// deadline goes to `report.left`.
pub async fn verify(
    cluster_name: &str,
    client: Option<&kube::Client>,
    scope: Scope<'_>,
    deadline: Duration,
    report: &mut GcReport,
) {
    let mut scratch = GcReport::default();
    let nodes = connect_nodes(cluster_name, &mut scratch).await;
    report.errors.append(&mut scratch.errors);
    let what = format!("nothing of terminus's left in cluster {cluster_name}");
    // The items as found, for the report: the wait's own text joins them.
    let last_seen = std::sync::Mutex::new(Vec::new());
    let waited = crate::wait::until(&what, deadline, || async {
        let mut left = Vec::new();
        if let Some(client) = client {
            let mut scratch = GcReport::default();
            release_pods(client, scope, &mut scratch).await;
            left.extend(api_leftovers(client, scope).await);
        }
        for node in &nodes {
            left.extend(node_leftovers(node).await);
        }
        let seen = left.join("; ");
        let done = left.is_empty();
        if let Ok(mut last) = last_seen.lock() {
            *last = left;
        }
        Ok::<_, String>(if done {
            Check::Done(())
        } else {
            Check::Pending(seen)
        })
    })
    .await;
    match waited {
        Ok(()) => report.actions.push(format!("checked: {what}")),
        Err(WaitError::Timeout(_)) => {
            report.left = last_seen.into_inner().unwrap_or_default();
        }
        Err(WaitError::Check(e)) => report.errors.push(e),
    }
}

/// Namespaces, pods and cluster-scoped objects of terminus's still in the API.
async fn api_leftovers(client: &kube::Client, scope: Scope<'_>) -> Vec<String> {
    let namespaces = match namespaces_of(client, scope).await {
        Ok(n) => n,
        Err(e) => return vec![e],
    };
    let selector = scope.namespace_selector();
    let mut left = Vec::new();
    for (kind, found) in [
        (
            "ValidatingAdmissionPolicyBinding",
            labelled::<ValidatingAdmissionPolicyBinding>(client, &selector).await,
        ),
        (
            "ValidatingAdmissionPolicy",
            labelled::<ValidatingAdmissionPolicy>(client, &selector).await,
        ),
        (
            "ValidatingWebhookConfiguration",
            labelled::<ValidatingWebhookConfiguration>(client, &selector).await,
        ),
    ] {
        match found {
            Ok(names) => left.extend(names.into_iter().map(|n| format!("{kind} {n}"))),
            Err(e) => left.push(e),
        }
    }
    for ns in namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let names: Vec<String> = match pods.list(&ListParams::default()).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect(),
            Err(e) => vec![format!("(listing pods: {e})")],
        };
        left.push(if names.is_empty() {
            format!("namespace {ns}")
        } else {
            format!("namespace {ns} with pod(s) {}", names.join(", "))
        });
    }
    left
}

/// What the node's agent reports left: `<node>: <kind> <what>` per item. A node without
/// the agent gets it installed first: the check covers every node, faulted or not.
async fn node_leftovers(node: &Node) -> Vec<String> {
    if let Err(e) = node.install_agent().await {
        return vec![format!(
            "{}: cannot check (installing the agent: {e})",
            node.name
        )];
    }
    let out = match node
        .exec_raw(&[AGENT_PATH, "leftovers"], Duration::from_secs(60))
        .await
    {
        Ok(out) => out,
        Err(e) => return vec![format!("{}: cannot check: {e}", node.name)],
    };
    match serde_json::from_str::<terminus_core::ledger::Leftovers>(out.stdout.trim()) {
        Ok(found) => found
            .items
            .into_iter()
            .map(|item| format!("{}: {} {}", node.name, item.kind, item.what))
            .collect(),
        Err(e) => vec![format!(
            "{}: cannot check (agent leftovers said {:?}, {}: {e})",
            node.name,
            terminus_core::text::excerpt(out.stdout.trim()),
            terminus_core::text::excerpt(out.stderr.trim())
        )],
    }
}

/// The whole sweep: for every kind cluster terminus created (or only `only`), undo node
/// faults, then delete the cluster (unless `keep_clusters`: then free and delete its
/// pods and namespaces, and check that nothing is left, waiting up to `deadline`).
pub async fn gc_all(keep_clusters: bool, only: Option<&str>, deadline: Duration) -> GcReport {
    let mut report = GcReport::default();
    // The runtime tier's private runtimes whose test process is gone.
    for dir in crate::sandbox::reap_leftovers() {
        report.actions.push(format!(
            "tore down the runtime tier's leftover {}",
            dir.display()
        ));
    }
    let clusters = match cluster::kind_clusters() {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(e.to_string());
            return report;
        }
    };
    for name in clusters.into_iter().filter(|c| only.is_none_or(|o| o == c)) {
        match cluster::ownership(&name) {
            Ok(Ownership::Ours) => {}
            Ok(_) => continue,
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        }
        if keep_clusters {
            let client = match cluster::Cluster::open(&name) {
                Ok(c) => c.client().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let client = client
                .map_err(|e| report.errors.push(format!("cluster {name}: {e}")))
                .ok();
            sweep(&name, client.as_ref(), Scope::All, &mut report).await;
            verify(&name, client.as_ref(), Scope::All, deadline, &mut report).await;
        } else {
            // Flags first: an immutable file in a node's volume would make docker fail
            // to remove the volume when the cluster is deleted.
            clean_nodes(&name, Scope::All, &mut report).await;
            match cluster::down(&name) {
                Ok(()) => report.actions.push(format!("deleted cluster {name}")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_scope_covers_its_own_labels_and_ledgers_only() {
        assert_eq!(
            Scope::All.namespace_selector(),
            "app.kubernetes.io/managed-by=terminus"
        );
        assert_eq!(Scope::All.ledger_prefix(), None);
        let run = Scope::Run("r1202-ab12");
        assert_eq!(run.namespace_selector(), "terminus.dev/run=r1202-ab12");
        assert_eq!(run.ledger_prefix(), Some("r1202-ab12"));
    }

    #[test]
    fn a_report_is_clean_only_with_no_error_and_nothing_left() {
        let mut report = GcReport {
            actions: vec!["deleted namespace x".into()],
            ..GcReport::default()
        };
        assert!(report.clean());
        report
            .left
            .push("terminus-worker: inactive-unit kubelet".into());
        assert!(!report.clean());
        report.left.clear();
        report.errors.push("namespace x: forbidden".into());
        assert!(!report.clean());
    }
}
