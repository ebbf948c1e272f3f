//! The kind configuration terminus creates clusters with.
//!
//! Architecture invariant: one source of truth. The settings (networking, node labels,
//! kubelet patches) live in `images/kind-node/kind-config.yaml`, which is also the file
//! people pass to `kind create cluster` by hand; [`kind_config`] only adds what a
//! harness cluster needs on top: the worker nodes, the ownership mount on every node,
//! and kindnetd back when the node image is not terminus's own.
//! Architecture invariant: rendering is pure (no IO), so it is unit-tested.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::{NODE_LABEL, OWNER_MOUNT};

/// `images/kind-node/kind-config.yaml`, compiled in.
pub const BASE_CONFIG: &str = include_str!("../../../images/kind-node/kind-config.yaml");

/// The kind configuration for a terminus cluster: [`BASE_CONFIG`] with one
/// control-plane node and `workers` workers, each labelled [`NODE_LABEL`] and carrying
/// the ownership mount of `record` at [`OWNER_MOUNT`]. `disableDefaultCNI` stays only
/// for terminus images, whose terminus-cni service provides the pod network (kind's
/// kindnetd image cannot be pulled offline, and other images need it).
pub fn kind_config(record: &Path, workers: u32, terminus_image: bool) -> String {
    let mut config: Value =
        serde_yaml_ng::from_str(BASE_CONFIG).expect("images/kind-node/kind-config.yaml is YAML");
    if !terminus_image {
        if let Some(net) = config.get_mut("networking").and_then(Value::as_mapping_mut) {
            net.remove("disableDefaultCNI");
        }
    }
    let roles =
        std::iter::once("control-plane").chain(std::iter::repeat_n("worker", workers as usize));
    let nodes: Vec<Value> = roles.map(|role| node(role, record)).collect();
    config["nodes"] = Value::Sequence(nodes);
    let body = serde_yaml_ng::to_string(&config).expect("a YAML value serialises");
    format!("# Written by terminus (harness/src/cluster/config.rs) from images/kind-node/kind-config.yaml.\n{body}")
}

fn node(role: &str, record: &Path) -> Value {
    let mut labels = Mapping::new();
    labels.insert(NODE_LABEL.into(), "true".into());
    let mut mount = Mapping::new();
    mount.insert("hostPath".into(), record.display().to_string().into());
    mount.insert("containerPath".into(), OWNER_MOUNT.into());
    mount.insert("readOnly".into(), true.into());
    let mut node = Mapping::new();
    node.insert("role".into(), role.into());
    node.insert("labels".into(), Value::Mapping(labels));
    node.insert(
        "extraMounts".into(),
        Value::Sequence(vec![Value::Mapping(mount)]),
    );
    Value::Mapping(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_marks_every_node() {
        let c = kind_config(Path::new("/var/lib/terminus/clusters/terminus-x"), 2, true);
        assert_eq!(c.matches("containerPath: /terminus/owner").count(), 3);
        assert_eq!(c.matches("role: worker").count(), 2);
        assert!(c.contains("disableDefaultCNI: true"));
        assert!(!kind_config(Path::new("/r"), 0, false).contains("disableDefaultCNI"));
        let parsed: Value = serde_yaml_ng::from_str(&c).expect("valid yaml");
        assert_eq!(
            parsed["nodes"][0]["extraMounts"][0]["readOnly"],
            Value::Bool(true)
        );
        assert_eq!(
            parsed["nodes"][1]["labels"][NODE_LABEL],
            Value::from("true")
        );
    }

    #[test]
    fn config_keeps_the_base_settings() {
        let parsed: Value =
            serde_yaml_ng::from_str(&kind_config(Path::new("/r"), 0, true)).expect("valid yaml");
        assert_eq!(parsed["kind"], Value::from("Cluster"));
        assert_eq!(
            parsed["networking"]["kubeProxyMode"],
            Value::from("iptables")
        );
        let patch = parsed["kubeadmConfigPatches"][0]
            .as_str()
            .expect("a kubelet patch");
        // A hung runtime must show as DeadlineExceeded within a trial's hold time.
        assert!(patch.contains("runtimeRequestTimeout: 15s"));
        assert!(patch.contains("failCgroupV1: false"));
        assert!(patch.contains("nodeStatusUpdateFrequency: 4s"));
    }
}
