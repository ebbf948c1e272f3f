//! Scenario files: `scenarios/*.yaml`, one reproduction each.
//!
//! Parsing has two stages, as ripgrep does with its flags: [`raw`] mirrors the file
//! (every field, `deny_unknown_fields`, strings where the file has strings) and
//! [`plan`] validates it into a [`Scenario`] that the rest of terminus trusts. Every
//! error, from either stage, names the file, line, column and field. [`requires`]
//! checks a scenario's `requires` against what a node reports ([`Requirements::check`]).

mod error;
mod facts;
mod locate;
mod plan;
mod raw;
mod read;
mod requires;

pub use error::{ScenarioError, EXCERPT_CHARS};
pub use plan::{
    check_file, load_dir, load_file, parse, CgroupHold, Deadlines, DesyncHow, FaultSpec, Fidelity,
    FidelityLevel, FillMode, FreezeTarget, HoldVia, ImmutableLocation, KubeletStop, NodeUse,
    Observe, PartitionFrom, PodOutcome, Remedy, Requirements, Runtime, Scenario, Volume, Workload,
    WorkloadKind,
};
pub use read::MAX_FILE_BYTES;
pub use requires::{lenient_version, Found, NodeFacts, Requirement, Unmet};
