//! Saves a directory tree: walks it in parallel (rayon, one task per directory and per file),
//! reuses the files cache for unchanged files, stores changed content, and builds a tree
//! blob per directory bottom-up. Returns the root tree's id.
//!
//! A file that vanishes or cannot be read is left out of its tree and reported in
//! `problems`; the walk goes on. Only an unreadable *root* fails the component.
//!
//! A files-cache entry is reused only when it is consistent with the file (its chunk lengths
//! add up to the size) and every chunk it names has a catalog row (an indexed lookup, no pack
//! read); otherwise the file is read again, so a set never names a chunk the repository lacks.
//!
//! Below the source root the walk does not enter the kernel's pseudo filesystems (`proc`,
//! `sysfs` …, see `sys::pseudo_filesystem`), and with `one_file_system` no other mount at all:
//! the mount point is kept as an empty directory and a note says what was skipped.
//!
//! Every type is kept except sockets: regular files, directories, symlinks, fifos and
//! character/block devices (with their device numbers), each with its extended attributes
//! (POSIX ACLs are two of them). A socket can't be archived (its server recreates it when it
//! starts), so it is left out and listed in `skipped`, which the backup reports as a warning
//! without failing. Names of an inode with more than one link are marked with a shared
//! [`link_id`]; each keeps its full content list (the content itself is stored once, by
//! deduplication), so every name still restores on its own and a restore can relink them.
//! Attributes that can't be read leave the node without them and are reported in `problems`.

use crate::chunker::Params;
use crate::content;
use crate::error::{Error, IoContext, Result};
use crate::filecache::{self, FileCache};
use crate::id::{ChunkId, TreeId};
use crate::pack::BlobKind;
use crate::repo::Repo;
use crate::sink::Sink;
use crate::tree::{Node, NodeKind, Tree, Xattr, XATTR_VALUE_MAX};
use rayon::prelude::*;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

pub struct Walker<'a> {
    pub sink: &'a Sink<'a>,
    pub params: Params,
    pub cache: Option<&'a FileCache>,
    /// Scan start in ns since the epoch: files modified after `scan_start - RACY_NS` are not cached.
    pub scan_start_ns: i64,
    pub problems: Mutex<Vec<String>>,
    /// Entries deliberately left out (sockets), with why.
    pub skipped: Mutex<Vec<String>>,
    /// Stored bytes this component added (data and trees).
    pub stored: std::sync::atomic::AtomicU64,
    pub files: std::sync::atomic::AtomicU64,
    pub dirs: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    /// The repository whose catalog confirms cached entries. Without it no entry is reused.
    pub repo: Option<&'a Repo>,
    /// Do not cross into other mounted filesystems below the root (`--one-file-system`).
    pub one_file_system: bool,
    /// Things skipped on purpose (mount points not crossed), for the user; not problems.
    pub notes: Mutex<Vec<String>>,
    /// Cached entries that were not reused because they did not check out.
    pub cache_rejected: std::sync::atomic::AtomicU64,
}

fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec())
}
fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime().saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec())
}

fn base_node(name: &[u8], kind: NodeKind, m: &Metadata) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_ns: mtime_ns(m),
        size: 0,
        content: Vec::new(),
        subtree: None,
        target: None,
        link: (!m.is_dir() && m.nlink() > 1).then(|| link_id(m.dev(), m.ino())),
        ..Node::default()
    }
}

/// The hard-link group id of an inode: a hash of its device and inode numbers, so names of
/// one inode share it, distinct inodes (even on two filesystems inside one component) almost
/// surely don't, and an unchanged file keeps its id (and its tree its id) from run to run.
pub fn link_id(dev: u64, ino: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"coffer hard link");
    h.update(&dev.to_le_bytes());
    h.update(&ino.to_le_bytes());
    let b = h.finalize();
    u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// How often a list or value that grows between the size query and the read is retried.
const XATTR_RETRIES: usize = 8;

/// The extended attributes of `path` (a symlink's own, not its target's), sorted by name.
/// A filesystem without attribute support has none; one removed while we read is skipped.
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<Xattr>> {
    use rustix::io::Errno;
    let mut list = vec![0u8; 256];
    let mut len = None;
    for _ in 0..XATTR_RETRIES {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => {
                len = Some(n);
                break;
            }
            Err(Errno::RANGE) => {
                let need = rustix::fs::llistxattr_query(path)?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
    let len = len.ok_or_else(|| std::io::Error::other("the attribute list kept changing while read"))?;
    let mut out = Vec::new();
    let mut value = vec![0u8; 256];
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut got = None;
        for _ in 0..XATTR_RETRIES {
            match rustix::fs::lgetxattr(path, name, &mut value[..]) {
                Ok(n) => {
                    got = Some(Some(n));
                    break;
                }
                Err(Errno::RANGE) => {
                    let need = rustix::fs::lgetxattr_query(path, name)?;
                    if need > XATTR_VALUE_MAX {
                        return Err(std::io::Error::other(format!(
                            "attribute {:?} has {need} bytes",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    value.resize(need.max(value.len() * 2), 0);
                }
                Err(Errno::NODATA) => {
                    got = Some(None);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let n = got.ok_or_else(|| {
            std::io::Error::other(format!("attribute {:?} kept changing while read", String::from_utf8_lossy(name)))
        })?;
        if let Some(n) = n {
            out.push(Xattr { name: name.to_vec(), value: value[..n].to_vec() });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// What the files cache should do with an entry.
/// One directory's files-cache entries, and the chunks they name that the catalog has.
struct Cached {
    entries: std::collections::HashMap<Vec<u8>, filecache::Entry>,
    chunks: std::collections::HashSet<ChunkId>,
}

enum CacheAction {
    /// The cached entry is still right (an unchanged file), or there is none to keep.
    Keep,
    /// Cache this new state.
    Upsert(Vec<u8>, filecache::Entry),
    /// Forget the cached entry: the file changed in a way we can't trust yet.
    Forget,
}

/// What became of one directory entry. Short-lived (one per entry, consumed by its
/// directory), so the size difference between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Node(Node, CacheAction),
    Skipped,
}

impl<'a> Walker<'a> {
    pub fn new(sink: &'a Sink<'a>, params: Params, cache: Option<&'a FileCache>, scan_start_ns: i64) -> Self {
        Walker {
            sink,
            params,
            cache,
            scan_start_ns,
            problems: Mutex::new(Vec::new()),
            skipped: Mutex::new(Vec::new()),
            stored: Default::default(),
            files: Default::default(),
            dirs: Default::default(),
            bytes: Default::default(),
            repo: None,
            one_file_system: false,
            notes: Mutex::new(Vec::new()),
            cache_rejected: Default::default(),
        }
    }

    fn note(&self, path: &Path, what: impl std::fmt::Display) {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{}: {what}", path.display()));
    }

    /// The files cache's entries for the directory `key`, and which of the chunks they name
    /// the catalog has (looked up for the whole directory at once).
    fn cached(&self, key: &[u8]) -> Result<Cached> {
        let entries = match self.cache {
            Some(c) => c.dir_entries(key),
            None => Default::default(),
        };
        let chunks = match self.repo {
            Some(repo) if !entries.is_empty() => {
                let ids: Vec<ChunkId> = entries.values().flat_map(|e| e.content.iter().map(|r| r.chunk_id())).collect();
                repo.index()?.present(&ids)?
            }
            _ => Default::default(),
        };
        Ok(Cached { entries, chunks })
    }

    /// Whether a cached entry can stand in for reading the file: its content adds up to its
    /// size in chunks the chunker could have cut, and the catalog has every one of them.
    fn reusable(&self, e: &filecache::Entry, cached: &Cached) -> bool {
        if self.repo.is_none() {
            return false;
        }
        let max = self.params.max as u64;
        let mut total = 0u64;
        for r in &e.content {
            if r.len == 0 || r.len as u64 > max || !cached.chunks.contains(&r.chunk_id()) {
                return false;
            }
            total += r.len as u64;
        }
        total == e.size
    }

    /// Whether to leave out the contents of `path`, which is on another device than its parent:
    /// a mount point. Returns the note to record when so.
    fn skip_mount(&self, path: &Path) -> Option<String> {
        if self.one_file_system {
            return Some("another filesystem is mounted here; not crossed (--one-file-system)".into());
        }
        crate::sys::pseudo_filesystem(path).map(|kind| {
            format!(
                "a {kind} filesystem (kernel pseudo files, not data) is mounted here; its contents are not backed up"
            )
        })
    }

    fn problem(&self, path: &Path, what: impl std::fmt::Display) {
        self.problems.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{}: {what}", path.display()));
    }

    fn skip(&self, path: &Path, what: impl std::fmt::Display) {
        self.skipped.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{}: {what}", path.display()));
    }

    /// Gives the node its extended attributes; reports them if they can't be read (the
    /// node is kept: its content is still right).
    fn with_xattrs(&self, path: &Path, mut n: Node) -> Node {
        match read_xattrs(path) {
            Ok(x) => n.xattrs = x,
            Err(e) => self.problem(path, format!("extended attributes unreadable: {e}")),
        }
        n
    }

    fn store_tree(&self, mut tree: Tree) -> Result<TreeId> {
        tree.sort();
        let (id, n) = self.sink.store(BlobKind::Tree, &tree.encode())?;
        self.stored.fetch_add(n, Relaxed);
        Ok(TreeId(id.0))
    }

    /// Saves the component rooted at `root`: a directory, or a single file (then the root
    /// tree holds just that file).
    pub fn save_root(&self, root: &Path) -> Result<TreeId> {
        let meta = std::fs::symlink_metadata(root).ctx(root)?;
        if meta.is_dir() {
            return self.save_dir(root, b"", meta.dev());
        }
        let name =
            root.file_name().ok_or_else(|| Error::InvalidInput(format!("{}: has no file name", root.display())))?;
        let parent = root.parent().unwrap_or(Path::new("/"));
        let cached = self.cached(b"\0root")?;
        match self.save_entry(parent, b"\0root", name.as_bytes(), &meta, &cached, meta.dev())? {
            Outcome::Node(node, action) => {
                if let Some(c) = self.cache {
                    match action {
                        CacheAction::Upsert(n, e) => c.stage(b"\0root", &[(n, e)], &[]),
                        CacheAction::Forget => c.stage(b"\0root", &[], &[name.as_bytes().to_vec()]),
                        CacheAction::Keep => {}
                    }
                }
                self.store_tree(Tree { nodes: vec![node] })
            }
            Outcome::Skipped => Err(Error::Failed(format!("{}: could not be read", root.display()))),
        }
    }

    fn save_dir(&self, dir: &Path, rel: &[u8], dev: u64) -> Result<TreeId> {
        self.dirs.fetch_add(1, Relaxed);
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir).ctx(dir)? {
            let e = e.ctx(dir)?;
            entries.push(e.file_name());
        }
        entries.sort();
        let cached = self.cached(rel)?;
        let outcomes: Vec<(Vec<u8>, Result<Outcome>)> = entries
            .par_iter()
            .map(|name| {
                let path = dir.join(name);
                let r = match std::fs::symlink_metadata(&path) {
                    Ok(m) => self.save_entry(dir, rel, name.as_bytes(), &m, &cached, dev),
                    Err(e) => {
                        self.problem(&path, format!("vanished or unreadable: {e}"));
                        Ok(Outcome::Skipped)
                    }
                };
                (name.as_bytes().to_vec(), r)
            })
            .collect();
        let mut tree = Tree::default();
        let mut upserts = Vec::new();
        let mut removed: Vec<Vec<u8>> = Vec::new();
        for (name, r) in outcomes {
            match r? {
                Outcome::Node(n, action) => {
                    match action {
                        CacheAction::Upsert(n, e) => upserts.push((n, e)),
                        CacheAction::Forget if cached.entries.contains_key(&name) => removed.push(name),
                        CacheAction::Forget | CacheAction::Keep => {}
                    }
                    tree.nodes.push(n);
                }
                Outcome::Skipped => {
                    if cached.entries.contains_key(&name) {
                        removed.push(name);
                    }
                }
            }
        }
        // Names cached earlier that are gone now.
        let present: std::collections::HashSet<&[u8]> = entries.iter().map(|n| n.as_bytes()).collect();
        removed.extend(cached.entries.keys().filter(|k| !present.contains(k.as_slice())).cloned());
        if let Some(c) = self.cache {
            c.stage(rel, &upserts, &removed);
        }
        self.store_tree(tree)
    }

    fn save_entry(
        &self,
        dir: &Path,
        rel: &[u8],
        name: &[u8],
        m: &Metadata,
        cached: &Cached,
        parent_dev: u64,
    ) -> Result<Outcome> {
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        let ft = m.file_type();
        if m.dev() != parent_dev && (ft.is_dir() || ft.is_file()) {
            if let Some(why) = self.skip_mount(&path) {
                self.note(&path, why);
                if !ft.is_dir() {
                    return Ok(Outcome::Skipped);
                }
                let mut n = base_node(name, NodeKind::Dir, m);
                n.subtree = Some(*self.store_tree(Tree::default())?.as_bytes());
                return Ok(Outcome::Node(n, CacheAction::Keep));
            }
        }
        if ft.is_dir() {
            let child_rel = if rel.is_empty() { name.to_vec() } else { [rel, b"/", name].concat() };
            return match self.save_dir(&path, &child_rel, m.dev()) {
                Ok(id) => {
                    let mut n = base_node(name, NodeKind::Dir, m);
                    n.subtree = Some(*id.as_bytes());
                    Ok(Outcome::Node(self.with_xattrs(&path, n), CacheAction::Keep))
                }
                Err(Error::Io { path: p, source }) if p == path => {
                    self.problem(&path, format!("directory unreadable: {source}"));
                    Ok(Outcome::Skipped)
                }
                Err(e) => Err(e),
            };
        }
        if ft.is_symlink() {
            return match std::fs::read_link(&path) {
                Ok(t) => {
                    let mut n = base_node(name, NodeKind::Symlink, m);
                    let t = t.as_os_str().as_bytes().to_vec();
                    n.size = t.len() as u64;
                    n.target = Some(t);
                    Ok(Outcome::Node(self.with_xattrs(&path, n), CacheAction::Keep))
                }
                Err(e) => {
                    self.problem(&path, format!("symlink unreadable: {e}"));
                    Ok(Outcome::Skipped)
                }
            };
        }
        let special = if ft.is_fifo() {
            Some(NodeKind::Fifo)
        } else if ft.is_char_device() {
            Some(NodeKind::CharDevice)
        } else if ft.is_block_device() {
            Some(NodeKind::BlockDevice)
        } else {
            None
        };
        if let Some(kind) = special {
            let mut n = base_node(name, kind, m);
            if kind != NodeKind::Fifo {
                n.rdev = m.rdev();
            }
            return Ok(Outcome::Node(self.with_xattrs(&path, n), CacheAction::Keep));
        }
        if !ft.is_file() {
            self.skip(
                &path,
                if ft.is_socket() {
                    "socket skipped: sockets can't be archived (the program listening on it creates it again)"
                } else {
                    "skipped: a file of a type coffer can't archive"
                },
            );
            return Ok(Outcome::Skipped);
        }
        self.files.fetch_add(1, Relaxed);
        self.bytes.fetch_add(m.len(), Relaxed);
        self.sink.counters.bytes.fetch_add(m.len(), Relaxed);
        let mut node = base_node(name, NodeKind::File, m);
        let fresh = filecache::Entry {
            ino: m.ino(),
            size: m.len(),
            mtime_ns: mtime_ns(m),
            ctime_ns: ctime_ns(m),
            content: Vec::new(),
        };
        if let Some(old) = cached.entries.get(name) {
            let same = old.ino == fresh.ino
                && old.size == fresh.size
                && old.mtime_ns == fresh.mtime_ns
                && old.ctime_ns == fresh.ctime_ns;
            if same && self.reusable(old, cached) {
                self.sink.counters.files_unchanged.fetch_add(1, Relaxed);
                node.size = old.size;
                node.content = old.content.clone();
                return Ok(Outcome::Node(self.with_xattrs(&path, node), CacheAction::Keep));
            }
            if same {
                // Read again below; the fresh entry replaces the one that did not check out.
                self.cache_rejected.fetch_add(1, Relaxed);
            }
            self.sink.counters.files_changed.fetch_add(1, Relaxed);
        } else {
            self.sink.counters.files_new.fetch_add(1, Relaxed);
        }
        let stored = match File::open(&path) {
            Ok(mut f) => match content::store_file(self.sink, self.params, &mut f, &path, m.len()) {
                Ok(s) => Some((s, f.metadata().ok())),
                Err(Error::Io { source, .. }) => {
                    self.problem(&path, format!("read failed: {source}"));
                    None
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                self.problem(&path, format!("vanished or unreadable: {e}"));
                None
            }
        };
        let Some((stored, after)) = stored else { return Ok(Outcome::Skipped) };
        self.stored.fetch_add(stored.stored_bytes, Relaxed);
        if stored.grew {
            self.problem(
                &path,
                format!(
                    "kept growing while being read (more than {} bytes past the {} it had when scanned); not backed up",
                    content::GROWTH_SLACK,
                    fresh.size
                ),
            );
            return Ok(Outcome::Skipped);
        }
        node.size = stored.size;
        node.content = stored.content;
        // Cache only what we know we read whole and unchanged, and not racily new.
        let unchanged_while_read = after
            .map(|a| a.len() == fresh.size && mtime_ns(&a) == fresh.mtime_ns && ctime_ns(&a) == fresh.ctime_ns)
            .unwrap_or(false);
        let racy = fresh.mtime_ns >= self.scan_start_ns - filecache::RACY_NS;
        let action = if unchanged_while_read && !racy && stored.size == fresh.size {
            CacheAction::Upsert(name.to_vec(), filecache::Entry { content: node.content.clone(), ..fresh })
        } else {
            CacheAction::Forget
        };
        Ok(Outcome::Node(self.with_xattrs(&path, node), action))
    }
}

/// The canonical absolute form of a source path (the files cache is keyed on it).
pub fn canonical_source(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).ctx(p)
}
