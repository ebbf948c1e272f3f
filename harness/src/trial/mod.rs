//! Scenario trials on a kind cluster: deploy, induce, see the pod stuck, detect,
//! remedy, verify the node is clean — with the fault's recover on every path.

mod clean;
pub mod crowd;
mod flow;
pub mod kill;
mod outcome;
pub mod pool;
mod remedy;
mod run;
pub mod stage;

pub use crowd::{Crowd, Member, Neighbour};
pub use flow::{run_crowd_trial, run_trial, TrialEnv, TrialRecord};
pub use outcome::{HarnessError, Outcome, TrialResult};
pub use pool::{Lease, WorkerPool};
pub use run::{Run, Timeline};
