//! Live diagnosis, remedy and drills against a real kind cluster, through the
//! `terminus` binary as an on-call engineer runs it. Needs root, docker and kind (and
//! ci/bootstrap's node image); without them it skips loudly.
//!
//! The cluster is `$TERMINUS_CLUSTER` (default `terminus-scenarios`, the suite's), reused
//! when terminus made it earlier; a cluster this test created is deleted at the end
//! unless `TERMINUS_KEEP_CLUSTER=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

fn skip_reason() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some("not root".into());
    }
    for tool in ["docker", "kind"] {
        let ok = Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("`{tool} version` failed (run ci/bootstrap)"));
        }
    }
    None
}

fn terminus(args: &[&str], kubeconfig: &Path, drill_state: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_terminus"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("TERMINUS_DRILL_STATE", drill_state)
        .env(
            "TERMINUS_SCENARIOS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"),
        )
        .output()
        .expect("the terminus binary runs");
    eprintln!(
        "$ terminus {} -> {:?}\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const NS: &str = "terminus-live-test";

fn held_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": NS, "finalizers": ["example.com/held-by-test"],
                      "labels": { "app.kubernetes.io/managed-by": "terminus", "terminus.dev/run": NS } },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{ "operator": "Exists" }],
            "containers": [{ "name": "c", "image": terminus::DEFAULT_WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                             "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"] }]
        }
    }))
    .unwrap()
}

#[test]
fn live_cluster() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED live_cluster: {why}; this tier needs root, docker and kind");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = std::env::var("TERMINUS_CLUSTER").unwrap_or_else(|_| "terminus-scenarios".into());
    let cluster = rt
        .block_on(terminus::cluster::up(&terminus::cluster::UpOptions {
            name: name.clone(),
            workers: 2,
            ..Default::default()
        }))
        .expect("a kind cluster (ci/bootstrap prepares the machine)");
    terminus::cluster::load_image(&cluster.name, terminus::DEFAULT_WORKLOAD_IMAGE).unwrap();
    let client = rt.block_on(cluster.client()).unwrap();
    let work = std::env::temp_dir().join(format!("terminus-live-test-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let drill_state = work.join("drill.json");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        checks(&rt, &client, &cluster.kubeconfig, &work, &drill_state)
    }));
    // Cleanup on every path: the test namespace, a drill left behind, the work dir.
    if let Err(e) = rt.block_on(terminus::namespace::delete(
        &client,
        NS,
        std::time::Duration::from_secs(120),
    )) {
        eprintln!("cleanup: {e}");
    }
    if drill_state.exists() {
        terminus(&["drill", "stop"], &cluster.kubeconfig, &drill_state);
    }
    let _ = std::fs::remove_dir_all(&work);
    if cluster.created && std::env::var("TERMINUS_KEEP_CLUSTER").map_or(true, |v| v != "1") {
        let _ = terminus::cluster::down(&cluster.name);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn checks(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    kubeconfig: &Path,
    work: &Path,
    drill_state: &Path,
) {
    let t = |args: &[&str]| terminus(args, kubeconfig, drill_state);

    // Bad input first: a pod that does not exist, a kubeconfig that does not exist.
    assert_eq!(code(&t(&["diagnose", "no-such-pod", "-n", "default"])), 2);
    let missing = Command::new(env!("CARGO_BIN_EXE_terminus"))
        .args(["diagnose", "x", "--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .unwrap();
    assert_eq!(
        code(&missing),
        2,
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // A pod held by a finalizer, deleted and stuck.
    rt.block_on(async {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": NS,
            "labels": { "app.kubernetes.io/managed-by": "terminus", "terminus.dev/run": NS } } }))
        .unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        pods.create(&PostParams::default(), &held_pod("held"))
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let p = pods.get("held").await.unwrap();
            if p.status.and_then(|s| s.phase).as_deref() == Some("Running") {
                break;
            }
            assert!(Instant::now() < until, "pod held not Running within 90s");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        pods.delete("held", &DeleteParams::default()).await.unwrap();
        // Past the grace period (1s) and the detector's 15s settling time.
        tokio::time::sleep(Duration::from_secs(20)).await;
    });

    // One pod, with node evidence from the kind node (kept bundle shows both halves).
    let bundle = work.join("bundle");
    let out = t(&[
        "diagnose",
        "held",
        "-n",
        NS,
        "--json",
        "--keep-bundle",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["diagnoses"][0]["cause"], "finalizer");
    assert!(bundle.join("pod.yaml").is_file());
    assert!(
        bundle.join("kubelet.log").is_file(),
        "node half missing from {}",
        bundle.display()
    );

    // API only.
    let out = t(&["diagnose", "held", "-n", NS, "--api-only"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("CAUSE  finalizer"));

    // Every Terminating pod.
    let out = t(&["diagnose", "--all", "--json"]);
    assert_eq!(code(&out), 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&Value> = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pod"]["namespace"] == NS)
        .collect();
    assert_eq!(ours.len(), 1, "{v}");
    assert_eq!(ours[0]["diagnoses"][0]["cause"], "finalizer");

    // The agent-pod path with an image nobody can pull: a clear error, exit 3, and no
    // agent pod left behind.
    let out = t(&[
        "diagnose",
        "held",
        "-n",
        NS,
        "--agent-pod",
        "--agent-image",
        "registry.invalid/terminus/agent:none",
        "--agent-namespace",
        NS,
    ]);
    assert_eq!(code(&out), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--agent-image"));
    let left = rt
        .block_on(
            Api::<Pod>::namespaced(client.clone(), NS)
                .list(&ListParams::default().labels("terminus.dev/role=agent")),
        )
        .unwrap();
    assert!(left.items.is_empty(), "agent pod left behind");

    // remedy: read-only by default, then --apply clears the pod.
    let out = t(&["remedy", "held", "-n", NS]);
    assert_eq!(code(&out), 0);
    assert!(rt
        .block_on(Api::<Pod>::namespaced(client.clone(), NS).get_opt("held"))
        .unwrap()
        .is_some());
    let out = t(&["remedy", "held", "-n", NS, "--apply"]);
    assert_eq!(code(&out), 0);
    assert!(rt
        .block_on(Api::<Pod>::namespaced(client.clone(), NS).get_opt("held"))
        .unwrap()
        .is_none());

    // A drill on this cluster: a node-ledger cause, answered right; then one stopped.
    let name = cluster_name(kubeconfig);
    let out = t(&["drill", "--cause", "immutable-file", "--cluster", &name]);
    assert_eq!(code(&out), 0);
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        page.starts_with("PAGE: pod ") && page.contains("has been Terminating for"),
        "{page}"
    );
    assert!(
        !page.contains("immutable"),
        "the page gives the cause away: {page}"
    );
    assert!(drill_state.exists());
    assert_eq!(
        code(&t(&["drill", "--cause", "finalizer", "--cluster", &name])),
        2,
        "a second drill must be refused"
    );
    let out = t(&["drill", "answer", "immutable-file"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("RIGHT"));
    assert!(!drill_state.exists());

    assert_eq!(
        code(&t(&[
            "drill",
            "--cause",
            "runtime-hang",
            "--cluster",
            &name
        ])),
        0
    );
    assert_eq!(code(&t(&["drill", "stop"])), 0);
    assert!(!drill_state.exists());
    assert_eq!(code(&t(&["drill", "stop"])), 2, "nothing to stop");

    // A Job's pod held by admission: the page names that pod, the answer lifts the
    // policy, and no policy is left behind.
    let out = t(&["drill", "--cause", "admission-blocked", "--cluster", &name]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(page.starts_with("PAGE: pod web-"), "{page}");
    let out = t(&["drill", "answer", "admission-blocked"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("RIGHT"));
    assert!(!drill_state.exists());
    let policies: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy> =
        Api::all(client.clone());
    let left = rt
        .block_on(policies.list(&kube::api::ListParams::default()))
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| n.starts_with("terminus-drill-"))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "the drill left policies: {left:?}");
}

/// The kind cluster name from its record directory (`.../clusters/NAME/kubeconfig`).
fn cluster_name(kubeconfig: &Path) -> String {
    kubeconfig
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from("terminus-scenarios").display().to_string())
}
