//! Writing valid repository objects straight through the library, so tests can build
//! repositories no backup would make: manifests with any component names, trees of any shape
//! (200,000 levels deep, subtrees shared into millions of files), chunk references that lie
//! about their length. Every object is well-formed (packs, index rows, trees and manifests pass
//! their decoders' checks unless a test wants otherwise); only what they say is hostile.

use coffer::id::{ChunkId, Id, SetId, TreeId};
use coffer::pack::{BlobKind, PackWriter};
use coffer::repo::Repo;
use coffer::set::{Component, ComponentKind, Manifest};
use coffer::tree::{ChunkRef, Node, NodeKind, Tree};
use std::collections::HashSet;
use std::path::Path;

/// A pack being filled in an existing repository; `commit` makes everything durable and indexed.
pub struct Craft {
    pub repo: Repo,
    pack: Option<PackWriter>,
    stored: HashSet<ChunkId>,
}

impl Craft {
    /// Opens the repository at `root` (already `init`ed).
    pub fn open(root: &Path) -> Craft {
        Craft { repo: super::open_repo(root), pack: None, stored: HashSet::new() }
    }

    fn blob(&mut self, kind: BlobKind, raw: &[u8]) -> ChunkId {
        let id = self.repo.hasher.id(raw);
        if !self.stored.insert(id) {
            return id;
        }
        let (compression, stored) = coffer::pack::compress(raw, 3);
        let stored = coffer::pack::seal_blob(&self.repo.cipher, &id, kind, stored);
        if self.pack.is_none() {
            self.pack = Some(PackWriter::create(&*self.repo.storage, &self.repo.cipher).expect("pack writer"));
        }
        let w = self.pack.as_mut().expect("just made");
        w.add(id, kind, compression, &stored, raw.len() as u32).expect("add blob");
        if w.size() >= 16 << 20 {
            self.flush();
        }
        id
    }

    /// Seals the current pack and indexes it.
    pub fn flush(&mut self) {
        if let Some(w) = self.pack.take() {
            let finished = w.finish(&*self.repo.storage).expect("finish pack");
            let mut idx = self.repo.index().expect("index");
            idx.add_pack(&finished, 0).expect("index pack");
            coffer::catalog::write_uncovered(&mut idx, &*self.repo.storage, &self.repo.cipher, 0)
                .expect("index object");
        }
    }

    /// Stores `data` as one data chunk; the reference claims its true length.
    pub fn chunk(&mut self, data: &[u8]) -> ChunkRef {
        ChunkRef::new(self.blob(BlobKind::Data, data), data.len() as u32)
    }

    /// Stores a tree of these nodes (sorted here; names must be unique).
    pub fn tree(&mut self, nodes: Vec<Node>) -> TreeId {
        let mut t = Tree { nodes };
        t.sort();
        let id = self.blob(BlobKind::Tree, &t.encode());
        TreeId(Id(*id.as_bytes()))
    }

    /// Commits a set of these components (flushing the pack first).
    pub fn commit(&mut self, components: Vec<Component>) -> SetId {
        self.flush();
        let m = Manifest {
            name: "crafted".into(),
            host: "test".into(),
            tags: vec![],
            tool_version: "0.1.0".into(),
            started: "2026-11-22T01:00:00Z".into(),
            finished: "2026-11-22T01:10:00Z".into(),
            parent: None,
            components,
        };
        self.repo.commit_manifest(&m).expect("commit manifest")
    }
}

fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime_ns: 1_700_000_000_000_000_000,
        size: 0,
        content: vec![],
        subtree: None,
        target: None,
        ..Node::default()
    }
}

/// A regular file with this content; its size is what the references claim.
pub fn file(name: &str, content: Vec<ChunkRef>) -> Node {
    let mut n = node(name.as_bytes(), NodeKind::File, 0o644);
    n.size = content.iter().map(|c| c.len as u64).sum();
    n.content = content;
    n
}

pub fn dir(name: &str, tree: TreeId) -> Node {
    let mut n = node(name.as_bytes(), NodeKind::Dir, 0o755);
    n.subtree = Some(*tree.as_bytes());
    n
}

pub fn symlink(name: &str, target: &str) -> Node {
    let mut n = node(name.as_bytes(), NodeKind::Symlink, 0o777);
    n.size = target.len() as u64;
    n.target = Some(target.as_bytes().to_vec());
    n
}

/// A directory component declaring these counts.
pub fn component(name: &str, root: TreeId, files: u64, dirs: u64, bytes: u64) -> Component {
    Component {
        name: name.into(),
        kind: ComponentKind::Directory,
        source: "/crafted".into(),
        started: "2026-11-22T01:00:00Z".into(),
        finished: "2026-11-22T01:01:00Z".into(),
        root,
        files,
        dirs,
        bytes,
        stored_bytes: 0,
        command: None,
        solr: None,
        unreadable: vec![],
        skipped: vec![],
    }
}
