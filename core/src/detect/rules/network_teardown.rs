//! The `network-teardown` rule: the runtime cannot stop the pod's sandbox because the
//! CNI plugin's DEL fails (`failed to destroy network for sandbox ...`, `cni plugin not
//! initialized`), so kubelet's KillPodSandbox fails and is retried forever.
//!
//! Told apart from runtime-hang (the runtime answers: with the plugin's error, not a
//! deadline) and kubelet-missed-delete (kubelet acted: it is its KillPodSandbox that
//! fails).

use super::*;

/// `plugin type="calico" failed (delete): REASON` (quotes may come JSON- or klog-escaped).
static PLUGIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"plugin type=\\*"([A-Za-z0-9._-]+)\\*" failed \(delete\): (.*)"#).expect("regex")
});

/// The directories the runtime searched: `failed to find plugin "ptp" in path [/usr/lib/cni]`.
/// Only plain absolute paths: they go into a command shown to the reader.
static SEARCHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"in path \[((?:/[A-Za-z0-9._/-]*)(?: /[A-Za-z0-9._/-]*)*)\]").expect("regex")
});

/// The plugin's reason as it reads unescaped: escaped quotes (`\"`, `\\\"`) are part of
/// it, the first bare quote ends the string the runtime or the event wrapped it in.
fn unescaped_reason(rest: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in rest.chars() {
        match c {
            '\\' => escaped = true,
            '"' if !escaped => break,
            _ => {
                out.push(c);
                escaped = false;
            }
        }
    }
    out.trim().trim_end_matches('\'').trim().to_owned()
}

const PHRASES: [&str; 3] = [
    "failed to destroy network for sandbox",
    "cni plugin not initialized",
    "failed to teardown pod",
];

pub(super) fn network_teardown(cx: &Cx) -> Option<Diagnosis> {
    let ev = cx.ev;
    let failed: Vec<(&Quote, Tie)> = cx.lines_with_any(&PHRASES).collect();
    if failed.is_empty() {
        return None;
    }
    let plugin = failed.iter().find_map(|(q, _)| {
        PLUGIN
            .captures(&q.text)
            .map(|c| (c[1].to_owned(), unescaped_reason(&c[2])))
    });
    let searched = failed
        .iter()
        .find_map(|(q, _)| SEARCHED.captures(&q.text).map(|c| c[1].to_owned()))
        .unwrap_or_else(|| "/opt/cni/bin".into());
    let evidence: Vec<Proof> = failed
        .iter()
        .rev()
        .take(3)
        .map(|(q, t)| Proof::new(q, t))
        .collect();
    let mut remedy = Vec::new();
    match &plugin {
        Some((name, reason)) if reason.contains("failed to find plugin") => {
            remedy.push(Step::say(format!(
                "the CNI plugin binary {name} is missing on the node: reinstall it (the CNI plugins package, or restart the CNI DaemonSet pod that installs it)"
            )));
        }
        Some((name, reason)) => remedy.push(Step::say(format!(
            "the CNI plugin {name} refuses to delete the pod's network ({reason}): fix what it reports (credentials, its datastore, its config) or restart its node pod"
        ))),
        None => remedy.push(Step::say(
            "the node's CNI cannot delete the pod's network: check the plugin binaries in /opt/cni/bin and the config in /etc/cni/net.d, and the CNI's node pod",
        )),
    }
    remedy.push(Step::look(
        "see the plugins the runtime can find",
        format!("ls -l {searched} /etc/cni/net.d"),
    ));
    remedy.push(Step::look(
        "see the CNI's pods on this node",
        format!(
            "kubectl get pods -n kube-system -o wide --field-selector spec.nodeName={}",
            node_name(ev)
        ),
    ));
    remedy.push(Step::say(
        "kubelet retries the sandbox teardown by itself once the plugin works",
    ));
    remedy.extend(watch_step(ev));
    let summary = match &plugin {
        Some((name, reason)) => {
            format!("CNI DEL fails for the pod's sandbox: plugin {name}: {reason}")
        }
        None => "CNI DEL fails for the pod's sandbox, so it cannot be stopped".into(),
    };
    diagnosis(CauseId::NetworkTeardown, 0.93, summary, evidence, remedy)
}

#[cfg(test)]
mod tests {
    use super::super::{assert_silent, run};
    use super::*;

    #[test]
    fn names_the_plugin_and_its_reason() {
        let line = r#"Dec 03 10:00:00 w containerd[1]: time="2026-12-03T10:00:00Z" level=error msg="StopPodSandbox for \"abc\" failed" error="failed to destroy network for sandbox \"abc\": plugin type=\"ptp\" failed (delete): failed to find plugin \"ptp\" in path [/opt/cni/bin]""#;
        let mut ev = Evidence::default();
        ev.ingest("runtime.log", line);
        let d = run(network_teardown, &ev).expect("a diagnosis");
        assert!(
            d.summary
                .ends_with(r#"plugin ptp: failed to find plugin "ptp" in path [/opt/cni/bin]"#),
            "{}",
            d.summary
        );
    }

    #[test]
    fn the_reason_reads_the_same_from_an_event_and_from_the_runtime() {
        let event = r#"error killing pod: failed to "KillPodSandbox" for "u" with KillPodSandboxError: "rpc error: code = Unknown desc = failed to destroy network for sandbox \"abc\": plugin type=\"calico\" failed (delete): error getting ClusterInformation: connection is unauthorized: Unauthorized"'"#;
        assert_eq!(
            unescaped_reason(event.split("(delete): ").nth(1).expect("reason")),
            "error getting ClusterInformation: connection is unauthorized: Unauthorized"
        );
        let runtime = r#"failed to find plugin \"ptp\" in path [/usr/lib/cni]" foo="bar""#;
        assert_eq!(
            unescaped_reason(runtime),
            r#"failed to find plugin "ptp" in path [/usr/lib/cni]"#
        );
    }

    #[test]
    fn looks_where_the_runtime_searched() {
        let line = r#"E1203 w containerd[1]: msg="x" error="failed to destroy network for sandbox \"abc\": plugin type=\"ptp\" failed (delete): failed to find plugin \"ptp\" in path [/usr/lib/cni /opt/cni/bin]""#;
        let mut ev = Evidence::default();
        ev.ingest("runtime.log", line);
        let d = run(network_teardown, &ev).expect("a diagnosis");
        let text = format!("{:?}", d.remedy);
        assert!(
            text.contains("ls -l /usr/lib/cni /opt/cni/bin /etc/cni/net.d"),
            "{text}"
        );
    }

    #[test]
    fn stays_silent_when_nothing_is_wrong() {
        assert_silent(network_teardown);
    }
}
