//! The node-clean check: after the pod is gone, nothing of it may remain on the node —
//! no container, sandbox, task, mount, pod directory, immutable file or frozen process.

use std::time::Duration;

use crate::node::Node;
use crate::probe::Target;

/// Everything still on the node that belongs to the target pod; empty means clean.
pub async fn leftovers(node: &Node, target: &Target, debris: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for probe in probes(target, debris) {
        let argv: Vec<&str> = probe.argv.iter().map(String::as_str).collect();
        match node.exec_raw(&argv, Duration::from_secs(20)).await {
            Ok(o) if o.code == 0 && !o.stdout.trim().is_empty() => left.push(format!(
                "{}: {}",
                probe.what,
                o.stdout.trim().replace('\n', ", ")
            )),
            Ok(_) => {}
            Err(e) => left.push(format!("{}: could not check ({e})", probe.what)),
        }
    }
    left
}

/// One look at the node: prints what is left (nothing when clean).
struct Probe {
    what: String,
    argv: Vec<String>,
}

fn sh(what: impl Into<String>, script: impl Into<String>) -> Probe {
    Probe {
        what: what.into(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
    }
}

fn run<const N: usize>(what: impl Into<String>, argv: [&str; N]) -> Probe {
    Probe {
        what: what.into(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// The looks the clean check takes, for this pod and this fault's debris. The values in
/// the scripts are the harness's own (uids, container ids, ledger paths), not evidence.
fn probes(target: &Target, debris: &[String]) -> Vec<Probe> {
    let mut probes = Vec::new();
    if let Some(uid) = &target.uid {
        let label = format!("io.kubernetes.pod.uid={uid}");
        probes.push(run(
            "containers",
            ["crictl", "ps", "-a", "-q", "--label", &label],
        ));
        probes.push(run(
            "sandboxes",
            ["crictl", "pods", "-q", "--label", &label],
        ));
        let dir = format!("/var/lib/kubelet/pods/{uid}");
        probes.push(sh(
            "pod directory",
            format!("test -e {dir} && echo {dir} || true"),
        ));
        probes.push(sh(
            "mounts of the pod",
            format!("grep -h {uid} /proc/1/mountinfo | cut -d' ' -f5 || true"),
        ));
    }
    for id in &target.container_ids {
        probes.push(sh(
            format!("task {id}"),
            format!("ctr -n k8s.io task ls -q | grep {id} || true"),
        ));
        probes.push(sh(
            format!("mounts of {id}"),
            format!("grep -h {id} /proc/1/mountinfo | cut -d' ' -f5 || true"),
        ));
    }
    for path in debris {
        probes.push(sh(
            "debris of the fault",
            format!("test -e '{path}' && echo '{path}' || true"),
        ));
        // Still mounted in any mount namespace (a bind holder's leaked layer shows only
        // in the holder's mountinfo); the trailing slash keeps `…/7` from matching `…/70`.
        probes.push(run(
            "mounts of the fault's debris in any mount namespace",
            [crate::node::AGENT_PATH, "mountinfo", &format!("{path}/")],
        ));
    }
    // Snapshot directories containerd lost track of (the immutable-rootfs leak): a
    // directory under snapshots/ that no snapshot in containerd's metadata names.
    probes.push(sh(
        "immutable files in containerd snapshots",
        "lsattr -R /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots 2>/dev/null | awk '$1 ~ /i/ {print $2}' || true",
    ));
    probes.push(sh(
        "stopped runtime or kubelet processes",
        "ps -eo pid,stat,comm | awk '$2 ~ /^T/ && ($3 ~ /^(kubelet|containerd)/) {print $1\" \"$3}' || true",
    ));
    // Hostile-name scenarios spell `touch terminus-canary-…` in names that reach the
    // remedy through evidence (node execs run in `/`): such a file means some step ran
    // evidence as code.
    probes.push(sh(
        "canaries of evidence run as code",
        "ls -d /terminus-canary-* /tmp/terminus-canary-* 2>/dev/null || true",
    ));
    probes.push(sh(
        "terminus agent daemons (fillers, holders)",
        "ps -eo pid,args | grep -E 'terminus-agent __(fill|hold)' | grep -v grep || true",
    ));
    probes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_fact_is_looked_for() {
        let target = Target {
            namespace: "ns".into(),
            pod: "victim".into(),
            uid: Some("u-1".into()),
            node: Some("worker".into()),
            container_ids: vec!["c1".into()],
            last_seen: None,
        };
        let probes = probes(&target, &["/var/lib/x".to_owned()]);
        let whats: Vec<&str> = probes.iter().map(|p| p.what.as_str()).collect();
        for want in [
            "containers",
            "sandboxes",
            "pod directory",
            "mounts of the pod",
            "task c1",
            "mounts of c1",
            "debris of the fault",
        ] {
            assert!(whats.contains(&want), "{want} missing from {whats:?}");
        }
        let sandboxes = probes
            .iter()
            .find(|p| p.what == "sandboxes")
            .expect("sandboxes");
        assert_eq!(
            sandboxes.argv,
            [
                "crictl",
                "pods",
                "-q",
                "--label",
                "io.kubernetes.pod.uid=u-1"
            ]
        );
    }

    #[test]
    fn without_a_uid_only_node_wide_looks_remain() {
        let target = Target {
            namespace: "ns".into(),
            pod: "victim".into(),
            uid: None,
            node: None,
            container_ids: Vec::new(),
            last_seen: None,
        };
        let whats: Vec<String> = probes(&target, &[]).into_iter().map(|p| p.what).collect();
        assert_eq!(whats.len(), 4, "{whats:?}");
        assert!(whats.iter().any(|w| w.starts_with("canaries")), "{whats:?}");
    }
}
