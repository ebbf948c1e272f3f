//! Vetting an act step against the evidence before anything runs it.
//!
//! A remedy's argv is built from a stranger's node: file names a workload chose, pids,
//! finalizer names. It already runs without a shell; this module makes sure it also
//! runs only in a known shape and only on targets the evidence ties to this pod: a path
//! under this pod's kubelet directory or the runtime's state, recorded as immutable; a
//! pid that the evidence shows (and that the runner re-checks is the same process); a
//! finalizer that is a valid qualified name present on the pod.
//!
//! Architecture invariant: every act is refused unless one of the shapes below accepts
//! it; a new remedy shape needs a new arm here (and a test), never a wildcard.

use super::rules::names_forbidden_pod;
use super::StepPlace;
use crate::evidence::Evidence;
use crate::text::excerpt;
use crate::OUT_OF_SERVICE_TAINT;

/// Why an act step was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{0}` is not a remedy shape terminus runs")]
    UnknownShape(String),
    #[error("path `{0}` is not a plain absolute path (no `..`, `.`, empty or control characters)")]
    UnsafePath(String),
    #[error(
        "path `{0}` lies outside this pod's kubelet directory, its cgroup and the runtime's state"
    )]
    OutsidePod(String),
    #[error("path `{0}` is not recorded in the evidence as {1}")]
    NotInEvidence(String, &'static str),
    #[error("pid `{0}` is not a process the evidence shows")]
    UnknownPid(String),
    #[error("pid {0} has no start time in ps.txt, so a reused pid cannot be ruled out; check it and signal it by hand")]
    NoStartTime(String),
    #[error("finalizer patch does not match a finalizer on pod {0}: {1}")]
    BadFinalizer(String, String),
    #[error("container id `{0}` is not a container docker listed")]
    UnknownContainer(String),
}

/// What the runner must confirm on the node just before the step runs, because core
/// cannot look: a pid may have been reused since the evidence was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// `ps -o lstart= -p PID` must print this start time (whitespace-normalised).
    ProcessStartedAt {
        pid: u32,
        started: String,
    },
}

const RUNTIME_DIRS: [&str; 3] = [
    "/var/lib/containerd/",
    "/var/lib/docker/",
    "/run/containerd/",
];
const RUNTIME_LAYERS: [&str; 2] = ["/overlay2/", "/io.containerd.snapshotter.v1."];
const UNITS: [&str; 3] = ["kubelet", "containerd", "docker"];

/// Accepts `argv` at `place` only in a known shape with targets from `ev`.
pub fn vet(place: StepPlace, argv: &[String], ev: &Evidence) -> Result<Precondition, Refusal> {
    let a: Vec<&str> = argv.iter().map(String::as_str).collect();
    match (place, a.as_slice()) {
        (StepPlace::Node, ["chattr", "-i", path]) => {
            let path = pod_path(path, ev)?;
            // lsattr shows it immutable, or the runtime failed to remove exactly it.
            let failing = format!("{path}: operation not permitted");
            let recorded = ev.lsattr.iter().any(|e| e.immutable() && e.path == path)
                || ev.log_lines().any(|q| q.text.contains(&failing));
            if !recorded {
                return Err(Refusal::NotInEvidence(
                    path.to_owned(),
                    "immutable (lsattr) or failing removal (log)",
                ));
            }
            Ok(Precondition::None)
        }
        (StepPlace::Node, ["rm", "-rf", dir]) => {
            let dir = plain_path(dir)?;
            let leaked_snapshot = dir.contains("/io.containerd.snapshotter.v1.")
                && dir.split_once("/snapshots/").is_some_and(|(_, id)| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
                });
            if !leaked_snapshot {
                return Err(Refusal::OutsidePod(dir.to_owned()));
            }
            if !ev.log_lines().any(|q| q.text.contains(dir)) {
                return Err(Refusal::NotInEvidence(
                    dir.to_owned(),
                    "a directory the runtime failed to remove",
                ));
            }
            Ok(Precondition::None)
        }
        (StepPlace::Node, ["kill", pid] | ["kill", "-CONT", pid]) => {
            let pid_value = pid.parse::<u32>().ok().filter(|p| *p > 1);
            let entry = pid_value.and_then(|p| ev.ps.iter().find(|e| e.pid == p));
            match (pid_value, entry) {
                (Some(_), Some(entry)) => Ok(Precondition::ProcessStartedAt {
                    pid: entry.pid,
                    started: normalise(&entry.started),
                }),
                // Named by mountinfo or /proc refs but not by ps: without a start time
                // a reused pid cannot be told apart, so it is not signalled.
                (Some(_), None) => Err(Refusal::NoStartTime(excerpt(pid))),
                (None, _) => Err(Refusal::UnknownPid(excerpt(pid))),
            }
        }
        (StepPlace::Node, ["systemctl", "restart", unit]) if UNITS.contains(unit) => {
            Ok(Precondition::None)
        }
        (StepPlace::Node, ["terminus-agent", "thaw-cgroup", dir]) => {
            frozen_pod_cgroup(dir, ev)?;
            Ok(Precondition::None)
        }
        (StepPlace::Node, ["docker", "container", "prune", "-f"]) => Ok(Precondition::None),
        (StepPlace::Node, ["docker", "rm", "-f", id]) => {
            let hex = (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex || !ev.docker_ps.iter().any(|r| r.id == *id) {
                return Err(Refusal::UnknownContainer(excerpt(id)));
            }
            Ok(Precondition::None)
        }
        (StepPlace::Cluster, ["kubectl", "taint", "node", node, taint])
            if *taint == format!("{OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute") =>
        {
            lost_pod_node(node, ev)?;
            Ok(Precondition::None)
        }
        (StepPlace::Cluster, ["kubectl", "delete", "validatingadmissionpolicybinding", name]) => {
            denying_binding(name, ev)?;
            Ok(Precondition::None)
        }
        (
            StepPlace::Cluster,
            ["kubectl", "patch", "pod", name, "-n", ns, "--type=json", "-p", patch],
        ) => {
            finalizer_patch(name, ns, patch, ev)?;
            Ok(Precondition::None)
        }
        _ => Err(Refusal::UnknownShape(excerpt(
            &crate::detect::shell_quoted(argv),
        ))),
    }
}

/// `path` must be plain and lie under this pod's kubelet directory or the runtime's.
fn pod_path<'a>(path: &'a str, ev: &Evidence) -> Result<&'a str, Refusal> {
    let path = plain_path(path)?;
    let under_pod = ev
        .pod
        .as_ref()
        .and_then(|p| p.uid.as_deref())
        .is_some_and(|uid| path.starts_with(&format!("/var/lib/kubelet/pods/{uid}/")));
    // The runtime's state: the default roots, or a layer directory of a moved data root
    // (`/data/docker/overlay2/<id>/…`, `…/io.containerd.snapshotter.v1.overlayfs/…`).
    let under_runtime = RUNTIME_DIRS.iter().any(|d| path.starts_with(d))
        || RUNTIME_LAYERS.iter().any(|l| path.contains(l));
    if under_pod || under_runtime {
        Ok(path)
    } else {
        Err(Refusal::OutsidePod(excerpt(path)))
    }
}

/// Absolute, only normal components, no control characters.
fn plain_path(path: &str) -> Result<&str, Refusal> {
    // Textual, not `Path::components`, which silently drops `.` segments.
    let plain = path.starts_with('/')
        && !path.chars().any(char::is_control)
        && path[1..]
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."));
    if plain {
        Ok(path)
    } else {
        Err(Refusal::UnsafePath(excerpt(path)))
    }
}

/// `dir` must be a plain path under /sys/fs/cgroup inside this pod's cgroup, shown
/// frozen in pod-cgroups.txt.
fn frozen_pod_cgroup(dir: &str, ev: &Evidence) -> Result<(), Refusal> {
    let dir = plain_path(dir)?;
    let uid = ev.pod.as_ref().and_then(|p| p.uid.as_deref()).unwrap_or("");
    if !dir.starts_with("/sys/fs/cgroup/") || !crate::evidence::pod_cgroup_dir(dir, uid) {
        return Err(Refusal::OutsidePod(excerpt(dir)));
    }
    if !ev.pod_cgroups.iter().any(|l| l.dir == dir && l.frozen()) {
        return Err(Refusal::NotInEvidence(
            dir.to_owned(),
            "a frozen cgroup of the pod (pod-cgroups.txt)",
        ));
    }
    Ok(())
}

/// `node` must be the pod's own node, and node.yaml must show it not Ready: the
/// out-of-service taint force-deletes every pod on it.
fn lost_pod_node(node: &str, ev: &Evidence) -> Result<(), Refusal> {
    let facts = ev.node.as_ref();
    let is_pods_node = facts.is_some_and(|n| n.name == node)
        && ev.pod.as_ref().and_then(|p| p.node.as_deref()) == Some(node);
    let not_ready = facts
        .and_then(|n| n.ready.as_ref())
        .is_some_and(|(status, _, _)| status != "True");
    if !is_pods_node || !not_ready {
        return Err(Refusal::NotInEvidence(
            excerpt(node),
            "the pod's node, not Ready in node.yaml",
        ));
    }
    Ok(())
}

/// `name` must be a DNS subdomain that a controller-manager.log denial of an update to
/// this pod names as its binding.
fn denying_binding(name: &str, ev: &Evidence) -> Result<(), Refusal> {
    let subdomain = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let named = format!("with binding '{name}' denied request");
    let pod_name = ev.pod.as_ref().map(|p| p.name.as_str()).unwrap_or("");
    let denied_here = ev
        .controller_manager_log
        .iter()
        .any(|q| q.text.contains(&named) && names_forbidden_pod(&q.text, pod_name));
    if !subdomain || !denied_here {
        return Err(Refusal::NotInEvidence(
            excerpt(name),
            "a policy binding that denied an update to this pod (controller-manager.log)",
        ));
    }
    Ok(())
}

/// The finalizer patch must be exactly test+remove of one finalizer present on this pod
/// at that index, and the finalizer must be a valid qualified name.
fn finalizer_patch(name: &str, ns: &str, patch: &str, ev: &Evidence) -> Result<(), Refusal> {
    let bad = |why: &str| {
        Refusal::BadFinalizer(format!("{}/{}", excerpt(ns), excerpt(name)), why.to_owned())
    };
    let pod = ev
        .pod
        .as_ref()
        .ok_or_else(|| bad("no pod.yaml in the evidence"))?;
    if pod.name != name || pod.namespace != ns {
        return Err(bad("not the pod of the evidence"));
    }
    let ops: serde_json::Value = serde_json::from_str(patch).map_err(|_| bad("not JSON"))?;
    let [test, remove] = ops.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err(bad("not a test and a remove"));
    };
    let path = test["path"].as_str().unwrap_or_default();
    let value = test["value"].as_str().unwrap_or_default();
    let index: Option<usize> = path
        .strip_prefix("/metadata/finalizers/")
        .and_then(|i| i.parse().ok());
    let shape_ok = test["op"] == "test"
        && remove["op"] == "remove"
        && remove["path"] == path
        && index.is_some();
    if !shape_ok {
        return Err(bad("not a test and a remove of one finalizer"));
    }
    if !is_qualified_name(value) {
        return Err(bad(&format!(
            "`{}` is not a valid qualified name",
            excerpt(value)
        )));
    }
    let present = index
        .and_then(|i| pod.finalizers.get(i))
        .is_some_and(|(f, _)| f == value);
    if !present {
        return Err(bad(&format!(
            "`{}` is not at that index on the pod",
            excerpt(value)
        )));
    }
    Ok(())
}

/// Kubernetes' qualified name: an optional DNS subdomain prefix and `/`, then a name of
/// at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

/// Whitespace runs collapsed, for comparing `ps` start times.
pub fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::fixture;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_act_the_rules_emit_on_the_fixtures_is_accepted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut checked = 0;
        for group in std::fs::read_dir(&dir).unwrap().flatten() {
            for bundle in std::fs::read_dir(group.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if !bundle.path().join("expected-cause").is_file() {
                    continue;
                }
                let ev = Evidence::load(&bundle.path());
                for d in crate::detect::diagnose(&ev).diagnoses {
                    for (place, argv) in d.remedy.iter().filter_map(|s| s.action()) {
                        let vetted = vet(place, argv, &ev);
                        // The handbook's holder is known from mountinfo alone.
                        if matches!(vetted, Err(Refusal::NoStartTime(_))) && ev.ps.is_empty() {
                            continue;
                        }
                        assert!(
                            vetted.is_ok(),
                            "{}: {argv:?}: {vetted:?}",
                            bundle.path().display()
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 8, "only {checked} acts on the fixtures");
    }

    #[test]
    fn only_a_frozen_cgroup_of_this_pod_is_thawed() {
        let uid = "22241d77-3d04-4630-b433-31e2c9fb8cc3";
        let pod = "/sys/fs/cgroup/freezer/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod22241d77_3d04_4630_b433_31e2c9fb8cc3.slice";
        let mut ev = Evidence::default();
        ev.ingest(
            "pod.yaml",
            &format!("metadata:\n  name: v\n  namespace: ns\n  uid: {uid}\n"),
        );
        ev.ingest(
            "pod-cgroups.txt",
            &format!("{pod}/freezer.state:THAWED\n{pod}/x/freezer.state:FROZEN\n/sys/fs/cgroup/freezer/other/freezer.state:FROZEN\n"),
        );
        let thaw = |dir: &str| {
            vet(
                StepPlace::Node,
                &args(&["terminus-agent", "thaw-cgroup", dir]),
                &ev,
            )
        };
        assert_eq!(thaw(&format!("{pod}/x")), Ok(Precondition::None));
        assert!(matches!(thaw(pod), Err(Refusal::NotInEvidence(..))));
        assert!(matches!(
            thaw("/sys/fs/cgroup/freezer/other"),
            Err(Refusal::OutsidePod(_))
        ));
        assert!(matches!(
            thaw(&format!("{pod}/../x")),
            Err(Refusal::UnsafePath(_))
        ));
        assert!(matches!(
            thaw("/etc/kubepods-besteffort-pod22241d77_3d04_4630_b433_31e2c9fb8cc3.slice"),
            Err(Refusal::OutsidePod(_))
        ));
    }

    #[test]
    fn hostile_paths_are_refused() {
        let ev = fixture("kind/immutable-file-volume");
        let uid = ev.pod.as_ref().and_then(|p| p.uid.clone()).unwrap();
        let base = format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/data");
        for path in [
            format!("{base}/../../../../../etc/shadow"),
            format!("{base}/./locked"),
            format!("{base}//locked"),
            format!("{base}/a\nb"),
            "relative/locked".to_owned(),
            "/etc/shadow".to_owned(),
            "/var/lib/kubelet/pods/another-uid/volumes/x".to_owned(),
        ] {
            let r = vet(StepPlace::Node, &args(&["chattr", "-i", &path]), &ev);
            assert!(
                matches!(r, Err(Refusal::UnsafePath(_) | Refusal::OutsidePod(_))),
                "{path:?}: {r:?}"
            );
        }
        // A plain path of this pod, but not one lsattr showed immutable.
        let r = vet(
            StepPlace::Node,
            &args(&["chattr", "-i", &format!("{base}/$(touch${{IFS}}x)")]),
            &ev,
        );
        assert!(matches!(r, Err(Refusal::NotInEvidence(..))), "{r:?}");
    }

    #[test]
    fn unknown_shapes_pids_and_finalizers_are_refused() {
        let ev = fixture("kind/finalizer");
        for argv in [
            args(&["sh", "-c", "reboot"]),
            args(&["chattr", "-i", "/x", "/y"]),
            args(&["systemctl", "stop", "kubelet"]),
            args(&["systemctl", "restart", "sshd"]),
            args(&["kill", "1"]),
            args(&["kill", "-9", "1234"]),
            args(&["kill", "999999"]),
            args(&["docker", "rm", "-f", "nothex"]),
        ] {
            assert!(vet(StepPlace::Node, &argv, &ev).is_err(), "{argv:?}");
        }
        let pod = ev.pod.as_ref().unwrap();
        let patch = |i: usize, v: &str| {
            serde_json::json!([{"op":"test","path":format!("/metadata/finalizers/{i}"),"value":v},{"op":"remove","path":format!("/metadata/finalizers/{i}")}]).to_string()
        };
        let kubectl = |name: &str, ns: &str, p: String| {
            args(&[
                "kubectl",
                "patch",
                "pod",
                name,
                "-n",
                ns,
                "--type=json",
                "-p",
                &p,
            ])
        };
        let real = pod.finalizers[0].0.clone();
        assert_eq!(
            vet(
                StepPlace::Cluster,
                &kubectl(&pod.name, &pod.namespace, patch(0, &real)),
                &ev
            ),
            Ok(Precondition::None)
        );
        for argv in [
            kubectl(&pod.name, &pod.namespace, patch(0, "example.com/other")),
            kubectl(&pod.name, &pod.namespace, patch(1, &real)),
            kubectl(&pod.name, &pod.namespace, patch(0, "x' -p '[]")),
            kubectl("other", &pod.namespace, patch(0, &real)),
            kubectl(
                &pod.name,
                &pod.namespace,
                "[{\"op\":\"replace\",\"path\":\"/spec\"}]".into(),
            ),
        ] {
            assert!(vet(StepPlace::Cluster, &argv, &ev).is_err(), "{argv:?}");
        }
        // The same argv at the wrong place.
        assert!(vet(
            StepPlace::Node,
            &kubectl(&pod.name, &pod.namespace, patch(0, &real)),
            &ev
        )
        .is_err());
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "kubernetes.io/pvc-protection",
            "foregroundDeletion",
            "terminus.dev/hold",
            "a",
        ] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "x/",
            "Example.com/x",
            "a b",
            "x'",
            "-a",
            &"a".repeat(64),
            "a/b/c",
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }
}
