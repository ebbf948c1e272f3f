//! A whole bundle, without IO: the input is split at NUL bytes and chunk i is the text of
//! `BUNDLE_FILES[i]` (an empty chunk: that file is missing), ingested in bundle order
//! (pod.yaml first, so its uid filters the logs) into one `Evidence` that starts as
//! `Evidence::load` leaves an empty directory. Then the detector and both renderings.
//! `load`'s own file handling (caps, tails, file types, symlinks, the mtime fallback for
//! `captured-at`) is covered by the unit tests in core/src/evidence/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terminus_core::evidence::{Evidence, SourceStatus, BUNDLE_FILES};
use terminus_core::{detect, report};

/// Separates the files of a bundle in the input (and in the seeds: fuzz/seeds/bundle/).
const SEPARATOR: u8 = 0;

fuzz_target!(|data: &[u8]| {
    let mut ev = Evidence::default();
    for (name, _) in BUNDLE_FILES {
        ev.sources.insert(name.to_owned(), SourceStatus::Missing);
    }
    for (chunk, (name, _)) in data.split(|&b| b == SEPARATOR).zip(BUNDLE_FILES) {
        if !chunk.is_empty() {
            ev.ingest(name, &String::from_utf8_lossy(chunk));
        }
    }
    let _ = ev.problems();
    let report = detect::diagnose(&ev);
    let _ = report::to_text(&ev, &report);
    let _ = report::to_json(&ev, &report);
});
