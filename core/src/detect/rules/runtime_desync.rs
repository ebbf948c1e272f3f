//! The `runtime-desync` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

pub(super) fn runtime_desync(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    if !ev.has("ctr-tasks.txt") {
        return runtime_unanswered(cx);
    }
    let mut evidence = Vec::new();
    let mut remedy = Vec::new();
    docker_without_task(cx, &mut evidence, &mut remedy);
    // A container the CRI still calls Running after its task exited is what a held
    // mount, a full disk or an immutable file leave behind when the runtime's cleanup
    // fails: explained by them, it is not a desync of its own.
    let cri_stale = cx.explained.is_empty() && cri_without_task(cx, &mut evidence, &mut remedy);
    if evidence.is_empty() {
        return None;
    }
    let docker = ev.docker_ps.iter().any(|r| cx.link.docker(r).is_some());
    if docker {
        remedy.push(Step::act_on_node(
            "if several containers disagree, prune the stopped ones",
            ["docker", "container", "prune", "-f"],
        ));
        remedy.push(Step::act_on_node(
            "and restart dockerd",
            ["systemctl", "restart", "docker"],
        ));
    }
    if cri_stale {
        remedy.push(restart_containerd());
    }
    remedy.push(if docker {
        Step::say(
            "long term: check for an earlier disk-full episode; run containerd directly (no dockerd)",
        )
    } else {
        keep_runtime_data_from_filling()
    });
    remedy.extend(watch_step(ev));
    // kubelet's side of the split view: the kill "succeeded", the container still runs.
    evidence.extend(
        cx.lines_with(KUBELET_SPLIT)
            .take(1)
            .map(|(q, t)| Proof::new(q, &t)),
    );
    let disk_episode = ev
        .log_lines()
        .any(|q| q.text.contains("no space left on device"));
    let summary = format!(
        "{} reports a container running that containerd has no running task for{}",
        if docker { "docker" } else { "the CRI" },
        if disk_episode {
            " (after a no-space episode)"
        } else {
            ""
        }
    );
    diagnosis(CauseId::RuntimeDesync, 0.9, summary, evidence, remedy)
}

/// kubelet's side of the split view: the kill "succeeded", the container still runs.
const KUBELET_SPLIT: &str = "detected running containers after a successful KillPod";

/// crictl and ctr were asked but gave no answer (their files hold the agent's timeout
/// note: a containerd busy with its exit retries, seen on containerd 2.1.9 under load):
/// kubelet's own line, tied to the pod, is then the only witness of the split view.
/// Weaker than the tools' word, and silent when another cause explains a stale CRI
/// record (a disk full now, a held mount, an immutable file).
fn runtime_unanswered(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let asked = ev.problems().iter().any(|p| p.file == "ctr-tasks.txt");
    if !asked || !cx.explained.is_empty() {
        return None;
    }
    let (quote, tie) = cx.lines_with(KUBELET_SPLIT).next()?;
    let mut remedy = vec![restart_containerd(), keep_runtime_data_from_filling()];
    remedy.extend(watch_step(ev));
    diagnosis(
        CauseId::RuntimeDesync,
        0.6,
        "kubelet reports the pod's container still running after a successful kill; crictl and \
         ctr did not answer within their deadline, so containerd's own view is unknown"
            .to_owned(),
        vec![Proof::new(quote, &tie)],
        remedy,
    )
}

/// The CRI's stale record is cleared only by its restore on restart.
fn restart_containerd() -> Step {
    Step::act_on_node(
        "restart containerd: on start its CRI plugin re-reads containerd's task list and marks \
         containers without a task exited (running containers keep running in their shims)",
        ["systemctl", "restart", "containerd"],
    )
}

fn keep_runtime_data_from_filling() -> Step {
    Step::say(
        "long term: check for an earlier disk-full episode on the runtime's data; keep it from filling",
    )
}

/// containerd's task for a container id (either may be the short form).
fn task<'a>(ev: &'a Evidence, id: &str) -> Option<&'a crate::evidence::CtrTask> {
    ev.ctr_tasks
        .iter()
        .find(|t| crate::detect::link::same_id(&t.id, id))
}

fn task_alive(t: &crate::evidence::CtrTask) -> bool {
    t.status == "RUNNING" || t.status == "PAUSED" || t.status == "UNKNOWN"
}

fn what_containerd_says(t: Option<&crate::evidence::CtrTask>) -> String {
    t.map_or("has no task for it".to_owned(), |t| {
        format!("says {}", t.status)
    })
}

/// Containers docker shows Up without a live containerd task: proof, and their removal.
fn docker_without_task(cx: &Cx, evidence: &mut Vec<Proof>, remedy: &mut Vec<Step>) {
    let ev = cx.ev;
    for (row, tie) in ev
        .docker_ps
        .iter()
        .filter(|r| r.up())
        .filter_map(|r| Some((r, cx.link.docker(r)?)))
    {
        let t = task(ev, &row.id);
        if t.is_some_and(task_alive) {
            continue;
        }
        evidence.push(Proof::new(&row.quote, &tie));
        evidence.extend(t.map(|t| Proof::new(&t.quote, &tie)));
        remedy.push(Step::act_on_node(
            format!(
                "docker says {} is {}, containerd {}; remove it",
                row.names,
                row.status,
                what_containerd_says(t)
            ),
            ["docker", "rm", "-f", row.id.as_str()],
        ));
    }
}

/// Containers the CRI shows Running without a live containerd task. True if any.
fn cri_without_task(cx: &Cx, evidence: &mut Vec<Proof>, remedy: &mut Vec<Step>) -> bool {
    let ev = cx.ev;
    let mut stale = false;
    for (row, tie) in ev
        .crictl_ps
        .iter()
        .filter(|r| r.state == "Running")
        .filter_map(|r| Some((r, cx.link.crictl(r)?)))
    {
        let t = task(ev, &row.container_id);
        if t.is_some_and(task_alive) {
            continue;
        }
        evidence.push(Proof::new(&row.quote, &tie));
        evidence.extend(t.map(|t| Proof::new(&t.quote, &tie)));
        stale = true;
        // Seen on containerd 1.6: `crictl stop` answers OK (no task to signal) and
        // `crictl rm` refuses with "is running, please stop it first", so neither clears
        // the CRI's record; only its restore on restart does.
        remedy.push(Step::say(format!(
            "the CRI says {} ({}) is Running, containerd {}: the CRI never recorded the exit, \
             and `crictl stop`/`crictl rm` cannot change that",
            row.name,
            row.container_id,
            what_containerd_says(t)
        )));
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::super::{assert_silent, fixture, run};
    use super::*;

    #[test]
    fn removes_the_container_docker_and_containerd_disagree_on() {
        let ev = fixture("bundles/docker-desync");
        let d = run(runtime_desync, &ev).expect("a diagnosis");
        assert_eq!(d.cause, CauseId::RuntimeDesync);
        let (_, argv) = d.remedy.iter().find_map(|s| s.action()).expect("an act");
        assert_eq!(&argv[..3], ["docker", "rm", "-f"]);
        assert!(ev.docker_ps.iter().any(|r| r.id == argv[3]), "{argv:?}");
    }

    #[test]
    fn kubelet_alone_names_the_desync_when_crictl_and_ctr_timed_out() {
        let ev = fixture("kind/runtime-desync-tools-timed-out");
        assert!(!ev.has("ctr-tasks.txt"), "the capture's ctr timed out");
        let d = run(runtime_desync, &ev).expect("a diagnosis");
        assert_eq!(d.cause, CauseId::RuntimeDesync);
        assert!(d.confidence < 0.9, "weaker than the tools' word");
        assert!(d.evidence[0].text.contains(KUBELET_SPLIT));
        let (_, argv) = d.remedy.iter().find_map(|s| s.action()).expect("an act");
        assert_eq!(argv, ["systemctl", "restart", "containerd"]);
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(runtime_desync);
    }
}
