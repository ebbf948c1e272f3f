//! Stage one: the scenario file as written. No meaning is checked here beyond shape;
//! every struct refuses unknown fields so a typo is an error, not a silent default.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawScenario {
    pub id: String,
    pub cause: String,
    pub title: String,
    pub fidelity: RawFidelity,
    pub requires: RawRequires,
    pub workload: RawWorkload,
    pub fault: RawFault,
    pub observe: RawObserve,
    pub remedy: RawRemedy,
    pub deadlines: RawDeadlines,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFidelity {
    pub level: String,
    pub note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRequires {
    pub runtime: Vec<String>,
    pub kubernetes: Option<String>,
    pub kernel: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWorkload {
    pub kind: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub volume: Option<RawVolume>,
    pub grace_period: Option<String>,
    #[serde(default)]
    pub finalizers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVolume {
    pub kind: String,
    pub mount_path: String,
}

/// `params` stays a map here: which keys are allowed depends on `kind`, and stage two
/// checks them with a typed struct per kind (again refusing unknown keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFault {
    pub kind: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawObserve {
    pub pod: String,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRemedy {
    pub action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDeadlines {
    pub ready: String,
    pub fault: String,
    pub stuck: String,
    pub detect: String,
    pub clear: String,
    pub recover: String,
}
