//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn coffer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

/// The password of every test repository (they are encrypted, as by default).
pub const PASSWORD: &str = "correct horse battery staple";
/// Argon2id parameters for test keys: the default ~0.5 s per open would dominate the suite.
pub const FAST_KDF: &str = "m=256,t=1,p=1";

/// Gives a coffer command the tests' password and key cost (and no other password source).
pub fn test_env(c: &mut Command) -> &mut Command {
    c.env("COFFER_PASSWORD", PASSWORD)
        .env("COFFER_KDF_PARAMS", FAST_KDF)
        .env_remove("COFFER_PASSWORD_FILE")
        .env_remove("COFFER_PASSWORD_COMMAND")
}

/// `coffer` with [`test_env`].
pub fn coffer_cmd() -> Command {
    let mut c = Command::new(coffer_bin());
    test_env(&mut c);
    c
}

/// The tests' password, for library calls.
pub fn password() -> coffer::crypto::password::Source {
    coffer::crypto::password::Source::Given(zeroize::Zeroizing::new(PASSWORD.to_string()))
}

/// How the library makes test repositories: encrypted, cheap keys.
pub fn init_options() -> coffer::repo::InitOptions {
    coffer::repo::InitOptions {
        kdf: coffer::crypto::key::KdfParams::parse(FAST_KDF).expect("valid"),
        password: password(),
        ..coffer::repo::InitOptions::new()
    }
}

/// A scratch area with a repository path and an isolated files cache.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().expect("tempdir") }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }
    /// Runs coffer with this env's cache; returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        coffer_cmd()
            .args(args)
            .env("COFFER_CACHE_DIR", self.path("cache"))
            .env_remove("COFFER_REPO")
            .output()
            .expect("run coffer")
    }
    /// Runs coffer and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "coffer {args:?} failed ({:?}):\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if !o.stderr.is_empty() {
            eprintln!("coffer {args:?} stderr: {}", String::from_utf8_lossy(&o.stderr));
        }
        String::from_utf8(o.stdout).expect("utf8 stdout")
    }
    /// `coffer verify --repo REPO EXTRA...`: exit code and stderr.
    pub fn verify(&self, repo: &Path, extra: &[&str]) -> (Option<i32>, String) {
        let mut args = vec!["verify", "--repo", repo.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = self.run(&args);
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    }
    pub fn init(&self) {
        self.ok(&["init", "--repo", self.repo().to_str().unwrap()]);
    }
    /// `coffer init --encryption none`: for tests that read or tamper with plaintext bytes.
    pub fn init_clear(&self) {
        self.ok(&["init", "--repo", self.repo().to_str().unwrap(), "--encryption", "none"]);
    }
    /// `coffer backup --json`, parsed.
    /// `coffer restore --repo REPO latest --target TARGET --json EXTRA...`, required to succeed.
    pub fn restore_json(&self, repo: &Path, target: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args =
            vec!["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", target.to_str().unwrap()];
        args.push("--json");
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("restore --json printed non-JSON ({e}): {out}"))
    }
    pub fn backup_json(&self, extra: &[&str]) -> serde_json::Value {
        let repo = self.repo();
        let mut args = vec!["backup", "--repo", repo.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("backup --json printed non-JSON ({e}): {out}"))
    }
}

/// A source tree with a few multi-chunk files (random, and a compressible dump), many small
/// ones in subdirectories, and a symlink.
pub fn mixed_source(root: &Path, seed: u64) {
    write(&root.join("big/a.bin"), &bytes(seed, 5 * 1024 * 1024 + 17));
    write(&root.join("big/b.sql"), "INSERT INTO alf_node VALUES (1, 'x');\n".repeat(40_000).as_bytes());
    for i in 0..40 {
        write(&root.join(format!("docs/{:02}/f{i}.bin", i % 7)), &bytes(seed * 100 + i, 1000 + i as usize * 2500));
    }
    std::os::unix::fs::symlink("big/b.sql", root.join("link")).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Sets the mtime of every file and directory under `root` to a fixed time long ago, so
/// the files cache may trust them (fresh mtimes are "racy" and never cached).
pub fn age_tree(root: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    for e in walk(root) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        if m.file_type().is_symlink() {
            filetime::set_symlink_file_times(&e, t, t).unwrap();
        } else {
            filetime::set_file_times(&e, t, t).unwrap();
        }
    }
}

/// Every path under root (root excluded), parents before children.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut es: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        es.sort();
        for e in es {
            let m = std::fs::symlink_metadata(&e).unwrap();
            out.push(e.clone());
            if m.is_dir() {
                stack.push(e);
            }
        }
    }
    out
}

/// What a tree looks like for comparison: per relative path, type, mode, mtime, content
/// hash or link target.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in walk(root) {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let desc = if m.file_type().is_symlink() {
            format!("link {} mtime {}", std::fs::read_link(&p).unwrap().display(), m.mtime())
        } else if m.is_dir() {
            format!("dir {:o} mtime {}.{}", m.permissions().mode() & 0o7777, m.mtime(), m.mtime_nsec())
        } else {
            let data = std::fs::read(&p).unwrap();
            format!(
                "file {:o} mtime {}.{} len {} blake3 {}",
                m.permissions().mode() & 0o7777,
                m.mtime(),
                m.mtime_nsec(),
                data.len(),
                blake3::hash(&data).to_hex()
            )
        };
        out.insert(rel, desc);
    }
    out
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    if sa != sb {
        for (k, v) in &sa {
            match sb.get(k) {
                None => eprintln!("missing in restore: {k}"),
                Some(w) if w != v => eprintln!("differs: {k}\n  source:  {v}\n  restore: {w}"),
                _ => {}
            }
        }
        for k in sb.keys().filter(|k| !sa.contains_key(*k)) {
            eprintln!("extra in restore: {k}");
        }
        panic!("restored tree {} differs from {}", b.display(), a.display());
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub mod craft;
pub mod garage;
pub mod pg;

/// A small tmpfs, unmounted on drop.
pub struct SmallFs(pub PathBuf);

impl SmallFs {
    pub fn mount(at: &Path, size: &str) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", at.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "this test needs to mount a small tmpfs (run as root): {}", stderr(&o));
        SmallFs(at.to_path_buf())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The file of pack `id` in the local repository `repo`.
pub fn pack_file(repo: &Path, id: &coffer::id::PackId) -> PathBuf {
    let storage = coffer::storage::LocalStorage::open(repo).expect("repository directory");
    storage.file_of(coffer::storage::Kind::Packs, &id.to_hex()).expect("a pack id is a valid name")
}

/// Every pack file of the local repository `repo`, in name order.
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    use coffer::storage::Storage;
    let storage = coffer::storage::LocalStorage::open(repo).expect("repository directory");
    let mut out: Vec<PathBuf> = storage
        .list(coffer::storage::Kind::Packs)
        .expect("list packs")
        .into_iter()
        .map(|o| storage.file_of(coffer::storage::Kind::Packs, &o.name).expect("listed name"))
        .collect();
    out.sort();
    out
}

/// Opens the repository `repo` through the library with the cache the binary uses in an
/// [`Env`] (`cache/` beside the repository), so both see one catalog.
pub fn open_repo(repo: &Path) -> coffer::repo::Repo {
    let cache = repo.parent().expect("a repository path has a parent").join("cache");
    coffer::repo::Repo::open_with(repo, &cache, &password()).expect("open repository")
}

/// The local catalog file of `repo` in an [`Env`]'s cache.
pub fn catalog_file(repo: &Path) -> PathBuf {
    open_repo(repo).index_path()
}
