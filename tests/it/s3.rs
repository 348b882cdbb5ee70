//! Repositories in S3 buckets, against real Garage servers: the functional suite on one node,
//! failures of credentials, buckets and endpoints, and a three-node cluster losing nodes
//! during backups and restores.

use crate::support::garage::Garage;
use crate::support::*;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// A scratch area whose commands talk to a Garage server.
struct S3Env {
    env: Env,
    garage: Garage,
}

impl S3Env {
    fn new(garage: Garage) -> S3Env {
        S3Env { env: Env::new(), garage }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = coffer_cmd();
        c.args(args).env("COFFER_CACHE_DIR", self.env.path("cache")).env_remove("COFFER_REPO");
        // A copy's source has the same password as every repository here.
        c.env("COFFER_FROM_PASSWORD", PASSWORD);
        self.garage.env(&mut c);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run coffer")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "coffer {args:?} failed ({:?}):\n{}\n{}", o.status, out(&o), stderr(&o));
        out(&o)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("coffer {args:?} printed non-JSON ({e}): {text}"))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn coffer")
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn finish(mut c: Child) -> (std::process::ExitStatus, String, String) {
    let (mut so, mut se) = (String::new(), String::new());
    c.stdout.take().unwrap().read_to_string(&mut so).unwrap();
    c.stderr.take().unwrap().read_to_string(&mut se).unwrap();
    (c.wait().unwrap(), so, se)
}

fn sets_of(s: &S3Env, url: &str) -> Vec<serde_json::Value> {
    s.json(&["sets", "--repo", url, "--json"]).as_array().expect("sets array").clone()
}

fn packs_in(garage: &Garage, prefix: &str) -> usize {
    use coffer::storage::{Kind, Storage};
    garage.storage(0, prefix).list(Kind::Packs).expect("list packs").len()
}

#[test]
fn s3_round_trip_backup_restore_mount_dump_prune_verify_and_repair() {
    let s = S3Env::new(Garage::single());
    let url = s.garage.url(0, "prod/alfresco");
    let src = s.env.path("src");
    mixed_source(&src, 1);
    let created = s.ok(&["init", "--repo", &url]);
    assert!(created.contains(&url), "{created}");
    // A second init on the same prefix is refused, naming it.
    let again = s.run(&["init", "--repo", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already a coffer repository") && stderr(&again).contains(&url),
        "{}",
        stderr(&again)
    );

    let first = s.json(&["backup", "--repo", &url, src.to_str().unwrap(), "--json"]);
    assert!(first["bytes_stored"].as_u64().unwrap() > 5 * 1024 * 1024, "{first}");
    write(&src.join("docs/new.txt"), b"a new document");
    write(&src.join("big/a.bin"), &bytes(9, 5 * 1024 * 1024 + 17));
    let second = s.json(&["backup", "--repo", &url, src.to_str().unwrap(), "--json"]);
    assert!(second["bytes_stored"].as_u64().unwrap() < first["bytes_stored"].as_u64().unwrap(), "{second}");
    assert_eq!(sets_of(&s, &url).len(), 2);
    let listing = s.ok(&["ls", "--repo", &url, "latest"]);
    assert!(listing.contains("docs/new.txt"), "{listing}");

    // Restore from the bucket, byte-identical.
    let target = s.env.path("restored");
    s.ok(&["restore", "--repo", &url, "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));

    // verify, whole and by subsets, reads the packs back from the bucket.
    s.ok(&["verify", "--repo", &url, "--read-data"]);
    for n in 1..=2 {
        s.ok(&["verify", "--repo", &url, "--read-data-subset", &format!("{n}/2")]);
    }

    // dump as tar, extracted by GNU tar.
    let tar_out = s.env.path("untarred");
    std::fs::create_dir_all(&tar_out).unwrap();
    let mut dump = s.cmd(&["dump", "--repo", &url, "latest"]).stdout(Stdio::piped()).spawn().unwrap();
    let tar = Command::new("tar")
        .args(["-x", "-C", tar_out.to_str().unwrap()])
        .stdin(dump.stdout.take().unwrap())
        .status()
        .expect("run GNU tar");
    assert!(dump.wait().unwrap().success() && tar.success());
    assert_same_tree(&src, &tar_out.join("src"));

    // mount through FUSE and read a file out of the bucket.
    let mp = s.env.path("mnt");
    std::fs::create_dir_all(&mp).unwrap();
    let mut mount = s.spawn(&["mount", "--repo", &url, mp.to_str().unwrap()]);
    let mounted = mp.join("sets/default/latest/src/big/a.bin");
    loop {
        if mounted.exists() {
            break;
        }
        if let Some(st) = mount.try_wait().unwrap() {
            let mut err = String::new();
            mount.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("coffer mount exited ({st}) before the mount was live: {err}");
        }
        std::thread::yield_now();
    }
    let read = std::fs::read(&mounted);
    let unmounted = Command::new("fusermount3").arg("-u").arg(&mp).status().unwrap();
    let (st, _, err) = finish(mount);
    assert_eq!(read.unwrap(), std::fs::read(src.join("big/a.bin")).unwrap());
    assert!(unmounted.success() && st.success(), "mount: {st} {err}");

    // forget + prune frees the first set's old big file; the rest stays restorable.
    let before = packs_in(&s.garage, "prod/alfresco");
    s.ok(&["forget", "--repo", &url, "--keep-last", "1", "--prune"]);
    assert_eq!(sets_of(&s, &url).len(), 1);
    s.ok(&["verify", "--repo", &url, "--read-data"]);
    assert!(packs_in(&s.garage, "prod/alfresco") <= before);

    // repair index rebuilds the catalog from the packs in the bucket.
    std::fs::remove_dir_all(s.env.path("cache")).unwrap();
    s.ok(&["repair", "index", "--repo", &url]);
    let again = s.env.path("again");
    s.ok(&["restore", "--repo", &url, "latest", "--target", again.to_str().unwrap()]);
    assert_same_tree(&src, &again.join("src"));

    // A second repository under another prefix of the same bucket is separate.
    let other = s.garage.url(0, "prod/other");
    s.ok(&["init", "--repo", &other]);
    assert!(sets_of(&s, &other).is_empty());
}

#[test]
fn s3_set_with_a_real_postgres_dump_restores_and_is_consistent() {
    use crate::support::pg::PgCluster;
    let s = S3Env::new(Garage::single());
    let pg = PgCluster::start();
    crate::sets::alfresco_db(&pg);
    let mut alf = crate::sets::Alfresco::new(&s.env.path("alf_data"));
    for _ in 0..12 {
        alf.add_doc(&pg, None);
    }
    let set_file = alf.set_file(&pg.dump_command("alfresco", &["-Fc", "-Z0"]), s.env.dir.path());
    let url = s.garage.url(0, "alfresco");
    s.ok(&["init", "--repo", &url]);
    let night = s.json(&["backup", "--repo", &url, "--set", set_file.to_str().unwrap(), "--json"]);
    assert_eq!(night["consistency"]["ok"].as_bool(), Some(true), "{night}");
    // No same-filesystem warning: the repository is not on the sources' disk.
    let o = s.run(&["backup", "--repo", &url, "--set", set_file.to_str().unwrap()]);
    assert!(o.status.success() && !stderr(&o).contains("same filesystem"), "{}", stderr(&o));
    s.ok(&["verify", "--repo", &url, "--consistency", "latest"]);

    let target = s.env.path("restored");
    s.ok(&["restore", "--repo", &url, "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&alf.root.join("contentstore"), &target.join("contentstore"));
    pg.createdb("restored");
    let restore = pg.restore_command("restored", &[]).join(" ");
    let o = s.run(&["restore", "--repo", &url, "latest", "--component", "db", "--pipe", &restore]);
    assert!(o.status.success(), "{}", stderr(&o));
    for t in pg.tables("alfresco") {
        assert_eq!(pg.table_dump("alfresco", &t), pg.table_dump("restored", &t), "table {t}");
    }
}

#[test]
fn s3_failures_name_the_endpoint_and_commit_nothing() {
    let mut s = S3Env::new(Garage::single());
    let url = s.garage.url(0, "r");
    let src = s.env.path("src");
    mixed_source(&src, 2);
    s.ok(&["init", "--repo", &url]);
    let endpoint = format!("http://127.0.0.1:{}", s.garage.nodes[0].s3_port);

    // Wrong secret: the server refuses; the message says so and names the endpoint.
    let o = s.cmd(&["sets", "--repo", &url]).env("AWS_SECRET_ACCESS_KEY", "0".repeat(64)).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("access denied") && stderr(&o).contains(&endpoint), "{}", stderr(&o));

    // A bucket that does not exist.
    let missing = url.replace("coffer-test", "no-such-bucket");
    for args in [vec!["init", "--repo", &missing], vec!["sets", "--repo", &missing]] {
        let o = s.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no-such-bucket"), "{args:?}: {}", stderr(&o));
    }

    // A prefix with no repository.
    let o = s.run(&["sets", "--repo", &s.garage.url(0, "nothing-here")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a coffer repository") && stderr(&o).contains("no config"), "{}", stderr(&o));

    // An endpoint nobody answers: bounded retries, the time they took, the endpoint.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead_url = format!("s3:http://127.0.0.1:{dead}/coffer-test/r");
    let o = s.cmd(&["sets", "--repo", &dead_url]).env("COFFER_S3_RETRIES", "2").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("127.0.0.1:{dead}")) && e.contains("gave up after 2 retries"), "{e}");

    // Garage stopped before a backup: a clear error, no set in the bucket afterwards.
    s.garage.kill_all();
    let o = s.cmd(&["backup", "--repo", &url, src.to_str().unwrap()]).env("COFFER_S3_RETRIES", "1").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&endpoint), "{}", stderr(&o));
    s.garage.restart_all();
    assert!(sets_of(&s, &url).is_empty());
}

/// Starts a backup of a source large enough to span several packs, and returns once its
/// first pack is in the bucket (the run is then mid-way: packs are still being made).
fn backup_under_way(s: &S3Env, url: &str, prefix: &str, src: &Path, retries: &str) -> Child {
    let before = packs_in(&s.garage, prefix);
    let mut child = s
        .cmd(&["backup", "--repo", url, src.to_str().unwrap(), "--json"])
        .env("COFFER_S3_RETRIES", retries)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while packs_in(&s.garage, prefix) == before {
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before its first pack was listed");
    }
    assert!(child.try_wait().unwrap().is_none(), "the backup ended before a node could be stopped");
    child
}

fn big_source(root: &Path, seed: u64) {
    for i in 0..12 {
        write(&root.join(format!("store/{i:02}.bin")), &bytes(seed * 1000 + i, 8 * 1024 * 1024));
    }
}

/// A three-node cluster with a repository under prefix `c`, and a backup of a 96 MiB source
/// under way (see [`backup_under_way`]): the environment, the repository, the source, the run.
fn cluster_backup_under_way(seed: u64, retries: &str) -> (S3Env, String, std::path::PathBuf, Child) {
    let s = S3Env::new(Garage::cluster());
    let url = s.garage.url(0, "c");
    let src = s.env.path("src");
    big_source(&src, seed);
    s.ok(&["init", "--repo", &url]);
    let backup = backup_under_way(&s, &url, "c", &src, retries);
    (s, url, src, backup)
}

#[test]
fn three_node_cluster_loses_a_node_mid_backup_and_restarts_one_mid_restore() {
    let (mut s, url, src, backup) = cluster_backup_under_way(3, "6");
    s.garage.kill_node(2);
    let (st, so, se) = finish(backup);
    assert!(st.success(), "backup with a node down: {st}\n{so}\n{se}");
    let target = s.env.path("restored");
    s.ok(&["restore", "--repo", &url, "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));

    // Back to three nodes; then one of the others is restarted while a restore reads.
    s.garage.start_node(2);
    let target2 = s.env.path("restored2");
    let mut restore = s.spawn(&["restore", "--repo", &url, "latest", "--target", target2.to_str().unwrap()]);
    // Under way once it has started writing files.
    while !target2.join("src/store").exists() {
        assert!(restore.try_wait().unwrap().is_none(), "the restore ended before it wrote a file");
    }
    s.garage.kill_node(1);
    s.garage.start_node(1);
    let (st, so, se) = finish(restore);
    assert!(st.success(), "restore across a node restart: {st}\n{so}\n{se}");
    assert_same_tree(&src, &target2.join("src"));
}

#[test]
fn three_node_cluster_all_down_mid_backup_fails_clearly_and_the_rerun_reuses_uploads() {
    let (mut s, url, src, backup) = cluster_backup_under_way(4, "2");
    s.garage.kill_all();
    let (st, _, se) = finish(backup);
    assert_eq!(st.code(), Some(1), "{se}");
    assert!(se.contains(&format!("127.0.0.1:{}", s.garage.nodes[0].s3_port)), "{se}");
    assert!(se.contains("gave up after 2 retries"), "{se}");

    s.garage.restart_all();
    assert!(sets_of(&s, &url).is_empty(), "a set was committed by the failed run");
    let uploaded = packs_in(&s.garage, "c");
    assert!(uploaded > 0);
    let rerun = s.json(&["backup", "--repo", &url, src.to_str().unwrap(), "--json"]);
    let total = 12 * 8 * 1024 * 1024u64;
    assert!(rerun["bytes_stored"].as_u64().unwrap() < total, "nothing was reused: {rerun}");
    let target = s.env.path("restored");
    s.ok(&["restore", "--repo", &url, "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));
    s.ok(&["verify", "--repo", &url, "--read-data"]);
}

#[test]
fn a_set_definition_names_the_credentials_profile_that_opens_the_bucket() {
    let s = S3Env::new(Garage::single());
    let url = s.garage.url(0, "profiled");
    s.ok(&["init", "--repo", &url]);
    let src = s.env.path("src");
    mixed_source(&src, 5);
    let creds = s.env.path("aws-credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = GKwrong\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n", s.garage.key_id, s.garage.secret),
    )
    .unwrap();
    let def = s.env.path("set.toml");
    std::fs::write(
        &def,
        format!("name = \"docs\"\ns3_profile = \"backup\"\n\n[[component]]\nname = \"src\"\nkind = \"directory\"\npath = \"{}\"\n", src.display()),
    )
    .unwrap();
    let o = s
        .cmd(&["backup", "--repo", &url, "--set", def.to_str().unwrap()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sets_of(&s, &url).len(), 1);
    // Without the set's profile the default one is used, and the server refuses it.
    let o = s
        .cmd(&["sets", "--repo", &url])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("access denied"), "{}", stderr(&o));
}

#[test]
fn s3_copies_local_to_bucket_and_back_and_a_bucket_destination_is_offsite() {
    let s = S3Env::new(Garage::single());
    let (local, back) = (s.env.repo(), s.env.path("back"));
    let url = s.garage.url(0, "offsite/alfresco");
    let src = s.env.path("src");
    mixed_source(&src, 5);
    s.ok(&["init", "--repo", local.to_str().unwrap()]);
    s.ok(&["init", "--repo", &url, "--from-repo", local.to_str().unwrap()]);
    let def = s.env.path("nightly.toml");
    write(
        &def,
        format!(
            "name = \"nightly\"\n\n[[component]]\nname = \"files\"\nkind = \"directory\"\npath = {:?}\n\n[[destination]]\nrepo = {url:?}\n",
            src.display().to_string()
        )
        .as_bytes(),
    );
    // The nightly job: the set goes to the local repository, then to the bucket; the bucket
    // is off this machine's disks, so no same-filesystem warning.
    let o = s.run(&["backup", "--repo", local.to_str().unwrap(), "--set", def.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("same filesystem"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("destination {url}: 1 set(s) copied")), "{}", stderr(&o));
    write(&src.join("docs/new.txt"), b"night two");
    s.ok(&["backup", "--repo", local.to_str().unwrap(), src.to_str().unwrap(), "--name", "nightly"]);
    // local -> S3 by hand: only the new set, only its new chunks.
    let copy = |from: &str, to: &str| -> serde_json::Value {
        let o = s.run(&["copy", "--from", from, "--to", to, "--json"]);
        assert!(o.status.success(), "copy {from} -> {to}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).expect("copy --json")
    };
    let second = copy(local.to_str().unwrap(), &url);
    assert_eq!(second["sets_copied"].as_array().unwrap().len(), 1, "{second}");
    assert!(second["bytes_sent"].as_u64().unwrap() < 1_000_000, "{second}");
    assert_eq!(copy(local.to_str().unwrap(), &url)["bytes_sent"], 0);
    let target = s.env.path("from-bucket");
    s.ok(&["restore", "--repo", &url, "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));

    // S3 -> local: a third repository made from the bucket's.
    s.ok(&["init", "--repo", back.to_str().unwrap(), "--from-repo", &url]);
    let back_copy = copy(&url, back.to_str().unwrap());
    assert_eq!(back_copy["sets_copied"].as_array().unwrap().len(), 2, "{back_copy}");
    let target = s.env.path("from-back");
    s.ok(&["restore", "--repo", back.to_str().unwrap(), "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &target.join("src"));
    s.ok(&["verify", "--repo", back.to_str().unwrap(), "--read-data"]);
    s.ok(&["verify", "--repo", &url, "--read-data"]);
}
