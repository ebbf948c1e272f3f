//! Which node image a new cluster gets: explicit, offline (built locally), or kind's
//! default.
//!
//! Architecture invariant: choosing an image never pulls from a registry; it only asks
//! the local docker image store ([`pick_offline`] is the pure part).

use std::fmt;
use std::process::Command;

use super::error::{ClusterError, Result};
use super::tools::{docker_binary, run};
use super::{IMAGE_ENV, OFFLINE_IMAGE_REPO};

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

/// Picks the node image: `flag`, else `$TERMINUS_NODE_IMAGE`, else the cell's image
/// (ci/cells; `TERMINUS_CELL` or the default cell) when it is in the local image store.
/// A cell named by `TERMINUS_CELL` whose image is missing is an error; for the default
/// cell the highest local `terminus/kind-node:*` serves instead, else kind's default.
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
    let (cell, named) = crate::cell::selected()?;
    let docker = docker_binary()?;
    let listed = run(Command::new(docker).args([
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        OFFLINE_IMAGE_REPO,
    ]))
    .map_err(|e| ClusterError::DockerMissing(e.to_string()))?;
    let wanted = cell.image();
    if named && !listed.lines().any(|l| l.trim() == wanted) {
        return Err(ClusterError::CellImageMissing {
            cell: cell.name,
            image: wanted,
        });
    }
    Ok(pick_offline(&wanted, listed.lines()).map_or(NodeImage::KindDefault, NodeImage::Offline))
}

/// From `repo:tag` lines, the preferred offline image: `wanted` if listed, else the
/// highest version.
pub fn pick_offline<'a>(wanted: &str, tags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut found: Vec<(semver::Version, String)> = Vec::new();
    for t in tags {
        let t = t.trim();
        if t == wanted {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_image_preference() {
        let wanted = "terminus/kind-node:v1.34.4-trixie";
        assert_eq!(
            pick_offline(wanted, ["terminus/kind-node:v1.37.2-forky", wanted]).as_deref(),
            Some(wanted)
        );
        assert_eq!(
            pick_offline(
                wanted,
                [
                    "terminus/kind-node:v1.34.2",
                    "terminus/kind-node:v1.35.4-forky",
                    "terminus/kind-node:<none>"
                ]
            )
            .as_deref(),
            Some("terminus/kind-node:v1.35.4-forky")
        );
        assert_eq!(pick_offline(wanted, ["kindest/node:v1.34.0"]), None);
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
