//! `key_object`: a key object (`keys/<id>`), read before any key is known. No panic on any
//! input; an object that decodes re-encodes to one that decodes equal, and trying a password
//! on it (when its parameters are cheap enough to fuzz) fails cleanly: no forged key opens.
#![no_main]

mod common;

use coffer::crypto::key::{KeyObject, MAGIC, VERSION};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::file_bytes(data, MAGIC, VERSION) else { return };
    let path = Path::new("repo/keys/0123456789abcdef");
    if let Ok(key) = KeyObject::decode(path, &bytes) {
        let again = KeyObject::decode(path, &key.encode()).expect("a decoded key object re-encodes to a valid one");
        assert_eq!(again, key, "key object round trip changed it");
        // Decoding admits costs up to 4 GiB and 64 passes (a real key is ~0.5 s); only cheap
        // ones are derived here, so the fuzzer spends its time on the decoder.
        let p = key.kdf.params;
        if p.memory_kib <= 256 && p.iterations <= 2 {
            // Opening needs a tag only the password's key makes: the fuzzer can't forge one.
            assert!(key.unwrap(b"password", "0123456789abcdef").is_none(), "a fuzzed key object opened");
        }
    }
});
