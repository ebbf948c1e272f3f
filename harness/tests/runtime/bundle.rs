//! Writes an evidence bundle (the fixed format of docs/bundles.md) from the live private
//! runtime, plus `commands.txt` / `recovery.txt`: transcripts of what was run and what it
//! printed. Nothing is written in place of a tool's output.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;

use crate::private::{docker_cli, PrivateRuntime};

pub struct Bundle {
    pub dir: PathBuf,
    marks: (u64, u64),
}

impl Bundle {
    pub fn new(root: &Path, case: &str, rt: &PrivateRuntime) -> Result<Bundle> {
        let dir = root.join(case);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        Ok(Bundle {
            dir,
            marks: rt.log_marks(),
        })
    }

    fn append(&self, file: &str, text: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(file))
        {
            let _ = f.write_all(text.as_bytes());
        }
    }

    /// Run `cmd`, record `$ cmd`, its stdout and stderr, and its exit status in `file`.
    pub fn run(&self, file: &str, cmd: &mut Command) -> Output {
        let shown = show(cmd);
        let out = cmd.output().unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: Vec::new(),
            stderr: format!("{shown}: {e}\n").into_bytes(),
        });
        let mut text = format!("$ {shown}\n");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        match out.status.code() {
            Some(code) => text.push_str(&format!("[exit status {code}]\n")),
            None => text.push_str("[killed by a signal]\n"),
        }
        self.append(file, &text);
        out
    }

    /// Record an Engine API call made with bollard and the daemon's answer.
    pub fn api<T>(&self, file: &str, call: &str, result: &Result<T, bollard::errors::Error>) {
        use bollard::errors::Error;
        let answer = match result {
            Ok(_) => "[ok]\n".to_owned(),
            Err(Error::DockerResponseServerError {
                status_code,
                message,
            }) => {
                format!("Error response from daemon: {message}\n[HTTP {status_code}]\n")
            }
            Err(e) => format!("{e}\n[client error]\n"),
        };
        self.append(file, &format!("$ (Engine API) {call}\n{answer}"));
    }

    /// Record an Engine API call that got no answer before the caller gave up.
    pub fn api_no_answer(&self, file: &str, call: &str, waited: std::time::Duration) {
        self.append(
            file,
            &format!("$ (Engine API) {call}\n[no answer within {waited:?}; request abandoned]\n"),
        );
    }

    /// Write the evidence files. `ns`: containerd namespace for ctr-tasks.txt (`moby`
    /// means a docker case, which also gets docker-ps.txt); `ids`: strings whose lines
    /// are taken from every /proc/PID/mountinfo and from the /proc links of proc-refs.txt; `lsattr`: paths for `lsattr -R`.
    pub fn capture(
        &self,
        rt: &PrivateRuntime,
        ns: &str,
        ids: &[String],
        lsattr: &[PathBuf],
    ) -> Result<()> {
        let d = &self.dir;
        fs::write(d.join("df.txt"), df(&["-P"], &rt.dir))?;
        fs::write(d.join("df-inodes.txt"), df(&["-P", "-i"], &rt.dir))?;
        fs::write(d.join("ps.txt"), ps_ours(rt))?;
        fs::write(d.join("mountinfo.txt"), mountinfo_matching(ids))?;
        if !ids.is_empty() {
            // Mount holders in the runtime's own namespace: cwd, root or open files inside.
            let pattern: Vec<String> = ids
                .iter()
                .flat_map(|id| ["-e".to_owned(), id.clone()])
                .collect();
            let out = Command::new("sh")
                .arg("-c")
                .arg("ls -l /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/fd/* 2>/dev/null | grep -F \"$@\"")
                .arg("sh")
                .args(&pattern)
                .output()?;
            fs::write(d.join("proc-refs.txt"), out.stdout)?;
        }
        if !lsattr.is_empty() {
            let out = Command::new("lsattr").arg("-R").args(lsattr).output()?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            fs::write(d.join("lsattr.txt"), text)?;
        }
        let out = rt.ctr_command(&["-n", ns, "task", "ls"]).output()?;
        fs::write(d.join("ctr-tasks.txt"), [out.stdout, out.stderr].concat())?;
        if ns == "moby" {
            let out = Command::new("timeout")
                .arg("5")
                .arg(docker_cli())
                .arg("-H")
                .arg(format!("unix://{}", rt.docker_socket().display()))
                .args(["ps", "-a", "--no-trunc"])
                .output()?;
            fs::write(d.join("docker-ps.txt"), [out.stdout, out.stderr].concat())?;
        }
        // runtime.log: what dockerd, then containerd, wrote since the case began.
        let mut log = Vec::new();
        for (name, mark) in [
            ("dockerd.log", self.marks.0),
            ("containerd.log", self.marks.1),
        ] {
            let all = fs::read(rt.dir.join(name)).unwrap_or_default();
            let from = usize::try_from(mark).unwrap_or(usize::MAX).min(all.len());
            log.extend_from_slice(&all[from..]);
        }
        fs::write(d.join("runtime.log"), log)?;
        fs::write(
            d.join("captured-at"),
            format!("{}\n", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")),
        )?;
        Ok(())
    }
}

/// A command line as a person would type it.
fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c))
            {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `df` output without the sandbox's own tool mounts, which belong to no runtime, and
/// without the filesystems of other trials' private runtimes running in parallel (a
/// full disk of the disk-full trial is not this trial's evidence).
fn df(args: &[&str], own: &Path) -> String {
    let own = own.display().to_string();
    let out = Command::new("timeout")
        .arg("20")
        .arg("df")
        .args(args)
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.contains(" /mnt/sandboxing/"))
        .filter(|l| {
            !l.contains(crate::private::DIR_PREFIX)
                || l.contains(&format!("{own}/"))
                || l.ends_with(&own)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `ps -eo pid,ppid,stat,lstart,args`: the header and, verbatim, the lines of our
/// daemons, their shims, the helpers, and every process below those.
fn ps_ours(rt: &PrivateRuntime) -> String {
    let out = Command::new("ps")
        .args(["-eo", "pid,ppid,stat,lstart,args"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let marker = format!("{}/", rt.dir.display());
    let rows: Vec<(u32, u32, &str)> = lines
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, l))
        })
        .collect();
    let mut keep: std::collections::BTreeSet<u32> = rt.helper_pids().into_iter().collect();
    keep.extend(
        rows.iter()
            .filter(|(_, _, l)| l.contains(&marker))
            .map(|(p, _, _)| *p),
    );
    loop {
        let before = keep.len();
        let add: Vec<u32> = rows
            .iter()
            .filter(|(_, pp, _)| keep.contains(pp))
            .map(|(p, _, _)| *p)
            .collect();
        keep.extend(add);
        if keep.len() == before {
            break;
        }
    }
    let mut s = format!("{header}\n");
    for (p, _, l) in &rows {
        if keep.contains(p) {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// What `grep -H -e ID... /proc/[0-9]*/mountinfo` prints.
fn mountinfo_matching(ids: &[String]) -> String {
    let mut files: Vec<String> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                        .map(str::to_owned)
                })
                .map(|pid| format!("/proc/{pid}/mountinfo"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::new();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
        {
            out.push_str(&format!("{f}:{line}\n"));
        }
    }
    out
}
