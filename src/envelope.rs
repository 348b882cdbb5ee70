//! The envelope every small persisted file is wrapped in (config, set manifests, lease files).
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 8    | magic, e.g. `COFFRCFG`                  |
//! | 8      | 4    | format version (u32)                    |
//! | 12     | 8    | payload length N (u64)                  |
//! | 20     | N    | payload (JSON for the files above)      |
//! | 20+N   | 32   | BLAKE3 of bytes `0..20+N`               |
//!
//! Decoding checks, in order, the length, the magic, the version range, the declared length
//! and the checksum, so a truncated or foreign file fails with the first thing that is wrong.

use crate::error::{Error, Result};
use std::path::Path;

pub const HEADER_LEN: usize = 20;
pub const CHECKSUM_LEN: usize = 32;

pub fn encode(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Decodes an envelope, accepting versions `min..=max`. Returns `(version, payload)`.
/// `what` names the kind of file in error messages ("config", "set manifest" …).
pub fn decode<'a>(
    path: &Path,
    what: &str,
    magic: &[u8; 8],
    min: u32,
    max: u32,
    bytes: &'a [u8],
) -> Result<(u32, &'a [u8])> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        if bytes.is_empty() {
            return Err(Error::corrupt(path, 0, format!("{what} is empty")));
        }
        return Err(Error::corrupt(path, 0, format!("not a coffer {what} (bad magic)")));
    }
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupt(path, bytes.len() as u64, format!("{what} truncated inside its header")));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version < min || version > max {
        let supported = if min == max { min.to_string() } else { format!("{min}..={max}") };
        return Err(Error::UnsupportedVersion { path: path.to_path_buf(), found: version, supported });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let expected = (HEADER_LEN as u64).checked_add(len).and_then(|v| v.checked_add(CHECKSUM_LEN as u64));
    match expected {
        Some(e) if e == bytes.len() as u64 => {}
        Some(e) if e > bytes.len() as u64 => {
            return Err(Error::corrupt(
                path,
                bytes.len() as u64,
                format!("{what} truncated: header declares {e} bytes, file has {}", bytes.len()),
            ))
        }
        _ => {
            return Err(Error::corrupt(
                path,
                12,
                format!("{what} length field ({len}) does not match the file size {}", bytes.len()),
            ))
        }
    }
    let body_end = HEADER_LEN + len as usize;
    let sum = blake3::hash(&bytes[..body_end]);
    if sum.as_bytes() != &bytes[body_end..] {
        return Err(Error::corrupt(path, body_end as u64, format!("{what} checksum mismatch")));
    }
    Ok((version, &bytes[HEADER_LEN..body_end]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const M: &[u8; 8] = b"COFFTEST";

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512), v in 1u32..4) {
            let enc = encode(M, v, &payload);
            let (ver, got) = decode(Path::new("f"), "test", M, 1, 3, &enc).unwrap();
            prop_assert_eq!(ver, v);
            prop_assert_eq!(got, &payload[..]);
        }

        #[test]
        fn any_truncation_or_flip_is_an_error(payload in proptest::collection::vec(any::<u8>(), 0..64),
                                              cut in 0usize..200, flip in 0usize..200) {
            let enc = encode(M, 1, &payload);
            let cut = cut % enc.len();
            prop_assert!(decode(Path::new("f"), "test", M, 1, 1, &enc[..cut]).is_err());
            let mut bad = enc.clone();
            let i = flip % bad.len();
            bad[i] ^= 0x01;
            prop_assert!(decode(Path::new("f"), "test", M, 1, 1, &bad).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(Path::new("f"), "test", M, 1, 1, &bytes);
        }
    }

    #[test]
    fn newer_version_is_named() {
        let enc = encode(M, 9, b"{}");
        let err = decode(Path::new("/r/config"), "config", M, 1, 1, &enc).unwrap_err();
        assert!(err.to_string().contains("/r/config"), "{err}");
        assert!(err.to_string().contains("version 9"), "{err}");
    }
}
