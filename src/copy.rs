//! `coffer copy`: sets from one repository into another (a second destination).
//!
//! Both repositories must compute the same chunk ids for the same bytes: the destination is
//! made with `init --from-repo SOURCE`, which gives it the source's chunk-id key, gear seed
//! and chunk sizes (its own password, data key and repository id). A set then keeps its id,
//! its trees and its chunk ids in both, and only the blobs the destination lacks travel.
//!
//! Invariants:
//! - Every blob read from the source is opened and checked against its id before it is
//!   stored in the destination, sealed afresh under the destination's key; its zstd frame
//!   travels as it is (no second compression).
//! - The write order is backup's: packs durable and indexed, index objects, then the
//!   manifest (its exact bytes, so the id stays). A copy killed at any moment leaves no set
//!   in the destination; the packs it made durable are adopted by the next run, whose blobs
//!   are then not sent again.
//! - A subtree is skipped only when it is the same tree as at the same place in a set the
//!   destination has *committed* (of the same name): a committed set's trees are complete
//!   there. A tree blob alone proves nothing: a killed run may have stored a tree whose
//!   chunks' pack never became durable.

use crate::error::{Error, Result};
use crate::id::{ChunkId, SetId, TreeId};
use crate::lock::{Lease, LeaseKind};
use crate::pack::BlobKind;
use crate::repo::Repo;
use crate::set::Manifest;
use crate::sink::{self, Counters, Sink};
use crate::storage::Kind;
use crate::tree::{ChunkRef, Tree};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Instant;

/// Which of the source's sets to copy.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Set ids, unique id prefixes or `latest` (none: every set).
    pub sets: Vec<String>,
    /// Only sets of this name.
    pub name: Option<String>,
    /// Only the newest set of each name.
    pub latest: bool,
    /// Only sets newer than the destination's newest set of their name: what a nightly job
    /// catches a destination up with, never an older set its retention already forgot.
    pub catch_up: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The sets copied, oldest first.
    pub sets_copied: Vec<SetId>,
    /// Selected sets the destination already had.
    pub sets_present: u64,
    pub chunks_copied: u64,
    /// Bytes written to the destination: packs and manifests.
    pub bytes_sent: u64,
    pub duration_s: f64,
}

/// Chunks gathered before they are copied in parallel.
const BATCH: usize = 256;

/// Copies the selected sets of `from` that `to` lacks, oldest first.
pub fn copy(from: &Repo, to: &Repo, select: &Selection, notify: &mut dyn FnMut(String)) -> Result<Report> {
    let t0 = Instant::now();
    check_same_chunking(from, to)?;
    to.writable("copy")?;
    let _from_lease = Lease::acquire_reader(from, "copy", &mut *notify)?;
    let _to_lease = Lease::acquire(to.storage.clone(), LeaseKind::Shared, "copy", &mut *notify)?;
    // Prunes that finished elsewhere since opening; then what a killed copy left.
    from.sync_catalog()?;
    to.sync_catalog()?;
    to.clean_tmp();
    let now = crate::clock::now_secs();
    let adopted = to.adopt_unindexed_packs(now)?;
    if adopted > 0 {
        notify(format!("{}: indexed {adopted} pack(s) left by an interrupted run", to.storage.location()));
    }
    let wanted = select_sets(from, select)?;
    // One listing of the destination: the sets it holds (a damaged manifest is still there,
    // and copying over it is `verify`'s call, not ours), and those that read, whose
    // subtrees a new set may share.
    let (mut committed, damaged) = to.list_sets_checked()?;
    let mut present: HashSet<SetId> = committed.iter().map(|(id, _)| *id).chain(damaged.iter().map(|d| d.id)).collect();
    let newest_there = |name: &str| {
        committed.iter().filter(|(_, m)| m.name == name).filter_map(|(_, m)| crate::clock::parse(&m.started).ok()).max()
    };
    let todo: Vec<(SetId, Manifest)> = wanted
        .iter()
        .filter(|(id, _)| !present.contains(id))
        .filter(|(_, m)| {
            !select.catch_up
                || match (newest_there(&m.name), crate::clock::parse(&m.started).ok()) {
                    (Some(there), Some(started)) => started > there,
                    _ => true,
                }
        })
        .cloned()
        .collect();
    let sets_present = (wanted.len() - todo.len()) as u64;
    let counters = Counters::default();
    let mut manifest_bytes = 0;
    let mut copied = Vec::new();
    let pool = reader_pool(from)?;
    for (id, m) in todo {
        let reference = committed.iter().rev().find(|(_, c)| c.name == m.name).map(|(_, c)| c.clone());
        sink::pack_into(to, &counters, now, |sink| {
            let walk = Walk { from, to, sink, done: Mutex::new(HashSet::new()) };
            pool.install(|| {
                for c in &m.components {
                    let base = reference.as_ref().and_then(|r| r.component(&c.name)).map(|rc| rc.root);
                    walk.tree(c.root, base)?;
                }
                Ok(())
            })
        })?;
        let bytes = from.storage.read(Kind::Sets, &id.to_hex(), None)?;
        to.commit_manifest_bytes(&id, &bytes)?;
        manifest_bytes += bytes.len() as u64;
        notify(format!("set {} ({}, {}) copied", id.short(), m.name, m.started));
        present.insert(id);
        committed.push((id, m));
        copied.push(id);
    }
    Ok(Report {
        sets_copied: copied,
        sets_present,
        chunks_copied: counters.chunks_new.load(Relaxed),
        bytes_sent: counters.pack_bytes.load(Relaxed) + manifest_bytes,
        duration_s: t0.elapsed().as_secs_f64(),
    })
}

/// Copies the sets named `name` that the destination `dest` of a set definition lacks,
/// newer than its newest one (see [`Selection::catch_up`]), from `from`. The destination's
/// password comes from its definition, else from `primary_password`.
pub fn to_destination(
    from: &Repo,
    dest: &crate::setdef::DestinationDef,
    name: &str,
    primary_password: &crate::crypto::password::Source,
    notify: &mut dyn FnMut(String),
) -> Result<Report> {
    let to = open_destination(dest, primary_password)?;
    let select = Selection { name: Some(name.to_string()), catch_up: true, ..Selection::default() };
    copy(from, &to, &select, notify)
}

/// Opens a set definition's destination repository.
pub fn open_destination(
    dest: &crate::setdef::DestinationDef,
    primary_password: &crate::crypto::password::Source,
) -> Result<Repo> {
    let creds = crate::storage::S3Credentials::from_env().or_profile(dest.s3_profile.clone());
    Repo::open_at_with(&dest.location()?, &crate::filecache::cache_root(), &dest.password(primary_password), &creds)
}

/// Fails unless the same bytes get the same chunk id in both repositories.
fn check_same_chunking(from: &Repo, to: &Repo) -> Result<()> {
    // Compared through their effect, so no key leaves its repository's memory.
    let probe = b"coffer copy: do both repositories name chunks alike?";
    if from.hasher.id(probe) != to.hasher.id(probe) {
        return Err(Error::InvalidInput(format!(
            "{} was not made from {}: its chunk ids differ, so nothing would deduplicate; make the destination with `coffer init --repo DEST --from-repo {}`",
            to.storage.location(),
            from.storage.location(),
            from.storage.location()
        )));
    }
    Ok(())
}

/// The selected sets, oldest first.
fn select_sets(from: &Repo, select: &Selection) -> Result<Vec<(SetId, Manifest)>> {
    let mut sets = if select.sets.is_empty() {
        from.list_sets()?
    } else {
        let mut picked = Vec::new();
        for spec in &select.sets {
            let s = from.resolve_set(spec)?;
            if !picked.iter().any(|(id, _): &(SetId, Manifest)| *id == s.0) {
                picked.push(s);
            }
        }
        picked.sort_by_cached_key(|(id, m)| (crate::clock::parse(&m.started).ok(), *id));
        picked
    };
    if let Some(n) = &select.name {
        sets.retain(|(_, m)| &m.name == n);
    }
    if select.latest {
        let mut seen = HashSet::new();
        let mut newest: Vec<_> = sets.into_iter().rev().filter(|(_, m)| seen.insert(m.name.clone())).collect();
        newest.reverse();
        sets = newest;
    }
    Ok(sets)
}

/// Reading threads: more than the cores when the source is an object store, where each
/// read mostly waits.
fn reader_pool(from: &Repo) -> Result<rayon::ThreadPool> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(from.storage.readers(cores))
        .thread_name(|i| format!("coffer-copy-{i}"))
        .build()
        .map_err(|e| Error::Failed(format!("thread pool: {e}")))
}

/// One set's walk: its trees in depth-first order, the chunks they name in parallel batches.
struct Walk<'a> {
    from: &'a Repo,
    to: &'a Repo,
    sink: &'a Sink<'a>,
    /// Trees already walked by this run (a copy commits all of them or none).
    done: Mutex<HashSet<TreeId>>,
}

impl Walk<'_> {
    /// Copies the tree `id` and everything below it that the destination lacks. `base` is the
    /// tree at the same place in a committed destination set, if there is one.
    fn tree(&self, id: TreeId, base: Option<TreeId>) -> Result<()> {
        if base == Some(id) || !self.done.lock().unwrap_or_else(|p| p.into_inner()).insert(id) {
            return Ok(());
        }
        let (bytes, tree) = self.from.read_tree_bytes(&id)?;
        let base_tree = base.and_then(|b| self.base_tree(&b));
        let mut chunks: Vec<ChunkRef> = Vec::new();
        for node in &tree.nodes {
            chunks.extend_from_slice(&node.content);
            if chunks.len() >= BATCH {
                self.chunks(&std::mem::take(&mut chunks))?;
            }
            if let Some(sub) = node.subtree_id() {
                let base_sub = base_tree.as_ref().and_then(|t| t.find(&node.name)).and_then(|n| n.subtree_id());
                self.tree(sub, base_sub)?;
            }
        }
        self.chunks(&chunks)?;
        if self.sink.claim_missing(&id.as_chunk())? {
            self.sink.store_claimed(BlobKind::Tree, id.as_chunk(), &bytes)?;
        }
        Ok(())
    }

    /// A committed destination set's tree, read where it is cheapest. Unreadable (a damaged
    /// destination): `None`, and the subtree is walked in full.
    fn base_tree(&self, id: &TreeId) -> Option<Tree> {
        let in_source = self.from.index().ok()?.lookup(&id.as_chunk()).ok()?.is_some();
        let repo = if in_source { self.from } else { self.to };
        repo.read_tree(id).ok()
    }

    /// Copies the chunks the destination lacks, in parallel.
    fn chunks(&self, refs: &[ChunkRef]) -> Result<()> {
        refs.par_iter().try_for_each(|c| {
            let id: ChunkId = c.chunk_id();
            if !self.sink.claim_missing(&id)? {
                return Ok(());
            }
            self.chunk(c, id)
        })
    }

    /// Copies one chunk: opened with the source's key, checked, and stored with its
    /// compression as it is (sealed with the destination's key): a copy does not compress
    /// again.
    fn chunk(&self, c: &ChunkRef, id: ChunkId) -> Result<()> {
        let (e, opened) = self.from.read_file_chunk_opened(c, "copy")?;
        self.sink.store_compressed(BlobKind::Data, id, e.compression, opened.into(), e.raw_len).map(|_| ())
    }
}
