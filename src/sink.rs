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
//! - The Bloom filter in front of the catalog is built only once it pays ([`LazyFilter`]): a
//!   nightly run, whose chunks and trees are nearly all known, asks the catalog directly and
//!   never reads every chunk id of a large repository.
//! - The channel to the writer is bounded: at most `CHANNEL_BLOBS` blobs (each at most the
//!   chunker's maximum size) wait in memory, which is the pipeline's in-flight byte budget.

use crate::chunker::Hasher;
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId};
use crate::index::{Filter, Index};
use crate::pack::{self, BlobKind, Compression, PackWriter};
use crate::repo::Repo;
use crate::scatter::Scatter;
use crate::storage::Storage;
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock, RwLock};

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
    filter: &'a LazyFilter,
    pending: &'a Mutex<HashSet<ChunkId>>,
    tx: Sender<Blob>,
    pub counters: &'a Counters,
}

/// Building the filter costs about one catalog lookup per this many indexed chunks (reading
/// an id while streaming the table vs. a B-tree search, measured: ~0.25 µs vs ~6 µs).
const BUILD_RATIO: u64 = 16;

/// The Bloom filter over the catalog's chunk ids, built on demand. Until it exists, claims ask
/// the catalog directly; each lookup that finds a chunk new (the only kind the filter would
/// have answered alone) counts, and once they reach 1/[`BUILD_RATIO`] of the catalog's size
/// the filter is built. So a run never spends more than about twice what the better of the
/// two strategies would, and a nightly run over a large repository skips the build.
///
/// Committed ids reach the filter through [`LazyFilter::insert_committed`]. Both it and the
/// build hold `guard`: an id committed before the build starts is read by the build, one
/// committed after it ends is inserted, and none falls between.
pub struct LazyFilter {
    filter: OnceLock<RwLock<Filter>>,
    guard: Mutex<()>,
    misses: AtomicU64,
    threshold: u64,
}

impl LazyFilter {
    /// `chunks`: about how many chunks the catalog holds.
    pub fn new(chunks: u64) -> LazyFilter {
        LazyFilter {
            filter: OnceLock::new(),
            guard: Mutex::new(()),
            misses: AtomicU64::new(0),
            threshold: chunks / BUILD_RATIO,
        }
    }

    pub fn is_built(&self) -> bool {
        self.filter.get().is_some()
    }

    /// `None` until built; then whether the catalog may hold `id` (`false` is certain).
    fn may_contain(&self, id: &ChunkId) -> Option<bool> {
        self.filter.get().map(|f| f.read().unwrap_or_else(|p| p.into_inner()).may_contain(&id.0))
    }

    /// Counts a lookup that found a chunk new; builds the filter when they have cost enough.
    fn missed(&self, index: &Index) -> Result<()> {
        if self.misses.fetch_add(1, Relaxed) + 1 >= self.threshold && !self.is_built() {
            self.build(index)?;
        }
        Ok(())
    }

    pub fn build(&self, index: &Index) -> Result<()> {
        let _g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_built() {
            let _ = self.filter.set(RwLock::new(build_filter(index)?));
        }
        Ok(())
    }

    /// Adds ids whose index rows are committed.
    fn insert_committed<'i>(&self, ids: impl Iterator<Item = &'i ChunkId>) {
        let _g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = self.filter.get() {
            let mut f = f.write().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                f.insert(&id.0);
            }
        }
    }
}

impl<'a> Sink<'a> {
    pub fn new(
        hasher: Hasher,
        level: i32,
        repo: &'a Repo,
        filter: &'a LazyFilter,
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
        let stored = match self.filter.may_contain(id) {
            Some(false) => false,
            Some(true) => self.repo.index()?.contains(id)?,
            None => {
                let idx = self.repo.index()?;
                let stored = idx.contains(id)?;
                if !stored {
                    self.filter.missed(&idx)?;
                }
                stored
            }
        };
        if stored {
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
        Ok((id, self.store_claimed(kind, id, raw)?))
    }

    /// Claims `id` for this run when the repository lacks it (and no worker of this run is
    /// storing it): `true` means the caller must now store it with [`Sink::store_claimed`].
    /// Copy asks first, so it reads from the source only the blobs the destination lacks.
    pub fn claim_missing(&self, id: &ChunkId) -> Result<bool> {
        let claimed = self.claim(id)?;
        if !claimed {
            self.counters.chunks_known.fetch_add(1, Relaxed);
        }
        Ok(claimed)
    }

    /// Stores a claimed blob whose `raw` bytes the caller has checked against `id`. Returns
    /// the stored bytes it added.
    pub fn store_claimed(&self, kind: BlobKind, id: ChunkId, raw: &[u8]) -> Result<u64> {
        let (compression, stored) = pack::compress(raw, self.level);
        self.store_compressed(kind, id, compression, stored, raw.len() as u32)
    }

    /// Stores a claimed blob already compressed as `compression` says (a copy keeps the
    /// source's zstd frame: only sealing differs between two repositories), checked by the
    /// caller against `id`. Returns the stored bytes it added.
    pub fn store_compressed(
        &self,
        kind: BlobKind,
        id: ChunkId,
        compression: Compression,
        bytes: std::borrow::Cow<'_, [u8]>,
        raw_len: u32,
    ) -> Result<u64> {
        // Sealed here, on the worker threads, not by the single pack writer.
        let stored = pack::seal_blob(&self.repo.cipher, &id, kind, bytes);
        let n = stored.len() as u64;
        self.counters.chunks_new.fetch_add(1, Relaxed);
        self.counters.raw_new.fetch_add(raw_len as u64, Relaxed);
        self.counters.stored_new.fetch_add(n, Relaxed);
        let blob = Blob { id, kind, compression, stored, raw_len };
        self.tx.send(blob).map_err(|_| Error::Failed("the pack writer stopped".into()))?;
        Ok(n)
    }
}

/// Builds the filter from every indexed chunk id.
pub fn build_filter(index: &Index) -> Result<Filter> {
    let mut f = Filter::with_capacity(index.chunk_count()? + 1_000_000);
    index.for_each_chunk_id(|id| f.insert(&id))?;
    Ok(f)
}

/// What [`pack_into`] hands back: the closure's value and whether the filter was built.
pub struct Packed<T> {
    pub value: T,
    pub filter_built: bool,
}

/// Runs `fill` with a [`Sink`] into `repo`, whose blobs a pack-writer thread (and its
/// sealers, see [`write_packs`]) packs meanwhile. When `fill` returns, the last pack is
/// sealed; on success every pack is durable and indexed, and the index objects naming them
/// are written, before this returns: what the caller commits next (a manifest) may name any
/// blob it stored. On failure what was packed stays indexed locally and is reused next run.
///
/// The one owner of the writer thread for every command that stores blobs (backup, copy).
pub fn pack_into<T>(
    repo: &Repo,
    counters: &Counters,
    now: i64,
    fill: impl FnOnce(&Sink) -> Result<T>,
) -> Result<Packed<T>> {
    let filter = LazyFilter::new(repo.index()?.chunk_estimate()?);
    let pending: Mutex<HashSet<ChunkId>> = Mutex::new(HashSet::new());
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_BLOBS);
    let writer_index = Index::open(&repo.index_path(), &repo.config.repository_id)?;
    let value = std::thread::scope(|scope| {
        let (filter, pending) = (&filter, &pending);
        let writer = scope.spawn(move || {
            write_packs(
                &*repo.storage,
                &repo.cipher,
                writer_index,
                rx,
                repo.config.pack_target_size,
                filter,
                pending,
                counters,
                now,
            )
        });
        let sink = Sink::new(repo.hasher.clone(), repo.config.compression.level, repo, filter, pending, tx, counters);
        let value = fill(&sink);
        // Closing the channel lets the writer seal its last pack and finish.
        drop(sink);
        let written = writer.join().map_err(|_| Error::Failed("the pack writer panicked".into()))?;
        // A writer error (disk full …) is the root cause of any "writer stopped" error.
        written?;
        value
    })?;
    // Write order: packs (durable), then the index objects naming them, then the caller's commit.
    crate::catalog::write_uncovered(&mut *repo.index()?, &*repo.storage, &repo.cipher, now)?;
    Ok(Packed { value, filter_built: filter.is_built() })
}

/// The single pack writer: appends blobs to the current pack and closes packs at the target
/// size. Closed packs go to sealing threads (see [`Storage::parallel_requests`]) that make
/// them durable, record them in the index and then retire their ids from `pending` into the
/// filter, while the writer fills the next pack. Returns the packs written.
#[allow(clippy::too_many_arguments)]
pub fn write_packs(
    storage: &dyn Storage,
    cipher: &Cipher,
    index: Index,
    rx: Receiver<Blob>,
    target: u64,
    filter: &LazyFilter,
    pending: &Mutex<HashSet<ChunkId>>,
    counters: &Counters,
    now: i64,
) -> Result<Vec<PackId>> {
    // Packs being made durable at once: one on a disk, several on an object store, where each
    // upload waits on the network; the writer keeps filling the next pack meanwhile. Closed
    // packs waiting for an uploader are bounded too (two), so memory stays bounded (each pack
    // is in memory until stored on a storage without a file spool) however slow uploads are.
    let uploaders = storage.parallel_requests().max(1);
    let index = Mutex::new(index);
    let failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (seal_tx, seal_rx) = crossbeam_channel::bounded::<pack::Closed>(2);
        let sealers: Vec<_> = (0..uploaders)
            .map(|_| {
                let (seal_rx, index, failed) = (seal_rx.clone(), &index, &failed);
                scope.spawn(move || -> Result<Vec<PackId>> {
                    let mut written = Vec::new();
                    let mut error = None;
                    for closed in seal_rx.iter() {
                        // After any sealer's failure, drain without storing: the run fails.
                        if failed.load(Relaxed) {
                            continue;
                        }
                        match seal(storage, closed, index, filter, pending, counters, now) {
                            Ok(id) => written.push(id),
                            Err(e) => {
                                failed.store(true, Relaxed);
                                error = Some(e);
                            }
                        }
                    }
                    error.map_or(Ok(written), Err)
                })
            })
            .collect();
        drop(seal_rx);
        let mut current: Option<PackWriter> = None;
        let mut scatter = Scatter::new(if cipher.is_encrypted() { target / 4 } else { 0 });
        let fill = (|| -> Result<()> {
            let write = |blob: Blob, current: &mut Option<PackWriter>| -> Result<()> {
                // A sealer failed (the store went away): stop chunking; its error is reported.
                if failed.load(Relaxed) {
                    return Err(Error::Failed("the pack sealer stopped".into()));
                }
                let w = match current.as_mut() {
                    Some(w) => w,
                    None => current.insert(PackWriter::create(storage, cipher)?),
                };
                w.add(blob.id, blob.kind, blob.compression, &blob.stored, blob.raw_len)?;
                if w.size() >= target {
                    let closed = current.take().expect("just used").close()?;
                    seal_tx.send(closed).map_err(|_| Error::Failed("the pack sealer stopped".into()))?;
                }
                Ok(())
            };
            for blob in rx.iter() {
                for b in scatter.push(blob) {
                    write(b, &mut current)?;
                }
            }
            for b in scatter.drain() {
                write(b, &mut current)?;
            }
            if let Some(w) = current.take() {
                seal_tx.send(w.close()?).map_err(|_| Error::Failed("the pack sealer stopped".into()))?;
            }
            Ok(())
        })();
        drop(seal_tx);
        // Dropping `rx` (by returning) makes every sender fail fast.
        drop(rx);
        let mut written = Vec::new();
        let mut first_error = None;
        for s in sealers {
            match s.join().map_err(|_| Error::Failed("the pack sealer panicked".into()))? {
                Ok(w) => written.extend(w),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        // A sealer's error (disk full on fsync, an object store gone …) is the root cause of
        // a "sealer stopped".
        if let Some(e) = first_error {
            return Err(e);
        }
        fill?;
        Ok(written)
    })
}

fn seal(
    storage: &dyn Storage,
    closed: pack::Closed,
    index: &Mutex<Index>,
    filter: &LazyFilter,
    pending: &Mutex<HashSet<ChunkId>>,
    counters: &Counters,
    now: i64,
) -> Result<PackId> {
    let finished = closed.persist(storage)?;
    index.lock().unwrap_or_else(|p| p.into_inner()).add_pack(&finished, now)?;
    counters.pack_bytes.fetch_add(finished.size, Relaxed);
    counters.packs.fetch_add(1, Relaxed);
    filter.insert_committed(finished.entries.iter().map(|e| &e.id));
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    for e in &finished.entries {
        p.remove(&e.id);
    }
    Ok(finished.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use crate::pack::{Entry, Finished};

    fn cid(i: u64) -> ChunkId {
        ChunkId(Id(*blake3::hash(&i.to_le_bytes()).as_bytes()))
    }

    fn add(idx: &mut Index, pack: u64, ids: std::ops::Range<u64>) {
        let entries = ids
            .map(|i| Entry {
                id: cid(i),
                kind: BlobKind::Data,
                compression: Compression::None,
                offset: i * 10,
                stored_len: 10,
                raw_len: 10,
            })
            .collect();
        idx.add_pack(&Finished { id: PackId(Id(*blake3::hash(&pack.to_be_bytes()).as_bytes())), size: 1, entries }, 0)
            .unwrap();
    }

    #[test]
    fn the_filter_is_built_after_enough_misses_and_misses_no_committed_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Index::create(&dir.path().join("index.sqlite"), "r").unwrap();
        add(&mut idx, 1, 0..64);
        let f = LazyFilter::new(idx.chunk_estimate().unwrap());
        assert_eq!(f.threshold, 64 / BUILD_RATIO);
        for _ in 1..f.threshold {
            f.missed(&idx).unwrap();
        }
        assert_eq!(f.may_contain(&cid(3)), None, "built before the misses paid for it");
        // Rows committed while the filter does not exist yet are read by the build.
        add(&mut idx, 2, 64..70);
        f.insert_committed([cid(64)].iter());
        f.missed(&idx).unwrap();
        assert!(f.is_built());
        assert!((0..70).all(|i| f.may_contain(&cid(i)) == Some(true)), "a false negative");
        // Rows committed after the build are inserted.
        add(&mut idx, 3, 70..80);
        f.insert_committed((70..80).map(cid).collect::<Vec<_>>().iter());
        assert!((70..80).all(|i| f.may_contain(&cid(i)) == Some(true)), "a false negative");
        let unknown = (1000..2000).filter(|&i| f.may_contain(&cid(i)) == Some(true)).count();
        assert!(unknown < 50, "{unknown} of 1000 unknown ids pass the filter");
    }

    #[test]
    fn an_empty_catalog_builds_at_the_first_miss() {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::create(&dir.path().join("index.sqlite"), "r").unwrap();
        let f = LazyFilter::new(idx.chunk_estimate().unwrap());
        f.missed(&idx).unwrap();
        assert!(f.is_built());
        assert_eq!(f.may_contain(&cid(1)), Some(false));
    }
}
