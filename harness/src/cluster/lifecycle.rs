//! Cluster lifecycle: create or reuse ([`up`]), open, wait Ready, delete ([`down`]),
//! list.
//!
//! Architecture invariant: `down` (and so `gc`) never deletes a cluster without
//! terminus's ownership record and mount ([`super::owner`]).
//! Architecture invariant: every wait for the cluster has a deadline ([`UpOptions::timeout`]),
//! and its timeout says what it saw last.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{info, warn};

use super::config::kind_config;
use super::error::{io_err, ClusterError, Result};
use super::image::{choose_node_image, NodeImage};
use super::owner::{
    all_running, ownership, record_dir, state_dir, validate_name, Ownership, Record,
};
use super::tools::{delete_cluster, kind_binary, kind_clusters, write_kubeconfig};
use super::DEFAULT_NAME;
use crate::wait::{self, Check, WaitError};

/// A running cluster terminus can talk to.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// The kubeconfig written for it (`<record>/kubeconfig`).
    pub kubeconfig: PathBuf,
    /// True when this call created it, false when an existing one was reused.
    pub created: bool,
    /// Time spent in `kind create cluster` plus waiting for Ready (zero when reused).
    pub create_time: Duration,
}

/// Options for [`up`].
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    /// `--image`; `None` lets [`choose_node_image`] decide.
    pub image: Option<String>,
    pub workers: u32,
    /// Deadline for the cluster to answer and every node to be Ready.
    pub timeout: Duration,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            name: DEFAULT_NAME.into(),
            image: None,
            workers: 0,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Creates cluster `opts.name` or reuses it when terminus created it earlier; waits
/// until the API answers and every node is Ready.
pub async fn up(opts: &UpOptions) -> Result<Cluster> {
    validate_name(&opts.name)?;
    let kind = kind_binary()?;
    let started = Instant::now();
    if kind_clusters()?.iter().any(|c| c == &opts.name) {
        if let Some(reused) = reuse(&kind, opts).await? {
            return Ok(reused);
        }
    }
    create(&kind, opts, started).await
}

/// An existing cluster named `opts.name`: reused when ours and healthy (`Some`), deleted
/// when ours but stopped or unhealthy (`None`: create it afresh), refused when foreign.
async fn reuse(kind: &Path, opts: &UpOptions) -> Result<Option<Cluster>> {
    let name = opts.name.as_str();
    match ownership(name)? {
        Ownership::Ours if !all_running(name)? => {
            // Left over from an earlier session (dockerd restarted, nodes stopped): a
            // stopped kind node does not come back cleanly, so start over.
            info!("cluster {name} has stopped nodes; deleting and recreating it");
            delete_cluster(kind, name)?;
            Ok(None)
        }
        Ownership::Ours => {
            // A kept cluster keeps its workers: fewer than asked for means fewer trials
            // at once, not a new cluster (delete it to get more).
            let workers = kept_workers(name).unwrap_or(opts.workers);
            if workers < opts.workers {
                info!(
                    "reusing cluster {name}: it has {workers} worker(s), {} wanted \
                     (`terminus cluster down --name {name}` to get them)",
                    opts.workers
                );
            } else {
                info!("reusing cluster {name}");
            }
            let kubeconfig = write_kubeconfig(kind, name, &record_dir(name))?;
            let cluster = Cluster {
                name: name.into(),
                kubeconfig,
                created: false,
                create_time: Duration::ZERO,
            };
            // A cluster whose nodes were restarted (dockerd restarted between
            // sessions) may come back with new addresses and never turn Ready:
            // give it a short deadline, then start over.
            let quick = opts.timeout.min(Duration::from_secs(60));
            let ready = match cluster.client().await {
                Ok(client) => {
                    wait_ready(&client, workers.min(opts.workers) as usize + 1, quick).await
                }
                Err(e) => Err(e),
            };
            match ready {
                Ok(()) => Ok(Some(cluster)),
                Err(e) => {
                    warn!("cluster {name} is not healthy ({e}); deleting and recreating it");
                    delete_cluster(kind, name)?;
                    Ok(None)
                }
            }
        }
        Ownership::Foreign(why) => Err(ClusterError::NotOurs {
            name: name.into(),
            why,
        }),
        Ownership::Gone => Ok(None),
    }
}

/// The workers a cluster terminus created was made with, from its record.
fn kept_workers(name: &str) -> Option<u32> {
    Record::read(&record_dir(name)).map(|r| r.workers)
}

/// Writes the record and config, runs `kind create cluster`, waits for Ready.
async fn create(kind: &Path, opts: &UpOptions, started: Instant) -> Result<Cluster> {
    let name = opts.name.as_str();
    let record = record_dir(name);
    let image = choose_node_image(opts.image.as_deref())?;
    info!("creating cluster {name} with {image}");
    std::fs::create_dir_all(&record).map_err(io_err(&record))?;
    let config_path = record.join("kind-config.yaml");
    let config = kind_config(
        &record.canonicalize().map_err(io_err(&record))?,
        opts.workers,
        image.is_terminus(),
    );
    std::fs::write(&config_path, config).map_err(io_err(&config_path))?;
    Record::new(name, image.image(), opts.workers).write(&record)?;
    if let Err(e) = kind_create(kind, name, &config_path, &image) {
        // kind removes a half-made cluster itself when a step fails (no --retain), but
        // not when it is killed (Ctrl-C reaches kind too): delete what it left, then
        // our record, so no node outlives the record that makes it ours.
        if let Err(also) = delete_cluster(kind, name) {
            warn!("removing the half-made cluster {name}: {also}");
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&record);
        return Err(e);
    }
    let kubeconfig = write_kubeconfig(kind, name, &record)?;
    let mut cluster = Cluster {
        name: name.into(),
        kubeconfig,
        created: true,
        create_time: Duration::ZERO,
    };
    let remaining = opts
        .timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(30));
    wait_ready(
        &cluster.client().await?,
        opts.workers as usize + 1,
        remaining,
    )
    .await?;
    cluster.create_time = started.elapsed();
    Ok(cluster)
}

/// `kind create cluster`, its progress shown on our stderr as it happens.
fn kind_create(kind: &Path, name: &str, config: &Path, image: &NodeImage) -> Result<()> {
    let mut cmd = Command::new(kind);
    cmd.args(["create", "cluster", "--name", name, "--config"])
        .arg(config);
    if let Some(i) = image.image() {
        cmd.args(["--image", i]);
    }
    // kind's own progress output, not ours: it goes straight to the terminal.
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| ClusterError::CommandFailed {
            command: format!("{} create cluster", kind.display()),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    if status.success() {
        return Ok(());
    }
    Err(ClusterError::CommandFailed {
        command: format!("kind create cluster --name {name}"),
        status: status.to_string(),
        output: format!("see kind's output above; to keep the nodes for `kind export logs --name {name}`, run kind by hand with --retain"),
    })
}

impl Cluster {
    /// A client for this cluster, from its kubeconfig file.
    pub async fn client(&self) -> Result<Client> {
        let kc = Kubeconfig::read_from(&self.kubeconfig).map_err(|e| ClusterError::Kubeconfig {
            name: self.name.clone(),
            detail: e.to_string(),
        })?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| ClusterError::Kubeconfig {
                name: self.name.clone(),
                detail: e.to_string(),
            })?;
        Ok(Client::try_from(config)?)
    }

    /// An existing cluster terminus created, by name (kubeconfig refreshed from kind).
    pub fn open(name: &str) -> Result<Cluster> {
        validate_name(name)?;
        match ownership(name)? {
            Ownership::Ours => {}
            Ownership::Gone => return Err(ClusterError::NoSuchCluster(name.into())),
            Ownership::Foreign(why) => {
                return Err(ClusterError::NotOurs {
                    name: name.into(),
                    why,
                })
            }
        }
        let kubeconfig = write_kubeconfig(&kind_binary()?, name, &record_dir(name))?;
        Ok(Cluster {
            name: name.into(),
            kubeconfig,
            created: false,
            create_time: Duration::ZERO,
        })
    }
}

pub(super) fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the API server answers and at least `nodes` nodes exist, all Ready.
pub async fn wait_ready(client: &Client, nodes: usize, timeout: Duration) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let what = format!("the API server to answer and {nodes} node(s) to be Ready");
    // API errors are observations, not failures: the server is still coming up.
    wait::until(&what, timeout, || async {
        Ok::<_, ClusterError>(match client.apiserver_version().await {
            Err(e) => Check::Pending(format!("API server not answering: {e}")),
            Ok(_) => match api.list(&ListParams::default()).await {
                Err(e) => Check::Pending(format!("listing nodes failed: {e}")),
                Ok(list) => nodes_ready(&list.items, nodes),
            },
        })
    })
    .await
    .map_err(|e| match e {
        WaitError::Timeout(t) => t.into(),
        WaitError::Check(e) => e,
    })
}

/// Done when at least `want` nodes exist and all are Ready; else how many are.
fn nodes_ready(items: &[Node], want: usize) -> Check<()> {
    let ready: Vec<&str> = items
        .iter()
        .filter(|n| node_ready(n))
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    if items.len() >= want && ready.len() == items.len() {
        return Check::Done(());
    }
    Check::Pending(format!(
        "{} of {} node(s) Ready (want {want}): {ready:?}",
        ready.len(),
        items.len()
    ))
}

/// Deletes cluster `name` if terminus created it, and its record. Deleting a cluster
/// that no longer exists only removes the record.
pub fn down(name: &str) -> Result<()> {
    validate_name(name)?;
    let kind = kind_binary()?;
    let record = record_dir(name);
    match ownership(name)? {
        Ownership::Foreign(why) => {
            return Err(ClusterError::NotOurs {
                name: name.into(),
                why,
            })
        }
        Ownership::Gone if !record.exists() => {
            return Err(ClusterError::NoSuchCluster(name.into()))
        }
        Ownership::Gone => {}
        Ownership::Ours => {
            delete_cluster(&kind, name)?;
        }
    }
    std::fs::remove_dir_all(&record).map_err(io_err(&record))
}

/// One line of `terminus cluster list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    /// "ours", "foreign: <why>", or "record only" (record left, cluster gone).
    pub owner: String,
}

/// Every kind cluster on the machine plus records of terminus clusters that are gone.
pub fn list() -> Result<Vec<ClusterInfo>> {
    let mut out = Vec::new();
    let names = kind_clusters()?;
    for name in &names {
        let owner = match ownership(name)? {
            Ownership::Ours => "ours".to_string(),
            Ownership::Foreign(why) => format!("foreign: {why}"),
            Ownership::Gone => "no node containers".to_string(),
        };
        out.push(ClusterInfo {
            name: name.clone(),
            owner,
        });
    }
    if let Ok(rd) = std::fs::read_dir(state_dir().join("clusters")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !names.contains(&name) {
                out.push(ClusterInfo {
                    name,
                    owner: "record only (cluster gone; `cluster down` removes it)".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
