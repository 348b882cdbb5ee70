//! Prune: frees the space of chunks no set names any more.
//!
//! Under the repository's EXCLUSIVE lease (backups and verify take shared ones, so a backup
//! started during a prune fails with `Locked` before it does anything, and a prune started
//! during a backup fails with `Locked` before it does anything):
//!
//! 1. Mark: every tree and data chunk reachable from every set goes into a temporary SQLite
//!    table (`Index::begin_marking`), so memory does not grow with the repository; the walk is
//!    [`crate::treewalk`]'s (no recursion; a tree deeper than its limit stops the prune). A needed
//!    chunk with no index row stops the prune before anything is changed.
//! 2. Plan: a pack none of whose index rows is needed is deleted; then, while the unneeded
//!    bytes left in the remaining packs exceed `max_unused` of their total size, the pack
//!    with the largest unneeded share is repacked; packs smaller than a quarter of the target
//!    pack size are merged (repacked together) when there are at least two of them.
//! 3. Repack: the needed blobs of those packs are checked (`pack::decode_blob`) and copied
//!    as stored (no recompression) into new packs, each made durable before it is indexed.
//! 4. Commit, in ONE index transaction: new pack rows, chunk rows repointed to them, old pack
//!    rows and the rows of their dropped chunks deleted, `meta.epoch` raised and a new random
//!    `meta.generation` written (files caches keyed by the old one are not used). The commit is fsynced (`synchronous=FULL`).
//! 5. Delete the old pack files, then pack files that are in no index row and older than
//!    [`Options::unindexed_grace`] (left by killed backups or killed prunes).
//!
//! The format's delete order holds at every step (manifest gone → rows gone → file gone), so a
//! prune killed anywhere leaves a repository that verifies and restores: before 4 the new
//! packs are merely unindexed (reused by the next backup's adoption or deleted by a later
//! prune); after 4 the old packs are merely unindexed. Unindexed packs are garbage because a
//! set is only committed after every chunk it names is indexed, and step 1 proved that all
//! chunks named by sets are indexed; the grace period protects the packs of a writer that
//! holds a lease we wrongly judged stale.

use crate::error::{Error, Result};
use crate::id::{ChunkId, PackId, TreeId};
use crate::index::{Index, PackUsage};
use crate::lock::{Lease, LeaseKind};
use crate::pack::{self, PackWriter};
use crate::repo::Repo;
use crate::storage::Kind;
use crate::tree::NodeKind;
use crate::treewalk::{self, Limits, Origin, Step};
use std::collections::HashSet;
use std::time::Instant;

/// Default `max_unused`: leave at most 5% of the repository's pack bytes unneeded.
pub const DEFAULT_MAX_UNUSED: f64 = 0.05;
/// Default age an unindexed pack file must reach before prune deletes it.
pub const DEFAULT_UNINDEXED_GRACE: i64 = 3600;

#[derive(Debug, Clone)]
pub struct Options {
    /// Fraction (0..=1) of a pack that may be unneeded before it is repacked.
    pub max_unused: f64,
    pub dry_run: bool,
    /// Now, seconds since the epoch (rows' `created`, and the grace of unindexed packs).
    pub now: i64,
    /// Seconds an unindexed pack file must have existed (by mtime) before it is deleted.
    pub unindexed_grace: i64,
    /// Prune even though some manifests in `sets/` are damaged. Their needs are unknown, so
    /// chunks only they name are deleted: the caller accepts losing what is left of them.
    pub ignore_damaged_sets: bool,
}

impl Options {
    pub fn new(now: i64) -> Options {
        Options {
            max_unused: DEFAULT_MAX_UNUSED,
            dry_run: false,
            now,
            unindexed_grace: DEFAULT_UNINDEXED_GRACE,
            ignore_damaged_sets: false,
        }
    }
}

/// Parses `--max-unused`: `5%` or `5` (percent), 0..=100.
pub fn parse_max_unused(s: &str) -> std::result::Result<f64, String> {
    let n = s.trim().trim_end_matches('%');
    let v: f64 = n.trim().parse().map_err(|_| format!("{s:?}: expected a percentage such as 5%"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{s:?}: must be between 0% and 100%"));
    }
    Ok(v / 100.0)
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub sets: u64,
    pub chunks_needed: u64,
    pub packs_before: u64,
    pub pack_bytes_before: u64,
    /// Packs deleted whole (no needed chunk).
    pub packs_deleted: u64,
    /// Packs whose needed chunks were copied into new packs.
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub blobs_copied: u64,
    pub bytes_written: u64,
    /// Pack files in no index row, older than the grace period, deleted.
    pub unindexed_packs_deleted: u64,
    /// Bytes of pack files deleted minus bytes of pack files written (with `dry_run`: an
    /// estimate of it).
    pub bytes_freed: u64,
    /// The index epoch after the commit (unchanged when nothing was rewritten).
    pub epoch: i64,
    pub duration_s: f64,
}

/// What to do with each indexed pack.
#[derive(Debug, Default)]
struct Plan {
    delete: Vec<PackUsage>,
    repack: Vec<PackUsage>,
    /// Unindexed pack files old enough to delete, with their sizes.
    unindexed: Vec<(PackId, u64)>,
}

/// Bytes of a pack not taken by its needed blobs (header, trailer, unneeded and duplicate blobs).
fn unused_bytes(u: &PackUsage) -> u64 {
    let overhead = pack::HEADER_LEN + pack::FOOTER_LEN as u64 + pack::ENTRY_LEN as u64 * u.needed;
    u.size.saturating_sub(overhead + u.needed_bytes)
}

fn plan(usage: &[PackUsage], max_unused: f64, target: u64) -> Plan {
    let mut p = Plan::default();
    let mut kept: Vec<&PackUsage> = Vec::new();
    for u in usage {
        // A pack holding the only (damaged) copy of a needed chunk stays as it is: copying
        // the blob would fail its check, and deleting it would turn "damaged" into "gone"
        // for a set that may yet be salvaged. Its other bytes are not counted as waste.
        if u.needed_damaged > 0 {
            continue;
        }
        if u.needed == 0 {
            p.delete.push(u.clone());
        } else {
            kept.push(u);
        }
    }
    // `max_unused` is a share of the whole repository, not of each pack: rewriting a pack
    // costs its needed bytes, so the most wasteful packs go first, and only until what is left
    // unneeded is within the allowance. A per-pack threshold would rewrite every pack that
    // shares space with forgotten data, however little that frees.
    let total: u64 = kept.iter().map(|u| u.size).sum();
    let mut unused: u64 = kept.iter().map(|u| unused_bytes(u)).sum();
    let allowed = (max_unused * total as f64) as u64;
    kept.sort_by(|a, b| {
        let share = |u: &PackUsage| unused_bytes(u) as f64 / u.size.max(1) as f64;
        share(b).total_cmp(&share(a)).then(a.n.cmp(&b.n))
    });
    let mut small = Vec::new();
    for u in kept {
        let waste = unused_bytes(u);
        if unused > allowed && waste > 0 {
            unused -= waste;
            p.repack.push(u.clone());
        } else if u.size < target / 4 {
            small.push(u.clone());
        }
    }
    // Merging one small pack with nothing would only rewrite it (possibly into itself).
    if small.len() >= 2 {
        p.repack.extend(small);
    }
    p
}

/// Marks every tree and chunk reachable from `root`. A tree already marked was walked, so
/// shared subtrees are walked once (no bound on expansion is needed); the depth limit holds.
fn mark_tree(repo: &Repo, idx: &Index, origin: &Origin, root: &TreeId) -> Result<()> {
    if !idx.mark_needed(&root.as_chunk())? {
        return Ok(());
    }
    if known_damaged(idx, root)? {
        return Ok(());
    }
    treewalk::walk(repo, origin, root, origin.component.as_bytes(), &Limits::default(), |e| {
        for c in &e.node.content {
            idx.mark_needed(&c.chunk_id())?;
        }
        match e.node.subtree_id() {
            Some(sub)
                if e.node.kind == NodeKind::Dir && idx.mark_needed(&sub.as_chunk())? && !known_damaged(idx, &sub)? =>
            {
                Ok(Step::Descend)
            }
            _ => Ok(Step::Skip),
        }
    })?;
    Ok(())
}

/// Whether the only copy of tree `id` is recorded damaged (verify found it unreadable).
/// Marking then stops there: what lies below can't be read through this tree by anyone, so
/// it can't make the prune stop; the tree's own row stays (marked needed), and verify keeps
/// reporting the sets that need it as damaged. An unreadable tree *not* known damaged
/// still stops the prune.
fn known_damaged(idx: &Index, id: &TreeId) -> Result<bool> {
    Ok(matches!(idx.lookup_damage(&id.as_chunk())?, Some((_, Some(_)))))
}

/// Reads and checks (decodes and hashes against its id) each of `entries` in the pack `id`:
/// a damaged blob must not be copied under its id as if it were fine.
fn read_needed(repo: &Repo, id: &PackId, entries: &[pack::Entry]) -> Result<Vec<(pack::Entry, Vec<u8>)>> {
    let path = repo.pack_object(id);
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let stored = repo.read_pack_range(id, e.offset, e.offset + e.stored_len as u64)?;
        pack::decode_blob(&path, e, &stored, &repo.hasher, &repo.cipher)?;
        out.push((*e, stored));
    }
    Ok(out)
}

pub fn prune(repo: &Repo, opts: &Options, notify: &mut dyn FnMut(String)) -> Result<Report> {
    let t0 = Instant::now();
    if !(0.0..=1.0).contains(&opts.max_unused) {
        return Err(Error::InvalidInput(format!("max_unused {} is outside 0..=1", opts.max_unused)));
    }
    repo.writable("prune")?;
    if let Some(d) = repo.damaged_index.first() {
        return Err(Error::Failed(format!(
            "{} index object(s) could not be read, so which packs are in use is not known; run `coffer repair index` first ({d})",
            repo.damaged_index.len()
        )));
    }
    let _lease = Lease::acquire(repo.storage.clone(), LeaseKind::Exclusive, "prune", notify)?;
    repo.sync_catalog()?;
    if !opts.dry_run {
        repo.clean_tmp();
    }
    let mut idx = Index::open(&repo.index_path(), &repo.config.repository_id)?;
    let mut rep = Report { dry_run: opts.dry_run, epoch: idx.epoch()?, ..Report::default() };

    // 1. Mark. An unreadable manifest or tree stops the prune: we cannot know what it needs.
    // A damaged manifest's needs are unknown: deleting what no *readable* set names could
    // destroy the only copy of data that set holds (a manifest can be restored from another
    // copy of the repository, its chunks cannot be recreated). So prune refuses unless told
    // to go ahead; a dry run only warns.
    let (sets, damaged) = repo.list_sets_checked()?;
    if !damaged.is_empty() {
        let names: Vec<String> = damaged.iter().map(|d| d.path.display().to_string()).collect();
        if !opts.ignore_damaged_sets && !opts.dry_run {
            return Err(Error::Failed(format!(
                "{} set manifest(s) are damaged ({}); what they need is unknown, so nothing was deleted. \
                 Restore them from another copy of the repository, move them out of sets/, or run prune \
                 with --ignore-damaged-sets to delete what only they might need",
                damaged.len(),
                names.join(", ")
            )));
        }
        for d in &damaged {
            notify(format!("damaged set manifest left out of marking: {}", d.error));
        }
    }
    rep.sets = sets.len() as u64;
    idx.begin_marking()?;
    for (_, m) in &sets {
        for c in &m.components {
            mark_tree(repo, &idx, &Origin::new(m, &c.name), &c.root)?;
        }
    }
    idx.end_marking()?;
    rep.chunks_needed = idx.needed_count()?;
    let (missing, sample) = idx.needed_missing(5)?;
    if missing > 0 {
        let ids: Vec<String> = sample.iter().map(ChunkId::short).collect();
        return Err(Error::Failed(format!(
            "{missing} chunk(s) named by sets are not in the index (e.g. {}); nothing was deleted. Run `coffer verify` and `coffer repair index` first",
            ids.join(", ")
        )));
    }

    // 2. Plan.
    let usage = idx.pack_usage()?;
    rep.packs_before = usage.len() as u64;
    rep.pack_bytes_before = usage.iter().map(|u| u.size).sum();
    let mut plan = plan(&usage, opts.max_unused, repo.config.pack_target_size);
    let indexed: HashSet<PackId> = usage.iter().map(|u| u.id).collect();
    for o in repo.storage.list(Kind::Packs)? {
        let Some(id) = PackId::from_name(&o.name) else { continue };
        if indexed.contains(&id) {
            continue;
        }
        // Listing may lag and a pack may be on its way into an index: only old ones go.
        if o.modified <= opts.now - opts.unindexed_grace {
            plan.unindexed.push((id, o.size));
        }
    }
    rep.packs_deleted = plan.delete.len() as u64;
    rep.packs_repacked = plan.repack.len() as u64;
    rep.unindexed_packs_deleted = plan.unindexed.len() as u64;
    let removed_bytes: u64 = plan.delete.iter().chain(&plan.repack).map(|u| u.size).sum::<u64>()
        + plan.unindexed.iter().map(|(_, s)| s).sum::<u64>();

    if opts.dry_run {
        let copied: u64 = plan.repack.iter().map(|u| u.needed_bytes + pack::ENTRY_LEN as u64 * u.needed).sum();
        let copied_blobs: u64 = plan.repack.iter().map(|u| u.needed).sum();
        let packs = if copied == 0 { 0 } else { copied.div_ceil(repo.config.pack_target_size.max(1)) };
        rep.packs_written = packs;
        rep.blobs_copied = copied_blobs;
        rep.bytes_written = copied + packs * (pack::HEADER_LEN + pack::FOOTER_LEN as u64);
        rep.bytes_freed = removed_bytes.saturating_sub(rep.bytes_written);
        rep.duration_s = t0.elapsed().as_secs_f64();
        return Ok(rep);
    }

    // 3 and 4. Repack inside the transaction; packs are durable before their rows go in.
    let mut new_rows: HashSet<i64> = HashSet::new();
    let mut old_files: Vec<PackId> = Vec::new();
    let mut superseded: Vec<String> = Vec::new();
    if !plan.delete.is_empty() || !plan.repack.is_empty() {
        let rw = idx.begin_rewrite()?;
        let mut writer: Option<PackWriter> = None;
        let seal = |w: PackWriter, rep: &mut Report, new_rows: &mut HashSet<i64>| -> Result<()> {
            let f = w.finish(&*repo.storage)?;
            rep.packs_written += 1;
            rep.bytes_written += f.size;
            new_rows.insert(rw.add_pack(&f, opts.now)?);
            Ok(())
        };
        let mut kept: HashSet<i64> = HashSet::new();
        for u in &plan.repack {
            // Every needed blob is read and checked before any is copied: a blob that fails
            // (damage verify has not recorded yet) keeps the whole pack as it is, and the
            // prune carries on with the others instead of stopping.
            let blobs = match read_needed(repo, &u.id, &rw.needed_entries(u.n)?) {
                Ok(b) => b,
                Err(e) => {
                    notify(format!("keeping pack {} as it is: {e}; run `coffer verify`", u.id.short()));
                    kept.insert(u.n);
                    continue;
                }
            };
            for (e, stored) in blobs {
                let w = match writer.as_mut() {
                    Some(w) => w,
                    None => writer.insert(PackWriter::create(&*repo.storage, &repo.cipher)?),
                };
                w.add(e.id, e.kind, e.compression, &stored, e.raw_len)?;
                rep.blobs_copied += 1;
                if w.size() >= repo.config.pack_target_size {
                    let w = writer.take().expect("just used");
                    seal(w, &mut rep, &mut new_rows)?;
                }
            }
        }
        if let Some(w) = writer.take() {
            seal(w, &mut rep, &mut new_rows)?;
        }
        for u in plan.delete.iter().chain(&plan.repack) {
            // A new pack byte-identical to an old one has its row: it is not deleted.
            if new_rows.contains(&u.n) || kept.contains(&u.n) {
                continue;
            }
            rw.remove_pack(u.n)?;
            old_files.push(u.id);
        }
        // The new state's index objects are durable before the catalog commits to it; the
        // ones they supersede go only after the commit, and the old packs after them.
        let (conn, path) = rw.conn();
        superseded = crate::catalog::consolidate(conn, path, &*repo.storage, opts.now)?;
        rep.epoch = rw.commit()?;
        rep.packs_repacked -= kept.len() as u64;
    }
    crate::catalog::remove_objects(&*repo.storage, &superseded)?;

    // 5. Only now that no row names them: the old pack files, then old unindexed ones. A file
    // the committed index names is never deleted: a new pack can be byte-identical (same id)
    // to an old one, or to an unindexed pack a killed prune wrote in an earlier run.
    let live: HashSet<PackId> = idx.packs()?.into_iter().map(|(id, _)| id).collect();
    let mut deleted_bytes = 0u64;
    let sizes: std::collections::HashMap<PackId, u64> = usage.iter().map(|u| (u.id, u.size)).collect();
    // Returns whether the pack was deleted.
    let mut remove = |id: &PackId, size: u64| -> Result<bool> {
        if live.contains(id) || repo.storage.size(Kind::Packs, &id.to_hex())?.is_none() {
            return Ok(false);
        }
        repo.storage.remove(Kind::Packs, &id.to_hex())?;
        deleted_bytes += size;
        Ok(true)
    };
    for id in &old_files {
        remove(id, sizes.get(id).copied().unwrap_or(0))?;
    }
    rep.unindexed_packs_deleted = 0;
    for (id, size) in std::mem::take(&mut plan.unindexed) {
        rep.unindexed_packs_deleted += remove(&id, size)? as u64;
    }
    rep.packs_deleted = plan.delete.iter().filter(|u| !new_rows.contains(&u.n)).count() as u64;
    rep.bytes_freed = deleted_bytes.saturating_sub(rep.bytes_written);
    rep.duration_s = t0.elapsed().as_secs_f64();
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn usage(n: i64, size: u64, needed: u64, needed_bytes: u64) -> PackUsage {
        PackUsage {
            n,
            id: PackId(Id([n as u8; 32])),
            size,
            entries: needed + 1,
            rows: needed + 1,
            needed,
            needed_bytes,
            needed_damaged: 0,
        }
    }

    #[test]
    fn plan_deletes_unneeded_repacks_wasteful_and_merges_small_packs() {
        let target = 16 << 20;
        let overhead = |needed: u64| pack::HEADER_LEN + pack::FOOTER_LEN as u64 + pack::ENTRY_LEN as u64 * needed;
        let full = |n, needed: u64, bytes: u64| usage(n, bytes + overhead(needed), needed, bytes);
        let p = plan(
            &[
                usage(1, target, 0, 0),                      // nothing needed: delete
                usage(2, target, 10, target / 2),            // half unused: repack
                full(3, 64, target - overhead(64)),          // all needed, big: keep
                usage(4, target, 64, target - target / 100), // 1% unused: keep
                full(5, 3, 1000),                            // small
            ],
            0.05,
            target,
        );
        let ns = |v: &[PackUsage]| v.iter().map(|u| u.n).collect::<Vec<_>>();
        assert_eq!(ns(&p.delete), [1]);
        assert_eq!(ns(&p.repack), [2], "a single small pack is left alone");
        let p = plan(&[full(5, 3, 1000), full(6, 3, 1000), full(3, 64, target - overhead(64))], 0.05, target);
        assert_eq!(ns(&p.repack), [5, 6], "two small packs are merged");
    }

    #[test]
    fn max_unused_is_a_share_of_the_repository() {
        let target = 16 << 20;
        let overhead = |needed: u64| pack::HEADER_LEN + pack::FOOTER_LEN as u64 + pack::ENTRY_LEN as u64 * needed;
        let with_waste = |n, waste: u64| usage(n, target, 10, target - overhead(10) - waste);
        // Ten packs, each 10% unneeded: the most wasteful go first until at most 5% is left.
        let mut packs: Vec<PackUsage> = (1..=10).map(|n| with_waste(n, target / 10)).collect();
        packs[6] = with_waste(7, target / 5);
        let p = plan(&packs, 0.05, target);
        assert_eq!(p.repack.first().map(|u| u.n), Some(7), "the most wasteful pack first");
        let left: u64 = packs.iter().filter(|u| !p.repack.iter().any(|r| r.n == u.n)).map(unused_bytes).sum();
        let total: u64 = packs.iter().map(|u| u.size).sum();
        assert!(left as f64 <= 0.05 * total as f64, "{left} of {total} left unneeded");
        assert!(p.repack.len() < packs.len(), "not every pack is rewritten");
        // One half-empty pack among twenty full ones is within 5% of the repository: kept.
        let mut packs: Vec<PackUsage> = (1..=20).map(|n| with_waste(n, 0)).collect();
        packs.push(with_waste(21, target / 2));
        assert!(plan(&packs, 0.05, target).repack.is_empty());
        assert_eq!(plan(&packs, 0.0, target).repack.iter().map(|u| u.n).collect::<Vec<_>>(), [21]);
    }

    #[test]
    fn max_unused_parses_percentages() {
        assert_eq!(parse_max_unused("5%"), Ok(0.05));
        assert_eq!(parse_max_unused("0"), Ok(0.0));
        assert!(parse_max_unused("101%").is_err());
        assert!(parse_max_unused("lots").is_err());
    }
}
