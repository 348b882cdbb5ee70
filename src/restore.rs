//! Restores a set (or parts of it) to a directory: `TARGET/<component>/…`, byte-identical,
//! with modes, mtimes, symlinks, empty directories and, when run as root, ownership.
//!
//! Directories are restored in parallel (one rayon task per directory and per file). Per file,
//! the distinct chunks are looked up once, sorted by pack and offset, and adjacent blobs are
//! read as one range with a single `pread` (ranges up to [`RANGE_MAX`]); the ranges of a large
//! file are read, checked and written at their offsets in parallel. Chunks that decode to all
//! zeros are never written, and remembered, so sparse files come back sparse and their zero
//! chunks are read once per restore. A directory's mtime is set after its children are written.
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
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The longest run of adjacent blobs read with one `pread`.
pub const RANGE_MAX: u64 = 8 << 20;

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
    pub verified: AtomicU64,
}

/// Splits `a/b/c` into non-empty components, rejecting `..`.
pub fn split_path(p: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::InvalidInput(format!("path {p:?} may not contain \"..\"")));
    }
    Ok(parts)
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
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .stack_size(16 << 20)
        .build()
        .map_err(|e| Error::Failed(format!("thread pool: {e}")))?;
    pool.install(|| -> Result<()> {
        for c in &manifest.components {
            let sels: Vec<&[&str]> = selections.iter().filter(|s| s[0] == c.name).map(|s| &s[1..]).collect();
            if !selections.is_empty() && sels.is_empty() {
                continue;
            }
            let dest = target.join(&c.name);
            let tree = repo.read_tree(&c.root)?;
            if sels.is_empty() || sels.iter().any(|s| s.is_empty()) {
                r.restore_dir(&tree, &dest, Sel::All)?;
            } else {
                for s in sels {
                    r.restore_dir(&tree, &dest, Sel::Path(s))?;
                }
            }
        }
        Ok(())
    })?;
    let c = r.counts;
    Ok(Report {
        files: c.files.load(Relaxed),
        dirs: c.dirs.load(Relaxed),
        symlinks: c.symlinks.load(Relaxed),
        bytes: c.bytes.load(Relaxed),
        skipped: c.skipped.load(Relaxed),
        skipped_bytes: c.skipped_bytes.load(Relaxed),
        bytes_read: c.bytes_read.load(Relaxed),
        verified: c.verified.load(Relaxed),
        duration_s: t0.elapsed().as_secs_f64(),
    })
}

/// A run of adjacent blobs in one pack, read with one `pread`.
struct Range {
    pack: PackId,
    start: u64,
    end: u64,
    entries: Vec<crate::pack::Entry>,
}

impl Restorer<'_> {
    fn restore_dir(&self, tree: &Tree, dest: &Path, sel: Sel) -> Result<()> {
        match std::fs::create_dir(dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
            Err(e) => return Err(Error::Io { path: dest.to_path_buf(), source: e }),
        }
        let nodes: Vec<(&Node, Sel)> = match sel {
            Sel::All => tree.nodes.iter().map(|n| (n, Sel::All)).collect(),
            Sel::Path(parts) => {
                let node = tree
                    .find(parts[0].as_bytes())
                    .ok_or_else(|| Error::NotFound(format!("{}: not in the set", dest.join(parts[0]).display())))?;
                vec![(node, if parts.len() == 1 { Sel::All } else { Sel::Path(&parts[1..]) })]
            }
        };
        nodes
            .par_iter()
            .try_for_each(|(n, s)| self.restore_node(n, &dest.join(std::ffi::OsStr::from_bytes(&n.name)), *s))
    }

    fn restore_node(&self, n: &Node, path: &Path, sel: Sel) -> Result<()> {
        match n.kind {
            NodeKind::Dir => {
                let id = n.subtree_id().ok_or_else(|| Error::corrupt(path, 0, "directory without subtree"))?;
                let sub = self.repo.read_tree(&id)?;
                self.restore_dir(&sub, path, sel)?;
                if matches!(sel, Sel::All) {
                    self.counts.dirs.fetch_add(1, Relaxed);
                    self.set_meta(n, path, false)?;
                }
            }
            NodeKind::Symlink => {
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
                self.set_meta(n, path, true)?;
            }
            NodeKind::File => {
                self.restore_file(n, path)?;
                self.set_meta(n, path, false)?;
            }
        }
        Ok(())
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

    fn restore_file(&self, n: &Node, path: &Path) -> Result<()> {
        if self.opts.resume {
            let complete = match path.symlink_metadata() {
                Ok(m) => m.file_type().is_file() && m.len() == n.size && content_matches(self.repo, n, path)?,
                Err(_) => false,
            };
            if complete {
                self.counts.skipped.fetch_add(1, Relaxed);
                self.counts.skipped_bytes.fetch_add(n.size, Relaxed);
                return Ok(());
            }
        }
        let mut oo = OpenOptions::new();
        oo.write(true).mode(0o600);
        if self.opts.overwrite || self.opts.resume {
            oo.create(true).truncate(true);
        } else {
            oo.create_new(true);
        }
        let f = oo.open(path).map_err(|e| self.exists_err(path, e))?;
        self.write_content(n, &f, path)?;
        // Sized last: a file cut short by a kill is visibly incomplete to --resume.
        f.set_len(n.size).ctx(path)?;
        self.counts.files.fetch_add(1, Relaxed);
        if self.opts.verify {
            drop(f);
            if !content_matches(self.repo, n, path)? {
                return Err(Error::Failed(format!(
                    "{}: verification failed: the restored file differs from the set",
                    path.display()
                )));
            }
            self.counts.verified.fetch_add(1, Relaxed);
        }
        Ok(())
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

    /// Writes a file's chunks at their offsets, reading each distinct chunk once, in pack
    /// order, adjacent blobs with one `pread`.
    fn write_content(&self, n: &Node, f: &File, path: &Path) -> Result<()> {
        // Per distinct chunk: its length and every offset it is written at.
        let mut at: HashMap<ChunkId, (u32, Vec<u64>)> = HashMap::new();
        let mut off = 0u64;
        for c in &n.content {
            at.entry(c.chunk_id()).or_insert_with(|| (c.len, Vec::new())).1.push(off);
            off += c.len as u64;
        }
        let mut known_zero = 0u64;
        let mut locs = Vec::with_capacity(at.len());
        {
            let zeros = self.zeros.lock().unwrap_or_else(|p| p.into_inner());
            let idx = self.repo.index()?;
            for id in at.keys() {
                if zeros.contains(id) {
                    known_zero += at[id].0 as u64 * at[id].1.len() as u64;
                    continue;
                }
                let loc = idx.lookup(id)?.ok_or_else(|| {
                    Error::NotFound(format!(
                        "{}: chunk {} is not in the index (repository damaged?)",
                        path.display(),
                        id.short()
                    ))
                })?;
                locs.push(loc);
            }
        }
        self.counts.bytes.fetch_add(known_zero, Relaxed);
        locs.sort_by_key(|l| (l.pack, l.entry.offset));
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
        let one = |r: &Range| -> Result<()> {
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
            for e in &r.entries {
                let from = (e.offset - r.start) as usize;
                let data = crate::pack::decode_blob(
                    &pack_path,
                    e,
                    &buf[from..from + e.stored_len as usize],
                    &self.repo.hasher,
                )?;
                let (want, offsets) = &at[&e.id];
                let want = *want as usize;
                if data.len() != want {
                    return Err(Error::Failed(format!(
                        "{}: chunk {} has {} bytes, the tree says {want}",
                        path.display(),
                        e.id.short(),
                        data.len()
                    )));
                }
                // Leave holes where the file was zeros: sparse files stay sparse.
                if data.iter().all(|&b| b == 0) {
                    self.zeros.lock().unwrap_or_else(|p| p.into_inner()).insert(e.id);
                } else {
                    for &o in offsets {
                        f.write_all_at(&data, o).ctx(path)?;
                    }
                }
                self.counts.bytes.fetch_add(data.len() as u64 * offsets.len() as u64, Relaxed);
            }
            Ok(())
        };
        if ranges.len() > 1 {
            ranges.par_iter().try_for_each(one)
        } else {
            ranges.iter().try_for_each(one)
        }
    }

    fn set_meta(&self, n: &Node, path: &Path, symlink: bool) -> Result<()> {
        if self.root {
            std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid)).ctx(path)?;
        }
        if !symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(n.mode)).ctx(path)?;
        }
        let t = filetime::FileTime::from_unix_time(
            n.mtime_ns.div_euclid(1_000_000_000),
            n.mtime_ns.rem_euclid(1_000_000_000) as u32,
        );
        if symlink {
            filetime::set_symlink_file_times(path, t, t).ctx(path)
        } else {
            filetime::set_file_times(path, t, t).ctx(path)
        }
    }
}

/// Whether the file at `path` holds exactly the node's content: every chunk, read at its
/// offset, hashes to the stored chunk id. Chunks are checked in parallel for large files.
pub fn content_matches(repo: &Repo, n: &Node, path: &Path) -> Result<bool> {
    let f = File::open(path).ctx(path)?;
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
            let Some(c) = self.chunks.next() else { return Ok(0) };
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
