//! Retention and prune: forgotten sets go and their space comes back, kept sets restore byte
//! for byte, a prune killed at any moment leaves a verifiable repository, prune and backups
//! exclude each other through leases, and dry runs change nothing.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: usize = 1024 * 1024;

/// Every pack file with its size and mtime.
fn packs(repo: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    crate::support::pack_files(repo)
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p).unwrap();
            (p, (m.len(), m.mtime()))
        })
        .collect()
}

fn pack_bytes(repo: &Path) -> u64 {
    packs(repo).values().map(|(s, _)| s).sum()
}

fn set_files(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo.join("sets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn epoch(repo: &Path) -> i64 {
    crate::support::open_repo(repo).index().unwrap().epoch().unwrap()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Backs `src` up as a set named `name`; returns the set id and what `src` looked like.
fn backup(env: &Env, src: &Path, name: &str) -> (String, BTreeMap<String, String>) {
    let state = snapshot(src);
    let v = env.backup_json(&["--name", name, src.to_str().unwrap()]);
    (v["set"].as_str().unwrap().to_string(), state)
}

fn restores_to(env: &Env, set: &str, comp: &str, state: &BTreeMap<String, String>, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    env.ok(&["restore", "--repo", env.repo().to_str().unwrap(), set, "--target", out.to_str().unwrap()]);
    assert_eq!(&snapshot(&out.join(comp)), state, "set {set} does not restore to what was backed up");
}

#[test]
fn forget_and_prune_free_the_space_of_forgotten_sets_and_keep_the_rest_restorable() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let src = env.path("src");
    // Each "db" set: a shared 8 MiB file plus 6 MiB unique to that set.
    write(&src.join("common.bin"), &bytes(1, 8 * MIB));
    let mut db = Vec::new();
    for i in 0..4u64 {
        let _ = std::fs::remove_file(src.join(format!("v{}.bin", i.wrapping_sub(1))));
        write(&src.join(format!("v{i}.bin")), &bytes(100 + i, 6 * MIB));
        write(&src.join("notes/today.txt"), format!("night {i}\n").repeat(100).as_bytes());
        db.push(backup(&env, &src, "db"));
    }
    let other_src = env.path("other");
    write(&other_src.join("o.bin"), &bytes(7, 512 * 1024));
    let other = backup(&env, &other_src, "other");

    let out = env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--name", "db", "--keep-last", "2", "--json"]);
    let v = json(&out);
    assert_eq!(v["forget"]["removed"], 2, "{v}");
    let group = &v["forget"]["groups"][0];
    assert_eq!(group["name"], "db", "{v}");
    let decided: Vec<(String, bool)> = group["sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["keep"].as_bool().unwrap()))
        .collect();
    let want: Vec<(String, bool)> = db.iter().rev().enumerate().map(|(i, (id, _))| (id.clone(), i < 2)).collect();
    assert_eq!(decided, want, "newest first; the two newest kept");
    assert_eq!(group["sets"][0]["reasons"], serde_json::json!(["last"]));

    let before = pack_bytes(&repo);
    let epoch_before = epoch(&repo);
    let v = json(&env.ok(&["prune", "--repo", repo.to_str().unwrap(), "--json"]));
    let after = pack_bytes(&repo);
    let freed = v["bytes_freed"].as_u64().unwrap();
    assert_eq!(before - after, freed, "reported bytes freed match the packs' sizes: {v}");
    // The forgotten sets' unique 2 × 6 MiB (random, so stored uncompressed) is gone.
    assert!(freed >= 11 * MIB as u64 && freed <= 13 * MIB as u64, "freed {freed}: {v}");
    assert!(v["packs_deleted"].as_u64().unwrap() + v["packs_repacked"].as_u64().unwrap() > 0, "{v}");
    assert!(v["duration_s"].as_f64().is_some() && v["packs_written"].as_u64().is_some(), "{v}");
    assert_eq!(epoch(&repo), epoch_before + 1, "prune raises the epoch so files caches are discarded");

    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(!msg.contains("unused pack"), "prune left unindexed packs behind: {msg}");
    let listed: Vec<String> = json(&env.ok(&["sets", "--repo", repo.to_str().unwrap(), "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    for (id, _) in &db[..2] {
        assert!(!listed.contains(id), "forgotten set {id} still listed");
    }
    for (i, (id, state)) in db[2..].iter().chain([&other]).enumerate() {
        assert!(listed.contains(id), "kept set {id} missing from `coffer sets`");
        let comp = if id == &other.0 { "other" } else { "src" };
        restores_to(&env, id, comp, state, &env.path(&format!("out{i}")));
    }

    // A second prune finds nothing more to do, and a backup after it (its files cache now
    // stale by epoch) still commits a set that restores.
    let v = json(&env.ok(&["prune", "--repo", repo.to_str().unwrap(), "--json"]));
    assert_eq!(
        (v["packs_deleted"].as_u64(), v["packs_repacked"].as_u64(), v["bytes_freed"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{v}"
    );
    let (id, state) = backup(&env, &src, "db");
    restores_to(&env, &id, "src", &state, &env.path("out-after"));
}

#[test]
fn forget_refuses_an_empty_policy_and_uses_a_set_definitions_retention() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let src = env.path("src");
    let mut ids = Vec::new();
    for i in 0..3u64 {
        write(&src.join("f.txt"), format!("version {i}\n").as_bytes());
        ids.push(backup(&env, &src, "nightly").0);
    }
    let o = env.run(&["forget", "--repo", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("keep rule"), "{}", stderr(&o));
    assert_eq!(set_files(&repo).len(), 3);

    let def = env.path("nightly.toml");
    let text = format!("name = \"nightly\"\n[retention]\nkeep_last = 1\nkeep_within = \"0s\"\n[[component]]\nname = \"src\"\nkind = \"directory\"\npath = \"{}\"\n", src.display());
    write(&def, text.as_bytes());
    let v = json(&env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--set", def.to_str().unwrap(), "--json"]));
    assert_eq!(v["forget"]["removed"], 2, "{v}");
    assert_eq!(set_files(&repo), vec![ids[2].clone()]);
}

/// xorshift for the kill schedule.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn prune_killed_at_random_moments_leaves_a_verifiable_repository() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let src = env.path("src");
    write(&src.join("base.bin"), &bytes(1, 4 * MIB));
    let mut expected: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut rng = 0x9e11_u64;
    let mut n = 0u64;
    let mut killed_running = 0;
    for round in 0..12 {
        // Two new sets, each with data of its own, then forget all but the newest two.
        for _ in 0..2 {
            n += 1;
            let _ = std::fs::remove_file(src.join(format!("r{}.bin", n - 1)));
            write(&src.join(format!("r{n}.bin")), &bytes(1000 + n, 3 * MIB + n as usize));
            let (id, state) = backup(&env, &src, "db");
            expected.insert(id, state);
        }
        env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "2"]);
        let mut child = coffer_cmd()
            .args(["prune", "--repo", repo.to_str().unwrap()])
            .env("COFFER_CACHE_DIR", env.path("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The injected fault is the kill itself, at an arbitrary point of the prune (a prune
        // of this size takes on the order of 100 ms; later kills just find it finished).
        std::thread::sleep(std::time::Duration::from_millis(next(&mut rng) % 150));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let (code, msg) = env.verify(&env.repo(), &[]);
        assert_eq!(code, Some(0), "round {round}: verify after killed prune: {msg}");
        for (i, id) in set_files(&repo).iter().enumerate() {
            let state = expected.get(id).unwrap_or_else(|| panic!("round {round}: unexpected set {id}"));
            restores_to(&env, id, "src", state, &env.path(&format!("out{i}")));
        }
    }
    eprintln!("prune was still running at {killed_running} of 12 kills");
    // A prune that runs to the end after all that still leaves everything intact.
    env.ok(&["prune", "--repo", repo.to_str().unwrap()]);
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    for (i, id) in set_files(&repo).iter().enumerate() {
        restores_to(&env, id, "src", &expected[id], &env.path(&format!("final{i}")));
    }
}

/// A repository with two sets named "db" of a growing directory: 2 MiB, then 4 MiB.
fn two_nights() -> (Env, PathBuf, PathBuf) {
    let env = Env::new();
    env.init();
    let (repo, src) = (env.repo(), env.path("src"));
    write(&src.join("a.bin"), &bytes(1, 2 * MIB));
    backup(&env, &src, "db");
    write(&src.join("b.bin"), &bytes(2, 2 * MIB));
    backup(&env, &src, "db");
    (env, repo, src)
}

#[test]
fn prune_and_backups_exclude_each_other() {
    use coffer::lock::{Lease, LeaseKind};
    let (env, repo, src) = two_nights();
    let mut quiet = |_m: String| {};
    // The repository's own storage door: leases are sealed like every other object.
    let storage = crate::support::open_repo(&repo).storage.clone();

    // While prune's exclusive lease is held, a backup fails before doing anything.
    let lease = Lease::acquire(storage.clone(), LeaseKind::Exclusive, "prune", &mut quiet).unwrap();
    let (sets, files) = (set_files(&repo), packs(&repo));
    write(&src.join("c.bin"), &bytes(3, 2 * MIB));
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!((set_files(&repo), packs(&repo)), (sets, files), "a locked-out backup commits nothing");
    drop(lease);

    // While a backup's shared lease is held, prune fails before doing anything.
    env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "1"]);
    let lease = Lease::acquire(storage.clone(), LeaseKind::Shared, "backup", &mut quiet).unwrap();
    let (sets, files) = (set_files(&repo), packs(&repo));
    let o = env.run(&["prune", "--repo", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!((set_files(&repo), packs(&repo)), (sets, files), "a locked-out prune changes nothing");
    drop(lease);

    // A reader holds a shared lease too: prune waits for a dump stalled on a full pipe.
    let mut dump = coffer_cmd()
        .args(["dump", "--repo", repo.to_str().unwrap(), "latest"])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = || {
        std::fs::read_dir(repo.join("locks"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with("shared-"))
    };
    while !held() {
        assert!(dump.try_wait().unwrap().is_none(), "dump ended before its lease was seen");
        std::thread::yield_now();
    }
    let (sets, files) = (set_files(&repo), packs(&repo));
    let o = env.run(&["prune", "--repo", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("locked") && stderr(&o).contains("dump"), "{}", stderr(&o));
    assert_eq!((set_files(&repo), packs(&repo)), (sets, files), "a locked-out prune changes nothing");
    drop(dump.stdout.take());
    let o = dump.wait_with_output().unwrap();
    assert!(o.status.success(), "a dump whose reader went away ends quietly: {:?} {}", o.status, stderr(&o));
    assert!(!held(), "the dump's lease outlived it");

    // Real processes racing: each either finishes or fails cleanly with "locked", and no
    // committed set ever names a chunk that is gone.
    for round in 0..4u64 {
        write(&src.join(format!("race{round}.bin")), &bytes(50 + round, 2 * MIB));
        env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "1"]);
        let spawn = |args: &[&str]| {
            coffer_cmd()
                .args(args)
                .env("COFFER_CACHE_DIR", env.path("cache"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let b = spawn(&["backup", "--repo", repo.to_str().unwrap(), "--name", "db", src.to_str().unwrap()]);
        let p = spawn(&["prune", "--repo", repo.to_str().unwrap(), "--max-unused", "0%"]);
        for (what, child) in [("backup", b), ("prune", p)] {
            let o = child.wait_with_output().unwrap();
            assert!(
                o.status.success() || (o.status.code() == Some(1) && stderr(&o).contains("locked")),
                "round {round}: {what}: {:?} {}",
                o.status,
                stderr(&o)
            );
        }
        let (code, msg) = env.verify(&env.repo(), &[]);
        assert_eq!(code, Some(0), "round {round}: {msg}");
    }
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn dry_runs_change_nothing() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let src = env.path("src");
    for i in 0..3u64 {
        write(&src.join(format!("v{i}.bin")), &bytes(10 + i, 3 * MIB));
        backup(&env, &src, "db");
        std::fs::remove_file(src.join(format!("v{i}.bin"))).unwrap();
    }
    let (sets, files, ep) = (set_files(&repo), packs(&repo), epoch(&repo));
    let v = json(&env.ok(&[
        "forget",
        "--repo",
        repo.to_str().unwrap(),
        "--keep-last",
        "1",
        "--dry-run",
        "--prune",
        "--json",
    ]));
    assert_eq!(v["forget"]["removed"], 2, "{v}");
    assert!(v["prune"].is_null(), "--dry-run does not prune: {v}");
    assert_eq!((set_files(&repo), packs(&repo), epoch(&repo)), (sets.clone(), files.clone(), ep));

    // Forget for real, then a prune dry run: it says what it would free and frees nothing.
    env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "1"]);
    let sets = set_files(&repo);
    let v = json(&env.ok(&["prune", "--repo", repo.to_str().unwrap(), "--dry-run", "--json"]));
    assert!(v["bytes_freed"].as_u64().unwrap() >= 5 * MIB as u64, "{v}");
    assert_eq!((set_files(&repo), packs(&repo), epoch(&repo)), (sets, files, ep));
}

#[test]
fn old_unindexed_packs_are_deleted_but_never_one_the_index_names() {
    for encrypted in [false, true] {
        old_unindexed_packs_case(encrypted);
    }
}

/// Unencrypted, a repack is deterministic: the copy's packs are rewritten byte for byte and
/// indexed again. Encrypted, nonces and blob order are random: no repack is ever the same
/// file, so the copy's packs are garbage like any other.
fn old_unindexed_packs_case(encrypted: bool) {
    let env = Env::new();
    if encrypted {
        env.init();
    } else {
        env.init_clear();
    }
    let repo = env.repo();
    let src = env.path("src");
    write(&src.join("keep.bin"), &bytes(1, 3 * MIB));
    write(&src.join("drop.bin"), &bytes(2, 3 * MIB));
    backup(&env, &src, "db");
    std::fs::remove_file(src.join("drop.bin")).unwrap();
    let (id, state) = backup(&env, &src, "db");
    env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "1"]);

    // Prune a copy first: its new packs, dropped into the original as unindexed files, are
    // what a prune killed before its commit leaves behind.
    let copy = env.path("copy");
    assert!(Command::new("cp")
        .args(["-a", repo.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let before: Vec<PathBuf> = packs(&copy).into_keys().collect();
    let v = json(&env.ok(&["prune", "--repo", copy.to_str().unwrap(), "--json"]));
    assert!(v["packs_written"].as_u64().unwrap() > 0, "the scenario needs a repack: {v}");
    let written: Vec<PathBuf> = packs(&copy).into_keys().filter(|p| !before.contains(p)).collect();
    assert!(!written.is_empty());
    let mut leftovers = Vec::new();
    for p in &written {
        let dest = repo.join(p.strip_prefix(&copy).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(p, &dest).unwrap();
        leftovers.push(dest);
    }
    // And one unrelated, unindexed pack left by a killed backup.
    let stray = repo.join("packs/ff/ff00000000000000000000000000000000000000000000000000000000000000");
    write(&stray, b"not a pack, and nobody names it");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let r = crate::support::open_repo(&repo);
    // Young unindexed packs are left alone (a writer may still be about to index them)…
    let mut opts = coffer::prune::Options::new(now);
    opts.dry_run = true;
    assert_eq!(coffer::prune::prune(&r, &opts, &mut |_| {}).unwrap().unindexed_packs_deleted, 0);
    // …old ones go, except the ones this prune rewrites byte for byte and indexes.
    opts.dry_run = false;
    opts.unindexed_grace = -10;
    let rep = coffer::prune::prune(&r, &opts, &mut |_| {}).unwrap();
    assert!(rep.unindexed_packs_deleted >= 1, "{rep:?}");
    assert!(!stray.exists(), "an old unindexed pack is garbage");
    for p in &leftovers {
        if encrypted {
            assert!(!p.exists(), "{} is a sealed repack nobody names: garbage", p.display());
        } else {
            assert!(p.exists(), "{} is indexed again and must survive", p.display());
        }
    }
    drop(r);
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    assert!(!msg.contains("unused pack"), "{msg}");
    restores_to(&env, &id, "src", &state, &env.path("out"));
}

#[test]
fn prune_refuses_to_run_when_a_set_names_a_chunk_the_index_lacks() {
    let (env, repo, _) = two_nights();
    env.ok(&["forget", "--repo", repo.to_str().unwrap(), "--keep-last", "1"]);
    // A damaged catalog: one chunk of the kept set has lost its row.
    let db = rusqlite::Connection::open(crate::support::catalog_file(&repo)).unwrap();
    assert_eq!(
        db.execute("DELETE FROM chunks WHERE id = (SELECT id FROM chunks WHERE kind = 0 LIMIT 1)", []).unwrap(),
        1
    );
    drop(db);
    let (sets, files) = (set_files(&repo), packs(&repo));
    let o = env.run(&["prune", "--repo", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not in the index") && stderr(&o).contains("repair index"), "{}", stderr(&o));
    assert_eq!((set_files(&repo), packs(&repo)), (sets, files), "nothing is deleted");
}
