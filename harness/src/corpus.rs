//! A corpus: evidence bundles that know their answer. Any directory holding an
//! `expected-cause` file (a cause id, or `none`) is one, wherever it sits under the
//! root — the fixtures, `corpus/` written by scenario runs, or a single bundle — so no
//! layout is assumed. This module finds them ([`find_bundles`]) and puts every detector
//! to every bundle ([`score`]).
//!
//! Architecture invariant: no layout is assumed; a bundle is any directory holding
//! `expected-cause`, found wherever it sits under the root.
//! Architecture invariant: every detector meets every bundle exactly once, and a missing
//! result is scored as a failure, never dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cause::{CauseId, UnknownCause};
use crate::detectors::{Answer, Detector, DetectorContext, DetectorFailure};
use crate::scorecard::{Case, Scorecard};

/// Marks a bundle directory and holds its expected cause.
pub const EXPECTED_FILE: &str = "expected-cause";
/// Optional: one line naming the versions the bundle was captured on
/// (e.g. `k8s v1.31.0 / containerd 1.7.18`), shown in the scorecard.
pub const LABEL_FILE: &str = "label";

/// A bundle with the case it is scored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub dir: PathBuf,
    /// `case.id` is the path relative to the corpus root, with `/` separators.
    pub case: Case,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{} is not a directory; --bundles takes a directory holding evidence bundles", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source} (write `none` for a bundle where nothing is wrong)", path.display())]
    BadExpected { path: PathBuf, source: UnknownCause },
    #[error("no bundle found under {}: a bundle is a directory holding an `expected-cause` file", .0.display())]
    NoBundles(PathBuf),
}

/// Every bundle under `root` (or `root` itself), sorted by id. Hidden directories and
/// symbolic links are not entered, and a bundle's own subdirectories are not searched.
/// All problems are reported at once; finding nothing is an error.
pub fn find_bundles(root: &Path) -> Result<Vec<Bundle>, Vec<CorpusError>> {
    if !root.is_dir() {
        return Err(vec![CorpusError::NotADirectory(root.to_path_buf())]);
    }
    let mut bundles = Vec::new();
    let mut errors = Vec::new();
    walk(root, root, &mut bundles, &mut errors);
    if errors.is_empty() && bundles.is_empty() {
        errors.push(CorpusError::NoBundles(root.to_path_buf()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    bundles.sort_by(|a, b| a.case.id.cmp(&b.case.id));
    Ok(bundles)
}

fn walk(root: &Path, dir: &Path, bundles: &mut Vec<Bundle>, errors: &mut Vec<CorpusError>) {
    let expected_path = dir.join(EXPECTED_FILE);
    if expected_path.is_file() {
        match read_bundle(root, dir, &expected_path) {
            Ok(bundle) => bundles.push(bundle),
            Err(e) => errors.push(e),
        }
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            return errors.push(CorpusError::Unreadable {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut subdirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        walk(root, &sub, bundles, errors);
    }
}

fn read_bundle(root: &Path, dir: &Path, expected_path: &Path) -> Result<Bundle, CorpusError> {
    // `is_file` above refused FIFOs and devices; `take` bounds a huge file: a cause id
    // is a few bytes.
    let mut text = String::new();
    std::fs::File::open(expected_path)
        .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, 4096), &mut text))
        .map_err(|source| CorpusError::Unreadable {
            path: expected_path.to_path_buf(),
            source,
        })?;
    let expected = match text.trim() {
        "none" => None,
        id => Some(
            id.parse::<CauseId>()
                .map_err(|source| CorpusError::BadExpected {
                    path: expected_path.to_path_buf(),
                    source,
                })?,
        ),
    };
    let id = match dir.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        // The root itself is the bundle.
        _ => dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let label = std::fs::read_to_string(dir.join(LABEL_FILE))
        .ok()
        .and_then(|l| {
            l.lines()
                .next()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
        });
    Ok(Bundle {
        dir: dir.to_path_buf(),
        case: Case {
            id,
            label,
            expected,
        },
    })
}

/// Runs every detector over every bundle and records each trial, detectors in the
/// given order, bundles in corpus order. Trials run in parallel (external detectors
/// are processes that mostly wait); the scorecard does not depend on their timing.
pub fn score(bundles: &[Bundle], detectors: &[Detector], context: &DetectorContext) -> Scorecard {
    let jobs: Vec<(usize, usize)> = (0..detectors.len())
        .flat_map(|d| (0..bundles.len()).map(move |b| (d, b)))
        .collect();
    let results: Vec<Mutex<Option<Result<Answer, DetectorFailure>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .min(16)
        .min(jobs.len())
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(d, b)) = jobs.get(i) else { break };
                let result = detectors[d].run(&bundles[b].dir, context);
                *results[i]
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(result);
            });
        }
    });
    let mut card = Scorecard::new();
    for ((d, b), result) in jobs.iter().zip(results) {
        let result = result
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Every job ran once the scope ended; a missing result would be a bug here, and
        // is scored as a failure rather than hidden.
        let result = result.unwrap_or_else(|| {
            Err(DetectorFailure {
                kind: crate::detectors::FailureKind::Spawn {
                    reason: "internal: the trial never ran".into(),
                },
                stderr_tail: String::new(),
            })
        });
        card.record(detectors[*d].name(), &bundles[*b].case, result);
    }
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn bundles_are_found_at_any_depth_and_not_inside_each_other() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        write(&r.join("a/deep/er/one/expected-cause"), "disk-full\n");
        write(&r.join("a/deep/er/one/inner/expected-cause"), "mount-held");
        write(&r.join("two/expected-cause"), " none ");
        write(
            &r.join("two/label"),
            "k8s v1.31.0 / containerd 1.7.18\nmore\n",
        );
        write(&r.join(".hidden/expected-cause"), "finalizer");
        write(&r.join("not-a-bundle/runtime.log"), "");
        let bundles = find_bundles(r).expect("two bundles");
        let found: Vec<(&str, Option<CauseId>, Option<&str>)> = bundles
            .iter()
            .map(|b| (b.case.id.as_str(), b.case.expected, b.case.label.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("a/deep/er/one", Some(CauseId::DiskFull), None),
                ("two", None, Some("k8s v1.31.0 / containerd 1.7.18"))
            ]
        );
        let single = find_bundles(&r.join("two")).expect("the root is a bundle");
        assert_eq!(single[0].case.id, "two");
    }

    #[test]
    fn bad_corpora_are_explained() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let errs = find_bundles(&r.join("missing")).expect_err("missing dir");
        assert!(
            errs[0].to_string().contains("is not a directory"),
            "{}",
            errs[0]
        );
        let errs = find_bundles(r).expect_err("empty dir");
        assert!(
            errs[0].to_string().contains("no bundle found under"),
            "{}",
            errs[0]
        );
        write(&r.join("x/expected-cause"), "disk_full");
        write(&r.join("y/expected-cause"), "");
        let errs = find_bundles(r).expect_err("bad ids");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 2, "{text:?}");
        assert!(
            text[0].contains("x/expected-cause: unknown cause id `disk_full`"),
            "{}",
            text[0]
        );
    }
}
