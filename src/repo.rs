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

use crate::chunker::{Hasher, Params};
use crate::config::Config;
use crate::crypto::key::{KdfParams, MasterKey};
use crate::crypto::password::Source;
use crate::crypto::{keyring, Cipher};
use crate::error::{Error, IoContext, Result};
use crate::id::{ChunkId, PackId, SetId, TreeId};
use crate::index::Index;
use crate::pack::{self, BlobKind};
use crate::set::Manifest;
use crate::storage::{object_path, Kind, LocalStorage, Location, S3Credentials, SealedStorage, Storage};
use crate::tree::{ChunkRef, Tree};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Repo {
    pub root: PathBuf,
    pub config: Config,
    pub hasher: Hasher,
    /// The chunker's sizes and the repository's gear seed.
    pub chunker: Params,
    /// Seals pack blobs and trailers (whole objects are sealed by [`Repo::storage`]).
    pub cipher: Cipher,
    /// The master key and the key object that opened it (`None`: unencrypted).
    pub unlocked: Option<keyring::Unlocked>,
    /// The repository can't be written (read-only media): it is read without leases, and
    /// `verify` does not record verification times.
    pub read_only: bool,
    /// The repository's objects: every repository byte goes through it (in an encrypted
    /// repository a [`SealedStorage`], which seals and opens whole objects).
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

    /// Creates a repository at `location`: a local directory (see [`Repo::init`]) or a bucket
    /// prefix that holds no repository yet.
    pub fn init_at(location: &Location, opts: &InitOptions, now: String) -> Result<Repo> {
        match location {
            Location::Local(root) => Repo::init(root, opts, now),
            Location::S3(_) => {
                let storage = location.open(&S3Credentials::from_env())?;
                Repo::init_storage(storage, opts, now, &crate::filecache::cache_root())
            }
        }
    }

    /// Opens the repository at `location`, its catalog under `cache_root` (S3 credentials from
    /// the environment).
    pub fn open_at(location: &Location, cache_root: &Path, password: &Source) -> Result<Repo> {
        Repo::open_at_with(location, cache_root, password, &S3Credentials::from_env())
    }

    /// [`Repo::open_at`] with the S3 credentials given.
    pub fn open_at_with(
        location: &Location,
        cache_root: &Path,
        password: &Source,
        creds: &S3Credentials,
    ) -> Result<Repo> {
        match location {
            Location::Local(root) => Repo::open_with(root, cache_root, password),
            Location::S3(_) => Repo::open_storage(location.open(creds)?, cache_root, false, password),
        }
    }

    /// Creates a repository in `root`, which must be missing or an empty directory.
    pub fn init(root: &Path, opts: &InitOptions, now: String) -> Result<Repo> {
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
        opts.check()?;
        // The password first: a prompt that fails must not leave a half-made directory.
        let password = if opts.encrypted { Some(opts.password.get(&root.display().to_string(), true)?) } else { None };
        for d in ["", "packs", "index", "sets", "locks", "keys", "tmp"] {
            crate::store::create_private_dirs(&root.join(d))?;
        }
        let cache = crate::filecache::cache_root();
        let given = InitOptions { password: password.map(Source::Given).unwrap_or(Source::Prompt), ..opts.clone() };
        Repo::init_storage(Arc::new(LocalStorage::open(root)?), &given, now, &cache)?;
        Repo::open_with(root, &cache, &given.password)
    }

    /// Creates a repository in `storage`, which must hold no config yet, and opens it with
    /// its catalog under `cache_root`. The config goes last: a storage holds a repository
    /// only once it is complete.
    pub fn init_storage(storage: Arc<dyn Storage>, opts: &InitOptions, now: String, cache_root: &Path) -> Result<Repo> {
        if storage.size(Kind::Config, Config::NAME)?.is_some() {
            return Err(Error::InvalidInput(format!("{}: already a coffer repository", storage.location())));
        }
        opts.check()?;
        let mut master = MasterKey::random();
        if let Some(from) = &opts.from {
            master.chunk_key = from.chunk_key;
            master.gear_seed = from.gear_seed;
        }
        let repository_id: [u8; 8] = crate::crypto::random_array();
        let secrets = (&master.chunk_key, master.gear_seed);
        let mut config = Config::new(repository_id, secrets, opts.encrypted, opts.compression_level, now.clone());
        if let Some(from) = &opts.from {
            let seed = config.chunker.seed;
            config.chunker = crate::config::ChunkerConfig { seed, ..from.chunker.clone() };
        }
        let config_bytes = config.encode();
        if opts.encrypted {
            master.config_hash = *blake3::hash(&config_bytes).as_bytes();
            let password = opts.password.get(&storage.location(), true)?;
            keyring::add(&*storage, &master, password.as_bytes(), opts.kdf, now)?;
        }
        storage.put(Kind::Config, Config::NAME, &config_bytes)?;
        Repo::open_storage(storage, cache_root, false, &opts.password)
    }

    /// Opens the local repository at `root` with the default cache directory, the password
    /// from the environment.
    pub fn open(root: &Path) -> Result<Repo> {
        Repo::open_in(root, &crate::filecache::cache_root())
    }

    /// Opens the local repository at `root`, its catalog under `cache_root`, the password
    /// from the environment.
    pub fn open_in(root: &Path, cache_root: &Path) -> Result<Repo> {
        Repo::open_with(root, cache_root, &Source::from_env())
    }

    /// Opens the local repository at `root`, its catalog under `cache_root`, the password
    /// (if it is encrypted) from `password`.
    pub fn open_with(root: &Path, cache_root: &Path, password: &Source) -> Result<Repo> {
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
        Repo::open_storage(Arc::new(LocalStorage::open(root)?), cache_root, read_only, password)
    }

    /// Opens the repository in `storage`, its catalog under `cache_root`: an encrypted one is
    /// unlocked with the password from `password`; the catalog is created, or rebuilt when it
    /// is damaged or of another schema, and brought in step with the index objects.
    pub fn open_storage(raw: Arc<dyn Storage>, cache_root: &Path, read_only: bool, password: &Source) -> Result<Repo> {
        let Opened { config, unlocked, hasher, chunker, cipher, storage } = Opened::unlock(raw, cache_root, password)?;
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
            hasher,
            chunker,
            cipher,
            unlocked,
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
        let loc = self.locate_file_chunk(c, file)?;
        self.read_entry(&loc.pack, &loc.entry)
    }

    /// A file's chunk as stored, opened and checked against its id and the length its tree
    /// claims, but still compressed as its entry says: what a copy sends on. Returns the
    /// entry with it.
    pub fn read_file_chunk_opened(&self, c: &ChunkRef, file: &str) -> Result<(pack::Entry, Vec<u8>)> {
        let loc = self.locate_file_chunk(c, file)?;
        let e = loc.entry;
        let stored = self.read_pack_range(&loc.pack, e.offset, e.offset + e.stored_len as u64)?;
        let path = self.pack_object(&loc.pack);
        let opened = match self.cipher {
            Cipher::None => stored,
            _ => pack::open_blob(&path, &e, &stored, &self.cipher)?.into_owned(),
        };
        pack::check_opened(&path, &e, &opened, &self.hasher)?;
        Ok((e, opened))
    }

    /// Where a file's chunk is, its catalog length checked against the tree's claim.
    fn locate_file_chunk(&self, c: &ChunkRef, file: &str) -> Result<crate::index::Location> {
        let id = c.chunk_id();
        let loc = self.index()?.lookup(&id)?.ok_or_else(|| {
            Error::NotFound(format!("{file}: chunk {} is not in the index (repository damaged?)", id.short()))
        })?;
        check_claim(c, loc.entry.raw_len as usize, file)?;
        Ok(loc)
    }

    pub fn read_entry(&self, pack_id: &PackId, e: &pack::Entry) -> Result<Vec<u8>> {
        let stored = self.read_pack_range(pack_id, e.offset, e.offset + e.stored_len as u64)?;
        pack::decode_blob(&self.pack_object(pack_id), e, &stored, &self.hasher, &self.cipher)
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
        self.read_tree_bytes(id).map(|(_, t)| t)
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
            if let Ok(entries) = pack::read_trailer(&*self.storage, &id, size, &self.cipher) {
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

    /// Commits a manifest made elsewhere (a copy) from its exact bytes, which must hash to
    /// `id`: the set keeps its id in every repository that holds it.
    pub fn commit_manifest_bytes(&self, id: &SetId, bytes: &[u8]) -> Result<()> {
        if Manifest::id_of(bytes) != *id {
            return Err(Error::corrupt(
                object_path(&*self.storage, Kind::Sets, &id.to_hex()),
                0,
                "set manifest does not match its name",
            ));
        }
        self.storage.put(Kind::Sets, &id.to_hex(), bytes)
    }

    /// The chunk-id key and gear seed (from the master key, or from an unencrypted config):
    /// what `init --from-repo` gives a new repository so the same bytes get the same ids.
    pub fn chunk_secrets(&self) -> ([u8; 32], u64) {
        match (&self.unlocked, self.config.clear_secrets()) {
            (Some(u), _) => (u.master.chunk_key, u.master.gear_seed),
            (None, Some(s)) => s,
            (None, None) => unreachable!("an unencrypted config's secrets are checked when it is read"),
        }
    }

    /// A tree blob's bytes as stored (checked against its id) and the tree they decode to.
    pub fn read_tree_bytes(&self, id: &TreeId) -> Result<(Vec<u8>, Tree)> {
        let loc = self
            .index()?
            .lookup(&id.as_chunk())?
            .ok_or_else(|| Error::NotFound(format!("tree {} is not in the index (repository damaged?)", id.short())))?;
        if loc.entry.kind != BlobKind::Tree {
            return Err(Error::corrupt(self.pack_object(&loc.pack), loc.entry.offset, "expected a tree blob"));
        }
        let bytes = self.read_entry(&loc.pack, &loc.entry)?;
        let tree = Tree::decode(&self.pack_object(&loc.pack), loc.entry.offset, &bytes)?;
        Ok((bytes, tree))
    }

    /// Removes a set's manifest (forget). Its data stays until prune.
    pub fn remove_manifest(&self, id: &SetId) -> Result<()> {
        self.storage.remove(Kind::Sets, &id.to_hex())
    }
}

/// A repository's config and keys, before its catalog is opened (`repair index` rebuilds
/// the catalog from here).
pub struct Opened {
    pub config: Config,
    pub unlocked: Option<keyring::Unlocked>,
    pub hasher: Hasher,
    pub chunker: Params,
    pub cipher: Cipher,
    /// The storage to use: `raw`, or a [`SealedStorage`] around it.
    pub storage: Arc<dyn Storage>,
}

impl Opened {
    /// Reads the config of the repository in `raw` and, if it is encrypted, unlocks it with
    /// the password from `password` (the key that opened it last on this machine, recorded
    /// under `cache_root`, is tried first).
    pub fn unlock(raw: Arc<dyn Storage>, cache_root: &Path, password: &Source) -> Result<Opened> {
        // A storage without a config holds no repository (a wrong bucket or prefix).
        let config_bytes = raw.read(Kind::Config, Config::NAME, None).map_err(|e| match e {
            Error::ObjectMissing { .. } => Error::NotARepository {
                path: raw.location().into(),
                why: "no config object (is the bucket or prefix right? `coffer init` makes one)".into(),
            },
            e => e,
        })?;
        let config = Config::decode(Path::new(&object_path(&*raw, Kind::Config, Config::NAME)), &config_bytes)?;
        let cache_dir = cache_root.join(&config.repository_id);
        let (unlocked, chunk_key, seed) = match config.clear_secrets() {
            Some((key, seed)) => (None, key, seed),
            None => {
                let hint = std::fs::read_to_string(keyring::hint_path(&cache_dir)).ok();
                let hint = hint.as_deref().map(str::trim);
                let u = keyring::unlock(&*raw, &config_bytes, password, hint)?;
                if hint != Some(u.key_name.as_str()) {
                    // Best effort: without it the next open tries the keys in name order.
                    let _ = crate::store::create_private_dirs(&cache_dir)
                        .and_then(|()| crate::store::create_private(&keyring::hint_path(&cache_dir)))
                        .and_then(|mut f| std::io::Write::write_all(&mut f, u.key_name.as_bytes()).ctx(&cache_dir));
                }
                let (key, seed) = (u.master.chunk_key, u.master.gear_seed);
                (Some(u), key, seed)
            }
        };
        let cipher = match &unlocked {
            Some(u) => Cipher::new(&u.master.data_key),
            None => Cipher::None,
        };
        let storage: Arc<dyn Storage> = match cipher {
            Cipher::None => raw,
            _ => Arc::new(SealedStorage::new(raw, cipher.clone())),
        };
        Ok(Opened {
            hasher: Hasher::new(chunk_key),
            chunker: Params::with_seed(&config.chunker, seed),
            config,
            unlocked,
            cipher,
            storage,
        })
    }
}

/// How `init` makes a repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub compression_level: i32,
    /// Seal every object (the default); `false` is `--encryption none`.
    pub encrypted: bool,
    /// Argon2id cost of the first key.
    pub kdf: KdfParams,
    /// The first key's password (asked twice on a terminal).
    pub password: Source,
    /// Take the chunker and chunk ids of another repository (`init --from-repo`), so sets
    /// copied between the two deduplicate against each other.
    pub from: Option<ChunkingOf>,
}

/// The chunking another repository uses: its chunk-id key, gear seed and chunk sizes.
#[derive(Clone)]
pub struct ChunkingOf {
    pub chunk_key: [u8; 32],
    pub gear_seed: u64,
    pub chunker: crate::config::ChunkerConfig,
}

impl std::fmt::Debug for ChunkingOf {
    // The key and seed are secret: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkingOf {{ chunker: {:?} }}", self.chunker)
    }
}

impl ChunkingOf {
    pub fn of(repo: &Repo) -> ChunkingOf {
        let (chunk_key, gear_seed) = repo.chunk_secrets();
        ChunkingOf { chunk_key, gear_seed, chunker: repo.config.chunker.clone() }
    }
}

impl InitOptions {
    /// Encrypted, zstd level 3, default key derivation, the password from the environment.
    pub fn new() -> InitOptions {
        InitOptions {
            compression_level: 3,
            encrypted: true,
            kdf: KdfParams::DEFAULT,
            password: Source::from_env(),
            from: None,
        }
    }

    fn check(&self) -> Result<()> {
        if !(1..=22).contains(&self.compression_level) {
            return Err(Error::InvalidInput(format!("compression level {} is outside 1..=22", self.compression_level)));
        }
        Ok(())
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions::new()
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
