//! Restores a set (or parts of it) to a directory: `TARGET/<component>/…`, byte-identical,
//! with modes, mtimes, symlinks, empty directories and, when run as root, ownership.
//!
//! How a restore runs:
//! 1. A walker thread reads the trees (a slice of its explicit stack at a time, in parallel),
//!    creates directories and symlinks, and hands
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
//! - Nothing is written outside the target: every entry is created relative to a directory
//!   handle, no symlink below the target is followed, and what is in the way is replaced
//!   (`overwrite`/`resume`) or refused, never written through (see `fsat`). Component and entry
//!   names are validated where they are decoded (`set`, `tree`).
//! - The trees are walked without recursion, to at most `walk::MAX_DEPTH` levels, and a
//!   component may not expand to more than its manifest declares (see `walk`).
//! - A missing or damaged chunk or tree fails only what needs it; the rest is restored and the
//!   failures are listed in [`Report::failed`] (see `batch`).
//! - Existing files are never overwritten unless `overwrite` or `resume` is set.
//! - `resume`: a regular file that already has the stored size and whose every chunk hashes to
//!   the stored chunk id is left untouched (only its metadata is set) and counted in
//!   `skipped`; any other file is rewritten from scratch. A file is sized last, so one cut
//!   short by a killed restore is either too short or fails a chunk hash.
//! - `verify`: every written file is read back and each chunk's hash checked; a mismatch is an
//!   error naming the file.

use crate::error::{Error, IoContext, Result};
use crate::id::ChunkId;
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::Node;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

mod batch;
mod fsat;
mod nodes;
mod read;
pub mod special;
mod walk;

use fsat::Target;
pub use read::{content_matches, pipe_component, NodeReader};
use walk::Walker;

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
    /// Files and directories not restored because the repository could not supply them
    /// (a chunk or tree missing or damaged); everything else was restored.
    pub failed: Vec<Failure>,
    /// Fifos and device nodes created.
    pub specials: u64,
    /// Names linked to another name of their inode (hard links).
    pub hardlinks: u64,
    /// What this target could not take, path first (a device node when not root, a refused
    /// extended attribute, a refused hard link; at most [`nodes::NOT_RESTORED_SHOWN`]).
    pub not_restored: Vec<String>,
    /// How many things could not be created (may exceed `not_restored.len()`).
    pub not_restored_count: u64,
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
    pub specials: AtomicU64,
    pub hardlinks: AtomicU64,
    /// Files and bytes the whole restore covers, when known (whole components; 0 otherwise).
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
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
    /// The target directory's handle; every entry is created relative to it.
    target: Target,
    /// Chunks known to be all zeros, with their length: never read again, never written.
    zeros: Mutex<HashMap<ChunkId, u32>>,
    /// Files and directories that could not be restored (repository damage), with why.
    failed: Mutex<Vec<Failure>>,
    /// Hard-link groups of the component being walked: link id → the group's first name.
    link_first: Mutex<HashMap<u64, PathBuf>>,
    /// Later names of link groups: (first name, this name), linked once files are written.
    links: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// What this target could not take (capped), and how many.
    not_restored: Mutex<(Vec<String>, u64)>,
}

/// Something the restore could not write because the repository could not supply it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    pub path: String,
    pub error: String,
}

/// A regular file to restore, at `TARGET/rel`.
struct Job {
    node: Node,
    rel: PathBuf,
}

/// A directory whose metadata is set once everything below it is written.
struct DirMeta {
    node: Node,
    rel: PathBuf,
    depth: usize,
}

/// Restores `manifest` (or the `opts.paths` of it) into `target`.
///
/// Returns `Ok` with [`Report::failed`] listing every file and directory that could not be
/// restored because a chunk or tree was missing or damaged (everything else is restored); an
/// `Err` for anything that stops the whole restore (the target, a hostile tree, a write error).
pub fn restore(repo: &Repo, manifest: &Manifest, target: &Path, opts: &Options) -> Result<Report> {
    let _lease = crate::lock::Lease::acquire_reader(repo, "restore", &mut |m| eprintln!("coffer: {m}"))?;
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
    // Whole components: the manifest knows how much there is to restore.
    if selections.iter().all(|s| s.len() == 1) {
        let whole = || {
            manifest.components.iter().filter(|c| selections.is_empty() || selections.iter().any(|s| s[0] == c.name))
        };
        opts.counters.total_files.store(whole().map(|c| c.files).sum(), Relaxed);
        opts.counters.total_bytes.store(whole().map(|c| c.bytes).sum(), Relaxed);
    }
    let r = Restorer {
        repo,
        opts,
        counts: &opts.counters,
        root: crate::sys::is_root(),
        target: Target::open(target)?,
        zeros: Mutex::new(HashMap::new()),
        failed: Mutex::new(Vec::new()),
        link_first: Mutex::new(HashMap::new()),
        links: Mutex::new(Vec::new()),
        not_restored: Mutex::new((Vec::new(), 0)),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = opts.threads.unwrap_or_else(|| repo.storage.readers(cores));
    // Two pools, never one: the batch loop blocks a worker on the channel while the walker
    // fills it, and a walker sharing that pool (with `--threads 1`, or when every worker is
    // blocked) would wait for a thread that never comes back.
    let pool = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::Failed(format!("thread pool: {e}")))
    };
    let (walk_pool, pool) = (pool()?, pool()?);
    let limit = if opts.plan_memory == 0 { PLAN_MEMORY } else { opts.plan_memory };

    let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(1);
    let (walked, restored) = std::thread::scope(|s| {
        let r = &r;
        let selections = &selections;
        let walk_pool = &walk_pool;
        let walker = s.spawn(move || {
            let w = Walker { r, tx, batch: Mutex::new((Vec::new(), 0)), limit, dirs: Mutex::new(Vec::new()) };
            walk_pool.install(|| w.walk_set(manifest, selections))?;
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
    r.make_links()?;
    // Deepest first: a directory's mtime and mode are set after everything inside it.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.depth));
    for d in &dirs {
        let f = File::from(r.target.dir(&d.rel)?.try_clone().ctx(&r.target.show(&d.rel))?);
        r.set_meta(&d.node, &f, &d.rel)?;
        r.counts.dirs.fetch_add(1, Relaxed);
    }
    let c = r.counts;
    let mut failed = r.failed.into_inner().unwrap_or_else(|p| p.into_inner());
    failed.sort_by(|a, b| a.path.cmp(&b.path));
    let (not_restored, not_restored_count) = r.not_restored.into_inner().unwrap_or_else(|p| p.into_inner());
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
        failed,
        specials: c.specials.load(Relaxed),
        hardlinks: c.hardlinks.load(Relaxed),
        not_restored,
        not_restored_count,
        duration_s: t0.elapsed().as_secs_f64(),
    })
}

impl Restorer<'_> {
    /// `--overwrite` and `--resume` replace what is in the way; a plain restore refuses.
    fn replace(&self) -> bool {
        self.opts.overwrite || self.opts.resume
    }

    /// Records that `rel` could not be restored, and why (repository damage).
    fn fail(&self, rel: &Path, why: String) {
        let path = self.target.show(rel).display().to_string();
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).push(Failure { path, error: why });
    }

    /// A directory node: created in `dir` (or an existing directory kept); its metadata is set
    /// at the end.
    fn restore_dir(&self, dir: &OwnedFd, n: &Node, rel: &Path) -> Result<()> {
        self.target.make_dir(dir, &n.name, rel, self.replace())
    }

    /// A symlink node, created in `dir`; with `resume` one with the right target is kept.
    fn restore_symlink(&self, dir: &OwnedFd, n: &Node, rel: &Path) -> Result<()> {
        let target = n.target.as_deref().unwrap_or_default();
        if self.opts.resume && self.target.link_target(dir, &n.name).is_some_and(|t| t == target) {
            self.counts.skipped.fetch_add(1, Relaxed);
        } else {
            self.target.make_symlink(dir, &n.name, target, rel, self.replace())?;
            self.counts.symlinks.fetch_add(1, Relaxed);
        }
        let owner = self.root.then_some((n.uid, n.gid));
        self.target.symlink_meta(dir, &n.name, rel, owner, n.mtime_ns)
    }

    /// Ownership (as root), mode and mtime of a file or directory, through its own handle.
    /// Whether an existing file already has `n`'s mode, times and (as root) owner.
    fn meta_matches(&self, n: &Node, st: &rustix::fs::Stat) -> bool {
        #[allow(clippy::unnecessary_cast)] // not i64 on every target
        let mtime_ns = st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64;
        st.st_mode & 0o7777 == n.mode & 0o7777
            && mtime_ns == n.mtime_ns
            && (!self.root || (st.st_uid, st.st_gid) == (n.uid, n.gid))
    }

    fn set_meta(&self, n: &Node, f: &File, rel: &Path) -> Result<()> {
        let shown = || self.target.show(rel);
        if self.root {
            std::os::unix::fs::fchown(f, Some(n.uid), Some(n.gid)).ctx(&shown())?;
        }
        // After chown (which clears security.capability), before chmod (a read-only file's
        // owner may not set user.* attributes).
        for m in special::apply_xattrs(f, n) {
            self.not_restored(rel, m);
        }
        f.set_permissions(std::fs::Permissions::from_mode(n.mode & 0o7777)).ctx(&shown())?;
        let t = fsat::timespec(n.mtime_ns);
        rustix::fs::futimens(f, &rustix::fs::Timestamps { last_access: t, last_modification: t })
            .map_err(|e| Error::Io { path: shown(), source: e.into() })
    }
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
