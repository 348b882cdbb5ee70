//! The files cache and source reading can't make a backup commit an unrestorable set:
//! concurrent runs of one source with one killed, a copied repository, `repair index` after a
//! prune, edited or wrong-typed cache rows; and reading never dies (a file truncated while
//! read, a `/proc` file that streams without end, pseudo filesystems and `--one-file-system`).

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const OLD: i64 = 1_600_000_000;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one files-cache database under the env's cache directory.
fn cache_db(env: &Env) -> PathBuf {
    let mut found = Vec::new();
    for p in walk(&env.path("cache")) {
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n.starts_with("files-") && n.ends_with(".sqlite") {
            found.push(p);
        }
    }
    assert_eq!(found.len(), 1, "expected one files cache: {found:?}");
    found.pop().unwrap()
}

fn backup(env: &Env, repo: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["backup", "--repo", s(repo)];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn restore_latest(env: &Env, repo: &Path, out: &Path) {
    env.ok(&["restore", "--repo", s(repo), "latest", "--target", s(out)]);
}

fn spawn_backup(env: &Env, repo: &Path, src: &Path) -> Child {
    coffer_cmd()
        .args(["backup", "--repo", s(repo), "--threads", "1", s(src)])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls (the condition, not the clock) until process `pid` has `file` open.
fn wait_until_open(pid: u32, file: &Path) {
    loop {
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            if fds.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file)) {
                return;
            }
        } else {
            panic!("process {pid} ended before opening {}", file.display());
        }
        std::thread::yield_now();
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// A file rewritten with another size and an old mtime, so the cache may trust its new state.
fn rewrite_old(p: &Path, data: &[u8], secs: i64) {
    std::fs::write(p, data).unwrap();
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_file_times(p, t, t).unwrap();
}

#[test]
fn concurrent_backups_of_one_source_with_one_killed_then_a_third_restores() {
    let env = Env::new();
    let (src, repo) = (env.path("src"), env.repo());
    write(&src.join("a/f"), &bytes(1, 3000));
    std::fs::create_dir_all(src.join("zz")).unwrap();
    age_tree(&src, OLD);
    env.init();
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    // A big new file keeps a run busy after it has passed `a/` (one thread walks in order).
    std::fs::File::create(src.join("zz/big")).unwrap().set_len(600 << 20).unwrap();
    age_tree(&src.join("zz"), OLD);
    // C: takes `a/f` from the cache, then reads zz/big; paused there.
    let mut c = spawn_backup(&env, &repo, &src);
    wait_until_open(c.id(), &src.join("zz/big"));
    signal(c.id(), libc::SIGSTOP);
    // f changes; K reads its new content, stages it, and is killed while on zz/big (its
    // pack with f's new chunks never sealed or indexed).
    rewrite_old(&src.join("a/f"), &bytes(2, 5000), OLD + 10);
    let mut k = spawn_backup(&env, &repo, &src);
    wait_until_open(k.id(), &src.join("zz/big"));
    k.kill().unwrap();
    k.wait().unwrap();
    signal(c.id(), libc::SIGCONT);
    assert!(c.wait().unwrap().success(), "the surviving backup failed");
    // The third run must not reuse what the killed run staged.
    let o = backup(&env, &repo, &[s(&src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &repo, &out);
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn a_copied_repository_does_not_inherit_a_cache_naming_chunks_it_lacks() {
    let env = Env::new();
    let (src, repo, copy) = (env.path("src"), env.repo(), env.path("copy"));
    write(&src.join("f"), &bytes(1, 300_000));
    write(&src.join("g"), &bytes(2, 1000));
    age_tree(&src, OLD);
    env.init();
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    // A rotated backup disk: same repository id and generation.
    assert!(Command::new("cp").args(["-a", s(&repo), s(&copy)]).status().unwrap().success());
    rewrite_old(&src.join("f"), &bytes(3, 400_000), OLD + 10);
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    // The cache now names f's new chunks, which only the original has.
    let o = backup(&env, &copy, &[s(&src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &copy, &out);
    assert_same_tree(&src, &out.join("src"));
    // The shared catalog, synced against the copy's index objects, drops what only the
    // original has and takes a new generation; either that or the per-directory check tells.
    let told = stderr(&o).contains("did not check out") || stderr(&o).contains("another state of the repository");
    assert!(told, "the user is told: {}", stderr(&o));
    let (code, msg) = env.verify(&copy, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn a_backup_after_prune_and_repair_index_reads_what_the_prune_removed() {
    let env = Env::new();
    let (src, repo) = (env.path("src"), env.repo());
    write(&src.join("f"), &bytes(1, 300_000));
    age_tree(&src, OLD);
    env.init();
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    let before = crate::support::open_repo(&repo).index().unwrap().generation().unwrap();
    // Drop every set by hand, prune all chunks away, then rebuild the catalog.
    for e in std::fs::read_dir(repo.join("sets")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    env.ok(&["prune", "--repo", s(&repo)]);
    let pruned = crate::support::open_repo(&repo).index().unwrap().generation().unwrap();
    env.ok(&["repair", "index", "--repo", s(&repo)]);
    let repaired = crate::support::open_repo(&repo).index().unwrap().generation().unwrap();
    assert!(before != pruned && pruned != repaired && before != repaired, "{before} {pruned} {repaired}");
    let o = backup(&env, &repo, &[s(&src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &repo, &out);
    assert_same_tree(&src, &out.join("src"));
    assert!(stderr(&o).contains("another state of the repository"), "{}", stderr(&o));
}

#[test]
fn edited_or_swapped_cache_rows_are_not_reused() {
    let env = Env::new();
    let (src, repo) = (env.path("src"), env.repo());
    // a and b the same size; c several chunks (max chunk 1 MiB).
    write(&src.join("a"), &bytes(1, 100_000));
    write(&src.join("b"), &bytes(2, 100_000));
    write(&src.join("c"), &bytes(3, 3 << 20));
    age_tree(&src, OLD);
    env.init();
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    let db = cache_db(&env);
    let content = |c: &rusqlite::Connection, name: &str| -> Vec<u8> {
        c.query_row("SELECT content FROM files WHERE name = ?1", [name.as_bytes()], |r| r.get(0)).unwrap()
    };
    let set = |c: &rusqlite::Connection, name: &str, v: &[u8]| {
        assert_eq!(c.execute("UPDATE files SET content = ?1 WHERE name = ?2", (v, name.as_bytes())).unwrap(), 1);
    };
    type Edit = fn(
        &rusqlite::Connection,
        &dyn Fn(&rusqlite::Connection, &str) -> Vec<u8>,
        &dyn Fn(&rusqlite::Connection, &str, &[u8]),
    );
    let edits: [(&str, Edit); 3] = [
        ("wrong chunk id", |c, get, put| {
            let mut v = get(c, "a");
            v[0] ^= 0xff;
            put(c, "a", &v);
        }),
        ("wrong length", |c, get, put| {
            let mut v = get(c, "c");
            // Move bytes from the first chunk's length to the second's: the sum still matches.
            let l0 = u32::from_le_bytes(v[32..36].try_into().unwrap());
            let l1 = u32::from_le_bytes(v[68..72].try_into().unwrap());
            v[32..36].copy_from_slice(&(l0 - 100).to_le_bytes());
            v[68..72].copy_from_slice(&(l1 + 100).to_le_bytes());
            put(c, "c", &v);
        }),
        ("swapped rows", |c, get, put| {
            let (a, b) = (get(c, "a"), get(c, "b"));
            put(c, "a", &b);
            put(c, "b", &a);
        }),
    ];
    for (i, (what, edit)) in edits.iter().enumerate() {
        let c = rusqlite::Connection::open(&db).unwrap();
        edit(&c, &content, &set);
        drop(c);
        let o = backup(&env, &repo, &[s(&src)]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let out = env.path(&format!("out{i}"));
        restore_latest(&env, &repo, &out);
        assert_same_tree(&src, &out.join("src"));
    }
}

#[test]
fn a_wrong_typed_cache_row_is_a_note_not_a_failed_backup() {
    let env = Env::new();
    let (src, repo) = (env.path("src"), env.repo());
    write(&src.join("a"), &bytes(1, 1000));
    write(&src.join("b"), &bytes(2, 1000));
    age_tree(&src, OLD);
    env.init();
    env.ok(&["backup", "--repo", s(&repo), s(&src)]);
    let db = cache_db(&env);
    let c = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(c.execute("UPDATE files SET size = 'large', ino = x'00' WHERE name = x'61'", []).unwrap(), 1);
    drop(c);
    for round in 0..2 {
        let o = backup(&env, &repo, &[s(&src)]);
        assert!(o.status.success(), "round {round}: {}", stderr(&o));
        if round == 0 {
            assert!(stderr(&o).contains("files cache"), "a note tells the user: {}", stderr(&o));
        }
    }
    // A cache file that is garbage is rebuilt, with a note.
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let o = backup(&env, &repo, &[s(&src)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("could not be read"), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &repo, &out);
    assert_same_tree(&src, &out.join("src"));
}

#[test]
fn a_file_truncated_while_being_read_never_kills_the_backup() {
    let env = Env::new();
    let (src, repo) = (env.path("src"), env.repo());
    write(&src.join("small"), b"steady");
    let victim = src.join("victim");
    std::fs::File::create(&victim).unwrap();
    env.init();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flapper = {
        let (stop, victim) = (stop.clone(), victim.clone());
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&victim).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.set_len(24 << 20).unwrap();
                f.set_len(4096).unwrap();
            }
        })
    };
    for round in 0..25 {
        let o = backup(&env, &repo, &["--no-cache", s(&src)]);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "round {round}: backup ended by {:?}: {}",
            o.status,
            stderr(&o)
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flapper.join().unwrap();
}

/// Runs coffer under an address-space limit (so unbounded reading fails fast instead of
/// reaching the OOM killer).
fn run_limited(env: &Env, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("sh");
    test_env(&mut cmd);
    cmd.arg("-c").arg("ulimit -v 3000000; exec \"$0\" \"$@\"").arg(coffer_bin()).args(args);
    cmd.env("COFFER_CACHE_DIR", env.path("cache")).output().unwrap()
}

/// A process whose `/proc/<pid>/pagemap` claims 0 bytes and reads as hundreds of GiB.
struct Sleeper(Child);
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_proc_directory_that_streams_is_read_in_bounded_memory() {
    let env = Env::new();
    env.init();
    let sleeper = Sleeper(Command::new("sleep").arg("1000").spawn().unwrap());
    let dir = PathBuf::from(format!("/proc/{}", sleeper.0.id()));
    assert_eq!(std::fs::metadata(dir.join("pagemap")).unwrap().len(), 0);
    let o = run_limited(&env, &["backup", "--repo", s(&env.repo()), "--threads", "2", s(&dir)]);
    // Unreadable /proc files make it partial (exit 3); the process is never killed.
    assert_eq!(o.status.code(), Some(3), "{:?}: {}", o.status, stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("pagemap") && err.contains("kept growing"), "{err}");
}

/// A mount below a source, unmounted (lazily) when the test ends however it ends.
struct Mount(PathBuf);
impl Mount {
    fn new(args: &[&str], at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount").args(args).arg(at).status().unwrap();
        assert!(st.success(), "mount {args:?} {} failed", at.display());
        Mount(at.to_path_buf())
    }
}
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn pseudo_filesystems_below_a_source_are_skipped_with_a_note() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("data.txt"), b"data");
    let sleeper = Sleeper(Command::new("sleep").arg("1000").spawn().unwrap());
    let proc_dir = format!("/proc/{}", sleeper.0.id());
    let _m = Mount::new(&["--bind", &proc_dir], &src.join("proc"));
    env.init();
    let o = run_limited(&env, &["backup", "--repo", s(&env.repo()), s(&src)]);
    assert_eq!(o.status.code(), Some(0), "{:?}: {}", o.status, stderr(&o));
    assert!(stderr(&o).contains("proc filesystem"), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &env.repo(), &out);
    assert_eq!(std::fs::read(out.join("src/data.txt")).unwrap(), b"data");
    assert!(out.join("src/proc").is_dir(), "the mount point is kept");
    assert_eq!(std::fs::read_dir(out.join("src/proc")).unwrap().count(), 0, "nothing of /proc is stored");
}

#[test]
fn one_file_system_does_not_cross_into_a_tmpfs_below_the_source() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("data.txt"), b"data");
    let m = Mount::new(&["-t", "tmpfs", "tmpfs"], &src.join("t"));
    write(&m.0.join("inside.txt"), b"on tmpfs");
    env.init();
    let o = env.run(&["backup", "--repo", s(&env.repo()), "--one-file-system", s(&src)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not crossed"), "{}", stderr(&o));
    let out = env.path("out");
    restore_latest(&env, &env.repo(), &out);
    assert!(out.join("src/data.txt").exists());
    assert!(out.join("src/t").is_dir() && !out.join("src/t/inside.txt").exists(), "crossed into the tmpfs");
    // Without the flag an ordinary filesystem below the source is backed up.
    env.ok(&["backup", "--repo", s(&env.repo()), s(&src)]);
    let out2 = env.path("out2");
    restore_latest(&env, &env.repo(), &out2);
    assert_eq!(std::fs::read(out2.join("src/t/inside.txt")).unwrap(), b"on tmpfs");
}
