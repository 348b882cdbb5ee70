//! `coffer mount`: a read-only FUSE view of every set in a repository.
//!
//! ```text
//! MOUNTPOINT/sets/<name>/<started, e.g. 2026-11-22T02:46:12Z>/<component>/…
//! MOUNTPOINT/sets/<name>/latest -> <started of the newest set of that name>
//! ```
//!
//! Invariants:
//! - Nothing is ever written: the mount is `ro` and every node is immutable, so the kernel may
//!   cache entries, attributes and pages for as long as it likes (long TTLs, `keep_cache`).
//! - The set list is read once at mount time; a set committed later appears on the next mount.
//! - A shared lease is held while mounted, so `prune` cannot delete packs under the mount.
//! - Inodes are assigned lazily on first lookup and never reused while mounted: `(parent inode,
//!   name)` always maps to the same inode, so `find`/`diff -r` see a stable tree.
//! - A read fetches only the chunks that overlap it: a file's `ChunkRef` lengths give each
//!   chunk's offset without the index. Decompressed chunks live in a bounded LRU cache
//!   ([`ChunkCache`], 64 MiB by default), so sequential readers decode each chunk once.
//! - Set labels are the start time to the second; when two sets of one name share a second,
//!   both are labelled by their id prefix instead.

use crate::error::{Error, Result};
use crate::id::{ChunkId, SetId};
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, MountOption, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Immutable data: the kernel may keep what we told it for a long time.
const TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of decompressed chunks kept in memory.
    pub cache_bytes: u64,
    /// FUSE worker threads.
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { cache_bytes: 64 << 20, threads: 2 }
    }
}

/// A bounded LRU cache of decompressed chunks, by id.
pub struct ChunkCache {
    cap: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<ChunkId, (Arc<Vec<u8>>, u64)>,
    /// Last-use tick → id; the smallest tick is evicted first.
    order: BTreeMap<u64, ChunkId>,
    tick: u64,
    bytes: u64,
}

impl ChunkCache {
    pub fn new(cap: u64) -> ChunkCache {
        ChunkCache { cap, inner: Mutex::new(CacheInner::default()) }
    }

    /// The chunk's bytes, from the cache or read (and checked) from the repository.
    pub fn get(&self, repo: &Repo, id: &ChunkId) -> Result<Arc<Vec<u8>>> {
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let g = &mut *g;
            g.tick += 1;
            let tick = g.tick;
            if let Some((data, t)) = g.map.get_mut(id) {
                g.order.remove(t);
                *t = tick;
                g.order.insert(tick, *id);
                return Ok(data.clone());
            }
        }
        // Read outside the lock: two readers of one missing chunk may both fetch it.
        let data = Arc::new(repo.read_chunk(id)?);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let g = &mut *g;
        if g.map.contains_key(id) || data.len() as u64 > self.cap {
            return Ok(data);
        }
        g.tick += 1;
        let tick = g.tick;
        g.bytes += data.len() as u64;
        g.map.insert(*id, (data.clone(), tick));
        g.order.insert(tick, *id);
        while g.bytes > self.cap {
            let Some((_, old)) = g.order.pop_first() else { break };
            if let Some((d, _)) = g.map.remove(&old) {
                g.bytes -= d.len() as u64;
            }
        }
        Ok(data)
    }

    /// Bytes currently held.
    pub fn held(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

/// Reads `out.len()` bytes (fewer at the end) of a stored file at `offset`, fetching only the
/// chunks that overlap. `ends[i]` is the end offset of chunk `i` (prefix sums of the lengths).
pub fn read_at(repo: &Repo, cache: &ChunkCache, n: &Node, ends: &[u64], offset: u64, len: usize) -> Result<Vec<u8>> {
    let end = n.size.min(offset.saturating_add(len as u64));
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut i = ends.partition_point(|&e| e <= offset);
    let mut pos = offset;
    while pos < end && i < n.content.len() {
        let c = &n.content[i];
        let start = ends[i] - c.len as u64;
        let data = cache.get(repo, &c.chunk_id())?;
        crate::repo::check_claim(c, data.len(), &n.name_lossy())?;
        let from = (pos - start) as usize;
        let to = (end.min(ends[i]) - start) as usize;
        out.extend_from_slice(&data[from..to]);
        pos = start + to as u64;
        i += 1;
    }
    Ok(out)
}

/// Prefix sums of a file's chunk lengths: the end offset of each chunk.
pub fn chunk_ends(n: &Node) -> Vec<u64> {
    let mut acc = 0u64;
    n.content
        .iter()
        .map(|c| {
            acc += c.len as u64;
            acc
        })
        .collect()
}

/// One set as it appears under `sets/<name>/`.
struct SetEntry {
    label: String,
    manifest: Manifest,
    started: SystemTime,
}

#[derive(Clone)]
enum Kind {
    Root,
    Sets,
    /// `sets/<name>`: index into `names`.
    Name(usize),
    /// `sets/<name>/latest`.
    Latest(usize),
    /// `sets/<name>/<label>`: index into `sets`.
    Set(usize),
    /// A component's root directory.
    Component {
        set: usize,
        comp: usize,
    },
    /// A stored file, directory or symlink; files carry their chunk end offsets.
    Node {
        node: Arc<Node>,
        ends: Arc<Vec<u64>>,
        set: usize,
    },
}

struct Inodes {
    kinds: Vec<Kind>,
    by_name: HashMap<(u64, Vec<u8>), u64>,
}

pub struct CofferFs {
    repo: Repo,
    sets: Vec<SetEntry>,
    /// Set names, sorted, each with its sets' indexes oldest first.
    names: Vec<(String, Vec<usize>)>,
    inodes: Mutex<Inodes>,
    trees: Mutex<HashMap<crate::id::TreeId, Arc<Tree>>>,
    cache: ChunkCache,
    uid: u32,
    gid: u32,
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// `2026-11-22T02:46:12Z` for a manifest's start time (its raw text if it does not parse).
fn label_of(m: &Manifest) -> String {
    match crate::clock::parse(&m.started) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => m.started.replace('/', "_"),
    }
}

impl CofferFs {
    pub fn new(repo: Repo, opts: &Options) -> Result<CofferFs> {
        let list: Vec<(SetId, Manifest)> = repo.list_sets()?;
        let mut labels: Vec<String> = list.iter().map(|(_, m)| label_of(m)).collect();
        for i in 0..list.len() {
            let clash = (0..list.len())
                .any(|j| j != i && list[j].1.name == list[i].1.name && label_of(&list[j].1) == label_of(&list[i].1));
            if clash {
                labels[i] = list[i].0.short();
            }
        }
        let mut sets = Vec::new();
        let mut names: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for ((_, m), label) in list.into_iter().zip(labels) {
            let started =
                crate::clock::parse(&m.started).map(|t| time_of(t.unix_timestamp_nanos() as i64)).unwrap_or(UNIX_EPOCH);
            names.entry(m.name.clone()).or_default().push(sets.len());
            sets.push(SetEntry { label, manifest: m, started });
        }
        let (uid, gid) = crate::sys::ids();
        Ok(CofferFs {
            repo,
            sets,
            names: names.into_iter().collect(),
            inodes: Mutex::new(Inodes { kinds: vec![Kind::Root, Kind::Sets], by_name: HashMap::new() }),
            trees: Mutex::new(HashMap::new()),
            cache: ChunkCache::new(opts.cache_bytes),
            uid,
            gid,
        })
    }

    fn kind(&self, ino: INodeNo) -> Option<Kind> {
        let g = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        g.kinds.get((ino.0 as usize).checked_sub(1)?).cloned()
    }

    fn intern(&self, parent: u64, name: &[u8], kind: Kind) -> u64 {
        let mut g = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&ino) = g.by_name.get(&(parent, name.to_vec())) {
            return ino;
        }
        g.kinds.push(kind);
        let ino = g.kinds.len() as u64;
        g.by_name.insert((parent, name.to_vec()), ino);
        ino
    }

    fn tree(&self, id: &crate::id::TreeId) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.repo.read_tree(id)?);
        let mut g = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: trees are small, and re-reading one is cheap.
        if g.len() >= 4096 {
            g.clear();
        }
        g.insert(*id, t.clone());
        Ok(t)
    }

    fn latest_label(&self, name: usize) -> &str {
        let idx = self.names[name].1.last().copied().unwrap_or(0);
        &self.sets[idx].label
    }

    /// The entries of a directory inode, in order.
    fn children(&self, kind: &Kind) -> Result<Vec<(Vec<u8>, Kind)>> {
        let node_kids = |tree: &Tree, set: usize| -> Vec<(Vec<u8>, Kind)> {
            tree.nodes
                .iter()
                .map(|n| {
                    let ends = if n.kind == NodeKind::File { chunk_ends(n) } else { Vec::new() };
                    (n.name.clone(), Kind::Node { node: Arc::new(n.clone()), ends: Arc::new(ends), set })
                })
                .collect()
        };
        Ok(match kind {
            Kind::Root => vec![(b"sets".to_vec(), Kind::Sets)],
            Kind::Sets => {
                self.names.iter().enumerate().map(|(i, (n, _))| (n.as_bytes().to_vec(), Kind::Name(i))).collect()
            }
            Kind::Name(i) => {
                let mut v: Vec<(Vec<u8>, Kind)> =
                    self.names[*i].1.iter().map(|&s| (self.sets[s].label.as_bytes().to_vec(), Kind::Set(s))).collect();
                v.push((b"latest".to_vec(), Kind::Latest(*i)));
                v
            }
            Kind::Set(s) => self.sets[*s]
                .manifest
                .components
                .iter()
                .enumerate()
                .map(|(c, comp)| (comp.name.as_bytes().to_vec(), Kind::Component { set: *s, comp: c }))
                .collect(),
            Kind::Component { set, comp } => {
                node_kids(&*self.tree(&self.sets[*set].manifest.components[*comp].root)?, *set)
            }
            Kind::Node { node, set, .. } if node.kind == NodeKind::Dir => {
                let id = node
                    .subtree_id()
                    .ok_or_else(|| Error::corrupt(node.name_lossy(), 0, "directory without subtree"))?;
                node_kids(&*self.tree(&id)?, *set)
            }
            _ => return Err(Error::InvalidInput("not a directory".into())),
        })
    }

    fn attr(&self, ino: u64, kind: &Kind) -> FileAttr {
        let dir = |mtime: SystemTime| FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match kind {
            Kind::Root | Kind::Sets => dir(self.sets.last().map(|s| s.started).unwrap_or(UNIX_EPOCH)),
            Kind::Name(i) => dir(self.names[*i].1.last().map(|&s| self.sets[s].started).unwrap_or(UNIX_EPOCH)),
            Kind::Set(s) => dir(self.sets[*s].started),
            Kind::Component { set, .. } => dir(self.sets[*set].started),
            Kind::Latest(i) => {
                let mut a = dir(self.names[*i].1.last().map(|&s| self.sets[s].started).unwrap_or(UNIX_EPOCH));
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.nlink = 1;
                a.size = self.latest_label(*i).len() as u64;
                a
            }
            Kind::Node { node, .. } => {
                let t = time_of(node.mtime_ns);
                let mut a = dir(t);
                a.perm = (node.mode & 0o7777) as u16;
                a.uid = node.uid;
                a.gid = node.gid;
                a.size = node.size;
                match node.kind {
                    NodeKind::Dir => {}
                    NodeKind::File => {
                        a.kind = FileType::RegularFile;
                        a.nlink = 1;
                        a.blocks = node.size.div_ceil(512);
                    }
                    NodeKind::Symlink => {
                        a.kind = FileType::Symlink;
                        a.nlink = 1;
                    }
                    NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                        a.kind = file_type(kind);
                        a.nlink = 1;
                        // FUSE carries a 32-bit device number: the kernel's new_encode_dev.
                        a.rdev = encode_dev(node.rdev);
                    }
                }
                a
            }
        }
    }

    fn report(&self, what: &str, e: &Error) -> Errno {
        eprintln!("coffer: mount: {what}: {e}");
        Errno::EIO
    }
}

fn file_type(k: &Kind) -> FileType {
    match k {
        Kind::Latest(_) => FileType::Symlink,
        Kind::Node { node, .. } => match node.kind {
            NodeKind::File => FileType::RegularFile,
            NodeKind::Dir => FileType::Directory,
            NodeKind::Symlink => FileType::Symlink,
            NodeKind::Fifo => FileType::NamedPipe,
            NodeKind::CharDevice => FileType::CharDevice,
            NodeKind::BlockDevice => FileType::BlockDevice,
        },
        _ => FileType::Directory,
    }
}

/// A 64-bit `dev_t` in the 32-bit form FUSE attributes carry (Linux `new_encode_dev`).
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Answers a getxattr/listxattr: the size when asked for it (`size` 0), the bytes when they
/// fit, else ERANGE.
fn reply_sized(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32)
    } else if data.len() <= size as usize {
        reply.data(data)
    } else {
        reply.error(Errno::ERANGE)
    }
}

impl fuser::Filesystem for CofferFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(pk) = self.kind(parent) else { return reply.error(Errno::ENOENT) };
        let kids = match self.children(&pk) {
            Ok(k) => k,
            Err(Error::InvalidInput(_)) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.report(&format!("listing inode {}", parent.0), &e)),
        };
        let Some((n, k)) = kids.into_iter().find(|(n, _)| n.as_slice() == name.as_bytes()) else {
            return reply.error(Errno::ENOENT);
        };
        let ino = self.intern(parent.0, &n, k.clone());
        reply.entry(&TTL, &self.attr(ino, &k), Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.kind(ino) {
            Some(k) => reply.attr(&TTL, &self.attr(ino.0, &k)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.kind(ino) {
            Some(Kind::Latest(i)) => reply.data(self.latest_label(i).as_bytes()),
            Some(Kind::Node { node, .. }) if node.kind == NodeKind::Symlink => {
                reply.data(node.target.as_deref().unwrap_or_default())
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    /// The node's stored extended attributes (POSIX ACLs among them), read-only.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.kind(ino) {
            Some(Kind::Node { node, .. }) => match node.xattrs.iter().find(|x| x.name == name.as_bytes()) {
                Some(x) => reply_sized(reply, size, &x.value),
                None => reply.error(Errno::NO_XATTR),
            },
            Some(_) => reply.error(Errno::NO_XATTR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.kind(ino) {
            Some(Kind::Node { node, .. }) => {
                let mut list = Vec::new();
                for x in &node.xattrs {
                    list.extend_from_slice(&x.name);
                    list.push(0);
                }
                reply_sized(reply, size, &list)
            }
            Some(_) => reply_sized(reply, size, &[]),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.kind(ino) {
            Some(Kind::Node { node, .. }) if node.kind == NodeKind::File => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
            }
            Some(_) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let Some(Kind::Node { node, ends, .. }) = self.kind(ino) else { return reply.error(Errno::ENOENT) };
        match read_at(&self.repo, &self.cache, &node, &ends, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.report(&format!("reading {} at {offset}", node.name_lossy()), &e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let Some(k) = self.kind(ino) else { return reply.error(Errno::ENOENT) };
        let kids = match self.children(&k) {
            Ok(k) => k,
            Err(Error::InvalidInput(_)) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.report(&format!("listing inode {}", ino.0), &e)),
        };
        let mut all: Vec<(u64, FileType, Vec<u8>)> =
            vec![(ino.0, FileType::Directory, b".".to_vec()), (ino.0, FileType::Directory, b"..".to_vec())];
        for (n, k) in kids.into_iter().skip(offset.saturating_sub(2) as usize) {
            let child = self.intern(ino.0, &n, k.clone());
            all.push((child, file_type(&k), n));
        }
        // `all` holds ".", ".." and the children from `offset - 2` on.
        let skip_dots = offset.min(2) as usize;
        let first_child = offset.max(2);
        for (i, (child, ft, name)) in all.into_iter().enumerate().skip(skip_dots) {
            let next = if i < 2 { i as u64 + 1 } else { first_child + (i as u64 - 2) + 1 };
            if reply.add(INodeNo(child), next, ft, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }
}

/// Whether FUSE can be used here; the error says what to install.
pub fn check_available() -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Error::Failed("FUSE is not available: /dev/fuse is missing (load the fuse kernel module, or in a container pass --device /dev/fuse); then install the fuse3 package".into()));
    }
    let in_path =
        |bin: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    if std::env::var_os("FUSERMOUNT_PATH").is_none() && !in_path("fusermount3") && !in_path("fusermount") {
        return Err(Error::Failed(
            "FUSE is not available: fusermount3 was not found; install the fuse3 package (apt-get install fuse3)"
                .into(),
        ));
    }
    Ok(())
}

/// Mounts the repository at `mountpoint` and serves it until it is unmounted: by SIGINT or
/// SIGTERM (which unmount it; when something is still open there, the mount is detached and
/// the process exits, ending the open files' access) or by `fusermount3 -u MOUNTPOINT`.
/// `ready` is called once the mount is live.
pub fn mount(repo: Repo, mountpoint: &Path, opts: &Options, ready: &dyn Fn(usize)) -> Result<()> {
    check_available()?;
    if !mountpoint.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{}: the mount point must be an existing directory",
            mountpoint.display()
        )));
    }
    // A shared lease while mounted: prune (exclusive) waits instead of deleting packs that
    // open files still read. Refreshed in the background; a killed mount's lease goes stale.
    let _lease = crate::lock::Lease::acquire_reader(&repo, "mount", &mut |m| eprintln!("coffer: {m}"))?;
    let fsname = format!("coffer:{}", repo.root.display());
    let fs = CofferFs::new(repo, opts)?;
    let nsets = fs.sets.len();
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(fsname),
        MountOption::Subtype("coffer".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    cfg.n_threads = Some(opts.threads.max(1));
    // Signals are blocked from the default action before mounting, so a Ctrl-C that arrives
    // during the mount still unmounts.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::Failed(format!("installing signal handlers: {e}")))?;
    let mut session = fuser::Session::new(fs, mountpoint, &cfg)
        .map_err(|e| Error::Io { path: mountpoint.to_path_buf(), source: e })?;
    let mut unmounter = session.unmount_callable();
    let handle = signals.handle();
    let mp = mountpoint.to_path_buf();
    let waiter = std::thread::spawn(move || {
        let mut signals = signals.forever();
        if signals.next().is_none() {
            return;
        }
        match unmounter.unmount() {
            // The session loop sees the unmount and returns.
            Ok(()) => {}
            Err(e) => {
                // Busy (a shell or reader has something open there): detach the mount now and
                // exit; closing /dev/fuse ends the connection, so open files get ENOTCONN
                // instead of hanging.
                eprintln!("coffer: {} is busy ({e}); detaching it", mp.display());
                detach(&mp);
                std::process::exit(0);
            }
        }
        // A second signal while the unmount waits on open files: the same, at once.
        if signals.next().is_some() {
            detach(&mp);
            std::process::exit(0);
        }
    });
    ready(nsets);
    let res = session.run();
    // Unmounted from outside (fusermount3 -u): stop waiting for a signal.
    handle.close();
    let _ = waiter.join();
    res.map_err(|e| Error::Io { path: mountpoint.to_path_buf(), source: e })
}

/// Lazily unmounts (`fusermount3 -u -z`): the mount leaves the namespace at once.
fn detach(mp: &Path) {
    for bin in ["fusermount3", "fusermount"] {
        if std::process::Command::new(bin).args(["-u", "-z", "-q", "--"]).arg(mp).status().is_ok_and(|s| s.success()) {
            return;
        }
    }
    eprintln!("coffer: could not detach {}; run `fusermount3 -u -z {}`", mp.display(), mp.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_seconds_in_utc() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "name": "n", "host": "h", "tool_version": "0", "started": "2026-11-22T02:46:12.123456789Z",
            "finished": "2026-11-22T02:47:00Z", "parent": null, "components": []
        }))
        .unwrap();
        assert_eq!(label_of(&m), "2026-11-22T02:46:12Z");
    }
}
