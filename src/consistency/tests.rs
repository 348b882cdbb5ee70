use super::copy::*;
use super::*;
use proptest::prelude::*;
use std::io::Write;

fn settings() -> ConsistencySettings {
    ConsistencySettings::default()
}

fn parse(s: &str) -> Result<Vec<ContentUrlRow>> {
    parse_plain_sql(s.as_bytes(), &settings())
}

fn row(id: i64, url: &str, size: u64, orphan: Option<i64>) -> ContentUrlRow {
    ContentUrlRow { id, content_url: url.to_string(), content_size: size, orphan_time: orphan }
}

const HEADER: &str = "COPY public.alf_content_url (id, content_url, content_url_short, content_url_crc, content_size, orphan_time) FROM stdin;\n";

#[test]
fn parses_pg_dump_block_between_other_tables() {
    let dump = format!(
        "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n\
         COPY public.alf_audit (id, value) FROM stdin;\n1\tCOPY public.alf_content_url (id) FROM stdin;\n2\t\\\\.\n\\.\n\n\
         {HEADER}\
         1\tstore://2024/3/7/14/5/a.bin\t14/5/a.bin\t123\t10\t\\N\n\
         2\tstore://2024/3/7/14/5/b.bin\t14/5/b.bin\t456\t0\t1710000000000\n\
         \\.\n\n\
         COPY public.alf_node (id) FROM stdin;\n9\n\\.\n\
         --\n-- PostgreSQL database dump complete\n--\n"
    );
    let rows = parse(&dump).unwrap();
    assert_eq!(
        rows,
        vec![
            row(1, "store://2024/3/7/14/5/a.bin", 10, None),
            row(2, "store://2024/3/7/14/5/b.bin", 0, Some(1710000000000)),
        ]
    );
}

#[test]
fn empty_table_is_zero_rows() {
    let rows = parse(&format!("{HEADER}\\.\n")).unwrap();
    assert!(rows.is_empty());
}

#[test]
fn missing_table_is_an_error() {
    let err = parse("SET x = 1;\nCOPY public.other (id) FROM stdin;\n1\n\\.\n").unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains("table alf_content_url not found in dump"), "{msg}");
    // An empty input too.
    assert_eq!(parse("").unwrap_err().kind(), crate::error::ErrorKind::NotFound);
}

#[test]
fn inserts_dump_gets_a_hint() {
    let err = parse("INSERT INTO public.alf_content_url VALUES (1, 'store://a', 'a', 1, 1, NULL);\n").unwrap_err();
    assert!(err.to_string().contains("--inserts"), "{err}");
}

#[test]
fn escapes_are_decoded() {
    let dump = "COPY alf_content_url (id, content_url, content_size, orphan_time) FROM stdin;\n\
                1\tstore://a\\tb\\nc\\\\d\\re\\bf\\fg\\vh\t1\t\\N\n\
                2\tstore://\\101\\x42\\x4a\\7\\08\\xg\\q\\N\t2\t\\N\n\
                3\tstore://caf\\303\\251\\xc3\\xa9\t3\t\\N\n\
                4\t\\\\N\t4\t\\N\n\
                \\.\n";
    let rows = parse(dump).unwrap();
    assert_eq!(rows[0].content_url, "store://a\tb\nc\\d\re\x08f\x0cg\x0bh");
    // \101 = 'A', \x42 = 'B', \x4a = 'J', \7 = BEL, \0 then '8', \x without hex = 'x' then 'g',
    // \q = 'q', \N inside a field = 'N'.
    assert_eq!(rows[1].content_url, "store://ABJ\x07\x008xgqN");
    assert_eq!(rows[2].content_url, "store://caféé");
    // `\\N` is the two characters backslash and N, not NULL.
    assert_eq!(rows[3].content_url, "\\N");
}

#[test]
fn escaped_tab_does_not_split_fields() {
    let dump = "COPY alf_content_url (id, content_url, content_size) FROM stdin;\n\
                7\tstore://x\\\ty\t5\n\\.\n";
    // backslash followed by a raw tab: the tab is data.
    assert_eq!(parse(dump).unwrap(), vec![row(7, "store://x\ty", 5, None)]);
}

#[test]
fn columns_are_mapped_by_name() {
    let dump = "COPY public.alf_content_url (orphan_time, content_size, content_url_crc, content_url, id, content_url_short) FROM stdin;\n\
                42\t99\t1\tstore://z\t3\tz\n\\.\n";
    assert_eq!(parse(dump).unwrap(), vec![row(3, "store://z", 99, Some(42))]);
    // orphan_time is optional.
    let dump = "COPY alf_content_url (content_url, id, content_size) FROM stdin;\nstore://z\t3\t99\n\\.\n";
    assert_eq!(parse(dump).unwrap(), vec![row(3, "store://z", 99, None)]);
    // id is not.
    let err = parse("COPY alf_content_url (content_url, content_size) FROM stdin;\n\\.\n").unwrap_err();
    assert!(err.to_string().contains("lacks column(s) id"), "{err}");
}

#[test]
fn quoted_and_schema_qualified_names() {
    let body = "1\tstore://q\t1\n\\.\n";
    for header in [
        "COPY \"public\".\"alf_content_url\" (\"id\", \"content_url\", content_size) FROM stdin;\n",
        "COPY alf_content_url (id, content_url, content_size) FROM stdin;\n",
        "copy  PUBLIC.ALF_CONTENT_URL(ID,CONTENT_URL,  content_size)  from   STDIN ;\n",
        "COPY alfresco.alf_content_url (id, content_url, content_size) FROM stdin;\n",
    ] {
        assert_eq!(parse(&format!("{header}{body}")).unwrap(), vec![row(1, "store://q", 1, None)], "{header}");
    }
    // A quoted mixed-case name is a different table.
    let dump = format!("COPY public.\"ALF_CONTENT_URL\" (id, content_url, content_size) FROM stdin;\n{body}");
    assert_eq!(parse(&dump).unwrap_err().kind(), crate::error::ErrorKind::NotFound);
    let mut s = settings();
    s.table = "\"ALF_CONTENT_URL\"".into();
    assert_eq!(parse_plain_sql(dump.as_bytes(), &s).unwrap().len(), 1);
    // Quoted identifiers with odd characters, "" inside.
    let dump =
        format!("COPY \"my \"\"schema\"\".x\".alf_content_url (id, content_url, content_size) FROM stdin;\n{body}");
    s.table = "\"my \"\"schema\"\".x\".alf_content_url".into();
    assert_eq!(parse_plain_sql(dump.as_bytes(), &s).unwrap().len(), 1);
}

#[test]
fn schema_setting_selects_among_schemas() {
    let dump = "COPY a.alf_content_url (id, content_url, content_size) FROM stdin;\n1\tstore://a\t1\n\\.\n\
                COPY b.alf_content_url (id, content_url, content_size) FROM stdin;\n2\tstore://b\t2\n\\.\n";
    let err = parse(dump).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("appears twice"), "{err}");
    let mut s = settings();
    s.table = "b.alf_content_url".into();
    assert_eq!(parse_plain_sql(dump.as_bytes(), &s).unwrap(), vec![row(2, "store://b", 2, None)]);
    s.table = "c.alf_content_url".into();
    assert_eq!(parse_plain_sql(dump.as_bytes(), &s).unwrap_err().kind(), crate::error::ErrorKind::NotFound);
    s.table = "not a name".into();
    assert_eq!(parse_plain_sql(dump.as_bytes(), &s).unwrap_err().kind(), crate::error::ErrorKind::InvalidInput);
}

#[test]
fn similar_names_do_not_match() {
    let dump = "COPY public.alf_content_url_encryption (id, content_url_id) FROM stdin;\n1\t2\n\\.\n\
                COPY public.alf_content_urls (id, content_url, content_size) FROM stdin;\n1\tstore://x\t1\n\\.\n";
    assert_eq!(parse(dump).unwrap_err().kind(), crate::error::ErrorKind::NotFound);
}

#[test]
fn crlf_line_endings() {
    let dump = "SET x = 1;\r\nCOPY public.alf_content_url (id, content_url, content_size, orphan_time) FROM stdin;\r\n\
                1\tstore://a\t5\t\\N\r\n2\tstore://b\\r\t6\t7\r\n\\.\r\n";
    assert_eq!(parse(dump).unwrap(), vec![row(1, "store://a", 5, None), row(2, "store://b\r", 6, Some(7))]);
}

#[test]
fn last_line_without_newline() {
    assert_eq!(
        parse("COPY alf_content_url (id, content_url, content_size) FROM stdin;\n1\tstore://a\t5\n\\.").unwrap(),
        vec![row(1, "store://a", 5, None)]
    );
}

fn corrupt_at(dump: &str, line: u64, needle: &str) {
    let err = parse(dump).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("line {line}:")), "{msg}");
    assert!(msg.contains(needle), "{msg}");
}

#[test]
fn malformed_data_names_the_line() {
    let h = "SET a = 1;\nCOPY alf_content_url (id, content_url, content_size, orphan_time) FROM stdin;\n";
    corrupt_at(&format!("{h}1\tstore://a\t5\n\\.\n"), 3, "expected 4 tab-separated fields, found 3");
    corrupt_at(&format!("{h}1\tstore://a\t5\t\\N\t9\n\\.\n"), 3, "found 5");
    corrupt_at(&format!("{h}1\tstore://a\t5\t\\N\nx\tstore://a\t5\t\\N\n\\.\n"), 4, "column id: expected a bigint");
    corrupt_at(&format!("{h}1\tstore://a\t-5\t\\N\n\\.\n"), 3, "content_size is negative");
    corrupt_at(&format!("{h}1\t\\N\t5\t\\N\n\\.\n"), 3, "content_url is NULL");
    corrupt_at(&format!("{h}\\N\tstore://a\t5\t\\N\n\\.\n"), 3, "id is NULL");
    corrupt_at(&format!("{h}1\tstore://\\377\t5\t\\N\n\\.\n"), 3, "not valid UTF-8");
    corrupt_at(&format!("{h}1\tstore://a\t5\t\\N\\\n\\.\n"), 3, "backslash at the end");
    corrupt_at(&format!("{h}1\tstore://a\t99999999999999999999\t\\N\n\\.\n"), 3, "expected a bigint");
    corrupt_at(&format!("{h}1\tstore://a\t5\t\\N\n"), 2, "no `\\.` terminator");
    corrupt_at("COPY other (a) FROM stdin;\n1\n", 1, "no `\\.` terminator");
    corrupt_at("COPY alf_content_url FROM stdin;\n\\.\n", 1, "no column list");
    corrupt_at(
        "COPY alf_content_url (id, content_url, content_size) FROM stdin WITH BINARY;\n\\.\n",
        1,
        "COPY options are not supported",
    );
    corrupt_at("COPY alf_content_url (id, id, content_url, content_size) FROM stdin;\n\\.\n", 1, "appears twice");
    corrupt_at("COPY 123 (a) FROM stdin;\n\\.\n", 1, "cannot parse the table name");
}

#[test]
fn error_offsets_point_at_the_line() {
    let h = "COPY alf_content_url (id, content_url, content_size) FROM stdin;\n";
    let dump = format!("{h}1\tstore://a\t5\nbad\n\\.\n");
    match parse(&dump).unwrap_err() {
        Error::Corrupt { offset, .. } => assert_eq!(offset as usize, h.len() + "1\tstore://a\t5\n".len()),
        e => panic!("{e}"),
    }
}

#[test]
fn huge_lines_elsewhere_are_streamed() {
    // A 3 MiB statement line and a 3 MiB data line of another table are skipped.
    let big = "x".repeat(3 << 20);
    let dump = format!(
        "COMMENT ON TABLE t IS '{big}';\nCOPY public.blobs (id, data) FROM stdin;\n1\t{big}\n\\.\n\
         COPY alf_content_url (id, content_url, content_size) FROM stdin;\n1\tstore://a\t5\n\\.\n"
    );
    assert_eq!(parse(&dump).unwrap(), vec![row(1, "store://a", 5, None)]);
}

#[test]
fn sniffing() {
    assert_eq!(sniff(b"PGDMP\x01\x0f\x00"), DumpFormat::Custom);
    assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), DumpFormat::Gzip);
    assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), DumpFormat::Zstd);
    let mut tar = vec![0u8; 512];
    tar[..9].copy_from_slice(b"toc.dat\0\0");
    tar[257..263].copy_from_slice(b"ustar\0");
    assert_eq!(sniff(&tar), DumpFormat::Tar);
    assert_eq!(sniff(b"--\n-- PostgreSQL database dump\n"), DumpFormat::PlainSql);
    assert_eq!(sniff(b""), DumpFormat::PlainSql);
    assert_eq!(sniff(b"PGD"), DumpFormat::PlainSql);
}

#[test]
fn url_mapping() {
    let p = "store://";
    assert_eq!(url_to_relpath("store://2024/3/7/14/5/x.bin", p).as_deref(), Some("2024/3/7/14/5/x.bin"));
    assert_eq!(url_to_relpath("store://x.bin", p).as_deref(), Some("x.bin"));
    assert_eq!(url_to_relpath("store://a\\b\tc.bin", p).as_deref(), Some("a\\b\tc.bin"));
    for bad in [
        "s3://2024/x.bin",
        "STORE://2024/x.bin",
        "store://",
        "store:///etc/passwd",
        "store://2024/../../x.bin",
        "store://..",
        "store://2024/./x.bin",
        "store://2024//x.bin",
        "store://2024/x/",
        "store://a\0b",
        "2024/x.bin",
        "",
    ] {
        assert_eq!(url_to_relpath(bad, p), None, "{bad:?}");
    }
    assert_eq!(url_to_relpath("s3://a/b", "s3://").as_deref(), Some("a/b"));
}

#[test]
fn check_classifies() {
    let rows = vec![
        row(1, "store://2024/1/1/0/0/ok.bin", 10, None),
        row(2, "store://2024/1/1/0/0/missing.bin", 10, None),
        row(3, "store://2024/1/1/0/0/short.bin", 10, None),
        row(4, "store://2024/1/1/0/0/orphan-gone.bin", 10, Some(1)),
        row(5, "store://2024/1/1/0/0/orphan-here.bin", 10, Some(2)),
        row(6, "store://2024/1/1/0/0/orphan-wrong.bin", 10, Some(3)),
        row(7, "s3://bucket/x.bin", 10, None),
        row(8, "store://../escape.bin", 10, None),
        row(9, "store://2024/1/1/0/0/empty.bin", 0, None),
    ];
    let mut files: HashMap<String, u64> = [
        ("2024/1/1/0/0/ok.bin", 10),
        ("2024/1/1/0/0/short.bin", 7),
        ("2024/1/1/0/0/orphan-here.bin", 10),
        ("2024/1/1/0/0/orphan-wrong.bin", 11),
        ("2024/1/1/0/0/empty.bin", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for i in 0..15 {
        files.insert(format!("2025/1/1/0/0/new-{i:02}.bin"), 1);
    }
    let r = check(&rows, &files, &settings());
    assert_eq!(r.rows, 9);
    assert_eq!(r.files_on_disk, 20);
    assert_eq!(r.missing, vec!["store://2024/1/1/0/0/missing.bin".to_string()]);
    assert_eq!(
        r.size_mismatch,
        vec![
            SizeMismatch { url: "store://2024/1/1/0/0/orphan-wrong.bin".into(), expected: 10, actual: 11 },
            SizeMismatch { url: "store://2024/1/1/0/0/short.bin".into(), expected: 10, actual: 7 },
        ]
    );
    assert_eq!(r.orphaned_rows, 3);
    assert_eq!(r.bad_urls, vec!["s3://bucket/x.bin".to_string(), "store://../escape.bin".to_string()]);
    assert_eq!(r.unknown_files, 15);
    let expected: Vec<String> = (0..10).map(|i| format!("2025/1/1/0/0/new-{i:02}.bin")).collect();
    assert_eq!(r.unknown_examples, expected);
    assert!(!r.is_ok());
    let summary = r.summary();
    for needle in [
        "INCONSISTENT",
        "missing.bin",
        "short.bin",
        "database says 10 bytes, file has 7",
        "s3://bucket",
        "new-00.bin",
        "and 5 more",
        "3 orphaned",
    ] {
        assert!(summary.contains(needle), "{needle} not in\n{summary}");
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["unknown_files"], 15);
}

#[test]
fn check_ok_with_unknown_files_and_gone_orphans() {
    let rows = vec![row(1, "store://a/b.bin", 3, None), row(2, "store://a/gone.bin", 3, Some(5))];
    let files: HashMap<String, u64> =
        [("a/b.bin".to_string(), 3), ("a/later.bin".to_string(), 1)].into_iter().collect();
    let r = check(&rows, &files, &settings());
    assert!(r.is_ok(), "{}", r.summary());
    assert_eq!((r.unknown_files, r.orphaned_rows), (1, 1));
    assert!(r.summary().contains("consistent"));
    // Empty everything is consistent.
    assert!(check(&[], &HashMap::new(), &settings()).is_ok());
}

#[test]
fn settings_defaults_and_serde() {
    let s = settings();
    assert_eq!((s.table.as_str(), s.url_prefix.as_str()), ("alf_content_url", "store://"));
    assert_eq!(s.pg_restore, vec!["pg_restore".to_string()]);
    let partial: ConsistencySettings = serde_json::from_str(r#"{"table":"x.y"}"#).unwrap();
    assert_eq!(partial.table, "x.y");
    assert_eq!(partial.url_prefix, "store://");
    let back: ConsistencySettings = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

// ---- files and helper commands (no PostgreSQL needed: pg_restore is faked with sh) ----

const PLAIN: &str =
    "SET x = 1;\nCOPY public.alf_content_url (id, content_url, content_size, orphan_time) FROM stdin;\n\
                     1\tstore://2024/1/1/0/0/a.bin\t5\t\\N\n2\tstore://2024/1/1/0/0/b\\tc.bin\t6\t9\n\\.\n";

fn plain_rows() -> Vec<ContentUrlRow> {
    vec![row(1, "store://2024/1/1/0/0/a.bin", 5, None), row(2, "store://2024/1/1/0/0/b\tc.bin", 6, Some(9))]
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db.sql");
    std::fs::write(&p, PLAIN).unwrap();
    assert_eq!(rows_from_dump_file(&p, &settings()).unwrap(), plain_rows());
    // Errors name the file.
    std::fs::write(&p, "SET x = 1;\n").unwrap();
    let err = rows_from_dump_file(&p, &settings()).unwrap_err();
    assert!(err.to_string().contains("db.sql"), "{err}");
    let err = rows_from_dump_file(&dir.path().join("nope.sql"), &settings()).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Io);
}

fn compress(tool: &str, data: &[u8], dir: &Path, name: &str) -> PathBuf {
    assert!(have(tool), "{tool} is needed for this test (apt-get install -y {tool})");
    let p = dir.join(name);
    let out = File::create(&p).unwrap();
    let mut child = Command::new(tool).arg("-c").stdin(Stdio::piped()).stdout(out).spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    assert!(child.wait().unwrap().success());
    p
}

#[test]
fn compressed_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["gzip", "zstd"] {
        let p = compress(tool, PLAIN.as_bytes(), dir.path(), &format!("db.sql.{tool}"));
        assert_eq!(rows_from_dump_file(&p, &settings()).unwrap(), plain_rows(), "{tool}");
        // Not found inside a compressed stream is still NotFound.
        let p = compress(tool, b"SET x = 1;\n", dir.path(), &format!("empty.sql.{tool}"));
        assert_eq!(rows_from_dump_file(&p, &settings()).unwrap_err().kind(), crate::error::ErrorKind::NotFound);
    }
}

#[test]
fn corrupt_gzip_is_a_command_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut dump = String::from("COPY alf_content_url (id, content_url, content_size) FROM stdin;\n");
    for i in 0..5000 {
        dump.push_str(&format!("{i}\tstore://2024/1/1/0/0/{i}.bin\t{i}\n"));
    }
    dump.push_str("\\.\n");
    let p = compress("gzip", dump.as_bytes(), dir.path(), "db.sql.gz");
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 20);
    std::fs::write(&p, &bytes).unwrap();
    let err = rows_from_dump_file(&p, &settings()).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::CommandFailed, "{err}");
    assert!(err.to_string().contains("gzip"), "{err}");
}

fn fake_pg_restore(script: &str) -> ConsistencySettings {
    ConsistencySettings {
        pg_restore: vec!["sh".into(), "-c".into(), script.into(), "fake-pg_restore".into()],
        ..settings()
    }
}

fn custom_file(dir: &Path) -> PathBuf {
    let p = dir.join("db.custom");
    std::fs::write(&p, b"PGDMP\x01\x0f\x00 rest of a custom archive").unwrap();
    p
}

#[test]
fn custom_format_goes_through_pg_restore() {
    let dir = tempfile::tempdir().unwrap();
    let p = custom_file(dir.path());
    let sql = dir.path().join("out.sql");
    std::fs::write(&sql, PLAIN).unwrap();
    // The fake checks its arguments, then prints the plain SQL.
    let script = format!(
        r#"[ "$*" = "-a -t alf_content_url -f - {}" ] || {{ echo "bad args: $*" >&2; exit 2; }}; cat '{}'"#,
        p.display(),
        sql.display()
    );
    assert_eq!(rows_from_dump_file(&p, &fake_pg_restore(&script)).unwrap(), plain_rows());
    // Schema-qualified setting adds -n.
    let script = format!(
        r#"[ "$*" = "-a -t alf_content_url -n public -f - {}" ] || {{ echo "bad args: $*" >&2; exit 2; }}; cat '{}'"#,
        p.display(),
        sql.display()
    );
    let mut s = fake_pg_restore(&script);
    s.table = "public.alf_content_url".into();
    assert_eq!(rows_from_dump_file(&p, &s).unwrap(), plain_rows());
}

#[test]
fn pg_restore_failure_names_command_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let p = custom_file(dir.path());
    let err = rows_from_dump_file(&p, &fake_pg_restore("echo 'pg_restore: error: boom' >&2; exit 1")).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::CommandFailed);
    let msg = err.to_string();
    assert!(msg.contains("pg_restore: error: boom"), "{msg}");
    assert!(msg.contains("fake-pg_restore -a -t alf_content_url -f -"), "{msg}");
    // A failure after printing valid data still fails.
    let script = format!("printf '{}'; echo late >&2; exit 1", PLAIN.replace('\\', "\\\\").replace('\t', "\\t"));
    let err = rows_from_dump_file(&p, &fake_pg_restore(&script)).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::CommandFailed, "{err}");
    // A command that does not exist.
    let s = ConsistencySettings { pg_restore: vec!["/nonexistent/pg_restore".into()], ..settings() };
    let err = rows_from_dump_file(&p, &s).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::CommandFailed);
    assert!(err.to_string().contains("could not be started"), "{err}");
    let s = ConsistencySettings { pg_restore: vec![], ..settings() };
    assert_eq!(rows_from_dump_file(&p, &s).unwrap_err().kind(), crate::error::ErrorKind::InvalidInput);
}

#[test]
fn parse_error_in_endless_pg_restore_output_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = custom_file(dir.path());
    // Malformed data followed by an endless stream: the parser must stop, kill and report.
    let script = "printf 'COPY alf_content_url (id, content_url, content_size) FROM stdin;\\nx\\ty\\tz\\n'; exec yes";
    let err = rows_from_dump_file(&p, &fake_pg_restore(script)).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("pg_restore output"), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn compressed_custom_is_fed_to_pg_restore_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let custom = std::fs::read(custom_file(dir.path())).unwrap();
    let p = compress("gzip", &custom, dir.path(), "db.custom.gz");
    let sql = dir.path().join("out.sql");
    std::fs::write(&sql, PLAIN).unwrap();
    // The fake requires no file argument and the archive on stdin.
    let script = format!(
        r#"[ "$*" = "-a -t alf_content_url -f -" ] || {{ echo "bad args: $*" >&2; exit 2; }}; head -c 5 | grep -q PGDMP || exit 3; cat >/dev/null; cat '{}'"#,
        sql.display()
    );
    assert_eq!(rows_from_dump_file(&p, &fake_pg_restore(&script)).unwrap(), plain_rows());
}

#[test]
fn pg_restore_may_stop_reading_its_stdin_early() {
    // The decompressor then dies of SIGPIPE, which is not a failure.
    let dir = tempfile::tempdir().unwrap();
    let mut custom = b"PGDMP".to_vec();
    custom.resize(64 << 20, 0);
    let sql = dir.path().join("out.sql");
    std::fs::write(&sql, PLAIN).unwrap();
    let script = format!("head -c 5 >/dev/null; cat '{}'", sql.display());
    for tool in ["gzip", "zstd"] {
        let p = compress(tool, &custom, dir.path(), &format!("db.custom.{tool}"));
        assert_eq!(rows_from_dump_file(&p, &fake_pg_restore(&script)).unwrap(), plain_rows(), "{tool}");
    }
}

#[test]
fn directory_format_goes_through_pg_restore() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("out.sql");
    std::fs::write(&sql, PLAIN).unwrap();
    let dumpdir = dir.path().join("dump.d");
    std::fs::create_dir(&dumpdir).unwrap();
    let script = format!(
        r#"[ "$*" = "-a -t alf_content_url -f - {}" ] || {{ echo "bad args: $*" >&2; exit 2; }}; cat '{}'"#,
        dumpdir.display(),
        sql.display()
    );
    assert_eq!(rows_from_dump_file(&dumpdir, &fake_pg_restore(&script)).unwrap(), plain_rows());
}

// ---- property tests ----

/// COPY text encoder. `style[i % len]` picks, per character, the plain form (with the
/// usual backslash escapes) or octal / hex escapes of each of its UTF-8 bytes.
fn encode(s: &str, style: &[u8]) -> String {
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        let st = if style.is_empty() { 0 } else { style[i % style.len()] % 3 };
        let mut buf = [0u8; 4];
        let bytes = ch.encode_utf8(&mut buf).as_bytes();
        match (st, ch) {
            (1, _) => bytes.iter().for_each(|b| out.push_str(&format!("\\{b:03o}"))),
            (2, _) => bytes.iter().for_each(|b| out.push_str(&format!("\\x{b:02X}"))),
            (_, '\\') => out.push_str("\\\\"),
            (_, '\t') => out.push_str("\\t"),
            (_, '\n') => out.push_str("\\n"),
            (_, '\r') => out.push_str("\\r"),
            (_, '\x08') => out.push_str("\\b"),
            (_, '\x0c') => out.push_str("\\f"),
            (_, '\x0b') => out.push_str("\\v"),
            _ => out.push(ch),
        }
    }
    out
}

fn encode_opt(v: Option<i64>) -> String {
    v.map_or("\\N".to_string(), |v| v.to_string())
}

fn arb_row() -> impl Strategy<Value = ContentUrlRow> {
    (any::<i64>(), "\\PC*|[\\t\\n\\r\\\\a-z\\x00-\\x1f]*", 0..=i64::MAX as u64, proptest::option::of(any::<i64>()))
        .prop_map(|(id, content_url, content_size, orphan_time)| ContentUrlRow {
            id,
            content_url,
            content_size,
            orphan_time,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_plain_sql(bytes.as_slice(), &settings());
    }

    #[test]
    fn never_panics_inside_a_block(body in proptest::collection::vec(
        prop_oneof![Just(b'\\'), Just(b'\t'), Just(b'\n'), Just(b'\r'), Just(b'N'), Just(b'.'), Just(b'x'), Just(b'7'), any::<u8>()], 0..1024)) {
        let mut dump = HEADER.as_bytes().to_vec();
        dump.extend_from_slice(&body);
        let _ = parse_plain_sql(dump.as_slice(), &settings());
    }

    #[test]
    fn encode_then_parse_round_trips(
        rows in proptest::collection::vec(arb_row(), 0..20),
        perm in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
        style in proptest::collection::vec(any::<u8>(), 0..8),
        schema in proptest::option::of(Just("public")),
        crlf in any::<bool>(),
        noise in "\\PC{0,40}",
    ) {
        let names = ["id", "content_url", "content_url_short", "content_url_crc", "content_size", "orphan_time"];
        let nl = if crlf { "\r\n" } else { "\n" };
        let table = match schema { Some(s) => format!("{s}.alf_content_url"), None => "alf_content_url".into() };
        let cols: Vec<&str> = perm.iter().map(|&i| names[i]).collect();
        let mut dump = format!("SET client_encoding = 'UTF8';{nl}COPY public.alf_other (id, t) FROM stdin;{nl}1\t{}{nl}\\.{nl}", encode(&noise, &[]));
        dump.push_str(&format!("COPY {table} ({}) FROM stdin;{nl}", cols.join(", ")));
        for r in &rows {
            let short: String = r.content_url.chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
            let values = [
                r.id.to_string(),
                encode(&r.content_url, &style),
                encode(&short, &[]),
                "12345".to_string(),
                r.content_size.to_string(),
                encode_opt(r.orphan_time),
            ];
            let line: Vec<&str> = perm.iter().map(|&i| values[i].as_str()).collect();
            dump.push_str(&line.join("\t"));
            dump.push_str(nl);
        }
        dump.push_str(&format!("\\.{nl}{nl}COPY public.alf_after (x) FROM stdin;{nl}\\\\.{nl}\\.{nl}"));
        let parsed = parse_plain_sql(dump.as_bytes(), &settings()).unwrap();
        prop_assert_eq!(parsed, rows);
    }
}
