//! Scenario files on disk: only regular files are read, never past the size cap, and a
//! scenario directory's symlinks may not lead out of it. Every refusal names the file
//! and says why, without opening what it refuses (a FIFO would block the open) and
//! without showing what a refused symlink points at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use terminus_core::scenario::{load_dir, load_file, ScenarioError, MAX_FILE_BYTES};

const GOOD: &str = include_str!("../../scenarios/finalizer.yaml");

/// A fresh directory under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("terminus-scn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` on a thread and fails, instead of hanging, if it blocks (as opening a FIFO
/// would).
fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the scenario loader blocked")
}

fn dir_errors(dir: &Path) -> Vec<ScenarioError> {
    let dir = dir.to_path_buf();
    match promptly(move || load_dir(&dir)) {
        Ok(s) => panic!("expected errors, loaded {} scenarios", s.len()),
        Err(e) => e,
    }
}

fn error_for<'a>(errors: &'a [ScenarioError], file: &Path) -> &'a ScenarioError {
    errors
        .iter()
        .find(|e| e.file == file)
        .unwrap_or_else(|| panic!("no error for {}: {errors:?}", file.display()))
}

fn file_error(file: &Path) -> String {
    let file = file.to_path_buf();
    match promptly(move || load_file(&file)) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
}

#[test]
fn a_fifo_is_not_opened() {
    let dir = Scratch::new("fifo");
    dir.write("a.yaml", GOOD);
    let fifo = dir.path("b.yaml");
    mkfifo(&fifo);
    let errors = dir_errors(&dir.0);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = error_for(&errors, &fifo);
    assert_eq!((e.line, e.column), (0, 0));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not a regular file (a FIFO); only regular files are read as scenarios",
            fifo.display()
        )
    );
    // Named directly, the same.
    assert!(file_error(&fifo).contains("not a regular file (a FIFO)"));
}

#[test]
fn sockets_directories_and_devices_are_not_read() {
    let dir = Scratch::new("kinds");
    dir.write("a.yaml", GOOD);
    let socket = dir.path("s.yaml");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let subdir = dir.path("d.yaml");
    std::fs::create_dir(&subdir).expect("mkdir");
    let errors = dir_errors(&dir.0);
    assert!(error_for(&errors, &socket)
        .message
        .starts_with("not a regular file (a socket)"));
    assert!(error_for(&errors, &subdir)
        .message
        .starts_with("not a regular file (a directory)"));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(file_error(Path::new("/dev/null")).contains("not a regular file (a character device)"));
    assert!(file_error(&subdir).contains("not a regular file (a directory)"));
}

#[test]
fn a_symlink_leaving_the_directory_is_refused_without_showing_its_target() {
    let outside = Scratch::new("outside");
    let secret = outside.write("secret.yaml", "id: SECRET-CONTENT\ntitle: SECRET-CONTENT\n");
    let good_outside = outside.write("good.yaml", GOOD);
    let dir = Scratch::new("links");
    dir.write("a.yaml", &GOOD.replace("id: finalizer", "id: finalizer-a"));
    let links = [
        (dir.path("secret.yaml"), secret.clone()),
        (dir.path("good.yaml"), good_outside.clone()),
        (dir.path("null.yaml"), PathBuf::from("/dev/null")),
        // Relative, through `..`.
        (
            dir.path("up.yaml"),
            PathBuf::from(format!(
                "../terminus-scn-{}-outside/secret.yaml",
                std::process::id()
            )),
        ),
    ];
    for (link, target) in &links {
        std::os::unix::fs::symlink(target, link).expect("symlink");
    }
    let errors = dir_errors(&dir.0);
    assert_eq!(errors.len(), links.len(), "{errors:?}");
    for (link, _) in &links {
        let shown = error_for(&errors, link).to_string();
        assert!(shown.contains("symlink leaving the directory"), "{shown}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(!shown.contains("outside"), "{shown}");
    }
    // Named directly, a symlink is followed (the user chose the file).
    let d = dir.path("good.yaml");
    assert!(promptly(move || load_file(&d)).is_ok());
}

#[test]
fn a_symlink_inside_the_directory_is_followed() {
    let dir = Scratch::new("inside");
    std::fs::create_dir(dir.path("real")).expect("mkdir");
    dir.write("real/x.yml", GOOD);
    std::os::unix::fs::symlink("real/x.yml", dir.path("x.yaml")).expect("symlink");
    let d = dir.0.clone();
    let scenarios = promptly(move || load_dir(&d)).expect("loads");
    assert_eq!(scenarios.len(), 1);
    assert_eq!(scenarios[0].id, "finalizer");
}

#[test]
fn a_dangling_symlink_is_an_error_naming_the_link() {
    let dir = Scratch::new("dangling");
    let link = dir.path("gone.yaml");
    std::os::unix::fs::symlink("nowhere.yaml", &link).expect("symlink");
    let errors = dir_errors(&dir.0);
    assert!(
        error_for(&errors, &link)
            .message
            .starts_with("cannot follow the symlink"),
        "{errors:?}"
    );
}

#[test]
fn files_over_the_cap_are_refused_unread() {
    assert_eq!(MAX_FILE_BYTES, 1 << 20);
    let dir = Scratch::new("big");
    let big = dir.path("big.yaml");
    // Sparse: 1 GiB on paper, nothing on disk, and never read.
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse file");
    let errors = dir_errors(&dir.0);
    assert_eq!(
        error_for(&errors, &big).message,
        "file too large (1073741824 bytes): a scenario file is at most 1 MiB (1048576 bytes)"
    );
    let just_over = dir.write("over.yaml", &"#".repeat(MAX_FILE_BYTES as usize + 1));
    assert!(file_error(&just_over).contains("file too large (1048577 bytes)"));
    // At the cap, the file is read (and then parsed: comments only are empty).
    let at = dir.write("at.yaml", &"#".repeat(MAX_FILE_BYTES as usize));
    assert!(file_error(&at).ends_with(": the file is empty"));
}

#[test]
fn non_utf8_is_refused() {
    let dir = Scratch::new("utf8");
    let bad = dir.path("bad.yaml");
    std::fs::write(&bad, b"id: \xff\xfe\n").expect("write");
    assert!(file_error(&bad).contains("not UTF-8 text (invalid byte at offset 4)"));
}

#[test]
fn duplicate_ids_across_files_are_located() {
    let dir = Scratch::new("dupid");
    dir.write("a.yaml", GOOD);
    let b = dir.write("b.yaml", GOOD);
    let errors = dir_errors(&dir.0);
    let e = error_for(&errors, &b);
    assert_eq!((e.line, e.field.as_str()), (3, "id"));
    assert!(
        e.message.starts_with("id `finalizer` is also used by"),
        "{e}"
    );
}

#[test]
fn an_empty_or_missing_directory_is_an_error() {
    let dir = Scratch::new("empty");
    assert!(dir_errors(&dir.0)[0].message.contains("no scenario files"));
    assert!(dir_errors(&dir.path("missing"))[0]
        .message
        .starts_with("cannot read the scenario directory"));
}
