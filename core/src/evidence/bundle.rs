use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::parse::{self, *};

/// The files a bundle may hold, with the command that produces each. All optional.
pub const BUNDLE_FILES: [(&str, &str); 17] = [
    ("pod.yaml", "kubectl get pod NAME -n NS -o yaml"),
    ("events.yaml", "kubectl get events -n NS --field-selector involvedObject.name=NAME -o yaml"),
    ("node.yaml", "kubectl get node NODE -o yaml"),
    ("kubelet.log", "journalctl -u kubelet --no-pager"),
    ("runtime.log", "journalctl -u containerd --no-pager (or -u docker)"),
    ("df.txt", "df -P"),
    ("df-inodes.txt", "df -P -i"),
    ("lsattr.txt", "lsattr on the suspect paths"),
    ("mountinfo.txt", "grep -H ID /proc/*/mountinfo"),
    ("ps.txt", "ps -eo pid,ppid,stat,lstart,args"),
    ("crictl-ps.txt", "crictl ps -a"),
    ("ctr-tasks.txt", "ctr -n k8s.io task ls (or -n moby)"),
    ("docker-ps.txt", "docker ps -a --no-trunc"),
    ("owner.yaml", "kubectl get OWNER-KIND OWNER -n NS -o yaml (extra, for DaemonSet pods)"),
    ("revisions.yaml", "kubectl get controllerrevisions -n NS -o yaml (extra, for DaemonSet pods)"),
    ("proc-refs.txt", "ls -l /proc/*/cwd /proc/*/root /proc/*/fd/* 2>/dev/null | grep ID (extra, for mount holders)"),
    ("captured-at", "date -u +%Y-%m-%dT%H:%M:%SZ at capture (extra; else pod.yaml's mtime)"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum SourceStatus {
    Present,
    Missing,
    Unreadable(String),
    /// Read, but not in the expected format; what could be parsed was kept.
    Unparseable(String),
}

/// Everything known about one stuck pod and its node. Built from a bundle directory
/// or by probes; the detector reads only this.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub bundle: Option<PathBuf>,
    pub sources: BTreeMap<String, SourceStatus>,
    /// When the evidence was captured: decides whether a pod is still in its grace period.
    pub captured_at: Option<DateTime<Utc>>,
    pub pod: Option<PodFacts>,
    pub events: Vec<EventFact>,
    pub node: Option<NodeFacts>,
    pub kubelet_log: Vec<Quote>,
    pub runtime_log: Vec<Quote>,
    pub df: Vec<DfRow>,
    pub df_inodes: Vec<DfRow>,
    pub lsattr: Vec<LsattrEntry>,
    pub mountinfo: Vec<MountinfoEntry>,
    pub ps: Vec<PsEntry>,
    pub crictl_ps: Vec<CrictlRow>,
    pub ctr_tasks: Vec<CtrTask>,
    pub docker_ps: Vec<DockerPsRow>,
    pub owner: Option<OwnerFacts>,
    pub revisions: Vec<RevisionFact>,
    pub proc_refs: Vec<ProcRef>,
}

impl Evidence {
    /// Reads a bundle directory. Never fails; see [`Evidence::sources`] for what was there.
    pub fn load(dir: &Path) -> Evidence {
        let mut ev = Evidence {
            bundle: Some(dir.to_path_buf()),
            ..Evidence::default()
        };
        for (name, _) in BUNDLE_FILES {
            let path = dir.join(name);
            let status = match std::fs::read(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SourceStatus::Missing,
                Err(e) => SourceStatus::Unreadable(e.to_string()),
                Ok(bytes) => {
                    // Tool output is not always UTF-8 (journal lines with binary junk):
                    // keep what can be read rather than refusing the file.
                    ev.ingest(name, &String::from_utf8_lossy(&bytes));
                    continue;
                }
            };
            ev.sources.insert(name.to_owned(), status);
        }
        if ev.captured_at.is_none() {
            ev.captured_at = std::fs::metadata(dir.join("pod.yaml"))
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from);
        }
        ev
    }

    /// Parses one source's text into the evidence and records whether it parsed. Used by
    /// [`Evidence::load`] and by probes that hold the text in memory.
    pub fn ingest(&mut self, name: &str, text: &str) {
        let status = match self.parse_source(name, text) {
            Ok(()) => SourceStatus::Present,
            Err(why) => SourceStatus::Unparseable(why),
        };
        self.sources.insert(name.to_owned(), status);
    }

    fn parse_source(&mut self, name: &str, text: &str) -> Result<(), String> {
        match name {
            "pod.yaml" => self.pod = Some(parse::pod(text)?),
            "events.yaml" => self.events = parse::events(text)?,
            "node.yaml" => self.node = Some(parse::node(text)?),
            "kubelet.log" => self.kubelet_log = parse::lines("kubelet.log", text),
            "runtime.log" => self.runtime_log = parse::lines("runtime.log", text),
            "df.txt" => self.df = parse::df("df.txt", text)?,
            "df-inodes.txt" => self.df_inodes = parse::df("df-inodes.txt", text)?,
            "lsattr.txt" => self.lsattr = parse::lsattr(text)?,
            "mountinfo.txt" => self.mountinfo = parse::mountinfo(text)?,
            "ps.txt" => self.ps = parse::ps(text)?,
            "crictl-ps.txt" => self.crictl_ps = parse::crictl_ps(text)?,
            "ctr-tasks.txt" => self.ctr_tasks = parse::ctr_tasks(text)?,
            "docker-ps.txt" => self.docker_ps = parse::docker_ps(text)?,
            "owner.yaml" => self.owner = Some(parse::owner(text)?),
            "revisions.yaml" => self.revisions = parse::revisions(text)?,
            "proc-refs.txt" => self.proc_refs = parse::proc_refs(text)?,
            "captured-at" => {
                self.captured_at = Some(
                    DateTime::parse_from_rfc3339(text.trim())
                        .map_err(|e| format!("not an RFC 3339 time: {e}"))?
                        .with_timezone(&Utc),
                )
            }
            _ => {}
        }
        Ok(())
    }

    /// True when the named source was read and parsed.
    pub fn has(&self, name: &str) -> bool {
        matches!(self.sources.get(name), Some(SourceStatus::Present))
    }

    /// Every log line terminus reads for error text: kubelet's, the runtime's, and event messages.
    pub fn log_lines(&self) -> impl Iterator<Item = &Quote> {
        self.kubelet_log
            .iter()
            .chain(self.runtime_log.iter())
            .chain(self.events.iter().map(|e| &e.quote))
    }
}
