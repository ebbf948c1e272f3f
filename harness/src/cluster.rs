//! Cluster lifecycle: kind clusters that terminus creates, reuses and deletes.
//!
//! Everything goes through the `kind` and `docker` CLIs. The pieces:
//!
//! * [`kind_binary`]: `$KIND`, else `kind` on `PATH`; a missing binary is an error that
//!   says how to install it.
//! * [`choose_node_image`]: an explicit `--image` / `TERMINUS_NODE_IMAGE`, else the
//!   offline image `terminus/kind-node:*` when docker has it locally (built by
//!   `images/kind-node/build`, see `ci/bootstrap`), else kind's default image (which
//!   needs a registry).
//! * [`up`]: create a cluster named `terminus-*` or reuse one terminus created; wait for
//!   the API and every node to be Ready; hand back a [`Cluster`] with a kubeconfig.
//! * [`down`]: delete a cluster, but only one terminus created.
//!
//! Ownership: kind has no way to put extra labels on its node containers, so each
//! cluster terminus creates gets a record directory (`<state>/clusters/<name>/`,
//! state = `$TERMINUS_STATE_DIR` or `/var/lib/terminus`) and every node of it
//! bind-mounts that directory read-only at [`OWNER_MOUNT`] (kind `extraMounts`).
//! A cluster counts as ours only when the record exists *and* every node container
//! (`docker inspect`) carries that mount. `down` refuses anything else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Every cluster terminus creates has a name starting with this.
pub const NAME_PREFIX: &str = "terminus-";
/// The cluster name used when none is given.
pub const DEFAULT_NAME: &str = "terminus-dev";
/// Environment variable naming the node image to use.
pub const IMAGE_ENV: &str = "TERMINUS_NODE_IMAGE";
/// Environment variable naming the kind binary.
pub const KIND_ENV: &str = "KIND";
/// Environment variable naming the state directory (cluster records).
pub const STATE_ENV: &str = "TERMINUS_STATE_DIR";
/// Repository of the offline node images built by `images/kind-node/build`.
pub const OFFLINE_IMAGE_REPO: &str = "terminus/kind-node";
/// The offline image preferred when several versions are present (CI builds this one).
pub const DEFAULT_OFFLINE_IMAGE: &str = "terminus/kind-node:v1.34.4";
/// Where each node of a terminus cluster mounts its record directory.
pub const OWNER_MOUNT: &str = "/terminus/owner";
/// Kubernetes node label set on every node terminus creates.
pub const NODE_LABEL: &str = "terminus.dev/managed";
/// The kind version terminus is tested with.
pub const KIND_VERSION: &str = "v0.30.0";

/// What went wrong, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "kind not found: {detail}. Install it with `GOBIN=/usr/local/bin go install sigs.k8s.io/kind@{KIND_VERSION}` \
         (or run ci/bootstrap), or set KIND=/path/to/kind"
    )]
    KindMissing { detail: String },
    #[error("docker not found on PATH (or not answering): {0}. Run ci/bootstrap to install and start it")]
    DockerMissing(String),
    #[error("invalid cluster name {name:?}: {why}")]
    BadName { name: String, why: String },
    #[error(
        "cluster {name:?} exists but terminus did not create it ({why}); it is left alone. \
         Use another --name"
    )]
    NotOurs { name: String, why: String },
    #[error("no cluster named {0:?}")]
    NoSuchCluster(String),
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("kubeconfig of cluster {name:?}: {detail}")]
    Kubeconfig { name: String, detail: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------
// Tools

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The kind binary: `$KIND` when set, else `kind` on `PATH`.
pub fn kind_binary() -> Result<PathBuf> {
    match std::env::var_os(KIND_ENV) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(&v);
            if is_executable(&p) {
                Ok(p)
            } else if let Some(found) = (!p.to_string_lossy().contains('/'))
                .then(|| search_path(&p.to_string_lossy()))
                .flatten()
            {
                Ok(found)
            } else {
                Err(ClusterError::KindMissing {
                    detail: format!("KIND={} is not an executable file", p.display()),
                })
            }
        }
        _ => search_path("kind").ok_or_else(|| ClusterError::KindMissing {
            detail: "no `kind` on PATH".into(),
        }),
    }
}

fn docker_binary() -> Result<PathBuf> {
    search_path("docker").ok_or_else(|| ClusterError::DockerMissing("no `docker` on PATH".into()))
}

/// Runs a command, returning stdout; a non-zero exit becomes [`ClusterError::CommandFailed`]
/// carrying the tail of its output.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::CommandFailed {
            command: shown.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        Err(ClusterError::CommandFailed {
            command: shown,
            status: out.status.to_string(),
            output: tail(&text, 30),
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------
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

/// The node image a new cluster will use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeImage {
    /// Given on the command line or in `TERMINUS_NODE_IMAGE`.
    Explicit { image: String, source: &'static str },
    /// An offline image found in the local docker image store.
    Offline(String),
    /// Nothing local: let kind use its default (pulls `kindest/node` from a registry).
    KindDefault,
}

impl NodeImage {
    /// The `--image` value for kind, if any.
    pub fn image(&self) -> Option<&str> {
        match self {
            NodeImage::Explicit { image, .. } | NodeImage::Offline(image) => Some(image),
            NodeImage::KindDefault => None,
        }
    }

    /// True for terminus' own node images, which bring their pod network (terminus-cni)
    /// and so want `disableDefaultCNI` (kind's kindnetd image cannot be pulled offline).
    pub fn is_terminus(&self) -> bool {
        self.image()
            .is_some_and(|i| i.starts_with(&format!("{OFFLINE_IMAGE_REPO}:")))
    }
}

impl fmt::Display for NodeImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeImage::Explicit { image, source } => write!(f, "{image} (from {source})"),
            NodeImage::Offline(image) => write!(f, "{image} (offline image found locally)"),
            NodeImage::KindDefault => write!(f, "kind's default image (needs a registry; run ci/bootstrap to build the offline one)"),
        }
    }
}

/// Picks the node image: `flag`, else `$TERMINUS_NODE_IMAGE`, else a local
/// `terminus/kind-node:*` image (preferring [`DEFAULT_OFFLINE_IMAGE`], then the highest
/// version), else kind's default.
pub fn choose_node_image(flag: Option<&str>) -> Result<NodeImage> {
    if let Some(image) = flag.filter(|s| !s.is_empty()) {
        return Ok(NodeImage::Explicit {
            image: image.into(),
            source: "--image",
        });
    }
    if let Ok(image) = std::env::var(IMAGE_ENV) {
        if !image.is_empty() {
            return Ok(NodeImage::Explicit {
                image,
                source: IMAGE_ENV,
            });
        }
    }
    let docker = docker_binary()?;
    let listed = run(Command::new(docker).args([
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        OFFLINE_IMAGE_REPO,
    ]))
    .map_err(|e| ClusterError::DockerMissing(e.to_string()))?;
    Ok(pick_offline(listed.lines()).map_or(NodeImage::KindDefault, NodeImage::Offline))
}

/// From `repo:tag` lines, the preferred offline image.
pub fn pick_offline<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut found: Vec<(semver::Version, String)> = Vec::new();
    for t in tags {
        let t = t.trim();
        if t == DEFAULT_OFFLINE_IMAGE {
            return Some(t.to_string());
        }
        if let Some(v) = t
            .strip_prefix(OFFLINE_IMAGE_REPO)
            .and_then(|r| r.strip_prefix(":v"))
        {
            if let Ok(v) = semver::Version::parse(v) {
                found.push((v, t.to_string()));
            }
        }
    }
    found.into_iter().max().map(|(_, t)| t)
}

/// Where cluster records live: `$TERMINUS_STATE_DIR`, else `/var/lib/terminus`.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/var/lib/terminus"), PathBuf::from)
}

fn record_dir(name: &str) -> PathBuf {
    state_dir().join("clusters").join(name)
}

/// The kind configuration terminus creates clusters with: one control-plane node and
/// `workers` workers, each labelled and carrying the ownership mount.
pub fn kind_config(record: &Path, workers: u32, terminus_image: bool) -> String {
    let mut s = String::from(
        "# Written by terminus (harness/src/cluster.rs); see images/kind-node/kind-config.yaml.\n\
         kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  kubeProxyMode: iptables\n",
    );
    if terminus_image {
        s.push_str("  # the node image's terminus-cni service provides the pod network\n  disableDefaultCNI: true\n");
    }
    s.push_str("nodes:\n");
    let roles =
        std::iter::once("control-plane").chain(std::iter::repeat_n("worker", workers as usize));
    for role in roles {
        s.push_str(&format!(
            "  - role: {role}\n    labels:\n      {NODE_LABEL}: \"true\"\n    extraMounts:\n      - hostPath: {}\n        containerPath: {OWNER_MOUNT}\n        readOnly: true\n",
            record.display()
        ));
    }
    s.push_str(
        // runtimeRequestTimeout: a hung runtime shows as DeadlineExceeded within a
        // trial's hold time instead of kubelet's default 2 minutes.
        "kubeadmConfigPatches:\n  - |\n    kind: KubeletConfiguration\n    failCgroupV1: false\n    nodeStatusUpdateFrequency: 4s\n    runtimeRequestTimeout: 15s\n",
    );
    s
}

// ---------------------------------------------------------------------------------
// Ownership

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
    let out = run(Command::new(docker).args([
        "ps",
        "-a",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={name}"),
        "--format",
        "{{.Names}}",
    ]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// True when every node container of cluster `name` is running.
fn all_running(name: &str) -> Result<bool> {
    let docker = docker_binary()?;
    let out = run(Command::new(docker).args([
        "ps",
        "-a",
        "--filter",
        &format!("label=io.x-k8s.kind.cluster={name}"),
        "--format",
        "{{.State}}",
    ]))?;
    Ok(out.lines().all(|l| l.trim() == "running"))
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
        let has = mounts.lines().any(|l| {
            let mut it = l.split_whitespace();
            matches!((it.next(), it.next()), (Some(src), Some(dst)) if dst == OWNER_MOUNT && Path::new(src) == want)
        });
        if !has {
            return Ok(Ownership::Foreign(format!(
                "node container {c} has no {OWNER_MOUNT} mount of {}",
                want.display()
            )));
        }
    }
    Ok(Ownership::Ours)
}

// ---------------------------------------------------------------------------------
// Lifecycle

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

/// Names of the kind clusters on this machine.
pub fn kind_clusters() -> Result<Vec<String>> {
    let kind = kind_binary()?;
    let out = run(Command::new(kind).args(["get", "clusters"]))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No kind clusters"))
        .map(String::from)
        .collect())
}

fn write_kubeconfig(kind: &Path, name: &str, record: &Path) -> Result<PathBuf> {
    let text = run(Command::new(kind).args(["get", "kubeconfig", "--name", name]))?;
    let path = record.join("kubeconfig");
    std::fs::write(&path, text).map_err(io_err(&path))?;
    Ok(path)
}

/// Creates cluster `opts.name` or reuses it when terminus created it earlier; waits
/// until the API answers and every node is Ready.
pub async fn up(opts: &UpOptions) -> Result<Cluster> {
    validate_name(&opts.name)?;
    let kind = kind_binary()?;
    let name = opts.name.as_str();
    let record = record_dir(name);
    let started = Instant::now();

    if kind_clusters()?.iter().any(|c| c == name) {
        match ownership(name)? {
            Ownership::Ours if !all_running(name)? => {
                // Left over from an earlier session (dockerd restarted, nodes stopped): a
                // stopped kind node does not come back cleanly, so start over.
                eprintln!("terminus: cluster {name} has stopped nodes; deleting and recreating it");
                run(Command::new(&kind).args(["delete", "cluster", "--name", name]))?;
            }
            Ownership::Ours => {
                eprintln!("terminus: reusing cluster {name}");
                let kubeconfig = write_kubeconfig(&kind, name, &record)?;
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
                    Ok(client) => wait_ready(&client, opts.workers as usize + 1, quick).await,
                    Err(e) => Err(e),
                };
                match ready {
                    Ok(()) => return Ok(cluster),
                    Err(e) => {
                        eprintln!("terminus: cluster {name} is not healthy ({e}); deleting and recreating it");
                        run(Command::new(&kind).args(["delete", "cluster", "--name", name]))?;
                    }
                }
            }
            Ownership::Foreign(why) => {
                return Err(ClusterError::NotOurs {
                    name: name.into(),
                    why,
                })
            }
            Ownership::Gone => {}
        }
    }

    let image = choose_node_image(opts.image.as_deref())?;
    eprintln!("terminus: creating cluster {name} with {image}");
    std::fs::create_dir_all(&record).map_err(io_err(&record))?;
    let config_path = record.join("kind-config.yaml");
    let config = kind_config(
        &record.canonicalize().map_err(io_err(&record))?,
        opts.workers,
        image.is_terminus(),
    );
    std::fs::write(&config_path, config).map_err(io_err(&config_path))?;
    let rec = serde_json::json!({
        "name": name,
        "image": image.image(),
        "workers": opts.workers,
        "created_at": chrono::Utc::now().to_rfc3339(),
        "created_by": "terminus",
    });
    let rec_path = record.join("record.json");
    std::fs::write(&rec_path, format!("{rec:#}\n")).map_err(io_err(&rec_path))?;

    let mut cmd = Command::new(&kind);
    cmd.args(["create", "cluster", "--name", name, "--config"])
        .arg(&config_path);
    if let Some(i) = image.image() {
        cmd.args(["--image", i]);
    }
    // kind prints its progress on stderr; show it as it happens.
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
    if !status.success() {
        // kind removes the half-made cluster itself (no --retain); drop our record too.
        let _ = std::fs::remove_dir_all(&record);
        return Err(ClusterError::CommandFailed {
            command: format!("kind create cluster --name {name}"),
            status: status.to_string(),
            output: format!("see kind's output above; to keep the nodes for `kind export logs --name {name}`, run kind by hand with --retain"),
        });
    }
    let kubeconfig = write_kubeconfig(&kind, name, &record)?;
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

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the API server answers and at least `nodes` nodes exist, all Ready.
pub async fn wait_ready(client: &Client, nodes: usize, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let api: Api<Node> = Api::all(client.clone());
    let mut last;
    loop {
        match client.apiserver_version().await {
            Err(e) => last = format!("API server not answering: {e}"),
            Ok(_) => match api.list(&ListParams::default()).await {
                Err(e) => last = format!("listing nodes failed: {e}"),
                Ok(list) => {
                    let ready: Vec<&str> = list
                        .items
                        .iter()
                        .filter(|n| node_ready(n))
                        .filter_map(|n| n.metadata.name.as_deref())
                        .collect();
                    if list.items.len() >= nodes && ready.len() == list.items.len() {
                        return Ok(());
                    }
                    last = format!(
                        "{} of {} node(s) Ready (want {nodes}): {ready:?}",
                        ready.len(),
                        list.items.len()
                    );
                }
            },
        }
        if start.elapsed() >= timeout {
            return Err(ClusterError::Timeout {
                what: format!("the API server to answer and {nodes} node(s) to be Ready"),
                waited: timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
            run(Command::new(&kind).args(["delete", "cluster", "--name", name]))?;
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

// ---------------------------------------------------------------------------------
// Smoke check

/// Timings of [`smoke`].
#[derive(Debug, Clone)]
pub struct SmokeReport {
    pub running_after: Duration,
    pub gone_after: Duration,
}

/// Creates a pod running `image` (`sleep`), waits for Running, deletes it and waits
/// until it is gone. The image must already be on the nodes (`kind load docker-image`),
/// so the pod uses `imagePullPolicy: Never`.
pub async fn smoke(
    client: &Client,
    namespace: &str,
    image: &str,
    timeout: Duration,
) -> Result<SmokeReport> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let name = format!("terminus-smoke-{}", std::process::id());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app.kubernetes.io/managed-by": "terminus" } },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sleep", "3600"]
            }]
        }
    }))
    .expect("static pod manifest");
    let start = Instant::now();
    pods.create(&PostParams::default(), &pod).await?;
    let mut last;
    loop {
        let p = pods.get(&name).await?;
        let status = p.status.unwrap_or_default();
        let phase = status.phase.unwrap_or_default();
        if phase == "Running" {
            break;
        }
        last = format!(
            "phase {phase:?}; {}",
            status
                .container_statuses
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .collect::<Vec<_>>()
                .join(",")
        );
        if start.elapsed() > timeout {
            let _ = pods.delete(&name, &DeleteParams::default()).await;
            return Err(ClusterError::Timeout {
                what: format!("pod {namespace}/{name} to be Running"),
                waited: timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let running_after = start.elapsed();
    pods.delete(&name, &DeleteParams::default()).await?;
    loop {
        match pods.get_opt(&name).await? {
            None => break,
            Some(p) => {
                last = format!(
                    "still present, deletionTimestamp {:?}",
                    p.metadata.deletion_timestamp.map(|t| t.0.to_string())
                )
            }
        }
        if start.elapsed() > timeout * 2 {
            return Err(ClusterError::Timeout {
                what: format!("pod {namespace}/{name} to be gone"),
                waited: timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(SmokeReport {
        running_after,
        gone_after: start.elapsed(),
    })
}

/// Loads a local docker image into every node of cluster `name` (`kind load docker-image`).
pub fn load_image(name: &str, image: &str) -> Result<()> {
    let kind = kind_binary()?;
    run(Command::new(kind).args(["load", "docker-image", "--name", name, image]))?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// Command line: `terminus cluster up|down|status|list`

/// The `terminus cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Create a kind cluster (or reuse the one terminus made) and wait until it is Ready.
    Up {
        /// Cluster name; must start with `terminus-`.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Node image; default: $TERMINUS_NODE_IMAGE, else a local terminus/kind-node:*, else kind's default.
        #[arg(long, env = IMAGE_ENV)]
        image: Option<String>,
        /// Extra worker nodes besides the control plane.
        #[arg(long, default_value_t = 0)]
        workers: u32,
        /// How long to wait for the API and the nodes, e.g. 5m.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// After Ready, load this local docker image into the nodes (e.g. terminus/busybox:latest).
        #[arg(long, value_name = "IMAGE")]
        load: Vec<String>,
    },
    /// Delete a cluster terminus created (refuses any other).
    Down {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Show whether a cluster exists, who owns it, and its nodes.
    Status {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// List kind clusters, marking the ones terminus created.
    List,
}

/// Runs a `terminus cluster` subcommand; returns the process exit code
/// (0 ok, 2 bad input or not ours, 3 infrastructure failure).
pub fn run_cli(cmd: ClusterCommand) -> u8 {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 3;
        }
    };
    let result: Result<()> = rt.block_on(async {
        match cmd {
            ClusterCommand::Up {
                name,
                image,
                workers,
                timeout,
                load,
            } => {
                let c = up(&UpOptions {
                    name,
                    image,
                    workers,
                    timeout,
                })
                .await?;
                for i in &load {
                    load_image(&c.name, i)?;
                }
                if c.created {
                    println!(
                        "created {} in {:.1}s; kubeconfig {}",
                        c.name,
                        c.create_time.as_secs_f64(),
                        c.kubeconfig.display()
                    );
                } else {
                    println!("reused {}; kubeconfig {}", c.name, c.kubeconfig.display());
                }
                Ok(())
            }
            ClusterCommand::Down { name } => {
                down(&name)?;
                println!("deleted {name}");
                Ok(())
            }
            ClusterCommand::Status { name } => {
                let c = Cluster::open(&name)?;
                let client = c.client().await?;
                let v = client.apiserver_version().await?;
                println!(
                    "{name}: ours, Kubernetes {}, kubeconfig {}",
                    v.git_version,
                    c.kubeconfig.display()
                );
                for n in Api::<Node>::all(client)
                    .list(&ListParams::default())
                    .await?
                    .items
                {
                    let ready = if node_ready(&n) { "Ready" } else { "NotReady" };
                    println!("  node {} {ready}", n.metadata.name.unwrap_or_default());
                }
                Ok(())
            }
            ClusterCommand::List => {
                let all = list()?;
                if all.is_empty() {
                    println!("no kind clusters");
                }
                for c in all {
                    println!("{:<30} {}", c.name, c.owner);
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ClusterError::BadName { .. }
                | ClusterError::NotOurs { .. }
                | ClusterError::NoSuchCluster(_) => 2,
                _ => 3,
            }
        }
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
    fn offline_image_preference() {
        assert_eq!(
            pick_offline(["terminus/kind-node:v1.35.4", DEFAULT_OFFLINE_IMAGE]).as_deref(),
            Some(DEFAULT_OFFLINE_IMAGE)
        );
        assert_eq!(
            pick_offline([
                "terminus/kind-node:v1.34.2",
                "terminus/kind-node:v1.35.4",
                "terminus/kind-node:<none>"
            ])
            .as_deref(),
            Some("terminus/kind-node:v1.35.4")
        );
        assert_eq!(pick_offline(["kindest/node:v1.34.0"]), None);
    }

    #[test]
    fn config_marks_every_node() {
        let c = kind_config(Path::new("/var/lib/terminus/clusters/terminus-x"), 2, true);
        assert_eq!(c.matches("containerPath: /terminus/owner").count(), 3);
        assert_eq!(c.matches("role: worker").count(), 2);
        assert!(c.contains("disableDefaultCNI: true"));
        assert!(!kind_config(Path::new("/r"), 0, false).contains("disableDefaultCNI"));
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&c).expect("valid yaml");
        assert_eq!(
            parsed["nodes"][0]["extraMounts"][0]["readOnly"],
            serde_yaml_ng::Value::Bool(true)
        );
    }

    #[test]
    fn image_kinds() {
        assert!(NodeImage::Offline("terminus/kind-node:v1.34.4".into()).is_terminus());
        assert!(!NodeImage::Explicit {
            image: "kindest/node:v1.34.0".into(),
            source: "--image"
        }
        .is_terminus());
        assert_eq!(NodeImage::KindDefault.image(), None);
    }
}
