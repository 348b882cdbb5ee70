//! Random blob order for encrypted repositories (against chunk-size fingerprinting).
//!
//! Whoever holds the storage sees pack sizes, and on an object store the byte ranges a restore
//! reads. If a file's chunks went into packs in file order, a pack's size (or a run of ranges)
//! would be the sum of consecutive chunk sizes of a file, which lets someone who knows a file
//! test whether it is in the repository and learn where the secret chunker cuts. So each new
//! blob is, at random, written at once or held back; held blobs are written in random order
//! once they reach a quarter of a pack, and at the end of the run. A file's chunks then land
//! in no predictable order, partly in this pack and partly later, while memory stays bounded
//! by the hold (the idea of restic 0.18's two packs filled at random, without a second
//! spool; a run that stores a few small chunks still puts them in one pack, so a lone pack
//! does not give away single chunk sizes).

use crate::sink::Blob;

pub struct Scatter {
    held: Vec<Blob>,
    held_bytes: u64,
    /// Held bytes that make the hold be written out (0: scattering is off).
    limit: u64,
    rng: fastrand::Rng,
}

impl Scatter {
    /// `limit` 0 turns scattering off (unencrypted repositories keep file order, which makes
    /// restores read longer contiguous ranges).
    pub fn new(limit: u64) -> Scatter {
        let seed = u64::from_le_bytes(crate::crypto::random_array());
        Scatter { held: Vec::new(), held_bytes: 0, limit, rng: fastrand::Rng::with_seed(seed) }
    }

    /// Takes a new blob; returns the blobs to write now, in order.
    pub fn push(&mut self, blob: Blob) -> Vec<Blob> {
        if self.limit == 0 || self.rng.bool() {
            return vec![blob];
        }
        self.held_bytes += blob.stored.len() as u64;
        self.held.push(blob);
        if self.held_bytes >= self.limit {
            return self.drain();
        }
        Vec::new()
    }

    /// Every held blob, in random order.
    pub fn drain(&mut self) -> Vec<Blob> {
        let mut out = std::mem::take(&mut self.held);
        self.rng.shuffle(&mut out);
        self.held_bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{ChunkId, Id};
    use crate::pack::{BlobKind, Compression};

    fn blob(i: u32) -> Blob {
        let id = ChunkId(Id(*blake3::hash(&i.to_le_bytes()).as_bytes()));
        Blob { id, kind: BlobKind::Data, compression: Compression::None, stored: vec![0; 100], raw_len: i }
    }

    fn order(limit: u64) -> Vec<u32> {
        let mut s = Scatter::new(limit);
        let mut out: Vec<u32> = (0..200).flat_map(|i| s.push(blob(i))).map(|b| b.raw_len).collect();
        out.extend(s.drain().into_iter().map(|b| b.raw_len));
        out
    }

    #[test]
    fn every_blob_comes_out_once_and_the_order_is_not_kept() {
        let o = order(1000);
        let mut sorted = o.clone();
        sorted.sort();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>(), "a blob lost or doubled");
        assert_ne!(o, sorted, "file order kept");
        assert_ne!(order(1000), o, "the same order twice");
        assert_eq!(order(0), sorted, "off means file order");
    }
}
