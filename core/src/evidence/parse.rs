//! Parsers for each bundle file. Each keeps the verbatim line a fact came from
//! ([`Quote`]) so a diagnosis can show its proof exactly as the tool printed it.
//!
//! Parsers are lenient by design: real dumps are truncated, interleaved with other
//! output, or from tool versions with other columns. A line that does not fit is
//! skipped; a file where nothing fits is reported as unparseable.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_yaml_ng::Value;

use crate::text::excerpt;

/// One line of input, verbatim, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub source: String,
    /// 1-based line number in the source file.
    pub line: usize,
    pub text: String,
}

impl Quote {
    fn new(source: &str, index: usize, text: &str) -> Quote {
        Quote {
            source: source.to_owned(),
            line: index + 1,
            text: text.trim_end().to_owned(),
        }
    }
}

/// Why a file was not understood: the 1-based line where that is known, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub line: Option<usize>,
    pub reason: String,
}

impl ParseError {
    pub fn at(line: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            line: Some(line),
            reason: reason.into(),
        }
    }
}

impl From<String> for ParseError {
    fn from(reason: String) -> ParseError {
        ParseError { line: None, reason }
    }
}

impl From<&str> for ParseError {
    fn from(reason: &str) -> ParseError {
        reason.to_owned().into()
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// The first line of `text` containing every needle, as a quote.
fn find_line(source: &str, text: &str, needles: &[&str]) -> Option<Quote> {
    text.lines()
        .enumerate()
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map(|(i, l)| Quote::new(source, i, l))
}

/// The lines holding `key`, searched in order from where the last search ended: the
/// items of a List appear in the file in the order they are parsed, so finding each
/// item's line is linear in the file, not quadratic.
struct KeyLines<'t> {
    source: &'static str,
    lines: Vec<(usize, &'t str)>,
    next: usize,
}

impl<'t> KeyLines<'t> {
    fn new(source: &'static str, text: &'t str, key: &str) -> KeyLines<'t> {
        KeyLines {
            source,
            lines: text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(key))
                .collect(),
            next: 0,
        }
    }

    /// The next line holding `needle`; when none follows, the first anywhere.
    fn find(&mut self, needle: &str) -> Option<Quote> {
        let after = self.lines[self.next..]
            .iter()
            .position(|(_, l)| l.contains(needle))
            .map(|k| self.next + k);
        let k = after.or_else(|| self.lines.iter().position(|(_, l)| l.contains(needle)))?;
        self.next = k + 1;
        let (i, l) = self.lines[k];
        Some(Quote::new(self.source, i, l))
    }
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn str_at(v: &Value, path: &str) -> Option<String> {
    at(v, path).and_then(Value::as_str).map(str::to_owned)
}

fn time_at(v: &Value, path: &str) -> Option<DateTime<Utc>> {
    str_at(v, path).and_then(|t| rfc3339(&t))
}

/// An RFC 3339 time (any offset), in UTC.
fn rfc3339(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The line of a `key: value` (YAML) or `"key": value` (JSON) entry.
fn key_line(source: &str, text: &str, key: &str) -> Option<Quote> {
    let yaml = format!("{key}:");
    let json = format!("\"{key}\":");
    text.lines()
        .enumerate()
        .find(|(_, l)| {
            let l = l.trim_start();
            l.starts_with(&yaml) || l.starts_with(&json)
        })
        .map(|(i, l)| Quote::new(source, i, l))
}

/// (manager, operation, time) of each managedFields entry: who wrote the object.
fn managers(v: &Value) -> Vec<(String, String, Option<DateTime<Utc>>)> {
    at(v, "metadata.managedFields")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                str_at(m, "manager")?,
                str_at(m, "operation").unwrap_or_default(),
                time_at(m, "time"),
            ))
        })
        .collect()
}

/// The `items` of a `kubectl get ... -o yaml` List.
fn list_items<'a>(v: &'a Value, expected: &str) -> Result<&'a Vec<Value>, ParseError> {
    v.get("items")
        .and_then(Value::as_sequence)
        .ok_or_else(|| format!("no `items`: expected {expected}").into())
}

fn yaml(text: &str, what: &str) -> Result<Value, ParseError> {
    let v: Value = serde_yaml_ng::from_str(text).map_err(|e| ParseError {
        line: e.location().map(|l| l.line()),
        reason: format!("not YAML: {}", excerpt(&e.to_string())),
    })?;
    if !v.is_mapping() {
        return Err(format!("not a Kubernetes {what} object").into());
    }
    Ok(v)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerState {
    Running,
    Waiting(String),
    Terminated(String),
    Unknown,
}

/// Which status list a container came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerRole {
    Init,
    Regular,
    Ephemeral,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerFacts {
    pub name: String,
    pub role: ContainerRole,
    /// Without the `containerd://` / `docker://` scheme.
    pub id: Option<String>,
    /// The scheme of the container id (`containerd`, `docker`, `cri-o`): which runtime
    /// runs it.
    pub runtime: Option<String>,
    pub state: ContainerState,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    pub node: Option<String>,
    pub phase: Option<String>,
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// `metadata.deletionTimestamp` as written, also when it is not a time terminus can
    /// read (then `deletion_timestamp` is None and the report says so).
    pub deletion_timestamp_raw: Option<String>,
    pub deletion_quote: Option<Quote>,
    pub grace_period_seconds: Option<i64>,
    pub finalizers: Vec<(String, Option<Quote>)>,
    /// (kind, name) of the controlling owner.
    pub owner: Option<(String, String)>,
    pub revision_hash: Option<String>,
    pub containers: Vec<ContainerFacts>,
    /// Volume names and, for hostPath volumes, the host path.
    pub volumes: Vec<(String, Option<String>)>,
    /// (manager, operation, time) from managedFields: who last wrote the object.
    pub managers: Vec<(String, String, Option<DateTime<Utc>>)>,
}

impl PodFacts {
    /// The pod has a deletionTimestamp, readable or not: it is Terminating.
    pub fn is_deleted(&self) -> bool {
        self.deletion_timestamp.is_some() || self.deletion_timestamp_raw.is_some()
    }
}

/// The pod object of a `kubectl get pod` document: the document itself, or the only
/// item of a List.
fn one_pod(doc: Value) -> Result<Value, ParseError> {
    Ok(match str_at(&doc, "kind").as_deref() {
        Some("List" | "PodList") => {
            let items = list_items(&doc, "a List of one pod")?;
            match items.as_slice() {
                [one] if str_at(one, "kind").is_none_or(|k| k == "Pod") => one.clone(),
                [_] => return Err("the List's item is not a Pod".into()),
                [] => return Err("an empty List: no pod in it".into()),
                many => {
                    return Err(format!(
                        "a List of {} objects: terminus diagnoses one pod (kubectl get pod NAME -o yaml)",
                        many.len()
                    )
                    .into())
                }
            }
        }
        Some("Pod") | None => doc,
        Some(other) => return Err(format!("kind is {}, not Pod", excerpt(other)).into()),
    })
}

/// `kubectl get pod -o yaml` or `-o json`, or a v1 List holding exactly one pod
/// (`kubectl get pods -o yaml` in a namespace with one pod, or with a selector).
pub fn pod(text: &str) -> Result<PodFacts, ParseError> {
    let v = one_pod(yaml(text, "Pod")?)?;
    let name = str_at(&v, "metadata.name").ok_or("no metadata.name")?;
    let finalizers = at(&v, "metadata.finalizers")
        .and_then(Value::as_sequence)
        .map(|seq| {
            seq.iter()
                .filter_map(Value::as_str)
                .map(|f| (f.to_owned(), find_line("pod.yaml", text, &[f])))
                .collect()
        })
        .unwrap_or_default();
    let owner = at(&v, "metadata.ownerReferences")
        .and_then(Value::as_sequence)
        .and_then(|refs| {
            let controller = refs
                .iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| refs.first())?;
            Some((str_at(controller, "kind")?, str_at(controller, "name")?))
        });
    let mut containers = Vec::new();
    for (key, role) in [
        ("status.initContainerStatuses", ContainerRole::Init),
        ("status.containerStatuses", ContainerRole::Regular),
        (
            "status.ephemeralContainerStatuses",
            ContainerRole::Ephemeral,
        ),
    ] {
        for c in at(&v, key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let state = match at(c, "state") {
                Some(s) if s.get("running").is_some() => ContainerState::Running,
                Some(s) if s.get("terminated").is_some() => {
                    ContainerState::Terminated(str_at(s, "terminated.reason").unwrap_or_default())
                }
                Some(s) if s.get("waiting").is_some() => {
                    ContainerState::Waiting(str_at(s, "waiting.reason").unwrap_or_default())
                }
                _ => ContainerState::Unknown,
            };
            let raw_id = str_at(c, "containerID").filter(|id| !id.is_empty());
            containers.push(ContainerFacts {
                name: str_at(c, "name").unwrap_or_default(),
                role,
                runtime: raw_id
                    .as_deref()
                    .and_then(|id| id.split_once("://"))
                    .map(|(scheme, _)| scheme.to_owned()),
                id: raw_id.map(|id| id.split("://").last().unwrap_or(&id).to_owned()),
                state,
            });
        }
    }
    let volumes = at(&v, "spec.volumes")
        .and_then(Value::as_sequence)
        .map(|seq| {
            seq.iter()
                .filter_map(|vol| Some((str_at(vol, "name")?, str_at(vol, "hostPath.path"))))
                .collect()
        })
        .unwrap_or_default();
    let managers = managers(&v);
    Ok(PodFacts {
        namespace: str_at(&v, "metadata.namespace").unwrap_or_else(|| "default".into()),
        uid: str_at(&v, "metadata.uid"),
        node: str_at(&v, "spec.nodeName"),
        phase: str_at(&v, "status.phase"),
        deletion_timestamp: time_at(&v, "metadata.deletionTimestamp"),
        deletion_timestamp_raw: at(&v, "metadata.deletionTimestamp").and_then(|t| match t {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(
                serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ),
        }),
        deletion_quote: key_line("pod.yaml", text, "deletionTimestamp"),
        grace_period_seconds: at(&v, "metadata.deletionGracePeriodSeconds").and_then(Value::as_i64),
        finalizers,
        owner,
        revision_hash: str_at(&v, "metadata.labels.controller-revision-hash"),
        containers,
        volumes,
        managers,
        name,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct EventFact {
    /// `type`: Normal or Warning.
    pub kind: String,
    /// The object the event is about (`involvedObject`, or `regarding` in events.k8s.io).
    pub object: Option<ObjectRef>,
    pub reason: String,
    pub message: String,
    pub count: i64,
    pub last_seen: Option<DateTime<Utc>>,
    /// The `message:` line of the event in events.yaml.
    pub quote: Quote,
}

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

/// `kubectl get events -o yaml` or `-o json` (a v1 List).
pub fn events(text: &str) -> Result<Vec<EventFact>, ParseError> {
    let v = yaml(text, "List")?;
    let items = list_items(&v, "a v1 List of events")?;
    let mut out = Vec::new();
    let json = text.trim_start().starts_with('{');
    let key = if json { "\"message\":" } else { "message:" };
    let mut message_lines = KeyLines::new("events.yaml", text, key);
    for item in items {
        let (Some(reason), Some(message)) = (str_at(item, "reason"), str_at(item, "message"))
        else {
            continue;
        };
        // Quote the line where the message starts; long messages fold over several
        // YAML lines, and the first 40 characters locate it.
        let head: String = message.chars().take(40).collect();
        let head = head.split('\n').next().unwrap_or("");
        // JSON escapes quotes and backslashes inside the message.
        let head = if json {
            let escaped = serde_json::to_string(head).unwrap_or_default();
            escaped.trim_matches('"').to_owned()
        } else {
            head.to_owned()
        };
        let quote = message_lines.find(&head).unwrap_or_else(|| Quote {
            source: "events.yaml".into(),
            line: 0,
            text: format!("{reason}: {message}"),
        });
        out.push(EventFact {
            kind: str_at(item, "type").unwrap_or_default(),
            object: item
                .get("involvedObject")
                .or_else(|| item.get("regarding"))
                .map(|o| ObjectRef {
                    kind: str_at(o, "kind"),
                    namespace: str_at(o, "namespace"),
                    name: str_at(o, "name"),
                    uid: str_at(o, "uid"),
                }),
            count: item.get("count").and_then(Value::as_i64).unwrap_or(1),
            last_seen: time_at(item, "lastTimestamp")
                .or_else(|| time_at(item, "series.lastObservedTime"))
                .or_else(|| time_at(item, "eventTime"))
                .or_else(|| time_at(item, "firstTimestamp")),
            reason,
            message,
            quote,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeFacts {
    pub name: String,
    /// status, reason, message of the Ready condition.
    pub ready: Option<(String, String, String)>,
    pub ready_quote: Option<Quote>,
}

pub fn node(text: &str) -> Result<NodeFacts, ParseError> {
    let v = yaml(text, "Node")?;
    let name = str_at(&v, "metadata.name").ok_or("no metadata.name")?;
    let ready = at(&v, "status.conditions")
        .and_then(Value::as_sequence)
        .and_then(|conds| {
            let c = conds
                .iter()
                .find(|c| str_at(c, "type").as_deref() == Some("Ready"))?;
            Some((
                str_at(c, "status").unwrap_or_default(),
                str_at(c, "reason").unwrap_or_default(),
                str_at(c, "message").unwrap_or_default(),
            ))
        });
    let ready_quote = ready.as_ref().and_then(|(_, _, message)| {
        find_line(
            "node.yaml",
            text,
            &[message.chars().take(40).collect::<String>().as_str()],
        )
    });
    Ok(NodeFacts {
        name,
        ready,
        ready_quote,
    })
}

/// The object that owns a DaemonSet pod (`owner.yaml`).
#[derive(Debug, Clone, Serialize)]
pub struct OwnerFacts {
    pub kind: String,
    pub name: String,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub update_strategy: Option<String>,
    pub affinity_terms: usize,
    pub uses_node_selector: bool,
    pub managers: Vec<(String, String, Option<DateTime<Utc>>)>,
    pub generation_quote: Option<Quote>,
}

pub fn owner(text: &str) -> Result<OwnerFacts, ParseError> {
    let v = yaml(text, "owner")?;
    let terms = at(&v, "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
        .and_then(Value::as_sequence)
        .map(Vec::len)
        .unwrap_or(0);
    Ok(OwnerFacts {
        kind: str_at(&v, "kind").ok_or("no kind")?,
        name: str_at(&v, "metadata.name").ok_or("no metadata.name")?,
        generation: at(&v, "metadata.generation").and_then(Value::as_i64),
        observed_generation: at(&v, "status.observedGeneration").and_then(Value::as_i64),
        update_strategy: str_at(&v, "spec.updateStrategy.type"),
        affinity_terms: terms,
        uses_node_selector: at(&v, "spec.template.spec.nodeSelector").is_some_and(|s| !s.is_null()),
        managers: managers(&v),
        // `metadata.generation`, not the `...template.generation` annotation.
        generation_quote: text
            .lines()
            .enumerate()
            .find(|(_, l)| l.trim_start().starts_with("generation:"))
            .map(|(i, l)| Quote::new("owner.yaml", i, l)),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RevisionFact {
    pub name: String,
    pub owner: Option<String>,
    pub revision: i64,
    pub created: Option<DateTime<Utc>>,
    pub quote: Quote,
}

pub fn revisions(text: &str) -> Result<Vec<RevisionFact>, ParseError> {
    let v = yaml(text, "List")?;
    let items = list_items(&v, "a v1 List")?;
    let mut name_lines = KeyLines::new("revisions.yaml", text, "name: ");
    Ok(items
        .iter()
        .filter_map(|item| {
            let name = str_at(item, "metadata.name")?;
            Some(RevisionFact {
                owner: at(item, "metadata.ownerReferences")
                    .and_then(Value::as_sequence)
                    .and_then(|r| r.first())
                    .and_then(|r| str_at(r, "name")),
                revision: item.get("revision").and_then(Value::as_i64).unwrap_or(0),
                created: time_at(item, "metadata.creationTimestamp"),
                quote: name_lines.find(&name).unwrap_or_else(|| Quote {
                    source: "revisions.yaml".into(),
                    line: 0,
                    text: name.clone(),
                }),
                name,
            })
        })
        .collect())
}

/// A row of `df -P` or `df -P -i`: the numbers are blocks or inodes.
#[derive(Debug, Clone, Serialize)]
pub struct DfRow {
    pub filesystem: String,
    pub total: u64,
    pub used: u64,
    pub available: u64,
    pub use_percent: Option<u8>,
    pub mount: String,
    pub quote: Quote,
}

impl DfRow {
    /// Full: no space (or inodes) left, as df reports it.
    pub fn is_full(&self) -> bool {
        self.total > 0 && (self.available == 0 || self.use_percent == Some(100))
    }
}

pub fn df(source: &str, text: &str) -> Result<Vec<DfRow>, ParseError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 {
            continue;
        }
        let (Ok(total), Ok(used), Ok(available)) = (f[1].parse(), f[2].parse(), f[3].parse())
        else {
            continue;
        };
        rows.push(DfRow {
            filesystem: f[0].to_owned(),
            total,
            used,
            available,
            use_percent: f[4].trim_end_matches('%').parse().ok(),
            mount: f[5..].join(" "),
            quote: Quote::new(source, i, line),
        });
    }
    if rows.is_empty() && !text.trim().is_empty() {
        return Err("no `df -P` rows found".into());
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct LsattrEntry {
    pub flags: String,
    pub path: String,
    pub quote: Quote,
}

impl LsattrEntry {
    pub fn immutable(&self) -> bool {
        self.flags.contains('i')
    }
}

pub fn lsattr(text: &str) -> Result<Vec<LsattrEntry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some((flags, path)) = line.split_once(' ') else {
            continue;
        };
        // Flags are a fixed-width field of letters and dashes.
        if flags.len() < 10
            || !flags
                .chars()
                .all(|c| c == '-' || c.is_ascii_lowercase() || c.is_ascii_uppercase())
            || !flags.contains('-')
        {
            continue;
        }
        let path = path.trim();
        if !path.starts_with('/') {
            continue;
        }
        out.push(LsattrEntry {
            flags: flags.to_owned(),
            path: path.to_owned(),
            quote: Quote::new("lsattr.txt", i, line),
        });
    }
    if out.is_empty()
        && !text.trim().is_empty()
        && !text
            .lines()
            .all(|l| l.ends_with(':') || l.trim().is_empty() || l.starts_with("lsattr:"))
    {
        return Err("no `lsattr` lines found".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct MountinfoEntry {
    /// From the `/proc/PID/mountinfo:` prefix of `grep -H`; None for a bare mountinfo line.
    pub pid: Option<u32>,
    pub mount_id: u64,
    pub root: String,
    pub mount_point: String,
    /// The optional fields (`shared:N`, `master:N`, ...): a `master:` copy is a
    /// propagation slave, which goes away by itself when its master is unmounted.
    pub propagation: String,
    pub fs_type: String,
    pub source: String,
    /// The super options (`rw,lowerdir=...,upperdir=...,workdir=...` for overlay).
    pub super_options: String,
    pub quote: Quote,
}

impl MountinfoEntry {
    /// The writable layer of an overlay mount (`upperdir=`).
    pub fn upperdir(&self) -> Option<&str> {
        self.super_options
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
    }
}

pub fn mountinfo(text: &str) -> Result<Vec<MountinfoEntry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let (pid, rest) = match line
            .strip_prefix("/proc/")
            .and_then(|r| r.split_once("/mountinfo:"))
        {
            Some((pid, rest)) => match pid.parse() {
                Ok(pid) => (Some(pid), rest),
                Err(_) => continue, // /proc/self, /proc/thread-self
            },
            None => (None, line),
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if sep < 6 || f.len() < sep + 3 {
            continue;
        }
        let Ok(mount_id) = f[0].parse() else { continue };
        out.push(MountinfoEntry {
            pid,
            mount_id,
            root: f[3].to_owned(),
            mount_point: f[4].to_owned(),
            propagation: f[6..sep].join(" "),
            fs_type: f[sep + 1].to_owned(),
            source: f[sep + 2].to_owned(),
            super_options: f.get(sep + 3).map(|s| (*s).to_owned()).unwrap_or_default(),
            quote: Quote::new("mountinfo.txt", i, line),
        });
    }
    if out.is_empty() && !text.trim().is_empty() {
        return Err("no mountinfo lines found".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct PsEntry {
    pub pid: u32,
    pub ppid: u32,
    pub stat: String,
    pub started: String,
    pub args: String,
    pub quote: Quote,
}

impl PsEntry {
    /// Stopped by a signal (SIGSTOP) or frozen: state `T`. (The cgroup freezer shows `D`.)
    pub fn stopped(&self) -> bool {
        self.stat.starts_with('T')
    }

    /// The program's base name, `containerd` for `/usr/bin/containerd --config x`.
    pub fn program(&self) -> &str {
        let first = self.args.split_whitespace().next().unwrap_or("");
        first.rsplit('/').next().unwrap_or(first)
    }
}

pub fn ps(text: &str) -> Result<Vec<PsEntry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // pid ppid stat + lstart's five words (`Sat Nov 28 11:35:40 2026`) + args
        if f.len() < 9 {
            continue;
        }
        let (Ok(pid), Ok(ppid)) = (f[0].parse(), f[1].parse()) else {
            continue;
        };
        out.push(PsEntry {
            pid,
            ppid,
            stat: f[2].to_owned(),
            started: f[3..8].join(" "),
            args: f[8..].join(" "),
            quote: Quote::new("ps.txt", i, line),
        });
    }
    if out.is_empty() && !text.trim().is_empty() {
        return Err("no `ps -eo pid,ppid,stat,lstart,args` rows found".into());
    }
    Ok(out)
}

/// Splits a table printed with aligned columns by the start offsets of its header's
/// column names, searched in order (so `POD` is found after `POD ID`). Several tools
/// (crictl, docker) put spaces inside both header names (`CONTAINER ID`) and values
/// (`2 minutes ago`), so whitespace splitting cannot work. Columns after the required
/// ones are optional: tool versions differ in their last columns.
fn table(text: &str, required: &[&str], optional: &[&str]) -> Option<Vec<(usize, Vec<String>)>> {
    let mut lines = text.lines().enumerate();
    let (_, header) = lines
        .by_ref()
        .find(|(_, l)| l.trim_start().starts_with(required[0]))?;
    let mut starts = Vec::new();
    let mut from = 0;
    for (k, name) in required.iter().chain(optional).enumerate() {
        // A column name starts the line or follows two spaces of padding.
        let found = header[from..]
            .match_indices(name)
            .map(|(i, _)| from + i)
            .find(|&i| i == 0 || header[..i].ends_with("  ") || header[..i].ends_with('\t'));
        match found {
            Some(i) => {
                starts.push(i);
                from = i + name.len();
            }
            None if k < required.len() => return None,
            None => break,
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cell = |k: usize| -> String {
            let from = starts[k].min(line.len());
            let to = starts
                .get(k + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            line.get(from..to).unwrap_or("").trim().to_owned()
        };
        rows.push((i, (0..starts.len()).map(cell).collect()));
    }
    Some(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct CrictlRow {
    pub container_id: String,
    pub state: String,
    pub name: String,
    pub pod_id: String,
    /// Empty on crictl versions that print no POD column.
    pub pod: String,
    /// Empty on crictl versions that print no NAMESPACE column.
    pub namespace: String,
    pub quote: Quote,
}

pub fn crictl_ps(text: &str) -> Result<Vec<CrictlRow>, ParseError> {
    let required = [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
    ];
    let Some(rows) = table(text, &required, &["POD", "NAMESPACE"]) else {
        return if text.trim().is_empty() {
            Ok(Vec::new())
        } else {
            Err("no `crictl ps` header".into())
        };
    };
    let all: Vec<&str> = text.lines().collect();
    Ok(rows
        .into_iter()
        .filter_map(|(i, cells)| {
            let first = |k: usize| {
                cells
                    .get(k)
                    .and_then(|c| c.split_whitespace().next())
                    .unwrap_or("")
                    .to_owned()
            };
            Some(CrictlRow {
                container_id: cells[0].split_whitespace().next()?.to_owned(),
                state: first(3),
                name: first(4),
                pod_id: first(6),
                pod: first(7),
                namespace: first(8),
                quote: Quote::new("crictl-ps.txt", i, all[i]),
            })
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct CtrTask {
    pub id: String,
    pub pid: u32,
    pub status: String,
    pub quote: Quote,
}

pub fn ctr_tasks(text: &str) -> Result<Vec<CtrTask>, ParseError> {
    let mut out = Vec::new();
    let mut header = false;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"TASK") {
            header = true;
            continue;
        }
        if f.len() == 3 {
            if let Ok(pid) = f[1].parse() {
                out.push(CtrTask {
                    id: f[0].to_owned(),
                    pid,
                    status: f[2].to_owned(),
                    quote: Quote::new("ctr-tasks.txt", i, line),
                });
            }
        }
    }
    if !header && out.is_empty() && !text.trim().is_empty() {
        return Err("no `ctr task ls` header (TASK PID STATUS)".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct DockerPsRow {
    pub id: String,
    pub status: String,
    pub names: String,
    pub quote: Quote,
}

impl DockerPsRow {
    pub fn up(&self) -> bool {
        self.status.starts_with("Up")
    }
}

pub fn docker_ps(text: &str) -> Result<Vec<DockerPsRow>, ParseError> {
    let Some(rows) = table(
        text,
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &[],
    ) else {
        return if text.trim().is_empty() {
            Ok(Vec::new())
        } else {
            Err("no `docker ps` header".into())
        };
    };
    Ok(rows
        .into_iter()
        .filter_map(|(i, cells)| {
            let line = text.lines().nth(i)?;
            Some(DockerPsRow {
                id: cells[0].split_whitespace().next()?.to_owned(),
                status: cells[4].clone(),
                names: line.split_whitespace().last().unwrap_or("").to_owned(),
                quote: Quote::new("docker-ps.txt", i, line),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests;

/// A process's reference into the filesystem: `ls -l /proc/*/cwd /proc/*/root /proc/*/fd/*`
/// lines (`lrwxrwxrwx 1 root root 0 Nov 28 11:46 /proc/123/cwd -> /path`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcRef {
    pub pid: u32,
    /// `cwd`, `root` or `fd/N`.
    pub link: String,
    pub target: String,
    pub quote: Quote,
}

pub fn proc_refs(text: &str) -> Result<Vec<ProcRef>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(at) = line.find("/proc/") else {
            continue;
        };
        let Some((link, target)) = line[at + 6..].split_once(" -> ") else {
            continue;
        };
        let Some((pid, link)) = link.split_once('/') else {
            continue;
        };
        let Ok(pid) = pid.parse() else { continue };
        out.push(ProcRef {
            pid,
            link: link.to_owned(),
            target: target.trim().to_owned(),
            quote: Quote::new("proc-refs.txt", i, line),
        });
    }
    if out.is_empty() && !text.trim().is_empty() {
        return Err("no `/proc/PID/... -> target` lines found".into());
    }
    Ok(out)
}

/// A cgroup control file of the pod's, as `grep -H . FILE` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupFile {
    /// `cgroup.procs`: one pid per line.
    Procs,
    /// cgroup v1's `freezer.state`: THAWED, FREEZING or FROZEN.
    FreezerState,
    /// cgroup v2's `cgroup.freeze`: 0 or 1.
    Freeze,
}

impl CgroupFile {
    const ALL: [(CgroupFile, &'static str); 3] = [
        (CgroupFile::Procs, "cgroup.procs"),
        (CgroupFile::FreezerState, "freezer.state"),
        (CgroupFile::Freeze, "cgroup.freeze"),
    ];
}

/// One `DIR/FILE:VALUE` line of `pod-cgroups.txt`.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupLine {
    /// The cgroup directory (`/sys/fs/cgroup/freezer/kubepods/besteffort/podUID/x`).
    pub dir: String,
    pub file: CgroupFile,
    pub value: String,
    pub quote: Quote,
}

impl CgroupLine {
    /// A freezer file that says the cgroup is (being) frozen.
    pub fn frozen(&self) -> bool {
        match self.file {
            CgroupFile::FreezerState => matches!(self.value.as_str(), "FROZEN" | "FREEZING"),
            CgroupFile::Freeze => self.value == "1",
            CgroupFile::Procs => false,
        }
    }

    /// The directory lies in the cgroup of the pod with `uid`: one of its components is
    /// the pod's (`pod<uid>` with the cgroupfs driver, `...-pod<uid with _>.slice` with
    /// systemd's).
    pub fn of_pod(&self, uid: &str) -> bool {
        pod_cgroup_dir(&self.dir, uid)
    }

    /// The pid of a `cgroup.procs` line.
    pub fn pid(&self) -> Option<u32> {
        (self.file == CgroupFile::Procs)
            .then(|| self.value.parse().ok())
            .flatten()
    }
}

/// `dir` lies in the cgroup of the pod with `uid` (see [`CgroupLine::of_pod`]).
pub fn pod_cgroup_dir(dir: &str, uid: &str) -> bool {
    if uid.is_empty() {
        return false;
    }
    let systemd = format!("pod{}.slice", uid.replace('-', "_"));
    let cgroupfs = format!("pod{uid}");
    dir.split('/')
        .any(|c| c == cgroupfs || (c.ends_with(&systemd) && c.starts_with("kube")))
}

/// `grep -H . DIR/cgroup.procs DIR/freezer.state ...` output. The value is what follows
/// the file name's `:`, so a directory holding `:` still parses; lines for other files
/// are skipped.
pub fn pod_cgroups(text: &str) -> Result<Vec<CgroupLine>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let found = CgroupFile::ALL.iter().find_map(|(file, name)| {
            let at = line.find(&format!("/{name}:"))?;
            Some((*file, &line[..at], &line[at + name.len() + 2..]))
        });
        let Some((file, dir, value)) = found else {
            continue;
        };
        if !dir.starts_with('/') {
            continue;
        }
        out.push(CgroupLine {
            dir: dir.to_owned(),
            file,
            value: value.trim().to_owned(),
            quote: Quote::new("pod-cgroups.txt", i, line),
        });
    }
    if out.is_empty() && !text.trim().is_empty() {
        return Err("no `DIR/cgroup.procs:PID` or `DIR/freezer.state:STATE` lines found".into());
    }
    Ok(out)
}

/// The capture time: RFC 3339 (`date -u +%Y-%m-%dT%H:%M:%SZ`, offsets allowed), RFC 2822
/// (`date -R`), plain
/// `date` output in UTC/GMT or with a numeric offset (`Wed Dec  2 01:09:01 UTC 2026`), or
/// epoch seconds (`date +%s`). A zone abbreviation other than UTC/GMT is ambiguous
/// (CST is three zones) and refused.
pub fn captured_at(text: &str) -> Result<DateTime<Utc>, ParseError> {
    let t = text.trim();
    // RFC 3339 (`date -u +%FT%TZ`, `date -Iseconds`, `date --rfc-3339=seconds`) and
    // RFC 2822 (`date -R`).
    if let Ok(d) = DateTime::parse_from_rfc3339(t).or_else(|_| DateTime::parse_from_rfc2822(t)) {
        return Ok(d.with_timezone(&Utc));
    }
    if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(d) = t
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
        {
            return Ok(d);
        }
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    if let [_, month, day, time, zone, year] = words[..] {
        let naive = format!("{month} {day} {time} {year}");
        let naive = chrono::NaiveDateTime::parse_from_str(&naive, "%b %d %H:%M:%S %Y").ok();
        let offset = match zone {
            "UTC" | "GMT" | "Z" => chrono::FixedOffset::east_opt(0),
            z => chrono::DateTime::parse_from_str(
                &format!("2000-01-01 00:00:00 {z}"),
                "%Y-%m-%d %H:%M:%S %z",
            )
            .ok()
            .map(|d| *d.offset()),
        };
        if let (Some(naive), Some(offset)) = (naive, offset) {
            if let Some(d) = naive.and_local_timezone(offset).single() {
                return Ok(d.with_timezone(&Utc));
            }
        }
    }
    Err(ParseError::at(
        1,
        format!(
            "`{}` is not a time terminus understands (RFC 3339, `date -R`, `date` in UTC or with a numeric offset, or epoch seconds)",
            excerpt(t)
        ),
    ))
}
