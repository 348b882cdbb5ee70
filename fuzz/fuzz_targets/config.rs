//! `config`: the repository config file. No panic on any input; a config that decodes
//! re-encodes to one that decodes equal.
#![no_main]

mod common;

use coffer::config::{Config, FORMAT_VERSION, MAGIC};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::file_bytes(data, MAGIC, FORMAT_VERSION) else { return };
    let path = Path::new("repo/config");
    if let Ok(cfg) = Config::decode(path, &bytes) {
        let again = Config::decode(path, &cfg.encode()).expect("a decoded config re-encodes to a valid one");
        assert_eq!(again, cfg, "config round trip changed it");
        // Validated at load: an unencrypted config has its secrets, an encrypted one none.
        assert_eq!(cfg.clear_secrets().is_some(), !cfg.is_encrypted());
    }
});
