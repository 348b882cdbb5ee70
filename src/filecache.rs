//! The files cache: lets an incremental run skip reading files that have not changed.
//!
//! One SQLite file per (repository, source) in the user's cache directory
//! (`$COFFER_CACHE_DIR`, else `$XDG_CACHE_HOME/coffer`, else `~/.cache/coffer`). A file is
//! unchanged when its inode, size, mtime and ctime all equal the cached ones; its cached
//! content list is then reused without reading a byte.
//!
//! Safety rules:
//! - Entries written during a run go to a `staging` table and are merged into `files` only
//!   after the run's manifest is committed, so the cache never names a chunk that is not in a
//!   committed set (a killed run leaves staging rows, which the next run discards).
//! - A file whose mtime is within `RACY_NS` of the scan start is not cached: a write in the
//!   same timestamp tick after we read it could leave mtime unchanged.
//! - The cache records the index epoch it was built against; if the repository's epoch moved
//!   (a prune removed chunks), the whole cache is discarded.

use crate::error::{Error, IoContext, Result};
use crate::tree::ChunkRef;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files modified this close to the scan start are never trusted.
pub const RACY_NS: i64 = 2_000_000_000;

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

pub struct FileCache {
    path: PathBuf,
    /// Readers, one per worker thread; the writer has its own connection.
    readers: Vec<Mutex<Connection>>,
    writer: Mutex<Connection>,
    run: i64,
}

fn sql<T>(path: &Path, r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(|e| Error::index(path, e))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    dir BLOB NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (dir, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staging (
    run INTEGER NOT NULL, op INTEGER NOT NULL, dir BLOB NOT NULL, name BLOB NOT NULL,
    ino INTEGER, size INTEGER, mtime INTEGER, ctime INTEGER, content BLOB);
";
const CACHE_VERSION: i64 = 1;

impl FileCache {
    /// Opens (creating if needed) the cache for `source` in repository `repo_id`. A damaged
    /// cache is not an error: it is deleted and rebuilt, costing one full read.
    pub fn open(root: &Path, repo_id: &str, source: &Path, epoch: i64, threads: usize) -> Result<FileCache> {
        let dir = root.join(repo_id);
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        let key = blake3::hash(source.as_os_str().as_encoded_bytes()).to_hex();
        let path = dir.join(format!("files-{}.sqlite", &key[..16]));
        match FileCache::open_at(&path, epoch, threads) {
            Ok(c) => Ok(c),
            Err(_) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                FileCache::open_at(&path, epoch, threads)
            }
        }
    }

    fn open_at(path: &Path, epoch: i64, threads: usize) -> Result<FileCache> {
        let open = || -> Result<Connection> {
            let c = sql(path, Connection::open(path))?;
            sql(path, c.busy_timeout(std::time::Duration::from_secs(60)))?;
            sql(path, c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())))?;
            sql(path, c.pragma_update(None, "synchronous", "NORMAL"))?;
            Ok(c)
        };
        let w = open()?;
        let version: i64 = sql(path, w.pragma_query_value(None, "user_version", |r| r.get(0)))?;
        if version != 0 && version != CACHE_VERSION {
            return Err(Error::corrupt(path, 0, "files cache of another version"));
        }
        sql(path, w.execute_batch(SCHEMA))?;
        sql(path, w.pragma_update(None, "user_version", CACHE_VERSION))?;
        // Leftovers of a run that never committed.
        sql(path, w.execute("DELETE FROM staging", []))?;
        let old_epoch: Option<String> = sql(
            path,
            w.query_row("SELECT value FROM meta WHERE key='epoch'", [], |r| r.get(0)).map(Some).or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            }),
        )?;
        if old_epoch.as_deref() != Some(&epoch.to_string()) {
            sql(path, w.execute("DELETE FROM files", []))?;
            sql(path, w.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?1)", [epoch.to_string()]))?;
        }
        let run: i64 = sql(path, w.query_row("SELECT coalesce(max(run), 0) + 1 FROM staging", [], |r| r.get(0)))?;
        let readers = (0..threads.max(1) + 1).map(|_| open().map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        Ok(FileCache { path: path.to_path_buf(), readers, writer: Mutex::new(w), run })
    }

    /// Every cached entry of one directory (`dir` is the path relative to the source root).
    pub fn dir_entries(&self, dir: &[u8]) -> Result<HashMap<Vec<u8>, Entry>> {
        let slot =
            rayon::current_thread_index().map(|i| i % (self.readers.len() - 1)).unwrap_or(self.readers.len() - 1);
        let conn = self.readers[slot].lock().unwrap_or_else(|p| p.into_inner());
        let mut st = sql(
            &self.path,
            conn.prepare_cached("SELECT name, ino, size, mtime, ctime, content FROM files WHERE dir = ?1"),
        )?;
        let rows = sql(
            &self.path,
            st.query_map([dir], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            }),
        )?;
        let mut out = HashMap::new();
        for r in rows {
            let (name, ino, size, mtime, ctime, content) = sql(&self.path, r)?;
            // A row we cannot decode is simply not a cache hit.
            if let Some(content) = decode_content(&content) {
                out.insert(
                    name,
                    Entry { ino: ino as u64, size: size as u64, mtime_ns: mtime, ctime_ns: ctime, content },
                );
            }
        }
        Ok(out)
    }

    /// Stages the new state of one directory: `upserts` are files to (re)cache, `removed`
    /// names that were cached but are gone or no longer trustworthy.
    pub fn stage(&self, dir: &[u8], upserts: &[(Vec<u8>, Entry)], removed: &[Vec<u8>]) -> Result<()> {
        if upserts.is_empty() && removed.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sql(&self.path, conn.transaction())?;
        {
            let mut st =
                sql(&self.path, tx.prepare_cached("INSERT INTO staging VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))?;
            for (name, e) in upserts {
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
                        encode_content(&e.content)
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
                        None::<Vec<u8>>
                    ]),
                )?;
            }
        }
        sql(&self.path, tx.commit())
    }

    /// Merges this run's staged entries into the cache. Call only after the set is committed.
    pub fn commit(&self) -> Result<()> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = sql(&self.path, conn.transaction())?;
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
                "INSERT OR REPLACE INTO files SELECT dir, name, ino, size, mtime, ctime, content FROM staging WHERE run = ?1 AND op = 0",
                [self.run],
            ),
        )?;
        sql(&self.path, tx.execute("DELETE FROM staging WHERE run = ?1", [self.run]))?;
        sql(&self.path, tx.commit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> Entry {
        Entry { ino: n as u64, size: 4, mtime_ns: 1, ctime_ns: 2, content: vec![ChunkRef { id: [n; 32], len: 4 }] }
    }

    #[test]
    fn staged_entries_are_invisible_until_commit() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), "r", Path::new("/src"), 0, 2).unwrap();
        c.stage(b"a", &[(b"f".to_vec(), entry(1))], &[]).unwrap();
        assert!(c.dir_entries(b"a").unwrap().is_empty());
        c.commit().unwrap();
        assert_eq!(c.dir_entries(b"a").unwrap().get(b"f".as_slice()), Some(&entry(1)));
        // A run that stages a removal but never commits changes nothing.
        c.stage(b"a", &[], &[b"f".to_vec()]).unwrap();
        drop(c);
        let c = FileCache::open(d.path(), "r", Path::new("/src"), 0, 2).unwrap();
        assert_eq!(c.dir_entries(b"a").unwrap().len(), 1);
        c.stage(b"a", &[], &[b"f".to_vec()]).unwrap();
        c.commit().unwrap();
        assert!(c.dir_entries(b"a").unwrap().is_empty());
    }

    #[test]
    fn new_epoch_discards_cache_and_garbage_is_rebuilt() {
        let d = tempfile::tempdir().unwrap();
        let c = FileCache::open(d.path(), "r", Path::new("/src"), 0, 1).unwrap();
        c.stage(b"", &[(b"f".to_vec(), entry(1))], &[]).unwrap();
        c.commit().unwrap();
        drop(c);
        let c = FileCache::open(d.path(), "r", Path::new("/src"), 1, 1).unwrap();
        assert!(c.dir_entries(b"").unwrap().is_empty());
        let path = c.path.clone();
        drop(c);
        std::fs::write(&path, b"garbage garbage garbage").unwrap();
        let _ = std::fs::remove_file(format!("{}-wal", path.display()));
        let c = FileCache::open(d.path(), "r", Path::new("/src"), 1, 1).unwrap();
        assert!(c.dir_entries(b"").unwrap().is_empty());
    }
}
