//! Content-defined chunking and chunk naming.
//!
//! Cut points come from FastCDC v2020 (the `fastcdc` crate, pinned to an exact version because
//! a release once moved cut points) with the repository's sizes and gear seed; chunk ids are
//! BLAKE3 keyed with the repository's chunk key. Both must stay bit-for-bit stable across
//! releases or deduplication against existing repositories silently stops: the golden vector
//! in the tests fails if either moves.

use crate::config::ChunkerConfig;
use crate::id::{ChunkId, Id};
use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};
use std::io::Read;

/// Chunker parameters in the types the chunker wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
    pub seed: u64,
}

impl Params {
    /// The config's sizes with the repository's gear seed (from the master key, or from the
    /// config of an unencrypted repository).
    pub fn with_seed(c: &ChunkerConfig, seed: u64) -> Params {
        Params { min: c.min_size as usize, avg: c.avg_size as usize, max: c.max_size as usize, seed }
    }
}

/// Cut points `(offset, len)` of an in-memory (or memory-mapped) buffer.
pub fn cuts(data: &[u8], p: Params) -> impl Iterator<Item = (usize, usize)> + '_ {
    // An empty input has no chunks; FastCDC would yield none anyway, this keeps it explicit.
    let cdc = FastCDC::with_level_and_seed(data, p.min, p.avg, p.max, Normalization::Level1, p.seed);
    cdc.map(|c| (c.offset, c.length))
}

/// Chunks read from a stream (a dump command's stdout): same cut points as [`cuts`] would
/// give on the same bytes, each chunk owned.
pub fn stream<R: Read>(r: R, p: Params) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    StreamCDC::with_level_and_seed(r, p.min, p.avg, p.max, Normalization::Level1, p.seed)
        .map(|r| r.map(|c| c.data).map_err(std::io::Error::from))
}

/// Names chunks (and tree blobs) with the repository's key.
#[derive(Clone)]
pub struct Hasher {
    key: [u8; 32],
}

impl Hasher {
    pub fn new(key: [u8; 32]) -> Hasher {
        Hasher { key }
    }
    pub fn id(&self, data: &[u8]) -> ChunkId {
        ChunkId(Id(*blake3::keyed_hash(&self.key, data).as_bytes()))
    }
}

/// Deterministic test data shared by the unit tests of several modules.
#[cfg(test)]
pub(crate) mod tests_support {
    /// Pseudo-random bytes (xorshift), so vectors need no stored fixture.
    pub fn seeded(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::seeded as seeded_bytes;
    use super::*;

    fn params() -> Params {
        Params { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024, seed: 0x0123_4567_89ab_cdef }
    }

    #[test]
    fn golden_vector() {
        // If this fails, a dependency bump moved cut points or chunk ids: existing repositories
        // would stop deduplicating. Do not update the numbers without a format version bump.
        let data = seeded_bytes(42, 1 << 20);
        let p = params();
        let got: Vec<(usize, usize)> = cuts(&data, p).collect();
        let h = Hasher::new([9u8; 32]);
        let ids: Vec<String> = got.iter().map(|&(o, l)| h.id(&data[o..o + l]).short()).collect();
        let expected_cuts: &[(usize, usize)] = &[
            (0, 69561),
            (69561, 94886),
            (164447, 146953),
            (311400, 68947),
            (380347, 78516),
            (458863, 59971),
            (518834, 32954),
            (551788, 110481),
            (662269, 106989),
            (769258, 103994),
            (873252, 20490),
            (893742, 80639),
            (974381, 74195),
        ];
        let expected_ids: &[&str] = &[
            "583c0bb2", "f3dbcd4a", "58e14732", "64bf3801", "9ee3dcb2", "0278f583", "d893cce1", "83a26b1b", "62f29d0e",
            "cc0b0497", "6edc9349", "948bf6c5", "8311e4d6",
        ];
        assert_eq!(got, expected_cuts, "cut points moved");
        assert_eq!(ids, expected_ids, "chunk ids moved");
    }

    #[test]
    fn stream_and_slice_agree() {
        let data = seeded_bytes(7, 3 << 20);
        let p = params();
        let a: Vec<Vec<u8>> = cuts(&data, p).map(|(o, l)| data[o..o + l].to_vec()).collect();
        let b: Vec<Vec<u8>> = stream(&data[..], p).map(|r| r.unwrap()).collect();
        assert_eq!(a, b);
        assert_eq!(a.concat(), data);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert_eq!(cuts(&[], params()).count(), 0);
        assert_eq!(stream(&[][..], params()).count(), 0);
    }
}
