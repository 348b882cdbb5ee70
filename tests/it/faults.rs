//! Fault tolerance: damaged packs are found and attributed, a lost index is rebuilt, kills at
//! random moments and a full disk never leave a broken repository, concurrent backups both
//! commit, and leases behave.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A repository with several packs: three big random files, some small text files.
fn populated(env: &Env) -> PathBuf {
    let src = env.path("docs");
    for i in 0..3 {
        write(&src.join(format!("big/file{i}.bin")), &bytes(50 + i, 18 * 1024 * 1024));
    }
    for i in 0..20 {
        write(&src.join(format!("small/note{i}.txt")), format!("note {i}\n").repeat(500).as_bytes());
    }
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    src
}

fn copy_repo(env: &Env, name: &str) -> PathBuf {
    let dest = env.path(name);
    let st = Command::new("cp").args(["-a", env.repo().to_str().unwrap(), dest.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    dest
}

/// The pack holding the given file's first chunk, and that chunk's offset in it.
fn chunk_of(repo: &Path, file: &str) -> (PathBuf, u64) {
    let r = crate::support::open_repo(repo);
    let (_, m) = r.resolve_set("latest").unwrap();
    let (node, _) = coffer::browse::lookup(&r, &m, file).unwrap();
    let node = node.expect("a file");
    let loc = r.index().unwrap().lookup(&node.content[0].chunk_id()).unwrap().unwrap();
    (crate::support::pack_file(repo, &loc.pack), loc.entry.offset)
}

fn pack_of(repo: &Path, file: &str) -> PathBuf {
    chunk_of(repo, file).0
}

#[test]
fn damaged_packs_are_detected_and_attributed_to_sets_and_files() {
    let env = Env::new();
    populated(&env);
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");

    // One flipped bit in a pack body: only a full read sees it.
    let repo = copy_repo(&env, "flip");
    let (pack, offset) = chunk_of(&repo, "docs/big/file1.bin");
    let mut data = std::fs::read(&pack).unwrap();
    data[offset as usize + 1000] ^= 0x04;
    std::fs::write(&pack, &data).unwrap();
    assert_eq!(env.verify(&repo, &[]).0, Some(0), "structural verify reads no pack bodies");
    let (code, msg) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(4), "{msg}");
    assert!(msg.contains("DAMAGED") && msg.contains("docs/big/file1.bin"), "{msg}");
    assert!(!msg.contains("docs/big/file0.bin") && !msg.contains("small/note"), "damage over-reported: {msg}");

    // A truncated pack, a missing pack, a corrupt trailer: the structural check sees them.
    let repo = copy_repo(&env, "trunc");
    let pack = pack_of(&repo, "docs/big/file2.bin");
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(len / 2).unwrap();
    let (code, msg) = env.verify(&repo, &[]);
    assert_eq!(code, Some(4), "{msg}");
    assert!(msg.contains(pack.file_name().unwrap().to_str().unwrap()) && msg.contains("docs/big/file2.bin"), "{msg}");

    let repo = copy_repo(&env, "missing");
    let pack = pack_of(&repo, "docs/big/file0.bin");
    std::fs::remove_file(&pack).unwrap();
    let (code, msg) = env.verify(&repo, &[]);
    assert_eq!(code, Some(4), "{msg}");
    assert!(msg.contains("missing") && msg.contains("docs/big/file0.bin"), "{msg}");

    let repo = copy_repo(&env, "trailer");
    let pack = pack_of(&repo, "docs/big/file1.bin");
    let mut data = std::fs::read(&pack).unwrap();
    let at = data.len() - 48 - 20; // inside the entries
    data[at] ^= 0xff;
    std::fs::write(&pack, &data).unwrap();
    let (code, msg) = env.verify(&repo, &["--json"]);
    assert_eq!(code, Some(4), "{msg}");
    let o = env.run(&["verify", "--repo", repo.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = v["errors"].to_string();
    assert!(errors.contains("trailer checksum"), "{v}");
    assert_eq!(v["damaged_sets"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
fn read_data_subsets_cover_every_pack_and_stale_reads_only_unverified() {
    let env = Env::new();
    populated(&env);
    let repo = env.repo();
    let total = crate::support::pack_files(&repo).len() as u64;
    let mut read = 0;
    for n in 1..=3 {
        let o =
            env.run(&["verify", "--repo", repo.to_str().unwrap(), "--read-data-subset", &format!("{n}/3"), "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        read += v["packs_read"].as_u64().unwrap();
    }
    assert_eq!(read, total, "the three slices together read every pack once");
    // Everything was just verified: a 30-day staleness run reads nothing; a new pack is read.
    let o = env.run(&["verify", "--repo", repo.to_str().unwrap(), "--read-data-stale", "30d", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["packs_read"].as_u64(), Some(0), "{v}");
    write(&env.path("more/new.bin"), &bytes(77, 100_000));
    env.backup_json(&[env.path("more").to_str().unwrap()]);
    let o = env.run(&["verify", "--repo", repo.to_str().unwrap(), "--read-data-stale", "30d", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["packs_read"].as_u64(), Some(1), "{v}");
    let bad = env.run(&["verify", "--repo", repo.to_str().unwrap(), "--read-data-subset", "4/3"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// The catalog is a cache: deleted, truncated or garbage, it is rebuilt from the repository's
/// index objects and every command works. Without index objects and catalog, restore fails
/// naming what is missing, and `repair index` rewrites the index objects from the packs.
#[test]
fn a_lost_or_garbage_catalog_is_rebuilt_and_repair_rewrites_the_index_objects() {
    let env = Env::new();
    let src = populated(&env);
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 3] = [
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
        ("truncated", |p| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(1000).unwrap()),
        ("garbage", |p| std::fs::write(p, bytes(3, 200_000)).unwrap()),
    ];
    let repo = env.repo();
    let r = repo.to_str().unwrap();
    for (what, damage) in cases {
        let idx = crate::support::catalog_file(&repo);
        // Fold the WAL in first so the damage hits the real database.
        for s in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", idx.display()));
        }
        damage(&idx);
        let out = env.path(&format!("out-{what}"));
        let o = env.run(&["restore", "--repo", r, "latest", "--target", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
        if what != "deleted" {
            assert!(stderr(&o).contains("rebuilding the local catalog"), "{what}: {}", stderr(&o));
        }
        assert_same_tree(&src, &out.join("docs"));
        let (code, msg) = env.verify(&repo, &["--read-data"]);
        assert_eq!(code, Some(0), "{what}: {msg}");
    }

    // No index objects and no catalog: the packs are there but nothing says what is in them.
    let objects: Vec<PathBuf> = std::fs::read_dir(repo.join("index")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!objects.is_empty());
    for o in &objects {
        std::fs::remove_file(o).unwrap();
    }
    std::fs::remove_file(crate::support::catalog_file(&repo)).unwrap();
    let out = env.path("out-lost");
    let o = env.run(&["restore", "--repo", r, "latest", "--target", out.to_str().unwrap()]);
    assert!(!o.status.success() && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not in the index"), "{}", stderr(&o));
    let rep = env.ok(&["repair", "index", "--repo", r]);
    assert!(rep.contains("rebuilt index") && rep.contains("index objects written"), "{rep}");
    assert!(std::fs::read_dir(repo.join("index")).unwrap().count() > 0, "repair wrote no index object");
    // With a fresh cache too: what repair wrote is in the repository, not only in the catalog.
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let (code, msg) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    let out = env.path("out-repaired");
    env.ok(&["restore", "--repo", r, "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("docs"));
}

/// xorshift for the kill schedule.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn sigkill_at_random_moments_never_breaks_the_repository() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..6 {
        write(&src.join(format!("d{}/f{i}.bin", i % 2)), &bytes(i, 3 * 1024 * 1024));
    }
    env.init();
    let repo = env.repo();
    let mut expected: Vec<(String, std::collections::BTreeMap<String, String>)> = Vec::new();
    let mut rng = 0x5eed_u64;
    let sets = |repo: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(repo.join("sets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    for round in 0..20u64 {
        // Change two files, then start a backup and kill it after a random delay: the fault
        // being injected is the kill itself, at an arbitrary point of the run.
        for k in 0..2 {
            let i = (round * 2 + k) % 6;
            write(
                &src.join(format!("d{}/f{i}.bin", i % 2)),
                &bytes(1000 + round * 10 + k, 3 * 1024 * 1024 + round as usize),
            );
        }
        let state = snapshot(&src);
        let before = sets(&repo);
        let mut child = coffer_cmd()
            .args(["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()])
            .env("COFFER_CACHE_DIR", env.path("cache"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(next(&mut rng) % 400));
        let _ = child.kill();
        child.wait().unwrap();
        let after = sets(&repo);
        // A run killed after its commit point legitimately committed its set.
        for s in after.iter().filter(|s| !before.contains(s)) {
            expected.push((s.clone(), state.clone()));
        }
        let (code, msg) = env.verify(&repo, &[]);
        assert_eq!(code, Some(0), "round {round}: verify after kill: {msg}");
        let r = env.backup_json(&[src.to_str().unwrap()]);
        expected.push((r["set"].as_str().unwrap().to_string(), state));
    }
    let (code, msg) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    for (i, (set, state)) in expected.iter().enumerate() {
        let out = env.path(&format!("r{i}"));
        env.ok(&["restore", "--repo", repo.to_str().unwrap(), set, "--target", out.to_str().unwrap()]);
        assert_eq!(&snapshot(&out.join("src")), state, "set {set} does not restore to what was backed up");
    }
}

#[test]
fn a_full_disk_fails_the_backup_cleanly_and_leaves_a_valid_repository() {
    let env = Env::new();
    let fs = SmallFs::mount(&env.path("small"), "24m");
    let repo = fs.0.join("repo");
    env.ok(&["init", "--repo", repo.to_str().unwrap()]);
    let src = env.path("src");
    write(&src.join("keep.txt"), b"small and important");
    for i in 0..4 {
        write(&src.join(format!("huge{i}.bin")), &bytes(900 + i, 12 * 1024 * 1024));
    }
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains("No space left on device") && msg.contains(repo.to_str().unwrap()), "{msg}");
    assert_eq!(std::fs::read_dir(repo.join("sets")).unwrap().count(), 0, "a failed run committed a set");
    let (code, msg) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "repository not valid after a full disk: {msg}");
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "partial files left in tmp/: {leftovers:?}");
    // With the big files gone, the same source fits and commits.
    for i in 0..4 {
        std::fs::remove_file(src.join(format!("huge{i}.bin"))).unwrap();
    }
    env.ok(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    let out = env.path("out");
    env.ok(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
    drop(fs);
}

#[test]
fn two_concurrent_backups_both_commit_valid_sets() {
    let env = Env::new();
    env.init();
    let repo = env.repo();
    let (a, b) = (env.path("a"), env.path("b"));
    for i in 0..8 {
        write(&a.join(format!("f{i}")), &bytes(i, 2 * 1024 * 1024));
        // Half of b is identical to a: both runs race to store the same chunks.
        let seed = if i % 2 == 0 { i } else { 100 + i };
        write(&b.join(format!("f{i}")), &bytes(seed, 2 * 1024 * 1024));
    }
    let spawn = |p: &Path| {
        coffer_cmd()
            .args(["backup", "--repo", repo.to_str().unwrap(), "--json", p.to_str().unwrap()])
            .env("COFFER_CACHE_DIR", env.path("cache"))
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a).unwrap());
        let hb = s.spawn(|| spawn(&b).unwrap());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(ra.status.success(), "{}", stderr(&ra));
    assert!(rb.status.success(), "{}", stderr(&rb));
    assert_eq!(std::fs::read_dir(repo.join("sets")).unwrap().count(), 2);
    let (code, msg) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    for (name, src) in [("a", &a), ("b", &b)] {
        let v: serde_json::Value = serde_json::from_slice(if name == "a" { &ra.stdout } else { &rb.stdout }).unwrap();
        let out = env.path(&format!("out-{name}"));
        env.ok(&[
            "restore",
            "--repo",
            repo.to_str().unwrap(),
            v["set"].as_str().unwrap(),
            "--target",
            out.to_str().unwrap(),
        ]);
        assert_same_tree(src, &out.join(name));
    }
}

#[test]
fn leases_block_live_holders_and_reclaim_stale_ones() {
    use coffer::lock::{LeaseInfo, LeaseKind};
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"data");
    env.init();
    let repo = env.repo();
    // Leases go through the repository's storage door: sealed like every other object.
    let storage = crate::support::open_repo(&repo).storage.clone();
    let put = |name: &str, info: &LeaseInfo| storage.put(coffer::storage::Kind::Locks, name, &info.encode()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // A live exclusive holder (this test process) blocks a backup, which says who holds it.
    let live = LeaseInfo {
        kind: LeaseKind::Exclusive,
        host: coffer::lock::hostname(),
        pid: std::process::id(),
        command: "prune".into(),
        started: now,
        refreshed: now,
    };
    let live_path = repo.join("locks/live.lease");
    put("live.lease", &live);
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("locked")
            && stderr(&o).contains("prune")
            && stderr(&o).contains(&std::process::id().to_string()),
        "{}",
        stderr(&o)
    );
    std::fs::remove_file(&live_path).unwrap();

    // A lease left by a killed process is reclaimed with a message.
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    let dead_pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let dead = LeaseInfo { pid: dead_pid, ..live.clone() };
    put("dead.lease", &dead);
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("removed stale lease") && stderr(&o).contains(&dead_pid.to_string()), "{}", stderr(&o));

    // `unlock` removes stale leases (one expired long ago on another host) and keeps live ones.
    let old = LeaseInfo { host: "elsewhere".into(), refreshed: now - 7200, ..live.clone() };
    put("old.lease", &old);
    put("live.lease", &live);
    let out = env.ok(&["unlock", "--repo", repo.to_str().unwrap()]);
    assert!(out.contains("old.lease"), "{out}");
    assert!(live_path.exists() && !repo.join("locks/old.lease").exists());
}

/// A repository on read-only storage (a backup disk mounted `ro` for a restore) is still read:
/// sets, ls, restore, dump and `verify --read-data` work without leases, and commands that
/// must write fail naming the repository. Packs a killed backup left, and an empty cache (the
/// catalog rebuilt from the index objects on the read-only disk), change none of that.
#[test]
fn a_repository_on_read_only_storage_is_still_read() {
    let env = Env::new();
    let disk = env.path("disk");
    let fs = SmallFs::mount(&disk, "256m");
    let repo = disk.join("repo");
    let r = repo.to_str().unwrap();
    let src = env.path("docs");
    for i in 0..20 {
        write(&src.join(format!("small/note{i}.txt")), format!("note {i}\n").repeat(300).as_bytes());
    }
    write(&src.join("big.bin"), &bytes(3, 5 << 20));
    env.ok(&["init", "--repo", r]);
    env.ok(&["backup", "--repo", r, src.to_str().unwrap()]);
    let first = env.ok(&["sets", "--repo", r, "--json"]);

    // A second backup killed once it has stored a pack.
    let more = env.path("more");
    for i in 0..6 {
        write(&more.join(format!("m{i}.bin")), &bytes(100 + i, 24 << 20));
    }
    let packs_before = crate::support::pack_files(&repo).len();
    let mut child = coffer_cmd()
        .args(["backup", "--repo", r, more.to_str().unwrap()])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while crate::support::pack_files(&repo).len() == packs_before {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("backup finished ({st}) before a pack of it could be caught");
        }
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let remount = |how: &str| {
        let o = Command::new("mount").args(["-o", &format!("remount,{how}"), disk.to_str().unwrap()]).output().unwrap();
        assert!(o.status.success(), "remount {how}: {}", stderr(&o));
    };
    remount("ro");

    // Reading works: the killed run left no set, the first one is whole.
    assert_eq!(env.ok(&["sets", "--repo", r, "--json"]), first);
    assert!(env.ok(&["ls", "--repo", r, "latest", "docs/small"]).contains("note7.txt"));
    let out = env.path("out");
    let o = env.run(&["restore", "--repo", r, "latest", "--target", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("read-only: reading it without a lease"), "{}", stderr(&o));
    assert_same_tree(&src, &out.join("docs"));
    let dumped = env.run(&["dump", "--repo", r, "latest", "docs/big.bin"]);
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    assert_eq!(dumped.stdout, bytes(3, 5 << 20));
    let (code, err) = env.verify(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "{err}");

    // Writing fails up front, naming the repository.
    for args in [vec!["backup", "--repo", r, src.to_str().unwrap()], vec!["prune", "--repo", r]] {
        let o = env.run(&args);
        assert!(!o.status.success(), "{args:?} succeeded on a read-only repository");
        assert!(stderr(&o).contains(r) && stderr(&o).contains("read-only"), "{args:?}: {}", stderr(&o));
    }
    remount("rw");
    drop(fs);
}
