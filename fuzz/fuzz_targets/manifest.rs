//! `manifest`: a set manifest under `sets/`. No panic on any input; a manifest that decodes
//! re-encodes to one that decodes equal.
#![no_main]

mod common;

use coffer::set::{Manifest, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::file_bytes(data, MAGIC, VERSION) else { return };
    let path = Path::new("repo/sets/x");
    if let Ok(m) = Manifest::decode(path, &bytes) {
        let enc = m.encode();
        let again = Manifest::decode(path, &enc).expect("a decoded manifest re-encodes to a valid one");
        assert_eq!(again, m, "manifest round trip changed it");
        let _ = (m.total_bytes(), m.total_files(), m.stored_bytes(), Manifest::id_of(&enc));
    }
});
