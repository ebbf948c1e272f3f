//! The affinity-churn fault: a writer task that keeps re-sorting a DaemonSet's
//! nodeSelectorTerms, as the old controller's sort did, so every write is a new
//! template hash and the DaemonSet controller keeps replacing its pods.
//!
//! Architecture invariant: the writer is a task of the harness process, not a node
//! fault: nothing to ledger, and it cannot outlive the process that started it.
//! Architecture invariant: the writer only ever re-orders terms that are there; once the
//! affinity is gone (the nodeSelector remedy) it writes nothing.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::NodeSelectorTerm;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Applied, FaultContext};

/// The running writer of an [`Applied::Churn`] record: stop it, then await its count of
/// writes.
#[derive(Debug)]
pub struct ChurnWriter {
    stop: watch::Sender<bool>,
    writer: JoinHandle<u64>,
}

pub(super) fn apply(cx: &FaultContext<'_>, interval: Duration) -> Applied {
    let t = cx.target;
    let (stop, mut stopped) = watch::channel(false);
    let daemonsets: Api<DaemonSet> = Api::namespaced(cx.client.clone(), &t.namespace);
    let name = t.pod.clone();
    let writer = tokio::spawn(async move {
        let mut writes = 0u64;
        loop {
            match resort_affinity(&daemonsets, &name).await {
                Ok(true) => writes += 1,
                Ok(false) => {}
                Err(e) => tracing::debug!(daemonset = %name, "re-sorting the affinity: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return writes,
            }
        }
    });
    Applied::Churn {
        namespace: t.namespace.clone(),
        daemonset: t.pod.clone(),
        writer: Some(ChurnWriter { stop, writer }),
    }
}

/// Stops the writer, if this process still has it.
pub(super) async fn recover(daemonset: &str, writer: Option<ChurnWriter>) -> String {
    match writer {
        Some(ChurnWriter { stop, writer }) => {
            // A send error means the writer already ended: nothing left to stop.
            let _ = stop.send(true);
            let writes = writer.await.unwrap_or(0);
            format!("stopped the affinity writer on {daemonset} after {writes} writes")
        }
        None => {
            format!("the affinity writer on {daemonset} ended with the process that started it")
        }
    }
}

/// Reverses the order of the DaemonSet's nodeSelectorTerms; a no-op (false) with fewer
/// than two terms.
///
/// A replace of the object read, as the old controller wrote it: the resourceVersion makes
/// it a compare-and-swap, so a write racing the nodeSelector remedy is refused (409) instead
/// of putting the affinity back, and the next round finds nothing to re-sort. (An apply
/// patch carried no precondition and did put it back: CI, stop 24.)
async fn resort_affinity(daemonsets: &Api<DaemonSet>, name: &str) -> Result<bool, kube::Error> {
    let mut ds = daemonsets.get(name).await?;
    let Some(terms) = ds
        .spec
        .template
        .spec
        .as_mut()
        .and_then(|s| s.affinity.as_mut())
        .and_then(|a| a.node_affinity.as_mut())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_mut()
        })
        .map(|r| &mut r.node_selector_terms)
    else {
        return Ok(false);
    };
    let Some(reversed) = resorted(std::mem::take(terms)) else {
        return Ok(false);
    };
    *terms = reversed;
    daemonsets
        // Its own field manager, so the DaemonSet's managedFields name the writer (what
        // an on-call engineer follows to find it).
        .replace(
            name,
            &PostParams {
                field_manager: Some("terminus-affinity-writer".into()),
                ..PostParams::default()
            },
            &ds,
        )
        .await?;
    Ok(true)
}

/// The terms in reverse order, or None when there are too few to re-order.
fn resorted(terms: Vec<NodeSelectorTerm>) -> Option<Vec<NodeSelectorTerm>> {
    (terms.len() >= 2).then(|| terms.into_iter().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;

    fn term(key: &str) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: "Exists".into(),
                values: None,
            }]),
            match_fields: None,
        }
    }

    #[test]
    fn reverses_two_or_more_terms_and_leaves_fewer_alone() {
        assert_eq!(
            resorted(vec![term("a"), term("b")]),
            Some(vec![term("b"), term("a")])
        );
        assert_eq!(resorted(vec![term("a")]), None);
        assert_eq!(resorted(Vec::new()), None);
    }
}
