//! Whether a scenario's `requires` holds on a node. The facts are the strings Kubernetes
//! reports in `node.status.nodeInfo` (`kubeletVersion`, `containerRuntimeVersion`,
//! `kernelVersion`); the harness reads them once its cluster is up and reports a trial
//! whose node does not meet its scenario as skipped, with the [`Unmet`] as the reason.
//!
//! Versions are read leniently, as nodes spell them: the leading numeric `x.y.z` after an
//! optional `v` (`v1.37.2`, `1.6.20~ds1`, `2.1.9+ds1`, `6.18.0-1-amd64`), missing parts
//! read as 0. What follows (a Debian revision, build metadata, a kernel flavour, a
//! `-rc.1`) is ignored, so a release candidate counts as its release: `<2` does not admit
//! containerd `2.0.0-rc.1`, which behaves as containerd 2 does.
//!
//! Architecture invariant: pure and total: a fact that holds no version is an unmet
//! requirement naming it (never a panic, never counted as met); node text is shown
//! through [`excerpt`].

use std::fmt;

use semver::{Version, VersionReq};

use super::plan::{Requirements, Runtime};
use crate::text::excerpt;

/// What Kubernetes reports about a node, verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// `kubeletVersion`, e.g. `v1.37.2`.
    pub kubelet: String,
    /// `containerRuntimeVersion`, e.g. `containerd://2.1.9`.
    pub runtime: String,
    /// `kernelVersion`, e.g. `6.18.0-1-amd64`.
    pub kernel: String,
}

/// The field of `requires` a node does not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    Runtime,
    Kubernetes,
    Containerd,
    Kernel,
}

impl Requirement {
    /// The field as a scenario file names it.
    pub fn field(self) -> &'static str {
        match self {
            Requirement::Runtime => "requires.runtime",
            Requirement::Kubernetes => "requires.kubernetes",
            Requirement::Containerd => "requires.containerd",
            Requirement::Kernel => "requires.kernel",
        }
    }
}

/// What the node has, where it does not meet the requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// What the node runs, as it reports it: `containerd 2.1.9`, `Kubernetes v1.37.2`,
    /// `kernel 6.18.0-1-amd64`.
    Runs(String),
    /// The node reports `raw` as its `what` version, and it holds no version number.
    Unreadable { what: &'static str, raw: String },
}

/// A requirement of the scenario that the node does not meet; its `Display` is the skip
/// reason: `requires.containerd "<2" but the node runs containerd 2.1.9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    pub requirement: Requirement,
    /// What the scenario requires: the range (`<2`) or the runtimes (`[containerd]`).
    pub required: String,
    pub found: Found,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.requirement.field();
        match self.requirement {
            Requirement::Runtime => write!(f, "{field} {}", self.required)?,
            _ => write!(f, "{field} \"{}\"", self.required)?,
        }
        match &self.found {
            Found::Runs(what) => write!(f, " but the node runs {}", excerpt(what)),
            Found::Unreadable { what, raw } => write!(
                f,
                " but the node reports its {what} version as `{}`, which holds no version number",
                excerpt(raw)
            ),
        }
    }
}

impl std::error::Error for Unmet {}

/// The leading numeric `x.y.z` of `text` (after an optional `v`); see the module doc.
pub fn lenient_version(text: &str) -> Option<Version> {
    let t = text.trim();
    let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let numeric = t[..end].trim_end_matches('.');
    if numeric.is_empty() {
        return None;
    }
    let mut parts = numeric.split('.').map(str::parse::<u64>);
    let mut next = || parts.next().map_or(Some(0), Result::ok);
    let major = next()?;
    let minor = next()?;
    let patch = next()?;
    Some(Version::new(major, minor, patch))
}

/// `containerRuntimeVersion` split into the runtime's name and its version text.
fn runtime_of(reported: &str) -> (&str, &str) {
    reported.split_once("://").unwrap_or((reported, ""))
}

/// `name version`, or `name` alone when the node reports no version.
fn runs(name: &str, version: &str) -> Found {
    Found::Runs(if version.is_empty() {
        name.to_owned()
    } else {
        format!("{name} {version}")
    })
}

/// Checks `range` against a version the node reports as `raw`.
fn check_version(
    requirement: Requirement,
    range: Option<&VersionReq>,
    what: &'static str,
    raw: &str,
    shown: impl FnOnce() -> Found,
) -> Result<(), Unmet> {
    let Some(range) = range else {
        return Ok(());
    };
    let unmet = |found| Unmet {
        requirement,
        required: range.to_string(),
        found,
    };
    match lenient_version(raw) {
        Some(v) if range.matches(&v) => Ok(()),
        Some(_) => Err(unmet(shown())),
        None => Err(unmet(Found::Unreadable {
            what,
            raw: raw.to_owned(),
        })),
    }
}

impl Requirements {
    /// Ok when `node` meets every requirement; else the first it does not, in file order
    /// (runtime, kubernetes, containerd, kernel). `node` only matters for what it runs.
    pub fn check(&self, node: &NodeFacts) -> Result<(), Unmet> {
        let (runtime, runtime_version) = runtime_of(node.runtime.trim());
        if !self.runtimes.iter().any(|r| r.as_str() == runtime) {
            let names: Vec<&str> = self.runtimes.iter().map(|r| r.as_str()).collect();
            return Err(Unmet {
                requirement: Requirement::Runtime,
                required: format!("[{}]", names.join(", ")),
                found: if runtime.is_empty() {
                    Found::Unreadable {
                        what: "container runtime",
                        raw: node.runtime.clone(),
                    }
                } else {
                    runs(runtime, runtime_version)
                },
            });
        }
        check_version(
            Requirement::Kubernetes,
            self.kubernetes.as_ref(),
            "Kubernetes",
            &node.kubelet,
            || runs("Kubernetes", node.kubelet.trim()),
        )?;
        if let Some(range) = &self.containerd {
            if runtime != Runtime::Containerd.as_str() {
                return Err(Unmet {
                    requirement: Requirement::Containerd,
                    required: range.to_string(),
                    found: runs(runtime, runtime_version),
                });
            }
        }
        check_version(
            Requirement::Containerd,
            self.containerd.as_ref(),
            "containerd",
            runtime_version,
            || runs(runtime, runtime_version),
        )?;
        check_version(
            Requirement::Kernel,
            self.kernel.as_ref(),
            "kernel",
            &node.kernel,
            || runs("kernel", node.kernel.trim()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::NodeUse;

    fn req(text: &str) -> Option<VersionReq> {
        Some(VersionReq::parse(text).expect("a range"))
    }

    fn requires() -> Requirements {
        Requirements {
            runtimes: vec![Runtime::Containerd],
            kubernetes: None,
            containerd: None,
            kernel: None,
            node: NodeUse::Shared,
        }
    }

    /// A kind node as Kubernetes reports it (the cluster tier's captures).
    fn node(runtime: &str) -> NodeFacts {
        NodeFacts {
            kubelet: "v1.34.4".into(),
            runtime: runtime.into(),
            kernel: "6.18.44-fc-v669".into(),
        }
    }

    fn unmet(r: &Requirements, n: &NodeFacts) -> String {
        r.check(n).expect_err("not met").to_string()
    }

    #[test]
    fn versions_are_read_as_nodes_spell_them() {
        for (text, v) in [
            ("v1.37.2", (1, 37, 2)),
            ("v1.34.4", (1, 34, 4)),
            ("1.6.20~ds1", (1, 6, 20)),
            ("2.1.9+ds1", (2, 1, 9)),
            ("v1.30.0+k3s1", (1, 30, 0)),
            ("2.0.0-rc.1", (2, 0, 0)),
            ("v1.31.0-rc.1", (1, 31, 0)),
            ("6.18.0-1-amd64", (6, 18, 0)),
            ("6.18.44-fc-v669", (6, 18, 44)),
            ("5.15.0-1057-azure", (5, 15, 0)),
            ("6.1", (6, 1, 0)),
            ("4.19.0+", (4, 19, 0)),
            ("1.2.3.4", (1, 2, 3)),
        ] {
            assert_eq!(
                lenient_version(text),
                Some(Version::new(v.0, v.1, v.2)),
                "{text}"
            );
        }
        for text in [
            "",
            "v",
            "unknown",
            "1..2",
            "containerd 1.6",
            "99999999999999999999",
        ] {
            assert_eq!(lenient_version(text), None, "{text}");
        }
    }

    #[test]
    fn a_containerd_range_names_what_the_node_runs() {
        let r = Requirements {
            containerd: req("<2"),
            ..requires()
        };
        assert_eq!(
            unmet(&r, &node("containerd://2.1.9")),
            r#"requires.containerd "<2" but the node runs containerd 2.1.9"#
        );
        assert_eq!(r.check(&node("containerd://1.6.20")), Ok(()));
        // Debian's containerd, with its revision.
        assert_eq!(r.check(&node("containerd://1.6.20~ds1")), Ok(()));
        let e = r.check(&node("containerd://2.1.9+ds1")).expect_err("2.x");
        assert_eq!(e.requirement, Requirement::Containerd);
        assert_eq!(e.found, Found::Runs("containerd 2.1.9+ds1".into()));
        // A release candidate of 2.0 is containerd 2.
        assert!(r.check(&node("containerd://2.0.0-rc.1")).is_err());
        let two = Requirements {
            containerd: req(">=2"),
            ..requires()
        };
        assert_eq!(two.check(&node("containerd://2.0.0-rc.1")), Ok(()));
        assert_eq!(
            unmet(&two, &node("containerd://1.6.20~ds1")),
            r#"requires.containerd ">=2" but the node runs containerd 1.6.20~ds1"#
        );
    }

    #[test]
    fn a_containerd_range_is_not_met_by_another_runtime() {
        let r = Requirements {
            runtimes: vec![Runtime::Containerd, Runtime::Docker],
            containerd: req(">=1.6"),
            ..requires()
        };
        assert_eq!(
            unmet(&r, &node("docker://20.10.24")),
            r#"requires.containerd ">=1.6" but the node runs docker 20.10.24"#
        );
    }

    #[test]
    fn the_runtime_list_names_both_sides() {
        let docker_only = Requirements {
            runtimes: vec![Runtime::Docker],
            ..requires()
        };
        assert_eq!(
            unmet(&docker_only, &node("containerd://2.1.9")),
            "requires.runtime [docker] but the node runs containerd 2.1.9"
        );
        let both = Requirements {
            runtimes: vec![Runtime::Containerd, Runtime::Docker],
            ..requires()
        };
        assert_eq!(both.check(&node("containerd://1.6.20")), Ok(()));
        assert_eq!(both.check(&node("docker://20.10.24")), Ok(()));
        assert_eq!(
            unmet(&both, &node("cri-o://1.30.4")),
            "requires.runtime [containerd, docker] but the node runs cri-o 1.30.4"
        );
        let e = both.check(&node("")).expect_err("no runtime");
        assert!(
            matches!(
                e.found,
                Found::Unreadable {
                    what: "container runtime",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn kubernetes_and_kernel_ranges() {
        let r = Requirements {
            kubernetes: req(">=1.30"),
            kernel: req(">=3.18"),
            ..requires()
        };
        assert_eq!(r.check(&node("containerd://2.1.9")), Ok(()));
        let old = NodeFacts {
            kubelet: "v1.29.6".into(),
            ..node("containerd://1.6.20")
        };
        assert_eq!(
            unmet(&r, &old),
            r#"requires.kubernetes ">=1.30" but the node runs Kubernetes v1.29.6"#
        );
        let rc = NodeFacts {
            kubelet: "v1.30.0-rc.2+k3s1".into(),
            ..node("containerd://1.6.20")
        };
        assert_eq!(r.check(&rc), Ok(()));
        let old_kernel = Requirements {
            kernel: req("<3.18"),
            ..requires()
        };
        let debian = NodeFacts {
            kernel: "6.18.0-1-amd64".into(),
            ..node("containerd://2.1.9")
        };
        assert_eq!(
            unmet(&old_kernel, &debian),
            r#"requires.kernel "<3.18" but the node runs kernel 6.18.0-1-amd64"#
        );
        let e = r
            .check(&NodeFacts {
                kernel: "unknown".into(),
                ..node("containerd://2.1.9")
            })
            .expect_err("unreadable");
        assert_eq!(
            e.to_string(),
            "requires.kernel \">=3.18\" but the node reports its kernel version as `unknown`, \
             which holds no version number"
        );
    }

    #[test]
    fn the_first_unmet_field_in_file_order_is_named() {
        let r = Requirements {
            runtimes: vec![Runtime::Docker],
            kubernetes: req(">=9"),
            containerd: req("<1"),
            kernel: req("<1"),
            ..requires()
        };
        let e = r.check(&node("containerd://2.1.9")).expect_err("unmet");
        assert_eq!(e.requirement, Requirement::Runtime);
        let r = Requirements {
            runtimes: vec![Runtime::Containerd],
            ..r
        };
        let e = r.check(&node("containerd://2.1.9")).expect_err("unmet");
        assert_eq!(e.requirement, Requirement::Kubernetes);
        // No requirement beyond the runtime: any node on it will do.
        assert_eq!(requires().check(&node("containerd://0.0.1")), Ok(()));
    }

    #[test]
    fn node_text_is_excerpted_and_escaped() {
        let r = Requirements {
            containerd: req("<2"),
            ..requires()
        };
        let hostile = format!("containerd://2.0.0\x1b[31m{}", "x".repeat(500));
        let text = unmet(&r, &node(&hostile));
        assert!(!text.contains('\x1b') && text.len() < 200, "{text}");
    }

    #[test]
    fn a_scenario_file_says_containerd_as_it_says_kubernetes() {
        let source = include_str!("../../../scenarios/runtime-desync.yaml").replace(
            "  kubernetes: \">=1.30\"\n",
            "  kubernetes: \">=1.30\"\n  containerd: \"<2\"\n",
        );
        let s = super::super::parse(std::path::Path::new("s.yaml"), &source).expect("valid");
        assert_eq!(s.requires.containerd, req("<2"));
        assert_eq!(
            s.requires
                .check(&node("containerd://2.1.9"))
                .expect_err("2.x")
                .to_string(),
            r#"requires.containerd "<2" but the node runs containerd 2.1.9"#
        );
        let bad = source.replace("containerd: \"<2\"", "containerd: \"two\"");
        let e = super::super::parse(std::path::Path::new("s.yaml"), &bad)
            .expect_err("not a range")
            .to_string();
        assert!(e.contains("field `requires.containerd`"), "{e}");
        let number = source.replace("containerd: \"<2\"", "containerd: 2");
        let e = super::super::parse(std::path::Path::new("s.yaml"), &number)
            .expect_err("not a string")
            .to_string();
        assert!(
            e.contains("field `requires.containerd`") && e.contains("not a string"),
            "{e}"
        );
    }
}
