//! One function per cause. Each reads the evidence, quotes what supports its cause
//! and fills the remedy in with names from the evidence. A rule that finds nothing
//! returns None; confidence says how much of its proof was present.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::{Diagnosis, Step};
use crate::cause::CauseId;
use crate::evidence::{ContainerState, Evidence, PsEntry, Quote};

/// Below this a diagnosis is noise and is not reported.
pub const THRESHOLD: f64 = 0.3;

pub fn all(ev: &Evidence) -> Vec<Diagnosis> {
    [
        disk_full,
        immutable_file,
        runtime_hang,
        finalizer,
        kubelet_missed_delete,
        runtime_desync,
        daemonset_hash_churn,
        mount_held,
    ]
    .iter()
    .filter_map(|rule| rule(ev))
    .collect()
}

fn diagnosis(
    cause: CauseId,
    confidence: f64,
    summary: String,
    evidence: Vec<Quote>,
    remedy: Vec<Step>,
) -> Option<Diagnosis> {
    Some(Diagnosis {
        cause,
        title: cause.title(),
        confidence: confidence.min(0.99),
        summary,
        evidence,
        remedy,
    })
}

fn pod_ref(ev: &Evidence) -> Option<(String, String)> {
    ev.pod
        .as_ref()
        .map(|p| (p.name.clone(), p.namespace.clone()))
}

/// `kubectl get pod NAME -n NS -w`, to watch the pod go away after a remedy.
fn watch_step(ev: &Evidence) -> Option<Step> {
    pod_ref(ev).map(|(name, ns)| {
        Step::look(
            "watch the pod go away",
            format!("kubectl get pod {name} -n {ns} -w"),
        )
    })
}

fn node_name(ev: &Evidence) -> String {
    ev.pod
        .as_ref()
        .and_then(|p| p.node.clone())
        .or_else(|| ev.node.as_ref().map(|n| n.name.clone()))
        .unwrap_or_else(|| "the node".into())
}

const RUNTIME_PROGRAMS: [&str; 5] = [
    "containerd",
    "dockerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "docker-containerd",
];

fn is_runtime(p: &PsEntry) -> bool {
    RUNTIME_PROGRAMS.contains(&p.program()) || p.program().starts_with("containerd-shim")
}

// ---------------------------------------------------------------------------- 1

static ENOSPC_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:write|mkdir|open|create|rename)\s+(/[^\s:]+):\s*no space left on device")
        .expect("regex")
});

fn disk_full(ev: &Evidence) -> Option<Diagnosis> {
    let enospc: Vec<&Quote> = ev
        .log_lines()
        .filter(|q| q.text.to_lowercase().contains("no space left on device"))
        .collect();
    let full: Vec<(&crate::evidence::DfRow, &str)> = ev
        .df
        .iter()
        .map(|r| (r, "blocks"))
        .chain(ev.df_inodes.iter().map(|r| (r, "inodes")))
        .filter(|(r, _)| r.is_full() && relevant_mount(&r.mount, &enospc))
        .collect();
    if enospc.is_empty() && full.is_empty() {
        return None;
    }
    let confidence = match (enospc.is_empty(), full.is_empty()) {
        (false, false) => 0.95,
        (false, true) => 0.85,
        (true, false) => 0.6,
        (true, true) => unreachable!("returned above"),
    };
    let mut evidence: Vec<Quote> = enospc.iter().take(3).map(|q| (*q).clone()).collect();
    evidence.extend(full.iter().map(|(r, _)| r.quote.clone()));
    evidence.extend(
        ev.events
            .iter()
            .filter(|e| e.reason == "Killing" && e.count > 1)
            .map(|e| e.quote.clone())
            .take(1),
    );
    let failed_path = enospc
        .iter()
        .find_map(|q| ENOSPC_PATH.captures(&q.text).map(|c| c[1].to_owned()));
    let mut remedy = Vec::new();
    for (row, what) in &full {
        remedy.push(Step::look(
            format!(
                "{} is full ({} {what} left on {}); find what fills it",
                row.mount, row.available, row.filesystem
            ),
            format!(
                "du -xh --max-depth=2 {} 2>/dev/null | sort -h | tail -20",
                row.mount
            ),
        ));
    }
    if full.is_empty() {
        let target = failed_path.as_deref().unwrap_or("/var/lib/containerd");
        remedy.push(Step::look(
            format!("find the full filesystem holding {target}"),
            format!("df -P {target}; df -P -i {target}"),
        ));
    }
    remedy.push(Step::say("free space on it (remove the filler, old images: `crictl rmi --prune`, logs); kubelet retries the kill by itself"));
    remedy.extend(watch_step(ev));
    let summary = match (&failed_path, full.first()) {
        (Some(path), _) => format!("the runtime cannot write {path}: no space left on device"),
        (None, Some((row, what))) => format!("{} has no {what} left", row.mount),
        (None, None) => "the runtime reports no space left on device".into(),
    };
    diagnosis(CauseId::DiskFull, confidence, summary, evidence, remedy)
}

/// A full filesystem matters when it holds the runtime's or kubelet's data, or the
/// path a no-space error named.
fn relevant_mount(mount: &str, enospc: &[&Quote]) -> bool {
    const DATA: [&str; 6] = [
        "/",
        "/var",
        "/var/lib",
        "/var/lib/containerd",
        "/var/lib/docker",
        "/var/lib/kubelet",
    ];
    DATA.contains(&mount)
        || mount.contains("containerd")
        || mount.contains("docker")
        || mount.contains("kubelet")
        || enospc
            .iter()
            .any(|q| mount.len() > 1 && q.text.contains(&format!("{mount}/")))
}

// ---------------------------------------------------------------------------- 2

static EPERM_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:unlinkat|unlink|remove|rmdir|rename)\s+(/[^\s:]+):\s*operation not permitted")
        .expect("regex")
});

fn immutable_file(ev: &Evidence) -> Option<Diagnosis> {
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let mut evidence = Vec::new();
    for q in ev.log_lines() {
        let mut hit = false;
        for c in EPERM_PATH.captures_iter(&q.text) {
            paths.insert(c[1].to_owned());
            hit = true;
        }
        if hit && evidence.len() < 3 {
            evidence.push(q.clone());
        }
    }
    let from_logs = !paths.is_empty();
    let flagged: Vec<_> = ev.lsattr.iter().filter(|e| e.immutable()).collect();
    for e in &flagged {
        paths.insert(e.path.clone());
        evidence.push(e.quote.clone());
    }
    if paths.is_empty() {
        return None;
    }
    let confidence = match (from_logs, !flagged.is_empty()) {
        (true, true) => 0.97,
        (true, false) => 0.9,
        _ => 0.8,
    };
    // When lsattr named the flagged files, they are the ones to clear; a log path may be
    // a directory the kernel refused because of a flagged file below it.
    let targets: Vec<&String> = if flagged.is_empty() {
        paths.iter().collect()
    } else {
        flagged.iter().map(|e| &e.path).collect()
    };
    let mut remedy: Vec<Step> = targets
        .iter()
        .map(|p| {
            Step::act_on_node(
                format!("clear the immutable attribute on {p}"),
                ["chattr", "-i", p.as_str()],
            )
        })
        .collect();
    let leaked_snapshot = evidence
        .iter()
        .any(|q| q.text.contains("failed to remove directory") && q.text.contains("snapshots"));
    // containerd names the directory it gave up on (`path=...`): once the flag is
    // cleared, removing it by hand cleans the node without waiting for the next GC.
    let leaked_dirs: BTreeSet<&str> = evidence
        .iter()
        .filter(|q| q.text.contains("failed to remove directory"))
        .filter_map(|q| {
            q.text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("path="))
        })
        .map(|p| p.trim_matches('"'))
        .collect();
    for dir in &leaked_dirs {
        remedy.push(Step::act_on_node(
            format!("remove the snapshot directory containerd leaked, {dir}"),
            ["rm", "-rf", dir],
        ));
    }
    if leaked_snapshot {
        remedy.push(Step::say("(otherwise containerd's garbage collector removes it at its next run); the node is clean when the path is gone"));
    } else {
        remedy.push(Step::say(
            "kubelet retries the removal by itself and the pod goes away",
        ));
    }
    remedy.extend(watch_step(ev));
    remedy.push(Step::say(
        "root fix: never set the immutable attribute in images or from containers",
    ));
    let first = targets.first().map(|s| s.as_str()).unwrap_or("?");
    let summary = if leaked_snapshot {
        format!("{first} is immutable: the runtime cannot delete it and leaks the snapshot (the pod may be gone, the node is not clean)")
    } else {
        format!("{first} is immutable: removal fails with operation not permitted")
    };
    diagnosis(
        CauseId::ImmutableFile,
        confidence,
        summary,
        evidence,
        remedy,
    )
}

// ---------------------------------------------------------------------------- 3

fn runtime_hang(ev: &Evidence) -> Option<Diagnosis> {
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

// ---------------------------------------------------------------------------- 4

/// A JSON patch that removes finalizer `name` at `index` only if it is still there: the
/// `test` op makes the patch fail instead of removing the wrong entry if the list
/// changed meanwhile. serde_json escapes the name, so no name can change the patch.
fn remove_finalizer_patch(index: usize, name: &str) -> String {
    let path = format!("/metadata/finalizers/{index}");
    serde_json::json!([
        {"op": "test", "path": path, "value": name},
        {"op": "remove", "path": path},
    ])
    .to_string()
}

fn finalizer(ev: &Evidence) -> Option<Diagnosis> {
    let pod = ev.pod.as_ref()?;
    pod.deletion_timestamp?;
    if pod.finalizers.is_empty() {
        return None;
    }
    let running = pod
        .containers
        .iter()
        .any(|c| c.state == ContainerState::Running);
    // With containers still running something else holds the pod first; the finalizer
    // will matter only after that is solved.
    let confidence = if running { 0.4 } else { 0.92 };
    let mut evidence: Vec<Quote> = pod.deletion_quote.iter().cloned().collect();
    evidence.extend(pod.finalizers.iter().filter_map(|(_, q)| q.clone()));
    let mut remedy = vec![Step::say(format!(
        "find the controller that owns {} and why it has not finished; if it is gone for good, remove the finalizer",
        pod.finalizers.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
    ))];
    // Remove each finalizer by value: a JSON patch `test` makes the command fail instead
    // of removing the wrong entry if the list changed meanwhile.
    for (index, (name, _)) in pod.finalizers.iter().enumerate().rev() {
        remedy.push(Step::act_on_cluster(
            format!("remove finalizer {name}"),
            [
                "kubectl".to_owned(),
                "patch".to_owned(),
                "pod".to_owned(),
                pod.name.clone(),
                "-n".to_owned(),
                pod.namespace.clone(),
                "--type=json".to_owned(),
                "-p".to_owned(),
                remove_finalizer_patch(index, name),
            ],
        ));
    }
    remedy.extend(watch_step(ev));
    let summary = format!(
        "pod {}/{} is deleted but {} finalizer{} remain{}",
        pod.namespace,
        pod.name,
        pod.finalizers.len(),
        if pod.finalizers.len() == 1 { "" } else { "s" },
        if running {
            " (and containers are still running)"
        } else {
            "; its containers have stopped"
        }
    );
    diagnosis(CauseId::Finalizer, confidence, summary, evidence, remedy)
}

// ---------------------------------------------------------------------------- 5

fn kubelet_missed_delete(ev: &Evidence) -> Option<Diagnosis> {
    let pod = ev.pod.as_ref()?;
    pod.deletion_timestamp?;
    let running_ids: Vec<&str> = pod
        .containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .filter_map(|c| c.id.as_deref())
        .collect();
    let crictl_running: Vec<&Quote> = ev
        .crictl_ps
        .iter()
        .filter(|r| {
            r.state == "Running"
                && (r.pod == pod.name
                    || running_ids.iter().any(|id| id.starts_with(&r.container_id)))
        })
        .map(|r| &r.quote)
        .collect();
    if running_ids.is_empty() && crictl_running.is_empty() {
        return None;
    }
    // Any sign that kubelet acted on this pod's deletion rules this cause out.
    let kill_words = [
        "Killing",
        "killing",
        "KillContainer",
        "StopContainer",
        "StopPodSandbox",
        "SyncLoop DELETE",
        "SyncLoop (DELETE",
    ];
    let attempted = ev.events.iter().any(|e| e.reason == "Killing")
        || ev
            .kubelet_log
            .iter()
            .any(|q| q.text.contains(&pod.name) && kill_words.iter().any(|w| q.text.contains(w)));
    if attempted {
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
    let mut evidence: Vec<Quote> = pod.deletion_quote.iter().cloned().collect();
    evidence.extend(crictl_running.into_iter().cloned());
    evidence.extend(stopped.iter().map(|p| p.quote.clone()));
    if node_unknown {
        evidence.extend(ev.node.as_ref().and_then(|n| n.ready_quote.clone()));
    }
    let node = node_name(ev);
    let mut remedy = Vec::new();
    for p in &stopped {
        remedy.push(Step::act_on_node(
            format!(
                "kubelet (pid {}) is stopped (state {}); let it run",
                p.pid, p.stat
            ),
            ["kill".to_owned(), "-CONT".to_owned(), p.pid.to_string()],
        ));
    }
    remedy.push(Step::act_on_node(
        format!("restart kubelet on {node}: it re-lists pods and acts on the deletion"),
        ["systemctl", "restart", "kubelet"],
    ));
    remedy.push(Step::say(
        "long term: upgrade kubelet (the original list-watch bug was fixed after v1.8)",
    ));
    remedy.extend(watch_step(ev));
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

// ---------------------------------------------------------------------------- 6

fn runtime_desync(ev: &Evidence) -> Option<Diagnosis> {
    if !ev.has("ctr-tasks.txt") {
        return None;
    }
    let task = |id: &str| {
        ev.ctr_tasks
            .iter()
            .find(|t| t.id.starts_with(id) || id.starts_with(&t.id))
    };
    let mut evidence = Vec::new();
    let mut remedy = Vec::new();
    for row in ev.docker_ps.iter().filter(|r| r.up()) {
        match task(&row.id) {
            Some(t) if t.status == "RUNNING" || t.status == "PAUSED" || t.status == "UNKNOWN" => {}
            other => {
                evidence.push(row.quote.clone());
                evidence.extend(other.map(|t| t.quote.clone()));
                remedy.push(Step::act_on_node(
                    format!(
                        "docker says {} is {}, containerd {}; remove it",
                        row.names,
                        row.status,
                        other.map_or("has no task for it".to_owned(), |t| format!(
                            "says {}",
                            t.status
                        ))
                    ),
                    ["docker", "rm", "-f", row.id.as_str()],
                ));
            }
        }
    }
    let mut cri_stale = false;
    for row in ev.crictl_ps.iter().filter(|r| r.state == "Running") {
        match task(&row.container_id) {
            Some(t) if t.status == "RUNNING" || t.status == "PAUSED" || t.status == "UNKNOWN" => {}
            other => {
                evidence.push(row.quote.clone());
                evidence.extend(other.map(|t| t.quote.clone()));
                cri_stale = true;
                // Seen on containerd 1.6: `crictl stop` answers OK (no task to signal)
                // and `crictl rm` refuses with "is running, please stop it first", so
                // neither clears the CRI's record; only its restore on restart does.
                remedy.push(Step::say(format!(
                    "the CRI says {} ({}) is Running, containerd {}: the CRI never recorded the exit, \
                     and `crictl stop`/`crictl rm` cannot change that",
                    row.name,
                    row.container_id,
                    other.map_or("has no task for it".to_owned(), |t| format!(
                        "says {}",
                        t.status
                    ))
                )));
            }
        }
    }
    if evidence.is_empty() {
        return None;
    }
    let docker = !ev.docker_ps.is_empty();
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
        remedy.push(Step::act_on_node(
            "restart containerd: on start its CRI plugin re-reads containerd's task list and marks \
             containers without a task exited (running containers keep running in their shims)",
            ["systemctl", "restart", "containerd"],
        ));
    }
    remedy.push(Step::say(if docker {
        "long term: check for an earlier disk-full episode; run containerd directly (no dockerd)"
    } else {
        "long term: check for an earlier disk-full episode on the runtime's data; keep it from filling"
    }));
    remedy.extend(watch_step(ev));
    // kubelet's side of the split view: the kill "succeeded", the container still runs.
    evidence.extend(
        ev.log_lines()
            .filter(|q| {
                q.text
                    .contains("detected running containers after a successful KillPod")
            })
            .take(1)
            .cloned(),
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

// ---------------------------------------------------------------------------- 7

fn daemonset_hash_churn(ev: &Evidence) -> Option<Diagnosis> {
    let pod = ev.pod.as_ref()?;
    let (kind, ds) = pod.owner.as_ref()?;
    if kind != "DaemonSet" {
        return None;
    }
    let mut revisions: Vec<_> = ev
        .revisions
        .iter()
        .filter(|r| r.owner.as_deref().is_none_or(|o| o == ds))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    let newest = revisions.last()?;
    let window = match (revisions.first().and_then(|r| r.created), newest.created) {
        (Some(a), Some(b)) => (b - a).num_seconds(),
        _ => i64::MAX,
    };
    // Revision numbers climb with every template change. A healthy DaemonSet makes a
    // new revision per real update; the hash bug flips between the same few templates,
    // so Kubernetes reuses their revisions and only the number climbs.
    let flips = newest.revision - revisions.len() as i64;
    let churning = newest.revision >= 4
        && ((revisions.len() <= 3 && flips >= 3) || (revisions.len() >= 3 && window < 600));
    if !churning {
        return None;
    }
    let stale_hash = pod
        .revision_hash
        .as_ref()
        .is_some_and(|h| !newest.name.ends_with(h.as_str()));
    let owner = ev.owner.as_ref();
    let affinity = owner.is_some_and(|o| o.affinity_terms >= 2);
    let mut confidence: f64 = 0.75;
    if stale_hash {
        confidence += 0.1;
    }
    if affinity {
        confidence += 0.1;
    }
    let mut evidence: Vec<Quote> = revisions
        .iter()
        .rev()
        .take(3)
        .map(|r| r.quote.clone())
        .collect();
    evidence.extend(owner.and_then(|o| o.generation_quote.clone()));
    evidence.extend(pod.deletion_quote.clone());
    let writers: BTreeSet<&str> = owner
        .map(|o| {
            o.managers
                .iter()
                .filter(|(m, _, _)| m != "kube-controller-manager")
                .map(|(m, _, _)| m.as_str())
                .collect()
        })
        .unwrap_or_default();
    let ns = &pod.namespace;
    let mut remedy = vec![Step::look(
        format!("see the churn: revision {} of daemonset {ds} from {} templates", newest.revision, revisions.len()),
        format!("kubectl get controllerrevisions -n {ns} -l controller-revision-hash --sort-by=.revision"),
    )];
    if !writers.is_empty() {
        remedy.push(Step::say(format!(
            "find and stop what keeps rewriting the template (managedFields writers: {})",
            writers.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    remedy.push(Step::look(
        format!("work-around: schedule daemonset {ds} with nodeSelector instead of nodeAffinity"),
        format!("kubectl edit daemonset {ds} -n {ns}"),
    ));
    remedy.push(Step::say(
        "long term: upgrade kube-controller-manager (the sorting bug of 1.10/1.11 is fixed)",
    ));
    let summary = format!(
        "daemonset {ns}/{ds} is at revision {} with only {} distinct template(s): it flips between them and its pods are replaced over and over",
        newest.revision,
        revisions.len()
    );
    diagnosis(
        CauseId::DaemonsetHashChurn,
        confidence,
        summary,
        evidence,
        remedy,
    )
}

// ---------------------------------------------------------------------------- 8

static BUSY_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:unmount target|umount|remove|unlinkat|rmdir)\s+(/[^\s:]+):\s*device or resource busy",
    )
    .expect("regex")
});

fn mount_held(ev: &Evidence) -> Option<Diagnosis> {
    let busy: Vec<&Quote> = ev
        .log_lines()
        .filter(|q| q.text.contains("device or resource busy"))
        .collect();
    let busy_paths: BTreeSet<String> = busy
        .iter()
        .filter_map(|q| BUSY_PATH.captures(&q.text).map(|c| c[1].to_owned()))
        .collect();
    let mut holders = mount_holders(ev, &busy_paths);
    for r in &ev.proc_refs {
        if busy_paths.iter().any(|b| r.target.starts_with(b.as_str())) {
            let ps = ev.ps.iter().find(|p| p.pid == r.pid);
            holders
                .entry(r.pid)
                .or_insert((r.target.clone(), ps, r.quote.clone()));
        }
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
    let mut evidence: Vec<Quote> = busy.iter().take(3).map(|q| (*q).clone()).collect();
    let mut remedy = Vec::new();
    for (pid, (mount, ps, quote)) in &holders {
        evidence.push(quote.clone());
        evidence.extend(ps.iter().map(|p| p.quote.clone()));
        remedy.push(Step::look(
            format!(
                "pid {pid}{} holds {mount}; see what it is",
                ps.map(|p| format!(" ({})", p.program()))
                    .unwrap_or_default()
            ),
            format!("ps -f {pid}"),
        ));
        remedy.push(Step::act_on_node(
            "stop it (or make it let go: leave the directory, close the file, unmount its copy); the runtime retries the removal",
            ["kill".to_owned(), pid.to_string()],
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
        let runtime_pids: BTreeSet<u32> = ev
            .ps
            .iter()
            .filter(|p| is_runtime(p) || matches!(p.program(), "kubelet" | "systemd" | "init"))
            .map(|p| p.pid)
            .collect();
        let host_ids: BTreeSet<u64> = ev
            .mountinfo
            .iter()
            .filter(|m| m.pid.is_some_and(|p| runtime_pids.contains(&p)))
            .map(|m| m.mount_id)
            .collect();
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
