//! Restores a set (or parts of it) to a directory: `TARGET/<component>/…`, byte-identical,
//! with modes, mtimes, symlinks, empty directories and, when run as root, ownership.
//!
//! Directories are restored in parallel (one rayon task per directory and per file); a large
//! file's chunks are fetched, checked and written at their offsets in parallel. Runs of zero
//! chunks are not written, so sparse files come back sparse. A directory's mtime is set after
//! its children are written. Existing files are never overwritten unless asked.

use crate::error::{Error, IoContext, Result};
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use rayon::prelude::*;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replace files that already exist in the target.
    pub overwrite: bool,
    /// Only these paths (`component[/sub/path]`); empty: everything.
    pub paths: Vec<String>,
    pub threads: Option<usize>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub duration_s: f64,
}

#[derive(Default)]
struct Counts {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    bytes: AtomicU64,
}

/// Splits `a/b/c` into non-empty components, rejecting `..`.
pub fn split_path(p: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.iter().any(|s| *s == "..") {
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
    counts: Counts,
    root: bool,
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
    let r = Restorer { repo, opts, counts: Counts::default(), root: crate::sys::is_root() };
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
    Ok(Report {
        files: r.counts.files.load(Relaxed),
        dirs: r.counts.dirs.load(Relaxed),
        symlinks: r.counts.symlinks.load(Relaxed),
        bytes: r.counts.bytes.load(Relaxed),
        duration_s: t0.elapsed().as_secs_f64(),
    })
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
                let node = tree.find(parts[0].as_bytes()).ok_or_else(|| {
                    Error::NotFound(format!("{}: not in the set", dest.join(parts[0]).display()))
                })?;
                vec![(node, if parts.len() == 1 { Sel::All } else { Sel::Path(&parts[1..]) })]
            }
        };
        nodes.par_iter().try_for_each(|(n, s)| self.restore_node(n, &dest.join(std::ffi::OsStr::from_bytes(&n.name)), *s))
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
                if self.opts.overwrite && path.symlink_metadata().is_ok() {
                    std::fs::remove_file(path).ctx(path)?;
                }
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).map_err(|e| self.exists_err(path, e))?;
                self.counts.symlinks.fetch_add(1, Relaxed);
                self.set_meta(n, path, true)?;
            }
            NodeKind::File => {
                self.restore_file(n, path)?;
                self.counts.files.fetch_add(1, Relaxed);
                self.set_meta(n, path, false)?;
            }
        }
        Ok(())
    }

    fn exists_err(&self, path: &Path, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::InvalidInput(format!("{}: already exists; refusing to overwrite (use --overwrite)", path.display()))
        } else {
            Error::Io { path: path.to_path_buf(), source: e }
        }
    }

    fn restore_file(&self, n: &Node, path: &Path) -> Result<()> {
        let mut oo = OpenOptions::new();
        oo.write(true).mode(0o600);
        if self.opts.overwrite {
            oo.create(true).truncate(true);
        } else {
            oo.create_new(true);
        }
        let f = oo.open(path).map_err(|e| self.exists_err(path, e))?;
        let mut offsets = Vec::with_capacity(n.content.len());
        let mut off = 0u64;
        for c in &n.content {
            offsets.push(off);
            off += c.len as u64;
        }
        let write = |i: usize| -> Result<()> {
            let c = &n.content[i];
            let data = self.repo.read_chunk(&c.chunk_id())?;
            if data.len() != c.len as usize {
                return Err(Error::Failed(format!("{}: chunk {} has {} bytes, the tree says {}", path.display(), c.chunk_id().short(), data.len(), c.len)));
            }
            // Leave holes where the file was zeros: sparse files stay sparse.
            if !data.iter().all(|&b| b == 0) {
                f.write_all_at(&data, offsets[i]).ctx(path)?;
            }
            self.counts.bytes.fetch_add(data.len() as u64, Relaxed);
            Ok(())
        };
        if n.content.len() > 4 {
            (0..n.content.len()).into_par_iter().try_for_each(write)?;
        } else {
            (0..n.content.len()).try_for_each(write)?;
        }
        f.set_len(off).ctx(path)?;
        Ok(())
    }

    fn set_meta(&self, n: &Node, path: &Path, symlink: bool) -> Result<()> {
        if self.root {
            std::os::unix::fs::lchown(path, Some(n.uid), Some(n.gid)).ctx(path)?;
        }
        if !symlink {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(n.mode)).ctx(path)?;
        }
        let t = filetime::FileTime::from_unix_time(n.mtime_ns.div_euclid(1_000_000_000), n.mtime_ns.rem_euclid(1_000_000_000) as u32);
        if symlink {
            filetime::set_symlink_file_times(path, t, t).ctx(path)
        } else {
            filetime::set_file_times(path, t, t).ctx(path)
        }
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
        return Err(Error::InvalidInput(format!("component {component:?} is not a single file (a dump); restore it with --target instead")));
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
        return Err(Error::CommandFailed { component: component.into(), command: cmd.into(), status: status.to_string(), stderr: "(see above)".into() });
    }
    copied.map_err(|e| Error::Failed(format!("streaming into `{cmd}`: {e}")))
}
