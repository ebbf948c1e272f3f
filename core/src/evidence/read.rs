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

/// The lines of a log a rule can use, streamed: at most [`MAX_KEPT_LINES`] (the last
/// ones), each cut at [`MAX_LINE`] bytes.
pub struct LogLines {
    pub quotes: Vec<Quote>,
    /// Lines in the part read.
    pub lines: usize,
    /// Usable lines dropped because more than [`MAX_KEPT_LINES`] were found.
    pub dropped: usize,
    /// Bytes skipped at the start because the file was over [`LOG_CAP`].
    pub skipped: u64,
}

/// Where the last [`MAX_KEPT_LINES`] usable lines are: (line index, byte offset, length).
/// Only positions are kept while scanning; the lines are fetched once at the end, so a
/// log where most lines are usable costs no more than one copy of each kept line.
struct Kept {
    lines: std::collections::VecDeque<(usize, u64, usize)>,
    dropped: usize,
}

impl Kept {
    fn new() -> Kept {
        Kept {
            lines: std::collections::VecDeque::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, index: usize, offset: u64, len: usize) {
        if self.lines.len() == MAX_KEPT_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back((index, offset, len.min(MAX_LINE + 1)));
    }

    /// The kept lines as quotes, each fetched by `read_at(offset, buf)`.
    fn quotes(
        self,
        source: &str,
        mut read_at: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> std::io::Result<LogLines> {
        let mut quotes = Vec::with_capacity(self.lines.len());
        let mut buf = Vec::new();
        for (index, offset, len) in self.lines {
            buf.resize(len, 0);
            read_at(offset, &mut buf)?;
            quotes.push(quote(source, index, &buf));
        }
        Ok(LogLines {
            quotes,
            lines: 0,
            dropped: self.dropped,
            skipped: 0,
        })
    }
}

/// The usable lines of a log held in memory (probes that read it over an exec).
pub fn log_lines(source: &str, bytes: &[u8], extra: &[String]) -> LogLines {
    let mut kept = Kept::new();
    let lines = match log_filter(extra) {
        // Reading from a slice cannot fail.
        Some(filter) => scan(bytes, &filter, |i, at, len| kept.push(i, at, len)).unwrap_or(0),
        None => 0,
    };
    let read_at = |at: u64, buf: &mut [u8]| {
        let at = at as usize;
        buf.copy_from_slice(&bytes[at..at + buf.len()]);
        Ok(())
    };
    let mut out = kept.quotes(source, read_at).unwrap_or(LogLines {
        quotes: Vec::new(),
        lines: 0,
        dropped: 0,
        skipped: 0,
    });
    out.lines = lines;
    out
}

/// The usable lines of a log file from `start` on, streamed: at most [`MAX_KEPT_LINES`]
/// (the last ones), each cut at [`MAX_LINE`] bytes. Line numbers count from `start`.
///
/// The words are searched over whole blocks, not line by line, and only a matching
/// line's position is noted: this runs at about the speed of `grep -c`. A line longer
/// than a block is searched in block-sized pieces.
fn log_lines_of_file(
    source: &str,
    file: &File,
    start: u64,
    extra: &[String],
) -> std::io::Result<LogLines> {
    use std::os::unix::fs::FileExt;
    let mut kept = Kept::new();
    let lines = match log_filter(extra) {
        Some(filter) => scan(file, &filter, |i, at, len| kept.push(i, start + at, len))?,
        None => 0,
    };
    let mut out = kept.quotes(source, |at, buf| file.read_exact_at(buf, at))?;
    out.lines = lines;
    Ok(out)
}

/// Reads blocks of whole lines and calls `keep(line_index, offset, len)` for each line
/// holding a match (offset from the first byte read). Returns the number of lines.
fn scan(
    mut reader: impl Read,
    filter: &AhoCorasick,
    mut keep: impl FnMut(usize, u64, usize),
) -> std::io::Result<usize> {
    const BLOCK: usize = 1 << 20;
    let mut buf = vec![0u8; 2 * BLOCK];
    let mut filled = 0;
    // Offset of buf[0] in the input.
    let mut consumed: u64 = 0;
    let mut index = 0;
    let mut eof = false;
    loop {
        while filled < BLOCK && !eof {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let data = &buf[..filled];
        // Whole lines only; at the end, or for a line longer than the buffer, all of it.
        let end = match memchr::memrchr(b'\n', data) {
            _ if eof => filled,
            Some(nl) => nl + 1,
            None => filled,
        };
        index = scan_region(&data[..end], index, filter, &mut |i, at, len| {
            keep(i, consumed + at as u64, len)
        });
        if eof {
            let unterminated = end > 0 && data[end - 1] != b'\n';
            return Ok(index + usize::from(unterminated));
        }
        buf.copy_within(end..filled, 0);
        filled -= end;
        consumed += end as u64;
    }
}

/// Scans one region that starts at the start of line `index`; returns the index of the
/// line that follows the region's last newline.
fn scan_region(
    region: &[u8],
    mut index: usize,
    filter: &AhoCorasick,
    keep: &mut impl FnMut(usize, usize, usize),
) -> usize {
    let mut counted = 0;
    let mut at = 0;
    while at < region.len() {
        let Some(m) = filter.find(aho_corasick::Input::new(region).span(at..region.len())) else {
            break;
        };
        let start = memchr::memrchr(b'\n', &region[..m.start()]).map_or(0, |i| i + 1);
        let end =
            memchr::memchr(b'\n', &region[m.start()..]).map_or(region.len(), |i| m.start() + i);
        index += memchr::memchr_iter(b'\n', &region[counted..start]).count();
        counted = start;
        keep(index, start, end - start);
        at = end + 1;
    }
    index + memchr::memchr_iter(b'\n', &region[counted..]).count()
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
    mut file: File,
    size: u64,
    extra: &[String],
) -> Result<LogLines, ReadRefusal> {
    let skipped = skip_to_tail(&mut file, size, LOG_CAP)?;
    let mut lines = log_lines_of_file(source, &file, skipped, extra)
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
    fn keeps_the_last_lines_when_too_many_match() {
        let text: String = (0..MAX_KEPT_LINES + 5)
            .map(|i| format!("Killing {i}\n"))
            .collect();
        let l = log_lines("k", text.as_bytes(), &[]);
        assert_eq!(l.quotes.len(), MAX_KEPT_LINES);
        assert_eq!(l.dropped, 5);
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
