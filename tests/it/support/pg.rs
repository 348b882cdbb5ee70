//! A throwaway, real PostgreSQL 15 server for integration tests.
//!
//! [`PgCluster::start`] runs `initdb` and `pg_ctl start -w` in a fresh temporary directory,
//! listening on a unix socket only (`listen_addresses = ''`, socket in the temp dir, a port
//! number unique to this process), with `trust` authentication, superuser `postgres`. Dropping
//! the cluster stops it (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server commands
//! (`initdb`, `pg_ctl`) run as the `postgres` OS user through `runuser -u postgres --` (or
//! `setpriv` if runuser is unusable), and the temp dir is chowned to that user. Client tools
//! (`psql`, `pg_dump`, `pg_restore`, `createdb`) run as the calling user and connect as the
//! database user `postgres` over the socket, which `trust` allows.
//!
//! Anything missing (binaries, the postgres user, a working runuser) panics with what is
//! missing and how to install it: these tests fail loudly, they never skip.
//!
//! Binaries come from `$COFFER_PG_BIN` if set, else `/usr/lib/postgresql/15/bin`.
//!
//! Only std and tempfile are used, so this file can be included from any integration test
//! (`mod support;` with `pub mod pg;` in `support/mod.rs`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
const INSTALL_HINT: &str = "install PostgreSQL 15 with `apt-get update && apt-get install -y postgresql-15` \
     (it provides /usr/lib/postgresql/15/bin/{initdb,pg_ctl,postgres,psql,pg_dump,pg_restore,createdb} \
     and the `postgres` OS user)";
/// Environment variables that would redirect or alter client connections.
const CLIENT_ENV_TO_CLEAR: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGREQUIRESSL",
];

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running PostgreSQL server in a temporary directory.
pub struct PgCluster {
    /// Removed on drop, after the server is stopped.
    dir: tempfile::TempDir,
    data: PathBuf,
    sock: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Prefix that runs a server command as the postgres OS user (empty when not root).
    as_postgres: Vec<String>,
}

impl PgCluster {
    /// `initdb` + `pg_ctl start -w`. Panics with a clear message if PostgreSQL 15 or the
    /// means to run it are missing.
    pub fn start() -> PgCluster {
        let bin = std::env::var_os("COFFER_PG_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
        for tool in ["initdb", "pg_ctl", "postgres", "psql", "pg_dump", "pg_restore", "createdb"] {
            let p = bin.join(tool);
            if !p.is_file() {
                panic!("PostgreSQL test server: {} is missing; {INSTALL_HINT}", p.display());
            }
        }

        let root = effective_uid() == 0;
        let as_postgres = if root { root_wrapper() } else { Vec::new() };

        let dir = tempfile::Builder::new()
            .prefix("coffer-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("PostgreSQL test server: cannot create a temp dir: {e}"));
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock).expect("create socket dir");
        // The socket path must fit in sun_path (107 bytes) with ".s.PGSQL.<port>".
        if sock.as_os_str().len() + 20 > 107 {
            panic!(
                "PostgreSQL test server: socket dir {} is too long for a unix socket path; \
                 set TMPDIR to a short directory such as /tmp",
                sock.display()
            );
        }
        if root {
            run(
                Command::new("chown").arg("-R").arg("postgres:").arg(dir.path()),
                "chown the PostgreSQL temp dir to the postgres user",
            );
            // The postgres user must reach the directory through its parents too.
            let status = wrap(&as_postgres, "test").arg("-w").arg(dir.path()).status().expect("run test as postgres");
            if !status.success() {
                panic!(
                    "PostgreSQL test server: the postgres OS user cannot write to {} (a parent directory \
                     is not traversable by it); set TMPDIR to a directory such as /tmp",
                    dir.path().display()
                );
            }
        }

        let port = unique_port();
        let mut initdb = wrap(&as_postgres, &bin.join("initdb").to_string_lossy());
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
        run(&mut initdb, "initdb");

        let conf = format!(
            "\n# coffer test cluster\nlisten_addresses = ''\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n\
             max_connections = 20\nmax_wal_senders = 0\nwal_level = minimal\nlogging_collector = off\n",
            sock.to_string_lossy().replace('\'', "''")
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap_or_else(|e| panic!("PostgreSQL test server: cannot append to postgresql.conf: {e}"));

        let log = dir.path().join("server.log");
        let mut start = wrap(&as_postgres, &bin.join("pg_ctl").to_string_lossy());
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "120", "start"]);
        let out = start.stdin(Stdio::null()).output().expect("run pg_ctl start");
        if !out.status.success() {
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "PostgreSQL test server: pg_ctl start failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server log ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                server_log
            );
        }
        PgCluster { dir, data, sock, port, bin, as_postgres }
    }

    /// Directory of the server's unix socket (the `-h` value).
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute path of a PostgreSQL binary (`psql`, `pg_dump`, ...).
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.bin.join(tool)
    }

    /// The server's log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `-h <sock> -p <port> -U postgres`
    fn conn_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.sock.to_string_lossy().into_owned(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            "postgres".into(),
        ]
    }

    fn client(&self, tool: &str) -> Command {
        let mut c = Command::new(self.bin(tool));
        c.args(self.conn_args());
        for v in CLIENT_ENV_TO_CLEAR {
            c.env_remove(v);
        }
        c
    }

    pub fn createdb(&self, name: &str) {
        let mut c = self.client("createdb");
        c.arg("--").arg(name);
        run(&mut c, &format!("createdb {name}"));
    }

    /// Runs SQL through `psql -v ON_ERROR_STOP=1 -X -q -A -t` (fed on stdin, so several
    /// statements and `COPY ... FROM stdin` work) and returns its stdout. Panics with stderr on
    /// failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut c = self.client("psql");
        c.args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-d", db, "-f", "-"]);
        let out = run_with_stdin(&mut c, sql.as_bytes());
        if !out.status.success() {
            panic!(
                "psql on database {db} failed ({})\n--- SQL ---\n{}\n--- stderr ---\n{}",
                out.status,
                truncate(sql, 4000),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).expect("psql output is UTF-8")
    }

    /// argv that runs pg_dump against database `db` of this cluster, writing to stdout unless
    /// `args` says otherwise: `[<bin>/pg_dump, -h, <sock>, -p, <port>, -U, postgres, <args>..., <db>]`.
    /// Usable as a coffer "command" component.
    pub fn dump_command(&self, db: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.bin("pg_dump").to_string_lossy().into_owned()];
        v.extend(self.conn_args());
        v.extend(args.iter().map(|s| s.to_string()));
        v.push(db.to_string());
        v
    }

    /// argv that runs pg_restore into database `db` of this cluster:
    /// `[<bin>/pg_restore, -h, <sock>, -p, <port>, -U, postgres, -d, <db>, <args>...]`; without a
    /// file argument in `args` the archive is read from stdin.
    pub fn restore_command(&self, db: &str, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.bin("pg_restore").to_string_lossy().into_owned()];
        v.extend(self.conn_args());
        v.push("-d".into());
        v.push(db.to_string());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Deterministic content of a table, for comparisons: the text of
    /// `COPY (SELECT * FROM <table> ORDER BY 1) TO STDOUT`. `table` is inserted as SQL as is
    /// (so `schema.table` and quoted names work).
    pub fn table_dump(&self, db: &str, table: &str) -> String {
        self.psql(db, &format!("COPY (SELECT * FROM {table} ORDER BY 1) TO STDOUT;"))
    }

    /// User tables of `db`, sorted; tables outside `public` as `schema.table`.
    pub fn tables(&self, db: &str) -> Vec<String> {
        self.psql(
            db,
            "SELECT CASE WHEN schemaname = 'public' THEN tablename ELSE schemaname || '.' || tablename END \
             FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1;",
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut stop = wrap(&self.as_postgres, &self.bin("pg_ctl").to_string_lossy());
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// Creates Alfresco's `alf_content_url` table in `db`, as Alfresco's PostgreSQL schema script
/// does (sequence, table, unique index on `content_url_short, content_url_crc`, and the
/// `orphan_time` and `content_size, id` indexes).
pub fn create_alf_content_url(pg: &PgCluster, db: &str) {
    pg.psql(
        db,
        "CREATE SEQUENCE alf_content_url_seq START WITH 1 INCREMENT BY 1;
         CREATE TABLE alf_content_url
         (
            id INT8 NOT NULL,
            content_url VARCHAR(255) NOT NULL,
            content_url_short VARCHAR(12) NOT NULL,
            content_url_crc INT8 NOT NULL,
            content_size INT8 NOT NULL,
            orphan_time INT8 NULL,
            PRIMARY KEY (id)
         );
         CREATE UNIQUE INDEX idx_alf_conturl_cr ON alf_content_url (content_url_short, content_url_crc);
         CREATE INDEX idx_alf_conturl_ot ON alf_content_url (orphan_time);
         CREATE INDEX idx_alf_conturl_sz ON alf_content_url (content_size, id);",
    );
}

/// Inserts one `alf_content_url` row with Alfresco's short/CRC columns computed from `url`.
pub fn insert_content_url(pg: &PgCluster, db: &str, id: i64, url: &str, size: u64, orphan_time: Option<i64>) {
    let (short, crc) = alfresco_url_short_crc(url);
    let orphan = orphan_time.map_or("NULL".to_string(), |t| t.to_string());
    pg.psql(
        db,
        &format!(
            "INSERT INTO alf_content_url (id, content_url, content_url_short, content_url_crc, content_size, orphan_time) \
             VALUES ({id}, {}, {}, {crc}, {size}, {orphan});",
            sql_quote(url),
            sql_quote(&short)
        ),
    );
}

/// Alfresco's `(content_url_short, content_url_crc)` for a URL (`ContentUrlEntity` via
/// `CrcHelper.getStringCrcPair(url, 12, false, true)`): the last 12 characters of the
/// lower-cased URL, and the CRC-32 of the URL's UTF-8 bytes as they are (case-sensitive).
pub fn alfresco_url_short_crc(url: &str) -> (String, i64) {
    let lower: Vec<char> = url.to_lowercase().chars().collect();
    let short: String = lower[lower.len().saturating_sub(12)..].iter().collect();
    (short, i64::from(crc32(url.as_bytes())))
}

/// CRC-32 (IEEE 802.3, as java.util.zip.CRC32).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A SQL string literal (standard_conforming_strings: only `'` needs doubling; tabs,
/// newlines and backslashes stay as they are).
pub fn sql_quote(s: &str) -> String {
    assert!(!s.contains('\0'), "PostgreSQL text cannot hold NUL");
    format!("'{}'", s.replace('\'', "''"))
}

// ---------------------------------------------------------------------------------------------

/// Effective uid of this process (from /proc, falling back to `id -u`).
fn effective_uid() -> u32 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                if let Some(euid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                    return euid;
                }
            }
        }
    }
    let out = Command::new("id").arg("-u").output().expect("run `id -u`");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("numeric uid from `id -u`")
}

/// The prefix that runs a command as the postgres OS user, checked to work.
fn root_wrapper() -> Vec<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("postgres:")) {
        panic!(
            "PostgreSQL test server: the tests run as root and PostgreSQL refuses root, but there is \
             no `postgres` OS user to run it as; {INSTALL_HINT} (or `useradd -r -m postgres`)"
        );
    }
    let candidates: [Vec<&str>; 2] = [
        vec!["runuser", "-u", "postgres", "--"],
        vec!["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"],
    ];
    let mut tried = Vec::new();
    for c in candidates {
        let wrapper: Vec<String> = c.iter().map(|s| s.to_string()).collect();
        match wrap(&wrapper, "id").arg("-un").output() {
            Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "postgres" => {
                return wrapper;
            }
            Ok(out) => tried.push(format!(
                "`{} id -un` failed ({}): {}",
                c.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => tried.push(format!("`{}` could not be run: {e}", c[0])),
        }
    }
    panic!(
        "PostgreSQL test server: cannot run commands as the postgres OS user (needed because the tests \
         run as root):\n  {}\ninstall util-linux (`apt-get install -y util-linux`) for runuser/setpriv",
        tried.join("\n  ")
    );
}

/// `program` run through `wrapper` (or directly when the wrapper is empty).
fn wrap(wrapper: &[String], program: &str) -> Command {
    match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A port number unlikely to be used by another test process: the port only names the
/// socket file inside this cluster's own socket dir, but it also seeds PostgreSQL's shared
/// memory keys, so parallel clusters should differ.
fn unique_port() -> u16 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (20000 + (pid.wrapping_mul(64).wrapping_add(n)) % 40000) as u16
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {:?}: {e}; {INSTALL_HINT}", cmd.get_program()));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `cmd` with `input` on stdin (written from a thread, so large input and output cannot
/// deadlock) and returns its output.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}; {INSTALL_HINT}", cmd.get_program()));
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut err_pipe = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let _ = err_pipe.read_to_end(&mut stderr);
        stderr
    });
    let _ = child.stdout.take().expect("piped").read_to_end(&mut stdout);
    let status = child.wait().expect("wait for child");
    let _ = writer.join();
    let stderr = err_thread.join().unwrap_or_default();
    Output { status, stdout, stderr }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        s.to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes in all)", &s[..end], s.len())
    }
}
