//! The `disk-full` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

static ENOSPC_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:write|mkdir|open|create|rename)\s+(/[^\s:]+):\s*no space left on device")
        .expect("regex")
});

pub(super) fn disk_full(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let enospc: Vec<(&Quote, Tie)> = cx
        .lines()
        .filter(|(q, _)| q.text.to_lowercase().contains("no space left on device"))
        .collect();
    let named: Vec<String> = enospc
        .iter()
        .filter_map(|(q, _)| ENOSPC_PATH.captures(&q.text).map(|c| c[1].to_owned()))
        .collect();
    let full: Vec<(&crate::evidence::DfRow, &str, Tie)> = held(cx, &ev.df, &named, &enospc)
        .into_iter()
        .map(|(r, t)| (r, "blocks", t))
        .chain(
            held(cx, &ev.df_inodes, &named, &enospc)
                .into_iter()
                .map(|(r, t)| (r, "inodes", t)),
        )
        .collect();
    if enospc.is_empty() && full.is_empty() {
        return None;
    }
    // df shows room on every filesystem holding the pod's state: the no-space errors
    // were an episode that is over (it may have left a desync behind), not what holds
    // the pod now.
    let room_now = full.is_empty() && ev.has("df.txt") && !ev.df.is_empty();
    let confidence = match (enospc.is_empty(), full.is_empty()) {
        (false, false) => 0.95,
        (false, true) if room_now => 0.45,
        (false, true) => 0.85,
        (true, false) => 0.6,
        (true, true) => unreachable!("returned above"),
    };
    let mut evidence: Vec<Proof> = enospc
        .iter()
        .take(3)
        .map(|(q, t)| Proof::new(q, t))
        .collect();
    evidence.extend(full.iter().map(|(r, _, t)| Proof::new(&r.quote, t)));
    evidence.extend(
        ev.events
            .iter()
            .filter(|e| e.reason == "Killing" && e.count > 1)
            .filter_map(|e| Some(Proof::new(&e.quote, &cx.link.event(e)?)))
            .take(1),
    );
    let failed_path = named.first().cloned();
    let mut remedy = Vec::new();
    for (row, what, _) in &full {
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
        (Some(path), _) if room_now => format!(
            "the runtime could not write {path} (no space left on device), but df shows room now: the episode is over"
        ),
        (Some(path), _) => format!("the runtime cannot write {path}: no space left on device"),
        (None, Some((row, what, _))) => format!("{} has no {what} left", row.mount),
        (None, None) => "the runtime reports no space left on device".into(),
    };
    diagnosis(CauseId::DiskFull, confidence, summary, evidence, remedy)
}

/// The full rows that matter to the pod: those holding its state (see
/// [`Link::holding`]) and the paths its no-space errors named. Without pod.yaml, every
/// full filesystem holding runtime or kubelet data, or a path a no-space error named,
/// except another pod's volume.
fn held<'r>(
    cx: &Cx,
    rows: &'r [crate::evidence::DfRow],
    named: &[String],
    enospc: &[(&Quote, Tie)],
) -> Vec<(&'r crate::evidence::DfRow, Tie)> {
    if cx.link.known {
        return cx
            .link
            .holding(rows, named)
            .into_iter()
            .filter(|(r, _)| r.is_full())
            .collect();
    }
    rows.iter()
        .filter(|r| r.is_full() && relevant_mount(&r.mount, enospc))
        .map(|r| (r, Tie::Untied))
        .collect()
}

/// Without a pod: a full filesystem matters when it holds the runtime's or kubelet's
/// data, or the path a no-space error named.
fn relevant_mount(mount: &str, enospc: &[(&Quote, Tie)]) -> bool {
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
        || (mount.contains("kubelet") && !mount.contains("/pods/"))
        || enospc
            .iter()
            .any(|(q, _)| mount.len() > 1 && q.text.contains(&format!("{mount}/")))
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture, run};
    use super::*;

    #[test]
    fn names_the_full_filesystem_of_the_handbook_and_of_containerd() {
        for bundle in [
            "seed/handbook-disk-full",
            "bundles/containerd-disk-full",
            "bundles/docker-disk-full-inodes",
        ] {
            let d = run(disk_full, &fixture(bundle))
                .unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
            assert_eq!(d.cause, CauseId::DiskFull, "{bundle}");
            assert!(d.confidence >= THRESHOLD, "{bundle}: {}", d.confidence);
            assert!(!d.evidence.is_empty(), "{bundle}: no proof");
            // Freeing space is the operator's call: the rule only shows where to look.
            assert!(acts(&d).is_empty(), "{bundle}: {:?}", acts(&d));
        }
    }

    /// A full tmpfs counts only when it is this pod's volume; another pod's full emptyDir
    /// on the same node holds none of this pod's state.
    #[test]
    fn only_the_pods_own_full_volume_counts() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kind/mount-held");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        let uid = "9e094288-8e6e-491c-8037-57880aa07791";
        let other = "0c3d7e52-77aa-4a1e-9d7b-5b0f1f7e2a10";
        for (owner, expected) in [(other, None), (uid, Some(CauseId::DiskFull))] {
            let mut ev = Evidence::default();
            ev.ingest("pod.yaml", &read("pod.yaml"));
            ev.ingest("captured-at", &read("captured-at"));
            ev.ingest(
                "df.txt",
                &format!(
                    "{}tmpfs 1024 1024 0 100% /var/lib/kubelet/pods/{owner}/volumes/kubernetes.io~empty-dir/cache\n",
                    read("df.txt")
                ),
            );
            assert_eq!(run(disk_full, &ev).map(|d| d.cause), expected, "{owner}");
        }
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(disk_full);
    }
}
