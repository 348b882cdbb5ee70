//! Cross-component consistency of an Alfresco backup set.
//!
//! Alfresco keeps every document as a file `contentstore/YYYY/M/D/H/m/<uuid>.bin` and records
//! it in the PostgreSQL table `alf_content_url` (`id`, `content_url` such as
//! `store://2024/3/7/14/5/<uuid>.bin`, `content_url_short`, `content_url_crc`, `content_size`,
//! `orphan_time`). A set is consistent when every URL in the set's database dump has its file,
//! of `content_size` bytes, in the same set's contentstore.
//!
//! The rows come from the dump itself: a plain-SQL dump is streamed and the table's
//! `COPY ... FROM stdin;` block decoded ([`parse_plain_sql`]); custom, tar and directory
//! archives go through `pg_restore -a -t <table> -f -`, whose output is the same plain SQL
//! ([`rows_from_dump_file`]). A dump without the table is an error, never an empty (and so
//! trivially consistent) table.
//!
//! Limits of the plain-SQL reader, none of which pg_dump or pg_restore output hits:
//! statements are recognised line by line (a line inside a multi-line string literal that
//! looks exactly like `COPY <table> (...) FROM stdin;` would be taken for one), COPY options
//! (`WITH ...`, binary or CSV) are not supported, and neither is the legacy
//! backslash-newline escape inside COPY data.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use crate::error::{Error, IoContext, Result};

/// Component name used in [`Error::CommandFailed`] for helper commands run by this module.
const COMPONENT: &str = "consistency check";
/// Longest SQL statement line kept while looking for `COPY`; longer lines are skipped unread.
const STATEMENT_LINE_CAP: usize = 1 << 20;
/// Longest data line of the checked table (its columns are a few hundred bytes in Alfresco).
const ROW_LINE_CAP: usize = 16 << 20;
/// Enough of another table's data line to recognise the `\.` terminator.
const SKIP_LINE_CAP: usize = 8;
/// How much of a helper command's stderr is kept for the error message.
const STDERR_TAIL_BYTES: usize = 16 << 10;
const STDERR_TAIL_LINES: usize = 30;
/// Bytes read for format sniffing (the tar magic sits at offset 257).
const SNIFF_LEN: usize = 512;

/// Settings with Alfresco defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConsistencySettings {
    /// Table holding the content URLs: `name` (any schema) or `schema.name`; SQL identifier
    /// rules apply (unquoted names fold to lower case, `"Quoted"` names are exact).
    pub table: String,
    /// URL prefix of the file content store; the rest of the URL is the path under the
    /// contentstore directory.
    pub url_prefix: String,
    /// Command prefix that runs `pg_restore` (e.g. `["pg_restore"]`, or a wrapper).
    pub pg_restore: Vec<String>,
}

impl Default for ConsistencySettings {
    fn default() -> Self {
        ConsistencySettings {
            table: "alf_content_url".to_string(),
            url_prefix: "store://".to_string(),
            pg_restore: vec!["pg_restore".to_string()],
        }
    }
}

/// One row of `alf_content_url` (the columns the check needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentUrlRow {
    pub id: i64,
    pub content_url: String,
    pub content_size: u64,
    /// Set when Alfresco has marked the content orphaned (milliseconds since the epoch).
    pub orphan_time: Option<i64>,
}

mod copy;
pub use copy::parse_plain_sql;
use copy::*;

// ---------------------------------------------------------------------------------------------
// Dump formats and helper commands

/// Dump format sniffing: custom format starts with `PGDMP`; gzip (`1f 8b`) and zstd
/// (`28 b5 2f fd`) are compressed; tar has `ustar` at offset 257; anything else is taken for
/// plain SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    PlainSql,
    Custom,
    Gzip,
    Zstd,
    Tar,
}

/// Identifies a dump from its first bytes (pass at least 262 to recognise tar).
pub fn sniff(prefix: &[u8]) -> DumpFormat {
    if prefix.starts_with(b"PGDMP") {
        DumpFormat::Custom
    } else if prefix.starts_with(&[0x1f, 0x8b]) {
        DumpFormat::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        DumpFormat::Zstd
    } else if prefix.len() >= 262 && &prefix[257..262] == b"ustar" {
        DumpFormat::Tar
    } else {
        DumpFormat::PlainSql
    }
}

/// Reads up to `n` bytes (fewer only at EOF).
fn read_prefix(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Reads the rows from a dump of any supported format at `path`.
///
/// * plain SQL: streamed through [`parse_plain_sql`];
/// * custom (`-Fc`), tar (`-Ft`) and directory (`-Fd`, `path` is the directory): run
///   `<pg_restore...> -a -t <table> [-n <schema>] -f - <path>` and parse its stdout while it
///   runs;
/// * gzip / zstd: decompressed with `gzip -dc` / `zstd -dcq` (must be on `PATH`); the
///   decompressed stream may be plain SQL, or a custom or tar archive, which is then fed to
///   `pg_restore` on its stdin.
///
/// A helper command that fails (or cannot start) is [`Error::CommandFailed`] naming the
/// command and the tail of its stderr.
pub fn rows_from_dump_file(path: &Path, settings: &ConsistencySettings) -> Result<Vec<ContentUrlRow>> {
    let target = parse_table_setting(&settings.table)?;
    let meta = std::fs::metadata(path).ctx(path)?;
    if meta.is_dir() {
        return rows_via_pg_restore(Some(path), None, settings, &target, path).0;
    }
    let mut file = File::open(path).ctx(path)?;
    let prefix = read_prefix(&mut file, SNIFF_LEN).ctx(path)?;
    match sniff(&prefix) {
        DumpFormat::PlainSql => {
            file.seek(SeekFrom::Start(0)).ctx(path)?;
            parse_plain_sql_labeled(BufReader::with_capacity(1 << 20, file), settings, path)
        }
        DumpFormat::Custom | DumpFormat::Tar => rows_via_pg_restore(Some(path), None, settings, &target, path).0,
        DumpFormat::Gzip => rows_from_compressed(&["gzip", "-dc", "--"], path, settings, &target),
        DumpFormat::Zstd => rows_from_compressed(&["zstd", "-dcq", "--"], path, settings, &target),
    }
}

fn rows_from_compressed(
    decompressor: &[&str],
    path: &Path,
    settings: &ConsistencySettings,
    target: &QualifiedName,
) -> Result<Vec<ContentUrlRow>> {
    let mut argv: Vec<OsString> = decompressor.iter().map(OsString::from).collect();
    argv.push(path.as_os_str().to_owned());
    let mut dec = Spawned::start(&argv, Stdio::null())?;
    let mut stdout = dec.stdout.take().expect("piped");
    let prefix = match read_prefix(&mut stdout, SNIFF_LEN) {
        Ok(p) => p,
        Err(e) => {
            drop(stdout);
            dec.finish(true)?;
            return Err(Error::Io { path: path.to_path_buf(), source: e });
        }
    };
    let stream = Cursor::new(prefix.clone()).chain(stdout);
    let label = PathBuf::from(format!("{} (decompressed)", path.display()));
    let (result, stopped_early) = match sniff(&prefix) {
        DumpFormat::PlainSql => {
            let mut rdr = EofTrack { inner: BufReader::with_capacity(1 << 20, stream), eof: false };
            let res = parse_plain_sql_labeled(&mut rdr, settings, &label);
            let early = res.is_err() && !rdr.eof;
            drop(rdr);
            (res, early)
        }
        DumpFormat::Custom | DumpFormat::Tar => {
            let feed: Box<dyn Read + Send> = Box::new(stream);
            rows_via_pg_restore(None, Some(feed), settings, target, path)
        }
        other => {
            drop(stream);
            dec.finish(true)?;
            return Err(Error::InvalidInput(format!(
                "{}: compressed dump holds a {other:?} stream; only plain SQL, custom and tar dumps are supported inside compression",
                path.display()
            )));
        }
    };
    // The decompressor's stdout is closed by now, so it cannot block; a failure of its own
    // (corrupt input) is the root cause of whatever the parser saw at the end of the stream.
    dec.finish(stopped_early)?;
    result
}

/// Runs pg_restore on `file` (or on `feed` through its stdin) and parses its output.
/// The flag tells whether parsing failed before the end of the output (pg_restore was then
/// killed, and `feed` dropped unread).
fn rows_via_pg_restore(
    file: Option<&Path>,
    feed: Option<Box<dyn Read + Send>>,
    settings: &ConsistencySettings,
    target: &QualifiedName,
    dump: &Path,
) -> (Result<Vec<ContentUrlRow>>, bool) {
    if settings.pg_restore.is_empty() {
        return (Err(Error::InvalidInput("consistency settings: pg_restore command is empty".into())), true);
    }
    let mut argv: Vec<OsString> = settings.pg_restore.iter().map(OsString::from).collect();
    argv.extend(["-a", "-t"].map(OsString::from));
    argv.push(target.name.clone().into());
    if let Some(schema) = &target.schema {
        argv.push("-n".into());
        argv.push(schema.clone().into());
    }
    argv.extend(["-f", "-"].map(OsString::from));
    if let Some(f) = file {
        argv.push(f.as_os_str().to_owned());
    }
    let stdin = if feed.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut child = match Spawned::start(&argv, stdin) {
        Ok(c) => c,
        Err(e) => return (Err(e), true),
    };
    let feeder = feed.map(|mut feed| {
        let mut stdin = child.child.stdin.take().expect("piped");
        std::thread::spawn(move || {
            // An error here means pg_restore stopped reading: its status tells why.
            let _ = io::copy(&mut feed, &mut stdin);
        })
    });
    let label = PathBuf::from(format!("{} (pg_restore output)", dump.display()));
    let mut rdr =
        EofTrack { inner: BufReader::with_capacity(1 << 20, child.stdout.take().expect("piped")), eof: false };
    let result = parse_plain_sql_labeled(&mut rdr, settings, &label);
    let early = result.is_err() && !rdr.eof;
    drop(rdr);
    let status = child.finish(early);
    if let Some(f) = feeder {
        let _ = f.join();
    }
    match status {
        Err(e) => (Err(e), early),
        Ok(()) => (result, early),
    }
}

/// A `BufRead` that remembers whether it reached end of input.
struct EofTrack<R> {
    inner: R,
    eof: bool,
}

impl<R: BufRead> Read for EofTrack<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

impl<R: BufRead> BufRead for EofTrack<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let b = self.inner.fill_buf()?;
        if b.is_empty() {
            self.eof = true;
        }
        Ok(b)
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n)
    }
}

/// A helper command with stdout piped to us and stderr collected in the background.
struct Spawned {
    child: Child,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    display: String,
}

impl Spawned {
    fn start(argv: &[OsString], stdin: Stdio) -> Result<Spawned> {
        let display = display_argv(argv);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| Error::CommandFailed {
            component: COMPONENT.into(),
            command: display.clone(),
            status: format!("could not be started: {e}"),
            stderr: "(is it installed and on PATH? pg_restore comes with the PostgreSQL client, \
                     e.g. `apt-get install -y postgresql-client`)"
                .into(),
        })?;
        let stdout = child.stdout.take();
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut b = [0u8; 8192];
            loop {
                match err.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => {
                        tail.extend_from_slice(&b[..n]);
                        if tail.len() > 2 * STDERR_TAIL_BYTES {
                            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if tail.len() > STDERR_TAIL_BYTES {
                tail.drain(..tail.len() - STDERR_TAIL_BYTES);
            }
            tail
        });
        Ok(Spawned { child, stdout, stderr: Some(stderr), display })
    }

    /// Waits for the command. With `kill` (we stopped reading its output early and already
    /// have an error to report) it is killed first and its status ignored; otherwise a
    /// failure is an error, except death by SIGPIPE (its reader went away on purpose).
    fn finish(mut self, kill: bool) -> Result<()> {
        drop(self.stdout.take());
        if kill {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if kill {
            return Ok(());
        }
        let status = status.map_err(|e| Error::CommandFailed {
            component: COMPONENT.into(),
            command: self.display.clone(),
            status: format!("could not be waited for: {e}"),
            stderr: String::new(),
        })?;
        if status.success() || killed_by_sigpipe(&status) {
            return Ok(());
        }
        Err(Error::CommandFailed {
            component: COMPONENT.into(),
            command: self.display.clone(),
            status: status.to_string(),
            stderr: stderr_tail(&stderr),
        })
    }
}

#[cfg(unix)]
fn killed_by_sigpipe(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(13)
}

#[cfg(not(unix))]
fn killed_by_sigpipe(_status: &ExitStatus) -> bool {
    false
}

fn stderr_tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.trim().is_empty() {
        return "(nothing on stderr)".to_string();
    }
    let lines: Vec<&str> = s.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..].join("\n")
}

/// The argv as a shell-like string for messages.
fn display_argv(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&c)) {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// The check

/// `store://2024/3/7/14/5/x.bin` -> `Some("2024/3/7/14/5/x.bin")`. Rejects other prefixes,
/// empty, absolute and non-normal paths (`.`/`..`/empty components, NUL).
pub fn url_to_relpath(url: &str, prefix: &str) -> Option<String> {
    let rest = url.strip_prefix(prefix)?;
    if rest.is_empty() || rest.contains('\0') {
        return None;
    }
    if rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return None;
    }
    Some(rest.to_string())
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConsistencyReport {
    /// Rows of the content URL table in the dump.
    pub rows: u64,
    /// Regular files in the contentstore component.
    pub files_on_disk: u64,
    /// URLs of live (not orphaned) rows whose file is not in the contentstore, sorted.
    pub missing: Vec<String>,
    /// Files present with a size other than the row's `content_size` (orphaned rows too), sorted by URL.
    pub size_mismatch: Vec<SizeMismatch>,
    /// Files no row refers to (written after the dump was taken, or litter).
    pub unknown_files: u64,
    /// Up to 10 of them (the smallest relative paths).
    pub unknown_examples: Vec<String>,
    /// Rows with `orphan_time` set; their files may already be gone, which is not an error.
    pub orphaned_rows: u64,
    /// URLs that do not map to a contentstore path (other prefix, `..`, ...), sorted.
    pub bad_urls: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct SizeMismatch {
    pub url: String,
    pub expected: u64,
    pub actual: u64,
}

const UNKNOWN_EXAMPLES: usize = 10;
const SUMMARY_EXAMPLES: usize = 10;

impl ConsistencyReport {
    /// No missing file, no size mismatch and no bad URL (unknown files are fine: they are
    /// content written after the database dump was taken).
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.size_mismatch.is_empty() && self.bad_urls.is_empty()
    }

    /// A multi-line human summary, with up to 10 examples of each problem.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.is_ok() { "consistent" } else { "INCONSISTENT" };
        s.push_str(&format!("database/contentstore consistency: {verdict}\n"));
        s.push_str(&format!("  content URL rows:     {} ({} orphaned)\n", self.rows, self.orphaned_rows));
        s.push_str(&format!("  contentstore files:   {}\n", self.files_on_disk));
        s.push_str(&format!("  missing files:        {}\n", self.missing.len()));
        s.push_str(&format!("  size mismatches:      {}\n", self.size_mismatch.len()));
        s.push_str(&format!("  unusable URLs:        {}\n", self.bad_urls.len()));
        s.push_str(&format!("  unreferenced files:   {}\n", self.unknown_files));
        let more = |s: &mut String, total: usize| {
            if total > SUMMARY_EXAMPLES {
                s.push_str(&format!("    ... and {} more\n", total - SUMMARY_EXAMPLES));
            }
        };
        if !self.missing.is_empty() {
            s.push_str("missing files:\n");
            for u in self.missing.iter().take(SUMMARY_EXAMPLES) {
                s.push_str(&format!("    {u:?}\n"));
            }
            more(&mut s, self.missing.len());
        }
        if !self.size_mismatch.is_empty() {
            s.push_str("size mismatches:\n");
            for m in self.size_mismatch.iter().take(SUMMARY_EXAMPLES) {
                s.push_str(&format!("    {:?}: database says {} bytes, file has {}\n", m.url, m.expected, m.actual));
            }
            more(&mut s, self.size_mismatch.len());
        }
        if !self.bad_urls.is_empty() {
            s.push_str("unusable URLs (not a relative path under the configured prefix):\n");
            for u in self.bad_urls.iter().take(SUMMARY_EXAMPLES) {
                s.push_str(&format!("    {u:?}\n"));
            }
            more(&mut s, self.bad_urls.len());
        }
        if !self.unknown_examples.is_empty() {
            s.push_str("unreferenced files (fine if written after the dump), e.g.:\n");
            for p in &self.unknown_examples {
                s.push_str(&format!("    {p:?}\n"));
            }
            more(&mut s, self.unknown_files as usize);
        }
        s
    }
}

/// Classifies every row against the contentstore.
///
/// `files` = every regular file in the contentstore component as (path relative to the
/// contentstore root with `/` separators, size). A live row without its file is `missing`;
/// an orphaned row (`orphan_time` set) without its file is only counted (the content store
/// cleaner may have moved it to `contentstore.deleted`), but a present file is size-checked
/// either way.
pub fn check(
    rows: &[ContentUrlRow],
    files: &HashMap<String, u64>,
    settings: &ConsistencySettings,
) -> ConsistencyReport {
    let mut report =
        ConsistencyReport { rows: rows.len() as u64, files_on_disk: files.len() as u64, ..Default::default() };
    let mut referenced: HashSet<&str> = HashSet::with_capacity(rows.len().min(files.len()));
    for row in rows {
        let orphan = row.orphan_time.is_some();
        if orphan {
            report.orphaned_rows += 1;
        }
        let Some(rel) = url_to_relpath(&row.content_url, &settings.url_prefix) else {
            report.bad_urls.push(row.content_url.clone());
            continue;
        };
        match files.get_key_value(rel.as_str()) {
            Some((key, &actual)) => {
                referenced.insert(key.as_str());
                if actual != row.content_size {
                    report.size_mismatch.push(SizeMismatch {
                        url: row.content_url.clone(),
                        expected: row.content_size,
                        actual,
                    });
                }
            }
            None if orphan => {}
            None => report.missing.push(row.content_url.clone()),
        }
    }
    report.missing.sort();
    report.bad_urls.sort();
    report.size_mismatch.sort_by(|a, b| a.url.cmp(&b.url));
    let mut unknown: Vec<&str> = files.keys().map(String::as_str).filter(|k| !referenced.contains(k)).collect();
    report.unknown_files = unknown.len() as u64;
    if unknown.len() > UNKNOWN_EXAMPLES {
        unknown.select_nth_unstable(UNKNOWN_EXAMPLES);
        unknown.truncate(UNKNOWN_EXAMPLES);
    }
    unknown.sort_unstable();
    report.unknown_examples = unknown.into_iter().map(str::to_string).collect();
    report
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests;
