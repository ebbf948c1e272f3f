//! terminus: reproduce, detect and remedy Kubernetes pods stuck in `Terminating`.
//!
//! The crate is split along one line: [`detect`] is pure (evidence in, diagnoses out)
//! and everything that touches a process, a file or a cluster lives at the edges
//! ([`evidence`] reads bundles; cluster and node probes feed the same [`evidence::Evidence`]).
//! ARCHITECTURE.md at the repository root has the map.

pub mod cell;
pub mod cluster;
pub mod corpus;
pub mod detectors;
pub mod drill;
pub mod fault;
pub mod gc;
pub mod live;
pub mod logging;
pub mod matrix;
pub mod namespace;
pub mod node;
pub mod pods;
pub mod probe;
pub mod remedy;
pub mod sandbox;
pub mod suite;
pub mod trial;
pub mod wait;
pub mod workload;

// The pure model lives in terminus-core; these re-exports keep one path per item for
// the harness's own modules and for users of the library.
pub use terminus_core::{
    answer, cause, detect, evidence, report, scenario, scorecard, CauseId, DEFAULT_WORKLOAD_IMAGE,
};
