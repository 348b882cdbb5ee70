//! The restore's tree walk: reads the selected trees in parallel, creates directories and
//! symlinks as it goes, and hands regular files to the restore in batches whose estimated plan
//! memory stays under the limit. Directories are only recorded here; their metadata is set
//! once everything is written.

use super::{DirMeta, Job, Restorer, Sel};
use crate::error::{Error, Result};
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use rayon::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Walks the selected trees in parallel: creates directories and symlinks, collects files
/// into batches.
pub(super) struct Walker<'a, 'r> {
    pub(super) r: &'a Restorer<'r>,
    pub(super) tx: crossbeam_channel::Sender<Vec<Job>>,
    /// The batch being filled, and an estimate of its plan's memory.
    pub(super) batch: Mutex<(Vec<Job>, usize)>,
    pub(super) limit: usize,
    pub(super) dirs: Mutex<Vec<DirMeta>>,
}

impl Walker<'_, '_> {
    pub(super) fn walk_set(&self, manifest: &Manifest, target: &Path, selections: &[Vec<&str>]) -> Result<()> {
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
