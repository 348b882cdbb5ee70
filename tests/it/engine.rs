//! The archiver engine through the CLI: round trips, incremental runs, dedup, crash safety
//! and clear errors on bad input.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A tree with the awkward cases: empty files and dirs, files many times the max chunk size,
/// unicode and long names, symlinks (relative, absolute, dangling), odd modes, a deep path.
fn awkward_tree(root: &std::path::Path) {
    write(&root.join("empty-file"), b"");
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    // Max chunk is 1 MiB: 11 MiB of random data is many chunks.
    write(&root.join("big/random.bin"), &bytes(1, 11 * 1024 * 1024 + 17));
    write(&root.join("big/text.sql"), "INSERT INTO alf_node VALUES (1, 'x');\n".repeat(200_000).as_bytes());
    write(&root.join("ünïcødé/日本語 ファイル.txt"), "こんにちは".as_bytes());
    write(&root.join(format!("long/{}", "n".repeat(200))), b"long name");
    let mut deep = root.join("deep");
    for i in 0..40 {
        deep = deep.join(format!("level{i}"));
    }
    write(&deep.join("leaf.txt"), b"deep leaf");
    std::os::unix::fs::symlink("big/text.sql", root.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    write(&root.join("modes/exec.sh"), b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(root.join("modes/exec.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&root.join("modes/private"), b"secret");
    std::fs::set_permissions(root.join("modes/private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    for i in 0..50 {
        write(&root.join(format!("many/f{i:03}")), &bytes(100 + i, (i as usize) * 1000));
    }
}

#[test]
fn round_trip_of_awkward_tree_is_byte_identical() {
    let env = Env::new();
    let src = env.path("src");
    awkward_tree(&src);
    env.init();
    let r = env.backup_json(&[src.to_str().unwrap()]);
    assert_eq!(r["files"]["new"].as_u64(), Some(58), "{r}");
    let target = env.path("out");
    env.ok(&["restore", "--repo", env.repo().to_str().unwrap(), "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));
}

#[test]
fn restore_refuses_to_overwrite_unless_asked_and_restores_a_subpath() {
    let env = Env::new();
    let src = env.path("src");
    awkward_tree(&src);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = env.repo();
    let target = env.path("out");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", t, "--path", "src/modes"]);
    assert!(target.join("src/modes/exec.sh").exists());
    assert!(!target.join("src/big").exists(), "--path restored more than asked");
    let again = env.run(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", t, "--path", "src/modes"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    std::fs::write(target.join("src/modes/private"), b"changed").unwrap();
    env.ok(&[
        "restore",
        "--repo",
        repo.to_str().unwrap(),
        "latest",
        "--target",
        t,
        "--path",
        "src/modes",
        "--overwrite",
    ]);
    assert_eq!(std::fs::read(target.join("src/modes/private")).unwrap(), b"secret");
    let missing = env.run(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", t, "--path", "nope"]);
    assert!(stderr(&missing).contains("no component"), "{}", stderr(&missing));
}

#[test]
fn second_run_reads_only_the_changed_file() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..30 {
        write(&src.join(format!("2024/1/{}/doc{i}.bin", i % 3)), &bytes(i, 50_000 + i as usize * 10));
    }
    age_tree(&src, 1_600_000_000);
    env.init();
    let first = env.backup_json(&[src.to_str().unwrap()]);
    assert_eq!(first["files"]["new"].as_u64(), Some(30));
    let total = first["bytes_read"].as_u64().unwrap();
    assert!(total > 1_500_000);

    let changed = src.join("2024/1/1/doc4.bin");
    let new_content = bytes(999, 70_000);
    std::fs::write(&changed, &new_content).unwrap();
    let t = filetime::FileTime::from_unix_time(1_600_000_100, 0);
    filetime::set_file_times(&changed, t, t).unwrap();
    let second = env.backup_json(&[src.to_str().unwrap()]);
    assert_eq!(second["bytes_read"].as_u64(), Some(new_content.len() as u64), "{second}");
    assert_eq!(second["files"]["changed"].as_u64(), Some(1), "{second}");
    assert_eq!(second["files"]["unchanged"].as_u64(), Some(29), "{second}");
    assert_eq!(second["files"]["new"].as_u64(), Some(0), "{second}");

    // Nothing changed: nothing read, nothing stored.
    let third = env.backup_json(&[src.to_str().unwrap()]);
    assert_eq!(third["bytes_read"].as_u64(), Some(0), "{third}");
    assert_eq!(third["bytes_stored"].as_u64(), Some(0), "{third}");

    // Each set restores to what it was.
    let out = env.path("out");
    env.ok(&["restore", "--repo", env.repo().to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn fresh_files_are_not_trusted_by_the_cache() {
    // Files modified within the racy window of the scan are re-read on the next run even
    // though their metadata did not change.
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("new.txt"), b"just written");
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let again = env.backup_json(&[src.to_str().unwrap()]);
    assert_eq!(again["bytes_read"].as_u64(), Some(12), "{again}");
}

#[test]
fn identical_files_and_repeated_runs_store_nothing_new() {
    let env = Env::new();
    let src = env.path("src");
    let doc = bytes(5, 3 * 1024 * 1024);
    write(&src.join("a/original.pdf"), &doc);
    env.init();
    let first = env.backup_json(&[src.to_str().unwrap()]);
    let stored_once = first["bytes_stored"].as_u64().unwrap();
    // A duplicate upload under another name adds only a tree, not its content.
    write(&src.join("b/copy.pdf"), &doc);
    let second = env.backup_json(&["--no-cache", src.to_str().unwrap()]);
    assert_eq!(second["bytes_read"].as_u64(), Some(2 * doc.len() as u64));
    assert!(second["bytes_stored"].as_u64().unwrap() < 4096, "duplicate stored again: {second}");
    assert!(stored_once > doc.len() as u64 / 2);
    // Re-reading everything with nothing changed stores nothing at all.
    let third = env.backup_json(&["--no-cache", src.to_str().unwrap()]);
    assert_eq!(third["bytes_stored"].as_u64(), Some(0), "{third}");
    assert_eq!(third["chunks_new"].as_u64(), Some(0), "{third}");
}

#[test]
fn sets_ls_stats_and_repo_from_environment() {
    let env = Env::new();
    let src = env.path("docs");
    write(&src.join("x/y.txt"), b"hello");
    env.init();
    let repo = env.repo();
    let o = coffer_cmd()
        .args(["backup", "--name", "alfresco", "--tag", "nightly", "--json", src.to_str().unwrap()])
        .env("COFFER_REPO", &repo)
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = r["set"].as_str().unwrap().to_string();
    let sets: serde_json::Value =
        serde_json::from_str(&env.ok(&["sets", "--repo", repo.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(sets[0]["id"].as_str(), Some(id.as_str()));
    assert_eq!(sets[0]["name"].as_str(), Some("alfresco"));
    assert_eq!(sets[0]["tags"][0].as_str(), Some("nightly"));
    assert_eq!(sets[0]["components"][0]["name"].as_str(), Some("docs"));
    let ls = env.ok(&["ls", "--repo", repo.to_str().unwrap(), &id[..8], "docs/x"]);
    assert!(ls.contains("docs/x/y.txt"), "{ls}");
    let stats: serde_json::Value =
        serde_json::from_str(&env.ok(&["stats", "--repo", repo.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(stats["sets"].as_u64(), Some(1));
    assert!(stats["packs"].as_u64().unwrap() >= 1);
    let bad = env.run(&["ls", "--repo", repo.to_str().unwrap(), "ffffffff"]);
    assert!(stderr(&bad).contains("no set matches"), "{}", stderr(&bad));
}

#[test]
fn sigkill_mid_backup_leaves_no_set_and_the_rerun_reuses_stored_data() {
    let env = Env::new();
    let src = env.path("src");
    // Incompressible data of many packs' worth, so the kill lands mid-run.
    for i in 0..12 {
        write(&src.join(format!("f{i}.bin")), &bytes(1000 + i, 12 * 1024 * 1024));
    }
    env.init();
    let repo = env.repo();
    let mut child = coffer_cmd()
        .args(["backup", "--repo", repo.to_str().unwrap(), "--threads", "1", src.to_str().unwrap()])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (by watching the repository, not the clock) until a pack is durable, then kill.
    let packs_dir = repo.join("packs");
    loop {
        let packs = crate::support::pack_files(&repo);
        if !packs.is_empty() {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("backup finished ({st}) before a pack appeared in {}", packs_dir.display());
        }
        std::thread::yield_now();
    }
    child.kill().unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success(), "backup was expected to be killed");
    assert_eq!(std::fs::read_dir(repo.join("sets")).unwrap().count(), 0, "a killed run committed a set");

    let r = env.backup_json(&[src.to_str().unwrap()]);
    let total = 12 * 12 * 1024 * 1024u64;
    assert!(r["bytes_stored"].as_u64().unwrap() < total, "rerun stored everything again: {r}");
    let out = env.path("out");
    env.ok(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
    // The killed run's temporary pack was cleaned up by the rerun.
    let leftovers: Vec<_> = std::fs::read_dir(repo.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn init_refuses_non_empty_directories_and_existing_repositories() {
    let env = Env::new();
    write(&env.path("stuff/file"), b"x");
    let o = env.run(&["init", "--repo", env.path("stuff").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    env.init();
    let o = env.run(&["init", "--repo", env.repo().to_str().unwrap()]);
    assert!(stderr(&o).contains("already a coffer repository"), "{}", stderr(&o));
}

#[test]
fn bad_repositories_give_clear_errors_naming_the_file() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("doc.bin"), &bytes(3, 200_000));
    // Not a repository at all.
    std::fs::create_dir_all(env.path("plain")).unwrap();
    let o = env.run(&["sets", "--repo", env.path("plain").to_str().unwrap()]);
    assert!(stderr(&o).contains("not a coffer repository"), "{}", stderr(&o));

    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = env.repo();
    let cfg = repo.join("config");
    let good = std::fs::read(&cfg).unwrap();

    // Truncated config.
    std::fs::write(&cfg, &good[..good.len() - 10]).unwrap();
    let o = env.run(&["sets", "--repo", repo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("config") && stderr(&o).contains("truncated"), "{}", stderr(&o));

    // A newer format version, and older ones (version 1 kept the catalog inside it, version 2
    // was never encrypted).
    for version in [4u32, 2, 1] {
        let mut other = good.clone();
        other[8..12].copy_from_slice(&version.to_le_bytes());
        std::fs::write(&cfg, &other).unwrap();
        let o = env.run(&["sets", "--repo", repo.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(&format!("version {version} is not supported")), "{}", stderr(&o));
    }
    std::fs::write(&cfg, &good).unwrap();

    // A corrupt pack: restore restores what it can and fails (exit 4, damage) naming the pack,
    // without a panic.
    let pack =
        crate::support::pack_files(&repo).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&pack, &data).unwrap();
    let o = env.run(&[
        "restore",
        "--repo",
        repo.to_str().unwrap(),
        "latest",
        "--target",
        env.path("out").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains(pack.file_name().unwrap().to_str().unwrap()) && msg.contains("corrupt"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");

    // A truncated manifest.
    let set = std::fs::read_dir(repo.join("sets")).unwrap().next().unwrap().unwrap().path();
    let m = std::fs::read(&set).unwrap();
    std::fs::write(&set, &m[..m.len() / 2]).unwrap();
    let o = env.run(&["sets", "--repo", repo.to_str().unwrap()]);
    assert!(
        stderr(&o).contains(set.file_name().unwrap().to_str().unwrap()) && stderr(&o).contains("truncated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unreadable_files_are_reported_and_the_run_exits_3() {
    // Root reads everything, so run coffer as an unprivileged user against a file it
    // cannot open.
    let env = Env::new();
    let base = env.dir.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    write(&src.join("ok.txt"), b"fine");
    write(&src.join("secret.txt"), b"no");
    std::fs::set_permissions(src.join("secret.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let repo = env.repo();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(env.path("cache")).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "nobody", repo.to_str().unwrap(), env.path("cache").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(chown.success());
    // A copy of the binary nobody can execute whatever the checkout's permissions are.
    let bin = env.path("coffer");
    std::fs::copy(coffer_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        test_env(&mut Command::new("runuser"))
            .args(["-u", "nobody", "--"])
            .arg(&bin)
            .args(args)
            .env("COFFER_CACHE_DIR", env.path("cache"))
            .output()
            .expect("runuser (util-linux) is needed for this test")
    };
    let o = as_nobody(&["init", "--repo", repo.to_str().unwrap()]);
    assert!(o.status.success(), "init as nobody: {}", stderr(&o));
    let o = as_nobody(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("secret.txt"), "{}", stderr(&o));
    let ls = as_nobody(&["ls", "--repo", repo.to_str().unwrap(), "latest"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("src/ok.txt") && !ls.contains("secret.txt"), "{ls}");
}

/// The Bloom filter over the catalog is built only when enough chunks are new to pay for it:
/// the first backup builds it, a night with two changed documents and a full re-read with
/// nothing changed ask the catalog directly, a big batch of new documents builds it again;
/// dedup is exact every time.
#[test]
fn the_chunk_filter_is_built_only_when_it_pays() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..200u64 {
        write(&src.join(format!("store/{}/doc{i}.bin", i % 10)), &bytes(3000 + i, 20_000));
    }
    age_tree(&src, 1_600_000_000);
    env.init();
    let s = src.to_str().unwrap();
    let first = env.backup_json(&[s]);
    assert_eq!(first["filter_built"], true, "{first}");

    let t = filetime::FileTime::from_unix_time(1_600_000_100, 0);
    for i in [3u64, 13] {
        let p = src.join(format!("store/3/doc{i}.bin"));
        std::fs::write(&p, bytes(9000 + i, 20_000)).unwrap();
        filetime::set_file_times(&p, t, t).unwrap();
    }
    let night = env.backup_json(&["--no-cache", s]);
    assert_eq!(night["filter_built"], false, "{night}");
    // Two documents, their directory's tree, store/ and the root: nothing else is new.
    assert_eq!(night["chunks_new"].as_u64(), Some(5), "{night}");

    let same = env.backup_json(&["--no-cache", s]);
    assert_eq!((same["filter_built"].as_bool(), same["chunks_new"].as_u64()), (Some(false), Some(0)), "{same}");

    for i in 0..100u64 {
        write(&src.join(format!("new/doc{i}.bin")), &bytes(20_000 + i, 20_000));
    }
    let busy = env.backup_json(&[s]);
    assert_eq!(busy["filter_built"], true, "{busy}");
    assert_eq!(busy["chunks_new"].as_u64(), Some(102), "{busy}");

    let out = env.path("out");
    env.ok(&["restore", "--repo", env.repo().to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

/// `backup --time` records the set and its components at the given time, so imported history
/// sorts and ages as it should; the files cache keeps using the real time: an old file backed
/// up by a backdated run is trusted next time, a fresh one backed up by a future-dated run is
/// still re-read.
#[test]
fn backup_time_moves_what_is_recorded_not_the_files_cache() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("old.txt"), b"written long ago");
    age_tree(&src, 1_600_000_000); // 2020-09-13: after the backdated time, before the real one
    env.init();
    let s = src.to_str().unwrap();
    let r = env.repo();
    env.backup_json(&["--time", "2019-03-01T02:00:00Z", s]);
    let sets: serde_json::Value =
        serde_json::from_str(&env.ok(&["sets", "--repo", r.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(sets[0]["started"], "2019-03-01T02:00:00Z", "{sets}");
    let comp = &sets[0]["components"][0];
    for k in ["started", "finished"] {
        assert!(comp[k].as_str().unwrap().starts_with("2019-03-01T02:00:0"), "{k}: {comp}");
    }
    assert!(sets[0]["finished"].as_str().unwrap().starts_with("2019-03-01T02:00:0"), "{sets}");

    let now = env.backup_json(&[s]);
    assert_eq!(now["bytes_read"].as_u64(), Some(0), "the backdated run's cache entry was not trusted: {now}");

    write(&src.join("fresh.txt"), b"just written");
    env.backup_json(&["--time", "2099-01-01T00:00:00Z", s]);
    let after = env.backup_json(&[s]);
    assert_eq!(after["bytes_read"].as_u64(), Some(12), "a fresh file was trusted by a future-dated run: {after}");

    // Sets sort by their recorded times: 2019, now, now, 2099 last.
    let sets: serde_json::Value =
        serde_json::from_str(&env.ok(&["sets", "--repo", r.to_str().unwrap(), "--json"])).unwrap();
    let times: Vec<&str> = sets.as_array().unwrap().iter().map(|v| v["started"].as_str().unwrap()).collect();
    assert_eq!((times.len(), times[0], times[3]), (4, "2019-03-01T02:00:00Z", "2099-01-01T00:00:00Z"), "{times:?}");

    let bad = env.run(&["backup", "--repo", r.to_str().unwrap(), "--time", "yesterday", s]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
