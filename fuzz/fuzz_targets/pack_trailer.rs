//! `pack_trailer`: the trailer (entries + footer) at the end of a pack file.
//! No panic on any input; a trailer that decodes re-encodes to one that decodes equal.
//!
//! Input layout: `flags u8 | len u64 LE | tail...`. The pack's length is derived from `len`:
//! normally `tail.len() + len % 2^32` (the caller reads the tail from the end of a file that
//! long); with flag bit 1 it is `len` itself, unrelated to the tail. Because the fuzzer cannot
//! forge BLAKE3, flag bit 0 rewrites the footer's entry checksum to the correct value, and
//! flag bit 2 writes the footer magic and version, so entry validation gets fuzzed too. Flag
//! bit 3 reads the trailer as an encrypted repository's (a sealed entries region, which the
//! fuzzer cannot forge either: it fuzzes the framing and the refusal).
#![no_main]

use coffer::crypto::Cipher;
use coffer::pack::{decode_trailer, encode_trailer, trailer_len, version_for, TrailerRead, FOOTER_LEN, FOOTER_MAGIC, HEADER_LEN};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let flags = data[0];
    let len = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let mut tail = data[9..].to_vec();
    let file_len = if flags & 2 != 0 { len } else { tail.len() as u64 + len % (1 << 32) };
    let cipher = if flags & 8 != 0 { Cipher::new(&[7u8; 32]) } else { Cipher::None };

    if tail.len() >= FOOTER_LEN {
        let f = tail.len() - FOOTER_LEN;
        if flags & 4 != 0 {
            tail[f + 4..f + 8].copy_from_slice(&version_for(&cipher).to_le_bytes());
            tail[f + 40..f + 48].copy_from_slice(FOOTER_MAGIC);
        }
        if flags & 1 != 0 {
            let count = u32::from_le_bytes(tail[f..f + 4].try_into().unwrap()) as usize;
            let stored = count.checked_mul(coffer::pack::ENTRY_LEN).map(|_| trailer_len(count, &cipher) - FOOTER_LEN);
            if let Some(entries_len) = stored.filter(|&n| n <= f) {
                let sum = blake3::hash(&tail[f - entries_len..f]);
                tail[f + 8..f + 40].copy_from_slice(sum.as_bytes());
            }
        }
    }

    let path = Path::new("repo/packs/xx/pack");
    match decode_trailer(path, file_len, &tail, &cipher) {
        Ok(TrailerRead::Done(entries)) => {
            let body: u64 = entries.iter().map(|e| e.stored_len as u64).sum();
            let enc = encode_trailer(&entries, &cipher);
            assert_eq!(HEADER_LEN + body + enc.len() as u64, file_len, "accepted entries do not tile the pack");
            match decode_trailer(path, file_len, &enc, &cipher) {
                Ok(TrailerRead::Done(again)) => assert_eq!(again, entries, "trailer round trip changed it"),
                Ok(TrailerRead::NeedTail(n)) => panic!("re-encoded trailer is whole, yet {n} bytes requested"),
                Err(e) => panic!("re-encoded trailer rejected: {e}"),
            }
        }
        Ok(TrailerRead::NeedTail(n)) => {
            // The caller (read_trailer) relies on this: more than it gave, and no more than
            // the pack holds besides its header.
            assert!(n > tail.len() as u64, "asked for {n} bytes with {} given", tail.len());
            assert!(n + HEADER_LEN <= file_len, "asked for {n} bytes of a {file_len}-byte pack");
        }
        Err(_) => {}
    }
});
