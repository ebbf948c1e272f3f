use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::parse::{self, *};
use super::read::{self, ReadRefusal};

/// The files a bundle may hold, with the command that produces each. All optional.
pub const BUNDLE_FILES: [(&str, &str); 20] = [
    ("pod.yaml", "kubectl get pod NAME -n NS -o yaml"),
    ("pod-last-seen.yaml", "kubectl get pod NAME -n NS -o yaml, saved while the pod still existed (extra, for a pod whose object is gone: only its identity is read)"),
    ("events.yaml", "kubectl get events -n NS --field-selector involvedObject.name=NAME -o yaml"),
    ("node.yaml", "kubectl get node NODE -o yaml"),
    ("kubelet.log", "journalctl -u kubelet --no-pager"),
    ("runtime.log", "journalctl -u containerd --no-pager (or -u docker)"),
    ("controller-manager.log", "kubectl logs -n kube-system -l component=kube-controller-manager --tail=-1 (extra, for controllers whose updates admission rejects)"),
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
    ("pod-cgroups.txt", "find /sys/fs/cgroup -path '*podUID*' \\( -name cgroup.procs -o -name freezer.state -o -name cgroup.freeze \\) -exec grep -H . {} + (UID also with _ for -; extra, for busy pod cgroups)"),
    ("captured-at", "date -u +%Y-%m-%dT%H:%M:%SZ at capture; also plain `date` or `date +%s` (extra; else pod.yaml's mtime)"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum SourceStatus {
    Present,
    Missing,
    /// Not read: not a regular file, a symlink out of the bundle, too large, an IO error.
    Unreadable(String),
    /// Read, but not in the expected format; what could be parsed was kept.
    Unparseable(ParseError),
}

/// A file of the bundle that was not (wholly) understood, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputProblem {
    pub file: String,
    /// 1-based line, where the problem has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub problem: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

/// How a bundle file is read (see [`read`]).
enum Shape {
    /// YAML or a one-line value, parsed whole; refused over the cap.
    Whole(u64),
    /// A line table: its tail when over the cap.
    Table,
    /// A log: streamed, only usable lines kept.
    Log,
}

fn shape(name: &str) -> Shape {
    match name {
        "kubelet.log" | "runtime.log" | "controller-manager.log" => Shape::Log,
        "pod.yaml" | "events.yaml" | "node.yaml" | "owner.yaml" | "revisions.yaml" => {
            Shape::Whole(read::STRUCTURED_CAP)
        }
        "captured-at" => Shape::Whole(4096),
        _ => Shape::Table,
    }
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
    /// The pod as it was before its object went away (pod-last-seen.yaml): read for its
    /// identity only (uid, name, container ids), never for its state, and only when
    /// pod.yaml is absent.
    pub last_seen: Option<PodFacts>,
    pub events: Vec<EventFact>,
    pub node: Option<NodeFacts>,
    pub kubelet_log: Vec<Quote>,
    pub runtime_log: Vec<Quote>,
    /// kube-controller-manager's log: the controllers' failed API calls.
    pub controller_manager_log: Vec<Quote>,
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
    /// The pod's cgroup directories: who is in them and which are frozen.
    pub pod_cgroups: Vec<CgroupLine>,
    /// Files read only in part (their tail; some usable log lines dropped), and why.
    pub partial: BTreeMap<String, String>,
}

impl Evidence {
    /// Reads a bundle directory. Never fails; see [`Evidence::sources`] for what was
    /// there and [`Evidence::problems`] for what was not understood. Memory stays
    /// bounded whatever the files hold (see [`read`]).
    pub fn load(dir: &Path) -> Evidence {
        let mut ev = Evidence {
            bundle: Some(dir.to_path_buf()),
            ..Evidence::default()
        };
        for (name, _) in BUNDLE_FILES {
            if let Err(refusal) = ev.load_file(dir, name) {
                let status = match refusal {
                    None => SourceStatus::Missing,
                    Some(r) => SourceStatus::Unreadable(r.to_string()),
                };
                ev.sources.insert(name.to_owned(), status);
            }
        }
        // An absent capture time falls back to pod.yaml's mtime; a present one that does
        // not parse is reported, never silently replaced.
        if matches!(
            ev.sources.get("captured-at"),
            Some(SourceStatus::Missing) | None
        ) {
            ev.captured_at = std::fs::metadata(dir.join("pod.yaml"))
                .and_then(|m| m.modified())
                .ok()
                .map(DateTime::<Utc>::from);
        }
        ev
    }

    /// Reads and ingests one file; `Err(None)` when it is absent.
    fn load_file(&mut self, dir: &Path, name: &str) -> Result<(), Option<ReadRefusal>> {
        let (file, size) = read::open(dir, name).map_err(Some)?.ok_or(None)?;
        match shape(name) {
            Shape::Whole(cap) => {
                let contents = read::whole(file, size, cap).map_err(Some)?;
                self.ingest(name, &contents.text);
            }
            Shape::Table => {
                let contents = read::tail(file, size, read::TABLE_CAP).map_err(Some)?;
                if contents.skipped > 0 {
                    self.partial.insert(
                        name.to_owned(),
                        format!(
                            "{size} bytes, over the {}-byte cap: only its last part was read ({} bytes skipped)",
                            read::TABLE_CAP,
                            contents.skipped
                        ),
                    );
                }
                self.ingest(name, &contents.text);
            }
            Shape::Log => {
                let lines = read::log_file(name, file, size, &self.pod_identity()).map_err(Some)?;
                self.keep_log(name, lines, size);
            }
        }
        Ok(())
    }

    /// Who the evidence is about: the pod object, or, when it is gone, the pod as it was
    /// last seen. For tying lines to the pod, never for its state.
    pub fn identity(&self) -> Option<&PodFacts> {
        self.pod.as_ref().or(self.last_seen.as_ref())
    }

    /// Strings that tie a log line to this pod: its uid (pod.yaml is read first). Not
    /// its name: a short, common name would keep half of a busy node's log.
    fn pod_identity(&self) -> Vec<String> {
        self.identity()
            .into_iter()
            .filter_map(|p| p.uid.clone())
            .filter(|uid| uid.len() >= 8)
            .collect()
    }

    fn keep_log(&mut self, name: &str, lines: read::LogLines, size: u64) {
        let mut partial = Vec::new();
        if lines.skipped > 0 {
            partial.push(format!(
                "{size} bytes, over the {}-byte cap: only its last part was read ({} bytes skipped; line numbers count from there)",
                read::LOG_CAP,
                lines.skipped
            ));
        }
        if lines.truncated {
            partial.push(format!(
                "more than {} usable lines: only the last {} were kept",
                read::MAX_KEPT_LINES,
                read::MAX_KEPT_LINES
            ));
        }
        if !partial.is_empty() {
            self.partial.insert(name.to_owned(), partial.join("; "));
        }
        match name {
            "kubelet.log" => self.kubelet_log = lines.quotes,
            "controller-manager.log" => self.controller_manager_log = lines.quotes,
            _ => self.runtime_log = lines.quotes,
        }
        self.sources.insert(name.to_owned(), SourceStatus::Present);
    }

    /// Every file that was refused, not understood or read only in part, in bundle order.
    pub fn problems(&self) -> Vec<InputProblem> {
        let mut out = Vec::new();
        for (name, _) in BUNDLE_FILES {
            match self.sources.get(name) {
                Some(SourceStatus::Unreadable(why)) => out.push(InputProblem {
                    file: name.to_owned(),
                    line: None,
                    problem: format!("not read: {why}"),
                }),
                Some(SourceStatus::Unparseable(e)) => out.push(InputProblem {
                    file: name.to_owned(),
                    line: e.line,
                    problem: format!("not understood: {}", e.reason),
                }),
                _ => {}
            }
            if let (true, Some(pod)) = (name == "pod.yaml", &self.pod) {
                if let (None, Some(raw)) = (pod.deletion_timestamp, &pod.deletion_timestamp_raw) {
                    out.push(InputProblem {
                        file: name.to_owned(),
                        line: pod.deletion_quote.as_ref().map(|q| q.line),
                        problem: format!(
                            "metadata.deletionTimestamp `{}` is not an RFC 3339 time",
                            crate::text::excerpt(raw)
                        ),
                    });
                }
            }
            if let Some(why) = self.partial.get(name) {
                out.push(InputProblem {
                    file: name.to_owned(),
                    line: None,
                    problem: format!("read in part: {why}"),
                });
            }
        }
        out
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

    fn parse_source(&mut self, name: &str, text: &str) -> Result<(), ParseError> {
        match name {
            "pod.yaml" => self.pod = Some(parse::pod(text)?),
            "pod-last-seen.yaml" => self.last_seen = Some(parse::pod(text)?),
            "events.yaml" => self.events = parse::events(text)?,
            "node.yaml" => self.node = Some(parse::node(text)?),
            "kubelet.log" | "runtime.log" | "controller-manager.log" => {
                let lines = read::log_lines(name, text.as_bytes(), &self.pod_identity());
                self.keep_log(name, lines, text.len() as u64);
            }
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
            "pod-cgroups.txt" => self.pod_cgroups = parse::pod_cgroups(text)?,
            "captured-at" => self.captured_at = Some(parse::captured_at(text)?),
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
