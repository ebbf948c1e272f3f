//! The `runtime-hang` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;
use crate::detect::link::Runtime;

const HANG: [&str; 4] = [
    "DeadlineExceeded",
    "context deadline exceeded",
    "timed out waiting for server handshake",
    "Cannot connect to the Docker daemon",
];

/// A line saying a call to the runtime timed out or could not connect.
pub(super) fn is_timeout(text: &str) -> bool {
    HANG.iter().any(|h| text.contains(h))
}

pub(super) fn runtime_hang(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    // Timeouts a first-tier cause explains (a held mount, a full disk, an immutable
    // file make kills time out) are not evidence of a hung runtime.
    let lines: Vec<(&Quote, Tie)> = if cx.explained.is_empty() {
        cx.lines().filter(|(q, _)| is_timeout(&q.text)).collect()
    } else {
        Vec::new()
    };
    let stopped: Vec<(&PsEntry, Tie)> = ev
        .ps
        .iter()
        .filter(|p| p.stopped() && is_runtime(p))
        .filter_map(|p| Some((p, cx.link.runtime_process(p, ev)?)))
        .collect();
    let unknown: Vec<_> = ev
        .ctr_tasks
        .iter()
        .filter(|t| t.status == "UNKNOWN")
        .filter_map(|t| Some((t, cx.link.task(t)?)))
        .collect();
    if lines.is_empty() && stopped.is_empty() {
        return None;
    }
    let mut confidence: f64 = if lines.is_empty() { 0.75 } else { 0.8 };
    if !stopped.is_empty() && !lines.is_empty() {
        confidence = 0.95;
    }
    if !unknown.is_empty() {
        confidence += 0.05;
    }
    let mut evidence: Vec<Proof> = lines
        .iter()
        .take(3)
        .map(|(q, t)| Proof::new(q, t))
        .collect();
    evidence.extend(stopped.iter().map(|(p, t)| Proof::new(&p.quote, t)));
    evidence.extend(unknown.iter().map(|(k, t)| Proof::new(&k.quote, t)));
    let stopped: Vec<&PsEntry> = stopped.into_iter().map(|(p, _)| p).collect();
    let mut remedy = Vec::new();
    for p in &stopped {
        remedy.push(Step::act_on_node(
            format!(
                "{} (pid {}) is stopped (state {}); let it run again",
                p.program(),
                p.pid,
                p.stat
            ),
            ["kill".to_owned(), "-CONT".to_owned(), p.pid.to_string()],
        ));
    }
    if stopped.is_empty() {
        let docker = match cx.link.runtime {
            Some(Runtime::Docker) => true,
            Some(_) => false,
            None => ev.ps.iter().any(|p| p.program() == "dockerd") || !ev.docker_ps.is_empty(),
        };
        let unit = if docker { "docker" } else { "containerd" };
        remedy.push(Step::look(
            format!("the runtime does not answer; capture its goroutine stacks for the bug report (SIGUSR1 writes them to the journal), on {}", node_name(ev)),
            format!("pkill -USR1 -x {}", if unit == "docker" { "dockerd" } else { "containerd" }),
        ));
        remedy.push(Step::act_on_node(
            "then restart it",
            ["systemctl", "restart", unit],
        ));
    }
    remedy.push(Step::say("long term: upgrade the runtime. `kubectl delete pod --force --grace-period=0` only removes the API object; the container may live on (check `crictl ps`/`docker ps`) — prefer an expert's look over force deletion"));
    remedy.extend(watch_step(ev));
    let summary = match stopped.first() {
        Some(p) => format!(
            "{} (pid {}) is stopped; calls to the runtime for its containers time out",
            p.program(),
            p.pid
        ),
        None => "calls to the runtime time out (context deadline exceeded)".into(),
    };
    diagnosis(CauseId::RuntimeHang, confidence, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{assert_silent, fixture, run};
    use super::*;

    #[test]
    fn continues_the_stopped_runtime_by_its_pid() {
        for bundle in [
            "seed/handbook-runtime-hang",
            "bundles/containerd-shim-stopped",
            "kind/runtime-hang",
        ] {
            let ev = fixture(bundle);
            let d = run(runtime_hang, &ev).unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
            assert_eq!(d.cause, CauseId::RuntimeHang);
            for (_, argv) in d.remedy.iter().filter_map(|s| s.action()) {
                if argv[0] == "kill" {
                    let pid: u32 = argv[2].parse().expect("a pid");
                    assert!(
                        ev.ps.iter().any(|p| p.pid == pid),
                        "{bundle}: pid {pid} is not in ps"
                    );
                }
            }
        }
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(runtime_hang);
    }
}
