//! `terminus gc`: remove what killed runs left behind. Everything terminus makes is
//! findable without the run that made it: kind clusters by their ownership record
//! (cluster.rs), node faults by the agent's ledger inside each node, namespaces by the
//! `app.kubernetes.io/managed-by=terminus` label.
//!
//! Architecture invariant: gc deletes only what carries terminus's mark: clusters
//! whose ownership record and mount check out (`cluster::ownership`), ledger entries the
//! agent recorded, namespaces with the managed-by label. It never guesses by name alone.
//! Architecture invariant: gc keeps going past a failure; every failure is collected in
//! the [`GcReport`] for the caller to show, nothing is printed here.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams};
use terminus_core::ledger::Listing;

use crate::cluster::{self, Ownership};
use crate::node::{Node, AGENT_PATH};
use crate::workload::{MANAGED_LABEL, MANAGED_VALUE, RUN_LABEL};

#[derive(Debug, Default)]
pub struct GcReport {
    pub actions: Vec<String>,
    pub errors: Vec<String>,
}

/// Undoes every fault recorded by the agent in the nodes of `cluster_name`'s containers
/// (all ledgers, or only those whose name starts with `run`).
pub async fn clean_nodes(cluster_name: &str, run: Option<&str>, report: &mut GcReport) {
    let nodes = match cluster::cluster_nodes(cluster_name) {
        Ok(n) => n,
        Err(e) => {
            report.errors.push(e.to_string());
            return;
        }
    };
    for name in nodes {
        let node = match Node::connect(&name).await {
            Ok(n) => n,
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        match node
            .exec_raw(&["test", "-x", AGENT_PATH], Duration::from_secs(10))
            .await
        {
            Ok(o) if o.code == 0 => {}
            _ => continue, // no agent was ever installed: no node fault either
        }
        let ledgers = match run {
            None => vec![vec!["gc".to_owned(), "--all".to_owned()]],
            Some(prefix) => {
                let listing = node
                    .agent(&["ledger"], Duration::from_secs(30))
                    .await
                    .unwrap_or_default();
                let ledgers = match serde_json::from_str::<Listing>(&listing) {
                    Ok(l) => l.ledgers,
                    Err(e) => {
                        report
                            .errors
                            .push(format!("{name}: reading the agent's ledger listing: {e}"));
                        Vec::new()
                    }
                };
                ledgers
                    .into_iter()
                    .filter(|l| l.run.starts_with(prefix))
                    .map(|l| vec!["gc".to_owned(), "--run".into(), l.run])
                    .collect()
            }
        };
        // The disk-full fault's tmpfs over the CRI state dir is not in the agent's
        // ledger (the agent only keeps it full): restore it after the fillers stop.
        for args in ledgers {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match node.agent(&args, Duration::from_secs(120)).await {
                Ok(out) => report.actions.push(format!(
                    "{name}: agent {} -> {}",
                    args.join(" "),
                    out.trim()
                )),
                Err(e) => report.errors.push(format!("{name}: {e}")),
            }
        }
        match crate::fault::restore_leftover_cri_tmpfs(&node, run).await {
            Ok(Some(done)) => report.actions.push(format!("{name}: {done}")),
            Ok(None) => {}
            Err(e) => report
                .errors
                .push(format!("{name}: restoring the CRI state dir: {e}")),
        }
    }
}

/// Deletes the namespaces terminus made (of one run, or all).
pub async fn clean_namespaces(client: &kube::Client, run: Option<&str>, report: &mut GcReport) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = match run {
        Some(r) => format!("{RUN_LABEL}={r}"),
        None => format!("{MANAGED_LABEL}={MANAGED_VALUE}"),
    };
    match namespaces
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => {
            for ns in list.items {
                let name = ns.metadata.name.unwrap_or_default();
                match namespaces.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => report.actions.push(format!("deleted namespace {name}")),
                    Err(e) => report.errors.push(format!("namespace {name}: {e}")),
                }
            }
        }
        Err(e) => report.errors.push(format!("listing namespaces: {e}")),
    }
}

/// The whole sweep: for every kind cluster terminus created (or only `only`), undo node
/// faults, then delete the cluster (unless `keep_clusters`: then only its namespaces go).
pub async fn gc_all(keep_clusters: bool, only: Option<&str>) -> GcReport {
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
        // Flags first: an immutable file in a node's volume would make docker fail to
        // remove the volume when the cluster is deleted.
        clean_nodes(&name, None, &mut report).await;
        if keep_clusters {
            if let Ok(c) = cluster::Cluster::open(&name) {
                if let Ok(client) = c.client().await {
                    clean_namespaces(&client, None, &mut report).await;
                }
            }
        } else {
            match cluster::down(&name) {
                Ok(()) => report.actions.push(format!("deleted cluster {name}")),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
    }
    report
}
