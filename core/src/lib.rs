//! terminus-core: the pure model of terminus.
//!
//! Cause ids ([`cause`]), scenario files ([`scenario`]), evidence bundles and their
//! parsers ([`evidence`]), the detector ([`detect`]), its reports ([`report`]),
//! detectors' answers ([`answer`]) and scorecards ([`scorecard`]).
//!
//! Architecture invariant: this crate has no async runtime, no cluster or Docker
//! client and starts no process; `cargo tree -p terminus-core -e normal` shows it.
//! The only IO is reading the files of a scenario or a bundle it is pointed at
//! (`Scenario::load`, `Evidence::load`). The harness and the agent depend on it, never
//! the other way round.

pub mod answer;
pub mod cause;
pub mod detect;
pub mod evidence;
pub mod ledger;
pub mod report;
pub mod scenario;
pub mod scorecard;
pub mod text;
pub mod units;

pub use cause::CauseId;

/// The image scenario workloads run unless they name another. Imported offline by
/// `ci/bootstrap` (a `docker import` of Debian's busybox-static) and loaded into kind
/// nodes; no registry is involved.
pub const DEFAULT_WORKLOAD_IMAGE: &str = "terminus/busybox:latest";

/// The taint key that tells Kubernetes a node is gone for good (GA in 1.28): its pods
/// are force-deleted and their volumes detached. node-lost's remedy sets it; the harness
/// lifts it when the trial's node comes back.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
