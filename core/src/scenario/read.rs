//! Reading scenario files: only regular files, no larger than [`MAX_FILE_BYTES`], and
//! (for a directory) no symlink that leads out of it.
//!
//! Architecture invariant: a path's file type is checked before it is opened (opening a
//! FIFO blocks; a device can be endless), and a file is never read past the cap. A
//! refused file's content, and a refused symlink's target, never appear in an error.
//! What remains: a file swapped for a FIFO between the check and the open can still block
//! the open; the scenario directory is the user's own checkout, not a hostile share.

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::ScenarioError;

/// The largest scenario file read: 1 MiB. The repository's scenarios are ~2 KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

fn whole(file: &Path, message: String) -> ScenarioError {
    ScenarioError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
    }
}

/// Reads `file` as UTF-8 text. With `within`, `file` is an entry of that directory and
/// must not be a symlink whose target lies outside it; without, symlinks are followed
/// (the user named the file).
pub fn read_source(file: &Path, within: Option<&Path>) -> Result<String, ScenarioError> {
    let fail = |message: String| whole(file, message);
    let link = fs::symlink_metadata(file).map_err(|e| fail(format!("cannot read file: {e}")))?;
    let meta = if link.file_type().is_symlink() {
        if let Some(dir) = within {
            let target = fs::canonicalize(file)
                .map_err(|e| fail(format!("cannot follow the symlink: {e}")))?;
            let root = fs::canonicalize(dir)
                .map_err(|e| fail(format!("cannot resolve the scenario directory: {e}")))?;
            if !target.starts_with(&root) {
                return Err(fail(
                    "symlink leaving the directory: a scenario symlink must point inside the scenario directory".into(),
                ));
            }
        }
        fs::metadata(file).map_err(|e| fail(format!("cannot follow the symlink: {e}")))?
    } else {
        link
    };
    check_meta(file, &meta)?;
    let mut f = File::open(file).map_err(|e| fail(format!("cannot read file: {e}")))?;
    // Checked again on the open file: the path may have changed since.
    let opened = f
        .metadata()
        .map_err(|e| fail(format!("cannot read file: {e}")))?;
    check_meta(file, &opened)?;
    let mut bytes = Vec::new();
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read file: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(file, None));
    }
    String::from_utf8(bytes).map_err(|e| {
        fail(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn check_meta(file: &Path, meta: &Metadata) -> Result<(), ScenarioError> {
    if !meta.is_file() {
        return Err(whole(
            file,
            format!(
                "not a regular file ({}); only regular files are read as scenarios",
                kind(meta)
            ),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(file, Some(meta.len())));
    }
    Ok(())
}

fn too_large(file: &Path, len: Option<u64>) -> ScenarioError {
    let size = len.map(|n| format!(" ({n} bytes)")).unwrap_or_default();
    whole(
        file,
        format!("file too large{size}: a scenario file is at most 1 MiB ({MAX_FILE_BYTES} bytes)"),
    )
}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    "an unknown kind"
}

/// The `*.yaml` / `*.yml` entries of `dir`, sorted; entries that cannot be listed are
/// errors, not silently skipped.
pub fn scenario_paths(dir: &Path) -> Result<(Vec<PathBuf>, Vec<ScenarioError>), ScenarioError> {
    let entries = fs::read_dir(dir)
        .map_err(|e| whole(dir, format!("cannot read the scenario directory: {e}")))?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    files.push(p);
                }
            }
            Err(e) => errors.push(whole(dir, format!("cannot list an entry: {e}"))),
        }
    }
    files.sort();
    Ok((files, errors))
}
