//! Reading a stranger's bundle safely: only regular files inside the bundle, with a cap
//! on what is held in memory, logs streamed and filtered instead of held whole.
//!
//! A bundle comes from a node a stranger's workload ran on, so every file may be
//! hostile: a FIFO (opening it blocks forever), a symlink to `/dev/zero` or to a secret
//! outside the bundle, a log of many gigabytes, lines of megabytes.
//!
//! Architecture invariant: nothing here follows a symlink out of the bundle, opens
//! anything but a regular file, or holds more than [`STRUCTURED_CAP`] bytes of one file
//! (plus one block and [`MAX_KEPT_LINES`] lines of [`MAX_LINE`] bytes for logs).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use aho_corasick::AhoCorasick;

use super::parse::Quote;

/// YAML and JSON files (pod, events, node, owner, revisions) are parsed whole; larger
/// ones are refused. 64 MiB holds tens of thousands of events.
pub const STRUCTURED_CAP: u64 = 64 << 20;
/// Line tables (df, lsattr, mountinfo, ps, crictl, ctr, docker, proc-refs): only the
/// last 64 MiB of a larger one is read.
pub const TABLE_CAP: u64 = 64 << 20;
/// Logs are streamed; only the last 8 GiB of a larger one is read.
pub const LOG_CAP: u64 = 8 << 30;
/// Of a log's lines that the rules can use, the last this many are kept.
pub const MAX_KEPT_LINES: usize = 20_000;
/// A kept line longer than this is cut (the quote says so with a trailing "…").
pub const MAX_LINE: usize = 8 << 10;

/// Why a bundle file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadRefusal {
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("a symlink leaving the bundle (refused, not followed)")]
    SymlinkLeaves,
    #[error("{size} bytes, over the {cap}-byte cap for this file")]
    TooLarge { size: u64, cap: u64 },
    #[error("{0}")]
    Io(String),
}

/// What was read of one file, and whether only its tail was.
pub struct Contents {
    pub text: String,
    /// Bytes skipped at the start because the file was over its cap.
    pub skipped: u64,
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Opens `dir/name` if it is a regular file inside the bundle. `Ok(None)`: absent.
pub fn open(dir: &Path, name: &str) -> Result<Option<(File, u64)>, ReadRefusal> {
    let path = dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadRefusal::Io(e.to_string())),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        // A symlink inside the bundle (a capture tool's own layout) is fine; one that
        // resolves outside it, or dangles, is refused without reading the target.
        let inside = match (std::fs::canonicalize(&path), std::fs::canonicalize(dir)) {
            (Ok(target), Ok(root)) => target.starts_with(&root),
            _ => false,
        };
        if !inside {
            return Err(ReadRefusal::SymlinkLeaves);
        }
    }
    let meta = std::fs::metadata(&path).map_err(|e| ReadRefusal::Io(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(ReadRefusal::NotRegular(kind_of(meta.file_type())));
    }
    let file = File::open(&path).map_err(|e| ReadRefusal::Io(e.to_string()))?;
    // Checked again on the open file: the path may have been swapped in between.
    let meta = file
        .metadata()
        .map_err(|e| ReadRefusal::Io(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(ReadRefusal::NotRegular(kind_of(meta.file_type())));
    }
    Ok(Some((file, meta.len())))
}

/// Reads a whole structured file, refusing one over `cap`.
pub fn whole(mut file: File, size: u64, cap: u64) -> Result<Contents, ReadRefusal> {
    if size > cap {
        return Err(ReadRefusal::TooLarge { size, cap });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // `take`: a file that grows while it is read still stops at the cap.
    (&mut file)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadRefusal::Io(e.to_string()))?;
    Ok(Contents {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        skipped: 0,
    })
}

/// Reads the last `cap` bytes of a line file, from the first whole line on.
pub fn tail(mut file: File, size: u64, cap: u64) -> Result<Contents, ReadRefusal> {
    let skipped = skip_to_tail(&mut file, size, cap)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadRefusal::Io(e.to_string()))?;
    let start = if skipped > 0 {
        memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1)
    } else {
        0
    };
    Ok(Contents {
        text: String::from_utf8_lossy(&bytes[start..]).into_owned(),
        skipped: skipped + start as u64,
    })
}

fn skip_to_tail(file: &mut File, size: u64, cap: u64) -> Result<u64, ReadRefusal> {
    if size <= cap {
        return Ok(0);
    }
    let skip = size - cap;
    file.seek(SeekFrom::Start(skip))
        .map_err(|e| ReadRefusal::Io(e.to_string()))?;
    Ok(skip)
}

/// Words that make a log line usable by a rule: a distinctive piece of each phrase the
/// rules look for (case-sensitive, with the case variants logs print). A line without
/// any of them is dropped while streaming; the fixture tier's snapshots check that no
/// rule loses a line it quotes. Short, common words ("the", a pod named "web") would
/// make the scan slow and keep noise, so each anchor is a rare piece of its phrase.
pub const LOG_WORDS: &[&str] = &[
    // "operation not permitted" (immutable-file)
    "not permitted",
    // "failed to remove directory" (immutable-file debris)
    "remove directory",
    // "no space left on device" (disk-full, runtime-desync)
    "space left",
    "SPACE LEFT",
    "Space left",
    // "device or resource busy" (mount-held)
    "resource busy",
    // "UnmountVolume.TearDown failed", "Unmounter.TearDownAt failed" (volume-teardown)
    "TearDown",
    // "umount: PATH: target is busy" (volume-teardown, when not on the TearDown line)
    "target is busy",
    // "Orphaned pod ... but volume paths are still present on disk" (volume-teardown)
    "volume paths are still present",
    // network-teardown
    "destroy network",
    "plugin not initialized",
    "failed to teardown pod",
    // "Failed to delete cgroup paths", "failed to delete cgroup paths for [...]",
    // "Failed to destroy orphaned pod cgroup", "Failed to kill all the processes attached
    // to cgroup", "pod cgroup sandbox has not been cleaned up" (cgroup-busy)
    "cgroup paths",
    "pod cgroup",
    "attached to cgroup",
    "attached to the",
    // "admission webhook \"x\" denied the request", "ValidatingAdmissionPolicy 'x' with
    // binding 'y' denied request" (admission-blocked, in the controller-manager's log)
    "denied the request",
    "denied request",
    // "Error updating node status, will retry", "Unable to update node status" (node-lost:
    // kubelet cut off from the API server)
    "node status",
    // runtime-desync
    "successful KillPod",
    // runtime-hang
    "DeadlineExceeded",
    "deadline exceeded",
    "server handshake",
    "Docker daemon",
    // kubelet acting on a deletion (kubelet-missed-delete)
    "Killing",
    "killing",
    "KillContainer",
    "StopContainer",
    "StopPodSandbox",
    "SyncLoop",
];

/// One automaton for the rules' words and the pod's own strings.
fn log_filter(extra: &[String]) -> Option<AhoCorasick> {
    let words = LOG_WORDS
        .iter()
        .map(|w| w.to_string())
        .chain(extra.iter().filter(|e| !e.is_empty()).cloned());
    // Leftmost-first: only then does aho-corasick use its SIMD prefilter (Teddy) for
    // many patterns; with the standard semantics the scan is several times slower.
    AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(words)
        .ok()
}

/// The lines of a log a rule can use: at most [`MAX_KEPT_LINES`] (the last ones), each
/// cut at [`MAX_LINE`] bytes.
pub struct LogLines {
    pub quotes: Vec<Quote>,
    /// Lines in the part read.
    pub lines: usize,
    /// More usable lines than [`MAX_KEPT_LINES`]: the earlier ones were not kept.
    pub truncated: bool,
    /// Bytes skipped at the start because the file was over [`LOG_CAP`].
    pub skipped: u64,
}

/// The usable lines of a log held in memory (probes that read it over an exec).
pub fn log_lines(source: &str, bytes: &[u8], extra: &[String]) -> LogLines {
    let read_at = |at: u64, buf: &mut [u8]| {
        let at = at as usize;
        match bytes.get(at..at + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    };
    // Reading from a slice cannot fail but for a bug; then nothing is kept.
    scan_backward(source, bytes.len() as u64, read_at, extra).unwrap_or(LogLines {
        quotes: Vec::new(),
        lines: 0,
        truncated: false,
        skipped: 0,
    })
}

/// A kept line: its offset, its length (cut) and the newlines from it to the end.
struct Found {
    offset: u64,
    len: usize,
    newlines_after: usize,
}

/// Scans the log from its end, block by block, keeping the lines that hold a
/// [`LOG_WORDS`] word or one of `extra` (the pod's uid), until [`MAX_KEPT_LINES`] are
/// found or the start is reached. Line numbers count from the first byte.
///
/// From the end because only the last lines are kept: however many lines match, at
/// most [`MAX_KEPT_LINES`] are handled, and the rest of the file is only counted for
/// line numbers (at memory speed). The words are searched over whole blocks, not line by
/// line. A line longer than a block is searched in block-sized pieces.
fn scan_backward(
    source: &str,
    len: u64,
    mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    extra: &[String],
) -> std::io::Result<LogLines> {
    const BLOCK: u64 = 1 << 20;
    let filter = log_filter(extra);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut kept: Vec<Found> = Vec::new();
    // Newlines in [scanned_from, len).
    let mut tail_newlines = 0usize;
    let mut end = len;
    let mut truncated = false;
    'blocks: while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let data = &mut buf[..(end - start) as usize];
        read_at(start, data)?;
        let data = &*data;
        // Whole lines only: the partial first line belongs to the block before. With no
        // newline at all (a line longer than a block) the block is searched as a piece.
        // (A newline only at the very end is that case too: the block must shrink `end`.)
        let region_start = match memchr::memchr(b'\n', data) {
            Some(nl) if start > 0 && nl + 1 < data.len() => nl + 1,
            _ => 0,
        };
        let region = &data[region_start..];
        let base = start + region_start as u64;
        let lines = filter
            .as_ref()
            .map(|f| matching_lines(region, f))
            .unwrap_or_default();
        let mut counted_to = region.len();
        let mut newlines = 0usize;
        for (line_start, line_end) in lines.into_iter().rev() {
            newlines += memchr::memchr_iter(b'\n', &region[line_start..counted_to]).count();
            counted_to = line_start;
            let offset = base + line_start as u64;
            // A line cut by the block's end (a piece of a long line) goes on after it.
            let cut_by_block = line_end == region.len() && base + (region.len() as u64) < len;
            let line_len = if cut_by_block {
                (MAX_LINE as u64 + 1).min(len - offset) as usize
            } else {
                (line_end - line_start).min(MAX_LINE + 1)
            };
            kept.push(Found {
                offset,
                len: line_len,
                newlines_after: tail_newlines + newlines,
            });
            if kept.len() == MAX_KEPT_LINES {
                truncated = true;
                tail_newlines += newlines;
                end = base + line_start as u64;
                break 'blocks;
            }
        }
        tail_newlines += newlines + memchr::memchr_iter(b'\n', &region[..counted_to]).count();
        end = base;
    }
    // Newlines before where the scan stopped, counted forward (0 when it reached the start).
    let before = count_newlines(&mut read_at, &mut buf, end)?;
    let total_newlines = before + tail_newlines;
    let mut last = [0u8; 1];
    let unterminated = len > 0 && read_at(len - 1, &mut last).is_ok() && last[0] != b'\n';
    let mut quotes = Vec::with_capacity(kept.len());
    let mut line = Vec::new();
    for found in kept.into_iter().rev() {
        line.resize(found.len, 0);
        read_at(found.offset, &mut line)?;
        if let Some(nl) = memchr::memchr(b'\n', &line) {
            line.truncate(nl);
        }
        quotes.push(quote(source, total_newlines - found.newlines_after, &line));
    }
    Ok(LogLines {
        quotes,
        lines: total_newlines + usize::from(unterminated),
        truncated,
        skipped: 0,
    })
}

/// (start, end) of each line of `region` holding a match, in order.
fn matching_lines(region: &[u8], filter: &AhoCorasick) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < region.len() {
        let Some(m) = filter.find(aho_corasick::Input::new(region).span(at..region.len())) else {
            break;
        };
        let start = memchr::memrchr(b'\n', &region[..m.start()]).map_or(0, |i| i + 1);
        let end =
            memchr::memchr(b'\n', &region[m.start()..]).map_or(region.len(), |i| m.start() + i);
        out.push((start, end));
        at = end + 1;
    }
    out
}

fn count_newlines(
    read_at: &mut impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    buf: &mut [u8],
    end: u64,
) -> std::io::Result<usize> {
    let mut count = 0;
    let mut at = 0u64;
    while at < end {
        let n = (end - at).min(buf.len() as u64) as usize;
        read_at(at, &mut buf[..n])?;
        count += memchr::memchr_iter(b'\n', &buf[..n]).count();
        at += n as u64;
    }
    Ok(count)
}

fn quote(source: &str, index: usize, line: &[u8]) -> Quote {
    let cut = line.len() > MAX_LINE;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
    let text = text.trim_end();
    Quote {
        source: source.to_owned(),
        line: index + 1,
        text: if cut {
            format!("{text}…")
        } else {
            text.to_owned()
        },
    }
}

/// Streams a log file, reading only its last [`LOG_CAP`] bytes.
pub fn log_file(
    source: &str,
    file: File,
    size: u64,
    extra: &[String],
) -> Result<LogLines, ReadRefusal> {
    use std::os::unix::fs::FileExt;
    let skipped = size.saturating_sub(LOG_CAP);
    // Offsets from `skipped`: a log over the cap is read from its last LOG_CAP bytes.
    let read_at = |at: u64, buf: &mut [u8]| file.read_exact_at(buf, skipped + at);
    let mut lines = scan_backward(source, size - skipped, read_at, extra)
        .map_err(|e| ReadRefusal::Io(e.to_string()))?;
    lines.skipped = skipped;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(text: &str) -> Vec<(usize, String)> {
        log_lines("kubelet.log", text.as_bytes(), &["uid-1".to_owned()])
            .quotes
            .into_iter()
            .map(|q| (q.line, q.text))
            .collect()
    }

    #[test]
    fn keeps_only_usable_lines_with_their_numbers() {
        let text = "noise\nE1 unlinkat /x: operation not permitted\nmore noise\npod uid-1 synced\n";
        assert_eq!(
            kept(text),
            vec![
                (2, "E1 unlinkat /x: operation not permitted".to_owned()),
                (4, "pod uid-1 synced".to_owned())
            ]
        );
        // Case-insensitive, last line without a newline.
        assert_eq!(
            kept("a\nNO SPACE LEFT ON DEVICE"),
            vec![(2, "NO SPACE LEFT ON DEVICE".to_owned())]
        );
    }

    #[test]
    fn a_huge_line_is_cut_and_numbering_goes_on() {
        let long = format!("Killing {}", "x".repeat(3 << 20));
        let text = format!("{long}\nnoise\nKilling again\n");
        let k = kept(&text);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].0, 1);
        assert!(
            k[0].1.ends_with('…') && k[0].1.len() <= MAX_LINE + 4,
            "{}",
            k[0].1.len()
        );
        assert_eq!(k[1], (3, "Killing again".to_owned()));
    }

    #[test]
    fn the_backward_scan_agrees_with_a_plain_line_loop_across_blocks() {
        // Lines of pseudo-random length over several blocks, so newlines fall on block
        // edges, some lines span blocks, and some match.
        let mut seed: u64 = 7;
        let mut text = String::new();
        while text.len() < (5 << 20) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 33) as usize % 3000;
            let word = if seed.is_multiple_of(7) {
                "Killing"
            } else {
                "plain"
            };
            text.push_str(word);
            text.push_str(&"y".repeat(len));
            text.push('\n');
        }
        // A line whose newline is the last byte of a block, and a 1.5 MiB line.
        text.push_str(&"z".repeat((1 << 20) - 1));
        text.push('\n');
        text.push_str(&format!("{}Killing\n", "w".repeat(3 << 19)));
        text.push_str("Killing at the end without a newline");
        let want: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("Killing"))
            .map(|(i, _)| i + 1)
            .collect();
        let got = log_lines("k", text.as_bytes(), &[]);
        let lines: Vec<usize> = got.quotes.iter().map(|q| q.line).collect();
        let keep = want.len().min(MAX_KEPT_LINES);
        assert_eq!(lines, want[want.len() - keep..]);
        assert_eq!(got.lines, text.lines().count());
        assert_eq!(
            got.quotes.last().map(|q| q.text.as_str()),
            Some("Killing at the end without a newline")
        );
    }

    #[test]
    fn keeps_the_last_lines_when_too_many_match() {
        let text: String = (0..MAX_KEPT_LINES + 5)
            .map(|i| format!("Killing {i}\n"))
            .collect();
        let l = log_lines("k", text.as_bytes(), &[]);
        assert_eq!(l.quotes.len(), MAX_KEPT_LINES);
        assert!(l.truncated);
        assert_eq!(l.quotes[MAX_KEPT_LINES - 1].line, MAX_KEPT_LINES + 5);
        assert_eq!(l.quotes[0].text, "Killing 5");
        assert_eq!(l.lines, MAX_KEPT_LINES + 5);
    }

    #[test]
    fn refuses_fifos_directories_and_symlinks_out() {
        let dir = std::env::temp_dir().join(format!("terminus-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("ok.txt"), "x").unwrap();
        std::os::unix::fs::symlink("ok.txt", dir.join("inside")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("outside")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", dir.join("dotdot")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(dir.join("fifo"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(open(&dir, "ok.txt").unwrap().is_some());
        assert!(open(&dir, "inside").unwrap().is_some());
        assert!(open(&dir, "absent").unwrap().is_none());
        assert_eq!(
            open(&dir, "outside").err(),
            Some(ReadRefusal::SymlinkLeaves)
        );
        assert_eq!(open(&dir, "dotdot").err(), Some(ReadRefusal::SymlinkLeaves));
        assert_eq!(open(&dir, "zero").err(), Some(ReadRefusal::SymlinkLeaves));
        assert_eq!(
            open(&dir, "sub").err(),
            Some(ReadRefusal::NotRegular("a directory"))
        );
        if fifo {
            assert_eq!(
                open(&dir, "fifo").err(),
                Some(ReadRefusal::NotRegular("a FIFO"))
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tables_over_the_cap_are_read_from_their_tail() {
        let dir = std::env::temp_dir().join(format!("terminus-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t"), "first line\nsecond line\nthird\n").unwrap();
        let (f, size) = open(&dir, "t").unwrap().unwrap();
        let r = tail(f, size, 10).unwrap();
        assert_eq!(r.text, "third\n");
        assert_eq!(r.skipped, size - 6);
        let (f, size) = open(&dir, "t").unwrap().unwrap();
        assert!(matches!(
            whole(f, size, 10),
            Err(ReadRefusal::TooLarge { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
