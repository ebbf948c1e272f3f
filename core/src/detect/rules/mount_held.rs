//! The `mount-held` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

static BUSY_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:unmount target|umount|remove|unlinkat|rmdir)\s+(/[^\s:]+):\s*device or resource busy",
    )
    .expect("regex")
});

pub(super) fn mount_held(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    // A cgroup directory that will not go is busy with processes, not mounts: cgroup-busy's.
    let busy: Vec<(&Quote, Tie)> = cx
        .lines_with("device or resource busy")
        .filter(|(q, _)| !q.text.contains("/sys/fs/cgroup/"))
        .collect();
    let busy_paths: BTreeSet<String> = busy
        .iter()
        .filter_map(|(q, _)| BUSY_PATH.captures(&q.text).map(|c| c[1].to_owned()))
        .collect();
    // A holder counts when what it holds is the pod's: a mount of one of its containers
    // or sandboxes, or a path a tied busy error named.
    let mut holders = mount_holders(ev, &busy_paths);
    holders.retain(|_, (mount, _, _)| {
        !cx.link.known
            || cx.link.path(mount).is_some()
            || busy_paths.iter().any(|b| mount.starts_with(b.as_str()))
    });
    for r in &ev.proc_refs {
        let ps = ev.ps.iter().find(|p| p.pid == r.pid);
        // The runtime keeps its own task directory open (the log FIFO): that is not a
        // holder.
        if ps.is_some_and(|p| is_runtime(p) || p.program() == "kubelet") {
            continue;
        }
        if busy_paths.iter().any(|b| r.target.starts_with(b.as_str()))
            || (cx.link.known && r.target.contains("/rootfs") && cx.link.path(&r.target).is_some())
        {
            holders
                .entry(r.pid)
                .or_insert((r.target.clone(), ps, r.quote.clone()));
        }
    }
    let leaks = leaked_layers(cx);
    if busy.is_empty() && holders.is_empty() && !leaks.is_empty() {
        return leak_diagnosis(&leaks);
    }
    // A mount seen in two namespaces is normal (propagation); without a busy error it
    // is a cause only when the process list shows who holds it.
    if busy.is_empty() && (holders.is_empty() || ev.ps.is_empty()) {
        return None;
    }
    let confidence = match (busy.is_empty(), holders.is_empty()) {
        (false, false) => 0.97,
        (false, true) => 0.85,
        _ => 0.6,
    };
    let mut evidence: Vec<Proof> = busy.iter().take(3).map(|(q, t)| Proof::new(q, t)).collect();
    let mut remedy = Vec::new();
    for (pid, (mount, ps, quote)) in &holders {
        let what = match cx.link.path(mount) {
            Some(Tie::Untied | Tie::Unnamed) | None => Tie::Holder(mount.clone()),
            Some(tie) => Tie::Holder(format!("{mount}, which {tie}")),
        };
        evidence.push(Proof::new(quote, &what));
        evidence.extend(ps.iter().map(|p| Proof::new(&p.quote, &what)));
        remedy.extend(holder_steps(
            *pid,
            *ps,
            &format!("holds {mount}"),
            "stop it (or make it let go: leave the directory, close the file, unmount its copy); the runtime retries the removal",
        ));
    }
    if holders.is_empty() {
        let path = busy_paths
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "<the rootfs path>".into());
        let id = container_id_in(&path).unwrap_or_else(|| path.clone());
        remedy.push(Step::look(
            "find the processes whose mount table holds the container",
            format!("grep -l {id} /proc/*/mountinfo"),
        ));
        remedy.push(Step::look(
            "and those whose working directory, root or open files are inside it",
            format!("ls -l /proc/*/cwd /proc/*/root /proc/*/fd/* 2>/dev/null | grep {path}"),
        ));
        remedy.push(Step::say("stop the holder (`ps -f PID`, then kill it or leave the directory); the runtime retries the removal"));
    }
    remedy.extend(watch_step(ev));
    let summary = match (holders.iter().next(), busy_paths.iter().next()) {
        (Some((pid, (mount, _, _))), _) => {
            format!("pid {pid} holds {mount}, so the runtime cannot unmount the container's rootfs")
        }
        (None, Some(path)) => format!("{path} cannot be unmounted: device or resource busy"),
        (None, None) => "a container mount is busy: device or resource busy".into(),
    };
    diagnosis(CauseId::MountHeld, confidence, summary, evidence, remedy)
}

/// Where the runtimes this tool knows keep containers' writable layers.
const LAYER_ROOTS: [&str; 2] = [
    "/io.containerd.snapshotter.v1.overlayfs/snapshots/",
    "/docker/overlay2/",
];

/// A container's writable layer mounted in a namespace other than the runtime's, at a
/// place that is not a container's rootfs: the runtime's unmount succeeded (Linux ≥ 3.18
/// lets it), the container is gone, and the layer lives on in the holder's namespace.
struct Leak<'a> {
    entry: &'a crate::evidence::MountinfoEntry,
    ps: Option<&'a PsEntry>,
    layer: String,
}

/// The runtime's side of the node: the pids of the runtime, kubelet and init (they share
/// the host's mount namespace), and the ids of the mounts their lines show.
fn runtime_view(ev: &Evidence) -> (BTreeSet<u32>, BTreeSet<u64>) {
    let pids: BTreeSet<u32> = ev
        .ps
        .iter()
        .filter(|p| is_runtime(p) || matches!(p.program(), "kubelet" | "systemd" | "init"))
        .map(|p| p.pid)
        .collect();
    let mounts = ev
        .mountinfo
        .iter()
        .filter(|m| m.pid.is_some_and(|p| pids.contains(&p)))
        .map(|m| m.mount_id)
        .collect();
    (pids, mounts)
}

/// The snapshot directory of an overlay `upperdir` (`.../snapshots/N/fs` → `.../snapshots/N`).
fn layer_dir(upper: &str) -> String {
    upper
        .strip_suffix("/fs")
        .or_else(|| upper.strip_suffix("/diff"))
        .unwrap_or(upper)
        .to_owned()
}

fn leaked_layers<'a>(cx: &Cx<'a>) -> Vec<Leak<'a>> {
    let ev = cx.ev;
    let (runtime_pids, runtime_mounts) = runtime_view(ev);
    let at_container_path = |m: &crate::evidence::MountinfoEntry| {
        m.mount_point == "/"
            || m.mount_point.contains("/rootfs")
            || m.mount_point.contains("/merged")
    };
    // A layer some line shows at a container's root is a live container's (a container
    // process's own sub-mounts of it, a propagated copy): not a leak.
    let live: BTreeSet<&str> = ev
        .mountinfo
        .iter()
        .filter(|m| at_container_path(m))
        .filter_map(|m| m.upperdir())
        .collect();
    // Without the process list nothing tells the runtime's namespace from another.
    if ev.ps.is_empty() {
        return Vec::new();
    }
    ev.mountinfo
        .iter()
        .filter_map(|m| {
            let pid = m.pid?;
            let upper = m.upperdir()?;
            let leaked = m.fs_type == "overlay"
                && LAYER_ROOTS.iter().any(|r| upper.contains(r))
                && !at_container_path(m)
                && !live.contains(upper)
                && !runtime_pids.contains(&pid)
                && !runtime_mounts.contains(&m.mount_id);
            // With the pod known, only its own containers' layers count.
            (leaked && (!cx.link.known || cx.link.path(upper).is_some())).then(|| Leak {
                entry: m,
                ps: ev.ps.iter().find(|p| p.pid == pid),
                layer: layer_dir(upper),
            })
        })
        .collect()
}

/// No busy error and no holder of a live container: the layers leaked after the runtime
/// removed their containers. A node diagnosis (the pod is usually gone by then).
fn leak_diagnosis(leaks: &[Leak]) -> Option<Diagnosis> {
    let mut evidence = Vec::new();
    let mut remedy = Vec::new();
    let mut stopped = BTreeSet::new();
    for leak in leaks {
        let pid = leak.entry.pid.unwrap_or(0);
        let what = Tie::Holder(format!(
            "{} mounted at {}",
            leak.layer, leak.entry.mount_point
        ));
        evidence.push(Proof::new(&leak.entry.quote, &what));
        evidence.extend(leak.ps.iter().map(|p| Proof::new(&p.quote, &what)));
        if !stopped.insert(pid) {
            continue;
        }
        remedy.push(Step::look(
            format!(
                "pid {pid}{} still has the layer {} mounted at {} in its own mount namespace; see what it is",
                leak.ps.map(|p| format!(" ({})", p.program())).unwrap_or_default(),
                leak.layer,
                leak.entry.mount_point
            ),
            format!("ps -f {pid}"),
        ));
        remedy.push(Step::act_on_node(
            "stop it (or unmount its copy with `nsenter -t PID -m umount MOUNTPOINT`): the mount goes with the last process of that namespace",
            ["kill".to_owned(), pid.to_string()],
        ));
    }
    let layers: BTreeSet<&str> = leaks.iter().map(|l| l.layer.as_str()).collect();
    for layer in &layers {
        remedy.push(Step::look(
            format!("the runtime removed {layer} with the container, but its files (and their disk space) live on until the last mount of it goes; once the holder is gone, check that the directory is gone too (if it is not, the runtime no longer knows it: remove it)"),
            format!("ls -d {layer}"),
        ));
    }
    remedy.push(Step::say("root fix: processes that enter or copy the host's mount namespace (agents, `unshare -m`, privileged pods with `mountPropagation: Bidirectional`) must not bind container rootfs paths"));
    let first = &leaks[0];
    let summary = format!(
        "pid {} still has the container layer {} mounted at {} in another mount namespace: the container was removed, its mount leaked",
        first.entry.pid.unwrap_or(0),
        first.layer,
        first.entry.mount_point
    );
    // Proof of the leak is the mount itself, in a namespace the process list shows is
    // not the runtime's.
    diagnosis(CauseId::MountHeld, 0.9, summary, evidence, remedy)
}

/// The container (or layer) id in a runtime path: a 64-hex component, or the task
/// directory before `rootfs` (`.../io.containerd.runtime.v2.task/<ns>/<id>/rootfs`).
fn container_id_in(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .iter()
        .find(|c| c.len() == 64 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .or_else(|| {
            parts
                .iter()
                .position(|c| *c == "rootfs")
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| parts.get(i))
        })
        .map(|s| (*s).to_owned())
}

/// Processes that hold a container mount in a mount namespace other than the
/// runtime's. `grep ID /proc/*/mountinfo` matches every process of the runtime's own
/// namespace too, so a match proves nothing by itself: a copy of the mount in another
/// namespace has a mount id of its own, and that is what gives the holder away.
fn mount_holders<'a>(
    ev: &'a Evidence,
    busy_paths: &BTreeSet<String>,
) -> BTreeMap<u32, (String, Option<&'a PsEntry>, Quote)> {
    let busy_ids: BTreeSet<String> = busy_paths
        .iter()
        .filter_map(|p| container_id_in(p))
        .collect();
    // Group by the container (or layer) id in the mount point, preferring the id the
    // busy error named: a holder's copy may sit under another container's rootfs.
    let key = |m: &crate::evidence::MountinfoEntry| -> Option<String> {
        busy_ids
            .iter()
            .find(|id| m.mount_point.contains(id.as_str()))
            .cloned()
            .or_else(|| {
                let p = &m.mount_point;
                (p.contains("/rootfs") || p.contains("/merged") || p.contains("/snapshots/"))
                    .then(|| container_id_in(p).unwrap_or_else(|| p.clone()))
            })
    };
    let mut groups: BTreeMap<String, Vec<&crate::evidence::MountinfoEntry>> = BTreeMap::new();
    // Propagation slaves (systemd services' private namespaces get them for every
    // mount) are unmounted with their master: they never hold anything by themselves.
    for m in ev
        .mountinfo
        .iter()
        .filter(|m| m.pid.is_some() && !m.propagation.contains("master:"))
    {
        if let Some(k) = key(m) {
            groups.entry(k).or_default().push(m);
        }
    }
    let mut out = BTreeMap::new();
    let mut hold = |m: &crate::evidence::MountinfoEntry| {
        let pid = m.pid.unwrap_or(0);
        let ps = ev.ps.iter().find(|p| p.pid == pid);
        out.entry(pid)
            .or_insert((m.mount_point.clone(), ps, m.quote.clone()));
    };
    if !ev.ps.is_empty() {
        let (runtime_pids, host_ids) = runtime_view(ev);
        for m in groups.values().flatten() {
            if !host_ids.contains(&m.mount_id) && !m.pid.is_some_and(|p| runtime_pids.contains(&p))
            {
                hold(m);
            }
        }
        return out;
    }
    // No process list: within a container's group, the mount id most processes share
    // is the runtime's namespace. When the dump holds a single process's lines for the
    // container the runtime failed to remove, that process is the holder (the
    // handbook's `grep ID /proc/*/mountinfo` after the runtime had let go).
    for (id, entries) in &groups {
        let pids: BTreeSet<u32> = entries.iter().filter_map(|m| m.pid).collect();
        if pids.len() == 1 {
            if busy_ids.contains(id) {
                hold(entries[0]);
            }
            continue;
        }
        let mut count: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for m in entries {
            count.entry(m.mount_id).or_default().extend(m.pid);
        }
        if count.len() < 2 {
            continue;
        }
        let host = count
            .iter()
            .max_by_key(|(_, pids)| pids.len())
            .map(|(id, _)| *id);
        for m in entries.iter().filter(|m| Some(m.mount_id) != host) {
            hold(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{assert_silent, fixture, run};
    use super::*;

    #[test]
    fn stops_the_holder_by_its_pid() {
        for bundle in [
            "seed/handbook-mount-held",
            "bundles/containerd-mount-held",
            "kind/mount-held",
        ] {
            let ev = fixture(bundle);
            let d = run(mount_held, &ev).unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
            assert_eq!(d.cause, CauseId::MountHeld);
            for (_, argv) in d.remedy.iter().filter_map(|s| s.action()) {
                assert_eq!(argv[0], "kill", "{bundle}: {argv:?}");
            }
        }
    }

    #[test]
    fn names_the_layer_a_departed_pod_leaked_and_stops_its_holder() {
        let ev = fixture("cells/k1.37-cd2.1/mount-held-bind");
        assert!(ev.pod.is_none(), "a departed pod's bundle has no pod.yaml");
        let d = run(mount_held, &ev).expect("the leak is named");
        assert_eq!(d.cause, CauseId::MountHeld);
        assert!(d.summary.contains("snapshots/7"), "{}", d.summary);
        assert!(d.summary.contains("leaked"), "{}", d.summary);
        let acts: Vec<_> = d.remedy.iter().filter_map(|s| s.action()).collect();
        assert_eq!(acts.len(), 1, "{acts:?}");
        assert_eq!(acts[0].1, ["kill", "760"]);
    }

    #[test]
    fn a_leak_needs_the_process_list() {
        // Without ps.txt nothing tells the runtime's namespace from the holder's.
        let mut ev = fixture("cells/k1.37-cd2.1/mount-held-bind");
        ev.ps.clear();
        assert!(run(mount_held, &ev).is_none());
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(mount_held);
    }
}
