//! Nothing dropped in silence: fifos, device nodes, hard links, extended attributes and POSIX
//! ACLs survive backup → restore and backup → dump | tar -x; a socket is skipped with a
//! warning; what an unprivileged restore can't create is reported with exit code 3.
//!
//! Runs as root (device nodes, trusted.* attributes). The scratch directories live under
//! CARGO_TARGET_TMPDIR, on the worktree's filesystem, because /tmp may be a tmpfs without
//! user xattrs or ACLs.

use crate::support::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// An Env whose directory supports user xattrs and ACLs.
fn xattr_env() -> Env {
    Env { dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir in CARGO_TARGET_TMPDIR") }
}

fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd} is needed for this test: {e}"));
    assert!(o.status.success(), "{cmd} {args:?}: {}", stderr(&o));
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("{}: setting {name}: {e}", p.display()));
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    match rustix::fs::lgetxattr(p, name, &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("{}: reading {name}: {e}", p.display()),
    }
}

/// `getfacl` of a path (access and default ACL), without the header naming the file.
fn acl(p: &Path) -> String {
    let o = Command::new("getfacl").args(["--omit-header", "--numeric"]).arg(p).output().expect("getfacl (acl)");
    assert!(o.status.success(), "getfacl {}: {}", p.display(), stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// A source with every kind of entry: a fifo, /dev/null's twin, a socket (bound while the
/// returned listener lives), a file with three names, another with two, and attributes and
/// ACLs on a file and a directory.
fn special_source(src: &Path) -> std::os::unix::net::UnixListener {
    write(&src.join("a/one"), &bytes(1, 70_000));
    write(&src.join("plain.txt"), b"plain");
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::hard_link(src.join("a/one"), src.join("a/two")).unwrap();
    std::fs::hard_link(src.join("a/one"), src.join("b/three")).unwrap();
    write(&src.join("p1"), b"pair");
    std::fs::hard_link(src.join("p1"), src.join("p2")).unwrap();
    run("mkfifo", &["-m", "0640", src.join("fifo").to_str().unwrap()]);
    run("mknod", &["-m", "0666", src.join("null").to_str().unwrap(), "c", "1", "3"]);
    let sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    set_xattr(&src.join("plain.txt"), "user.color", b"blue\0binary\xff");
    set_xattr(&src.join("b"), "user.dir", b"on a directory");
    set_xattr(&src.join("plain.txt"), "trusted.coffer", b"root only");
    run("setfacl", &["-m", "u:nobody:r", src.join("plain.txt").to_str().unwrap()]);
    run("setfacl", &["-m", "u:nobody:rx", "-d", "-m", "u:nobody:rwx", src.join("b").to_str().unwrap()]);
    sock
}

fn ino(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.ino(), m.nlink())
}

/// Checks `out` (a restore or extract of `special_source`) against `src`. `acls`: compare
/// ACLs and trusted.* too (a restore does; tar -x --xattrs applies user.* only).
fn check_restored(src: &Path, out: &Path, acls: bool) {
    let fifo = std::fs::symlink_metadata(out.join("fifo")).expect("fifo restored");
    assert!(fifo.file_type().is_fifo(), "fifo is a {:?}", fifo.file_type());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    let null = std::fs::symlink_metadata(out.join("null")).expect("device restored");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), std::fs::symlink_metadata(src.join("null")).unwrap().rdev());
    assert_eq!((rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev())), (1, 3));
    assert!(std::fs::symlink_metadata(out.join("sock")).is_err(), "a socket was restored");
    // Hard links share one inode.
    let (i1, n1) = ino(&out.join("a/one"));
    assert_eq!(n1, 3, "a/one has {n1} links");
    assert_eq!(ino(&out.join("a/two")).0, i1);
    assert_eq!(ino(&out.join("b/three")).0, i1);
    assert_eq!(std::fs::read(out.join("b/three")).unwrap(), bytes(1, 70_000));
    let (p1, pn) = ino(&out.join("p1"));
    assert_eq!((ino(&out.join("p2")).0, pn), (p1, 2));
    assert_ne!(p1, i1);
    assert_eq!(std::fs::read(out.join("p2")).unwrap(), b"pair");
    // Attributes.
    assert_eq!(get_xattr(&out.join("plain.txt"), "user.color").as_deref(), Some(&b"blue\0binary\xff"[..]));
    assert_eq!(get_xattr(&out.join("b"), "user.dir").as_deref(), Some(&b"on a directory"[..]));
    if acls {
        assert_eq!(get_xattr(&out.join("plain.txt"), "trusted.coffer").as_deref(), Some(&b"root only"[..]));
        for p in ["plain.txt", "b"] {
            let (a, b) = (acl(&src.join(p)), acl(&out.join(p)));
            assert!(a.contains("user:65534:"), "{p}: source ACL {a}");
            assert_eq!(a, b, "{p}: ACL differs");
        }
    }
}

/// A repository holding one backup of `special_source`.
fn backed_up() -> (Env, std::path::PathBuf, std::path::PathBuf) {
    let env = xattr_env();
    env.init();
    let src = env.path("src");
    let sock = special_source(&src);
    let repo = env.repo();
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    drop(sock);
    // A socket is skipped, with a warning naming it, and that alone does not fail the run.
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("sock: socket skipped"), "no warning about the socket: {}", stderr(&o));
    (env, src, repo)
}

#[test]
fn special_files_hard_links_and_xattrs_are_restored() {
    let (env, src, repo) = backed_up();
    let out = env.path("out");
    let rep = env.restore_json(&repo, &out, &[]);
    assert_eq!(rep["specials"], 2, "{rep}");
    assert_eq!(rep["hardlinks"], 3, "{rep}");
    assert_eq!(rep["not_restored_count"], 0, "{rep}");
    check_restored(&src, &out.join("src"), true);
    // --resume over a complete restore keeps everything (links included) and changes nothing.
    let again = env.restore_json(&repo, &out, &["--resume"]);
    assert_eq!(again["hardlinks"], 0, "{again}");
    assert_eq!(again["specials"], 0, "{again}");
    check_restored(&src, &out.join("src"), true);
    // The stored tree says what it holds.
    let ls = env.ok(&["ls", "--repo", repo.to_str().unwrap(), "latest", "--json"]);
    assert!(ls.contains("\"fifo\"") && ls.contains("\"chardev\""), "{ls}");
}

#[test]
fn dump_into_tar_reproduces_hard_links_fifos_devices_and_xattrs() {
    let (env, src, repo) = backed_up();
    let out = env.path("x");
    std::fs::create_dir_all(&out).unwrap();
    let mut dump = coffer_cmd()
        .args(["dump", "--repo", repo.to_str().unwrap(), "latest"])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .args(["-x", "--xattrs", "-C", out.to_str().unwrap()])
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(dump.wait().unwrap().success());
    assert!(tar.status.success(), "tar -x: {}", stderr(&tar));
    check_restored(&src, &out.join("src"), false);
}

#[test]
fn an_unprivileged_restore_reports_the_device_and_attributes_it_cannot_create() {
    let env = Env::new();
    let base = env.dir.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = env.path("src");
    write(&src.join("ok.txt"), b"fine");
    set_xattr(&src.join("ok.txt"), "trusted.coffer", b"root only");
    run("mknod", &[src.join("null").to_str().unwrap(), "c", "1", "3"]);
    env.init();
    let repo = env.repo();
    env.ok(&["backup", "--repo", repo.to_str().unwrap(), src.to_str().unwrap()]);
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(env.path("cache")).unwrap();
    for p in [&repo, &out, &env.path("cache")] {
        run("chown", &["-R", "nobody", p.to_str().unwrap()]);
    }
    let bin = env.path("coffer");
    std::fs::copy(coffer_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = test_env(&mut Command::new("runuser"))
        .args(["-u", "nobody", "--"])
        .arg(&bin)
        .args(["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()])
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .output()
        .expect("runuser (util-linux) is needed for this test");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("src/null: character device 1:3 not created"), "{err}");
    assert!(err.contains("only root can create device nodes"), "{err}");
    assert!(err.contains("src/ok.txt: extended attribute trusted.coffer not restored"), "{err}");
    // Everything else is restored.
    assert_eq!(std::fs::read(out.join("src/ok.txt")).unwrap(), b"fine");
}
