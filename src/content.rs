//! Turns file content into stored chunks: small files are read whole, large files are
//! memory-mapped and chunked in batches whose hashing and compression run in parallel, and
//! streams (a dump command's stdout) are chunked as they arrive, batch by batch, so one huge
//! input keeps every core busy while memory stays bounded by the batch size.

use crate::chunker::{self, Params};
use crate::error::{Error, IoContext, Result};
use crate::pack::BlobKind;
use crate::sink::Sink;
use crate::tree::ChunkRef;
use rayon::prelude::*;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// Bytes of chunks processed together by the parallel stages of a large file or stream.
const BATCH_BYTES: usize = 32 * 1024 * 1024;

/// What storing one file's content produced.
pub struct Stored {
    pub content: Vec<ChunkRef>,
    pub size: u64,
    pub stored_bytes: u64,
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

/// Stores an open regular file of (at scan time) `len` bytes.
pub fn store_file(sink: &Sink, params: Params, file: &mut File, path: &Path, len: u64) -> Result<Stored> {
    let mut out = Stored { content: Vec::new(), size: 0, stored_bytes: 0 };
    if len >= crate::sys::MMAP_THRESHOLD {
        let map = crate::sys::map(file, path)?;
        let mut batch: Vec<&[u8]> = Vec::new();
        let mut batch_bytes = 0;
        let mut done = 0usize;
        for (off, l) in chunker::cuts(&map, params) {
            batch.push(&map[off..off + l]);
            batch_bytes += l;
            if batch_bytes >= BATCH_BYTES {
                fold(&mut out, store_all(sink, &batch)?);
                sink.counters.bytes_read.fetch_add(batch_bytes as u64, Relaxed);
                batch.clear();
                crate::sys::release(&map, done, batch_bytes);
                done += batch_bytes;
                batch_bytes = 0;
            }
        }
        fold(&mut out, store_all(sink, &batch)?);
        sink.counters.bytes_read.fetch_add(batch_bytes as u64, Relaxed);
    } else {
        let mut data = Vec::with_capacity(len as usize);
        file.read_to_end(&mut data).ctx(path)?;
        sink.counters.bytes_read.fetch_add(data.len() as u64, Relaxed);
        for (off, l) in chunker::cuts(&data, params) {
            let (id, n) = sink.store(BlobKind::Data, &data[off..off + l])?;
            fold(&mut out, vec![(ChunkRef::new(id, l as u32), n)]);
        }
    }
    Ok(out)
}

/// Stores a stream (no temporary file), chunk batches hashed and compressed in parallel
/// while the next batch is being read.
pub fn store_stream<R: Read + Send>(sink: &Sink, params: Params, reader: R, what: &str) -> Result<Stored> {
    let mut out = Stored { content: Vec::new(), size: 0, stored_bytes: 0 };
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
