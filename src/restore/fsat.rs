//! The restore target as a directory handle: every path below it is reached one component at a
//! time with `openat(O_DIRECTORY | O_NOFOLLOW)`, and every entry is created relative to its
//! parent's handle (`mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`, `symlinkat`).
//!
//! Invariants:
//! - No symlink below the target is ever followed: not one planted in the target beforehand
//!   (`T/src -> /elsewhere`), not one a hostile set restores and then names as a directory.
//!   The target itself is resolved once, when it is opened (the user may give a symlink).
//! - An existing entry is never written through. Without `replace` an existing file or symlink
//!   is an "already exists" error and a non-directory where a directory must be is refused;
//!   with `replace` (`--overwrite`, `--resume`) the entry is unlinked and created anew, so a
//!   symlink or a hard link to a file outside is replaced, never followed.
//! - Metadata is set through the entry's own handle (`fchown`, `fchmod`, `futimens`), or for
//!   symlinks with `AT_SYMLINK_NOFOLLOW`.
//!
//! Directory handles are cached by relative path (bounded, so a wide restore does not run out
//! of descriptors); a miss is resolved from the nearest cached ancestor, again without following
//! symlinks, so a directory swapped for a symlink mid-restore is an error, not an escape.

use crate::error::{Error, IoContext, Result};
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Directory handles kept open; beyond this the cache starts over.
const OPEN_DIRS: usize = 512;

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

pub(super) struct Target {
    /// The target as given, for messages.
    pub(super) shown: PathBuf,
    root: Arc<OwnedFd>,
    dirs: Mutex<HashMap<PathBuf, Arc<OwnedFd>>>,
}

pub(super) fn io(path: &Path, e: Errno) -> Error {
    Error::Io { path: path.to_path_buf(), source: e.into() }
}

pub(super) fn exists(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "{}: already exists; refusing to overwrite (use --overwrite or --resume)",
        path.display()
    ))
}

impl Target {
    /// Creates the target (and its parents) if needed and opens it: the one place a symlink,
    /// the user's own, is followed.
    pub(super) fn open(target: &Path) -> Result<Target> {
        std::fs::create_dir_all(target).ctx(target)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = rustix::fs::open(target, flags, Mode::empty()).map_err(|e| io(target, e))?;
        Ok(Target { shown: target.to_path_buf(), root: Arc::new(root), dirs: Mutex::new(HashMap::new()) })
    }

    /// `TARGET/rel`, for messages.
    pub(super) fn show(&self, rel: &Path) -> PathBuf {
        self.shown.join(rel)
    }

    fn cached(&self, rel: &Path) -> Option<Arc<OwnedFd>> {
        if rel.as_os_str().is_empty() {
            return Some(self.root.clone());
        }
        self.dirs.lock().unwrap_or_else(|p| p.into_inner()).get(rel).cloned()
    }

    fn remember(&self, rel: &Path, fd: Arc<OwnedFd>) {
        let mut g = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= OPEN_DIRS {
            g.clear();
        }
        g.insert(rel.to_path_buf(), fd);
    }

    /// The directory `TARGET/rel`, reached without following any symlink.
    pub(super) fn dir(&self, rel: &Path) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.cached(rel) {
            return Ok(fd);
        }
        let names: Vec<&std::ffi::OsStr> = rel
            .components()
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(Error::InvalidInput(format!("{}: not a plain relative path", rel.display()))),
            })
            .collect::<Result<_>>()?;
        // The nearest cached ancestor (the target itself at worst).
        let mut prefix = rel.to_path_buf();
        let mut k = names.len();
        let mut fd = loop {
            prefix.pop();
            k -= 1;
            if let Some(fd) = self.cached(&prefix) {
                break fd;
            }
        };
        for name in &names[k..] {
            prefix.push(name);
            let next = rustix::fs::openat(&*fd, *name, DIR_FLAGS, Mode::empty()).map_err(|e| match e {
                Errno::NOTDIR | Errno::LOOP => Error::InvalidInput(format!(
                    "{}: is not a directory (replaced by a symlink or a file during the restore?)",
                    self.show(&prefix).display()
                )),
                e => io(&self.show(&prefix), e),
            })?;
            fd = Arc::new(next);
        }
        self.remember(rel, fd.clone());
        Ok(fd)
    }

    /// Removes the non-directory `name` in `dir` so it can be created anew.
    fn unlink(&self, dir: &OwnedFd, name: &[u8], rel: &Path) -> Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir(dir, name) => Err(Error::InvalidInput(format!(
                "{}: is a directory where the set has no directory; remove it to restore here",
                self.show(rel).display()
            ))),
            Err(e) => Err(io(&self.show(rel), e)),
        }
    }

    /// Creates (or, existing, opens) the directory `name` in `dir` at `rel`. Something else in
    /// its place (a symlink, a file) is replaced when `replace`, refused otherwise.
    pub(super) fn make_dir(&self, dir: &OwnedFd, name: &[u8], rel: &Path, replace: bool) -> Result<()> {
        let shown = || self.show(rel);
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(&shown(), e)),
        }
        let fd = match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOTDIR) | Err(Errno::LOOP) if replace => {
                self.unlink(dir, name, rel)?;
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(|e| io(&shown(), e))?;
                rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| io(&shown(), e))?
            }
            Err(Errno::NOTDIR) | Err(Errno::LOOP) => {
                return Err(Error::InvalidInput(format!(
                    "{}: exists and is not a directory (a symlink or a file); refusing to write through it (use --overwrite or --resume to replace it)",
                    shown().display()
                )))
            }
            Err(e) => return Err(io(&shown(), e)),
        };
        self.remember(rel, Arc::new(fd));
        Ok(())
    }

    /// Creates the regular file `name` in `dir`, private until finished. An existing entry is
    /// unlinked first when `replace` (never truncated in place: it may be a link to elsewhere).
    pub(super) fn create_file(&self, dir: &OwnedFd, name: &[u8], rel: &Path, replace: bool) -> Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(0o600);
        match rustix::fs::openat(dir, name, flags, mode) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::EXIST) if replace => {
                self.unlink(dir, name, rel)?;
                rustix::fs::openat(dir, name, flags, mode).map(File::from).map_err(|e| io(&self.show(rel), e))
            }
            Err(Errno::EXIST) => Err(exists(&self.show(rel))),
            Err(e) => Err(io(&self.show(rel), e)),
        }
    }

    /// Reopens a file this restore created.
    pub(super) fn reopen_file(&self, dir: &OwnedFd, name: &[u8], rel: &Path) -> Result<File> {
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(dir, name, flags, Mode::empty()).map(File::from).map_err(|e| io(&self.show(rel), e))
    }

    /// `resume`: the existing regular file `name`, if it is one, with its status (the caller
    /// decides what a file with other links may be: one elsewhere must never get our metadata).
    pub(super) fn existing_file(&self, dir: &OwnedFd, name: &[u8], rel: &Path) -> Result<Option<(File, Stat)>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NXIO) => return Ok(None),
            Err(e) => return Err(io(&self.show(rel), e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io(&self.show(rel), e))?;
        let regular = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
        Ok(regular.then(|| (File::from(fd), st)))
    }

    /// The target of the symlink `name` in `dir`, if it is one.
    pub(super) fn link_target(&self, dir: &OwnedFd, name: &[u8]) -> Option<Vec<u8>> {
        rustix::fs::readlinkat(dir, name, Vec::new()).ok().map(|t| t.into_bytes())
    }

    /// Creates the symlink `name -> target` in `dir`, replacing an existing entry when `replace`.
    pub(super) fn make_symlink(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        target: &[u8],
        rel: &Path,
        replace: bool,
    ) -> Result<()> {
        match rustix::fs::symlinkat(target, dir, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) if replace => {
                self.unlink(dir, name, rel)?;
                rustix::fs::symlinkat(target, dir, name).map_err(|e| io(&self.show(rel), e))
            }
            Err(Errno::EXIST) => Err(exists(&self.show(rel))),
            Err(e) => Err(io(&self.show(rel), e)),
        }
    }

    /// Owner (when `chown`) and mtime of the symlink `name` in `dir`, not of what it points to.
    pub(super) fn symlink_meta(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &Path,
        owner: Option<(u32, u32)>,
        mtime_ns: i64,
    ) -> Result<()> {
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        if let Some((uid, gid)) = owner {
            rustix::fs::chownat(dir, name, Some(uid_of(uid)), Some(gid_of(gid)), flags)
                .map_err(|e| io(&self.show(rel), e))?;
        }
        let t = timespec(mtime_ns);
        let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
        rustix::fs::utimensat(dir, name, &times, flags).map_err(|e| io(&self.show(rel), e))
    }

    /// Removes a file this restore created and could not finish.
    pub(super) fn remove_file(&self, dir: &OwnedFd, name: &[u8], rel: &Path) -> Result<()> {
        self.unlink(dir, name, rel)
    }
}

fn is_dir(dir: &OwnedFd, name: &[u8]) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

pub(super) fn uid_of(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw_unchecked(raw)
}

pub(super) fn gid_of(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw_unchecked(raw)
}

pub(super) fn timespec(mtime_ns: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Splits a relative path into its parent and its last name.
pub(super) fn parent_and_name(rel: &Path) -> (&Path, &[u8]) {
    (rel.parent().unwrap_or(Path::new("")), rel.file_name().map(|n| n.as_bytes()).unwrap_or_default())
}
