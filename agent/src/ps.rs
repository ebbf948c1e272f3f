//! `ps -eo pid,ppid,stat,lstart,args` from /proc, for the bundle's `ps.txt`.
//!
//! Architecture invariant: read-only; rendering is pure and tested on literal /proc
//! text, the layout is procps' (the detector's parser reads either).

use crate::procfs::{self, Stat};
use crate::timefmt;

/// One process as ps shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub pid: i32,
    pub ppid: i32,
    pub stat: String,
    pub lstart: String,
    pub args: String,
}

/// procps's STAT column: state letter, then `<`/`N` (priority), `L` (locked pages),
/// `s` (session leader), `l` (multi-threaded), `+` (foreground process group).
pub fn stat_column(st: &Stat, locked_kb: u64) -> String {
    let mut s = String::new();
    s.push(st.state);
    if st.nice < 0 {
        s.push('<');
    } else if st.nice > 0 {
        s.push('N');
    }
    if locked_kb > 0 {
        s.push('L');
    }
    if st.session == st.pid {
        s.push('s');
    }
    if st.num_threads > 1 {
        s.push('l');
    }
    if st.tpgid == st.pgrp {
        s.push('+');
    }
    s
}

/// procps's args column: the command line, or `[comm]` for kernel threads and processes
/// without one; zombies get ` <defunct>`.
pub fn args_column(st: &Stat, argv: &[String]) -> String {
    let mut s = if argv.is_empty() || st.state == 'Z' {
        format!("[{}]", st.comm)
    } else {
        argv.join(" ")
    };
    if st.state == 'Z' {
        s.push_str(" <defunct>");
    }
    s
}

/// PID column width: procps sizes it to the digits of the largest possible pid.
pub fn pid_width(pid_max: u64) -> usize {
    pid_max.saturating_sub(1).max(1).to_string().len().max(5)
}

pub fn header(w: usize) -> String {
    format!(
        "{:>w$} {:>w$} {:<4} {:>24} COMMAND",
        "PID", "PPID", "STAT", "STARTED"
    )
}

pub fn format_row(r: &Row, w: usize) -> String {
    format!(
        "{:>w$} {:>w$} {:<4} {:>24} {}",
        r.pid, r.ppid, r.stat, r.lstart, r.args
    )
}

fn locked_kb(pid: i32) -> u64 {
    std::fs::read_to_string(procfs::proc_dir(pid).join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn rows() -> Vec<Row> {
    let btime = procfs::boot_time().unwrap_or(0) as i64;
    let hz = procfs::clock_ticks();
    procfs::pids()
        .into_iter()
        .filter_map(|pid| {
            let st = procfs::stat(pid)?;
            let argv = procfs::cmdline(pid);
            Some(Row {
                pid,
                ppid: st.ppid,
                stat: stat_column(&st, locked_kb(pid)),
                lstart: timefmt::ctime(btime + (st.start_ticks / hz) as i64),
                args: args_column(&st, &argv),
            })
        })
        .collect()
}

pub fn render() -> String {
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    let w = pid_width(pid_max);
    let mut out = header(w);
    out.push('\n');
    for r in rows() {
        out.push_str(&format_row(&r, w));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pid: i32, state: char) -> Stat {
        Stat {
            pid,
            comm: "containerd".into(),
            state,
            ppid: 1,
            pgrp: pid,
            session: pid,
            tty_nr: 0,
            tpgid: -1,
            nice: 0,
            num_threads: 12,
            start_ticks: 0,
        }
    }

    #[test]
    fn header_for_large_pid_max() {
        assert_eq!(pid_width(4_194_304), 7);
        assert_eq!(
            header(7),
            "    PID    PPID STAT                  STARTED COMMAND"
        );
        assert_eq!(
            header(pid_width(32768)),
            "  PID  PPID STAT                  STARTED COMMAND"
        );
    }

    #[test]
    fn row_layout() {
        let r = Row {
            pid: 193,
            ppid: 1,
            stat: "Ssl".into(),
            lstart: "Sat Nov 28 11:35:40 2026".into(),
            args: "/usr/local/bin/containerd".into(),
        };
        assert_eq!(
            format_row(&r, 7),
            "    193       1 Ssl  Sat Nov 28 11:35:40 2026 /usr/local/bin/containerd"
        );
    }

    #[test]
    fn stat_letters() {
        assert_eq!(stat_column(&st(5, 'S'), 0), "Ssl");
        let mut s = st(5, 'T');
        s.session = 1;
        s.num_threads = 1;
        assert_eq!(stat_column(&s, 0), "T");
        s.nice = -20;
        s.tpgid = 5;
        assert_eq!(stat_column(&s, 8), "T<L+");
        s.nice = 19;
        assert_eq!(stat_column(&s, 0), "TN+");
    }

    #[test]
    fn args_kernel_thread_and_zombie() {
        let s = st(2, 'S');
        assert_eq!(args_column(&s, &[]), "[containerd]");
        assert_eq!(
            args_column(&s, &["sleep".into(), "100".into()]),
            "sleep 100"
        );
        assert_eq!(args_column(&st(9, 'Z'), &[]), "[containerd] <defunct>");
    }
}
