//! The dedup-and-store stage: decides whether a chunk is new, compresses new ones, and hands
//! them to the single pack-writer thread.
//!
//! Invariants:
//! - A chunk id is stored at most once per run: ids are *claimed* in `pending` before anything
//!   else, so two workers holding the same bytes cannot both store them.
//! - `pending` holds only ids whose pack is not yet indexed; the writer moves ids to the
//!   filter once their pack is durable and its index rows committed, so memory stays bounded
//!   by the size of the packs in flight, not by the repository.
//! - Only chunks not already stored are compressed.
//! - The channel to the writer is bounded: at most `CHANNEL_BLOBS` blobs (each at most the
//!   chunker's maximum size) wait in memory, which is the pipeline's in-flight byte budget.

use crate::chunker::Hasher;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::index::{Filter, Index};
use crate::pack::{self, BlobKind, Compression, PackWriter};
use crate::repo::Repo;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

/// Blobs waiting for the writer, at most (each ≤ the chunker's max size).
pub const CHANNEL_BLOBS: usize = 16;

pub struct Blob {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub compression: Compression,
    pub stored: Vec<u8>,
    pub raw_len: u32,
}

/// Counters shared by the stages; read by progress displays while a run is going.
#[derive(Default, Debug)]
pub struct Counters {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub dirs: AtomicU64,
    /// Logical bytes of all files seen.
    pub bytes: AtomicU64,
    /// Bytes of file data actually read from the sources.
    pub bytes_read: AtomicU64,
    pub chunks_new: AtomicU64,
    pub chunks_known: AtomicU64,
    /// Raw bytes of new chunks.
    pub raw_new: AtomicU64,
    /// Stored (compressed) bytes of new blobs.
    pub stored_new: AtomicU64,
    /// Bytes of pack files written (blobs plus headers and trailers).
    pub pack_bytes: AtomicU64,
    pub packs: AtomicU64,
}

pub struct Sink<'a> {
    pub hasher: Hasher,
    level: i32,
    repo: &'a Repo,
    filter: &'a RwLock<Filter>,
    pending: &'a Mutex<HashSet<ChunkId>>,
    tx: Sender<Blob>,
    pub counters: &'a Counters,
}

impl<'a> Sink<'a> {
    pub fn new(
        hasher: Hasher,
        level: i32,
        repo: &'a Repo,
        filter: &'a RwLock<Filter>,
        pending: &'a Mutex<HashSet<ChunkId>>,
        tx: Sender<Blob>,
        counters: &'a Counters,
    ) -> Self {
        Sink { hasher, level, repo, filter, pending, tx, counters }
    }

    /// Is the chunk already stored (or being stored by this run)? Claims it when not.
    fn claim(&self, id: &ChunkId) -> Result<bool> {
        let claimed = self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(*id);
        if !claimed {
            return Ok(false);
        }
        let maybe = self.filter.read().unwrap_or_else(|p| p.into_inner()).may_contain(&id.0);
        if maybe && self.repo.index()?.contains(id)? {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            return Ok(false);
        }
        Ok(true)
    }

    /// Stores a blob if it is new. Returns its id and the stored bytes it added (0 if known).
    pub fn store(&self, kind: BlobKind, raw: &[u8]) -> Result<(ChunkId, u64)> {
        let id = self.hasher.id(raw);
        if !self.claim(&id)? {
            self.counters.chunks_known.fetch_add(1, Relaxed);
            return Ok((id, 0));
        }
        let (compression, stored) = pack::compress(raw, self.level);
        let n = stored.len() as u64;
        self.counters.chunks_new.fetch_add(1, Relaxed);
        self.counters.raw_new.fetch_add(raw.len() as u64, Relaxed);
        self.counters.stored_new.fetch_add(n, Relaxed);
        let blob = Blob { id, kind, compression, stored, raw_len: raw.len() as u32 };
        self.tx.send(blob).map_err(|_| Error::Failed("the pack writer stopped".into()))?;
        Ok((id, n))
    }
}

/// Builds the filter from every indexed chunk id.
pub fn build_filter(index: &Index) -> Result<Filter> {
    let mut f = Filter::with_capacity(index.chunk_count()? + 1_000_000);
    index.for_each_chunk_id(|id| f.insert(&id))?;
    Ok(f)
}

/// The single pack writer: appends blobs to the current pack and closes packs at the target
/// size. Closed packs go to a sealing thread that makes them durable, records them in the
/// index and then retires their ids from `pending` into the filter, while the writer fills
/// the next pack. Returns the packs written.
#[allow(clippy::too_many_arguments)]
pub fn write_packs(
    repo: &Path,
    mut index: Index,
    rx: Receiver<Blob>,
    target: u64,
    filter: &RwLock<Filter>,
    pending: &Mutex<HashSet<ChunkId>>,
    counters: &Counters,
    now: i64,
) -> Result<Vec<PackId>> {
    std::thread::scope(|scope| {
        let (seal_tx, seal_rx) = crossbeam_channel::bounded::<pack::Closed>(2);
        let sealer = scope.spawn(move || -> Result<Vec<PackId>> {
            let mut written = Vec::new();
            let mut failed = None;
            for closed in seal_rx.iter() {
                if failed.is_some() {
                    closed.abandon();
                    continue;
                }
                match seal(closed, &mut index, filter, pending, counters, now) {
                    Ok(id) => written.push(id),
                    Err(e) => failed = Some(e),
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(written),
            }
        });
        let mut current: Option<PackWriter> = None;
        let fill = (|| -> Result<()> {
            for blob in rx.iter() {
                let w = match current.as_mut() {
                    Some(w) => w,
                    None => current.insert(PackWriter::create(repo)?),
                };
                w.add(blob.id, blob.kind, blob.compression, &blob.stored, blob.raw_len)?;
                if w.size() >= target {
                    let closed = current.take().expect("just used").close()?;
                    if let Err(e) = seal_tx.send(closed) {
                        e.into_inner().abandon();
                        return Err(Error::Failed("the pack sealer stopped".into()));
                    }
                }
            }
            if let Some(w) = current.take() {
                let closed = w.close()?;
                if let Err(e) = seal_tx.send(closed) {
                    e.into_inner().abandon();
                    return Err(Error::Failed("the pack sealer stopped".into()));
                }
            }
            Ok(())
        })();
        if let Some(w) = current.take() {
            w.abandon();
        }
        drop(seal_tx);
        // Dropping `rx` (by returning) makes every sender fail fast.
        drop(rx);
        let sealed = sealer.join().map_err(|_| Error::Failed("the pack sealer panicked".into()))?;
        // The sealer's error (disk full on fsync …) is the root cause of a "sealer stopped".
        let written = sealed?;
        fill?;
        Ok(written)
    })
}

fn seal(
    closed: pack::Closed,
    index: &mut Index,
    filter: &RwLock<Filter>,
    pending: &Mutex<HashSet<ChunkId>>,
    counters: &Counters,
    now: i64,
) -> Result<PackId> {
    let finished = closed.persist()?;
    index.add_pack(&finished, now)?;
    counters.pack_bytes.fetch_add(finished.size, Relaxed);
    counters.packs.fetch_add(1, Relaxed);
    {
        let mut f = filter.write().unwrap_or_else(|p| p.into_inner());
        for e in &finished.entries {
            f.insert(&e.id.0);
        }
    }
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    for e in &finished.entries {
        p.remove(&e.id);
    }
    Ok(finished.id)
}
