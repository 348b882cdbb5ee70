//! One batch of a restore: a plan across its files (who needs which chunk), the ranges of
//! packs that hold those chunks, read once each and in pack order on the pool, and each file
//! finished by the write of its last chunk.
//!
//! A chunk that is missing from the index, lies in a pack that can't be read, fails its check
//! or has another length than its references claim fails only the files that need it: they
//! are reported (and removed) and every other file is restored.

use super::{fsat, Job, Restorer, OPEN_FILES, RANGE_MAX};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, PackId};
use crate::index::Location;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Who needs a chunk: its length and every (file, offset) it is written at.
struct Need {
    len: u32,
    spots: Vec<(u32, u64)>,
}

/// One batch of files being restored.
struct Batch {
    jobs: Vec<Job>,
    /// Files to write (not kept by `resume`).
    wanted: Vec<bool>,
    /// Chunk references still to be written, per file; the last write finishes the file.
    remaining: Vec<AtomicUsize>,
    /// Per file: created yet? Held while creating, so a file is created once.
    created: Vec<Mutex<bool>>,
    /// Per file: could not be restored (a chunk missing or damaged); already reported.
    failed: Vec<AtomicBool>,
    /// Output files open for writing, at most [`OPEN_FILES`].
    open: Mutex<HashMap<u32, Arc<File>>>,
}

impl Batch {
    fn cached(&self, i: u32) -> Option<Arc<File>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).get(&i).cloned()
    }

    fn keep_open(&self, i: u32, f: Arc<File>) {
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= OPEN_FILES {
            if let Some(&k) = g.keys().next() {
                g.remove(&k);
            }
        }
        g.insert(i, f);
    }
}

/// A run of adjacent blobs in one pack, read with one `pread`.
struct Range {
    pack: PackId,
    start: u64,
    end: u64,
    entries: Vec<crate::pack::Entry>,
}

impl Batch {
    /// Marks file `i` as not restorable, recording why once.
    fn fail(&self, r: &Restorer, i: u32, why: impl FnOnce() -> String) {
        if !self.failed[i as usize].swap(true, Relaxed) {
            r.fail(&self.jobs[i as usize].rel, why());
        }
    }
}

impl Restorer<'_> {
    pub(super) fn restore_batch(&self, jobs: Vec<Job>) -> Result<()> {
        self.counts.batches.fetch_add(1, Relaxed);
        // With resume, keep the files that are already complete.
        let wanted: Vec<bool> = if self.opts.resume {
            jobs.par_iter().map(|j| self.incomplete(j)).collect::<Result<_>>()?
        } else {
            vec![true; jobs.len()]
        };
        let batch = Batch {
            // Files kept by `resume` wait for nothing.
            remaining: jobs
                .iter()
                .zip(&wanted)
                .map(|(j, &w)| AtomicUsize::new(if w { j.node.content.len() } else { 0 }))
                .collect(),
            created: jobs.iter().map(|_| Mutex::new(false)).collect(),
            failed: jobs.iter().map(|_| AtomicBool::new(false)).collect(),
            jobs,
            wanted,
            open: Mutex::new(HashMap::new()),
        };
        let mut need: HashMap<ChunkId, Need> = HashMap::new();
        // References that contradict another file's claim on the same chunk.
        let mut contradicted: Vec<u32> = Vec::new();
        for (i, j) in batch.jobs.iter().enumerate().filter(|(i, _)| batch.wanted[*i]) {
            let mut off = 0u64;
            for c in &j.node.content {
                let n = need.entry(c.chunk_id()).or_insert_with(|| Need { len: c.len, spots: Vec::new() });
                if n.len == c.len {
                    n.spots.push((i as u32, off));
                } else {
                    // One chunk has one length: a tree that says otherwise would place bytes
                    // wrongly (or pad a file into a huge sparse one).
                    let first = n.len;
                    batch.fail(self, i as u32, || {
                        format!(
                            "chunk {} is claimed with {} bytes here and {first} bytes elsewhere",
                            c.chunk_id().short(),
                            c.len
                        )
                    });
                    contradicted.push(i as u32);
                }
                off += c.len as u64;
            }
        }
        contradicted.into_iter().try_for_each(|i| self.written(&batch, i, None))?;
        // Empty files are finished as they are.
        (0..batch.jobs.len())
            .into_par_iter()
            .filter(|&i| batch.wanted[i] && batch.jobs[i].node.content.is_empty())
            .try_for_each(|i| self.finish(&batch, i as u32))?;

        // Locate every distinct chunk once; chunks known to be zeros need no reading.
        let ids: Vec<&ChunkId> = need.keys().collect();
        let located: Vec<Result<Option<Location>>> = ids
            .par_iter()
            .map(|id| {
                if let Some(&len) = self.zeros.lock().unwrap_or_else(|p| p.into_inner()).get(*id) {
                    if len != need[*id].len {
                        return Err(Error::Failed(format!(
                            "chunk {} has {len} bytes, the tree says {}",
                            id.short(),
                            need[*id].len
                        )));
                    }
                    return Ok(None);
                }
                self.repo.index()?.lookup(id)?.map(Some).ok_or_else(|| {
                    Error::NotFound(format!("chunk {} is not in the index (repository damaged?)", id.short()))
                })
            })
            .collect();
        let (mut locs, mut zero, mut missing) = (Vec::with_capacity(ids.len()), Vec::new(), Vec::new());
        for (id, loc) in ids.into_iter().zip(located) {
            match loc {
                Ok(Some(l)) => locs.push(l),
                Ok(None) => zero.push(id),
                // The index itself failing is not one chunk's damage: stop.
                Err(e) if e.kind() == crate::error::ErrorKind::Index => return Err(e),
                Err(e) => missing.push((id, e)),
            }
        }
        missing.par_iter().try_for_each(|(id, e)| self.unavailable(&batch, &need[*id], e))?;
        zero.par_iter().try_for_each(|id| {
            let n = &need[*id];
            n.spots.iter().try_for_each(|&(i, _)| self.written(&batch, i, Some(n.len)))
        })?;

        locs.sort_unstable_by_key(|l| (l.pack, l.entry.offset));
        let mut ranges: Vec<Range> = Vec::new();
        // Blobs close enough in one pack are read as one range (on an object store a request
        // costs more than the bytes between them); each entry is cut out by its own offset.
        let gap = self.repo.storage.read_gap();
        for l in locs {
            let (s, e) = (l.entry.offset, l.entry.offset + l.entry.stored_len as u64);
            match ranges.last_mut() {
                Some(r) if r.pack == l.pack && s >= r.end && s - r.end <= gap && e - r.start <= RANGE_MAX => {
                    r.end = e;
                    r.entries.push(l.entry);
                }
                _ => ranges.push(Range { pack: l.pack, start: s, end: e, entries: vec![l.entry] }),
            }
        }
        ranges.par_iter().try_for_each(|r| self.restore_range(&batch, &need, r))?;
        // Every wanted file was finished by its last write; say so loudly if one was not.
        if let Some(i) = batch.remaining.iter().position(|r| r.load(Relaxed) != 0) {
            return Err(Error::Failed(format!(
                "{}: not completely written (internal error: {} chunk references left)",
                self.target.show(&batch.jobs[i].rel).display(),
                batch.remaining[i].load(Relaxed)
            )));
        }
        Ok(())
    }

    /// A chunk the repository can't supply: every file that needs it fails, the rest goes on.
    fn unavailable(&self, batch: &Batch, n: &Need, e: &Error) -> Result<()> {
        for &(i, _) in &n.spots {
            batch.fail(self, i, || format!("not restored: {e}"));
            self.written(batch, i, None)?;
        }
        Ok(())
    }

    /// `resume`: whether the file must be written. A complete one is counted as skipped and
    /// only given its metadata.
    fn incomplete(&self, j: &Job) -> Result<bool> {
        let (parent, name) = fsat::parent_and_name(&j.rel);
        let dir = self.target.dir(parent)?;
        let shown = self.target.show(&j.rel);
        let Some((f, st)) = self.target.existing_file(&dir, name, &j.rel)? else { return Ok(true) };
        // A file with other names is kept only as the first name of a link group this restore
        // finished before (content and metadata already right), and its metadata is never
        // set: another name may be a link to a file outside the target. Anything else with
        // several names is replaced by a new file.
        let linked = st.st_nlink > 1;
        if linked && (j.node.link.is_none() || !self.meta_matches(&j.node, &st)) {
            return Ok(true);
        }
        let complete = super::read::file_matches(self.repo, &j.node, &f, &shown)?;
        if complete {
            self.counts.skipped.fetch_add(1, Relaxed);
            self.counts.skipped_bytes.fetch_add(j.node.size, Relaxed);
            if !linked {
                self.set_meta(&j.node, &f, &j.rel)?;
            }
        }
        Ok(!complete)
    }

    /// File `i` open for writing: created (replacing what was there, with `overwrite`/`resume`)
    /// the first time, reopened when it was closed to stay within [`OPEN_FILES`].
    fn output(&self, batch: &Batch, i: u32) -> Result<Arc<File>> {
        if let Some(f) = batch.cached(i) {
            return Ok(f);
        }
        let mut created = batch.created[i as usize].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = batch.cached(i) {
            return Ok(f);
        }
        let rel = &batch.jobs[i as usize].rel;
        let (parent, name) = fsat::parent_and_name(rel);
        let dir = self.target.dir(parent)?;
        let f = if *created {
            self.target.reopen_file(&dir, name, rel)?
        } else {
            let f = self.target.create_file(&dir, name, rel, self.replace())?;
            *created = true;
            f
        };
        let f = Arc::new(f);
        batch.keep_open(i, f.clone());
        Ok(f)
    }

    /// Counts one chunk reference of file `i` as done (`len` bytes written, `None` when it
    /// could not be); the last one finishes the file.
    fn written(&self, batch: &Batch, i: u32, len: Option<u32>) -> Result<()> {
        if let Some(len) = len {
            self.counts.bytes.fetch_add(len as u64, Relaxed);
        }
        if batch.remaining[i as usize].fetch_sub(1, Relaxed) == 1 {
            self.finish(batch, i)?;
        }
        Ok(())
    }

    /// Sizes a file whose content is all written (last, so a file cut short by a kill is
    /// visibly incomplete to `resume`), reads it back if asked, and sets its metadata. A file
    /// that could not be restored is removed instead: no file is left with wrong content.
    fn finish(&self, batch: &Batch, i: u32) -> Result<()> {
        let Job { node: n, rel } = &batch.jobs[i as usize];
        if batch.failed[i as usize].load(Relaxed) {
            batch.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
            if *batch.created[i as usize].lock().unwrap_or_else(|p| p.into_inner()) {
                let (parent, name) = fsat::parent_and_name(rel);
                self.target.remove_file(&*self.target.dir(parent)?, name, rel)?;
            }
            return Ok(());
        }
        let f = self.output(batch, i)?;
        batch.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
        let path = self.target.show(rel);
        f.set_len(n.size).ctx(&path)?;
        self.counts.files.fetch_add(1, Relaxed);
        if self.opts.verify {
            if !super::read::file_matches(self.repo, n, &f, &path)? {
                return Err(Error::Failed(format!(
                    "{}: verification failed: the restored file differs from the set",
                    path.display()
                )));
            }
            self.counts.verified.fetch_add(1, Relaxed);
        }
        self.set_meta(n, &f, rel)
    }

    /// Reads one range of a pack, checks each blob and writes it wherever the batch needs it.
    /// A range that can't be read is retried blob by blob, so one bad spot costs only the
    /// files that need it.
    fn restore_range(&self, batch: &Batch, need: &HashMap<ChunkId, Need>, r: &Range) -> Result<()> {
        let pack_path = self.repo.pack_object(&r.pack);
        let read = |start: u64, end: u64| -> Result<Vec<u8>> {
            let buf = self.repo.read_pack_range(&r.pack, start, end)?;
            self.counts.bytes_read.fetch_add(buf.len() as u64, Relaxed);
            self.counts.ranges.fetch_add(1, Relaxed);
            Ok(buf)
        };
        let whole = read(r.start, r.end);
        for e in &r.entries {
            let n = &need[&e.id];
            let stored = match &whole {
                Ok(buf) => {
                    let from = (e.offset - r.start) as usize;
                    Ok(buf[from..from + e.stored_len as usize].to_vec())
                }
                Err(_) => read(e.offset, e.offset + e.stored_len as u64),
            };
            let data = stored
                .and_then(|s| crate::pack::decode_blob(&pack_path, e, &s, &self.repo.hasher, &self.repo.cipher))
                .and_then(|d| {
                    if d.len() == n.len as usize {
                        Ok(d)
                    } else {
                        Err(Error::corrupt(
                            &pack_path,
                            e.offset,
                            format!("chunk {} has {} bytes, the tree says {}", e.id.short(), d.len(), n.len),
                        ))
                    }
                });
            let data = match data {
                Ok(d) => d,
                Err(err) => {
                    self.unavailable(batch, n, &err)?;
                    continue;
                }
            };
            // Leave holes where the file was zeros: sparse files stay sparse.
            if data.iter().all(|&b| b == 0) {
                self.zeros.lock().unwrap_or_else(|p| p.into_inner()).insert(e.id, n.len);
            } else {
                for &(i, off) in &n.spots {
                    if batch.failed[i as usize].load(Relaxed) {
                        continue;
                    }
                    let path = self.target.show(&batch.jobs[i as usize].rel);
                    self.output(batch, i)?.write_all_at(&data, off).ctx(&path)?;
                }
            }
            for &(i, _) in &n.spots {
                self.written(batch, i, Some(n.len))?;
            }
        }
        Ok(())
    }
}
