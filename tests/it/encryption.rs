//! Encrypted repositories (format version 3): nothing readable in storage, passwords from
//! every source, keys added, changed and removed, and tampering found and named.

use crate::support::{assert_same_tree, bytes, coffer_cmd, pack_files, stderr, walk, write, Env, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// coffer with this env's cache and no password in the environment: each test gives its own.
fn bare(env: &Env) -> Command {
    let mut c = coffer_cmd();
    c.env_remove("COFFER_PASSWORD").env("COFFER_CACHE_DIR", env.path("cache")).env_remove("COFFER_REPO");
    c.stdin(Stdio::null());
    c
}

fn run(c: &mut Command, args: &[&str]) -> Output {
    c.args(args).output().expect("run coffer")
}

/// A repository with one set of `src` (two files and a subdirectory).
fn repo_with_a_set(env: &Env) -> (String, PathBuf) {
    let src = env.path("src");
    write(&src.join("a.bin"), &bytes(1, 300_000));
    write(&src.join("sub/b.txt"), "some text\n".repeat(2000).as_bytes());
    env.init();
    let r = env.repo().to_str().unwrap().to_string();
    env.ok(&["backup", "--repo", &r, src.to_str().unwrap()]);
    (r, src)
}

/// Every file under the repository directory, with its bytes.
fn repository_files(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(repo)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What of `needles` appears in any object file of `repo`, as "file: needle #i".
fn found_in(repo: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut out = Vec::new();
    for (p, data) in repository_files(repo) {
        for (i, n) in needles.iter().enumerate() {
            if contains(&data, n) {
                out.push(format!("{}: needle #{i}", p.display()));
            }
        }
    }
    out
}

#[test]
fn no_content_and_no_name_is_stored_in_the_clear() {
    let name = "quokka-ledger-7c1e9b2f.odt";
    let raw = bytes(77, 1 << 20);
    // The name, and 64-byte windows spread over the random (so stored raw) megabyte.
    let mut needles: Vec<Vec<u8>> = vec![name.as_bytes().to_vec(), b"zz-secret-folder".to_vec()];
    needles.extend((0..16).map(|i| raw[i * 65_000..i * 65_000 + 64].to_vec()));
    for encrypted in [true, false] {
        let env = Env::new();
        let src = env.path("src");
        write(&src.join("zz-secret-folder").join(name), &raw);
        if encrypted {
            env.init();
        } else {
            env.init_clear();
        }
        let r = env.repo().to_str().unwrap().to_string();
        env.ok(&["backup", "--repo", &r, src.to_str().unwrap()]);
        let hits = found_in(&env.repo(), &needles);
        if encrypted {
            assert!(hits.is_empty(), "plaintext in an encrypted repository: {hits:?}");
            // The chunk-id key and the gear seed are not in the clear config either.
            let config = String::from_utf8_lossy(&std::fs::read(env.repo().join("config")).unwrap()).into_owned();
            assert!(config.contains("xchacha20poly1305"), "{config}");
            assert!(!config.contains("chunk_key") && !config.contains("\"seed\""), "secrets in config: {config}");
        } else {
            // The control: the same search finds them when nothing is encrypted.
            assert!(hits.iter().any(|h| h.ends_with("needle #0")), "the name is stored in some tree: {hits:?}");
            assert!(hits.iter().any(|h| h.ends_with("needle #5")), "the bytes are stored raw: {hits:?}");
        }
    }
}

#[test]
fn a_password_comes_from_the_environment_a_file_or_a_command() {
    let env = Env::new();
    let (r, _) = repo_with_a_set(&env);
    let file = env.path("pw");
    std::fs::write(&file, format!("{PASSWORD}\nsecond line ignored\n")).unwrap();
    let f = file.to_str().unwrap();
    let cat = format!("cat {f}");
    let ways: Vec<(&str, Output)> = vec![
        ("COFFER_PASSWORD", run(bare(&env).env("COFFER_PASSWORD", PASSWORD), &["sets", "--repo", &r])),
        ("--password-file", run(&mut bare(&env), &["sets", "--repo", &r, "--password-file", f])),
        ("COFFER_PASSWORD_FILE", run(bare(&env).env("COFFER_PASSWORD_FILE", f), &["sets", "--repo", &r])),
        ("--password-command", run(&mut bare(&env), &["sets", "--repo", &r, "--password-command", &cat])),
        ("COFFER_PASSWORD_COMMAND", run(bare(&env).env("COFFER_PASSWORD_COMMAND", &cat), &["sets", "--repo", &r])),
    ];
    for (how, o) in ways {
        assert_eq!(o.status.code(), Some(0), "{how}: {}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("src"), "{how}: the set is listed");
    }

    // Wrong: exit 5 with the documented message, whichever way it came.
    let wrong = env.path("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    for o in [
        run(bare(&env).env("COFFER_PASSWORD", "not it"), &["sets", "--repo", &r]),
        run(&mut bare(&env), &["verify", "--repo", &r, "--password-file", wrong.to_str().unwrap()]),
    ] {
        assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
        let msg = stderr(&o);
        assert!(msg.contains(&format!("wrong password, or no key in {r} opens with it")), "{msg}");
        assert!(!msg.contains("panicked"), "{msg}");
    }

    // None, and no terminal: the error names the three ways.
    let o = run(&mut bare(&env), &["sets", "--repo", &r]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    for way in ["COFFER_PASSWORD", "--password-file", "--password-command"] {
        assert!(msg.contains(way), "{way} not named: {msg}");
    }

    // A command that fails, an empty file, a missing file: named, not "wrong password".
    let o = run(&mut bare(&env), &["sets", "--repo", &r, "--password-command", "false"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("false"), "{}", stderr(&o));
    let empty = env.path("empty");
    std::fs::write(&empty, "").unwrap();
    let o = run(&mut bare(&env), &["sets", "--repo", &r, "--password-file", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    let o = run(&mut bare(&env), &["sets", "--repo", &r, "--password-file", "/nonexistent/pw"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/pw"), "{}", stderr(&o));
}

/// `key list --json`, parsed.
fn keys(env: &Env, r: &str, password: &str) -> Vec<serde_json::Value> {
    let o = run(bare(env).env("COFFER_PASSWORD", password), &["key", "list", "--repo", r, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).expect("key list --json is an array")
}

fn opens(env: &Env, r: &str, password: &str) -> Option<i32> {
    run(bare(env).env("COFFER_PASSWORD", password), &["sets", "--repo", r]).status.code()
}

#[test]
fn keys_are_added_changed_and_removed_and_the_data_stays() {
    let env = Env::new();
    let (r, src) = repo_with_a_set(&env);
    let first = keys(&env, &r, PASSWORD);
    assert_eq!(first.len(), 1);
    let k = &first[0];
    assert_eq!(k["current"], true);
    assert_eq!(k["id"].as_str().unwrap().len(), 16, "{k}");
    assert!(k["created"].as_str().unwrap().starts_with("20"), "{k}");
    assert!(!k["host"].as_str().unwrap().is_empty(), "{k}");
    let first_id = k["id"].as_str().unwrap().to_string();

    // key add: both passwords open it.
    let second = env.path("second");
    std::fs::write(&second, "second password\n").unwrap();
    env.ok(&["key", "add", "--repo", &r, "--new-password-file", second.to_str().unwrap()]);
    assert_eq!(opens(&env, &r, PASSWORD), Some(0));
    assert_eq!(opens(&env, &r, "second password"), Some(0));
    let two = keys(&env, &r, "second password");
    assert_eq!(two.len(), 2);
    let second_id = two.iter().find(|k| k["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);

    // key remove: never the one in use without --force; that password then fails.
    let o = env.run(&["key", "remove", "--repo", &r, &first_id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let o = run(bare(&env).env("COFFER_PASSWORD", "second password"), &["key", "remove", "--repo", &r, &first_id[..6]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(opens(&env, &r, PASSWORD), Some(5), "a removed key's password no longer opens");
    // Never the last one, even with --force.
    let o = run(
        bare(&env).env("COFFER_PASSWORD", "second password"),
        &["key", "remove", "--repo", &r, &second_id, "--force"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only key"), "{}", stderr(&o));

    // key passwd: the new one opens it, the old one fails.
    let third = env.path("third");
    std::fs::write(&third, "third password\n").unwrap();
    let o = run(
        bare(&env).env("COFFER_PASSWORD", "second password"),
        &["key", "passwd", "--repo", &r, "--new-password-file", third.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(opens(&env, &r, "second password"), Some(5));
    assert_eq!(opens(&env, &r, "third password"), Some(0));
    assert_eq!(keys(&env, &r, "third password").len(), 1);

    // The data is what it was.
    let out = env.path("out");
    let o = run(
        bare(&env).env("COFFER_PASSWORD", "third password"),
        &["restore", "--repo", &r, "latest", "--target", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&src, &out.join("src"));
    let o = run(bare(&env).env("COFFER_PASSWORD", "third password"), &["verify", "--repo", &r, "--read-data"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn an_unencrypted_repository_says_so() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("f"), b"data");
    let out = env.ok(&["init", "--repo", env.repo().to_str().unwrap(), "--encryption", "none"]);
    assert!(out.contains("UNENCRYPTED"), "{out}");
    let r = env.repo().to_str().unwrap().to_string();
    let stats: serde_json::Value = serde_json::from_str(&env.ok(&["stats", "--repo", &r, "--json"])).unwrap();
    assert_eq!(stats["encryption"], "none", "{stats}");
    let o = env.run(&["backup", "--repo", &r, src.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o).matches("UNENCRYPTED").count(), 1, "one warning: {}", stderr(&o));
    // No password is needed, and key commands say why they can't work.
    assert_eq!(run(&mut bare(&env), &["sets", "--repo", &r]).status.code(), Some(0));
    let o = run(&mut bare(&env), &["key", "list", "--repo", &r]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not encrypted"), "{}", stderr(&o));

    // The encrypted default says so too.
    let env = Env::new();
    let (r, _) = repo_with_a_set(&env);
    let stats: serde_json::Value = serde_json::from_str(&env.ok(&["stats", "--repo", &r, "--json"])).unwrap();
    assert_eq!(stats["encryption"], "xchacha20poly1305", "{stats}");
    let o = env.run(&["backup", "--repo", &r, env.path("src").to_str().unwrap()]);
    assert!(!stderr(&o).contains("UNENCRYPTED"), "{}", stderr(&o));
}

#[test]
fn a_backup_restore_dump_prune_round_trip_on_an_encrypted_repository() {
    let env = Env::new();
    let (r, src) = repo_with_a_set(&env);
    write(&src.join("c.bin"), &bytes(3, 2 << 20));
    std::fs::remove_file(src.join("a.bin")).unwrap();
    env.ok(&["backup", "--repo", &r, src.to_str().unwrap()]);
    let dumped = env.run(&["dump", "--repo", &r, "latest", "src/c.bin"]);
    assert!(dumped.status.success(), "{}", stderr(&dumped));
    assert_eq!(dumped.stdout, bytes(3, 2 << 20));
    env.ok(&["forget", "--repo", &r, "--keep-last", "1"]);
    let pruned: serde_json::Value = serde_json::from_str(&env.ok(&["prune", "--repo", &r, "--json"])).unwrap();
    assert!(pruned["bytes_freed"].as_u64().unwrap() > 0, "{pruned}");
    let (code, msg) = env.verify(&env.repo(), &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    let out = env.path("out");
    env.ok(&["restore", "--repo", &r, "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
}

fn flip(p: &Path, at: usize) {
    let mut data = std::fs::read(p).unwrap();
    let at = at.min(data.len() - 1);
    data[at] ^= 0x01;
    std::fs::write(p, &data).unwrap();
}

fn objects(repo: &Path, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(&repo.join(dir)).into_iter().filter(|p| p.is_file()).collect();
    v.sort();
    v
}

fn file_name(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

/// `verify` (with `extra`) after `damage`, on a fresh two-set repository: the exit code and
/// what it printed.
fn verify_after(extra: &[&str], damage: impl FnOnce(&Env, &Path) -> String) -> (Option<i32>, String, String) {
    let env = Env::new();
    let (r, src) = repo_with_a_set(&env);
    write(&src.join("more.bin"), &bytes(9, 500_000));
    env.ok(&["backup", "--repo", &r, src.to_str().unwrap()]);
    let named = damage(&env, &env.repo());
    let (code, msg) = env.verify(&env.repo(), extra);
    (code, msg, named)
}

#[test]
fn tampering_with_any_object_is_found_by_verify_and_named() {
    type Damage = fn(&Env, &Path) -> String;
    let cases: [(&str, &[&str], Damage); 6] = [
        ("a bit in a pack's ciphertext", &["--read-data"], |_, repo| {
            let p = pack_files(repo).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
            flip(&p, 5000);
            file_name(&p).to_string()
        }),
        ("a bit in an index object", &[], |_, repo| {
            let p = objects(repo, "index").remove(0);
            flip(&p, 60);
            file_name(&p).to_string()
        }),
        ("a bit in a manifest", &[], |_, repo| {
            let p = objects(repo, "sets").remove(0);
            flip(&p, 40);
            file_name(&p).to_string()
        }),
        ("a manifest replaced by another set's", &[], |_, repo| {
            let sets = objects(repo, "sets");
            std::fs::copy(&sets[1], &sets[0]).unwrap();
            file_name(&sets[0]).to_string()
        }),
        ("a pack renamed to another pack's name", &[], |_, repo| {
            let packs = pack_files(repo);
            assert!(packs.len() >= 2, "two backups, two packs");
            std::fs::copy(&packs[1], &packs[0]).unwrap();
            file_name(&packs[0]).to_string()
        }),
        ("a bit in a second key object", &[], |env, repo| {
            // With two keys, the damaged one is reported and the other still opens.
            let pw = env.path("pw2");
            std::fs::write(&pw, "another\n").unwrap();
            env.ok(&["key", "add", "--repo", repo.to_str().unwrap(), "--new-password-file", pw.to_str().unwrap()]);
            let current = crate::support::open_repo(repo).unlocked.unwrap().key_name;
            let other = objects(repo, "keys").into_iter().find(|p| file_name(p) != current).unwrap();
            flip(&other, 100);
            file_name(&other).to_string()
        }),
    ];
    for (case, extra, damage) in cases {
        let (code, msg, named) = verify_after(extra, damage);
        assert_eq!(code, Some(4), "{case}: {msg}");
        assert!(msg.contains(&named), "{case}: {named} is not named: {msg}");
        assert!(!msg.contains("panicked"), "{case}: {msg}");
    }
}

#[test]
fn a_damaged_only_key_is_named_not_called_a_wrong_password() {
    let env = Env::new();
    let (r, _) = repo_with_a_set(&env);
    let key = objects(&env.repo(), "keys").remove(0);
    flip(&key, 150);
    let o = env.run(&["verify", "--repo", &r]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(msg.contains(file_name(&key)) && msg.contains("checksum"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn a_changed_config_is_refused() {
    // The config is in the clear (it is read before any key); the master key holds its hash.
    let env = Env::new();
    let (r, _) = repo_with_a_set(&env);
    let cfg = env.repo().join("config");
    let good = std::fs::read(&cfg).unwrap();
    let text = String::from_utf8_lossy(&good).into_owned();
    let level = text.find("\"level\"").expect("the config records the zstd level");
    let mut changed = good.clone();
    // Another compression level, with a checksum that matches: only the key can tell.
    let digit = level + text[level..].find(|c: char| c.is_ascii_digit()).unwrap();
    changed[digit] = if changed[digit] == b'9' { b'8' } else { b'9' };
    let n = changed.len();
    let sum = blake3::hash(&changed[..n - 32]);
    changed[n - 32..].copy_from_slice(sum.as_bytes());
    std::fs::write(&cfg, &changed).unwrap();
    let o = env.run(&["sets", "--repo", &r]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("config") && stderr(&o).contains("changed since init"), "{}", stderr(&o));
}
