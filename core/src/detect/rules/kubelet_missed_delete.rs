//! The `kubelet-missed-delete` rule: what proves this cause, and the remedy filled in from the evidence.
//! It steps aside for node-lost when the node is not Ready while its kubelet still runs
//! (the kubelet is cut off, not ignoring the pod).

use super::*;

pub(super) fn kubelet_missed_delete(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let pod = ev.pod.as_ref()?;
    if !pod.is_deleted() {
        return None;
    }
    // Before the grace period is over (and kubelet has had a sync or two after it), no
    // sign of a kill says nothing: kubelet sends SIGTERM without logging it. The gate
    // waits for this on most pods; a churning DaemonSet's newest pod skips the gate.
    if let (Some(ends), Some(now)) = (pod.deletion_timestamp, ev.captured_at) {
        if now
            < ends
                + chrono::Duration::from_std(crate::detect::DEFAULT_MIN_STUCK).unwrap_or_default()
        {
            return None;
        }
    }
    let running_ids: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .filter_map(|c| c.id.as_deref())
        .collect();
    let crictl_running: Vec<(&Quote, Tie)> = ev
        .crictl_ps
        .iter()
        .filter(|r| r.state == "Running")
        .filter_map(|r| Some((&r.quote, cx.link.crictl(r)?)))
        .collect();
    if running_ids.is_empty() && crictl_running.is_empty() {
        return None;
    }
    // Any sign that kubelet acted on this pod's deletion rules this cause out.
    if kubelet_acted(cx) {
        return None;
    }
    // A node the node controller lost while its kubelet runs: node-lost's.
    if super::node_lost::node_unknown(ev) && !super::node_lost::kubelet_down(ev) {
        return None;
    }
    let kubelet_ps: Vec<&PsEntry> = ev.ps.iter().filter(|p| p.program() == "kubelet").collect();
    let stopped: Vec<&&PsEntry> = kubelet_ps.iter().filter(|p| p.stopped()).collect();
    let not_running = !ev.ps.is_empty() && kubelet_ps.is_empty();
    let node_unknown = ev
        .node
        .as_ref()
        .and_then(|n| n.ready.as_ref())
        .is_some_and(|(status, _, _)| status != "True");
    let mut confidence: f64 = if ev.has("kubelet.log") || ev.has("events.yaml") {
        0.75
    } else {
        0.5
    };
    if !stopped.is_empty() || not_running {
        confidence = 0.95;
    } else if node_unknown {
        confidence += 0.1;
    }
    let node_tie = Tie::Node(node_name(ev));
    let kubelet_tie = Tie::Node(format!("{}'s kubelet", node_name(ev)));
    let mut evidence: Vec<Proof> = deletion_proof(pod);
    evidence.extend(crictl_running.iter().map(|(q, t)| Proof::new(q, t)));
    evidence.extend(stopped.iter().map(|p| Proof::new(&p.quote, &kubelet_tie)));
    if node_unknown {
        evidence.extend(
            ev.node
                .as_ref()
                .and_then(|n| n.ready_quote.as_ref())
                .map(|q| Proof::new(q, &node_tie)),
        );
    }
    let node = node_name(ev);
    let remedy = remedy(ev, &stopped, &node);
    let summary = if let Some(p) = stopped.first() {
        format!(
            "kubelet (pid {}) on {node} is stopped, so nothing kills pod {}/{}",
            p.pid, pod.namespace, pod.name
        )
    } else if not_running {
        format!(
            "no kubelet process runs on {node}, so nothing kills pod {}/{}",
            pod.namespace, pod.name
        )
    } else {
        format!("pod {}/{} is deleted, its containers still run, and kubelet on {node} shows no kill attempt", pod.namespace, pod.name)
    };
    diagnosis(
        CauseId::KubeletMissedDelete,
        confidence,
        summary,
        evidence,
        remedy,
    )
}

/// Let a stopped kubelet run, else restart it; then watch the pod go.
fn remedy(ev: &Evidence, stopped: &[&&PsEntry], node: &str) -> Vec<Step> {
    let mut remedy: Vec<Step> = stopped
        .iter()
        .map(|p| {
            Step::act_on_node(
                format!(
                    "kubelet (pid {}) is stopped (state {}); let it run",
                    p.pid, p.stat
                ),
                ["kill".to_owned(), "-CONT".to_owned(), p.pid.to_string()],
            )
        })
        .collect();
    remedy.push(Step::act_on_node(
        format!("restart kubelet on {node}: it re-lists pods and acts on the deletion"),
        ["systemctl", "restart", "kubelet"],
    ));
    remedy.push(Step::say(
        "long term: upgrade kubelet (the original list-watch bug was fixed after v1.8)",
    ));
    remedy.extend(watch_step(ev));
    remedy
}

/// Whether events or kubelet's log show it acting on the pod's deletion (a kill, a stop,
/// a DELETE in its sync loop), in lines tied to the pod. Old kubelets name the container
/// and not the pod (`Killing container "docker://<id>" with 30 second grace period`):
/// the container id ties those.
fn kubelet_acted(cx: &Cx) -> bool {
    let kill_words = [
        "Killing",
        "killing",
        "KillContainer",
        "StopContainer",
        "StopPodSandbox",
        "SyncLoop DELETE",
        "SyncLoop (DELETE",
    ];
    let ev = cx.ev;
    ev.events
        .iter()
        .any(|e| e.reason == "Killing" && cx.link.event(e).is_some())
        || ev.kubelet_log.iter().any(|q| {
            kill_words.iter().any(|w| q.text.contains(w))
                && !cx.link.stale_line(&q.text)
                && cx.link.text_tie(&q.text).is_some()
        })
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture, run};
    use super::*;

    #[test]
    fn restarts_kubelet_when_it_ignored_the_deletion() {
        let d = run(
            kubelet_missed_delete,
            &fixture("kind/kubelet-missed-delete"),
        )
        .expect("a diagnosis");
        assert_eq!(d.cause, CauseId::KubeletMissedDelete);
        assert!(
            acts(&d).iter().any(|a| a == "systemctl restart kubelet"),
            "{:?}",
            acts(&d)
        );
    }

    /// A churning DaemonSet's newest pod, captured a second before its grace period
    /// ended on a crowded node (CI, stop 24): kubelet had logged no kill yet, which is
    /// no sign that it missed the deletion.
    #[test]
    fn a_pod_inside_its_grace_period_is_not_missed() {
        let ev = fixture("cells/k1.37-cd2.1/daemonset-hash-churn");
        assert!(ev
            .pod
            .as_ref()
            .is_some_and(|p| p.deletion_timestamp > ev.captured_at));
        assert_eq!(run(kubelet_missed_delete, &ev), None);
    }

    /// Kubelets of the dockershim era name the container, not the pod, when they kill
    /// it; the container id ties the line, so the kill counts as kubelet acting.
    #[test]
    fn an_old_kill_line_by_container_id_shows_kubelet_acted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kind/kubelet-missed-delete");
        let pod = std::fs::read_to_string(dir.join("pod.yaml"))
            .expect("pod.yaml")
            .replace("containerd://", "docker://");
        let id = "59fdf496376c8e41b3742df4d14ea9264fb633fbd6fc31a7ce15d13e3f0c8097";
        let kill = format!(
            "Nov 28 12:32:08 node-1 kubelet[1290]: I1128 12:32:08.301845    1290 kubelet.go:1521] Killing container \"docker://{id}\" with 30 second grace period"
        );
        let mut ev = Evidence::default();
        ev.ingest("pod.yaml", &pod);
        ev.ingest("captured-at", "2026-11-28T12:32:37Z");
        ev.ingest("kubelet.log", &format!("{kill}\n"));
        assert_eq!(ev.kubelet_log.len(), 1, "the kill line is kept");
        assert_eq!(run(kubelet_missed_delete, &ev), None);
        // The same line about another container proves nothing for this pod.
        let mut other = Evidence::default();
        other.ingest("pod.yaml", &pod);
        other.ingest("captured-at", "2026-11-28T12:32:37Z");
        other.ingest(
            "kubelet.log",
            &format!("{}\n", kill.replace("59fdf4", "0a1b2c")),
        );
        assert_eq!(
            run(kubelet_missed_delete, &other).map(|d| d.cause),
            Some(CauseId::KubeletMissedDelete)
        );
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(kubelet_missed_delete);
    }
}
