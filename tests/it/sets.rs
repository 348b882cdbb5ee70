//! Restore-point sets against the real thing: a PostgreSQL 15 server with Alfresco's
//! `alf_content_url` table, real `pg_dump` and `pg_restore`, a generated contentstore and a
//! Solr snapshot directory.

use crate::support::pg::{create_alf_content_url, insert_content_url, PgCluster};
use crate::support::*;
use std::path::{Path, PathBuf};

/// An Alfresco-like dir.root: contentstore files referenced by alf_content_url rows.
pub(crate) struct Alfresco {
    pub(crate) root: PathBuf,
    next: u64,
}

impl Alfresco {
    pub(crate) fn new(root: &Path) -> Alfresco {
        let snap = root.join("solr4Backup/alfresco/snapshot.20261121020000000");
        write(&snap.join("segments_3"), &bytes(7, 4000));
        write(&snap.join("_0.cfs"), &bytes(8, 60_000));
        Alfresco { root: root.to_path_buf(), next: 1 }
    }

    /// Adds a document: a file under contentstore/ and its row.
    pub(crate) fn add_doc(&mut self, pg: &PgCluster, orphan: Option<i64>) -> (String, PathBuf) {
        let n = self.next;
        self.next += 1;
        let rel =
            format!("2026/11/{}/{}/{}/{:08x}-0000-4000-8000-{:012x}.bin", 20 + n % 3, n % 24, n % 60, n, n * 7919);
        let size = 1000 + (n as usize * 7717) % 300_000;
        write(&self.root.join("contentstore").join(&rel), &bytes(n, size));
        let url = format!("store://{rel}");
        insert_content_url(pg, "alfresco", n as i64, &url, size as u64, orphan);
        (url, self.root.join("contentstore").join(rel))
    }

    pub(crate) fn set_file(&self, dump: &[String], dir: &Path) -> PathBuf {
        let q = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        let text = format!(
            r#"name = "alfresco"
tags = ["nightly"]

[[component]]
name = "solr"
kind = "solr"
backup_dir = "{root}/solr4Backup/alfresco"
wait_secs = 0

[[component]]
name = "db"
kind = "command"
command = [{dump}]
file = "alfresco.dump"

[[component]]
name = "contentstore"
kind = "directory"
path = "{root}/contentstore"
"#,
            root = self.root.display(),
            dump = q(dump)
        );
        let p = dir.join("alfresco.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

pub(crate) fn alfresco_db(pg: &PgCluster) {
    pg.createdb("alfresco");
    create_alf_content_url(pg, "alfresco");
    pg.psql(
        "alfresco",
        "CREATE TABLE alf_node (id INT8 PRIMARY KEY, uuid VARCHAR(36) NOT NULL, type_qname_id INT8, audit_modified VARCHAR(30));
         INSERT INTO alf_node SELECT g, md5(g::text), g % 7, '2026-11-21T10:00:00.000Z' FROM generate_series(1, 5000) g;",
    );
}

fn sets_in(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("sets")).unwrap().count()
}

#[test]
fn nightly_set_backup_restore_and_consistency_with_real_postgres() {
    let env = Env::new();
    let pg = PgCluster::start();
    alfresco_db(&pg);
    let mut alf = Alfresco::new(&env.path("alf_data"));
    let mut docs = Vec::new();
    for i in 0..25 {
        docs.push(alf.add_doc(&pg, if i == 3 { Some(1_763_700_000_000) } else { None }));
    }
    let set_file = alf.set_file(&pg.dump_command("alfresco", &["-Fc", "-Z0"]), env.dir.path());
    env.init();
    let repo = env.repo();
    let sf = set_file.to_str().unwrap();

    let night1 = env.backup_json(&["--set", sf]);
    assert_eq!(night1["consistency"]["ok"].as_bool(), Some(true), "{night1}");
    assert_eq!(night1["consistency"]["report"]["rows"].as_u64(), Some(25), "{night1}");
    assert_eq!(night1["consistency"]["report"]["orphaned_rows"].as_u64(), Some(1), "{night1}");
    let comps: Vec<&str> =
        night1["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(comps, ["solr", "db", "contentstore"]);

    // The next day: new documents, an updated row, more nodes.
    for _ in 0..5 {
        alf.add_doc(&pg, None);
    }
    pg.psql("alfresco", "UPDATE alf_content_url SET orphan_time = 1763800000000 WHERE id = 2; INSERT INTO alf_node SELECT g, md5(g::text), 1, 'x' FROM generate_series(5001, 5200) g;");
    let night2 = env.backup_json(&["--set", sf]);
    assert_eq!(night2["consistency"]["ok"].as_bool(), Some(true), "{night2}");
    assert_eq!(night2["consistency"]["report"]["rows"].as_u64(), Some(30));
    // Incremental: the unchanged dump pages and old documents were not stored again.
    assert!(night2["bytes_stored"].as_u64().unwrap() < night1["bytes_stored"].as_u64().unwrap() / 2, "{night2}");

    // The manifest records the capture order, and verify accepts it.
    let sets: serde_json::Value =
        serde_json::from_str(&env.ok(&["sets", "--repo", repo.to_str().unwrap(), "--json"])).unwrap();
    let latest = &sets[1];
    let db = &latest["components"][1];
    assert_eq!(db["kind"].as_str(), Some("command"));
    assert!(latest["components"][0]["finished"].as_str().unwrap() <= db["started"].as_str().unwrap());
    env.ok(&["verify", "--repo", repo.to_str().unwrap(), "--read-data"]);

    // Restore the whole set, then the dump into a fresh database through --pipe.
    let out = env.path("restored");
    env.ok(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--target", out.to_str().unwrap()]);
    assert_same_tree(&alf.root.join("contentstore"), &out.join("contentstore"));
    assert_same_tree(&alf.root.join("solr4Backup/alfresco"), &out.join("solr"));
    assert!(out.join("db/alfresco.dump").metadata().unwrap().len() > 10_000);
    pg.createdb("restored");
    let restore_cmd = pg.restore_command("restored", &[]).join(" ");
    let o =
        env.run(&["restore", "--repo", repo.to_str().unwrap(), "latest", "--component", "db", "--pipe", &restore_cmd]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sync.mode=OFF") && stderr(&o).contains("same set"),
        "checklist missing: {}",
        stderr(&o)
    );
    let tables = pg.tables("alfresco");
    assert_eq!(tables, pg.tables("restored"));
    assert!(tables.contains(&"alf_content_url".to_string()) && tables.contains(&"alf_node".to_string()));
    for t in &tables {
        assert_eq!(pg.table_dump("alfresco", t), pg.table_dump("restored", t), "table {t} differs after restore");
    }

    // Damage the source: one file removed, one with the wrong size. The next set is committed
    // but flagged, and verify --consistency names both.
    let (gone_url, gone_path) = &docs[5];
    std::fs::remove_file(gone_path).unwrap();
    let (short_url, short_path) = &docs[7];
    std::fs::write(short_path, b"truncated").unwrap();
    let o = env.run(&["backup", "--repo", repo.to_str().unwrap(), "--set", sf]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let o = env.run(&["verify", "--repo", repo.to_str().unwrap(), "--consistency", "latest", "--json"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["missing"], serde_json::json!([gone_url]), "{v}");
    assert_eq!(v["report"]["size_mismatch"][0]["url"].as_str(), Some(short_url.as_str()), "{v}");
    assert_eq!(v["report"]["size_mismatch"][0]["actual"].as_u64(), Some(9), "{v}");
    // The earlier, good set is still consistent.
    let first = sets[0]["id"].as_str().unwrap();
    env.ok(&["verify", "--repo", repo.to_str().unwrap(), "--consistency", &first[..12]]);
}

#[test]
fn plain_sql_dumps_are_checked_too() {
    let env = Env::new();
    let pg = PgCluster::start();
    alfresco_db(&pg);
    let mut alf = Alfresco::new(&env.path("alf_data"));
    for _ in 0..6 {
        alf.add_doc(&pg, None);
    }
    let set_file = alf.set_file(&pg.dump_command("alfresco", &["-Fp"]), env.dir.path());
    env.init();
    let r = env.backup_json(&["--set", set_file.to_str().unwrap()]);
    assert_eq!(r["consistency"]["ok"].as_bool(), Some(true), "{r}");
    assert_eq!(r["consistency"]["report"]["rows"].as_u64(), Some(6), "{r}");
}

#[test]
fn a_failing_dump_command_commits_no_set_and_says_why() {
    let env = Env::new();
    let pg = PgCluster::start();
    let alf = Alfresco::new(&env.path("alf_data"));
    write(&alf.root.join("contentstore/2026/1/1/0/0/a.bin"), b"x");
    let set_file = alf.set_file(&pg.dump_command("no_such_database", &["-Fc", "-Z0"]), env.dir.path());
    env.init();
    let o = env.run(&["backup", "--repo", env.repo().to_str().unwrap(), "--set", set_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let msg = stderr(&o);
    assert!(
        msg.contains("component \"db\"")
            && msg.contains("pg_dump")
            && msg.contains("no_such_database")
            && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(sets_in(&env.repo()), 0, "a failed set was committed");
    // The repository is fine for the next run.
    let ok = env.backup_json(&[alf.root.join("contentstore").to_str().unwrap()]);
    assert_eq!(ok["files"]["new"].as_u64(), Some(1));
}

#[test]
fn a_solr_snapshot_still_being_written_is_not_archived() {
    let env = Env::new();
    let alf = Alfresco::new(&env.path("alf_data"));
    write(&alf.root.join("contentstore/2026/1/1/0/0/a.bin"), b"x");
    // The nightly Solr backup job is writing a newer snapshot: no segments file yet, a lock.
    let busy = alf.root.join("solr4Backup/alfresco/snapshot.20261122020000000");
    write(&busy.join("_1.cfs"), &bytes(9, 1000));
    write(&busy.join("write.lock"), b"");
    let dump = vec!["echo".to_string(), "-- empty dump".to_string()];
    let set_file = alf.set_file(&dump, env.dir.path());
    env.init();
    let o = env.run(&["backup", "--repo", env.repo().to_str().unwrap(), "--set", set_file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("snapshot.20261122020000000") && stderr(&o).contains("Solr backup job"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sets_in(&env.repo()), 0);
}

#[test]
fn compressed_dumps_warn_and_strict_refuses_a_same_disk_repository() {
    let env = Env::new();
    let alf = Alfresco::new(&env.path("alf_data"));
    write(&alf.root.join("contentstore/2026/1/1/0/0/a.bin"), b"x");
    write(&env.path("dump.sql"), "-- PostgreSQL database dump\n".repeat(1000).as_bytes());
    let dump = vec!["gzip".to_string(), "-c".to_string(), env.path("dump.sql").display().to_string()];
    let set_file = alf.set_file(&dump, env.dir.path());
    env.init();
    let sf = set_file.to_str().unwrap();
    let o = env.run(&["backup", "--repo", env.repo().to_str().unwrap(), "--set", sf]);
    // No alf_content_url in this dump: the consistency check cannot pass, but the set is kept.
    assert!(stderr(&o).contains("gzip-compressed") && stderr(&o).contains("-Z0"), "{}", stderr(&o));
    assert!(stderr(&o).contains("same filesystem"), "{}", stderr(&o));
    assert_eq!(sets_in(&env.repo()), 1);
    let o = env.run(&["backup", "--repo", env.repo().to_str().unwrap(), "--set", sf, "--strict"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--strict"), "{}", stderr(&o));
    assert_eq!(sets_in(&env.repo()), 1);
    // init-set writes a template that backs up in the documented order.
    let t = env.ok(&["init-set", "--dir-root", "/srv/alf_data"]);
    let solr = t.find("kind = \"solr\"").unwrap();
    let db = t.find("kind = \"command\"").unwrap();
    let cs = t.find("kind = \"directory\"").unwrap();
    assert!(solr < db && db < cs, "{t}");
}
