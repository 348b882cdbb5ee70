//! Runs a backup: captures each component in order into one set and commits it.
//!
//! It owns the rayon pool for the CPU stages; the pack-writer thread and the bounded channel
//! that feeds it belong to [`sink::pack_into`], which copy uses too. The commit sequence is the format's write
//! order: every pack durable and indexed → manifest renamed into `sets/` (the commit point)
//! → files caches merged. A run that fails or dies before the rename leaves no set; what it
//! already packed is indexed and reused by the next run.

use crate::clock::{self, Clock};
use crate::error::{Error, Result};
use crate::filecache::{self, FileCache};
use crate::id::SetId;
use crate::lock::{Lease, LeaseKind};
use crate::repo::Repo;
use crate::set::{Component, ComponentKind, Manifest};
use crate::sink::{self, Counters, Sink};
use crate::walk::Walker;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// One component to capture.
#[derive(Debug, Clone)]
pub enum Source {
    /// A directory tree or a single file.
    Path { name: String, path: PathBuf },
    /// Anything that knows how to capture itself (command output, Solr snapshot).
    Custom(Arc<dyn crate::capture::Capture>),
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Path { name, .. } => name,
            Source::Custom(c) => c.name(),
        }
    }
}

pub struct Options {
    pub name: String,
    pub tags: Vec<String>,
    /// Worker threads (None: one per core). 1 gives a single-threaded run for debugging.
    pub threads: Option<usize>,
    pub clock: Arc<dyn Clock>,
    /// Record the set as started at this time (importing old data, backdating): the set's and
    /// its components' times are shifted by the same amount. Only what is recorded moves; the
    /// files cache's racy-mtime cutoff and pack times use the clock.
    pub time: Option<time::OffsetDateTime>,
    /// Use and update the files cache (off: every file is read).
    pub use_cache: bool,
    /// Do not cross into other mounted filesystems below each source path (`-x`).
    pub one_file_system: bool,
    pub cache_root: PathBuf,
    /// Live counters, for a progress display.
    pub counters: Arc<Counters>,
    /// Messages worth telling the user as they happen (stale leases reclaimed …).
    pub notify: Arc<dyn Fn(String) + Send + Sync>,
}

impl Options {
    pub fn new(name: &str) -> Options {
        Options {
            name: name.into(),
            tags: Vec::new(),
            threads: None,
            clock: Arc::new(clock::SystemClock),
            time: None,
            use_cache: true,
            one_file_system: false,
            cache_root: filecache::cache_root(),
            counters: Arc::new(Counters::default()),
            notify: Arc::new(|_| {}),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub set: SetId,
    pub manifest: Manifest,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub bytes_read: u64,
    pub bytes_stored: u64,
    pub chunks_new: u64,
    pub packs: u64,
    /// Whether the Bloom filter over the catalog was built (only when enough chunks were new).
    pub filter_built: bool,
    pub duration_s: f64,
    /// Files that could not be read (the set is committed without them).
    pub problems: Vec<String>,
}

pub fn run(repo: &Repo, sources: &[Source], opts: &Options) -> Result<Report> {
    if sources.is_empty() {
        return Err(Error::InvalidInput("nothing to back up: give at least one path or component".into()));
    }
    let mut seen = HashSet::new();
    for s in sources {
        let n = s.name();
        if n.is_empty() || n.contains('/') || n == "." || n == ".." {
            return Err(Error::InvalidInput(format!("component name {n:?} is not usable as a directory name")));
        }
        if !seen.insert(n.to_string()) {
            return Err(Error::InvalidInput(format!("two components are named {n:?}; give them distinct names")));
        }
    }
    let t0 = Instant::now();
    let notify = opts.notify.clone();
    repo.writable("backup")?;
    let _lease = Lease::acquire(repo.storage.clone(), LeaseKind::Shared, "backup", &mut |m| notify(m))?;
    // A prune elsewhere may have finished between opening and the lease: dedup must not
    // count on packs it removed.
    repo.sync_catalog()?;
    repo.clean_tmp();
    let started = opts.clock.now();
    let adopted = repo.adopt_unindexed_packs(started.unix_timestamp())?;
    if adopted > 0 {
        (opts.notify)(format!("indexed {adopted} pack(s) left by an interrupted run"));
    }
    let scan_start_ns = i64::try_from(clock::unix_nanos(started)).unwrap_or(i64::MAX);
    let shift = opts.time.map(|t| t - started).unwrap_or(time::Duration::ZERO);
    let stamp = |t: time::OffsetDateTime| clock::format(t + shift);
    let parent = repo.list_sets()?.into_iter().rev().find(|(_, m)| m.name == opts.name).map(|(id, _)| id);

    let cache_key =
        filecache::Key { repository_id: repo.config.repository_id.clone(), generation: repo.index()?.generation()? };
    let counters = &*opts.counters;
    let threads =
        opts.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(16 << 20)
        .thread_name(|i| format!("coffer-{i}"))
        .build()
        .map_err(|e| Error::Failed(format!("thread pool: {e}")))?;
    let now_secs = started.unix_timestamp();

    let mut caches: Vec<FileCache> = Vec::new();
    let outcome = sink::pack_into(repo, counters, now_secs, |sink| {
        pool.install(|| -> Result<(Vec<Component>, Vec<String>)> {
            let mut comps = Vec::new();
            let mut problems = Vec::new();
            for s in sources {
                let cstart = opts.clock.now();
                let mut comp = match s {
                    Source::Path { name, path } => capture_directory(
                        repo,
                        sink,
                        opts,
                        name,
                        path,
                        &cache_key,
                        threads,
                        scan_start_ns,
                        &mut caches,
                    )?,
                    Source::Custom(c) => c.capture(&crate::capture::Context {
                        sink,
                        params: repo.chunker,
                        scan_start_ns,
                        notify: &*opts.notify,
                    })?,
                };
                comp.started = stamp(cstart);
                comp.finished = stamp(opts.clock.now());
                problems.extend(comp.unreadable.iter().map(|p| format!("{}: {p}", comp.name)));
                comps.push(comp);
            }
            Ok((comps, problems))
        })
    });
    let (components, problems, filter_built) = match outcome {
        Ok(p) => (p.value.0, p.value.1, p.filter_built),
        Err(e) => {
            for c in &caches {
                c.abandon();
            }
            return Err(e);
        }
    };

    let manifest = Manifest {
        name: opts.name.clone(),
        host: crate::lock::hostname(),
        tags: opts.tags.clone(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started: stamp(started),
        finished: stamp(opts.clock.now()),
        parent,
        components,
    };
    let set = repo.commit_manifest(&manifest);
    for c in &caches {
        // The set is committed; a cache that fails to update only costs a re-read next time
        // (commit tells the user itself).
        match &set {
            Ok(_) => c.commit(),
            Err(_) => c.abandon(),
        }
    }
    let set = set?;
    Ok(Report {
        set,
        files_new: counters.files_new.load(Relaxed),
        files_changed: counters.files_changed.load(Relaxed),
        files_unchanged: counters.files_unchanged.load(Relaxed),
        dirs: manifest.components.iter().map(|c| c.dirs).sum(),
        bytes: manifest.total_bytes(),
        bytes_read: counters.bytes_read.load(Relaxed),
        bytes_stored: counters.pack_bytes.load(Relaxed),
        chunks_new: counters.chunks_new.load(Relaxed),
        packs: counters.packs.load(Relaxed),
        filter_built,
        duration_s: t0.elapsed().as_secs_f64(),
        problems,
        manifest,
    })
}

/// Captures the directory tree (or single file) `path` as the component `name`, with its files
/// cache (pushed onto `caches`, to be committed or abandoned with the set).
#[allow(clippy::too_many_arguments)]
fn capture_directory(
    repo: &Repo,
    sink: &Sink,
    opts: &Options,
    name: &str,
    path: &std::path::Path,
    cache_key: &filecache::Key,
    threads: usize,
    scan_start_ns: i64,
    caches: &mut Vec<FileCache>,
) -> Result<Component> {
    let canon = crate::walk::canonical_source(path)?;
    let cache = if opts.use_cache {
        match FileCache::open(&opts.cache_root, cache_key, &canon, threads, opts.notify.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                (opts.notify)(format!("files cache unusable ({e}); every file is read"));
                None
            }
        }
    } else {
        None
    };
    let mut w = Walker::new(sink, repo.chunker, cache.as_ref(), scan_start_ns);
    w.repo = Some(repo);
    w.one_file_system = opts.one_file_system;
    let root = w.save_root(&canon);
    if root.is_err() {
        if let Some(c) = &cache {
            c.abandon();
        }
    }
    let root = root?;
    for n in std::mem::take(&mut *w.notes.lock().unwrap_or_else(|p| p.into_inner())) {
        (opts.notify)(format!("component {name:?}: {n}"));
    }
    if let Some(c) = &cache {
        let (rejected, bad) = (w.cache_rejected.load(Relaxed), c.bad_rows());
        if rejected + bad > 0 {
            (opts.notify)(format!(
                "component {name:?}: {} files cache entr{} did not check out (damaged, or naming chunks the repository lacks); those files were read again",
                rejected + bad,
                if rejected + bad == 1 { "y" } else { "ies" }
            ));
        }
    }
    let unreadable = std::mem::take(&mut *w.problems.lock().unwrap_or_else(|p| p.into_inner()));
    let skipped = std::mem::take(&mut *w.skipped.lock().unwrap_or_else(|p| p.into_inner()));
    for s in &skipped {
        (opts.notify)(format!("warning: {name}: {s}"));
    }
    let c = Component {
        name: name.to_string(),
        kind: ComponentKind::Directory,
        source: canon.display().to_string(),
        started: String::new(),
        finished: String::new(),
        root,
        files: w.files.load(Relaxed),
        dirs: w.dirs.load(Relaxed),
        bytes: w.bytes.load(Relaxed),
        stored_bytes: w.stored.load(Relaxed),
        command: None,
        solr: None,
        unreadable,
        skipped,
    };
    drop(w);
    caches.extend(cache);
    Ok(c)
}

/// Sources that live on the same filesystem as the repository: a backup on the database's
/// drive dies with it.
pub fn same_filesystem(repo_root: &std::path::Path, sources: &[(String, PathBuf)]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(repo_dev) = std::fs::metadata(repo_root).map(|m| m.dev()) else { return Vec::new() };
    sources
        .iter()
        .filter(|(_, p)| std::fs::metadata(p).map(|m| m.dev() == repo_dev).unwrap_or(false))
        .map(|(name, p)| {
            format!(
                "component {name:?}: {} is on the same filesystem as the repository {}; a failure of that disk would take the data and its backup together",
                p.display(),
                repo_root.display()
            )
        })
        .collect()
}
