//! The restore's handling of what is more than a regular file's bytes, on the target's
//! directory handles ([`super::fsat`]): fifos and device nodes, hard links, and the list of what
//! could not be created on this target (a device node when not root, an attribute the target
//! refuses), which the CLI reports with exit 3. The system calls are in [`super::special`].
//!
//! Hard links: the first name of a link group the walker meets is restored as a file; every
//! later name is linked to it once all files are written (before directories get their
//! metadata), so a link never points at a file still being written. Link ids are unique
//! within one component only.

use super::fsat::{self, parent_and_name};
use super::special::{self, apply_xattrs_path, create_special, link_hard};
use super::Restorer;
use crate::error::Result;
use crate::tree::{Node, NodeKind};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, Timestamps};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

/// Entries of [`super::Report::not_restored`] kept; the count goes on.
pub const NOT_RESTORED_SHOWN: usize = 1000;

impl Restorer<'_> {
    /// Records that `rel` could not be (completely) created on this target, and why.
    pub(super) fn not_restored(&self, rel: &Path, why: impl std::fmt::Display) {
        let mut g = self.not_restored.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        if g.0.len() < NOT_RESTORED_SHOWN {
            g.0.push(format!("{}: {why}", self.target.show(rel).display()));
        }
    }

    /// A new component: hard-link ids are only unique within one.
    pub(super) fn new_component(&self) {
        self.link_first.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// For a node of a hard-link group: `true` when an earlier name of the group was met, and
    /// `rel` is then linked to it at the end instead of being restored.
    pub(super) fn defer_link(&self, n: &Node, rel: &Path) -> bool {
        let Some(id) = n.link.filter(|_| n.kind != NodeKind::Dir) else { return false };
        let mut g = self.link_first.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(&id) {
            Some(first) => {
                self.links.lock().unwrap_or_else(|p| p.into_inner()).push((first.clone(), rel.to_path_buf()));
                true
            }
            None => {
                g.insert(id, rel.to_path_buf());
                false
            }
        }
    }

    /// Links every later name of a hard-link group to the group's first (restored) name.
    pub(super) fn make_links(&self) -> Result<()> {
        let links = std::mem::take(&mut *self.links.lock().unwrap_or_else(|p| p.into_inner()));
        for (first, rel) in links {
            let (first_parent, first_name) = parent_and_name(&first);
            let (parent, name) = parent_and_name(&rel);
            let first_dir = self.target.dir(first_parent)?;
            let dir = self.target.dir(parent)?;
            if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                let same = rustix::fs::statat(&first_dir, first_name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|f| (f.st_dev, f.st_ino) == (st.st_dev, st.st_ino));
                if self.opts.resume && same {
                    self.counts.skipped.fetch_add(1, Relaxed);
                    continue;
                }
                if !self.replace() {
                    return Err(fsat::exists(&self.target.show(&rel)));
                }
                self.target.remove_file(&dir, name, &rel)?;
            }
            match link_hard(first_dir.as_fd(), OsStr::from_bytes(first_name), dir.as_fd(), OsStr::from_bytes(name)) {
                Ok(()) => {
                    self.counts.hardlinks.fetch_add(1, Relaxed);
                }
                Err(e) => self.not_restored(
                    &rel,
                    format!("hard link to {} not created: {e}", self.target.show(&first).display()),
                ),
            }
        }
        Ok(())
    }

    /// A fifo or device node in `dir`: created, or reported when it can't be (a device when
    /// not root). Something else in its place is replaced with `--overwrite`/`--resume`.
    pub(super) fn restore_special(&self, dir: &OwnedFd, n: &Node, rel: &Path) -> Result<()> {
        if let Ok(st) = rustix::fs::statat(dir, n.name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            if self.opts.resume && special::is_same_special(&st, n) {
                self.counts.skipped.fetch_add(1, Relaxed);
                return self.special_meta(dir, n, rel);
            }
            if !self.replace() {
                return Err(fsat::exists(&self.target.show(rel)));
            }
            self.target.remove_file(dir, &n.name, rel)?;
        }
        match create_special(dir.as_fd(), OsStr::from_bytes(&n.name), n) {
            Ok(()) => {
                self.counts.specials.fetch_add(1, Relaxed);
                self.special_meta(dir, n, rel)
            }
            Err(e) => {
                self.not_restored(rel, e);
                Ok(())
            }
        }
    }

    /// Owner, attributes, mode and times of a special file, relative to its directory's handle
    /// and never following the last component. A fifo or device is not opened for this: opening
    /// a fifo blocks until a writer comes, opening a device may act on the device.
    fn special_meta(&self, dir: &OwnedFd, n: &Node, rel: &Path) -> Result<()> {
        let name = n.name.as_slice();
        let io = |e| fsat::io(&self.target.show(rel), e);
        if self.root {
            let (uid, gid) = (fsat::uid_of(n.uid), fsat::gid_of(n.gid));
            rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
        }
        if !n.xattrs.is_empty() {
            // Through the directory's own handle, so no symlink above the node is followed.
            let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(OsStr::from_bytes(name));
            for m in apply_xattrs_path(&via, n) {
                self.not_restored(rel, m);
            }
        }
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(n.mode & 0o7777), AtFlags::empty()).map_err(io)?;
        let t = fsat::timespec(n.mtime_ns);
        rustix::fs::utimensat(
            dir,
            name,
            &Timestamps { last_access: t, last_modification: t },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io)
    }
}
