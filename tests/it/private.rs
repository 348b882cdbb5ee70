//! Owner-only repositories and caches: a repository holds the whole database dump, so nothing
//! coffer creates in it or in its cache may be readable by group or others, whatever the umask
//! of the job that runs it.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Runs coffer under the permissive umask 022 (cron's usual), requiring success.
fn run_022(env: &Env, args: &[&str]) {
    let o = test_env(&mut Command::new("sh"))
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(coffer_bin())
        .args(args)
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .env_remove("COFFER_REPO")
        .output()
        .expect("run sh");
    assert!(o.status.success(), "coffer {args:?}: {}", stderr(&o));
}

/// Every entry below `root` (and `root`) whose mode lets group or others in.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut all = walk(root);
    all.push(root.to_path_buf());
    all.into_iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| format!("{} {mode:o}", p.display()))
        })
        .collect()
}

#[test]
fn a_new_repository_and_its_cache_are_owner_only() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a.txt"), &bytes(1, 300_000));
    write(&src.join("sub/b.txt"), b"secret rows");
    let repo = env.path("repo");
    let r = repo.to_str().unwrap();
    run_022(&env, &["init", "--repo", r]);
    // Two nights (the second uses the files cache), a rebuilt catalog, a full verify.
    run_022(&env, &["backup", "--repo", r, src.to_str().unwrap()]);
    write(&src.join("c.txt"), b"new");
    run_022(&env, &["backup", "--repo", r, src.to_str().unwrap()]);
    run_022(&env, &["repair", "index", "--repo", r]);
    run_022(&env, &["verify", "--repo", r, "--read-data"]);
    let cache = env.path("cache");
    assert!(walk(&cache).iter().any(|p| p.to_string_lossy().contains("files-")), "no files cache was written");
    assert!(walk(&repo.join("packs")).iter().any(|p| p.is_file()), "no pack was written");
    assert!(walk(&repo.join("index")).iter().any(|p| p.is_file()), "no index object was written");
    assert!(walk(&cache).iter().any(|p| p.ends_with("index.sqlite")), "no catalog in the cache");
    for root in [&repo, &cache] {
        let open = open_to_others(root);
        assert!(open.is_empty(), "readable by group or others under {}: {open:#?}", root.display());
    }
}
