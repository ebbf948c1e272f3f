//! The deny-finalizer-removal fault: a ValidatingAdmissionPolicy and its binding that
//! deny any update of a pod in the trial's namespace that drops `finalizer` (the Job
//! controller's `batch.kubernetes.io/job-tracking`). When the Job's pod is deleted and
//! stops, the real Job controller's patch removing its finalizer is rejected by the real
//! API server, and the pod object stays.
//!
//! Architecture invariant: both objects are cluster-scoped and carry the trial's
//! namespace labels (run, scenario, managed-by), so `terminus gc` deletes them by label
//! after SIGKILL; the binding matches only the trial's namespace, so no other trial's
//! pods are judged. Apply returns only once the API server enforces the policy (a
//! dry run of the controller's update is denied). Recover deletes exactly the two
//! objects the record names.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::wait::{Check, WaitError};
use crate::workload::{MANAGED_LABEL, RUN_LABEL, SCENARIO_LABEL};

use super::{Applied, FaultContext, FaultError};

/// The policy's name (the binding's too): per trial, from its ledger key.
fn name_of(ledger: &str) -> String {
    format!("terminus-{ledger}")
}

/// The CEL rule: an update may not drop `finalizer` from a pod that had it.
fn expression(finalizer: &str) -> String {
    let f = serde_json::to_string(finalizer).unwrap_or_default();
    format!(
        "!({f} in oldObject.metadata.?finalizers.orValue([])) || ({f} in object.metadata.?finalizers.orValue([]))"
    )
}

pub(super) async fn apply(cx: &FaultContext<'_>, finalizer: &str) -> Result<Applied, FaultError> {
    let ns = &cx.target.namespace;
    let name = name_of(cx.ledger);
    // The namespace's own terminus labels go on the cluster-scoped objects.
    let namespace = Api::<Namespace>::all(cx.client.clone()).get(ns).await?;
    let labels: serde_json::Map<String, Value> = namespace
        .metadata
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| [RUN_LABEL, SCENARIO_LABEL, MANAGED_LABEL].contains(&k.as_str()))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": { "resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["pods"]
            }] },
            "validations": [{
                "expression": expression(finalizer),
                "message": format!("pods of namespace {ns} keep their {finalizer} finalizer (terminus fault)")
            }]
        }
    }))
    .expect("a policy built from a validated scenario is valid");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": { "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": ns }
            } }
        }
    }))
    .expect("a binding built from a validated scenario is valid");
    let record = Applied::AdmissionPolicy {
        policy: name.clone(),
        binding: name.clone(),
    };
    Api::<ValidatingAdmissionPolicy>::all(cx.client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    if let Err(e) = Api::<ValidatingAdmissionPolicyBinding>::all(cx.client.clone())
        .create(&PostParams::default(), &binding)
        .await
    {
        let error = Box::new(FaultError::from(e));
        return Err(match recover(cx.client, &name, &name).await {
            Ok(undone) => FaultError::Undone { error, undone },
            Err(also) => FaultError::UndoFailed {
                error,
                also: Box::new(also),
            },
        });
    }
    if let Err(error) = wait_enforced(cx, finalizer).await {
        let error = Box::new(error);
        return Err(match recover(cx.client, &name, &name).await {
            Ok(undone) => FaultError::Undone { error, undone },
            Err(also) => FaultError::UndoFailed {
                error,
                also: Box::new(also),
            },
        });
    }
    Ok(record)
}

/// How long the API server may take to enforce a new policy (its informer).
const ENFORCED_WITHIN: Duration = Duration::from_secs(30);

/// Waits until the API server denies a dry-run of the very update the controller will
/// make (the pod without `finalizer`): a policy is enforced only once the API server's
/// informer has it, and a Job controller quicker than that would clear the pod.
async fn wait_enforced(cx: &FaultContext<'_>, finalizer: &str) -> Result<(), FaultError> {
    let pods: Api<Pod> = Api::namespaced(cx.client.clone(), &cx.target.namespace);
    let dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    crate::wait::until(
        "the admission policy to be enforced",
        ENFORCED_WITHIN,
        || async {
            let pod = pods.get(&cx.target.pod).await?;
            let kept: Vec<String> = pod
                .metadata
                .finalizers
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != finalizer)
                .collect();
            let patch = Patch::Merge(json!({ "metadata": { "finalizers": kept } }));
            Ok::<_, FaultError>(match pods.patch(&cx.target.pod, &dry_run, &patch).await {
                Err(kube::Error::Api(e)) if e.message.contains("denied") => Check::Done(()),
                Ok(_) => Check::Pending("the dry run was admitted".into()),
                Err(e) => Check::Pending(e.to_string()),
            })
        },
    )
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => FaultError::NotReached(t.to_string()),
        WaitError::Check(e) => e,
    })
}

/// Deletes the binding, then the policy; either may be gone already.
pub(super) async fn recover(
    client: &Client,
    policy: &str,
    binding: &str,
) -> Result<String, FaultError> {
    let mut done = Vec::new();
    if crate::gc::delete_named::<ValidatingAdmissionPolicyBinding>(client, binding).await? {
        done.push(format!("deleted binding {binding}"));
    }
    if crate::gc::delete_named::<ValidatingAdmissionPolicy>(client, policy).await? {
        done.push(format!("deleted policy {policy}"));
    }
    Ok(if done.is_empty() {
        format!("admission policy {policy} already gone")
    } else {
        done.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_quotes_the_finalizer_as_a_cel_string() {
        assert_eq!(
            expression("batch.kubernetes.io/job-tracking"),
            r#"!("batch.kubernetes.io/job-tracking" in oldObject.metadata.?finalizers.orValue([])) || ("batch.kubernetes.io/job-tracking" in object.metadata.?finalizers.orValue([]))"#
        );
    }
}
