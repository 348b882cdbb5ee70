//! Verification: is every set restorable, and is each set consistent with itself?
//!
//! Structural checks read no pack bodies: every manifest decodes, every tree reachable from
//! a set decodes, every chunk a tree names is in the index, every indexed pack exists with
//! its recorded size and a valid trailer, and each set's components were captured in the
//! order listed (the hot-backup rule), and every key and index object reads and decodes
//! (authenticates, in an encrypted repository). `read_data` also reads every pack whole: its trailer's
//! hash must match its name and every chunk must decompress to bytes matching its id. When damage
//! is found, the report names every set, component and file it affects.

use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId, SetId, TreeId};
use crate::repo::Repo;
use crate::set::Manifest;
use crate::storage::{object_path, Kind};
use crate::tree::NodeKind;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which packs `verify` reads whole.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// None: structural checks only.
    #[default]
    None,
    All,
    /// Slice `n` of `m` (1-based), by pack id: `1/7` … `7/7` together cover every pack.
    Subset(u64, u64),
    /// About this percentage of packs, chosen at random.
    Percent(f64),
    /// Packs not read-verified within this many seconds, oldest first.
    Stale(i64),
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub read_data: ReadData,
    /// Now, in seconds since the epoch (injected for tests of `Stale`).
    pub now: i64,
    /// Live counters for a progress display.
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// What a running verify has done so far.
#[derive(Debug, Default)]
pub struct Progress {
    pub packs_to_read: AtomicU64,
    pub packs_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub sets: AtomicU64,
}

/// Parses `N/M` for `--read-data-subset`.
pub fn parse_subset(s: &str) -> std::result::Result<(u64, u64), String> {
    let (n, m) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected N/M, e.g. 3/7"))?;
    let (n, m): (u64, u64) = (
        n.trim().parse().map_err(|_| format!("{s:?}: N is not a number"))?,
        m.trim().parse().map_err(|_| format!("{s:?}: M is not a number"))?,
    );
    if m == 0 || n == 0 || n > m {
        return Err(format!("{s:?}: need 1 <= N <= M"));
    }
    Ok((n, m))
}

/// Parses an age such as `30d`, `12h`, `90m`, `3600s` or `2w` into seconds.
pub fn parse_age(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("{s:?}: expected a number and a unit (s, m, h, d, w)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        u => return Err(format!("{s:?}: unknown unit {u:?} (s, m, h, d, w)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}

fn selected(id: &PackId, verified: Option<i64>, how: ReadData, now: i64) -> bool {
    match how {
        ReadData::None => false,
        ReadData::All => true,
        ReadData::Subset(n, m) => id.0.prefix_u64() % m == n - 1,
        ReadData::Percent(p) => {
            let mut r = [0u8; 8];
            let _ = getrandom::getrandom(&mut r);
            (u64::from_le_bytes(r) as f64 / u64::MAX as f64) * 100.0 < p
        }
        ReadData::Stale(age) => verified.is_none_or(|v| v < now - age),
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub sets: u64,
    pub trees: u64,
    pub chunks: u64,
    pub packs: u64,
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Everything wrong with the repository itself.
    pub errors: Vec<String>,
    /// Sets captured out of the hot-backup order.
    pub order_violations: Vec<String>,
    /// Per damaged set: what is affected ("component/path: why").
    pub damaged_sets: Vec<(String, Vec<String>)>,
    pub intact_sets: Vec<String>,
    pub unused_packs: Vec<String>,
    /// Things verify could not do that do not make the repository damaged (recording
    /// results in a catalog on a full disk).
    pub notes: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.order_violations.is_empty() && self.damaged_sets.is_empty()
    }
}

/// Checks that each component started after the previous one finished.
pub fn order_violations(id: &SetId, m: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for w in m.components.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (Ok(a_end), Ok(b_start)) = (crate::clock::parse(&a.finished), crate::clock::parse(&b.started)) else {
            out.push(format!("set {}: unreadable capture times", id.short()));
            continue;
        };
        if b_start < a_end {
            out.push(format!(
                "set {}: component {:?} started ({}) before {:?} finished ({}); the hot-backup order is violated",
                id.short(),
                b.name,
                b.started,
                a.name,
                a.finished
            ));
        }
    }
    out
}

pub fn verify(repo: &Repo, opts: &Options) -> Result<Report> {
    let _lease = crate::lock::Lease::acquire_reader(repo, "verify", &mut |m| eprintln!("coffer: {m}"))?;
    let mut rep = Report::default();
    // Manifests: each read on its own so one bad file does not hide the others.
    let (sets, damaged) = repo.list_sets_checked()?;
    for d in damaged {
        rep.errors.push(d.error.to_string());
    }
    rep.sets = sets.len() as u64;
    check_keys_and_index_objects(repo, &mut rep.errors)?;

    // Packs: indexed ones must exist with the recorded size and a readable trailer.
    let mut indexed = repo.index()?.packs_verified()?;
    rep.packs = indexed.len() as u64;
    let mut bad_packs: HashMap<PackId, String> = HashMap::new();
    for (id, size, _) in &indexed {
        let path = repo.pack_object(id);
        let check = match repo.storage.size(Kind::Packs, &id.to_hex()) {
            Err(e) => Err(format!("{}: missing ({e})", path.display())),
            Ok(None) => Err(format!("{}: missing (no such object)", path.display())),
            Ok(Some(n)) if n != *size => Err(format!("{}: {n} bytes, the index says {size}", path.display())),
            Ok(Some(_)) => crate::pack::read_trailer(&*repo.storage, id, *size, &repo.cipher)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(why) = check {
            bad_packs.insert(*id, why);
        }
    }
    let indexed_ids: HashSet<PackId> = indexed.iter().map(|(id, _, _)| *id).collect();
    for o in repo.storage.list(Kind::Packs)? {
        match PackId::from_name(&o.name) {
            Some(id) if indexed_ids.contains(&id) => {}
            _ => rep.unused_packs.push(object_path(&*repo.storage, Kind::Packs, &o.name)),
        }
    }

    // Full read of the selected packs: every catalog row pointing into the pack must decode,
    // at the location the row gives, to its id (the trailer is checked too, but restore reads
    // by the catalog, so the catalog is what must be right).
    let mut bad_chunks: HashMap<ChunkId, String> = HashMap::new();
    // Packs whose rows were each checked by a full read: a bad trailer then damages only
    // the rows that failed.
    let mut read_packs: HashSet<PackId> = HashSet::new();
    // Least recently verified first, so a bounded nightly run makes progress through them all.
    indexed.sort_by_key(|(id, _, v)| (v.unwrap_or(i64::MIN), *id));
    let to_read: Vec<&(PackId, u64, Option<i64>)> = indexed
        .iter()
        .filter(|(id, _, verified)| {
            let missing = bad_packs.get(id).is_some_and(|w| w.contains(": missing ("));
            !missing && selected(id, *verified, opts.read_data, opts.now)
        })
        .collect();
    let progress = opts.progress.clone().unwrap_or_default();
    progress.packs_to_read.store(to_read.len() as u64, Relaxed);
    let mut notes: Vec<String> = Vec::new();
    let note = |r: Result<()>, rep_notes: &mut Vec<String>| {
        if let Err(e) = r {
            if rep_notes.is_empty() {
                rep_notes.push(format!("could not record verification results in the catalog: {e}"));
            }
        }
    };
    // Packs are read a few at a time in parallel (each whole, so memory is that many packs):
    // on an object store each read waits on the network. Results are recorded in order.
    let at_once = repo.storage.readers(rayon::current_num_threads());
    for group in to_read.chunks(at_once) {
        use rayon::prelude::*;
        let reads: Vec<Result<(PackId, Result<PackRead>)>> = group
            .par_iter()
            .map(|(id, size, _)| {
                let rows = repo.index()?.pack_rows(id)?;
                let read = read_whole_pack(repo, id, &repo.pack_object(id), &rows);
                progress.packs_read.fetch_add(1, Relaxed);
                progress.bytes_read.fetch_add(*size, Relaxed);
                Ok((*id, read))
            })
            .collect();
        for r in reads {
            let (id, read) = r?;
            let id = &id;
            match read {
                Ok(read) => {
                    rep.packs_read += 1;
                    rep.bytes_read += read.size;
                    read_packs.insert(*id);
                    if !repo.read_only {
                        let idx = repo.index()?;
                        for c in &read.good {
                            note(idx.clear_damaged(c, id), &mut notes);
                        }
                        for (c, why) in &read.bad {
                            note(idx.record_damaged(c, id, why, opts.now), &mut notes);
                        }
                        if read.problem.is_none() && read.bad.is_empty() {
                            note(idx.set_verified(id, opts.now), &mut notes);
                        }
                    }
                    if let Some(why) = read.problem {
                        rep.errors.push(why);
                    }
                    bad_chunks.extend(read.bad);
                }
                Err(e) => {
                    bad_packs.entry(*id).or_insert_with(|| e.to_string());
                }
            }
        }
    }
    // A pack that is missing, cut short or has no readable trailer, and whose rows were not
    // each checked above: every chunk the catalog places in it counts as damaged, and the
    // catalog learns it so the next backup stores those chunks again.
    let mut sorted_bad: Vec<(&PackId, &String)> = bad_packs.iter().collect();
    sorted_bad.sort();
    for (id, why) in sorted_bad {
        rep.errors.push(why.clone());
        if !read_packs.contains(id) && !repo.read_only {
            note(repo.index()?.record_pack_damaged(id, why, opts.now).map(|_| ()), &mut notes);
        }
    }
    bad_packs.retain(|id, _| !read_packs.contains(id));
    let mut sorted_chunks: Vec<(&ChunkId, &String)> = bad_chunks.iter().collect();
    sorted_chunks.sort();
    for (c, why) in sorted_chunks {
        rep.errors.push(format!("chunk {}: {why}", c.short()));
    }
    rep.notes = notes;

    // Trees: walk every set in full (only subtrees already proven whole are skipped);
    // anything unreadable, unindexed, in a damaged pack or recorded damaged is damage.
    let mut walk = Walk { repo, bad_packs: &bad_packs, bad_chunks: &bad_chunks, ..Walk::default_for(repo) };
    for (id, m) in &sets {
        progress.sets.fetch_add(1, Relaxed);
        rep.order_violations.extend(order_violations(id, m));
        let mut affected = Vec::new();
        for c in &m.components {
            walk.component(&c.root, &c.name, &mut affected, &mut rep.errors)?;
        }
        if affected.is_empty() {
            rep.intact_sets.push(format!("{} ({})", id.short(), m.name));
        } else {
            rep.damaged_sets.push((format!("{} ({} {})", id.short(), m.name, m.started), affected));
        }
    }
    rep.trees = walk.seen_trees.len() as u64;
    rep.chunks = walk.seen_chunks.len() as u64;
    Ok(rep)
}

/// Key objects and index objects: each must read and decode. The catalog reads an index
/// object once, when it first sees it, so a change after that is found only here; a
/// damaged key object matters only when its password is the one needed.
fn check_keys_and_index_objects(repo: &Repo, errors: &mut Vec<String>) -> Result<()> {
    let storage = &*repo.storage;
    if repo.cipher.is_encrypted() {
        for o in storage.list(Kind::Keys)? {
            let path = std::path::PathBuf::from(object_path(storage, Kind::Keys, &o.name));
            match storage.read(Kind::Keys, &o.name, None).and_then(|b| crate::crypto::key::KeyObject::decode(&path, &b))
            {
                Ok(_) | Err(Error::ObjectMissing { .. }) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    for o in storage.list(Kind::Index)? {
        if crate::id::Id::from_name(&o.name).is_none() {
            continue;
        }
        match crate::catalog::read_object(storage, &o.name) {
            Ok(_) | Err(Error::ObjectMissing { .. }) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(())
}

/// What a full read of one pack found.
struct PackRead {
    size: u64,
    /// Rows whose chunk decodes at its catalog location to its id.
    good: Vec<ChunkId>,
    /// Rows that don't, and why.
    bad: Vec<(ChunkId, String)>,
    /// Something wrong with the pack beyond its rows (trailer, name).
    problem: Option<String>,
}

/// Reads a pack whole and checks every catalog row pointing into it, plus its trailer. An
/// unreadable file is an error (then every row of the pack is damaged).
fn read_whole_pack(
    repo: &Repo,
    id: &PackId,
    path: &std::path::Path,
    rows: &[std::result::Result<crate::pack::Entry, (ChunkId, String)>],
) -> Result<PackRead> {
    let data = repo.storage.read(Kind::Packs, &id.to_hex(), None)?;
    let mut read = PackRead { size: data.len() as u64, good: Vec::new(), bad: Vec::new(), problem: None };
    for row in rows {
        let e = match row {
            Ok(e) => e,
            Err((c, why)) => {
                read.bad.push((*c, why.clone()));
                continue;
            }
        };
        let end = e.offset.checked_add(e.stored_len as u64).filter(|&end| end <= data.len() as u64);
        let Some(end) = end else {
            read.bad.push((e.id, format!("{}: the catalog places it past the end of the pack", path.display())));
            continue;
        };
        match crate::pack::decode_blob(path, e, &data[e.offset as usize..end as usize], &repo.hasher, &repo.cipher) {
            Ok(_) => read.good.push(e.id),
            Err(err) => read.bad.push((e.id, err.to_string())),
        }
    }
    read.problem = match crate::pack::trailer_in(path, &data, &repo.cipher) {
        Err(e) => Some(format!("{e} (every chunk the catalog places in it was checked)")),
        Ok(entries) => {
            let trailer_start = data.len().saturating_sub(crate::pack::trailer_len(entries.len(), &repo.cipher));
            let hash_ok = crate::pack::pack_id_of_trailer(&data[trailer_start..]) == *id;
            match (hash_ok, read.bad.len()) {
                (true, 0) => None,
                (true, n) => Some(format!("{}: {n} damaged chunk(s)", path.display())),
                (false, 0) => Some(format!(
                    "{}: trailer does not match the pack's name (renamed or damaged), but every chunk checks out",
                    path.display()
                )),
                (false, n) => Some(format!(
                    "{}: damaged: trailer does not match the pack's name, {n} chunk(s) affected",
                    path.display()
                )),
            }
        }
    };
    if read.problem.is_none() && !read.bad.is_empty() {
        read.problem = Some(format!("{}: {} damaged chunk(s)", path.display(), read.bad.len()));
    }
    Ok(read)
}

/// The tree walk of verify: iterative (an explicit stack; a tree's depth comes from the
/// repository, so the call stack must not), and complete for every set. The only thing
/// shared between sets is the memo of subtrees proven whole (their blob and everything
/// below it usable), so a tree missing from the index is reported for every set that needs
/// it, however many sets were walked before.
struct Walk<'a> {
    repo: &'a Repo,
    bad_packs: &'a HashMap<PackId, String>,
    bad_chunks: &'a HashMap<ChunkId, String>,
    whole_trees: HashSet<TreeId>,
    good_chunks: HashSet<ChunkId>,
    seen_trees: HashSet<TreeId>,
    seen_chunks: HashSet<ChunkId>,
}

/// One directory being walked: its name (the path is the names on the stack, so memory is
/// linear in depth, not quadratic), its entries, the next one to look at, and whether
/// anything below it is damaged.
struct Frame {
    id: TreeId,
    name: String,
    nodes: Vec<crate::tree::Node>,
    next: usize,
    damaged: bool,
}

impl<'a> Walk<'a> {
    fn default_for(repo: &'a Repo) -> Walk<'a> {
        static EMPTY_P: std::sync::OnceLock<HashMap<PackId, String>> = std::sync::OnceLock::new();
        static EMPTY_C: std::sync::OnceLock<HashMap<ChunkId, String>> = std::sync::OnceLock::new();
        Walk {
            repo,
            bad_packs: EMPTY_P.get_or_init(HashMap::new),
            bad_chunks: EMPTY_C.get_or_init(HashMap::new),
            whole_trees: HashSet::new(),
            good_chunks: HashSet::new(),
            seen_trees: HashSet::new(),
            seen_chunks: HashSet::new(),
        }
    }

    /// Why chunk `c` can't be used, if it can't: not indexed, in a damaged pack, found
    /// damaged by this run or an earlier one, or (`len`) not the length the tree claims.
    fn check(&mut self, c: &ChunkId, len: Option<u32>) -> Result<Option<String>> {
        if self.good_chunks.contains(c) && len.is_none() {
            return Ok(None);
        }
        if let Some(why) = self.bad_chunks.get(c) {
            return Ok(Some(why.clone()));
        }
        let why = match self.repo.index()?.lookup_damage(c)? {
            None => Some(format!("chunk {} is not in the index", c.short())),
            Some((loc, recorded)) => match (self.bad_packs.get(&loc.pack), recorded) {
                (Some(w), _) => Some(format!("chunk {} is in a damaged pack: {w}", c.short())),
                (None, Some(w)) => Some(format!("chunk {} is damaged (found by an earlier verify: {w})", c.short())),
                (None, None) => match len {
                    Some(l) if l != loc.entry.raw_len => Some(format!(
                        "chunk {}: the tree claims {l} bytes, the stored chunk has {}",
                        c.short(),
                        loc.entry.raw_len
                    )),
                    _ => None,
                },
            },
        };
        if why.is_none() && len.is_none() {
            self.good_chunks.insert(*c);
        }
        Ok(why)
    }

    fn path(stack: &[Frame], leaf: Option<&str>) -> String {
        let mut p: Vec<&str> = stack.iter().map(|f| f.name.as_str()).collect();
        if let Some(l) = leaf {
            p.push(l);
        }
        p.join("/")
    }

    /// Reads tree `id` for a frame, or reports why it can't be.
    fn open(
        &mut self,
        id: &TreeId,
        stack: &[Frame],
        name: &str,
        affected: &mut Vec<String>,
        errors: &mut Vec<String>,
    ) -> Result<Option<Frame>> {
        if let Some(why) = self.check(&id.as_chunk(), None)? {
            affected.push(format!("{}/: directory listing lost: {why}", Walk::path(stack, Some(name))));
            return Ok(None);
        }
        match self.repo.read_tree(id) {
            Ok(t) => {
                self.seen_trees.insert(*id);
                Ok(Some(Frame { id: *id, name: name.to_string(), nodes: t.nodes, next: 0, damaged: false }))
            }
            Err(e) => {
                affected.push(format!("{}/: directory listing unreadable: {e}", Walk::path(stack, Some(name))));
                errors.push(e.to_string());
                Ok(None)
            }
        }
    }

    /// Walks one component's tree, adding what is damaged to `affected`.
    fn component(
        &mut self,
        root: &TreeId,
        name: &str,
        affected: &mut Vec<String>,
        errors: &mut Vec<String>,
    ) -> Result<()> {
        if self.whole_trees.contains(root) {
            return Ok(());
        }
        let mut stack: Vec<Frame> = Vec::new();
        match self.open(root, &stack, name, affected, errors)? {
            Some(f) => stack.push(f),
            None => return Ok(()),
        }
        while let Some(top) = stack.last_mut() {
            let Some(n) = top.nodes.get(top.next).cloned() else {
                let done = stack.pop().expect("non-empty");
                if done.damaged {
                    if let Some(parent) = stack.last_mut() {
                        parent.damaged = true;
                    }
                } else {
                    self.whole_trees.insert(done.id);
                }
                continue;
            };
            top.next += 1;
            let name = n.name_lossy();
            match n.kind {
                NodeKind::Dir => {
                    let Some(sub) = n.subtree_id() else { continue };
                    if self.whole_trees.contains(&sub) {
                        continue;
                    }
                    match self.open(&sub, &stack, &name, affected, errors)? {
                        Some(f) => stack.push(f),
                        None => stack.last_mut().expect("non-empty").damaged = true,
                    }
                }
                NodeKind::File => {
                    for c in &n.content {
                        let cid = c.chunk_id();
                        self.seen_chunks.insert(cid);
                        if let Some(why) = self.check(&cid, Some(c.len))? {
                            affected.push(format!("{}: {why}", Walk::path(&stack, Some(&name))));
                            stack.last_mut().expect("non-empty").damaged = true;
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Which components and table the cross-component check reads.
#[derive(Debug, Clone)]
pub struct ConsistencyTarget {
    pub dump_component: String,
    pub contentstore_component: String,
    pub settings: crate::consistency::ConsistencySettings,
}

impl Default for ConsistencyTarget {
    fn default() -> Self {
        ConsistencyTarget {
            dump_component: "db".into(),
            contentstore_component: "contentstore".into(),
            settings: Default::default(),
        }
    }
}

/// The cross-component check of one set: every content URL in the set's dump must have its
/// file, of the recorded size, in the same set's contentstore. A plain-SQL dump is parsed
/// straight from the repository; other formats go through `pg_restore` from a temporary file.
pub fn set_consistency(
    repo: &Repo,
    m: &Manifest,
    t: &ConsistencyTarget,
) -> Result<crate::consistency::ConsistencyReport> {
    let names = || m.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let dump = m.component(&t.dump_component).ok_or_else(|| {
        Error::NotFound(format!("the set has no dump component {:?} (components: {})", t.dump_component, names()))
    })?;
    let store = m.component(&t.contentstore_component).ok_or_else(|| {
        Error::NotFound(format!(
            "the set has no contentstore component {:?} (components: {})",
            t.contentstore_component,
            names()
        ))
    })?;
    let dump_tree = repo.read_tree(&dump.root)?;
    let file = dump_tree
        .nodes
        .iter()
        .find(|n| n.kind == NodeKind::File)
        .ok_or_else(|| Error::NotFound(format!("component {:?} holds no dump file", dump.name)))?;
    let mut head = Vec::new();
    {
        use std::io::Read;
        crate::restore::NodeReader::new(repo, file)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| Error::Failed(e.to_string()))?;
    }
    let rows = match crate::consistency::sniff(&head) {
        crate::consistency::DumpFormat::PlainSql => {
            let r = std::io::BufReader::with_capacity(1 << 20, crate::restore::NodeReader::new(repo, file));
            crate::consistency::parse_plain_sql(r, &t.settings)?
        }
        _ => {
            let tmp = tempfile::Builder::new()
                .prefix("coffer-dump-")
                .tempfile()
                .map_err(|e| Error::Failed(format!("temporary file for the dump: {e}")))?;
            let mut out = std::io::BufWriter::new(tmp.as_file());
            std::io::copy(&mut crate::restore::NodeReader::new(repo, file), &mut out)
                .map_err(|e| Error::Io { path: tmp.path().to_path_buf(), source: e })?;
            drop(out);
            crate::consistency::rows_from_dump_file(tmp.path(), &t.settings)?
        }
    };
    let mut files = HashMap::new();
    collect_files(repo, &store.root, "", &mut files)?;
    Ok(crate::consistency::check(&rows, &files, &t.settings))
}

fn collect_files(repo: &Repo, id: &TreeId, prefix: &str, out: &mut HashMap<String, u64>) -> Result<()> {
    for n in repo.read_tree(id)?.nodes {
        let p = if prefix.is_empty() { n.name_lossy() } else { format!("{prefix}/{}", n.name_lossy()) };
        match n.kind {
            NodeKind::File => {
                out.insert(p, n.size);
            }
            NodeKind::Dir => {
                if let Some(sub) = n.subtree_id() {
                    collect_files(repo, &sub, &p, out)?;
                }
            }
            NodeKind::Symlink | NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {}
        }
    }
    Ok(())
}
