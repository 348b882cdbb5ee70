//! The plain-SQL side of the consistency check: SQL names, line reading with size caps, the
//! COPY text format and the streaming parser that pulls one table's rows out of a dump.

use super::*;

// ---------------------------------------------------------------------------------------------
// SQL names

/// A possibly schema-qualified table name, identifiers already case-folded/unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct QualifiedName {
    pub(super) schema: Option<String>,
    pub(super) name: String,
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
pub(super) fn quote_ident(s: &str) -> String {
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

pub(super) fn skip_ws(s: &[u8], pos: &mut usize) {
    while matches!(s.get(*pos), Some(b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')) {
        *pos += 1;
    }
}

/// Parses one SQL identifier at `pos`: `"quoted ""name"""` (exact) or unquoted (ASCII folded to
/// lower case, as PostgreSQL does).
pub(super) fn parse_ident(s: &[u8], pos: &mut usize) -> Option<String> {
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
pub(super) fn parse_qualified(s: &[u8], pos: &mut usize) -> Option<QualifiedName> {
    let mut parts = vec![parse_ident(s, pos)?];
    while parts.len() < 3 && s.get(*pos) == Some(&b'.') {
        *pos += 1;
        parts.push(parse_ident(s, pos)?);
    }
    let name = parts.pop().expect("at least one part");
    Some(QualifiedName { schema: parts.pop(), name })
}

/// The configured table name.
pub(super) fn parse_table_setting(table: &str) -> Result<QualifiedName> {
    let s = table.trim().as_bytes();
    let mut pos = 0;
    match parse_qualified(s, &mut pos) {
        Some(q) if pos == s.len() => Ok(q),
        _ => Err(Error::InvalidInput(format!(
            "consistency settings: table {table:?} is not a valid table name (expected name or schema.name)"
        ))),
    }
}

pub(super) fn starts_with_keyword(s: &[u8], pos: usize, kw: &str) -> bool {
    let kw = kw.as_bytes();
    s.len() >= pos + kw.len()
        && s[pos..pos + kw.len()].eq_ignore_ascii_case(kw)
        && !matches!(s.get(pos + kw.len()), Some(c) if c.is_ascii_alphanumeric() || *c == b'_')
}

pub(super) fn trim_end_ws(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    &s[..end]
}

/// Does this line start a `COPY` statement (of any table, in any direction)?
pub(super) fn is_copy(line: &[u8]) -> bool {
    let mut pos = 0;
    skip_ws(line, &mut pos);
    starts_with_keyword(line, pos, "copy")
}

/// Does this line end like `... FROM stdin;`, i.e. is data following it?
pub(super) fn ends_with_from_stdin(line: &[u8]) -> bool {
    let t = trim_end_ws(line);
    let Some(t) = t.strip_suffix(b";") else { return false };
    let t = trim_end_ws(t);
    t.len() >= 5 && t[t.len() - 5..].eq_ignore_ascii_case(b"stdin")
}

/// The table name of a `COPY` line (already known to be one).
pub(super) fn copy_target(line: &[u8]) -> Option<(QualifiedName, usize)> {
    let mut pos = 0;
    skip_ws(line, &mut pos);
    pos += 4; // COPY
    skip_ws(line, &mut pos);
    let name = parse_qualified(line, &mut pos)?;
    Some((name, pos))
}

/// Parses the rest of a `COPY name (col, ...) FROM stdin;` line after the name.
pub(super) fn copy_columns(line: &[u8], mut pos: usize) -> std::result::Result<Vec<String>, String> {
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
pub(super) fn is_insert_into(line: &[u8], target: &QualifiedName) -> bool {
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
pub(super) struct LineReader<R> {
    pub(super) r: R,
    /// Number of the line last returned (1-based).
    pub(super) lineno: u64,
    /// Byte offset of the next line.
    pub(super) offset: u64,
}

pub(super) struct LineMeta {
    /// Byte offset of the line's first byte.
    pub(super) offset: u64,
    /// The line was longer than `cap`; `buf` holds its first `cap` bytes.
    pub(super) truncated: bool,
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
pub(super) fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(super) fn is_end_of_copy(line: &[u8]) -> bool {
    strip_cr(line) == b"\\."
}

// ---------------------------------------------------------------------------------------------
// COPY text format

/// Splits a COPY text line on unescaped tabs into `(start, end)` byte ranges.
pub(super) fn split_fields(line: &[u8], out: &mut Vec<(usize, usize)>) {
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
pub(super) fn decode_field(raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), &'static str> {
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
pub(super) struct ColumnMap {
    pub(super) count: usize,
    pub(super) id: usize,
    pub(super) url: usize,
    pub(super) size: usize,
    pub(super) orphan: Option<usize>,
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

pub(super) fn show(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 80 {
        format!("{:?}…", s.chars().take(80).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

/// Decodes one data line into a row.
pub(super) fn decode_row(
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
pub(super) fn parse_plain_sql_labeled<R: BufRead>(
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
