//! One bundle file: the first byte picks the file name in `BUNDLE_FILES` (its low bits)
//! and whether the other files are recorded as missing first, as `Evidence::load` does
//! (bit 7; otherwise as a probe that ingests text in memory). The rest is that file's
//! text; then the detector and both renderings run on the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use terminus_core::evidence::{Evidence, SourceStatus, BUNDLE_FILES};
use terminus_core::{detect, report};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (name, _) = BUNDLE_FILES[usize::from(pick & 0x7f) % BUNDLE_FILES.len()];
    let mut ev = Evidence::default();
    if pick & 0x80 != 0 {
        for (n, _) in BUNDLE_FILES {
            ev.sources.insert(n.to_owned(), SourceStatus::Missing);
        }
    }
    ev.ingest(name, &String::from_utf8_lossy(rest));
    let _ = ev.problems();
    let report = detect::diagnose(&ev);
    let _ = report::to_text(&ev, &report);
    let _ = report::to_json(&ev, &report);
});
