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

// ---------------------------------------------------------------------------------------------
// SQL names

/// A possibly schema-qualified table name, identifiers already case-folded/unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QualifiedName {
    schema: Option<String>,
    name: String,
}

impl QualifiedName {
    /// Does a name found in the dump denote the configured table? A configured name without a
    /// schema matches any schema; a found name without a schema (old pg_dump relying on
    /// `search_path`) matches any configured schema.
    fn matches(&self, found: &QualifiedName) -> bool {
        self.name == found.name
            && match (&self.schema, &found.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{}.{}", quote_ident(s), quote_ident(&self.name)),
            None => f.write_str(&quote_ident(&self.name)),
        }
    }
}

/// Quotes an identifier when it would not survive unquoted.
fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && !s.starts_with('$')
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$' || c >= 0x80);
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

fn skip_ws(s: &[u8], pos: &mut usize) {
    while matches!(s.get(*pos), Some(b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')) {
        *pos += 1;
    }
}

/// Parses one SQL identifier at `pos`: `"quoted ""name"""` (exact) or unquoted (ASCII folded to
/// lower case, as PostgreSQL does).
fn parse_ident(s: &[u8], pos: &mut usize) -> Option<String> {
    let start = *pos;
    if s.get(start) == Some(&b'"') {
        let mut out = Vec::new();
        let mut i = start + 1;
        loop {
            match s.get(i) {
                None => return None,
                Some(b'"') if s.get(i + 1) == Some(&b'"') => {
                    out.push(b'"');
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        if out.is_empty() {
            return None;
        }
        *pos = i;
        Some(String::from_utf8_lossy(&out).into_owned())
    } else {
        let first = *s.get(start)?;
        if !(first.is_ascii_alphabetic() || first == b'_' || first >= 0x80) {
            return None;
        }
        let mut i = start;
        while let Some(&c) = s.get(i) {
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
                i += 1;
            } else {
                break;
            }
        }
        *pos = i;
        Some(String::from_utf8_lossy(&s[start..i]).to_ascii_lowercase())
    }
}

/// `ident(.ident){0,2}`; the last part is the table, the one before it the schema.
fn parse_qualified(s: &[u8], pos: &mut usize) -> Option<QualifiedName> {
    let mut parts = vec![parse_ident(s, pos)?];
    while parts.len() < 3 && s.get(*pos) == Some(&b'.') {
        *pos += 1;
        parts.push(parse_ident(s, pos)?);
    }
    let name = parts.pop().expect("at least one part");
    Some(QualifiedName { schema: parts.pop(), name })
}

/// The configured table name.
fn parse_table_setting(table: &str) -> Result<QualifiedName> {
    let s = table.trim().as_bytes();
    let mut pos = 0;
    match parse_qualified(s, &mut pos) {
        Some(q) if pos == s.len() => Ok(q),
        _ => Err(Error::InvalidInput(format!(
            "consistency settings: table {table:?} is not a valid table name (expected name or schema.name)"
        ))),
    }
}

fn starts_with_keyword(s: &[u8], pos: usize, kw: &str) -> bool {
    let kw = kw.as_bytes();
    s.len() >= pos + kw.len()
        && s[pos..pos + kw.len()].eq_ignore_ascii_case(kw)
        && !matches!(s.get(pos + kw.len()), Some(c) if c.is_ascii_alphanumeric() || *c == b'_')
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    &s[..end]
}

/// Does this line start a `COPY` statement (of any table, in any direction)?
fn is_copy(line: &[u8]) -> bool {
    let mut pos = 0;
    skip_ws(line, &mut pos);
    starts_with_keyword(line, pos, "copy")
}

/// Does this line end like `... FROM stdin;`, i.e. is data following it?
fn ends_with_from_stdin(line: &[u8]) -> bool {
    let t = trim_end_ws(line);
    let Some(t) = t.strip_suffix(b";") else { return false };
    let t = trim_end_ws(t);
    t.len() >= 5 && t[t.len() - 5..].eq_ignore_ascii_case(b"stdin")
}

/// The table name of a `COPY` line (already known to be one).
fn copy_target(line: &[u8]) -> Option<(QualifiedName, usize)> {
    let mut pos = 0;
    skip_ws(line, &mut pos);
    pos += 4; // COPY
    skip_ws(line, &mut pos);
    let name = parse_qualified(line, &mut pos)?;
    Some((name, pos))
}

/// Parses the rest of a `COPY name (col, ...) FROM stdin;` line after the name.
fn copy_columns(line: &[u8], mut pos: usize) -> std::result::Result<Vec<String>, String> {
    skip_ws(line, &mut pos);
    if line.get(pos) != Some(&b'(') {
        return Err("COPY statement has no column list".into());
    }
    pos += 1;
    let mut cols = Vec::new();
    loop {
        skip_ws(line, &mut pos);
        let col = parse_ident(line, &mut pos).ok_or("cannot parse the COPY column list")?;
        cols.push(col);
        skip_ws(line, &mut pos);
        match line.get(pos) {
            Some(b',') => pos += 1,
            Some(b')') => {
                pos += 1;
                break;
            }
            _ => return Err("cannot parse the COPY column list".into()),
        }
    }
    skip_ws(line, &mut pos);
    if !starts_with_keyword(line, pos, "from") {
        return Err("expected FROM stdin after the COPY column list".into());
    }
    pos += 4;
    skip_ws(line, &mut pos);
    if !starts_with_keyword(line, pos, "stdin") {
        return Err("expected FROM stdin after the COPY column list".into());
    }
    pos += 5;
    skip_ws(line, &mut pos);
    if line.get(pos) != Some(&b';') {
        return Err("COPY options are not supported (expected `FROM stdin;`)".into());
    }
    pos += 1;
    skip_ws(line, &mut pos);
    if pos != line.len() {
        return Err("unexpected text after `FROM stdin;`".into());
    }
    Ok(cols)
}

/// `INSERT INTO <table>` for the configured table (a dump made with `--inserts`).
fn is_insert_into(line: &[u8], target: &QualifiedName) -> bool {
    let mut pos = 0;
    skip_ws(line, &mut pos);
    if !starts_with_keyword(line, pos, "insert") {
        return false;
    }
    pos += 6;
    skip_ws(line, &mut pos);
    if !starts_with_keyword(line, pos, "into") {
        return false;
    }
    pos += 4;
    skip_ws(line, &mut pos);
    parse_qualified(line, &mut pos).is_some_and(|n| target.matches(&n))
}

// ---------------------------------------------------------------------------------------------
// Line reading

/// Reads `\n`-terminated lines without ever holding more than `cap` bytes of one.
struct LineReader<R> {
    r: R,
    /// Number of the line last returned (1-based).
    lineno: u64,
    /// Byte offset of the next line.
    offset: u64,
}

struct LineMeta {
    /// Byte offset of the line's first byte.
    offset: u64,
    /// The line was longer than `cap`; `buf` holds its first `cap` bytes.
    truncated: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(r: R) -> Self {
        LineReader { r, lineno: 0, offset: 0 }
    }

    /// Next line, without its `\n`, into `buf` (at most `cap` bytes kept). `None` at EOF.
    fn next_line(&mut self, buf: &mut Vec<u8>, cap: usize) -> io::Result<Option<LineMeta>> {
        buf.clear();
        let start = self.offset;
        let mut any = false;
        let mut truncated = false;
        loop {
            let avail = match self.r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                self.lineno += 1;
                return Ok(Some(LineMeta { offset: start, truncated }));
            }
            any = true;
            let (chunk_len, used, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(p) => (p, p + 1, true),
                None => (avail.len(), avail.len(), false),
            };
            let room = cap.saturating_sub(buf.len());
            if chunk_len > room {
                truncated = true;
                buf.extend_from_slice(&avail[..room]);
            } else {
                buf.extend_from_slice(&avail[..chunk_len]);
            }
            self.r.consume(used);
            self.offset += used as u64;
            if found {
                self.lineno += 1;
                return Ok(Some(LineMeta { offset: start, truncated }));
            }
        }
    }
}

/// Drops one trailing `\r` (CRLF dumps).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_end_of_copy(line: &[u8]) -> bool {
    strip_cr(line) == b"\\."
}

// ---------------------------------------------------------------------------------------------
// COPY text format

/// Splits a COPY text line on unescaped tabs into `(start, end)` byte ranges.
fn split_fields(line: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'\t' => {
                out.push((start, i));
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push((start, line.len()));
}

/// Decodes one COPY text field (not `\N`) the way PostgreSQL's COPY FROM does.
fn decode_field(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), &'static str> {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err("backslash at the end of a line (backslash-newline is not supported)");
        };
        i += 1;
        match e {
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match raw.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push(if n == 0 { b'x' } else { v as u8 });
            }
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            other => out.push(other),
        }
    }
    Ok(())
}

/// Where the needed columns sit in the COPY column list.
struct ColumnMap {
    count: usize,
    id: usize,
    url: usize,
    size: usize,
    orphan: Option<usize>,
}

impl ColumnMap {
    fn new(cols: &[String]) -> std::result::Result<ColumnMap, String> {
        let mut seen = HashSet::new();
        for c in cols {
            if !seen.insert(c.as_str()) {
                return Err(format!("column {c:?} appears twice in the COPY column list"));
            }
        }
        let find = |name: &str| cols.iter().position(|c| c == name);
        let missing: Vec<&str> =
            ["id", "content_url", "content_size"].into_iter().filter(|n| find(n).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!("COPY column list ({}) lacks column(s) {}", cols.join(", "), missing.join(", ")));
        }
        Ok(ColumnMap {
            count: cols.len(),
            id: find("id").expect("checked"),
            url: find("content_url").expect("checked"),
            size: find("content_size").expect("checked"),
            orphan: find("orphan_time"),
        })
    }
}

fn show(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 80 {
        format!("{:?}…", s.chars().take(80).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

/// Decodes one data line into a row.
fn decode_row(
    line: &[u8],
    map: &ColumnMap,
    ranges: &mut Vec<(usize, usize)>,
    scratch: &mut Vec<u8>,
) -> std::result::Result<ContentUrlRow, String> {
    split_fields(line, ranges);
    let parts = &*ranges;
    if parts.len() != map.count {
        return Err(format!("expected {} tab-separated fields, found {}", map.count, parts.len()));
    }
    let text = |idx: usize, col: &str, scratch: &mut Vec<u8>| -> std::result::Result<Option<String>, String> {
        let (a, b) = parts[idx];
        let raw = &line[a..b];
        if raw == b"\\N" {
            return Ok(None);
        }
        decode_field(raw, scratch).map_err(|e| format!("column {col}: {e}"))?;
        match std::str::from_utf8(scratch) {
            Ok(s) => Ok(Some(s.to_string())),
            Err(_) => Err(format!("column {col}: value {} is not valid UTF-8", show(scratch))),
        }
    };
    let int = |idx: usize, col: &str, scratch: &mut Vec<u8>| -> std::result::Result<Option<i64>, String> {
        match text(idx, col, scratch)? {
            None => Ok(None),
            Some(s) => s
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("column {col}: expected a bigint, found {}", show(s.as_bytes()))),
        }
    };
    let id = int(map.id, "id", scratch)?.ok_or("column id is NULL")?;
    let content_url = text(map.url, "content_url", scratch)?.ok_or("column content_url is NULL")?;
    let size = int(map.size, "content_size", scratch)?.ok_or("column content_size is NULL")?;
    let content_size = u64::try_from(size).map_err(|_| format!("column content_size is negative ({size})"))?;
    let orphan_time = match map.orphan {
        Some(idx) => int(idx, "orphan_time", scratch)?,
        None => None,
    };
    Ok(ContentUrlRow { id, content_url, content_size, orphan_time })
}

// ---------------------------------------------------------------------------------------------
// Plain SQL

/// Streams a plain-SQL pg_dump: finds `COPY <schema.>table (col, ...) FROM stdin;` for the
/// configured table (schema optional, quoted identifiers allowed), maps columns by name
/// (column order may differ; `id`, `content_url` and `content_size` are required,
/// `orphan_time` is optional), decodes COPY text format (tab separated, `\N` null, backslash
/// escapes `\t \n \\ \r \b \f \v \ooo \xHH`), and stops the block at `\.`.
///
/// The whole input is read (never slurped: at most one line of the table, or 1 MiB of a
/// statement line, is held). Errors: the table missing from the dump is
/// [`Error::NotFound`]; the table appearing twice (two schemas, or a `pg_dumpall` with two
/// databases) is [`Error::InvalidInput`] unless the setting names the schema; malformed data
/// and a COPY block cut off by end of input are [`Error::Corrupt`] naming the line.
pub fn parse_plain_sql<R: BufRead>(r: R, settings: &ConsistencySettings) -> Result<Vec<ContentUrlRow>> {
    parse_plain_sql_labeled(r, settings, Path::new("<dump>"))
}

/// [`parse_plain_sql`] with `label` as the path named in errors.
fn parse_plain_sql_labeled<R: BufRead>(
    r: R,
    settings: &ConsistencySettings,
    label: &Path,
) -> Result<Vec<ContentUrlRow>> {
    let target = parse_table_setting(&settings.table)?;
    let corrupt = |offset: u64, line: u64, what: String| Error::corrupt(label, offset, format!("line {line}: {what}"));

    let mut lines = LineReader::new(r);
    let mut buf = Vec::new();
    let mut rows = Vec::new();
    let mut found: Option<(QualifiedName, u64)> = None;
    let mut saw_insert = false;
    let mut fields = Vec::new();
    let mut scratch = Vec::new();

    while let Some(meta) = lines.next_line(&mut buf, STATEMENT_LINE_CAP).ctx(label)? {
        let line = buf.as_slice();
        if !is_copy(line) {
            if !saw_insert && found.is_none() && is_insert_into(line, &target) {
                saw_insert = true;
            }
            continue;
        }
        let header_line = lines.lineno;
        if meta.truncated {
            return Err(corrupt(meta.offset, header_line, "COPY statement line longer than 1 MiB".into()));
        }
        let has_data = ends_with_from_stdin(line);
        let target_name = copy_target(line);
        let (name, after_name) = match target_name {
            Some((name, after)) if target.matches(&name) => (name, after),
            None if has_data => {
                return Err(corrupt(meta.offset, header_line, "cannot parse the table name of a COPY statement".into()))
            }
            _ if has_data => {
                // Another table's data: skip to its terminator without keeping its lines.
                loop {
                    match lines.next_line(&mut buf, SKIP_LINE_CAP).ctx(label)? {
                        Some(_) if is_end_of_copy(&buf) => break,
                        Some(_) => {}
                        None => {
                            return Err(corrupt(
                                lines.offset,
                                header_line,
                                "COPY block starting here has no `\\.` terminator (truncated dump?)".into(),
                            ))
                        }
                    }
                }
                continue;
            }
            // `COPY (query) TO ...` or some other table's COPY without inline data.
            _ => continue,
        };
        if let Some((prev, prev_line)) = &found {
            let hint = if *prev == name {
                "a dump of several databases (pg_dumpall)? Dump the Alfresco database alone"
            } else {
                "set the consistency table setting to schema.table"
            };
            return Err(Error::InvalidInput(format!(
                "{}: table {} appears twice in the dump ({prev} at line {prev_line}, {name} at line {header_line}); {hint}",
                label.display(),
                settings.table,
            )));
        }
        let cols = copy_columns(line, after_name).map_err(|e| corrupt(meta.offset, header_line, e))?;
        let map = ColumnMap::new(&cols).map_err(|e| corrupt(meta.offset, header_line, e))?;
        loop {
            let Some(meta) = lines.next_line(&mut buf, ROW_LINE_CAP).ctx(label)? else {
                return Err(corrupt(
                    lines.offset,
                    header_line,
                    format!("COPY block of {name} starting here has no `\\.` terminator (truncated dump?)"),
                ));
            };
            let n = lines.lineno;
            if meta.truncated {
                return Err(corrupt(meta.offset, n, format!("data line of {name} longer than 16 MiB")));
            }
            if is_end_of_copy(&buf) {
                break;
            }
            let row =
                decode_row(strip_cr(&buf), &map, &mut fields, &mut scratch).map_err(|e| corrupt(meta.offset, n, e))?;
            rows.push(row);
        }
        found = Some((name, header_line));
    }

    if found.is_none() {
        let hint = if saw_insert {
            "the dump holds INSERT statements for it (pg_dump --inserts / --column-inserts); \
             coffer reads COPY data only, dump without those options"
        } else {
            "no `COPY ... FROM stdin;` block for it: a schema-only dump, an excluded table, \
             or the wrong database or table setting?"
        };
        return Err(Error::NotFound(format!(
            "{}: table {} not found in dump ({hint})",
            label.display(),
            settings.table
        )));
    }
    Ok(rows)
}

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
mod tests {
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
        let dump =
            "SET x = 1;\r\nCOPY public.alf_content_url (id, content_url, content_size, orphan_time) FROM stdin;\r\n\
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
        let script =
            "printf 'COPY alf_content_url (id, content_url, content_size) FROM stdin;\\nx\\ty\\tz\\n'; exec yes";
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
}
