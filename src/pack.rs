//! Pack files: immutable containers of chunk blobs with a self-describing trailer.
//!
//! ```text
//! header  "COFFRPAK" | version u32 (1 in the clear, 2 sealed)
//! blobs   stored bytes of each chunk, back to back (zstd frame or raw; sealed one by one)
//! entries count x 52-byte entry (see `Entry::encode`; sealed as one)
//! footer  count u32 | version u32 | BLAKE3(stored entries) [32] | "COFFRPKT"
//! ```
//! In an encrypted repository (version 2) each blob is sealed on its own with its kind and
//! chunk id as associated data ([`crate::crypto::blob_ad`]), so a restore still reads one
//! blob's byte range; the entries are sealed as one, so blob boundaries, ids and sizes are
//! secret. The blobs of a file are also spread in random order over the pack and the next
//! (`crate::scatter`), so a pack's size says nothing of where a file's chunks were cut.
//! A pack's name is the BLAKE3 of its trailer (entries and footer). Every other byte of the
//! file belongs to a blob checked by its own keyed hash, so the name still identifies the
//! pack's content without a second hashing pass over everything written, and the trailer
//! alone rebuilds the index. A pack is written into a [`Storage::spool`] and stored under its
//! id with the guarantees of an atomic put: it exists whole or not at all, on every storage.

use crate::crypto::{blob_ad, Cipher, TRAILER_AD};
use crate::error::{Error, Result};
use crate::id::{ChunkId, Id, PackId};
use crate::storage::{object_path, Kind, Spool, Storage};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"COFFRPAK";
pub const FOOTER_MAGIC: &[u8; 8] = b"COFFRPKT";
/// Pack version in the clear (`--encryption none`).
pub const VERSION: u32 = 1;
/// Pack version with sealed blobs and trailer.
pub const VERSION_SEALED: u32 = 2;

/// The pack version written and read with `cipher`.
pub fn version_for(cipher: &Cipher) -> u32 {
    if cipher.is_encrypted() {
        VERSION_SEALED
    } else {
        VERSION
    }
}
pub const HEADER_LEN: u64 = 12;
pub const ENTRY_LEN: usize = 52;
pub const FOOTER_LEN: usize = 48;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

/// How a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Zstd = 1,
}

/// One trailer entry: where a chunk is in its pack and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub compression: Compression,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

impl Entry {
    /// `id[32] | kind u8 | compression u8 | reserved u16 = 0 | stored_len u32 | raw_len u32 | offset u64`
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.id.as_bytes());
        out.push(self.kind as u8);
        out.push(self.compression as u8);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> std::result::Result<Entry, String> {
        if b.len() != ENTRY_LEN {
            return Err(format!("entry is {} bytes, expected {ENTRY_LEN}", b.len()));
        }
        let id = ChunkId(Id(b[..32].try_into().expect("32 bytes")));
        let kind = match b[32] {
            0 => BlobKind::Data,
            1 => BlobKind::Tree,
            k => return Err(format!("unknown blob kind {k}")),
        };
        let compression = match b[33] {
            0 => Compression::None,
            1 => Compression::Zstd,
            c => return Err(format!("unknown compression {c}")),
        };
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Ok(Entry {
            id,
            kind,
            compression,
            stored_len: u32_at(36),
            raw_len: u32_at(40),
            offset: u64::from_le_bytes(b[44..52].try_into().expect("8 bytes")),
        })
    }
}

/// Encodes the trailer (entries, sealed with `cipher`, + footer) for `entries`.
pub fn encode_trailer(entries: &[Entry], cipher: &Cipher) -> Vec<u8> {
    let mut plain = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        e.encode(&mut plain);
    }
    let mut out = cipher.seal(TRAILER_AD, &plain);
    let sum = blake3::hash(&out);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&version_for(cipher).to_le_bytes());
    out.extend_from_slice(sum.as_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    out
}

/// Bytes of the trailer (stored entries and footer) of a pack of `count` entries.
pub fn trailer_len(count: usize, cipher: &Cipher) -> usize {
    count * ENTRY_LEN + cipher.overhead() + FOOTER_LEN
}

/// A pack's id: the BLAKE3 of its trailer bytes (entries and footer).
pub fn pack_id_of_trailer(trailer: &[u8]) -> PackId {
    PackId(Id(*blake3::hash(trailer).as_bytes()))
}

/// Decodes and validates a trailer given the last bytes of a pack of `file_len` bytes.
/// `tail` must hold at least the footer; returns `Err(needed)` via `TrailerNeed` when more
/// bytes are required to see all entries.
pub enum TrailerRead {
    Done(Vec<Entry>),
    NeedTail(u64),
}

pub fn decode_trailer(path: &Path, file_len: u64, tail: &[u8], cipher: &Cipher) -> Result<TrailerRead> {
    let min_len = HEADER_LEN + FOOTER_LEN as u64;
    if file_len < min_len || (tail.len() as u64) < (FOOTER_LEN as u64).min(file_len) {
        return Err(Error::corrupt(path, file_len, format!("pack is {file_len} bytes, too short to hold a trailer")));
    }
    let f = &tail[tail.len() - FOOTER_LEN..];
    let footer_off = file_len - FOOTER_LEN as u64;
    if &f[40..48] != FOOTER_MAGIC {
        return Err(Error::corrupt(path, footer_off + 40, "pack footer magic missing (truncated or not a pack)"));
    }
    let count = u32::from_le_bytes(f[0..4].try_into().expect("4 bytes")) as u64;
    let version = u32::from_le_bytes(f[4..8].try_into().expect("4 bytes"));
    if version != version_for(cipher) {
        if version == VERSION || version == VERSION_SEALED {
            // A pack of the other kind: planted, or copied from another repository.
            let (is, repo) = if version == VERSION { ("in the clear", "encrypted") } else { ("sealed", "unencrypted") };
            return Err(Error::corrupt(path, footer_off + 4, format!("pack is {is} in an {repo} repository")));
        }
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: version_for(cipher).to_string(),
        });
    }
    let overhead = cipher.overhead() as u64;
    let entries_len = count * ENTRY_LEN as u64 + overhead;
    if entries_len + FOOTER_LEN as u64 + HEADER_LEN > file_len {
        return Err(Error::corrupt(
            path,
            footer_off,
            format!("footer claims {count} entries, more than the pack can hold"),
        ));
    }
    let needed = entries_len + FOOTER_LEN as u64;
    if (tail.len() as u64) < needed {
        return Ok(TrailerRead::NeedTail(needed));
    }
    let stored_entries = &tail[tail.len() - needed as usize..tail.len() - FOOTER_LEN];
    let entries_off = file_len - needed;
    if blake3::hash(stored_entries).as_bytes() != &f[8..40] {
        return Err(Error::corrupt(path, entries_off, "pack trailer checksum mismatch"));
    }
    let entries_bytes = cipher.open(TRAILER_AD, stored_entries).ok_or_else(|| {
        Error::corrupt(path, entries_off, "pack trailer does not authenticate (damaged, or not this repository's)")
    })?;
    let mut out = Vec::with_capacity(count as usize);
    let mut expect_off = HEADER_LEN;
    for (i, chunk) in entries_bytes.chunks_exact(ENTRY_LEN).enumerate() {
        let at = entries_off + (i * ENTRY_LEN) as u64;
        let e = Entry::decode(chunk).map_err(|w| Error::corrupt(path, at, w))?;
        // Blobs are written back to back; anything else means the trailer lies.
        if e.offset != expect_off || e.offset + e.stored_len as u64 > entries_off {
            return Err(Error::corrupt(path, at, format!("entry {i} points outside the pack body")));
        }
        if e.compression == Compression::None && e.stored_len as u64 != e.raw_len as u64 + overhead {
            return Err(Error::corrupt(path, at, format!("entry {i}: raw blob with two different lengths")));
        }
        expect_off += e.stored_len as u64;
        out.push(e);
    }
    if expect_off != entries_off {
        return Err(Error::corrupt(path, expect_off, "pack body has bytes no entry accounts for"));
    }
    Ok(TrailerRead::Done(out))
}

/// Decodes and validates the trailer of a whole pack's bytes `data`.
pub fn trailer_in(path: &Path, data: &[u8], cipher: &Cipher) -> Result<Vec<Entry>> {
    match decode_trailer(path, data.len() as u64, data, cipher)? {
        TrailerRead::Done(entries) => Ok(entries),
        // The whole pack was given: more tail can't be needed unless the footer lies.
        TrailerRead::NeedTail(_) => Err(Error::corrupt(path, 0, "pack trailer length is inconsistent")),
    }
}

/// How a pack is named in messages (`<repository>/packs/<id>`).
pub fn object(storage: &dyn Storage, id: &PackId) -> PathBuf {
    PathBuf::from(object_path(storage, Kind::Packs, &id.to_hex()))
}

/// Reads and validates the trailer of the pack `id` of `size` bytes (its listed size),
/// reading only the pack's tail.
pub fn read_trailer(storage: &dyn Storage, id: &PackId, size: u64, cipher: &Cipher) -> Result<Vec<Entry>> {
    let path = object(storage, id);
    let mut want = (FOOTER_LEN as u64 + 64 * ENTRY_LEN as u64).min(size);
    loop {
        let tail = storage.read(Kind::Packs, &id.to_hex(), Some(size - want..size))?;
        match decode_trailer(&path, size, &tail, cipher)? {
            TrailerRead::Done(entries) => return Ok(entries),
            TrailerRead::NeedTail(n) if n > want && n <= size => want = n,
            TrailerRead::NeedTail(_) => return Err(Error::corrupt(&path, 0, "pack trailer length is inconsistent")),
        }
    }
}

/// The stored form of a blob: `bytes` (compressed or not) sealed with its kind and id. A
/// raw chunk is sealed straight from the caller's buffer (see [`compress`]).
pub fn seal_blob(cipher: &Cipher, id: &ChunkId, kind: BlobKind, bytes: Cow<'_, [u8]>) -> Vec<u8> {
    match cipher {
        Cipher::None => bytes.into_owned(),
        _ => cipher.seal(&blob_ad(kind as u8, id.as_bytes()), &bytes),
    }
}

/// Decodes a stored blob to its raw bytes and checks it is the chunk it claims to be.
pub fn decode_blob(
    path: &Path,
    e: &Entry,
    stored: &[u8],
    hasher: &crate::chunker::Hasher,
    cipher: &Cipher,
) -> Result<Vec<u8>> {
    let opened = open_blob(path, e, stored, cipher)?;
    decode_opened(path, e, opened, hasher)
}

/// A stored blob's bytes opened (still compressed as its entry says), or an error naming the
/// chunk when it does not authenticate. In the clear, the stored bytes as they are.
pub fn open_blob<'a>(path: &Path, e: &Entry, stored: &'a [u8], cipher: &Cipher) -> Result<Cow<'a, [u8]>> {
    // Opening copies the ciphertext once; a raw blob's opened bytes are its result as they
    // are, so restore copies each incompressible byte once, not twice.
    Ok(match cipher {
        Cipher::None => Cow::Borrowed(stored),
        _ => Cow::Owned(cipher.open(&blob_ad(e.kind as u8, e.id.as_bytes()), stored).ok_or_else(|| {
            Error::corrupt(path, e.offset, format!("chunk {}: does not authenticate (damaged)", e.id.short()))
        })?),
    })
}

/// An opened blob's raw bytes, checked against its entry's length and id.
pub fn decode_opened(
    path: &Path,
    e: &Entry,
    opened: Cow<'_, [u8]>,
    hasher: &crate::chunker::Hasher,
) -> Result<Vec<u8>> {
    match e.compression {
        Compression::None => {
            check_raw(path, e, &opened, hasher)?;
            Ok(opened.into_owned())
        }
        Compression::Zstd => {
            let raw = decompress(path, e, &opened)?;
            check_raw(path, e, &raw, hasher)?;
            Ok(raw)
        }
    }
}

/// Checks an opened blob against its entry's length and id without keeping its raw bytes
/// (a copy sends the opened bytes on as they are).
pub fn check_opened(path: &Path, e: &Entry, opened: &[u8], hasher: &crate::chunker::Hasher) -> Result<()> {
    match e.compression {
        Compression::None => check_raw(path, e, opened, hasher),
        Compression::Zstd => check_raw(path, e, &decompress(path, e, opened)?, hasher),
    }
}

fn decompress(path: &Path, e: &Entry, opened: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::decompress(opened, e.raw_len as usize)
        .map_err(|err| Error::corrupt(path, e.offset, format!("chunk {}: zstd: {err}", e.id.short())))
}

/// Fails, naming the chunk, unless `raw` has its entry's length and id.
fn check_raw(path: &Path, e: &Entry, raw: &[u8], hasher: &crate::chunker::Hasher) -> Result<()> {
    if raw.len() != e.raw_len as usize {
        return Err(Error::corrupt(
            path,
            e.offset,
            format!("chunk {}: {} bytes, expected {}", e.id.short(), raw.len(), e.raw_len),
        ));
    }
    if hasher.id(raw) != e.id {
        return Err(Error::corrupt(path, e.offset, format!("chunk {}: content does not match its id", e.id.short())));
    }
    Ok(())
}

/// The largest raw blob a salvage scan will try to decode (the chunker's largest maximum).
const SALVAGE_MAX_RAW: u32 = 16 << 20;

/// Recovers the blobs of a pack whose trailer can't be used (damaged, or the pack cut
/// short), from the pack's bytes `data`. Blobs are not self-delimiting, so three sources of
/// boundaries are tried, and a blob is kept only when it decodes to its id (keyed BLAKE3:
/// no guess can pass for a chunk it is not):
///
/// 1. every 52-byte window that parses as a trailer entry (the entries that survived, even
///    with the footer gone or other entries damaged);
/// 2. zstd frames (magic `28 B5 2F FD`; a frame knows its own length and content size) in
///    the bytes no entry accounted for;
/// 3. each gap between two recovered blobs (or between the header and the first one), as
///    one raw blob: a raw blob whose entry was lost sits exactly there.
///
/// Returns the recovered entries in offset order, each naming bytes of `data`. Packs in the
/// clear only: sealed blobs hide their boundaries (which is the point), so a sealed pack
/// without its trailer can't be delimited and yields nothing.
pub fn salvage(path: &Path, data: &[u8], hasher: &crate::chunker::Hasher) -> Vec<Entry> {
    let mut found: std::collections::BTreeMap<u64, Entry> = Default::default();
    let mut ids: std::collections::HashSet<ChunkId> = Default::default();
    let body_start = HEADER_LEN as usize;
    // Where the trailer starts, if the entry of the first blob survived: the body ends there.
    let mut trailer_start: Option<u64> = None;
    let check = |e: &Entry| -> bool {
        let end = e.offset as usize + e.stored_len as usize;
        end <= data.len() && decode_blob(path, e, &data[e.offset as usize..end], hasher, &Cipher::None).is_ok()
    };
    // 1. Surviving entries.
    if data.len() >= body_start + ENTRY_LEN {
        for p in body_start..=data.len() - ENTRY_LEN {
            let b = &data[p..p + ENTRY_LEN];
            if b[34] != 0 || b[35] != 0 || b[32] > 1 || b[33] > 1 {
                continue;
            }
            let Ok(e) = Entry::decode(b) else { continue };
            let plausible = e.offset >= HEADER_LEN
                && e.stored_len > 0
                && e.raw_len <= SALVAGE_MAX_RAW
                && e.offset + e.stored_len as u64 <= p as u64
                && (e.compression == Compression::Zstd || e.stored_len == e.raw_len);
            if plausible && !ids.contains(&e.id) && !found.contains_key(&e.offset) && check(&e) {
                if e.offset == HEADER_LEN {
                    trailer_start.get_or_insert(p as u64);
                }
                ids.insert(e.id);
                found.insert(e.offset, e);
            }
        }
    }
    let covered = |found: &std::collections::BTreeMap<u64, Entry>, at: u64| {
        found.range(..=at).next_back().is_some_and(|(o, e)| at < o + e.stored_len as u64)
    };
    let classify = |raw: &[u8]| {
        if raw.starts_with(crate::tree::MAGIC) && crate::tree::Tree::decode(path, 0, raw).is_ok() {
            BlobKind::Tree
        } else {
            BlobKind::Data
        }
    };
    // 2. zstd frames outside what the entries cover.
    let mut p = body_start;
    while p + 4 <= data.len() {
        if data[p..p + 4] != [0x28, 0xB5, 0x2F, 0xFD] || covered(&found, p as u64) {
            p += 1;
            continue;
        }
        let rest = &data[p..];
        let (Ok(n), Ok(Some(size))) =
            (zstd::zstd_safe::find_frame_compressed_size(rest), zstd::zstd_safe::get_frame_content_size(rest))
        else {
            p += 1;
            continue;
        };
        if n == 0 || n > rest.len() || size > SALVAGE_MAX_RAW as u64 {
            p += 1;
            continue;
        }
        match zstd::bulk::decompress(&rest[..n], size as usize) {
            Ok(raw) if raw.len() as u64 == size => {
                let id = hasher.id(&raw);
                if ids.insert(id) {
                    let kind = classify(&raw);
                    let e = Entry {
                        id,
                        kind,
                        compression: Compression::Zstd,
                        offset: p as u64,
                        stored_len: n as u32,
                        raw_len: size as u32,
                    };
                    found.insert(e.offset, e);
                }
                p += n;
            }
            _ => p += 1,
        }
    }
    // 3. Gaps between recovered blobs, each tried as one raw blob.
    let mut gaps = Vec::new();
    let mut cur = HEADER_LEN;
    for (o, e) in &found {
        if *o > cur && *o - cur <= SALVAGE_MAX_RAW as u64 {
            gaps.push((cur, *o));
        }
        cur = cur.max(o + e.stored_len as u64);
    }
    if let Some(t) = trailer_start.filter(|&t| t > cur && t - cur <= SALVAGE_MAX_RAW as u64) {
        gaps.push((cur, t));
    }
    // Small tree blobs are stored raw and often sit next to each other at the end of a pack:
    // a gap is also split where a tree blob's magic begins, each piece kept as one blob.
    for (a, b) in gaps {
        let gap = &data[a as usize..b as usize];
        let mut cuts: Vec<u64> = vec![a];
        let magic = gap.windows(4).enumerate().filter(|(i, w)| *i > 0 && *w == crate::tree::MAGIC);
        cuts.extend(magic.map(|(i, _)| a + i as u64));
        cuts.push(b);
        for w in cuts.windows(2) {
            let raw = &data[w[0] as usize..w[1] as usize];
            let id = hasher.id(raw);
            if ids.insert(id) {
                let (kind, len) = (classify(raw), raw.len() as u32);
                let e = Entry { id, kind, compression: Compression::None, offset: w[0], stored_len: len, raw_len: len };
                found.insert(w[0], e);
            }
        }
    }
    found.into_values().collect()
}

/// Chunks larger than this are first judged by compressing a sample from their middle.
const SAMPLE: usize = 32 * 1024;

thread_local! {
    /// One zstd context per thread per level: building a context per chunk costs more than
    /// compressing a small chunk.
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn zstd_compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSORS.with(|cs| {
        let mut cs = cs.borrow_mut();
        let i = match cs.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                cs.push((level, zstd::bulk::Compressor::new(level).ok()?));
                cs.len() - 1
            }
        };
        cs[i].1.compress(data).ok()
    })
}

/// Compresses a chunk, or keeps it raw when zstd doesn't save at least 1/32 of it.
///
/// Most contentstore bytes are already compressed (PDFs, images, office files); compressing
/// them whole only to throw the result away would cost most of a backup's CPU. So a chunk
/// more than twice [`SAMPLE`] long is compressed only if a 32 KiB sample from its middle
/// compresses at the fastest level.
///
/// A chunk kept raw is returned borrowed: sealing copies it once into the sealed blob, and
/// only a repository in the clear copies it as it is.
pub fn compress(raw: &[u8], level: i32) -> (Compression, Cow<'_, [u8]>) {
    if raw.len() > 2 * SAMPLE {
        let mid = raw.len() / 2;
        let sample = &raw[mid - SAMPLE / 2..mid + SAMPLE / 2];
        let pays = zstd_compress(sample, 1).is_some_and(|c| c.len() + SAMPLE / 32 < SAMPLE);
        if !pays {
            return (Compression::None, Cow::Borrowed(raw));
        }
    }
    if raw.len() >= 64 {
        if let Some(c) = zstd_compress(raw, level) {
            if c.len() + raw.len() / 32 < raw.len() {
                return (Compression::Zstd, Cow::Owned(c));
            }
        }
    }
    (Compression::None, Cow::Borrowed(raw))
}

/// A finished, durable pack.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: PackId,
    pub size: u64,
    pub entries: Vec<Entry>,
}

/// Writes one pack into a [`Spool`] of the storage (a temporary file for a local repository,
/// memory otherwise). Not thread-safe by design: the pipeline has exactly one pack writer.
pub struct PackWriter {
    spool: Box<dyn Spool>,
    offset: u64,
    entries: Vec<Entry>,
    cipher: Cipher,
}

impl PackWriter {
    pub fn create(storage: &dyn Storage, cipher: &Cipher) -> Result<PackWriter> {
        let mut spool = storage.spool(Kind::Packs)?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&version_for(cipher).to_le_bytes());
        spool.write(&header)?;
        Ok(PackWriter { spool, offset: HEADER_LEN, entries: Vec::new(), cipher: cipher.clone() })
    }

    /// Appends a stored blob (already sealed by [`seal_blob`] in an encrypted repository).
    pub fn add(
        &mut self,
        id: ChunkId,
        kind: BlobKind,
        compression: Compression,
        stored: &[u8],
        raw_len: u32,
    ) -> Result<()> {
        self.spool.write(stored)?;
        self.entries.push(Entry {
            id,
            kind,
            compression,
            offset: self.offset,
            stored_len: stored.len() as u32,
            raw_len,
        });
        self.offset += stored.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the trailer: the pack is complete and named, not yet stored.
    pub fn close(mut self) -> Result<Closed> {
        let trailer = encode_trailer(&self.entries, &self.cipher);
        self.spool.write(&trailer)?;
        let id = pack_id_of_trailer(&trailer);
        let size = self.offset + trailer.len() as u64;
        Ok(Closed { spool: self.spool, pack: Finished { id, size, entries: self.entries } })
    }

    /// `close` then `persist`.
    pub fn finish(self, storage: &dyn Storage) -> Result<Finished> {
        self.close()?.persist(storage)
    }
}

/// A complete pack waiting to be stored. Storing is separate from writing so the writer can
/// fill the next pack while this one is made durable. Dropped, it leaves nothing behind.
pub struct Closed {
    spool: Box<dyn Spool>,
    pack: Finished,
}

impl Closed {
    /// Stores the pack under `packs/<id>` (atomic), through `storage` (the storage the
    /// writer was created on, or a wrapper of it).
    pub fn persist(self, storage: &dyn Storage) -> Result<Finished> {
        self.spool.finish(storage, &self.pack.id.to_hex())?;
        Ok(self.pack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cipher(sealed: bool) -> Cipher {
        if sealed {
            Cipher::new(&[5; 32])
        } else {
            Cipher::None
        }
    }

    fn entries_strategy() -> impl Strategy<Value = (bool, Vec<Entry>)> {
        any::<bool>().prop_flat_map(|sealed| (Just(sealed), entries_with(cipher(sealed).overhead() as u32)))
    }

    fn entries_with(overhead: u32) -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::vec((any::<[u8; 32]>(), any::<bool>(), any::<bool>(), overhead..5000, 0u32..9000), 0..40)
            .prop_map(move |v| {
                let mut off = HEADER_LEN;
                v.into_iter()
                    .map(|(id, tree, z, stored, raw)| {
                        let compression = if z { Compression::Zstd } else { Compression::None };
                        let raw_len = if z { raw } else { stored - overhead };
                        let e = Entry {
                            id: ChunkId(Id(id)),
                            kind: if tree { BlobKind::Tree } else { BlobKind::Data },
                            compression,
                            offset: off,
                            stored_len: stored,
                            raw_len,
                        };
                        off += stored as u64;
                        e
                    })
                    .collect()
            })
    }

    proptest! {
        #[test]
        fn trailer_round_trip((sealed, entries) in entries_strategy()) {
            let c = cipher(sealed);
            let body: u64 = entries.iter().map(|e| e.stored_len as u64).sum();
            let trailer = encode_trailer(&entries, &c);
            let len = HEADER_LEN + body + trailer.len() as u64;
            prop_assert!(decode_trailer(Path::new("p"), len, &trailer, &cipher(!sealed)).is_err());
            match decode_trailer(Path::new("p"), len, &trailer, &c).unwrap() {
                TrailerRead::Done(got) => prop_assert_eq!(got, entries),
                TrailerRead::NeedTail(_) => prop_assert!(false, "full trailer given"),
            }
        }

        #[test]
        fn trailer_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..400), len in 0u64..100_000) {
            let _ = decode_trailer(Path::new("p"), len.max(tail.len() as u64), &tail, &Cipher::None);
            let _ = decode_trailer(Path::new("p"), len.max(tail.len() as u64), &tail, &cipher(true));
        }

        #[test]
        fn flipped_trailer_byte_is_detected((sealed, entries) in entries_strategy(), flip in any::<usize>()) {
            prop_assume!(!entries.is_empty());
            let c = cipher(sealed);
            let body: u64 = entries.iter().map(|e| e.stored_len as u64).sum();
            let mut trailer = encode_trailer(&entries, &c);
            let i = flip % trailer.len();
            trailer[i] ^= 0x10;
            let len = HEADER_LEN + body + trailer.len() as u64;
            let r = decode_trailer(Path::new("p"), len, &trailer, &c);
            prop_assert!(!matches!(r, Ok(TrailerRead::Done(ref got)) if *got != entries));
        }
    }

    #[test]
    fn salvage_recovers_every_blob_of_a_pack_without_its_footer_and_never_panics_on_garbage() {
        let hasher = crate::chunker::Hasher::new([7u8; 32]);
        let mem = crate::storage::MemStorage::new();
        let mut w = PackWriter::create(&mem, &Cipher::None).unwrap();
        let mut ids = Vec::new();
        for i in 0..20u64 {
            let raw = if i % 2 == 0 {
                crate::chunker::tests_support::seeded(i, 3000 + i as usize)
            } else {
                format!("text {i} ").repeat(300).into_bytes()
            };
            let (c, stored) = compress(&raw, 3);
            let id = hasher.id(&raw);
            w.add(id, BlobKind::Data, c, &stored, raw.len() as u32).unwrap();
            ids.push(id);
        }
        let pack = w.finish(&mem).unwrap();
        let data = mem.read(Kind::Packs, &pack.id.to_hex(), None).unwrap();
        for cut in [1usize, FOOTER_LEN, FOOTER_LEN + 3 * ENTRY_LEN] {
            let got = salvage(Path::new("p"), &data[..data.len() - cut], &hasher);
            let got: std::collections::HashSet<ChunkId> = got.iter().map(|e| e.id).collect();
            assert!(ids.iter().all(|id| got.contains(id)), "cut {cut}: {} of {} recovered", got.len(), ids.len());
        }
        for seed in 0..20 {
            let garbage = crate::chunker::tests_support::seeded(seed, 5000);
            let _ = salvage(Path::new("p"), &garbage, &hasher);
            let _ = salvage(Path::new("p"), &garbage[..(seed as usize * 7) % 60], &hasher);
        }
    }

    #[test]
    fn a_sealed_pack_reads_back_and_any_flipped_byte_is_caught() {
        let hasher = crate::chunker::Hasher::new([7u8; 32]);
        let c = cipher(true);
        let mem = crate::storage::MemStorage::new();
        let mut w = PackWriter::create(&mem, &c).unwrap();
        let raws: Vec<Vec<u8>> = (0..5u64).map(|i| format!("blob {i} ").repeat(50 + i as usize).into_bytes()).collect();
        for raw in &raws {
            let (z, stored) = compress(raw, 3);
            let id = hasher.id(raw);
            let stored = seal_blob(&c, &id, BlobKind::Data, stored);
            w.add(id, BlobKind::Data, z, &stored, raw.len() as u32).unwrap();
        }
        let pack = w.finish(&mem).unwrap();
        let data = mem.read(Kind::Packs, &pack.id.to_hex(), None).unwrap();
        assert_eq!(u32::from_le_bytes(data[8..12].try_into().unwrap()), VERSION_SEALED);
        let entries = trailer_in(Path::new("p"), &data, &c).unwrap();
        assert!(trailer_in(Path::new("p"), &data, &Cipher::None).is_err(), "read as a pack in the clear");
        for (e, raw) in entries.iter().zip(&raws) {
            let stored = &data[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
            assert_eq!(&decode_blob(Path::new("p"), e, stored, &hasher, &c).unwrap(), raw);
            for i in [0, stored.len() / 2, stored.len() - 1] {
                let mut bad = stored.to_vec();
                bad[i] ^= 1;
                let err = decode_blob(Path::new("p"), e, &bad, &hasher, &c).unwrap_err();
                assert!(err.to_string().contains("does not authenticate"), "{err}");
            }
            // The right bytes read as another chunk (a swapped entry) do not open either.
            let other = Entry { id: hasher.id(b"other"), ..*e };
            assert!(decode_blob(Path::new("p"), &other, stored, &hasher, &c).is_err());
        }
        let body =
            &data[HEADER_LEN as usize..entries.last().map(|e| (e.offset + e.stored_len as u64) as usize).unwrap()];
        assert!(!body.windows(6).any(|w| w == b"blob 0"), "plaintext in a sealed pack");
    }

    #[test]
    fn compression_pays_or_stays_raw() {
        let text = b"alfresco ".repeat(1000);
        assert_eq!(compress(&text, 3).0, Compression::Zstd);
        let random = crate::chunker::tests_support::seeded(1, 4096);
        let (c, stored) = compress(&random, 3);
        assert_eq!(c, Compression::None);
        assert_eq!(stored, random);
    }
}
