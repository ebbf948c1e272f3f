//! Scenario trials on a kind cluster: deploy, induce, see the pod stuck, detect,
//! remedy, verify the node is clean — with the fault's recover on every path.

mod clean;
mod flow;
mod remedy;
mod run;

pub(crate) use flow::delete_namespace;
pub use flow::{run_trial, TrialEnv, TrialRecord};
pub use remedy::{actions as remedy_actions, run_commands as run_remedy_commands, shell_words};
pub use run::{Run, Timeline};
