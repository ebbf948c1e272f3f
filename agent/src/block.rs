//! Network partitions: an iptables rule in the node's own network namespace (a kind
//! node is a container) that drops every TCP packet to one address and port — the API
//! server — so the node's kubelet stops posting status and hears of no deletion. The
//! node-lost fault's node half.
//!
//! Architecture invariant: the entry is in the ledger before the rule is inserted; the
//! rule carries the comment `terminus-<run>`, and undo deletes only a rule of exactly
//! that shape (until none is left). Destinations are the addresses the API server's name
//! (from kubelet's kubeconfig) resolves to, IPv4 by iptables and IPv6 by ip6tables.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use terminus_core::ledger::Entry;

use crate::command;
use crate::error::{AgentError, Result};
use crate::ledger::Store;
use crate::timefmt::now_epoch;

/// What every rule's comment starts with (leftovers look for it).
pub const COMMENT_PREFIX: &str = "terminus-";

const IPTABLES_DEADLINE: Duration = Duration::from_secs(30);

/// The rule's iptables arguments after `-I`/`-D OUTPUT`.
fn rule(dest: &str, port: u16, comment: &str) -> Vec<String> {
    [
        "-p",
        "tcp",
        "-d",
        dest,
        "--dport",
        &port.to_string(),
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// iptables for an IPv4 `dest`, ip6tables for an IPv6 one.
fn tables(dest: &str, op: &str, args: &[String]) -> std::result::Result<String, String> {
    let program = if dest.contains(':') {
        "ip6tables"
    } else {
        "iptables"
    };
    let mut argv = vec![program, "-w", op, "OUTPUT"];
    argv.extend(args.iter().map(String::as_str));
    command::run(&argv, IPTABLES_DEADLINE)
}

/// The API server kubelet talks to: `server: https://HOST:PORT` in its kubeconfig
/// (the first cluster's), as host and port (443 when none is written).
pub fn api_server_of(kubeconfig: &str) -> Option<(String, u16)> {
    let url = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))?
        .trim()
        .trim_matches('"');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Records, then inserts a rule for every address the API server's name resolves to
/// (a kind network is dual-stack: kubelet may well reach it over IPv6).
pub fn block(store: &Store, run: &str, kubeconfig: &std::path::Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|e| AgentError::io(format!("reading {}", kubeconfig.display()), e))?;
    let (host, port) = api_server_of(&text).ok_or_else(|| {
        AgentError::Usage(format!(
            "{}: no `server: https://HOST:PORT` line",
            kubeconfig.display()
        ))
    })?;
    let mut addrs: Vec<IpAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| AgentError::Failed(format!("resolving {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs
        .iter()
        .any(|ip| ip.is_loopback() || ip.is_unspecified())
        || addrs.is_empty()
    {
        return Err(AgentError::Usage(format!(
            "{host} resolves to {addrs:?}: refusing to cut the node off from itself"
        )));
    }
    let comment = format!("{COMMENT_PREFIX}{run}");
    let mut dropped = Vec::new();
    for ip in addrs {
        let dest = ip.to_string();
        let mut l = store.open(run)?;
        l.record(Entry::Blocked {
            dest: dest.clone(),
            port,
            comment: comment.clone(),
            at: now_epoch(),
        })?;
        if let Err(e) = tables(&dest, "-I", &rule(&dest, port, &comment)) {
            l.ledger
                .entries
                .retain(|en| !matches!(en, Entry::Blocked { dest: d, comment: c, .. } if *c == comment && *d == dest));
            l.save()?;
            return Err(AgentError::Failed(e));
        }
        dropped.push(format!("tcp to {dest}:{port}"));
    }
    Ok(
        json!({ "run": run, "api_server": format!("{host}:{port}"), "dropped": dropped, "comment": comment }),
    )
}

/// Deletes the entry's rule (every copy of it). Ok(message) when none is left.
pub fn unblock(dest: &str, port: u16, comment: &str) -> std::result::Result<String, String> {
    let args = rule(dest, port, comment);
    let mut deleted = 0;
    // `-C` checks for the rule: exit 0 while one is there.
    while tables(dest, "-C", &args).is_ok() {
        tables(dest, "-D", &args)?;
        deleted += 1;
        if deleted > 100 {
            return Err(format!(
                "the rule dropping tcp to {dest}:{port} keeps coming back"
            ));
        }
    }
    Ok(if deleted == 0 {
        format!("no rule dropping tcp to {dest}:{port} was left")
    } else {
        format!("deleted the rule dropping tcp to {dest}:{port}")
    })
}

/// OUTPUT rules carrying a `terminus-*` comment (leftovers), as `iptables -S` prints them.
pub fn leftover_rules() -> Vec<String> {
    ["iptables", "ip6tables"]
        .iter()
        .filter_map(|t| command::run(&[t, "-w", "-S", "OUTPUT"], IPTABLES_DEADLINE).ok())
        .flat_map(|text| marked(&text))
        .collect()
}

fn marked(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| {
            l.contains(&format!("--comment {COMMENT_PREFIX}"))
                || l.contains(&format!("--comment \"{COMMENT_PREFIX}"))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_rules_are_leftovers() {
        let listing = "-P OUTPUT ACCEPT\n-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A OUTPUT -d 172.18.0.3/32 -p tcp -m tcp --dport 6443 -m comment --comment terminus-r1-node-lost -j DROP\n";
        assert_eq!(marked(listing), vec!["-A OUTPUT -d 172.18.0.3/32 -p tcp -m tcp --dport 6443 -m comment --comment terminus-r1-node-lost -j DROP".to_owned()]);
    }

    #[test]
    fn the_api_server_is_read_from_kubelets_kubeconfig() {
        let conf = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: X\n    server: https://terminus-scenarios-control-plane:6443\n  name: default-cluster\n";
        assert_eq!(
            api_server_of(conf),
            Some(("terminus-scenarios-control-plane".into(), 6443))
        );
        assert_eq!(
            api_server_of("    server: https://[fc00::4]:6443"),
            Some(("fc00::4".into(), 6443))
        );
        assert_eq!(
            api_server_of("    server: https://api.example"),
            Some(("api.example".into(), 443))
        );
        assert_eq!(api_server_of("    server: unix:///x"), None);
        assert_eq!(api_server_of("kind: Config"), None);
    }

    #[test]
    fn the_node_is_never_cut_off_from_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let conf = dir.path().join("kubelet.conf");
        std::fs::write(&conf, "    server: https://127.0.0.1:6443\n").unwrap();
        assert!(block(&store, "r1", &conf).is_err());
        assert!(block(&store, "r1", &dir.path().join("absent")).is_err());
    }
}
