//! Real PostgreSQL 15: the test cluster helper works, and `consistency::rows_from_dump_file`
//! reads back exactly the rows that were inserted, from pg_dump's plain, custom, tar and
//! directory formats and from compressed plain and custom dumps.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::pg::{self, PgCluster};
use coffer::consistency::{self, ConsistencySettings, ContentUrlRow, DumpFormat};
use coffer::ErrorKind;

fn row(id: i64, url: &str, size: u64, orphan: Option<i64>) -> ContentUrlRow {
    ContentUrlRow { id, content_url: url.to_string(), content_size: size, orphan_time: orphan }
}

/// Runs argv with stdout into `out`; panics with stderr on failure.
fn run_to_file(argv: &[String], out: &Path) {
    let file = File::create(out).unwrap();
    let res = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).stdout(file).output().unwrap();
    assert!(res.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&res.stderr));
}

/// Like run_to_file, but through a pipe (as coffer captures a command component's stdout),
/// so pg_dump cannot seek back to record data offsets in a custom archive.
fn run_through_pipe(argv: &[String], out: &Path) {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut file = File::create(out).unwrap();
    std::io::copy(child.stdout.as_mut().unwrap(), &mut file).unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&res.stderr));
}

fn run(argv: &[String]) {
    let res = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).output().unwrap();
    assert!(res.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&res.stderr));
}

fn gzip(src: &Path, dst: &Path) {
    run_to_file(&["gzip".into(), "-c".into(), src.to_string_lossy().into_owned()], dst);
}

fn read_sorted(path: &Path, settings: &ConsistencySettings) -> Vec<ContentUrlRow> {
    let mut rows = consistency::rows_from_dump_file(path, settings)
        .unwrap_or_else(|e| panic!("rows_from_dump_file({}): {e}", path.display()));
    rows.sort_by_key(|r| r.id);
    rows
}

fn sniff_file(path: &Path) -> DumpFormat {
    let bytes = std::fs::read(path).unwrap();
    consistency::sniff(&bytes[..bytes.len().min(512)])
}

#[test]
fn crc_matches_java() {
    assert_eq!(pg::crc32(b"123456789"), 0xCBF4_3926);
    let (short, _) = pg::alfresco_url_short_crc("store://2024/3/7/14/5/ABCDEF-0123.BIN");
    assert_eq!(short, "def-0123.bin");
    assert_eq!(pg::alfresco_url_short_crc("store://a").0, "store://a");
}

#[test]
fn dumps_of_every_format_give_back_the_inserted_rows() {
    let pg = PgCluster::start();
    pg.createdb("alf");
    // A table dumped before alf_content_url, with data that looks like COPY syntax.
    pg.psql(
        "alf",
        "CREATE TABLE alf_audit_entry (id INT8 PRIMARY KEY, v TEXT);
         INSERT INTO alf_audit_entry VALUES (1, E'\\\\.'), (2, E'COPY public.alf_content_url (id) FROM stdin;\\n\\\\.\\n'), (3, NULL);",
    );
    pg::create_alf_content_url(&pg, "alf");
    let expected = vec![
        row(-7, "store://2024/3/7/14/5/0b5c3a1e-7d4f-4c1b-9a55-2f0d1c9e8b7a.bin", 0, None),
        row(1, "store://2024/3/7/14/5/1a2b3c4d-0000-4000-8000-000000000001.bin", 12_345, None),
        row(2, "store://2023/12/31/23/59/orphaned-0001.bin", 77, Some(1_710_000_000_000)),
        row(3, "store://2024/3/7/14/6/we\\ird\tname.bin", 5, None),
        row(4, "store://2024/3/7/14/7/l'\u{e9}\nx\r\\N.bin", 6, Some(-1)),
        row(i64::MAX, "store://2024/3/8/0/0/huge.bin", 5_000_000_000, None),
    ];
    for r in &expected {
        pg::insert_content_url(&pg, "alf", r.id, &r.content_url, r.content_size, r.orphan_time);
    }
    // And one after it.
    pg.psql("alf", "CREATE TABLE zz_after (x TEXT); INSERT INTO zz_after VALUES (E'a\\tb'), ('\\.');");
    assert_eq!(pg.tables("alf"), vec!["alf_audit_entry", "alf_content_url", "zz_after"]);

    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let settings = ConsistencySettings::default();

    run_to_file(&pg.dump_command("alf", &["-Fp"]), &d("plain.sql"));
    run_to_file(&pg.dump_command("alf", &["-Fc", "-Z0"]), &d("custom.dump"));
    run_to_file(&pg.dump_command("alf", &["-Fc"]), &d("custom-z.dump"));
    run_through_pipe(&pg.dump_command("alf", &["-Fc", "-Z0"]), &d("custom-piped.dump"));
    run_through_pipe(&pg.dump_command("alf", &["-Fp"]), &d("plain-piped.sql"));
    run_to_file(&pg.dump_command("alf", &["-Ft"]), &d("dump.tar"));
    run(&pg.dump_command("alf", &["-Fd", "-f", &d("dump.d").to_string_lossy()]));
    gzip(&d("plain.sql"), &d("plain.sql.gz"));
    gzip(&d("custom.dump"), &d("custom.dump.gz"));
    gzip(&d("dump.tar"), &d("dump.tar.gz"));
    gzip(&d("custom-piped.dump"), &d("custom-piped.dump.gz"));

    assert_eq!(sniff_file(&d("plain.sql")), DumpFormat::PlainSql);
    assert_eq!(sniff_file(&d("custom.dump")), DumpFormat::Custom);
    assert_eq!(sniff_file(&d("custom-piped.dump")), DumpFormat::Custom);
    assert_eq!(sniff_file(&d("dump.tar")), DumpFormat::Tar);
    assert_eq!(sniff_file(&d("plain.sql.gz")), DumpFormat::Gzip);

    for name in [
        "plain.sql",
        "custom.dump",
        "custom-z.dump",
        "custom-piped.dump", // written without data offsets
        "plain-piped.sql",
        "dump.tar",
        "dump.d",
        "plain.sql.gz",
        "custom.dump.gz", // pg_restore reads the custom archive from a pipe
        "dump.tar.gz",
        "custom-piped.dump.gz", // no data offsets, read from a pipe
    ] {
        assert_eq!(read_sorted(&d(name), &settings), expected, "{name}");
    }

    // The rows check out against a matching contentstore.
    let files: HashMap<String, u64> = expected
        .iter()
        .map(|r| (consistency::url_to_relpath(&r.content_url, "store://").unwrap(), r.content_size))
        .collect();
    let report = consistency::check(&read_sorted(&d("custom.dump"), &settings), &files, &settings);
    assert!(report.is_ok(), "{}", report.summary());
    assert_eq!((report.rows, report.orphaned_rows, report.unknown_files), (6, 2, 0));

    // restore_command: the custom dump restores into another database identically.
    pg.createdb("alf2");
    run(&pg.restore_command("alf2", &[&d("custom.dump").to_string_lossy()]));
    assert_eq!(pg.tables("alf2"), pg.tables("alf"));
    for t in ["alf_content_url", "alf_audit_entry", "zz_after"] {
        assert_eq!(pg.table_dump("alf2", t), pg.table_dump("alf", t), "{t}");
    }
    assert!(pg.table_dump("alf", "alf_content_url").contains("we\\\\ird\\tname.bin"));

    // A truncated custom archive: pg_restore fails, and the error carries its stderr.
    let bytes = std::fs::read(d("custom.dump")).unwrap();
    std::fs::write(d("truncated.dump"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = consistency::rows_from_dump_file(&d("truncated.dump"), &settings).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CommandFailed, "{err}");
    assert!(err.to_string().contains("pg_restore"), "{err}");

    // A schema-only dump has no data for the table: an error, not an empty table.
    run_to_file(&pg.dump_command("alf", &["-Fp", "--schema-only"]), &d("schema.sql"));
    run_to_file(&pg.dump_command("alf", &["-Fc", "--schema-only"]), &d("schema.dump"));
    for name in ["schema.sql", "schema.dump"] {
        let err = consistency::rows_from_dump_file(&d(name), &settings).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{name}: {err}");
    }
    // A dump made with --inserts gets a hint.
    run_to_file(&pg.dump_command("alf", &["-Fp", "--inserts"]), &d("inserts.sql"));
    let err = consistency::rows_from_dump_file(&d("inserts.sql"), &settings).unwrap_err();
    assert!(err.to_string().contains("--inserts"), "{err}");
}

#[test]
fn same_table_in_two_schemas_needs_the_schema_setting() {
    let pg = PgCluster::start();
    pg.createdb("alf");
    pg::create_alf_content_url(&pg, "alf");
    pg::insert_content_url(&pg, "alf", 1, "store://2024/1/1/0/0/public.bin", 1, None);
    pg.psql(
        "alf",
        "CREATE SCHEMA \"Archive\";
         CREATE TABLE \"Archive\".alf_content_url (content_size INT8, id INT8, content_url TEXT, extra TEXT);
         INSERT INTO \"Archive\".alf_content_url VALUES (2, 9, 'store://2020/1/1/0/0/old.bin', 'x');",
    );
    assert_eq!(pg.tables("alf"), vec!["Archive.alf_content_url", "alf_content_url"]);
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sql");
    let custom = dir.path().join("custom.dump");
    run_to_file(&pg.dump_command("alf", &["-Fp"]), &plain);
    run_to_file(&pg.dump_command("alf", &["-Fc", "-Z0"]), &custom);
    for path in [&plain, &custom] {
        let err = consistency::rows_from_dump_file(path, &ConsistencySettings::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{}: {err}", path.display());
        let public = ConsistencySettings { table: "public.alf_content_url".into(), ..Default::default() };
        assert_eq!(
            consistency::rows_from_dump_file(path, &public).unwrap(),
            vec![row(1, "store://2024/1/1/0/0/public.bin", 1, None)]
        );
        let archive = ConsistencySettings { table: "\"Archive\".alf_content_url".into(), ..Default::default() };
        assert_eq!(
            consistency::rows_from_dump_file(path, &archive).unwrap(),
            vec![row(9, "store://2020/1/1/0/0/old.bin", 2, None)]
        );
    }
}

#[test]
fn clusters_run_side_by_side() {
    let a = PgCluster::start();
    let b = PgCluster::start();
    assert_ne!(a.socket_dir(), b.socket_dir());
    a.createdb("one");
    b.createdb("one");
    a.psql("one", "CREATE TABLE t (x INT); INSERT INTO t VALUES (1);");
    assert_eq!(b.tables("one"), Vec::<String>::new());
    assert_eq!(a.table_dump("one", "t"), "1\n");
    assert_eq!(a.psql("one", "SELECT 40 + 2;").trim(), "42");
    let sock = a.socket_dir().to_path_buf();
    drop(a);
    assert!(!sock.exists(), "temp dir removed on drop");
    assert_eq!(b.psql("one", "SELECT 1;").trim(), "1");
}
