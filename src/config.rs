//! The repository `config` object: format version, repository id, encryption, chunker and
//! compression settings. Written once by `init`, never modified afterwards, so every run of
//! every version cuts and names chunks the same way. It is read before any key is known, so
//! it is stored in the clear; in an encrypted repository the chunk-id key and the gear seed
//! are not in it but in the master key, which also holds the config's hash (a changed config
//! no longer opens). In a repository made with `--encryption none` they are here.

use crate::envelope;
use crate::error::{Error, Result};
use crate::storage::{object_path, Kind, Storage};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"COFFRCFG";
/// Repository format version written by this build, and the range it reads.
pub const FORMAT_VERSION: u32 = 3;

/// `encryption` of a repository whose objects are sealed (see `crate::crypto`).
pub const ENCRYPTED: &str = "xchacha20poly1305";
/// `encryption` of a repository made with `--encryption none`.
pub const UNENCRYPTED: &str = "none";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerConfig {
    /// Always "fastcdc-v2020" (format versions 1 and 2).
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// Gear-table seed: per-repository so cut points don't leak file contents across
    /// repositories. Only in an unencrypted repository's config; otherwise in the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl ChunkerConfig {
    /// Defaults chosen by measuring dedup between nights of SQL and custom-format dumps and
    /// of contentstore files (see docs/performance.md, "Chunk sizes").
    pub fn default_with_seed(seed: u64) -> Self {
        ChunkerConfig {
            algorithm: "fastcdc-v2020".into(),
            min_size: 128 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
            seed: Some(seed),
        }
    }

    pub fn validate(&self, path: &Path) -> Result<()> {
        let pow2 = |v: u32| v.is_power_of_two();
        let ok = self.algorithm == "fastcdc-v2020"
            && pow2(self.min_size)
            && pow2(self.avg_size)
            && pow2(self.max_size)
            && self.min_size >= 64
            && self.min_size <= 1 << 20
            && self.avg_size >= 256
            && self.avg_size <= 4 << 20
            && self.max_size >= 1024
            && self.max_size <= 16 << 20
            && self.min_size < self.avg_size
            && self.avg_size < self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(path, 0, format!("unsupported chunker settings {self:?}")))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionConfig {
    /// "zstd" (format versions 1 and 2).
    pub algorithm: String,
    pub level: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub repository_id: String,
    /// [`ENCRYPTED`] or [`UNENCRYPTED`].
    pub encryption: String,
    /// Hex of the 32-byte BLAKE3 key chunk and tree ids are computed with: only in an
    /// unencrypted repository's config; otherwise in the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_key: Option<String>,
    pub chunker: ChunkerConfig,
    pub compression: CompressionConfig,
    /// Packs are closed once they reach this many bytes.
    pub pack_target_size: u64,
    pub created: String,
}

impl Config {
    /// A new repository's config. `secrets` (chunk key, gear seed) go into it only for an
    /// unencrypted repository (`encrypted` false).
    pub fn new(
        repository_id: [u8; 8],
        secrets: (&[u8; 32], u64),
        encrypted: bool,
        level: i32,
        created: String,
    ) -> Config {
        let (chunk_key, seed) = secrets;
        let mut chunker = ChunkerConfig::default_with_seed(seed);
        if encrypted {
            chunker.seed = None;
        }
        Config {
            repository_id: crate::id::hex(&repository_id),
            encryption: if encrypted { ENCRYPTED } else { UNENCRYPTED }.into(),
            chunk_key: (!encrypted).then(|| crate::id::hex(chunk_key)),
            chunker,
            compression: CompressionConfig { algorithm: "zstd".into(), level },
            pack_target_size: 16 * 1024 * 1024,
            created,
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.encryption == ENCRYPTED
    }

    /// The chunk key and gear seed of an unencrypted repository (checked at load).
    pub fn clear_secrets(&self) -> Option<([u8; 32], u64)> {
        let key = crate::id::Id::from_hex(self.chunk_key.as_deref()?)?;
        Some((key.0, self.chunker.seed?))
    }

    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec_pretty(self).expect("config serialises");
        envelope::encode(MAGIC, FORMAT_VERSION, &json)
    }

    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Config> {
        let (_, payload) = envelope::decode(path, "config", MAGIC, FORMAT_VERSION, FORMAT_VERSION, bytes)?;
        let cfg: Config = serde_json::from_slice(payload)
            .map_err(|e| Error::corrupt(path, envelope::HEADER_LEN as u64, format!("config payload: {e}")))?;
        let at = envelope::HEADER_LEN as u64;
        match cfg.encryption.as_str() {
            ENCRYPTED if cfg.chunk_key.is_some() || cfg.chunker.seed.is_some() => {
                return Err(Error::corrupt(path, at, "an encrypted repository's config holds a chunk key or seed"));
            }
            ENCRYPTED => {}
            UNENCRYPTED if cfg.clear_secrets().is_none() => {
                return Err(Error::corrupt(path, at, "chunk_key (64 hex digits) and chunker seed missing"));
            }
            UNENCRYPTED => {}
            other => return Err(Error::corrupt(path, at, format!("encryption {other:?} is not supported"))),
        }
        cfg.chunker.validate(path)?;
        if cfg.compression.algorithm != "zstd" || !(1..=22).contains(&cfg.compression.level) {
            return Err(Error::corrupt(path, 0, format!("unsupported compression {:?}", cfg.compression)));
        }
        if cfg.pack_target_size < 1024 * 1024 || cfg.pack_target_size > 1 << 32 {
            return Err(Error::corrupt(path, 0, "pack_target_size out of range"));
        }
        Ok(cfg)
    }

    /// The repository's config object.
    pub const NAME: &'static str = "config";

    /// Reads the repository's config object.
    pub fn load(storage: &dyn Storage) -> Result<Config> {
        let bytes = storage.read(Kind::Config, Config::NAME, None)?;
        Config::decode(Path::new(&object_path(storage, Kind::Config, Config::NAME)), &bytes)
    }

    /// Writes the config object (once, by `init`: it is what makes a repository one).
    pub fn store(&self, storage: &dyn Storage) -> Result<()> {
        storage.put(Kind::Config, Config::NAME, &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        for encrypted in [false, true] {
            let c = Config::new([1; 8], (&[7u8; 32], 9), encrypted, 3, "2026-01-01T00:00:00Z".into());
            let p = Path::new("config");
            assert_eq!(Config::decode(p, &c.encode()).unwrap(), c);
            assert_eq!(c.clear_secrets().is_some(), !encrypted);
            let text = String::from_utf8_lossy(&c.encode()).into_owned();
            assert_eq!(text.contains(&crate::id::hex(&[7u8; 32])), !encrypted, "{text}");
        }
    }

    #[test]
    fn truncated_config_names_file() {
        let c = Config::new([1; 8], (&[7u8; 32], 9), true, 3, "t".into()).encode();
        let err = Config::decode(Path::new("/repo/config"), &c[..c.len() - 5]).unwrap_err();
        assert!(err.to_string().contains("/repo/config") && err.to_string().contains("truncated"), "{err}");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Config::decode(Path::new("config"), &bytes);
        }
    }
}
