//! Restores a set (or parts of it) to a directory: `TARGET/<component>/…`, byte-identical,
//! with modes, mtimes, symlinks, empty directories and, when run as root, ownership.
//!
//! How a restore runs:
//! 1. A walker thread reads the trees in order, creates directories and symlinks, and hands
//!    the regular files over in batches, each bounded by an estimate of the memory its plan
//!    takes ([`PLAN_MEMORY`], `Options::plan_memory`). While one batch is restored the walker
//!    prepares the next.
//! 2. Per batch, on the thread pool: with `resume`, files that are already complete are kept;
//!    the others are created (or truncated). The distinct chunks of all the batch's files are
//!    looked up once, sorted by pack and offset, and adjacent blobs grouped into ranges of up
//!    to [`RANGE_MAX`]. Each range is read with one `pread`, ranges in parallel, each core
//!    walking its share in pack order; every blob is checked and written at each (file,
//!    offset) that needs it. A chunk shared by several files (a duplicate upload, a file
//!    that repeats itself) is read once per batch, and a restore that fits one batch reads
//!    each needed pack range exactly once.
//! 3. A file is finished by the write of its last chunk: sized, read back if `verify`, and
//!    given its metadata.
//! 4. Directories get their metadata last, deepest first, so a read-only directory is
//!    filled before it is closed and no write disturbs a directory's mtime afterwards.
//!
//! Chunks that decode to all zeros are never written, and remembered for the rest of the
//! restore, so sparse files come back sparse and their zero chunks are read once.
//!
//! Invariants:
//! - Existing files are never overwritten unless `overwrite` or `resume` is set.
//! - `resume`: a regular file that already has the stored size and whose every chunk hashes to
//!   the stored chunk id is left untouched (only its metadata is set) and counted in
//!   `skipped`; any other file is rewritten from scratch. A file is sized last, so one cut
//!   short by a killed restore is either too short or fails a chunk hash.
//! - `verify`: every written file is read back and each chunk's hash checked; a mismatch is an
//!   error naming the file.

use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, PackId};
use crate::index::Location;
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The longest run of adjacent blobs read with one `pread`.
pub const RANGE_MAX: u64 = 8 << 20;

/// Default bound on the memory one batch's plan may take (its files' nodes and paths, and
/// who needs which chunk). About a million chunk references, or some 200,000 small files.
pub const PLAN_MEMORY: usize = 64 << 20;

/// Output files kept open within a batch; others are reopened when written to.
const OPEN_FILES: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replace files that already exist in the target.
    pub overwrite: bool,
    /// Only these paths (`component[/sub/path]`); empty: everything.
    pub paths: Vec<String>,
    pub threads: Option<usize>,
    /// Leave files that are already complete and correct; rewrite the others.
    pub resume: bool,
    /// Read every written file back and check its chunk hashes.
    pub verify: bool,
    /// Bound on one batch's plan, in bytes (0: [`PLAN_MEMORY`]). A chunk needed by files
    /// in two batches is read once per batch.
    pub plan_memory: usize,
    /// Live counts, for a progress display.
    pub counters: Arc<Counters>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Files written.
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of the files written.
    pub bytes: u64,
    /// Files left as they were (`resume`: already complete).
    pub skipped: u64,
    /// Bytes of the skipped files.
    pub skipped_bytes: u64,
    /// Bytes read from pack files.
    pub bytes_read: u64,
    /// `pread`s of pack ranges.
    pub ranges: u64,
    /// Batches the files were restored in (1 unless the plan outgrew `plan_memory`).
    pub batches: u64,
    /// Files read back and checked (`verify`).
    pub verified: u64,
    pub duration_s: f64,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped: AtomicU64,
    pub skipped_bytes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub ranges: AtomicU64,
    pub batches: AtomicU64,
    pub verified: AtomicU64,
}

/// Parses a memory size: `64M`, `512K`, `1G`, `1048576` (bytes), binary units, at least 64K.
pub fn parse_memory(s: &str) -> std::result::Result<usize, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("{s:?}: expected a size such as 64M, 512K or 1G")),
    };
    let n: usize = num.parse().map_err(|_| format!("{s:?}: expected a size such as 64M, 512K or 1G"))?;
    let v = n.checked_shl(shift).filter(|v| v >> shift == n).ok_or_else(|| format!("{s:?}: too large"))?;
    if v < 64 << 10 {
        return Err(format!("{s:?}: at least 64K"));
    }
    Ok(v)
}

/// Splits `a/b/c` into non-empty components, rejecting `..`.
pub fn split_path(p: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::InvalidInput(format!("path {p:?} may not contain \"..\"")));
    }
    Ok(parts)
}

/// Drops selections inside another selection (`a/b` when `a` is selected, repeats), so no
/// file is restored twice.
fn outermost(mut sels: Vec<Vec<&str>>) -> Vec<Vec<&str>> {
    sels.sort_by_key(|s| s.len());
    let mut kept: Vec<Vec<&str>> = Vec::new();
    for s in sels {
        if !kept.iter().any(|k| s.starts_with(k)) {
            kept.push(s);
        }
    }
    kept
}

/// Which part of a tree to restore below the current node.
#[derive(Clone, Copy)]
enum Sel<'a> {
    All,
    /// The remaining path components to descend through; the last one selects a subtree.
    Path(&'a [&'a str]),
}

struct Restorer<'a> {
    repo: &'a Repo,
    opts: &'a Options,
    counts: &'a Counters,
    root: bool,
    packs: Mutex<HashMap<PackId, Arc<File>>>,
    /// Chunks known to be all zeros: never read again, never written.
    zeros: Mutex<HashSet<ChunkId>>,
}

/// A regular file to restore.
struct Job {
    node: Node,
    path: PathBuf,
}

/// A directory whose metadata is set once everything below it is written.
struct DirMeta {
    node: Node,
    path: PathBuf,
    depth: usize,
}

pub fn restore(repo: &Repo, manifest: &Manifest, target: &Path, opts: &Options) -> Result<Report> {
    let t0 = std::time::Instant::now();
    let selections: Vec<Vec<&str>> = opts.paths.iter().map(|p| split_path(p)).collect::<Result<_>>()?;
    for s in &selections {
        if s.is_empty() || manifest.component(s[0]).is_none() {
            let names: Vec<&str> = manifest.components.iter().map(|c| c.name.as_str()).collect();
            return Err(Error::NotFound(format!(
                "--path {:?}: the set has no component {:?} (components: {})",
                s.join("/"),
                s.first().unwrap_or(&""),
                names.join(", ")
            )));
        }
    }
    let selections = outermost(selections);
    std::fs::create_dir_all(target).ctx(target)?;
    let r = Restorer {
        repo,
        opts,
        counts: &opts.counters,
        root: crate::sys::is_root(),
        packs: Mutex::new(HashMap::new()),
        zeros: Mutex::new(HashSet::new()),
    };
    let threads = opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let pool = |stack: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .stack_size(stack)
            .build()
            .map_err(|e| Error::Failed(format!("thread pool: {e}")))
    };
    // Walking recurses once per directory level; restoring does not.
    let (walk_pool, pool) = (pool(16 << 20)?, pool(2 << 20)?);
    let limit = if opts.plan_memory == 0 { PLAN_MEMORY } else { opts.plan_memory };

    let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(1);
    let (walked, restored) = std::thread::scope(|s| {
        let r = &r;
        let selections = &selections;
        let walker = s.spawn(move || {
            let w = Walker { r, tx, batch: Mutex::new((Vec::new(), 0)), limit, dirs: Mutex::new(Vec::new()) };
            walk_pool.install(|| w.walk_set(manifest, target, selections))?;
            w.flush()?;
            Ok::<_, Error>(w.dirs.into_inner().unwrap_or_else(|p| p.into_inner()))
        });
        let restored = pool.install(|| rx.iter().try_for_each(|batch| r.restore_batch(batch)));
        // A failed batch drops the receiver, which stops the walker at its next batch.
        drop(rx);
        let walked = walker.join().unwrap_or_else(|_| Err(Error::Failed("the restore's tree walker panicked".into())));
        (walked, restored)
    });
    restored?;
    let mut dirs = walked?;
    // Deepest first: a directory's mtime and mode are set after everything inside it.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.depth));
    for d in &dirs {
        r.set_meta(&d.node, &d.path, false)?;
        r.counts.dirs.fetch_add(1, Relaxed);
    }
    let c = r.counts;
    Ok(Report {
        files: c.files.load(Relaxed),
        dirs: c.dirs.load(Relaxed),
        symlinks: c.symlinks.load(Relaxed),
        bytes: c.bytes.load(Relaxed),
        skipped: c.skipped.load(Relaxed),
        skipped_bytes: c.skipped_bytes.load(Relaxed),
        bytes_read: c.bytes_read.load(Relaxed),
        ranges: c.ranges.load(Relaxed),
        batches: c.batches.load(Relaxed),
        verified: c.verified.load(Relaxed),
        duration_s: t0.elapsed().as_secs_f64(),
    })
}

/// Walks the selected trees in parallel: creates directories and symlinks, collects files
/// into batches.
struct Walker<'a, 'r> {
    r: &'a Restorer<'r>,
    tx: crossbeam_channel::Sender<Vec<Job>>,
    /// The batch being filled, and an estimate of its plan's memory.
    batch: Mutex<(Vec<Job>, usize)>,
    limit: usize,
    dirs: Mutex<Vec<DirMeta>>,
}

impl Walker<'_, '_> {
    fn walk_set(&self, manifest: &Manifest, target: &Path, selections: &[Vec<&str>]) -> Result<()> {
        for c in &manifest.components {
            let sels: Vec<&[&str]> = selections.iter().filter(|s| s[0] == c.name).map(|s| &s[1..]).collect();
            if !selections.is_empty() && sels.is_empty() {
                continue;
            }
            let dest = target.join(&c.name);
            let tree = self.r.repo.read_tree(&c.root)?;
            if sels.is_empty() || sels.iter().any(|s| s.is_empty()) {
                self.walk_dir(tree, &dest, Sel::All, 1)?;
            } else {
                for s in sels {
                    self.walk_dir(tree.clone(), &dest, Sel::Path(s), 1)?;
                }
            }
        }
        Ok(())
    }

    fn walk_dir(&self, tree: Tree, dest: &Path, sel: Sel, depth: usize) -> Result<()> {
        match std::fs::create_dir(dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
            Err(e) => return Err(Error::Io { path: dest.to_path_buf(), source: e }),
        }
        match sel {
            Sel::All => tree.nodes.into_par_iter().try_for_each(|n| {
                let path = dest.join(std::ffi::OsStr::from_bytes(&n.name));
                self.walk_node(n, path, Sel::All, depth + 1)
            }),
            Sel::Path(parts) => {
                let node = tree
                    .find(parts[0].as_bytes())
                    .ok_or_else(|| Error::NotFound(format!("{}: not in the set", dest.join(parts[0]).display())))?;
                let sub = if parts.len() == 1 { Sel::All } else { Sel::Path(&parts[1..]) };
                self.walk_node(node.clone(), dest.join(parts[0]), sub, depth + 1)
            }
        }
    }

    fn walk_node(&self, n: Node, path: PathBuf, sel: Sel, depth: usize) -> Result<()> {
        match n.kind {
            NodeKind::Dir => {
                let id = n.subtree_id().ok_or_else(|| Error::corrupt(&path, 0, "directory without subtree"))?;
                let sub = self.r.repo.read_tree(&id)?;
                self.walk_dir(sub, &path, sel, depth)?;
                if matches!(sel, Sel::All) {
                    self.dirs.lock().unwrap_or_else(|p| p.into_inner()).push(DirMeta { node: n, path, depth });
                }
                Ok(())
            }
            NodeKind::Symlink => self.r.restore_symlink(&n, &path),
            NodeKind::File => {
                // Node, path and one (file, offset) need per chunk reference, roughly.
                let weight = 256 + path.as_os_str().len() + n.content.len() * 96;
                let full = {
                    let mut g = self.batch.lock().unwrap_or_else(|p| p.into_inner());
                    g.0.push(Job { node: n, path });
                    g.1 += weight;
                    if g.1 >= self.limit {
                        g.1 = 0;
                        Some(std::mem::take(&mut g.0))
                    } else {
                        None
                    }
                };
                match full {
                    Some(b) => self.send(b),
                    None => Ok(()),
                }
            }
        }
    }

    fn flush(&self) -> Result<()> {
        let b = std::mem::take(&mut self.batch.lock().unwrap_or_else(|p| p.into_inner()).0);
        if b.is_empty() {
            Ok(())
        } else {
            self.send(b)
        }
    }

    fn send(&self, b: Vec<Job>) -> Result<()> {
        // A closed channel means a batch failed; its error is the one reported.
        self.tx.send(b).map_err(|_| Error::Failed("restore stopped".into()))
    }
}

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
    fn restore_symlink(&self, n: &Node, path: &Path) -> Result<()> {
        let target = n.target.as_deref().unwrap_or_default();
        if self.opts.resume && std::fs::read_link(path).is_ok_and(|t| t.as_os_str().as_bytes() == target) {
            self.counts.skipped.fetch_add(1, Relaxed);
        } else {
            if (self.opts.overwrite || self.opts.resume) && path.symlink_metadata().is_ok() {
                std::fs::remove_file(path).ctx(path)?;
            }
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
                .map_err(|e| self.exists_err(path, e))?;
            self.counts.symlinks.fetch_add(1, Relaxed);
        }
        self.set_meta(n, path, true)
    }

    fn exists_err(&self, path: &Path, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::InvalidInput(format!(
                "{}: already exists; refusing to overwrite (use --overwrite or --resume)",
                path.display()
            ))
        } else {
            Error::Io { path: path.to_path_buf(), source: e }
        }
    }

    fn restore_batch(&self, jobs: Vec<Job>) -> Result<()> {
        self.counts.batches.fetch_add(1, Relaxed);
        // With resume, keep the files that are already complete.
        let wanted: Vec<bool> = if self.opts.resume {
            jobs.par_iter().map(|j| self.incomplete(j)).collect::<Result<_>>()?
        } else {
            vec![true; jobs.len()]
        };
        let batch = Batch {
            remaining: jobs.iter().map(|j| AtomicUsize::new(j.node.content.len())).collect(),
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
        debug_assert!(batch.remaining.iter().all(|r| r.load(Relaxed) == 0));
        Ok(())
    }

    /// `resume`: whether the file must be written. A complete one is counted as skipped and
    /// only given its metadata.
    fn incomplete(&self, j: &Job) -> Result<bool> {
        let complete = match j.path.symlink_metadata() {
            Ok(m) => m.file_type().is_file() && m.len() == j.node.size && content_matches(self.repo, &j.node, &j.path)?,
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
            if !file_matches(self.repo, n, &f, path)? {
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

    fn pack(&self, id: &PackId) -> Result<Arc<File>> {
        let mut g = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = g.get(id) {
            return Ok(f.clone());
        }
        let path = crate::pack::pack_path(&self.repo.root, id);
        let f = Arc::new(File::open(&path).ctx(&path)?);
        if g.len() >= 64 {
            g.clear();
        }
        g.insert(*id, f.clone());
        Ok(f)
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

    /// Ownership (as root), mode (not for symlinks) and mtime of a directory or symlink.
    fn set_meta(&self, n: &Node, path: &Path, symlink: bool) -> Result<()> {
        if self.root {
            std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid)).ctx(path)?;
        }
        if !symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(n.mode)).ctx(path)?;
        }
        let t = file_time(n);
        if symlink {
            filetime::set_symlink_file_times(path, t, t).ctx(path)
        } else {
            filetime::set_file_times(path, t, t).ctx(path)
        }
    }
}

fn file_time(n: &Node) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        n.mtime_ns.div_euclid(1_000_000_000),
        n.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Whether the file at `path` holds exactly the node's content: every chunk, read at its
/// offset, hashes to the stored chunk id. Chunks are checked in parallel for large files.
pub fn content_matches(repo: &Repo, n: &Node, path: &Path) -> Result<bool> {
    file_matches(repo, n, &File::open(path).ctx(path)?, path)
}

/// [`content_matches`] on an open file.
fn file_matches(repo: &Repo, n: &Node, f: &File, path: &Path) -> Result<bool> {
    if f.metadata().ctx(path)?.len() != n.size {
        return Ok(false);
    }
    let mut offsets = Vec::with_capacity(n.content.len());
    let mut off = 0u64;
    for c in &n.content {
        offsets.push(off);
        off += c.len as u64;
    }
    let check = |i: usize| -> Result<bool> {
        let c = &n.content[i];
        let mut buf = vec![0u8; c.len as usize];
        match f.read_exact_at(&mut buf, offsets[i]) {
            Ok(()) => Ok(repo.hasher.id(&buf) == c.chunk_id()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    };
    if n.content.len() > 4 {
        Ok((0..n.content.len()).into_par_iter().map(check).collect::<Result<Vec<bool>>>()?.into_iter().all(|ok| ok))
    } else {
        for i in 0..n.content.len() {
            if !check(i)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Reads a stored file's content as a stream, one chunk at a time (a dump into `pg_restore`,
/// the consistency check's parser).
pub struct NodeReader<'a> {
    repo: &'a Repo,
    chunks: std::vec::IntoIter<crate::tree::ChunkRef>,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> NodeReader<'a> {
    pub fn new(repo: &'a Repo, n: &Node) -> NodeReader<'a> {
        NodeReader { repo, chunks: n.content.clone().into_iter(), buf: Vec::new(), pos: 0 }
    }
}

impl std::io::Read for NodeReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(c) = self.chunks.next() else {
                return Ok(0);
            };
            self.buf = self.repo.read_chunk(&c.chunk_id()).map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Streams the single file of a component (a database dump) into `sh -c CMD`'s stdin, e.g.
/// `pg_restore -d alfresco`. Fails when the command fails, naming it.
pub fn pipe_component(repo: &Repo, m: &Manifest, component: &str, cmd: &str) -> Result<u64> {
    let c = m.component(component).ok_or_else(|| Error::NotFound(format!("no component {component:?}")))?;
    let tree = repo.read_tree(&c.root)?;
    let files: Vec<&Node> = tree.nodes.iter().filter(|n| n.kind == NodeKind::File).collect();
    let [file] = files.as_slice() else {
        return Err(Error::InvalidInput(format!(
            "component {component:?} is not a single file (a dump); restore it with --target instead"
        )));
    };
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("could not start `{cmd}`: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let copied = std::io::copy(&mut NodeReader::new(repo, file), &mut stdin);
    drop(stdin);
    let status = child.wait().map_err(|e| Error::Failed(format!("`{cmd}`: {e}")))?;
    if !status.success() {
        return Err(Error::CommandFailed {
            component: component.into(),
            command: cmd.into(),
            status: status.to_string(),
            stderr: "(see above)".into(),
        });
    }
    copied.map_err(|e| Error::Failed(format!("streaming into `{cmd}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_with_binary_units() {
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert_eq!(parse_memory("512k"), Ok(512 << 10));
        assert_eq!(parse_memory("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory("2 MB"), Ok(2 << 20));
        assert_eq!(parse_memory("1048576"), Ok(1 << 20));
        for bad in ["", "M", "12X", "-5M", "1.5G", "1K", "99999999999999999999G"] {
            assert!(parse_memory(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn nested_selections_are_restored_once() {
        let sels = vec![vec!["src", "a", "b"], vec!["src", "a"], vec!["db"], vec!["src", "a"], vec!["src", "ab"]];
        assert_eq!(outermost(sels), vec![vec!["db"], vec!["src", "a"], vec!["src", "ab"]]);
    }
}
