//! `init --from-repo` and `copy`: a second destination with its own password, sets copied
//! byte-identical, nothing sent twice, kills at any moment leave both repositories valid.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The destination's password (the source has the tests' usual one).
const DEST_PASSWORD: &str = "a different password for the second destination";

/// coffer with the source's password in `COFFER_FROM_PASSWORD` and the destination's in
/// `COFFER_PASSWORD`.
fn cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = coffer_cmd();
    c.args(args)
        .env("COFFER_CACHE_DIR", env.path("cache"))
        .env_remove("COFFER_REPO")
        .env("COFFER_FROM_PASSWORD", PASSWORD)
        .env("COFFER_PASSWORD", DEST_PASSWORD)
        .env_remove("COFFER_FROM_PASSWORD_FILE")
        .env_remove("COFFER_FROM_PASSWORD_COMMAND");
    c
}

fn run(env: &Env, args: &[&str]) -> Output {
    cmd(env, args).output().expect("run coffer")
}

fn ok(env: &Env, args: &[&str]) -> String {
    let o = run(env, args);
    assert!(o.status.success(), "coffer {args:?} failed ({:?}):\n{}", o.status, stderr(&o));
    String::from_utf8(o.stdout).expect("utf8")
}

fn copy_json(env: &Env, from: &Path, to: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["copy", "--from", from.to_str().unwrap(), "--to", to.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let text = ok(env, &args);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("copy --json printed non-JSON ({e}): {text}"))
}

/// `verify` of the destination (its password), exit code and stderr.
fn verify_dest(env: &Env, repo: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["verify", "--repo", repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(env, &args);
    (o.status.code(), stderr(&o))
}

/// The set ids of the destination `repo` (its password).
fn set_ids(env: &Env, repo: &Path) -> Vec<String> {
    ids_of(&ok(env, &["sets", "--repo", repo.to_str().unwrap(), "--json"]))
}

/// The set ids of the source `repo` (the tests' usual password).
fn source_set_ids(env: &Env, repo: &Path) -> Vec<String> {
    ids_of(&env.ok(&["sets", "--repo", repo.to_str().unwrap(), "--json"]))
}

fn ids_of(text: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    v.as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_copy_restores_byte_identical_sends_only_what_is_missing_and_keeps_set_ids() {
    let env = Env::new();
    let (r1, r2) = (env.repo(), env.path("second"));
    let src = env.path("src");
    mixed_source(&src, 1);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    let first_state = snapshot(&src);
    write(&src.join("docs/new.txt"), b"a document added on the second night");
    write(&src.join("big/a.bin"), &bytes(7, 3 * 1024 * 1024 + 11));
    env.backup_json(&[src.to_str().unwrap()]);

    let made = ok(&env, &["init", "--repo", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    assert!(made.contains("chunk ids"), "{made}");
    let first = copy_json(&env, &r1, &r2, &[]);
    assert_eq!(first["sets_copied"].as_array().unwrap().len(), 2, "{first}");
    assert!(first["chunks_copied"].as_u64().unwrap() > 0 && first["bytes_sent"].as_u64().unwrap() > 3_000_000);
    // Same ids in both: the manifests travelled as they are.
    assert_eq!(source_set_ids(&env, &r1), set_ids(&env, &r2));

    // The destination opens only with its own password.
    let wrong = env.run(&["sets", "--repo", r2.to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(5), "{}", stderr(&wrong));

    // Both sets restore byte-identical from the destination.
    let ids = set_ids(&env, &r2);
    let out0 = env.path("out0");
    ok(&env, &["restore", "--repo", r2.to_str().unwrap(), &ids[0], "--target", out0.to_str().unwrap()]);
    assert_eq!(snapshot(&out0.join("src")), first_state);
    let out1 = env.path("out1");
    ok(&env, &["restore", "--repo", r2.to_str().unwrap(), "latest", "--target", out1.to_str().unwrap()]);
    assert_same_tree(&src, &out1.join("src"));
    let (code, msg) = verify_dest(&env, &r2, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");

    // A second copy sends nothing.
    let again = copy_json(&env, &r1, &r2, &[]);
    assert_eq!(again["sets_copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["sets_present"], 2);
    assert_eq!(again["chunks_copied"], 0);
    assert_eq!(again["bytes_sent"], 0);

    // A third night changes one small file: its copy sends far less than the first.
    write(&src.join("docs/00/f0.bin"), &bytes(99, 4000));
    env.backup_json(&[src.to_str().unwrap()]);
    let night = copy_json(&env, &r1, &r2, &["--latest"]);
    assert_eq!(night["sets_copied"].as_array().unwrap().len(), 1, "{night}");
    assert!(night["bytes_sent"].as_u64().unwrap() * 20 < first["bytes_sent"].as_u64().unwrap(), "{night} vs {first}");
    let out2 = env.path("out2");
    ok(&env, &["restore", "--repo", r2.to_str().unwrap(), "latest", "--target", out2.to_str().unwrap()]);
    assert_same_tree(&src, &out2.join("src"));
    let (code, msg) = verify_dest(&env, &r2, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn copy_refuses_a_destination_not_made_from_the_source_and_a_wrong_source_password() {
    let env = Env::new();
    let (r1, other) = (env.repo(), env.path("other"));
    let src = env.path("src");
    mixed_source(&src, 2);
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    ok(&env, &["init", "--repo", other.to_str().unwrap()]);
    let o = run(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--from-repo") && stderr(&o).contains("chunk ids differ"), "{}", stderr(&o));
    assert!(set_ids(&env, &other).is_empty(), "nothing may be committed");

    let r2 = env.path("second");
    ok(&env, &["init", "--repo", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    let o = cmd(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", r2.to_str().unwrap()])
        .env("COFFER_FROM_PASSWORD", "not the password")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrong password"), "{}", stderr(&o));

    // No source password and no terminal: the error names the source's three ways.
    let o = cmd(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", r2.to_str().unwrap()])
        .env_remove("COFFER_FROM_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    for way in ["COFFER_FROM_PASSWORD", "--from-password-file", "--from-password-command"] {
        assert!(stderr(&o).contains(way), "{way}: {}", stderr(&o));
    }

    // The source password from a file works as well.
    let pw = env.path("from.pw");
    write(&pw, format!("{PASSWORD}\n").as_bytes());
    let o = cmd(
        &env,
        &[
            "copy",
            "--from",
            r1.to_str().unwrap(),
            "--to",
            r2.to_str().unwrap(),
            "--from-password-file",
            pw.to_str().unwrap(),
        ],
    )
    .env_remove("COFFER_FROM_PASSWORD")
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(source_set_ids(&env, &r1), set_ids(&env, &r2));
}

/// xorshift for the kill schedule.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn a_copy_killed_at_random_moments_leaves_both_repositories_valid_and_the_rerun_finishes_it() {
    let env = Env::new();
    let (r1, r2, fresh) = (env.repo(), env.path("second"), env.path("fresh"));
    let src = env.path("src");
    env.init();
    for night in 0..3u64 {
        for i in 0..6u64 {
            write(&src.join(format!("d{}/f{i}.bin", i % 2)), &bytes(night * 10 + i, 2 * 1024 * 1024 + i as usize));
        }
        env.backup_json(&[src.to_str().unwrap()]);
    }
    ok(&env, &["init", "--repo", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    ok(&env, &["init", "--repo", fresh.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    let full = copy_json(&env, &r1, &fresh, &[]);
    // Kill moments spread over as long as a whole copy took on this machine just now (a
    // loaded machine copies slower; fixed delays would then all fall before the first pack).
    let span_ms = ((full["duration_s"].as_f64().unwrap() * 1000.0) as u64).max(50);

    let mut rng = 0xc0c0_u64;
    for round in 0..12 {
        let mut child = cmd(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", r2.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The fault injected is the kill itself, at an arbitrary moment of the run.
        std::thread::sleep(std::time::Duration::from_millis(next(&mut rng) % span_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let (code, msg) = verify_dest(&env, &r2, &[]);
        assert_eq!(code, Some(0), "round {round}: destination after kill: {msg}");
        let (code, msg) = env.verify(&r1, &[]);
        assert_eq!(code, Some(0), "round {round}: source after kill: {msg}");
    }
    let rest = copy_json(&env, &r1, &r2, &[]);
    assert_eq!(source_set_ids(&env, &r1), set_ids(&env, &r2), "{rest}");
    // (That a rerun does not send again what arrived is shown without timing by
    // `a_copy_killed_after_its_first_pack_resends_nothing_that_arrived`.)
    let (code, msg) = verify_dest(&env, &r2, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    let (code, msg) = env.verify(&r1, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
    let out = env.path("out");
    ok(&env, &["restore", "--repo", r2.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&src, &out.join("src"));
}

/// Waits until `dir` holds a file somewhere below it (a pack made durable), polling the
/// state itself.
fn wait_for_a_file(dir: &Path, child: &mut std::process::Child) -> bool {
    loop {
        if walk(dir).iter().any(|p| p.is_file()) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_copy_killed_after_its_first_pack_resends_nothing_that_arrived() {
    let env = Env::new();
    let (r1, r2, fresh) = (env.repo(), env.path("second"), env.path("fresh"));
    let src = env.path("src");
    for i in 0..8u64 {
        write(&src.join(format!("f{i}.bin")), &bytes(i, 4 * 1024 * 1024));
    }
    env.init();
    env.backup_json(&[src.to_str().unwrap()]);
    ok(&env, &["init", "--repo", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    ok(&env, &["init", "--repo", fresh.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    let full = copy_json(&env, &r1, &fresh, &[]);
    let mut child = cmd(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", r2.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let killed_mid_run = wait_for_a_file(&r2.join("packs"), &mut child);
    let _ = child.kill();
    child.wait().unwrap();
    assert!(killed_mid_run, "the copy finished before a pack could be seen");
    let rest = copy_json(&env, &r1, &r2, &[]);
    assert_eq!(rest["sets_copied"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["bytes_sent"].as_u64().unwrap() < full["bytes_sent"].as_u64().unwrap(), "{rest} vs {full}");
    let (code, msg) = verify_dest(&env, &r2, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

/// A set definition with a directory component and `destinations` (TOML `[[destination]]`
/// bodies), keeping the newest `keep_last` sets.
fn definition(env: &Env, src: &Path, destinations: &[String], keep_last: u32) -> std::path::PathBuf {
    let mut text = format!(
        "name = \"nightly\"\n\n[retention]\nkeep_last = {keep_last}\n\n[[component]]\nname = \"files\"\nkind = \"directory\"\npath = {:?}\n",
        src.display().to_string()
    );
    for d in destinations {
        text.push_str(&format!("\n[[destination]]\n{d}\n"));
    }
    let p = env.path("nightly.toml");
    write(&p, text.as_bytes());
    p
}

#[test]
fn a_nightly_set_goes_to_every_destination_a_failed_one_is_named_and_caught_up_and_retention_applies_to_all() {
    let env = Env::new();
    let (primary, usb, offsite) = (env.repo(), env.path("usb"), env.path("offsite"));
    let src = env.path("src");
    mixed_source(&src, 3);
    env.init();
    // The USB destination has its own password (from a file); the offsite one, another one
    // from a command, and it is not there yet (an unmounted drive).
    let usb_pw = env.path("usb.pw");
    write(&usb_pw, format!("{DEST_PASSWORD}\n").as_bytes());
    let usb_def = format!("repo = {:?}\npassword_file = {:?}", usb.display().to_string(), usb_pw.display().to_string());
    let offsite_def = format!("repo = {:?}\npassword_command = \"echo offsite-secret\"", offsite.display().to_string());
    let def = definition(&env, &src, &[usb_def, offsite_def], 2);
    ok(&env, &["init", "--repo", usb.to_str().unwrap(), "--from-repo", primary.to_str().unwrap()]);

    let o = env.run(&["backup", "--repo", primary.to_str().unwrap(), "--set", def.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("destination {}", offsite.display())), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("backup --json");
    let failed = report["destinations_failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["repo"], offsite.display().to_string());
    // The primary set is committed and already on the USB destination.
    let first = report["set"].as_str().unwrap().to_string();
    assert_eq!(source_set_ids(&env, &primary), vec![first.clone()]);
    assert_eq!(set_ids(&env, &usb), vec![first.clone()]);

    // The drive is back: the next night catches it up with both sets.
    let o = cmd(&env, &["init", "--repo", offsite.to_str().unwrap(), "--from-repo", primary.to_str().unwrap()])
        .env("COFFER_PASSWORD", "offsite-secret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    write(&src.join("docs/night2.txt"), b"the second night");
    let second = env.backup_json(&["--set", def.to_str().unwrap()]);
    assert!(second["destinations_failed"].as_array().unwrap().is_empty(), "{second}");
    let all = source_set_ids(&env, &primary);
    assert_eq!(all.len(), 2);
    assert_eq!(set_ids(&env, &usb), all);
    let offsite_sets = |env: &Env| {
        let o = cmd(env, &["sets", "--repo", offsite.to_str().unwrap(), "--json"])
            .env("COFFER_PASSWORD", "offsite-secret")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        ids_of(&String::from_utf8(o.stdout).unwrap())
    };
    assert_eq!(offsite_sets(&env), all);
    let out = env.path("from-offsite");
    let o = cmd(&env, &["restore", "--repo", offsite.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()])
        .env("COFFER_PASSWORD", "offsite-secret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_tree(&src, &out.join("files"));

    // A third night, then the retention policy (keep 2) on the primary and both destinations.
    write(&src.join("docs/night3.txt"), b"the third night");
    env.backup_json(&["--set", def.to_str().unwrap()]);
    let text =
        env.ok(&["forget", "--repo", primary.to_str().unwrap(), "--set", def.to_str().unwrap(), "--prune", "--json"]);
    let forgot: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(forgot["forget"]["removed"], 1, "{forgot}");
    let dests = forgot["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 2, "{forgot}");
    assert!(dests.iter().all(|d| d["forget"]["removed"] == 1), "{forgot}");
    let kept = source_set_ids(&env, &primary);
    assert_eq!(kept.len(), 2);
    assert_eq!(set_ids(&env, &usb), kept);
    assert_eq!(offsite_sets(&env), kept);
    // The next night does not bring the forgotten set back to the destinations.
    write(&src.join("docs/night4.txt"), b"the fourth night");
    env.backup_json(&["--set", def.to_str().unwrap()]);
    assert_eq!(set_ids(&env, &usb).len(), 3);
    assert!(!set_ids(&env, &usb).contains(&all[0]), "a forgotten set came back");
    let (code, msg) = verify_dest(&env, &usb, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}

#[test]
fn a_damaged_blob_in_the_source_stops_the_copy_naming_it_and_commits_nothing() {
    let env = Env::new();
    let (r1, r2) = (env.repo(), env.path("second"));
    let src = env.path("src");
    write(&src.join("one.bin"), &bytes(11, 6 * 1024 * 1024));
    // In the clear, so the flipped byte lands in a chunk's bytes, not in a seal.
    env.init_clear();
    env.backup_json(&[src.to_str().unwrap()]);
    ok(&env, &["init", "--repo", r2.to_str().unwrap(), "--from-repo", r1.to_str().unwrap()]);
    let pack = pack_files(&r1).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    std::fs::write(&pack, &data).unwrap();
    let o = run(&env, &["copy", "--from", r1.to_str().unwrap(), "--to", r2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not match its id") && stderr(&o).contains("chunk"), "{}", stderr(&o));
    assert!(set_ids(&env, &r2).is_empty(), "a set was committed from damaged data");
    let (code, msg) = verify_dest(&env, &r2, &["--read-data"]);
    assert_eq!(code, Some(0), "{msg}");
}
