//! The SQLite catalog `index.sqlite`: which pack holds each chunk, and what packs exist.
//!
//! It is a local cache (under the cache directory) of the repository's index objects, kept in
//! step by [`crate::catalog`]; `repair index` rebuilds it from the packs' trailers
//! ([`rebuild`]) and rewrites the index objects from it. It is never loaded whole into
//! memory: lookups go to SQLite, fronted by an in-memory [`Filter`] that answers "certainly
//! not stored" for most new chunks. Rows for a pack are inserted only after the pack is
//! durable (packs → index objects → manifest).

use crate::error::{Error, Result};
use crate::id::{ChunkId, Id, PackId};
use crate::pack::{BlobKind, Compression, Entry, Finished};
use crate::storage::{Kind, Storage};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// `PRAGMA user_version` of the schema this build writes.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packs (
    n INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    created INTEGER NOT NULL,
    verified INTEGER
);
CREATE TABLE IF NOT EXISTS chunks (
    id BLOB PRIMARY KEY,
    pack INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    compression INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_pack ON chunks(pack);
CREATE TABLE IF NOT EXISTS index_objects (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS covered (
    object TEXT NOT NULL,
    pack INTEGER NOT NULL,
    PRIMARY KEY (object, pack)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS covered_by_pack ON covered(pack);
";

/// Chunk copies `verify` found damaged or missing, by chunk id and the pack of that copy.
/// Added to version-1 catalogs when first opened for writing (a catalog without it simply
/// knows of no damage); see docs/format.md, "Changes".
const DAMAGED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS damaged (
    id BLOB NOT NULL,
    pack BLOB NOT NULL,
    why TEXT NOT NULL,
    found INTEGER NOT NULL,
    PRIMARY KEY (id, pack)
) WITHOUT ROWID;
";

/// Where a chunk lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub entry: Entry,
}

/// A connection to the catalog. One per thread (rusqlite connections are not `Sync`).
pub struct Index {
    pub(crate) path: PathBuf,
    pub(crate) conn: Connection,
}

/// A path as the file part of an SQLite URI: `%`, `?`, `#` and every byte outside printable
/// ASCII percent-escaped (SQLite decodes them back to the raw bytes).
fn uri_escape(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' | 0..=0x20 | 0x7f.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// A chunk row as selected by `lookup` and `needed_entries`: the first column is the chunk's
/// id or its pack's id (whichever the query needs), then offset, lengths, kind, compression.
struct ChunkRow {
    key: Vec<u8>,
    offset: i64,
    stored: i64,
    raw: i64,
    kind: i64,
    compression: i64,
}

impl ChunkRow {
    fn read(r: &rusqlite::Row) -> rusqlite::Result<ChunkRow> {
        Ok(ChunkRow {
            key: r.get(0)?,
            offset: r.get(1)?,
            stored: r.get(2)?,
            raw: r.get(3)?,
            kind: r.get(4)?,
            compression: r.get(5)?,
        })
    }

    /// The entry of chunk `id`, or `None` when a value is out of range.
    fn entry(&self, id: ChunkId) -> Option<Entry> {
        Some(Entry {
            id,
            kind: match self.kind {
                0 => BlobKind::Data,
                1 => BlobKind::Tree,
                _ => return None,
            },
            compression: match self.compression {
                0 => Compression::None,
                1 => Compression::Zstd,
                _ => return None,
            },
            offset: u64::try_from(self.offset).ok()?,
            stored_len: u32::try_from(self.stored).ok()?,
            raw_len: u32::try_from(self.raw).ok()?,
        })
    }
}

/// What [`insert_pack`] does with a chunk that already has a row.
#[derive(Clone, Copy)]
pub(crate) enum Existing {
    /// Keep its first location (a backup: a concurrent run stored it too).
    Keep,
    /// Point it at the new pack (prune moved it there).
    Repoint,
}

/// Inserts a pack row (if new) and its chunks' rows inside `tx`. Returns the pack's row.
pub(crate) fn insert_pack(tx: &Connection, path: &Path, pack: &Finished, now: i64, existing: Existing) -> Result<i64> {
    sql(
        path,
        tx.execute(
            "INSERT OR IGNORE INTO packs (id, size, chunks, created) VALUES (?1, ?2, ?3, ?4)",
            params![&pack.id.as_bytes()[..], pack.size as i64, pack.entries.len() as i64, now],
        ),
    )?;
    let n: i64 = sql(path, tx.query_row("SELECT n FROM packs WHERE id = ?1", [&pack.id.as_bytes()[..]], |r| r.get(0)))?;
    // A backup keeps a chunk's first location unless that copy is known damaged: then the
    // fresh copy it just stored replaces it, so every set naming the chunk is whole again.
    let insert = match existing {
        Existing::Keep => {
            "INSERT INTO chunks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET pack = excluded.pack, offset = excluded.offset,
                 stored_len = excluded.stored_len, raw_len = excluded.raw_len, kind = excluded.kind,
                 compression = excluded.compression
             WHERE EXISTS (SELECT 1 FROM damaged d JOIN packs p ON p.id = d.pack
                           WHERE d.id = chunks.id AND p.n = chunks.pack)"
        }
        Existing::Repoint => "INSERT OR REPLACE INTO chunks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    };
    let mut st = sql(path, tx.prepare_cached(insert))?;
    for e in &pack.entries {
        let row = params![
            &e.id.as_bytes()[..],
            n,
            e.offset as i64,
            e.stored_len as i64,
            e.raw_len as i64,
            e.kind as u8 as i64,
            e.compression as u8 as i64
        ];
        sql(path, st.execute(row))?;
    }
    Ok(n)
}

/// The entries the chunk rows pointing into pack row `n` give, in offset order (a row with
/// values out of range is an error naming the catalog).
pub(crate) fn rows_of_pack(conn: &Connection, path: &Path, n: i64) -> Result<Vec<Entry>> {
    let mut st = sql(
        path,
        conn.prepare_cached(
            "SELECT id, offset, stored_len, raw_len, kind, compression FROM chunks WHERE pack = ?1 ORDER BY offset",
        ),
    )?;
    let rows = sql(path, st.query_map([n], ChunkRow::read))?;
    let mut out = Vec::new();
    for r in rows {
        let row = sql(path, r)?;
        let bad = || Error::corrupt(path, 0, format!("bad chunk row in pack row {n}"));
        out.push(ChunkId::from_slice(&row.key).and_then(|id| row.entry(id)).ok_or_else(bad)?);
    }
    Ok(out)
}

/// 128 random bits as hex: a catalog generation.
fn random_generation() -> String {
    let mut b = [0u8; 16];
    // No entropy is a broken system; a time-derived value still differs between states.
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        b = (t.as_nanos() ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Gives the catalog a fresh generation (in the caller's transaction, if any).
pub(crate) fn set_generation(conn: &Connection, path: &Path) -> Result<()> {
    sql(path, conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?1)", [random_generation()])).map(|_| ())
}

pub(crate) fn sql<T>(path: &Path, r: rusqlite::Result<T>) -> Result<T> {
    r.map_err(|e| Error::index(path, e))
}

impl Index {
    /// Creates a fresh catalog (used by `init` and by [`rebuild`]).
    pub fn create(path: &Path, repository_id: &str) -> Result<Index> {
        crate::store::touch_private(path)?;
        let conn = sql(path, Connection::open(path))?;
        let idx = Index { path: path.to_path_buf(), conn };
        idx.configure()?;
        sql(path, idx.conn.execute_batch(SCHEMA))?;
        sql(path, idx.conn.execute_batch(DAMAGED_SCHEMA))?;
        sql(path, idx.conn.execute("INSERT OR REPLACE INTO meta VALUES ('repository_id', ?1)", [repository_id]))?;
        // A new (or rebuilt) catalog is a new state: files caches built before must not be used.
        set_generation(&idx.conn, path)?;
        sql(path, idx.conn.pragma_update(None, "user_version", SCHEMA_VERSION))?;
        Ok(idx)
    }

    /// Opens an existing catalog, checking it is one of ours, of a known version, for this
    /// repository. A damaged or missing catalog is an error that says how to rebuild it.
    pub fn open(path: &Path, repository_id: &str) -> Result<Index> {
        let hint = "run `coffer repair index` to rebuild it from the packs";
        if !path.exists() {
            return Err(Error::corrupt(path, 0, format!("index database is missing; {hint}")));
        }
        let bad = |what: String| Error::corrupt(path, 0, format!("{what}; {hint}"));
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut read_only = crate::sys::read_only(dir);
        let idx = if read_only {
            Index { path: path.to_path_buf(), conn: Index::open_read_only(path)? }
        } else {
            let conn = sql(path, Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE))?;
            let idx = Index { path: path.to_path_buf(), conn };
            match idx.configure() {
                Ok(()) => idx,
                // A full disk: opening in WAL mode needs room for the -wal and -shm files,
                // reading does not. Read the catalog read-only, and say why if even that fails.
                Err(e) if crate::sys::no_space(dir) => {
                    drop(idx);
                    eprintln!(
                        "coffer: note: no space left on device for {}: reading the catalog read-only ({e})",
                        dir.display()
                    );
                    read_only = true;
                    let conn = Index::open_read_only(path).map_err(|e2| {
                        Error::Failed(format!(
                            "{}: no space left on device, and the catalog can't be read without writing ({e2})",
                            path.display()
                        ))
                    })?;
                    Index { path: path.to_path_buf(), conn }
                }
                Err(e) => return Err(bad(format!("index database unreadable ({e})"))),
            }
        };
        let version: i64 = idx
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| bad(format!("index database unreadable ({e})")))?;
        if version != SCHEMA_VERSION {
            return Err(bad(format!("index schema version {version}, expected {SCHEMA_VERSION}")));
        }
        let rid: Option<String> = idx
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'repository_id'", [], |r| r.get(0))
            .optional()
            .map_err(|e| bad(format!("index database unreadable ({e})")))?;
        if rid.as_deref() != Some(repository_id) {
            return Err(bad("index database belongs to another repository".into()));
        }
        idx.ensure_damaged_table(read_only)?;
        Ok(idx)
    }

    /// Makes sure the `damaged` table exists. A catalog written before it existed gets it
    /// (a no-op when present, so nothing is written then); one that can't be written gets an
    /// empty temporary table of that name, so every query can name it.
    fn ensure_damaged_table(&self, read_only: bool) -> Result<()> {
        let present: bool = sql(
            &self.path,
            self.conn
                .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'damaged'", [], |_| Ok(()))
                .optional()
                .map(|r| r.is_some()),
        )?;
        if present {
            return Ok(());
        }
        if !read_only && self.conn.execute_batch(DAMAGED_SCHEMA).is_ok() {
            return Ok(());
        }
        sql(&self.path, self.conn.execute_batch(&DAMAGED_SCHEMA.replace("CREATE TABLE", "CREATE TEMP TABLE")))
    }

    /// Opens the catalog of a repository that can't be written (read-only media). Without a
    /// write-ahead log everything is in the database file, which is then opened `immutable`
    /// (SQLite needs no -shm file and takes no locks). With one left by an interrupted run,
    /// SQLite can still read it if its -shm file exists; otherwise the log can't be read and
    /// the error says how to get at the data.
    fn open_read_only(path: &Path) -> Result<Connection> {
        let wal = path.with_extension("sqlite-wal");
        let pending = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opened = if pending {
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        } else {
            Connection::open_with_flags(format!("file:{}?immutable=1", uri_escape(path)), flags)
        };
        let conn = opened.and_then(|c| c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map(|()| c));
        conn.map_err(|e| {
            let why = if pending {
                format!(
                    "the repository is read-only and its index has a write-ahead log ({}) from an interrupted run                      that can't be read without writing; mount it read-write once, or copy the repository ({e})",
                    wal.display()
                )
            } else {
                format!("the repository is read-only and its index could not be read ({e})")
            };
            Error::corrupt(path, 0, why)
        })
    }

    fn configure(&self) -> Result<()> {
        // WAL lets readers (restore, concurrent backups' lookups) proceed while one run writes;
        // busy_timeout turns writer contention between two backups into waiting, not failing.
        sql(&self.path, self.conn.busy_timeout(std::time::Duration::from_secs(60)))?;
        let mode: String = sql(&self.path, self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)))?;
        if mode.to_lowercase() != "wal" {
            return Err(Error::corrupt(&self.path, 0, format!("cannot enable WAL (got {mode})")));
        }
        sql(&self.path, self.conn.pragma_update(None, "synchronous", "NORMAL"))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lookup(&self, id: &ChunkId) -> Result<Option<Location>> {
        let mut st = sql(
            &self.path,
            self.conn.prepare_cached(
                "SELECT p.id, c.offset, c.stored_len, c.raw_len, c.kind, c.compression
                 FROM chunks c JOIN packs p ON p.n = c.pack WHERE c.id = ?1",
            ),
        )?;
        let row = st.query_row([&id.as_bytes()[..]], ChunkRow::read).optional();
        let Some(row) = sql(&self.path, row)? else { return Ok(None) };
        let bad = || Error::corrupt(&self.path, 0, format!("bad row for chunk {}", id.short()));
        let pack = PackId::from_slice(&row.key).ok_or_else(bad)?;
        Ok(Some(Location { pack, entry: row.entry(*id).ok_or_else(bad)? }))
    }

    /// Is a usable copy of the chunk stored? A row whose copy `verify` found damaged or
    /// missing does not count: the backup that meets the chunk's bytes stores them again.
    pub fn contains(&self, id: &ChunkId) -> Result<bool> {
        let mut st = sql(
            &self.path,
            self.conn.prepare_cached(
                "SELECT 1 FROM chunks c WHERE c.id = ?1 AND NOT EXISTS
                 (SELECT 1 FROM damaged d JOIN packs p ON p.id = d.pack WHERE d.id = c.id AND p.n = c.pack)",
            ),
        )?;
        sql(&self.path, st.exists([&id.as_bytes()[..]]))
    }

    /// Records a durable pack and its chunks in one transaction. A chunk already stored in
    /// another pack keeps its first location (a concurrent run stored it too).
    pub fn add_pack(&mut self, pack: &Finished, now: i64) -> Result<()> {
        let path = self.path.clone();
        let tx = sql(&path, self.conn.transaction())?;
        insert_pack(&tx, &path, pack, now, Existing::Keep)?;
        sql(&path, tx.commit())
    }

    /// Calls `f` with every chunk id (to build the in-memory filter), streaming.
    pub fn for_each_chunk_id(&self, mut f: impl FnMut(Id)) -> Result<()> {
        let mut st = sql(&self.path, self.conn.prepare("SELECT id FROM chunks"))?;
        let mut rows = sql(&self.path, st.query([]))?;
        while let Some(r) = sql(&self.path, rows.next())? {
            let b: Vec<u8> = sql(&self.path, r.get(0))?;
            if let Some(id) = Id::from_slice(&b) {
                f(id);
            }
        }
        Ok(())
    }

    /// Bumped by every operation that removes chunks (prune). Lost by `repair index`; files
    /// caches are keyed by [`Index::generation`] instead.
    pub fn epoch(&self) -> Result<i64> {
        let v: Option<String> = sql(
            &self.path,
            self.conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0)).optional(),
        )?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The catalog's generation: a random value that every operation removing chunks or
    /// rebuilding the catalog (prune, `repair index`) replaces. Files caches are keyed by it.
    /// A catalog made before generations existed gets one now (the caller can write).
    pub fn generation(&self) -> Result<String> {
        let get = || -> Result<Option<String>> {
            sql(
                &self.path,
                self.conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get(0)).optional(),
            )
        };
        if let Some(g) = get()? {
            return Ok(g);
        }
        let fresh = random_generation();
        sql(&self.path, self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', ?1)", [&fresh]))?;
        Ok(get()?.unwrap_or(fresh))
    }

    /// Which of `ids` have a usable catalog row (not a copy recorded damaged): one indexed
    /// lookup each (no pack is read), all in one read transaction, because a statement outside
    /// a transaction takes and drops the database's shared lock each time, and that costs more
    /// than the lookup (three times the whole unchanged night's time, measured).
    pub fn present<'i>(&self, ids: impl IntoIterator<Item = &'i ChunkId>) -> Result<HashSet<ChunkId>> {
        let tx = sql(&self.path, self.conn.unchecked_transaction())?;
        // `contains` counts a copy verify found damaged as absent, so a cached entry naming
        // one is read again and its bytes stored anew; with no damage recorded (the usual
        // night) the plain lookup says the same for less.
        let any_damage: bool =
            sql(&self.path, self.conn.query_row("SELECT EXISTS (SELECT 1 FROM damaged)", [], |r| r.get(0)))?;
        let mut plain = sql(&self.path, self.conn.prepare_cached("SELECT 1 FROM chunks WHERE id = ?1"))?;
        let mut out = HashSet::new();
        for id in ids {
            if out.contains(id) {
                continue;
            }
            let found =
                if any_damage { self.contains(id)? } else { sql(&self.path, plain.exists([&id.as_bytes()[..]]))? };
            if found {
                out.insert(*id);
            }
        }
        drop(plain);
        sql(&self.path, tx.commit())?;
        Ok(out)
    }

    /// About how many chunks the catalog holds, cheaply (from the pack rows; an id stored in
    /// two packs counts twice).
    pub fn chunk_estimate(&self) -> Result<u64> {
        sql(&self.path, self.conn.query_row("SELECT coalesce(sum(chunks), 0) FROM packs", [], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
    }

    pub fn chunk_count(&self) -> Result<u64> {
        sql(&self.path, self.conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
    }

    /// `(count, total bytes)` of packs, and `(raw, stored)` bytes of all chunks.
    pub fn totals(&self) -> Result<Totals> {
        let (packs, pack_bytes) = sql(
            &self.path,
            self.conn.query_row("SELECT count(*), coalesce(sum(size),0) FROM packs", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            }),
        )?;
        let (chunks, raw, stored) = sql(
            &self.path,
            self.conn.query_row(
                "SELECT count(*), coalesce(sum(raw_len),0), coalesce(sum(stored_len),0) FROM chunks",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
            ),
        )?;
        Ok(Totals {
            packs: packs as u64,
            pack_bytes: pack_bytes as u64,
            chunks: chunks as u64,
            raw_bytes: raw as u64,
            stored_bytes: stored as u64,
        })
    }

    /// Records that a pack was read whole and found intact at `now` (seconds).
    pub fn set_verified(&self, pack: &PackId, now: i64) -> Result<()> {
        sql(
            &self.path,
            self.conn.execute("UPDATE packs SET verified = ?1 WHERE id = ?2", params![now, &pack.as_bytes()[..]]),
        )
        .map(|_| ())
    }

    /// Every indexed pack with its size and when it was last read-verified (never: `None`).
    pub fn packs_verified(&self) -> Result<Vec<(PackId, u64, Option<i64>)>> {
        let mut st = sql(&self.path, self.conn.prepare("SELECT id, size, verified FROM packs ORDER BY id"))?;
        let rows = sql(
            &self.path,
            st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?))),
        )?;
        let mut out = Vec::new();
        for r in rows {
            let (id, size, v) = sql(&self.path, r)?;
            let id = PackId::from_slice(&id).ok_or_else(|| Error::corrupt(&self.path, 0, "bad pack id row"))?;
            out.push((id, size as u64, v));
        }
        Ok(out)
    }

    /// Every indexed pack with its recorded size.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut st = sql(&self.path, self.conn.prepare("SELECT id, size FROM packs ORDER BY id"))?;
        let rows = sql(&self.path, st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))))?;
        let mut out = Vec::new();
        for r in rows {
            let (id, size) = sql(&self.path, r)?;
            let id = PackId::from_slice(&id).ok_or_else(|| Error::corrupt(&self.path, 0, "bad pack id row"))?;
            out.push((id, size as u64));
        }
        Ok(out)
    }
}

/// What the catalog knows about damage (`damaged`): which chunk copies `verify` found
/// unreadable. A damaged copy is not "stored" for the dedup decision ([`Index::contains`]),
/// and a backup that stores the chunk again repoints its row to the new copy.
impl Index {
    /// Like [`Index::lookup`], with why the located copy is known damaged, if it is.
    pub fn lookup_damage(&self, id: &ChunkId) -> Result<Option<(Location, Option<String>)>> {
        let Some(loc) = self.lookup(id)? else { return Ok(None) };
        let mut st = sql(&self.path, self.conn.prepare_cached("SELECT why FROM damaged WHERE id = ?1 AND pack = ?2"))?;
        let why = sql(
            &self.path,
            st.query_row(params![&id.as_bytes()[..], &loc.pack.as_bytes()[..]], |r| r.get::<_, String>(0)).optional(),
        )?;
        Ok(Some((loc, why)))
    }

    /// The catalog's rows that point into `pack`, in offset order: each the entry it
    /// describes, or (id, why) when a value is out of range.
    pub fn pack_rows(&self, pack: &PackId) -> Result<Vec<std::result::Result<Entry, (ChunkId, String)>>> {
        let mut st = sql(
            &self.path,
            self.conn.prepare(
                "SELECT c.id, c.offset, c.stored_len, c.raw_len, c.kind, c.compression
                 FROM chunks c JOIN packs p ON p.n = c.pack WHERE p.id = ?1 ORDER BY c.offset",
            ),
        )?;
        let rows = sql(&self.path, st.query_map([&pack.as_bytes()[..]], ChunkRow::read))?;
        let mut out = Vec::new();
        for r in rows {
            let row = sql(&self.path, r)?;
            let Some(id) = ChunkId::from_slice(&row.key) else { continue };
            out.push(row.entry(id).ok_or((id, "the catalog row holds values out of range".to_string())));
        }
        Ok(out)
    }

    /// Records that the copy of `id` in `pack` is damaged or missing.
    pub fn record_damaged(&self, id: &ChunkId, pack: &PackId, why: &str, now: i64) -> Result<()> {
        let mut st =
            sql(&self.path, self.conn.prepare_cached("INSERT OR REPLACE INTO damaged VALUES (?1, ?2, ?3, ?4)"))?;
        sql(&self.path, st.execute(params![&id.as_bytes()[..], &pack.as_bytes()[..], why, now])).map(|_| ())
    }

    /// Records every chunk row pointing into `pack` as damaged (the pack is missing or cut
    /// short, or its trailer is unreadable and it was not read). Returns how many.
    pub fn record_pack_damaged(&self, pack: &PackId, why: &str, now: i64) -> Result<u64> {
        sql(
            &self.path,
            self.conn.execute(
                "INSERT OR REPLACE INTO damaged SELECT c.id, p.id, ?2, ?3 FROM chunks c JOIN packs p ON p.n = c.pack
                 WHERE p.id = ?1",
                params![&pack.as_bytes()[..], why, now],
            ),
        )
        .map(|n| n as u64)
    }

    /// Forgets damage recorded for the copy of `id` in `pack` (a full read found it intact).
    pub fn clear_damaged(&self, id: &ChunkId, pack: &PackId) -> Result<()> {
        let mut st = sql(&self.path, self.conn.prepare_cached("DELETE FROM damaged WHERE id = ?1 AND pack = ?2"))?;
        sql(&self.path, st.execute(params![&id.as_bytes()[..], &pack.as_bytes()[..]])).map(|_| ())
    }

    /// Every recorded damaged copy as (chunk, pack, why), to carry over a rebuild.
    pub fn damaged_rows(&self) -> Result<Vec<(ChunkId, PackId, String, i64)>> {
        let mut st = sql(&self.path, self.conn.prepare("SELECT id, pack, why, found FROM damaged"))?;
        let rows = sql(
            &self.path,
            st.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            }),
        )?;
        let mut out = Vec::new();
        for r in rows {
            let (id, pack, why, found) = sql(&self.path, r)?;
            if let (Some(id), Some(pack)) = (ChunkId::from_slice(&id), PackId::from_slice(&pack)) {
                out.push((id, pack, why, found));
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub packs: u64,
    pub pack_bytes: u64,
    pub chunks: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// What `prune` needs from the catalog: a temporary table of the chunk ids the remaining sets
/// name (on disk in SQLite's temp store, so memory stays bounded however large the repository
/// is), per-pack usage against it, and one transaction that swaps repacked packs in.
impl Index {
    /// Starts a fresh, empty `needed` table on this connection (temporary: it disappears with
    /// the connection) and opens a transaction on it, so marking is one commit, not millions.
    pub fn begin_marking(&self) -> Result<()> {
        sql(
            &self.path,
            self.conn.execute_batch(
                "DROP TABLE IF EXISTS temp.needed;
                 CREATE TEMP TABLE needed (id BLOB PRIMARY KEY) WITHOUT ROWID;
                 BEGIN;",
            ),
        )
    }

    /// Marks a chunk (or tree) as needed; returns false when it was already marked.
    pub fn mark_needed(&self, id: &ChunkId) -> Result<bool> {
        let mut st = sql(&self.path, self.conn.prepare_cached("INSERT OR IGNORE INTO temp.needed VALUES (?1)"))?;
        sql(&self.path, st.execute([&id.as_bytes()[..]])).map(|n| n == 1)
    }

    pub fn end_marking(&self) -> Result<()> {
        sql(&self.path, self.conn.execute_batch("COMMIT;"))
    }

    /// How many marked chunks have no index row, and up to `sample` of them.
    pub fn needed_missing(&self, sample: usize) -> Result<(u64, Vec<ChunkId>)> {
        let n: i64 = sql(
            &self.path,
            self.conn.query_row(
                "SELECT count(*) FROM temp.needed k WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = k.id)",
                [],
                |r| r.get(0),
            ),
        )?;
        let mut st = sql(
            &self.path,
            self.conn.prepare(
                "SELECT k.id FROM temp.needed k WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = k.id) LIMIT ?1",
            ),
        )?;
        let rows = sql(&self.path, st.query_map([sample as i64], |r| r.get::<_, Vec<u8>>(0)))?;
        let mut ids = Vec::new();
        for r in rows {
            let b = sql(&self.path, r)?;
            ids.push(ChunkId::from_slice(&b).ok_or_else(|| Error::corrupt(&self.path, 0, "bad chunk id row"))?);
        }
        Ok((n as u64, ids))
    }

    pub fn needed_count(&self) -> Result<u64> {
        sql(&self.path, self.conn.query_row("SELECT count(*) FROM temp.needed", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }

    /// Every indexed pack with its trailer entry count, its index rows, and how many of those
    /// rows (and stored bytes) are marked needed. Packs with no rows at all are included.
    pub fn pack_usage(&self) -> Result<Vec<PackUsage>> {
        let mut st = sql(
            &self.path,
            self.conn.prepare(
                "SELECT p.n, p.id, p.size, p.chunks, count(c.id), count(k.id),
                        coalesce(sum(CASE WHEN k.id IS NOT NULL THEN c.stored_len ELSE 0 END), 0),
                        count(CASE WHEN k.id IS NOT NULL AND EXISTS
                            (SELECT 1 FROM damaged d WHERE d.id = c.id AND d.pack = p.id) THEN 1 END)
                 FROM packs p LEFT JOIN chunks c ON c.pack = p.n LEFT JOIN temp.needed k ON k.id = c.id
                 GROUP BY p.n ORDER BY p.n",
            ),
        )?;
        let rows = sql(
            &self.path,
            st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            }),
        )?;
        let mut out = Vec::new();
        for r in rows {
            let (n, id, size, entries, rows, needed, needed_bytes, needed_damaged) = sql(&self.path, r)?;
            let id = PackId::from_slice(&id).ok_or_else(|| Error::corrupt(&self.path, 0, "bad pack id row"))?;
            out.push(PackUsage {
                n,
                id,
                size: size as u64,
                entries: entries as u64,
                rows: rows as u64,
                needed: needed as u64,
                needed_bytes: needed_bytes as u64,
                needed_damaged: needed_damaged as u64,
            });
        }
        Ok(out)
    }

    /// Starts the one transaction in which prune swaps packs (`BEGIN IMMEDIATE`: it takes
    /// the write lock now, not halfway through). Commits are made fully durable
    /// (`synchronous=FULL`) on this connection from here on: prune deletes pack files right
    /// after the commit, so the commit must survive a power cut, not only a killed process.
    pub fn begin_rewrite(&mut self) -> Result<Rewrite<'_>> {
        sql(&self.path, self.conn.pragma_update(None, "synchronous", "FULL"))?;
        let path = self.path.clone();
        let tx = sql(&path, self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate))?;
        Ok(Rewrite { path, tx })
    }
}

/// An indexed pack measured against the `needed` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackUsage {
    /// The pack's row number in `packs`.
    pub n: i64,
    pub id: PackId,
    pub size: u64,
    /// Entries in the pack's trailer.
    pub entries: u64,
    /// Chunk rows that point into this pack (duplicates stored elsewhere first have none).
    pub rows: u64,
    pub needed: u64,
    pub needed_bytes: u64,
    /// Needed rows whose copy here is known damaged (no good copy exists elsewhere, or the
    /// row would point at it): such a pack is kept as it is, never repacked or deleted.
    pub needed_damaged: u64,
}

/// Prune's open transaction. Dropped without [`Rewrite::commit`], it rolls back: the index is
/// then exactly as before and every new pack is merely unindexed.
pub struct Rewrite<'a> {
    path: PathBuf,
    tx: rusqlite::Transaction<'a>,
}

impl Rewrite<'_> {
    /// The transaction, for the catalog's index-object bookkeeping ([`crate::catalog`]).
    pub(crate) fn conn(&self) -> (&Connection, &Path) {
        (&self.tx, &self.path)
    }

    /// The needed chunks whose rows point into pack row `n`, in pack order.
    pub fn needed_entries(&self, n: i64) -> Result<Vec<Entry>> {
        let mut st = sql(
            &self.path,
            self.tx.prepare_cached(
                "SELECT c.id, c.offset, c.stored_len, c.raw_len, c.kind, c.compression
                 FROM chunks c JOIN temp.needed k ON k.id = c.id WHERE c.pack = ?1 ORDER BY c.offset",
            ),
        )?;
        let rows = sql(&self.path, st.query_map([n], ChunkRow::read))?;
        let mut out = Vec::new();
        for r in rows {
            let bad = || Error::corrupt(&self.path, 0, format!("bad chunk row in pack row {n}"));
            let row = sql(&self.path, r)?;
            out.push(ChunkId::from_slice(&row.key).and_then(|id| row.entry(id)).ok_or_else(bad)?);
        }
        Ok(out)
    }

    /// Records a new (durable) pack; its chunks' rows are repointed to it. Returns its row.
    pub fn add_pack(&self, pack: &Finished, now: i64) -> Result<i64> {
        insert_pack(&self.tx, &self.path, pack, now, Existing::Repoint)
    }

    /// Drops pack row `n` and the rows of chunks still pointing into it (those not moved).
    pub fn remove_pack(&self, n: i64) -> Result<()> {
        crate::catalog::remove_pack_rows(&self.tx, &self.path, n)
    }

    /// Raises `meta.epoch`, writes a fresh `meta.generation` (files caches built before it
    /// are not used) and commits. Returns the new epoch.
    pub fn commit(self) -> Result<i64> {
        let p = self.path.clone();
        let old: Option<String> =
            sql(&p, self.tx.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0)).optional())?;
        let epoch = old.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + 1;
        sql(&p, self.tx.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?1)", [epoch.to_string()]))?;
        set_generation(&self.tx, &p)?;
        sql(&p, self.tx.commit())?;
        Ok(epoch)
    }
}

/// What [`rebuild`] did.
#[derive(Debug, Default)]
pub struct Rebuilt {
    /// Packs indexed from their trailers.
    pub packs: u64,
    /// Packs whose trailer could not be used, whatever was salvaged from them.
    pub bad: Vec<Error>,
    /// One line per damaged pack whose blobs were salvaged into a new pack.
    pub salvaged: Vec<String>,
}

/// Rebuilds the catalog from the packs' trailers into `path` (written to a temporary file and
/// renamed over, so a failed rebuild leaves the old catalog). A pack whose trailer can't be
/// used is not dropped whole: every blob [`crate::pack::salvage`] recovers (each checked
/// against its id) is copied into a new pack written by the normal write order and indexed;
/// the damaged file stays where it is, unindexed (prune removes it later). Damage the old
/// catalog had recorded is carried over for the copies that are still indexed.
pub fn rebuild(
    storage: &dyn Storage,
    path: &Path,
    repository_id: &str,
    hasher: &crate::chunker::Hasher,
    cipher: &crate::crypto::Cipher,
    now: i64,
) -> Result<Rebuilt> {
    let previous_damage = Index::open(path, repository_id).and_then(|old| old.damaged_rows()).unwrap_or_default();
    let tmp = path.with_extension("rebuild");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
    }
    let mut idx = Index::create(&tmp, repository_id)?;
    let mut out = Rebuilt::default();
    for o in storage.list(Kind::Packs)? {
        let Some(id) = PackId::from_name(&o.name) else { continue };
        let size = o.size;
        match crate::pack::read_trailer(storage, &id, size, cipher) {
            Ok(entries) => {
                idx.add_pack(&Finished { id, size, entries }, now)?;
                out.packs += 1;
            }
            // Sealed blobs can't be delimited without their trailer (see `pack::salvage`).
            Err(e) if cipher.is_encrypted() => out.bad.push(e),
            Err(e) => {
                if let Some(line) = salvage_into_new_pack(storage, &id, hasher, &mut idx, now)? {
                    out.salvaged.push(line);
                }
                out.bad.push(e);
            }
        }
    }
    for (c, pack, why, found) in previous_damage {
        let known: bool = sql(
            &tmp,
            idx.conn.query_row("SELECT 1 FROM packs WHERE id = ?1", [&pack.as_bytes()[..]], |_| Ok(())).optional(),
        )?
        .is_some();
        if known {
            idx.record_damaged(&c, &pack, &why, found)?;
        }
    }
    sql(&tmp, idx.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"))?;
    drop(idx);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    Ok(out)
}

/// Copies the blobs salvaged from the damaged pack `id` into a new pack (durable before it
/// is indexed) and indexes it. Returns a line saying what was saved, if anything.
fn salvage_into_new_pack(
    storage: &dyn Storage,
    id: &PackId,
    hasher: &crate::chunker::Hasher,
    idx: &mut Index,
    now: i64,
) -> Result<Option<String>> {
    let pack_path = crate::pack::object(storage, id);
    let Ok(data) = storage.read(Kind::Packs, &id.to_hex(), None) else { return Ok(None) };
    let entries = crate::pack::salvage(&pack_path, &data, hasher);
    if entries.is_empty() {
        return Ok(None);
    }
    let mut w = crate::pack::PackWriter::create(storage, &crate::crypto::Cipher::None)?;
    for e in &entries {
        let stored = &data[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
        w.add(e.id, e.kind, e.compression, stored, e.raw_len)?;
    }
    let finished = w.finish(storage)?;
    idx.add_pack(&finished, now)?;
    Ok(Some(format!(
        "{}: trailer unusable; {} blob(s) that check against their ids salvaged into pack {} (the damaged file is left unindexed)",
        pack_path.display(),
        entries.len(),
        finished.id.short()
    )))
}

/// A Bloom filter over chunk ids. Ids are already uniform hashes, so the probe positions are
/// taken from the id's own bits instead of hashing again.
pub struct Filter {
    bits: Vec<u64>,
    mask: u64,
}

impl Filter {
    const PROBES: u32 = 7;

    /// Sized for `expected` ids at about 10 bits each (≈1% false positives).
    pub fn with_capacity(expected: u64) -> Filter {
        let bits = (expected.max(1024) * 10).next_power_of_two();
        Filter { bits: vec![0; (bits / 64) as usize], mask: bits - 1 }
    }

    fn probes(&self, id: &Id) -> impl Iterator<Item = u64> + '_ {
        let a = id.prefix_u64();
        let b = u64::from_le_bytes(id.0[8..16].try_into().expect("8 bytes")) | 1;
        (0..Self::PROBES).map(move |i| a.wrapping_add(b.wrapping_mul(i as u64)) & self.mask)
    }

    pub fn insert(&mut self, id: &Id) {
        let probes: Vec<u64> = self.probes(id).collect();
        for p in probes {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, id: &Id) -> bool {
        self.probes(id).all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> Id {
        Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let mut f = Filter::with_capacity(10_000);
        for i in 0..10_000 {
            f.insert(&id(i));
        }
        assert!((0..10_000).all(|i| f.may_contain(&id(i))));
        let fp = (10_000..110_000).filter(|&i| f.may_contain(&id(i))).count();
        assert!(fp < 3_000, "false positive rate too high: {fp}/100000");
    }

    #[test]
    fn add_lookup_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        let mut idx = Index::create(&p, "r1").unwrap();
        let e = Entry {
            id: ChunkId(id(1)),
            kind: BlobKind::Data,
            compression: Compression::Zstd,
            offset: 12,
            stored_len: 5,
            raw_len: 9,
        };
        let pack = Finished { id: PackId(id(99)), size: 100, entries: vec![e] };
        idx.add_pack(&pack, 0).unwrap();
        drop(idx);
        let idx = Index::open(&p, "r1").unwrap();
        assert_eq!(idx.lookup(&e.id).unwrap(), Some(Location { pack: pack.id, entry: e }));
        assert_eq!(idx.lookup(&ChunkId(id(2))).unwrap(), None);
        assert!(Index::open(&p, "other").is_err());
    }

    #[test]
    fn a_closed_catalog_opens_immutable_under_an_awkward_path() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("backup disk?#%ü");
        std::fs::create_dir(&sub).unwrap();
        let p = sub.join("index.sqlite");
        let mut idx = Index::create(&p, "r1").unwrap();
        let e = Entry {
            id: ChunkId(id(7)),
            kind: BlobKind::Data,
            compression: Compression::None,
            offset: 0,
            stored_len: 3,
            raw_len: 3,
        };
        idx.add_pack(&Finished { id: PackId(id(70)), size: 50, entries: vec![e] }, 0).unwrap();
        drop(idx);
        assert!(!p.with_extension("sqlite-wal").exists(), "a clean close leaves no write-ahead log");
        let idx = Index { path: p.clone(), conn: Index::open_read_only(&p).unwrap() };
        assert_eq!(idx.lookup(&e.id).unwrap().map(|l| l.pack), Some(PackId(id(70))));
        let err = idx.set_verified(&PackId(id(70)), 5).unwrap_err();
        assert!(err.to_string().contains("index.sqlite"), "{err}");
        assert_eq!(uri_escape(Path::new("/a b/c?d#e%f/ü")), "/a%20b/c%3Fd%23e%25f/%C3%BC");
    }

    #[test]
    fn a_chunk_row_out_of_range_is_a_corrupt_index_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        let mut idx = Index::create(&p, "r1").unwrap();
        let e = Entry {
            id: ChunkId(id(5)),
            kind: BlobKind::Data,
            compression: Compression::None,
            offset: 0,
            stored_len: 3,
            raw_len: 3,
        };
        idx.add_pack(&Finished { id: PackId(id(50)), size: 50, entries: vec![e] }, 0).unwrap();
        idx.conn.execute("UPDATE chunks SET kind = 7", []).unwrap();
        let err = idx.lookup(&e.id).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("index.sqlite") && err.to_string().contains("bad row for chunk"), "{err}");
        idx.conn.execute("UPDATE chunks SET kind = 0, stored_len = -1", []).unwrap();
        assert!(idx.lookup(&e.id).is_err());
    }

    #[test]
    fn prune_rewrite_is_all_or_nothing_and_raises_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        let mut idx = Index::create(&p, "r1").unwrap();
        let e = |i: u64, offset: u64| Entry {
            id: ChunkId(id(i)),
            kind: BlobKind::Data,
            compression: Compression::None,
            offset,
            stored_len: 10,
            raw_len: 10,
        };
        idx.add_pack(&Finished { id: PackId(id(100)), size: 200, entries: vec![e(1, 12), e(2, 22)] }, 0).unwrap();
        idx.add_pack(&Finished { id: PackId(id(101)), size: 200, entries: vec![e(3, 12)] }, 0).unwrap();
        idx.begin_marking().unwrap();
        assert!(idx.mark_needed(&ChunkId(id(1))).unwrap());
        assert!(!idx.mark_needed(&ChunkId(id(1))).unwrap(), "marking twice reports already marked");
        assert!(idx.mark_needed(&ChunkId(id(9))).unwrap());
        idx.end_marking().unwrap();
        assert_eq!(idx.needed_missing(5).unwrap(), (1, vec![ChunkId(id(9))]));
        let usage = idx.pack_usage().unwrap();
        let got: Vec<(PackId, u64, u64, u64)> =
            usage.iter().map(|u| (u.id, u.rows, u.needed, u.needed_bytes)).collect();
        assert_eq!(got, [(PackId(id(100)), 2, 1, 10), (PackId(id(101)), 1, 0, 0)]);

        let new_pack = Finished { id: PackId(id(102)), size: 100, entries: vec![e(1, 12)] };
        {
            // Dropped without commit: nothing happened.
            let rw = idx.begin_rewrite().unwrap();
            assert_eq!(rw.needed_entries(usage[0].n).unwrap(), vec![e(1, 12)]);
            rw.add_pack(&new_pack, 5).unwrap();
            rw.remove_pack(usage[0].n).unwrap();
        }
        assert_eq!(idx.lookup(&ChunkId(id(2))).unwrap().map(|l| l.pack), Some(PackId(id(100))));
        assert_eq!(idx.epoch().unwrap(), 0);

        let rw = idx.begin_rewrite().unwrap();
        rw.add_pack(&new_pack, 5).unwrap();
        rw.remove_pack(usage[0].n).unwrap();
        rw.remove_pack(usage[1].n).unwrap();
        assert_eq!(rw.commit().unwrap(), 1);
        assert_eq!(idx.epoch().unwrap(), 1);
        assert_eq!(idx.lookup(&ChunkId(id(1))).unwrap().map(|l| l.pack), Some(PackId(id(102))), "needed chunk moved");
        assert_eq!(idx.lookup(&ChunkId(id(2))).unwrap(), None, "dropped chunk's row is gone");
        assert_eq!(idx.lookup(&ChunkId(id(3))).unwrap(), None);
        assert_eq!(idx.packs().unwrap(), vec![(PackId(id(102)), 100)]);
    }

    #[test]
    fn generation_is_fresh_after_create_rebuild_and_every_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        let mut idx = Index::create(&p, "r1").unwrap();
        let g0 = idx.generation().unwrap();
        assert_eq!(idx.generation().unwrap(), g0, "reading it does not change it");
        assert!(idx.present(&[]).unwrap().is_empty());
        assert!(idx.present(&[ChunkId(id(1))]).unwrap().is_empty());
        idx.begin_rewrite().unwrap().commit().unwrap();
        let g1 = idx.generation().unwrap();
        assert_ne!(g0, g1);
        // A catalog from before generations gets one on first read, and keeps it.
        idx.conn.execute("DELETE FROM meta WHERE key = 'generation'", []).unwrap();
        let g2 = idx.generation().unwrap();
        assert!(g2 != g1 && idx.generation().unwrap() == g2);
        drop(idx);
        let p2 = dir.path().join("other.sqlite");
        assert_ne!(Index::create(&p2, "r1").unwrap().generation().unwrap(), g2, "a rebuilt catalog is a new state");
    }

    #[test]
    fn garbage_index_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("index.sqlite");
        std::fs::write(&p, vec![0x5au8; 8192]).unwrap();
        let err = Index::open(&p, "r1").err().expect("garbage must not open");
        let msg = err.to_string();
        assert!(msg.contains("index.sqlite") && msg.contains("repair index"), "{msg}");
    }
}
