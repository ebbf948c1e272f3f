//! Stage two: a validated scenario. Everything here has been checked against the
//! file, so trials and the CLI never re-validate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use semver::VersionReq;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{excerpt, ScenarioError};
use super::locate::locate;
use super::raw::{
    RawDeadlines, RawFault, RawFidelity, RawObserve, RawRemedy, RawRequires, RawScenario,
    RawVolume, RawWorkload, Text, Unique,
};
use super::read::{read_source, scenario_paths};
use crate::cause::CauseId;
use crate::units::parse_size;

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub file: PathBuf,
    pub id: String,
    pub cause: CauseId,
    pub title: String,
    pub fidelity: Fidelity,
    pub requires: Requirements,
    pub workload: Workload,
    pub fault: FaultSpec,
    pub observe: Observe,
    pub remedy: Remedy,
    pub deadlines: Deadlines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FidelityLevel {
    /// The mechanism the handbook describes, on today's software.
    Original,
    /// Today's software cannot fail the old way; the nearest real failure is induced.
    NearestEquivalent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fidelity {
    pub level: FidelityLevel,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    Docker,
}

impl Runtime {
    /// As scenario files and `containerRuntimeVersion` (`containerd://…`) spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeUse {
    /// Runs beside other trials on a shared worker.
    Shared,
    /// Disrupts a whole node (runtime, kubelet, disk): gets a worker of its own.
    Dedicated,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Requirements {
    pub runtimes: Vec<Runtime>,
    pub kubernetes: Option<VersionReq>,
    /// The node's containerd (its CRI runtime version); a node on another runtime does
    /// not meet it.
    pub containerd: Option<VersionReq>,
    pub kernel: Option<VersionReq>,
    pub node: NodeUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Pod,
    DaemonSet,
    /// A Job of one pod (`backoffLimit: 0`): its controller puts the
    /// `batch.kubernetes.io/job-tracking` finalizer on the pod and removes it once the pod
    /// is counted.
    Job,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    EmptyDir,
    HostPath,
    /// An emptyDir with `medium: Memory`: a tmpfs kubelet mounts, and must unmount
    /// before the pod can go.
    Memory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub image: String,
    pub command: Vec<String>,
    pub volume: Option<(Volume, String)>,
    pub grace_period: Duration,
    pub finalizers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImmutableLocation {
    /// A file in the pod's volume: kubelet's teardown of the volume fails.
    Volume,
    /// A file in the container's rootfs (the handbook's case).
    Rootfs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeTarget {
    Containerd,
    Shim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletStop {
    Stop,
    Freeze,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesyncHow {
    /// The container exits while the CRI's state dir is full, so the CRI cannot record
    /// the exit; the space is freed afterwards and the split view outlives the episode.
    LostExit,
    /// Delete the task behind the CRI's back. On containerd 1.6 the CRI still records the
    /// exit, so applying it fails with that explanation (kept for other runtimes).
    DeleteTask,
}

/// How the stray process in the pod's cgroup resists kubelet's removal of the cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupHold {
    /// In a frozen child cgroup (the freezer): kubelet's SIGKILL waits for a thaw.
    Frozen,
}

// The agent's own enums: a scenario's `via` and `mode` are what the agent is told.
pub use crate::ledger::{FillMode, Via as HoldVia};

/// The fault and its parameters; one variant per `fault.kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultSpec {
    FillDisk {
        size_bytes: u64,
        mode: FillMode,
    },
    ImmutableFile {
        location: ImmutableLocation,
        path: String,
    },
    FreezeRuntime {
        target: FreezeTarget,
    },
    Finalizer {
        name: String,
    },
    StopKubelet {
        how: KubeletStop,
    },
    DesyncRuntime {
        how: DesyncHow,
    },
    AffinityChurn {
        interval: Duration,
    },
    HoldMount {
        via: HoldVia,
    },
    /// A process in the node's own mount namespace (kubelet's) keeps the pod's
    /// memory-backed volume busy, so kubelet's unmount fails.
    HoldVolume {
        via: HoldVia,
    },
    /// The node's CNI plugin `plugin` is moved aside in /opt/cni/bin, so the runtime's
    /// CNI DEL fails when it stops the pod's sandbox.
    BreakCni {
        plugin: String,
    },
    /// A process of terminus's lives in a child cgroup of the pod's cgroup and resists
    /// kubelet (`how`), so kubelet cannot remove the pod's cgroup.
    BusyCgroup {
        how: CgroupHold,
    },
    /// A ValidatingAdmissionPolicy (and its binding) in the trial's namespace that denies
    /// any pod update removing `finalizer`, so the controller that owns it cannot.
    DenyFinalizerRemoval {
        finalizer: String,
    },
    /// The node's packets to the API server are dropped (iptables in the node), so its
    /// kubelet stops posting status and never hears of the deletion.
    PartitionNode {
        from: PartitionFrom,
    },
}

/// What a partitioned node is cut off from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionFrom {
    /// The API server's address and port (the control plane's InternalIP, 6443).
    ApiServer,
}

/// The Job controller's finalizer on the pods it tracks.
pub const JOB_TRACKING: &str = "batch.kubernetes.io/job-tracking";

/// Every `fault.kind` a scenario may name, for the error that lists them.
pub const FAULT_KINDS: [&str; 13] = [
    "fill-disk",
    "immutable-file",
    "freeze-runtime",
    "finalizer",
    "stop-kubelet",
    "desync-runtime",
    "affinity-churn",
    "hold-mount",
    "hold-volume",
    "break-cni",
    "busy-cgroup",
    "deny-finalizer-removal",
    "partition-node",
];

impl FaultSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            FaultSpec::FillDisk { .. } => "fill-disk",
            FaultSpec::ImmutableFile { .. } => "immutable-file",
            FaultSpec::FreezeRuntime { .. } => "freeze-runtime",
            FaultSpec::Finalizer { .. } => "finalizer",
            FaultSpec::StopKubelet { .. } => "stop-kubelet",
            FaultSpec::DesyncRuntime { .. } => "desync-runtime",
            FaultSpec::AffinityChurn { .. } => "affinity-churn",
            FaultSpec::HoldMount { .. } => "hold-mount",
            FaultSpec::HoldVolume { .. } => "hold-volume",
            FaultSpec::BreakCni { .. } => "break-cni",
            FaultSpec::BusyCgroup { .. } => "busy-cgroup",
            FaultSpec::DenyFinalizerRemoval { .. } => "deny-finalizer-removal",
            FaultSpec::PartitionNode { .. } => "partition-node",
        }
    }

    /// The cause a fault of this kind induces.
    pub fn induces(&self) -> CauseId {
        match self {
            FaultSpec::FillDisk { .. } => CauseId::DiskFull,
            FaultSpec::ImmutableFile { .. } => CauseId::ImmutableFile,
            FaultSpec::FreezeRuntime { .. } => CauseId::RuntimeHang,
            FaultSpec::Finalizer { .. } => CauseId::Finalizer,
            FaultSpec::StopKubelet { .. } => CauseId::KubeletMissedDelete,
            FaultSpec::DesyncRuntime { .. } => CauseId::RuntimeDesync,
            FaultSpec::AffinityChurn { .. } => CauseId::DaemonsetHashChurn,
            FaultSpec::HoldMount { .. } => CauseId::MountHeld,
            FaultSpec::HoldVolume { .. } => CauseId::VolumeTeardown,
            FaultSpec::BreakCni { .. } => CauseId::NetworkTeardown,
            FaultSpec::BusyCgroup { .. } => CauseId::CgroupBusy,
            FaultSpec::DenyFinalizerRemoval { .. } => CauseId::AdmissionBlocked,
            FaultSpec::PartitionNode { .. } => CauseId::NodeLost,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOutcome {
    /// The pod object must stay Terminating for at least `hold`.
    StaysTerminating,
    /// The pod goes away, but the node is left unclean (the immutable-rootfs variant).
    GoesAway,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observe {
    pub pod: PodOutcome,
    pub hold: Duration,
    /// True when the scenario expects the node to be left unclean until the remedy.
    pub node_left_unclean: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    FreeDisk,
    ClearImmutableFlag,
    ThawRuntime,
    RemoveFinalizers,
    RestartKubelet,
    RestartRuntime,
    UseNodeSelector,
    KillMountHolder,
    KillVolumeHolder,
    RestoreCniPlugin,
    ThawCgroup,
    UnblockAdmission,
    MarkOutOfService,
}

impl Remedy {
    const ALL: [(&'static str, Remedy, CauseId); 13] = [
        ("free-disk", Remedy::FreeDisk, CauseId::DiskFull),
        (
            "clear-immutable-flag",
            Remedy::ClearImmutableFlag,
            CauseId::ImmutableFile,
        ),
        ("thaw-runtime", Remedy::ThawRuntime, CauseId::RuntimeHang),
        (
            "remove-finalizers",
            Remedy::RemoveFinalizers,
            CauseId::Finalizer,
        ),
        (
            "restart-kubelet",
            Remedy::RestartKubelet,
            CauseId::KubeletMissedDelete,
        ),
        (
            "restart-runtime",
            Remedy::RestartRuntime,
            CauseId::RuntimeDesync,
        ),
        (
            "use-node-selector",
            Remedy::UseNodeSelector,
            CauseId::DaemonsetHashChurn,
        ),
        (
            "kill-mount-holder",
            Remedy::KillMountHolder,
            CauseId::MountHeld,
        ),
        (
            "kill-volume-holder",
            Remedy::KillVolumeHolder,
            CauseId::VolumeTeardown,
        ),
        (
            "restore-cni-plugin",
            Remedy::RestoreCniPlugin,
            CauseId::NetworkTeardown,
        ),
        ("thaw-cgroup", Remedy::ThawCgroup, CauseId::CgroupBusy),
        (
            "unblock-admission",
            Remedy::UnblockAdmission,
            CauseId::AdmissionBlocked,
        ),
        (
            "mark-out-of-service",
            Remedy::MarkOutOfService,
            CauseId::NodeLost,
        ),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r, _)| *r == self)
            .map(|(s, _, _)| *s)
            .unwrap_or("?")
    }

    /// The cause this remedy clears; a scenario's remedy must match its cause.
    pub fn clears(self) -> CauseId {
        Self::ALL
            .iter()
            .find(|(_, r, _)| *r == self)
            .map(|(_, _, c)| *c)
            .unwrap_or(CauseId::Finalizer)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    /// Workload deployed and Running.
    pub ready: Duration,
    /// Fault applied.
    pub fault: Duration,
    /// Pod seen Terminating after the delete.
    pub stuck: Duration,
    /// Evidence gathered and diagnosed.
    pub detect: Duration,
    /// Pod gone and node clean after the remedy.
    pub clear: Duration,
    /// Fault recovered on the way out.
    pub recover: Duration,
}

/// The longest id: ids become label values and namespace names (63 characters).
pub const MAX_ID_CHARS: usize = 63;
/// The longest title: one line of a listing.
pub const MAX_TITLE_CHARS: usize = 200;

/// Loads every `*.yaml` in `dir`, sorted by file name. Zero files is an error: a
/// scenario directory that silently runs nothing hides a broken checkout. Each entry is
/// read by [`read_source`]: regular files only, at most [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES), and no symlink
/// out of `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let bounded = |errors: Vec<ScenarioError>| -> Vec<ScenarioError> {
        errors.into_iter().map(ScenarioError::bounded).collect()
    };
    let (files, mut errors) = scenario_paths(dir).map_err(|e| bounded(vec![e]))?;
    if files.is_empty() && errors.is_empty() {
        return Err(vec![ScenarioError {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: "no scenario files (*.yaml) found".into(),
        }]);
    }
    let mut scenarios = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for file in files {
        match read_source(&file, Some(dir))
            .and_then(|source| parse_source(&file, &source).map(|s| (s, source)))
        {
            Ok((s, source)) => {
                if let Some(first) = seen.insert(s.id.clone(), s.file.clone()) {
                    let (line, column) = locate(&source, &["id"]);
                    errors.push(ScenarioError {
                        file: s.file.clone(),
                        line,
                        column,
                        field: "id".into(),
                        message: format!(
                            "id `{}` is also used by {}",
                            excerpt(&s.id),
                            first.display()
                        ),
                    });
                }
                scenarios.push(s);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(bounded(errors))
    }
}

/// Loads one file the user named. Symlinks are followed, but the target must be a
/// regular file of at most [`MAX_FILE_BYTES`](super::MAX_FILE_BYTES).
pub fn load_file(file: &Path) -> Result<Scenario, ScenarioError> {
    let source = read_source(file, None).map_err(ScenarioError::bounded)?;
    parse(file, &source)
}

/// Loads one file like [`load_file`], with the warnings of `scenarios check`: outcomes
/// its fault cannot give on the kernels it admits (`facts.rs`).
pub fn check_file(file: &Path) -> Result<(Scenario, Vec<ScenarioError>), ScenarioError> {
    let source = read_source(file, None).map_err(ScenarioError::bounded)?;
    let scenario = parse(file, &source)?;
    let warnings = super::facts::warnings(&scenario, &source)
        .into_iter()
        .map(ScenarioError::bounded)
        .collect();
    Ok((scenario, warnings))
}

/// Parses and validates one scenario. `file` is only used to name the file in errors.
pub fn parse(file: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    parse_source(file, source).map_err(ScenarioError::bounded)
}

fn parse_source(file: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    // Stage zero: no key repeats anywhere; then the typed shape.
    serde_yaml_ng::from_str::<Unique>(source).map_err(|e| yaml_error(file, source, &e))?;
    let raw: RawScenario =
        serde_yaml_ng::from_str(source).map_err(|e| yaml_error(file, source, &e))?;
    Validator { file, source }.scenario(raw)
}

/// Turns serde_yaml's message (`fault: unknown field `x`, expected ... at line 3 column 5`)
/// into our shape: the path prefix becomes the field, the position the line and column.
fn yaml_error(file: &Path, source: &str, e: &serde_yaml_ng::Error) -> ScenarioError {
    let text = e.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    };
    let (mut field, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
        _ => (String::new(), text.clone()),
    };
    for marker in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(start) = message.find(marker) {
            let name = &message[start + marker.len()..];
            if let Some(end) = name.find('`') {
                let name = &name[..end];
                field = if field.is_empty() {
                    name.to_owned()
                } else {
                    format!("{field}.{name}")
                };
            }
        }
    }
    let (line, column) = match e.location() {
        Some(loc) => (loc.line(), loc.column()),
        None if blank(source) => (0, 0),
        None => {
            let path: Vec<&str> = field.split('.').filter(|s| !s.is_empty()).collect();
            locate(source, &path)
        }
    };
    if blank(source) {
        return ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: "the file is empty".into(),
        };
    }
    ScenarioError {
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

/// Nothing but whitespace and comments.
fn blank(source: &str) -> bool {
    source
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

struct Validator<'a> {
    file: &'a Path,
    source: &'a str,
}

impl Validator<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ScenarioError {
        let path: Vec<&str> = field.split('.').collect();
        let (line, column) = locate(self.source, &path);
        ScenarioError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn duration(&self, field: &str, text: &str) -> Result<Duration, ScenarioError> {
        humantime::parse_duration(text).map_err(|e| {
            self.err(
                field,
                format!(
                    "`{}` is not a duration ({e}); write e.g. `30s` or `2m`",
                    excerpt(text)
                ),
            )
        })
    }

    fn choice<T: Copy>(
        &self,
        field: &str,
        text: &str,
        options: &[(&str, T)],
    ) -> Result<T, ScenarioError> {
        options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(
                    field,
                    format!("`{}` is not one of: {}", excerpt(text), names.join(", ")),
                )
            })
    }

    fn version_req(
        &self,
        field: &str,
        text: &Option<Text>,
    ) -> Result<Option<VersionReq>, ScenarioError> {
        text.as_deref()
            .map(|t| {
                VersionReq::parse(t).map_err(|e| {
                    self.err(
                        field,
                        format!(
                            "`{}` is not a version range ({e}); write e.g. `>=1.34, <1.37`",
                            excerpt(t)
                        ),
                    )
                })
            })
            .transpose()
    }

    /// Stage two: every section in file order, so the first error is the first a reader
    /// meets.
    fn scenario(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        self.id(&raw.id)?;
        self.title(&raw.title)?;
        let cause: CauseId = raw
            .cause
            .parse()
            .map_err(|e: crate::cause::UnknownCause| self.err("cause", e.to_string()))?;
        let fidelity = self.fidelity(&raw.fidelity)?;
        let requires = self.requires(&raw.requires)?;
        let workload = self.workload(raw.workload)?;
        let fault = self.fault(&raw.fault, &workload)?;
        if fault.induces() != cause {
            return Err(self.err(
                "fault.kind",
                format!(
                    "a `{}` fault induces {}, but the scenario's cause is {}",
                    fault.kind(),
                    fault.induces(),
                    cause
                ),
            ));
        }
        let observe = self.observe(&raw.observe, &workload)?;
        let remedy = self.remedy(&raw.remedy, cause)?;
        let deadlines = self.deadlines(&raw.deadlines, observe.hold)?;
        Ok(Scenario {
            file: self.file.to_path_buf(),
            id: raw.id.into(),
            cause,
            title: raw.title.into(),
            fidelity,
            requires,
            workload,
            fault,
            observe,
            remedy,
            deadlines,
        })
    }

    fn id(&self, id: &str) -> Result<(), ScenarioError> {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if id.is_empty()
            || !id.chars().all(|c| alnum(c) || c == '-')
            || !id.starts_with(alnum)
            || !id.ends_with(alnum)
        {
            return Err(self.err("id", format!("`{}` must be non-empty lowercase letters, digits and dashes, starting and ending with a letter or digit (it names namespaces and labels)", excerpt(id))));
        }
        if id.len() > MAX_ID_CHARS {
            return Err(self.err(
                "id",
                format!(
                    "is {} characters; an id is at most {MAX_ID_CHARS} (a Kubernetes label value)",
                    id.len()
                ),
            ));
        }
        Ok(())
    }

    fn title(&self, title: &str) -> Result<(), ScenarioError> {
        if title.trim().is_empty() || title.contains(['\n', '\r']) {
            return Err(self.err("title", "must be one non-empty line"));
        }
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(self.err(
                "title",
                format!(
                    "is {} characters; a title is at most {MAX_TITLE_CHARS}",
                    title.chars().count()
                ),
            ));
        }
        Ok(())
    }

    fn fidelity(&self, raw: &RawFidelity) -> Result<Fidelity, ScenarioError> {
        let fidelity = Fidelity {
            level: self.choice(
                "fidelity.level",
                &raw.level,
                &[
                    ("original", FidelityLevel::Original),
                    ("nearest-equivalent", FidelityLevel::NearestEquivalent),
                ],
            )?,
            note: raw.note.trim().to_owned(),
        };
        if fidelity.note.is_empty() {
            return Err(self.err(
                "fidelity.note",
                "say what is reproduced and why it is faithful (or the nearest equivalent)",
            ));
        }
        Ok(fidelity)
    }

    fn requires(&self, raw: &RawRequires) -> Result<Requirements, ScenarioError> {
        let mut runtimes = Vec::new();
        for r in &raw.runtime {
            runtimes.push(self.choice(
                "requires.runtime",
                r,
                &[
                    ("containerd", Runtime::Containerd),
                    ("docker", Runtime::Docker),
                ],
            )?);
        }
        if runtimes.is_empty() {
            return Err(self.err(
                "requires.runtime",
                "name at least one runtime (containerd, docker)",
            ));
        }
        Ok(Requirements {
            runtimes,
            kubernetes: self.version_req("requires.kubernetes", &raw.kubernetes)?,
            containerd: self.version_req("requires.containerd", &raw.containerd)?,
            kernel: self.version_req("requires.kernel", &raw.kernel)?,
            node: match raw.node.as_deref() {
                None => NodeUse::Shared,
                Some(n) => self.choice(
                    "requires.node",
                    n,
                    &[
                        ("shared", NodeUse::Shared),
                        ("dedicated", NodeUse::Dedicated),
                    ],
                )?,
            },
        })
    }

    fn workload(&self, w: RawWorkload) -> Result<Workload, ScenarioError> {
        Ok(Workload {
            kind: self.choice(
                "workload.kind",
                &w.kind,
                &[
                    ("pod", WorkloadKind::Pod),
                    ("daemonset", WorkloadKind::DaemonSet),
                    ("job", WorkloadKind::Job),
                ],
            )?,
            image: w
                .image
                .map(String::from)
                .unwrap_or_else(|| crate::DEFAULT_WORKLOAD_IMAGE.to_owned()),
            command: w
                .command
                .map(|c| c.into_iter().map(String::from).collect())
                .unwrap_or_else(|| vec!["sleep".into(), "infinity".into()]),
            volume: match w.volume {
                None => None,
                Some(v) => Some(self.volume(v)?),
            },
            grace_period: match w.grace_period {
                None => Duration::from_secs(2),
                Some(t) => self.duration("workload.grace-period", &t)?,
            },
            finalizers: w.finalizers.into_iter().map(String::from).collect(),
        })
    }

    fn volume(&self, v: RawVolume) -> Result<(Volume, String), ScenarioError> {
        let kind = self.choice(
            "workload.volume.kind",
            &v.kind,
            &[
                ("empty-dir", Volume::EmptyDir),
                ("host-path", Volume::HostPath),
                ("memory", Volume::Memory),
            ],
        )?;
        if !v.mount_path.starts_with('/') {
            return Err(self.err("workload.volume.mount-path", "must be an absolute path"));
        }
        Ok((kind, v.mount_path.into()))
    }

    fn observe(&self, raw: &RawObserve, workload: &Workload) -> Result<Observe, ScenarioError> {
        let pod = self.choice(
            "observe.pod",
            &raw.pod,
            &[
                ("stays-terminating", PodOutcome::StaysTerminating),
                ("goes-away", PodOutcome::GoesAway),
            ],
        )?;
        let hold = match (&raw.hold, pod) {
            (Some(t), _) => self.duration("observe.for", t)?,
            (None, PodOutcome::GoesAway) => Duration::ZERO,
            (None, PodOutcome::StaysTerminating) => {
                return Err(self.err(
                    "observe",
                    "missing field `for`: how long the pod must stay Terminating",
                ))
            }
        };
        let node_left_unclean = match raw.node.as_deref() {
            None => false,
            Some(n) => self.choice(
                "observe.node",
                n,
                &[("clean", false), ("left-unclean", true)],
            )?,
        };
        if hold <= workload.grace_period && pod == PodOutcome::StaysTerminating {
            return Err(self.err(
                "observe.for",
                "must be longer than the workload's grace period, or a normal deletion would pass",
            ));
        }

        Ok(Observe {
            pod,
            hold,
            node_left_unclean,
        })
    }

    fn remedy(&self, raw: &RawRemedy, cause: CauseId) -> Result<Remedy, ScenarioError> {
        let remedy = self.choice(
            "remedy.action",
            &raw.action,
            &Remedy::ALL.map(|(n, r, _)| (n, r)),
        )?;
        if remedy.clears() != cause {
            return Err(self.err(
                "remedy.action",
                format!(
                    "`{}` clears {}, not {}",
                    remedy.as_str(),
                    remedy.clears(),
                    cause
                ),
            ));
        }

        Ok(remedy)
    }

    fn deadlines(&self, d: &RawDeadlines, hold: Duration) -> Result<Deadlines, ScenarioError> {
        let deadlines = Deadlines {
            ready: self.duration("deadlines.ready", &d.ready)?,
            fault: self.duration("deadlines.fault", &d.fault)?,
            stuck: self.duration("deadlines.stuck", &d.stuck)?,
            detect: self.duration("deadlines.detect", &d.detect)?,
            clear: self.duration("deadlines.clear", &d.clear)?,
            recover: self.duration("deadlines.recover", &d.recover)?,
        };
        if deadlines.stuck < hold {
            return Err(self.err(
                "deadlines.stuck",
                "must be at least `observe.for`, the time the pod is watched while stuck",
            ));
        }

        Ok(deadlines)
    }

    fn params<T: DeserializeOwned>(&self, fault: &RawFault) -> Result<T, ScenarioError> {
        let map: serde_yaml_ng::Mapping = fault
            .params
            .iter()
            .map(|(k, v)| (serde_yaml_ng::Value::String(k.clone()), v.clone()))
            .collect();
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map)).map_err(|e| {
            let text = e.to_string();
            let field = ["unknown field `", "missing field `"]
                .iter()
                .find_map(|m| text.find(m).map(|i| &text[i + m.len()..]))
                .and_then(|rest| rest.split('`').next())
                .map(|name| format!("fault.params.{name}"))
                .unwrap_or_else(|| "fault.params".to_owned());
            self.err(
                &field,
                format!("{text} (for a `{}` fault)", excerpt(&fault.kind)),
            )
        })
    }

    fn fault(&self, fault: &RawFault, workload: &Workload) -> Result<FaultSpec, ScenarioError> {
        use fault_params::*;

        Ok(match &*fault.kind {
            "fill-disk" => {
                let p: FillDisk = self.params(fault)?;
                FaultSpec::FillDisk {
                    size_bytes: parse_size(&p.size).ok_or_else(|| {
                        self.err(
                            "fault.params.size",
                            format!(
                                "`{}` is not a size; write e.g. `64Mi` or `1Gi`",
                                excerpt(&p.size)
                            ),
                        )
                    })?,
                    mode: p.mode.unwrap_or(FillMode::Bytes),
                }
            }
            "immutable-file" => {
                let p: Immutable = self.params(fault)?;
                if p.location == ImmutableLocation::Volume && workload.volume.is_none() {
                    return Err(self.err(
                        "fault.params.location",
                        "`volume` needs a `workload.volume`",
                    ));
                }
                if p.path.is_empty()
                    || p.path.starts_with('/')
                    || p.path.split('/').any(|c| c == "..")
                {
                    return Err(self.err(
                        "fault.params.path",
                        "must be a relative path inside the volume or rootfs",
                    ));
                }
                FaultSpec::ImmutableFile {
                    location: p.location,
                    path: p.path,
                }
            }
            "freeze-runtime" => FaultSpec::FreezeRuntime {
                target: self.params::<Freeze>(fault)?.target,
            },
            "finalizer" => {
                let p: Finalizer = self.params(fault)?;
                if !p.name.contains('/') {
                    return Err(self.err(
                        "fault.params.name",
                        "a finalizer name must be domain-qualified, e.g. `terminus.dev/hold`",
                    ));
                }
                FaultSpec::Finalizer { name: p.name }
            }
            "stop-kubelet" => FaultSpec::StopKubelet {
                how: self.params::<Kubelet>(fault)?.how,
            },
            "desync-runtime" => FaultSpec::DesyncRuntime {
                how: self.params::<Desync>(fault)?.how,
            },
            "affinity-churn" => {
                let p: Churn = self.params(fault)?;
                FaultSpec::AffinityChurn {
                    interval: self.duration("fault.params.interval", &p.interval)?,
                }
            }
            "hold-mount" => FaultSpec::HoldMount {
                via: self.params::<Hold>(fault)?.via,
            },
            "hold-volume" => self.hold_volume(fault, workload)?,
            "break-cni" => self.break_cni(fault)?,
            "busy-cgroup" => FaultSpec::BusyCgroup {
                how: self.params::<BusyCgroup>(fault)?.how,
            },
            "deny-finalizer-removal" => self.deny_finalizer_removal(fault, workload)?,
            "partition-node" => FaultSpec::PartitionNode {
                from: self.params::<Partition>(fault)?.from,
            },
            other => {
                return Err(self.err(
                    "fault.kind",
                    format!(
                        "`{}` is not one of: {}",
                        excerpt(other),
                        FAULT_KINDS.join(", ")
                    ),
                ))
            }
        })
    }
    /// `hold-volume`: a memory volume to hold, and not by a bind mount.
    fn hold_volume(
        &self,
        fault: &RawFault,
        workload: &Workload,
    ) -> Result<FaultSpec, ScenarioError> {
        use fault_params::Hold;
        let via = self.params::<Hold>(fault)?.via;
        if !matches!(workload.volume, Some((Volume::Memory, _))) {
            return Err(self.err("fault.params", "`hold-volume` needs a `workload.volume` of kind `memory`: only a mounted volume has an unmount to fail"));
        }
        if via == HoldVia::Bind {
            return Err(self.err("fault.params.via", "`bind` cannot hold a volume: a second mount in the same namespace leaves the first free to unmount; use `cwd` or `fd`"));
        }
        Ok(FaultSpec::HoldVolume { via })
    }

    /// `break-cni`: the plugin is a plain file name.
    fn break_cni(&self, fault: &RawFault) -> Result<FaultSpec, ScenarioError> {
        use fault_params::BreakCni;
        let p: BreakCni = self.params(fault)?;
        // It becomes a file name in /opt/cni/bin: a plain name, no path.
        let plain = !p.plugin.is_empty()
            && p.plugin.len() <= 64
            && !p.plugin.starts_with('.')
            && p.plugin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(self.err(
                "fault.params.plugin",
                format!(
                    "`{}` is not a CNI plugin name (a file name in /opt/cni/bin, e.g. `ptp`)",
                    excerpt(&p.plugin)
                ),
            ));
        }
        Ok(FaultSpec::BreakCni { plugin: p.plugin })
    }

    /// `deny-finalizer-removal`: the Job controller's finalizer, on a Job's pod.
    fn deny_finalizer_removal(
        &self,
        fault: &RawFault,
        workload: &Workload,
    ) -> Result<FaultSpec, ScenarioError> {
        use fault_params::DenyFinalizerRemoval;
        let p: DenyFinalizerRemoval = self.params(fault)?;
        if p.finalizer != JOB_TRACKING {
            return Err(self.err(
                "fault.params.finalizer",
                format!("`{}`: only `{JOB_TRACKING}` has a live controller to remove it here (the Job controller)", excerpt(&p.finalizer)),
            ));
        }
        if workload.kind != WorkloadKind::Job {
            return Err(self.err(
                "fault.params",
                "`deny-finalizer-removal` needs `workload.kind: job`: the Job controller is the one whose removal is denied",
            ));
        }
        Ok(FaultSpec::DenyFinalizerRemoval {
            finalizer: p.finalizer,
        })
    }
}

/// The `fault.params` shape of each fault kind: stage two of parsing a fault, with
/// unknown parameters refused.
mod fault_params {
    use serde::Deserialize;

    use super::{
        CgroupHold, DesyncHow, FillMode, FreezeTarget, HoldVia, ImmutableLocation, KubeletStop,
        PartitionFrom,
    };

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct FillDisk {
        pub(super) size: String,
        pub(super) mode: Option<FillMode>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Immutable {
        pub(super) location: ImmutableLocation,
        pub(super) path: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Freeze {
        pub(super) target: FreezeTarget,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Finalizer {
        pub(super) name: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Kubelet {
        pub(super) how: KubeletStop,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Desync {
        pub(super) how: DesyncHow,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Churn {
        pub(super) interval: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Hold {
        pub(super) via: HoldVia,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct BreakCni {
        pub(super) plugin: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct BusyCgroup {
        pub(super) how: CgroupHold,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct DenyFinalizerRemoval {
        pub(super) finalizer: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    pub(super) struct Partition {
        pub(super) from: PartitionFrom,
    }
}

#[cfg(test)]
mod tests;
