//! The `cgroup-busy` rule: the pod's containers are gone, but kubelet cannot remove the
//! pod's cgroup because a process still lives in it — frozen (a freezer cgroup, where
//! even SIGKILL waits until it is thawed) or otherwise unkillable — so kubelet's pod
//! worker fails (`failed to delete cgroup paths for [... pod<uid>]`) and the pod's
//! resources never count as reclaimed.
//!
//! Told apart from volume-teardown (kubelet checks the volumes first: while they are
//! mounted it does not try the cgroup) and from runtime-hang (the runtime answered: the
//! containers are stopped; it is kubelet's own rmdir that fails).

use super::*;
use crate::evidence::CgroupLine;

/// What kubelet says when the pod cgroup will not go (pod_container_manager_linux.go,
/// pod_workers.go, kubelet_pods.go).
const PHRASES: [&str; 5] = [
    "Failed to delete cgroup paths",
    "failed to delete cgroup paths for",
    "Failed to destroy orphaned pod cgroup",
    "Failed to kill all the processes attached to",
    "pod cgroup sandbox has not been cleaned up",
];

pub(super) fn cgroup_busy(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let failed: Vec<(&Quote, Tie)> = cx.lines_with_any(&PHRASES).collect();
    if failed.is_empty() {
        return None;
    }
    let uid = ev.identity().and_then(|p| p.uid.as_deref()).unwrap_or("");
    let ours: Vec<&CgroupLine> = ev.pod_cgroups.iter().filter(|l| l.of_pod(uid)).collect();
    // The innermost frozen directory: a frozen parent freezes its children too.
    let frozen = ours
        .iter()
        .filter(|l| l.frozen())
        .max_by_key(|l| l.dir.len())
        .copied();
    let inside = |dir: &str| {
        ours.iter()
            .filter(|l| {
                l.pid().is_some() && (l.dir == dir || l.dir.starts_with(&format!("{dir}/")))
            })
            .copied()
            .collect::<Vec<_>>()
    };
    let strays: Vec<&CgroupLine> = match frozen {
        Some(f) => inside(&f.dir),
        None => ours.iter().filter(|l| l.pid().is_some()).copied().collect(),
    };
    let mut evidence: Vec<Proof> = failed
        .iter()
        .rev()
        .take(2)
        .map(|(q, t)| Proof::new(q, t))
        .collect();
    let in_cgroup = Tie::PodCgroup;
    evidence.extend(frozen.iter().map(|l| Proof::new(&l.quote, &in_cgroup)));
    evidence.extend(
        strays
            .iter()
            .take(3)
            .map(|l| Proof::new(&l.quote, &in_cgroup)),
    );
    let stray = strays.first().and_then(|l| l.pid());
    let stray_ps = stray.and_then(|pid| ev.ps.iter().find(|p| p.pid == pid));
    if let Some(p) = stray_ps {
        evidence.push(Proof::new(&p.quote, &in_cgroup));
    }
    let who = match (stray, stray_ps) {
        (Some(pid), Some(p)) => format!("pid {pid} ({})", p.program()),
        (Some(pid), None) => format!("pid {pid}"),
        (None, _) => "a process".into(),
    };
    let mut remedy = Vec::new();
    let summary = match frozen {
        Some(f) => {
            let (file, thawed) = match f.file {
                crate::evidence::CgroupFile::Freeze => ("cgroup.freeze", "0"),
                _ => ("freezer.state", "THAWED"),
            };
            remedy.push(Step::act_on_node(
                format!("thaw {}: a frozen process cannot die, and kubelet's SIGKILL is waiting for it (without terminus's agent: echo {thawed} > {}/{file})", f.dir, f.dir),
                ["terminus-agent".to_owned(), "thaw-cgroup".into(), f.dir.clone()],
            ));
            format!(
                "{who} is frozen in the pod's cgroup {}, so kubelet cannot remove the cgroup",
                f.dir
            )
        }
        None => {
            if let Some(pid) = stray {
                remedy.extend(holder_steps(
                    pid,
                    stray_ps,
                    "still lives in the pod's cgroup",
                    "kill it, or move it out of the pod's cgroup (if it is in state D, see what it waits for: cat /proc/PID/stack)",
                ));
            } else {
                remedy.push(Step::say(
                    "find the process left in the pod's cgroup (its cgroup.procs) and kill it or move it out; if its cgroup is frozen, thaw it",
                ));
            }
            format!("{who} still lives in the pod's cgroup, so kubelet cannot remove it")
        }
    };
    if let Some(dir) = strays.first().map(|l| &l.dir).or(frozen.map(|f| &f.dir)) {
        remedy.push(Step::look(
            "see who is left in the cgroup",
            format!("cat {dir}/cgroup.procs"),
        ));
    }
    remedy.push(Step::say(
        "kubelet retries removing the pod's cgroup by itself once it is empty",
    ));
    remedy.extend(watch_step(ev));
    let confidence = 0.8
        + if frozen.is_some() || stray_ps.is_some() {
            0.15
        } else {
            0.0
        };
    diagnosis(CauseId::CgroupBusy, confidence, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, run};
    use super::*;

    const UID: &str = "22241d77-3d04-4630-b433-31e2c9fb8cc3";
    const POD: &str = "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod22241d77_3d04_4630_b433_31e2c9fb8cc3.slice";

    fn evidence(cgroups: &str) -> Evidence {
        let mut ev = Evidence::default();
        ev.ingest(
            "pod.yaml",
            &format!("metadata:\n  name: victim\n  namespace: ns\n  uid: {UID}\n  deletionTimestamp: \"2026-12-03T12:43:27Z\"\nspec:\n  nodeName: w\n"),
        );
        ev.ingest(
            "kubelet.log",
            &format!(r#"Dec 03 12:43:37 w kubelet[694]: E1203 12:43:37.820418     694 pod_workers.go:1338] "Error syncing pod, skipping" err="failed to delete cgroup paths for [kubelet kubepods besteffort pod{UID}] : unable to destroy cgroup paths for cgroup [kubelet kubepods besteffort pod{UID}] : Failed to remove paths: map[freezer:/sys/fs/cgroup/freezer/{POD}]" pod="ns/victim" podUID="{UID}""#),
        );
        ev.ingest("pod-cgroups.txt", cgroups);
        ev.ingest(
            "ps.txt",
            "    PID    PPID STAT                  STARTED COMMAND\n   1547       1 D    Thu Dec  3 12:42:50 2026 terminus-stray --run r1\n",
        );
        ev
    }

    #[test]
    fn a_frozen_stray_is_thawed_by_its_directory() {
        let ev = evidence(&format!(
            "/sys/fs/cgroup/freezer/{POD}/freezer.state:THAWED\n/sys/fs/cgroup/freezer/{POD}/terminus-r1/freezer.state:FROZEN\n/sys/fs/cgroup/freezer/{POD}/terminus-r1/cgroup.procs:1547\n"
        ));
        let d = run(cgroup_busy, &ev).expect("a diagnosis");
        assert!(
            d.summary.starts_with("pid 1547 (terminus-stray) is frozen"),
            "{}",
            d.summary
        );
        assert_eq!(
            acts(&d),
            vec![format!(
                "terminus-agent thaw-cgroup /sys/fs/cgroup/freezer/{POD}/terminus-r1"
            )]
        );
        assert!(d.confidence >= 0.9);
    }

    #[test]
    fn an_unfrozen_stray_is_killed() {
        let ev = evidence(&format!("/sys/fs/cgroup/pids/{POD}/cgroup.procs:1547\n"));
        let d = run(cgroup_busy, &ev).expect("a diagnosis");
        assert_eq!(acts(&d), vec!["kill 1547".to_owned()]);
    }

    #[test]
    fn another_pods_cgroup_is_no_evidence_of_a_stray() {
        let other = POD.replace("22241d77_3d04", "99999999_3d04");
        let ev = evidence(&format!(
            "/sys/fs/cgroup/freezer/{other}/x/freezer.state:FROZEN\n/sys/fs/cgroup/freezer/{other}/x/cgroup.procs:1547\n"
        ));
        let d = run(cgroup_busy, &ev).expect("a diagnosis from kubelet's line alone");
        assert!(acts(&d).is_empty(), "{:?}", acts(&d));
        assert!(d.confidence < 0.9);
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(cgroup_busy);
    }
}
