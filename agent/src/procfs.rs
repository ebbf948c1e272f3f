//! Reading processes from /proc. Parsing is pure (tested on literal text); the readers
//! around it tolerate processes vanishing mid-read.
//!
//! Architecture invariant: read-only; a process is identified by pid *and* start time
//! (`same_process`) wherever it is about to be signalled.

use std::path::{Path, PathBuf};

/// The fields of /proc/PID/stat we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    pub tpgid: i32,
    pub nice: i64,
    pub num_threads: i64,
    /// Clock ticks after boot; with the pid it identifies a process across pid reuse.
    pub start_ticks: u64,
}

/// Parses /proc/PID/stat. `comm` may contain spaces and parentheses, so it is everything
/// between the first `(` and the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let f = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        pid,
        comm,
        state: f(3)?.chars().next()?,
        ppid: f(4)?.parse().ok()?,
        pgrp: f(5)?.parse().ok()?,
        session: f(6)?.parse().ok()?,
        tty_nr: f(7)?.parse().ok()?,
        tpgid: f(8)?.parse().ok()?,
        nice: f(19)?.parse().ok()?,
        num_threads: f(20)?.parse().ok()?,
        start_ticks: f(22)?.parse().ok()?,
    })
}

/// Splits a NUL-separated /proc file (cmdline, environ).
pub fn split_nul(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub fn proc_dir(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// All numeric entries of /proc, ascending.
pub fn pids() -> Vec<i32> {
    let mut v: Vec<i32> = match std::fs::read_dir("/proc") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort_unstable();
    v
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(proc_dir(pid).join("stat")).ok()?)
}

pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(proc_dir(pid).join("cmdline"))
        .map(|b| split_nul(&b))
        .unwrap_or_default()
}

pub fn environ(pid: i32) -> Vec<String> {
    std::fs::read(proc_dir(pid).join("environ"))
        .map(|b| split_nul(&b))
        .unwrap_or_default()
}

/// The inode of a namespace link such as `/proc/PID/ns/mnt` (`mnt:[4026531841]`).
pub fn ns_inode(pid: i32, ns: &str) -> Option<u64> {
    let link = std::fs::read_link(proc_dir(pid).join("ns").join(ns)).ok()?;
    parse_ns_link(&link.to_string_lossy())
}

pub fn parse_ns_link(s: &str) -> Option<u64> {
    let open = s.find('[')?;
    let close = s.rfind(']')?;
    s.get(open + 1..close)?.parse().ok()
}

/// Whether the process `pid` is still the one that started at `start_ticks` (guards
/// against acting on a recycled pid).
pub fn same_process(pid: i32, start_ticks: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_ticks == start_ticks && s.state != 'Z')
}

/// Whether a process is alive (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The first process whose comm or argv[0] basename is `name`, preferring the oldest.
pub fn find_by_name(name: &str) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&p| name_matches(p, name))
        .collect()
}

pub fn name_matches(pid: i32, name: &str) -> bool {
    let by_comm = stat(pid).is_some_and(|s| s.comm == name);
    by_comm
        || cmdline(pid)
            .first()
            .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|b| b == name))
}

/// /proc/stat's `btime`: boot time in seconds since the epoch.
pub fn boot_time() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let line = "4242 (we ird) (x)) S 1 4242 4242 34816 4242 4194560 1 2 3 4 5 6 7 8 20 -5 3 0 123456 1000 100 18446744073709551615";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "we ird) (x)");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.session, 4242);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.tpgid, 4242);
        assert_eq!(s.nice, -5);
        assert_eq!(s.num_threads, 3);
        assert_eq!(s.start_ticks, 123456);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("12 (sh) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn nul_split() {
        assert_eq!(split_nul(b"sleep\x00100\x00"), vec!["sleep", "100"]);
        assert!(split_nul(b"").is_empty());
    }

    #[test]
    fn ns_link() {
        assert_eq!(parse_ns_link("mnt:[4026531841]"), Some(4026531841));
        assert_eq!(parse_ns_link("mnt:"), None);
    }
}
