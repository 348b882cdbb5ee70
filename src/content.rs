//! Turns file content into stored chunks. Files are read with `pread` into bounded buffers
//! (never memory-mapped: a source file truncated under a map kills the process with SIGBUS),
//! in batches whose hashing and compression run in parallel while the next batch is read;
//! streams (a dump command's stdout) are chunked as they arrive, batch by batch. Memory stays
//! bounded by the batch size whatever a file claims its size is.
//!
//! A file is read to EOF but at most [`GROWTH_SLACK`] bytes past the size it had when it was
//! scanned: a file that keeps returning data (a `/proc` file that claims 0 bytes, a log
//! written faster than it is read) is reported as [`Stored::grew`] and left out by the walker.
//! A file that shrank while being read is stored as read: a shorter file, never a crash.

use crate::chunker::{self, Params};
use crate::error::{Error, IoContext, Result};
use crate::pack::BlobKind;
use crate::sink::Sink;
use crate::tree::ChunkRef;
use rayon::prelude::*;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// Bytes of chunks processed together by the parallel stages of a large file or stream.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of a file read per batch. Two buffers per file being read (one hashed while the
/// other is filled).
const FILE_BATCH: usize = 16 * 1024 * 1024;

/// How far past its scanned size a file is read before it counts as "kept growing".
pub const GROWTH_SLACK: u64 = FILE_BATCH as u64;

/// What storing one file's content produced.
pub struct Stored {
    pub content: Vec<ChunkRef>,
    pub size: u64,
    pub stored_bytes: u64,
    /// The file still had data after `len + GROWTH_SLACK` bytes: `content` is only a prefix.
    pub grew: bool,
}

fn store_all(sink: &Sink, chunks: &[&[u8]]) -> Result<Vec<(ChunkRef, u64)>> {
    chunks
        .par_iter()
        .map(|c| {
            let (id, n) = sink.store(BlobKind::Data, c)?;
            Ok((ChunkRef::new(id, c.len() as u32), n))
        })
        .collect()
}

fn fold(out: &mut Stored, batch: Vec<(ChunkRef, u64)>) {
    for (r, n) in batch {
        out.size += r.len as u64;
        out.stored_bytes += n;
        out.content.push(r);
    }
}

/// A read buffer: `data[..len]` holds bytes read. `data` only grows (zeroed once), so a
/// buffer reused across batches costs no allocation, zeroing or page faults per batch.
struct Buf {
    data: Vec<u8>,
    len: usize,
}

impl Buf {
    fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// Reads with `pread` from `*offset` until `buf` holds `want` bytes, EOF, or `limit` is
/// reached. Returns whether EOF was seen.
fn fill(file: &File, path: &Path, buf: &mut Buf, want: usize, offset: &mut u64, limit: u64) -> Result<bool> {
    if buf.data.len() < want {
        buf.data.resize(want, 0);
    }
    while buf.len < want && *offset < limit {
        let room = (want - buf.len).min((limit - *offset).min(usize::MAX as u64) as usize);
        match file.read_at(&mut buf.data[buf.len..buf.len + room], *offset) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                buf.len += n;
                *offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).ctx(path),
        }
    }
    Ok(false)
}

/// Stores an open regular file of (at scan time) `len` bytes. See the module doc for what
/// happens when it grows or shrinks meanwhile.
pub fn store_file(sink: &Sink, params: Params, file: &mut File, path: &Path, len: u64) -> Result<Stored> {
    let file = &*file;
    let mut out = Stored { content: Vec::new(), size: 0, stored_bytes: 0, grew: false };
    let limit = len.saturating_add(GROWTH_SLACK);
    let mut offset = 0u64;
    // A small file is read in one go into a buffer of its size (+1 to see EOF at once), at
    // least 64 KiB: some kernel files (`pagemap`) only accept reads of whole 8-byte records.
    let first = len.saturating_add(1).clamp(64 << 10, FILE_BATCH as u64) as usize;
    let mut cur = Buf { data: Vec::new(), len: 0 };
    let mut next = Buf { data: Vec::new(), len: 0 };
    let mut eof = fill(file, path, &mut cur, first, &mut offset, limit)?;
    loop {
        if !eof && cur.len < FILE_BATCH && offset < limit {
            eof = fill(file, path, &mut cur, FILE_BATCH, &mut offset, limit)?;
        }
        if !eof && offset >= limit {
            // One more read tells "exactly at the limit" from "still growing" (8 bytes: whole
            // `pagemap` records).
            let mut probe = [0u8; 8];
            out.grew = loop {
                match file.read_at(&mut probe, offset) {
                    Ok(n) => break n > 0,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).ctx(path),
                }
            };
            eof = !out.grew;
        }
        let last = eof || out.grew;
        let cuts: Vec<(usize, usize)> = chunker::cuts(cur.bytes(), params).collect();
        // Before EOF the last chunk ends only because the buffer does: it is cut again with
        // the next batch, which is how a whole-file pass would cut it.
        let keep = if last { cuts.len() } else { cuts.len().saturating_sub(1) };
        let done = cuts[..keep].last().map(|&(o, l)| o + l).unwrap_or(0);
        sink.counters.bytes_read.fetch_add(done as u64, Relaxed);
        let data = cur.bytes();
        let chunks: Vec<&[u8]> = cuts[..keep].iter().map(|&(o, l)| &data[o..o + l]).collect();
        if last {
            fold(&mut out, store_all(sink, &chunks)?);
            return Ok(out);
        }
        // Hash and compress this batch while the next one is read, after the carried tail.
        let tail = &data[done..];
        if next.data.len() < FILE_BATCH {
            next.data.resize(FILE_BATCH, 0);
        }
        next.data[..tail.len()].copy_from_slice(tail);
        next.len = tail.len();
        let (stored, read) =
            rayon::join(|| store_all(sink, &chunks), || fill(file, path, &mut next, FILE_BATCH, &mut offset, limit));
        fold(&mut out, stored?);
        eof = read?;
        drop(chunks);
        std::mem::swap(&mut cur, &mut next);
    }
}

/// Stores a stream (no temporary file), chunk batches hashed and compressed in parallel
/// while the next batch is being read.
pub fn store_stream<R: Read + Send>(sink: &Sink, params: Params, reader: R, what: &str) -> Result<Stored> {
    let mut out = Stored { content: Vec::new(), size: 0, stored_bytes: 0, grew: false };
    let mut chunks = chunker::stream(reader, params);
    let mut next_batch = || -> Result<Vec<Vec<u8>>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while bytes < BATCH_BYTES {
            match chunks.next() {
                Some(Ok(c)) => {
                    bytes += c.len();
                    batch.push(c);
                }
                Some(Err(e)) => return Err(Error::Failed(format!("{what}: reading: {e}"))),
                None => break,
            }
        }
        sink.counters.bytes_read.fetch_add(bytes as u64, Relaxed);
        Ok(batch)
    };
    let mut batch = next_batch()?;
    while !batch.is_empty() {
        // Read the next batch while this one is hashed and compressed.
        let (stored, next) = rayon::join(
            || {
                let refs: Vec<&[u8]> = batch.iter().map(|c| c.as_slice()).collect();
                store_all(sink, &refs)
            },
            &mut next_batch,
        );
        fold(&mut out, stored?);
        batch = next?;
    }
    Ok(out)
}
