//! `coffer dump`: a set, a component or a subtree as a tar stream (POSIX pax), or a single
//! stored file as its raw bytes.
//!
//! Invariants:
//! - Paths in the archive are `component/…` as in a restore, so `coffer dump R SET | tar -x`
//!   gives the same tree as `coffer restore --target .`; a subtree keeps its full path.
//! - Parents come before their children (tar sets directory times after their contents). The
//!   walk is [`crate::treewalk`]'s: no recursion, a depth limit, and never more entries or bytes
//!   than the manifest declares for the component.
//! - Every chunk is streamed only at the length the tree claims for it, or the dump fails
//!   naming the file and the chunk.
//! - Every header is ustar; a pax extended header (`x`) precedes it when a value does not fit:
//!   a path or link target over 100 bytes or not ASCII, a size of 8 GiB or more, an mtime
//!   before 1970 or with nanoseconds. GNU tar and bsdtar read these.
//! - Content is streamed chunk by chunk; memory stays at one chunk. All-zero stretches of
//!   sparse files are streamed as zeros (no pax sparse map); a run of identical chunks, as
//!   zeros are, is read and checked once.
//! - Fifos and character/block devices are tar entries of their type with the device's
//!   major/minor numbers. Of a hard-link group (nodes with one `link` id), the first name
//!   dumped carries the content and each later one is a tar hard link to it, as `tar -c`
//!   writes them. Extended attributes (POSIX ACLs included) are pax `SCHILY.xattr.<name>`
//!   records, which GNU tar applies with `--xattrs` and bsdtar by default.
//! - Writing stops at the first error of the output: a closed pipe is returned as an
//!   [`Error::Io`] whose source is `BrokenPipe`, which the CLI treats as a quiet end.

use crate::error::{Error, Result};
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind, Tree};
use crate::treewalk::{self, Limits, Origin, Step};
use std::io::Write;
use std::path::PathBuf;

const BLOCK: usize = 512;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Archive entries written (0 for a raw file).
    pub entries: u64,
    /// File content bytes written.
    pub bytes: u64,
    /// True when PATH was a single file streamed raw.
    pub raw: bool,
}

fn out_err(e: std::io::Error) -> Error {
    Error::Io { path: PathBuf::from("<output>"), source: e }
}

/// Whether an error is the output pipe closing (`coffer dump | head`).
pub fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

struct Dumper<'a> {
    repo: &'a Repo,
    out: &'a mut dyn Write,
    report: Report,
    /// Hard-link groups of the component being dumped: link id → the archive path of the
    /// group's first name (ids are only unique within a component).
    links: std::collections::HashMap<u64, Vec<u8>>,
}

/// Writes `path` (`component[/sub/path]`, or the whole set when `None`) of a set to `out`.
pub fn dump(repo: &Repo, m: &Manifest, path: Option<&str>, out: &mut dyn Write) -> Result<Report> {
    let _lease = crate::lock::Lease::acquire_reader(repo, "dump", &mut |m| eprintln!("coffer: {m}"))?;
    let mut d = Dumper { repo, out, report: Report::default(), links: Default::default() };
    match path {
        None => {
            for c in &m.components {
                d.component(m, &c.name)?;
            }
        }
        Some(p) => {
            let parts = crate::restore::split_path(p)?;
            let full = parts.join("/");
            let (node, tree) = crate::browse::lookup(repo, m, &full)?;
            match (node, tree) {
                (Some(n), _) if n.kind == NodeKind::File => {
                    d.report.raw = true;
                    d.content(full.as_bytes(), &n)?;
                    d.out.flush().map_err(out_err)?;
                    return Ok(d.report);
                }
                (None, Some(_)) => d.component(m, &full)?,
                (Some(n), Some(t)) => {
                    d.entry(full.as_bytes(), &n)?;
                    let c =
                        m.component(parts[0]).ok_or_else(|| Error::NotFound(format!("no component {:?}", parts[0])))?;
                    d.tree(&Origin::new(m, &c.name), &Limits::declared(c), full.as_bytes(), parts.len() - 1, t)?;
                }
                (Some(n), None) => d.entry(full.as_bytes(), &n)?,
                (None, None) => return Err(Error::NotFound(format!("{p}: not in the set"))),
            }
        }
    }
    d.out.write_all(&[0u8; 2 * BLOCK]).map_err(out_err)?;
    d.out.flush().map_err(out_err)?;
    Ok(d.report)
}

impl Dumper<'_> {
    fn component(&mut self, m: &Manifest, name: &str) -> Result<()> {
        let c = m.component(name).ok_or_else(|| Error::NotFound(format!("the set has no component {name:?}")))?;
        self.links.clear();
        let mtime_ns = crate::clock::parse(&c.started).map(|t| t.unix_timestamp_nanos() as i64).unwrap_or(0);
        let (uid, gid) = crate::sys::ids();
        let dir = Node {
            name: name.as_bytes().to_vec(),
            kind: NodeKind::Dir,
            mode: 0o755,
            uid,
            gid,
            mtime_ns,
            size: 0,
            content: vec![],
            subtree: None,
            target: None,
            ..Node::default()
        };
        self.entry(name.as_bytes(), &dir)?;
        let tree = self.repo.read_tree(&c.root)?;
        self.tree(&Origin::new(m, name), &Limits::declared(c), name.as_bytes(), 0, tree)
    }

    /// Writes every entry under `t` (the tree at `prefix`, `depth` levels below its
    /// component's root), parents first, bounded by `limits`.
    fn tree(&mut self, origin: &Origin, limits: &Limits, prefix: &[u8], depth: usize, t: Tree) -> Result<()> {
        let repo = self.repo;
        treewalk::walk_from(
            t,
            prefix,
            depth,
            origin,
            limits,
            |id| repo.read_tree(id),
            |e| {
                self.entry(e.path, e.node)?;
                Ok(Step::Descend)
            },
        )?;
        Ok(())
    }

    /// One archive entry: pax header if needed, ustar header, content.
    fn entry(&mut self, path: &[u8], n: &Node) -> Result<()> {
        check_member_name(path)?;
        let mut name = path.to_vec();
        if n.kind == NodeKind::Dir {
            name.push(b'/');
        }
        let mut pax: Vec<u8> = Vec::new();
        if name.len() > 100 || !name.is_ascii() {
            pax_record(&mut pax, "path", &name);
        }
        // A later name of a hard-link group: a link to the first, without content.
        let first = n.link.and_then(|id| match self.links.get(&id) {
            Some(p) => Some(p.clone()),
            None => {
                self.links.insert(id, path.to_vec());
                None
            }
        });
        let target = match &first {
            Some(p) => p.as_slice(),
            None => n.target.as_deref().unwrap_or_default(),
        };
        let linked = n.kind == NodeKind::Symlink || first.is_some();
        if linked && (target.len() > 100 || !target.is_ascii()) {
            pax_record(&mut pax, "linkpath", target);
        }
        let size = if n.kind == NodeKind::File && first.is_none() { n.size } else { 0 };
        if size >= 8 << 30 {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
        }
        let (secs, nanos) = (n.mtime_ns.div_euclid(1_000_000_000), n.mtime_ns.rem_euclid(1_000_000_000));
        if nanos != 0 || secs < 0 {
            pax_record(&mut pax, "mtime", pax_time(secs, nanos).as_bytes());
        }
        for x in &n.xattrs {
            // A pax key ends at the first '=': such a name can't be written (Linux allows it,
            // no tool creates it).
            if !x.name.contains(&b'=') {
                pax_record(&mut pax, [b"SCHILY.xattr.", x.name.as_slice()].concat(), &x.value);
            }
        }
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            let mut xname = b"PaxHeaders/".to_vec();
            xname.extend_from_slice(&n.name);
            set_bytes(&mut h.as_old_mut().name, &xname);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_size(pax.len() as u64);
            h.set_mtime(secs.max(0) as u64);
            h.set_cksum();
            self.out.write_all(h.as_bytes()).map_err(out_err)?;
            self.out.write_all(&pax).map_err(out_err)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = tar::Header::new_ustar();
        set_bytes(&mut h.as_old_mut().name, &name);
        h.set_entry_type(match n.kind {
            _ if first.is_some() => tar::EntryType::Link,
            NodeKind::File => tar::EntryType::Regular,
            NodeKind::Dir => tar::EntryType::Directory,
            NodeKind::Symlink => tar::EntryType::Symlink,
            NodeKind::Fifo => tar::EntryType::Fifo,
            NodeKind::CharDevice => tar::EntryType::Char,
            NodeKind::BlockDevice => tar::EntryType::Block,
        });
        if linked {
            set_bytes(&mut h.as_old_mut().linkname, target);
        }
        if matches!(n.kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
            // ustar holds 7 octal digits per number (2^21), more than Linux's 12-bit majors
            // and 20-bit minors need.
            h.set_device_major(libc::major(n.rdev)).map_err(out_err)?;
            h.set_device_minor(libc::minor(n.rdev)).map_err(out_err)?;
        }
        h.set_mode(n.mode & 0o7777);
        h.set_uid(n.uid as u64);
        h.set_gid(n.gid as u64);
        h.set_mtime(secs.max(0) as u64);
        h.set_size(size);
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(out_err)?;
        self.report.entries += 1;
        if size > 0 {
            self.content(path, n)?;
            self.pad(n.size)?;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem]).map_err(out_err)?;
        }
        Ok(())
    }

    /// Streams a file's content; a chunk equal to the previous one is not read again, but
    /// every reference is checked against the length of the bytes it streams
    /// ([`crate::repo::check_claim`]): a tree may claim one chunk with two lengths.
    fn content(&mut self, path: &[u8], n: &Node) -> Result<()> {
        let file = || String::from_utf8_lossy(path).into_owned();
        let mut last: Option<(crate::id::ChunkId, Vec<u8>)> = None;
        for c in &n.content {
            let id = c.chunk_id();
            if last.as_ref().map(|(l, _)| *l != id).unwrap_or(true) {
                last = Some((id, self.repo.read_file_chunk(c, &file())?));
            }
            let (_, data) = last.as_ref().expect("set above");
            crate::repo::check_claim(c, data.len(), &file())?;
            self.out.write_all(data).map_err(out_err)?;
            self.report.bytes += data.len() as u64;
        }
        Ok(())
    }
}

/// A member name `tar -x` writes where it should: relative, and every component a plain name
/// (never `..`, `.` or empty). Names come from validated tree entries and component names, so
/// this holds by construction; it is checked again where the archive is written because a
/// violation would let `tar -x` write outside its directory.
fn check_member_name(path: &[u8]) -> Result<()> {
    if path.starts_with(b"/") || !path.split(|&b| b == b'/').all(crate::set::safe_name) {
        return Err(Error::Failed(format!(
            "refusing to write tar member {:?}: not a relative path of plain names",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(())
}

/// Copies `src` into a fixed header field, truncating (the pax header holds the full value).
fn set_bytes(field: &mut [u8], src: &[u8]) {
    let n = src.len().min(field.len());
    field[..n].copy_from_slice(&src[..n]);
}

/// Appends one pax record, `"<len> <key>=<value>\n"`, where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: impl AsRef<[u8]>, value: &[u8]) {
    let key = key.as_ref();
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} ").as_bytes());
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn pax_time(secs: i64, nanos: i64) -> String {
    if secs < 0 && nanos != 0 {
        // pax times are decimal: -1.25 is 1.25 s before the epoch.
        format!("-{}.{:09}", -(secs + 1), 1_000_000_000 - nanos)
    } else {
        format!("{secs}.{nanos:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for vlen in [0usize, 1, 5, 90, 94, 95, 96, 200, 995, 996, 5000] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'a'; vlen]);
            let s = String::from_utf8(out.clone()).unwrap();
            let declared: usize = s.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(declared, out.len(), "value length {vlen}");
        }
    }

    #[test]
    fn member_names_are_relative_plain_paths() {
        for ok in [&b"db"[..], b"src/a/b", b"src/\xff.txt"] {
            assert!(check_member_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [&b"/etc/passwd"[..], b"src/../../x", b"..", b"src/./a", b"src//a", b"", b"a/\0"] {
            assert!(check_member_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(5, 250_000_000), "5.250000000");
        assert_eq!(pax_time(-2, 750_000_000), "-1.250000000");
    }
}
