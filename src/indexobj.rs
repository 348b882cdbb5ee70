//! Index objects (`index/<id>`, format v2): immutable lists of packs and their entries. They
//! are what the repository says is in its packs; the SQLite catalog is only a local cache of
//! them (see [`crate::catalog`]).
//!
//! ```text
//! envelope "COFFRIDX", version 2, payload:
//!   raw_len u64 | zstd frame of raw_len bytes:
//!     pack_count u32 | per pack: id [32] | size u64 | entry_count u32 | entries (52 bytes each)
//! ```
//! An object's name is the BLAKE3 of its bytes, so writing one twice is harmless and a renamed
//! or damaged object is told apart from a good one. Entries are the pack trailer's 52-byte
//! entries (`pack::Entry::encode`); each is checked to lie inside its pack's size.

use crate::envelope;
use crate::error::{Error, Result};
use crate::id::{Id, PackId};
use crate::pack::{Entry, Finished, ENTRY_LEN, HEADER_LEN};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"COFFRIDX";
pub const VERSION: u32 = 2;
/// Entries per object at most: objects stay a few MiB, cheap to read and to rewrite.
pub const MAX_ENTRIES: usize = 50_000;
/// Decoded size an object may claim at most (well above `MAX_ENTRIES` worth): a hostile
/// object can't make a reader allocate more.
const MAX_RAW: u64 = 64 << 20;

/// One object's bytes and its name.
pub struct Encoded {
    pub name: String,
    pub bytes: Vec<u8>,
    /// Which of the packs given to [`encode_all`] it names.
    pub packs: std::ops::Range<usize>,
}

/// Encodes packs into objects of at most [`MAX_ENTRIES`] entries each (a pack is never split;
/// one pack with more entries gets an object of its own).
pub fn encode_all(packs: &[Finished]) -> Vec<Encoded> {
    let mut out = Vec::new();
    let (mut start, mut entries) = (0, 0);
    for (i, p) in packs.iter().enumerate() {
        if i > start && entries + p.entries.len() > MAX_ENTRIES {
            out.push(encode(packs, start..i));
            (start, entries) = (i, 0);
        }
        entries += p.entries.len();
    }
    if start < packs.len() {
        out.push(encode(packs, start..packs.len()));
    }
    out
}

fn encode(all: &[Finished], range: std::ops::Range<usize>) -> Encoded {
    let packs = &all[range.clone()];
    let mut raw = Vec::new();
    raw.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        raw.extend_from_slice(p.id.as_bytes());
        raw.extend_from_slice(&p.size.to_le_bytes());
        raw.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            e.encode(&mut raw);
        }
    }
    let frame = zstd::bulk::compress(&raw, 3).expect("zstd compresses into a growing buffer");
    let mut payload = Vec::with_capacity(8 + frame.len());
    payload.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    payload.extend_from_slice(&frame);
    let bytes = envelope::encode(MAGIC, VERSION, &payload);
    Encoded { name: blake3::hash(&bytes).to_hex().to_string(), bytes, packs: range }
}

/// Decodes the object `name` (shown as `path` in errors), checking its name, envelope and
/// every entry against its pack's size.
pub fn decode(path: &Path, name: &str, bytes: &[u8]) -> Result<Vec<Finished>> {
    if blake3::hash(bytes).to_hex().as_str() != name {
        return Err(Error::corrupt(path, 0, "index object does not match its name (damaged or renamed)"));
    }
    let (_, payload) = envelope::decode(path, "index object", MAGIC, VERSION, VERSION, bytes)?;
    let at = envelope::HEADER_LEN as u64;
    let bad = |what: String| Error::corrupt(path, at, what);
    if payload.len() < 8 {
        return Err(bad("index object payload too short".into()));
    }
    let raw_len = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    if raw_len > MAX_RAW {
        return Err(bad(format!("index object claims {raw_len} decoded bytes, more than {MAX_RAW}")));
    }
    let raw = zstd::bulk::decompress(&payload[8..], raw_len as usize).map_err(|e| bad(format!("zstd: {e}")))?;
    if raw.len() as u64 != raw_len {
        return Err(bad(format!("index object decodes to {} bytes, not the {raw_len} it claims", raw.len())));
    }
    parse(&raw).map_err(bad)
}

/// Reads the decoded body; an error says what is wrong.
fn parse(raw: &[u8]) -> std::result::Result<Vec<Finished>, String> {
    let mut r = Reader { b: raw, at: 0 };
    let count = r.u32()? as usize;
    let mut out = Vec::with_capacity(count.min(raw.len() / 44));
    for i in 0..count {
        let id = PackId(Id(r.take(32)?.try_into().expect("32 bytes")));
        let size = r.u64()?;
        let n = r.u32()? as usize;
        let mut entries = Vec::with_capacity(n.min(raw.len() / ENTRY_LEN));
        for j in 0..n {
            let e = Entry::decode(r.take(ENTRY_LEN)?).map_err(|w| format!("pack {i}, entry {j}: {w}"))?;
            let end = e.offset.checked_add(e.stored_len as u64);
            if e.offset < HEADER_LEN || end.is_none_or(|end| end > size) {
                return Err(format!("pack {}, entry {j} lies outside the pack's {size} bytes", id.short()));
            }
            entries.push(e);
        }
        out.push(Finished { id, size, entries });
    }
    if r.at != raw.len() {
        return Err(format!("{} bytes after the last pack", raw.len() - r.at));
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("index object body truncated")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;
    use crate::pack::{BlobKind, Compression};
    use proptest::prelude::*;

    fn pack(seed: u64, n: usize) -> Finished {
        let mut offset = HEADER_LEN;
        let entries = (0..n)
            .map(|i| {
                let e = Entry {
                    id: ChunkId(Id(*blake3::hash(&(seed * 1000 + i as u64).to_le_bytes()).as_bytes())),
                    kind: if i % 3 == 0 { BlobKind::Tree } else { BlobKind::Data },
                    compression: Compression::None,
                    offset,
                    stored_len: 100 + i as u32,
                    raw_len: 100 + i as u32,
                };
                offset += e.stored_len as u64;
                e
            })
            .collect();
        Finished { id: PackId(Id(*blake3::hash(&seed.to_le_bytes()).as_bytes())), size: offset + 48, entries }
    }

    #[test]
    fn objects_round_trip_and_split_at_the_entry_limit() {
        let packs: Vec<Finished> = (0..5).map(|s| pack(s, 20_000)).collect();
        let objects = encode_all(&packs);
        assert_eq!(objects.len(), 3, "two packs of 20,000 entries per object");
        let mut back = Vec::new();
        for o in &objects {
            back.extend(decode(Path::new("index/x"), &o.name, &o.bytes).unwrap());
        }
        assert_eq!(back.len(), 5);
        for (a, b) in packs.iter().zip(&back) {
            assert_eq!((a.id, a.size, &a.entries), (b.id, b.size, &b.entries));
        }
    }

    #[test]
    fn an_entry_outside_its_pack_is_refused() {
        let mut p = pack(1, 3);
        p.size = 200;
        let o = encode_all(&[p]).remove(0);
        let e = decode(Path::new("index/x"), &o.name, &o.bytes).unwrap_err();
        assert!(e.to_string().contains("outside the pack"), "{e}");
    }

    proptest! {
        #[test]
        fn damaged_objects_are_refused_never_a_panic(flip in any::<usize>(), cut in any::<usize>()) {
            let o = encode_all(&[pack(2, 40), pack(3, 7)]).remove(0);
            let mut bytes = o.bytes.clone();
            let i = flip % bytes.len();
            bytes[i] ^= 0x10;
            prop_assert!(decode(Path::new("i"), &o.name, &bytes).is_err());
            let short = &o.bytes[..cut % o.bytes.len()];
            prop_assert!(decode(Path::new("i"), &o.name, short).is_err());
            // Garbage under its own name reaches the decoders past the name check.
            let name = blake3::hash(&bytes).to_hex().to_string();
            let _ = decode(Path::new("i"), &name, &bytes);
        }
    }
}
