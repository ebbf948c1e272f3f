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

#[test]
fn capture_times_in_the_formats_users_write() {
    let want = DateTime::parse_from_rfc3339("2026-12-02T01:09:01Z")
        .unwrap()
        .with_timezone(&Utc);
    for text in [
        "2026-12-02T01:09:01Z\n",
        "2026-12-02T02:09:01+01:00",
        "Wed Dec  2 01:09:01 UTC 2026\n",
        "Wed Dec 2 01:09:01 GMT 2026",
        "Wed Dec  2 03:09:01 +0200 2026",
        "1796173741",
        "Wed, 02 Dec 2026 01:09:01 +0000",
        "2026-12-02 01:09:01+00:00",
        "2026-12-02T09:09:01+08:00",
    ] {
        assert_eq!(captured_at(text).ok(), Some(want), "{text:?}");
    }
    for bad in [
        "",
        "yesterday",
        "Wed Dec  2 01:09:01 CST 2026",
        "99999999999999999999",
    ] {
        let e = captured_at(bad).unwrap_err();
        assert_eq!(e.line, Some(1), "{bad:?}");
        assert!(e.reason.contains("not a time"), "{e}");
    }
}

#[test]
fn events_quote_their_own_message_lines_in_linear_time() {
    let n = 10_000;
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..n {
        text.push_str(&format!(
            "- reason: Killing\n  message: 'Stopping container number {i:05} of the pod'\n  type: Normal\n"
        ));
    }
    let started = std::time::Instant::now();
    let events = events(&text).unwrap();
    let took = started.elapsed();
    assert_eq!(events.len(), n);
    assert_eq!(events[7_777].quote.line, 3 + 7_777 * 3 + 2);
    assert!(events[7_777].quote.text.contains("07777"));
    // Debug builds are several times slower than release; the release bound is 2 s.
    assert!(took < std::time::Duration::from_secs(20), "{took:?}");
}

#[test]
fn yaml_errors_carry_their_line_and_short_excerpts() {
    let e = pod("metadata:\n  name: a\n  bad: [unclosed\n").unwrap_err();
    assert!(e.line.is_some(), "{e:?}");
    let long = format!("kind: {}\n", "X".repeat(1 << 20));
    let e = pod(&long).unwrap_err();
    assert!(e.reason.len() < 200, "{}", e.reason.len());
}

fn kind_file(bundle: &str, name: &str) -> String {
    read(&format!(
        "{}/tests/fixtures/kind/{bundle}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// The same pod as `kubectl get pod -o yaml` printed it, re-printed as `-o json` would.
fn as_json(yaml: &str) -> String {
    let v: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("YAML");
    serde_json::to_string_pretty(&v).expect("JSON")
}

#[test]
fn a_pod_as_json_or_as_a_list_of_one_reads_like_the_yaml() {
    let yaml = kind_file("mount-held", "pod.yaml");
    let from_yaml = pod(&yaml).expect("yaml");
    let json = as_json(&yaml);
    let from_json = pod(&json).expect("json");
    let list = format!(
        "apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- {}",
        yaml.trim_end().replace('\n', "\n  ")
    );
    let from_list = pod(&list).expect("list");
    for p in [&from_json, &from_list] {
        assert_eq!(p.uid, from_yaml.uid);
        assert_eq!(p.deletion_timestamp, from_yaml.deletion_timestamp);
        assert_eq!(p.containers.len(), from_yaml.containers.len());
        assert_eq!(p.containers[0].runtime.as_deref(), Some("containerd"));
        let q = p
            .deletion_quote
            .as_ref()
            .expect("a quoted deletionTimestamp");
        assert!(q.text.contains("deletionTimestamp"), "{q:?}");
    }
    let two = format!("{{\"kind\": \"List\", \"items\": [{json}, {json}]}}");
    let e = pod(&two).expect_err("two pods");
    assert!(e.reason.contains("one pod"), "{e}");
}

#[test]
fn events_as_json_keep_their_object_and_quote_their_message() {
    let yaml = kind_file("mount-held", "events.yaml");
    let from_yaml = events(&yaml).expect("yaml");
    let json = as_json(&yaml);
    let from_json = events(&json).expect("json");
    assert_eq!(from_json.len(), from_yaml.len());
    for (a, b) in from_yaml.iter().zip(&from_json) {
        assert_eq!(a.object, b.object);
        assert!(a.object.as_ref().is_some_and(|o| o.uid.is_some()), "{a:?}");
        assert!(
            b.quote.line > 0 && b.quote.text.contains("\"message\""),
            "{:?}",
            b.quote
        );
    }
}
