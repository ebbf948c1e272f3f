//! Parsers on real output: this host's own `df`, `ps`, `lsattr`, `mountinfo`
//! (tests/fixtures/negative/host-at-rest), the handbook's lines, and the runtime tier's
//! captures.

use super::*;

const HOST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/negative/host-at-rest"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn df_rows_from_this_host() {
    let rows = df("df.txt", &read(&format!("{HOST}/df.txt"))).expect("parses");
    let root = rows.iter().find(|r| r.mount == "/").expect("a row for /");
    assert!(root.total > 0 && root.used + root.available <= root.total);
    assert!(!root.is_full());
    let inodes = df("df-inodes.txt", &read(&format!("{HOST}/df-inodes.txt"))).expect("parses");
    assert_eq!(inodes.len(), rows.len());
}

#[test]
fn lsattr_lines_from_this_host() {
    let entries = lsattr(&read(&format!("{HOST}/lsattr.txt"))).expect("parses");
    assert!(entries.iter().any(|e| e.path == "/etc" && !e.immutable()));
    let flagged = lsattr("----i---------e------- /var/lib/kubelet/pods/x/volumes/kubernetes.io~empty-dir/data/locked\n").expect("parses");
    assert!(flagged[0].immutable());
    assert_eq!(
        flagged[0].path,
        "/var/lib/kubelet/pods/x/volumes/kubernetes.io~empty-dir/data/locked"
    );
}

#[test]
fn mountinfo_lines_keep_pid_and_mount_id() {
    let entries = mountinfo(&read(&format!("{HOST}/mountinfo.txt"))).expect("parses");
    assert!(entries
        .iter()
        .all(|m| m.pid.is_some() && m.fs_type == "overlay"));
    let seed = "/proc/27187/mountinfo:4500 4415 0:898 / /var/lib/docker/overlay2/8bde/merged rw,relatime - overlay overlay rw,lowerdir=/a";
    let m = &mountinfo(seed).expect("parses")[0];
    assert_eq!(
        (m.pid, m.mount_id, m.mount_point.as_str()),
        (Some(27187), 4500, "/var/lib/docker/overlay2/8bde/merged")
    );
}

#[test]
fn ps_rows_split_lstart_from_args() {
    let text = "    PID    PPID STAT                  STARTED COMMAND\n 8038  8002 Tl   Sat Nov 28 11:44:44 2026 containerd --config /x/containerd.toml\n";
    let rows = ps(text).expect("parses");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].stopped());
    assert_eq!(rows[0].program(), "containerd");
    assert_eq!(rows[0].started, "Sat Nov 28 11:44:44 2026");
}

#[test]
fn ctr_tasks_with_and_without_header() {
    let handbook =
        "a9a1785b81343c3ad2093ad973f4f8e52dbf54823b8bb089886c8356d4036fe0    30639    STOPPED\n";
    let t = ctr_tasks(handbook).expect("parses");
    assert_eq!((t[0].pid, t[0].status.as_str()), (30639, "STOPPED"));
    assert!(ctr_tasks(
        "ctr: failed to dial \"/run/containerd/containerd.sock\": context deadline exceeded\n"
    )
    .is_err());
    assert!(ctr_tasks("TASK    PID    STATUS    \n")
        .expect("header only")
        .is_empty());
}

#[test]
fn garbage_is_unparseable_not_a_panic() {
    let junk = "\u{0}\u{1}ÿ garbage 1 2 3\n%%%\n";
    assert!(df("df.txt", junk).is_err());
    assert!(ps(junk).is_err());
    assert!(mountinfo(junk).is_err());
    assert!(crictl_ps(junk).is_err());
    assert!(docker_ps(junk).is_err());
    assert!(pod(junk).is_err());
    assert!(events("items: 3").is_err());
    assert!(lsattr(junk).is_err());
}
