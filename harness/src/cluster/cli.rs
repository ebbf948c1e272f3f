//! `terminus cluster up|down|status|list`: the commands, returning what to print.
//!
//! Architecture invariant: nothing here prints; results go back to `main.rs` as text.

use std::fmt::Write as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::error::Result;
use super::lifecycle::{down, list, node_ready, up, Cluster, UpOptions};
use super::tools::load_image;
use super::{DEFAULT_NAME, IMAGE_ENV};

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

/// Runs a `terminus cluster` subcommand on a runtime of its own and returns what to
/// print on stdout; the caller maps an error to the exit code with
/// [`ClusterError::exit_code`](super::ClusterError::exit_code).
pub fn run_cli(cmd: ClusterCommand) -> Result<String> {
    let rt = tokio::runtime::Runtime::new().map_err(|source| super::ClusterError::Io {
        path: "the async runtime".into(),
        source,
    })?;
    rt.block_on(async {
        match cmd {
            ClusterCommand::Up {
                name,
                image,
                workers,
                timeout,
                load,
            } => {
                cli_up(
                    UpOptions {
                        name,
                        image,
                        workers,
                        timeout,
                    },
                    &load,
                )
                .await
            }
            ClusterCommand::Down { name } => {
                down(&name)?;
                Ok(format!("deleted {name}\n"))
            }
            ClusterCommand::Status { name } => cli_status(&name).await,
            ClusterCommand::List => cli_list(),
        }
    })
}

async fn cli_up(opts: UpOptions, load: &[String]) -> Result<String> {
    let c = up(&opts).await?;
    for i in load {
        load_image(&c.name, i)?;
    }
    Ok(if c.created {
        format!(
            "created {} in {:.1}s; kubeconfig {}\n",
            c.name,
            c.create_time.as_secs_f64(),
            c.kubeconfig.display()
        )
    } else {
        format!("reused {}; kubeconfig {}\n", c.name, c.kubeconfig.display())
    })
}

async fn cli_status(name: &str) -> Result<String> {
    let c = Cluster::open(name)?;
    let client = c.client().await?;
    let v = client.apiserver_version().await?;
    let mut out = format!(
        "{name}: ours, Kubernetes {}, kubeconfig {}\n",
        v.git_version,
        c.kubeconfig.display()
    );
    for n in Api::<Node>::all(client)
        .list(&ListParams::default())
        .await?
        .items
    {
        let ready = if node_ready(&n) { "Ready" } else { "NotReady" };
        let _ = writeln!(
            out,
            "  node {} {ready}",
            n.metadata.name.unwrap_or_default()
        );
    }
    Ok(out)
}

fn cli_list() -> Result<String> {
    let all = list()?;
    if all.is_empty() {
        return Ok("no kind clusters\n".into());
    }
    let mut out = String::new();
    for c in all {
        let _ = writeln!(out, "{:<30} {}", c.name, c.owner);
    }
    Ok(out)
}
