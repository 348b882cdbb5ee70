//! The local catalog kept in step with the repository's index objects (format v2).
//!
//! The repository's truth about its packs is its index objects ([`crate::indexobj`]); the
//! SQLite catalog under the cache directory is a cache of them, plus what only this machine
//! knows: packs it stored whose index object is not written yet ("uncovered": a run in
//! progress, or one killed before its index object), verification times and recorded damage.
//! `covered(object, pack)` says which objects name which packs.
//!
//! - [`sync`] (every `Repo::open`): objects listed but not known are read and added; known
//!   objects that are really gone (a HEAD says so: a list may lag) are dropped with the packs
//!   only they named; uncovered packs that no longer exist are dropped.
//! - [`write_uncovered`] (backup, before its manifest): one index object per
//!   [`indexobj::MAX_ENTRIES`] for every uncovered pack, entries read back from the pack's own
//!   trailer (which also proves the pack landed whole).
//! - [`consolidate`] (prune, `repair index`): objects naming every pack the catalog holds, in
//!   the caller's transaction; the caller removes the superseded objects after committing.

use crate::error::{Error, Result};
use crate::id::PackId;
use crate::index::{insert_pack, set_generation, sql, Existing, Index};
use crate::indexobj;
use crate::pack::Finished;
use crate::storage::{object_path, Kind, Storage};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What [`sync`] did.
#[derive(Debug, Default)]
pub struct Synced {
    pub added: u64,
    pub dropped: u64,
    /// Index objects that could not be read or decoded, each naming the object.
    pub damaged: Vec<Error>,
}

/// Opens the local catalog at `path`, creating it when missing and rebuilding it (empty, to be
/// filled by [`sync`]) when it is damaged, of another schema or of another repository:
/// deleting the cache is always safe.
pub fn open_or_create(path: &Path, repository_id: &str) -> Result<Index> {
    if path.exists() {
        match Index::open(path, repository_id) {
            Ok(idx) => return Ok(idx),
            Err(e) => {
                eprintln!("coffer: note: rebuilding the local catalog from the repository's index objects ({e})");
                remove_catalog_files(path);
            }
        }
    }
    let dir = path.parent().expect("a catalog path has a parent");
    crate::store::create_private_dirs(dir)?;
    // Built aside and renamed into place, so a second process never opens a half-made one.
    let tmp = dir.join(format!("index.sqlite.{}.new", crate::store::tmp_name()));
    drop(Index::create(&tmp, repository_id)?);
    let renamed = std::fs::rename(&tmp, path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e });
    remove_catalog_files(&tmp);
    renamed?;
    Index::open(path, repository_id)
}

fn remove_catalog_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Whether `name` is an index object's name (a BLAKE3 in lowercase hex).
fn is_object_name(name: &str) -> bool {
    crate::id::Id::from_name(name).is_some()
}

/// Reads and decodes one index object.
pub fn read_object(storage: &dyn Storage, name: &str) -> Result<Vec<Finished>> {
    let bytes = storage.read(Kind::Index, name, None)?;
    indexobj::decode(&PathBuf::from(object_path(storage, Kind::Index, name)), name, &bytes)
}

/// Brings the catalog in step with the index objects in `storage` (see the module docs).
/// Vanished objects go first: dropping a pack drops the chunk rows pointing into it, and a
/// chunk another object also names must then be found there, so every remaining object is
/// read again after a drop (rare: a prune run elsewhere, a repository copied onto another).
pub fn sync(idx: &mut Index, storage: &dyn Storage, now: i64) -> Result<Synced> {
    let mut out = Synced::default();
    let listed: HashSet<String> =
        storage.list(Kind::Index)?.into_iter().map(|o| o.name).filter(|n| is_object_name(n)).collect();
    let known = known_objects(&idx.conn, &idx.path)?;
    let mut lost_rows = false;
    for name in known.difference(&listed) {
        // A list may lag behind a put: only an object a HEAD can't find is gone.
        if storage.size(Kind::Index, name)?.is_none() {
            lost_rows |= in_transaction(idx, |conn, path| drop_object(conn, path, name))?;
            out.dropped += 1;
        }
    }
    for (n, id, _) in uncovered(&idx.conn, &idx.path)? {
        if storage.size(Kind::Packs, &id.to_hex())?.is_none() {
            in_transaction(idx, |conn, path| {
                remove_pack_rows(conn, path, n)?;
                set_generation(conn, path)
            })?;
            lost_rows = true;
        }
    }
    let known = known_objects(&idx.conn, &idx.path)?;
    let mut to_read: Vec<&String> =
        if lost_rows { listed.iter().collect() } else { listed.difference(&known).collect() };
    to_read.sort();
    for name in to_read {
        match read_object(storage, name) {
            Ok(packs) => {
                in_transaction(idx, |conn, path| add_object(conn, path, name, &packs, now))?;
                out.added += !known.contains(name) as u64;
            }
            // Removed since the listing (a prune superseded it).
            Err(Error::ObjectMissing { .. }) => {}
            Err(e) => out.damaged.push(e),
        }
    }
    Ok(out)
}

/// Runs `f` in one transaction on the catalog.
fn in_transaction<T>(idx: &mut Index, f: impl FnOnce(&Connection, &Path) -> Result<T>) -> Result<T> {
    let path = idx.path.clone();
    let tx = sql(&path, idx.conn.transaction())?;
    let v = f(&tx, &path)?;
    sql(&path, tx.commit())?;
    Ok(v)
}

/// Writes index objects for every uncovered pack (their entries read from the packs'
/// trailers) and records them. Returns how many objects were written.
pub fn write_uncovered(
    idx: &mut Index,
    storage: &dyn Storage,
    cipher: &crate::crypto::Cipher,
    now: i64,
) -> Result<u64> {
    let packs = uncovered(&idx.conn, &idx.path)?;
    let mut finished = Vec::with_capacity(packs.len());
    for (_, id, size) in packs {
        let entries = crate::pack::read_trailer(storage, &id, size, cipher)?;
        finished.push(Finished { id, size, entries });
    }
    let objects = indexobj::encode_all(&finished);
    for o in &objects {
        storage.put(Kind::Index, &o.name, &o.bytes)?;
        in_transaction(idx, |conn, path| add_object(conn, path, &o.name, &finished[o.packs.clone()], now))?;
    }
    Ok(objects.len() as u64)
}

/// Writes index objects naming every pack in the catalog as `conn` sees it (entries from
/// its chunk rows) and makes them the only objects the catalog knows. Returns the names of
/// the objects they supersede, which the caller removes once `conn`'s transaction is
/// committed (delete order: superseded index objects before the packs they alone named).
pub fn consolidate(conn: &Connection, path: &Path, storage: &dyn Storage, now: i64) -> Result<Vec<String>> {
    let mut superseded: HashSet<String> = known_objects(conn, path)?;
    superseded.extend(storage.list(Kind::Index)?.into_iter().map(|o| o.name).filter(|n| is_object_name(n)));
    let packs = all_packs(conn, path)?;
    let objects = indexobj::encode_all(&packs);
    sql(path, conn.execute_batch("DELETE FROM covered; DELETE FROM index_objects;"))?;
    for o in &objects {
        storage.put(Kind::Index, &o.name, &o.bytes)?;
        add_object(conn, path, &o.name, &packs[o.packs.clone()], now)?;
        superseded.remove(&o.name);
    }
    let mut out: Vec<String> = superseded.into_iter().collect();
    out.sort();
    Ok(out)
}

/// Makes the repository's index objects exactly what the catalog holds (`repair index`, after
/// rebuilding the catalog from the packs): new objects put, then the others removed.
pub fn replace_all(idx: &mut Index, storage: &dyn Storage, now: i64) -> Result<u64> {
    let superseded = in_transaction(idx, |conn, path| consolidate(conn, path, storage, now))?;
    remove_objects(storage, &superseded)?;
    Ok(known_objects(&idx.conn, &idx.path)?.len() as u64)
}

/// Removes index objects (superseded ones, after their replacement is committed).
pub fn remove_objects(storage: &dyn Storage, names: &[String]) -> Result<()> {
    for n in names {
        storage.remove(Kind::Index, n)?;
    }
    Ok(())
}

fn known_objects(conn: &Connection, path: &Path) -> Result<HashSet<String>> {
    let mut st = sql(path, conn.prepare("SELECT name FROM index_objects"))?;
    let rows = sql(path, st.query_map([], |r| r.get::<_, String>(0)))?;
    rows.map(|r| sql(path, r)).collect()
}

/// Records the object `name` and the packs it names (packs already known keep their rows).
fn add_object(conn: &Connection, path: &Path, name: &str, packs: &[Finished], now: i64) -> Result<()> {
    for p in packs {
        let n = insert_pack(conn, path, p, now, Existing::Keep)?;
        sql(path, conn.execute("INSERT OR IGNORE INTO covered VALUES (?1, ?2)", params![name, n]))?;
    }
    sql(path, conn.execute("INSERT OR IGNORE INTO index_objects VALUES (?1)", [name])).map(|_| ())
}

/// Forgets the object `name`; packs no other object names are dropped (a new generation then
/// tells files caches that chunks went away). Returns whether any pack was dropped.
fn drop_object(conn: &Connection, path: &Path, name: &str) -> Result<bool> {
    let mut st = sql(path, conn.prepare("SELECT pack FROM covered WHERE object = ?1"))?;
    let packs: Vec<i64> =
        sql(path, st.query_map([name], |r| r.get(0)))?.map(|r| sql(path, r)).collect::<Result<_>>()?;
    sql(path, conn.execute("DELETE FROM covered WHERE object = ?1", [name]))?;
    sql(path, conn.execute("DELETE FROM index_objects WHERE name = ?1", [name]))?;
    let mut dropped = false;
    for n in packs {
        let still: Option<i64> =
            sql(path, conn.query_row("SELECT 1 FROM covered WHERE pack = ?1 LIMIT 1", [n], |r| r.get(0)).optional())?;
        if still.is_none() {
            remove_pack_rows(conn, path, n)?;
            dropped = true;
        }
    }
    if dropped {
        set_generation(conn, path)?;
    }
    Ok(dropped)
}

/// Drops pack row `n`, the chunk rows still pointing into it, its damage records and its
/// coverage.
pub(crate) fn remove_pack_rows(conn: &Connection, path: &Path, n: i64) -> Result<()> {
    sql(path, conn.execute("DELETE FROM chunks WHERE pack = ?1", [n]))?;
    // Its damaged copies go with it; the record has nothing left to describe.
    sql(path, conn.execute("DELETE FROM damaged WHERE pack = (SELECT id FROM packs WHERE n = ?1)", [n]))?;
    sql(path, conn.execute("DELETE FROM covered WHERE pack = ?1", [n]))?;
    sql(path, conn.execute("DELETE FROM packs WHERE n = ?1", [n])).map(|_| ())
}

/// Packs no index object names: (row, id, size).
fn uncovered(conn: &Connection, path: &Path) -> Result<Vec<(i64, PackId, u64)>> {
    pack_rows(
        conn,
        path,
        "SELECT n, id, size FROM packs WHERE NOT EXISTS (SELECT 1 FROM covered c WHERE c.pack = packs.n) ORDER BY n",
    )
}

/// The (row, id, size) of the packs `query` selects (it must select `n, id, size`).
fn pack_rows(conn: &Connection, path: &Path, query: &str) -> Result<Vec<(i64, PackId, u64)>> {
    let mut st = sql(path, conn.prepare(query))?;
    let rows =
        sql(path, st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?))))?;
    let mut out = Vec::new();
    for r in rows {
        let (n, id, size) = sql(path, r)?;
        let id =
            PackId::from_slice(&id).ok_or_else(|| Error::corrupt(path, 0, format!("bad pack id in pack row {n}")))?;
        out.push((n, id, size as u64));
    }
    Ok(out)
}

/// Every pack in the catalog with the entries its chunk rows give.
fn all_packs(conn: &Connection, path: &Path) -> Result<Vec<Finished>> {
    let mut out = Vec::new();
    for (n, id, size) in pack_rows(conn, path, "SELECT n, id, size FROM packs ORDER BY id")? {
        let entries = crate::index::rows_of_pack(conn, path, n)?;
        out.push(Finished { id, size, entries });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Cipher;
    use crate::id::{ChunkId, Id};
    use crate::pack::{BlobKind, Compression, PackWriter};
    use crate::storage::MemStorage;

    fn cid(i: u8) -> ChunkId {
        ChunkId(Id(*blake3::hash(&[i]).as_bytes()))
    }

    /// Stores a real pack holding chunks `ids` (100 raw bytes each).
    fn pack(storage: &dyn Storage, ids: &[u8]) -> Finished {
        let mut w = PackWriter::create(storage, &Cipher::None).unwrap();
        for &i in ids {
            w.add(cid(i), BlobKind::Data, Compression::None, &[i; 100], 100).unwrap();
        }
        w.finish(storage).unwrap()
    }

    fn catalog(dir: &Path, name: &str) -> Index {
        Index::create(&dir.join(name), "r").unwrap()
    }

    fn where_is(idx: &Index, i: u8) -> Option<PackId> {
        idx.lookup(&cid(i)).unwrap().map(|l| l.pack)
    }

    #[test]
    fn a_fresh_catalog_learns_every_pack_from_the_index_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStorage::new();
        let (p1, p2) = (pack(&s, &[1, 2]), pack(&s, &[2, 3]));
        let mut writer = catalog(dir.path(), "a.sqlite");
        writer.add_pack(&p1, 0).unwrap();
        writer.add_pack(&p2, 0).unwrap();
        assert_eq!(write_uncovered(&mut writer, &s, &Cipher::None, 0).unwrap(), 1);
        assert_eq!(write_uncovered(&mut writer, &s, &Cipher::None, 0).unwrap(), 0, "nothing is uncovered any more");
        assert_eq!(s.list(Kind::Index).unwrap().len(), 1);

        let mut fresh = catalog(dir.path(), "b.sqlite");
        let done = sync(&mut fresh, &s, 0).unwrap();
        assert_eq!((done.added, done.dropped, done.damaged.len()), (1, 0, 0));
        assert_eq!(where_is(&fresh, 1), Some(p1.id));
        assert_eq!(where_is(&fresh, 3), Some(p2.id));
        // The trailer's full entry list went into the object: chunk 2 is in both packs.
        let objects = s.list(Kind::Index).unwrap();
        let named = read_object(&s, &objects[0].name).unwrap();
        assert_eq!(named.iter().map(|p| p.entries.len()).sum::<usize>(), 4);
        let again = sync(&mut fresh, &s, 0).unwrap();
        assert_eq!((again.added, again.dropped), (0, 0), "a second sync reads nothing");
    }

    #[test]
    fn a_vanished_object_drops_only_what_no_other_object_names() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStorage::new();
        let (p1, p2) = (pack(&s, &[1, 2]), pack(&s, &[2, 3]));
        let mut a = catalog(dir.path(), "a.sqlite");
        a.add_pack(&p1, 0).unwrap();
        write_uncovered(&mut a, &s, &Cipher::None, 0).unwrap();
        a.add_pack(&p2, 0).unwrap();
        write_uncovered(&mut a, &s, &Cipher::None, 0).unwrap();
        let mut b = catalog(dir.path(), "b.sqlite");
        sync(&mut b, &s, 0).unwrap();
        let generation = b.generation().unwrap();
        // Elsewhere, a prune drops the pack the catalog found chunk 2 in first: its object
        // goes, the one naming the other pack stays.
        let (gone, kept, only_gone, only_kept) =
            if where_is(&b, 2) == Some(p1.id) { (&p1, &p2, 1, 3) } else { (&p2, &p1, 3, 1) };
        let name = indexobj::encode_all(std::slice::from_ref(gone)).remove(0).name;
        s.remove(Kind::Index, &name).unwrap();
        let done = sync(&mut b, &s, 0).unwrap();
        assert_eq!(done.dropped, 1);
        assert_eq!(where_is(&b, only_gone), None, "only the vanished object named it");
        assert_eq!(where_is(&b, 2), Some(kept.id), "chunk 2 is found in the pack that is left");
        assert_eq!(where_is(&b, only_kept), Some(kept.id));
        assert_ne!(b.generation().unwrap(), generation, "files caches must not trust the old state");
    }

    #[test]
    fn an_uncovered_pack_that_vanished_is_dropped_and_a_damaged_object_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStorage::new();
        let p1 = pack(&s, &[1]);
        let mut a = catalog(dir.path(), "a.sqlite");
        a.add_pack(&p1, 0).unwrap();
        s.remove(Kind::Packs, &p1.id.to_hex()).unwrap();
        sync(&mut a, &s, 0).unwrap();
        assert_eq!(where_is(&a, 1), None, "a pack of a killed run that a prune removed since");

        let p2 = pack(&s, &[2]);
        a.add_pack(&p2, 0).unwrap();
        write_uncovered(&mut a, &s, &Cipher::None, 0).unwrap();
        let name = s.list(Kind::Index).unwrap().remove(0).name;
        s.poke(Kind::Index, &name, b"garbage".to_vec());
        let mut b = catalog(dir.path(), "b.sqlite");
        let done = sync(&mut b, &s, 0).unwrap();
        assert_eq!(done.damaged.len(), 1);
        let msg = done.damaged[0].to_string();
        assert!(msg.contains(&format!("index/{name}")) && msg.contains("does not match its name"), "{msg}");
        assert_eq!(where_is(&b, 2), None);
    }

    #[test]
    fn consolidation_replaces_every_object_with_the_catalogs_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemStorage::new();
        let mut a = catalog(dir.path(), "a.sqlite");
        for ids in [[1u8, 2], [3, 4], [5, 6]] {
            let p = pack(&s, &ids);
            a.add_pack(&p, 0).unwrap();
            write_uncovered(&mut a, &s, &Cipher::None, 0).unwrap();
        }
        // A stray object nobody knows about is superseded too.
        let stray = indexobj::encode_all(&[pack(&s, &[9])]).remove(0);
        s.put(Kind::Index, &stray.name, &stray.bytes).unwrap();
        assert_eq!(s.list(Kind::Index).unwrap().len(), 4);
        assert_eq!(replace_all(&mut a, &s, 0).unwrap(), 1);
        assert_eq!(s.list(Kind::Index).unwrap().len(), 1);
        let mut b = catalog(dir.path(), "b.sqlite");
        sync(&mut b, &s, 0).unwrap();
        assert!((1..=6).all(|i| where_is(&b, i).is_some()));
        assert_eq!(where_is(&b, 9), None, "only what the catalog held is named");
    }
}
