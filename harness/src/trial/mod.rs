//! Scenario trials on a kind cluster: deploy, induce, see the pod stuck, detect,
//! remedy, verify the node is clean — with the fault's recover on every path.

mod clean;
mod flow;
mod remedy;
mod run;

pub use flow::{run_trial, TrialEnv, TrialRecord};
pub use run::{Run, Timeline};
