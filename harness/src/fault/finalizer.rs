//! The finalizer fault: a finalizer on the pod that no controller owns, so the API
//! server keeps the pod until someone removes it.
//!
//! Architecture invariant: apply adds the one finalizer it names (once) and recover
//! removes that one and leaves the pod's other finalizers alone.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::{Applied, FaultContext, FaultError};

pub(super) async fn apply(cx: &FaultContext<'_>, name: &str) -> Result<Applied, FaultError> {
    let t = cx.target;
    let pods: Api<Pod> = Api::namespaced(cx.client.clone(), &t.namespace);
    let pod = pods.get(&t.pod).await?;
    let current = pod.metadata.finalizers.unwrap_or_default();
    if !current.iter().any(|f| f == name) {
        let mut finalizers = current;
        finalizers.push(name.to_owned());
        set_finalizers(&pods, &t.pod, finalizers).await?;
    }
    Ok(Applied::Finalizer {
        namespace: t.namespace.clone(),
        pod: t.pod.clone(),
        name: name.to_owned(),
    })
}

pub(super) async fn recover(
    client: &Client,
    namespace: &str,
    pod: &str,
    name: &str,
) -> Result<String, FaultError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.get_opt(pod).await? {
        None => Ok(format!("pod {pod} is gone; finalizer {name} with it")),
        Some(p) => {
            let rest = without(p.metadata.finalizers.unwrap_or_default(), name);
            set_finalizers(&pods, pod, rest).await?;
            Ok(format!("removed finalizer {name} from pod {pod}"))
        }
    }
}

async fn set_finalizers(
    pods: &Api<Pod>,
    pod: &str,
    finalizers: Vec<String>,
) -> Result<(), FaultError> {
    pods.patch(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })),
    )
    .await?;
    Ok(())
}

/// The finalizers with every `name` removed, the others in their order.
fn without(finalizers: Vec<String>, name: &str) -> Vec<String> {
    finalizers.into_iter().filter(|f| f != name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recover_removes_only_its_own_finalizer() {
        let all = vec!["a".to_owned(), "mine".into(), "b".into()];
        assert_eq!(without(all, "mine"), vec!["a".to_owned(), "b".into()]);
        assert!(without(Vec::new(), "mine").is_empty());
    }
}
