//! The node-clean check: after the pod is gone, nothing of it may remain on the node —
//! no container, sandbox, task, mount, pod directory, immutable file or frozen process.

use std::time::Duration;

use crate::node::Node;
use crate::probe::Target;

/// Everything still on the node that belongs to the target pod; empty means clean.
pub async fn leftovers(node: &Node, target: &Target, debris: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    let t = Duration::from_secs(20);
    let mut check =
        |what: String, out: Result<crate::node::ExecOutput, crate::node::NodeError>| match out {
            Ok(o) if o.code == 0 && !o.stdout.trim().is_empty() => {
                left.push(format!("{what}: {}", o.stdout.trim().replace('\n', ", ")))
            }
            Ok(_) => {}
            Err(e) => left.push(format!("{what}: could not check ({e})")),
        };
    if let Some(uid) = &target.uid {
        let label = format!("io.kubernetes.pod.uid={uid}");
        check(
            "containers".into(),
            node.exec_raw(&["crictl", "ps", "-a", "-q", "--label", &label], t)
                .await,
        );
        check(
            "sandboxes".into(),
            node.exec_raw(&["crictl", "pods", "-q", "--label", &label], t)
                .await,
        );
        let dir = format!("/var/lib/kubelet/pods/{uid}");
        check(
            "pod directory".into(),
            node.exec_raw(
                &["sh", "-c", &format!("test -e {dir} && echo {dir} || true")],
                t,
            )
            .await,
        );
        check(
            "mounts of the pod".into(),
            node.exec_raw(
                &[
                    "sh",
                    "-c",
                    &format!("grep -h {uid} /proc/1/mountinfo | cut -d' ' -f5 || true"),
                ],
                t,
            )
            .await,
        );
    }
    for id in &target.container_ids {
        check(
            format!("task {id}"),
            node.exec_raw(
                &[
                    "sh",
                    "-c",
                    &format!("ctr -n k8s.io task ls -q | grep {id} || true"),
                ],
                t,
            )
            .await,
        );
        check(
            format!("mounts of {id}"),
            node.exec_raw(
                &[
                    "sh",
                    "-c",
                    &format!("grep -h {id} /proc/1/mountinfo | cut -d' ' -f5 || true"),
                ],
                t,
            )
            .await,
        );
    }
    for path in debris {
        check(
            format!("debris of the fault"),
            node.exec_raw(
                &[
                    "sh",
                    "-c",
                    &format!("test -e '{path}' && echo '{path}' || true"),
                ],
                t,
            )
            .await,
        );
    }
    // Snapshot directories containerd lost track of (the immutable-rootfs leak): a
    // directory under snapshots/ that no snapshot in containerd's metadata names.
    check(
        "immutable files in containerd snapshots".into(),
        node.exec_raw(&["sh", "-c", "lsattr -R /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots 2>/dev/null | awk '$1 ~ /i/ {print $2}' || true"], t).await,
    );
    check(
        "stopped runtime or kubelet processes".into(),
        node.exec_raw(&["sh", "-c", "ps -eo pid,stat,comm | awk '$2 ~ /^T/ && ($3 ~ /^(kubelet|containerd)/) {print $1\" \"$3}' || true"], t).await,
    );
    check(
        "terminus agent daemons (fillers, holders)".into(),
        node.exec_raw(
            &[
                "sh",
                "-c",
                "ps -eo pid,args | grep -E 'terminus-agent __(fill|hold)' | grep -v grep || true",
            ],
            t,
        )
        .await,
    );
    left
}
