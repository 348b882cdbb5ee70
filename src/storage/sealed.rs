//! The storage an encrypted repository is used through: whole objects (index objects, set
//! manifests, leases) are sealed on put and opened on read, with their kind and name as
//! associated data, so everything above reads and writes plaintext and nothing can forget to
//! encrypt. Packs pass through: their blobs and trailer are sealed one by one by the pack
//! module (a restore reads byte ranges, which a whole-object seal would not allow). The
//! config and key objects pass through too: they are read before a key is known.

use super::{object_path, Kind, ObjectInfo, Spool, Storage};
use crate::crypto::{object_ad, Cipher};
use crate::error::{Error, Result};
use std::ops::Range;
use std::sync::Arc;

pub struct SealedStorage {
    inner: Arc<dyn Storage>,
    cipher: Cipher,
}

impl SealedStorage {
    pub fn new(inner: Arc<dyn Storage>, cipher: Cipher) -> SealedStorage {
        SealedStorage { inner, cipher }
    }

    fn sealed(kind: Kind) -> bool {
        matches!(kind, Kind::Index | Kind::Sets | Kind::Locks)
    }
}

impl Storage for SealedStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        if !SealedStorage::sealed(kind) {
            return self.inner.read(kind, name, range);
        }
        if range.is_some() {
            return Err(Error::Failed(format!(
                "{}: a sealed object is read whole, not by range",
                object_path(self, kind, name)
            )));
        }
        let sealed = self.inner.read(kind, name, None)?;
        self.cipher.open(&object_ad(kind, name), &sealed).ok_or_else(|| {
            Error::corrupt(
                object_path(self, kind, name),
                0,
                "does not authenticate (damaged, truncated, replaced, or not this repository's)",
            )
        })
    }

    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
        if !SealedStorage::sealed(kind) {
            return self.inner.put(kind, name, bytes);
        }
        self.inner.put(kind, name, &self.cipher.seal(&object_ad(kind, name), bytes))
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        self.inner.list(kind)
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        self.inner.size(kind, name)
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        self.inner.remove(kind, name)
    }

    fn parallel_requests(&self) -> usize {
        self.inner.parallel_requests()
    }

    fn read_gap(&self) -> u64 {
        self.inner.read_gap()
    }

    fn spool(&self, kind: Kind) -> Result<Box<dyn Spool>> {
        self.inner.spool(kind)
    }
}
