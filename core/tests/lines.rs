//! Real output of every Kubernetes version captured here (`fixtures/lines/<version>/`,
//! and `<version>/v2/` with kubelet at `--v=2`; see its README): the formats users paste
//! read alike, and kubelet's and containerd's lines tie to the pod they are about and to
//! no other.

use std::path::{Path, PathBuf};

use terminus_core::detect::link::{Link, Tie};
use terminus_core::evidence::{ContainerRole, Evidence};

fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lines");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let dir = e.path();
        if dir.join("pod.yaml").is_file() {
            out.push(dir.clone());
        }
        if dir.join("v2/pod.yaml").is_file() {
            out.push(dir.join("v2"));
        }
    }
    out.sort();
    out
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

fn evidence(files: &[(&str, String)]) -> Evidence {
    let mut ev = Evidence::default();
    for (name, text) in files {
        ev.ingest(name, text);
    }
    ev
}

#[test]
fn at_least_two_versions_are_captured() {
    assert!(captures().len() >= 2, "{:?}", captures());
}

#[test]
fn a_pod_reads_alike_as_yaml_json_and_a_list_of_one() {
    for dir in captures() {
        let forms: Vec<Evidence> = ["pod.yaml", "pod.json", "pod-list.yaml"]
            .iter()
            .map(|name| evidence(&[("pod.yaml", read(&dir, name))]))
            .collect();
        let first = forms[0]
            .pod
            .as_ref()
            .unwrap_or_else(|| panic!("{}: pod.yaml", dir.display()));
        assert!(
            first.deletion_timestamp.is_some(),
            "{}: not Terminating",
            dir.display()
        );
        for (name, ev) in ["pod.yaml", "pod.json", "pod-list.yaml"].iter().zip(&forms) {
            assert!(
                ev.problems().is_empty(),
                "{}/{name}: {:?}",
                dir.display(),
                ev.problems()
            );
            let p = ev
                .pod
                .as_ref()
                .unwrap_or_else(|| panic!("{}/{name}", dir.display()));
            assert_eq!(p.uid, first.uid, "{}/{name}", dir.display());
            assert_eq!(
                p.deletion_timestamp,
                first.deletion_timestamp,
                "{}/{name}",
                dir.display()
            );
            let ids = |p: &terminus_core::evidence::PodFacts| {
                p.containers
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(p), ids(first), "{}/{name}", dir.display());
            assert!(
                p.deletion_quote.is_some(),
                "{}/{name}: deletionTimestamp not quoted",
                dir.display()
            );
        }
    }
}

#[test]
fn events_read_alike_as_yaml_and_json_and_name_their_pod() {
    for dir in captures() {
        let yaml = evidence(&[("events.yaml", read(&dir, "events.yaml"))]);
        let json = evidence(&[("events.yaml", read(&dir, "events.json"))]);
        assert!(!yaml.events.is_empty(), "{}", dir.display());
        assert_eq!(yaml.events.len(), json.events.len(), "{}", dir.display());
        for (a, b) in yaml.events.iter().zip(&json.events) {
            assert_eq!(a.object, b.object, "{}", dir.display());
            assert!(
                b.quote.line > 0,
                "{}: {:?} not quoted",
                dir.display(),
                b.quote
            );
        }
        let with_pod = evidence(&[
            ("pod.yaml", read(&dir, "pod.yaml")),
            ("events.yaml", read(&dir, "events.json")),
        ]);
        let link = Link::new(&with_pod);
        for e in &with_pod.events {
            assert!(link.event(e).is_some(), "{}: {:?}", dir.display(), e.quote);
        }
    }
}

#[test]
fn init_regular_and_ephemeral_containers_all_have_ids() {
    for dir in captures() {
        let ev = evidence(&[("pod.yaml", read(&dir, "pod-init-ephemeral.yaml"))]);
        let pod = ev
            .pod
            .as_ref()
            .unwrap_or_else(|| panic!("{}", dir.display()));
        for role in [
            ContainerRole::Init,
            ContainerRole::Regular,
            ContainerRole::Ephemeral,
        ] {
            let c = pod
                .containers
                .iter()
                .find(|c| c.role == role)
                .unwrap_or_else(|| panic!("{}: no {role:?} container", dir.display()));
            assert!(
                c.id.as_deref().is_some_and(|i| i.len() == 64),
                "{}: {c:?}",
                dir.display()
            );
            assert_eq!(
                c.runtime.as_deref(),
                Some("containerd"),
                "{}",
                dir.display()
            );
        }
    }
}

/// The experiment's other pods: their lines are in the same journal.
const NEIGHBOURS: [&str; 3] = ["/withinit\"", "/held\"", "/debugged\""];

#[test]
fn journal_lines_tie_to_their_own_pod_only() {
    for dir in captures() {
        let ev = evidence(&[
            ("pod.yaml", read(&dir, "pod.yaml")),
            ("kubelet.log", read(&dir, "kubelet.log")),
            ("runtime.log", read(&dir, "runtime.log")),
        ]);
        let link = Link::new(&ev);
        let uid = ev.pod.as_ref().and_then(|p| p.uid.clone()).expect("uid");
        let mut tied = 0;
        for q in ev.kubelet_log.iter().chain(&ev.runtime_log) {
            let tie = link.text_tie(&q.text);
            if NEIGHBOURS.iter().any(|n| q.text.contains(n)) && !q.text.contains(&uid) {
                assert_eq!(tie, None, "{}:{} {}", dir.display(), q.line, q.text);
            }
            if q.text.contains("\"Killing container with a grace period\"") && q.text.contains(&uid)
            {
                assert!(
                    matches!(tie, Some(Tie::PodUid)),
                    "{}: {}",
                    dir.display(),
                    q.text
                );
            }
            tied += usize::from(tie.is_some());
        }
        assert!(tied > 0, "{}: no line tied to the pod", dir.display());
    }
}
