//! One batch of a restore: a plan across its files (who needs which chunk), the ranges of
//! packs that hold those chunks, read once each and in pack order on the pool, and each file
//! finished by the write of its last chunk.

use super::{file_time, Job, Restorer, OPEN_FILES, RANGE_MAX};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, PackId};
use crate::index::Location;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
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
            jobs,
            wanted,
            open: Mutex::new(HashMap::new()),
        };
        let mut need: HashMap<ChunkId, Need> = HashMap::new();
        for (i, j) in batch.jobs.iter().enumerate().filter(|(i, _)| batch.wanted[*i]) {
            let mut off = 0u64;
            for c in &j.node.content {
                need.entry(c.chunk_id())
                    .or_insert_with(|| Need { len: c.len, spots: Vec::new() })
                    .spots
                    .push((i as u32, off));
                off += c.len as u64;
            }
        }
        // Empty files are finished as they are.
        (0..batch.jobs.len())
            .into_par_iter()
            .filter(|&i| batch.wanted[i] && batch.jobs[i].node.content.is_empty())
            .try_for_each(|i| self.finish(&batch, i as u32))?;

        // Locate every distinct chunk once; chunks known to be zeros need no reading.
        let ids: Vec<&ChunkId> = need.keys().collect();
        let located: Vec<Option<Location>> = ids
            .par_iter()
            .map(|id| {
                if self.zeros.lock().unwrap_or_else(|p| p.into_inner()).contains(*id) {
                    return Ok(None);
                }
                let first = &batch.jobs[need[*id].spots[0].0 as usize].path;
                self.repo.index()?.lookup(id)?.map(Some).ok_or_else(|| {
                    Error::NotFound(format!(
                        "{}: chunk {} is not in the index (repository damaged?)",
                        first.display(),
                        id.short()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let (mut locs, mut zero) = (Vec::with_capacity(ids.len()), Vec::new());
        for (id, loc) in ids.into_iter().zip(located) {
            match loc {
                Some(l) => locs.push(l),
                None => zero.push(id),
            }
        }
        zero.par_iter().try_for_each(|id| {
            let n = &need[*id];
            n.spots.iter().try_for_each(|&(i, _)| self.written(&batch, i, n.len))
        })?;

        locs.sort_unstable_by_key(|l| (l.pack, l.entry.offset));
        let mut ranges: Vec<Range> = Vec::new();
        for l in locs {
            let (s, e) = (l.entry.offset, l.entry.offset + l.entry.stored_len as u64);
            match ranges.last_mut() {
                Some(r) if r.pack == l.pack && r.end == s && e - r.start <= RANGE_MAX => {
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
                batch.jobs[i].path.display(),
                batch.remaining[i].load(Relaxed)
            )));
        }
        Ok(())
    }

    /// `resume`: whether the file must be written. A complete one is counted as skipped and
    /// only given its metadata.
    fn incomplete(&self, j: &Job) -> Result<bool> {
        let complete = match j.path.symlink_metadata() {
            Ok(m) => {
                m.file_type().is_file()
                    && m.len() == j.node.size
                    && super::content_matches(self.repo, &j.node, &j.path)?
            }
            Err(_) => false,
        };
        if complete {
            self.counts.skipped.fetch_add(1, Relaxed);
            self.counts.skipped_bytes.fetch_add(j.node.size, Relaxed);
            self.set_meta(&j.node, &j.path, false)?;
        }
        Ok(!complete)
    }

    /// File `i` open for writing: created (or truncated, with `overwrite`/`resume`) the first
    /// time, reopened when it was closed to stay within [`OPEN_FILES`].
    fn output(&self, batch: &Batch, i: u32) -> Result<Arc<File>> {
        if let Some(f) = batch.cached(i) {
            return Ok(f);
        }
        let mut created = batch.created[i as usize].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = batch.cached(i) {
            return Ok(f);
        }
        let path = &batch.jobs[i as usize].path;
        let mut oo = OpenOptions::new();
        oo.read(true).write(true);
        let f = if *created {
            oo.open(path).ctx(path)?
        } else {
            oo.mode(0o600);
            if self.opts.overwrite || self.opts.resume {
                oo.create(true).truncate(true);
            } else {
                oo.create_new(true);
            }
            let f = oo.open(path).map_err(|e| self.exists_err(path, e))?;
            *created = true;
            f
        };
        let f = Arc::new(f);
        batch.keep_open(i, f.clone());
        Ok(f)
    }

    /// Counts one chunk reference of file `i` as written; the last one finishes the file.
    fn written(&self, batch: &Batch, i: u32, len: u32) -> Result<()> {
        self.counts.bytes.fetch_add(len as u64, Relaxed);
        if batch.remaining[i as usize].fetch_sub(1, Relaxed) == 1 {
            self.finish(batch, i)?;
        }
        Ok(())
    }

    /// Sizes a file whose content is all written (last, so a file cut short by a kill is
    /// visibly incomplete to `resume`), reads it back if asked, and sets its metadata.
    fn finish(&self, batch: &Batch, i: u32) -> Result<()> {
        let f = self.output(batch, i)?;
        batch.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&i);
        let Job { node: n, path } = &batch.jobs[i as usize];
        f.set_len(n.size).ctx(path)?;
        self.counts.files.fetch_add(1, Relaxed);
        if self.opts.verify {
            if !super::read::file_matches(self.repo, n, &f, path)? {
                return Err(Error::Failed(format!(
                    "{}: verification failed: the restored file differs from the set",
                    path.display()
                )));
            }
            self.counts.verified.fetch_add(1, Relaxed);
        }
        if self.root {
            std::os::unix::fs::fchown(&*f, Some(n.uid), Some(n.gid)).ctx(path)?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(n.mode)).ctx(path)?;
        let t = file_time(n);
        filetime::set_file_handle_times(&f, Some(t), Some(t)).ctx(path)
    }

    /// Reads one range of a pack, checks each blob and writes it wherever the batch needs it.
    fn restore_range(&self, batch: &Batch, need: &HashMap<ChunkId, Need>, r: &Range) -> Result<()> {
        let pack_path = crate::pack::pack_path(&self.repo.root, &r.pack);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        self.pack(&r.pack)?.read_exact_at(&mut buf, r.start).map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(&pack_path, r.start, "pack truncated: a chunk lies past its end")
            } else {
                Error::Io { path: pack_path.clone(), source: err }
            }
        })?;
        self.counts.bytes_read.fetch_add(buf.len() as u64, Relaxed);
        self.counts.ranges.fetch_add(1, Relaxed);
        for e in &r.entries {
            let from = (e.offset - r.start) as usize;
            let data =
                crate::pack::decode_blob(&pack_path, e, &buf[from..from + e.stored_len as usize], &self.repo.hasher)?;
            let n = &need[&e.id];
            if data.len() != n.len as usize {
                let first = &batch.jobs[n.spots[0].0 as usize].path;
                return Err(Error::Failed(format!(
                    "{}: chunk {} has {} bytes, the tree says {}",
                    first.display(),
                    e.id.short(),
                    data.len(),
                    n.len
                )));
            }
            // Leave holes where the file was zeros: sparse files stay sparse.
            if data.iter().all(|&b| b == 0) {
                self.zeros.lock().unwrap_or_else(|p| p.into_inner()).insert(e.id);
            } else {
                for &(i, off) in &n.spots {
                    let path = &batch.jobs[i as usize].path;
                    self.output(batch, i)?.write_all_at(&data, off).ctx(path)?;
                }
            }
            for &(i, _) in &n.spots {
                self.written(batch, i, n.len)?;
            }
        }
        Ok(())
    }
}
