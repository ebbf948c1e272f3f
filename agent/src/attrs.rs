//! Inode attribute flags: setting/clearing the immutable bit, and `lsattr`-formatted
//! listings for the evidence bundle (`lsattr.txt`).
//!
//! Architecture invariant: listings never cross a filesystem boundary nor follow a
//! symlink, and stop at their line and visit limits with a `# terminus-agent:` note,
//! so a scan of a huge tree is bounded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys;

pub const IMMUTABLE: u32 = 0x0000_0010;
pub const APPEND: u32 = 0x0000_0020;

/// The 22 columns of e2fsprogs 1.47's `lsattr`, in its order: (bit, letter).
/// A set bit prints its letter, a clear one prints `-`.
const COLUMNS: [(u32, char); 22] = [
    (0x0000_0001, 's'), // secure deletion
    (0x0000_0002, 'u'), // undelete
    (0x0000_0008, 'S'), // synchronous updates
    (0x0001_0000, 'D'), // synchronous directory updates
    (IMMUTABLE, 'i'),
    (APPEND, 'a'),
    (0x0000_0040, 'd'), // no dump
    (0x0000_0080, 'A'), // no atime
    (0x0000_0004, 'c'), // compress
    (0x0000_0800, 'E'), // encrypted
    (0x0000_4000, 'j'), // journalled data
    (0x0000_1000, 'I'), // hashed directory index
    (0x0000_8000, 't'), // no tail merging
    (0x0002_0000, 'T'), // top of directory hierarchy
    (0x0008_0000, 'e'), // extents
    (0x0080_0000, 'C'), // no copy-on-write
    (0x0200_0000, 'x'), // DAX
    (0x4000_0000, 'F'), // casefold
    (0x1000_0000, 'N'), // inline data
    (0x2000_0000, 'P'), // project hierarchy
    (0x0010_0000, 'V'), // verity
    (0x0000_0400, 'm'), // don't compress
];

/// Formats flags the way `lsattr` prints them: always 22 characters.
pub fn format_flags(flags: u32) -> String {
    COLUMNS
        .iter()
        .map(|&(bit, c)| if flags & bit != 0 { c } else { '-' })
        .collect()
}

/// One `lsattr` output line: `FLAGS PATH`.
pub fn format_line(flags: u32, path: &Path) -> String {
    format!("{} {}", format_flags(flags), path.display())
}

/// The error line `lsattr` prints for a file whose flags it cannot read.
pub fn format_error(err: &std::io::Error, path: &Path) -> String {
    format!(
        "lsattr: {} While reading flags on {}",
        strerror(err),
        path.display()
    )
}

fn strerror(err: &std::io::Error) -> String {
    // io::Error's Display appends " (os error N)"; lsattr prints the bare strerror text.
    let s = err.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn open_for_flags(path: &Path) -> std::io::Result<File> {
    // O_NOFOLLOW|O_NONBLOCK: never follow a symlink out of the tree, never block on a
    // FIFO. Callers only pass regular files and directories, but races exist.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

pub fn get_flags(path: &Path) -> std::io::Result<u32> {
    let f = open_for_flags(path)?;
    sys::get_flags(&f).map_err(std::io::Error::from)
}

/// Sets or clears the immutable bit; returns (flags before, flags after).
pub fn set_immutable(path: &Path, on: bool) -> std::io::Result<(u32, u32)> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    if !(ft.is_file() || ft.is_dir()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "only regular files and directories can carry the immutable flag here",
        ));
    }
    let f = open_for_flags(path)?;
    let before = sys::get_flags(&f).map_err(std::io::Error::from)?;
    let wanted = if on {
        before | IMMUTABLE
    } else {
        before & !IMMUTABLE
    };
    if wanted != before {
        sys::set_flags(&f, wanted).map_err(std::io::Error::from)?;
    }
    let after = sys::get_flags(&f).map_err(std::io::Error::from)?;
    Ok((before, after))
}

/// Options for a listing.
#[derive(Debug, Clone, Copy)]
pub struct ListOpts {
    pub recursive: bool,
    /// Print only entries with `i` or `a` set (errors are still printed).
    pub only_flagged: bool,
    /// Stop after this many printed lines (a full image layer can hold 100k files).
    pub max_lines: usize,
    /// Stop after visiting this many entries (bounds a flagged-only scan of a node
    /// with many image layers).
    pub max_visited: usize,
}

/// Statistics of one listing.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ListStats {
    pub lines: usize,
    pub errors: usize,
    pub flagged: usize,
    pub visited: usize,
    pub truncated: bool,
}

/// Lists `root` (and with `recursive`, everything below it, without following symlinks
/// or crossing into other filesystems) as lsattr lines into `out`. Special files and
/// symlinks are skipped; unreadable entries become lsattr-style error lines.
pub fn list(root: &Path, opts: ListOpts, out: &mut dyn Write) -> std::io::Result<ListStats> {
    let mut st = ListStats::default();
    let root_meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            writeln!(
                out,
                "lsattr: {} while trying to stat {}",
                strerror(&e),
                root.display()
            )?;
            st.errors += 1;
            return Ok(st);
        }
    };
    let root_dev = std::os::unix::fs::MetadataExt::dev(&root_meta);
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if st.lines >= opts.max_lines || st.visited >= opts.max_visited {
            st.truncated = true;
            writeln!(
                out,
                "# terminus-agent: listing of {} truncated after {} lines, {} entries visited",
                root.display(),
                st.lines,
                st.visited
            )?;
            break;
        }
        st.visited += 1;
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue, // vanished meanwhile
        };
        let ft = meta.file_type();
        if ft.is_symlink()
            || ft.is_socket()
            || ft.is_fifo()
            || ft.is_block_device()
            || ft.is_char_device()
        {
            continue;
        }
        write_entry(&p, opts, out, &mut st)?;
        if opts.recursive && ft.is_dir() && std::os::unix::fs::MetadataExt::dev(&meta) == root_dev {
            push_children(&p, &mut stack, out, &mut st)?;
        }
    }
    Ok(st)
}

/// One lsattr line for `p` (or its error line), unless only flagged entries are wanted.
fn write_entry(
    p: &Path,
    opts: ListOpts,
    out: &mut dyn Write,
    st: &mut ListStats,
) -> std::io::Result<()> {
    match get_flags(p) {
        Ok(flags) => {
            let flagged = flags & (IMMUTABLE | APPEND) != 0;
            if flagged {
                st.flagged += 1;
            }
            if flagged || !opts.only_flagged {
                writeln!(out, "{}", format_line(flags, p))?;
                st.lines += 1;
            }
        }
        Err(e) => {
            writeln!(out, "{}", format_error(&e, p))?;
            st.lines += 1;
            st.errors += 1;
        }
    }
    Ok(())
}

/// Pushes the entries of directory `p` so that they pop in sorted order.
fn push_children(
    p: &Path,
    stack: &mut Vec<PathBuf>,
    out: &mut dyn Write,
    st: &mut ListStats,
) -> std::io::Result<()> {
    match std::fs::read_dir(p) {
        Ok(rd) => {
            let mut children: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            // Reverse-sorted onto the stack so the output comes out sorted.
            children.sort_by(|a, b| b.cmp(a));
            stack.extend(children);
        }
        Err(e) => {
            writeln!(
                out,
                "lsattr: {} while opening directory {}",
                strerror(&e),
                p.display()
            )?;
            st.errors += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_extents_file() {
        // ext4 files carry the extents flag; this is lsattr's line for one.
        assert_eq!(format_flags(0x0008_0000), "--------------e-------");
    }

    #[test]
    fn immutable_extents_file() {
        assert_eq!(
            format_flags(IMMUTABLE | 0x0008_0000),
            "----i---------e-------"
        );
        assert_eq!(
            format_line(IMMUTABLE | 0x0008_0000, Path::new("/x/y")),
            "----i---------e------- /x/y"
        );
    }

    #[test]
    fn append_only_and_noatime() {
        assert_eq!(format_flags(APPEND | 0x80), "-----a-A--------------");
    }

    #[test]
    fn every_column_is_distinct_and_22_wide() {
        let all = COLUMNS.iter().fold(0u32, |acc, (b, _)| {
            assert_eq!(acc & b, 0, "bit {b:#x} listed twice");
            acc | b
        });
        assert_eq!(format_flags(all), "suSDiadAcEjItTeCxFNPVm");
        assert_eq!(format_flags(0).len(), 22);
    }

    #[test]
    fn unknown_bits_are_ignored() {
        // 0x100 (dirty) and 0x200000 (EA inode) have no lsattr column.
        assert_eq!(format_flags(0x100 | 0x0020_0000), "-".repeat(22));
    }

    fn paths(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| l.get(23..).unwrap_or(l).to_string())
            .collect()
    }

    #[test]
    fn recursive_listing_is_sorted_skips_symlinks_and_truncates() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        std::fs::create_dir_all(r.join("b/c")).expect("mkdir");
        std::fs::write(r.join("a"), b"").expect("write");
        std::fs::write(r.join("b/c/.hidden"), b"").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", r.join("link")).expect("symlink");
        let all = ListOpts {
            recursive: true,
            only_flagged: false,
            max_lines: 100,
            max_visited: 100,
        };
        let mut out = Vec::new();
        let st = list(r, all, &mut out).expect("list");
        let want: Vec<String> = ["", "/a", "/b", "/b/c", "/b/c/.hidden"]
            .iter()
            .map(|s| format!("{}{s}", r.display()))
            .collect();
        // Filesystems without inode flags (some tmpfs) give error lines instead; both
        // name the path last.
        if st.errors == 0 {
            assert_eq!(paths(&out), want);
        }
        assert!(!st.truncated);

        let mut out = Vec::new();
        let st = list(
            r,
            ListOpts {
                max_lines: 2,
                ..all
            },
            &mut out,
        )
        .expect("list");
        assert!(st.truncated);
        assert!(String::from_utf8_lossy(&out).contains("# terminus-agent: listing of"));

        let mut out = Vec::new();
        let st = list(&r.join("missing"), all, &mut out).expect("list");
        assert_eq!(st.errors, 1);
        assert!(String::from_utf8_lossy(&out).starts_with("lsattr: No such file or directory"));
    }

    #[test]
    fn error_line_matches_lsattr() {
        let e = std::io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        assert_eq!(
            format_error(&e, Path::new("/a")),
            "lsattr: Operation not supported While reading flags on /a"
        );
    }
}
