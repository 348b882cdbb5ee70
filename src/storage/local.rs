//! A repository in a local directory, in the layout of `docs/format.md`: `config` at the top,
//! `packs/xx/<name>` (xx: the name's first two characters, so no directory holds more than a
//! few thousand packs), `<kind>/<name>` for the other kinds, `tmp/` for puts in flight.
//!
//! Atomic put here is temp file in `tmp/` (same filesystem) → write → fsync → rename → fsync of
//! the directory, which is what makes "whole or absent, and durable" true on a POSIX
//! filesystem. Everything is created owner-only ([`crate::store`]).

use super::{check_name, check_range, Kind, ObjectInfo, Spool, Storage};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct LocalStorage {
    root: PathBuf,
    /// Open handles of packs read by range (a restore or `dump` reads thousands of ranges of
    /// the same packs; packs are immutable, so a handle never goes stale in a way that
    /// matters: a pruned pack's handle reads the bytes it always had).
    packs: Mutex<HashMap<String, Arc<File>>>,
}

/// Pack handles kept open at most (well below the usual 1024 descriptors per process).
const OPEN_PACKS: usize = 128;

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Storage { object: path.display().to_string(), source }
}

impl LocalStorage {
    /// A storage on the directory `root`, which must exist.
    pub fn open(root: &Path) -> Result<LocalStorage> {
        let meta = std::fs::metadata(root).map_err(|e| io(root, e))?;
        if !meta.is_dir() {
            return Err(Error::NotARepository { path: root.to_path_buf(), why: "not a directory".into() });
        }
        Ok(LocalStorage { root: root.to_path_buf(), packs: Mutex::new(HashMap::new()) })
    }

    /// Creates `root` (owner-only) if it is missing, then opens it.
    pub fn create(root: &Path) -> Result<LocalStorage> {
        crate::store::create_private_dirs(root)?;
        LocalStorage::open(root)
    }

    /// The directory a kind's objects are in (for packs: their parent `packs/`).
    fn kind_dir(&self, kind: Kind) -> PathBuf {
        kind_dir(&self.root, kind)
    }

    /// The file an object is stored in (for tests and tools that look at a local
    /// repository's files; everything else goes through the trait).
    pub fn file_of(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        self.path(kind, name)
    }

    fn path(&self, kind: Kind, name: &str) -> Result<PathBuf> {
        object_file(&self.root, kind, name)
    }

    /// Makes `dir` exist; a new directory is made durable in its parent.
    fn ensure_dir(dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        crate::store::create_private_dirs(dir)?;
        sync_dir(dir.parent().unwrap_or(Path::new("/")))
    }

    /// Regular files directly in `dir` with valid names (the rest is not ours: editor
    /// droppings, `tmp/` and `index.sqlite` beside `config`).
    fn files_in(kind: Kind, dir: &Path, out: &mut Vec<ObjectInfo>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir, e)),
        };
        for e in entries {
            let e = e.map_err(|e| io(dir, e))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else { continue };
            let meta = match e.metadata() {
                Ok(m) => m,
                // Removed since the directory was read: not listed.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io(&e.path(), err)),
            };
            let ours = check_name(kind, &name).is_ok() && !name.ends_with(".tmp") && !name.contains(".sqlite");
            if meta.is_file() && ours {
                out.push(ObjectInfo { name, size: meta.len(), modified: std::os::unix::fs::MetadataExt::mtime(&meta) });
            }
        }
        Ok(())
    }
}

impl LocalStorage {
    /// An open handle of the pack `name` at `path`, from the cache or opened now.
    fn pack_handle(&self, name: &str, path: &Path) -> Result<Arc<File>> {
        let mut open = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let f = match File::open(path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ObjectMissing { object: path.display().to_string() })
            }
            Err(e) => return Err(io(path, e)),
        };
        if open.len() >= OPEN_PACKS {
            open.clear();
        }
        open.insert(name.to_owned(), f.clone());
        Ok(f)
    }

    /// Forgets the handle of a removed pack.
    fn forget_handle(&self, kind: Kind, name: &str) {
        if kind == Kind::Packs {
            self.packs.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        }
    }
}

/// The directory a kind's objects are in under `root` (for packs: their parent `packs/`).
fn kind_dir(root: &Path, kind: Kind) -> PathBuf {
    match kind {
        Kind::Config => root.to_path_buf(),
        _ => root.join(kind.dir()),
    }
}

/// The file of object `name` of `kind` under `root` (the name checked first).
fn object_file(root: &Path, kind: Kind, name: &str) -> Result<PathBuf> {
    check_name(kind, name)?;
    Ok(match kind {
        Kind::Packs => kind_dir(root, kind).join(&name[..name.len().min(2)]).join(name),
        _ => kind_dir(root, kind).join(name),
    })
}

/// A temporary file in `tmp/` (same filesystem as the objects) that becomes an object by
/// fsync, rename and directory fsync: the atomic put of a local repository.
struct LocalSpool {
    root: PathBuf,
    kind: Kind,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<File>>,
}

impl LocalSpool {
    fn create(root: &Path, kind: Kind) -> Result<LocalSpool> {
        let tmp_dir = root.join("tmp");
        LocalStorage::ensure_dir(&tmp_dir)?;
        let tmp = tmp_dir.join(crate::store::tmp_name());
        let f = crate::store::create_private(&tmp)?;
        Ok(LocalSpool { root: root.to_path_buf(), kind, tmp, out: Some(std::io::BufWriter::with_capacity(1 << 20, f)) })
    }

    /// fsyncs the file, renames it to `path` and fsyncs the directory.
    fn land(mut self, path: &Path) -> Result<()> {
        let out = self.out.take().expect("a spool lands once");
        let f = out.into_inner().map_err(|e| io(&self.tmp, e.into_error()))?;
        f.sync_all().map_err(|e| io(&self.tmp, e))?;
        drop(f);
        let dir = path.parent().expect("an object path has a parent");
        LocalStorage::ensure_dir(dir)?;
        std::fs::rename(&self.tmp, path).map_err(|e| io(path, e))?;
        sync_dir(dir)
    }
}

impl Spool for LocalSpool {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("written before it lands");
        out.write_all(bytes).map_err(|e| io(&self.tmp, e))
    }

    /// Lands in the directory that made it; `_storage` is that storage or a wrapper of it.
    fn finish(self: Box<Self>, _storage: &dyn Storage, name: &str) -> Result<()> {
        let path = object_file(&self.root, self.kind, name)?;
        (*self).land(&path)
    }
}

impl Drop for LocalSpool {
    fn drop(&mut self) {
        // Not landed (an error, or given up on): nothing of it may stay in tmp/. After a
        // landing the name is gone and this does nothing (temporary names are never reused).
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(dir, e))
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&self, kind: Kind, name: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        let path = self.path(kind, name)?;
        if let (Kind::Packs, Some(r)) = (kind, &range) {
            let f = self.pack_handle(name, &path)?;
            let size = f.metadata().map_err(|e| io(&path, e))?.len();
            check_range(&path.display().to_string(), size, r)?;
            let mut out = vec![0u8; (r.end - r.start) as usize];
            f.read_exact_at(&mut out, r.start).map_err(|e| io(&path, e))?;
            return Ok(out);
        }
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ObjectMissing { object: path.display().to_string() })
            }
            Err(e) => return Err(io(&path, e)),
        };
        let size = f.metadata().map_err(|e| io(&path, e))?.len();
        match range {
            None => {
                let mut out = Vec::with_capacity(size as usize);
                f.read_to_end(&mut out).map_err(|e| io(&path, e))?;
                Ok(out)
            }
            Some(r) => {
                check_range(&path.display().to_string(), size, &r)?;
                let mut out = vec![0u8; (r.end - r.start) as usize];
                f.read_exact_at(&mut out, r.start).map_err(|e| io(&path, e))?;
                Ok(out)
            }
        }
    }

    fn put(&self, kind: Kind, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(kind, name)?;
        let mut spool = LocalSpool::create(&self.root, kind)?;
        spool.write(bytes)?;
        spool.land(&path)
    }

    fn spool(&self, kind: Kind) -> Result<Box<dyn Spool>> {
        Ok(Box::new(LocalSpool::create(&self.root, kind)?))
    }

    fn list(&self, kind: Kind) -> Result<Vec<ObjectInfo>> {
        let dir = self.kind_dir(kind);
        let mut out = Vec::new();
        if kind != Kind::Packs {
            LocalStorage::files_in(kind, &dir, &mut out)?;
            return Ok(out);
        }
        let subdirs = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&dir, e)),
        };
        for sub in subdirs {
            let sub = sub.map_err(|e| io(&dir, e))?;
            if sub.file_type().map_err(|e| io(&sub.path(), e))?.is_dir() {
                LocalStorage::files_in(kind, &sub.path(), &mut out)?;
            }
        }
        Ok(out)
    }

    fn size(&self, kind: Kind, name: &str) -> Result<Option<u64>> {
        let path = self.path(kind, name)?;
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn remove(&self, kind: Kind, name: &str) -> Result<()> {
        let path = self.path(kind, name)?;
        self.forget_handle(kind, name);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().expect("an object path has a parent")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }
}
