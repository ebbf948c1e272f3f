//! The `immutable-file` rule: what proves this cause, and the remedy filled in from the evidence.

use super::*;
use crate::evidence::LsattrEntry;

static EPERM_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:unlinkat|unlink|remove|rmdir|rename)\s+(/[^:\n]+?):\s*operation not permitted")
        .expect("regex")
});

pub(super) fn immutable_file(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let mut evidence = Vec::new();
    for (q, tie) in cx.lines() {
        let mut hit = false;
        for c in EPERM_PATH.captures_iter(&q.text) {
            paths.insert(c[1].to_owned());
            hit = true;
        }
        if hit && evidence.len() < 3 {
            evidence.push(Proof::new(q, &tie));
        }
    }
    let from_logs = !paths.is_empty();
    let flagged = flagged_files(cx, &paths);
    for (e, tie) in &flagged {
        paths.insert(e.path.clone());
        evidence.push(Proof::new(&e.quote, tie));
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
        flagged.iter().map(|(e, _)| &e.path).collect()
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
        remedy.push(Step::say("kubelet retries the removal by itself"));
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

/// lsattr's immutable entries that count for the pod: its own (its volume directory,
/// its containers' layers) or on a path a tied failure named.
fn flagged_files<'e>(cx: &Cx<'e>, paths: &BTreeSet<String>) -> Vec<(&'e LsattrEntry, Tie)> {
    cx.ev
        .lsattr
        .iter()
        .filter(|e| e.immutable())
        .filter_map(|e| {
            let tie = cx.link.path(&e.path).or_else(|| {
                paths
                    .iter()
                    .find(|p| {
                        e.path == **p
                            || e.path.starts_with(&format!("{p}/"))
                            || p.starts_with(&format!("{}/", e.path))
                    })
                    .map(|p| Tie::NamedPath(p.clone()))
            })?;
            Some((e, tie))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{acts, assert_silent, fixture, run};
    use super::*;

    #[test]
    fn a_log_path_with_spaces_and_shell_syntax_is_read_whole() {
        let line = r#"E1202 kubelet: unlinkat /var/lib/kubelet/pods/u/volumes/d/my file $(touch${IFS}x);'x': operation not permitted"#;
        let c = EPERM_PATH.captures(line).expect("a match");
        assert_eq!(
            &c[1],
            "/var/lib/kubelet/pods/u/volumes/d/my file $(touch${IFS}x);'x'"
        );
    }

    #[test]
    fn clears_the_flag_on_the_path_the_evidence_names() {
        for bundle in [
            "seed/handbook-immutable-file",
            "kind/immutable-file-volume",
            "bundles/docker-immutable-file",
        ] {
            let d = run(immutable_file, &fixture(bundle))
                .unwrap_or_else(|| panic!("{bundle}: no diagnosis"));
            assert_eq!(d.cause, CauseId::ImmutableFile);
            let acts = acts(&d);
            assert!(
                !acts.is_empty() && acts.iter().all(|a| a.starts_with("chattr -i ")),
                "{bundle}: {acts:?}"
            );
            let (_, argv) = d.remedy.iter().find_map(|s| s.action()).expect("an act");
            let path = &argv[2];
            assert!(path.starts_with('/'), "{bundle}: {path}");
            assert!(
                d.evidence.iter().any(|q| q.text.contains(path.as_str())),
                "{bundle}: {path} is not in the proof"
            );
        }
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(immutable_file);
    }
}
