//! A repository: opening and creating it, and reading chunks, trees and set manifests back.
//! Every repository byte goes through [`Repo::storage`]; the catalog is a local cache under
//! the cache directory (`<cache>/<repository id>/index.sqlite`), brought in step with the
//! repository's index objects at every open ([`crate::catalog::sync`]).
//!
//! ```text
//! config          repository settings (written once, by init)
//! packs/xx/<id>   immutable packs
//! index/<id>      immutable index objects: which pack holds which chunk
//! sets/<id>       immutable set manifests; putting one commits a set
//! locks/          leases held by running commands
//! tmp/            (local repositories) files being written; never read as data
//! ```

use crate::chunker::Hasher;
use crate::config::Config;
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, PackId, SetId, TreeId};
use crate::index::Index;
use crate::pack::{self, BlobKind};
use crate::set::Manifest;
use crate::storage::{object_path, Kind, LocalStorage, Storage};
use crate::tree::{ChunkRef, Tree};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Repo {
    pub root: PathBuf,
    pub config: Config,
    pub hasher: Hasher,
    /// The repository can't be written (read-only media): it is read without leases, and
    /// `verify` does not record verification times.
    pub read_only: bool,
    /// The repository's objects: every repository byte goes through it.
    pub storage: Arc<dyn Storage>,
    /// The local catalog (a cache of the index objects).
    catalog: PathBuf,
    /// Index objects that could not be read at open (each error names its object): their
    /// packs are unknown to the catalog, so prune refuses to run until `repair index`.
    pub damaged_index: Vec<String>,
    /// One catalog connection per worker thread (connections are not `Sync`).
    indexes: Vec<Mutex<Option<Index>>>,
    /// Damaged manifests already warned about, so a command warns once per file.
    warned: Mutex<std::collections::HashSet<PathBuf>>,
}

impl Repo {
    pub fn config_path(root: &Path) -> PathBuf {
        root.join("config")
    }
    /// The local catalog's file.
    pub fn index_path(&self) -> PathBuf {
        self.catalog.clone()
    }

    /// Where the catalog of repository `repository_id` lives under `cache_root`.
    pub fn catalog_path(cache_root: &Path, repository_id: &str) -> PathBuf {
        cache_root.join(repository_id).join("index.sqlite")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn sets_dir(&self) -> PathBuf {
        self.root.join("sets")
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// Creates a repository in `root`, which must be missing or an empty directory.
    pub fn init(root: &Path, compression_level: i32, now: String) -> Result<Repo> {
        if root.exists() {
            if Repo::config_path(root).exists() {
                return Err(Error::InvalidInput(format!("{}: already a coffer repository", root.display())));
            }
            let mut entries = std::fs::read_dir(root).ctx(root)?;
            if entries.next().is_some() {
                return Err(Error::InvalidInput(format!(
                    "{}: directory is not empty and is not a coffer repository; refusing to initialise it",
                    root.display()
                )));
            }
        }
        if !(1..=22).contains(&compression_level) {
            return Err(Error::InvalidInput(format!("compression level {compression_level} is outside 1..=22")));
        }
        for d in ["", "packs", "index", "sets", "locks", "tmp"] {
            crate::store::create_private_dirs(&root.join(d))?;
        }
        // The config goes last: a directory is a repository only once it is complete.
        Repo::init_storage(
            Arc::new(LocalStorage::open(root)?),
            compression_level,
            now,
            &crate::filecache::cache_root(),
        )?;
        Repo::open(root)
    }

    /// Creates a repository in `storage`, which must hold no config yet, and opens it with
    /// its catalog under `cache_root`.
    pub fn init_storage(
        storage: Arc<dyn Storage>,
        compression_level: i32,
        now: String,
        cache_root: &Path,
    ) -> Result<Repo> {
        if storage.size(Kind::Config, Config::NAME)?.is_some() {
            return Err(Error::InvalidInput(format!("{}: already a coffer repository", storage.location())));
        }
        if !(1..=22).contains(&compression_level) {
            return Err(Error::InvalidInput(format!("compression level {compression_level} is outside 1..=22")));
        }
        let mut random = [0u8; 48];
        getrandom::getrandom(&mut random)
            .map_err(|e| Error::Failed(format!("no randomness for the chunk key: {e}")))?;
        Config::new(&random, compression_level, now).store(&*storage)?;
        Repo::open_storage(storage, cache_root, false)
    }

    /// Opens the local repository at `root` with the default cache directory.
    pub fn open(root: &Path) -> Result<Repo> {
        Repo::open_in(root, &crate::filecache::cache_root())
    }

    /// Opens the local repository at `root`, its catalog under `cache_root`.
    pub fn open_in(root: &Path, cache_root: &Path) -> Result<Repo> {
        let meta = std::fs::metadata(root)
            .map_err(|e| Error::NotARepository { path: root.to_path_buf(), why: e.to_string() })?;
        if !meta.is_dir() {
            return Err(Error::NotARepository { path: root.to_path_buf(), why: "not a directory".into() });
        }
        if !Repo::config_path(root).exists() {
            return Err(Error::NotARepository { path: root.to_path_buf(), why: "no config file".into() });
        }
        for d in ["packs", "sets", "locks", "tmp"] {
            if !root.join(d).is_dir() {
                return Err(Error::NotARepository { path: root.to_path_buf(), why: format!("missing {d}/ directory") });
            }
        }
        let read_only = crate::sys::read_only(root);
        Repo::open_storage(Arc::new(LocalStorage::open(root)?), cache_root, read_only)
    }

    /// Opens the repository in `storage`, its catalog under `cache_root`: the catalog is
    /// created, or rebuilt when it is damaged or of another schema, and brought in step with
    /// the repository's index objects.
    pub fn open_storage(storage: Arc<dyn Storage>, cache_root: &Path, read_only: bool) -> Result<Repo> {
        let config = Config::load(&*storage)?;
        let catalog = Repo::catalog_path(cache_root, &config.repository_id);
        let mut idx = crate::catalog::open_or_create(&catalog, &config.repository_id)?;
        let synced = crate::catalog::sync(&mut idx, &*storage, crate::clock::now_secs())?;
        let damaged_index: Vec<String> = synced.damaged.iter().map(|e| e.to_string()).collect();
        for d in &damaged_index {
            eprintln!("coffer: warning: damaged index object left out (run `coffer repair index`): {d}");
        }
        let threads = rayon::current_num_threads().max(1) + 2;
        let repo = Repo {
            root: PathBuf::from(storage.location()),
            hasher: Hasher::new(config.key()),
            config,
            read_only,
            storage,
            catalog,
            damaged_index,
            indexes: (0..threads).map(|_| Mutex::new(None)).collect(),
            warned: Mutex::new(Default::default()),
        };
        *repo.indexes[threads - 1].lock().unwrap_or_else(|p| p.into_inner()) = Some(idx);
        Ok(repo)
    }

    /// Fails, naming the repository, when it can't be written and `command` must write.
    pub fn writable(&self, command: &str) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidInput(format!(
                "{}: the repository is on read-only storage (or not writable by this user); `{command}` needs to write to it",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// Brings the catalog in step with the index objects again (a command that took its
    /// lease after opening sees what finished in between).
    pub fn sync_catalog(&self) -> Result<()> {
        crate::catalog::sync(&mut *self.index()?, &*self.storage, crate::clock::now_secs()).map(|_| ())
    }

    /// A catalog connection for the calling thread.
    pub fn index(&self) -> Result<IndexGuard<'_>> {
        let n = self.indexes.len();
        let slot = rayon::current_thread_index().map(|i| i % (n - 1)).unwrap_or(n - 1);
        let mut g = self.indexes[slot].lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Index::open(&self.catalog, &self.config.repository_id)?);
        }
        Ok(IndexGuard(g))
    }

    /// Reads one chunk, decompressed and checked against its id.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>> {
        let loc = self.index()?.lookup(id)?.ok_or_else(|| {
            Error::NotFound(format!("chunk {} is not in the index (repository damaged?)", id.short()))
        })?;
        self.read_entry(&loc.pack, &loc.entry)
    }

    /// Reads one chunk of a file's content, checked against the length the file's tree claims
    /// for it: readers place chunks by those lengths, so a claim the blob does not match would
    /// shift or pad the file (one chunk claimed at 4 GiB a thousand times is a 4 TB file).
    /// The catalog's length is compared before reading, and [`pack::decode_blob`] checks the
    /// decoded bytes against it. `file` names the file in the error.
    pub fn read_file_chunk(&self, c: &ChunkRef, file: &str) -> Result<Vec<u8>> {
        let id = c.chunk_id();
        let loc = self.index()?.lookup(&id)?.ok_or_else(|| {
            Error::NotFound(format!("{file}: chunk {} is not in the index (repository damaged?)", id.short()))
        })?;
        check_claim(c, loc.entry.raw_len as usize, file)?;
        self.read_entry(&loc.pack, &loc.entry)
    }

    pub fn read_entry(&self, pack_id: &PackId, e: &pack::Entry) -> Result<Vec<u8>> {
        let stored = self.read_pack_range(pack_id, e.offset, e.offset + e.stored_len as u64)?;
        pack::decode_blob(&self.pack_object(pack_id), e, &stored, &self.hasher)
    }

    /// Bytes `start..end` of a pack, as stored (a range past the pack's end is an error
    /// naming the pack and its size: the pack was cut short).
    pub fn read_pack_range(&self, pack_id: &PackId, start: u64, end: u64) -> Result<Vec<u8>> {
        self.storage.read(Kind::Packs, &pack_id.to_hex(), Some(start..end))
    }

    /// How the pack is named in messages.
    pub fn pack_object(&self, pack_id: &PackId) -> PathBuf {
        pack::object(&*self.storage, pack_id)
    }

    /// Every pack in the repository with its size, by id (objects under `packs/` whose names
    /// are not pack ids are not ours and left out).
    pub fn list_packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out: Vec<(PackId, u64)> = self
            .storage
            .list(Kind::Packs)?
            .into_iter()
            .filter_map(|o| PackId::from_name(&o.name).map(|id| (id, o.size)))
            .collect();
        out.sort();
        Ok(out)
    }

    pub fn read_tree(&self, id: &TreeId) -> Result<Tree> {
        let loc = self
            .index()?
            .lookup(&id.as_chunk())?
            .ok_or_else(|| Error::NotFound(format!("tree {} is not in the index (repository damaged?)", id.short())))?;
        if loc.entry.kind != BlobKind::Tree {
            return Err(Error::corrupt(self.pack_object(&loc.pack), loc.entry.offset, "expected a tree blob"));
        }
        let bytes = self.read_entry(&loc.pack, &loc.entry)?;
        Tree::decode(&self.pack_object(&loc.pack), loc.entry.offset, &bytes)
    }

    /// Every committed set whose manifest reads, oldest first (by start time, then id). A
    /// damaged manifest does not hide the others: it is named in a warning on stderr (once
    /// per command) and left out. Callers that must know every set's needs (prune) use
    /// [`Repo::list_sets_checked`].
    pub fn list_sets(&self) -> Result<Vec<(SetId, Manifest)>> {
        let (sets, damaged) = self.list_sets_checked()?;
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        for d in damaged {
            if warned.insert(d.path.clone()) {
                eprintln!("coffer: warning: damaged set manifest left out: {}", d.error);
            }
        }
        Ok(sets)
    }

    /// Every set whose manifest reads (oldest first), and every manifest that does not.
    pub fn list_sets_checked(&self) -> Result<SetListing> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for o in self.storage.list(Kind::Sets)? {
            let Some(id) = SetId::from_name(&o.name) else { continue };
            let path = PathBuf::from(object_path(&*self.storage, Kind::Sets, &o.name));
            let read = match self.storage.read(Kind::Sets, &o.name, None) {
                // Removed (forgotten) since the listing: not a set any more.
                Err(Error::ObjectMissing { .. }) => continue,
                r => r,
            };
            match read.and_then(|bytes| crate::set::from_object(&path, &bytes)) {
                Ok(s) => out.push(s),
                Err(error) => damaged.push(DamagedManifest { id, path, error }),
            }
        }
        out.sort_by_cached_key(|(id, m)| (crate::clock::parse(&m.started).ok(), *id));
        damaged.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((out, damaged))
    }

    /// Resolves `latest`, a full id or a unique id prefix.
    pub fn resolve_set(&self, spec: &str) -> Result<(SetId, Manifest)> {
        let (sets, damaged) = self.list_sets_checked()?;
        for d in &damaged {
            // Asked for by id: the damage is the answer, not "no such set".
            if spec.len() >= 4 && d.id.to_hex().starts_with(&spec.to_ascii_lowercase()) {
                return Err(Error::corrupt(&d.path, 0, format!("set {} is damaged: {}", d.id.short(), d.error)));
            }
        }
        self.list_sets()?; // warns about the damaged ones
        if spec == "latest" {
            return sets.into_iter().last().ok_or_else(|| Error::NotFound("the repository has no sets yet".into()));
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!("{spec:?} is not a set id, id prefix or \"latest\"")));
        }
        let spec = spec.to_ascii_lowercase();
        let mut hits: Vec<_> = sets.into_iter().filter(|(id, _)| id.to_hex().starts_with(&spec)).collect();
        match hits.len() {
            0 => Err(Error::NotFound(format!("no set matches {spec:?}"))),
            1 => Ok(hits.remove(0)),
            n => Err(Error::InvalidInput(format!("{spec:?} matches {n} sets; give more digits"))),
        }
    }

    /// Removes files in `tmp/` left by writers that are gone (a killed run's half-written pack
    /// or manifest): see [`crate::store::clean_tmp_dir`].
    pub fn clean_tmp(&self) {
        crate::store::clean_tmp_dir(&self.tmp_dir(), &crate::lock::hostname(), std::time::SystemTime::now());
    }

    /// Indexes packs that are on disk but not in the index: a run killed between a pack's
    /// rename and its index commit leaves such packs, and their chunks should be reused,
    /// not stored again. Packs whose trailer does not read are left alone (verify reports
    /// them). Returns how many packs were adopted.
    pub fn adopt_unindexed_packs(&self, now: i64) -> Result<u64> {
        let mut idx = self.index()?;
        let known: std::collections::HashSet<PackId> = idx.packs()?.into_iter().map(|(id, _)| id).collect();
        let mut adopted = 0;
        for (id, size) in self.list_packs()? {
            if known.contains(&id) {
                continue;
            }
            if let Ok(entries) = pack::read_trailer(&*self.storage, &id, size) {
                idx.add_pack(&pack::Finished { id, size, entries }, now)?;
                adopted += 1;
            }
        }
        // Adopted packs are uncovered: the backup's index objects will name them.
        Ok(adopted)
    }

    /// Commits a manifest: one atomic put of `sets/<id>`. This is the commit point.
    pub fn commit_manifest(&self, m: &Manifest) -> Result<SetId> {
        let bytes = m.encode();
        let id = Manifest::id_of(&bytes);
        self.storage.put(Kind::Sets, &id.to_hex(), &bytes)?;
        Ok(id)
    }

    /// Removes a set's manifest (forget). Its data stays until prune.
    pub fn remove_manifest(&self, id: &SetId) -> Result<()> {
        self.storage.remove(Kind::Sets, &id.to_hex())
    }
}

/// The sets whose manifests read, and the manifests that don't.
pub type SetListing = (Vec<(SetId, Manifest)>, Vec<DamagedManifest>);

/// A file in `sets/` named like a manifest that does not read as one.
#[derive(Debug)]
pub struct DamagedManifest {
    pub id: SetId,
    pub path: PathBuf,
    pub error: Error,
}

pub struct IndexGuard<'a>(MutexGuard<'a, Option<Index>>);

impl std::ops::Deref for IndexGuard<'_> {
    type Target = Index;
    fn deref(&self) -> &Index {
        self.0.as_ref().expect("opened in Repo::index")
    }
}
impl std::ops::DerefMut for IndexGuard<'_> {
    fn deref_mut(&mut self) -> &mut Index {
        self.0.as_mut().expect("opened in Repo::index")
    }
}

/// The reason a chunk of `actual` bytes does not fit the reference `c`, if it does not.
pub fn claim_mismatch(c: &ChunkRef, actual: usize) -> Option<String> {
    (actual != c.len as usize).then(|| {
        format!(
            "chunk {}: the tree claims {} bytes but the chunk holds {actual} (damaged or hostile repository)",
            c.chunk_id().short(),
            c.len
        )
    })
}

/// Fails, naming `file` and the chunk, when a chunk of `actual` bytes does not fit `c`.
pub fn check_claim(c: &ChunkRef, actual: usize, file: &str) -> Result<()> {
    match claim_mismatch(c, actual) {
        None => Ok(()),
        Some(what) => Err(Error::BadTree { at: file.to_string(), what }),
    }
}
