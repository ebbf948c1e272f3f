//! terminus: reproduce, detect and remedy Kubernetes pods stuck in `Terminating`.
//!
//! The crate is split along one line: [`detect`] is pure (evidence in, diagnoses out)
//! and everything that touches a process, a file or a cluster lives at the edges
//! ([`evidence`] reads bundles; cluster and node probes feed the same [`evidence::Evidence`]).
//! ARCHITECTURE.md at the repository root has the map.

pub mod cause;
pub mod cluster;
pub mod corpus;
pub mod detect;
pub mod detectors;
pub mod drill;
pub mod evidence;
pub mod fault;
pub mod gc;
pub mod live;
pub mod node;
pub mod probe;
pub mod report;
pub mod sandbox;
pub mod scenario;
pub mod scorecard;
pub mod suite;
pub mod trial;
pub mod wait;
pub mod workload;

pub use cause::CauseId;

/// The image scenario workloads run unless they name another. Built offline
/// (`images/busybox`) and loaded into kind nodes; no registry is involved.
pub const DEFAULT_WORKLOAD_IMAGE: &str = "terminus/busybox:latest";
