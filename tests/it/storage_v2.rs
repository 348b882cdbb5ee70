//! Format v2 through the library: backup, restore, verify and prune on `MemStorage` as on a
//! directory; every put or read of a backup and of a prune failing in turn (`FaultyStorage`,
//! in a loop over the call index) leaves a repository that verifies, with every committed
//! set restorable, and an error naming the object; the catalog is only a cache.

use crate::support::*;
use coffer::backup::{self, Source};
use coffer::repo::Repo;
use coffer::storage::{Effect, Fault, FaultyStorage, Kind, MemStorage, Op, Storage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Two states of a small tree: `a`, and `b` with one file changed, one removed, one added.
struct Sources {
    dir: tempfile::TempDir,
}

impl Sources {
    fn new() -> Sources {
        let dir = tempfile::tempdir().unwrap();
        for (state, seed) in [("a", 0u64), ("b", 0)] {
            let root = dir.path().join(state);
            for i in 0..12u64 {
                write(&root.join(format!("d{}/f{i}.bin", i % 3)), &bytes(seed + i, 20_000 + i as usize * 3_000));
            }
            write(&root.join("big.bin"), &bytes(99, 700_000));
        }
        let b = dir.path().join("b");
        write(&b.join("d1/f4.bin"), &bytes(1000, 40_000));
        std::fs::remove_file(b.join("d2/f5.bin")).unwrap();
        write(&b.join("new/g.txt"), &b"nightly ".repeat(5000));
        age_tree(&dir.path().join("a"), 1_600_000_000);
        age_tree(&b, 1_600_000_000);
        Sources { dir }
    }
    fn path(&self, state: &str) -> PathBuf {
        self.dir.path().join(state)
    }
}

fn opts(cache: &Path) -> backup::Options {
    let mut o = backup::Options::new("docs");
    o.cache_root = cache.to_path_buf();
    o.threads = Some(2);
    o
}

fn back_up(repo: &Repo, src: &Path, cache: &Path) -> coffer::Result<coffer::id::SetId> {
    let sources = [Source::Path { name: "docs".into(), path: src.to_path_buf() }];
    backup::run(repo, &sources, &opts(cache)).map(|r| r.set)
}

fn verify_all(repo: &Repo) -> coffer::verify::Report {
    let o = coffer::verify::Options { read_data: coffer::verify::ReadData::All, now: 0, progress: None };
    coffer::verify::verify(repo, &o).unwrap()
}

/// Restores every committed set and compares it with the source state it was taken of
/// (told apart by content: the states differ).
fn every_set_restores(repo: &Repo, states: &BTreeMap<String, BTreeMap<String, String>>, what: &str) -> usize {
    let sets = repo.list_sets().unwrap();
    for (id, m) in &sets {
        let out = tempfile::tempdir().unwrap();
        coffer::restore::restore(repo, m, out.path(), &Default::default())
            .unwrap_or_else(|e| panic!("{what}: set {} does not restore: {e}", id.short()));
        let got = snapshot(&out.path().join("docs"));
        assert!(states.values().any(|s| *s == got), "{what}: set {} restored to neither state", id.short());
    }
    sets.len()
}

fn states(s: &Sources) -> BTreeMap<String, BTreeMap<String, String>> {
    ["a", "b"].iter().map(|n| (n.to_string(), snapshot(&s.path(n)))).collect()
}

fn now() -> String {
    coffer::clock::format(time::OffsetDateTime::now_utc())
}

#[test]
fn backup_restore_verify_and_prune_round_trip_on_memory_storage() {
    let s = Sources::new();
    let cache = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemStorage::new());
    let repo = Repo::init_storage(mem.clone(), &init_options(), now(), cache.path()).unwrap();
    let first = back_up(&repo, &s.path("a"), cache.path()).unwrap();
    back_up(&repo, &s.path("b"), cache.path()).unwrap();
    assert!(mem.list(Kind::Index).unwrap().len() >= 2, "each backup writes its index objects");
    assert_eq!(every_set_restores(&repo, &states(&s), "two nights"), 2);
    let v = verify_all(&repo);
    assert!(v.is_ok() && v.packs_read > 0, "{v:?}");

    repo.remove_manifest(&first).unwrap();
    let p = coffer::prune::prune(&repo, &coffer::prune::Options::new(0), &mut |_| {}).unwrap();
    assert!(p.packs_written + p.packs_deleted > 0, "the scenario needs a prune that changes packs: {p:?}");
    assert_eq!(mem.list(Kind::Index).unwrap().len(), 1, "prune consolidates the index objects");
    let v = verify_all(&repo);
    assert!(v.is_ok() && v.unused_packs.is_empty(), "{v:?}");
    drop(repo);

    // Another machine: an empty cache learns everything from the index objects.
    let other = tempfile::tempdir().unwrap();
    let repo = Repo::open_storage(mem.clone(), other.path(), false, &password()).unwrap();
    assert_eq!(every_set_restores(&repo, &states(&s), "fresh cache"), 1);
    assert!(verify_all(&repo).is_ok());
}

/// A repository with one set of state `a`, on fresh memory storage.
fn base(s: &Sources, cache: &Path) -> Arc<MemStorage> {
    let mem = Arc::new(MemStorage::new());
    let repo = Repo::init_storage(mem.clone(), &init_options(), now(), cache).unwrap();
    back_up(&repo, &s.path("a"), cache).unwrap();
    mem
}

/// After an operation under `fault` (which may have failed): the repository, read with a clean
/// storage and an empty cache, verifies and every committed set restores.
fn still_whole(mem: Arc<MemStorage>, s: &Sources, what: &str) -> usize {
    let cache = tempfile::tempdir().unwrap();
    let repo = Repo::open_storage(mem, cache.path(), false, &password()).unwrap();
    let v = verify_all(&repo);
    assert!(v.is_ok(), "{what}: {v:?}");
    every_set_restores(&repo, &states(s), what)
}

fn check_error(e: &coffer::Error, what: &str) {
    let msg = e.to_string();
    assert!(!msg.contains("panicked"), "{what}: {msg}");
    assert!(msg.contains("mem:/"), "{what}: the error names no object: {msg}");
}

/// The effects a fault on `op` can have.
fn effects(op: Op) -> Vec<Effect> {
    match op {
        Op::Read => vec![Effect::Fail, Effect::Short, Effect::Corrupt],
        _ => vec![Effect::Fail, Effect::FailAfterWrite],
    }
}

#[test]
fn a_put_or_read_failing_at_any_step_of_a_backup_leaves_every_committed_set_restorable() {
    let s = Sources::new();
    // Count the calls a second backup makes, from opening the repository on.
    let cache = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new(base(&s, cache.path())));
    let repo = Repo::open_storage(faulty.clone(), cache.path(), false, &password()).unwrap();
    back_up(&repo, &s.path("b"), cache.path()).unwrap();
    let mut failed = 0;
    for op in [Op::Put, Op::Read, Op::List, Op::Remove] {
        let calls = faulty.calls(op);
        assert!(op == Op::Remove || calls > 0, "{op:?}: no calls to fail");
        for n in 1..=calls {
            for effect in effects(op) {
                let what = format!("{op:?} #{n} {effect:?}");
                let cache = tempfile::tempdir().unwrap();
                let mem = base(&s, cache.path());
                let faulty = Arc::new(FaultyStorage::new(mem.clone()));
                faulty.add(Fault::nth(op, n, effect));
                let r = Repo::open_storage(faulty.clone(), cache.path(), false, &password())
                    .and_then(|repo| back_up(&repo, &s.path("b"), cache.path()));
                if let Err(e) = &r {
                    check_error(e, &what);
                    failed += 1;
                }
                let sets = still_whole(mem, &s, &what);
                assert_eq!(sets, if r.is_ok() { 2 } else { sets.max(1) }, "{what}");
            }
        }
    }
    assert!(failed > 0, "no fault made a backup fail: the loop tests nothing");
}

#[test]
fn a_put_or_read_failing_at_any_step_of_a_prune_leaves_the_kept_set_restorable() {
    let s = Sources::new();
    let setup = |cache: &Path| -> Arc<MemStorage> {
        let mem = base(&s, cache);
        let repo = Repo::open_storage(mem.clone(), cache, false, &password()).unwrap();
        back_up(&repo, &s.path("b"), cache).unwrap();
        let (first, _) = repo.list_sets().unwrap().remove(0);
        repo.remove_manifest(&first).unwrap();
        mem
    };
    let prune = |repo: &Repo| coffer::prune::prune(repo, &coffer::prune::Options::new(0), &mut |_| {});
    let cache = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultyStorage::new(setup(cache.path())));
    let repo = Repo::open_storage(faulty.clone(), cache.path(), false, &password()).unwrap();
    let p = prune(&repo).unwrap();
    assert!(p.packs_written > 0, "the scenario needs a repack: {p:?}");
    let mut failed = 0;
    for op in [Op::Put, Op::Read, Op::List, Op::Remove] {
        for n in 1..=faulty.calls(op) {
            for effect in effects(op) {
                let what = format!("prune: {op:?} #{n} {effect:?}");
                let cache = tempfile::tempdir().unwrap();
                let mem = setup(cache.path());
                let faulty = Arc::new(FaultyStorage::new(mem.clone()));
                faulty.add(Fault::nth(op, n, effect));
                let r =
                    Repo::open_storage(faulty.clone(), cache.path(), false, &password()).and_then(|repo| prune(&repo));
                if let Err(e) = &r {
                    check_error(e, &what);
                    failed += 1;
                }
                // The failed command's process ends: a lease it could not remove is then stale
                // (its pid is gone). Here the pid lives on, so the lease is removed by hand.
                for l in mem.list(Kind::Locks).unwrap() {
                    mem.remove(Kind::Locks, &l.name).unwrap();
                }
                assert_eq!(still_whole(mem.clone(), &s, &what), 1, "{what}");
                // And the next prune, without faults, finishes the job.
                let cache = tempfile::tempdir().unwrap();
                let repo = Repo::open_storage(mem.clone(), cache.path(), false, &password()).unwrap();
                prune(&repo).unwrap_or_else(|e| panic!("{what}: the next prune fails: {e}"));
                assert_eq!(still_whole(mem, &s, &what), 1, "{what}, pruned again");
            }
        }
    }
    assert!(failed > 0, "no fault made a prune fail: the loop tests nothing");
}
