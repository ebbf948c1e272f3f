//! The documented causes of a pod stuck in `Terminating`, with their stable ids.
//!
//! The ids are part of terminus's public contract: scenario files, `--json` output and
//! external detectors all speak them, so a variant is never renamed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseId {
    DiskFull,
    ImmutableFile,
    RuntimeHang,
    Finalizer,
    KubeletMissedDelete,
    RuntimeDesync,
    DaemonsetHashChurn,
    MountHeld,
    VolumeTeardown,
    NetworkTeardown,
    CgroupBusy,
    AdmissionBlocked,
    NodeLost,
}

impl CauseId {
    pub const ALL: [CauseId; 13] = [
        CauseId::DiskFull,
        CauseId::ImmutableFile,
        CauseId::RuntimeHang,
        CauseId::Finalizer,
        CauseId::KubeletMissedDelete,
        CauseId::RuntimeDesync,
        CauseId::DaemonsetHashChurn,
        CauseId::MountHeld,
        CauseId::VolumeTeardown,
        CauseId::NetworkTeardown,
        CauseId::CgroupBusy,
        CauseId::AdmissionBlocked,
        CauseId::NodeLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CauseId::DiskFull => "disk-full",
            CauseId::ImmutableFile => "immutable-file",
            CauseId::RuntimeHang => "runtime-hang",
            CauseId::Finalizer => "finalizer",
            CauseId::KubeletMissedDelete => "kubelet-missed-delete",
            CauseId::RuntimeDesync => "runtime-desync",
            CauseId::DaemonsetHashChurn => "daemonset-hash-churn",
            CauseId::MountHeld => "mount-held",
            CauseId::VolumeTeardown => "volume-teardown",
            CauseId::NetworkTeardown => "network-teardown",
            CauseId::CgroupBusy => "cgroup-busy",
            CauseId::AdmissionBlocked => "admission-blocked",
            CauseId::NodeLost => "node-lost",
        }
    }

    /// One line a person paged at 3 a.m. understands.
    pub fn title(self) -> &'static str {
        match self {
            CauseId::DiskFull => "the disk holding the runtime's data is full",
            CauseId::ImmutableFile => {
                "a file with the immutable attribute (chattr +i) blocks removal"
            }
            CauseId::RuntimeHang => "the container runtime stopped answering",
            CauseId::Finalizer => "a finalizer nobody removes holds the pod object",
            CauseId::KubeletMissedDelete => "kubelet never acted on the deletion",
            CauseId::RuntimeDesync => "the runtime's layers disagree about the container",
            CauseId::DaemonsetHashChurn => {
                "a DaemonSet's pods are endlessly replaced (revision hash churn)"
            }
            CauseId::MountHeld => "another process holds the container's rootfs mount",
            CauseId::VolumeTeardown => {
                "one of the pod's volumes cannot be unmounted (busy, or its driver fails)"
            }
            CauseId::NetworkTeardown => {
                "the CNI plugin fails to delete the pod's network, so its sandbox cannot stop"
            }
            CauseId::CgroupBusy => {
                "a process still lives in the pod's cgroup (frozen or unkillable), so kubelet cannot remove it"
            }
            CauseId::AdmissionBlocked => {
                "admission rejects the controller's removal of its finalizer, so the pod object stays"
            }
            CauseId::NodeLost => {
                "the pod's node stopped posting status (down, partitioned, or its kubelet cut off)"
            }
        }
    }
}

impl fmt::Display for CauseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug)]
pub struct UnknownCause(pub String);

impl fmt::Display for UnknownCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = CauseId::ALL.iter().map(|c| c.as_str()).collect();
        write!(
            f,
            "unknown cause id `{}`; known ids: {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownCause {}

impl FromStr for CauseId {
    type Err = UnknownCause;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CauseId::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCause(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_str_and_serde() {
        for cause in CauseId::ALL {
            assert_eq!(cause.as_str().parse::<CauseId>().ok(), Some(cause));
            let json = serde_json::to_string(&cause).expect("serialize");
            assert_eq!(json, format!("\"{}\"", cause.as_str()));
        }
        assert!("disk_full".parse::<CauseId>().is_err());
    }
}
