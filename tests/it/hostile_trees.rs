//! Hostile trees, crafted as valid repository objects through the library: a chain of
//! directories 200,000 levels deep, a DAG that names one subtree twice per level (2^30 files
//! from 31 tree blobs), and a chunk that two files claim with different lengths. Every command
//! must end with a clear error (or succeed), never die by a signal, never expand a tree
//! beyond what its manifest declares, and never stream a chunk under a length it doesn't have.

use crate::support::craft::{component, dir, file, Craft};
use crate::support::{coffer_cmd, Env};
use coffer::id::{ChunkId, Id};
use coffer::tree::ChunkRef;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Output, Stdio};

/// Runs coffer with stdout discarded (a listing of a deep tree is quadratic in its depth).
fn run_quiet(env: &Env, args: &[&str]) -> Output {
    coffer_cmd()
        .args(args)
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .env_remove("COFFER_REPO")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run coffer")
}

/// Runs coffer reading at most `cap` bytes of its stdout: past that the child is killed and
/// `None` returned, so an unbounded expansion fails the test instead of running for hours.
fn run_capped(env: &Env, args: &[&str], cap: usize) -> Option<(Output, Vec<u8>)> {
    let mut child = coffer_cmd()
        .args(args)
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .env_remove("COFFER_REPO")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).expect("read stdout");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > cap {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    }
    drop(stdout);
    let o = child.wait_with_output().expect("wait coffer");
    Some((o, out))
}

/// A clear error: exit code 1, no signal, and stderr saying `what`.
fn assert_refused(o: &Output, args: &[&str], what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), None, "coffer {args:?} was killed by a signal: {err}");
    assert_eq!(o.status.code(), Some(1), "coffer {args:?} should fail cleanly: {err}");
    for w in what {
        assert!(err.contains(w), "coffer {args:?}: stderr should say {w:?}: {err}");
    }
}

#[test]
fn a_tree_200000_levels_deep_is_refused_without_a_crash() {
    const DEPTH: usize = 200_000;
    let env = Env::new();
    env.init();
    let mut c = Craft::open(&env.repo());
    let mut t = c.tree(vec![file("leaf", vec![])]);
    for _ in 0..DEPTH {
        t = c.tree(vec![dir("d", t)]);
    }
    c.commit(vec![component("c", t, 1, DEPTH as u64 + 1, 0)]);
    drop(c);
    let repo = env.repo();
    let repo = repo.to_str().unwrap();
    let why = ["set crafted", "component \"c\"", "c/d/d/d", "deeper than"];
    for args in [vec!["ls", "--repo", repo, "latest"], vec!["dump", "--repo", repo, "latest"]] {
        assert_refused(&run_quiet(&env, &args), &args, &why);
    }
    // Prune can't know what such a set needs: it refuses before deleting anything.
    let args = ["prune", "--repo", repo];
    assert_refused(&run_quiet(&env, &args), &args, &why);
    // stats reads manifests and the catalog only.
    let o = run_quiet(&env, &["stats", "--repo", repo]);
    assert!(o.status.success(), "stats: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_dag_expanding_beyond_the_manifest_is_refused_by_ls_and_dump() {
    const LEVELS: usize = 30;
    let env = Env::new();
    env.init();
    let mut c = Craft::open(&env.repo());
    let data = c.chunk(b"hello");
    // Level 0: one file. Level i: two directories naming level i-1: 2^30 files in the end.
    let mut t = c.tree(vec![file("f", vec![data])]);
    for _ in 0..LEVELS {
        t = c.tree(vec![dir("a", t), dir("b", t)]);
    }
    // The manifest declares what one path down the DAG holds.
    c.commit(vec![component("c", t, 1, LEVELS as u64 + 1, 5)]);
    drop(c);
    let repo = env.repo();
    let repo = repo.to_str().unwrap();
    for (args, cap) in [
        (vec!["ls", "--repo", repo, "latest"], 1 << 20),
        (vec!["ls", "--repo", repo, "latest", "c/a"], 1 << 20),
        (vec!["dump", "--repo", repo, "latest"], 16 << 20),
    ] {
        let Some((o, _)) = run_capped(&env, &args, cap) else {
            panic!(
                "coffer {args:?} wrote more than {cap} bytes for a component that declares 1 file and 31 directories"
            )
        };
        assert_refused(&o, &args, &["set crafted", "component \"c\"", "declares"]);
    }
}

#[test]
fn a_chunk_claimed_with_a_wrong_length_is_reported_by_dump_and_verify() {
    let env = Env::new();
    env.init();
    let mut c = Craft::open(&env.repo());
    let good = c.chunk(&[7u8; 100]);
    let data = ChunkId(Id(good.id));
    // `b` names the chunk twice: once truly, once claiming 4000 bytes (the tree's sizes add
    // up, so the tree itself decodes).
    let root = c.tree(vec![file("a", vec![good]), file("b", vec![good, ChunkRef::new(data, 4000)])]);
    c.commit(vec![component("c", root, 2, 1, 4200)]);
    drop(c);
    let repo = env.repo();
    let repo = repo.to_str().unwrap();
    let short = data.short();

    // The honest file still dumps.
    let o = env.run(&["dump", "--repo", repo, "latest", "c/a"]);
    assert!(o.status.success(), "dump c/a: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, vec![7u8; 100]);
    for args in [vec!["dump", "--repo", repo, "latest", "c/b"], vec!["dump", "--repo", repo, "latest"]] {
        let o = run_capped(&env, &args, 1 << 20).expect("bounded output").0;
        assert_refused(&o, &args, &["c/b", &short, "claims 4000 bytes"]);
    }

    let (code, err) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(4), "verify --read-data must report the damage: {err}");
    assert!(err.contains("DAMAGED") && err.contains("c/b") && err.contains("claims 4000 bytes"), "{err}");
    assert!(!err.contains("c/a:"), "the honest file is not damaged: {err}");
}
