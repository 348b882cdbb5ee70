//! The catalog is a local cache of the repository's index objects (format v2): a copy of the
//! repository restores with an empty cache, and two machines (two caches) backing up into one
//! repository, one of them pruning, keep every set whole.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs coffer with the cache `cache` (one machine), returning its output.
fn on(cache: &Path, args: &[&str]) -> Output {
    coffer_cmd().args(args).env("COFFER_CACHE_DIR", cache).env_remove("COFFER_REPO").output().expect("run coffer")
}

fn ok_on(cache: &Path, args: &[&str]) -> String {
    let o = on(cache, args);
    assert!(o.status.success(), "coffer {args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The id of the newest set named `name`.
fn newest(cache: &Path, repo: &str, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&ok_on(cache, &["sets", "--repo", repo, "--json"])).unwrap();
    let sets = v.as_array().expect("a list of sets");
    let hit = sets.iter().rev().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no set {name}: {v}"));
    hit["id"].as_str().unwrap().to_string()
}

fn restores_to(cache: &Path, repo: &str, set: &str, src: &Path, out: &Path) {
    ok_on(cache, &["restore", "--repo", repo, set, "--target", out.to_str().unwrap()]);
    assert_same_tree(src, &out.join(src.file_name().unwrap()));
}

#[test]
fn a_copy_on_another_path_with_an_empty_cache_restores_byte_identical() {
    let env = Env::new();
    let src = env.path("docs");
    for i in 0..30u64 {
        write(&src.join(format!("d{}/f{i}", i % 4)), &bytes(i, 10_000 + i as usize * 997));
    }
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    write(&src.join("d1/f5"), &bytes(500, 80_000));
    env.backup_json(&[src.to_str().unwrap()]);
    let copy = env.path("elsewhere/copy");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    assert!(Command::new("cp")
        .args(["-a", env.repo().to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let empty = env.path("empty-cache");
    let c = copy.to_str().unwrap();
    assert_eq!(
        ok_on(&empty, &["sets", "--repo", c, "--json"]),
        ok_on(&env.path("cache"), &["sets", "--repo", env.repo().to_str().unwrap(), "--json"])
    );
    restores_to(&empty, c, "latest", &src, &env.path("out"));
    let o = on(&empty, &["verify", "--repo", c, "--read-data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(walk(&empty).iter().any(|p| p.ends_with("index.sqlite")), "the catalog was rebuilt in the empty cache");
}

#[test]
fn two_machines_back_up_into_one_repository_and_see_each_others_prunes() {
    let env = Env::new();
    let repo = env.repo();
    let r = repo.to_str().unwrap();
    let (cache_a, cache_b) = (env.path("cache-a"), env.path("cache-b"));
    let (src_a, src_b) = (env.path("alpha"), env.path("beta"));
    for i in 0..20u64 {
        write(&src_a.join(format!("a{i}")), &bytes(i, 150_000));
        write(&src_b.join(format!("b{i}")), &bytes(1000 + i, 150_000));
    }
    // Both share some data: a dump both machines hold.
    write(&src_a.join("shared.bin"), &bytes(7, 2 << 20));
    write(&src_b.join("shared.bin"), &bytes(7, 2 << 20));
    ok_on(&cache_a, &["init", "--repo", r]);
    // At once, each with its own catalog.
    let spawn = |cache: &Path, name: &str, src: &Path| {
        coffer_cmd()
            .args(["backup", "--repo", r, "--name", name, src.to_str().unwrap()])
            .env("COFFER_CACHE_DIR", cache)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&cache_a, "alpha", &src_a), spawn(&cache_b, "beta", &src_b));
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // A second night on each; then machine A forgets the old sets and prunes.
    write(&src_a.join("a3"), &bytes(333, 150_000));
    write(&src_b.join("b3"), &bytes(444, 150_000));
    ok_on(&cache_a, &["backup", "--repo", r, "--name", "alpha", src_a.to_str().unwrap()]);
    ok_on(&cache_b, &["backup", "--repo", r, "--name", "beta", src_b.to_str().unwrap()]);
    ok_on(&cache_a, &["forget", "--repo", r, "--keep-last", "1", "--prune"]);
    // Machine B's catalog still names what the prune removed; its next night must not trust it.
    write(&src_b.join("b4"), &bytes(555, 150_000));
    ok_on(&cache_b, &["backup", "--repo", r, "--name", "beta", src_b.to_str().unwrap()]);
    // A third machine, with nothing cached, restores both and verifies everything.
    let fresh = env.path("cache-c");
    let o = on(&fresh, &["verify", "--repo", r, "--read-data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    restores_to(&fresh, r, &newest(&fresh, r, "alpha"), &src_a, &env.path("out-a"));
    restores_to(&fresh, r, &newest(&fresh, r, "beta"), &src_b, &env.path("out-b"));
    // And machine B restores with its own (synced) catalog.
    restores_to(&cache_b, r, &newest(&cache_b, r, "beta"), &src_b, &env.path("out-b2"));
}

#[test]
fn every_command_works_after_the_catalog_is_deleted() {
    let env = Env::new();
    let src = env.path("docs");
    for i in 0..10u64 {
        write(&src.join(format!("f{i}")), &bytes(i, 60_000));
    }
    env.init();
    let r = env.repo();
    let r = r.to_str().unwrap();
    env.ok(&["backup", "--repo", r, src.to_str().unwrap()]);
    write(&src.join("f3"), &bytes(33, 70_000));
    let cat = crate::support::catalog_file(&env.repo());
    let lose = || {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", cat.display()));
        }
        assert!(!cat.exists());
    };
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", "--repo", r, src.to_str().unwrap()],
        vec!["sets", "--repo", r],
        vec!["ls", "--repo", r, "latest", "docs"],
        vec!["stats", "--repo", r],
        vec!["verify", "--repo", r, "--read-data"],
        vec!["forget", "--repo", r, "--keep-last", "1", "--prune"],
        vec!["repair", "index", "--repo", r],
    ];
    for args in &commands {
        lose();
        env.ok(args);
    }
    lose();
    let dumped = env.run(&["dump", "--repo", r, "latest", "docs/f3"]);
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    assert_eq!(dumped.stdout, bytes(33, 70_000));
    lose();
    restores_to(&env.path("cache"), r, "latest", &src, &env.path("out"));
}
