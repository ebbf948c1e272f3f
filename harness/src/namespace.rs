//! Deleting a terminus namespace: pods still held by a finalizer are released first, so
//! cleanup never waits on the fault it just recovered. Used by trials, drills and gc.
//! And the wait a new namespace needs before it takes a pod.
//!
//! Architecture invariant: only namespaces terminus created are passed here (their names
//! carry the run id); the wait has a deadline.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;

/// Waits for the new namespace's `default` service account: the API refuses a pod until
/// the controller manager has made it, seconds after the namespace on a busy control
/// plane.
pub async fn wait_service_account(
    client: &Client,
    ns: &str,
    deadline: Duration,
) -> Result<(), String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    crate::wait::wait_for(
        &format!("the default service account of namespace {ns}"),
        deadline,
        || {
            let accounts = accounts.clone();
            async move {
                let found = accounts
                    .get_opt("default")
                    .await
                    .map_err(|e| format!("reading the default service account: {e}"))?;
                Ok(found.map(|_| ()))
            }
        },
    )
    .await
}

/// Deletes the namespace and waits for it to go; pods still held by a finalizer are
/// released first, so cleanup never waits on the fault it just recovered.
pub async fn delete(client: &Client, ns: &str, deadline: Duration) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default()).await {
        for p in list.items.iter().filter(|p| {
            p.metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| !f.is_empty())
        }) {
            let name = p.metadata.name.clone().unwrap_or_default();
            let _ = pods
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                )
                .await;
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.delete(ns, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(format!("deleting namespace {ns}: {e}")),
    }
    crate::wait::namespace_deleted(client, ns, deadline)
        .await
        .map_err(|e| e.to_string())
}
