//! The `volume-teardown` rule: kubelet cannot tear one of the pod's volumes down — its
//! unmount fails (`target is busy`), or a CSI driver's NodeUnpublishVolume returns an
//! error — so the pod's volume paths stay on disk and kubelet never lets the pod go.
//!
//! Told apart from its look-alikes by what failed: an immutable file in a volume makes
//! the same `UnmountVolume.TearDown failed` line end in `operation not permitted` (the
//! immutable-file rule's), and a held container rootfs fails the *runtime's* unmount
//! with `device or resource busy` (mount-held's); this rule counts neither.

use super::*;

/// `UnmountVolume.TearDown failed for volume "data" (UniqueName: "kubernetes.io/...")`.
static TEARDOWN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"TearDown failed for volume "([^"]*)"(?: \(UniqueName: "([^"]*)"\))?"#)
        .expect("regex")
});

/// `umount: /var/lib/kubelet/pods/UID/volumes/...: target is busy` (klog escapes the
/// output's newlines, so the path ends at the colon).
static BUSY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"umount: (/[^\s:]+): target is busy").expect("regex"));

/// The mount point kubelet gave umount (`Unmounting arguments: PATH`).
static UNMOUNTING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Unmounting arguments: (/[^\s\\]+)").expect("regex"));

/// A CSI volume's unique name: `kubernetes.io/csi/DRIVER^VOLUME`.
static CSI_DRIVER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"kubernetes\.io/csi/([A-Za-z0-9.\-]+)\^").expect("regex"));

/// What a failed teardown line says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The unmount found the mount busy (a process's cwd or open file inside it).
    Busy,
    /// A CSI driver's node call failed (`rpc error: code = ...`).
    Driver,
    /// Something else (a hung network filesystem, an unmount that exited non-zero).
    Other,
}

fn failure_of(text: &str) -> Option<Failure> {
    // An immutable file makes the removal after the unmount fail: immutable-file's line.
    if text.contains("operation not permitted") {
        return None;
    }
    Some(if text.contains("target is busy") {
        Failure::Busy
    } else if text.contains("rpc error") || text.contains("kubernetes.io/csi") {
        Failure::Driver
    } else {
        Failure::Other
    })
}

pub(super) fn volume_teardown(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let failed: Vec<(&Quote, Tie, Failure)> = cx
        .lines_with("TearDown")
        .filter(|(q, _)| q.text.contains("failed") && TEARDOWN.is_match(&q.text))
        .filter_map(|(q, t)| Some((q, t, failure_of(&q.text)?)))
        .collect();
    let orphaned: Vec<(&Quote, Tie)> = cx
        .lines_with("volume paths are still present")
        .filter(|(q, _)| q.text.contains("Orphaned pod"))
        .collect();
    if failed.is_empty() && orphaned.is_empty() {
        return None;
    }
    let volume = failed.iter().find_map(|(q, _, _)| {
        let c = TEARDOWN.captures(&q.text)?;
        Some((c[1].to_owned(), c.get(2).map(|m| m.as_str().to_owned())))
    });
    let busy_paths: BTreeSet<String> = failed
        .iter()
        .filter(|(_, _, f)| *f == Failure::Busy)
        .filter_map(|(q, _, _)| {
            BUSY.captures(&q.text)
                .or_else(|| UNMOUNTING.captures(&q.text))
                .map(|c| c[1].to_owned())
        })
        .collect();
    let holders = holders(cx, &busy_paths);
    let driver = failed
        .iter()
        .filter(|(_, _, f)| *f == Failure::Driver)
        .find_map(|(q, _, _)| CSI_DRIVER.captures(&q.text).map(|c| c[1].to_owned()));
    let busy = failed.iter().any(|(_, _, f)| *f == Failure::Busy);
    let confidence = match (failed.is_empty(), busy, holders.is_empty()) {
        (false, true, false) => 0.96,
        (false, _, _) => 0.88,
        (true, _, false) => 0.8,
        (true, _, true) => 0.7,
    };

    let mut evidence: Vec<Proof> = failed
        .iter()
        .rev()
        .take(2)
        .map(|(q, t, _)| Proof::new(q, t))
        .chain(orphaned.iter().rev().take(1).map(|(q, t)| Proof::new(q, t)))
        .collect();
    let mut remedy = Vec::new();
    for (pid, (path, ps, quote)) in &holders {
        let tie = Tie::Holder(path.clone());
        evidence.push(Proof::new(quote, &tie));
        evidence.extend(ps.iter().map(|p| Proof::new(&p.quote, &tie)));
        remedy.extend(holder_steps(
            *pid,
            *ps,
            &format!("keeps {path} busy"),
            "stop it (or make it leave the directory, close the file); kubelet retries the unmount by itself",
        ));
    }
    remedy.extend(unmount_steps(
        ev,
        holders.is_empty(),
        &busy_paths,
        driver.as_deref(),
    ));
    remedy.extend(watch_step(ev));

    let holder = holders
        .iter()
        .next()
        .map(|(pid, (path, _, _))| (*pid, path.as_str()));
    let name = volume
        .as_ref()
        .map(|(name, _)| format!("volume {name}"))
        .unwrap_or_else(|| "a volume".into());
    let summary = summary(&name, holder, driver.as_deref(), busy, !failed.is_empty());
    diagnosis(
        CauseId::VolumeTeardown,
        confidence,
        summary,
        evidence,
        remedy,
    )
}

/// What to do when no holder was found or a driver failed: find the busy processes,
/// read the CSI driver's log, or see what still holds the pod's volumes.
fn unmount_steps(
    ev: &Evidence,
    no_holders: bool,
    busy_paths: &BTreeSet<String>,
    driver: Option<&str>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if no_holders {
        if let Some(path) = busy_paths.iter().next() {
            steps.push(Step::look(
                "find the processes keeping the volume busy",
                format!("fuser -vm {path}"),
            ));
            steps.push(Step::say(
                "stop them or make them leave the directory; kubelet retries the unmount by itself",
            ));
        }
    }
    if let Some(driver) = driver {
        steps.push(Step::look(
            format!("the CSI driver {driver} failed to unpublish the volume: read its node plugin's log on this node"),
            format!(
                "kubectl get pods -A -o wide --field-selector spec.nodeName={} | grep -i csi",
                node_name(ev)
            ),
        ));
        steps.push(Step::say(
            "fix what the driver reports (its backend, credentials, a hung server) or restart its node plugin; kubelet retries the teardown by itself",
        ));
    } else if no_holders && busy_paths.is_empty() {
        steps.push(Step::look(
            "see what still holds the pod's volumes",
            format!(
                "grep /var/lib/kubelet/pods/{}/volumes /proc/self/mountinfo",
                pod_uid(ev)
            ),
        ));
        steps.push(Step::say("unmount what kubelet could not (after finding why: a hung network filesystem, a busy mount, a failing driver); kubelet then removes the directories"));
    }
    steps
}

/// One line: who keeps the volume busy, or which driver fails, or what kubelet says.
fn summary(
    name: &str,
    holder: Option<(u32, &str)>,
    driver: Option<&str>,
    busy: bool,
    teardown_failed: bool,
) -> String {
    match (holder, driver, busy) {
        (Some((pid, path)), _, _) => {
            format!("kubelet cannot unmount {name}: pid {pid} keeps {path} busy")
        }
        (None, Some(driver), _) => {
            format!(
                "kubelet cannot tear down {name}: the CSI driver {driver} fails to unpublish it"
            )
        }
        (None, None, true) => format!("kubelet cannot unmount {name}: target is busy"),
        (None, None, false) if !teardown_failed => {
            "the pod is gone from kubelet's view but its volume paths are still on disk".into()
        }
        (None, None, false) => format!("kubelet's teardown of {name} keeps failing"),
    }
}

fn pod_uid(ev: &Evidence) -> String {
    ev.identity()
        .and_then(|p| p.uid.clone())
        .unwrap_or_else(|| "POD_UID".into())
}

/// Processes (not kubelet, not the runtime) whose cwd, root or open file is inside one
/// of the pod's volumes: a busy path a tied failure named, or the pod's volume directory.
fn holders<'a>(
    cx: &Cx<'a>,
    busy_paths: &BTreeSet<String>,
) -> BTreeMap<u32, (String, Option<&'a PsEntry>, Quote)> {
    let ev = cx.ev;
    let mut out = BTreeMap::new();
    for r in &ev.proc_refs {
        let ps = ev.ps.iter().find(|p| p.pid == r.pid);
        if ps.is_some_and(|p| is_runtime(p) || p.program() == "kubelet") {
            continue;
        }
        let in_busy = busy_paths.iter().any(|b| within(&r.target, b));
        let in_volume = r.target.contains("/volumes/")
            && matches!(cx.link.path(&r.target), Some(Tie::VolumeDir));
        if in_busy || (cx.link.known && in_volume) {
            out.entry(r.pid)
                .or_insert((r.target.clone(), ps, r.quote.clone()));
        }
    }
    out
}

/// `path` is `dir` or below it (`/a/b` is within `/a`, `/ab` is not).
fn within(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture, run};
    use super::*;

    #[test]
    fn an_immutable_file_in_a_volume_is_not_a_volume_teardown() {
        assert_eq!(
            run(volume_teardown, &fixture("kind/immutable-file-volume")),
            None
        );
    }

    #[test]
    fn a_held_rootfs_is_not_a_volume_teardown() {
        assert_eq!(run(volume_teardown, &fixture("kind/mount-held")), None);
    }

    #[test]
    fn within_respects_path_components() {
        assert!(within("/a/b", "/a"));
        assert!(within("/a", "/a"));
        assert!(!within("/ab", "/a"));
    }

    #[test]
    fn failures_read_from_the_line() {
        assert_eq!(
            failure_of("... umount: /x: target is busy."),
            Some(Failure::Busy)
        );
        assert_eq!(
            failure_of(
                "kubernetes.io/csi: Unmounter.TearDownAt failed: rpc error: code = Internal"
            ),
            Some(Failure::Driver)
        );
        assert_eq!(failure_of("unlinkat /x: operation not permitted"), None);
        let _ = acts;
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(volume_teardown);
    }
}
