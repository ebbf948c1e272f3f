//! The drill's state file: what cleanup and `answer` need, written before anything is
//! created and again as soon as the fault's record exists.
//!
//! Architecture invariant: the file is replaced atomically (write, then rename), so a
//! killed process leaves either the old state or the new one, never half of either.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cause::CauseId;
use crate::cluster;
use crate::fault::Applied;

/// What cleanup and `answer` need, written before anything is created.
#[derive(Debug, Serialize, Deserialize)]
pub struct DrillState {
    pub cluster: String,
    pub scenario: String,
    pub cause: CauseId,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    /// The agent ledger the node fault is recorded under (none for a finalizer).
    pub ledger: Option<String>,
    /// The finalizer that holds the pod (finalizer drills).
    pub finalizer: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The fault's own record, saved as soon as `apply` returns it: cleanup undoes
    /// exactly this. Absent while apply runs (or in a state file of an older terminus);
    /// then cleanup works from `ledger` / `finalizer`, which were saved before acting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
}

impl DrillState {
    /// A copy without the fault record (which owns no clonable handle): the page, the
    /// answer and the induce phase work on copies; the record lives in the state file.
    pub(super) fn without_record(&self) -> DrillState {
        DrillState {
            cluster: self.cluster.clone(),
            scenario: self.scenario.clone(),
            cause: self.cause,
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            node: self.node.clone(),
            ledger: self.ledger.clone(),
            finalizer: self.finalizer.clone(),
            started_at: self.started_at,
            deleted_at: self.deleted_at,
            applied: None,
        }
    }
}

/// `$TERMINUS_DRILL_STATE`, else `<state dir>/drills/current.json`.
pub fn state_path() -> PathBuf {
    std::env::var_os("TERMINUS_DRILL_STATE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || cluster::state_dir().join("drills").join("current.json"),
            PathBuf::from,
        )
}

pub(super) fn save(state: &DrillState) -> Result<(), String> {
    let path = state_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, text + "\n").map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))
}

pub(super) fn load() -> Result<Option<DrillState>, String> {
    let path = state_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{} is not a drill state file: {e}; remove it by hand",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// The page: nothing but the symptom.
pub fn page(state: &DrillState, now: chrono::DateTime<chrono::Utc>) -> String {
    let since = state.deleted_at.unwrap_or(state.started_at);
    let secs = (now - since).num_seconds().max(0);
    let how_long = if secs < 120 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", secs / 60)
    };
    format!(
        "PAGE: pod {} in namespace {} has been Terminating for {how_long}",
        state.pod, state.namespace
    )
}
