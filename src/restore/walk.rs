//! The restore's tree walk: reads the selected trees, creates directories and symlinks as it
//! goes, and hands regular files to the restore in batches whose estimated plan memory stays
//! under the limit. Directories are only recorded here; their metadata is set once everything
//! is written.
//!
//! Trees come from the repository, so their shape is untrusted:
//! - The walk keeps its pending directories on an explicit stack (a slice of it read in
//!   parallel at a time), never on the call stack, and refuses trees deeper than [`MAX_DEPTH`].
//! - What a component's trees expand to is bounded by what its manifest declares (files,
//!   directories, bytes): trees that share subtrees can describe millions of files in a few
//!   blobs, and such a component is refused once it passes the declared counts.
//! - A tree that can't be read (missing or damaged) is reported as a failure of its directory
//!   and the walk goes on with the rest.

use super::{DirMeta, Job, Restorer, Sel};
use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::set::{Component, Manifest};
use crate::tree::{Node, NodeKind};
use rayon::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Directory levels below a component a restore accepts. Real trees are a few dozen deep; a
/// deeper one is a damaged or hostile repository.
pub const MAX_DEPTH: usize = 4096;

/// Bytes a component may hold beyond twice what its manifest declares (files that grew while
/// they were backed up).
const BYTES_SLACK: u64 = 1 << 30;

/// Directories read in parallel per step of the walk.
const WIDTH: usize = 64;

/// Walks the selected trees: creates directories and symlinks, collects files into batches.
pub(super) struct Walker<'a, 'r> {
    pub(super) r: &'a Restorer<'r>,
    pub(super) tx: crossbeam_channel::Sender<Vec<Job>>,
    /// The batch being filled, and an estimate of its plan's memory.
    pub(super) batch: Mutex<(Vec<Job>, usize)>,
    pub(super) limit: usize,
    pub(super) dirs: Mutex<Vec<DirMeta>>,
}

/// A directory whose tree is still to be read.
struct Pending<'s> {
    tree: TreeId,
    /// `component/…`, relative to the target.
    rel: PathBuf,
    /// The directory's own node (for its metadata); `None` for a component root or a
    /// directory only passed through on the way to a `--path`.
    node: Option<Node>,
    sel: Sel<'s>,
    depth: usize,
}

/// What one component may expand to: the counts its manifest declares.
struct Budget<'c> {
    c: &'c Component,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
}

impl Budget<'_> {
    fn take(&self, files: u64, dirs: u64, bytes: u64) -> Result<()> {
        let over = |what: &str, have: u64, declared: u64| {
            Err(Error::Failed(format!(
                "component {:?}: its trees hold more than the {declared} {what} its set's manifest declares (at least {have}); refusing to restore it (damaged or hostile repository)",
                self.c.name
            )))
        };
        let f = self.files.fetch_add(files, Relaxed) + files;
        if f > self.c.files {
            return over("files", f, self.c.files);
        }
        let d = self.dirs.fetch_add(dirs, Relaxed) + dirs;
        if d > self.c.dirs {
            return over("directories", d, self.c.dirs);
        }
        // Declared bytes are the sizes seen when the files were listed; a file that grew while
        // it was read is stored longer. Allow that, not terabytes from a few blobs.
        let b = self.bytes.fetch_add(bytes, Relaxed).saturating_add(bytes);
        let bytes_limit = self.c.bytes.saturating_mul(2).saturating_add(BYTES_SLACK);
        if b > bytes_limit {
            return over("bytes", b, bytes_limit);
        }
        Ok(())
    }
}

impl Walker<'_, '_> {
    pub(super) fn walk_set(&self, manifest: &Manifest, selections: &[Vec<&str>]) -> Result<()> {
        for c in &manifest.components {
            let sels: Vec<&[&str]> = selections.iter().filter(|s| s[0] == c.name).map(|s| &s[1..]).collect();
            if !selections.is_empty() && sels.is_empty() {
                continue;
            }
            let rel = PathBuf::from(&c.name);
            self.r.new_component();
            self.r.target.make_dir(&*self.r.target.dir(Path::new(""))?, c.name.as_bytes(), &rel, self.r.replace())?;
            let budget = Budget { c, files: AtomicU64::new(0), dirs: AtomicU64::new(0), bytes: AtomicU64::new(0) };
            // The component's own directory is not counted: a command component declares none.
            let start = |sel| Pending { tree: c.root, rel: rel.clone(), node: None, sel, depth: 1 };
            let stack = if sels.is_empty() || sels.iter().any(|s| s.is_empty()) {
                vec![start(Sel::All)]
            } else {
                sels.into_iter().map(|s| start(Sel::Path(s))).collect()
            };
            self.walk(stack, &budget)?;
        }
        Ok(())
    }

    /// Reads pending directories, a slice of the stack at a time, until none are left.
    fn walk(&self, mut stack: Vec<Pending<'_>>, budget: &Budget) -> Result<()> {
        while !stack.is_empty() {
            let slice = stack.split_off(stack.len().saturating_sub(WIDTH));
            let found: Vec<Result<Vec<Pending>>> = slice.into_par_iter().map(|p| self.visit(p, budget)).collect();
            for f in found {
                stack.extend(f?);
            }
        }
        Ok(())
    }

    /// Reads one directory's tree, restores its symlinks and subdirectories, queues its files,
    /// and returns its subdirectories to walk.
    fn visit<'s>(&self, p: Pending<'s>, budget: &Budget) -> Result<Vec<Pending<'s>>> {
        let tree = match self.r.repo.read_tree(&p.tree) {
            Ok(t) => t,
            Err(e) => {
                self.r.fail(
                    &p.rel,
                    format!("directory not restored: its tree {} could not be read: {e}", p.tree.short()),
                );
                return Ok(Vec::new());
            }
        };
        let dir = self.r.target.dir(&p.rel)?;
        if let (Some(node), Sel::All) = (&p.node, p.sel) {
            let d = DirMeta { node: node.clone(), rel: p.rel.clone(), depth: p.depth };
            self.dirs.lock().unwrap_or_else(|e| e.into_inner()).push(d);
        }
        let nodes: Vec<(Node, Sel)> = match p.sel {
            Sel::All => tree.nodes.into_iter().map(|n| (n, Sel::All)).collect(),
            Sel::Path(parts) => {
                let node = tree.find(parts[0].as_bytes()).ok_or_else(|| {
                    Error::NotFound(format!("{}: not in the set", self.r.target.show(&p.rel.join(parts[0])).display()))
                })?;
                let sub = if parts.len() == 1 { Sel::All } else { Sel::Path(&parts[1..]) };
                if parts.len() > 1 && node.kind != NodeKind::Dir {
                    return Err(Error::NotFound(format!(
                        "{}: not a directory in the set",
                        self.r.target.show(&p.rel.join(parts[0])).display()
                    )));
                }
                vec![(node.clone(), sub)]
            }
        };
        let mut subdirs = Vec::new();
        for (n, sel) in nodes {
            let rel = p.rel.join(std::ffi::OsStr::from_bytes(&n.name));
            if self.r.defer_link(&n, &rel) {
                continue;
            }
            match n.kind {
                NodeKind::Dir => {
                    let Some(tree) = n.subtree_id() else {
                        self.r.fail(&rel, "directory without a subtree in its tree".into());
                        continue;
                    };
                    if p.depth >= MAX_DEPTH {
                        return Err(Error::Failed(format!(
                            "{}: the set's tree is more than {MAX_DEPTH} directories deep here; refusing to restore it (damaged or hostile repository)",
                            self.r.target.show(&p.rel).display()
                        )));
                    }
                    budget.take(0, 1, 0)?;
                    self.r.restore_dir(&dir, &n, &rel)?;
                    let node = matches!(sel, Sel::All).then_some(n);
                    subdirs.push(Pending { tree, rel, node, sel, depth: p.depth + 1 });
                }
                NodeKind::Symlink => self.r.restore_symlink(&dir, &n, &rel)?,
                NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                    self.r.restore_special(&dir, &n, &rel)?
                }
                NodeKind::File => {
                    budget.take(1, 0, n.size)?;
                    self.add_file(Job { node: n, rel })?;
                }
            }
        }
        Ok(subdirs)
    }

    fn add_file(&self, job: Job) -> Result<()> {
        // Node, path and one (file, offset) need per chunk reference, roughly.
        let weight = 256 + job.rel.as_os_str().len() + job.node.content.len() * 96;
        let full = {
            let mut g = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            g.0.push(job);
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

    pub(super) fn flush(&self) -> Result<()> {
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
