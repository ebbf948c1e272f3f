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
//!
//! Modules: [`tools`] (the kind and docker CLIs), [`image`] (node image choice),
//! [`config`] (the kind configuration), [`owner`] (ownership records), [`lifecycle`]
//! (up, open, wait Ready, down, list), [`cli`] (`terminus cluster ...`).
//!
//! Architecture invariant: `down`/`gc` never delete a cluster without terminus's
//! ownership record, and never one whose name lacks [`NAME_PREFIX`].
//! Architecture invariant: the kind configuration has one source,
//! `images/kind-node/kind-config.yaml`, which [`config::kind_config`] extends.
//! Architecture invariant: library code here does not print; progress goes through
//! `tracing`, command results are returned to `main.rs`.

pub mod cli;
pub mod config;
pub mod error;
pub mod image;
pub mod lifecycle;
pub mod owner;
pub mod tools;

pub use cli::{run_cli, ClusterCommand};
pub use config::kind_config;
pub use error::{ClusterError, Result};
pub use image::{choose_node_image, pick_offline, NodeImage};
pub use lifecycle::{down, list, up, wait_ready, Cluster, ClusterInfo, UpOptions};
pub use owner::{cluster_nodes, ownership, state_dir, validate_name, Ownership};
pub use tools::{kind_binary, kind_clusters, load_image};

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
/// Where each node of a terminus cluster mounts its record directory.
pub const OWNER_MOUNT: &str = "/terminus/owner";
/// Kubernetes node label set on every node terminus creates.
pub const NODE_LABEL: &str = "terminus.dev/managed";
