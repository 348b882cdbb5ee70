//! Restoring from a hostile or damaged repository, and into a target that holds symlinks:
//! nothing is ever written outside the target, trees that lie about their shape or lengths are
//! refused, and a restore past a bad chunk restores every other file and names the bad ones.
//! Hostile repositories are built with `support::craft`, which writes valid objects.

use crate::support::craft::{self, Craft};
use crate::support::{assert_same_tree, bytes, snapshot, stderr, write, Env};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A scratch area with a repository, a restore target `box/t` and an `outside` directory
/// (with one file) that nothing may touch.
struct Scene {
    env: Env,
}

impl Scene {
    fn new() -> Scene {
        let env = Env::new();
        env.init();
        write(&env.path("outside/keep.txt"), b"original");
        std::fs::create_dir_all(env.path("box")).unwrap();
        Scene { env }
    }
    fn target(&self) -> PathBuf {
        self.env.path("box/t")
    }
    fn outside(&self) -> PathBuf {
        self.env.path("outside")
    }
    /// What a restore must not change: the outside directory, and the names beside the
    /// target and beside the repository (where `../../x` would land).
    fn world(&self) -> BTreeMap<String, String> {
        let mut w: BTreeMap<String, String> =
            snapshot(&self.outside()).into_iter().map(|(k, v)| (format!("outside/{k}"), v)).collect();
        for d in ["", "box"] {
            for e in std::fs::read_dir(self.env.path(d)).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                if (d, name.as_str()) == ("box", "t") || (d, name.as_str()) == ("", "cache") {
                    continue;
                }
                w.insert(format!("{d}/{name}"), "present".into());
            }
        }
        w
    }
    fn restore(&self, set: &str, extra: &[&str]) -> Output {
        let (repo, target) = (self.env.repo(), self.target());
        let mut args = vec!["restore", "--repo", repo.to_str().unwrap(), set, "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.env.run(&args)
    }
}

/// A tree a hostile set would like to write somewhere: a setuid file and a directory.
fn payload(c: &mut Craft) -> coffer::id::TreeId {
    let evil = c.chunk(b"#!/bin/sh\necho pwned\n");
    let mut f = craft::file("evil", vec![evil]);
    f.mode = 0o4755;
    let inner = c.tree(vec![]);
    c.tree(vec![f, craft::dir("subdir", inner)])
}

#[test]
fn components_with_unsafe_or_duplicate_names_are_refused_and_write_nothing_outside() {
    let s = Scene::new();
    let abs = s.outside().join("abs").to_str().unwrap().to_string();
    let outside = s.outside().to_str().unwrap().to_string();
    type Build = Box<dyn Fn(&mut Craft) -> Vec<coffer::set::Component>>;
    let cases: Vec<(&str, &str, Build)> = vec![
        ("parent", "../../x", Box::new(|c| vec![craft::component("../../x", payload(c), 1, 2, 100)])),
        ("absolute", "abs", Box::new(move |c| vec![craft::component(&abs, payload(c), 1, 2, 100)])),
        (
            // `c` holds a symlink `d` to the outside; a component `c/d` would be written through it.
            "nested",
            "c/d",
            Box::new({
                let outside = outside.clone();
                move |c| {
                    let link = c.tree(vec![craft::symlink("d", &outside)]);
                    vec![craft::component("c", link, 0, 1, 0), craft::component("c/d", payload(c), 1, 2, 100)]
                }
            }),
        ),
        (
            // Two components `c`: the first plants `d -> outside`, the second has a directory `d`.
            "duplicate",
            "two components \"c\"",
            Box::new(move |c| {
                let link = c.tree(vec![craft::symlink("d", &outside)]);
                let p = payload(c);
                let through = c.tree(vec![craft::dir("d", p)]);
                vec![craft::component("c", link, 0, 1, 0), craft::component("c", through, 1, 3, 100)]
            }),
        ),
    ];
    for (what, named, build) in cases {
        let before = s.world();
        let mut c = Craft::open(&s.env.repo());
        let comps = build(&mut c);
        let set = c.commit(comps).to_hex();
        let o = s.restore(&set, &[]);
        assert!(!o.status.success(), "{what}: a restore of a hostile manifest succeeded: {}", stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.contains("component") && msg.contains(named), "{what}: unclear error: {msg}");
        assert_eq!(s.world(), before, "{what}: the restore wrote outside its target");
        std::fs::remove_file(s.env.repo().join("sets").join(&set)).unwrap();
        let _ = std::fs::remove_dir_all(s.target());
    }
}

/// A target holding symlinks to the outside, where the set has a directory and a file: a plain
/// restore refuses, `--overwrite` and `--resume` replace the symlinks; nothing outside changes.
#[test]
fn symlinks_already_in_the_target_are_replaced_never_followed() {
    let s = Scene::new();
    let src = s.env.path("src");
    write(&src.join("a.txt"), &bytes(1, 3000));
    write(&src.join("sub/b.txt"), &bytes(2, 5000));
    s.env.backup_json(&[src.to_str().unwrap()]);
    let t = s.target();
    let outside_file = s.outside().join("keep.txt");
    type Plant = fn(&Path, &Path, &Path);
    let plants: [(&str, Plant); 3] = [
        ("component dir is a symlink", |t, out, _| std::os::unix::fs::symlink(out, t.join("src")).unwrap()),
        ("subdir is a symlink", |t, out, _| {
            std::fs::create_dir_all(t.join("src")).unwrap();
            std::os::unix::fs::symlink(out, t.join("src/sub")).unwrap();
        }),
        ("file is a symlink", |t, _, file| {
            std::fs::create_dir_all(t.join("src/sub")).unwrap();
            std::os::unix::fs::symlink(file, t.join("src/a.txt")).unwrap();
            std::os::unix::fs::symlink(file, t.join("src/sub/b.txt")).unwrap();
        }),
    ];
    for (what, plant) in plants {
        for mode in [None, Some("--overwrite"), Some("--resume")] {
            let _ = std::fs::remove_dir_all(&t);
            std::fs::create_dir_all(&t).unwrap();
            plant(&t, &s.outside(), &outside_file);
            let before = s.world();
            let o = s.restore("latest", mode.as_slice());
            assert_eq!(s.world(), before, "{what}, {mode:?}: the restore wrote outside its target: {}", stderr(&o));
            match mode {
                None => {
                    assert_eq!(o.status.code(), Some(1), "{what}: a plain restore went through: {}", stderr(&o));
                    let msg = stderr(&o);
                    assert!(msg.contains("already exists") || msg.contains("not a directory"), "{what}: {msg}");
                }
                Some(m) => {
                    assert!(o.status.success(), "{what}, {m}: {}", stderr(&o));
                    assert_same_tree(&src, &t.join("src"));
                }
            }
        }
    }
}

#[test]
fn hard_links_already_in_the_target_never_pass_our_metadata_outside() {
    let s = Scene::new();
    let src = s.env.path("src");
    write(&src.join("a.txt"), &bytes(1, 3000));
    write(&src.join("p1"), b"pair");
    std::fs::hard_link(src.join("p1"), src.join("p2")).unwrap();
    s.env.backup_json(&[src.to_str().unwrap()]);
    // Files outside with the stored bytes (so `--resume` finds the content right), but
    // another mode: keeping them would mean setting our metadata on a file outside.
    write(&s.outside().join("twin.txt"), &bytes(1, 3000));
    write(&s.outside().join("pair.txt"), b"pair");
    for f in ["twin.txt", "pair.txt"] {
        std::fs::set_permissions(s.outside().join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let t = s.target();
    for mode in ["--overwrite", "--resume"] {
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("src")).unwrap();
        std::fs::hard_link(s.outside().join("twin.txt"), t.join("src/a.txt")).unwrap();
        std::fs::hard_link(s.outside().join("pair.txt"), t.join("src/p1")).unwrap();
        let before = s.world();
        let o = s.restore("latest", &[mode]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        assert_eq!(s.world(), before, "{mode}: the restore changed a file outside its target");
        assert_same_tree(&src, &t.join("src"));
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_ne!(ino(&t.join("src/a.txt")), ino(&s.outside().join("twin.txt")), "{mode}");
        assert_eq!(ino(&t.join("src/p1")), ino(&t.join("src/p2")), "{mode}: the link group was not restored");
        assert_ne!(ino(&t.join("src/p1")), ino(&s.outside().join("pair.txt")), "{mode}");
    }
}

#[test]
fn a_tree_200000_levels_deep_is_refused_without_a_stack_overflow() {
    let s = Scene::new();
    let mut c = Craft::open(&s.env.repo());
    let leaf = c.chunk(b"bottom");
    let mut tree = c.tree(vec![craft::file("f", vec![leaf])]);
    for _ in 0..200_000 {
        tree = c.tree(vec![craft::dir("d", tree)]);
    }
    let set = c.commit(vec![craft::component("deep", tree, 1, 200_000, 6)]).to_hex();
    let before = s.world();
    let o = s.restore(&set, &[]);
    assert_eq!(o.status.code(), Some(1), "not a clean error (signal?): {:?} {}", o.status, stderr(&o));
    assert!(stderr(&o).contains("more than 4096 directories deep"), "{}", stderr(&o));
    assert_eq!(s.world(), before);
}

/// Sixteen levels of trees that each name their subtree twice: 65,536 files from 17 blobs,
/// in a component that declares one file and 17 directories.
#[test]
fn trees_expanding_beyond_the_declared_counts_are_refused() {
    let s = Scene::new();
    let mut c = Craft::open(&s.env.repo());
    let data = c.chunk(&bytes(5, 1000));
    let mut tree = c.tree(vec![craft::file("f", vec![data])]);
    for _ in 0..16 {
        tree = c.tree(vec![craft::dir("a", tree), craft::dir("b", tree)]);
    }
    let set = c.commit(vec![craft::component("dag", tree, 1, 17, 1000)]).to_hex();
    let o = s.restore(&set, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("more than the 17 directories its set's manifest declares"), "{}", stderr(&o));
    let made = crate::support::walk(&s.target()).len();
    assert!(made < 200, "the refused restore still created {made} entries");
}

/// Two files share a chunk but claim different lengths for it: the liar would be padded into a
/// 4 GiB sparse file, or get the wrong bytes. It is named and not restored; exit code 4.
#[test]
fn chunk_references_claiming_another_length_are_refused() {
    let s = Scene::new();
    let mut c = Craft::open(&s.env.repo());
    let zeros = c.chunk(&[0u8; 4096]);
    let data = c.chunk(&bytes(6, 5000));
    let padded = coffer::tree::ChunkRef { len: u32::MAX, ..zeros };
    let short = coffer::tree::ChunkRef { len: 3000, ..data };
    let lone = c.chunk(&bytes(7, 2000));
    let stretched = coffer::tree::ChunkRef { len: 9000, ..lone };
    let root = c.tree(vec![
        craft::file("a_zeros", vec![zeros]),
        craft::file("b_padded", vec![padded]),
        craft::file("c_data", vec![data]),
        craft::file("d_short", vec![short]),
        craft::file("e_stretched", vec![stretched]),
    ]);
    let set = c.commit(vec![craft::component("lens", root, 5, 1, 1 << 40)]).to_hex();
    let o = s.restore(&set, &["--json"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let out = s.target().join("lens");
    for bad in ["b_padded", "d_short", "e_stretched"] {
        assert!(stderr(&o).contains(&format!("lens/{bad}")), "{bad} not named: {}", stderr(&o));
        assert!(!out.join(bad).exists(), "{bad} was restored");
    }
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rep["failed"].as_array().map(|a| a.len()), Some(3), "{rep}");
    assert_eq!(std::fs::read(out.join("a_zeros")).unwrap(), vec![0u8; 4096]);
    assert_eq!(std::fs::read(out.join("c_data")).unwrap(), bytes(6, 5000));
}

/// One damaged chunk in a set of 40 files: the other 39 are restored, the damaged one is named
/// (stderr and `--json`), and the exit code is 4.
#[test]
fn a_restore_past_a_bad_chunk_restores_every_other_file() {
    let s = Scene::new();
    let src = s.env.path("src");
    // Distinct sizes under the minimum chunk size: one chunk per file, told apart by length.
    let sizes: Vec<usize> = (0..40).map(|i| 20_000 + i * 1_013).collect();
    for (i, &len) in sizes.iter().enumerate() {
        write(&src.join(format!("d{}/f{i:02}", i % 4)), &bytes(100 + i as u64, len));
    }
    s.env.backup_json(&[src.to_str().unwrap()]);
    let pack = crate::support::pack_files(&s.env.repo()).into_iter().next().unwrap();
    let id: coffer::id::PackId = pack.file_name().unwrap().to_str().unwrap().parse().unwrap();
    let size = std::fs::metadata(&pack).unwrap().len();
    let repo = crate::support::open_repo(&s.env.repo());
    let entries = coffer::pack::read_trailer(&*repo.storage, &id, size, &repo.cipher).unwrap();
    let e = entries.iter().filter(|e| e.kind == coffer::pack::BlobKind::Data).nth(7).unwrap();
    let victim = sizes.iter().position(|&l| l == e.raw_len as usize).expect("a file of that size");
    let mut data = std::fs::read(&pack).unwrap();
    data[(e.offset + e.stored_len as u64 / 2) as usize] ^= 0x55;
    std::fs::set_permissions(&pack, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&pack, &data).unwrap();

    let o = s.restore("latest", &["--json"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let name = format!("src/d{}/f{victim:02}", victim % 4);
    assert!(stderr(&o).contains(&name) && stderr(&o).contains("corrupt"), "{name} not named: {}", stderr(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed = rep["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{rep}");
    assert!(failed[0]["path"].as_str().unwrap().ends_with(&name), "{rep}");
    assert_eq!(rep["files"].as_u64(), Some(39), "{rep}");
    let out = s.target().join("src");
    assert!(!out.join(&name[4..]).exists(), "the damaged file was left behind");
    for (i, &len) in sizes.iter().enumerate().filter(|(i, _)| *i != victim) {
        let p = out.join(format!("d{}/f{i:02}", i % 4));
        assert_eq!(std::fs::read(&p).unwrap(), bytes(100 + i as u64, len), "{}", p.display());
    }
}
