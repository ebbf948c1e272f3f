//! Pod identity: what ties a fact of the evidence to the pod being diagnosed.
//!
//! A busy node's journals, tables and events are full of other pods' failures, of older
//! failures, and of the previous pod with the same name. A fact is evidence for this pod
//! only when something ties it to the pod (its uid, a container or sandbox id, its volume
//! directory, the writable layer of one of its containers, an event's `involvedObject`),
//! when it is not older than the deletion (less [`STALE_MARGIN`]), and when it comes from
//! the runtime that runs the pod. A node-wide fact (a full filesystem, a stopped runtime)
//! counts only through what ties it to the pod: the filesystem that holds the pod's
//! state, the runtime or shim that runs its containers.
//!
//! Without pod.yaml, the pod as it was last seen (pod-last-seen.yaml: a pod whose object
//! is gone while its node still holds its state) gives the identity to tie by. Without
//! either there is nothing to tie to: every fact counts, marked [`Tie::Untied`].
//!
//! Architecture invariant: rules take facts through [`Link`] only, and each quoted line
//! carries the [`Tie`] that admitted it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

#[cfg(test)]
use chrono::Timelike;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use regex::Regex;

use crate::evidence::{
    CrictlRow, CtrTask, DfRow, DockerPsRow, EventFact, Evidence, PodFacts, PsEntry, Quote,
};

/// How much older than the deletion request a line may be and still count: the node's
/// and the API server's clocks differ a little, and kubelet may log a failed kill a
/// moment before the API server records the deletion.
pub const STALE_MARGIN: Duration = Duration::seconds(60);

/// Times written without a zone (the journal's short format, klog headers) are read as
/// UTC. When no line gives the node's offset, such a line is stale only when older than
/// the deletion by more than this too: no zone is further from UTC.
pub const UNKNOWN_ZONE_SLACK: Duration = Duration::hours(14);

/// The runtime that runs the pod's containers, from the scheme of their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    Docker,
    /// CRI-O or another: neither dockerd's nor containerd's CRI lines are about it.
    Other,
}

/// What ties a fact to the pod, shown beside each quoted line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tie {
    /// No pod.yaml: the fact is taken as it is.
    Untied,
    /// A departed pod's evidence: the line names no pod, so nothing says it is another's.
    Unnamed,
    /// The pod object itself (pod.yaml).
    PodObject,
    PodUid,
    PodName(String),
    Container {
        name: String,
        id: String,
    },
    Sandbox(String),
    VolumeDir,
    /// The writable layer of one of the pod's containers.
    Layer {
        container: String,
        dir: String,
    },
    /// A path a tied failure line named.
    NamedPath(String),
    /// An event whose involvedObject is the pod.
    Event(String),
    /// The runtime that runs the pod's containers.
    Runtime(String),
    /// The shim of the pod's sandbox or container.
    Shim(String),
    /// The filesystem that holds the pod's state.
    Filesystem(String),
    /// A process holding a mount of the pod's container.
    Holder(String),
    /// The pod's controller (its DaemonSet and revisions).
    Owner(String),
    /// The pod's node.
    Node(String),
    /// A process or control file in the pod's cgroup (pod-cgroups.txt, or ps.txt for
    /// a pid listed there).
    PodCgroup,
}

impl fmt::Display for Tie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tie::Untied => f.write_str("not tied to a pod (no pod.yaml, no pod-last-seen.yaml)"),
            Tie::Unnamed => f.write_str(
                "names no pod; this pod's object is gone, so a line about no other pod counts",
            ),
            Tie::PodObject => f.write_str("the pod object"),
            Tie::PodUid => f.write_str("names the pod's uid"),
            Tie::PodName(p) => write!(f, "names pod {p}"),
            Tie::Container { name, id } => write!(f, "names container {name} ({id})"),
            Tie::Sandbox(id) => write!(f, "names the pod's sandbox {id}"),
            Tie::VolumeDir => f.write_str("in the pod's volume directory"),
            Tie::Layer { container, dir } => {
                write!(f, "in the writable layer of container {container} ({dir})")
            }
            Tie::NamedPath(p) => write!(f, "the path a failure of this pod named ({p})"),
            Tie::Event(o) => write!(f, "an event about {o}"),
            Tie::Runtime(r) => write!(f, "{r}, which runs the pod's containers"),
            Tie::Shim(id) => write!(f, "the shim of the pod's {id}"),
            Tie::Filesystem(p) => write!(f, "the filesystem holding {p}"),
            Tie::Holder(what) => write!(f, "holds {what}"),
            Tie::Owner(o) => write!(f, "the pod's controller {o}"),
            Tie::Node(n) => write!(f, "the pod's node {n}"),
            Tie::PodCgroup => f.write_str("in the pod's cgroup"),
        }
    }
}

/// A quoted line and what ties it to the pod: the proof of a diagnosis.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Proof {
    #[serde(flatten)]
    pub quote: Quote,
    /// What ties the line to the pod, in words.
    pub tie: String,
}

impl Proof {
    pub fn new(quote: &Quote, tie: &Tie) -> Proof {
        Proof {
            quote: quote.clone(),
            tie: tie.to_string(),
        }
    }
}

impl std::ops::Deref for Proof {
    type Target = Quote;
    fn deref(&self) -> &Quote {
        &self.quote
    }
}

/// A pod uid, also as the systemd cgroup driver spells it in slice names (`_` for `-`).
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}")
        .expect("regex")
});
static SANDBOX_RETURNED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"returns sandbox id \\?"([0-9a-f]{64})"#).expect("regex"));
static JOURNAL_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\b",
    )
    .expect("regex")
});
static ISO_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})")
        .expect("regex")
});
static ZONED_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"time="(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))""#)
        .expect("regex")
});
static KLOG_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.\d+ ").expect("regex")
});

/// Everything that identifies the pod, gathered once from the evidence.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// pod.yaml (or pod-last-seen.yaml) was read: facts must be tied to the pod to count.
    pub known: bool,
    /// Only pod-last-seen.yaml was read: the pod's object is gone, and so, often, is what
    /// tied its node state to it (the mount of its rootfs that named its container). A
    /// log line or path that names no pod at all then counts ([`Tie::Unnamed`]); one
    /// naming another pod's uid or id does not.
    departed: bool,
    uid: Option<String>,
    /// The uid as the systemd cgroup driver writes it in slice names (`_` for `-`).
    uid_in_slices: Option<String>,
    /// `namespace/name`.
    pod_ref: Option<String>,
    /// (container name, full id) of every container of the pod, init and ephemeral too.
    containers: Vec<(String, String)>,
    sandboxes: BTreeSet<String>,
    /// (container name, writable layer directory).
    layers: Vec<(String, String)>,
    pub runtime: Option<Runtime>,
    /// The deletion request, less the margin: older facts are stale.
    not_before: Option<DateTime<Utc>>,
    /// For times without a year (journal, klog): the capture time.
    reference: Option<DateTime<Utc>>,
    /// The node's offset from UTC in seconds, learned from a line with both a local and a
    /// zoned time; None when no line gives it.
    node_offset: Option<i64>,
}

/// At least this many leading hex digits of an id must appear to tie a line: crictl and
/// docker print 12–13, and shorter prefixes collide on a busy node.
const ID_PREFIX: usize = 12;

fn short(id: &str) -> &str {
    id.get(..ID_PREFIX).unwrap_or(id)
}

/// `a` and `b` name the same id (either may be the short form).
pub fn same_id(a: &str, b: &str) -> bool {
    !a.is_empty()
        && (a == b || (a.len().min(b.len()) >= ID_PREFIX && (a.starts_with(b) || b.starts_with(a))))
}

impl Link {
    pub fn new(ev: &Evidence) -> Link {
        let mut link = Link {
            reference: ev.captured_at,
            ..Link::default()
        };
        link.node_offset = node_offset(ev);
        // A departed pod's last-seen object ties lines by who it was; it has no deletion
        // time, so nothing is stale by it.
        let Some(pod) = ev.identity() else {
            return link;
        };
        link.known = true;
        link.departed = ev.pod.is_none();
        link.uid = pod.uid.clone().filter(|u| !u.is_empty());
        link.uid_in_slices = link.uid.as_ref().map(|u| u.replace('-', "_"));
        link.pod_ref = Some(format!("{}/{}", pod.namespace, pod.name));
        link.containers = pod
            .containers
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.id.clone().filter(|i| !i.is_empty())?)))
            .collect();
        link.runtime = runtime_of(pod);
        link.not_before = deletion_requested(pod).map(|t| t - STALE_MARGIN);
        if link.reference.is_none() {
            link.reference = pod.deletion_timestamp;
        }
        link.sandboxes = sandboxes(ev, &link);
        link.layers = layers(ev, &link);
        link
    }

    /// The pod's container (by either form of its id), with its name.
    pub fn container(&self, id: &str) -> Option<Tie> {
        self.containers
            .iter()
            .find(|(_, c)| same_id(c, id))
            .map(|(name, c)| Tie::Container {
                name: name.clone(),
                id: short(c).to_owned(),
            })
    }

    /// The pod's sandbox, by either form of its id.
    pub fn sandbox(&self, id: &str) -> Option<Tie> {
        self.sandboxes
            .iter()
            .find(|s| same_id(s, id))
            .map(|s| Tie::Sandbox(short(s).to_owned()))
    }

    /// A container or sandbox of the pod.
    pub fn any_id(&self, id: &str) -> Option<Tie> {
        self.container(id).or_else(|| self.sandbox(id))
    }

    /// Whether the pod has container ids to tie runtime tables by.
    pub fn has_containers(&self) -> bool {
        !self.containers.is_empty()
    }

    /// What ties a log line or event message to the pod, if it is fresh and tied.
    pub fn line(&self, q: &Quote) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        if self.stale_line(&q.text) || self.other_runtime(&q.text) {
            return None;
        }
        self.text_tie(&q.text)
            .or_else(|| (self.departed && !names_a_pod(&q.text)).then_some(Tie::Unnamed))
    }

    /// What in `text` names the pod (ignoring time): its uid, one of its containers or
    /// sandboxes, its writable layers, or its `namespace/name` — unless the line names
    /// another pod's uid (the previous pod of the same name).
    pub fn text_tie(&self, text: &str) -> Option<Tie> {
        if [&self.uid, &self.uid_in_slices]
            .into_iter()
            .flatten()
            .any(|uid| text.contains(uid.as_str()))
        {
            return Some(Tie::PodUid);
        }
        if UUID.is_match(text) && self.uid.is_some() {
            return None;
        }
        for (name, id) in &self.containers {
            if text.contains(short(id)) {
                return Some(Tie::Container {
                    name: name.clone(),
                    id: short(id).to_owned(),
                });
            }
        }
        for s in &self.sandboxes {
            if text.contains(short(s)) {
                return Some(Tie::Sandbox(short(s).to_owned()));
            }
        }
        if let Some(tie) = self.layer_in(text) {
            return Some(tie);
        }
        let pod_ref = self.pod_ref.as_ref()?;
        // `pod="ns/name"`, `pods=["ns/name"]`, `pod \"ns/name\"`: the quoted reference.
        (text.contains(&format!("\"{pod_ref}\"")) || text.contains(&format!("\"{pod_ref}\\\"")))
            .then(|| Tie::PodName(pod_ref.clone()))
    }

    fn layer_in(&self, text: &str) -> Option<Tie> {
        self.layers.iter().find_map(|(container, dir)| {
            text.match_indices(dir.as_str())
                .any(|(i, _)| {
                    // `snapshots/12` must not tie `snapshots/123`.
                    !text[i + dir.len()..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphanumeric())
                })
                .then(|| Tie::Layer {
                    container: container.clone(),
                    dir: dir.clone(),
                })
        })
    }

    /// A path of the pod: in its volume directory, under one of its containers' task
    /// or layer directories.
    pub fn path(&self, path: &str) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        if let Some(uid) = &self.uid {
            if path.starts_with(&format!("/var/lib/kubelet/pods/{uid}/")) {
                return Some(Tie::VolumeDir);
            }
        }
        if path.contains("/var/lib/kubelet/pods/") {
            return None;
        }
        self.layer_in(path)
            .or_else(|| {
                path.split('/')
                    .filter(|c| c.len() >= ID_PREFIX && c.bytes().all(|b| b.is_ascii_hexdigit()))
                    .find_map(|c| self.any_id(c))
            })
            .or_else(|| (self.departed && !names_a_pod(path)).then_some(Tie::Unnamed))
    }

    /// An event about the pod: by involvedObject uid when both have one, else by
    /// namespace and name; an event without involvedObject is taken as the bundle's
    /// command selected it (`--field-selector involvedObject.name=NAME`).
    pub fn event(&self, e: &EventFact) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        if let (Some(t), Some(nb)) = (e.last_seen, self.not_before) {
            if t < nb {
                return None;
            }
        }
        let pod_ref = self.pod_ref.clone().unwrap_or_default();
        let Some(o) = &e.object else {
            return Some(Tie::Event(format!("pod {pod_ref} (no involvedObject)")));
        };
        if o.kind.as_deref().is_some_and(|k| k != "Pod") {
            return None;
        }
        match (&o.uid, &self.uid) {
            (Some(a), Some(b)) if !a.is_empty() => {
                return (a == b).then(|| Tie::Event(format!("pod {pod_ref} (uid)")));
            }
            _ => {}
        }
        let (ns, name) = pod_ref.split_once('/').unwrap_or(("", ""));
        let same_ns = o.namespace.as_deref().is_none_or(|n| n == ns);
        (same_ns && o.name.as_deref() == Some(name)).then(|| Tie::Event(format!("pod {pod_ref}")))
    }

    /// A crictl row of the pod: its container id, or (for a pod whose containers have
    /// no id yet) its name and namespace.
    pub fn crictl(&self, r: &CrictlRow) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        // crictl speaks CRI: containerd's and CRI-O's, not dockershim-era docker's.
        if self.runtime == Some(Runtime::Docker) {
            return None;
        }
        if let Some(tie) = self.container(&r.container_id) {
            return Some(tie);
        }
        let pod_ref = self.pod_ref.as_deref().unwrap_or("");
        let (ns, name) = pod_ref.split_once('/').unwrap_or(("", ""));
        (!self.has_containers() && r.pod == name && (r.namespace.is_empty() || r.namespace == ns))
            .then(|| Tie::PodName(pod_ref.to_owned()))
    }

    /// A containerd task of the pod.
    pub fn task(&self, t: &CtrTask) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        self.any_id(&t.id)
    }

    /// A `docker ps` row of the pod: its container id, or kubelet's `k8s_..._<uid>_N`
    /// container name. Only for pods that docker runs.
    pub fn docker(&self, r: &DockerPsRow) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        if self.runtime.is_some_and(|rt| rt != Runtime::Docker) {
            return None;
        }
        self.any_id(&r.id).or_else(|| {
            self.uid
                .as_ref()
                .filter(|u| r.names.contains(u.as_str()))
                .map(|_| Tie::PodUid)
        })
    }

    /// A runtime process whose state matters to the pod: containerd (which docker runs
    /// on too), dockerd for docker pods, and the shim of one of the pod's sandboxes or
    /// containers (by its `-id`, or as the parent of one of the pod's task processes).
    pub fn runtime_process(&self, p: &PsEntry, ev: &Evidence) -> Option<Tie> {
        if !self.known {
            return Some(Tie::Untied);
        }
        let program = p.program();
        if program.starts_with("containerd-shim") || program == "docker-containerd-shim" {
            let by_id = p
                .args
                .split_whitespace()
                .skip_while(|a| *a != "-id")
                .nth(1)
                .and_then(|id| self.any_id(id));
            let by_child = ev
                .ctr_tasks
                .iter()
                .filter(|t| self.any_id(&t.id).is_some())
                .any(|t| ev.ps.iter().any(|c| c.pid == t.pid && c.ppid == p.pid));
            return match (by_id, by_child) {
                (Some(Tie::Container { id, .. }), _) => Some(Tie::Shim(format!("container {id}"))),
                (Some(Tie::Sandbox(id)), _) => Some(Tie::Shim(format!("sandbox {id}"))),
                (_, true) => Some(Tie::Shim("containers".into())),
                _ => None,
            };
        }
        match (program, self.runtime) {
            (
                "containerd" | "docker-containerd",
                Some(Runtime::Containerd | Runtime::Docker) | None,
            ) => Some(Tie::Runtime(program.to_owned())),
            ("dockerd", Some(Runtime::Docker) | None) => Some(Tie::Runtime(program.to_owned())),
            _ => None,
        }
    }

    /// The df rows of the filesystems that hold the pod's state: its volume directory,
    /// its runtime's data, its containers' layers, and `extra` paths (named by tied
    /// failure lines). Each path is held by the row with the longest mount prefix.
    pub fn holding<'r>(&self, rows: &'r [DfRow], extra: &[String]) -> Vec<(&'r DfRow, Tie)> {
        let mut paths: Vec<String> = extra.to_vec();
        match self.runtime {
            Some(Runtime::Containerd) => paths.push("/var/lib/containerd".into()),
            Some(Runtime::Docker) => paths.push("/var/lib/docker".into()),
            _ => {
                paths.push("/var/lib/containerd".into());
                paths.push("/var/lib/docker".into());
            }
        }
        paths.push("/var/lib/kubelet".into());
        if let Some(uid) = &self.uid {
            paths.push(format!("/var/lib/kubelet/pods/{uid}/volumes"));
        }
        paths.extend(self.layers.iter().map(|(_, d)| d.clone()));
        let mut out: Vec<(&DfRow, Tie)> = Vec::new();
        for path in paths {
            let holder = rows
                .iter()
                .filter(|r| {
                    r.mount == "/"
                        || path == r.mount
                        || path.starts_with(&format!("{}/", r.mount.trim_end_matches('/')))
                })
                .max_by_key(|r| r.mount.len());
            if let Some(row) = holder {
                if !out.iter().any(|(r, _)| std::ptr::eq(*r, row)) {
                    out.push((row, Tie::Filesystem(path)));
                }
            }
        }
        // A filesystem mounted inside the pod's volume directory is one of its volumes.
        if let Some(uid) = &self.uid {
            let dir = format!("/var/lib/kubelet/pods/{uid}/");
            for row in rows.iter().filter(|r| r.mount.starts_with(&dir)) {
                if !out.iter().any(|(r, _)| std::ptr::eq(*r, row)) {
                    out.push((row, Tie::VolumeDir));
                }
            }
        }
        out
    }

    /// True when the line is older than the deletion request (less the margin).
    pub fn stale_line(&self, text: &str) -> bool {
        let (Some(not_before), Some((at, zoned))) = (self.not_before, self.line_time(text)) else {
            return false;
        };
        if zoned || self.node_offset.is_some() {
            at < not_before
        } else {
            at < not_before - UNKNOWN_ZONE_SLACK
        }
    }

    /// dockerd's lines are not about a containerd pod, and containerd's CRI lines not
    /// about a docker pod; a line naming the other runtime's container scheme neither.
    fn other_runtime(&self, text: &str) -> bool {
        match self.runtime {
            Some(Runtime::Containerd) => text.contains(" dockerd[") || text.contains("docker://"),
            Some(Runtime::Docker) => {
                text.contains("containerd://") || text.contains("io.containerd.grpc.v1.cri")
            }
            _ => false,
        }
    }

    /// The line's time in UTC and whether it carried its zone. Zoned times (containerd's
    /// `time="..."`, ISO prefixes with offsets) win over the journal's and klog's.
    pub fn line_time(&self, text: &str) -> Option<(DateTime<Utc>, bool)> {
        if let Some(t) = ZONED_TIME
            .captures(text)
            .and_then(|c| DateTime::parse_from_rfc3339(&c[1]).ok())
        {
            return Some((t.with_timezone(&Utc), true));
        }
        if let Some(c) = ISO_TIME.captures(text) {
            let zone = c[3].replace(':', "");
            let zone = if zone == "Z" {
                "+0000".to_owned()
            } else {
                zone
            };
            if let Ok(t) =
                DateTime::parse_from_str(&format!("{} {zone}", &c[1]), "%Y-%m-%dT%H:%M:%S %z")
            {
                return Some((t.with_timezone(&Utc), true));
            }
        }
        let local =
            journal_local(text, self.reference).or_else(|| klog_local(text, self.reference))?;
        let offset = self.node_offset.unwrap_or(0);
        Some((
            Utc.from_utc_datetime(&local) - Duration::seconds(offset),
            false,
        ))
    }
}

/// The runtime of the pod's containers, from their id schemes.
fn runtime_of(pod: &PodFacts) -> Option<Runtime> {
    pod.containers
        .iter()
        .find_map(|c| c.runtime.as_deref())
        .map(|scheme| match scheme {
            "containerd" => Runtime::Containerd,
            "docker" => Runtime::Docker,
            _ => Runtime::Other,
        })
}

/// When delete was called: deletionTimestamp is the end of the grace period.
pub fn deletion_requested(pod: &PodFacts) -> Option<DateTime<Utc>> {
    let end = pod.deletion_timestamp?;
    Some(end - Duration::seconds(pod.grace_period_seconds.unwrap_or(0).clamp(0, 86_400 * 365)))
}

fn sandboxes(ev: &Evidence, link: &Link) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in &ev.crictl_ps {
        if link.container(&r.container_id).is_some() && !r.pod_id.is_empty() {
            out.insert(r.pod_id.clone());
        }
    }
    if let Some(uid) = &link.uid {
        for q in &ev.runtime_log {
            if q.text.contains(uid.as_str()) {
                if let Some(c) = SANDBOX_RETURNED.captures(&q.text) {
                    out.insert(c[1].to_owned());
                }
            }
        }
        // kubelet's docker names: k8s_POD_<pod>_<ns>_<uid>_<attempt> is the sandbox.
        for r in &ev.docker_ps {
            if r.names.starts_with("k8s_POD_") && r.names.contains(uid.as_str()) {
                out.insert(r.id.clone());
            }
        }
    }
    // Prefer the full ids ctr knows for short ones.
    let full: BTreeSet<String> = out
        .iter()
        .map(|s| {
            ev.ctr_tasks
                .iter()
                .find(|t| same_id(&t.id, s))
                .map(|t| t.id.clone())
                .unwrap_or_else(|| s.clone())
        })
        .collect();
    full
}

static FULL_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[0-9a-f]{64}\b").expect("regex"));

/// Whether `text` names some pod: a uid, or a full container or sandbox id. (Called
/// only after it was found not to name this one.)
fn names_a_pod(text: &str) -> bool {
    UUID.is_match(text) || FULL_ID.is_match(text)
}

/// The writable layers of the pod's containers: the parent of the `upperdir` of each
/// overlay mount whose mount point names one of them.
fn layers(ev: &Evidence, link: &Link) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for m in &ev.mountinfo {
        let Some(upper) = m.upperdir() else { continue };
        let Some(Tie::Container { name, .. }) = m
            .mount_point
            .split('/')
            .filter(|c| c.len() >= ID_PREFIX)
            .find_map(|c| link.container(c))
        else {
            continue;
        };
        let dir = upper
            .trim_end_matches('/')
            .rsplit_once('/')
            .map(|(parent, _)| parent.to_owned())
            .unwrap_or_else(|| upper.to_owned());
        if !out.iter().any(|(_, d)| *d == dir) {
            out.push((name, dir));
        }
    }
    out
}

/// The node's offset from UTC: a journal line of containerd carries the journal's local
/// time and containerd's own zoned time.
fn node_offset(ev: &Evidence) -> Option<i64> {
    ev.runtime_log.iter().take(2_000).find_map(|q| {
        let zoned = ZONED_TIME
            .captures(&q.text)
            .and_then(|c| DateTime::parse_from_rfc3339(&c[1]).ok())?
            .with_timezone(&Utc);
        let local = journal_local(&q.text, Some(zoned))?;
        let diff = (Utc.from_utc_datetime(&local) - zoned).num_seconds();
        // Round to the quarter hour: the two stamps differ by the logging delay.
        let quarter = 15 * 60;
        let rounded = ((diff as f64) / quarter as f64).round() as i64 * quarter;
        (rounded.abs() <= 14 * 3600).then_some(rounded)
    })
}

/// The journal's short-format prefix (`Nov 28 12:28:31 host unit[pid]:`), local time,
/// in the year that puts it closest before the reference.
fn journal_local(text: &str, reference: Option<DateTime<Utc>>) -> Option<NaiveDateTime> {
    let c = JOURNAL_TIME.captures(text)?;
    let month = month_number(&c[1])?;
    let [day, h, m, s] = [&c[2], &c[3], &c[4], &c[5]].map(|v| v.parse::<u32>().unwrap_or(99));
    dated(reference, month, day, h, m, s)
}

/// klog's header (`E1128 12:28:50.542967`), local time of the logging process.
fn klog_local(text: &str, reference: Option<DateTime<Utc>>) -> Option<NaiveDateTime> {
    let c = KLOG_TIME.captures(text)?;
    let [month, day, h, m, s] =
        [&c[1], &c[2], &c[3], &c[4], &c[5]].map(|v| v.parse::<u32>().unwrap_or(99));
    dated(reference, month, day, h, m, s)
}

/// A month-day time without a year: the reference's year, or the one before when that
/// would put it more than a day after the reference (a December line read in January).
fn dated(
    reference: Option<DateTime<Utc>>,
    month: u32,
    day: u32,
    h: u32,
    m: u32,
    s: u32,
) -> Option<NaiveDateTime> {
    let reference = reference?;
    let year = reference.year();
    let at = |y: i32| NaiveDate::from_ymd_opt(y, month, day)?.and_hms_opt(h, m, s);
    let this = at(year)?;
    if this > reference.naive_utc() + Duration::days(1) {
        at(year - 1)
    } else {
        Some(this)
    }
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|m| *m == name).map(|i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn reference(s: &str) -> Link {
        Link {
            reference: Some(at(s)),
            ..Link::default()
        }
    }

    #[test]
    fn line_times_in_the_shapes_nodes_write() {
        let link = reference("2026-11-28T12:30:00Z");
        let cases = [
            (
                r#"Nov 28 12:28:36 w containerd[161]: time="2026-11-28T12:28:36.43Z" level=warning"#,
                "2026-11-28T12:28:36Z",
                true,
            ),
            (
                r#"time="2026-11-28T13:28:36.43+01:00" level=info"#,
                "2026-11-28T12:28:36Z",
                true,
            ),
            (
                "2026-11-28T12:28:36+0000 w kubelet[237]: E1128 12:28:36.1 237 x.go:1] x",
                "2026-11-28T12:28:36Z",
                true,
            ),
            (
                "Nov 28 12:28:50 w kubelet[237]: E1128 12:28:50.542967     237 log.go:32] x",
                "2026-11-28T12:28:50Z",
                false,
            ),
            (
                "E1128 12:28:50.542967     237 log.go:32] x",
                "2026-11-28T12:28:50Z",
                false,
            ),
        ];
        for (text, want, zoned) in cases {
            let (t, z) = link
                .line_time(text)
                .unwrap_or_else(|| panic!("no time in {text}"));
            assert_eq!((t.with_nanosecond(0), z), (Some(at(want)), zoned), "{text}");
        }
        assert_eq!(link.line_time("no time here"), None);
    }

    #[test]
    fn a_december_line_read_in_january_is_last_years() {
        let link = reference("2027-01-01T00:10:00Z");
        let (t, _) = link
            .line_time("Dec 31 23:59:00 w kubelet[1]: x")
            .expect("a time");
        assert_eq!(t, at("2026-12-31T23:59:00Z"));
    }

    #[test]
    fn the_nodes_offset_comes_from_a_containerd_journal_line() {
        // A node in UTC-5: the journal prints local time, containerd prints UTC.
        let ev = Evidence {
            captured_at: Some(at("2026-11-28T05:00:00Z")),
            runtime_log: vec![Quote {
                source: "runtime.log".into(),
                line: 1,
                text: r#"Nov 28 07:28:36 w containerd[161]: time="2026-11-28T12:28:36.437832616Z" level=warning msg="x""#.into(),
            }],
            ..Evidence::default()
        };
        assert_eq!(node_offset(&ev), Some(-5 * 3600));
    }

    #[test]
    fn zoneless_lines_are_stale_only_far_before_the_deletion_when_the_zone_is_unknown() {
        let link = Link {
            known: true,
            not_before: Some(at("2026-11-28T12:00:00Z")),
            reference: Some(at("2026-11-28T12:30:00Z")),
            ..Link::default()
        };
        // Six hours earlier on the clock could be a node six hours behind UTC.
        assert!(!link.stale_line("Nov 28 06:00:00 w kubelet[1]: x"));
        assert!(link.stale_line("Nov 27 06:00:00 w kubelet[1]: x"));
        assert!(link.stale_line(r#"time="2026-11-28T11:00:00Z" msg=x"#));
        assert!(!link.stale_line(r#"time="2026-11-28T12:05:00Z" msg=x"#));
    }

    #[test]
    fn another_uid_on_the_line_unties_it_from_a_same_named_pod() {
        let link = Link {
            known: true,
            uid: Some("9e094288-8e6e-491c-8037-57880aa07791".into()),
            pod_ref: Some("ns/web-0".into()),
            ..Link::default()
        };
        assert_eq!(
            link.text_tie(r#""Killing container" pod="ns/web-0" podUID="9e094288-8e6e-491c-8037-57880aa07791""#),
            Some(Tie::PodUid)
        );
        assert_eq!(
            link.text_tie(r#""Killing container" pod="ns/web-0" podUID="11111111-2222-3333-4444-555555555555""#),
            None
        );
        assert_eq!(
            link.text_tie(r#""SyncLoop DELETE" source="api" pods=["ns/web-0"]"#),
            Some(Tie::PodName("ns/web-0".into()))
        );
        assert_eq!(link.text_tie(r#"pods=["ns/web-01"]"#), None);
    }

    #[test]
    fn ids_match_in_either_form_but_not_on_a_short_prefix() {
        let full = "08e6bc10c07c969784f914092557afb5a7104dda4117e437d1c9d4d534c641fb";
        assert!(same_id(full, "08e6bc10c07c9"));
        assert!(same_id("08e6bc10c07c9", full));
        assert!(!same_id(full, "08e6bc"));
        assert!(!same_id(full, ""));
    }

    /// A departed pod (pod-last-seen.yaml only), captured on a crowded node: a line
    /// naming it or naming no pod counts; a line naming another pod's uid or container
    /// does not.
    #[test]
    fn a_departed_pod_is_tied_by_its_last_seen_identity() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cells/k1.37-cd2.1/immutable-file-rootfs");
        let ev = Evidence::load(&dir);
        assert!(ev.pod.is_none() && ev.last_seen.is_some());
        let link = Link::new(&ev);
        let quote = |text: &str| Quote {
            source: "kubelet.log".into(),
            line: 1,
            text: text.into(),
        };
        let uid = ev
            .last_seen
            .as_ref()
            .and_then(|p| p.uid.clone())
            .expect("uid");
        assert_eq!(
            link.line(&quote(&format!("podUID=\"{uid}\""))),
            Some(Tie::PodUid)
        );
        assert_eq!(
            link.line(&quote(
                r#"msg="failed to remove directory" path=/var/lib/containerd/x"#
            )),
            Some(Tie::Unnamed)
        );
        assert_eq!(
            link.line(&quote("pod \"6fc00f0a-a7b7-4ae4-8f7b-0df2c276ea78\" busy")),
            None
        );
        assert_eq!(
            link.path("/var/lib/kubelet/pods/6fc00f0a-a7b7-4ae4-8f7b-0df2c276ea78/volumes/x"),
            None
        );
        assert_eq!(
            link.path(&format!(
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{}/rootfs",
                "ab".repeat(32)
            )),
            None
        );
        assert_eq!(
            link.path(
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/30/fs/locked"
            ),
            Some(Tie::Unnamed)
        );
    }
}
