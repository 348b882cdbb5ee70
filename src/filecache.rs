//! The files cache: lets an incremental run skip reading files that have not changed.
//!
//! One SQLite file per (repository, source) in the user's cache directory
//! (`$COFFER_CACHE_DIR`, else `$XDG_CACHE_HOME/coffer`, else `~/.cache/coffer`). A file is
//! unchanged when its inode, size, mtime and ctime all equal the cached ones; its cached
//! content list is then reused without reading a byte.
//!
//! The cache is a hint, never a source of truth. Safety rules:
//! - It is keyed by the repository's id *and* the catalog's generation (a random value that
//!   prune and `repair index` replace): a cache built against another state is emptied.
//!   Copies of a repository share both, so the walker also checks every chunk a reused entry
//!   names against the catalog before using it (see `walk`); the cache alone is never trusted.
//! - Each run registers in `runs` and stages its entries under its own run id; only after the
//!   run's manifest is committed are *its* staged rows merged into `files`. Rows of runs whose
//!   process is gone (same host, pid dead) or that are older than [`STALE_RUN_SECS`] are
//!   deleted by the next run to open the cache; rows of live concurrent runs are left alone.
//! - Every row carries a checksum keyed with the cache's own random secret over its key
//!   (directory, name), its stat fields and its content list: a row edited, damaged or swapped
//!   with another is not a hit (the file is read again). This catches damage and mistakes,
//!   not a forger who can write the cache (they could as well change the source).
//! - A cache that cannot be opened or read (garbage, another schema, a wrong-typed column) is
//!   discarded and rebuilt with a note; a backup never fails because of its cache.
//! - A file whose mtime is within `RACY_NS` of the scan start is not cached: a write in the
//!   same timestamp tick after we read it could leave mtime unchanged.

use crate::error::{Error, Result};
use crate::tree::ChunkRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Files modified this close to the scan start are never trusted.
pub const RACY_NS: i64 = 2_000_000_000;

/// Staged rows of a run older than this are deleted even if its pid looks alive (pid reuse).
pub const STALE_RUN_SECS: i64 = 2 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub content: Vec<ChunkRef>,
}

pub fn encode_content(c: &[ChunkRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(c.len() * 36);
    for r in c {
        out.extend_from_slice(&r.id);
        out.extend_from_slice(&r.len.to_le_bytes());
    }
    out
}

pub fn decode_content(b: &[u8]) -> Option<Vec<ChunkRef>> {
    if b.len() % 36 != 0 {
        return None;
    }
    Some(
        b.chunks_exact(36)
            .map(|c| ChunkRef {
                id: c[..32].try_into().expect("32"),
                len: u32::from_le_bytes(c[32..].try_into().expect("4")),
            })
            .collect(),
    )
}

/// Where cache files live.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("COFFER_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("coffer");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("coffer");
    }
    std::env::temp_dir().join("coffer-cache")
}

/// What a cache is for: the repository and the state of its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub repository_id: String,
    pub generation: String,
}

pub type Notify = Arc<dyn Fn(String) + Send + Sync>;

pub struct FileCache {
    path: PathBuf,
    /// Readers, one per worker thread; the writer has its own connection.
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Connection>,
    key: Key,
    run: i64,
    secret: [u8; 32],
    /// A read or write failed mid-run: the cache is not used further, and is deleted at the
    /// end of the run so the next one rebuilds it.
    broken: AtomicBool,
    /// Rows that were unreadable or failed their checksum (each one a file read again).
    bad_rows: AtomicU64,
    notify: Notify,
}

fn sql<T>(path: &Path, r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(|e| Error::index(path, e))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    dir BLOB NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, content BLOB NOT NULL, sum BLOB NOT NULL,
    PRIMARY KEY (dir, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS staging (
    run INTEGER NOT NULL, op INTEGER NOT NULL, dir BLOB NOT NULL, name BLOB NOT NULL,
    ino INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER, content BLOB, sum BLOB);
CREATE INDEX IF NOT EXISTS staging_by_run ON staging(run);
";
/// Version 2: per-run staging (`runs`), row checksums, the key in `meta`.
const CACHE_VERSION: i64 = 2;

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The checksum of a row: binds the content list to the file's key and stat fields.
fn row_sum(secret: &[u8; 32], dir: &[u8], name: &[u8], e: &Entry) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(secret);
    for part in [dir, name] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&e.ino.to_le_bytes());
    h.update(&e.size.to_le_bytes());
    h.update(&e.mtime_ns.to_le_bytes());
    h.update(&e.ctime_ns.to_le_bytes());
    h.update(&encode_content(&e.content));
    *h.finalize().as_bytes()
}

fn meta_get(c: &Connection, path: &Path, key: &str) -> Result<Option<String>> {
    sql(path, c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional())
}

fn meta_set(c: &Connection, path: &Path, key: &str, value: &str) -> Result<()> {
    sql(path, c.execute("INSERT OR REPLACE INTO meta VALUES (?1, ?2)", [key, value])).map(|_| ())
}

impl FileCache {
    /// Opens (creating if needed) the cache for `source` under `key`. A cache that can't be
    /// read is deleted and rebuilt (costing one full read), with a note through `notify`; an
    /// error here means even a fresh cache could not be created (the caller goes on without).
    pub fn open(root: &Path, key: &Key, source: &Path, threads: usize, notify: Notify) -> Result<FileCache> {
        let dir = root.join(&key.repository_id);
        crate::store::create_private_dirs(&dir)?;
        let h = blake3::hash(source.as_os_str().as_encoded_bytes()).to_hex();
        let path = dir.join(format!("files-{}.sqlite", &h[..16]));
        match FileCache::open_at(&path, key, threads, notify.clone()) {
            Ok(c) => Ok(c),
            Err(e) => {
                notify(format!(
                    "files cache {} could not be read ({e}); rebuilding it, every file is read",
                    path.display()
                ));
                remove_cache_files(&path);
                FileCache::open_at(&path, key, threads, notify)
            }
        }
    }

    fn open_at(path: &Path, key: &Key, threads: usize, notify: Notify) -> Result<FileCache> {
        let open = || -> Result<Connection> {
            crate::store::touch_private(path)?;
            let c = sql(path, Connection::open(path))?;
            sql(path, c.busy_timeout(std::time::Duration::from_secs(60)))?;
            sql(path, c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())))?;
            sql(path, c.pragma_update(None, "synchronous", "NORMAL"))?;
            Ok(c)
        };
        let mut w = open()?;
        let version: i64 = sql(path, w.pragma_query_value(None, "user_version", |r| r.get(0)))?;
        if version != 0 && version != CACHE_VERSION {
            return Err(Error::corrupt(path, 0, format!("files cache version {version}, expected {CACHE_VERSION}")));
        }
        let tx = sql(path, w.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate))?;
        sql(path, tx.execute_batch(SCHEMA))?;
        // Tables of the right names but other columns (another program, a hand edit) fail here.
        for q in [
            "SELECT dir, name, ino, size, mtime, ctime, content, sum FROM files LIMIT 0",
            "SELECT run, op, dir, name, ino, size, mtime, ctime, content, sum FROM staging LIMIT 0",
            "SELECT run, host, pid, started FROM runs LIMIT 0",
        ] {
            sql(path, tx.prepare(q).map(|_| ()))?;
        }
        sql(path, tx.pragma_update(None, "user_version", CACHE_VERSION))?;
        let secret = match meta_get(&tx, path, "secret")?.as_deref().and_then(unhex32) {
            Some(s) => s,
            None => {
                let mut s = [0u8; 32];
                getrandom::getrandom(&mut s).map_err(|e| Error::Failed(format!("no random numbers: {e}")))?;
                // Rows checksummed with a lost secret are worthless.
                sql(path, tx.execute("DELETE FROM files", []))?;
                meta_set(&tx, path, "secret", &hex(&s))?;
                s
            }
        };
        let old = (meta_get(&tx, path, "repository_id")?, meta_get(&tx, path, "generation")?);
        if old.0.as_deref() != Some(&key.repository_id) || old.1.as_deref() != Some(&key.generation) {
            let had: i64 = sql(path, tx.query_row("SELECT count(*) FROM files", [], |r| r.get(0)))?;
            if had > 0 {
                notify(format!(
                    "files cache {} was built for another state of the repository (pruned, repaired or copied since); every file is read",
                    path.display()
                ));
            }
            sql(path, tx.execute("DELETE FROM files", []))?;
            meta_set(&tx, path, "repository_id", &key.repository_id)?;
            meta_set(&tx, path, "generation", &key.generation)?;
        }
        clean_stale_runs(&tx, path)?;
        let host = crate::lock::hostname();
        sql(
            path,
            tx.execute(
                "INSERT INTO runs (host, pid, started) VALUES (?1, ?2, ?3)",
                params![host, std::process::id() as i64, now_secs()],
            ),
        )?;
        let run = tx.last_insert_rowid();
        sql(path, tx.commit())?;
        let readers = (0..threads.max(1) + 1).map(|_| open().map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        Ok(FileCache {
            path: path.to_path_buf(),
            readers,
            writer: Mutex::new(w),
            key: key.clone(),
            run,
            secret,
            broken: AtomicBool::new(false),
            bad_rows: AtomicU64::new(0),
            notify,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This run's staging id (unique within the cache file).
    pub fn run_id(&self) -> i64 {
        self.run
    }

    /// Cached rows that were unreadable or failed their checksum so far.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows.load(Relaxed)
    }

    /// Stops using the cache for the rest of the run after a failure, telling the user once.
    fn fail(&self, what: &str, e: Error) {
        if !self.broken.swap(true, Relaxed) {
            (self.notify)(format!(
                "files cache {} failed while {what} ({e}); it is not used for the rest of this run and will be rebuilt",
                self.path.display()
            ));
        }
    }

    /// Every usable cached entry of one directory (`dir` is the path relative to the source
    /// root). Rows that can't be decoded or fail their checksum are left out (counted); a
    /// cache that can't be queried yields nothing. Never an error: a miss only costs a read.
    pub fn dir_entries(&self, dir: &[u8]) -> HashMap<Vec<u8>, Entry> {
        if self.broken.load(Relaxed) {
            return HashMap::new();
        }
        match self.try_dir_entries(dir) {
            Ok(m) => m,
            Err(e) => {
                self.fail("reading", e);
                HashMap::new()
            }
        }
    }

    fn try_dir_entries(&self, dir: &[u8]) -> Result<HashMap<Vec<u8>, Entry>> {
        let slot =
            rayon::current_thread_index().map(|i| i % (self.readers.len() - 1)).unwrap_or(self.readers.len() - 1);
        let conn = self.readers[slot].lock().unwrap_or_else(|p| p.into_inner());
        let mut st = sql(
            &self.path,
            conn.prepare_cached("SELECT name, ino, size, mtime, ctime, content, sum FROM files WHERE dir = ?1"),
        )?;
        // Each column read on its own: a value of the wrong type makes that row a miss.
        let rows = sql(
            &self.path,
            st.query_map([dir], |r| {
                let entry = (|| -> rusqlite::Result<(Entry, Vec<u8>)> {
                    let content = decode_content(&r.get::<_, Vec<u8>>(5)?)
                        .ok_or(rusqlite::Error::InvalidColumnType(5, "content".into(), rusqlite::types::Type::Blob))?;
                    let e = Entry {
                        ino: r.get::<_, i64>(1)? as u64,
                        size: u64::try_from(r.get::<_, i64>(2)?).map_err(|_| {
                            rusqlite::Error::IntegralValueOutOfRange(2, r.get::<_, i64>(2).unwrap_or(-1))
                        })?,
                        mtime_ns: r.get(3)?,
                        ctime_ns: r.get(4)?,
                        content,
                    };
                    Ok((e, r.get(6)?))
                })();
                Ok((r.get::<_, Vec<u8>>(0).ok(), entry.ok()))
            }),
        )?;
        let mut out = HashMap::new();
        let mut bad = Vec::new();
        for r in rows {
            match sql(&self.path, r)? {
                (Some(name), Some((e, sum))) if sum == row_sum(&self.secret, dir, &name, &e) => {
                    out.insert(name, e);
                }
                (name, _) => {
                    self.bad_rows.fetch_add(1, Relaxed);
                    bad.extend(name);
                }
            }
        }
        drop(st);
        drop(conn);
        // Bad rows are forgotten when this run commits (unless the file is cached anew), so
        // one of a file that is gone is not reported again on every run.
        self.stage(dir, &[], &bad);
        Ok(out)
    }

    /// Stages the new state of one directory: `upserts` are files to (re)cache, `removed`
    /// names that were cached but are gone or no longer trustworthy. A failure disables the
    /// cache for the rest of the run (with a note) and is not an error.
    pub fn stage(&self, dir: &[u8], upserts: &[(Vec<u8>, Entry)], removed: &[Vec<u8>]) {
        if (upserts.is_empty() && removed.is_empty()) || self.broken.load(Relaxed) {
            return;
        }
        if let Err(e) = self.try_stage(dir, upserts, removed) {
            self.fail("writing", e);
        }
    }

    fn try_stage(&self, dir: &[u8], upserts: &[(Vec<u8>, Entry)], removed: &[Vec<u8>]) -> Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sql(&self.path, conn.transaction())?;
        {
            let mut st = sql(
                &self.path,
                tx.prepare_cached("INSERT INTO staging VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            )?;
            for (name, e) in upserts {
                let sum = row_sum(&self.secret, dir, name, e);
                sql(
                    &self.path,
                    st.execute(params![
                        self.run,
                        0,
                        dir,
                        name,
                        e.ino as i64,
                        e.size as i64,
                        e.mtime_ns,
                        e.ctime_ns,
                        encode_content(&e.content),
                        &sum[..]
                    ]),
                )?;
            }
            for name in removed {
                sql(
                    &self.path,
                    st.execute(params![
                        self.run,
                        1,
                        dir,
                        name,
                        None::<i64>,
                        None::<i64>,
                        None::<i64>,
                        None::<i64>,
                        None::<Vec<u8>>,
                        None::<Vec<u8>>
                    ]),
                )?;
            }
        }
        sql(&self.path, tx.commit())
    }

    /// Merges this run's staged entries (and only this run's) into the cache. Call only after
    /// the set is committed. If the cache was re-keyed meanwhile (a run against another state
    /// of the repository opened it), this run's rows are dropped instead. Never fails the
    /// backup: problems are told through the note callback.
    pub fn commit(&self) {
        if self.broken.load(Relaxed) {
            remove_cache_files(&self.path);
            return;
        }
        if let Err(e) = self.try_commit() {
            (self.notify)(format!("warning: files cache {} not updated: {e}", self.path.display()));
        }
    }

    fn try_commit(&self) -> Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sql(&self.path, conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate))?;
        let current = (meta_get(&tx, &self.path, "repository_id")?, meta_get(&tx, &self.path, "generation")?);
        if current.0.as_deref() == Some(&self.key.repository_id) && current.1.as_deref() == Some(&self.key.generation) {
            sql(
                &self.path,
                tx.execute(
                    "DELETE FROM files WHERE (dir, name) IN (SELECT dir, name FROM staging WHERE run = ?1 AND op = 1)",
                    [self.run],
                ),
            )?;
            sql(
                &self.path,
                tx.execute(
                    "INSERT OR REPLACE INTO files SELECT dir, name, ino, size, mtime, ctime, content, sum
                     FROM staging WHERE run = ?1 AND op = 0",
                    [self.run],
                ),
            )?;
        }
        sql(&self.path, tx.execute("DELETE FROM staging WHERE run = ?1", [self.run]))?;
        sql(&self.path, tx.execute("DELETE FROM runs WHERE run = ?1", [self.run]))?;
        sql(&self.path, tx.commit())
    }

    /// Drops this run's staged rows without merging them (a run that failed).
    pub fn abandon(&self) {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM staging WHERE run = ?1", [self.run])?;
            tx.execute("DELETE FROM runs WHERE run = ?1", [self.run])?;
            tx.commit()
        })();
    }
}

fn remove_cache_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Deletes the staged rows of runs that can no longer commit: on this host with a dead pid,
/// anywhere after [`STALE_RUN_SECS`] (a reused pid), and rows of no registered run at all.
/// Staged rows are never merged by anyone but their run, so a row left too long costs only space.
fn clean_stale_runs(tx: &Connection, path: &Path) -> Result<()> {
    let host = crate::lock::hostname();
    let now = now_secs();
    let mut dead = Vec::new();
    {
        let mut st = sql(path, tx.prepare("SELECT run, host, pid, started FROM runs"))?;
        let rows = sql(
            path,
            st.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            }),
        )?;
        for r in rows {
            let (run, h, pid, started) = sql(path, r)?;
            let pid = u32::try_from(pid).unwrap_or(0);
            let gone = h == host && !crate::sys::pid_alive(pid);
            if gone || now.saturating_sub(started) > STALE_RUN_SECS {
                dead.push(run);
            }
        }
    }
    for run in dead {
        sql(path, tx.execute("DELETE FROM staging WHERE run = ?1", [run]))?;
        sql(path, tx.execute("DELETE FROM runs WHERE run = ?1", [run]))?;
    }
    sql(path, tx.execute("DELETE FROM staging WHERE run NOT IN (SELECT run FROM runs)", [])).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry { ino: n as u64, size: 4, mtime_ns: 1, ctime_ns: 2, content: vec![ChunkRef { id: [n; 32], len: 4 }] }
    }

    fn key(g: &str) -> Key {
        Key { repository_id: "r".into(), generation: g.into() }
    }

    fn quiet() -> Notify {
        Arc::new(|_| {})
    }

    fn notes() -> (Notify, Arc<Mutex<Vec<String>>>) {
        let v = Arc::new(Mutex::new(Vec::new()));
        let w = v.clone();
        (Arc::new(move |m| w.lock().unwrap().push(m)), v)
    }

    #[test]
    fn staged_entries_are_invisible_until_commit() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), &key("g"), Path::new("/src"), 2, quiet()).unwrap();
        c.stage(b"a", &[(b"f".to_vec(), entry(1))], &[]);
        assert!(c.dir_entries(b"a").is_empty());
        c.commit();
        assert_eq!(c.dir_entries(b"a").get(b"f".as_slice()), Some(&entry(1)));
        // A run that stages a removal but never commits changes nothing.
        c.stage(b"a", &[], &[b"f".to_vec()]);
        drop(c);
        let c = FileCache::open(d.path(), &key("g"), Path::new("/src"), 2, quiet()).unwrap();
        assert_eq!(c.dir_entries(b"a").len(), 1);
        c.stage(b"a", &[], &[b"f".to_vec()]);
        c.commit();
        assert!(c.dir_entries(b"a").is_empty());
    }

    #[test]
    fn concurrent_runs_stage_apart_and_merge_only_their_own_rows() {
        let d = tempfile::tempdir().unwrap();
        let a = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        let b = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        assert_ne!(a.run_id(), b.run_id());
        a.stage(b"", &[(b"a".to_vec(), entry(1))], &[]);
        b.stage(b"", &[(b"b".to_vec(), entry(2))], &[]);
        // A third run opening now must not delete the live runs' staging.
        let c = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        b.commit();
        let got = c.dir_entries(b"");
        assert_eq!(got.len(), 1, "only b's row is merged: {got:?}");
        assert!(got.contains_key(b"b".as_slice()));
        a.commit();
        assert_eq!(c.dir_entries(b"").len(), 2);
    }

    #[test]
    fn new_generation_discards_cache_and_garbage_is_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), &key("g1"), Path::new("/src"), 1, quiet()).unwrap();
        c.stage(b"", &[(b"f".to_vec(), entry(1))], &[]);
        c.commit();
        drop(c);
        let (n, said) = notes();
        let c = FileCache::open(d.path(), &key("g2"), Path::new("/src"), 1, n).unwrap();
        assert!(c.dir_entries(b"").is_empty());
        assert!(said.lock().unwrap().iter().any(|m| m.contains("another state")), "{said:?}");
        let path = c.path.clone();
        drop(c);
        std::fs::write(&path, b"garbage garbage garbage").unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", path.display()));
        let (n, said) = notes();
        let c = FileCache::open(d.path(), &key("g2"), Path::new("/src"), 1, n).unwrap();
        assert!(c.dir_entries(b"").is_empty());
        assert!(said.lock().unwrap().iter().any(|m| m.contains("could not be read")), "{said:?}");
    }

    #[test]
    fn edited_swapped_and_wrong_typed_rows_are_misses_not_errors() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        c.stage(b"", &[(b"a".to_vec(), entry(1)), (b"b".to_vec(), entry(2)), (b"c".to_vec(), entry(3))], &[]);
        c.commit();
        let conn = Connection::open(&c.path).unwrap();
        // Swap a's and b's content; give c a text size.
        let ca: Vec<u8> = conn.query_row("SELECT content FROM files WHERE name = x'61'", [], |r| r.get(0)).unwrap();
        let cb: Vec<u8> = conn.query_row("SELECT content FROM files WHERE name = x'62'", [], |r| r.get(0)).unwrap();
        conn.execute("UPDATE files SET content = ?1 WHERE name = x'61'", [&cb]).unwrap();
        conn.execute("UPDATE files SET content = ?1 WHERE name = x'62'", [&ca]).unwrap();
        conn.execute("UPDATE files SET size = 'four' WHERE name = x'63'", []).unwrap();
        drop(conn);
        assert!(c.dir_entries(b"").is_empty());
        assert_eq!(c.bad_rows(), 3);
        // Forgotten at commit, so they are not reported again next run.
        c.commit();
        let conn = Connection::open(&c.path).unwrap();
        assert_eq!(conn.query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }

    #[test]
    fn a_killed_runs_staging_is_cleaned_up() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        c.stage(b"", &[(b"f".to_vec(), entry(1))], &[]);
        let conn = Connection::open(&c.path).unwrap();
        // Pretend the run belonged to a process that is gone.
        conn.execute("UPDATE runs SET pid = 0", []).unwrap();
        let path = c.path.clone();
        std::mem::forget(c);
        let _c2 = FileCache::open(d.path(), &key("g"), Path::new("/src"), 1, quiet()).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM staging", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "{}", path.display());
    }
}
