//! What the kernel and runtime make of a fault: where a valid scenario asks for an outcome
//! its fault cannot give on the kernels its `requires` admits, `scenarios check` warns,
//! naming the field and what to write instead. The facts are the ones the shipped
//! scenarios' fidelity notes record.
//!
//! Architecture invariant: warnings never refuse a file (a user may know better about
//! their kernel); every warning names `file:line:column`, the field and the fix.

use semver::{Version, VersionReq};

use super::error::ScenarioError;
use super::locate::locate;
use super::plan::{FaultSpec, ImmutableLocation, PodOutcome, Scenario};
use crate::ledger::Via;

/// Since Linux 3.18 a mount that is busy only in another mount namespace no longer
/// makes the runtime's unmount fail: the mount leaks there instead.
const MOUNT_LEAKS_SINCE: Version = Version::new(3, 18, 0);
/// Since Linux 5.15 an immutable flag set from inside an overlay container is an
/// overlay xattr: containerd removes the container and leaks the snapshot.
const OVERLAY_FLAG_SINCE: Version = Version::new(5, 15, 0);
/// A kernel as new as kind users run.
const CURRENT_KERNEL: Version = Version::new(6, 12, 0);

/// Whether the scenario's kernel range admits kernels from `since` on.
fn admits_since(kernel: Option<&VersionReq>, since: &Version) -> bool {
    kernel.is_none_or(|req| req.matches(since) || req.matches(&CURRENT_KERNEL))
}

/// The warnings for a validated scenario; `source` is its text, for line:column.
pub fn warnings(s: &Scenario, source: &str) -> Vec<ScenarioError> {
    let mut found = Vec::new();
    let mut warn = |path: &[&str], message: String| {
        let (line, column) = locate(source, path);
        found.push(ScenarioError {
            file: s.file.clone(),
            line,
            column,
            field: path.join("."),
            message,
        });
    };
    // The detector calls a pod stuck only `min_stuck` past its grace period; a trial
    // that collects sooner gets "too early" instead of a cause.
    let min_stuck = crate::detect::Options::default().min_stuck;
    if s.observe.pod == PodOutcome::StaysTerminating
        && s.observe.hold < s.workload.grace_period + min_stuck
    {
        warn(
            &["observe", "for"],
            format!(
                "the evidence is collected {}s after the delete, but the detector answers TOO EARLY \
                 for a pod less than {}s past its grace period ({}s): write `for:` of at least {}s",
                s.observe.hold.as_secs(),
                min_stuck.as_secs(),
                s.workload.grace_period.as_secs(),
                (s.workload.grace_period + min_stuck).as_secs() + 1
            ),
        );
    }
    let kernel = s.requires.kernel.as_ref();
    match (&s.fault, s.observe.pod) {
        (FaultSpec::HoldMount { via: Via::Bind }, PodOutcome::StaysTerminating)
            if admits_since(kernel, &MOUNT_LEAKS_SINCE) =>
        {
            warn(
                &["observe", "pod"],
                "`hold-mount` with `via: bind` cannot keep the pod Terminating on kernel >= 3.18: \
                 the bind in the holder's namespace leaks instead of blocking the unmount, and the pod \
                 goes away; write `observe.pod: goes-away` with `observe.node: left-unclean` for the \
                 leak, use `via: cwd` (or `via: fd`) for a pod that stays, or restrict \
                 `requires.kernel` to \"<3.18\""
                    .into(),
            );
        }
        (FaultSpec::HoldMount { via: Via::Bind }, PodOutcome::GoesAway)
            if !s.observe.node_left_unclean && admits_since(kernel, &MOUNT_LEAKS_SINCE) =>
        {
            warn(
                &["observe", "pod"],
                "the pod of a `via: bind` holder goes away but its layer stays mounted in the \
                 holder's namespace: the node is not clean until the remedy; add \
                 `node: left-unclean` under `observe`"
                    .into(),
            );
        }
        (
            FaultSpec::ImmutableFile {
                location: ImmutableLocation::Rootfs,
                ..
            },
            PodOutcome::StaysTerminating,
        ) if admits_since(kernel, &OVERLAY_FLAG_SINCE) => {
            warn(
                &["observe", "pod"],
                "an immutable file in the container's rootfs does not hold the pod on kernel >= 5.15 \
                 (the flag is an overlay xattr; containerd removes the container and leaks its \
                 snapshot): write `observe.pod: goes-away` with `observe.node: left-unclean`, or use \
                 `location: volume` for a pod that stays"
                    .into(),
            );
        }
        _ => {}
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios")
            .join(name);
        std::fs::read_to_string(&path).expect("a shipped scenario")
    }

    fn warnings_of(source: &str) -> Vec<ScenarioError> {
        let s = super::super::parse(Path::new("variant.yaml"), source).expect("valid");
        warnings(&s, source)
    }

    #[test]
    fn shipped_scenarios_have_no_warning() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for entry in std::fs::read_dir(dir).expect("scenarios/") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let found = warnings_of(&shipped(&name));
            assert!(found.is_empty(), "{name}: {found:?}");
        }
    }

    #[test]
    fn an_observation_shorter_than_the_detectors_patience_is_warned_about() {
        // grace 2 s + the detector's 15 s: 15 s of observation gets "too early" (seen
        // on kind: "left its grace period only 14s before capture").
        let source = shipped("runtime-desync.yaml").replace("for: 20s", "for: 15s");
        let found = warnings_of(&source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "observe.for");
        assert!(found[0].message.contains("at least 18s"), "{}", found[0]);
        assert!(warnings_of(&source.replace("for: 15s", "for: 18s")).is_empty());
    }

    #[test]
    fn a_bind_holder_that_should_keep_the_pod_is_warned_about_at_its_field() {
        let source = shipped("mount-held.yaml").replace("via: cwd", "via: bind");
        let found = warnings_of(&source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "observe.pod");
        let line = source
            .lines()
            .position(|l| l == "  pod: stays-terminating")
            .expect("line");
        assert_eq!(found[0].line, line + 1);
        assert!(found[0].message.contains("via: cwd"), "{}", found[0]);
        // Restricted to kernels where a held mount still blocks: no warning.
        let old = source.replace("kernel: \">=3.18\"", "kernel: \"<3.18\"");
        assert!(warnings_of(&old).is_empty());
    }

    #[test]
    fn a_bind_holder_whose_pod_goes_away_must_expect_the_leak() {
        let leak = shipped("mount-held.yaml")
            .replace("via: cwd", "via: bind")
            .replace(
                "pod: stays-terminating",
                "pod: goes-away\n  node: left-unclean",
            );
        assert!(warnings_of(&leak).is_empty());
        let clean = leak.replace("\n  node: left-unclean", "");
        let found = warnings_of(&clean);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "observe.pod");
        assert!(found[0].message.contains("left-unclean"), "{}", found[0]);
    }

    #[test]
    fn a_rootfs_flag_that_should_keep_the_pod_is_warned_about() {
        let source = shipped("immutable-file-rootfs.yaml").replace(
            "pod: goes-away\n  node: left-unclean",
            "pod: stays-terminating\n  for: 20s",
        );
        let found = warnings_of(&source);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("observe.pod: goes-away"),
            "{}",
            found[0]
        );
    }
}
