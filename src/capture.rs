//! Components that capture themselves plug into a backup through [`Capture`]: a command's
//! standard output (a database dump) and a Solr snapshot. Directory trees are handled by the
//! orchestrator directly.
//!
//! A command component fails the whole set when the command cannot start, exits non-zero or
//! dies from a signal; its stderr tail goes into the error. A Solr component fails when no
//! complete snapshot can be had, or when the snapshot changed while it was being read.

use crate::chunker::Params;
use crate::content;
use crate::error::{Error, Result};
use crate::id::TreeId;
use crate::pack::BlobKind;
use crate::set::{CommandRecord, Component, ComponentKind, SolrRecord};
use crate::sink::Sink;
use crate::solr::SolrSource;
use crate::tree::{Node, NodeKind, Tree};
use crate::walk::Walker;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;

/// What a capture gets to work with.
pub struct Context<'a> {
    pub sink: &'a Sink<'a>,
    pub params: Params,
    pub scan_start_ns: i64,
    pub notify: &'a (dyn Fn(String) + Send + Sync),
}

pub trait Capture: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    /// Captures the component; `started`/`finished` are filled in by the orchestrator.
    fn capture(&self, cx: &Context) -> Result<Component>;
}

fn store_tree(cx: &Context, mut t: Tree) -> Result<(TreeId, u64)> {
    t.sort();
    let (id, n) = cx.sink.store(BlobKind::Tree, &t.encode())?;
    Ok((TreeId(id.0), n))
}

/// Bytes of stderr kept for the manifest and error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// Keeps the first bytes of a stream for format sniffing while passing it through.
struct Sniffer<R> {
    inner: R,
    head: Vec<u8>,
}

impl<R: Read> Read for Sniffer<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.head.len() < 64 {
            let take = (64 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// Why a dump stream defeats deduplication between nights, if it does.
pub fn compressed_stream_warning(head: &[u8]) -> Option<String> {
    let advice = "compressed dumps change almost entirely from night to night, so nothing deduplicates; dump uncompressed (pg_dump -Fc -Z0, or plain SQL) and let coffer compress";
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some(format!("the stream is gzip-compressed: {advice}"));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(format!("the stream is zstd-compressed: {advice}"));
    }
    if head.starts_with(b"PGDMP") && head.len() >= 11 {
        // Custom-format header: magic, version major/minor/rev, intSize, offSize, format,
        // then (archive 1.15+, PostgreSQL 16) a compression algorithm byte, or (older) the
        // compression level as an int: sign byte + intSize little-endian bytes.
        let (major, minor, int_size) = (head[5], head[6], head[8] as usize);
        let compressed = if (major, minor) >= (1, 15) {
            head.get(11).is_some_and(|&a| a != 0)
        } else {
            head.get(12..12 + int_size.min(8)).is_some_and(|b| b.iter().any(|&x| x != 0))
        };
        if compressed {
            return Some(format!("the custom-format dump is compressed: {advice}"));
        }
    }
    None
}

#[derive(Debug)]
pub struct CommandCapture {
    pub name: String,
    pub argv: Vec<String>,
    pub file: String,
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Capture for CommandCapture {
    fn name(&self) -> &str {
        &self.name
    }

    fn capture(&self, cx: &Context) -> Result<Component> {
        let cmdline = shell_words(&self.argv);
        let fail = |status: String, stderr: String| Error::CommandFailed {
            component: self.name.clone(),
            command: cmdline.clone(),
            status,
            stderr,
        };
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
        let mut err_pipe = child.stderr.take().expect("piped");
        let stderr_thread = std::thread::spawn(move || {
            let mut tail: Vec<u8> = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
            let start = tail.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&tail[start..]).into_owned()
        });
        let mut sniff = Sniffer { inner: child.stdout.take().expect("piped"), head: Vec::new() };
        let stored = content::store_stream(cx.sink, cx.params, &mut sniff, &format!("component {:?}", self.name));
        if stored.is_err() {
            // Don't leave the command blocked on a full pipe.
            let _ = child.kill();
        }
        let status = child.wait().map_err(|e| fail(format!("wait failed: {e}"), String::new()))?;
        let stderr_tail = stderr_thread.join().unwrap_or_default();
        if !status.success() {
            let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(c), _) => format!("exit status {c}"),
                (None, Some(s)) => format!("killed by signal {s}"),
                _ => "failed".into(),
            };
            return Err(fail(how, stderr_tail));
        }
        let stored = stored?;
        let warning = compressed_stream_warning(&sniff.head);
        if let Some(w) = &warning {
            (cx.notify)(format!("warning: component {:?}: {w}", self.name));
        }
        let (uid, gid) = crate::sys::ids();
        let mtime_ns = i64::try_from(crate::clock::unix_nanos(time::OffsetDateTime::now_utc())).unwrap_or(0);
        let node = Node {
            name: self.file.as_bytes().to_vec(),
            kind: NodeKind::File,
            mode: 0o600,
            uid,
            gid,
            mtime_ns,
            size: stored.size,
            content: stored.content,
            subtree: None,
            target: None,
            ..Node::default()
        };
        let (root, tree_bytes) = store_tree(cx, Tree { nodes: vec![node] })?;
        cx.sink.counters.files_new.fetch_add(1, Relaxed);
        cx.sink.counters.bytes.fetch_add(stored.size, Relaxed);
        Ok(Component {
            name: self.name.clone(),
            kind: ComponentKind::Command,
            source: cmdline,
            started: String::new(),
            finished: String::new(),
            root,
            files: 1,
            dirs: 0,
            bytes: stored.size,
            stored_bytes: stored.stored_bytes + tree_bytes,
            command: Some(CommandRecord {
                argv: self.argv.clone(),
                file: self.file.clone(),
                exit_code: status.code(),
                stderr_tail,
                compressed_warning: warning,
            }),
            solr: None,
            unreadable: Vec::new(),
            skipped: Vec::new(),
        })
    }
}

#[derive(Debug)]
pub struct SolrCapture {
    pub name: String,
    pub source: SolrSource,
}

impl Capture for SolrCapture {
    fn name(&self) -> &str {
        &self.name
    }

    fn capture(&self, cx: &Context) -> Result<Component> {
        let unique = format!("coffer-{}", cx.scan_start_ns);
        let snap = crate::solr::capture(&self.source, &unique)?;
        let walker = Walker::new(cx.sink, cx.params, None, cx.scan_start_ns);
        let sub = walker.save_root(&snap.dir)?;
        let problems = std::mem::take(&mut *walker.problems.lock().unwrap_or_else(|p| p.into_inner()));
        if !problems.is_empty() {
            return Err(Error::Failed(format!(
                "Solr snapshot {} could not be read completely: {}",
                snap.dir.display(),
                problems.join("; ")
            )));
        }
        // The snapshot must not have changed while we read it.
        crate::solr::confirm_unchanged(&snap)?;
        let m = std::fs::metadata(&snap.dir).map_err(|e| Error::Io { path: snap.dir.clone(), source: e })?;
        let dir_name = snap
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("snapshot.{}", snap.name));
        let node = Node {
            name: dir_name.clone().into_bytes(),
            kind: NodeKind::Dir,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()),
            size: 0,
            content: Vec::new(),
            subtree: Some(*sub.as_bytes()),
            target: None,
            ..Node::default()
        };
        let (root, tree_bytes) = store_tree(cx, Tree { nodes: vec![node] })?;
        Ok(Component {
            name: self.name.clone(),
            kind: ComponentKind::Solr,
            source: self.source.url.clone().unwrap_or_else(|| snap.dir.display().to_string()),
            started: String::new(),
            finished: String::new(),
            root,
            files: walker.files.load(Relaxed),
            dirs: walker.dirs.load(Relaxed),
            bytes: walker.bytes.load(Relaxed),
            stored_bytes: walker.stored.load(Relaxed) + tree_bytes,
            command: None,
            solr: Some(SolrRecord {
                snapshot: dir_name,
                snapshot_dir: snap.dir.display().to_string(),
                url: self.source.url.clone(),
            }),
            unreadable: Vec::new(),
            skipped: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_streams_are_recognised() {
        assert!(compressed_stream_warning(&[0x1f, 0x8b, 8, 0]).is_some());
        assert!(compressed_stream_warning(&[0x28, 0xb5, 0x2f, 0xfd, 0]).is_some());
        assert!(compressed_stream_warning(b"--\n-- PostgreSQL database dump\n").is_none());
        // PostgreSQL 15 custom format (archive 1.14): level as sign byte + 4-byte int.
        let mut v14 = b"PGDMP".to_vec();
        v14.extend_from_slice(&[1, 14, 0, 4, 8, 1, 0, 0, 0, 0, 0]);
        assert!(compressed_stream_warning(&v14).is_none(), "-Z0 is uncompressed");
        v14[12] = 1; // sign 1, value 1 => -1, the default zlib level
        v14[11] = 1;
        assert!(compressed_stream_warning(&v14).is_some());
        // PostgreSQL 16 (archive 1.15): an algorithm byte.
        let mut v15 = b"PGDMP".to_vec();
        v15.extend_from_slice(&[1, 15, 0, 4, 8, 1, 0]);
        assert!(compressed_stream_warning(&v15).is_none());
        v15[11] = 3;
        assert!(compressed_stream_warning(&v15).is_some());
    }
}
