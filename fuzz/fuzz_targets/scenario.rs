//! The scenario parser (both stages: YAML shape, then validation) on arbitrary text.
//! `parse` is what `load_file`/`load_dir` call once the file is read; the reading itself
//! (file types, size cap, symlinks) is covered by the unit tests in core/src/scenario/read.rs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use terminus_core::scenario;

fuzz_target!(|data: &[u8]| {
    // Real files are read as UTF-8 and refused otherwise; lossy keeps every input useful.
    let text = String::from_utf8_lossy(data);
    match scenario::parse(Path::new("fuzz.yaml"), &text) {
        Ok(s) => {
            // Whatever validates must also be usable: touch what the harness reads.
            let _ = format!("{s:?}");
        }
        Err(e) => {
            // Every rejection renders (file:line:column, the field, a bounded excerpt).
            let _ = e.to_string();
        }
    }
});
