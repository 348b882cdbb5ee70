//! `lease`: a lease file under `locks/`. No panic on any input; a lease that decodes
//! re-encodes to one that decodes equal.
#![no_main]

mod common;

use coffer::lock::{LeaseInfo, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::file_bytes(data, MAGIC, VERSION) else { return };
    let path = Path::new("repo/locks/x.lease");
    if let Ok(lease) = LeaseInfo::decode(path, &bytes) {
        let again = LeaseInfo::decode(path, &lease.encode()).expect("a decoded lease re-encodes to a valid one");
        assert_eq!(again, lease, "lease round trip changed it");
    }
});
