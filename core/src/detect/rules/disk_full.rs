//! The `disk-full` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;

static ENOSPC_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:write|mkdir|open|create|rename)\s+(/[^\s:]+):\s*no space left on device")
        .expect("regex")
});

pub(super) fn disk_full(ev: &Evidence) -> Option<Diagnosis> {
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

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture};
    use super::*;

    #[test]
    fn names_the_full_filesystem_of_the_handbook_and_of_containerd() {
        for bundle in [
            "seed/handbook-disk-full",
            "bundles/containerd-disk-full",
            "bundles/docker-disk-full-inodes",
        ] {
            let d = disk_full(&fixture(bundle)).unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
            assert_eq!(d.cause, CauseId::DiskFull, "{bundle}");
            assert!(d.confidence >= THRESHOLD, "{bundle}: {}", d.confidence);
            assert!(!d.evidence.is_empty(), "{bundle}: no proof");
            // Freeing space is the operator's call: the rule only shows where to look.
            assert!(acts(&d).is_empty(), "{bundle}: {:?}", acts(&d));
        }
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(disk_full);
    }
}
