//! Reading stored files back: checking a file on disk against its node (`--resume`,
//! `--verify`), streaming a node's content, and piping a dump component into a command.

use crate::error::{Error, IoContext, Result};
use crate::repo::Repo;
use crate::set::Manifest;
use crate::tree::{Node, NodeKind};
use rayon::prelude::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Whether the file at `path` holds exactly the node's content: every chunk, read at its
/// offset, hashes to the stored chunk id. Chunks are checked in parallel for large files.
pub fn content_matches(repo: &Repo, n: &Node, path: &Path) -> Result<bool> {
    file_matches(repo, n, &File::open(path).ctx(path)?, path)
}

/// [`content_matches`] on an open file.
pub(super) fn file_matches(repo: &Repo, n: &Node, f: &File, path: &Path) -> Result<bool> {
    if f.metadata().ctx(path)?.len() != n.size {
        return Ok(false);
    }
    let mut offsets = Vec::with_capacity(n.content.len());
    let mut off = 0u64;
    for c in &n.content {
        offsets.push(off);
        off += c.len as u64;
    }
    let check = |i: usize| -> Result<bool> {
        let c = &n.content[i];
        let mut buf = vec![0u8; c.len as usize];
        match f.read_exact_at(&mut buf, offsets[i]) {
            Ok(()) => Ok(repo.hasher.id(&buf) == c.chunk_id()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    };
    if n.content.len() > 4 {
        Ok((0..n.content.len()).into_par_iter().map(check).collect::<Result<Vec<bool>>>()?.into_iter().all(|ok| ok))
    } else {
        for i in 0..n.content.len() {
            if !check(i)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Reads a stored file's content as a stream, one chunk at a time (a dump into `pg_restore`,
/// the consistency check's parser).
pub struct NodeReader<'a> {
    repo: &'a Repo,
    chunks: std::vec::IntoIter<crate::tree::ChunkRef>,
    buf: Vec<u8>,
    pos: usize,
    /// The file's name, for errors.
    file: String,
}

impl<'a> NodeReader<'a> {
    pub fn new(repo: &'a Repo, n: &Node) -> NodeReader<'a> {
        NodeReader { repo, chunks: n.content.clone().into_iter(), buf: Vec::new(), pos: 0, file: n.name_lossy() }
    }
}

impl std::io::Read for NodeReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(c) = self.chunks.next() else {
                return Ok(0);
            };
            self.buf = self.repo.read_file_chunk(&c, &self.file).map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Streams the single file of a component (a database dump) into `sh -c CMD`'s stdin, e.g.
/// `pg_restore -d alfresco`. Fails when the command fails, naming it.
pub fn pipe_component(repo: &Repo, m: &Manifest, component: &str, cmd: &str) -> Result<u64> {
    let c = m.component(component).ok_or_else(|| Error::NotFound(format!("no component {component:?}")))?;
    let tree = repo.read_tree(&c.root)?;
    let files: Vec<&Node> = tree.nodes.iter().filter(|n| n.kind == NodeKind::File).collect();
    let [file] = files.as_slice() else {
        return Err(Error::InvalidInput(format!(
            "component {component:?} is not a single file (a dump); restore it with --target instead"
        )));
    };
    let mut child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("could not start `{cmd}`: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let copied = std::io::copy(&mut NodeReader::new(repo, file), &mut stdin);
    drop(stdin);
    let status = child.wait().map_err(|e| Error::Failed(format!("`{cmd}`: {e}")))?;
    if !status.success() {
        return Err(Error::CommandFailed {
            component: component.into(),
            command: cmd.into(),
            status: status.to_string(),
            stderr: "(see above)".into(),
        });
    }
    copied.map_err(|e| Error::Failed(format!("streaming into `{cmd}`: {e}")))
}
