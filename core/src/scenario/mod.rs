//! Scenario files: `scenarios/*.yaml`, one reproduction each.
//!
//! Parsing has two stages, as ripgrep does with its flags: [`raw`] mirrors the file
//! (every field, `deny_unknown_fields`, strings where the file has strings) and
//! [`plan`] validates it into a [`Scenario`] that the rest of terminus trusts. Every
//! error, from either stage, names the file, line, column and field.

mod error;
mod locate;
mod plan;
mod raw;
mod read;

pub use error::{ScenarioError, EXCERPT_CHARS};
pub use plan::{
    load_dir, load_file, parse, Deadlines, DesyncHow, FaultSpec, Fidelity, FidelityLevel, FillMode,
    FreezeTarget, HoldVia, ImmutableLocation, KubeletStop, NodeUse, Observe, PodOutcome, Remedy,
    Requirements, Runtime, Scenario, Volume, Workload, WorkloadKind,
};
pub use read::MAX_FILE_BYTES;
