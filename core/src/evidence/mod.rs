//! Evidence: what probes saw, as values the pure detector reads.
//!
//! An evidence bundle is a directory of raw tool output with fixed file names
//! (`docs/bundles.md`). Loading one never fails: a missing file is "unknown", an
//! unreadable or unparseable one is recorded as such, and the detector says which
//! evidence it lacked.

mod bundle;
mod parse;
pub mod read;

pub use bundle::{Evidence, InputProblem, SourceStatus, BUNDLE_FILES};
pub use parse::{
    pod_cgroup_dir, pod_cgroups, CgroupFile, CgroupLine, ContainerFacts, ContainerRole,
    ContainerState, CrictlRow, CtrTask, DfRow, DockerPsRow, EventFact, LsattrEntry, MountinfoEntry,
    NodeFacts, ObjectRef, OwnerFacts, ParseError, PodFacts, ProcRef, PsEntry, Quote, RevisionFact,
};
