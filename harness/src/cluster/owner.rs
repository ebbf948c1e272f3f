//! Ownership: which kind clusters terminus created, told by a record directory per
//! cluster plus a read-only bind mount of it in every node container.
//!
//! Architecture invariant: a cluster is [`Ownership::Ours`] only when its record exists
//! *and* every node container mounts that record at [`OWNER_MOUNT`]; anything else is
//! foreign, and `down`/`gc` never delete it.
//! Architecture invariant: only names starting with [`NAME_PREFIX`] are ever created.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::{ClusterError, Result};
use super::tools::{docker_binary, run};
use super::{NAME_PREFIX, OWNER_MOUNT, STATE_ENV};

// Names, images, state

/// Checks that `name` is a cluster name terminus may create: `terminus-` followed by
/// lowercase letters, digits and dashes (kind and docker accept those).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ClusterError::BadName {
            name: name.into(),
            why: why.into(),
        })
    };
    let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
        return bad("terminus only manages clusters named terminus-*");
    };
    if rest.is_empty() || name.len() > 50 {
        return bad("needs 1 to 41 characters after `terminus-`");
    }
    if !rest
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || rest.ends_with('-')
    {
        return bad("use lowercase letters, digits and inner dashes only");
    }
    Ok(())
}
/// Where cluster records live: `$TERMINUS_STATE_DIR`, else `/var/lib/terminus`.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/lib/terminus"), PathBuf::from)
}

pub(super) fn record_dir(name: &str) -> PathBuf {
    state_dir().join("clusters").join(name)
}

/// Whether a kind cluster is one terminus created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Record present and every node container mounts it.
    Ours,
    /// Node containers exist but at least one lacks our mount, or there is no record.
    Foreign(String),
    /// No node containers (deleted, or never created).
    Gone,
}

/// Names of the node containers of kind cluster `name` (also what `gc` sweeps).
pub fn cluster_nodes(name: &str) -> Result<Vec<String>> {
    node_containers(&docker_binary()?, name)
}

fn node_containers(docker: &Path, name: &str) -> Result<Vec<String>> {
    ps_cluster(docker, name, "{{.Names}}")
}

/// True when every node container of cluster `name` is running.
pub(super) fn all_running(name: &str) -> Result<bool> {
    let states = ps_cluster(&docker_binary()?, name, "{{.State}}")?;
    Ok(states.iter().all(|state| state == "running"))
}

/// One `docker ps --format FORMAT` line per node container of kind cluster `name`.
fn ps_cluster(docker: &Path, name: &str, format: &str) -> Result<Vec<String>> {
    let out = run(Command::new(docker).args([
        "ps",
        "-a",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={name}"),
        "--format",
        format,
    ]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Decides [`Ownership`] of cluster `name` from its record and its containers' mounts.
pub fn ownership(name: &str) -> Result<Ownership> {
    let docker = docker_binary()?;
    let containers = node_containers(&docker, name)?;
    if containers.is_empty() {
        return Ok(Ownership::Gone);
    }
    let record = record_dir(name);
    if !record.join("record.json").is_file() {
        return Ok(Ownership::Foreign(format!(
            "no record {}",
            record.join("record.json").display()
        )));
    }
    let want = record.canonicalize().unwrap_or(record);
    for c in &containers {
        let mounts = run(Command::new(&docker).args([
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Source}} {{.Destination}}\n{{end}}",
            c,
        ]))?;
        if !mounts_record(&mounts, &want) {
            return Ok(Ownership::Foreign(format!(
                "node container {c} has no {OWNER_MOUNT} mount of {}",
                want.display()
            )));
        }
    }
    Ok(Ownership::Ours)
}

/// True when `docker inspect` mount lines (`SOURCE DESTINATION`) include `record`
/// mounted at [`OWNER_MOUNT`].
pub fn mounts_record(mount_lines: &str, record: &Path) -> bool {
    mount_lines.lines().any(|l| {
        let mut it = l.split_whitespace();
        matches!((it.next(), it.next()), (Some(src), Some(dst)) if dst == OWNER_MOUNT && Path::new(src) == record)
    })
}

/// The `record.json` terminus writes when it creates a cluster; its presence (with the
/// mount) is what makes a cluster ours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub name: String,
    /// The `--image` given to kind; `None` for kind's default.
    pub image: Option<String>,
    pub workers: u32,
    /// RFC 3339.
    pub created_at: String,
    /// Always "terminus".
    pub created_by: String,
}

impl Record {
    /// A record for a cluster created now.
    pub fn new(name: &str, image: Option<&str>, workers: u32) -> Record {
        Record {
            name: name.into(),
            image: image.map(String::from),
            workers,
            created_at: chrono::Utc::now().to_rfc3339(),
            created_by: "terminus".into(),
        }
    }

    /// The file text: pretty JSON and a final newline.
    pub fn render(&self) -> String {
        let json = serde_json::to_string_pretty(self).expect("a record serialises");
        format!("{json}\n")
    }

    /// Reads a record back from its file text.
    pub fn parse(text: &str) -> serde_json::Result<Record> {
        serde_json::from_str(text)
    }

    /// Reads `record.json` from `dir`; None when it is missing or unreadable.
    pub fn read(dir: &Path) -> Option<Record> {
        let text = std::fs::read_to_string(dir.join("record.json")).ok()?;
        Record::parse(&text).ok()
    }

    /// Writes `record.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("record.json");
        std::fs::write(&path, self.render()).map_err(super::error::io_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_carry_the_prefix() {
        assert!(validate_name("terminus-dev").is_ok());
        assert!(validate_name("terminus-a1-b2").is_ok());
        assert!(validate_name("kind").is_err());
        assert!(validate_name("terminus-").is_err());
        assert!(validate_name("terminus-Dev").is_err());
        assert!(validate_name("terminus-dev-").is_err());
    }

    #[test]
    fn ownership_needs_our_record_at_our_mount() {
        let record = Path::new("/var/lib/terminus/clusters/terminus-dev");
        let inspected =
            "/lib/modules /lib/modules\n/var/lib/terminus/clusters/terminus-dev /terminus/owner\n";
        assert!(mounts_record(inspected, record));
        assert!(!mounts_record(
            inspected,
            Path::new("/var/lib/terminus/clusters/terminus-other")
        ));
        assert!(!mounts_record(
            "/var/lib/terminus/clusters/terminus-dev /elsewhere\n",
            record
        ));
        assert!(!mounts_record("", record));
    }

    #[test]
    fn record_round_trips() {
        let r = Record::new("terminus-dev", Some("terminus/kind-node:v1.34.4"), 1);
        let text = r.render();
        assert!(text.ends_with("}\n"));
        assert_eq!(Record::parse(&text).expect("parses"), r);
        // The shape earlier versions wrote (serde_json::json!, keys sorted) still reads.
        let old = r#"{
  "created_at": "2026-11-30T10:00:00+00:00",
  "created_by": "terminus",
  "image": null,
  "name": "terminus-x",
  "workers": 0
}"#;
        let parsed = Record::parse(old).expect("old record parses");
        assert_eq!(parsed.image, None);
        assert_eq!(parsed.created_by, "terminus");
    }
}
