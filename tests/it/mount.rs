//! Reading sets back without a plain restore: the FUSE mount, `dump` as tar or raw bytes, and
//! a restore that is killed and resumed.

use crate::support::*;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A tree for reading back: a multi-chunk file for random reads, names and link targets over
/// tar's 100-byte fields, nested and empty directories, symlinks, odd modes.
fn tree(root: &Path) {
    write(&root.join("big/random.bin"), &bytes(7, 9 * 1024 * 1024 + 333));
    write(&root.join("big/text.sql"), "INSERT INTO alf_node VALUES (1, 'x');\n".repeat(50_000).as_bytes());
    let long_dir = "d".repeat(90);
    let long_file = "f".repeat(150);
    write(&root.join(format!("{long_dir}/{long_file}")), b"long path");
    std::os::unix::fs::symlink(format!("{long_dir}/{long_file}"), root.join("long-link")).unwrap();
    std::os::unix::fs::symlink("big/text.sql", root.join("rel-link")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    write(&root.join("empty-file"), b"");
    write(&root.join("a/b/c/leaf.txt"), b"leaf");
    write(&root.join("ünïcødé.txt"), "こんにちは".as_bytes());
    write(&root.join("modes/private"), b"secret");
    std::fs::set_permissions(root.join("modes/private"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for i in 0..30 {
        write(&root.join(format!("many/f{i:02}")), &bytes(100 + i, i as usize * 3000));
    }
}

fn is_mounted(mp: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let want = mp.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(want))
}

/// A running `coffer mount`; dropping it unmounts and reaps it even when a test fails.
struct Mounted {
    child: Child,
    mp: PathBuf,
}

impl Mounted {
    fn start(env: &Env, mp: &Path) -> Mounted {
        std::fs::create_dir_all(mp).unwrap();
        let child = coffer_cmd()
            .args(["mount", "--repo", env.repo().to_str().unwrap(), mp.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut m = Mounted { child, mp: mp.to_path_buf() };
        // Live once the set names are listed through FUSE (a condition, not a delay).
        loop {
            if is_mounted(mp) && std::fs::read_dir(mp.join("sets")).map(|d| d.count() > 0).unwrap_or(false) {
                return m;
            }
            if let Some(st) = m.child.try_wait().unwrap() {
                let mut err = String::new();
                m.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("coffer mount exited ({st}) before the mount was live: {err}");
            }
            std::thread::yield_now();
        }
    }

    /// Waits for the process; returns its status and stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let st = self.child.wait().unwrap();
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (st, err)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mp).status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn mount_shows_every_set_as_recorded_and_unmounts_on_sigint() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    env.init();
    let first = env.backup_json(&[src.to_str().unwrap()]);
    write(&src.join("a/b/c/leaf.txt"), b"leaf, second night");
    let second = env.backup_json(&[src.to_str().unwrap()]);
    let sets: serde_json::Value =
        serde_json::from_str(&env.ok(&["sets", "--repo", env.repo().to_str().unwrap(), "--json"])).unwrap();
    let label = |set: &serde_json::Value| -> String {
        let id = set["set"].as_str().unwrap();
        let m = sets.as_array().unwrap().iter().find(|s| s["id"] == id).unwrap();
        let started = m["started"].as_str().unwrap();
        format!("{}Z", &started[..19])
    };
    let (l1, l2) = (label(&first), label(&second));

    let mp = env.path("mnt");
    let m = Mounted::start(&env, &mp);
    let name_dir = mp.join("sets/default");
    let mut listed: Vec<String> =
        std::fs::read_dir(&name_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    let mut want = if l1 == l2 {
        vec![first["set"].as_str().unwrap()[..8].to_string(), second["set"].as_str().unwrap()[..8].to_string()]
    } else {
        vec![l1.clone(), l2.clone()]
    };
    want.push("latest".into());
    want.sort();
    assert_eq!(listed, want);
    let latest_target = std::fs::read_link(name_dir.join("latest")).unwrap();
    let newest = if l1 == l2 { second["set"].as_str().unwrap()[..8].to_string() } else { l2.clone() };
    assert_eq!(latest_target, PathBuf::from(&newest));
    let older = if l1 == l2 { first["set"].as_str().unwrap()[..8].to_string() } else { l1.clone() };
    assert_eq!(std::fs::read(name_dir.join(&older).join("src/a/b/c/leaf.txt")).unwrap(), b"leaf");

    // The newest set is the source tree: contents (diff -r), then modes, mtimes and links.
    let mounted = name_dir.join("latest/src");
    let diff = Command::new("diff").arg("-r").arg(&src).arg(&mounted).output().unwrap();
    assert!(diff.status.success(), "diff -r: {}{}", String::from_utf8_lossy(&diff.stdout), stderr(&diff));
    assert_same_tree(&src, &mounted);
    let (meta_src, meta_mnt) = (
        std::fs::metadata(src.join("modes/private")).unwrap(),
        std::fs::metadata(mounted.join("modes/private")).unwrap(),
    );
    assert_eq!((meta_mnt.uid(), meta_mnt.gid(), meta_mnt.mode() & 0o7777), (meta_src.uid(), meta_src.gid(), 0o600));

    // Random reads of a multi-chunk file, at seeded offsets, across chunk boundaries.
    let want = std::fs::read(src.join("big/random.bin")).unwrap();
    let f = std::fs::File::open(mounted.join("big/random.bin")).unwrap();
    let mut seed = 0x5eed_u64;
    for _ in 0..64 {
        let off = xorshift(&mut seed) % want.len() as u64;
        let len = (xorshift(&mut seed) % (3 << 20)) as usize;
        let mut got = vec![0u8; len];
        let n = f.read_at(&mut got, off).unwrap();
        let end = (off as usize + len).min(want.len());
        assert_eq!(n, end - off as usize);
        assert!(got[..n] == want[off as usize..end], "bytes differ at {off}+{n}");
    }
    // dd with skip= is another reader of the same path.
    let dd = Command::new("dd")
        .arg(format!("if={}", mounted.join("big/random.bin").display()))
        .args(["bs=65536", "skip=100", "count=7", "status=none"])
        .output()
        .unwrap();
    assert!(dd.status.success(), "{}", stderr(&dd));
    assert!(dd.stdout == want[100 * 65536..107 * 65536]);
    // Read-only.
    assert!(std::fs::write(mounted.join("empty-file"), b"x").is_err());

    // `f` is still open: Ctrl-C must end the mount anyway (it detaches a busy mount).
    let pid = m.child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (st, err) = m.wait();
    assert!(st.success(), "coffer mount exited with {st} after SIGINT: {err}");
    assert!(!is_mounted(&mp), "{} is still mounted after SIGINT", mp.display());
    drop(f);
}

#[test]
fn mount_ends_cleanly_when_unmounted_with_fusermount() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("db/alfresco.dump"), &bytes(3, 3 * 1024 * 1024 + 5));
    env.init();
    env.backup_json(&[src.join("db").to_str().unwrap()]);
    let mp = env.path("mnt");
    let m = Mounted::start(&env, &mp);
    let sums = Command::new("sha256sum")
        .arg(src.join("db/alfresco.dump"))
        .arg(mp.join("sets/default/latest/db/alfresco.dump"))
        .output()
        .unwrap();
    let out = String::from_utf8(sums.stdout).unwrap();
    let hashes: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(hashes.len(), 2, "{out}");
    assert_eq!(hashes[0], hashes[1]);

    let st = Command::new("fusermount3").arg("-u").arg(&mp).status().unwrap();
    assert!(st.success());
    let (st, err) = m.wait();
    assert!(st.success(), "coffer mount exited with {st} after fusermount3 -u: {err}");
    assert!(!is_mounted(&mp));
}

/// Runs `coffer dump ARGS | tar TAR_ARGS`; returns tar's output after checking both succeeded.
fn dump_into_tar(env: &Env, dump_args: &[&str], tar_args: &[&str]) -> std::process::Output {
    let mut dump =
        coffer_cmd().arg("dump").args(dump_args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let tar = Command::new("tar").args(tar_args).stdin(dump.stdout.take().unwrap()).output().unwrap();
    let st = dump.wait().unwrap();
    let mut err = String::new();
    dump.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(st.success(), "coffer dump {dump_args:?}: {st}: {err}");
    assert!(tar.status.success(), "tar {tar_args:?}: {}", stderr(&tar));
    let _ = env;
    tar
}

#[test]
fn dump_is_a_tar_stream_gnu_tar_extracts_identically_and_a_single_file_is_raw() {
    let env = Env::new();
    let src = env.path("src");
    tree(&src);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = env.repo();
    let r = repo.to_str().unwrap();

    // The whole set.
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    dump_into_tar(&env, &["--repo", r, "latest"], &["-x", "-C", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));

    // A subtree keeps its path inside the set.
    let sub = env.path("sub");
    std::fs::create_dir_all(&sub).unwrap();
    dump_into_tar(&env, &["--repo", r, "latest", "src/a"], &["-x", "-C", sub.to_str().unwrap()]);
    assert_same_tree(&src.join("a"), &sub.join("src/a"));
    assert!(!sub.join("src/big").exists());

    // A single file is its raw bytes.
    let raw = env.ok(&["dump", "--repo", r, "latest", "src/big/text.sql"]);
    assert!(raw.as_bytes() == std::fs::read(src.join("big/text.sql")).unwrap());

    // A reader that stops early ends the dump quietly.
    let mut dump = coffer_cmd()
        .args(["dump", "--repo", r, "latest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    dump.stdout.as_mut().unwrap().read_exact(&mut head).unwrap();
    drop(dump.stdout.take());
    let o = dump.wait_with_output().unwrap();
    assert!(o.status.success(), "dump into a closed pipe exited with {}: {}", o.status, stderr(&o));
    assert!(o.stderr.is_empty(), "dump into a closed pipe printed: {}", stderr(&o));
}

/// An 8 GiB + 1234 B sparse file: the tar header needs a pax size, the content streams as
/// zeros, and a restore writes it sparse. Backing it up hashes 8 GiB of zeros (about 15 s in
/// a debug build on two cores); reading it back through tar and cmp takes about as long.
#[test]
fn dump_and_restore_of_a_sparse_file_over_8_gib() {
    let env = Env::new();
    let src = env.path("src/sparse");
    std::fs::create_dir_all(&src).unwrap();
    let size = (8u64 << 30) + 1234;
    let f = std::fs::File::create(src.join("big")).unwrap();
    f.set_len(size).unwrap();
    let marks = [0u64, (5 << 20) + 7, (4u64 << 30) + 3, size - 234];
    for &o in &marks {
        f.write_all_at(format!("coffer-{o}").as_bytes(), o).unwrap();
    }
    drop(f);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let r = env.repo();
    let r = r.to_str().unwrap();

    // GNU tar lists the full size and extracts the same bytes (compared by cmp).
    let mut dump = coffer_cmd().args(["dump", "--repo", r, "latest", "sparse"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut tar = Command::new("tar")
        .args(["-xvvOf", "-", "sparse/big"])
        .stdin(dump.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cmp = Command::new("cmp").arg("-").arg(src.join("big")).stdin(tar.stdout.take().unwrap()).output().unwrap();
    let tar = tar.wait_with_output().unwrap();
    assert!(dump.wait().unwrap().success());
    assert!(tar.status.success(), "{}", stderr(&tar));
    let listing = stderr(&tar);
    assert!(listing.contains(&format!(" {size} ")), "tar -tvv does not show size {size}: {listing}");
    assert!(cmp.status.success(), "cmp: {}{}", String::from_utf8_lossy(&cmp.stdout), stderr(&cmp));

    // A restore reads the zero chunk once and leaves holes.
    let out = env.path("out");
    let rep = env.restore_json(&env.repo(), &out, &[]);
    assert!(rep["bytes_read"].as_u64().unwrap() < 64 << 20, "{rep}");
    let restored = out.join("sparse/big");
    let m = std::fs::metadata(&restored).unwrap();
    assert_eq!(m.len(), size);
    assert!(m.blocks() * 512 < 64 << 20, "restored file is not sparse: {} blocks", m.blocks());
    let g = std::fs::File::open(&restored).unwrap();
    for &o in &marks {
        let want = format!("coffer-{o}");
        let mut got = vec![0u8; want.len()];
        g.read_exact_at(&mut got, o).unwrap();
        assert_eq!(got, want.as_bytes());
    }
}

#[test]
fn a_killed_restore_resumes_to_an_identical_tree_reading_less() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..1500u64 {
        write(&src.join(format!("flat/f{i:04}")), &bytes(5000 + i, 16 * 1024 + (i as usize % 7) * 1000));
    }
    for i in 0..3u64 {
        write(&src.join(format!("large/l{i}")), &bytes(9000 + i, 6 * 1024 * 1024 + 11));
    }
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = env.repo();
    let out = env.path("out");
    let total: u64 = walk(&src).iter().filter(|p| p.is_file()).map(|p| std::fs::metadata(p).unwrap().len()).sum();

    let mut child = coffer_cmd()
        .args([
            "restore",
            "--repo",
            repo.to_str().unwrap(),
            "latest",
            "--threads",
            "1",
            "--target",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some files are in place (watching the target, not the clock).
    let flat = out.join("src/flat");
    loop {
        if std::fs::read_dir(&flat).map(|d| d.count() >= 100).unwrap_or(false) {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("restore finished ({st}) before it could be killed");
        }
        std::thread::yield_now();
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "restore was expected to be killed");
    // Damage two complete files the way a crash or an operator could: one cut short, one
    // with the right size and a flipped byte. Both must be rewritten.
    let done: Vec<PathBuf> = std::fs::read_dir(&flat)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).unwrap().len() > 1000)
        .take(2)
        .collect();
    assert_eq!(done.len(), 2);
    let short = std::fs::OpenOptions::new().write(true).open(&done[0]).unwrap();
    short.set_len(500).unwrap();
    let flipped = std::fs::OpenOptions::new().write(true).open(&done[1]).unwrap();
    flipped.write_all_at(b"\xff\x00", 700).unwrap();

    let rep = env.restore_json(&repo, &out, &["--resume", "--verify"]);
    assert_same_tree(&src, &out.join("src"));
    let (files, skipped) = (rep["files"].as_u64().unwrap(), rep["skipped"].as_u64().unwrap());
    assert!(skipped > 0, "nothing was kept: {rep}");
    assert_eq!(files + skipped, 1503, "{rep}");
    assert_eq!(rep["verified"].as_u64().unwrap(), files, "{rep}");
    assert!(rep["bytes_read"].as_u64().unwrap() < total, "resume read everything again: {rep}");

    // Resuming a complete restore rewrites nothing.
    let again = env.restore_json(&repo, &out, &["--resume"]);
    assert_eq!(
        (again["files"].as_u64(), again["skipped"].as_u64(), again["bytes_read"].as_u64()),
        (Some(0), Some(1503), Some(0)),
        "{again}"
    );
    assert_same_tree(&src, &out.join("src"));
}

/// Restore plans across files: a document uploaded four times, a file repeating its own
/// content and many small files under read-only directories come back identical while each
/// needed pack range is read once, in one batch and in many small ones.
#[test]
fn restore_reads_each_needed_pack_range_once_across_files() {
    let env = Env::new();
    let src = env.path("src");
    let doc = bytes(1, 3 << 20);
    for d in ["2024/1/5/9", "2024/2/9/3", "2025/3/1/0", "2025/3/2/7"] {
        write(&src.join(format!("{d}/upload.bin")), &doc);
    }
    write(&src.join("repeats.bin"), &bytes(2, 2 << 20).repeat(3));
    for i in 0..1200u64 {
        write(
            &src.join(format!("store/{:02}/{:02}/f{i:04}.bin", i % 7, i % 13)),
            &bytes(1000 + i, 2000 + (i as usize % 11) * 1000),
        );
    }
    write(&src.join("store/empty"), b"");
    std::os::unix::fs::symlink("store/00/00/f0000.bin", src.join("link")).unwrap();
    for i in 0..7 {
        std::fs::set_permissions(
            src.join(format!("store/{i:02}")),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
    }
    age_tree(&src, 1_600_000_000);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let repo = env.repo();
    let r = repo.to_str().unwrap();
    let pack_bytes: u64 =
        walk(&repo.join("packs")).iter().filter(|p| p.is_file()).map(|p| std::fs::metadata(p).unwrap().len()).sum();
    let file_bytes: u64 =
        walk(&src).iter().map(|p| std::fs::symlink_metadata(p).unwrap()).filter(|m| m.is_file()).map(|m| m.len()).sum();
    // Read once per file, the four uploads alone would be 9 MiB over what the packs hold.
    assert!(file_bytes > pack_bytes + (9 << 20), "the tree should dedup well: {file_bytes} vs {pack_bytes}");

    let restore = |out: &Path, extra: &[&str]| env.restore_json(&repo, out, extra);
    // One batch: every needed range once, so never more than the packs hold.
    let one = env.path("one");
    let rep = restore(&one, &[]);
    assert_same_tree(&src, &one.join("src"));
    assert_eq!(rep["batches"], 1, "{rep}");
    assert_eq!(rep["files"], 1206, "{rep}");
    assert!(rep["bytes_read"].as_u64().unwrap() <= pack_bytes, "read more than the packs hold ({pack_bytes}): {rep}");
    assert_eq!(rep["bytes"].as_u64().unwrap(), file_bytes, "{rep}");

    // Batches of 64 KiB plans: shared chunks are read once per batch, the tree is the same.
    let many = env.path("many");
    let rep = restore(&many, &["--plan-memory", "64K"]);
    assert_same_tree(&src, &many.join("src"));
    assert!(rep["batches"].as_u64().unwrap() > 3, "{rep}");
    let again = restore(&many, &["--plan-memory", "64K", "--resume", "--verify"]);
    assert_eq!(
        (again["files"].as_u64(), again["skipped"].as_u64(), again["bytes_read"].as_u64()),
        (Some(0), Some(1207), Some(0)),
        "{again}"
    );

    let bad = env.run(&[
        "restore",
        "--repo",
        r,
        "latest",
        "--target",
        env.path("x").to_str().unwrap(),
        "--plan-memory",
        "lots",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("expected a size"), "{}", stderr(&bad));
}
