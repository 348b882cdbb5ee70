//! Damage is inherited no more, and verify and repair tell the truth: damage verify found is
//! recorded in the catalog so the next backup stores the bytes again; a full read checks
//! every catalog row at its location; each set's needs are checked in full after a repair;
//! repair salvages the blobs of a pack with a damaged trailer; a damaged manifest does not
//! stop the commands that use the others; a full repository filesystem can still be read.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A source that fits in one pack: two random files (stored raw), text (compressed).
fn small_source(env: &Env) -> PathBuf {
    let src = env.path("src");
    write(&src.join("keep/a.bin"), &bytes(1, 1024 * 1024));
    write(&src.join("keep/notes.txt"), "keep me\n".repeat(4000).as_bytes());
    write(&src.join("lost.bin"), &bytes(2, 1024 * 1024));
    // Old enough for the files cache to trust them (fresh files are always read again).
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for f in ["keep/a.bin", "keep/notes.txt", "lost.bin"] {
        filetime::set_file_times(src.join(f), t, t).unwrap();
    }
    src
}

fn repo_str(env: &Env) -> String {
    env.repo().to_str().unwrap().to_string()
}

/// The catalog location of the first chunk of `file` in set `set`.
fn location(repo: &Path, set: &str, file: &str) -> coffer::index::Location {
    let r = crate::support::open_repo(repo);
    let (_, m) = r.resolve_set(set).unwrap();
    let (node, _) = coffer::browse::lookup(&r, &m, file).unwrap();
    let id = node.expect("a file").content[0].chunk_id();
    let loc = r.index().unwrap().lookup(&id).unwrap().unwrap();
    loc
}

fn verify_json(env: &Env, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let r = repo_str(env);
    let mut args = vec!["verify", "--repo", r.as_str(), "--json"];
    args.extend_from_slice(extra);
    let o = env.run(&args);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (o.status.code(), v)
}

fn damaged_set_ids(v: &serde_json::Value) -> Vec<String> {
    v["damaged_sets"].as_array().unwrap().iter().map(|d| d[0].as_str().unwrap()[..8].to_string()).collect()
}

fn intact_set_ids(v: &serde_json::Value) -> Vec<String> {
    v["intact_sets"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()[..8].to_string()).collect()
}

#[test]
fn after_verify_finds_damage_the_next_backup_stores_the_bytes_again() {
    // The last case keeps the files cache: its entries name the damaged chunks, and must not
    // be reused for them.
    for case in ["missing pack", "flipped bits", "flipped bits, files cache"] {
        let env = Env::new();
        let src = small_source(&env);
        env.init();
        let r = repo_str(&env);
        let old = env.backup_json(&[src.to_str().unwrap()])["set"].as_str().unwrap()[..8].to_string();
        let a = location(&env.repo(), "latest", "src/keep/a.bin");
        let lost = location(&env.repo(), "latest", "src/lost.bin");
        assert_eq!(a.pack, lost.pack, "{case}: the test wants one pack");
        let pack = crate::support::pack_file(&env.repo(), &a.pack);
        let read_data: &[&str] = if case == "missing pack" {
            std::fs::remove_file(&pack).unwrap();
            &[]
        } else {
            let mut data = std::fs::read(&pack).unwrap();
            data[a.entry.offset as usize + 100] ^= 0x40;
            data[lost.entry.offset as usize + 100] ^= 0x40;
            std::fs::write(&pack, &data).unwrap();
            &["--read-data"]
        };
        let (code, v) = verify_json(&env, read_data);
        assert_eq!(code, Some(4), "{case}: {v}");
        assert_eq!(damaged_set_ids(&v), std::slice::from_ref(&old), "{case}: {v}");

        // The intact source minus lost.bin, with or without the files cache: every damaged
        // chunk it meets is stored again, and the new set restores.
        std::fs::remove_file(src.join("lost.bin")).unwrap();
        let cache: &[&str] = if case.ends_with("files cache") { &[] } else { &["--no-cache"] };
        let b = env.backup_json(&[cache, &[src.to_str().unwrap()]].concat());
        let new = b["set"].as_str().unwrap()[..8].to_string();
        let out = env.path("out");
        env.ok(&["restore", "--repo", &r, &new, "--target", out.to_str().unwrap()]);
        assert_same_tree(&src, &out.join("src"));
        let (code, v) = verify_json(&env, read_data);
        assert_eq!(code, Some(4), "{case}: the old set still needs lost.bin's damaged chunk: {v}");
        assert_eq!(damaged_set_ids(&v), std::slice::from_ref(&old), "{case}: {v}");
        assert_eq!(intact_set_ids(&v), std::slice::from_ref(&new), "{case}: {v}");
        if case.starts_with("flipped bits") {
            let dv = v["damaged_sets"].to_string();
            assert!(dv.contains("lost.bin") && !dv.contains("a.bin"), "{case}: a.bin is whole again: {v}");
        }

        // Prune runs, drops what no set needs, and leaves both verdicts as they were.
        env.ok(&["prune", "--repo", &r]);
        let (code, v) = verify_json(&env, &["--read-data"]);
        assert_eq!(code, Some(4), "{case}: {v}");
        assert_eq!(damaged_set_ids(&v), std::slice::from_ref(&old), "{case}: {v}");
        assert_eq!(intact_set_ids(&v), std::slice::from_ref(&new), "{case}: {v}");
        let out2 = env.path("out2");
        env.ok(&["restore", "--repo", &r, &new, "--target", out2.to_str().unwrap()]);
        assert_same_tree(&src, &out2.join("src"));
    }
}

#[test]
fn a_full_read_checks_every_catalog_row_at_its_location() {
    for case in ["wrong offset", "another chunk's location"] {
        let env = Env::new();
        let src = small_source(&env);
        env.init();
        env.backup_json(&[src.to_str().unwrap()]);
        let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
        assert_eq!(code, Some(0), "{msg}");
        let a = location(&env.repo(), "latest", "src/keep/a.bin");
        let other = location(&env.repo(), "latest", "src/lost.bin");
        let idx = rusqlite::Connection::open(crate::support::catalog_file(&env.repo())).unwrap();
        let id = a.entry.id.as_bytes().to_vec();
        match case {
            "wrong offset" => idx.execute("UPDATE chunks SET offset = offset + 1 WHERE id = ?1", [&id]).unwrap(),
            _ => idx
                .execute(
                    "UPDATE chunks SET offset = ?2, stored_len = ?3, raw_len = ?4, compression = ?5 WHERE id = ?1",
                    rusqlite::params![
                        &id,
                        other.entry.offset as i64,
                        other.entry.stored_len as i64,
                        other.entry.raw_len as i64,
                        other.entry.compression as u8 as i64
                    ],
                )
                .unwrap(),
        };
        drop(idx);
        let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
        assert_eq!(code, Some(4), "{case}: {msg}");
        assert!(msg.contains("DAMAGED") && msg.contains("src/keep/a.bin"), "{case}: {msg}");
        assert!(!msg.contains("src/lost.bin:"), "{case}: damage over-reported: {msg}");
    }
}

#[test]
fn after_repair_index_every_set_needing_a_lost_chunk_is_reported() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..2 {
        write(&src.join(format!("big{i}.bin")), &bytes(10 + i, 17 * 1024 * 1024));
    }
    write(&src.join("small.txt"), b"small");
    env.init();
    let r = repo_str(&env);
    let first = env.backup_json(&[src.to_str().unwrap()])["set"].as_str().unwrap()[..8].to_string();
    let loc = location(&env.repo(), "latest", "src/big0.bin");
    let root_tree = {
        let repo = crate::support::open_repo(&env.repo());
        let (_, m) = repo.resolve_set("latest").unwrap();
        let loc = repo.index().unwrap().lookup(&m.components[0].root.as_chunk()).unwrap().unwrap();
        loc
    };
    assert_ne!(loc.pack, root_tree.pack, "the test wants the lost pack to hold data only");
    std::fs::remove_file(crate::support::pack_file(&env.repo(), &loc.pack)).unwrap();
    // Nobody has looked yet: this backup still dedups against the lost pack.
    let second = env.backup_json(&["--no-cache", src.to_str().unwrap()])["set"].as_str().unwrap()[..8].to_string();
    let o = env.run(&["repair", "index", "--repo", &r]);
    assert!(stdout_of(&o).contains("rebuilt index"), "{}", stderr(&o));
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, Some(4), "{v}");
    let mut damaged = damaged_set_ids(&v);
    damaged.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(damaged, want, "both sets need big0.bin's lost chunks: {v}");
    assert!(intact_set_ids(&v).is_empty(), "{v}");
    // The next backup stores the lost chunks again: it is whole, and so are the others,
    // which name the same chunks.
    let third = env.backup_json(&["--no-cache", src.to_str().unwrap()])["set"].as_str().unwrap()[..8].to_string();
    let (code, v) = verify_json(&env, &["--read-data"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(intact_set_ids(&v).len(), 3, "{v}");
    let out = env.path("out");
    env.ok(&["restore", "--repo", &r, &third, "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn repair_index_salvages_the_blobs_of_a_pack_with_a_damaged_trailer() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 3] = [
        ("one byte short", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 1).unwrap();
        }),
        ("a flipped byte in the entries", |p| {
            let mut data = std::fs::read(p).unwrap();
            let at = data.len() - 48 - 20;
            data[at] ^= 0xff;
            std::fs::write(p, &data).unwrap();
        }),
        ("footer and last entries gone", |p| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 48 - 52 * 2).unwrap();
        }),
    ];
    for (case, damage) in cases {
        let env = Env::new();
        let src = small_source(&env);
        for i in 0..30 {
            write(&src.join(format!("many/f{i}.txt")), format!("file {i}\n").repeat(100 + i).as_bytes());
        }
        // Salvage reads blob headers in the clear: only unencrypted packs have them.
        env.init_clear();
        let r = repo_str(&env);
        env.backup_json(&[src.to_str().unwrap()]);
        let packs = crate::support::pack_files(&env.repo());
        assert_eq!(packs.len(), 1, "{case}");
        damage(&packs[0]);
        let o = env.run(&["repair", "index", "--repo", &r]);
        assert!(stdout_of(&o).contains("rebuilt index"), "{case}: {}", stderr(&o));
        assert!(stderr(&o).contains("salvaged"), "{case}: {}", stderr(&o));
        let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
        assert_eq!(code, Some(0), "{case}: every blob survived, so the set is whole: {msg}");
        let out = env.path("out");
        env.ok(&["restore", "--repo", &r, "latest", "--target", out.to_str().unwrap()]);
        assert_same_tree(&src, &out.join("src"));
    }
}

#[test]
fn a_damaged_manifest_is_reported_and_the_other_sets_still_work() {
    let env = Env::new();
    let src = small_source(&env);
    env.init();
    let r = repo_str(&env);
    let first = env.backup_json(&[src.to_str().unwrap()])["set"].as_str().unwrap().to_string();
    write(&src.join("second.txt"), b"second");
    let second = env.backup_json(&[src.to_str().unwrap()])["set"].as_str().unwrap()[..8].to_string();
    let manifest = env.repo().join("sets").join(&first);
    let mut data = std::fs::read(&manifest).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(&manifest, &data).unwrap();
    let named = |o: &std::process::Output, what: &str| {
        assert!(o.status.success(), "{what}: {}", stderr(o));
        assert!(stderr(o).contains(&first), "{what}: the damaged manifest is not named: {}", stderr(o));
    };
    let o = env.run(&["sets", "--repo", &r]);
    named(&o, "sets");
    assert!(stdout_of(&o).contains(&second), "{}", stdout_of(&o));
    named(&env.run(&["ls", "--repo", &r, "latest"]), "ls");
    named(&env.run(&["dump", "--repo", &r, "latest"]), "dump");
    let out = env.path("out");
    named(&env.run(&["restore", "--repo", &r, &second, "--target", out.to_str().unwrap()]), "restore");
    assert_same_tree(&src, &out.join("src"));
    named(&env.run(&["backup", "--repo", &r, src.to_str().unwrap()]), "backup");
    named(&env.run(&["forget", "--repo", &r, "--keep-last", "5"]), "forget");
    // Asked for by id, the damaged set is an error naming the damage.
    let o = env.run(&["restore", "--repo", &r, &first[..12], "--target", env.path("o2").to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains(&first) && stderr(&o).contains("damaged"), "{}", stderr(&o));
    // Prune can't know what the damaged set needs: it refuses unless told to go ahead.
    let o = env.run(&["prune", "--repo", &r]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains(&first) && stderr(&o).contains("nothing was deleted"), "{}", stderr(&o));
    named(&env.run(&["prune", "--repo", &r, "--ignore-damaged-sets"]), "prune --ignore-damaged-sets");
    let (code, msg) = env.verify(&env.repo(), &[]);
    assert_eq!(code, Some(4), "verify reports the damaged manifest: {msg}");
    assert!(msg.contains(&first), "{msg}");
}

#[test]
fn a_full_repository_filesystem_can_still_be_read() {
    let env = Env::new();
    let fs = SmallFs::mount(&env.path("small"), "8m");
    let repo = fs.0.join("repo");
    let r = repo.to_str().unwrap();
    env.ok(&["init", "--repo", r]);
    let src = small_source(&env);
    env.ok(&["backup", "--repo", r, src.to_str().unwrap()]);
    // Fill what is left, to the last block.
    let fill = fs.0.join("fill");
    let o = Command::new("dd").args(["if=/dev/zero", &format!("of={}", fill.display()), "bs=64k"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("No space left"), "{}", stderr(&o));
    let o = env.run(&["sets", "--repo", r]);
    assert!(o.status.success(), "sets on a full disk: {}", stderr(&o));
    assert!(!stderr(&o).contains("repair"), "{}", stderr(&o));
    let out = env.path("out");
    let o = env.run(&["restore", "--repo", r, "latest", "--target", out.to_str().unwrap()]);
    assert!(o.status.success(), "restore on a full disk: {}", stderr(&o));
    assert_same_tree(&src, &out.join("src"));
    let o = env.run(&["verify", "--repo", r, "--read-data"]);
    assert_eq!(o.status.code(), Some(0), "verify on a full disk: {}", stderr(&o));
    // A command that must write names the real cause.
    let o = env.run(&["backup", "--repo", r, env.path("src").to_str().unwrap()]);
    if !o.status.success() {
        let msg = stderr(&o);
        assert!(msg.contains("No space left") || msg.contains("no space left"), "{msg}");
        assert!(!msg.contains("repair index"), "{msg}");
    }
    drop(fs);
}

#[test]
fn verify_walks_a_tree_200000_levels_deep_without_recursion() {
    use coffer::pack::{BlobKind, Compression};
    use coffer::tree::{Node, NodeKind, Tree};
    let env = Env::new();
    let src = small_source(&env);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = crate::support::open_repo(&env.repo());
    let (_, mut m) = repo.resolve_set("latest").unwrap();
    // A chain of directories, each holding only the next, built bottom-up.
    let mut w = coffer::pack::PackWriter::create(&*repo.storage, &repo.cipher).unwrap();
    let mut below = m.components[0].root;
    for _ in 0..200_000 {
        let node = Node {
            name: b"d".to_vec(),
            kind: NodeKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            content: Vec::new(),
            subtree: Some(below.0 .0),
            target: None,
            ..Node::default()
        };
        let bytes = Tree { nodes: vec![node] }.encode();
        let id = repo.hasher.id(&bytes);
        let stored = coffer::pack::seal_blob(&repo.cipher, &id, BlobKind::Tree, std::borrow::Cow::Borrowed(&bytes[..]));
        w.add(id, BlobKind::Tree, Compression::None, &stored, bytes.len() as u32).unwrap();
        below = coffer::id::TreeId(id.0);
    }
    let pack = w.finish(&*repo.storage).unwrap();
    repo.index().unwrap().add_pack(&pack, 0).unwrap();
    coffer::catalog::write_uncovered(&mut repo.index().unwrap(), &*repo.storage, &repo.cipher, 0).unwrap();
    m.components[0].root = below;
    let deep = repo.commit_manifest(&m).unwrap();
    drop(repo);
    let (code, v) = verify_json(&env, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert!(intact_set_ids(&v).contains(&deep.to_hex()[..8].to_string()), "{v}");
}
