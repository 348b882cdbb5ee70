//! The master key and the key objects (`keys/<id>`) that wrap it, one per password.
//!
//! The master key is random, made once by `init`: the data key (seals every object), the
//! chunk-id key and the FastCDC gear seed (secret: they would let whoever holds the storage
//! confirm guesses of content from chunk sizes and ids), and the BLAKE3 of the `config`
//! object, which authenticates the config (it is stored in the clear, but a changed config
//! no longer matches the key that opens it).
//!
//! A key object is an envelope (`COFFRKEY`, version 1) with a JSON payload: when and where it
//! was made (shown by `key list`), the Argon2id parameters and salt, and the master key
//! sealed with XChaCha20-Poly1305 under the key Argon2id derives from the password, the
//! object's name as associated data. Several key objects wrap the same master key, so adding
//! or removing a password never touches another object.

use crate::crypto::{open_with, random_array, seal_with};
use crate::envelope;
use crate::error::{Error, Result};
use crate::storage::Kind;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 8] = b"COFFRKEY";
pub const VERSION: u32 = 1;

/// Argon2id cost. The defaults take about 0.5 s and 64 MiB on the 2-core machine coffer is
/// built on (docs/performance.md, "Encryption"): slow enough that a stolen key object costs
/// a password guesser dearly, quick enough for a nightly run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// 64 MiB and 12 passes: 0.50 s to open a key on this project's 2-core reference machine
    /// (measured with `coffer sets` on an empty repository; docs/performance.md, "Encryption").
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 12, parallelism: 1 };
    /// What a key object may ask of the machine that opens it: a hostile one must not make
    /// every command allocate gigabytes or spin for minutes.
    const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    const MAX_ITERATIONS: u32 = 64;
    const MAX_PARALLELISM: u32 = 16;

    /// `m=KIB,t=N,p=N` (any of them; the others keep their defaults), as given to
    /// `--kdf-params` / `COFFER_KDF_PARAMS`.
    pub fn parse(s: &str) -> Result<KdfParams> {
        let mut p = KdfParams::DEFAULT;
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| bad_params(s))?;
            let v: u32 = v.trim().parse().map_err(|_| bad_params(s))?;
            match k.trim() {
                "m" => p.memory_kib = v,
                "t" => p.iterations = v,
                "p" => p.parallelism = v,
                _ => return Err(bad_params(s)),
            }
        }
        p.check().map_err(|why| Error::InvalidInput(format!("key derivation parameters {s:?}: {why}")))?;
        Ok(p)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !(1..=Self::MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(format!("parallelism must be 1..={}", Self::MAX_PARALLELISM));
        }
        if self.memory_kib < 8 * self.parallelism || self.memory_kib > Self::MAX_MEMORY_KIB {
            return Err(format!("memory must be {}..={} KiB", 8 * self.parallelism, Self::MAX_MEMORY_KIB));
        }
        if !(1..=Self::MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!("iterations must be 1..={}", Self::MAX_ITERATIONS));
        }
        Ok(())
    }

    /// The 32-byte key Argon2id derives from `password` and `salt`.
    fn derive(&self, password: &[u8], salt: &[u8]) -> Zeroizing<[u8; 32]> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .expect("parameters checked");
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon.hash_password_into(password, salt, &mut *out).expect("salt and output lengths are valid");
        out
    }
}

fn bad_params(s: &str) -> Error {
    Error::InvalidInput(format!("key derivation parameters {s:?}: expected m=KIB,t=N,p=N"))
}

/// The repository's secrets (see the module documentation).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterKey {
    #[serde(with = "hex32")]
    pub data_key: [u8; 32],
    #[serde(with = "hex32")]
    pub chunk_key: [u8; 32],
    pub gear_seed: u64,
    #[serde(with = "hex32")]
    pub config_hash: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.data_key.zeroize();
        self.chunk_key.zeroize();
    }
}

impl MasterKey {
    /// A fresh master key; `config_hash` is filled in once the config is encoded.
    pub fn random() -> MasterKey {
        MasterKey {
            data_key: random_array(),
            chunk_key: random_array(),
            gear_seed: u64::from_le_bytes(random_array()),
            config_hash: [0; 32],
        }
    }
}

/// Key derivation as stored in a key object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    /// Always "argon2id" (version 0x13).
    pub algorithm: String,
    #[serde(flatten)]
    pub params: KdfParams,
    #[serde(with = "hex_vec")]
    pub salt: Vec<u8>,
}

/// One key object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyObject {
    pub created: String,
    pub host: String,
    pub kdf: Kdf,
    /// The master key's JSON, sealed: nonce | ciphertext | tag.
    #[serde(with = "hex_vec")]
    pub sealed: Vec<u8>,
}

impl KeyObject {
    /// Wraps `master` for `password`, to be stored as `keys/<name>`.
    pub fn wrap(master: &MasterKey, password: &[u8], params: KdfParams, name: &str, created: String) -> KeyObject {
        let salt = random_array::<32>().to_vec();
        let wrapping = params.derive(password, &salt);
        let aead = XChaCha20Poly1305::new((&*wrapping).into());
        let json = Zeroizing::new(serde_json::to_vec(master).expect("master key serialises"));
        KeyObject {
            created,
            host: crate::lock::hostname(),
            kdf: Kdf { algorithm: "argon2id".into(), params, salt },
            sealed: seal_with(&aead, &crate::crypto::object_ad(Kind::Keys, name), &json),
        }
    }

    /// The master key, if `password` opens this object (stored as `keys/<name>`).
    pub fn unwrap(&self, password: &[u8], name: &str) -> Option<MasterKey> {
        let wrapping = self.kdf.params.derive(password, &self.kdf.salt);
        let aead = XChaCha20Poly1305::new((&*wrapping).into());
        let json = Zeroizing::new(open_with(&aead, &crate::crypto::object_ad(Kind::Keys, name), &self.sealed)?);
        serde_json::from_slice(&json).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        envelope::encode(MAGIC, VERSION, &serde_json::to_vec_pretty(self).expect("key object serialises"))
    }

    /// Decodes and checks a key object; `path` names it in errors. Parameters a hostile
    /// object could use to exhaust the machine are refused before anything is derived.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<KeyObject> {
        let (_, payload) = envelope::decode(path, "key object", MAGIC, VERSION, VERSION, bytes)?;
        let at = envelope::HEADER_LEN as u64;
        let k: KeyObject =
            serde_json::from_slice(payload).map_err(|e| Error::corrupt(path, at, format!("key object: {e}")))?;
        if k.kdf.algorithm != "argon2id" {
            return Err(Error::corrupt(path, at, format!("key derivation {:?} is not supported", k.kdf.algorithm)));
        }
        k.kdf.params.check().map_err(|why| Error::corrupt(path, at, format!("key derivation parameters: {why}")))?;
        if !(8..=64).contains(&k.kdf.salt.len()) {
            return Err(Error::corrupt(path, at, "key salt must be 8 to 64 bytes"));
        }
        Ok(k)
    }
}

/// A fresh key object name: 16 random hex digits.
pub fn new_key_name() -> String {
    crate::id::hex(&random_array::<8>())
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::id::hex(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        crate::id::Id::from_hex(&s).map(|id| id.0).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

mod hex_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::id::hex(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        crate::id::unhex(&s).ok_or_else(|| serde::de::Error::custom("expected hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn a_key_opens_with_its_password_and_name_only() {
        let m = MasterKey::random();
        let k = KeyObject::wrap(&m, b"pw", FAST, "k1", "t".into());
        let k = KeyObject::decode(Path::new("keys/k1"), &k.encode()).unwrap();
        assert_eq!(k.unwrap(b"pw", "k1"), Some(m.clone()));
        assert_eq!(k.unwrap(b"pW", "k1"), None);
        assert_eq!(k.unwrap(b"pw", "k2"), None, "a key object copied to another name");
    }

    #[test]
    fn params_parse_and_refuse() {
        assert_eq!(
            KdfParams::parse("m=1024,t=2").unwrap(),
            KdfParams { memory_kib: 1024, iterations: 2, parallelism: 1 }
        );
        assert!(KdfParams::parse("m=1").is_err());
        assert!(KdfParams::parse("t=0").is_err());
        assert!(KdfParams::parse("m=99999999").is_err());
        assert!(KdfParams::parse("x=1").is_err());
    }

    #[test]
    fn hostile_parameters_are_refused_before_deriving() {
        let mut k = KeyObject::wrap(&MasterKey::random(), b"pw", FAST, "k", "t".into());
        k.kdf.params.memory_kib = u32::MAX;
        let err = KeyObject::decode(Path::new("keys/k"), &k.encode()).unwrap_err();
        assert!(err.to_string().contains("keys/k") && err.to_string().contains("memory"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn codec_round_trips(created in "[ -~]{0,30}", salt in proptest::collection::vec(any::<u8>(), 8..64),
                             sealed in proptest::collection::vec(any::<u8>(), 0..200), m in 8u32..5000, t in 1u32..10) {
            let k = KeyObject { created, host: "h".into(),
                kdf: Kdf { algorithm: "argon2id".into(), params: KdfParams { memory_kib: m, iterations: t, parallelism: 1 }, salt },
                sealed };
            prop_assert_eq!(KeyObject::decode(Path::new("k"), &k.encode()).unwrap(), k);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyObject::decode(Path::new("k"), &bytes);
            let _ = KeyObject::decode(Path::new("k"), &envelope::encode(MAGIC, VERSION, &bytes));
        }
    }
}
