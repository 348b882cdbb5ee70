//! Input shaping shared by the envelope-based targets (config, set manifests, leases).
//!
//! Those files end in a BLAKE3 checksum of everything before it, which the fuzzer cannot
//! forge, so on its own it would never get past the envelope into the JSON decoding and
//! validation. The first input byte picks how the rest is used:
//! - even: the rest is the file's bytes exactly as read from disk (envelope checks included);
//! - odd: the rest is the JSON payload, wrapped in a valid envelope with the given magic and
//!   version (so the payload decoding and validation are what gets fuzzed).

#![allow(dead_code)]

pub fn file_bytes(data: &[u8], magic: &[u8; 8], version: u32) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        Some(rest.to_vec())
    } else {
        Some(coffer::envelope::encode(magic, version, rest))
    }
}
