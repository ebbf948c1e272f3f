//! The `runtime-hang` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

pub(super) fn runtime_hang(ev: &Evidence) -> Option<Diagnosis> {
    const HANG: [&str; 4] = [
        "DeadlineExceeded",
        "context deadline exceeded",
        "timed out waiting for server handshake",
        "Cannot connect to the Docker daemon",
    ];
    let lines: Vec<&Quote> = ev
        .log_lines()
        .filter(|q| HANG.iter().any(|h| q.text.contains(h)))
        .collect();
    let stopped: Vec<&PsEntry> = ev
        .ps
        .iter()
        .filter(|p| p.stopped() && is_runtime(p))
        .collect();
    let unknown: Vec<_> = ev
        .ctr_tasks
        .iter()
        .filter(|t| t.status == "UNKNOWN")
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
    let mut evidence: Vec<Quote> = lines.iter().take(3).map(|q| (*q).clone()).collect();
    evidence.extend(stopped.iter().map(|p| p.quote.clone()));
    evidence.extend(unknown.iter().map(|t| t.quote.clone()));
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
        let unit = if ev.ps.iter().any(|p| p.program() == "dockerd") || !ev.docker_ps.is_empty() {
            "docker"
        } else {
            "containerd"
        };
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
    use super::super::{assert_silent, fixture};
    use super::*;

    #[test]
    fn continues_the_stopped_runtime_by_its_pid() {
        for bundle in [
            "seed/handbook-runtime-hang",
            "bundles/containerd-shim-stopped",
            "kind/runtime-hang",
        ] {
            let ev = fixture(bundle);
            let d = runtime_hang(&ev).unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
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
