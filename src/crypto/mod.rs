//! Encryption of repository objects (format v3, issue 12).
//!
//! Every object is sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under the
//! repository's data key, except what must be read before a key is known (`config`, the key
//! objects). A sealed object is `nonce (24) | ciphertext | tag (16)`. Nonces are 192 random
//! bits per seal: no counter to keep across hosts, threads or killed runs, and a collision is
//! out of reach (2^-96 after 2^48 seals).
//!
//! The associated data binds a sealed object to where it belongs, so a storage that swaps one
//! object for another, or moves an object to another kind or name, fails authentication:
//! - whole objects (index objects, manifests, leases, drill records): `kind / name`
//!   ([`object_ad`]);
//! - pack blobs: the blob's kind and chunk id ([`blob_ad`]), not the pack: prune repacks a
//!   blob by copying its stored bytes, and a blob read at the wrong offset or from the wrong
//!   pack fails to open;
//! - a pack's trailer: [`TRAILER_AD`]; the pack's name is the BLAKE3 of the stored trailer,
//!   so a pack renamed to another's name is told apart before anything is decrypted.
//!
//! Why XChaCha20-Poly1305 and not AES-256-GCM: random 96-bit GCM nonces would need a key
//! rotation budget (2^32 seals per key) across every host writing the repository; 192-bit
//! nonces need none, and on this machine the two measure within 20% of each other (see
//! docs/performance.md, "Encryption"), far below the cost of zstd and hashing.

pub mod key;
pub mod keyring;
pub mod password;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::sync::Arc;

use crate::storage::Kind;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Associated data of a pack's trailer.
pub const TRAILER_AD: &[u8] = b"coffer pack trailer";

/// How a repository's objects are stored: sealed under a data key, or in the clear (a
/// repository made with `--encryption none`, for a disk that is already encrypted).
#[derive(Clone)]
pub enum Cipher {
    None,
    Sealed(Arc<XChaCha20Poly1305>),
}

impl Cipher {
    pub fn new(data_key: &[u8; 32]) -> Cipher {
        Cipher::Sealed(Arc::new(XChaCha20Poly1305::new(data_key.into())))
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self, Cipher::Sealed(_))
    }

    /// Bytes a seal adds (0 in the clear).
    pub fn overhead(&self) -> usize {
        match self {
            Cipher::None => 0,
            Cipher::Sealed(_) => OVERHEAD,
        }
    }

    /// `plain` sealed with `ad` (returned as is in the clear).
    pub fn seal(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        match self {
            Cipher::None => plain.to_vec(),
            Cipher::Sealed(aead) => seal_with(aead, ad, plain),
        }
    }

    /// The plaintext of `sealed`, or `None` when it does not authenticate under this key
    /// and `ad` (damaged, swapped, or not this repository's). In the clear, `sealed` itself.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        match self {
            Cipher::None => Some(sealed.to_vec()),
            Cipher::Sealed(aead) => open_with(aead, ad, sealed),
        }
    }
}

/// Seals with a random nonce: `nonce | ciphertext | tag`.
///
/// Built in one buffer and encrypted in place: the plaintext is copied once, into the
/// output (a data chunk is sealed on the backup's hot path, most of it incompressible, so a
/// second copy of every byte shows in a first backup's profile).
pub fn seal_with(aead: &XChaCha20Poly1305, ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce = random_array::<NONCE_LEN>();
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = aead
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), ad, &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encrypts any length this format uses");
    out.extend_from_slice(&tag);
    out
}

/// Opens `nonce | ciphertext | tag`; `None` when it is too short or does not authenticate.
/// The ciphertext is copied once and decrypted in place.
pub fn open_with(aead: &XChaCha20Poly1305, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plain = ct.to_vec();
    aead.decrypt_in_place_detached(XNonce::from_slice(nonce), ad, &mut plain, tag.into()).ok()?;
    Some(plain)
}

/// Associated data of a whole object: its kind's place and its name.
pub fn object_ad(kind: Kind, name: &str) -> Vec<u8> {
    format!("coffer object {}/{name}", kind.dir()).into_bytes()
}

/// Associated data of a pack blob: its kind (0 data, 1 tree) and chunk id.
pub fn blob_ad(kind: u8, id: &[u8; 32]) -> [u8; 34] {
    let mut ad = [0u8; 34];
    ad[0] = b'B';
    ad[1] = kind;
    ad[2..].copy_from_slice(id);
    ad
}

/// `N` bytes from the operating system's generator. Failing to get randomness is not
/// something to carry on from: a key or nonce must never be predictable.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the operating system's random generator failed");
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_seal_opens_only_with_its_key_and_ad() {
        let c = Cipher::new(&[1; 32]);
        let s = c.seal(b"ad", b"hello");
        assert_eq!(s.len(), 5 + OVERHEAD);
        assert_eq!(c.open(b"ad", &s).as_deref(), Some(&b"hello"[..]));
        assert_eq!(c.open(b"other", &s), None);
        assert_eq!(Cipher::new(&[2; 32]).open(b"ad", &s), None);
        assert_ne!(c.seal(b"ad", b"hello"), s, "nonces are random");
    }

    proptest! {
        #[test]
        fn any_flip_or_cut_fails(plain in proptest::collection::vec(any::<u8>(), 0..200), at in 0usize..400) {
            let c = Cipher::new(&[9; 32]);
            let s = c.seal(b"x", &plain);
            let mut bad = s.clone();
            let i = at % bad.len();
            bad[i] ^= 0x80;
            prop_assert!(c.open(b"x", &bad).is_none());
            prop_assert!(c.open(b"x", &s[..at % s.len()]).is_none());
        }

        #[test]
        fn garbage_never_opens_or_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert!(Cipher::new(&[3; 32]).open(b"x", &bytes).is_none());
        }
    }
}
